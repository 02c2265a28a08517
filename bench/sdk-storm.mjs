// sdk-storm.mjs — a reconnect storm of JavaScript clients (clients/js) after a node restart: N
// clients (default 5,000, spread over source addresses 127.0.0.2+) connect to one release node and
// subscribe to their user channel; the node is killed (-9) or drained (SIGTERM) and started again
// on its port; every client's reconnect time is recorded and the connect rate over time printed
// (per 250 ms), with the spread the backoff jitter gave. `make bench-sdk-storm`.
//   node bench/sdk-storm.mjs [--clients N] [--mode kill|term] [--procs P]
import { spawn, fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const arg = (k, d) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? process.argv[i + 1] : d; };

if (process.argv[2] === '--child') {
  // a worker process: clients [first, first + n) with the SDK over ws
  const { Client } = await import(path.join(ROOT, 'clients/js/src/index.js'));
  const { default: WebSocket } = await import(path.join(ROOT, 'clients/js/node_modules/ws/index.js'));
  const [, , , url, first, n, secret] = process.argv;
  const crypto = await import('node:crypto');
  const b64u = (b) => Buffer.from(b).toString('base64url');
  const jwt = (sub) => {
    const h = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
    const p = b64u(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + 86400 }));
    return `${h}.${p}.${crypto.createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url')}`;
  };
  const clients = [];
  const connects = []; // [client index, ms since epoch] of every connected event
  for (let i = +first; i < +first + +n; i++) {
    const src = `127.0.0.${2 + (i % 200)}`;
    const transport = (u, protocols) => {
      const ws = new WebSocket(u, protocols, { localAddress: src, perMessageDeflate: false });
      ws.binaryType = 'arraybuffer';
      return ws;
    };
    const c = new Client({ url, token: jwt(`u${i}`), transport });
    c.on('connected', () => connects.push([i, Date.now()]));
    c.subscribe(`user:u${i}`);
    clients.push(c);
    c.connect();
    if (i % 200 === 0) await new Promise((r) => setTimeout(r, 20)); // ramp up
  }
  process.on('message', (m) => {
    if (m === 'report') process.send({ connects, connected: clients.filter((c) => c.state === 'connected').length });
    if (m === 'stop') { clients.forEach((c) => c.disconnect()); setTimeout(() => process.exit(0), 500); }
  });
  process.send({ ready: true });
} else {
  const N = +arg('clients', 5000);
  const MODE = arg('mode', 'kill');
  const PROCS = +arg('procs', 4);
  const BIN = process.env.CARDGW_BENCH_BIN || path.join(ROOT, 'build/cardgw');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cardgw-storm-'));
  const free = () => new Promise((r) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const rport = await free();
  const port = await free();
  const started = [];
  const redis = spawn('redis-server', ['--port', String(rport), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp], { stdio: 'ignore' });
  started.push(redis);
  const conf = path.join(tmp, 'node.conf');
  fs.writeFileSync(conf, [`port = ${port}`, 'listen_address = 127.0.0.1', `redis_url = redis://127.0.0.1:${rport}/0`,
    'jwt_secret = bench-jwt-secret-of-at-least-32-bytes', 'api_key = bench-api-key-0123456789', 'log_level = warn', 'max_connections_per_ip = 0',
    'max_new_connections_per_ip_per_s = 0', 'max_connections_per_user = 0', 'drain_unready_ms = 0'].join('\n') + '\n');
  let node;
  const startNode = async () => {
    node = spawn(BIN, ['--config', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
    started.push(node);
    for (let i = 0; i < 200; i++) {
      try { if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return; } catch { /* not yet */ }
      await sleep(50);
    }
    throw new Error('node not ready');
  };
  const cleanup = () => { for (const p of started) try { p.kill('SIGKILL'); } catch { /* gone */ } fs.rmSync(tmp, { recursive: true, force: true }); };
  process.on('exit', cleanup);
  await sleep(300);
  await startNode();
  const kids = [];
  const per = Math.ceil(N / PROCS);
  for (let k = 0; k < PROCS; k++) {
    const child = fork(fileURLToPath(import.meta.url), ['--child', `ws://127.0.0.1:${port}/ws`, String(k * per), String(Math.min(per, N - k * per)), 'bench-jwt-secret-of-at-least-32-bytes']);
    kids.push(child);
  }
  await Promise.all(kids.map((c) => new Promise((r) => c.once('message', r))));
  const report = () => Promise.all(kids.map((c) => new Promise((r) => { c.once('message', r); c.send('report'); })));
  for (let i = 0; i < 600; i++) { // all connected (bounded: 60 s)
    const rs = await report();
    if (rs.reduce((a, r) => a + r.connected, 0) === N) break;
    await sleep(100);
  }
  const before = (await report()).reduce((a, r) => a + r.connected, 0);
  const t0 = Date.now();
  node.kill(MODE === 'term' ? 'SIGTERM' : 'SIGKILL');
  await new Promise((r) => node.once('exit', r));
  const tDown = Date.now();
  await startNode(); // (accepting before it is ready: clients come back from its first moment)
  const tUp = Date.now();
  let rs;
  for (let i = 0; i < 600; i++) { // every client back (bounded: 60 s)
    rs = await report();
    const back = rs.reduce((a, r) => a + r.connects.filter(([, t]) => t > t0).length, 0);
    if (back >= before) break;
    await sleep(100);
  }
  const times = rs.flatMap((r) => r.connects.filter(([, t]) => t > t0).map(([, t]) => t - t0)).sort((a, b) => a - b);
  const buckets = new Map();
  for (const t of times) { const b = Math.floor(t / 250); buckets.set(b, (buckets.get(b) || 0) + 1); }
  const pct = (p) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))];
  console.log(`sdk-storm: ${N} clients (${before} connected before), mode ${MODE}; times from the ${MODE === 'term' ? 'SIGTERM' : 'kill -9'}: process gone at ${tDown - t0} ms, new node ready at ${tUp - t0} ms`);
  console.log(`reconnected: ${times.length}: first ${times[0]} ms, p50 ${pct(50)} ms, p90 ${pct(90)} ms, p99 ${pct(99)} ms, last ${times[times.length - 1]} ms`);
  console.log('connects per 250 ms (ms after the signal: count):');
  for (const [b, n] of [...buckets].sort((a, c) => a[0] - c[0])) console.log(`  ${String(b * 250).padStart(6)}: ${n}`);
  for (const c of kids) c.send('stop');
  await sleep(800);
  node.kill('SIGTERM');
  await sleep(500);
  process.exit(0);
}
