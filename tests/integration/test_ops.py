"""Operations: /metrics histograms, process and build metrics and per-namespace counters after real
traffic; `promtool check metrics` on a node's output and `promtool check rules` on
deploy/prometheus-rules.yml; every metric the rules and deploy/grafana-dashboard.json use exists on a
running node; log_format = json (one object per line, client id and uid on connection lines); the
rate-limited lines' dropped count. Real Redis, real nodes (promtool: Debian package prometheus)."""
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import time

from conftest import ROOT, Client, RedisServer, assert_clean_exit, connected_client, jwt, run

RULES = os.path.join(ROOT, "deploy", "prometheus-rules.yml")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana-dashboard.json")
PROMTOOL = shutil.which("promtool")


def samples(text):
    """{(name, frozenset(labels.items())): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert m, "unparsable line %r" % line
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def value(s, name, **labels):
    return s.get((name, frozenset(labels.items())))


def metric_names_in(expr):
    """The metric names a PromQL expression uses (every cardgw metric starts with cardgw_, the
    process's with process_)."""
    return set(re.findall(r'\b((?:cardgw|process)_[a-zA-Z0-9_]+)\b', expr))


def rule_exprs():
    # no YAML parser among the test dependencies: the rules file keeps every expr in the form
    # `expr: <one line>` or `expr: >-` followed by indented lines
    exprs, cur, lines = [], None, open(RULES).read().splitlines()
    for line in lines:
        m = re.match(r'^(\s*)expr:\s*(.*)$', line)
        if m:
            if cur is not None:
                exprs.append(cur[1])
            if m.group(2) in (">-", ">", "|", "|-"):
                cur = (len(m.group(1)), "")
            else:
                exprs.append(m.group(2))
                cur = None
            continue
        if cur is not None:
            if line.strip() and len(line) - len(line.lstrip()) > cur[0]:
                cur = (cur[0], cur[1] + " " + line.strip())
            else:
                exprs.append(cur[1])
                cur = None
    if cur is not None:
        exprs.append(cur[1])
    return exprs


def dashboard_exprs():
    d = json.load(open(DASHBOARD))
    out = []

    def walk(panels):
        for p in panels:
            out.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))
    walk(d["panels"])
    out.extend(v["query"] for v in d.get("templating", {}).get("list", [])
               if v.get("type") == "query")
    return out


def promtool(*args, stdin=None):
    assert PROMTOOL, "promtool is missing: scripts/install-deps.sh installs Debian's prometheus"
    return subprocess.run([PROMTOOL] + list(args), input=stdin, capture_output=True, text=True,
                          timeout=30)


