#!/usr/bin/python3
# run.py — the cardgw bench driver: starts redis, nodes (or peers) and loadgen processes, runs one
# scenario (connect, idle, fanout, crossnode, floor, peers), prints a table, appends results.csv.
import argparse
import json
import math
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
LOADGEN = os.path.join(ROOT, "build/bench/loadgen")
FLOOR = os.path.join(ROOT, "build/bench/floor")
# CARDGW_BENCH_BIN: another build of the node, for before/after comparisons
CARDGW = os.environ.get("CARDGW_BENCH_BIN") or os.path.join(ROOT, "build/cardgw")
CSV = os.path.join(BENCH, "results.csv")
PER_PROC = 9000      # connections per loadgen process (fd cap 20,000)
PER_NODE = 19000     # connections per node process when --workers is missing
CLK = os.sysconf("SC_CLK_TCK")
TMP = tempfile.mkdtemp(prefix="cardgw-bench-")
STARTED = []         # every Popen we start: stopped at exit


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cleanup():
    for p in reversed(STARTED):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 8
    for p in reversed(STARTED):
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if not os.environ.get("BENCH_KEEP_TMP"):
        shutil.rmtree(TMP, ignore_errors=True)


def start(cmd, **kw):
    p = subprocess.Popen(cmd, **kw)
    STARTED.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=10):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


