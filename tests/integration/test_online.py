"""Online status per user across nodes and devices (GET/POST /api/v1/online, gateway/online.c):
each node mirrors its users' connection counts into cardgw:online:<node id>, which counts while
the node is live in cardgw:nodes; cardgw:seen keeps last_seen."""
import asyncio
import json
import signal
import time
from urllib.parse import urlencode

from conftest import assert_clean_exit, connected_client, run

IV_MS = 300  # node_registry_interval_ms: a killed node's users go offline within 3 of them
FAST = {"node_registry_interval_ms": IV_MS}


def online(node, *uids, method="GET"):
    if method == "GET":
        # encoded as any HTTP client does (lws splits the query at '&' and ';', then decodes)
        st, body = node.http("GET", "/api/v1/online?" + urlencode([("uid", u) for u in uids]))
    else:
        st, body = node.http("POST", "/api/v1/online", {"uids": list(uids)})
    assert st == 200, (st, body)
    users = json.loads(body)["users"]
    assert [u["uid"] for u in users] == list(uids)
    return users


def status(node, uid):
    return online(node, uid)[0]


def wait_for(pred, what, timeout=5.0, every=0.02):
    """Polls pred() until it returns something true; returns (that value, seconds waited)."""
    t0 = time.time()
    while True:
        v = pred()
        if v:
            return v, time.time() - t0
        assert time.time() - t0 < timeout, what
        time.sleep(every)


def test_one_user_on_two_nodes_with_two_devices(make_node, redis_server):
    a, b = make_node(FAST), make_node(FAST)

    async def go():
        t0 = int(time.time() * 1000)
        phone = await connected_client(a, "alice")
        laptop = await connected_client(b, "alice")
        other = await connected_client(b, "bob", enc="msgpack")
        s, _ = wait_for(lambda: (lambda x: x if x["connections"] == 2 else None)(
            status(a, "alice")), "alice's two devices")
        assert s["online"] is True and s["last_seen"] >= t0
        # many uids in one call, in the request's order; unknown ones are offline, never seen
        for method in ("GET", "POST"):
            users = online(b, "nobody", "alice", "bob", "ghost", "alice", method=method)
            assert users[0] == {"uid": "nobody", "online": False, "connections": 0,
                                "last_seen": None}
            assert users[1]["online"] is True and users[1]["connections"] == 2
            assert users[2]["online"] is True and users[2]["connections"] == 1
            assert users[3]["last_seen"] is None and users[4] == users[1]
        # one device goes: still online on the other node
        await laptop.close()
        s, _ = wait_for(lambda: (lambda x: x if x["connections"] == 1 else None)(
            status(b, "alice")), "alice down to one device")
        assert s["online"] is True
        # the last one goes: offline, last seen when it closed
        t1 = int(time.time() * 1000)
        await phone.close()
        s, _ = wait_for(lambda: (lambda x: x if not x["online"] else None)(status(b, "alice")),
                        "alice offline")
        assert s["connections"] == 0 and t1 <= s["last_seen"] <= int(time.time() * 1000)
        assert status(a, "bob")["connections"] == 1
        await other.close()
    run(go())


def test_bad_requests(make_node):
    a = make_node(FAST)
    assert a.http("GET", "/api/v1/online?uid=a", key=None)[0] == 401
    assert a.http("GET", "/api/v1/online?uid=a", key="wrong")[0] == 401
    assert a.http("POST", "/api/v1/online", {"uids": ["a"]}, key=None)[0] == 401
    for path in ("/api/v1/online", "/api/v1/online?x=1", "/api/v1/online?uid=a%20b",
                 "/api/v1/online?uid=", "/api/v1/online?uid=ok&uid=a%7Fb",
                 "/api/v1/online?uid=" + "u" * 128, "/api/v1/online?uid=" + "u" * 300,
                 "/api/v1/online?uid=ok&uid=" + "u" * 300):
        st, body = a.http("GET", path)
        assert st == 400, (path, st, body)
    for body in ({}, {"uids": []}, {"uids": "a"}, {"uids": ["a", 7]}, {"uids": ["a b"]},
                 {"uids": ["u%d" % i for i in range(1001)]}):
        assert a.http("POST", "/api/v1/online", body)[0] == 400, body
    # the bound itself is fine; uids use the whole alphabet tokens may use
    users = online(a, *["u%d" % i for i in range(1000)], method="POST")
    assert len(users) == 1000 and not any(u["online"] for u in users)
    assert online(a, "a.b@c=d,f;g-h_i")[0]["online"] is False
    st, body = a.http("GET", "/api/v1/online?uid=a%2Bb&other=1&uid=" + "u" * 127)
    assert st == 200 and [u["uid"] for u in json.loads(body)["users"]] == ["a+b", "u" * 127]


