"""Channels spread over several Redis (redis_shards): every key of a channel lives on the shard the
documented rule names, publications reach subscribers on any node in order, global keys stay on
the main Redis, and a shard down takes down only its own channels (/readyz names it, API 503).
Real redis-server processes (a main and two shards), real nodes."""
import json
import time

from conftest import Client, RedisServer, jwt, run


def shard_of(channel, n):
    """The shard rule of docs/redis-schema.md: jump consistent hash of the FNV-1a 64 hash."""
    h = 0xcbf29ce484222325
    for byte in channel.encode():
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    b, j = -1, 0
    while j < n:
        b = j
        h = (h * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((h >> 33) + 1)))
    return b


def test_channels_live_on_their_shard_and_a_dead_shard_stops_only_its_own(redis_server,
                                                                             make_node):
    shards = []
    try:
        for _ in range(2):
            shards.append(RedisServer())
            shards[-1].start()
        conf = {"redis_shards": " ".join(s.url for s in shards), "node_registry_interval_ms": 200}
        a, b = make_node(conf), make_node(conf)
        channels = ["public:sh-%d" % k for k in range(20)]
        where = {ch: shard_of(ch, 2) for ch in channels}
        assert set(where.values()) == {0, 1}

        async def go():
            c = await Client.open(a.ws_url)
            await c.connect(jwt("sh"))
            for ch in channels:
                r = await c.call("subscribe", channel=ch)
                assert "result" in r, r
            for k in range(3):
                for ch in channels:
                    st, body = b.api("/api/v1/publish", {"channel": ch, "data": k})
                    assert st == 200, (st, body)
            got = {ch: [] for ch in channels}
            while sum(len(v) for v in got.values()) < 3 * len(channels):
                m = await c.next_event()
                assert m["push"] == "pub", m
                got[m["channel"]].append(m["offset"])
            assert all(v == [1, 2, 3] for v in got.values()), got
            check_keys()
            await dead_shard(c)

        def check_keys():
            main = redis_server.client()
            for ch in channels:
                here, other = shards[where[ch]].client(), shards[1 - where[ch]].client()
                for suffix in (":m", ":x"):
                    key = "cardgw:{%s}%s" % (ch, suffix)
                    assert here.exists(key) and not other.exists(key) and not main.exists(key)
                assert '"offset":3' in a.http("GET", "/api/v1/position?channel=" + ch)[1]
            assert main.exists("cardgw:nodes")
            assert not any(s.client().exists("cardgw:nodes") for s in shards)

        async def dead_shard(c):
            # shard 1 goes away: its channels answer 503, the others keep working on every node
            shards[1].stop()
            dead = [ch for ch in channels if where[ch] == 1]
            alive = [ch for ch in channels if where[ch] == 0]
            for n in (a, b):
                end = time.time() + 10
                while True:  # still ready (a balancer keeps it), and says what is degraded
                    st, text = n.http("GET", "/readyz")
                    if "degraded" in text:
                        break
                    assert time.time() < end, "readyz stayed %s %s" % (st, text)
                    time.sleep(0.1)
                assert st == 200, (st, text)
                assert "shard1" in text and "main" not in text and "shard0" not in text, text
                info = json.loads(n.http("GET", "/api/v1/info")[1])
                assert info["redis"] == {"ready": True, "shards": [
                    {"name": "shard0", "ready": True}, {"name": "shard1", "ready": False}]}, info
            # every node's entry says which Redis it cannot reach (refreshed every 200 ms)
            end = time.time() + 5
            while any(e.get("redis_down") != "shard1" for e in info["nodes"]):
                assert time.time() < end, info["nodes"]
                time.sleep(0.1)
                info = json.loads(a.http("GET", "/api/v1/info")[1])
            assert b.api("/api/v1/publish", {"channel": dead[0], "data": 9})[0] == 503

            assert b.api("/api/v1/publish", {"channel": alive[0], "data": 9})[0] == 200
            while True:
                m = await c.next_event()
                if m.get("push") == "pub" and m["channel"] == alive[0]:
                    assert m["offset"] == 4 and m["data"] == 9
                    break
            # a new subscriber of a live shard's channel is served; one of the dead shard's is
            # told to retry
            d = await Client.open(b.ws_url)
            await d.connect(jwt("sh2"))
            assert "result" in await d.call("subscribe", channel=alive[1])
            r = await d.call("subscribe", channel=dead[1])
            assert r["error"]["code"] == 111, r

        run(go())
    finally:
        for s in shards:
            s.cleanup()


def test_adding_a_shard_moves_channels_to_a_new_epoch_never_a_silent_gap(redis_server, make_node):
    shards = []
    try:
        for _ in range(2):
            shards.append(RedisServer())
            shards[-1].start()
        moved = [c for c in ("public:mv-%d" % k for k in range(40)) if shard_of(c, 2) == 1][0]
        stays = [c for c in ("public:mv-%d" % k for k in range(40)) if shard_of(c, 2) == 0][0]
        a = make_node({"redis_shards": shards[0].url})
        for ch in (moved, stays):
            for k in range(3):
                assert a.api("/api/v1/publish", {"channel": ch, "data": k})[0] == 200

        async def positions(node):
            c = await Client.open(node.ws_url)
            await c.connect(jwt("mv"))
            out = {}
            for ch in (moved, stays):
                out[ch] = (await c.call("subscribe", channel=ch))["result"]
            await c.close()
            return out

        before = run(positions(a))
        assert before[moved]["offset"] == 3 and before[stays]["offset"] == 3
        a.stop()
        # a second shard is added: `moved` now lives on the new one, `stays` did not move
        b = make_node({"redis_shards": " ".join(s.url for s in shards)})

        async def resume():
            c = await Client.open(b.ws_url)
            await c.connect(jwt("mv"))
            res = {}
            for ch in (moved, stays):
                since = {"epoch": before[ch]["epoch"], "offset": 3}
                res[ch] = (await c.call("subscribe", channel=ch, since=since))["result"]
            return res

        res = run(resume())
        assert res[stays]["recovered"] is True and res[stays]["epoch"] == before[stays]["epoch"]
        assert res[moved]["recovered"] is False, res[moved]  # a new epoch: reload, no gap
        assert res[moved]["epoch"] != before[moved]["epoch"] and res[moved]["offset"] == 0
        assert shards[1].client().exists("cardgw:{%s}:m" % moved)
    finally:
        for s in shards:
            s.cleanup()
