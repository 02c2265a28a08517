"""Fixtures for integration tests: a real redis-server and real cardgw nodes on free loopback
ports, driven by client libraries nobody here wrote (websockets, msgpack, redis-py, urllib).

Every process started here is stopped at teardown; a node must exit 0 on SIGTERM with no
AddressSanitizer/LeakSanitizer report (the tests run the ASan build, build/cardgw-asan).
"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import msgpack
import pytest
import redis
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_BIN = os.environ.get("CARDGW_TEST_BIN", os.path.join(ROOT, "build", "cardgw-asan"))
# the release build, for the few tests that measure memory (ASan's quarantine inflates RSS)
RELEASE_BIN = os.path.join(ROOT, "build", "cardgw")
API_KEY = "test-api-key-0123456789"
JWT_SECRET = "test-jwt-secret-of-at-least-32-bytes"
SUBPROTO = {"json": "cardgw.v1.json", "msgpack": "cardgw.v1.msgpack"}


def _port_block():
    """[lo, hi): this process's ports. Below the kernel's ephemeral range, so that no outgoing
    connection (of this or another test) takes a port between free_port() and the bind of the
    process it is for, or while a node or Redis restarts on it; one block per pytest-xdist
    worker, so parallel workers never hand out the same port."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_lo = 32768
    base = 10000
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    size = (ephemeral_lo - base) // workers
    if size < 64:
        return None
    return base + worker * size, base + (worker + 1) * size


_PORTS = {"block": _port_block(), "next": None}


def free_port():
    block = _PORTS["block"]
    if block is None:  # no room below the ephemeral range: let the kernel choose
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    lo, hi = block
    if _PORTS["next"] is None:  # a random start: two test runs at once rarely meet
        _PORTS["next"] = lo + random.randrange(hi - lo)
    for _ in range(hi - lo):
        port = _PORTS["next"]
        _PORTS["next"] = lo + (port + 1 - lo) % (hi - lo)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or in TIME_WAIT): take the next one
            return port
    raise RuntimeError("no free port in %d-%d" % (lo, hi))


def wait_port_closed(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.05)
    return False


class RedisServer:
    def __init__(self, persist=False, extra=()):
        self.dir = tempfile.mkdtemp(prefix="cardgw-redis-")
        self.port = free_port()
        self.proc = None
        # persist: AOF with fsync always, so a restart keeps every acknowledged write
        self.args = (["--appendonly", "yes", "--appendfsync", "always"] if persist
                     else ["--appendonly", "no"]) + list(extra)

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", self.dir, "--logfile", os.path.join(self.dir, "log")] + self.args,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.time() + 10
        while time.time() < end:
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        wait_port_closed(self.port)

    def restart(self):
        self.stop()
        return self.start()

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def http_call(url, method="GET", body=None, key=API_KEY, timeout=5, context=None):
    """One HTTP(S) request: (status, body text); (None, "") when no answer came (refused, reset,
    timed out, TLS failed). body is sent as JSON; key as `Authorization: apikey <key>`."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if key:
        req.add_header("Authorization", "apikey " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, socket.timeout, ssl.SSLError):
        return None, ""


class Node:
    """One cardgw process with its own config file."""

    def __init__(self, redis_url, extra=None, binary=None, nofile=None):
        self.binary = binary or NODE_BIN
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) for the node process
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cardgw-node-")
        self.config = os.path.join(self.dir, "node.conf")
        lines = {
            "listen_address": "127.0.0.1", "port": self.port, "redis_url": redis_url,
            "api_key": API_KEY, "jwt_secret": JWT_SECRET, "log_level": "info",
            "redis_canary_interval_ms": 200, "redis_backoff_min_ms": 50,
            "redis_backoff_max_ms": 500, "shutdown_timeout_ms": 5000, "drain_window_ms": 300,
            "drain_unready_ms": 0,
            "namespace.public.subscribe": "public", "namespace.public.publish": "true",
            "namespace.public.presence": "true",
            # tests open hundreds of connections from 127.0.0.1 within a second, many with one
            # uid: the connection caps are tested on their own (test_hostile.py)
            "max_new_connections_per_ip_per_s": 0, "max_connections_per_user": 0,
        }
        lines.update(extra or {})
        with open(self.config, "w") as f:
            for k, v in lines.items():
                f.write("%s = %s\n" % (k, v))
        self.log = os.path.join(self.dir, "node.log")
        self.proc = None

    def start(self, wait_ready=True):
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=23"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=24"
        env["LSAN_OPTIONS"] = "suppressions=%s" % os.path.join(ROOT, "tests", "lsan.supp")
        self.logf = open(self.log, "wb")
        preexec = None
        if self.nofile:
            import resource
            lim = self.nofile
            preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (lim, lim))  # noqa: E731
        self.proc = subprocess.Popen([self.binary, "--config", self.config], stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=env, preexec_fn=preexec)
        end = time.time() + 20
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("node exited early:\n" + self.read_log())
            st, _ = self.http("GET", "/readyz" if wait_ready else "/healthz")
            if st == 200:
                return self
            time.sleep(0.05)
        raise RuntimeError("node not ready:\n" + self.read_log())

    def config_value(self, key):
        with open(self.config) as f:
            for line in f:
                k, _, v = line.partition(" = ")
                if k == key:
                    return v.strip()
        return None

    def read_log(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    @property
    def ws_url(self):
        return "ws://127.0.0.1:%d/ws" % self.port

    def http(self, method, path, body=None, key=API_KEY, timeout=5):
        return http_call("http://127.0.0.1:%d%s" % (self.port, path), method, body, key, timeout)

    def api(self, path, body):
        st, text = self.http("POST", path, body)
        return st, (json.loads(text) if text.strip().startswith(("{", "[")) else text)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the node and returns its exit code; checks it left no sanitizer report."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError("node did not stop within %ss:\n%s" % (timeout, self.read_log()))
        rc = self.proc.returncode
        self.proc = None
        self.logf.close()
        wait_port_closed(self.port)
        return rc

    def cleanup(self):
        rc = self.stop()
        log = self.read_log()
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc, log


def metric(text, name):
    """The value of an unlabelled metric `name` in a /metrics text, or None when it is absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    return None


