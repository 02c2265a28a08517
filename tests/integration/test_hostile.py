"""Hostile clients against a real node over raw sockets: pipelined and badly framed HTTP, trickled
requests, descriptor exhaustion, connection floods, per-IP / per-user / per-node caps, and a
stalled event loop. After each, the node must still serve /healthz and a WebSocket client, sit
idle, and stop cleanly on SIGTERM (the fixtures check the exit code and the sanitizer report)."""
import asyncio
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import websockets

from conftest import API_KEY, Client, connected_client, free_port, http_call, jwt, run

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def assert_idle(pid, seconds=1.5, max_share=0.5):
    """The process used less than max_share of one core over `seconds` (a wedged lws loop or an
    accept loop spinning on EMFILE uses all of it)."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    used = cpu_seconds(pid) - before
    assert used < seconds * max_share, "node busy: %.2f s CPU in %.1f s" % (used, seconds)


def raw_exchange(port, data, src="127.0.0.1", timeout=5.0, pause=None):
    """Sends data (bytes, or a list of bytes sent `pause` seconds apart) and reads until the node
    closes. Returns what was read; raises if the node did not close within timeout."""
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    chunks = data if isinstance(data, list) else [data]
    try:
        for i, c in enumerate(chunks):
            if i and pause:
                time.sleep(pause)
            s.sendall(c)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    end = time.time() + timeout
    try:
        while time.time() < end:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    except ConnectionResetError:
        return out
    except socket.timeout:
        raise AssertionError("node did not close the connection; got %r" % out[:300])
    finally:
        s.close()
    raise AssertionError("node did not close the connection; got %r" % out[:300])


def http_get(port, path, src="127.0.0.1", timeout=5):
    """A one-shot HTTP/1.1 GET from a chosen source address: (status, body) or (None, '')."""
    try:
        out = raw_exchange(port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode(), src,
                           timeout)
    except (OSError, AssertionError):
        return None, ""
    m = re.match(rb"HTTP/1\.1 (\d+)", out)
    return (int(m.group(1)) if m else None), out.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")


def statuses(resp):
    return [int(x) for x in re.findall(rb"HTTP/1\.1 (\d{3})", resp)]


def metric(text, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


async def ws_works(node, src="127.0.0.1", uid="probe"):
    ws = await websockets.connect(node.ws_url, subprotocols=["cardgw.v1.json"], max_size=None,
                                  ping_interval=None, local_addr=(src, 0), open_timeout=5)
    c = Client(ws, "json")
    await c.connect(jwt(uid))
    assert (await c.call("ping"))["result"] == {}
    await c.close()


def assert_serving(node, src="127.0.0.1"):
    assert http_get(node.port, "/healthz", src)[0] == 200
    run(ws_works(node, src))


H = b"Host: x\r\n"
AUTH = b"Authorization: apikey " + API_KEY.encode() + b"\r\n"
PUB = b'{"channel":"public:p","data":1}'
CL = b"Content-Length: %d\r\n" % len(PUB)

# name -> (bytes, status codes the node may answer with, in order, before it closes)
VARIANTS = {
    # the wedge of issue 10: two requests in one write, the second with a body
    "get_then_post_with_body": (b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n"
                                b"POST /healthz HTTP/1.1\r\n" + H +
                                b"Content-Length: 2\r\n\r\n{}", [200]),
    "two_unauthenticated_publishes": (b"POST /api/v1/publish HTTP/1.1\r\n" + H + CL + b"\r\n" + PUB
                                      + b"POST /api/v1/publish HTTP/1.1\r\n" + H + CL + b"\r\n"
                                      + PUB, [401]),
    "two_authenticated_publishes": (b"POST /api/v1/publish HTTP/1.1\r\n" + H + AUTH + CL + b"\r\n"
                                    + PUB + b"POST /api/v1/publish HTTP/1.1\r\n" + H + AUTH + CL
                                    + b"\r\n" + PUB, [200]),
    "post_with_body_then_get": (b"POST /api/v1/publish HTTP/1.1\r\n" + H + AUTH + CL + b"\r\n" + PUB
                                + b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n", [200]),
    "get_then_get": (b"GET /healthz HTTP/1.1\r\n" + H + b"\r\nGET /readyz HTTP/1.1\r\n" + H
                     + b"\r\n", [200]),
    "empty_posts": (b"POST /healthz HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n"
                    b"POST /healthz HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n", [200]),
    "request_after_401": (b"GET /api/v1/position?channel=public:p HTTP/1.1\r\n" + H + b"\r\n"
                          b"POST /api/v1/publish HTTP/1.1\r\n" + H + CL + b"\r\n" + PUB, [401]),
    "body_larger_than_announced": (b"POST /api/v1/publish HTTP/1.1\r\n" + H + AUTH +
                                   b"Content-Length: 2\r\n\r\n{}" + PUB + b"\r\n\r\n"
                                   b"POST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nz", [400]),
    "chunked_body": (b"POST /api/v1/publish HTTP/1.1\r\n" + H + AUTH +
                     b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(PUB) + PUB + b"\r\n0\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n", [400]),
    "chunked_and_length": (b"POST /api/v1/publish HTTP/1.1\r\n" + H + AUTH + CL +
                           b"Transfer-Encoding: chunked\r\n\r\n" + PUB, [400]),
    "two_content_lengths": (b"POST /api/v1/publish HTTP/1.1\r\n" + H + AUTH + CL + CL + b"\r\n"
                            + PUB + PUB, [400]),
    "content_length_list": (b"POST /api/v1/publish HTTP/1.1\r\n" + H + AUTH +
                            b"Content-Length: 31, 31\r\n\r\n" + PUB, [400]),
    "negative_content_length": (b"POST /api/v1/publish HTTP/1.1\r\n" + H + AUTH +
                                b"Content-Length: -1\r\n\r\n" + PUB, [400]),
    "upgrade_with_body": (b"GET /ws HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Protocol: cardgw.v1.json\r\nContent-Length: 2\r\n\r\n{}"
                          b"POST /healthz HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\n{}", [400]),
    "upgrade_chunked": (b"GET /ws HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Protocol: cardgw.v1.json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [400]),
    "refused_upgrade_then_post": (b"GET /nows HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                                  b"POST /healthz HTTP/1.1\r\n" + H +
                                  b"Content-Length: 2\r\n\r\n{}", [404]),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, []),
    "header_without_end": (b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 20, None),
}


def test_pipelined_and_badly_framed_http_cannot_wedge_the_node(make_node):
    node = make_node({"http_timeout_ms": 2000})
    for name, (data, want) in VARIANTS.items():
        t0 = time.time()
        # header_without_end never completes: the node closes it at http_timeout_ms
        resp = raw_exchange(node.port, data, timeout=6)
        got = statuses(resp)
        if want is not None:
            assert got[:len(want)] == want and len(got) <= 1, (name, resp[:400])
        if want:
            assert b"connection: close" in resp.lower(), (name, resp[:400])
        assert time.time() - t0 < 5, name
        st, _ = node.http("GET", "/healthz", timeout=3)
        assert st == 200, "after %s: /healthz %r\n%s" % (name, st, node.read_log()[-3000:])
    assert_idle(node.proc.pid)
    assert_serving(node)
    # SIGTERM still works: the fixture stops the node and requires exit 0 within its deadline
    rc = node.stop(timeout=10)
    assert rc == 0


def test_every_variant_in_parallel_then_sigterm(make_node):
    """All variants at once, twice over, on separate sockets: nothing wedges, SIGTERM exits 0."""
    node = make_node({"http_timeout_ms": 2000})
    socks = []
    for _ in range(2):
        for data, _want in VARIANTS.values():
            s = socket.create_connection(("127.0.0.1", node.port))
            s.sendall(data)
            socks.append(s)
    time.sleep(0.5)
    assert_serving(node)
    for s in socks:
        s.close()
    assert_idle(node.proc.pid)
    t0 = time.time()
    assert node.stop(timeout=10) == 0
    assert time.time() - t0 < 6


def test_request_must_arrive_within_a_total_deadline(make_node):
    """Headers or a body trickled a byte at a time are cut at http_timeout_ms in total, however
    regular the trickle."""
    node = make_node({"http_timeout_ms": 1500})
    body_trickle = [b"POST /api/v1/publish HTTP/1.1\r\n" + H + AUTH + b"Content-Length: 40\r\n\r\n"]
    body_trickle += [b"x"] * 40
    t0 = time.time()
    raw_exchange(node.port, body_trickle, pause=0.2, timeout=8)
    assert time.time() - t0 < 4
    header_trickle = [bytes([b]) for b in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 40]
    t0 = time.time()
    raw_exchange(node.port, header_trickle, pause=0.1, timeout=8)
    assert time.time() - t0 < 4
    # a half-open socket that sends nothing at all
    t0 = time.time()
    raw_exchange(node.port, b"", timeout=8)
    assert time.time() - t0 < 4
    st, text = node.http("GET", "/metrics")
    assert metric(text, "cardgw_http_timeouts_total") >= 3
    assert_serving(node)


def _flood(port, n, src="127.0.0.1", payload=b"POST /api/v1/publish HTTP/1.1\r\nX-Slow: "):
    """n connection attempts from src, each left half-open with a partial request (its headers
    never end). Returns the sockets (the caller closes them)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.bind((src, 0))
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    time.sleep(0.5)
    for s in socks:
        try:
            s.send(payload)
        except OSError:
            pass
    return socks


