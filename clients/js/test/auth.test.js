// Tokens and the server's word: refresh pushes answered with getToken() keep a connection past
// several expiries; a kick (POST /api/v1/disconnect) stops reconnecting; a bad token stops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../src/index.js';
import { msgpackCodec } from '../src/msgpack.js';
import { setup, jwt, wsTransport, waitFor, sleep, recordPublications } from './harness.js';

const now = () => Math.floor(Date.now() / 1000);

test('token refresh: a 3 s token survives past several expiries through refresh pushes', async (t) => {
  const env = await setup(t, { extra: { token_refresh_before_s: 2, jwt_leeway_s: 0 } });
  const node = env.nodes[0];
  let issued = 0;
  const getToken = async () => {
    issued++;
    return jwt('refresher', { exp: now() + 3 });
  };
  const clients = [
    new Client({ url: node.wsUrl, transport: wsTransport, getToken }),
    new Client({ url: node.wsUrl, transport: wsTransport, getToken, codec: msgpackCodec }),
  ];
  t.after(() => clients.forEach((c) => c.disconnect()));
  const drops = [];
  const recs = clients.map((c) => {
    c.on('disconnected', (ev) => drops.push(ev.code));
    c.subscribe('public:refresh');
    c.connect();
    return recordPublications(c);
  });
  assert.ok(await waitFor(() => clients.every((c) => c.state === 'connected')));
  assert.ok(clients[0].info.expires_in <= 3);
  await sleep(7500); // past two expiries of the first token
  for (const c of clients) {
    assert.equal(c.state, 'connected');
    assert.equal(c.stats.connects, 1, 'never reconnected');
    assert.ok(c.stats.refreshes >= 2, `refreshed ${c.stats.refreshes} times`);
  }
  assert.deepEqual(drops, []);
  assert.ok(issued >= 6, `getToken called ${issued} times`);
  await node.publish('public:refresh', { k: 1 });
  assert.ok(await waitFor(() => recs.every((r) => (r.get('public:refresh') || []).length === 1), 5000));
});

test('an expired token (4005) is replaced through getToken before reconnecting', async (t) => {
  const env = await setup(t, { extra: { token_refresh_before_s: 0, jwt_leeway_s: 0 } });
  const node = env.nodes[0];
  const tokens = [jwt('expiring', { exp: now() + 2 }), jwt('expiring', { exp: now() + 3600 })];
  let calls = 0;
  const c = new Client({
    url: node.wsUrl,
    transport: wsTransport,
    token: tokens[0],
    getToken: async () => tokens[Math.min(++calls, 1)],
  });
  t.after(() => c.disconnect());
  const codes = [];
  c.on('disconnected', (ev) => codes.push(ev.code));
  c.connect();
  assert.ok(await waitFor(() => c.stats.connects === 2, 8000), 'reconnected with a new token');
  assert.equal(codes[0], 4005);
  assert.equal(calls, 1);
  assert.equal(c.state, 'connected');
});

test('kick: POST /api/v1/disconnect stops reconnecting and emits disconnected {kicked: true}', async (t) => {
  const env = await setup(t);
  const node = env.nodes[0];
  const victim = new Client({ url: node.wsUrl, transport: wsTransport, token: jwt('kicked'), getToken: async () => jwt('kicked') });
  const other = new Client({ url: node.wsUrl, transport: wsTransport, token: jwt('stays') });
  t.after(() => [victim, other].forEach((c) => c.disconnect()));
  const events = [];
  for (const e of ['disconnect_advice', 'disconnected', 'connecting', 'connected']) victim.on(e, (ev) => events.push([e, ev]));
  victim.connect();
  other.connect();
  assert.ok(await waitFor(() => victim.state === 'connected' && other.state === 'connected'));
  const r = await node.http('POST', '/api/v1/disconnect', { uid: 'kicked' });
  assert.equal(r.status, 200, r.text);
  assert.ok(await waitFor(() => victim.state === 'disconnected', 5000));
  await sleep(1200); // no reconnect attempt follows
  const names = events.map((e) => e[0]);
  assert.deepEqual(names, ['connecting', 'connected', 'disconnect_advice', 'disconnected'], names.join(','));
  const ev = events.at(-1)[1];
  assert.equal(ev.code, 4504);
  assert.equal(ev.reconnect, false);
  assert.equal(ev.kicked, true);
  assert.equal(victim.state, 'disconnected');
  assert.equal(other.state, 'connected');
  assert.equal(other.stats.disconnects, 0);
});

test('a bad token (4501) with no getToken stops; with getToken it is fetched once more', async (t) => {
  const env = await setup(t);
  const node = env.nodes[0];
  const bad = new Client({ url: node.wsUrl, transport: wsTransport, token: jwt('x', { secret: 'wrong' }) });
  let calls = 0;
  const fixed = new Client({
    url: node.wsUrl,
    transport: wsTransport,
    token: jwt('y', { secret: 'wrong' }),
    getToken: async () => (++calls, jwt('y')),
  });
  t.after(() => [bad, fixed].forEach((c) => c.disconnect()));
  const stop = new Promise((r) => bad.once('disconnected', r));
  bad.connect();
  fixed.connect();
  const ev = await stop;
  assert.equal(ev.code, 4501);
  assert.equal(ev.reconnect, false);
  assert.ok(await waitFor(() => fixed.state === 'connected', 5000));
  assert.equal(calls, 1);
  assert.equal(fixed.info.uid, 'y');
});
