"""Nodes behind real load balancers, with the configs we ship (deploy/haproxy.cfg, deploy/nginx.conf):
clients spread over every node, a SIGTERMed node leaves the balancer before it stops listening
(drain_unready_ms), its clients move to other nodes and recover, nothing is lost and no reconnect or
API call through the balancer gets a 503. Real HAProxy 2.6, nginx 1.22, redis-server, nodes."""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest
import redis
import websockets

from conftest import (API_KEY, ROOT, Client, Follower, free_port, jwt, publish_steadily, run,
                      wait_port_closed)

HAPROXY_CFG = os.path.join(ROOT, "deploy", "haproxy.cfg")
NGINX_CFG = os.path.join(ROOT, "deploy", "nginx.conf")


class Balancer:
    """A haproxy or nginx process in front of three nodes, on a free port."""

    def __init__(self, kind, nodes):
        self.kind = kind
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cardgw-lb-")
        self.log = open(os.path.join(self.dir, "lb.log"), "wb")
        addrs = ["127.0.0.1:%d" % n.port for n in nodes]
        if kind == "haproxy":
            env = dict(os.environ, CARDGW_LB_BIND="127.0.0.1:%d" % self.port,
                       CARDGW_NODE1=addrs[0], CARDGW_NODE2=addrs[1], CARDGW_NODE3=addrs[2])
            cmd = ["haproxy", "-db", "-f", HAPROXY_CFG]
        else:
            with open(NGINX_CFG) as f:
                conf = f.read().replace("${LB_LISTEN}", "127.0.0.1:%d" % self.port)
            for i, a in enumerate(addrs):
                conf = conf.replace("${NODE%d}" % (i + 1), a)
            path = os.path.join(self.dir, "nginx.conf")
            with open(path, "w") as f:
                f.write(conf)
            env = dict(os.environ)
            cmd = ["nginx", "-p", self.dir, "-c", path, "-g",
                   "daemon off; pid %s/nginx.pid; error_log stderr;" % self.dir]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        end = time.time() + 10
        while self.status("/healthz") != 200:
            if self.proc.poll() is not None or time.time() > end:
                raise RuntimeError("%s did not start:\n%s" % (kind, self.read_log()))
            time.sleep(0.1)

    def read_log(self):
        with open(os.path.join(self.dir, "lb.log"), "rb") as f:
            return f.read().decode(errors="replace")

    @property
    def ws_url(self):
        return "ws://127.0.0.1:%d/ws" % self.port

    def status(self, path, body=None):
        data = None if body is None else __import__("json").dumps(body).encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data,
                                     method="POST" if data else "GET")
        req.add_header("Authorization", "apikey " + API_KEY)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, ConnectionError, OSError):
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.kind == "nginx" else signal.SIGUSR1)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        wait_port_closed(self.port)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def three_nodes(make_node):
    def make(extra=None):
        return [make_node(dict({"node_id": "n%d" % (i + 1)}, **(extra or {}))) for i in range(3)]
    return make


@pytest.fixture
def balancer():
    made = []

    def make(kind, nodes):
        b = Balancer(kind, nodes)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


def test_haproxy_spreads_clients_and_drains_a_node_without_loss_or_503(three_nodes, balancer):
    nodes = three_nodes({"drain_unready_ms": 2500, "drain_window_ms": 1000,
                         "shutdown_timeout_ms": 8000})
    lb = balancer("haproxy", nodes)
    channels = ["public:lb-%d" % k for k in range(6)]
    sent = {ch: 0 for ch in channels}
    api_status = []

    def record(ch, st, k):
        api_status.append(st)
        sent[ch] += st == 200

    async def go():
        fs = [Follower(lambda: lb.ws_url, "u%d" % i, channels[i % len(channels)])
              for i in range(60)]
        await asyncio.gather(*(f.join() for f in fs))
        first = {f.nodes[0] for f in fs}
        assert first == {"n1", "n2", "n3"}, first  # leastconn spread them over every node
        on_n2 = sum(1 for f in fs if f.nodes[0] == "n2")
        end = time.time() + 9
        tasks = [asyncio.ensure_future(f.follow(end + 3)) for f in fs]
        pub = asyncio.ensure_future(publish_steadily(
            lambda ch, k: lb.status("/api/v1/publish", {"channel": ch, "data": {"k": k}}),
            channels, end, record))
        await asyncio.sleep(1)
        nodes[1].proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        # still serving, but already out of the balancer's rotation
        assert nodes[1].http("GET", "/readyz")[0] == 503
        assert nodes[1].http("GET", "/healthz")[0] == 200
        direct = await Client.open(nodes[1].ws_url)
        assert "node" in await direct.connect(jwt("direct"))
        await direct.close()
        await pub
        await asyncio.gather(*tasks)
        assert all(st == 200 for st in api_status), [s for s in api_status if s != 200]
        assert sum(f.failed for f in fs) == 0, [(f.uid, f.failed) for f in fs if f.failed]
        assert sum(f.reconnects for f in fs) == on_n2, on_n2
        for f in fs:
            assert "n2" not in f.nodes[1:], (f.uid, f.nodes)  # no reconnect to the draining node
            assert len(f.nodes) <= 2, (f.uid, f.nodes)  # moved at most once
            assert not f.silent and not f.signals, (f.uid, f.silent, f.signals)  # recovered
            assert f.got == list(range(1, sent[f.ch] + 1)), (f.uid, f.got[-5:], sent[f.ch])
        nodes[1].proc.wait(20)
        assert nodes[1].proc.returncode == 0
        log = nodes[1].read_log()
        assert "before the drain (drain_unready_ms)" in log and "draining" in log
    run(go(), timeout=90)


