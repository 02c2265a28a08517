"""TLS in the node (tls_cert_file, tls_key_file): WebSocket and HTTP over TLS with a real TLS
client, TLS 1.1 refused, a plain-HTTP client on the TLS port does not wedge the node, SIGHUP
swaps the certificate for new handshakes while connected clients keep going, a bad reload keeps
the old one, and bad files at start exit 2. Certificates are made here with the openssl CLI
(a test CA and two server certificates with different serials); real nodes, real clients."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings

import pytest
import websockets

from conftest import (API_KEY, NODE_BIN, Client, Node, assert_clean_exit, free_port, http_call, jwt,
                      metric, run)


class Pki:
    """A throwaway CA and server certificates for 127.0.0.1, made with the openssl CLI."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cardgw-pki-")
        self.ca = self.path("ca.pem")
        self.openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                     "-out", "ca.pem", "-days", "2", "-subj", "/CN=cardgw test CA")
        with open(self.path("ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def openssl(self, *args):
        subprocess.run(["openssl"] + list(args), cwd=self.dir, check=True, capture_output=True)

    def server(self, name, serial, key="rsa:2048"):
        """(full-chain certificate file, key file) of a server certificate signed by the CA."""
        newkey = ["-newkey", key] if key.startswith("rsa") else [
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        self.openssl("req", *newkey, "-nodes", "-keyout", name + ".key", "-out",
                     name + ".csr", "-subj", "/CN=" + name)
        self.openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                     "-set_serial", serial, "-days", "2", "-extfile", "ext", "-out",
                     name + ".leaf")
        with open(self.path(name + ".pem"), "w") as f:  # leaf then CA: a full chain
            f.write(open(self.path(name + ".leaf")).read() + open(self.ca).read())
        return self.path(name + ".pem"), self.path(name + ".key")

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        return ctx

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class TlsNode(Node):
    """A node whose port speaks TLS: health checks and API calls over https."""

    def __init__(self, redis_url, ctx, extra):
        super().__init__(redis_url, extra)
        self.ctx = ctx

    @property
    def ws_url(self):
        return "wss://127.0.0.1:%d/ws" % self.port

    def http(self, method, path, body=None, key=API_KEY, timeout=5):
        return http_call("https://127.0.0.1:%d%s" % (self.port, path), method, body, key,
                         timeout, self.ctx)


@pytest.fixture
def pki():
    p = Pki()
    yield p
    p.cleanup()


@pytest.fixture
def make_tls_node(redis_server, pki):
    nodes = []

    def make(cert, key, extra=None):
        cfg = {"tls_cert_file": cert, "tls_key_file": key}
        cfg.update(extra or {})
        n = TlsNode(redis_server.url, pki.client_context(), cfg)
        nodes.append(n)
        return n.start()

    yield make
    for n in nodes:
        assert_clean_exit(*n.cleanup())


def peer_serial(node, ctx):
    """The serial number (hex, as in the certificate) a new TLS handshake with node presents."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert()["serialNumber"]


def wait_log(node, text, count=1, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if node.read_log().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("no %r (x%d) in the log:\n%s" % (text, count, node.read_log()[-3000:]))


async def tls_client(node, uid, ctx, enc="json"):
    c = await Client.open(node.ws_url, enc, ssl=ctx)
    await c.connect(jwt(uid))
    return c


async def next_pub(c, timeout=5):
    while True:
        m = await c.next_event(timeout)
        if m.get("push") == "pub":
            return m


def test_websocket_and_http_over_tls(make_tls_node, pki):
    cert, key = pki.server("server-one", "0x1111")
    root = pki.path("static")
    os.mkdir(root)
    page = os.urandom(300000)  # written in 16 KB chunks, through TLS
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(page)
    node = make_tls_node(cert, key, {"max_send_queue_bytes": 16 << 20, "static_root": root})
    ctx = pki.client_context()
    assert "TLS on (TLS 1.2+): certificate CN=server-one, serial 1111" in node.read_log()
    assert node.http("GET", "/healthz") == (200, "ok\n")
    assert peer_serial(node, ctx) == "1111"
    with urllib.request.urlopen("https://127.0.0.1:%d/big.bin" % node.port, timeout=10,
                                context=ctx) as r:
        assert r.status == 200 and r.read() == page
    assert node.http("GET", "/nope")[0] == 404

    async def go():
        a = await tls_client(node, "alice", ctx)
        b = await tls_client(node, "bob", ctx, "msgpack")
        for c in (a, b):
            assert "result" in await c.call("subscribe", channel="public:tls")
        st, _ = node.api("/api/v1/publish", {"channel": "public:tls", "data": {"n": 1}})
        assert st == 200
        for c in (a, b):
            assert (await next_pub(c))["data"] == {"n": 1}
        # more than the socket takes at once: what TLS does not write now lws keeps and writes
        # when the socket drains (never a plain send() past TLS); every frame arrives, in order
        big = "x" * 60000
        for i in range(100):
            assert node.api("/api/v1/publish", {"channel": "public:tls",
                                                "data": {"i": i, "pad": big}})[0] == 200
        for c in (a, b):
            got = [(await next_pub(c, 10))["data"]["i"] for _ in range(100)]
            assert got == list(range(100))
        # a client's own command and reply over TLS
        assert "result" in await a.call("presence", channel="public:tls")
        # SIGTERM with TLS clients connected: the drain's push and Close frame go through TLS
        node.proc.send_signal(signal.SIGTERM)
        for c in (a, b):
            push = await c.next_event(timeout=10)
            assert push["push"] == "disconnect" and push["reconnect"] is True, push
            with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                while True:  # presence leaves of the other client may come first
                    assert (await c.recv(timeout=10)).get("push") in ("join", "leave")
            assert e.value.code == 1001
    run(go())
    node.proc.wait(20)  # exits by itself after the drain; the fixture checks it was clean


def _tls11_context(ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    with warnings.catch_warnings():  # deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 offers TLS 1.1 only at level 0
    return ctx


def test_old_protocols_and_plain_http_are_refused_and_the_node_keeps_serving(make_tls_node,
                                                                              pki):
    cert, key = pki.server("server-one", "0x1111")
    node = make_tls_node(cert, key, {"http_timeout_ms": 1000})
    # TLS 1.1 (and below): the node answers the ClientHello with a protocol_version alert
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError) as e:
            _tls11_context(pki.ca).wrap_socket(raw, server_hostname="127.0.0.1")
    assert "TLSV1_ALERT_PROTOCOL_VERSION" in str(e.value), e.value
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % node.port,
                        "-tls1_1"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=10)
    assert "alert protocol version" in p.stdout + p.stderr, p.stdout + p.stderr
    # TLS 1.2 works, with a forward-secret AEAD suite
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % node.port,
                        "-tls1_2", "-CAfile", pki.ca], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=10)
    assert "Protocol  : TLSv1.2" in p.stdout and "Cipher    : ECDHE-" in p.stdout, p.stdout
    assert "Verify return code: 0 (ok)" in p.stdout, p.stdout
    # plain HTTP to the TLS port: no answer, the socket is closed
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/"), data
    # a socket that says nothing is closed at http_timeout_ms (1 s), not kept forever
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        t0 = time.time()
        try:
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
        assert time.time() - t0 < 4
    # the node still serves TLS clients
    assert node.http("GET", "/healthz") == (200, "ok\n")
    assert peer_serial(node, pki.client_context()) == "1111"


def test_sighup_swaps_the_certificate_and_keeps_connected_clients(make_tls_node, pki):
    one_cert, one_key = pki.server("server-one", "0x1111")
    two_cert, two_key = pki.server("server-two", "0x2222")
    live_cert, live_key = pki.path("live.pem"), pki.path("live.key")
    shutil.copy(one_cert, live_cert)
    shutil.copy(one_key, live_key)
    node = make_tls_node(live_cert, live_key)
    ctx = pki.client_context()
    assert peer_serial(node, ctx) == "1111"

    def install(cert, key):  # as a certificate renewal would: whole new files renamed in place
        for src, dst in ((cert, live_cert), (key, live_key)):
            shutil.copy(src, dst + ".new")
            os.replace(dst + ".new", dst)

    async def go():
        old = await tls_client(node, "alice", ctx)
        assert "result" in await old.call("subscribe", channel="public:renew")
        install(two_cert, two_key)
        node.proc.send_signal(signal.SIGHUP)
        wait_log(node, "TLS reloaded: new handshakes get certificate CN=server-two, serial 2222")
        assert peer_serial(node, ctx) == "2222"
        new = await tls_client(node, "bob", ctx)
        assert "result" in await new.call("subscribe", channel="public:renew")
        assert node.api("/api/v1/publish", {"channel": "public:renew", "data": "after"})[0] == 200
        for c in (old, new):  # the connection made before the reload keeps going
            assert (await next_pub(c))["data"] == "after"

        # a broken key file: the reload fails, logs one line, the node keeps the new-old pair
        with open(live_key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        node.proc.send_signal(signal.SIGHUP)
        wait_log(node, "TLS reload failed, keeping the old certificate: tls_key_file")
        # a key that does not match the certificate: refused the same way
        shutil.copy(one_key, live_key)
        node.proc.send_signal(signal.SIGHUP)
        wait_log(node, "TLS reload failed", count=2)
        assert "does not match the certificate" in node.read_log()
        # a good pair of another key type (ECDSA for RSA): refused, a restart changes it
        ec_cert, ec_key = pki.server("server-ec", "0x3333", key="ec")
        install(ec_cert, ec_key)
        node.proc.send_signal(signal.SIGHUP)
        wait_log(node, "TLS reload failed", count=3)
        assert "another key type than the running one" in node.read_log()
        # a missing certificate file
        os.unlink(live_cert)
        node.proc.send_signal(signal.SIGHUP)
        wait_log(node, "TLS reload failed", count=4)
        assert peer_serial(node, ctx) == "2222"
        assert node.api("/api/v1/publish", {"channel": "public:renew", "data": "still"})[0] == 200
        for c in (old, new):
            assert (await next_pub(c))["data"] == "still"
        late = await tls_client(node, "carol", ctx)
        assert "result" in await late.call("subscribe", channel="public:renew")
    run(go())
    text = node.http("GET", "/metrics")[1]
    assert metric(text, "cardgw_tls_reload_failures_total") == 4
    expires = metric(text, "cardgw_tls_certificate_expiry_timestamp_seconds")
    assert time.time() + 86400 < expires < time.time() + 3 * 86400  # made with -days 2
    assert node.read_log().count("TLS reload failed") == 4


def test_workers_forward_sighup_to_every_worker(make_tls_node, pki):
    one_cert, one_key = pki.server("server-one", "0x1111")
    two_cert, two_key = pki.server("server-two", "0x2222")
    live_cert, live_key = pki.path("live.pem"), pki.path("live.key")
    shutil.copy(one_cert, live_cert)
    shutil.copy(one_key, live_key)
    node = make_tls_node(live_cert, live_key, {"workers": 2})
    wait_log(node, "TLS on (TLS 1.2+)", count=2)
    shutil.copy(two_cert, live_cert)
    shutil.copy(two_key, live_key)
    node.proc.send_signal(signal.SIGHUP)  # to the supervisor
    wait_log(node, "TLS reloaded: new handshakes get certificate CN=server-two", count=2)
    ctx = pki.client_context()
    for _ in range(8):  # SO_REUSEPORT spreads these over both workers
        assert peer_serial(node, ctx) == "2222"
    assert node.proc.poll() is None and "exited with" not in node.read_log()


def test_sighup_without_tls_is_a_harmless_reload(make_node):
    node = make_node()  # a plain node: SIGHUP used to end the process (its default action)
    node.proc.send_signal(signal.SIGHUP)
    wait_log(node, "reloading")
    assert node.http("GET", "/healthz") == (200, "ok\n")
    assert metric(node.http("GET", "/metrics")[1],
                  "cardgw_tls_certificate_expiry_timestamp_seconds") == 0
    assert node.proc.poll() is None


def test_missing_or_bad_files_stop_the_start_with_exit_2(pki, redis_server):
    cert, key = pki.server("server-one", "0x1111")
    _, other_key = pki.server("server-two", "0x2222")
    garbage = pki.path("garbage.pem")
    with open(garbage, "w") as f:
        f.write("hello\n")
    encrypted = pki.path("encrypted.key")
    pki.openssl("pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", encrypted)
    cases = [
        ({"tls_cert_file": "/nonexistent/cert.pem", "tls_key_file": key},
         "tls_cert_file '/nonexistent/cert.pem': cannot open"),
        ({"tls_cert_file": cert, "tls_key_file": "/nonexistent/key.pem"},
         "tls_key_file '/nonexistent/key.pem': cannot open"),
        ({"tls_cert_file": garbage, "tls_key_file": key}, "no PEM certificate"),
        ({"tls_cert_file": cert, "tls_key_file": garbage}, "no unencrypted PEM private key"),
        ({"tls_cert_file": cert, "tls_key_file": encrypted}, "no unencrypted PEM private key"),
        ({"tls_cert_file": cert, "tls_key_file": other_key}, "does not match the certificate"),
        ({"tls_cert_file": cert}, "set both or neither"),
    ]
    for extra, why in cases:
        n = Node(redis_server.url, extra)
        for flags in ([], ["--check-config"]):
            p = subprocess.run([NODE_BIN, "--config", n.config] + flags, capture_output=True,
                               text=True, timeout=20, stdin=subprocess.DEVNULL)
            assert p.returncode == 2 and why in p.stderr, (extra, p.returncode, p.stderr)
        shutil.rmtree(n.dir, ignore_errors=True)


def test_an_ecdsa_certificate_works_too(make_tls_node, pki):
    cert, key = pki.server("server-ec", "0x4444", key="ec")
    node = make_tls_node(cert, key)
    assert node.http("GET", "/healthz") == (200, "ok\n")
    assert peer_serial(node, pki.client_context()) == "4444"
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % node.port,
                        "-tls1_2", "-CAfile", pki.ca], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=10)
    assert "Cipher    : ECDHE-ECDSA-" in p.stdout, p.stdout


def test_admin_port_speaks_tls_too(make_tls_node, pki):
    """With TLS on, the admin port (API, /metrics) is TLS as well, with the same certificate:
    keys never cross the network in clear text; plain HTTP there gets no answer."""
    cert, key = pki.server("server-one", "0x1111")
    admin = free_port()
    node = make_tls_node(cert, key, {"admin_port": admin})
    ctx = pki.client_context()
    st, text = http_call("https://127.0.0.1:%d/metrics" % admin, context=ctx)
    assert st == 200 and "cardgw_tls_certificate_expiry_timestamp_seconds" in text
    st, _ = http_call("https://127.0.0.1:%d/api/v1/position?channel=public:a" % admin,
                      context=ctx)
    assert st == 200
    assert http_call("http://127.0.0.1:%d/metrics" % admin, timeout=2)[0] is None
    assert node.http("GET", "/metrics")[0] == 404  # not on the public port


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def test_a_stuck_tls_request_does_not_spin_the_loop(make_tls_node, pki):
    """A request followed by more bytes while its large response waits for a client that does not
    read: lws keeps asking for forced service of the connection's unparsed bytes, which makes no
    progress. The node services read-ahead in bounded bursts (backing off 5 ms) instead of
    spinning a core until http_timeout_ms; other clients are served meanwhile."""
    cert, key = pki.server("server-one", "0x1111")
    root = pki.path("static")
    os.mkdir(root)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(os.urandom(4000000))
    node = make_tls_node(cert, key, {"static_root": root, "http_timeout_ms": 20000})
    ctx = pki.client_context()
    socks = []
    for _ in range(3):
        raw = socket.create_connection(("127.0.0.1", node.port))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nX")
        socks.append(s)
    try:
        time.sleep(0.5)
        pid = node.proc.pid
        a = cpu_seconds(pid)
        time.sleep(3)
        used = cpu_seconds(pid) - a
        assert node.http("GET", "/healthz") == (200, "ok\n")
    finally:
        for s in socks:
            s.close()
    assert used < 1.0, "the node used %.2f s of CPU in 3 s for three stuck sockets" % used
