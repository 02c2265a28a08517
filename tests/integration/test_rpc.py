"""rpc that returns the backend's answer (issue 14): a real worker (redis-py, a consumer group on
cardgw:inbox) answers by PUBLISHing to the reply channel named in the entry; the node hands the
answer to the waiting client, or error 118 after rpc_timeout_ms, 119 for the backend's refusal."""
import asyncio
import json
import re
import threading
import time

import msgpack
import redis

from conftest import RedisServer, connected_client, run


def labelled(text, name, label):
    """{label value: int} of the series of metric `name` in a /metrics text."""
    out = {}
    for line in text.splitlines():
        m = re.match(r'%s\{%s="([^"]*)"\} (\d+)$' % (re.escape(name), label), line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def metrics(node):
    st, text = node.http("GET", "/metrics")
    assert st == 200
    return text


def dropped(node):
    return labelled(metrics(node), "cardgw_rpc_answers_dropped_total", "reason")


def waits(node):
    return labelled(metrics(node), "cardgw_rpc_waits_total", "outcome")


class Worker:
    """A backend worker as a user would write it: XREADGROUP on cardgw:inbox, and for entries
    that carry `reply`, PUBLISH {"req", "result"} or {"req", "error"} there (JSON text, or msgpack
    when the method says so). Methods: echo, fail, fail_nocode, silent (never answered), late
    (answered after `late_s`), mp (a msgpack answer with bin data)."""

    def __init__(self, redis_port, late_s=0.8):
        self.r = redis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=5)
        self.late_s = late_s
        self.seen = []  # (entry id, fields) of every entry read
        self.stop_ev = threading.Event()
        try:
            self.r.xgroup_create("cardgw:inbox", "workers", id="$", mkstream=True)
        except redis.exceptions.ResponseError:
            pass  # BUSYGROUP: another worker made it
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def answer(self, f, msg, as_msgpack=False):
        body = msgpack.packb(msg, use_bin_type=True) if as_msgpack else json.dumps(msg)
        self.r.publish(f[b"reply"], body)

    def handle(self, f):
        method = f[b"method"].decode()
        data = msgpack.unpackb(f[b"data"], raw=False)
        req = f[b"req"].decode()
        if method == "echo":
            # bin data cannot be JSON: such an answer goes as msgpack
            self.answer(f, {"req": req, "result": {"echo": data, "uid": f[b"uid"].decode(),
                                                    "node": f[b"node"].decode()}},
                        as_msgpack=isinstance(data, bytes))
        elif method == "fail":
            self.answer(f, {"req": req, "error": {"code": 409, "message": "card already taken"}})
        elif method == "fail_nocode":
            self.answer(f, {"req": req, "error": {"message": "no such card"}})
        elif method == "mp":
            self.answer(f, {"req": req, "result": {"bin": b"\x00\xff", "n": data}}, as_msgpack=True)
        elif method == "late":
            threading.Timer(self.late_s, self.answer, (f, {"req": req, "result": "late"})).start()
        # silent: never answered

    def loop(self):
        while not self.stop_ev.is_set():
            try:
                got = self.r.xreadgroup("workers", "w1", {"cardgw:inbox": ">"}, count=50, block=100)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                time.sleep(0.1)
                continue
            for _, entries in got or []:
                for eid, f in entries:
                    self.seen.append((eid, f))
                    if b"reply" in f:
                        self.handle(f)
                    self.r.xack("cardgw:inbox", "workers", eid)

    def wait_seen(self, n, timeout=5):
        end = time.time() + timeout
        while len(self.seen) < n and time.time() < end:
            time.sleep(0.02)
        assert len(self.seen) >= n, self.seen

    def stop(self):
        self.stop_ev.set()
        self.t.join(5)


def worker_for(redis_server, **kw):
    return Worker(redis_server.port, **kw)


