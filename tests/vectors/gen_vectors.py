# gen_vectors.py — generates tests/vectors/vectors.json (run with /usr/bin/python3).
# Regenerate: /usr/bin/python3 tests/vectors/gen_vectors.py > tests/vectors/vectors.json, then
# /usr/bin/python3 tests/vectors/gen_corpus.py . (fuzz seeds) and gen_examples.py (PROTOCOL.md examples).
import base64, json, sys
import msgpack
from msgpack import ExtType

def model(o):
    """msgpack value -> the JSON value cardgw writes for it ($bin/$ext rule)."""
    if isinstance(o, bytes):
        return {"$bin": base64.b64encode(o).decode()}
    if isinstance(o, ExtType):
        return {"$ext": [o.code, base64.b64encode(o.data).decode()]}
    if isinstance(o, dict):
        return {(k if isinstance(k, str) else json.dumps(model(k), separators=(",", ":"))): model(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [model(x) for x in o]
    return o

def jtext(o):
    return json.dumps(model(o), separators=(",", ":"), ensure_ascii=False)

def pk(o):
    return msgpack.packb(o, use_bin_type=True)

V = []
def add(name, kind, obj, **extra):
    v = {"name": name, "kind": kind, "json": jtext(obj), "msgpack": pk(obj).hex()}
    v.update(extra)
    V.append(v)

def hx(o):
    return pk(o).hex()

RICH = {
    "text": "hello",
    "unicode": "名片 ✓ é 😀",
    "escapes": "q\" b\\ nl\n tab\t cr\r bs\b ff\f ctl\x01\x1f del\x7f /",
    "bin": b"\x00\x01\xfe\xff",
    "empty_bin": b"",
    "ext": ExtType(5, b"abc"),
    "fixext": ExtType(1, b"\x00\x00\x00\x01"),
    "nested": {"list": [1, -1, [True, False, None], []], "map": {"k": "v", "empty": {}}},
    "ints": [0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649],
    "i64min": -9223372036854775808,
    "i64max": 9223372036854775807,
    "floats": [1.5, -0.25, 0.1, 100.0, 0.0, -0.0, 1e-07, 1e+100, 123456.789, 1e16, 1e15, 0.0001, 5e-324, 1.7976931348623157e308],
    "long": "x" * 40,
}
BIG = {"u64max": 18446744073709551615, "i64min": -9223372036854775808, "rich": RICH, 7: "int key", True: "bool key"}

def deep(n):
    v = 1
    for _ in range(n):
        v = [v]
    return v

# ---- commands ---------------------------------------------------------------------------------
def cmd(name, obj, **exp):
    e = {"cmd": obj["cmd"], "id": obj["id"]}
    e.update(exp)
    add(name, "command", obj, expect=e)

cmd("connect", {"id": 1, "cmd": "connect", "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1NDIifQ.c2ln", "client": "cardapp/2.3.1"},
    token="eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1NDIifQ.c2ln", client="cardapp/2.3.1")
cmd("connect_minimal", {"id": 1, "cmd": "connect", "token": "sess-8f3a9c"}, token="sess-8f3a9c")
cmd("connect_null_client", {"id": 1, "cmd": "connect", "token": "t", "client": None}, token="t")
cmd("subscribe", {"id": 2, "cmd": "subscribe", "channel": "group:g42"}, channel="group:g42")
cmd("subscribe_since", {"id": 3, "cmd": "subscribe", "channel": "user:u42", "since": {"epoch": "k9x2", "offset": 17}},
    channel="user:u42", since={"epoch": "k9x2", "offset": 17})
cmd("subscribe_since_zero", {"id": 3, "cmd": "subscribe", "channel": "user:u42", "since": {"offset": 0, "epoch": ""}},
    channel="user:u42", since={"epoch": "", "offset": 0})
cmd("subscribe_max_channel", {"id": 2, "cmd": "subscribe", "channel": "n" * 32 + ":" + "A.b@c=d+e,f;g-h_" * 13 + "x" * 14},
    channel="n" * 32 + ":" + "A.b@c=d+e,f;g-h_" * 13 + "x" * 14)
cmd("unsubscribe", {"id": 4, "cmd": "unsubscribe", "channel": "group:g42"}, channel="group:g42")
cmd("publish", {"id": 5, "cmd": "publish", "channel": "public:lobby", "data": {"text": "hello"}},
    channel="public:lobby", data=hx({"text": "hello"}))
cmd("publish_rich", {"id": 6, "cmd": "publish", "channel": "public:lobby", "data": RICH},
    channel="public:lobby", data=hx(RICH))
cmd("publish_string", {"id": 7, "cmd": "publish", "channel": "public:lobby", "data": "just text"},
    channel="public:lobby", data=hx("just text"))
cmd("publish_null", {"id": 8, "cmd": "publish", "channel": "public:lobby", "data": None},
    channel="public:lobby", data=hx(None))
cmd("publish_bin", {"id": 9, "cmd": "publish", "channel": "public:lobby", "data": bytes(range(256))},
    channel="public:lobby", data=hx(bytes(range(256))))
cmd("publish_max_depth", {"id": 10, "cmd": "publish", "channel": "public:lobby", "data": deep(31)},
    channel="public:lobby", data=hx(deep(31)))
cmd("presence", {"id": 11, "cmd": "presence", "channel": "group:g42"}, channel="group:g42")
cmd("presence_users", {"id": 18, "cmd": "presence_users", "channel": "group:g42"}, channel="group:g42")
cmd("presence_stats", {"id": 19, "cmd": "presence_stats", "channel": "group:g42"}, channel="group:g42")
cmd("history", {"id": 12, "cmd": "history", "channel": "group:g42", "limit": 50, "since": {"epoch": "k9x2", "offset": 10}},
    channel="group:g42", limit=50, since={"epoch": "k9x2", "offset": 10})
cmd("history_minimal", {"id": 13, "cmd": "history", "channel": "group:g42"}, channel="group:g42")
cmd("rpc", {"id": 14, "cmd": "rpc", "method": "card.exchange", "data": {"to": "u7", "card": "c1"}},
    method="card.exchange", data=hx({"to": "u7", "card": "c1"}))
cmd("ping", {"id": 15, "cmd": "ping"})
cmd("ping_max_id", {"id": 4294967295, "cmd": "ping"})
cmd("ping_unknown_fields", {"id": 16, "cmd": "ping", "trace": "abc", "v2": {"x": [1, 2]}, "channel": 5})
cmd("refresh", {"id": 17, "cmd": "refresh", "token": "sess-new-77"}, token="sess-new-77")

# ---- replies ----------------------------------------------------------------------------------
def reply(name, enc, args, obj, **extra):
    add(name, "reply", obj, encoder=enc, args=args, **extra)

def push(name, enc, args, obj, **extra):
    add(name, "push", obj, encoder=enc, args=args, **extra)

reply("ok", "ok", {"id": 15}, {"id": 15, "result": {}})
reply("error", "error", {"id": 3, "code": 104, "message": "channel must be a string"},
      {"id": 3, "error": {"code": 104, "message": "channel must be a string"}})
reply("error_unicode", "error", {"id": 4294967295, "code": 113, "message": "ungültiger Kanal «x»"},
      {"id": 4294967295, "error": {"code": 113, "message": "ungültiger Kanal «x»"}})
reply("error_timeout", "error", {"id": 14, "code": 118, "message": "rpc timed out: no answer from the backend"},
      {"id": 14, "error": {"code": 118, "message": "rpc timed out: no answer from the backend"}})
reply("error_backend", "error_app", {"id": 14, "code": 119, "message": "card already taken", "app_code": 409},
      {"id": 14, "error": {"code": 119, "message": "card already taken", "app_code": 409}})
reply("connect_ok", "connect_ok", {"id": 1, "client": "c-5f2a", "uid": "u42", "node": "node-1", "ping": 25, "expires_in": 3600},
      {"id": 1, "result": {"client": "c-5f2a", "uid": "u42", "node": "node-1", "ping": 25, "expires_in": 3600}})
reply("connect_ok_no_expiry", "connect_ok", {"id": 1, "client": "c-5f2a", "uid": "u42", "node": "node-1", "ping": 25, "expires_in": 0},
      {"id": 1, "result": {"client": "c-5f2a", "uid": "u42", "node": "node-1", "ping": 25}})
reply("subscribe_ok", "position_ok", {"id": 2, "epoch": "k9x2", "offset": 17, "recovered": None, "publications": []},
      {"id": 2, "result": {"epoch": "k9x2", "offset": 17}})
P1 = {"offset": 18, "data": {"event": "card_updated", "uid": "u7"}}
P2 = {"offset": 19, "data": {"event": "member_left", "uid": "u9"}, "from": "u9"}
reply("subscribe_recovered", "position_ok",
      {"id": 3, "epoch": "k9x2", "offset": 19, "recovered": True,
       "publications": [{"offset": 18, "data": hx(P1["data"]), "from": ""}, {"offset": 19, "data": hx(P2["data"]), "from": "u9"}]},
      {"id": 3, "result": {"epoch": "k9x2", "offset": 19, "recovered": True, "publications": [P1, P2]}})
reply("subscribe_not_recovered", "position_ok", {"id": 3, "epoch": "m1q7", "offset": 4, "recovered": False, "publications": []},
      {"id": 3, "result": {"epoch": "m1q7", "offset": 4, "recovered": False}})
reply("history_ok", "position_ok",
      {"id": 12, "epoch": "k9x2", "offset": 19, "recovered": None,
       "publications": [{"offset": 19, "data": hx(P2["data"]), "from": "u9"}]},
      {"id": 12, "result": {"epoch": "k9x2", "offset": 19, "publications": [P2]}})
reply("history_ok_more", "position_ok",
      {"id": 12, "epoch": "k9x2", "offset": 19, "recovered": None, "more": True,
       "publications": [{"offset": 19, "data": hx(P2["data"]), "from": "u9"}]},
      {"id": 12, "result": {"epoch": "k9x2", "offset": 19, "publications": [P2], "more": True}})
reply("publish_ok", "publish_ok", {"id": 5, "epoch": "k9x2", "offset": 20},
      {"id": 5, "result": {"epoch": "k9x2", "offset": 20}})
reply("presence_ok", "presence_ok", {"id": 11, "clients": [{"uid": "u42", "client": "c-5f2a"}, {"uid": "u7", "client": "c-0b1e"}]},
      {"id": 11, "result": {"clients": [{"uid": "u42", "client": "c-5f2a"}, {"uid": "u7", "client": "c-0b1e"}]}})
reply("presence_ok_empty", "presence_ok", {"id": 11, "clients": []}, {"id": 11, "result": {"clients": []}})
reply("presence_ok_partial", "presence_ok", {"id": 11, "clients": [{"uid": "u42", "client": "c-5f2a"}], "total": 2500},
      {"id": 11, "result": {"clients": [{"uid": "u42", "client": "c-5f2a"}], "partial": True, "total": 2500}})
CARD = {"name": "李伟", "title": "CTO", "avatar": "https://img.example.com/u42.png"}
reply("presence_ok_info", "presence_ok",
      {"id": 11, "clients": [{"uid": "u42", "client": "c-5f2a", "conn_info": hx(CARD)}, {"uid": "u7", "client": "c-0b1e"}]},
      {"id": 11, "result": {"clients": [{"uid": "u42", "client": "c-5f2a", "conn_info": CARD}, {"uid": "u7", "client": "c-0b1e"}]}})
reply("presence_users_ok", "presence_users_ok",
      {"id": 18, "users": [{"uid": "u42", "connections": 2, "conn_info": hx(CARD)}, {"uid": "u7", "connections": 1}]},
      {"id": 18, "result": {"users": [{"uid": "u42", "connections": 2, "conn_info": CARD}, {"uid": "u7", "connections": 1}]}})
reply("presence_users_ok_empty", "presence_users_ok", {"id": 18, "users": []}, {"id": 18, "result": {"users": []}})
reply("presence_stats_ok", "presence_stats_ok", {"id": 19, "connections": 3, "users": 2},
      {"id": 19, "result": {"connections": 3, "users": 2}})
reply("presence_stats_ok_partial", "presence_stats_ok", {"id": 19, "connections": 2500, "users": 1000, "partial": True},
      {"id": 19, "result": {"connections": 2500, "users": 1000, "partial": True}})
reply("rpc_ok", "rpc_ok", {"id": 14, "data": hx({"status": "sent", "exchange": 991})},
      {"id": 14, "result": {"data": {"status": "sent", "exchange": 991}}})
reply("rpc_ok_big", "rpc_ok", {"id": 14, "data": hx(BIG)}, {"id": 14, "result": {"data": BIG}}, roundtrip=False)

# ---- pushes -----------------------------------------------------------------------------------
push("pub", "pub", {"channel": "group:g42", "offset": 18, "data": hx(P1["data"]), "from": ""},
     {"push": "pub", "channel": "group:g42", "offset": 18, "data": P1["data"]})
push("pub_from", "pub", {"channel": "user:u42", "offset": 3, "data": hx({"event": "card_received", "card": "c1"}), "from": "u7"},
     {"push": "pub", "channel": "user:u42", "offset": 3, "data": {"event": "card_received", "card": "c1"}, "from": "u7"})
push("pub_rich", "pub", {"channel": "public:lobby", "offset": 9007199254740993, "data": hx(RICH), "from": ""},
     {"push": "pub", "channel": "public:lobby", "offset": 9007199254740993, "data": RICH})
push("pub_big", "pub", {"channel": "public:lobby", "offset": 1, "data": hx(BIG), "from": ""},
     {"push": "pub", "channel": "public:lobby", "offset": 1, "data": BIG}, roundtrip=False)
push("join", "join", {"channel": "group:g42", "uid": "u7", "client": "c-0b1e", "leave": False},
     {"push": "join", "channel": "group:g42", "info": {"uid": "u7", "client": "c-0b1e"}})
push("join_info", "join", {"channel": "group:g42", "uid": "u42", "client": "c-5f2a", "conn_info": hx(CARD), "leave": False},
     {"push": "join", "channel": "group:g42", "info": {"uid": "u42", "client": "c-5f2a", "conn_info": CARD}})
push("leave", "join", {"channel": "group:g42", "uid": "u7", "client": "c-0b1e", "leave": True},
     {"push": "leave", "channel": "group:g42", "info": {"uid": "u7", "client": "c-0b1e"}})
push("unsub", "unsub", {"channel": "group:g42", "code": 103, "reason": "removed from group"},
     {"push": "unsub", "channel": "group:g42", "code": 103, "reason": "removed from group"})
push("disconnect_reconnect", "disconnect", {"code": 4000, "reason": "node draining", "reconnect": True, "delay_ms": 2500},
     {"push": "disconnect", "code": 4000, "reason": "node draining", "reconnect": True, "delay_ms": 2500})
push("disconnect_final", "disconnect", {"code": 4504, "reason": "disconnected by server", "reconnect": False, "delay_ms": 0},
     {"push": "disconnect", "code": 4504, "reason": "disconnected by server", "reconnect": False, "delay_ms": 0})
push("refresh_push", "refresh", {"expires_in": 60}, {"push": "refresh", "expires_in": 60})

# ---- invalid frames ---------------------------------------------------------------------------
def bad(name, enc, frame, status, code=0, id=0):
    v = {"name": name, "kind": "invalid", "encoding": enc, "status": status, "code": code, "id": id}
    if enc == "msgpack":
        v["msgpack"] = frame.hex()
    elif isinstance(frame, bytes):
        v["json_hex"] = frame.hex()
    else:
        v["json"] = frame
    V.append(v)

def mp_map(*kv):
    out = bytes([0x80 | (len(kv) // 2)])
    for x in kv:
        out += x if isinstance(x, bytes) else pk(x)
    return out

M, J = "malformed", "invalid"
def both(name, obj, status, code=0, id=0):
    bad(name + "_mp", "msgpack", pk(obj), status, code, id)
    bad(name + "_json", "json", json.dumps(model(obj), separators=(",", ":"), ensure_ascii=False), status, code, id)

bad("mp_truncated", "msgpack", pk({"id": 1, "cmd": "ping"})[:-2], M)
bad("mp_trailing", "msgpack", pk({"id": 1, "cmd": "ping"}) + b"\x01", M)
bad("mp_array32_4g", "msgpack", bytes.fromhex("ddffffffff01"), M)
bad("mp_map32_4g", "msgpack", bytes.fromhex("dfffffffff"), M)
bad("mp_str32_4g", "msgpack", b"\x82\xa2id\x01\xa3cmd\xdb\xff\xff\xff\xf0ping", M)
bad("mp_bin32_4g", "msgpack", b"\x81\xa4data\xc6\xff\xff\xff\xff", M)
bad("mp_ext32_4g", "msgpack", b"\x81\xa4data\xc9\xff\xff\xff\xff\x01", M)
bad("mp_map16_short", "msgpack", b"\xde\x00\x05\xa2id\x01", M)
bad("mp_reserved_c1", "msgpack", mp_map("id", 1, "cmd", b"\xc1"), M)
bad("mp_bad_utf8_cmd", "msgpack", mp_map("id", 1, "cmd", b"\xa4p\xffng"), M)
bad("mp_bad_utf8_data", "msgpack", mp_map("id", 1, "cmd", "publish", "channel", "a:b", "data", b"\x91\xa2\xc0\xaf"), M)
bad("mp_surrogate_utf8", "msgpack", mp_map("id", 1, "cmd", "ping", "x", b"\xa3\xed\xa0\x80"), M)
bad("mp_empty", "msgpack", b"", M)
bad("mp_data_map_key_is_map", "msgpack", mp_map("id", 1, "cmd", "publish", "channel", "a:b", "data", b"\x81\x81\x01\x02\x03"), M)
bad("mp_data_map_key_is_array", "msgpack", mp_map("id", 1, "cmd", "publish", "channel", "a:b", "data", b"\x81\x92\x01\x02\x03"), M)
bad("mp_not_map_array", "msgpack", pk([1, "ping"]), M)
bad("mp_not_map_str", "msgpack", pk("ping"), M)
bad("mp_duplicate_id", "msgpack", mp_map("id", 1, "id", 2, "cmd", "ping"), M)
bad("mp_duplicate_since_offset", "msgpack",
    mp_map("id", 1, "cmd", "subscribe", "channel", "a:b", "since", mp_map("epoch", "e", "offset", 1, "offset", 2)), M)
bad("mp_too_deep", "msgpack", pk({"id": 1, "cmd": "publish", "channel": "a:b", "data": deep(32)}), M)
bad("mp_too_deep_unknown_field", "msgpack", pk({"id": 1, "cmd": "ping", "x": deep(32)}), M)
both("missing_id", {"cmd": "ping"}, M)
both("id_zero", {"id": 0, "cmd": "ping"}, M)
both("id_negative", {"id": -1, "cmd": "ping"}, M)
both("id_too_big", {"id": 4294967296, "cmd": "ping"}, M)
both("id_string", {"id": "1", "cmd": "ping"}, M)
both("id_float", {"id": 1.0, "cmd": "ping"}, M)
both("id_null", {"id": None, "cmd": "ping"}, M)
both("cmd_missing", {"id": 3}, J, 104, 3)
both("cmd_not_string", {"id": 3, "cmd": 5}, J, 104, 3)
both("cmd_unknown", {"id": 4, "cmd": "fly"}, "unknown", 102, 4)
both("cmd_case", {"id": 4, "cmd": "PING"}, "unknown", 102, 4)
both("channel_missing", {"id": 5, "cmd": "subscribe"}, J, 104, 5)
both("channel_int", {"id": 5, "cmd": "subscribe", "channel": 42}, J, 104, 5)
both("channel_space", {"id": 5, "cmd": "subscribe", "channel": "no spaces:allowed"}, J, 113, 5)
both("channel_no_colon", {"id": 5, "cmd": "subscribe", "channel": "group"}, J, 113, 5)
both("channel_empty_ns", {"id": 5, "cmd": "unsubscribe", "channel": ":x"}, J, 113, 5)
both("channel_empty_id", {"id": 5, "cmd": "presence", "channel": "group:"}, J, 113, 5)
both("channel_upper_ns", {"id": 5, "cmd": "history", "channel": "Group:x"}, J, 113, 5)
both("channel_two_colons", {"id": 5, "cmd": "publish", "channel": "a:b:c", "data": 1}, J, 113, 5)
both("channel_unicode", {"id": 5, "cmd": "subscribe", "channel": "group:名片"}, J, 113, 5)
both("channel_long_ns", {"id": 5, "cmd": "subscribe", "channel": "n" * 33 + ":x"}, J, 113, 5)
both("channel_too_long", {"id": 5, "cmd": "subscribe", "channel": "a:" + "x" * 254}, J, 113, 5)
both("token_missing", {"id": 6, "cmd": "connect"}, J, 104, 6)
both("token_empty", {"id": 6, "cmd": "connect", "token": ""}, J, 104, 6)
both("token_int", {"id": 6, "cmd": "refresh", "token": 123}, J, 104, 6)
both("token_too_long", {"id": 6, "cmd": "connect", "token": "t" * 8193}, J, 104, 6)
both("token_nul", {"id": 6, "cmd": "connect", "token": "a\x00b"}, J, 104, 6)
both("client_too_long", {"id": 6, "cmd": "connect", "token": "t", "client": "c" * 65}, J, 104, 6)
both("client_int", {"id": 6, "cmd": "connect", "token": "t", "client": 1}, J, 104, 6)
both("since_not_map", {"id": 7, "cmd": "subscribe", "channel": "a:b", "since": 17}, J, 104, 7)
both("since_no_epoch", {"id": 7, "cmd": "subscribe", "channel": "a:b", "since": {"offset": 1}}, J, 104, 7)
both("since_no_offset", {"id": 7, "cmd": "subscribe", "channel": "a:b", "since": {"epoch": "e"}}, J, 104, 7)
both("since_offset_negative", {"id": 7, "cmd": "subscribe", "channel": "a:b", "since": {"epoch": "e", "offset": -1}}, J, 104, 7)
both("since_offset_string", {"id": 7, "cmd": "history", "channel": "a:b", "since": {"epoch": "e", "offset": "1"}}, J, 104, 7)
both("since_offset_float", {"id": 7, "cmd": "history", "channel": "a:b", "since": {"epoch": "e", "offset": 1.0}}, J, 104, 7)
both("since_epoch_int", {"id": 7, "cmd": "subscribe", "channel": "a:b", "since": {"epoch": 5, "offset": 1}}, J, 104, 7)
both("since_epoch_too_long", {"id": 7, "cmd": "subscribe", "channel": "a:b", "since": {"epoch": "e" * 65, "offset": 1}}, J, 104, 7)
both("limit_negative", {"id": 8, "cmd": "history", "channel": "a:b", "limit": -1}, J, 104, 8)
both("limit_string", {"id": 8, "cmd": "history", "channel": "a:b", "limit": "10"}, J, 104, 8)
both("limit_too_big", {"id": 8, "cmd": "history", "channel": "a:b", "limit": 4294967296}, J, 104, 8)
both("publish_no_data", {"id": 9, "cmd": "publish", "channel": "a:b"}, J, 104, 9)
both("rpc_no_data", {"id": 9, "cmd": "rpc", "method": "m"}, J, 104, 9)
both("rpc_no_method", {"id": 9, "cmd": "rpc", "data": 1}, J, 104, 9)
both("rpc_bad_method", {"id": 9, "cmd": "rpc", "method": "bad method", "data": 1}, J, 104, 9)
both("rpc_long_method", {"id": 9, "cmd": "rpc", "method": "m" * 65, "data": 1}, J, 104, 9)
bad("json_truncated", "json", '{"id":1,"cmd":"ping"', M)
bad("json_syntax", "json", '{"id":1,"cmd":ping}', M)
bad("json_trailing", "json", '{"id":1,"cmd":"ping"}x', M)
bad("json_two_values", "json", '{"id":1,"cmd":"ping"}{}', M)
bad("json_not_object_array", "json", '[1,"ping"]', M)
bad("json_not_object_scalar", "json", '"ping"', M)
bad("json_empty", "json", '', M)
bad("json_duplicate_key", "json", '{"id":1,"cmd":"ping","cmd":"ping"}', M)
bad("json_duplicate_key_nested", "json", '{"id":1,"cmd":"publish","channel":"a:b","data":{"k":1,"k":2}}', M)
bad("json_bad_utf8", "json", b'{"id":1,"cmd":"p\xff\xfeing"}', M)
bad("json_overlong_utf8", "json", b'{"id":1,"cmd":"ping","x":"\xc0\xaf"}', M)
bad("json_lone_surrogate", "json", '{"id":1,"cmd":"ping","x":"\\ud800"}', M)
bad("json_id_u64", "json", '{"id":18446744073709551615,"cmd":"ping"}', M)
bad("json_data_beyond_int64", "json", '{"id":1,"cmd":"publish","channel":"a:b","data":18446744073709551615}', M)
bad("json_nan", "json", '{"id":1,"cmd":"publish","channel":"a:b","data":NaN}', M)
bad("json_too_deep", "json", json.dumps({"id": 1, "cmd": "publish", "channel": "a:b", "data": deep(32)}), M)
bad("json_bin_bad_base64", "json", '{"id":1,"cmd":"publish","channel":"a:b","data":{"$bin":"!!!!"}}', J, 104, 1)
bad("json_bin_unpadded", "json", '{"id":1,"cmd":"publish","channel":"a:b","data":{"$bin":"AAE"}}', J, 104, 1)
bad("json_bin_not_string", "json", '{"id":1,"cmd":"publish","channel":"a:b","data":{"$bin":5}}', J, 104, 1)
bad("json_ext_bad_type", "json", '{"id":1,"cmd":"rpc","method":"m","data":{"$ext":[200,"AA=="]}}', J, 104, 1)
bad("json_ext_not_array", "json", '{"id":1,"cmd":"rpc","method":"m","data":{"$ext":"AA=="}}', J, 104, 1)

sys.stdout.write("[\n" + ",\n".join(json.dumps(v, ensure_ascii=False) for v in V) + "\n]\n")
