"""Redis behind Sentinel: nodes given redis-sentinel:// ask the sentinels for the master (skipping one
that is down), follow a failover when the master is killed, and every client ends complete and in
order or told to resubscribe (recovered: false) — never a silent gap. Acknowledged writes are made
to be lost (the replica's link is cut before the master dies) while publishing goes on: the
promoted replica starts a new epoch at each channel's first publication instead of giving the lost
offsets to new ones, and every client is told. Real redis-server master and replica, three real
redis-sentinel processes, real nodes."""
import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time


import pytest
import redis

from conftest import Follower, RedisServer, free_port, publish_steadily, run, wait_port_closed

MASTER = "mm"


class Sentinel:
    def __init__(self, master_port):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cardgw-sentinel-")
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"
                    "sentinel monitor %s 127.0.0.1 %d 2\n"
                    "sentinel down-after-milliseconds %s 1000\n"
                    "sentinel failover-timeout %s 4000\n"
                    % (self.port, self.dir, os.path.join(self.dir, "log"), MASTER, master_port,
                       MASTER, MASTER))
        self.proc = subprocess.Popen(["redis-sentinel", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def master(self):
        try:
            h, p = self.client().execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
            return int(p)
        except (redis.exceptions.RedisError, TypeError, ValueError):
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        wait_port_closed(self.port)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def sentinel_setup():
    master = RedisServer().start()
    replica, sentinels = None, []
    try:  # whatever was started is stopped, even when starting the rest fails
        replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(master.port)])
        replica.start()
        for _ in range(3):
            sentinels.append(Sentinel(master.port))
        end = time.time() + 20  # every sentinel sees the replica and the two other sentinels
        while True:
            ok = True
            for s in sentinels:
                try:
                    c = s.client()
                    ok = ok and len(c.execute_command("SENTINEL", "sentinels", MASTER)) == 2 \
                        and len(c.execute_command("SENTINEL", "replicas", MASTER)) == 1 \
                        and replica.client().info("replication")["master_link_status"] == "up"
                except redis.exceptions.RedisError:
                    ok = False
            if ok:
                break
            assert time.time() < end, "sentinels did not find each other and the replica"
            time.sleep(0.2)
        dead = free_port()  # nothing listens there: the node must skip it
        url = "redis-sentinel://127.0.0.1:%d,%s/%s/0" % (
            dead, ",".join("127.0.0.1:%d" % s.port for s in sentinels), MASTER)
        yield master, replica, sentinels, url
    finally:
        for s in sentinels:
            s.stop()
        master.cleanup()
        if replica:
            replica.cleanup()


def test_failover_is_followed_and_never_a_silent_gap(sentinel_setup, make_node):
    master, replica, sentinels, url = sentinel_setup
    nodes = [make_node({"position_check_interval_ms": 500}, redis_url=url) for _ in range(2)]
    for n in nodes:
        assert "master %s is 127.0.0.1:%d" % (MASTER, master.port) in n.read_log()
    channels = ["public:sent-%d" % k for k in range(4)]
    acked = []      # (channel, epoch, offset) the API acknowledged
    failed = []

    def call(ch, k):  # through both nodes in turn
        return nodes[k % 2].api("/api/v1/publish", {"channel": ch, "data": k})

    def record(ch, res, k):
        st, body = res
        if st == 200:
            acked.append((ch, body["epoch"], body["offset"], time.time(), k))
        else:
            assert st == 503, (st, body)  # Redis failing over: nothing was published
            failed.append(time.time())

    async def go():
        fs = [Follower(lambda n=nodes[i % 2]: n.ws_url, "s%d" % i, channels[i % len(channels)])
              for i in range(16)]
        await asyncio.gather(*(f.join() for f in fs))
        end = time.time() + 14
        tasks = [asyncio.ensure_future(f.follow(end + 4)) for f in fs]
        pub = asyncio.ensure_future(publish_steadily(call, channels, end, record))
        await asyncio.sleep(2)
        # make asynchronous replication lose acknowledged writes: the replica stops applying
        # (SIGSTOP, short enough for Sentinel to still promote it), its link is cut, the master
        # acknowledges publications for 0.4 s more, then dies
        t_stop = time.time()
        replica.proc.send_signal(signal.SIGSTOP)
        master.client().execute_command("CLIENT", "KILL", "TYPE", "replica")
        await asyncio.sleep(0.4)
        t_kill = time.time()
        # publishing goes on all along: the first publications to reach the promoted replica
        # must not take the offsets of the lost ones under the same epoch
        master.proc.send_signal(signal.SIGKILL)
        replica.proc.send_signal(signal.SIGCONT)
        await pub
        await asyncio.gather(*tasks)
        return fs, t_stop, t_kill

    fs, t_stop, t_kill = run(go(), timeout=90)
    # Sentinel promoted the replica, and the nodes followed: publishing works again
    assert all(s.master() == replica.port for s in sentinels)
    first = {x[1] for x in acked if x[3] < t_stop}  # the epochs before
    after = [x[3] for x in acked if x[3] > t_kill and x[1] not in first]
    assert after, "no publication was acknowledged by the promoted replica"
    resumed = min(after) - t_kill
    print("publishing resumed %.1f s after the master was killed; %d publishes refused meanwhile"
          % (resumed, len(failed)))
    assert resumed < 20
    for n in nodes:
        assert "master %s is 127.0.0.1:%d" % (MASTER, replica.port) in n.read_log()
    r = replica.client()
    tops = {}
    for ch in channels:
        e, top = r.hmget("cardgw:{%s}:m" % ch, "e", "s")
        tops[ch] = (e.decode(), int(top))
    # acknowledged by the old master after the replica stopped applying: lost with it
    old = {ch: {x[1] for x in acked if x[0] == ch and x[3] < t_stop} for ch in channels}
    lost = {ch: [x for x in acked if x[0] == ch and t_stop + 0.05 < x[3] < t_kill]
            for ch in channels}
    told = sum(1 for f in fs if f.signals)
    print("acknowledged writes lost in the failover: %s; clients told to resubscribe: %d" %
          ({ch: len(v) for ch, v in lost.items()}, told))
    assert all(lost.values()), lost  # the scenario did lose acknowledged writes on every channel
    for ch in channels:
        assert len(old[ch]) == 1, old
        # the promoted replica started a new epoch at its first publication: no offset of the
        # old epoch was given twice
        assert tops[ch][0] not in old[ch], (ch, tops[ch], old[ch])
        assert not [x for x in acked if x[0] == ch and x[3] > t_kill + 1 and x[1] in old[ch]]
    for f in fs:
        # in order with no gap, except across a signal (unsub 116 / recovered: false)
        assert not f.silent, (f.uid, f.silent[:3])
        # and caught up: at the channel's position in the promoted replica
        assert f.pos == tops[f.ch], (f.uid, f.pos, tops[f.ch])
        # every client was in the old epoch and is in the new one: it was told
        assert f.signals > 0, f.uid
