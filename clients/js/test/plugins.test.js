// Ordered extension points against a real node: handlers run by declared priority, not by
// registration order; a plugin transforms a publication before the app sees it; a consumed
// publication reaches no later handler and not the app. And the two example plugins:
// presenceBadges (online set with conn_info) and cardCache (uid -> card from section 14 events).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../src/index.js';
import { presenceBadges } from '../src/plugins/presenceBadges.js';
import { cardCache } from '../src/plugins/cardCache.js';
import { setup, jwt, wsTransport, waitFor, sleep } from './harness.js';

test('plugins run by priority, transform and consume', async (t) => {
  const env = await setup(t);
  const node = env.nodes[0];
  const c = new Client({ url: node.wsUrl, transport: wsTransport, token: jwt('plug') });
  t.after(() => c.disconnect());
  const trace = [];
  const mark = (name) => (ev) => trace.push(`${name}:${ev.type}:${ev.data ? ev.data.k : ''}`);
  // registered in the order late, consumer, early, mid; priorities say early, mid, consumer, late
  c.use({ publication: mark('late'), subscribed: mark('late'), connected: mark('late') }, { priority: 50 });
  c.use(
    {
      publication(ev) {
        trace.push(`consumer:${ev.type}:${ev.data.k}`);
        if (ev.data.secret) ev.stop();
      },
    },
    { priority: 40 }
  );
  c.use({ publication: mark('early'), subscribed: mark('early'), connected: mark('early') }, { priority: -5 });
  const removeMid = c.use(
    {
      publication(ev) {
        trace.push(`mid:${ev.type}:${ev.data.k}`);
        ev.data = Object.assign({}, ev.data, { seenByMid: true }); // transform
      },
    },
    { priority: 10 }
  );
  const app = [];
  const sub = c.subscribe('public:plug');
  sub.on('publication', (ev) => app.push(['sub', ev.data]));
  c.on('publication', (ev) => app.push(['client', ev.data]));
  c.on('connected', () => trace.push('app:connected'));
  c.connect();
  await new Promise((r) => sub.once('subscribed', r));
  assert.deepEqual(trace, ['early:connected:', 'late:connected:', 'app:connected', 'early:subscribed:', 'late:subscribed:']);
  trace.length = 0;

  await node.publish('public:plug', { k: 1 });
  await node.publish('public:plug', { k: 2, secret: true });
  await node.publish('public:plug', { k: 3 });
  assert.ok(await waitFor(() => trace.filter((x) => x.startsWith('consumer')).length === 3, 5000));
  await sleep(50);
  assert.deepEqual(trace, [
    'early:publication:1', 'mid:publication:1', 'consumer:publication:1', 'late:publication:1',
    'early:publication:2', 'mid:publication:2', 'consumer:publication:2', // consumed: no late
    'early:publication:3', 'mid:publication:3', 'consumer:publication:3', 'late:publication:3',
  ]);
  assert.deepEqual(app, [
    ['sub', { k: 1, seenByMid: true }], ['client', { k: 1, seenByMid: true }],
    ['sub', { k: 3, seenByMid: true }], ['client', { k: 3, seenByMid: true }],
  ]);
  assert.deepEqual(sub.position.offset, 3, 'a consumed publication still moves the position');

  // removing a plugin takes its handlers out
  removeMid();
  trace.length = 0;
  await node.publish('public:plug', { k: 4 });
  assert.ok(await waitFor(() => trace.length === 3, 5000));
  assert.deepEqual(trace, ['early:publication:4', 'consumer:publication:4', 'late:publication:4']);
});

test('example plugins: presenceBadges and cardCache', async (t) => {
  const env = await setup(t);
  const node = env.nodes[0];
  const ch = 'public:dir-g1';
  const badges = presenceBadges({ channels: (x) => x.startsWith('public:dir') });
  const stale = [];
  const cards = cardCache({ consume: true, onStale: (x) => stale.push(x) });
  const alice = new Client({ url: node.wsUrl, transport: wsTransport, token: jwt('alice', { info: { name: 'Alice' } }) });
  const bob = new Client({ url: node.wsUrl, transport: wsTransport, token: jwt('bob', { info: { name: 'Bob', title: 'CTO' } }) });
  t.after(() => [alice, bob].forEach((c) => c.disconnect()));
  alice.use(badges, { priority: 20 });
  alice.use(cards, { priority: 10 });
  const appSaw = [];
  alice.on('publication', (ev) => appSaw.push(ev.data));

  // the snapshot (as the backend would serve it), then subscribe with since = its position
  await node.publish(ch, { event: 'member_joined', uid: 'alice', card: { name: 'Alice' } });
  const pos = (await node.http('GET', `/api/v1/position?channel=${ch}`)).json;
  cards.load(ch, [{ uid: 'alice', card: { name: 'Alice' } }]);
  await node.publish(ch, { event: 'member_joined', uid: 'bob', card: { name: 'Bob' } }); // after the snapshot
  alice.subscribe(ch, { since: pos });
  alice.connect();
  assert.ok(await waitFor(() => cards.get(ch, 'bob') !== undefined, 5000));
  assert.deepEqual(cards.get(ch, 'bob'), { name: 'Bob' });
  assert.ok(await waitFor(() => badges.isOnline(ch, 'alice'), 5000));
  assert.equal(badges.isOnline(ch, 'bob'), false);

  bob.subscribe(ch);
  bob.connect();
  assert.ok(await waitFor(() => badges.isOnline(ch, 'bob'), 5000));
  assert.deepEqual(badges.online(ch).get('bob').info, { name: 'Bob', title: 'CTO' });
  assert.deepEqual(badges.online(ch).get('alice').info, { name: 'Alice' });

  await node.publish(ch, { event: 'card_updated', uid: 'bob', card: { name: 'Bob', title: 'CEO' } });
  await node.publish(ch, { event: 'member_left', uid: 'alice' });
  await node.publish(ch, { event: 'chat', text: 'not a directory event' });
  assert.ok(await waitFor(() => appSaw.length === 1, 5000));
  assert.deepEqual(cards.get(ch, 'bob'), { name: 'Bob', title: 'CEO' });
  assert.equal(cards.get(ch, 'alice'), undefined);
  assert.deepEqual(appSaw, [{ event: 'chat', text: 'not a directory event' }], 'directory events consumed by cardCache');

  bob.disconnect();
  assert.ok(await waitFor(() => !badges.isOnline(ch, 'bob'), 5000), 'leave removes the badge');
  assert.deepEqual(stale, []);
});
