# gen_corpus.py — seeds tests/fuzz/corpus from tests/vectors/vectors.json (one file per vector).
import json, os, sys, msgpack
root = sys.argv[1]
out = os.path.join(root, "tests/fuzz/corpus")
os.makedirs(out, exist_ok=True)
for f in os.listdir(out):
    os.remove(os.path.join(out, f))
V = json.load(open(os.path.join(root, "tests/vectors/vectors.json")))
def w(name, b):
    with open(os.path.join(out, name), "wb") as f:
        f.write(b)
for v in V:
    n = v["name"]
    if v["kind"] == "invalid":
        if "msgpack" in v: w(n, b"\x00" + bytes.fromhex(v["msgpack"]))
        elif "json_hex" in v: w(n, b"\x01" + bytes.fromhex(v["json_hex"]))
        else: w(n, b"\x01" + v["json"].encode())
        continue
    if v["kind"] == "command":
        w(n + ".mp", b"\x00" + bytes.fromhex(v["msgpack"]))
        w(n + ".json", b"\x01" + v["json"].encode())
    else:  # replies and pushes: their whole text as data values
        w(n + ".mp", b"\x02" + bytes.fromhex(v["msgpack"]))
        w(n + ".json", b"\x03" + v["json"].encode())
# Redis-side parsers (schema.c): relay frames (mode 4), node control messages (mode 5) and
# presence set members (mode 8)
w("relay_pub_json", b"\x04" + b'1\nE1\n42\nj\nu7\n{"a":1}')
w("relay_presence_join", b"\x04" + b"1\n\n0\nJ\nu7\nabc-1")
w("relay_presence_join_info", b"\x04" + b'1\n\n0\nJ\nu7\nabc-1\n{"name":"Li","avatar":"a.png"}')
# found by the fuzzer: a NUL as the kind (strchr finds the terminator) was taken for a publication
w("relay_kind_nul", b"\x04" + b"1\n\n0\n\x00\nu7\nabc-1")
w("presence_member", b"\x08" + b"u7 abc-1")
w("presence_member_info", b"\x08" + b'u7 abc-1 {"name":"Li Wei","tags":["x y"]}')
w("control_unsubscribe", b"\x05" + b"unsubscribe\nu7\ngroup:g1")
w("control_disconnect", b"\x05" + b"disconnect\nu7\n")
# rpc answers a backend PUBLISHes on a node's reply channel (mode 6: JSON, 7: msgpack)
w("rpc_answer_result_json", b"\x06" + b'{"req":"a1b2c3d4-1","result":{"card":"c1","n":[1,2.5,null]}}')
w("rpc_answer_error_json", b"\x06" + b'{"req":"a1b2c3d4-2","error":{"code":409,"message":"taken"}}')
w("rpc_answer_result_mp", b"\x07" + msgpack.packb({"req": "a1b2c3d4-3", "result": {"bin": b"\x00\xff"}}, use_bin_type=True))
w("rpc_answer_error_mp", b"\x07" + msgpack.packb({"req": "a1b2c3d4-4", "error": {"message": "no"}}, use_bin_type=True))