def _log_ok(node, max_lines=60):
    log = node.read_log()
    assert len(log.splitlines()) < max_lines and len(log) < 20000, log[-4000:]


def test_one_address_cannot_exhaust_descriptors(make_node):
    """ulimit -n 1024: 2,000 connection attempts from 127.0.0.1, left half-open with trickled
    bodies. A client from 127.0.0.2 is still served, the node is idle and its log small."""
    node = make_node({"max_new_connections_per_ip_per_s": 100, "log_level": "info"}, nofile=1024)
    socks = _flood(node.port, 2000)
    try:
        for _ in range(3):  # keep trickling, one byte every second
            for s in socks:
                try:
                    s.send(b"x")
                except OSError:
                    pass
            assert_serving(node, src="127.0.0.2")
            time.sleep(1)
        assert_idle(node.proc.pid, 2.0)
        st, text = http_get(node.port, "/metrics", src="127.0.0.3")
        assert st == 200
        assert metric(text, "cardgw_open_files_limit") == 1024
        refused = sum(int(v) for v in re.findall(
            r'cardgw_connections_refused_total\{reason="ip_(?:open|rate)"\} (\d+)', text))
        assert refused >= 1000, text
    finally:
        for s in socks:
            s.close()
    _log_ok(node)


def test_descriptor_exhaustion_without_per_ip_caps(make_node):
    """With the per-IP caps off, 2,000 half-open sockets exhaust a 1,024 fd limit: accept fails
    with EMFILE. The node pauses accepting instead of spinning, logs that once per interval,
    closes the half-open sockets at http_timeout_ms, and then serves a client again."""
    node = make_node({"max_connections_per_ip": 0, "max_new_connections_per_ip_per_s": 0,
                      "http_timeout_ms": 1500}, nofile=1024)
    socks = _flood(node.port, 2000)
    try:
        time.sleep(0.5)
        assert_idle(node.proc.pid, 1.5)
        end = time.time() + 20
        while time.time() < end and http_get(node.port, "/healthz", "127.0.0.2", 2)[0] != 200:
            time.sleep(0.2)
        assert_serving(node, src="127.0.0.2")
        st, text = http_get(node.port, "/metrics", "127.0.0.2")
        assert metric(text, "cardgw_http_timeouts_total") >= 500
        assert int(re.search(r'refused_total\{reason="fd_limit"\} (\d+)', text).group(1)) >= 1
    finally:
        for s in socks:
            s.close()
    assert_idle(node.proc.pid, 1.5)
    _log_ok(node)
    assert "pausing accepts" in node.read_log()