def http_get(port, path, timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.read().decode()


# ---- processes we measure -----------------------------------------------------------------------

def proc_pids(pid):
    """pid and all its descendants (a --workers supervisor and its workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def rss_kb(pids):
    tot = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        tot += int(line.split()[1])
        except OSError:
            pass
    return tot


def cpu_s(pids):
    tot = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tot += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return tot / CLK


class Redis:
    def __init__(self):
        self.port = free_port()
        self.p = start(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                        "--save", "", "--appendonly", "no", "--loglevel", "warning"],
                       stdout=subprocess.DEVNULL)
        wait_port(self.port)

    def cli(self, *args, stdin=None):
        return subprocess.run(["redis-cli", "-p", str(self.port)] + list(args), input=stdin,
                              capture_output=True, text=True, check=True).stdout

    def members(self, n, groups):
        """Every uid u<i> is a member of group g<i % groups>."""
        cmds = []
        for i in range(n):
            k = "cardgw:group:g%d:members" % (i % groups)
            u = "u%d" % i
            cmds.append("*3\r\n$4\r\nSADD\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(u), u))
        self.cli("--pipe", stdin="".join(cmds))

    def stop(self):
        stop(self.p)


def has_workers():
    try:
        out = subprocess.run([CARDGW, "--help"], capture_output=True, text=True).stdout
        out += subprocess.run([CARDGW, "--help"], capture_output=True, text=True).stderr
        return "--workers" in out
    except OSError:
        return False


class Node:
    def __init__(self, redis, workers=0, extra="", shards=()):
        self.port = free_port()
        self.cfg = os.path.join(TMP, "node-%d.conf" % self.port)
        with open(self.cfg, "w") as f:
            f.write("listen_address = 127.0.0.1\nport = %d\nredis_url = redis://127.0.0.1:%d/0\n"
                    "api_key = bench-api-key-0123456789\njwt_secret = bench-jwt-secret-of-at-least-32-bytes\nlog_level = warn\n"
                    "max_send_queue_bytes = 4194304\ncommands_per_second = 100000\n"
                    "command_burst = 100000\n"
                    # load comes from a few loopback addresses, thousands of sockets each
                    "max_connections_per_ip = 0\nmax_new_connections_per_ip_per_s = 0\n"
                    "max_connections_per_user = 0\nredis_shards = %s\n%s"
                    % (self.port, redis.port,
                       " ".join("redis://127.0.0.1:%d/0" % s.port for s in shards), extra))
        cmd = [CARDGW, "--config", self.cfg]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        self.p = start(cmd)
        wait_port(self.port)
        end = time.time() + 15
        while time.time() < end:
            try:
                http_get(self.port, "/readyz")
                break
            except Exception:
                time.sleep(0.1)
        time.sleep(0.3 if workers <= 1 else 1.0)

    def pids(self):
        return proc_pids(self.p.pid)

    def metrics(self):
        out = {}
        try:
            for line in http_get(self.port, "/metrics").splitlines():
                if line and not line.startswith("#"):
                    k, _, v = line.rpartition(" ")
                    try:
                        out[k] = float(v)
                    except ValueError:
                        pass
        except Exception as e:
            log("metrics:", e)
        return out

    def stop(self):
        stop(self.p)


# ---- histograms (same buckets as bench/hist.h) ----------------------------------------------------

SUB = 64


def bucket_high(i):
    if i < 2 * SUB:
        return i
    shift = (i - 2 * SUB) // SUB + 1
    m = (i - 2 * SUB) % SUB + SUB
    return ((m + 1) << shift) - 1


class Hist:
    def __init__(self):
        self.b, self.n, self.sum, self.max = {}, 0, 0, 0

    def add(self, h):
        for i, c in h["h"]:
            self.b[i] = self.b.get(i, 0) + c
        self.n += h["n"]
        self.sum += h["sum"]
        self.max = max(self.max, h["max"])

    def pct(self, p):
        if not self.n:
            return float("nan")
        want, acc = math.ceil(self.n * p / 100.0), 0
        for i in sorted(self.b):
            acc += self.b[i]
            if acc >= want:
                return min(bucket_high(i), self.max)
        return self.max


# ---- load generators -----------------------------------------------------------------------------

class Loadgens:
    """Several loadgen processes sharing n connections; each prints JSON lines."""

    def __init__(self, n, port_of, target="cardgw", groups=1, no_sub=False, duration=600,
                 inflight=256, extra=()):
        self.procs, self.q = [], []
        k = max(1, math.ceil(n / PER_PROC))
        share = [n // k + (1 if i < n % k else 0) for i in range(k)]
        first = 0
        for i in range(k):
            cmd = [LOADGEN, "--mode", "sub", "--target", target, "--port", str(port_of(i)),
                   "--conns", str(share[i]), "--first", str(first), "--groups", str(groups),
                   "--src", "8", "--inflight", str(inflight), "--duration", str(duration),
                   "--ready-timeout", "120"] + list(extra)
            if no_sub:
                cmd.append("--no-subscribe")
            p = start(cmd, stdout=subprocess.PIPE, text=True, errors="replace")
            q = queue.Queue()
            threading.Thread(target=self._reader, args=(p, q), daemon=True).start()
            self.procs.append(p)
            self.q.append(q)
            first += share[i]

    @staticmethod
    def _reader(p, q):
        for line in p.stdout:
            try:
                q.put(json.loads(line))
            except ValueError:
                log("loadgen:", line.strip())
        q.put(None)

    def collect(self, ev, timeout):
        out = []
        end = time.time() + timeout
        for q in self.q:
            while True:
                m = q.get(timeout=max(0.1, end - time.time()))
                if m is None:
                    raise RuntimeError("a loadgen exited before '%s'" % ev)
                if m["ev"] == ev:
                    out.append(m)
                    break
        return out

    def step(self):
        for p in self.procs:
            p.send_signal(signal.SIGUSR1)
        return self.collect("step", 30)

    def rx_total(self):
        for p in self.procs:
            p.send_signal(signal.SIGUSR2)
        return summed(self.collect("peek", 10), "rx_total")

    def drain(self, want, quiet=1.0, limit=20.0):
        """Waits until want messages arrived in total, or nothing arrived for `quiet` s."""
        last, t_last, end = -1, time.time(), time.time() + limit
        while time.time() < end:
            got = self.rx_total()
            if got >= want:
                return got
            if got != last:
                last, t_last = got, time.time()
            elif time.time() - t_last >= quiet:
                return got
            time.sleep(0.2)
        return last

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        try:
            res = self.collect("final", 30)
        except Exception:
            res = []
        for p in self.procs:
            stop(p)
        return res


def merge(lines, key="lat"):
    h = Hist()
    for m in lines:
        h.add(m[key])
    return h


def summed(lines, key):
    return sum(m[key] for m in lines)


def errs(lines):
    return "; ".join(sorted(set(m["err"] for m in lines if m["err"])))[:200]


def run_pub(kind, port, rate, seconds, groups, seq_start, target="cardgw", redis_port=0):
    cmd = [LOADGEN, "--mode", kind, "--target", target, "--port", str(port), "--rate", str(rate),
           "--pub-duration", str(seconds), "--groups", str(groups), "--bytes", "200",
           "--seq-start", str(seq_start), "--redis-port", str(redis_port),
           "--script", os.path.join(ROOT, "scripts/publish.lua"), "--http-conns", "16"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 3 + 30)
    for line in out.stdout.splitlines():
        m = json.loads(line)
        if m["ev"] == "pub":
            return m
    raise RuntimeError("publisher failed: " + out.stderr.strip())


# ---- reporting --------------------------------------------------------------------------------------

def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return os.cpu_count(), model


def commit():
    try:
        c = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "gateway", "protocol",
                                "include"], capture_output=True, text=True).stdout.strip()
        return c + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def table(title, cols, rows):
    w = [max(len(str(c)), *(len(fmt(r.get(c))) for r in rows)) for c in cols]
    print("\n" + title)
    print("| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(cols)) + " |")
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c)).rjust(w[i]) for i, c in enumerate(cols)) + " |")
    sys.stdout.flush()


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return "%.2f" % v if abs(v) < 100 else "%.0f" % v
    return str(v)


def append_csv(scenario, target, rows):
    new = not os.path.exists(CSV)
    nproc, model = machine()
    date = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with open(CSV, "a") as f:
        if new:
            f.write("commit,date,nproc,cpu_model,scenario,target,figures\n")
        for r in rows:
            figs = " ".join("%s=%s" % (k, fmt(v)) for k, v in r.items())
            f.write('%s,%s,%d,"%s",%s,%s,"%s"\n' % (commit(), date, nproc, model, scenario,
                                                    target, figs))


def save_json(name, data):
    with open(os.path.join(BENCH, "out", name + ".json"), "w") as f:
        json.dump(data, f, indent=1)


# ---- scenarios ----------------------------------------------------------------------------------------

def sc_connect(a, target="cardgw", env=None):
    """Connection storm: N connections open and authenticate as fast as the node accepts them."""
    rows = []
    for n in a.sizes or [10000]:
        env_ = env or CardgwEnv(a, n)
        try:
            t0 = time.time()
            lg = Loadgens(n, env_.port_of, target=target, no_sub=True, duration=120,
                          inflight=a.inflight)
            ready = lg.collect("ready", 150)
            wall = time.time() - t0
            ok = summed(ready, "ready")
            span = (max(m["t_last"] for m in ready) - min(m["t_first"] for m in ready)) / 1e6
            h = merge(ready, "ttfr")
            lg.stop()
            rows.append({"conns": n, "ok": ok, "failed": summed(ready, "failed"),
                         "connects_per_s": ok / span if span > 0 else float("nan"),
                         "ttfr_p50_ms": h.pct(50) / 1000, "ttfr_p99_ms": h.pct(99) / 1000,
                         "ttfr_max_ms": h.max / 1000, "span_s": span, "wall_s": wall,
                         "errors": errs(ready) or None})
        finally:
            if not env:
                env_.stop()
    return rows


class CardgwEnv:
    """Redis + enough cardgw nodes for n connections (workers when the node has them)."""

    def __init__(self, a, n, groups=1, members=False, workers=None):
        self.redis = Redis()
        if members:
            self.redis.members(n, groups)
        self.nodes = []
        self.workers_used = False
        nodes_needed = math.ceil(n / PER_NODE)
        if workers is None:
            workers = nodes_needed if nodes_needed > 1 and has_workers() else 0
        if workers > 1:
            self.nodes.append(Node(self.redis, workers=workers))
            self.workers_used = True
        else:
            for _ in range(nodes_needed):
                self.nodes.append(Node(self.redis))
        self.note = ("1 node, %d workers" % workers if self.workers_used else
                     "%d node process(es)" % len(self.nodes))

    def port_of(self, i):
        return self.nodes[i % len(self.nodes)].port

    def pids(self):
        return [p for nd in self.nodes for p in nd.pids()]

    def stop(self):
        for nd in self.nodes:
            nd.stop()
        self.redis.stop()


def idle_measure(env, n, target, groups, settle, idle_s):
    pids = env.pids()
    time.sleep(0.5)
    base = rss_kb(pids)
    lg = Loadgens(n, env.port_of, target=target, groups=groups, duration=600)
    ready = lg.collect("ready", 200)
    ok = summed(ready, "ready")
    time.sleep(settle)
    pids = env.pids()
    rss = rss_kb(pids)
    c0, t0 = cpu_s(pids), time.time()
    time.sleep(idle_s)
    cpu = (cpu_s(pids) - c0) / (time.time() - t0) * 100
    lg.stop()
    return {"conns": n, "ready": ok, "failed": summed(ready, "failed"),
            "rss_base_mb": base / 1024, "rss_mb": rss / 1024,
            "bytes_per_conn": (rss - base) * 1024 / max(ok, 1),
            "idle_cpu_pct": cpu, "setup_s": (max(m["t_last"] for m in ready) -
                                             min(m["t_first"] for m in ready)) / 1e6,
            "errors": errs(ready) or None}


def sc_idle(a):
    rows = []
    sizes = a.sizes or [5000, 10000, 20000] + ([38000] if has_workers() else [])
    for n in sizes:
        groups = max(1, n // 100)
        env = CardgwEnv(a, n, groups=groups, members=True)
        try:
            r = idle_measure(env, n, "cardgw", groups, a.settle, a.idle_seconds)
            r["node"] = env.note
            rows.append(r)
            log("idle", r)
        finally:
            env.stop()
    return rows


def hist_quantile(m0, m1, name, q):
    """Prometheus' histogram_quantile over the increase of histogram `name` between two /metrics
    scrapes ({"name_bucket{le=\"0.001\"}": count, ...}): linear within the bucket, the upper
    bound of the last finite bucket above it. NaN without observations."""
    b = []
    for k, v in m1.items():
        if k.startswith(name + "_bucket{le=\""):
            le = k[len(name) + 12:-2]
            b.append((float("inf") if le == "+Inf" else float(le), v - m0.get(k, 0)))
    b.sort()
    if not b or b[-1][1] <= 0:
        return float("nan")
    rank, lo, below = q * b[-1][1], 0.0, 0.0
    for le, c in b:
        if c >= rank:
            if le == float("inf"):
                return lo
            return lo + (le - lo) * (rank - below) / max(c - below, 1e-9)
        lo, below = le, c
    return lo


def fanout_steps(a, lg, pids_fn, publish, rates, members, metrics_fn=None, label=""):
    rows, seq = [], 0
    crossed = None
    want = lg.rx_total()
    for rate in rates:
        lg.step()  # discard what came before
        pids = pids_fn()
        m0 = metrics_fn() if metrics_fn else {}
        c0 = cpu_s(pids)
        pub = publish(rate, a.step_seconds, seq)
        seq += pub["published"]
        want += pub["published"] * members
        t_pub_end = time.time()
        got = lg.drain(want, quiet=a.drain)
        drain_s = time.time() - t_pub_end
        st = lg.step()
        want = got if got > want else want  # (more than expected would be duplicates)
        cpu = cpu_s(pids) - c0
        m1 = metrics_fn() if metrics_fn else {}
        h = merge(st)
        rx = summed(st, "rx")
        expected = pub["published"] * members
        secs = pub["elapsed_us"] / 1e6
        r = {"pubs_per_s": rate, "published": pub["published"], "pub_errors": pub["errors"],
             "delivered": rx,
             "delivered_per_s": rx / (secs + drain_s) if secs else 0,
             "cpu_us_per_msg": cpu * 1e6 / rx if rx else float("nan"),
             "node_cpu_pct": cpu / (secs + drain_s) * 100, "drain_s": drain_s,
             "closed": summed(st, "closed"),
             "p50_ms": h.pct(50) / 1000, "p90_ms": h.pct(90) / 1000, "p99_ms": h.pct(99) / 1000,
             "p999_ms": h.pct(99.9) / 1000, "max_ms": h.max / 1000,
             "lost": expected - rx + summed(st, "dup"), "dup": summed(st, "dup"),
             "gaps": summed(st, "gap")}
        if metrics_fn:
            # the node's own view of the same step: cardgw_delivery_latency_seconds (sampled
            # deliveries, publish time in Redis to socket write), as histogram_quantile reads it
            for q in (50, 99):
                r["node_p%d_ms" % q] = hist_quantile(m0, m1, "cardgw_delivery_latency_seconds",
                                                     q / 100) * 1000
            w = m1.get("cardgw_socket_writes_total", 0) - m0.get("cardgw_socket_writes_total", 0)
            d = m1.get("cardgw_deliveries_total", 0) - m0.get("cardgw_deliveries_total", 0)
            r["writes_per_delivery"] = w / d if d else float("nan")
        rows.append(r)
        log(label, "fanout step", r)
        if r["p99_ms"] > 50 and crossed is None:
            crossed = rate
            break
        if r["node_cpu_pct"] > 190:
            break
    return rows, crossed


def sc_fanout(a):
    rows = []
    shapes = a.shapes or ["100x100", "10x1000"]
    for shape in shapes:
        g, m = (int(x) for x in shape.split("x"))
        n = g * m
        env = CardgwEnv(a, n, groups=g, members=True)
        try:
            lg = Loadgens(n, env.port_of, groups=g, duration=900)
            ready = lg.collect("ready", 200)
            if summed(ready, "ready") != n:
                raise RuntimeError("only %d of %d ready: %s" % (summed(ready, "ready"), n,
                                                               errs(ready)))
            rates = [max(1, int(x) // m) for x in (a.rates or "10000,20000,50000,100000,200000")
                     .split(",")]

            def publish(rate, secs, seq):
                return run_pub("pub-redis", 0, rate, secs, g, seq, redis_port=env.redis.port)
            st, crossed = fanout_steps(a, lg, env.pids, publish, rates, m,
                                       env.nodes[0].metrics, shape)
            fin = lg.stop()
            for r in st:
                r["shape"] = shape
                r["p99_over_50ms_at"] = crossed
            if fin:
                st[-1]["total_gaps"] = summed(fin, "gap")
                st[-1]["total_dup"] = summed(fin, "dup")
                st[-1]["closed"] = summed(fin, "closed")
            rows += st
        finally:
            env.stop()
    return rows


def sc_crossnode(a):
    g, m = 100, 100
    n = g * m
    redis = Redis()
    redis.members(n, g)
    na, nb = Node(redis), Node(redis)
    try:
        lg = Loadgens(n, lambda i: nb.port, groups=g, duration=600)
        ready = lg.collect("ready", 200)

        def publish(rate, secs, seq):
            return run_pub("pub-http", na.port, rate, secs, g, seq)
        rates = [int(x) for x in (a.rates or "100,500,1000").split(",")]
        rows, crossed = fanout_steps(a, lg, lambda: nb.pids() + na.pids(), publish, rates, m,
                                     nb.metrics, "crossnode")
        lg.stop()
        for r in rows:
            r["ready"] = summed(ready, "ready")
        return rows
    finally:
        na.stop()
        nb.stop()
        redis.stop()


class Haproxy:
    """deploy/haproxy.cfg in front of nodes (one server line per node)."""

    def __init__(self, nodes):
        import importlib.machinery  # scripts/cluster writes the config the same way
        cluster = importlib.machinery.SourceFileLoader(
            "cluster", os.path.join(ROOT, "scripts/cluster")).load_module()
        self.port = free_port()
        cfg = os.path.join(TMP, "haproxy-%d.cfg" % self.port)
        with open(cfg, "w") as f:
            f.write(cluster.haproxy_config([nd.port for nd in nodes]))
        env = dict(os.environ, CARDGW_LB_BIND="127.0.0.1:%d" % self.port)
        self.p = start(["haproxy", "-db", "-f", cfg], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        wait_port(self.port)
        time.sleep(2.5)  # two good checks a second apart mark every node up

    def pids(self):
        return proc_pids(self.p.pid)

    def stop(self):
        stop(self.p, signal.SIGUSR1)


def sc_scale(a):
    """Redis and node CPU per delivery, 50 groups x 100 members, with 1 or 2 Redis shards and 1
    or 2 nodes (2: behind HAProxy). Publications go through the server API of node 1 (it routes
    each to its channel's shard). Capacity per node core = 1e6 / node µs per delivery; Redis CPU
    is net of its idle cost (measured for 4 s before). 5,000
    connections: HAProxy sizes maxconn from the open-file limit (20,000 here: ~9,990 clients)."""
    g, m = 50, 100
    n = g * m
    rows = []
    for nshards, nnodes in [(1, 1), (2, 1), (1, 2), (2, 2)]:
        redis = Redis()
        redis.members(n, g)
        shards = [Redis() for _ in range(nshards)] if nshards > 1 else []
        nodes = [Node(redis, shards=shards) for _ in range(nnodes)]
        lb = Haproxy(nodes) if nnodes > 1 else None
        try:
            port = lb.port if lb else nodes[0].port
            lg = Loadgens(n, lambda i: port, groups=g, duration=600)
            ready = lg.collect("ready", 200)
            if summed(ready, "ready") != n:
                raise RuntimeError("only %d of %d ready: %s" % (summed(ready, "ready"), n,
                                                               errs(ready)))
            redis_pids = [p for r in [redis] + shards for p in proc_pids(r.p.pid)]
            node_pids = [p for nd in nodes for p in nd.pids()]
            rates = [int(x) // m for x in (a.rates or "10000").split(",")]
            # Redis's own idle cost (cron, canaries, position checks) is measured and taken out
            i0, t_idle = cpu_s(redis_pids), time.time()
            time.sleep(4)
            idle_rate = (cpu_s(redis_pids) - i0) / (time.time() - t_idle)
            for rate in rates:
                lg.step()
                r0, n0 = cpu_s(redis_pids), cpu_s(node_pids)
                l0 = cpu_s(lb.pids()) if lb else 0
                t0 = time.time()
                pub = run_pub("pub-http", nodes[0].port, rate, a.step_seconds, g, 0)
                got = lg.drain(pub["published"] * m, quiet=a.drain)
                secs = time.time() - t0
                st = lg.step()
                rx = summed(st, "rx")
                rc = max(0.0, cpu_s(redis_pids) - r0 - idle_rate * secs)
                nc = cpu_s(node_pids) - n0
                lc = (cpu_s(lb.pids()) - l0) if lb else 0
                h = merge(st)
                row = {"shards": nshards, "nodes": nnodes, "delivered_per_s": rx / secs,
                       "redis_us_per_delivery": rc * 1e6 / rx if rx else float("nan"),
                       "redis_us_per_pub": rc * 1e6 / pub["published"] if pub["published"]
                       else float("nan"),
                       "node_us_per_delivery": nc * 1e6 / rx if rx else float("nan"),
                       "per_node_core_deliveries_s": rx / nc if nc else float("nan"),
                       "haproxy_cpu_pct": lc / secs * 100, "p99_ms": h.pct(99) / 1000,
                       "lost": pub["published"] * m - rx, "pub_errors": pub["errors"],
                       "gaps": summed(st, "gap"), "dup": summed(st, "dup"),
                       "got": got}
                log("scale", row)
                rows.append(row)
            lg.stop()
        finally:
            if lb:
                lb.stop()
            for nd in nodes:
                nd.stop()
            for r in [redis] + shards:
                r.stop()
    return rows


def jwt(uid, secret=b"bench-jwt-secret-of-at-least-32-bytes"):
    import base64
    import hashlib
    import hmac

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(json.dumps({"sub": uid, "exp": int(time.time()) + 86400}).encode())
    sig = hmac.new(secret, ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(sig))


def redis_cmdstat(redis, cmd):
    """(calls, usec) of one command from INFO commandstats."""
    for line in redis.cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_%s:" % cmd):
            kv = dict(x.split("=") for x in line.split(":", 1)[1].split(","))
            return int(kv["calls"]), int(kv["usec"])
    return 0, 0


def sc_presence(a):
    """One group of N members (default 10,000) with presence, each token carrying a ~100-byte
    card (--info): the presence set's Redis memory, the refresh cost (Redis and node CPU per
    refreshed entry, measured with presence_ttl_ms 3000, i.e. every entry refreshed each second,
    then scaled to the default 90 s), and presence / presence_users / presence_stats replies on the
    whole group (latency, size, Redis time). join_leave is off: with it on, N joins would push
    N x N frames."""
    import asyncio
    import statistics
    import websockets
    n = (a.sizes or [10000])[0]
    info = a.info_bytes
    ttl = 3000
    redis = Redis()
    rows = []
    try:
        redis.members(n + 1, 1)  # u0..u<n>: u<n> is the client asking presence
        node = Node(redis, extra="namespace.group.join_leave = false\npresence_ttl_ms = %d\n" % ttl)
        lg = Loadgens(n, lambda i: node.port, groups=1, duration=600,
                      extra=["--info", str(info)] if info else [])
        ready = lg.collect("ready", 300)
        ok = summed(ready, "ready")
        time.sleep(a.settle + ttl / 1000)
        key = "cardgw:{group:g0}:p"
        members = int(redis.cli("ZCARD", key))
        mem = int(redis.cli("MEMORY", "USAGE", key, "SAMPLES", "0"))
        # refresh: every entry re-added every ttl/3
        c0 = [cpu_s([p]) for p in (node.p.pid, redis.p.pid)]
        z0, t0 = redis_cmdstat(redis, "zadd"), time.time()
        time.sleep(a.idle_seconds)
        c1 = [cpu_s([p]) for p in (node.p.pid, redis.p.pid)]
        z1, wall = redis_cmdstat(redis, "zadd"), time.time() - t0
        zadds = z1[0] - z0[0]
        node_us = (c1[0] - c0[0]) * 1e6 / max(zadds, 1)
        redis_us = (c1[1] - c0[1]) * 1e6 / max(zadds, 1)
        redis_cmd_us = (z1[1] - z0[1]) / max(zadds, 1)
        default_rate = members / 30.0  # presence_ttl_ms 90000: every entry every 30 s

        async def queries():
            out = {}
            async with websockets.connect("ws://127.0.0.1:%d/ws" % node.port,
                                          subprotocols=["cardgw.v1.json"], max_size=None,
                                          ping_interval=None) as ws:
                await ws.send(json.dumps({"id": 1, "cmd": "connect", "token": jwt("u%d" % n)}))
                json.loads(await ws.recv())
                await ws.send(json.dumps({"id": 2, "cmd": "subscribe", "channel": "group:g0"}))
                while "id" not in json.loads(await ws.recv()):
                    pass
                i = 3
                for cmd in ("presence", "presence_users", "presence_stats"):
                    lat, size = [], 0
                    r0 = redis_cmdstat(redis, "zrangebyscore")
                    for _ in range(5):
                        t = time.time()
                        await ws.send(json.dumps({"id": i, "cmd": cmd, "channel": "group:g0"}))
                        while True:
                            m = await ws.recv()
                            if '"id":%d,' % i in m[:20]:
                                break
                        lat.append((time.time() - t) * 1000)
                        size = len(m)
                        i += 1
                    r1 = redis_cmdstat(redis, "zrangebyscore")
                    out[cmd] = (statistics.median(lat), size, (r1[1] - r0[1]) / 5000.0)
            return out
        q = asyncio.run(queries())
        lg.stop()
        row = {"members": members, "ready": ok, "info_bytes": info,
               "zset_bytes": mem, "bytes_per_member": mem / max(members, 1),
               "refresh_per_s_measured": zadds / wall,
               "redis_us_per_refresh": redis_us, "redis_zadd_us": redis_cmd_us,
               "node_us_per_refresh": node_us,
               "redis_cpu_pct_at_90s_ttl": default_rate * redis_us / 1e4,
               "node_cpu_pct_at_90s_ttl": default_rate * node_us / 1e4}
        for cmd, (ms, size, rms) in q.items():
            row[cmd + "_ms"] = ms
            row[cmd + "_bytes"] = size
            row[cmd + "_redis_ms"] = rms
        rows.append(row)
        log("presence", row)
        node.stop()
    finally:
        redis.stop()
    return rows


def tsung_stats(logdir):
    """Last 'stats:' line per name in tsung.log: name -> (mean_ms, count) over the whole run."""
    out = {}
    for root, _, files in os.walk(logdir):
        if "tsung.log" in files:
            with open(os.path.join(root, "tsung.log")) as f:
                for line in f:
                    p = line.split()
                    if len(p) >= 9 and p[0] == "stats:":
                        # stats: name count mean stdvar max min global_mean global_count
                        out[p[1]] = (float(p[7]), int(p[8]), float(p[5]))
                    elif len(p) == 3 and p[0] == "stats:":
                        out[p[1]] = (0.0, int(p[2]), 0.0)
    return out


def sc_tsung(a):
    """The connect scenario at a fixed arrival rate, measured by loadgen and by tsung."""
    if not shutil.which("tsung"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "tsung"],
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    n = (a.sizes or [10000])[0]
    rate = a.connect_rate
    hold = int(n / rate) + 10
    rows = []
    env = CardgwEnv(a, n)
    try:
        lg = Loadgens(n, env.port_of, no_sub=True, duration=hold + 60,
                      extra=["--connect-rate", str(rate / max(1, math.ceil(n / PER_PROC)))])
        ready = lg.collect("ready", hold + 60)
        lg.stop()
        h = merge(ready, "ttfr")
        span = (max(m["t_last"] for m in ready) - min(m["t_first"] for m in ready)) / 1e6
        rows.append({"tool": "loadgen", "conns": n, "arrival_per_s": rate,
                     "ok": summed(ready, "ready"), "connects_per_s": summed(ready, "ready") / span,
                     "ttfr_mean_ms": h.sum / max(h.n, 1) / 1000, "ttfr_p50_ms": h.pct(50) / 1000,
                     "ttfr_p99_ms": h.pct(99) / 1000})
    finally:
        env.stop()
    env = CardgwEnv(a, n)
    logdir = os.path.join(TMP, "tsung")
    os.makedirs(logdir, exist_ok=True)
    conf = os.path.join(TMP, "connect.xml")
    with open(os.path.join(BENCH, "tsung", "connect.xml.in")) as f:
        x = f.read()
    for k, v in (("PORT", env.nodes[0].port), ("RATE", rate), ("N", n), ("HOLD", hold),
                 ("SECONDS", int(math.ceil(n / rate * 1.5)) + 2), ("TOKEN", jwt("u0"))):
        x = x.replace("@%s@" % k, str(v))
    with open(conf, "w") as f:
        f.write(x)
    tenv = dict(os.environ, ERL_EPMD_ADDRESS="127.0.0.1", HOME=TMP)
    try:
        t0 = time.time()
        p = start(["tsung", "-f", conf, "-l", logdir, "start"], env=tenv,
                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out = p.communicate(timeout=hold + 120)[0]
        except subprocess.TimeoutExpired:
            stop(p)
            out = "timeout"
        wall = time.time() - t0
        st = tsung_stats(logdir)
        log("tsung:", out.strip()[-300:], st)
        tr = st.get("tr_ttfr", (float("nan"), 0, float("nan")))
        rows.append({"tool": "tsung", "conns": n, "arrival_per_s": rate, "ok": tr[1],
                     "connects_per_s": None,
                     "ttfr_mean_ms": tr[0], "ttfr_p50_ms": None, "ttfr_p99_ms": None,
                     "wall_s": wall})
    finally:
        env.stop()
        subprocess.run(["epmd", "-kill"], env=tenv, capture_output=True)
    lo, ts = rows
    rows.append({"tool": "loadgen/tsung", "ok": lo["ok"] / ts["ok"] if ts["ok"] else None,
                 "ttfr_mean_ms": lo["ttfr_mean_ms"] / ts["ttfr_mean_ms"]
                 if ts["ttfr_mean_ms"] else None})
    return rows


def smaps(pid):
    """RSS (kB) of a process by mapping kind: heap, anon, stack, files."""
    out, cur = {}, None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            p = line.split()
            if not p[0].endswith(":"):
                name = p[5] if len(p) > 5 else "[anon]"
                cur = name if name.startswith("[") else os.path.basename(name)
            elif p[0] == "Rss:":
                out[cur] = out.get(cur, 0) + int(p[1])
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:8])


def sc_profile(a):
    """perf profile of the node in fanout 100x100 at 10,000 deliveries/s; idle memory map."""
    g, m = 100, 100
    n = g * m
    env = CardgwEnv(a, n, groups=g, members=True)
    rows = []
    try:
        pid = env.nodes[0].p.pid
        base = smaps(pid)
        lg = Loadgens(n, env.port_of, groups=g, duration=900)
        lg.collect("ready", 200)
        time.sleep(a.settle)
        idle = smaps(pid)
        rows.append({"what": "idle smaps kB (before -> after %d conns)" % n,
                     "detail": ", ".join("%s %d->%d" % (k, base.get(k, 0), v)
                                         for k, v in idle.items())})
        idata = os.path.join(TMP, "perf-idle.data")
        perf = start(["perf", "record", "-F", "999", "-g", "-o", idata, "-p", str(pid)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c0 = cpu_s([pid])
        time.sleep(a.idle_seconds)
        rows.append({"what": "idle cpu %% (%d conns)" % n,
                     "detail": "%.1f" % ((cpu_s([pid]) - c0) / a.idle_seconds * 100)})
        stop(perf, signal.SIGINT)
        rep = subprocess.run(["perf", "report", "-i", idata, "--stdio", "--no-children",
                              "--sort", "dso,symbol", "-g", "caller", "--percent-limit", "3"],
                             capture_output=True, text=True).stdout
        with open(os.path.join(BENCH, "out", "perf-idle.txt"), "w") as f:
            f.write(rep)
        data = os.path.join(TMP, "perf.data")
        perf = start(["perf", "record", "-F", "999", "-g", "-o", data, "-p", str(pid)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pub = run_pub("pub-redis", 0, 100, a.step_seconds, g, 0, redis_port=env.redis.port)
        stop(perf, signal.SIGINT)
        lg.stop()
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                              "--sort", "dso,symbol", "-g", "none", "--percent-limit", "1.5"],
                             capture_output=True, text=True).stdout
        with open(os.path.join(BENCH, "out", "perf-fanout.txt"), "w") as f:
            f.write(rep)
        for line in rep.splitlines():
            if "%" in line and not line.startswith("#"):
                rows.append({"what": "perf self", "detail": " ".join(line.split())})
        rows.append({"what": "published", "detail": str(pub["published"])})
    finally:
        env.stop()
    return rows


def sc_floor(a):
    g, m = 100, 100
    n = g * m
    out = subprocess.run([FLOOR, "--conns", str(n), "--groups", str(g), "--rate", "100",
                          "--duration", str(a.step_seconds), "--bytes", "240"],
                         capture_output=True, text=True, timeout=300)
    fl = json.loads(out.stdout.strip().splitlines()[-1])
    a.rates = "10000"
    a.shapes = ["100x100"]
    fan = sc_fanout(a)[0]
    return [{"conns": n, "pubs_per_s": 100, "floor_us_per_write": fl["us_per_write"],
             "cardgw_us_per_msg": fan["cpu_us_per_msg"],
             "ratio": fan["cpu_us_per_msg"] / fl["us_per_write"],
             "writes_per_delivery": fan.get("writes_per_delivery"),
             "cardgw_p99_ms": fan["p99_ms"]}]


class PeerEnv:
    """Redis + a peer started by its script in bench/peers/ (foreground; SIGTERM stops it)."""

    def __init__(self, kind):
        self.kind = kind
        self.redis = Redis()
        self.ports = [free_port()] + ([free_port()] if kind == "socketio" else [])
        cmd = [os.path.join(BENCH, "peers", kind + ".sh")] + [str(p) for p in self.ports]
        self.p = start(cmd + [str(self.redis.port)], stdout=subprocess.DEVNULL)
        for p in self.ports:
            wait_port(p, 60)
        time.sleep(1.0)
        self.note = {"nchan": "nginx, worker_processes auto",
                     "socketio": "2 instances + redis adapter"}[kind]

    def port_of(self, i):
        return self.ports[i % len(self.ports)]

    def pids(self):
        return proc_pids(self.p.pid)

    def stop(self):
        stop(self.p, timeout=15)
        self.redis.stop()


def make_env(a, target, n, groups, members):
    if target == "cardgw":
        return CardgwEnv(a, n, groups=groups, members=members)
    return PeerEnv(target)


def sc_peers(a):
    """connect, idle and fanout against cardgw, Nchan and Socket.IO in one run; ratios."""
    n_conn = (a.sizes or [10000])[0]
    g, m = 100, 100
    n = g * m
    rates = [int(x) // m for x in (a.rates or "10000,20000,50000").split(",")]
    res = {}
    for target in a.targets or ["cardgw", "nchan", "socketio"]:
        r = res[target] = {}
        env = make_env(a, target, n_conn, 1, False)
        try:
            c = sc_connect(a, target, env)[0]
            r["connects_per_s"], r["ttfr_p50_ms"], r["ttfr_p99_ms"] = (
                c["connects_per_s"], c["ttfr_p50_ms"], c["ttfr_p99_ms"])
            r["connect_failed"] = c["failed"]
        finally:
            env.stop()
        env = make_env(a, target, n, g, True)
        try:
            i = idle_measure(env, n, target, g, a.settle, a.idle_seconds)
            r["idle_bytes_per_conn"], r["idle_cpu_pct"] = i["bytes_per_conn"], i["idle_cpu_pct"]
        finally:
            env.stop()
        env = make_env(a, target, n, g, True)
        try:
            lg = Loadgens(n, env.port_of, target=target, groups=g, duration=900)
            ready = lg.collect("ready", 200)
            pport = env.port_of(0) if target != "cardgw" else env.nodes[0].port

            def publish(rate, secs, seq, target=target, pport=pport):
                return run_pub("pub-http", pport, rate, secs, g, seq, target=target)
            st, crossed = fanout_steps(a, lg, env.pids, publish, rates, m, None, target)
            lg.stop()
            for s in st:
                k = "@%d/s" % (s["pubs_per_s"] * m)
                r["cpu_us_per_msg" + k] = s["cpu_us_per_msg"]
                r["p99_ms" + k] = s["p99_ms"]
                r["lost" + k] = s["lost"]
            r["ready"] = summed(ready, "ready")
        finally:
            env.stop()
        log(target, r)
    rows = []
    keys = []
    for t in res.values():
        keys += [k for k in t if k not in keys]
    for k in keys:
        row = {"figure": k}
        for t in res:
            row[t] = res[t].get(k)
        cg = res.get("cardgw", {}).get(k)
        for t in ("nchan", "socketio"):
            v = res.get(t, {}).get(k)
            if isinstance(cg, (int, float)) and isinstance(v, (int, float)) and v:
                row["cardgw/" + t] = cg / v
        rows.append(row)
    return rows


COLS = {
    "connect": ["conns", "ok", "failed", "connects_per_s", "ttfr_p50_ms", "ttfr_p99_ms",
                "ttfr_max_ms", "errors"],
    "idle": ["conns", "ready", "node", "rss_base_mb", "rss_mb", "bytes_per_conn",
             "idle_cpu_pct", "errors"],
    "fanout": ["shape", "pubs_per_s", "delivered_per_s", "cpu_us_per_msg", "node_cpu_pct",
               "writes_per_delivery", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
               "node_p50_ms", "node_p99_ms", "lost", "dup", "gaps"],
    "scale": ["shards", "nodes", "delivered_per_s", "redis_us_per_delivery", "redis_us_per_pub",
              "node_us_per_delivery", "per_node_core_deliveries_s", "haproxy_cpu_pct", "p99_ms",
              "lost", "pub_errors", "gaps", "dup"],
    "crossnode": ["pubs_per_s", "delivered_per_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
                  "max_ms", "lost", "dup"],
    "profile": ["what", "detail"],
    "tsung": ["tool", "conns", "arrival_per_s", "ok", "connects_per_s", "ttfr_mean_ms",
              "ttfr_p50_ms", "ttfr_p99_ms"],
    "peers": ["figure", "cardgw", "nchan", "socketio", "cardgw/nchan", "cardgw/socketio"],
    "presence": ["members", "info_bytes", "zset_bytes", "bytes_per_member",
                 "refresh_per_s_measured", "redis_us_per_refresh", "redis_zadd_us",
                 "node_us_per_refresh", "redis_cpu_pct_at_90s_ttl", "node_cpu_pct_at_90s_ttl",
                 "presence_ms", "presence_bytes", "presence_redis_ms", "presence_users_ms",
                 "presence_users_bytes", "presence_stats_ms", "presence_stats_bytes"],
    "floor": ["conns", "pubs_per_s", "floor_us_per_write", "cardgw_us_per_msg", "ratio",
              "writes_per_delivery", "cardgw_p99_ms"],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("scenario", choices=["connect", "idle", "fanout", "crossnode", "scale", "floor",
                                         "peers", "tsung", "profile", "presence"])
    ap.add_argument("--targets", type=lambda s: s.split(","))
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--shapes", type=lambda s: s.split(","))
    ap.add_argument("--rates", help="fanout: deliveries/s per step; crossnode: publications/s")
    ap.add_argument("--step-seconds", type=float, default=10)
    ap.add_argument("--drain", type=float, default=1.5)
    ap.add_argument("--settle", type=float, default=3)
    ap.add_argument("--idle-seconds", type=float, default=10)
    ap.add_argument("--inflight", type=int, default=256)
    ap.add_argument("--connect-rate", type=float, default=1000, help="tsung: arrivals/s")
    ap.add_argument("--info-bytes", type=int, default=100, help="presence: card size in tokens")
    ap.add_argument("--no-csv", action="store_true")
    a = ap.parse_args()
    for b in (LOADGEN, FLOOR, CARDGW):
        if not os.access(b, os.X_OK):
            sys.exit("missing %s: build it first (make bench-build)" % b)
    os.makedirs(os.path.join(BENCH, "out"), exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        rows = {"connect": sc_connect, "idle": sc_idle, "fanout": sc_fanout,
                "crossnode": sc_crossnode, "scale": sc_scale, "floor": sc_floor, "peers": sc_peers,
                "tsung": sc_tsung, "profile": sc_profile,
                "presence": sc_presence}[a.scenario](a)
    finally:
        cleanup()
    nproc, model = machine()
    table("%s — cardgw %s — %d x %s" % (a.scenario, commit(), nproc, model), COLS[a.scenario],
          rows)
    save_json(a.scenario, rows)
    if not a.no_csv:
        append_csv(a.scenario, "cardgw", rows)


if __name__ == "__main__":
    main()
