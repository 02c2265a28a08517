"""The private admin surface and the server API's keys: admin_port serves the API and /metrics
(and the health checks) and nothing else, the public port then answers 404 for them; named keys
with scopes from api_keys_file (403 without the scope, 401 for an unknown key), rotated without a
restart; an API publish too large for any subscriber's send queue is refused with 413."""
import asyncio
import json
import os
import subprocess
import time

import pytest
import websockets
import websockets.exceptions

from conftest import (API_KEY, NODE_BIN, ROOT, SUBPROTO, connected_client, free_port, http_call,
                      metric, run, wait_port_closed)

PUB = "pub-key-0123456789abcdef"
READ = "read-key-0123456789abcdef"
DIS = "disc-key-0123456789abcdef"
MET = "metr-key-0123456789abcdef"
ALL = "all--key-0123456789abcdef"
KEYS = """# name key scopes
publisher  %s publish
reader     %s read

ops        %s disconnect,read
scraper    %s metrics
root       %s *
""" % (PUB, READ, DIS, MET, ALL)


def http(port, method, path, body=None, key=None, timeout=5):
    return http_call("http://127.0.0.1:%d%s" % (port, path), method, body, key, timeout)


def write_keys(path, text):
    """Replaces the file atomically, as the docs tell operators to."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


@pytest.fixture
def keys_file(tmp_path):
    p = str(tmp_path / "api_keys")
    write_keys(p, KEYS)
    return p


# ---- the admin port ---------------------------------------------------------------------------


def test_admin_port_has_the_api_and_metrics_and_the_public_port_not(make_node):
    admin = free_port()
    node = make_node({"admin_port": admin})
    pub = {"channel": "public:adm", "data": {"v": 1}}
    # the private surface
    st, body = http(admin, "POST", "/api/v1/publish", pub, key=API_KEY)
    assert st == 200 and json.loads(body)["offset"] == 1, body
    st, body = http(admin, "GET", "/api/v1/position?channel=public:adm", key=API_KEY)
    assert st == 200 and json.loads(body)["offset"] == 1, body
    st, text = http(admin, "GET", "/metrics")
    assert st == 200 and metric(text, "cardgw_api_requests_total") >= 2, text[:300]
    for port in (admin, node.port):  # load balancers probe the public port; both answer
        assert http(port, "GET", "/healthz")[0] == 200
        assert http(port, "GET", "/readyz")[0] == 200
    # nothing else on the admin port
    assert http(admin, "GET", "/")[0] == 404
    assert http(admin, "GET", "/ws")[0] == 404

    async def upgrade_refused():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await websockets.connect("ws://127.0.0.1:%d/ws" % admin,
                                     subprotocols=[SUBPROTO["json"]], open_timeout=5)
        assert e.value.status_code == 404
        # the public port still takes WebSockets, and gets what the admin port published
        c = await connected_client(node, "watcher")
        assert "result" in await c.call("subscribe", channel="public:adm")
        assert http(admin, "POST", "/api/v1/publish", pub, key=API_KEY)[0] == 200
        assert (await c.next_event())["offset"] == 2
        await c.close()
    run(upgrade_refused())
    # the public port: 404 for the API (even with the right key) and /metrics
    st, body = http(node.port, "POST", "/api/v1/publish", pub, key=API_KEY)
    assert st == 404, body
    assert http(node.port, "GET", "/api/v1/info", key=API_KEY)[0] == 404
    assert http(node.port, "GET", "/metrics")[0] == 404
    # a stop closes both ports
    assert node.stop() == 0
    assert wait_port_closed(admin, 5)


def test_without_admin_port_everything_stays_on_the_public_port(node):
    st, body = node.api("/api/v1/publish", {"channel": "public:one", "data": 1})
    assert st == 200, body
    assert node.http("GET", "/metrics")[0] == 200


def test_admin_port_with_workers(make_node):
    admin = free_port()
    node = make_node({"admin_port": admin, "workers": 2})
    for i in range(6):  # either worker may take each connection
        st, body = http(admin, "POST", "/api/v1/publish",
                        {"channel": "public:w", "data": i}, key=API_KEY)
        assert st == 200, body
        assert http(node.port, "GET", "/api/v1/info", key=API_KEY)[0] == 404
    assert node.stop() == 0
    assert wait_port_closed(admin, 5)


# ---- keys and scopes --------------------------------------------------------------------------


def test_keys_with_scopes(make_node, keys_file):
    node = make_node({"api_keys_file": keys_file, "metrics_require_key": 1, "log_level": "debug"})
    p = node.port
    msg = {"channel": "public:s", "data": "x"}
    bye = {"uid": "nobody"}
    pos = "/api/v1/position?channel=public:s"
    # publish scope: publish and broadcast, nothing else
    assert http(p, "POST", "/api/v1/publish", msg, key=PUB)[0] == 200
    assert http(p, "POST", "/api/v1/broadcast", {"channels": ["public:s"], "data": 1},
                key=PUB)[0] == 200
    st, body = http(p, "POST", "/api/v1/disconnect", bye, key=PUB)
    assert st == 403 and "scope" in json.loads(body)["error"], body
    assert http(p, "GET", pos, key=PUB)[0] == 403
    # read scope: position, info, online; never a publish
    assert http(p, "GET", pos, key=READ)[0] == 200
    assert http(p, "GET", "/api/v1/info", key=READ)[0] == 200
    assert http(p, "GET", "/api/v1/online?uid=a", key=READ)[0] == 200
    assert http(p, "POST", "/api/v1/online", {"uids": ["a"]}, key=READ)[0] == 200
    assert http(p, "POST", "/api/v1/publish", msg, key=READ)[0] == 403
    assert http(p, "POST", "/api/v1/unsubscribe", {"uid": "a", "channel": "public:s"},
                key=READ)[0] == 403
    # disconnect,read
    assert http(p, "POST", "/api/v1/disconnect", bye, key=DIS)[0] == 200
    assert http(p, "POST", "/api/v1/unsubscribe", {"uid": "a", "channel": "public:s"},
                key=DIS)[0] == 200
    assert http(p, "POST", "/api/v1/publish", msg, key=DIS)[0] == 403
    # * and the legacy api_key: everything
    for k in (ALL, API_KEY):
        assert http(p, "POST", "/api/v1/publish", msg, key=k)[0] == 200
        assert http(p, "POST", "/api/v1/disconnect", bye, key=k)[0] == 200
        assert http(p, "GET", "/metrics", key=k)[0] == 200
    # metrics_require_key: only a key with the metrics scope reads /metrics
    assert http(p, "GET", "/metrics")[0] == 401
    assert http(p, "GET", "/metrics", key=READ)[0] == 403
    st, text = http(p, "GET", "/metrics", key=MET)
    assert st == 200 and "cardgw_" in text
    assert http(p, "POST", "/api/v1/publish", msg, key=MET)[0] == 403
    # unknown keys: 401, whatever they share with a real one
    for k in (None, "wrong", PUB + "x", PUB[:-1], PUB.upper(), READ + " ", "x" * 300):
        st, body = http(p, "POST", "/api/v1/publish", msg, key=k)
        assert st == 401, (k, st, body)
    # the log names the key used, never the key itself
    time.sleep(0.2)
    log = node.read_log()
    assert "key 'publisher'" in log and "key 'reader'" in log
    assert PUB not in log and READ not in log and MET not in log


def test_a_bad_keys_file_or_metrics_key_without_keys_stops_the_start(tmp_path):
    bad = str(tmp_path / "keys")
    cases = {
        "short": "a tooshort publish\n",
        "scope": "a 0123456789abcdefgh write\n",
        "fields": "a 0123456789abcdefgh\n",
        "twice": "a 0123456789abcdefgh read\nb 0123456789abcdefgh publish\n",
    }
    for name, text in cases.items():
        with open(bad, "w") as f:
            f.write(text)
        conf = str(tmp_path / "node.conf")
        with open(conf, "w") as f:
            f.write("listen_address = 127.0.0.1\nport = %d\nredis_url = redis://127.0.0.1:1/0\n"
                    "api_keys_file = %s\n" % (free_port(), bad))
        out = subprocess.run([NODE_BIN, "--config", conf], capture_output=True, timeout=20,
                             env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1",
                                      LSAN_OPTIONS="suppressions=%s" %
                                      os.path.join(ROOT, "tests", "lsan.supp")))
        text = (out.stdout + out.stderr).decode(errors="replace")
        assert out.returncode not in (0, 23, 24) and "api_keys_file %s: line " % bad in text, (
            name, text)
        assert "Sanitizer" not in text, text
    conf = str(tmp_path / "node.conf")
    with open(conf, "w") as f:
        f.write("api_key =\nmetrics_require_key = 1\n")
    out = subprocess.run([NODE_BIN, "--config", conf, "--check-config"], capture_output=True,
                         timeout=20)
    assert out.returncode != 0 and b"metrics_require_key' needs api_key" in out.stdout + out.stderr


def test_rotation_without_restart(make_node, keys_file):
    node = make_node({"api_key": "", "api_keys_file": keys_file})
    new = "new-key-fedcba9876543210"

    async def wait_warnings(n):
        end = time.time() + 5
        while node.read_log().count("keeping the") < n:
            assert time.time() < end, node.read_log()[-3000:]
            await asyncio.sleep(0.1)

    async def go():
        c = await connected_client(node, "rotating")
        assert "result" in await c.call("subscribe", channel="public:rot")
        assert http(node.port, "POST", "/api/v1/publish",
                    {"channel": "public:rot", "data": "old"}, key=PUB)[0] == 200
        assert (await c.next_event())["data"] == "old"
        write_keys(keys_file, "publisher %s publish\n" % new)
        t0 = time.time()
        while http(node.port, "POST", "/api/v1/publish",
                   {"channel": "public:rot", "data": "probe"}, key=PUB)[0] != 401:
            assert time.time() - t0 < 3, "the old key still works"
            await c.next_event()
            await asyncio.sleep(0.1)
        took = time.time() - t0
        st, body = http(node.port, "POST", "/api/v1/publish",
                        {"channel": "public:rot", "data": "new"}, key=new)
        assert st == 200, body
        while (await c.next_event())["data"] != "new":
            pass
        # a broken file (a short key): the keys in use stay, one warning
        write_keys(keys_file, "publisher short publish\n")
        await wait_warnings(1)
        assert http(node.port, "POST", "/api/v1/publish",
                    {"channel": "public:rot", "data": "still"}, key=new)[0] == 200
        assert http(node.port, "POST", "/api/v1/publish",
                    {"channel": "public:rot", "data": "x"}, key="short")[0] == 401
        # the file removed: the same
        os.unlink(keys_file)
        await wait_warnings(2)
        assert http(node.port, "POST", "/api/v1/publish",
                    {"channel": "public:rot", "data": "still"}, key=new)[0] == 200
        await asyncio.sleep(2.2)  # two more checks of the file: no new line
        assert node.read_log().count("keeping the") == 2, node.read_log()[-3000:]
        assert (await c.call("ping"))["result"] == {}  # clients never noticed
        await c.close()
        return took
    took = run(go())
    print("old key refused %.2f s after the rewrite" % took)
    assert "api_keys_file re-read: 1 API keys now" in node.read_log()


# ---- 413: publishes no subscriber could be sent ------------------------------------------------


def test_publish_larger_than_a_send_queue_gets_413(make_node, redis_server):
    node = make_node({"max_send_queue_bytes": 65536})
    r = redis_server.client()

    async def go():
        c = await connected_client(node, "big", "msgpack")
        assert "result" in await c.call("subscribe", channel="public:big")
        for path, body in (("/api/v1/publish", {"channel": "public:big", "data": "x" * 70000}),
                           ("/api/v1/broadcast", {"channels": ["public:big", "public:b2"],
                                                  "data": "x" * 70000}),
                           # small JSON text, but 9 bytes a number in msgpack: 8 000 x 9 > 64 KB
                           ("/api/v1/publish", {"channel": "public:big", "data": [0.5] * 8000})):
            st, text = node.api(path, body)
            assert st == 413 and "max_send_queue_bytes" in text["error"], (path, st, text)
        # nothing reached Redis
        assert r.exists("cardgw:{public:big}:x") == 0 and r.exists("cardgw:{public:b2}:x") == 0
        # just under the limit: published and delivered
        st, res = node.api("/api/v1/publish", {"channel": "public:big", "data": "y" * 60000})
        assert st == 200 and res["offset"] == 1, res
        m = await c.next_event()
        assert m["offset"] == 1 and len(m["data"]) == 60000
        assert (await c.call("ping"))["result"] == {}
        await c.close()
    run(go())


def test_data_too_deep_for_msgpack_subscribers_is_400(node, redis_server):
    deep = json.loads("[" * 40 + "]" * 40)
    st, res = node.api("/api/v1/publish", {"channel": "public:deep", "data": deep})
    assert st == 400 and "deeper" in res["error"], res
    assert redis_server.client().exists("cardgw:{public:deep}:x") == 0
