// Without a server: the close-code policy of PROTOCOL.md section 10, the backoff bounds, and the
// hook ordering rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, closePolicy, CLOSE_DEAD, CLOSE_SUSPENDED } from '../src/index.js';
import { Hooks, makeEvent } from '../src/hooks.js';

test('close codes: 4000–4499 reconnect, 4500–4999 stop, kick stops, advice wins', () => {
  for (const code of [1000, 4000, 4001, 4002, 4003, 4004, 4005, 4006, 4007, 4008, 4499, 1001, 1006, CLOSE_DEAD, CLOSE_SUSPENDED]) {
    assert.equal(closePolicy(code).reconnect, true, String(code));
  }
  for (const code of [4500, 4502, 4503, 4504, 4999]) assert.equal(closePolicy(code).reconnect, false, String(code));
  assert.equal(closePolicy(4501).newToken, true); // stops unless getToken can fetch a new one
  assert.equal(closePolicy(4005).newToken, true);
  assert.equal(closePolicy(4004).floor, 1000);
  assert.equal(closePolicy(4008).floor, 5000);
  assert.deepEqual(closePolicy(1001, { reconnect: true, delay: 1234 }), { reconnect: true, delay: 1234 });
  assert.equal(closePolicy(1001, { reconnect: false, delay: 0 }).reconnect, false);
  assert.equal(closePolicy(4504, { reconnect: true, delay: 0 }).reconnect, false);
  const d = closePolicy(4000).delay;
  assert.ok(d >= 0 && d <= 5000);
});

test('backoff: full jitter within [0, min(max, min · 2^attempt)]', () => {
  const c = new Client({ url: 'ws://x', token: 't', minReconnectDelay: 200, maxReconnectDelay: 20000 });
  for (let attempt = 0; attempt < 30; attempt++) {
    const cap = Math.min(20000, 200 * 2 ** attempt);
    let max = 0;
    for (let i = 0; i < 200; i++) {
      const v = c._backoff(attempt);
      assert.ok(v >= 0 && v <= cap, `attempt ${attempt}: ${v} > ${cap}`);
      max = Math.max(max, v);
    }
    assert.ok(max > cap / 2, 'spread over the range');
  }
});

test('hooks: priority beats registration order; ties keep registration order; stop consumes', () => {
  const h = new Hooks();
  const seen = [];
  h.add('publication', () => seen.push('p30'), 30);
  h.add('publication', () => seen.push('p10'), 10);
  h.add('publication', () => seen.push('default'));
  h.add('publication', () => seen.push('p10b'), 10);
  h.add('publication', () => seen.push('p-1'), -1);
  assert.equal(h.run(makeEvent('publication', {})), true);
  assert.deepEqual(seen, ['p-1', 'p10', 'p10b', 'p30', 'default']);
  seen.length = 0;
  h.add('publication', (ev) => ev.stop(), 20);
  assert.equal(h.run(makeEvent('publication', {})), false);
  assert.deepEqual(seen, ['p-1', 'p10', 'p10b']);
  seen.length = 0;
  h.add('other', () => false, 0);
  h.add('other', () => seen.push('never'), 1);
  assert.equal(h.run(makeEvent('other', {})), false);
  assert.deepEqual(seen, []);
});

test('suspend holds reconnecting, resume reconnects at once; 1000 "interrupted" reconnects', async () => {
  // a transport that records its sockets; a test opens/closes them by hand
  const socks = [];
  const transport = () => {
    const s = { sent: [], closed: null, send: (d) => s.sent.push(d), close: (code, reason) => (s.closed = { code, reason }) };
    socks.push(s);
    return s;
  };
  const c = new Client({ url: 'ws://x', token: 't', transport, minReconnectDelay: 10000, maxReconnectDelay: 60000 });
  const evs = [];
  c.on('disconnected', (ev) => evs.push(ev));
  c.connect();
  assert.equal(socks.length, 1);
  socks[0].onopen();
  socks[0].onmessage({ data: JSON.stringify({ id: 1, result: { client: 'c1', uid: 'u', node: 'n', ping: 25 } }) });
  assert.equal(c.state, 'connected');
  // a platform close (WeChat cuts a background app's sockets): reconnect, not a final close
  socks[0].onclose({ code: 1000, reason: 'interrupted' });
  assert.equal(c.state, 'connecting');
  assert.deepEqual([evs[0].code, evs[0].reason, evs[0].reconnect], [1000, 'interrupted', true]);
  // suspended: the pending reconnect waits maxReconnectDelay; resume skips the wait
  c.suspend('app hidden');
  assert.equal(socks.length, 1);
  c.resume('app shown');
  assert.equal(socks.length, 2, 'resume reconnects at once');
  socks[1].onopen();
  socks[1].onmessage({ data: JSON.stringify({ id: 2, result: { client: 'c2', uid: 'u', node: 'n', ping: 25 } }) });
  assert.equal(c.state, 'connected');
  // suspend while connected closes the socket (3003) and does not reconnect until resume
  c.suspend('network lost');
  assert.equal(socks[1].closed.code, CLOSE_SUSPENDED);
  assert.equal(evs[1].code, CLOSE_SUSPENDED);
  assert.equal(evs[1].reconnect, true);
  assert.equal(evs[1].delay, 60000, 'held for maxReconnectDelay at most');
  assert.equal(c.state, 'connecting');
  assert.equal(socks.length, 2);
  c.resume('network back');
  assert.equal(socks.length, 3);
  // stopped clients stay stopped
  c.disconnect();
  c.resume();
  c.suspend();
  assert.equal(c.state, 'disconnected');
  assert.equal(socks.length, 3);
});
