"""Bad input gets a documented reply or close code, and another client on the same node keeps
working (it still gets pong). Codes are the ones in protocol/PROTOCOL.md."""
import json

import msgpack
import pytest
import websockets

from conftest import Client, run


async def expect_close(c, code, timeout=5):
    with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
        for _ in range(100):
            await c.recv(timeout)
    assert e.value.code == code, (e.value.code, e.value.reason)


async def bystander_ok(node):
    c = await Client.open(node.ws_url, "msgpack")
    assert (await c.call("ping"))["result"] == {}
    await c.close()


def msgpack_bomb(depth):
    """A publish whose data nests `depth` arrays (msgpack itself refuses to pack that deep)."""
    head = msgpack.packb({"id": 1, "cmd": "publish", "channel": "public:a"})
    return bytes([0x84]) + head[1:] + msgpack.packb("data") + b"\x91" * depth + b"\x01"


def json_bomb(depth):
    return '{"id":1,"cmd":"publish","channel":"public:a","data":%s1%s}' % ("[" * depth, "]" * depth)


MALFORMED = [
    # (encoding, raw frame, close code)
    ("msgpack", msgpack.packb({"id": 1, "cmd": "ping"})[:-2], 4500),               # truncated
    ("msgpack", b"\xdd\xff\xff\xff\xff\x01", 4500),                                # array32 of 4G
    ("msgpack", b"\xdf\xff\xff\xff\xff", 4500),                                    # map32 of 4G
    ("msgpack", b"\x82\xa2id\x01\xa3cmd\xdb\xff\xff\xff\xf0ping", 4500),           # str32 4G
    ("msgpack", msgpack_bomb(1000), 4500),                                         # nesting bomb
    ("msgpack", msgpack.packb([1, "ping"]), 4500),                                 # not a map
    ("msgpack", msgpack.packb({"id": 1, "cmd": "ping"}) + b"\x01", 4500),          # trailing
    ("json", '{"id":1,"cmd":"ping"', 4500),                                        # truncated
    ("json", json_bomb(1000), 4500),                                               # nesting bomb
    ("json", '{"cmd":"ping"}', 4500),                                              # no id
    ("json", '{"id":0,"cmd":"ping"}', 4500),                                       # id 0
]


@pytest.mark.parametrize("enc,frame,code", MALFORMED)
def test_malformed_frame_closes_with_documented_code(node, enc, frame, code):
    async def go():
        c = await Client.open(node.ws_url, enc)
        await c.send_raw(frame)
        await expect_close(c, code)
        await bystander_ok(node)
    run(go())


def test_invalid_utf8_in_json_text_frame(node):
    """websockets refuses to send invalid UTF-8 as text, so send the raw frame ourselves."""
    async def go():
        c = await Client.open(node.ws_url, "json")
        payload = b'{"id":1,"cmd":"p\xff\xfeing"}'
        # FIN + text opcode, masked, key 0 so the payload goes as is
        frame = bytes([0x81, 0x80 | len(payload), 0, 0, 0, 0]) + payload
        c.ws.transport.write(frame)
        await expect_close(c, 4500)
        await bystander_ok(node)
    run(go())


@pytest.mark.parametrize("enc", ["json", "msgpack"])
def test_unknown_command_and_wrong_types_get_error_replies(node, enc):
    async def go():
        c = await Client.open(node.ws_url, enc)
        r = await c.call("fly")
        assert r["error"]["code"] == 102
        r = await c.call("subscribe", channel=42)
        assert r["error"]["code"] == 104
        r = await c.call("subscribe")
        assert r["error"]["code"] == 104
        r = await c.call("subscribe", channel="public:a")
        assert r["error"]["code"] == 108  # not connected yet
        await c.connect(__import__("conftest").jwt("u1"))
        r = await c.call("subscribe", channel="no spaces:allowed")
        assert r["error"]["code"] == 113  # a string breaking the channel grammar (PROTOCOL.md)
        r = await c.call("subscribe", channel="nosuchns:x")
        assert r["error"]["code"] == 112
        assert (await c.call("ping"))["result"] == {}  # still connected
        await c.close()
    run(go())


def test_oversized_frame_closes_4502(make_node):
    node = make_node({"max_frame_bytes": 1024})

    async def go():
        c = await Client.open(node.ws_url, "json")
        await c.send_raw(json.dumps({"id": 1, "cmd": "ping", "pad": "x" * 5000}))
        await expect_close(c, 4502)
        await bystander_ok(node)
    run(go())


def test_wrong_frame_type_closes_4503(node):
    async def go():
        c = await Client.open(node.ws_url, "json")
        await c.send_raw(b'{"id":1,"cmd":"ping"}')  # binary frame on the json subprotocol
        await expect_close(c, 4503)
        c = await Client.open(node.ws_url, "msgpack")
        await c.send_raw('{"id":1,"cmd":"ping"}')  # text frame on the msgpack subprotocol
        await expect_close(c, 4503)
        await bystander_ok(node)
    run(go())


def test_error_flood_and_command_flood_close_4004(make_node):
    node = make_node({"max_errors_per_minute": 5, "commands_per_second": 10, "command_burst": 20})

    async def go():
        c = await Client.open(node.ws_url, "json")
        for i in range(10):
            await c.send_raw(json.dumps({"id": i + 1, "cmd": "nope"}))
        await expect_close(c, 4004)
        c = await Client.open(node.ws_url, "json")
        for i in range(200):
            try:
                await c.send_raw(json.dumps({"id": i + 1, "cmd": "ping"}))
            except websockets.exceptions.ConnectionClosed:
                break
        await expect_close(c, 4004)
        await bystander_ok(node)
    run(go())


def test_bad_token_and_expired_token(node):
    from conftest import jwt
    import time

    async def go():
        c = await Client.open(node.ws_url, "json")
        r = await c.call("connect", token=jwt("u1", secret="wrong"))
        assert r["error"]["code"] == 101
        await expect_close(c, 4501)
        c = await Client.open(node.ws_url, "json")
        r = await c.call("connect", token="no-such-session")
        assert r["error"]["code"] == 101
        await expect_close(c, 4501)
        c = await Client.open(node.ws_url, "msgpack")
        r = await c.call("connect", token=jwt("u1", exp=int(time.time()) - 120))  # past the leeway
        assert r["error"]["code"] == 110
        await expect_close(c, 4005)
        await bystander_ok(node)
    run(go())
