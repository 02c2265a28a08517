"""Directory presence with cards: the info a token carries (JWT claim `info`, or the `info` field
of a session hash) appears in presence entries and in join/leave pushes on every node, presence
can be asked per user (presence_users: distinct uids with their connection counts) or as counts
(presence_stats), and a killed node's connections leave presence within presence_ttl_ms. Bad or
oversized info is refused at connect. Real Redis, real nodes, clients in both encodings."""
import asyncio
import json
import signal
import time

from conftest import Client, jwt, run

CARD_A = {"name": "An", "title": "CEO", "avatar": "https://img.example/a.png"}
CARD_B = {"name": "Bo 博", "company": "Acme", "tags": ["sales", "cn"]}
CARD_C = {"name": "Cy"}
TTL_MS = 1500


async def member(node, uid, enc="json", **claims):
    c = await Client.open(node.ws_url, enc)
    res = await c.connect(jwt(uid, **claims))
    r = await c.call("subscribe", channel="group:g")
    assert "result" in r, r
    return c, res["client"]


async def presence_push(c, kind, uid, timeout=5):
    while True:
        m = await c.next_push(timeout)
        if m.get("push") == kind and m["info"]["uid"] == uid:
            return m


def test_presence_carries_cards_across_nodes_by_user_and_counts(make_node, redis_server):
    conf = {"presence_ttl_ms": TTL_MS}
    n1, n2 = make_node(conf), make_node(conf)
    r = redis_server.client()
    r.sadd("cardgw:group:g:members", "a", "b", "c")
    r.hset("cardgw:session:sess-b", mapping={"uid": "b", "info": '{"name": "Bo 博", '
                                             '"company": "Acme", "tags": ["sales", "cn"]}'})

    async def go():
        a, a_id = await member(n1, "a", info=CARD_A)
        b = await Client.open(n2.ws_url, "msgpack")
        b_id = (await b.connect("sess-b"))["client"]
        assert "result" in await b.call("subscribe", channel="group:g")
        m = await presence_push(a, "join", "b")  # from the other node, through Redis
        assert m["info"] == {"uid": "b", "client": b_id, "conn_info": CARD_B}
        # C on two devices, one without info (a token that carries none)
        c1, c1_id = await member(n2, "c", info=CARD_C)
        c2, c2_id = await member(n1, "c")
        m = await presence_push(b, "join", "c")
        assert m["info"]["uid"] == "c" and m["info"]["client"] in (c1_id, c2_id)
        for cl in (a, b):
            res = (await cl.call("presence", channel="group:g"))["result"]
            got = sorted((x["uid"], x["client"], x.get("conn_info")) for x in res["clients"])
            assert got == sorted([("a", a_id, CARD_A), ("b", b_id, CARD_B), ("c", c1_id, CARD_C),
                                  ("c", c2_id, None)]), got
            res = (await cl.call("presence_users", channel="group:g"))["result"]
            assert sorted(res["users"], key=lambda u: u["uid"]) == [
                {"uid": "a", "connections": 1, "conn_info": CARD_A},
                {"uid": "b", "connections": 1, "conn_info": CARD_B},
                {"uid": "c", "connections": 2, "conn_info": CARD_C}]
            res = (await cl.call("presence_stats", channel="group:g"))["result"]
            assert res == {"connections": 4, "users": 3}
        # a device leaves: the others see the leave with its card
        await c1.close()
        m = await presence_push(a, "leave", "c")
        assert m["info"] == {"uid": "c", "client": c1_id, "conn_info": CARD_C}
        res = (await a.call("presence_stats", channel="group:g"))["result"]
        assert res == {"connections": 3, "users": 3}
        # not subscribed, or a namespace without presence: 103
        assert (await a.call("presence_users", channel="group:other"))["error"]["code"] == 103
        await a.call("subscribe", channel="user:a")
        assert (await a.call("presence_stats", channel="user:a"))["error"]["code"] == 103
        # kill -9 of the node holding A and C's second device: nobody announces their leave;
        # their entries expire within presence_ttl_ms
        n1.proc.kill()
        assert n1.stop() == -signal.SIGKILL
        t0 = time.time()
        while True:
            res = (await b.call("presence_users", channel="group:g"))["result"]
            if {u["uid"] for u in res["users"]} == {"b"}:
                break
            assert time.time() - t0 < TTL_MS / 1000 + 3, res
            await asyncio.sleep(0.1)
        gone = time.time() - t0
        print("a killed node's connections left presence after %.1f s (presence_ttl_ms %d)"
              % (gone, TTL_MS))
        # the bound: presence_ttl_ms, plus up to 1 s of a shared presence read (no leave push
        # invalidates it for a node that died)
        assert gone <= TTL_MS / 1000 + 1.0 + 0.5
    run(go())