def test_rpc_result_round_trip_json_and_msgpack(make_node, redis_server):
    node = make_node({"rpc_reply_methods": "echo, mp"})
    w = worker_for(redis_server)

    async def go():
        cj = await connected_client(node, "alice")
        cm = await connected_client(node, "bob", enc="msgpack")
        r = await cj.call("rpc", method="echo", data={"card": "c1", "n": [1, 2.5, None]})
        assert r["result"]["data"] == {"echo": {"card": "c1", "n": [1, 2.5, None]}, "uid": "alice",
                                       "node": r["result"]["data"]["node"]}, r
        assert r["result"]["data"]["node"], r
        r = await cm.call("rpc", method="echo", data=b"\x01\x02")
        assert r["result"]["data"]["echo"] == b"\x01\x02" and r["result"]["data"]["uid"] == "bob", r
        # a msgpack answer: bin reaches a msgpack client as bin, a JSON client as {"$bin": ...}
        r = await cm.call("rpc", method="mp", data=7)
        assert r["result"]["data"] == {"bin": b"\x00\xff", "n": 7}, r
        r = await cj.call("rpc", method="mp", data=8)
        assert r["result"]["data"] == {"bin": {"$bin": "AP8="}, "n": 8}, r
        # several at once, answered in whatever order: each reply goes to its own id
        ids = []
        for k in range(10):
            i = cj.next_id
            cj.next_id += 1
            ids.append(i)
            await cj.ws.send(json.dumps({"id": i, "cmd": "rpc", "method": "echo", "data": k}))
        got = {}
        while len(got) < 10:
            m = await cj.recv()
            got[m["id"]] = m
        assert [got[i]["result"]["data"]["echo"] for i in ids] == list(range(10))
    try:
        run(go())
    finally:
        w.stop()
    assert waits(node)["result"] == 14
    assert sum(dropped(node).values()) == 0
    assert metrics(node).count("\ncardgw_rpc_pending 0\n") == 1
    # the inbox entries of waiting calls name the reply channel and a request id
    f = w.seen[0][1]
    assert f[b"reply"].decode().startswith("cardgw:reply:") and f[b"req"]


def test_rpc_answers_reach_the_node_that_asked(make_node, redis_server):
    a = make_node({"rpc_reply_methods": "*", "node_id": "node-a"})
    b = make_node({"rpc_reply_methods": "*", "node_id": "node-b"})
    w = worker_for(redis_server)

    async def go():
        ca = await connected_client(a, "ua")
        cb = await connected_client(b, "ub")
        for k in range(5):
            ra, rb = await asyncio.gather(ca.call("rpc", method="echo", data=k),
                                          cb.call("rpc", method="echo", data=-k))
            assert ra["result"]["data"] == {"echo": k, "uid": "ua", "node": "node-a"}, ra
            assert rb["result"]["data"] == {"echo": -k, "uid": "ub", "node": "node-b"}, rb
    try:
        run(go())
    finally:
        w.stop()
    replies = {f[b"reply"] for _, f in w.seen}
    assert replies == {b"cardgw:reply:node-a", b"cardgw:reply:node-b"}
    for n in (a, b):
        assert waits(n)["result"] == 5 and sum(dropped(n).values()) == 0


def test_rpc_backend_error_is_passed_through(make_node, redis_server):
    # backend errors are not the client's: they do not count towards max_errors_per_minute
    node = make_node({"rpc_reply_methods": "*", "max_errors_per_minute": 2})
    w = worker_for(redis_server)

    async def go():
        c = await connected_client(node, "carol")
        for _ in range(4):
            r = await c.call("rpc", method="fail", data={})
            assert r["error"] == {"code": 119, "message": "card already taken", "app_code": 409}, r
        cm = await connected_client(node, "carol", enc="msgpack")
        r = await cm.call("rpc", method="fail_nocode", data=None)
        assert r["error"] == {"code": 119, "message": "no such card"}, r
        assert "result" in await c.call("ping")
    try:
        run(go())
    finally:
        w.stop()
    assert waits(node)["error"] == 5


