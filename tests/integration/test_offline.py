"""Offline fallback: a publication to a channel no node is subscribed to (user:<uid> while the user
is away) is also appended, in the same publish script, to the stream cardgw:offline on the
channel's Redis, for notification workers; never when someone listens, never twice, bounded, and
on the right shard when channels are spread. Real redis-server processes, real nodes."""
import asyncio
import json
import os
import time

import msgpack

from conftest import ROOT, Client, RedisServer, connected_client, jwt, run
from test_shards import shard_of

PUBLISH_LUA = open(os.path.join(ROOT, "scripts", "publish.lua")).read()


def numsub(r, ch):
    return r.pubsub_numsub("cardgw:{%s}" % ch)[0][1]


async def until(pred, timeout=10):
    end = time.time() + timeout
    while not pred():
        assert time.time() < end, "timed out"
        await asyncio.sleep(0.02)


def entries(r):
    return [(eid, {k.decode(): v for k, v in f.items()}) for eid, f in r.xrange("cardgw:offline")]


def test_a_publication_nobody_hears_goes_to_the_offline_stream_once(make_node, redis_server):
    node = make_node()
    r = redis_server.client()

    async def go():
        b = await connected_client(node, "b")
        res = (await b.call("subscribe", channel="user:b"))["result"]
        st, body = node.api("/api/v1/publish", {"channel": "user:b", "data": {"n": 1}})
        assert st == 200
        assert (await b.next_push())["offset"] == 1
        assert entries(r) == []  # B was connected: nothing for the notification workers
        await b.close()
        await until(lambda: numsub(r, "user:b") == 0)  # its node let the channel go
        for n in (2, 3):
            st, body = node.api("/api/v1/publish", {"channel": "user:b",
                                                    "data": {"card": "c%d" % n}})
            assert st == 200 and body["offset"] == n
        got = entries(r)
        assert [(f["ch"], f["e"].decode(), int(f["o"]), f["f"], f["u"], json.loads(f["d"]))
                for _, f in got] == [(b"user:b", res["epoch"], n, b"j", b"", {"card": "c%d" % n})
                                     for n in (2, 3)]
        st, _ = node.api("/api/v1/publish", {"channel": "user:b", "data": "hello"})
        assert st == 200 and len(entries(r)) == 3
        # B comes back and recovers everything from history, exactly once; the stream is for
        # notifications, not delivery
        b2 = await connected_client(node, "b")
        res2 = (await b2.call("subscribe", channel="user:b",
                              since={"epoch": res["epoch"], "offset": 1}))["result"]
        assert res2["recovered"] is True
        assert [p["offset"] for p in res2["publications"]] == [2, 3, 4]
        st, _ = node.api("/api/v1/publish", {"channel": "user:b", "data": "back"})
        assert st == 200 and len(entries(r)) == 3  # listening again
        # a group channel nobody listens to: offline_size 0 for group, nothing appended
        r.sadd("cardgw:group:g1:members", "x")
        st, _ = node.api("/api/v1/publish", {"channel": "group:g1", "data": 1})
        assert st == 200 and len(entries(r)) == 3
    run(go())


def test_offline_stream_is_capped_and_a_backend_without_the_key_is_unchanged(make_node,
                                                                             redis_server):
    node = make_node({"namespace.user.offline_size": 10})
    r = redis_server.client()
    for k in range(300):
        st, _ = node.api("/api/v1/publish", {"channel": "user:away", "data": k})
        assert st == 200
    n = r.xlen("cardgw:offline")
    # MAXLEN ~ trims whole stream nodes (100 entries each): about the cap, never all
    assert 10 <= n <= 110, n
    last = entries(r)[-1][1]
    assert int(last["o"]) == 300 and json.loads(last["d"]) == 299
    # the documented 3-key call of scripts/publish.lua (a backend that never heard of the
    # offline stream) works as before and appends nothing
    ch = "user:away"
    keys = ["cardgw:{%s}:m" % ch, "cardgw:{%s}:x" % ch, "cardgw:{%s}" % ch]
    off, _ = r.eval(PUBLISH_LUA, 3, *keys, msgpack.packb(1), "m", "", 100, 600, 604800)
    assert off == 301 and r.xlen("cardgw:offline") == n
    # with the key and a cap, the script appends like the node does
    r.eval(PUBLISH_LUA, 4, *keys, "cardgw:offline", msgpack.packb(2), "m", "", 100, 600, 604800,
           "0", "1000")
    assert r.xlen("cardgw:offline") == n + 1


def test_offline_stream_lives_on_the_channels_shard(make_node, redis_server):
    shards = []
    try:
        for _ in range(2):
            shards.append(RedisServer())
            shards[-1].start()
        node = make_node({"redis_shards": " ".join(s.url for s in shards)})
        users = ["user:u%d" % k for k in range(12)]
        where = {ch: shard_of(ch, 2) for ch in users}
        assert set(where.values()) == {0, 1}

        async def go():
            c = await Client.open(node.ws_url)
            await c.connect(jwt("u0"))
            assert "result" in await c.call("subscribe", channel="user:u0")
            for ch in users:
                st, _ = node.api("/api/v1/publish", {"channel": ch, "data": ch})
                assert st == 200
            for k, s in enumerate(shards):
                got = [f["ch"].decode() for _, f in entries(s.client())]
                assert got == [ch for ch in users if where[ch] == k and ch != "user:u0"], (k, got)
            assert redis_server.client().xlen("cardgw:offline") == 0  # not on the main Redis
            await c.close()
        run(go())
    finally:
        for s in shards:
            s.cleanup()


def test_one_namespace_never_trims_another_ones_offline_entries(make_node, redis_server):
    """One stream per Redis for every namespace: it is capped at the largest offline_size, so a
    namespace with a small cap cannot trim away the notifications of another."""
    node = make_node({"namespace.user.offline_size": 300, "namespace.public.offline_size": 2})
    r = redis_server.client()
    for k in range(400):
        assert node.api("/api/v1/publish", {"channel": "user:away%d" % (k % 7), "data": k})[0] == 200
    before = r.xlen("cardgw:offline")
    assert before >= 300, before
    for k in range(5):  # nobody listens to public:nobody either: appended, trimmed to 300 at most
        assert node.api("/api/v1/publish", {"channel": "public:nobody", "data": k})[0] == 200
    after = r.xlen("cardgw:offline")
    assert after >= 300, (before, after)