def test_per_ip_rate_cap(make_node):
    node = make_node({"max_new_connections_per_ip_per_s": 5})
    time.sleep(1.1)  # a fresh one-second window
    got = [http_get(node.port, "/healthz")[0] for _ in range(12)]
    assert got.count(200) <= 10 and None in got, got  # at most two windows' worth get in
    assert_serving(node, src="127.0.0.2")  # another address is not limited
    time.sleep(1.1)
    st, text = http_get(node.port, "/metrics", "127.0.0.3")
    assert int(re.search(r'refused_total\{reason="ip_rate"\} (\d+)', text).group(1)) >= 2


def test_per_ip_open_cap(make_node):
    node = make_node({"max_connections_per_ip": 4, "http_timeout_ms": 60000})
    held = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(4)]
    time.sleep(0.2)
    try:
        assert http_get(node.port, "/healthz")[0] is None  # closed at accept, no answer
        assert http_get(node.port, "/healthz", "127.0.0.2")[0] == 200
    finally:
        held[0].close()
    time.sleep(0.3)
    assert http_get(node.port, "/healthz")[0] == 200  # a slot is free again
    for s in held[1:]:
        s.close()
    time.sleep(0.3)
    st, text = http_get(node.port, "/metrics")
    assert int(re.search(r'refused_total\{reason="ip_open"\} (\d+)', text).group(1)) >= 1
    assert metric(text, "cardgw_sockets_open") == 1  # this request only


def test_per_user_cap(make_node):
    node = make_node({"max_connections_per_user": 3})

    async def go():
        cs = [await connected_client(node, "heavy") for _ in range(3)]
        c4 = await Client.open(node.ws_url)
        r = await c4.call("connect", token=jwt("heavy"))
        assert r["error"]["code"] == 117, r
        with pytest.raises(websockets.ConnectionClosed) as e:
            await c4.recv(5)
        assert e.value.rcvd.code == 4008
        other = await connected_client(node, "light")  # other users are not affected
        await other.close()
        await cs[0].close()
        await asyncio.sleep(0.3)
        c5 = await connected_client(node, "heavy")  # a slot is free again
        for c in cs[1:] + [c5]:
            await c.close()
    run(go())
    st, text = node.http("GET", "/metrics")
    assert '{reason="user"} 1' in text
    assert 'cardgw_connections_closed_total{reason="user_limit"} 1' in text