def test_promtool_checks_the_alert_rules():
    r = promtool("check", "rules", RULES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr
    # the alerts the README documents
    names = set(re.findall(r'^\s*- alert: (\S+)$', open(RULES).read(), re.M))
    assert {"CardgwRelayNotReady", "CardgwRedisDown", "CardgwRedisReconnecting",
            "CardgwConnectSlow", "CardgwSubscribeSlow", "CardgwSlowConsumerClosesRising",
            "CardgwFdsNearLimit", "CardgwEventLoopLag"} <= names, names
    readme = open(os.path.join(ROOT, "README.md")).read()
    for n in names:
        assert n in readme, "README does not explain alert %s" % n


def test_metrics_after_traffic_pass_promtool_and_cover_rules_and_dashboard(redis_server,
                                                                           make_node):
    shard = RedisServer().start()
    try:
        node = make_node({"redis_shards": shard.url, "namespace.group.subscribe": "members"})
        r = redis_server.client()
        r.hset("cardgw:session:tok-ops", mapping={"uid": "opsuser"})
        r.sadd("cardgw:group:g1:members", "opsuser")

        async def traffic():
            a = await Client.open(node.ws_url)
            await a.connect(jwt("alice"))                       # JWT: answered at once
            b = await Client.open(node.ws_url)
            await b.connect("tok-ops")                          # session: a Redis round trip
            assert "result" in await a.call("subscribe", channel="public:ops")
            assert "result" in await b.call("subscribe", channel="group:g1")  # membership
            assert "error" in await a.call("subscribe", channel="group:g1")   # not a member
            st, _ = node.api("/api/v1/publish", {"channel": "public:ops", "data": {"n": 1}})
            assert st == 200
            m = await a.next_event()
            assert m["push"] == "pub" and m["channel"] == "public:ops", m
            st, _ = node.api("/api/v1/publish", {"channel": "group:g1", "data": {"n": 2}})
            assert st == 200
            assert (await b.next_event())["channel"] == "group:g1"
            st, _ = node.api("/api/v1/publish", {"channel": "nope:x", "data": 1})
            assert st == 404
            st, _ = node.http("GET", "/api/v1/position?channel=public:ops")
            assert st == 200
            time.sleep(0.3)  # a few loop-lag ticks and canaries
            st, text = node.http("GET", "/metrics")
            assert st == 200
            return text
        text = run(traffic())
    finally:
        shard.cleanup()

    # promtool's own check of the exposition (format and naming conventions)
    r = promtool("check", "metrics", stdin=text)
    assert r.returncode == 0, r.stdout + r.stderr + text[:3000]
    assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr

    s = samples(text)
    names = {k[0] for k in s}
    used = set()
    for e in rule_exprs() + dashboard_exprs():
        used |= metric_names_in(e)
    assert len(used) >= 15, used
    missing = sorted(n for n in used if n not in names)
    assert not missing, "used by the rules or the dashboard but not on a node: %s" % missing

    # histograms: every family has +Inf == _count and counts only grow along le
    def hist(name, **labels):
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in s.items()
                          if k[0] == name + "_bucket" and
                          {x: y for x, y in k[1] if x != "le"} == labels))
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), (name, buckets)
        assert buckets[-1][0] == float("inf")
        assert buckets[-1][1] == value(s, name + "_count", **labels), name
        return buckets[-1][1], value(s, name + "_sum", **labels)
    n, total = hist("cardgw_connect_duration_seconds")
    assert n == 2 and 0 <= total < 5, (n, total)
    n, total = hist("cardgw_subscribe_duration_seconds")
    assert n == 3 and 0 < total < 5, (n, total)
    assert hist("cardgw_redis_command_duration_seconds", conn="main")[0] >= 3
    assert hist("cardgw_redis_command_duration_seconds", conn="shard", shard="shard0")[0] >= 2
    assert hist("cardgw_api_request_duration_seconds", endpoint="publish", status="2xx")[0] == 2
    assert hist("cardgw_api_request_duration_seconds", endpoint="publish", status="4xx")[0] == 1
    assert hist("cardgw_api_request_duration_seconds", endpoint="position", status="2xx")[0] == 1
    assert hist("cardgw_loop_lag_seconds")[0] >= 3
    # documented bucket bounds
    les = sorted(float(dict(k[1])["le"]) for k in s if k[0] == "cardgw_loop_lag_seconds_bucket")
    assert les[:3] == [0.001, 0.002, 0.005] and les[-2] == 5.0, les
    les = sorted(float(dict(k[1])["le"]) for k in s
                 if k[0] == "cardgw_connect_duration_seconds_bucket")
    assert les[0] == 0.00025 and les[-2] == 10.0, les

    # per namespace: labels from the configuration only
    for ns in ("public", "group"):
        assert value(s, "cardgw_namespace_publications_total", namespace=ns) == 1, ns
        assert value(s, "cardgw_namespace_deliveries_total", namespace=ns) == 1, ns
        assert value(s, "cardgw_namespace_subscriptions", namespace=ns) == 1, ns
    assert value(s, "cardgw_namespace_publications_total", namespace="nope") is None
    assert value(s, "cardgw_redis_shard_ready", shard="shard0") == 1

    # the process, as Prometheus client libraries export it
    assert 1e6 < value(s, "process_resident_memory_bytes") <= value(s,
                                                                    "process_virtual_memory_bytes")
    assert 5 < value(s, "process_open_fds") < value(s, "process_max_fds")
    assert abs(value(s, "process_start_time_seconds") - time.time()) < 120
    assert value(s, "process_cpu_seconds_total") >= 0
    info = [dict(k[1]) for k in s if k[0] == "cardgw_build_info"]
    assert len(info) == 1 and info[0]["version"] and value(s, "cardgw_build_info", **info[0]) == 1
    assert re.fullmatch(r"[0-9a-f]{7,40}|unknown", info[0]["commit"]), info


def test_json_logs_carry_client_id_and_uid(make_node):
    node = make_node({"log_format": "json", "log_level": "debug"})

    async def go():
        c = await Client.open(node.ws_url)
        res = await c.connect(jwt("jsonuser"))
        await c.close()
        return res["client"]
    cid = run(go())
    time.sleep(0.3)
    rc = node.stop()
    log = node.read_log()
    assert_clean_exit(rc, log)
    objs = []
    for line in log.splitlines():
        o = json.loads(line)  # every line is one JSON object
        assert isinstance(o, dict) and {"time", "level", "module", "msg"} <= set(o), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", o["time"]), line
        objs.append(o)
    mine = [o for o in objs if o.get("client") == cid]
    assert any(o["module"] == "auth" and o.get("uid") == "jsonuser" for o in mine), mine
    assert any(o["module"] == "conn" and o["msg"] == "closed" for o in mine), mine
    assert any(o["module"] == "conn" and o["msg"].startswith("open") for o in mine), mine