def assert_clean_exit(rc, log):
    assert "Sanitizer" not in log and "runtime error" not in log, log[-6000:]
    assert rc == 0, "exit code %r\n%s" % (rc, log[-4000:])


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run first, longest first (the order of their `slow` marks' `rank`
    argument, else file order): with pytest-xdist (--dist loadgroup hands out one test at a time,
    in this order) each starts on a worker of its own at once instead of being last."""
    def rank(item):
        m = item.get_closest_marker("slow")
        return (0, m.kwargs.get("rank", 0)) if m else (1, 0)
    items.sort(key=rank)  # stable: file order otherwise


@pytest.fixture
def redis_server(request):
    marker = request.node.get_closest_marker("redis_persist")
    r = RedisServer(persist=marker is not None).start()
    yield r
    r.cleanup()


@pytest.fixture
def make_node(redis_server):
    """make_node(extra_config=None, redis_url=None) -> started Node; all are stopped at teardown
    and must exit cleanly."""
    nodes = []

    def make(extra=None, redis_url=None, wait_ready=True, binary=None, nofile=None):
        n = Node(redis_url or redis_server.url, extra, binary, nofile)
        nodes.append(n)
        return n.start(wait_ready=wait_ready)

    yield make
    failures = []
    for n in nodes:
        rc, log = n.cleanup()
        if rc is not None:
            try:
                assert_clean_exit(rc, log)
            except AssertionError as e:
                failures.append(str(e))
    assert not failures, "\n".join(failures)


@pytest.fixture
def node(make_node):
    return make_node()


# ---- protocol client ------------------------------------------------------------------------


def jwt(sub, exp=None, secret=JWT_SECRET, **extra):
    """An HS256 JWT for uid sub; extra claims (e.g. info={...}) are added as given."""
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    claims = {"sub": sub}
    if exp is not None:
        claims["exp"] = exp
    claims.update(extra)
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), ("%s.%s" % (h, p)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (h, p, b64(sig))


_opened = []  # every Client of the coroutine run() is running: closed when it returns


class Client:
    """A protocol client over the `websockets` library; encoding 'json' or 'msgpack'."""

    def __init__(self, ws, enc):
        self.ws = ws
        self.enc = enc
        self.next_id = 1
        self.pushes = []   # pushes received while waiting for replies
        self.replies = {}

    @classmethod
    async def open(cls, url, enc="json", **kw):
        ws = await websockets.connect(url, subprotocols=[SUBPROTO[enc]], max_size=None,
                                      ping_interval=None, **kw)
        c = cls(ws, enc)
        _opened.append(c)
        return c

    def encode(self, msg):
        if self.enc == "json":
            return json.dumps(msg, separators=(",", ":"))
        return msgpack.packb(msg, use_bin_type=True)

    def decode(self, frame):
        if self.enc == "json":
            assert isinstance(frame, str), "json subprotocol must get text frames"
            return json.loads(frame)
        assert isinstance(frame, bytes), "msgpack subprotocol must get binary frames"
        return msgpack.unpackb(frame, raw=False)

    async def send_raw(self, frame):
        await self.ws.send(frame)

    async def recv(self, timeout=5):
        return self.decode(await asyncio.wait_for(self.ws.recv(), timeout))

    async def call(self, cmd, timeout=5, **fields):
        i = self.next_id
        self.next_id += 1
        msg = {"id": i, "cmd": cmd}
        msg.update(fields)
        await self.ws.send(self.encode(msg))
        end = time.time() + timeout
        while i not in self.replies:
            m = await self.recv(max(0.01, end - time.time()))
            if "id" in m:
                self.replies[m["id"]] = m
            else:
                self.pushes.append(m)
        return self.replies.pop(i)

    async def connect(self, token):
        r = await self.call("connect", token=token)
        assert "result" in r, r
        return r["result"]

    async def next_push(self, timeout=5):
        if self.pushes:
            return self.pushes.pop(0)
        while True:
            m = await self.recv(timeout)
            if "id" not in m:
                return m
            self.replies[m["id"]] = m

    async def next_event(self, timeout=5):
        """The next push that is not presence: another client's join or leave can come at any
        time (from another node, through Redis)."""
        while True:
            m = await self.next_push(timeout)
            if m.get("push") not in ("join", "leave"):
                return m

    async def close(self):
        await self.ws.close()


async def connected_client(node, uid, enc="json"):
    c = await Client.open(node.ws_url, enc)
    await c.connect(jwt(uid))
    return c


async def _close_opened():
    """Closes (with the closing handshake) every client a test left open. Left to asyncio.run's
    shutdown, each would wait out the websockets close_timeout (10 s) instead."""
    clients = list(_opened)
    del _opened[:]

    async def close(c):
        if c.ws.closed:
            return
        c.ws.transport.resume_reading()  # a test may have paused it
        try:
            await asyncio.wait_for(c.ws.close(), 5)
        except (asyncio.TimeoutError, OSError, websockets.exceptions.WebSocketException):
            c.ws.transport.abort()
    await asyncio.gather(*(close(c) for c in clients))


def run(coro, timeout=120):
    async def main():
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            await _close_opened()
    return asyncio.run(main())


class Follower:
    """A client that follows one channel (json): every publication must be the next offset of its
    epoch unless a signal came first (a `silent` gap otherwise). A closed connection is rejoined
    at `url()` and resubscribed with since; an `unsub` 116 is resubscribed with since too;
    `recovered: false` is a signal and moves the position. Counts what happened."""

    def __init__(self, url, uid, channel, secret=JWT_SECRET):
        self.url, self.uid, self.ch, self.secret = url, uid, channel, secret
        self.pos = None      # (epoch, offset) the client is at
        self.got = []        # offsets delivered (live or recovered), in order
        self.seen = []       # (epoch, offset, data) of each
        self.nodes = []      # the node of every connection
        self.silent = []     # (position, publication) that did not follow on
        self.signals = 0     # unsub 116 / recovered: false
        self.failed = 0      # connection attempts that failed
        self.reconnects = 0  # connections that closed under it

    async def join(self):
        for _ in range(20):
            try:
                self.c = await Client.open(self.url())
                res = await self.c.connect(jwt(self.uid, secret=self.secret))
                break
            except (OSError, websockets.exceptions.WebSocketException, AssertionError):
                self.failed += 1
                await asyncio.sleep(0.2)
        else:
            raise AssertionError("%s could not connect" % self.uid)
        self.nodes.append(res["node"])
        await self.subscribe()

    async def subscribe(self):
        for _ in range(100):
            kw = {"since": {"epoch": self.pos[0], "offset": self.pos[1]}} if self.pos else {}
            r = await self.c.call("subscribe", channel=self.ch, **kw)
            if "result" in r:
                break
            assert r["error"]["code"] == 111, r  # Redis (or its shard) failing over: retry
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("%s could not subscribe" % self.uid)
        res = r["result"]
        if self.pos and res["recovered"]:
            for p in res.get("publications", []):
                self.deliver(res["epoch"], p["offset"], p.get("data"))
        else:
            self.signals += 1 if self.pos else 0
            self.pos = (res["epoch"], res["offset"])

    def deliver(self, epoch, off, data=None):
        if (epoch, off) != (self.pos[0], self.pos[1] + 1):
            self.silent.append((self.pos, (epoch, off)))
        self.pos = (epoch, off)
        self.got.append(off)
        self.seen.append((epoch, off, data))

    async def follow(self, until):
        while time.time() < until:
            try:
                m = await self.c.recv(timeout=max(0.05, until - time.time()))
            except asyncio.TimeoutError:
                continue
            except websockets.exceptions.ConnectionClosed:
                self.reconnects += 1
                await self.join()
                continue
            if m.get("push") == "pub":
                self.deliver(self.pos[0], m["offset"], m.get("data"))
            elif m.get("push") == "unsub":
                assert m["code"] == 116, m
                self.signals += 1
                await self.subscribe()
            elif m.get("push") == "disconnect":
                assert m["reconnect"] is True, m


async def publish_steadily(call, channels, until, record, interval=0.02):
    """call(channel, k) -> HTTP status, run off the loop every interval until `until`, channels
    in turn; record(channel, status, k) gets each result."""
    loop, k = asyncio.get_running_loop(), 0
    while time.time() < until:
        ch = channels[k % len(channels)]
        st = await loop.run_in_executor(None, call, ch, k)
        record(ch, st, k)
        k += 1
        await asyncio.sleep(interval)
