#!/usr/bin/python3
"""history_bytes.py — what big history costs the node's loop: a channel with 50 publications of
1 MB (publish.lua), readers asking `history` (newest, and since 0) and subscribing with `since`
while a prober GETs /healthz every 20 ms. Prints the healthz and reply latencies (p50, max) and
Redis's time per history script call. Usage (make bench-history-bytes BENCH_ARGS=...):
  bench/history_bytes.py [--bin build/cardgw] [--rounds 10] [--readers 4] [--size 1000000]
Run it against an older build (--bin) for a before/after comparison."""
import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

import msgpack
import redis
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "bench-secret"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def jwt(sub):
    import base64
    import hashlib
    import hmac
    import json

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps({"sub": sub}).encode())
    sig = hmac.new(SECRET.encode(), ("%s.%s" % (h, p)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (h, p, b64(sig))


def wait_http(port, path, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("no %s on %d" % (path, port))


class Prober(threading.Thread):
    """GETs /healthz (or, with a redis client, PINGs Redis: every node's commands wait behind a
    long script) every 20 ms and keeps the latencies."""

    def __init__(self, port, r=None):
        super().__init__(daemon=True)
        self.port, self.r, self.lat, self.stop_ev = port, r, [], threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            if self.r:
                self.r.ping()
            else:
                with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % self.port,
                                            timeout=30):
                    pass
            self.lat.append(time.monotonic() - t0)
            time.sleep(0.02)


async def call(ws, i, cmd, **f):
    f.update({"id": i, "cmd": cmd})
    await ws.send(msgpack.packb(f, use_bin_type=True))
    while True:
        m = msgpack.unpackb(await ws.recv(), raw=False)
        if m.get("id") == i:
            return m


async def reader(url, k, rounds, epoch, lat):
    async with websockets.connect(url, subprotocols=["cardgw.v1.msgpack"], max_size=None,
                                  ping_interval=None) as ws:
        assert "result" in await call(ws, 1, "connect", token=jwt("r%d" % k))
        assert "result" in await call(ws, 2, "subscribe", channel="public:big")
        i = 3
        for _ in range(rounds):
            for fields in ({}, {"since": {"epoch": epoch, "offset": 0}}):
                t0 = time.monotonic()
                m = await call(ws, i, "history", channel="public:big", **fields)
                lat.append(time.monotonic() - t0)
                assert "result" in m, m
                i += 1
    async with websockets.connect(url, subprotocols=["cardgw.v1.msgpack"], max_size=None,
                                  ping_interval=None) as ws:
        await call(ws, 1, "connect", token=jwt("s%d" % k))
        t0 = time.monotonic()
        m = await call(ws, 2, "subscribe", channel="public:big",
                       since={"epoch": epoch, "offset": 0})
        lat.append(time.monotonic() - t0)
        assert "result" in m, m


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "cardgw"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--size", type=int, default=1000000)
    ap.add_argument("--count", type=int, default=50)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cardgw-bench-hist-")
    rport, nport = free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no", "--dir", tmp],
                                      stdout=subprocess.DEVNULL))
        r = redis.Redis(port=rport)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        conf = os.path.join(tmp, "node.conf")
        with open(conf, "w") as f:
            f.write("port = %d\nredis_url = redis://127.0.0.1:%d/0\njwt_secret = %s\n"
                    "namespace.public.subscribe = public\nlog_level = warn\n"
                    "max_connections_per_user = 0\n" % (nport, rport, SECRET))
        procs.append(subprocess.Popen([a.bin, "--config", conf], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_http(nport, "/readyz")
        sha = r.script_load(open(os.path.join(ROOT, "scripts", "publish.lua")).read())
        keys = ["cardgw:{public:big}:m", "cardgw:{public:big}:x", "cardgw:{public:big}"]
        for k in range(a.count):
            r.evalsha(sha, 3, *keys, msgpack.packb(bytes([k % 256]) * a.size), "m", "", 100, 600,
                      604800)
        epoch = r.hget(keys[0], "e").decode()
        r.config_resetstat()
        prober, rprober = Prober(nport), Prober(0, redis.Redis(port=rport))
        prober.start()
        rprober.start()
        time.sleep(0.3)
        lat = []
        t0 = time.monotonic()
        url = "ws://127.0.0.1:%d/ws" % nport

        async def go():
            await asyncio.gather(*(reader(url, k, a.rounds, epoch, lat)
                                   for k in range(a.readers)))
        asyncio.run(go())
        wall = time.monotonic() - t0
        time.sleep(0.2)
        for p in (prober, rprober):
            p.stop_ev.set()
            p.join()
        stats = r.info("commandstats")
        ev = stats.get("cmdstat_evalsha", {})
        h = prober.lat
        print("binary: %s" % a.bin)
        print("history: %d x %d bytes; %d readers x %d rounds x 2 history + 1 subscribe with "
              "since each; %.1f s" % (a.count, a.size, a.readers, a.rounds, wall))
        print("healthz during the reads: n=%d p50=%.1f ms p99=%.1f ms max=%.1f ms"
              % (len(h), 1000 * statistics.median(h), 1000 * pct(h, 0.99), 1000 * max(h)))
        h = rprober.lat
        print("redis PING during the reads: n=%d p50=%.1f ms p99=%.1f ms max=%.1f ms"
              % (len(h), 1000 * statistics.median(h), 1000 * pct(h, 0.99), 1000 * max(h)))
        print("history/subscribe replies: n=%d p50=%.1f ms max=%.1f ms"
              % (len(lat), 1000 * statistics.median(lat), 1000 * max(lat)))
        print("redis evalsha (history.lua): calls=%s usec_per_call=%s"
              % (ev.get("calls"), ev.get("usec_per_call")))
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
