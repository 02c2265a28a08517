"""Foundation: health, readiness through Redis, metrics, subprotocol negotiation, configuration
errors, and clean shutdown with connections open (the fixture checks exit 0 and no leaks)."""
import asyncio
import os
import shutil
import signal
import subprocess

import pytest
import websockets

from conftest import (NODE_BIN, ROOT, SUBPROTO, Client, Node, assert_clean_exit, connected_client,
                      metric, run)


def test_health_ready_metrics(node):
    assert node.http("GET", "/healthz") == (200, "ok\n")
    assert node.http("GET", "/readyz")[0] == 200
    st, text = node.http("GET", "/metrics")
    assert st == 200
    for name in ("cardgw_connections_open", "cardgw_connections_accepted_total",
                 'cardgw_connections_closed_total{reason="auth_timeout"}', "cardgw_frames_in_total",
                 "cardgw_bytes_out_total", 'cardgw_redis_connected{conn="pubsub"} 1',
                 'cardgw_redis_connected{conn="command"} 1', "cardgw_redis_reconnects_total"):
        assert name in text, name
    assert node.http("GET", "/nope")[0] == 404


@pytest.mark.parametrize("enc", ["json", "msgpack"])
def test_each_subprotocol_connects(node, enc):
    async def go():
        c = await Client.open(node.ws_url, enc)
        assert c.ws.subprotocol == SUBPROTO[enc]
        r = await c.call("ping")
        assert r == {"id": 1, "result": {}}
        await c.close()
    run(go())


def test_no_subprotocol_is_refused_with_http_error(node):
    async def go():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await websockets.connect(node.ws_url)
        assert e.value.status_code == 400
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await websockets.connect(node.ws_url, subprotocols=["chat", "cardgw.v0"])
        assert e.value.status_code == 400
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await websockets.connect(node.ws_url.replace("/ws", "/other"),
                                     subprotocols=[SUBPROTO["json"]])
        assert e.value.status_code == 404
    run(go())


def test_redis_outage_keeps_connections_and_readiness_follows(node, redis_server):
    async def go():
        c = await connected_client(node, "u1")
        redis_server.stop()
        for _ in range(100):
            if node.http("GET", "/readyz")[0] == 503:
                break
            await asyncio.sleep(0.05)
        assert node.http("GET", "/readyz")[0] == 503
        assert node.http("GET", "/healthz")[0] == 200
        assert (await c.call("ping"))["result"] == {}  # the socket stayed up
        redis_server.start()
        for _ in range(200):
            if node.http("GET", "/readyz")[0] == 200:
                break
            await asyncio.sleep(0.05)
        assert node.http("GET", "/readyz")[0] == 200
        assert (await c.call("ping"))["result"] == {}
        st, text = node.http("GET", "/metrics")
        assert st == 200
        assert (metric(text, "cardgw_redis_reconnects_total") or 0) >= 1, text
        await c.close()
    run(go())


def test_auth_timeout_closes_with_4003(make_node):
    node = make_node({"auth_timeout_ms": 300})

    async def go():
        c = await Client.open(node.ws_url)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            await c.recv(timeout=5)
        assert e.value.code == 4003
    run(go())


def test_sigterm_closes_clients_with_1001_and_frees_everything(make_node):
    node = make_node()

    async def go():
        clients = [await connected_client(node, "u%d" % i, enc) for i, enc in
                   enumerate(["json", "msgpack", "json"])]
        await clients[0].call("subscribe", channel="public:lobby")
        node.proc.send_signal(signal.SIGTERM)
        for c in clients:
            push = await c.next_push(timeout=10)
            assert push["push"] == "disconnect" and push["reconnect"] is True
            assert push["code"] == 4000 and 0 <= push["delay_ms"] <= 300
            with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                await c.recv(timeout=10)
            assert e.value.code == 1001
    run(go())
    node.proc.wait(20)  # it exits by itself after the drain
    rc = node.stop()
    assert_clean_exit(rc, node.read_log())


def _check_config(path, env=None):
    return subprocess.run([NODE_BIN, "--config", path, "--check-config"], capture_output=True,
                          text=True, env=dict(os.environ, **(env or {})))


def test_check_config_prints_and_rejects_typos(tmp_path):
    ok = _check_config(os.path.join(ROOT, "config.example"))
    assert ok.returncode == 0, ok.stderr
    assert "port = 8080" in ok.stdout and "namespace.group.subscribe = members" in ok.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text("port = 9000\nprot = 9001\n")
    r = _check_config(str(bad))
    assert r.returncode == 2
    assert "prot" in r.stderr and ":2" in r.stderr
    bad.write_text("port = ninety\n")
    r = _check_config(str(bad))
    assert r.returncode == 2 and "port" in r.stderr
    # environment overrides the file, a bad environment value names the variable
    r = _check_config(os.path.join(ROOT, "config.example"), {"CARDGW_PORT": "9123"})
    assert r.returncode == 0 and "port = 9123" in r.stdout
    r = _check_config(os.path.join(ROOT, "config.example"), {"CARDGW_LOG_LEVEL": "loud"})
    assert r.returncode == 2 and "CARDGW_LOG_LEVEL" in r.stderr
    r = subprocess.run([NODE_BIN, "--config", str(tmp_path / "missing.conf")], capture_output=True,
                       text=True)
    assert r.returncode == 2


def test_port_in_use_fails_cleanly(redis_server, node):
    other = Node(redis_server.url, {"port": node.port})  # its config file only: never started
    try:
        r = subprocess.run([NODE_BIN, "--config", other.config], capture_output=True, text=True,
                           timeout=30)
    finally:
        shutil.rmtree(other.dir, ignore_errors=True)
    assert r.returncode == 1
    assert "cannot listen" in r.stderr and "Sanitizer" not in r.stderr
    assert node.http("GET", "/healthz")[0] == 200  # the first node is unaffected


def test_ping_keeps_live_clients_and_drops_dead_ones(make_node):
    """The node pings a connection silent for ping_interval_s (the client library answers with
    a pong) and closes one silent for three intervals with 4007."""
    node = make_node({"ping_interval_s": 1})

    async def go():
        live = await connected_client(node, "alive")
        dead = await connected_client(node, "dead")
        dead.ws.transport.pause_reading()  # a peer that vanished: no pongs
        await asyncio.sleep(4.5)
        assert (await live.call("ping"))["result"] == {}
        dead.ws.transport.resume_reading()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            while True:
                await dead.recv(timeout=10)
        assert e.value.code == 4007
        assert (await live.call("ping"))["result"] == {}  # still open after 3+ intervals
        st, text = node.http("GET", "/metrics")
        assert 'cardgw_connections_closed_total{reason="timeout"} 1' in text
    run(go())
