// Test harness: a real redis-server and real cardgw nodes on free loopback ports (modelled on
// tests/integration/conftest.py), HTTP server API calls, HS256 JWTs, a small RESP client, and
// WebSocket transports built on `ws`. Everything started is stopped by cleanup(): nodes with
// SIGTERM must exit 0 and leave no sanitizer report; no port may stay bound.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..', '..');
export const NODE_BIN = process.env.CARDGW_TEST_BIN || path.join(ROOT, 'build', 'cardgw-asan');
export const API_KEY = 'test-api-key-0123456789';
export const JWT_SECRET = 'test-jwt-secret-of-at-least-32-bytes';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls cond() every `step` ms until it is truthy or `ms` passed; returns its last value. */
export async function waitFor(cond, ms = 10000, step = 20) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v || Date.now() > end) return v;
    await sleep(step);
  }
}

// ---- ports ---------------------------------------------------------------------------------

// below the kernel's ephemeral range, so that no outgoing connection takes a port between
// freePort() and the bind of the process it is for (or while a node restarts on it)
let portLo = 10000;
let portHi = 32768;
try {
  portHi = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]) || portHi;
} catch {
  /* keep the default */
}
let nextPort = portLo + Math.floor(Math.random() * (portHi - portLo));

function canBind(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

export async function freePort() {
  for (let i = 0; i < 2000; i++) {
    const port = nextPort;
    nextPort = portLo + ((port + 1 - portLo) % (portHi - portLo));
    if (await canBind(port)) return port;
  }
  throw new Error('no free port');
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function waitPortClosed(port, ms = 10000) {
  return waitFor(async () => !(await portOpen(port)), ms, 50);
}

// ---- processes -----------------------------------------------------------------------------

function exited(proc) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode ?? proc.signalCode);
    proc.once('exit', (code, sig) => resolve(code ?? sig));
  });
}

