"""Core relay with one real Redis and two real nodes: authentication (session tokens and JWT),
namespace rules, fan-out across nodes exactly once and in offset order, the server API, the
publish script called directly, membership removal, and a scale check."""
import asyncio
import json
import os
import time

import msgpack
import pytest
import websockets

from conftest import ROOT, Client, connected_client, jwt, metric, run

PUBLISH_LUA = open(os.path.join(ROOT, "scripts", "publish.lua")).read()


def script_publish(r, channel, data_json, size=100, ttl=600):
    """What a backend does without the gateway's API: call scripts/publish.lua directly."""
    keys = ["cardgw:{%s}:m" % channel, "cardgw:{%s}:x" % channel, "cardgw:{%s}" % channel]
    off, epoch = r.eval(PUBLISH_LUA, 3, *keys, data_json, "j", "", size, ttl, 604800)
    return int(off), epoch.decode()


async def pubs(c, n, timeout=10):
    out = []
    while len(out) < n:
        m = await c.next_push(timeout)
        if m.get("push") == "pub":
            out.append(m)
    return out


async def no_more_pubs(c, wait=0.5):
    """No further publication arrives (presence join/leave pushes may)."""
    end = time.time() + wait
    while True:
        try:
            m = await c.next_push(max(0.01, end - time.time()))
        except asyncio.TimeoutError:
            return True
        if m.get("push") in ("pub", "unsub"):
            raise AssertionError("unexpected push %r" % m)


def test_session_token_from_redis(node, redis_server):
    r = redis_server.client()
    r.hset("cardgw:session:tok-1", mapping={"uid": "alice"})
    r.hset("cardgw:session:tok-old", mapping={"uid": "bob", "expires_at": int(time.time()) - 5})

    async def go():
        c = await Client.open(node.ws_url, "msgpack")
        res = await c.connect("tok-1")
        assert res["uid"] == "alice" and res["client"] and res["node"]
        await c.close()
        c = await Client.open(node.ws_url, "json")
        assert (await c.call("connect", token="tok-old"))["error"]["code"] == 110
    run(go())


def test_fanout_across_two_nodes_exactly_once_in_order(make_node, redis_server):
    a, b = make_node(), make_node()
    r = redis_server.client()
    r.sadd("cardgw:group:g1:members", "u1", "u2", "u3")

    async def go():
        c1 = await connected_client(a, "u1", "json")
        c2 = await connected_client(b, "u2", "msgpack")
        c3 = await connected_client(b, "u3", "json")
        pos = {}
        for c in (c1, c2, c3):
            res = (await c.call("subscribe", channel="group:g1"))["result"]
            pos[c] = res["offset"]
        st, body = a.api("/api/v1/publish", {"channel": "group:g1", "data": {"card": "hello"}})
        assert st == 200, body
        first = body["offset"]
        off2, epoch = script_publish(r, "group:g1", '{"card":"from lua"}')
        assert off2 == first + 1 and epoch == body["epoch"]
        st, body = b.api("/api/v1/publish", {"channel": "group:g1", "data": [1, 2, 3]})
        assert body["offset"] == first + 2
        for c in (c1, c2, c3):
            got = await pubs(c, 3)
            assert [p["offset"] for p in got] == [first, first + 1, first + 2]
            assert [p["data"] for p in got] == [{"card": "hello"}, {"card": "from lua"}, [1, 2, 3]]
            assert all(p["channel"] == "group:g1" for p in got)
            assert await no_more_pubs(c)
            await c.close()
    run(go())


def test_permissions(node, redis_server):
    redis_server.client().sadd("cardgw:group:g1:members", "u1")

    async def go():
        c = await connected_client(node, "mallory", "msgpack")
        assert (await c.call("subscribe", channel="group:g1"))["error"]["code"] == 103
        assert (await c.call("subscribe", channel="user:u1"))["error"]["code"] == 103
        assert "result" in await c.call("subscribe", channel="user:mallory")
        # group does not allow client publishes; a publish without subscribing is refused too
        assert (await c.call("publish", channel="group:g1", data=1))["error"]["code"] == 103
        assert (await c.call("ping"))["result"] == {}
        await c.close()
    run(go())


def test_client_publish_where_allowed(node):
    async def go():
        c1 = await connected_client(node, "u1")
        c2 = await connected_client(node, "u2", "msgpack")
        for c in (c1, c2):
            assert "result" in await c.call("subscribe", channel="public:chat")
        r = await c1.call("publish", channel="public:chat", data={"t": "hi"})
        assert r["result"]["offset"] >= 1
        for c in (c1, c2):
            p = (await pubs(c, 1))[0]
            assert p["data"] == {"t": "hi"} and p["from"] == "u1"
    run(go())


