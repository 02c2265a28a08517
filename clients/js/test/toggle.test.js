// Fast toggling: 1,000 random subscribe()/unsubscribe() calls (duplicates included) on a few
// channels while publishing. Nothing reaches the app for a channel while the app wants it
// unsubscribed; within each subscribed stretch offsets follow on without duplicates; at the end
// each channel is in the state of the last call, on the client and on the server (presence).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../src/index.js';
import { msgpackCodec } from '../src/msgpack.js';
import { setup, jwt, wsTransport, waitFor, sleep, steadyPublisher } from './harness.js';

const CHANNELS = ['public:tg0', 'public:tg1', 'public:tg2', 'public:tg3'];
const TOGGLES = 1000;

test('1,000 random subscribe/unsubscribe toggles while publishing', async (t) => {
  // toggling 4 channels within ~3 s sends more than the default 100 commands/s (the client
  // sends at most one command per channel per round trip, coalescing the rest)
  const env = await setup(t, { extra: { commands_per_second: 1000, command_burst: 1000 } });
  const node = env.nodes[0];
  for (const [enc, codec] of [['json', undefined], ['msgpack', msgpackCodec]]) {
    await t.test(enc, async () => {
      const chans = CHANNELS.map((c) => `${c}-${enc}`);
      const observer = new Client({ url: node.wsUrl, transport: wsTransport, token: jwt('observer') });
      const c = new Client({ url: node.wsUrl, transport: wsTransport, codec, token: jwt('toggler') });
      const wanted = new Map(chans.map((ch) => [ch, false])); // the app's last call
      const violations = [];
      const lastOffset = new Map();
      let delivered = 0;
      const errors = [];
      c.on('error', (ev) => errors.push(ev));
      c.on('publication', (ev) => {
        delivered++;
        if (!wanted.get(ev.channel)) violations.push(`${ev.channel} offset ${ev.offset} delivered while unsubscribed`);
        if (ev.subscription.state !== 'subscribed') violations.push(`${ev.channel} delivered in state ${ev.subscription.state}`);
        const prev = lastOffset.get(ev.channel);
        if (prev != null && ev.offset !== prev + 1) violations.push(`${ev.channel}: ${prev} then ${ev.offset}`);
        lastOffset.set(ev.channel, ev.offset);
      });
      c.on('subscribed', (ev) => lastOffset.set(ev.channel, ev.offset));
      c.on('unsubscribed', (ev) => lastOffset.delete(ev.channel));
      for (const ch of chans) observer.subscribe(ch);
      observer.connect();
      c.connect();
      assert.ok(await waitFor(() => c.state === 'connected' && observer.subscriptions().every((s) => s.state === 'subscribed')));

      const pub = steadyPublisher([node], chans, 3);
      let calls = 0;
      for (let i = 0; i < TOGGLES; i++) {
        const ch = chans[Math.floor(Math.random() * chans.length)];
        // mostly a flip, sometimes a duplicate of the current wish
        const on = Math.random() < 0.75 ? !wanted.get(ch) : wanted.get(ch);
        wanted.set(ch, on);
        if (on) c.subscribe(ch);
        else c.unsubscribe(ch);
        calls++;
        if (i % 4 === 0) await sleep(Math.random() * 5);
      }
      // end with at least one channel of each kind
      wanted.set(chans[0], true);
      c.subscribe(chans[0]);
      wanted.set(chans[1], false);
      c.unsubscribe(chans[1]);
      await sleep(200);
      await pub.stop();

      // settled: each subscription in the state of the last call, nothing in flight
      const settled = () =>
        chans.every((ch) => {
          const s = c.getSubscription(ch);
          return s.state === (wanted.get(ch) ? 'subscribed' : 'unsubscribed') && !s._inflight;
        });
      assert.ok(await waitFor(settled, 5000), 'settled in the last wished state');
      for (const ch of chans) {
        const stats = await observer.presenceStats(ch);
        assert.equal(stats.connections, wanted.get(ch) ? 2 : 1, `${ch}: server side matches (${wanted.get(ch)})`);
      }
      // one more publication per channel reaches exactly the subscribed ones
      const before = new Map(chans.map((ch) => [ch, lastOffset.get(ch)]));
      const marks = new Map();
      const seen = new Set();
      c.on('publication', (ev) => seen.add(ev.channel + '#' + ev.offset));
      for (const ch of chans) marks.set(ch, await node.publish(ch, { k: 'mark' }));
      await waitFor(() => chans.every((ch) => !wanted.get(ch) || seen.has(ch + '#' + marks.get(ch).offset)), 5000);
      await sleep(100);
      for (const ch of chans) {
        assert.equal(seen.has(ch + '#' + marks.get(ch).offset), wanted.get(ch), `${ch} mark delivered iff subscribed`);
        if (wanted.get(ch)) assert.equal(before.get(ch) + 1, marks.get(ch).offset, `${ch}: nothing missing before the mark`);
      }
      assert.deepEqual(violations, []);
      assert.equal(c.stats.disconnects, 0, 'never disconnected (no flood close)');
      assert.deepEqual(errors.map((e) => String(e.error)), []);
      t.diagnostic(`${enc}: ${calls} calls sent as ${c.stats.commands} commands, ${pub.count} publications, ${delivered} delivered while subscribed`);
      c.disconnect();
      observer.disconnect();
    });
  }
});