def test_info_is_checked_at_connect(make_node, redis_server):
    node = make_node()
    r = redis_server.client()
    r.hset("cardgw:session:bad-info", mapping={"uid": "u1", "info": "{not json"})
    r.hset("cardgw:session:big-info", mapping={"uid": "u1", "info": '"' + "x" * 1100 + '"'})

    async def go():
        deep = 0
        for _ in range(28):  # 28 levels: a presence reply would nest past the frame limit
            deep = [deep]
        for token in (jwt("u1", info={"bio": "x" * 1100}), "bad-info", "big-info",
                      jwt("u1", info=deep)):
            c = await Client.open(node.ws_url)
            res = await c.call("connect", token=token)
            assert res["error"]["code"] == 101, res
            try:
                await c.recv(5)
                assert False, "the connection stays open"
            except Exception as e:  # closed with 4501
                assert getattr(e, "code", 4501) == 4501, e
        # the largest info accepted: 1024 bytes of JSON
        c = await Client.open(node.ws_url)
        info = "y" * 1022  # a JSON string of 1024 bytes with its quotes
        await c.connect(jwt("u1", info=info))
        await c.call("subscribe", channel="public:p")
        res = (await c.call("presence", channel="public:p"))["result"]
        assert res["clients"][0]["conn_info"] == info
        # the deepest accepted (27 levels) comes back whole, in both encodings
        ok = 0
        for _ in range(26):
            ok = [ok]
        for enc in ("json", "msgpack"):
            d = await Client.open(node.ws_url, enc)
            await d.connect(jwt("u2" + enc, info=ok))
            await d.call("subscribe", channel="public:p")
            res = (await d.call("presence", channel="public:p"))["result"]
            got = [x.get("conn_info") for x in res["clients"] if x["uid"] == "u2" + enc]
            assert got == [ok], (enc, str(got)[:200])
        # info is fixed at connect: a refresh whose token's info is bad is still a refresh
        r2 = await c.call("refresh", token=jwt("u1", info={"bio": "x" * 1100}))
        assert r2 == {"id": r2["id"], "result": {}}, r2
        assert "result" in await c.call("ping")
    run(go())


def test_join_leave_off_keeps_presence_readable(make_node, redis_server):
    node = make_node({"namespace.big.subscribe": "public", "namespace.big.presence": "true",
                      "namespace.big.join_leave": "false"})

    async def go():
        a = await Client.open(node.ws_url)
        await a.connect(jwt("a", info=CARD_A))
        assert "result" in await a.call("subscribe", channel="big:g")
        b = await Client.open(node.ws_url)
        await b.connect(jwt("b"))
        assert "result" in await b.call("subscribe", channel="big:g")
        res = (await a.call("presence_stats", channel="big:g"))["result"]
        assert res == {"connections": 2, "users": 2}
        await b.close()
        res = (await a.call("presence_users", channel="big:g"))["result"]
        assert res == {"users": [{"uid": "a", "connections": 1, "conn_info": CARD_A}]}
        assert a.pushes == []  # no join or leave of b came
        try:
            m = await a.next_push(0.5)
            assert False, m
        except asyncio.TimeoutError:
            pass
    run(go())


def test_presence_reads_are_shared_per_channel(make_node, redis_server):
    """100 presence commands at once from one client cost Redis one read (bench/RESULTS.md
    "presence": ~2.8 ms of Redis each on 10,000 members), and a reply after a leave push never
    misses that leave."""
    node = make_node({"namespace.big.subscribe": "public", "namespace.big.presence": "true"})
    r = redis_server.client()

    def zrange_calls():
        return r.info("commandstats").get("cmdstat_zrangebyscore", {}).get("calls", 0)

    async def go():
        a = await Client.open(node.ws_url)
        await a.connect(jwt("a"))
        await a.call("subscribe", channel="big:g")
        bs = []
        for k in range(5):
            b = await Client.open(node.ws_url)
            await b.connect(jwt("b%d" % k))
            await b.call("subscribe", channel="big:g")
            bs.append(b)
        joins = 0
        while joins < 5:  # every join has been relayed (and has invalidated the shared read)
            joins += (await a.next_push()).get("push") == "join"
        before = zrange_calls()
        ids = []
        for k in range(100):  # pipelined: all sent before the first reply
            ids.append(a.next_id)
            a.next_id += 1
            await a.ws.send(json.dumps({"id": ids[-1], "cmd": ["presence", "presence_users",
                                        "presence_stats"][k % 3], "channel": "big:g"}))
        got = {}
        while len(got) < 100:
            m = await a.recv()
            if "id" in m:
                got[m["id"]] = m
        assert all("result" in m for m in got.values())
        assert got[ids[2]]["result"] == {"connections": 6, "users": 6}
        reads = zrange_calls() - before
        print("100 presence commands: %d Redis reads" % reads)
        assert reads <= 2, reads
        # a leave: the next reply has it, though the cached read is younger than a second
        await bs[0].close()
        while True:
            m = await a.next_push()
            if m.get("push") == "leave":
                break
        res = (await a.call("presence_stats", channel="big:g"))["result"]
        assert res == {"connections": 5, "users": 5}
    run(go())