def test_user_on_two_devices_and_api_disconnect(make_node):
    a, b = make_node(), make_node()

    async def go():
        d1 = await connected_client(a, "u7", "json")
        d2 = await connected_client(b, "u7", "msgpack")
        other = await connected_client(b, "u8", "json")
        for d in (d1, d2):
            assert "result" in await d.call("subscribe", channel="user:u7")
        st, body = b.api("/api/v1/publish", {"channel": "user:u7", "data": {"exchange": "req"}})
        assert st == 200
        for d in (d1, d2):
            assert (await pubs(d, 1))[0]["data"] == {"exchange": "req"}
        st, body = a.api("/api/v1/disconnect", {"uid": "u7"})
        assert st == 200
        for d in (d1, d2):
            push = await d.next_push()
            assert push["push"] == "disconnect" and push["code"] == 4504
            with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                await d.recv()
            assert e.value.code == 4504
        assert (await other.call("ping"))["result"] == {}
    run(go())


def test_member_removed_is_unsubscribed(make_node, redis_server):
    a, b = make_node(), make_node()
    r = redis_server.client()
    r.sadd("cardgw:group:g2:members", "u1", "u2")

    async def go():
        c1 = await connected_client(a, "u1")
        c2 = await connected_client(b, "u2")
        for c in (c1, c2):
            assert "result" in await c.call("subscribe", channel="group:g2")
        r.srem("cardgw:group:g2:members", "u2")
        st, _ = a.api("/api/v1/unsubscribe", {"uid": "u2", "channel": "group:g2"})
        assert st == 200
        push = await c2.next_event()  # u1's join may reach node b after u2 subscribed
        assert push == {"push": "unsub", "channel": "group:g2", "code": 103,
                        "reason": "removed from channel"}
        a.api("/api/v1/publish", {"channel": "group:g2", "data": "after"})
        assert (await pubs(c1, 1))[0]["data"] == "after"
        assert await no_more_pubs(c2)
        # and they cannot come back
        assert (await c2.call("subscribe", channel="group:g2"))["error"]["code"] == 103
    run(go())


def test_api_errors(node):
    assert node.http("POST", "/api/v1/publish", {"channel": "group:g1", "data": 1},
                     key="wrong")[0] == 401
    assert node.api("/api/v1/publish", {"channel": "group:g1"})[0] == 400
    assert node.api("/api/v1/publish", {"channel": "bad channel", "data": 1})[0] == 400
    assert node.api("/api/v1/publish", {"channel": "nons:x", "data": 1})[0] == 404
    st, body = node.api("/api/v1/broadcast", {"channels": ["user:a", "user:b"], "data": {"x": 1}})
    assert st == 200 and [e["offset"] for e in body["results"]] == [1, 1]
    st, text = node.http("GET", "/api/v1/position?channel=user:a")
    assert st == 200 and '"offset":1' in text


