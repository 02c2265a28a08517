// Commands against a real node, in both encodings: connect, subscribe, publish, presence
// (conn_info from the JWT `info` claim), presence_users, presence_stats, history, ping, errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, CardgwError } from '../src/index.js';
import { msgpackCodec } from '../src/msgpack.js';
import { setup, jwt, wsTransport, waitFor } from './harness.js';

const CODECS = { json: undefined, msgpack: msgpackCodec };

test('commands in both encodings', async (t) => {
  const env = await setup(t);
  const node = env.nodes[0];
  const clients = [];
  t.after(() => clients.forEach((c) => c.disconnect()));

  for (const [enc, codec] of Object.entries(CODECS)) {
    await t.test(enc, async () => {
      const ch = `public:cmd-${enc}`;
      const alice = new Client({
        url: node.wsUrl,
        transport: wsTransport,
        codec,
        name: 'cardgw-js-test',
        token: jwt(`alice-${enc}`, { info: { name: '李伟', title: 'CTO' } }),
      });
      const bob = new Client({ url: node.wsUrl, transport: wsTransport, codec, token: jwt(`bob-${enc}`) });
      clients.push(alice, bob);
      const connected = new Promise((r) => alice.once('connected', r));
      alice.connect();
      const ev = await connected;
      assert.equal(ev.uid, `alice-${enc}`);
      assert.equal(ev.node, node.name);
      assert.ok(ev.ping > 0);
      assert.equal(alice.state, 'connected');

      const sub = alice.subscribe(ch);
      assert.equal(alice.subscribe(ch), sub, 'a duplicate subscribe returns the same object');
      const subscribed = new Promise((r) => sub.once('subscribed', r));
      assert.equal(sub.state, 'subscribing');
      const sev = await subscribed;
      assert.equal(sub.state, 'subscribed');
      assert.equal(typeof sev.epoch, 'string');

      const seen = [];
      sub.on('publication', (p) => seen.push(p));
      const joins = [];
      sub.on('join', (j) => joins.push(j.info));

      bob.connect();
      const bsub = bob.subscribe(ch);
      await new Promise((r) => bsub.once('subscribed', r));
      await waitFor(() => joins.length >= 1, 5000);
      assert.equal(joins[0].uid, `bob-${enc}`);

      // publish from the client (public namespace allows it), binary-safe data in msgpack
      const data = enc === 'msgpack' ? { text: 'hi', bytes: new Uint8Array([0, 255, 254]) } : { text: 'hi', n: 1.5 };
      const pos = await alice.publish(ch, data);
      assert.equal(pos.offset, sev.offset + 1);
      await waitFor(() => seen.length >= 1, 5000);
      assert.equal(seen[0].offset, pos.offset);
      assert.equal(seen[0].from, `alice-${enc}`);
      assert.deepEqual(seen[0].data, data);
      assert.deepEqual(sub.position, { epoch: pos.epoch, offset: pos.offset });

      // presence with conn_info from the JWT info claim
      const pr = await sub.presence();
      const me = pr.clients.find((c) => c.uid === `alice-${enc}`);
      assert.deepEqual(me.conn_info, { name: '李伟', title: 'CTO' });
      assert.equal(me.client, alice.info.client);
      assert.ok(pr.clients.some((c) => c.uid === `bob-${enc}` && c.conn_info === undefined));
      const pu = await alice.presenceUsers(ch);
      assert.equal(pu.users.length, 2);
      assert.deepEqual(pu.users.find((u) => u.uid === `alice-${enc}`).conn_info, { name: '李伟', title: 'CTO' });
      assert.deepEqual(await sub.presenceStats(), { connections: 2, users: 2 });

      const h = await sub.history({ limit: 10 });
      assert.equal(h.publications.at(-1).offset, pos.offset);
      const h2 = await alice.history(ch, { since: { epoch: pos.epoch, offset: pos.offset - 1 } });
      assert.deepEqual(h2.publications.map((p) => p.offset), [pos.offset]);

      assert.ok((await alice.ping()) >= 0);

      // server errors surface as CardgwError with the protocol code
      await assert.rejects(alice.publish('nosuchns:x', 1), (e) => e instanceof CardgwError && e.code === 112);
      await assert.rejects(alice.presence('public:not-subscribed'), (e) => e.code === 103);

      // a subscription the server refuses ends unsubscribed with the code
      const bad = alice.subscribe('nosuchns:x');
      const un = await new Promise((r) => bad.once('unsubscribed', r));
      assert.equal(un.code, 112);
      assert.equal(bad.state, 'unsubscribed');

      // a leave when bob unsubscribes
      const left = new Promise((r) => sub.once('leave', r));
      bsub.unsubscribe();
      assert.equal((await left).info.uid, `bob-${enc}`);

      alice.disconnect();
      bob.disconnect();
      assert.equal(alice.state, 'disconnected');
      await assert.rejects(alice.ping(), (e) => e.code === 'closed');
    });
  }
});

test('commands wait for the connection; a client-side timeout rejects with code timeout', async (t) => {
  const env = await setup(t);
  const c = new Client({ url: env.nodes[0].wsUrl, transport: wsTransport, token: jwt('early') });
  t.after(() => c.disconnect());
  c.connect();
  const sub = c.subscribe('public:early');
  // sent before the connect reply: queued, then sent after the subscribe
  await new Promise((r) => sub.once('subscribed', r));
  assert.deepEqual(await c.presenceStats('public:early'), { connections: 1, users: 1 });
  const offline = new Client({ url: 'ws://127.0.0.1:1/ws', transport: wsTransport, token: 'x', minReconnectDelay: 50 });
  offline.connect();
  await assert.rejects(offline.ping({ timeout: 200 }), (e) => e.code === 'timeout');
  offline.disconnect();
});
