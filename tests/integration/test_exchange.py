"""The card-exchange app end to end, with the reference backend (examples/backend/backend.py) as a
real process beside real nodes and Redis: the directory story (presence with cards across nodes,
join/leave, a killed node's user leaves presence and goes offline), the exchange story (rpc
answered by the backend's inbox worker, the offline stream for a user away, recovery with since,
both users end with each other's card and the backend's tables agree), and a directory snapshot
plus subscribe-from-its-position that equals the backend's state after 1,000 concurrent changes."""
import asyncio
import json
import os
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import API_KEY, JWT_SECRET, ROOT, Client, free_port, run, wait_port_closed

BACKEND = os.path.join(ROOT, "examples", "backend", "backend.py")
NODE_CONF = {"rpc_reply_methods": "card.request,card.accept", "rpc_timeout_ms": 5000,
             "presence_ttl_ms": 1500, "node_registry_interval_ms": 300}


class Backend:
    def __init__(self, redis_url, gateway):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", BACKEND, "--port", str(self.port), "--redis", redis_url,
             "--gateway", gateway, "--api-key", API_KEY, "--jwt-secret", JWT_SECRET],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        end = time.time() + 15
        while True:
            try:
                if self.call("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert self.proc.poll() is None and time.time() < end, self.proc.stdout.read()
            time.sleep(0.05)

    def call(self, method, path, body=None, token=None):
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = "Bearer " + token
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def ok(self, method, path, body=None, token=None):
        st, res = self.call(method, path, body, token)
        assert st == 200, (method, path, st, res)
        return res

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        wait_port_closed(self.port)


@pytest.fixture
def backend_for(redis_server):
    made = []

    def make(node):
        b = Backend(redis_server.url, "http://127.0.0.1:%d" % node.port)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


def card(uid):
    return {"name": uid.upper(), "title": "title of " + uid, "avatar": "https://img/%s.png" % uid}


async def connected(node, token, *channels, enc="json"):
    c = await Client.open(node.ws_url, enc)
    res = await c.connect(token)
    pos = {}
    for ch in channels:
        r = await c.call("subscribe", channel=ch)
        assert "result" in r, r
        pos[ch] = (r["result"]["epoch"], r["result"]["offset"])
    return c, res["client"], pos


async def next_pub(c, timeout=10):
    while True:
        m = await c.next_push(timeout)
        if m.get("push") == "pub":
            return m


async def until(pred, timeout=10, step=0.05):
    end = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.time() < end, "timed out"
        await asyncio.sleep(step)


def test_exchange_story(make_node, redis_server, backend_for):
    n1, n2 = make_node(NODE_CONF), make_node(NODE_CONF)
    be = backend_for(n1)
    r = redis_server.client()
    ta = be.ok("POST", "/login", {"uid": "a", "card": card("a")})["token"]
    tb = be.ok("POST", "/login", {"uid": "b", "card": card("b")})["token"]

    async def go():
        a, _, _ = await connected(n1, ta, "user:a")
        b, _, pos = await connected(n2, tb, "user:b", enc="msgpack")
        await b.close()  # B is away
        await until(lambda: r.pubsub_numsub("cardgw:{user:b}")[0][1] == 0)
        res = await a.call("rpc", method="card.request", data={"to": "b"})
        assert res["result"]["data"] == {"exchange": 1, "status": "pending"}, res
        # refused by the backend: the client gets 119 with the backend's code
        res = await a.call("rpc", method="card.request", data={"to": "nobody"})
        assert res["error"]["code"] == 119 and res["error"]["app_code"] == 404, res
        # the notification worker saw B's card.received once
        notes = await until(lambda: be.ok("GET", "/notifications?uid=b")["notifications"])
        await asyncio.sleep(0.5)
        notes = be.ok("GET", "/notifications?uid=b")["notifications"]
        assert [(x["event"], x["data"]["from"], x["data"]["exchange"]) for x in notes] == \
            [("card.received", "a", 1)], notes
        offline = r.xrange("cardgw:offline")  # the stream itself: one entry, for user:b
        assert [f[b"ch"] for _, f in offline] == [b"user:b"], offline
        # B comes back on the other node and recovers it exactly once
        b, _, _ = await connected(n1, tb)
        res = (await b.call("subscribe", channel="user:b",
                            since={"epoch": pos["user:b"][0], "offset": pos["user:b"][1]}))
        res = res["result"]
        assert res["recovered"] is True
        got = [p["data"] for p in res["publications"]]
        assert got == [{"event": "card.received", "exchange": 1, "from": "a", "status": "pending",
                        "card": card("a")}]
        res = await b.call("rpc", method="card.accept", data={"exchange": 1})
        assert res["result"]["data"] == {"exchange": 1, "status": "accepted", "card": card("a")}
        m = await next_pub(b)
        assert m["data"] == {"event": "card.accepted", "exchange": 1, "with": "a"}
        m = await next_pub(a)
        assert m["data"] == {"event": "card.received", "exchange": 1, "from": "b",
                             "status": "accepted",
                             "card": card("b")}
        # nothing else came, to either
        for cl in (a, b):
            with pytest.raises(asyncio.TimeoutError):
                await next_pub(cl, 0.5)
        # both hold each other's card, and the backend's tables say so
        ca = be.ok("GET", "/contacts", token=ta)
        cb = be.ok("GET", "/contacts", token=tb)
        assert ca["contacts"] == [{"uid": "b", "card": card("b"), "exchange": 1}]
        assert cb["contacts"] == [{"uid": "a", "card": card("a"), "exchange": 1}]
        assert ca["exchanges"] == cb["exchanges"] == [
            {"id": 1, "from": "a", "to": "b", "status": "accepted"}]
        # A was online all along: no notification for A
        assert be.ok("GET", "/notifications?uid=a")["notifications"] == []
    run(go())


def test_directory_story(make_node, redis_server, backend_for):
    n1, n2, n3 = make_node(NODE_CONF), make_node(NODE_CONF), make_node(NODE_CONF)
    be = backend_for(n1)
    tok = {}
    for u in "abc":
        tok[u] = be.ok("POST", "/login", {"uid": u, "card": card(u)})["token"]
        be.ok("POST", "/groups/g/join", token=tok[u])

    async def presence_push(cl, kind, uid):
        while True:
            m = await cl.next_push(10)
            if m.get("push") == kind and m["info"]["uid"] == uid:
                return m

    async def go():
        a, _, _ = await connected(n1, tok["a"], "group:g")
        b, _, _ = await connected(n2, tok["b"], "group:g")
        m = await presence_push(a, "join", "b")
        assert m["info"]["conn_info"] == card("b")
        users = (await b.call("presence_users", channel="group:g"))["result"]["users"]
        assert sorted(users, key=lambda u: u["uid"]) == [
            {"uid": "a", "connections": 1, "conn_info": card("a")},
            {"uid": "b", "connections": 1, "conn_info": card("b")}]
        c, _, _ = await connected(n3, tok["c"], "group:g")
        for cl in (a, b):
            assert (await presence_push(cl, "join", "c"))["info"]["conn_info"] == card("c")
        d = be.ok("GET", "/groups/g/directory", token=tok["a"])
        assert {m["uid"]: (m["card"], m["online"]) for m in d["members"]} == {
            u: (card(u), True) for u in "abc"}
        await c.close()
        for cl in (a, b):
            assert (await presence_push(cl, "leave", "c"))["info"]["uid"] == "c"
        d = be.ok("GET", "/groups/g/directory", token=tok["a"])
        assert [m["online"] for m in d["members"]] == [True, True, False]
        assert d["members"][2]["last_seen"] > (time.time() - 10) * 1000
        # C again, then its node dies: nobody announces it; presence and online forget C
        c, _, _ = await connected(n3, tok["c"], "group:g")
        await presence_push(a, "join", "c")
        n3.proc.kill()
        n3.stop()
        t0 = time.time()
        await until(lambda: not any(
            m["online"] for m in be.ok("GET", "/groups/g/directory", token=tok["a"])["members"]
            if m["uid"] == "c"), timeout=5)
        offline = time.time() - t0

        async def left():
            res = (await a.call("presence_users", channel="group:g"))["result"]["users"]
            return "c" not in {u["uid"] for u in res}
        while not await left():
            assert time.time() - t0 < 6
            await asyncio.sleep(0.1)
        gone = time.time() - t0
        print("killed node: C offline after %.1f s (3 x 300 ms registry), out of presence after "
              "%.1f s (presence_ttl_ms 1500)" % (offline, gone))
        # presence: presence_ttl_ms plus up to 1 s of a shared presence read
        assert offline < 0.9 + 0.6 and gone < 1.5 + 1.0 + 0.6
    run(go())


def test_snapshot_plus_position_equals_the_backend_after_a_burst(make_node, redis_server,
                                                                 backend_for):
    node = make_node(NODE_CONF)
    be = backend_for(node)
    users = ["u%d" % k for k in range(40)]
    tok = {u: be.ok("POST", "/login", {"uid": u, "card": card(u)})["token"] for u in users}
    tx = be.ok("POST", "/login", {"uid": "x", "card": card("x")})["token"]
    be.ok("POST", "/groups/g/join", token=tx)
    for u in users[:20]:
        be.ok("POST", "/groups/g/join", token=tok[u])

    def apply(state, data):
        if data["event"] == "member_joined":
            state[data["uid"]] = data["card"]
        elif data["event"] == "member_left":
            state.pop(data["uid"], None)
        elif data["event"] == "card_updated" and data["uid"] in state:
            state[data["uid"]] = data["card"]

    async def follower(stop, delay):
        """Snapshot from the backend, subscribe from its position, apply what follows."""
        await asyncio.sleep(delay)
        loop = asyncio.get_running_loop()
        snap = await loop.run_in_executor(None, lambda: be.ok("GET", "/groups/g/directory",
                                                              token=tx))
        state = {m["uid"]: m["card"] for m in snap["members"]}
        c = await Client.open(node.ws_url)
        await c.connect(tx)
        pos = snap["position"]
        res = (await c.call("subscribe", channel="group:g",
                            since={"epoch": pos["epoch"], "offset": pos["offset"]}))["result"]
        assert res["recovered"] is True, res
        last = pos["offset"]
        for p in res.get("publications", []):
            assert p["offset"] == last + 1
            last = p["offset"]
            apply(state, p["data"])
        while not (stop.is_set() and last >= stop.top):
            try:
                m = await c.next_event(0.5)
            except asyncio.TimeoutError:
                continue
            assert m["push"] == "pub" and m["offset"] == last + 1, m
            last = m["offset"]
            apply(state, m["data"])
        return state, snap["position"]["offset"]

    def burst():
        """16 threads, each owning a few users, make 1,000 changes to the group in all: every
        request changes it (a member leaves or updates their card, another joins)."""
        def worker(i, count):
            rnd = random.Random(i)
            mine = users[i::16]
            member = {u: users.index(u) < 20 for u in mine}
            for k in range(count):
                u = rnd.choice(mine)
                if member[u] and rnd.random() < 0.5:
                    path, body, method = "/card", {"card": {"name": u, "v": k}}, "PUT"
                else:
                    path = "/groups/g/%s" % ("leave" if member[u] else "join")
                    body, method = None, "POST"
                    member[u] = not member[u]
                st, res = be.call(method, path, body, token=tok[u])
                assert st == 200, (st, res)
        counts = [1000 // 16 + (1 if i < 1000 % 16 else 0) for i in range(16)]
        threads = [threading.Thread(target=worker, args=(i, counts[i])) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    async def go():
        stop = threading.Event()
        stop.top = None
        loop = asyncio.get_running_loop()
        followers = [asyncio.ensure_future(follower(stop, d)) for d in (0, 0.5, 1.0, 1.5)]
        await loop.run_in_executor(None, burst)
        final = be.ok("GET", "/groups/g/directory", token=tx)
        stop.top = final["position"]["offset"]
        stop.set()
        want = {m["uid"]: m["card"] for m in final["members"]}
        results = await asyncio.gather(*followers)
        taken = [off for _, off in results]
        print("snapshots taken at offsets %s of %d" % (taken, stop.top))
        assert stop.top >= 1000  # every change of the burst is a publication on the group
        assert len(set(taken)) > 1  # snapshots from different points of the burst
        for state, _ in results:
            assert state == want
    run(go(), timeout=180)
