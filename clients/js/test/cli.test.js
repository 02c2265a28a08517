// bin/cardgw-cli.js run as a child process (the executable itself: shebang and mode) against a
// real node: subscribe --count, --since resume, watch, publish / presence* / history, rpc 118
// without a worker, msgpack, a bad token, usage errors, and a clean exit on SIGINT / SIGTERM
// (the socket closed: the node drops the connection's presence).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setup, jwt, waitFor } from './harness.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'cardgw-cli.js');

/** Starts the CLI; `done` resolves with {code, signal, stdout, stderr, lines (parsed stdout)}. */
function cli(args, env = {}) {
  const proc = spawn(CLI, args, { env: Object.assign({}, process.env, { CARDGW_TOKEN: '', CARDGW_URL: '' }, env) });
  const r = { proc, stdout: '', stderr: '' };
  proc.stdout.on('data', (d) => (r.stdout += d));
  proc.stderr.on('data', (d) => (r.stderr += d));
  r.done = new Promise((resolve) => {
    proc.on('close', (code, signal) => {
      r.code = code;
      r.signal = signal;
      r.lines = r.stdout.split('\n').filter(Boolean).map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          return l; // --help; a JSON line assertion then fails on it
        }
      });
      resolve(r);
    });
  });
  r.waitStderr = (re, ms = 5000) => waitFor(() => re.test(r.stderr) || r.code !== undefined, ms);
  return r;
}

const run = (args, env) => cli(args, env).done;

