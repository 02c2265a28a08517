// Drain advice: two nodes; SIGTERM one while publishing. Its clients get the disconnect push
// (code 4000, reconnect true, delay_ms), reconnect to the other node (url list), and catch up
// with since: every publication once, in order. The drained node exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../src/index.js';
import { msgpackCodec } from '../src/msgpack.js';
import { setup, jwt, wsTransport, waitFor, sleep, recordPublications, steadyPublisher } from './harness.js';

const CHANNELS = ['public:drain0', 'public:drain1'];

test('drain: SIGTERM a node; its clients follow the advice to the other node and catch up', async (t) => {
  const env = await setup(t, { nodes: 2, extra: { drain_window_ms: 800 } });
  const [a, b] = env.nodes;
  const clients = [];
  t.after(() => clients.forEach((c) => c.disconnect()));
  const recs = [];
  const advice = [];
  for (let i = 0; i < 8; i++) {
    // the first six start on A (a url list: each reconnect tries the next), two on B
    const url = i < 6 ? [a.wsUrl, b.wsUrl] : [b.wsUrl, a.wsUrl];
    const c = new Client({ url, transport: wsTransport, codec: i % 2 ? msgpackCodec : undefined, token: jwt(`drain-${i}`) });
    advice[i] = [];
    c.on('disconnect_advice', (ev) => advice[i].push(ev));
    recs.push(recordPublications(c));
    for (const ch of CHANNELS) c.subscribe(ch);
    c.connect();
    clients.push(c);
  }
  assert.ok(await waitFor(() => clients.every((c) => c.subscriptions().every((s) => s.state === 'subscribed'))));
  assert.deepEqual(clients.map((c) => c.info.node), [a.name, a.name, a.name, a.name, a.name, a.name, b.name, b.name]);

  const pub = steadyPublisher([b], CHANNELS, 5);
  await sleep(300);
  const rc = await a.stop('SIGTERM');
  assert.equal(rc, 0, 'the drained node exits 0');
  await sleep(400);
  const sent = await pub.stop();
  assert.ok(await waitFor(() => clients.every((c) => c.state === 'connected'), 5000));
  await waitFor(() => recs.every((r) => CHANNELS.every((ch) => (r.get(ch) || []).length >= sent.get(ch).length)), 10000);
  for (let i = 0; i < clients.length; i++) {
    const c = clients[i];
    assert.equal(c.info.node, b.name, `client ${i} is on B`);
    if (i < 6) {
      assert.equal(advice[i].length, 1, `client ${i} got the advice`);
      assert.equal(advice[i][0].code, 4000);
      assert.equal(advice[i][0].reconnect, true);
      assert.ok(advice[i][0].delayMs <= 800);
      assert.equal(c.stats.connects, 2, `client ${i} moved once`);
    } else {
      assert.equal(advice[i].length, 0);
      assert.equal(c.stats.connects, 1);
    }
    for (const ch of CHANNELS) assert.deepEqual(recs[i].get(ch), sent.get(ch), `client ${i} ${ch}`);
  }
});