def test_killed_node_users_go_offline_within_three_intervals(make_node, redis_server):
    a = make_node(FAST)
    b = make_node(dict(FAST, node_id="fixed-b"))
    r = redis_server.client()

    async def go():
        c = await connected_client(b, "kim")
        wait_for(lambda: status(a, "kim")["online"], "kim online")
        b.proc.kill()
        t0 = time.time()
        _, took = wait_for(lambda: not status(a, "kim")["online"], "kim offline", timeout=5)
        print("a killed node's users went offline after %.2f s" % took)
        assert took < 3 * IV_MS / 1000 + 0.5  # the bound, and room for a loaded machine
        # its hash expires on its own (same lifetime)
        wait_for(lambda: not r.exists("cardgw:online:fixed-b"), "stale hash expired",
                 timeout=3 * IV_MS / 1000 + 1 - (time.time() - t0))
        c.ws.transport.abort()
    run(go())
    b.stop()
    # restarted with the same node_id, it does not count what a previous run left behind
    r.hset("cardgw:online:fixed-b", mapping={"ghost": 3})
    b.start()
    _, took = wait_for(lambda: not status(a, "ghost")["online"], "ghost cleared", timeout=2)
    assert r.hgetall("cardgw:online:fixed-b") == {}

    async def back():
        await connected_client(b, "kim")
        wait_for(lambda: status(a, "kim")["connections"] == 1, "kim back on fixed-b")
    run(back())


def test_redis_restarted_empty_gets_every_node_rewritten(make_node, redis_server):
    a, b = make_node(FAST), make_node(FAST)

    async def go():
        cs = [await connected_client(a, "rita"), await connected_client(b, "rita"),
              await connected_client(b, "ron")]
        wait_for(lambda: status(a, "rita")["connections"] == 2, "rita on two nodes")
        redis_server.restart()
        t0 = time.time()

        def back():
            st, body = a.http("GET", "/api/v1/online?uid=rita&uid=ron")
            if st != 200:
                return None
            u = json.loads(body)["users"]
            return u if u[0]["connections"] == 2 and u[1]["connections"] == 1 else None
        _, took = wait_for(back, "counts rewritten after the restart", timeout=6)
        print("counts back %.2f s after Redis restarted empty" % took)
        assert time.time() - t0 < 3
        for c in cs:
            await c.close()
        wait_for(lambda: not status(a, "rita")["online"], "rita offline after all")
    run(go())


def test_graceful_stop_takes_users_offline_at_once(make_node, redis_server):
    a, b = make_node(FAST), make_node(FAST)
    r = redis_server.client()

    async def go():
        c = await connected_client(b, "sam")
        wait_for(lambda: status(a, "sam")["online"], "sam online")
        assert r.keys("cardgw:online:*") != []
        t0 = int(time.time() * 1000)
        b.proc.send_signal(signal.SIGTERM)
        # the client answers the node's Close meanwhile (the drain waits for it)
        await asyncio.get_running_loop().run_in_executor(None, b.proc.wait, 10)
        print("drained and gone in %d ms" % (int(time.time() * 1000) - t0))
        assert int(time.time() * 1000) - t0 < 2000  # drain_window_ms 300, no deadline
        s = status(a, "sam")  # the node is gone: no expiry waited for
        assert s["online"] is False and s["connections"] == 0
        assert t0 <= s["last_seen"] <= int(time.time() * 1000)
        assert [k for k in r.keys("cardgw:online:*")] == []  # a is idle: no hash either
        c.ws.transport.abort()
    run(go())
    assert_clean_exit(b.stop(), b.read_log())


def test_redis_down_answers_503(make_node, redis_server):
    a = make_node(FAST)
    redis_server.stop()
    wait_for(lambda: a.http("GET", "/api/v1/online?uid=x")[0] == 503, "503 while Redis is down")
    redis_server.start()
    wait_for(lambda: a.http("GET", "/api/v1/online?uid=x")[0] == 200, "200 again")