@pytest.mark.slow(rank=1)  # 1,000 clients: CPU heavy, 13 s alone and longer beside others
def test_scale_1000_clients_50_groups_two_nodes(make_node, redis_server):
    """Every expected delivery arrives exactly once and in order (counted per client)."""
    nodes = [make_node({"log_level": "warn"}), make_node({"log_level": "warn"})]
    r = redis_server.client()
    groups = ["group:s%d" % g for g in range(50)]
    members = {}
    for i in range(1000):
        g = groups[i % 50]
        members.setdefault(g, []).append("m%d" % i)
    for g, ms in members.items():
        r.sadd("cardgw:%s:members" % g, *ms)
    npub = 5000

    async def client(i, ready, done, got):
        g = groups[i % 50]
        c = await connected_client(nodes[i % 2], "m%d" % i, "msgpack" if i % 3 else "json")
        res = await c.call("subscribe", channel=g, timeout=30)
        assert "result" in res, res
        ready.append(i)
        expect = npub // 50
        offs = []
        while len(offs) < expect:
            m = await c.next_push(timeout=60)
            if m.get("push") == "pub":
                offs.append(m["offset"])
        got[i] = offs
        await c.close()

    async def go():
        ready, got = [], {}
        tasks = []
        for i in range(1000):
            tasks.append(asyncio.create_task(client(i, ready, None, got)))
            if i % 100 == 99:
                await asyncio.sleep(0.05)
        while len(ready) < 1000:
            await asyncio.sleep(0.05)
            for t in tasks:
                if t.done() and t.exception():
                    raise t.exception()
        sha = r.script_load(PUBLISH_LUA)
        pipe = r.pipeline(transaction=False)
        for k in range(npub):
            g = groups[k % 50]
            keys = ["cardgw:{%s}:m" % g, "cardgw:{%s}:x" % g, "cardgw:{%s}" % g]
            pipe.evalsha(sha, 3, *keys, msgpack.packb({"k": k}), "m", "", 100, 600, 604800)
            if k % 500 == 499:
                pipe.execute()
                await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        for i, offs in got.items():
            assert offs == list(range(1, npub // 50 + 1)), (i, offs[:10])
    run(go(), timeout=240)


def _metric(node, name):
    st, text = node.http("GET", "/metrics")
    value = metric(text, name)
    assert st == 200 and value is not None, "no metric " + name
    return value


@pytest.mark.parametrize("window", [0, 100])
def test_flush_window_coalesces_writes(make_node, redis_server, window):
    """cardgw_socket_writes_total against cardgw_frames_out_total for 40 publications to one
    client. By default a frame is written in the loop turn it was queued in: publications sent
    one at a time, each received before the next is sent, get one socket write each. With
    flush_window_ms the first frame waits that long for more: publications sent back to back
    (each its own Redis message, so its own loop turn) share writes. Order and count are the same
    either way."""
    node = make_node({"flush_window_ms": window})
    r = redis_server.client()

    async def go():
        c = await connected_client(node, "fw")
        await c.call("subscribe", channel="public:fw")
        w0, f0 = _metric(node, "cardgw_socket_writes_total"), _metric(node, "cardgw_frames_out_total")
        got = []
        for k in range(40):
            script_publish(r, "public:fw", '{"k":%d}' % k)
            if not window:
                got += await pubs(c, 1)
        got += await pubs(c, 40 - len(got))
        assert [m["data"]["k"] for m in got] == list(range(40))
        writes = _metric(node, "cardgw_socket_writes_total") - w0
        frames = _metric(node, "cardgw_frames_out_total") - f0
        assert frames == 40
        if window:
            assert 1 <= writes <= frames // 4, (writes, frames)
        else:
            assert writes == frames, (writes, frames)
    run(go())


class RawWs:
    """A bare WebSocket client on a socket, to see the exact frames the node writes."""

    def __init__(self, port):
        import base64
        import socket
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: cardgw.v1.json\r\n"
                        "\r\n" % key).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0]

    def send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        hdr = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                        bytes([0x80 | 126]) + n.to_bytes(2, "big"))
        self.s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def frames(self):
        """Every frame until the node closes the socket: [(opcode, payload)]."""
        data = self.buf
        while True:
            try:
                chunk = self.s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        out, i = [], 0
        while i + 2 <= len(data):
            op, n = data[i] & 0x0F, data[i + 1] & 0x7F
            i += 2
            if n == 126:
                n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
            elif n == 127:
                n, i = int.from_bytes(data[i:i + 8], "big"), i + 8
            out.append((op, data[i:i + n]))
            i += n
        return out


def test_client_close_while_publications_flow_gets_nothing_after_close(node, redis_server):
    """A client that closes first gets the echo of its Close and no frame after it, even while
    publications keep arriving for its channel (RFC 6455 5.5.1)."""
    import threading
    r = redis_server.client()
    stop = threading.Event()

    def publisher():
        sha = r.script_load(PUBLISH_LUA)
        keys = ["cardgw:{public:cl}:m", "cardgw:{public:cl}:x", "cardgw:{public:cl}"]
        while not stop.is_set():
            pipe = r.pipeline(transaction=False)
            for k in range(20):
                pipe.evalsha(sha, 3, *keys, '{"k":%d}' % k, "j", "", 10, 600, 604800)
            pipe.execute()

    for _ in range(5):
        ws = RawWs(node.port)
        ws.send(1, json.dumps({"id": 1, "cmd": "connect", "token": jwt("cl")}).encode())
        ws.send(1, b'{"id":2,"cmd":"subscribe","channel":"public:cl"}')
        t = threading.Thread(target=publisher)
        t.start()
        try:
            time.sleep(0.3)
            ws.send(8, (1000).to_bytes(2, "big") + b"bye")
            frames = ws.frames()
        finally:
            stop.set()
            t.join()
            stop.clear()
        ops = [op for op, _ in frames]
        assert 8 in ops, ops[-5:]
        assert ops.index(8) == len(ops) - 1, "frames after Close: %r" % ops[ops.index(8):][:5]
        assert int.from_bytes(frames[-1][1][:2], "big") == 1000
        assert sum(1 for op in ops if op == 1) > 2  # publications were flowing
