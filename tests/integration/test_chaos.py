"""Chaos run (issue 5 acceptance): 200 clients in 20 groups on two nodes, 20,000 publications at a
steady rate, while clients are randomly disconnected and reconnect with `since`, Redis is
restarted twice (AOF, fsync always: a restart keeps acknowledged writes) and one node is drained
and restarted. Every client must end with every publication of its group exactly once, in
order; where it got recovered:false it re-reads the snapshot (the stream) up to the position the
reply gave, as a REST backend would serve it."""
import asyncio
import os
import random
import signal
import time

import msgpack
import pytest
import redis
import websockets

from conftest import ROOT, Client, jwt, run

PUBLISH_LUA = open(os.path.join(ROOT, "scripts", "publish.lua")).read()
GROUPS = 20
CLIENTS = 200
TOTAL = 20000
RATE = 500  # publications per second


def stream_offsets(r, ch, after, upto):
    """The 'snapshot': (offset, k) in (after, upto] from history."""
    out = []
    for eid, fields in r.xrange("cardgw:{%s}:x" % ch, "(%d-0" % after, "%d-0" % upto):
        out.append((int(eid.split(b"-")[0]), msgpack.unpackb(fields[b"d"])["k"]))
    return out


class ChaosClient:
    def __init__(self, i, nodes, r, stats):
        self.i = i
        self.uid = "c%d" % i
        self.ch = "chaos:g%d" % (i % GROUPS)
        self.enc = ("json", "msgpack")[i % 2]
        self.nodes = nodes
        self.r = r
        self.stats = stats
        self.epoch = None
        self.got = []  # (offset, k)
        self.c = None
        self.done = False

    @property
    def pos(self):
        return self.got[-1][0] if self.got else 0

    def take(self, offset, k):
        assert offset == self.pos + 1, (self.uid, "gap or duplicate", self.pos, offset)
        self.got.append((offset, k))

    async def open(self):
        while True:
            node = random.choice(self.nodes)
            try:
                c = await Client.open(node.ws_url, self.enc, open_timeout=3)
                await c.connect(jwt(self.uid))
                since = {"epoch": self.epoch, "offset": self.pos} if self.epoch else None
                fields = {"channel": self.ch}
                if since:
                    fields["since"] = since
                r = await c.call("subscribe", **fields)
                if "error" in r:  # redis restarting: retry like a client SDK
                    self.stats["sub_errors"] += 1
                    await c.close()
                    await asyncio.sleep(0.2)
                    continue
                res = r["result"]
                if self.epoch and res["epoch"] != self.epoch:
                    raise AssertionError("epoch changed under AOF: %r" % res)
                self.epoch = res["epoch"]
                if since and res["recovered"]:
                    self.stats["recovered"] += 1
                    for p in res.get("publications", []):
                        self.take(p["offset"], p["data"]["k"])
                elif res["offset"] > self.pos:
                    self.stats["snapshots"] += 1
                    for off, k in stream_offsets(self.r, self.ch, self.pos, res["offset"]):
                        self.take(off, k)
                self.c = c
                return
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException,
                    redis.exceptions.ConnectionError):
                self.stats["reconnects_failed"] += 1
                await asyncio.sleep(0.2)

    async def run(self, deadline, final):
        await self.open()
        while time.time() < deadline:
            if final.get(self.ch) is not None and self.pos >= final[self.ch]:
                break
            try:
                if random.random() < 0.002:  # a dropped network now and then
                    self.stats["drops"] += 1
                    await self.c.ws.close()
                    raise websockets.exceptions.ConnectionClosedOK(None, None)
                m = await self.c.next_push(timeout=1)
            except asyncio.TimeoutError:
                continue
            except (websockets.exceptions.ConnectionClosed, OSError):
                await self.reopen()
                continue
            kind = m.get("push")
            if kind == "pub":
                self.take(m["offset"], m["data"]["k"])
            elif kind == "unsub":
                self.stats["unsubs"] += 1
                await self.reopen()
            elif kind == "disconnect":
                self.stats["advice"] += 1
                await asyncio.sleep(m["delay_ms"] / 1000.0)
                await self.reopen()
        self.done = True
        if self.c:
            await self.c.close()

    async def reopen(self):
        try:
            await self.c.ws.close()
        except Exception:
            pass
        await self.open()


