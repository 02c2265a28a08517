"""allowed_origins: a WebSocket upgrade whose Origin is not in the list gets HTTP 403 before any
WebSocket exists (cardgw_connections_refused_total{reason="origin"}); exact origins and
*.domain patterns; scheme, host and port compared strictly; an upgrade without Origin follows
allow_missing_origin; no list = no check. Real nodes, a real WebSocket client and raw sockets."""
import re
import shutil
import socket
import subprocess

import websockets

from conftest import NODE_BIN, SUBPROTO, Client, Node, jwt, run

ALLOWED = "https://app.example.com, http://localhost:8080 https://*.example.org"


async def try_origin(node, origin):
    """'ok' when the upgrade with this Origin (None: no header) succeeds and the connection
    works, else the HTTP status it was refused with."""
    kw = {"origin": origin} if origin is not None else {}
    try:
        c = await Client.open(node.ws_url, "json", **kw)
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    await c.connect(jwt("u1"))
    await c.close()
    return "ok"


def refused_origin(node):
    text = node.http("GET", "/metrics")[1]
    return int(re.search(r'cardgw_connections_refused_total\{reason="origin"\} (\d+)',
                         text).group(1))


def raw_upgrade(node, headers):
    """The status line of an upgrade request sent as raw bytes with extra header lines."""
    req = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Protocol: %s\r\n%s\r\n" % (SUBPROTO["json"], headers))
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        s.sendall(req.encode("latin-1"))
        return s.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")


def test_allowlist_exact_pattern_and_refusals(make_node):
    node = make_node({"allowed_origins": ALLOWED})

    async def go():
        allowed = ["https://app.example.com", "HTTPS://APP.Example.com",
                   "https://app.example.com:443", "http://localhost:8080",
                   "https://a.example.org", "https://a.b.example.org", None]
        for o in allowed:
            assert await try_origin(node, o) == "ok", o
        refused = ["http://app.example.com",        # scheme
                   "https://app.example.com:8443",  # port
                   "http://localhost",              # port 80, not 8080
                   "https://example.org",           # a pattern is not the bare domain
                   "https://evil-example.org",      # nor a suffix trick
                   "https://a.example.org.evil.net",
                   "https://evilapp.example.com",
                   "null",                          # sandboxed iframes, file: pages
                   "https://app.example.com/",      # not an origin
                   "https://user@app.example.com"]
        for o in refused:
            assert await try_origin(node, o) == 403, o
        return len(refused)
    n = run(go())
    assert refused_origin(node) == n
    # two Origin headers, or one too long: refused as well
    assert raw_upgrade(node, "Origin: https://app.example.com\r\n"
                             "Origin: https://app.example.com\r\n").startswith("HTTP/1.1 403")
    assert raw_upgrade(node, "Origin: https://%s.example.org\r\n" % ("a" * 300)).startswith(
        "HTTP/1.1 403")
    assert raw_upgrade(node, "Origin: https://app.example.com\r\n").startswith("HTTP/1.1 101")
    assert refused_origin(node) == n + 2
    assert "not in allowed_origins" in node.read_log()
    assert node.http("GET", "/healthz") == (200, "ok\n")  # the node keeps serving


def test_missing_origin_can_be_refused_and_no_list_checks_nothing(make_node):
    strict = make_node({"allowed_origins": "https://app.example.com",
                        "allow_missing_origin": 0})
    open_node = make_node()

    async def go():
        assert await try_origin(strict, None) == 403
        assert await try_origin(strict, "https://app.example.com") == "ok"
        for o in (None, "https://evil.example", "null"):
            assert await try_origin(open_node, o) == "ok", o
    run(go())
    assert refused_origin(strict) == 1 and refused_origin(open_node) == 0


def test_bad_allowlist_is_a_configuration_error(redis_server):
    for bad in ("app.example.com", "https://*", "https://a.example.com/path", "null"):
        n = Node(redis_server.url, {"allowed_origins": bad})
        p = subprocess.run([NODE_BIN, "--config", n.config, "--check-config"],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode == 2 and "allowed_origins" in p.stderr, (bad, p.stderr)
        shutil.rmtree(n.dir, ignore_errors=True)