def test_max_connections_refuses_upgrade_with_503(make_node):
    node = make_node({"max_connections": 2})

    async def go():
        a = await connected_client(node, "a")
        b = await connected_client(node, "b")
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await Client.open(node.ws_url)
        assert e.value.status_code == 503
        assert node.http("GET", "/healthz")[0] == 200  # plain HTTP is still served
        await a.close()
        await asyncio.sleep(0.3)
        c = await connected_client(node, "c")
        await b.close()
        await c.close()
    run(go())
    st, text = node.http("GET", "/metrics")
    assert '{reason="max_connections"} 1' in text


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return sorted(int(x) for x in out.stdout.split())


def test_watchdog_restarts_a_stalled_worker(make_node):
    """A worker whose loop is stalled on purpose (debug hook: SIGUSR2) is ended by its watchdog
    (exit 3) and restarted by the supervisor; the restart shows in the log and in /metrics."""
    node = make_node({"workers": 2, "debug_hooks": 1, "loop_stall_timeout_ms": 1000})
    end = time.time() + 10
    while time.time() < end and len(_children(node.proc.pid)) < 2:
        time.sleep(0.1)
    workers = _children(node.proc.pid)
    assert len(workers) == 2
    # a process that is stopped as a whole (SIGSTOP, a frozen VM) is not judged stalled
    os.kill(workers[1], signal.SIGSTOP)
    time.sleep(2.5)
    os.kill(workers[1], signal.SIGCONT)
    time.sleep(1.5)
    assert _children(node.proc.pid) == workers, node.read_log()[-2000:]
    victim = workers[0]
    os.kill(victim, signal.SIGUSR2)
    end = time.time() + 15
    while time.time() < end:
        now = _children(node.proc.pid)
        if victim not in now and len(now) == 2:
            break
        time.sleep(0.1)
    assert victim not in now and len(now) == 2, now
    log = node.read_log()
    assert "the event loop has not turned for" in log, log[-3000:]
    assert re.search(r"worker \d \(pid %d\) exited with 3 \(event loop stalled\): restarting"
                     r" it in 1000 ms" % victim, log), log[-3000:]
    seen = set()
    end = time.time() + 15
    while time.time() < end and len(seen) < 2:
        st, text = node.http("GET", "/metrics", timeout=2)
        if st == 200:
            seen.add((metric(text, "cardgw_worker_restarts_total"),
                      metric(text, "cardgw_worker_replaced_exit_code")))
        time.sleep(0.05)
    assert (1, 3) in seen, seen  # the new worker
    assert (0, 0) in seen, seen  # the other one never stopped
    assert_serving(node)


def test_supervisor_stops_while_a_restart_is_pending(make_node):
    """SIGTERM to the supervisor right after a worker died: the pending restart is cancelled,
    the other worker drains, and the supervisor exits 0 promptly."""
    node = make_node({"workers": 2})
    end = time.time() + 10
    while time.time() < end and len(_children(node.proc.pid)) < 2:
        time.sleep(0.1)
    workers = _children(node.proc.pid)
    os.kill(workers[0], signal.SIGKILL)
    time.sleep(0.3)  # reaped, restart scheduled in 1 s
    t0 = time.time()
    assert node.stop(timeout=10) == 0
    assert time.time() - t0 < 5
    log = node.read_log()
    assert "exited with 137: restarting it in 1000 ms" in log, log[-2000:]
    assert log.count("listening on") == 2  # nobody was restarted


def test_admin_port_takes_the_same_hostile_http(make_node):
    """Every malformed, pipelined or smuggling variant sent to admin_port: at most one response
    each (closing the connection), within the deadline; the admin port and the public one keep
    serving, and the node is idle afterwards."""
    admin = free_port()
    node = make_node({"http_timeout_ms": 2000, "admin_port": admin})
    for name, (data, _want) in VARIANTS.items():
        t0 = time.time()
        resp = raw_exchange(admin, data, timeout=6)
        assert len(statuses(resp)) <= 1, (name, resp[:400])
        assert time.time() - t0 < 5, name
        st, _ = http_call("http://127.0.0.1:%d/metrics" % admin, timeout=3)
        assert st == 200, "after %s: admin /metrics %r" % (name, st)
    assert_idle(node.proc.pid)
    assert_serving(node)