export class RedisServer {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardgw-js-redis-'));
    this.port = 0;
    this.proc = null;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  async start() {
    this.port = this.port || (await freePort());
    this.proc = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, '--logfile', path.join(this.dir, 'log')],
      { stdio: 'ignore' }
    );
    const ok = await waitFor(async () => {
      try {
        const c = await Resp.connect(this.port);
        const r = await c.cmd('PING');
        c.close();
        return r === 'PONG';
      } catch {
        return false;
      }
    }, 10000, 50);
    if (!ok) throw new Error('redis-server did not start');
    return this;
  }

  /** A new RESP connection to this Redis (close it when done). */
  client() {
    return Resp.connect(this.port);
  }

  /** One command on a short-lived connection. */
  async cmd(...args) {
    const c = await this.client();
    try {
      return await c.cmd(...args);
    } finally {
      c.close();
    }
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGKILL');
      await exited(this.proc);
    }
    this.proc = null;
    if (this.port && !(await waitPortClosed(this.port))) throw new Error(`redis port ${this.port} still bound`);
  }

  async cleanup() {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export class Node {
  constructor(redisUrl, extra) {
    this.redisUrl = redisUrl;
    this.extra = extra || {};
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardgw-js-node-'));
    this.config = path.join(this.dir, 'node.conf');
    this.log = path.join(this.dir, 'node.log');
    this.port = 0;
    this.proc = null;
    this.exitCodes = []; // of every stop(), for the clean-exit check
  }

  get name() {
    return `node-${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start() {
    if (!this.port) {
      this.port = await freePort();
      const lines = Object.assign(
        {
          listen_address: '127.0.0.1',
          port: this.port,
          node_id: this.name,
          redis_url: this.redisUrl,
          api_key: API_KEY,
          jwt_secret: JWT_SECRET,
          log_level: 'info',
          redis_canary_interval_ms: 200,
          redis_backoff_min_ms: 50,
          redis_backoff_max_ms: 500,
          shutdown_timeout_ms: 5000,
          drain_window_ms: 300,
          drain_unready_ms: 0,
          'namespace.public.subscribe': 'public',
          'namespace.public.publish': 'true',
          'namespace.public.presence': 'true',
          'namespace.public.history_size': 1000,
          // tests open many connections from 127.0.0.1 at once, several with one uid
          max_new_connections_per_ip_per_s: 0,
          max_connections_per_user: 0,
        },
        this.extra
      );
      fs.writeFileSync(this.config, Object.entries(lines).map(([k, v]) => `${k} = ${v}\n`).join(''));
    }
    const env = Object.assign({}, process.env, {
      ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0:exitcode=23',
      UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1:exitcode=24',
      LSAN_OPTIONS: `suppressions=${path.join(ROOT, 'tests', 'lsan.supp')}`,
    });
    const fd = fs.openSync(this.log, 'a'); // appended: a restarted node's runs are all checked
    this.proc = spawn(NODE_BIN, ['--config', this.config], { stdio: ['ignore', fd, fd], env });
    fs.closeSync(fd);
    const proc = this.proc;
    const ok = await waitFor(async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return 'exited';
      const r = await this.http('GET', '/readyz');
      return r.status === 200;
    }, 20000, 50);
    if (ok !== true) throw new Error(`node ${ok === 'exited' ? 'exited early' : 'not ready'}:\n${this.readLog().slice(-3000)}`);
    return this;
  }

  readLog() {
    try {
      return fs.readFileSync(this.log, 'utf8');
    } catch {
      return '';
    }
  }

  get running() {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Stops the node (SIGTERM by default) and returns its exit code (or signal name). */
  async stop(sig = 'SIGTERM', timeoutMs = 20000) {
    if (!this.proc) return null;
    const proc = this.proc;
    if (this.running) proc.kill(sig);
    let timer;
    const rc = await Promise.race([exited(proc), new Promise((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)))]);
    clearTimeout(timer);
    if (rc === 'timeout') {
      proc.kill('SIGKILL');
      await exited(proc);
    }
    this.proc = null;
    if (!(await waitPortClosed(this.port))) throw new Error(`node port ${this.port} still bound`);
    if (sig === 'SIGTERM') this.exitCodes.push(rc);
    return rc;
  }

  /** kill -9 (no drain): clients see an abnormal close. */
  kill() {
    return this.stop('SIGKILL');
  }

  async restart() {
    await this.stop();
    return this.start();
  }

  async http(method, p, body) {
    const headers = { authorization: `apikey ${API_KEY}` };
    let data;
    if (body !== undefined) {
      data = JSON.stringify(body);
      headers['content-type'] = 'application/json';
    }
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 5000);
    try {
      const r = await fetch(`http://127.0.0.1:${this.port}${p}`, { method, headers, body: data, signal: ctl.signal });
      const text = await r.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: r.status, text, json };
    } catch {
      return { status: null, text: '', json: null };
    } finally {
      clearTimeout(t);
    }
  }

  /** POST /api/v1/publish → {epoch, offset} or null (node down / 503). */
  async publish(channel, data) {
    const r = await this.http('POST', '/api/v1/publish', { channel, data });
    return r.status === 200 ? r.json : null;
  }

  async cleanup() {
    const rc = this.running ? await this.stop() : null;
    const log = this.readLog();
    fs.rmSync(this.dir, { recursive: true, force: true });
    const problems = [];
    if (/Sanitizer|runtime error/.test(log)) problems.push(`${this.name}: sanitizer report:\n${log.slice(-4000)}`);
    for (const c of this.exitCodes) if (c !== 0) problems.push(`${this.name}: SIGTERM exit ${c}:\n${log.slice(-3000)}`);
    void rc;
    return problems;
  }
}

/**
 * setup(t, {nodes, extra}) → {redis, nodes: [Node], node(extra)}: a Redis and N started nodes,
 * all stopped after the test (t.after), which fails on an unclean exit or a bound port.
 */
export async function setup(t, opts = {}) {
  const redis = await new RedisServer().start();
  const nodes = [];
  const env = {
    redis,
    nodes,
    async node(extra) {
      const n = new Node(redis.url, Object.assign({}, opts.extra, extra));
      nodes.push(n);
      return n.start();
    },
  };
  t.after(async () => {
    const problems = [];
    for (const n of nodes) problems.push(...(await n.cleanup()));
    await redis.cleanup();
    if (problems.length) throw new Error(problems.join('\n'));
  });
  for (let i = 0; i < (opts.nodes ?? 1); i++) await env.node();
  return env;
}

// ---- auth ----------------------------------------------------------------------------------

const b64u = (b) => Buffer.from(b).toString('base64url');