def test_haproxy_node_killed_clients_recover_elsewhere_nothing_lost(three_nodes, balancer):
    nodes = three_nodes()
    lb = balancer("haproxy", nodes)
    channels = ["public:kill-%d" % k for k in range(6)]
    sent = {ch: 0 for ch in channels}

    def record(ch, st, k):
        assert st == 200
        sent[ch] += 1

    async def go():
        fs = [Follower(lambda: lb.ws_url, "k%d" % i, channels[i % len(channels)])
              for i in range(45)]
        await asyncio.gather(*(f.join() for f in fs))
        on_n2 = sum(1 for f in fs if f.nodes[0] == "n2")
        assert on_n2 > 0
        end = time.time() + 6
        tasks = [asyncio.ensure_future(f.follow(end + 3)) for f in fs]
        # through a node that stays up: the API of a node being killed may fail
        pub = asyncio.ensure_future(publish_steadily(
            lambda ch, k: nodes[0].api("/api/v1/publish", {"channel": ch, "data": k})[0],
            channels, end, record))
        await asyncio.sleep(1.5)
        nodes[1].proc.kill()  # kill -9: no drain, no disconnect push
        await pub
        await asyncio.gather(*tasks)
        assert sum(f.reconnects for f in fs) == on_n2, on_n2
        # a reconnect routed to the dead node before HAProxy noticed is retried elsewhere
        # (retry-on conn-failure + redispatch): the client never sees it
        assert sum(f.failed for f in fs) == 0, [(f.uid, f.failed) for f in fs if f.failed]
        for f in fs:
            assert "n2" not in f.nodes[1:], (f.uid, f.nodes)
            assert not f.silent and not f.signals, (f.uid, f.silent, f.signals)
            assert f.got == list(range(1, sent[f.ch] + 1)), (f.uid, f.got[-5:], sent[f.ch])
        nodes[1].stop()
    run(go(), timeout=60)


def test_nginx_proxies_websockets_and_moves_clients_off_a_stopped_node(three_nodes, balancer):
    nodes = three_nodes()
    lb = balancer("nginx", nodes)

    async def go():
        c = await Client.open(lb.ws_url)
        home = (await c.connect(jwt("ng1")))["node"]
        r = (await c.call("subscribe", channel="public:ng"))["result"]
        assert lb.status("/api/v1/publish", {"channel": "public:ng", "data": 1}) == 200
        m = await c.next_event()
        assert m["push"] == "pub" and m["offset"] == r["offset"] + 1
        # the node this address hashes to stops: the next connect goes to another node
        victim = nodes[int(home[1:]) - 1]
        victim.stop()
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            while True:
                await c.recv()
        c2 = await Client.open(lb.ws_url)
        moved = (await c2.connect(jwt("ng1")))["node"]
        assert moved != home
        r2 = (await c2.call("subscribe", channel="public:ng",
                            since={"epoch": r["epoch"], "offset": m["offset"]}))["result"]
        assert r2["recovered"] is True
    run(go(), timeout=60)


def test_info_lists_live_nodes_and_drops_dead_ones(three_nodes):
    nodes = three_nodes({"node_registry_interval_ms": 300, "drain_unready_ms": 1500,
                         "shutdown_timeout_ms": 5000})
    a, b, c = nodes

    def info():
        st, body = a.http("GET", "/api/v1/info")
        assert st == 200, (st, body)
        return {e["id"]: e for e in json.loads(body)["nodes"]}

    def wait_for(pred, what, timeout=5):
        end = time.time() + timeout
        while True:
            seen = info()
            if pred(seen):
                return seen
            assert time.time() < end, (what, seen)
            time.sleep(0.1)

    assert a.http("GET", "/api/v1/info", key="wrong")[0] == 401
    # whatever else sits in the hash (garbage, another version's entries, huge values) is
    # skipped, and purged once it cannot be a live entry; the view keeps answering
    r = redis.Redis(port=int(a.config_value("redis_url").rsplit(":", 1)[1].split("/")[0]))
    r.hset("cardgw:nodes", mapping={"junk": "not json", "arr": "[1,2]", "big": "x" * 1000000,
                                    "old": json.dumps({"id": "old", "expires_at": 1}),
                                    "str": json.dumps({"id": 7, "expires_at": "soon"})})

    async def go():
        cl = await Client.open(b.ws_url)
        await cl.connect(jwt("i1"))
        await cl.call("subscribe", channel="public:info")
        seen = wait_for(lambda s: s.get("n2", {}).get("subscriptions") == 1, "n2's client")
        assert set(seen) == {"n1", "n2", "n3"}
        e = seen["n2"]
        assert e["state"] == "up" and e["connections"] == 1 and e["redis_ready"] is True
        assert e["version"] and e["expires_at"] > e["seen_at"] >= e["started_at"]
        assert not set(r.hkeys("cardgw:nodes")) & {b"junk", b"arr", b"big", b"old", b"str"}
        await cl.close()
    run(go())
    # a drained node says so until it is gone
    c.proc.send_signal(signal.SIGTERM)
    wait_for(lambda s: s.get("n3", {}).get("state") == "draining", "n3 draining")
    assert c.stop() == 0
    # a node killed without a drain drops out within three refresh intervals
    b.proc.kill()
    t0 = time.time()
    wait_for(lambda s: "n2" not in s, "n2 gone")
    print("killed node left the view after %.1f s" % (time.time() - t0))
    assert time.time() - t0 < 3
    b.stop()