@pytest.mark.slow(rank=0)  # about 45 s: the timeline below
@pytest.mark.redis_persist
def test_chaos(make_node, redis_server):
    extra = {"namespace.chaos.subscribe": "public", "namespace.chaos.history_size": 2000,
             "namespace.chaos.presence": "false", "log_level": "warn",
             "commands_per_second": 1000, "command_burst": 1000, "drain_window_ms": 1000,
             # AOF with fsync always: a restart keeps every write, so epochs are kept
             "redis_restart_keeps_writes": 1}
    a, b = make_node(extra), make_node(extra)
    r = redis_server.client()
    stats = {k: 0 for k in ("recovered", "snapshots", "drops", "unsubs", "advice",
                            "reconnects_failed", "sub_errors", "pub_failed")}
    final = {}

    async def publisher():
        sha = None
        k = 0
        start = time.time()
        while k < TOTAL:
            due = int((time.time() - start) * RATE)
            batch = min(due - k, 100)
            if batch <= 0:
                await asyncio.sleep(0.005)
                continue
            try:
                rr = redis_server.client()
                if sha is None:
                    sha = rr.script_load(PUBLISH_LUA)
                pipe = rr.pipeline(transaction=False)
                for j in range(batch):
                    ch = "chaos:g%d" % ((k + j) % GROUPS)
                    pipe.evalsha(sha, 3, "cardgw:{%s}:m" % ch, "cardgw:{%s}:x" % ch,
                                 "cardgw:{%s}" % ch, msgpack.packb({"k": k + j}), "m", "", 2000,
                                 3600, 604800, "1")
                pipe.execute()
            except (redis.exceptions.ConnectionError, redis.exceptions.ResponseError):
                stats["pub_failed"] += batch  # Redis down: the publisher got an error
                sha = None
                await asyncio.sleep(0.1)
            k += batch
            await asyncio.sleep(0)

    async def chaos():
        await asyncio.sleep(6)
        redis_server.restart()
        await asyncio.sleep(8)
        a.proc.send_signal(signal.SIGTERM)  # drain node A, then bring it back
        a.proc.wait(30)
        assert a.proc.returncode == 0, a.read_log()[-3000:]
        a.start()
        await asyncio.sleep(8)
        redis_server.restart()

    async def go():
        nodes = [a, b]
        clients = [ChaosClient(i, nodes, r, stats) for i in range(CLIENTS)]
        deadline = time.time() + 150
        tasks = [asyncio.create_task(c.run(deadline, final)) for c in clients]
        await asyncio.gather(publisher(), chaos())
        for g in range(GROUPS):
            ch = "chaos:g%d" % g
            final[ch] = int(redis_server.client().hget("cardgw:{%s}:m" % ch, "s"))
        await asyncio.gather(*tasks)
        print("chaos stats:", stats)
        import collections, re
        why = collections.Counter()
        for n in (a, b):
            for line in n.read_log().splitlines():
                m = re.search(r"insufficient state \(([^)]*)\)", line)
                if m:
                    why[m.group(1)] += 1
        print("insufficient state, by reason:", dict(why))
        rr = redis_server.client()
        for c in clients:
            truth = stream_offsets(rr, c.ch, 0, final[c.ch])
            assert truth[0][0] == 1 and len(truth) == final[c.ch]
            assert c.got == truth, (c.uid, len(c.got), len(truth))
        assert stats["advice"] > 0 and stats["drops"] > 0
    run(go(), timeout=240)