/** An HS256 JWT for uid `sub`; `exp` in unix seconds; extra claims (e.g. info) as given. */
export function jwt(sub, { exp, secret = JWT_SECRET, ...extra } = {}) {
  const claims = Object.assign({ sub }, exp != null ? { exp } : {}, extra);
  const h = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const p = b64u(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${sig}`;
}

// ---- transports ----------------------------------------------------------------------------

/** The client transport for Node 20 (no global WebSocket): `ws` with ArrayBuffer frames. */
export function wsTransport(url, protocols) {
  const ws = new WebSocket(url, protocols);
  ws.binaryType = 'arraybuffer';
  return ws;
}

/** A transport whose current socket a test can break: cut() terminates it (as a network loss
 * would: close 1006), deafen() silently drops every frame from then on (a dead peer). It is a
 * thin object of the transport interface around a `ws` socket (what a WeChat adapter does). */
export function breakableTransport() {
  const t = (url, protocols) => {
    const ws = wsTransport(url, protocols);
    const w = {
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
      deaf: false,
      ws,
      send: (d) => ws.send(d),
      close: (code, reason) => ws.close(code, reason),
    };
    ws.onopen = (ev) => w.onopen && w.onopen(ev);
    ws.onmessage = (ev) => !w.deaf && w.onmessage && w.onmessage(ev);
    ws.onclose = (ev) => w.onclose && w.onclose(ev);
    ws.onerror = (ev) => w.onerror && w.onerror(ev);
    t.current = w;
    return w;
  };
  t.current = null;
  // the socket the client uses now is open (right after a cut the client may still say
  // `connected` until the close event of the old one has run)
  t.open = () => !!t.current && t.current.ws.readyState === WebSocket.OPEN;
  t.cut = () => {
    const w = t.current;
    if (w && w.ws.readyState === WebSocket.OPEN) {
      w.ws.terminate();
      return true;
    }
    return false;
  };
  t.deafen = () => {
    if (t.current) t.current.deaf = true;
  };
  return t;
}

// ---- RESP ----------------------------------------------------------------------------------

/** A minimal Redis client over node:net: cmd(...args) → reply (bulk strings as Buffers unless
 * they are valid for `str()`); replies are matched to commands in order. */
export class Resp {
  static connect(port) {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host: '127.0.0.1' });
      sock.once('connect', () => resolve(new Resp(sock)));
      sock.once('error', reject);
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.waiting = [];
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        const r = parse(this.buf, 0);
        if (!r) break;
        this.buf = this.buf.subarray(r.end);
        const w = this.waiting.shift();
        if (w) r.value instanceof Error ? w.reject(r.value) : w.resolve(r.value);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      for (const w of this.waiting.splice(0)) w.reject(new Error('redis connection closed'));
    });
  }

  cmd(...args) {
    let out = `*${args.length}\r\n`;
    const parts = [];
    for (const a of args) {
      const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
      parts.push(Buffer.from(out + `$${b.length}\r\n`), b);
      out = '\r\n';
    }
    parts.push(Buffer.from('\r\n'));
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.sock.write(Buffer.concat(parts));
    });
  }

  close() {
    this.sock.destroy();
  }
}

function parse(buf, i) {
  const nl = buf.indexOf('\r\n', i);
  if (nl < 0) return null;
  const type = String.fromCharCode(buf[i]);
  const line = buf.toString('utf8', i + 1, nl);
  const next = nl + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.subarray(next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const arr = [];
      let at = next;
      for (let k = 0; k < n; k++) {
        const r = parse(buf, at);
        if (!r) return null;
        arr.push(r.value);
        at = r.end;
      }
      return { value: arr, end: at };
    }
    default:
      throw new Error('RESP: unexpected type ' + type);
  }
}

export const str = (b) => (Buffer.isBuffer(b) ? b.toString('utf8') : b);

// ---- checking deliveries -------------------------------------------------------------------

/** Records, per channel, the `k` of every publication the app saw (through client.on). */
export function recordPublications(client) {
  const got = new Map();
  client.on('publication', (ev) => {
    if (!got.has(ev.channel)) got.set(ev.channel, []);
    got.get(ev.channel).push(ev.data && ev.data.k);
  });
  return got;
}

/** A publisher through a node's API: publishes {k} to channels in turn every `interval` ms
 * until stop(); records the k of each acknowledged publication per channel, in offset order. */
export function steadyPublisher(nodes, channels, interval = 10) {
  const sent = new Map(channels.map((c) => [c, []]));
  let stopped = false;
  let k = 0;
  let failures = 0;
  const done = (async () => {
    const byOffset = new Map(channels.map((c) => [c, []]));
    while (!stopped) {
      const ch = channels[k % channels.length];
      const list = typeof nodes === 'function' ? nodes() : nodes;
      let r = null;
      for (const n of list) {
        r = await n.publish(ch, { k });
        if (r) break;
      }
      if (r) byOffset.get(ch).push([r.offset, k]);
      else failures++;
      k++;
      await sleep(interval);
    }
    for (const c of channels) sent.set(c, byOffset.get(c).sort((a, b) => a[0] - b[0]).map((x) => x[1]));
  })();
  return {
    sent,
    get count() {
      return k;
    },
    get failures() {
      return failures;
    },
    async stop() {
      stopped = true;
      await done;
      return sent;
    },
  };
}
