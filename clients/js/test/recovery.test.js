// recovered:false — history cannot cover the client's position: the subscription emits
// `recovered_false` with the new position (and the one it had), then continues live. Also the
// snapshot join (subscribe with since) and unsub 116 (resubscribe with since).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../src/index.js';
import { msgpackCodec } from '../src/msgpack.js';
import { setup, jwt, wsTransport, waitFor, recordPublications } from './harness.js';

test('recovered:false when history is insufficient or the channel was reset', async (t) => {
  const env = await setup(t, { extra: { 'namespace.small.subscribe': 'public', 'namespace.small.history_size': 10 } });
  const node = env.nodes[0];
  for (const [enc, codec] of [['json', undefined], ['msgpack', msgpackCodec]]) {
    await t.test(enc, async () => {
      const ch = `small:rf-${enc}`;
      const c = new Client({ url: node.wsUrl, transport: wsTransport, codec, token: jwt('rf') });
      const rec = recordPublications(c);
      const sub = c.subscribe(ch);
      const rfs = [];
      sub.on('recovered_false', (ev) => rfs.push(ev));
      c.connect();
      await new Promise((r) => sub.once('subscribed', r));
      const first = await node.publish(ch, { k: 0 });
      await waitFor(() => (rec.get(ch) || []).length === 1, 5000);
      assert.deepEqual(sub.position, { epoch: first.epoch, offset: first.offset });

      // 1. more than history_size (10) published while away
      c.disconnect();
      let last;
      for (let k = 1; k <= 15; k++) last = await node.publish(ch, { k });
      c.connect();
      assert.ok(await waitFor(() => rfs.length === 1, 5000), 'recovered_false emitted');
      assert.deepEqual(rfs[0].previous, { epoch: first.epoch, offset: first.offset });
      assert.equal(rfs[0].epoch, last.epoch);
      assert.equal(rfs[0].offset, last.offset);
      assert.deepEqual(sub.position, { epoch: last.epoch, offset: last.offset });
      assert.deepEqual(rec.get(ch), [0], 'nothing replayed across the hole');
      await node.publish(ch, { k: 16 });
      assert.ok(await waitFor(() => rec.get(ch).length === 2, 5000));
      assert.deepEqual(rec.get(ch), [0, 16], 'live again from the new position');

      // 2. the channel's Redis keys deleted: a new epoch
      c.disconnect();
      assert.equal(await env.redis.cmd('DEL', `cardgw:{${ch}}:m`, `cardgw:{${ch}}:x`), 2);
      const fresh = await node.publish(ch, { k: 100 });
      assert.notEqual(fresh.epoch, last.epoch);
      c.connect();
      assert.ok(await waitFor(() => rfs.length === 2, 5000), 'recovered_false after the reset');
      assert.equal(rfs[1].epoch, fresh.epoch);
      assert.equal(rfs[1].offset, fresh.offset);
      assert.equal(rfs[1].previous.epoch, last.epoch);
      assert.equal(sub.state, 'subscribed');
      c.disconnect();
    });
  }
});

test('snapshot join: subscribe with since delivers exactly what followed the snapshot', async (t) => {
  const env = await setup(t);
  const node = env.nodes[0];
  const ch = 'public:snap';
  for (let k = 0; k < 5; k++) await node.publish(ch, { k });
  const pos = (await node.http('GET', `/api/v1/position?channel=${ch}`)).json; // the "snapshot"
  for (let k = 5; k < 8; k++) await node.publish(ch, { k });
  const c = new Client({ url: node.wsUrl, transport: wsTransport, token: jwt('snap') });
  t.after(() => c.disconnect());
  const rec = recordPublications(c);
  const recovered = [];
  c.on('publication', (ev) => recovered.push(ev.recovered));
  const sub = c.subscribe(ch, { since: pos });
  c.connect();
  const ev = await new Promise((r) => sub.once('subscribed', r));
  assert.equal(ev.recovered, true);
  await node.publish(ch, { k: 8 });
  assert.ok(await waitFor(() => (rec.get(ch) || []).length === 4, 5000));
  assert.deepEqual(rec.get(ch), [5, 6, 7, 8]);
  assert.deepEqual(recovered, [true, true, true, false]);
  // a since given to a subscribed channel renews it from there (the app reloaded a snapshot at
  // that position: what followed it is delivered again, once)
  const again = new Promise((r) => sub.once('subscribed', r));
  c.subscribe(ch, { since: { epoch: pos.epoch, offset: pos.offset + 2 } });
  await again;
  assert.deepEqual(rec.get(ch), [5, 6, 7, 8, 7, 8]);
  await node.publish(ch, { k: 9 });
  assert.ok(await waitFor(() => rec.get(ch).length === 7, 5000));
  assert.deepEqual(rec.get(ch), [5, 6, 7, 8, 7, 8, 9]);
});

test('unsub 116 (the node lost track): resubscribe with since, nothing lost', async (t) => {
  const env = await setup(t);
  const node = env.nodes[0];
  const ch = 'public:r116';
  const c = new Client({ url: node.wsUrl, transport: wsTransport, token: jwt('u116') });
  t.after(() => c.disconnect());
  const rec = recordPublications(c);
  const sub = c.subscribe(ch);
  const states = [];
  sub.on('subscribing', (ev) => states.push(ev.reason));
  c.connect();
  await new Promise((r) => sub.once('subscribed', r));
  await node.publish(ch, { k: 0 });
  await waitFor(() => (rec.get(ch) || []).length === 1, 5000);
  // a Redis restart makes the node tell its subscribers unsub 116 (a new epoch follows)
  await env.redis.stop();
  await env.redis.start();
  assert.ok(await waitFor(async () => (await node.http('GET', '/readyz')).status === 200, 10000));
  let p = null;
  for (let i = 0; i < 50 && !p; i++) p = await node.publish(ch, { k: 1 });
  assert.ok(p, 'published after the Redis restart');
  assert.ok(await waitFor(() => sub.state === 'subscribed' && states.length >= 1 && (rec.get(ch) || []).length >= 1, 8000));
  assert.equal(c.stats.connects, 1, 'the connection stayed');
  assert.ok(states.includes('insufficient state'), states.join(','));
  assert.deepEqual(sub.position.epoch, p.epoch);
});