def test_rate_limited_log_lines_are_counted(make_node):
    node = make_node({"max_connections_per_ip": 1})
    held = socket.create_connection(("127.0.0.1", node.port))
    try:
        time.sleep(0.1)
        for _ in range(4):  # refused at accept: one line logged, three left out
            with socket.create_connection(("127.0.0.1", node.port)) as s:
                s.settimeout(2)
                assert s.recv(1) == b""
        st, text = node.http("GET", "/metrics")  # refused as well: the held socket is the one
        assert st is None
    finally:
        held.close()
    end, refused = time.time() + 5, 0
    while time.time() < end:
        st, text = node.http("GET", "/metrics")
        if st == 200:
            break
        refused += 1  # the node had not seen the held socket close yet: one more left out
        time.sleep(0.05)
    s = samples(text)
    assert value(s, "cardgw_log_lines_dropped_total") == 4 + refused, text
    assert node.read_log().count("refusing connections from 127.0.0.1") == 1


def bucket_of(bounds, x):
    """Index of the histogram bucket (upper bounds `bounds`, ascending) that holds x."""
    return next((i for i, le in enumerate(bounds) if x <= le), len(bounds))


def test_delivery_latency_histogram_agrees_with_what_clients_measure(make_node):
    """200 clients on one channel, a publication every 300 ms; with flush_window_ms = 60 the node
    itself holds every delivery ~60 ms before writing it. Its delivery-latency histogram (publish
    time in Redis to socket write, every recipient) must show that wait: the median bucket it
    reports is the clients' own end-to-end median's (API call sent to frame received), or the one
    below. A histogram taken when frames are queued, or from another clock, would not. 20 of the
    clients measure; the other 180 stop reading (their frames wait in the kernel) so that the
    Python clients' own work stays small on a loaded machine; they get everything at the end."""
    node = make_node({"flush_window_ms": 60, "max_new_connections_per_ip_per_s": 0})
    n_clients, n_probes, n_pubs = 200, 20, 15

    async def go():
        clients = []
        for i in range(0, n_clients, 50):
            clients += await asyncio.gather(*(connected_client(node, "lat%d" % k)
                                              for k in range(i, i + 50)))
        for c in clients:
            assert "result" in await c.call("subscribe", channel="public:lat")
        probes, quiet = clients[:n_probes], clients[n_probes:]
        for c in quiet:
            c.ws.transport.pause_reading()
        lat = []

        async def reader(c):
            for _ in range(n_pubs):
                m = await c.next_event(timeout=10)
                lat.append(time.time() - m["data"]["t"])
        readers = [asyncio.create_task(reader(c)) for c in probes]
        loop = asyncio.get_running_loop()
        for k in range(n_pubs):
            st, _ = await loop.run_in_executor(
                None, node.api, "/api/v1/publish",
                {"channel": "public:lat", "data": {"t": time.time(), "k": k}})
            assert st == 200
            await asyncio.sleep(0.3)
        await asyncio.gather(*readers)
        for c in quiet:
            c.ws.transport.resume_reading()
        for c in quiet:
            assert [(await c.next_event())["data"]["k"] for _ in range(n_pubs)] == list(
                range(n_pubs))
        return lat
    lat = sorted(run(go()))
    assert len(lat) == n_probes * n_pubs
    st, text = node.http("GET", "/metrics")
    assert st == 200
    s = samples(text)
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in s.items()
                     if k[0] == "cardgw_delivery_latency_seconds_bucket")
    count = value(s, "cardgw_delivery_latency_seconds_count")
    # one delivery in 8 is sampled (the same counter runs over every frame written)
    assert abs(count - n_clients * n_pubs / 8) <= 2, count
    bounds = [le for le, _ in buckets if le != float("inf")]
    node_median = next(i for i, (le, c) in enumerate(buckets) if c >= count / 2)
    client_median = bucket_of(bounds, lat[len(lat) // 2])
    assert node_median in (client_median, client_median - 1), (
        "node median bucket #%d, clients' median %.4f s (bucket #%d); buckets %s"
        % (node_median, lat[len(lat) // 2], client_median, buckets))
    # the wait is the node's: its median is past the window
    assert bounds[node_median] >= 0.1, buckets
    assert value(s, "cardgw_delivery_latency_seconds_sum") / count >= 0.06, buckets