def test_rpc_timeout_then_the_connection_still_works(make_node, redis_server):
    node = make_node({"rpc_reply_methods": "echo, silent, late", "rpc_timeout_ms": 600})
    w = worker_for(redis_server, late_s=1.2)

    async def go():
        c = await connected_client(node, "dave")
        t0 = time.time()
        r = await c.call("rpc", method="silent", data=1)
        took = time.time() - t0
        assert r["error"]["code"] == 118, r
        assert 0.5 <= took < 2.0, took
        assert "result" in await c.call("ping")
        r = await c.call("rpc", method="echo", data=2)
        assert r["result"]["data"]["echo"] == 2, r
        # answered after the timeout: the client got 118, the late answer is dropped as unknown
        r = await c.call("rpc", method="late", data=3)
        assert r["error"]["code"] == 118, r
        await asyncio.sleep(1.0)
        assert "result" in await c.call("ping")
    try:
        run(go())
    finally:
        w.stop()
    assert waits(node)["timeout"] == 2
    assert dropped(node)["unknown"] == 1


def test_rpc_answer_for_a_client_that_left_is_dropped(make_node, redis_server):
    node = make_node({"rpc_reply_methods": "late, echo"})
    w = worker_for(redis_server, late_s=0.8)

    async def go():
        c = await connected_client(node, "erin")
        i = c.next_id
        await c.ws.send(json.dumps({"id": i, "cmd": "rpc", "method": "late", "data": 1}))
        await asyncio.get_running_loop().run_in_executor(None, w.wait_seen, 1)
        await c.close()
        await asyncio.sleep(1.5)  # the answer arrives for a closed connection
        c2 = await connected_client(node, "erin")
        r = await c2.call("rpc", method="echo", data=5)
        assert r["result"]["data"]["echo"] == 5
    try:
        run(go())
    finally:
        w.stop()
    assert dropped(node)["closed"] == 1
    assert waits(node)["closed"] == 1 and waits(node)["timeout"] == 0


def test_rpc_malformed_answers_are_counted_and_ignored(make_node, redis_server):
    node = make_node({"rpc_reply_methods": "*", "rpc_max_answer_bytes": 2048, "node_id": "nm"})
    w = worker_for(redis_server)
    r = redis_server.client()
    deep = "[" * 40 + "]" * 40
    bad = [
        b"", b"not json", b"{", b'{"req": 5, "result": 1}', b'{"result": 1}',
        b'{"req": "x"}', b'{"req": "x", "result": 1, "error": {}}', b'{"req": "x", "error": 3}',
        b'{"req": "x", "error": {"code": "409"}}', b'{"req": "x", "error": {"message": 1}}',
        b'{"req": "x", "req": "y", "result": 1}', ('{"req": "x", "result": %s}' % deep).encode(),
        b'{"req": "' + b"r" * 100 + b'", "result": 1}', b'{"req": "\xff", "result": 1}',
        msgpack.packb([1, 2]), msgpack.packb({"req": "x", "result": 1}) + b"\x00",
        b"\xdf\xff\xff\xff\xff", b"\x81\xa3req",
    ]
    for m in bad:
        r.publish("cardgw:reply:nm", m)
    r.publish("cardgw:reply:nm", json.dumps({"req": "x", "result": "y" * 3000}))  # too big
    r.publish("cardgw:reply:nm", json.dumps({"req": "nope-1", "result": 1}))  # unknown
    r.publish("cardgw:reply:nm", msgpack.packb({"req": "x", "result": 1}))  # well formed, unknown

    async def go():
        c = await connected_client(node, "frank")
        r2 = await c.call("rpc", method="echo", data="still fine")
        assert r2["result"]["data"]["echo"] == "still fine", r2
    try:
        run(go())
    finally:
        w.stop()
    d = dropped(node)
    assert d["malformed"] == len(bad) and d["too_big"] == 1 and d["unknown"] == 2, d
    assert "dropped a message on cardgw:reply:nm" in node.read_log()


def test_rpc_methods_not_listed_stay_fire_and_forget(make_node, redis_server):
    node = make_node({"rpc_reply_methods": "echo"})
    w = worker_for(redis_server)

    async def go():
        c = await connected_client(node, "gina")
        r = await c.call("rpc", method="note", data={"k": 1})
        assert re.match(r"^\d+-\d+$", r["result"]["data"]), r  # the inbox entry id, at once
        r = await c.call("rpc", method="echo", data=1)
        assert r["result"]["data"]["echo"] == 1, r
    try:
        run(go())
    finally:
        w.stop()
    by_method = {f[b"method"]: f for _, f in w.seen}
    assert b"reply" not in by_method[b"note"] and b"req" not in by_method[b"note"]
    assert by_method[b"echo"][b"reply"] == b"cardgw:reply:" + by_method[b"echo"][b"node"]
    assert waits(node)["result"] == 1


