"""An independent check of tests/vectors/vectors.json with Python's own msgpack and json: for every
valid vector the msgpack hex and the JSON text are the same message under the $bin/$ext rule of
protocol/PROTOCOL.md, and both are exactly what msgpack.packb and json.dumps write. No server."""
import base64
import json
import os

import msgpack
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.environ.get("CARDGW_VECTORS", os.path.join(HERE, "..", "vectors", "vectors.json"))

with open(VECTORS, encoding="utf-8") as f:
    ALL = json.load(f)
VALID = [v for v in ALL if v["kind"] in ("command", "reply", "push")]
INVALID = [v for v in ALL if v["kind"] == "invalid"]


def to_json_model(o):
    """A msgpack value as cardgw writes it in JSON: bin -> {"$bin": base64}, ext -> {"$ext":
    [type, base64]}, a non-string map key -> its JSON text."""
    if isinstance(o, bytes):
        return {"$bin": base64.b64encode(o).decode()}
    if isinstance(o, msgpack.ExtType):
        return {"$ext": [o.code, base64.b64encode(o.data).decode()]}
    if isinstance(o, dict):
        return {
            (k if isinstance(k, str) else json.dumps(to_json_model(k), separators=(",", ":"))):
                to_json_model(v)
            for k, v in o.items()
        }
    if isinstance(o, list):
        return [to_json_model(x) for x in o]
    return o


def unpack(hexstr):
    return msgpack.unpackb(bytes.fromhex(hexstr), raw=False, strict_map_key=False)


def test_vector_file_shape():
    names = [v["name"] for v in ALL]
    assert len(names) == len(set(names)), "vector names must be unique"
    for v in ALL:
        assert v["kind"] in ("command", "reply", "push", "invalid"), v["name"]
    encoders = {v["encoder"] for v in VALID if v["kind"] != "command"}
    assert encoders == {"ok", "error", "error_app", "connect_ok", "position_ok", "publish_ok",
                        "presence_ok", "presence_users_ok", "presence_stats_ok", "rpc_ok", "pub",
                        "join", "unsub", "disconnect", "refresh"}
    cmds = {v["expect"]["cmd"] for v in VALID if v["kind"] == "command"}
    assert cmds == {"connect", "subscribe", "unsubscribe", "publish", "presence", "history",
                    "rpc", "ping", "refresh", "presence_users", "presence_stats"}


@pytest.mark.parametrize("v", VALID, ids=[v["name"] for v in VALID])
def test_msgpack_and_json_are_the_same_message(v):
    obj = unpack(v["msgpack"])
    assert to_json_model(obj) == json.loads(v["json"])


@pytest.mark.parametrize("v", VALID, ids=[v["name"] for v in VALID])
def test_msgpack_bytes_are_canonical(v):
    obj = unpack(v["msgpack"])
    assert msgpack.packb(obj, use_bin_type=True).hex() == v["msgpack"]


@pytest.mark.parametrize("v", VALID, ids=[v["name"] for v in VALID])
def test_json_text_is_canonical(v):
    obj = to_json_model(unpack(v["msgpack"]))
    assert json.dumps(obj, separators=(",", ":"), ensure_ascii=False) == v["json"]


@pytest.mark.parametrize("v", VALID, ids=[v["name"] for v in VALID])
def test_envelope_shape(v):
    obj = json.loads(v["json"])
    assert isinstance(obj, dict)
    if v["kind"] == "command":
        assert isinstance(obj["id"], int) and 1 <= obj["id"] <= 0xFFFFFFFF
        assert obj["cmd"] == v["expect"]["cmd"] and obj["id"] == v["expect"]["id"]
    elif v["kind"] == "reply":
        assert list(obj)[0] == "id" and len(obj) == 2
        assert list(obj)[1] in ("result", "error")
    else:
        assert list(obj)[0] == "push" and "id" not in obj


@pytest.mark.parametrize("v", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector_is_well_formed(v):
    assert v["encoding"] in ("msgpack", "json")
    assert v["status"] in ("malformed", "invalid", "unknown")
    assert sum(k in v for k in ("msgpack", "json", "json_hex")) == 1
    if v["status"] != "malformed":
        assert v["code"] in (102, 104, 113) and v["id"] >= 1
