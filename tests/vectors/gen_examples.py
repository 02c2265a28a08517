# gen_examples.py — the "Examples" section of PROTOCOL.md from tests/vectors/vectors.json.
import json, sys
V = {v["name"]: v for v in json.load(open(sys.argv[1]))}
SKIP = {"publish_rich", "publish_bin", "publish_max_depth", "subscribe_max_channel", "pub_rich", "pub_big", "rpc_ok_big",
        "connect_null_client", "subscribe_since_zero", "ping_max_id", "error_unicode"}
def hexfmt(h):
    return " ".join(h[i:i+2] for i in range(0, len(h), 2))
out = []
for kind, title in (("command", "Commands"), ("reply", "Replies"), ("push", "Pushes")):
    out.append(f"### {title}\n")
    for v in V.values():
        if v["kind"] != kind or v["name"] in SKIP:
            continue
        out.append(f"`{v['name']}`\n\n```\njson:    {v['json']}\nmsgpack: {hexfmt(v['msgpack'])}\n```\n")
print("\n".join(out))