def test_rpc_pending_calls_per_connection_are_bounded(make_node, redis_server):
    node = make_node({"rpc_reply_methods": "*", "max_pending_rpcs_per_connection": 3,
                      "rpc_timeout_ms": 1500})
    w = worker_for(redis_server)

    async def go():
        c = await connected_client(node, "hal")
        ids = []
        for k in range(5):
            i = c.next_id
            c.next_id += 1
            ids.append(i)
            await c.ws.send(json.dumps({"id": i, "cmd": "rpc", "method": "silent", "data": k}))
        got = {}
        while len(got) < 2:  # the two past the limit are refused at once
            m = await c.recv(timeout=1)
            got[m["id"]] = m
        assert sorted(got) == ids[3:] and all(m["error"]["code"] == 115 for m in got.values())
        assert "\ncardgw_rpc_pending 3\n" in metrics(node)
        while len(got) < 5:
            m = await c.recv(timeout=3)
            got[m["id"]] = m
        assert all(got[i]["error"]["code"] == 118 for i in ids[:3])
        # another connection of the same user has its own allowance
        c2 = await connected_client(node, "hal")
        assert (await c2.call("rpc", method="echo", data=1))["result"]["data"]["echo"] == 1
    try:
        run(go())
    finally:
        w.stop()
    assert "\ncardgw_rpc_pending 0\n" in metrics(node)


def test_rpc_waiting_calls_get_111_when_redis_goes_down(make_node, redis_server):
    node = make_node({"rpc_reply_methods": "*", "rpc_timeout_ms": 10000})
    w = worker_for(redis_server)

    async def go():
        c = await connected_client(node, "ivy")
        i = c.next_id
        c.next_id += 1
        await c.ws.send(json.dumps({"id": i, "cmd": "rpc", "method": "silent", "data": 1}))
        await asyncio.get_running_loop().run_in_executor(None, w.wait_seen, 1)
        w.stop()
        t0 = time.time()
        redis_server.stop()
        m = await c.recv(timeout=5)
        assert m["id"] == i and m["error"]["code"] == 111, m
        assert time.time() - t0 < 3
        r = await c.call("rpc", method="echo", data=2)  # while down: 111 at once
        assert r["error"]["code"] == 111, r
        redis_server.start()
        w2 = worker_for(redis_server)
        try:
            for _ in range(100):  # the node reconnects and subscribes its reply channel again
                r = await c.call("rpc", method="echo", data=3)
                if "result" in r:
                    break
                assert r["error"]["code"] == 111, r
                await asyncio.sleep(0.1)
            assert r["result"]["data"]["echo"] == 3, r
        finally:
            w2.stop()
    try:
        run(go())
    finally:
        w.stop()
    assert waits(node)["unavailable"] >= 1


def test_rpc_with_redis_shards_answers_come_through_the_main_redis(make_node, redis_server):
    """With redis_shards the inbox and the reply channel stay on the main Redis (redis_url); a
    shard going down does not touch waiting calls."""
    shard = RedisServer().start()
    try:
        node = make_node({"rpc_reply_methods": "*", "redis_shards": shard.url,
                          "rpc_timeout_ms": 3000})
        w = worker_for(redis_server)

        async def go():
            c = await connected_client(node, "jo")
            r = await c.call("rpc", method="echo", data="via main")
            assert r["result"]["data"]["echo"] == "via main", r
            i = c.next_id
            c.next_id += 1
            await c.ws.send(json.dumps({"id": i, "cmd": "rpc", "method": "late", "data": 1}))
            await asyncio.get_running_loop().run_in_executor(None, w.wait_seen, 2)
            shard.stop()
            m = await c.recv(timeout=5)
            assert m["id"] == i and m["result"]["data"] == "late", m
        try:
            run(go())
        finally:
            w.stop()
        assert waits(node)["result"] == 2
    finally:
        shard.cleanup()