test('cardgw-cli against a real node', async (t) => {
  const env = await setup(t, { extra: { rpc_reply_methods: '*', rpc_timeout_ms: 200 } });
  const node = env.nodes[0];
  const url = ['--url', node.wsUrl];
  const as = (uid) => [...url, '--token', jwt(uid)];

  await t.test('usage: exit 2, --help lists every command and option', async () => {
    for (const args of [[], ['frob'], ['publish', 'public:x'], ['publish', 'public:x', '{bad'], ['ping', '--count', '2'], ['--bogus', 'ping'], ['subscribe', 'public:x', '--since', 'nope'], ['--url', 'http://x', 'ping']]) {
      const r = await run(['--token', 't', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /cardgw-cli: .*\n.*--help/);
      assert.equal(r.stdout, '');
    }
    const noToken = await run([...url, 'ping']);
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /no token/);
    const h = await run(['--help']);
    assert.equal(h.code, 0);
    for (const w of ['subscribe CH', '--since EPOCH:OFFSET', '--count N', 'watch CH...', 'publish CH JSON', 'presence CH', 'presence-users CH', 'presence-stats CH', 'history CH', '--limit N', 'rpc METHOD JSON', 'ping', '--url', '--token', 'CARDGW_TOKEN', '--msgpack', '--timeout']) {
      assert.ok(h.stdout.includes(w), `--help mentions ${w}`);
    }
  });

  await t.test('subscribe --count 3: three publications from the HTTP API as JSON lines, exit 0', async () => {
    const ch = 'public:cli-sub';
    const sub = cli([...as('sub'), '-v', 'subscribe', ch, '--count', '3']);
    assert.ok(await sub.waitStderr(/subscribed public:cli-sub/), sub.stderr);
    for (let k = 1; k <= 3; k++) assert.ok(await node.publish(ch, { k }));
    const r = await sub.done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.lines.map((l) => [l.type, l.channel, l.offset, l.data.k, l.recovered]), [1, 2, 3].map((k) => ['publication', ch, k, k, false]));
    assert.ok(r.lines.every((l) => typeof l.epoch === 'string' && l.epoch));
    assert.match(r.stderr, /socket closed \(1000\)/, 'the socket closed before exiting');
  });

  await t.test('--since resumes; watch follows several channels', async () => {
    const ch = 'public:cli-since';
    let epoch;
    for (let k = 1; k <= 5; k++) epoch = (await node.publish(ch, { k })).epoch;
    const r = await run([...as('since'), 'subscribe', ch, '--since', `${epoch}:2`, '--count', '3']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.lines.map((l) => [l.offset, l.data.k, l.recovered, l.epoch]), [3, 4, 5].map((k) => [k, k, true, epoch]));

    const w = cli([...as('watcher'), '-v', 'watch', 'public:cli-w1', 'public:cli-w2', '--count', '2']);
    assert.ok(await w.waitStderr(/subscribed public:cli-w1[^]*subscribed public:cli-w2|subscribed public:cli-w2[^]*subscribed public:cli-w1/), w.stderr);
    await node.publish('public:cli-w1', { k: 'a' });
    await node.publish('public:cli-w2', { k: 'b' });
    const wr = await w.done;
    assert.equal(wr.code, 0, wr.stderr);
    assert.deepEqual(wr.lines.map((l) => [l.channel, l.data.k]).sort(), [['public:cli-w1', 'a'], ['public:cli-w2', 'b']]);
  });

  await t.test('publish, history, presence, presence-users, presence-stats; SIGINT/SIGTERM close the socket', async () => {
    const ch = 'public:cli-cmds';
    const p = await run([...as('alice'), 'publish', ch, '{"card":"c1","n":[1,2.5,"三"]}']);
    assert.equal(p.code, 0, p.stderr);
    assert.equal(p.lines.length, 1);
    const pos = p.lines[0];
    assert.equal(pos.offset, 1);
    const h = await run([...as('bob'), 'history', ch, '--limit', '10']);
    assert.equal(h.code, 0, h.stderr);
    assert.deepEqual(h.lines[0].publications, [{ offset: 1, data: { card: 'c1', n: [1, 2.5, '三'] }, from: 'alice' }]);
    assert.equal(h.lines[0].epoch, pos.epoch);
    await run([...as('alice'), 'publish', ch, '"second"']);
    const hs = await run([...as('bob'), 'history', ch, '--since', `${pos.epoch}:1`]);
    assert.deepEqual(hs.lines[0].publications.map((x) => x.data), ['second']);

    // a watcher prints the join of the presence command's connection; then Ctrl-C / SIGTERM
    const watchers = [cli([...as('w-int'), '-v', 'subscribe', ch]), cli([...as('w-term'), '-v', 'subscribe', ch])];
    for (const w of watchers) assert.ok(await w.waitStderr(/subscribed public:cli-cmds/), w.stderr);
    const pr = await run([...as('carol'), 'presence', ch]);
    assert.equal(pr.code, 0, pr.stderr);
    assert.deepEqual(pr.lines[0].clients.map((c) => c.uid).sort(), ['carol', 'w-int', 'w-term']);
    const pu = await run([...as('carol'), 'presence-users', ch]);
    assert.deepEqual(pu.lines[0].users.map((u) => [u.uid, u.connections]).sort(), [['carol', 1], ['w-int', 1], ['w-term', 1]]);
    const ps = await run([...as('carol'), 'presence-stats', ch]);
    assert.deepEqual(ps.lines[0], { connections: 3, users: 3 });
    assert.ok(await waitFor(() => /"type":"leave".*"uid":"carol"/.test(watchers[0].stdout), 3000), 'join/leave printed');
    const joins = watchers[0].stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.ok(joins.some((l) => l.type === 'join' && l.channel === ch && l.info.uid === 'carol' && l.info.client));

    watchers[0].proc.kill('SIGINT');
    watchers[1].proc.kill('SIGTERM');
    for (const w of watchers) {
      const r = await w.done;
      assert.equal(r.code, 0, `clean exit: ${r.stderr}`);
      assert.equal(r.signal, null);
      assert.match(r.stderr, /socket closed \(1000\)/, 'close handshake done before exiting');
    }
    // both sockets closed: only the asking connection is left
    let last;
    assert.ok(
      await waitFor(async () => {
        last = await run([...as('carol'), 'presence-stats', ch]);
        return last.lines[0] && last.lines[0].connections === 1;
      }, 5000, 100),
      JSON.stringify(last.lines)
    );
  });

  await t.test('rpc without a worker: exit 1 with 118; bad token: exit 1 with 101', async () => {
    const r = await run([...as('rpc'), 'rpc', 'card.request', '{"to":"bob"}']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /error 118\b/);
    assert.equal(r.stdout, '');
    const bad = await run([...url, '--token', jwt('x', { secret: 'wrong' }), 'ping']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /error 101\b.*4501/);
    const ping = await run([...as('pinger'), 'ping']);
    assert.equal(ping.code, 0, ping.stderr);
    assert.equal(ping.lines[0].node, node.name);
    assert.ok(ping.lines[0].rtt_ms >= 0);
  });

  await t.test('--msgpack: publish, subscribe, bin as {"$bin"}; CARDGW_TOKEN / CARDGW_URL', async () => {
    const ch = 'public:cli-mp';
    const envv = { CARDGW_TOKEN: jwt('mp'), CARDGW_URL: node.wsUrl };
    const p1 = await run(['--msgpack', 'publish', ch, '{"k":1,"b":{"$bin":"AAEC/w=="}}'], envv);
    assert.equal(p1.code, 0, p1.stderr);
    const p2 = await run(['publish', ch, '{"k":2,"b":{"$bin":"AAEC/w=="}}'], envv); // JSON mode: the node converts
    assert.equal(p2.code, 0, p2.stderr);
    for (const mode of [['--msgpack'], []]) {
      const r = await run([...mode, 'subscribe', ch, '--since', `${p1.lines[0].epoch}:0`, '--count', '2'], envv);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.lines.map((l) => l.data), [{ k: 1, b: { $bin: 'AAEC/w==' } }, { k: 2, b: { $bin: 'AAEC/w==' } }], mode.join(''));
    }
    const h = await run(['--msgpack', 'history', ch, '--limit', '1'], envv);
    assert.deepEqual(h.lines[0].publications.map((x) => x.offset), [2]);
  });
});
