// Exactly once, in order, across 20 forced disconnects (the socket cut from the client side, as
// a network loss) while a publisher publishes; and a dead connection (frames stop arriving, the
// socket stays open) detected within the advised ping interval plus the margin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, CLOSE_DEAD } from '../src/index.js';
import { msgpackCodec } from '../src/msgpack.js';
import { setup, jwt, breakableTransport, waitFor, sleep, recordPublications, steadyPublisher } from './harness.js';

const CUTS = 20;
const CHANNELS = ['public:cut0', 'public:cut1'];

test('exactly once in order after 20 forced disconnects', async (t) => {
  const env = await setup(t);
  const node = env.nodes[0];
  const clients = [];
  t.after(() => clients.forEach((c) => c.disconnect()));
  const transports = [];
  const records = [];
  for (const codec of [undefined, msgpackCodec]) {
    const tr = breakableTransport();
    const c = new Client({ url: node.wsUrl, transport: tr, codec, token: jwt('cutter'), minReconnectDelay: 100 });
    records.push(recordPublications(c));
    for (const ch of CHANNELS) c.subscribe(ch);
    c.connect();
    clients.push(c);
    transports.push(tr);
  }
  assert.ok(await waitFor(() => clients.every((c) => c.subscriptions().every((s) => s.state === 'subscribed'))));

  const pub = steadyPublisher([node], CHANNELS, 5);
  const cuts = [0, 0];
  for (let k = 0; k < CUTS; k++) {
    for (let i = 0; i < clients.length; i++) {
      // wait (bounded) until the client is back and subscribed, then cut at a random moment
      await waitFor(() => clients[i].state === 'connected' && transports[i].open(), 5000);
      await sleep(Math.random() * 60);
      if (transports[i].cut()) cuts[i]++;
    }
  }
  await sleep(300);
  const sent = await pub.stop();
  await waitFor(() => clients.every((c, i) => CHANNELS.every((ch) => (records[i].get(ch) || []).length >= sent.get(ch).length)), 10000);
  for (let i = 0; i < clients.length; i++) {
    assert.equal(cuts[i], CUTS, `client ${i}: ${CUTS} cuts`);
    assert.ok(clients[i].stats.connects >= CUTS + 1, `client ${i} reconnected after each cut`);
    for (const ch of CHANNELS) assert.deepEqual(records[i].get(ch), sent.get(ch), `client ${i} ${ch}`);
  }
  t.diagnostic(`${pub.count} publications over ${CUTS} cuts per client; duplicates dropped: ${clients.map((c) => c.stats.duplicates)}`);
});

test('dead connection: nothing received for ping + margin closes and resumes', async (t) => {
  const env = await setup(t, { extra: { ping_interval_s: 1 } });
  const node = env.nodes[0];
  const tr = breakableTransport();
  const c = new Client({ url: node.wsUrl, transport: tr, token: jwt('deaf'), pingMargin: 600 });
  t.after(() => c.disconnect());
  const rec = recordPublications(c);
  const sub = c.subscribe('public:deaf');
  c.connect();
  await new Promise((r) => sub.once('subscribed', r));
  const closed = [];
  c.on('disconnected', (ev) => closed.push({ ev, at: Date.now() }));
  await node.publish('public:deaf', { k: 0 });
  await waitFor(() => (rec.get('public:deaf') || []).length === 1, 5000);
  // an idle connection stays up past several ping intervals (the app-level ping keeps it alive)
  await sleep(2500);
  assert.equal(closed.length, 0, 'no close while healthy');
  const t0 = Date.now();
  tr.deafen();
  await node.publish('public:deaf', { k: 1 }); // lost with the deaf socket; recovered by since
  assert.ok(await waitFor(() => closed.length > 0, 5000), 'dead connection detected');
  const after = closed[0].at - t0;
  assert.equal(closed[0].ev.code, CLOSE_DEAD);
  assert.ok(after <= 1000 + 600 + 500, `detected after ${after} ms (ping 1 s + margin 0.6 s)`);
  assert.ok(await waitFor(() => (rec.get('public:deaf') || []).length === 2, 5000), 'resumed with since');
  assert.deepEqual(rec.get('public:deaf'), [0, 1]);
});

test('a transport that repeats and loses frames: duplicates dropped, gaps detected and filled', async (t) => {
  const env = await setup(t);
  const node = env.nodes[0];
  const ch = 'public:lossy';
  let pubs = 0;
  let dropped = 0;
  // wraps each socket: every pub push is delivered twice, and every 7th is lost instead
  const lossy = (url, protocols) => {
    const w = breakableTransport()(url, protocols);
    const inner = w.ws;
    inner.onmessage = (ev) => {
      if (!w.onmessage) return;
      if (typeof ev.data === 'string' && ev.data.startsWith('{"push":"pub"')) {
        if (++pubs % 7 === 0) return void dropped++;
        w.onmessage(ev);
      }
      w.onmessage(ev);
    };
    return w;
  };
  const c = new Client({ url: node.wsUrl, transport: lossy, token: jwt('lossy') });
  t.after(() => c.disconnect());
  const rec = recordPublications(c);
  const gaps = [];
  c.on('gap', (ev) => gaps.push(ev));
  const sub = c.subscribe(ch);
  c.connect();
  await new Promise((r) => sub.once('subscribed', r));
  const sent = [];
  for (let k = 0; k < 60; k++) {
    await node.publish(ch, { k });
    sent.push(k);
    if (k % 10 === 9) await sleep(20);
  }
  // a lost frame is noticed when the next one arrives: if the transport lost the last ones,
  // publish a few more (bounded) until everything of the first 60 is in
  for (let k = 60; k < 80 && !(await waitFor(() => (rec.get(ch) || []).length >= 60, 1000)); k++) {
    await node.publish(ch, { k });
    sent.push(k);
  }
  await sleep(100);
  const got = rec.get(ch) || [];
  assert.ok(got.length >= 60, `got ${got.length}`);
  assert.deepEqual(got, sent.slice(0, got.length), 'exactly once, in order');
  assert.ok(dropped >= 5, `dropped ${dropped}`);
  assert.ok(gaps.length >= 1, 'gaps detected');
  assert.ok(c.stats.duplicates >= 30, `duplicates dropped: ${c.stats.duplicates}`);
  assert.equal(c.stats.connects, 1, 'gaps are filled on the same connection');
});
