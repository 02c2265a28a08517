// The WeChat transport and lifecycle (src/wx.js) against a real node, through a fake `wx`
// object whose connectSocket returns a SocketTask backed by a real `ws` WebSocket. The fake
// behaves as WeChat does where it matters: SocketTask.send takes only a string or an
// ArrayBuffer; it answers no WebSocket ping (the node closes a client silent for 3 × ping, so
// only the client's app-level ping keeps the connection); at most 5 sockets; a while after
// onAppHide it cuts every socket with onClose {code: 1000, reason: "interrupted"} and refuses new
// ones until onAppShow; with the network gone sockets go silent and connectSocket fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { decode } from '@msgpack/msgpack';
import { Client, CLOSE_SUSPENDED } from '../src/index.js';
import { msgpackCodec } from '../src/msgpack.js';
import { wxTransport, attachWxLifecycle } from '../src/wx.js';
import { setup, jwt, waitFor, sleep, steadyPublisher } from './harness.js';

const MAX_SOCKETS = 5;

function fakeWx({ cutAfterHideMs = 300 } = {}) {
  const hooks = { hide: [], show: [], net: [] };
  const later = (fn) => setTimeout(fn, 5);
  const wx = {
    tasks: new Set(), // connecting or open
    maxTasks: 0,
    attempts: 0,
    refused: 0,
    badSends: 0,
    cmds: [], // the `cmd` of every frame sent
    hidden: false,
    cut: false, // hidden long enough: sockets cut, new ones refused
    online: true,
    connectSocket(o) {
      wx.attempts++;
      const h = {};
      const task = {
        onOpen: (f) => (h.open = f),
        onMessage: (f) => (h.message = f),
        onClose: (f) => (h.close = f),
        onError: (f) => (h.error = f),
        send({ data, fail }) {
          if (typeof data !== 'string' && !(data instanceof ArrayBuffer)) {
            wx.badSends++;
            return fail && later(() => fail({ errMsg: 'sendSocketMessage:fail parameter error: data should be String or ArrayBuffer' }));
          }
          if (!ws || ws.readyState !== WebSocket.OPEN) return fail && later(() => fail({ errMsg: 'sendSocketMessage:fail WebSocket is not connected' }));
          if (task.silent) return; // the network is gone: nothing gets through, nobody says so
          const m = typeof data === 'string' ? JSON.parse(data) : decode(new Uint8Array(data));
          wx.cmds.push(m.cmd);
          ws.send(data);
        },
        close({ code, reason, fail }) {
          if (!ws || ws.readyState !== WebSocket.OPEN) return fail && later(() => fail({ errMsg: 'closeSocket:fail WebSocket is not connected' }));
          ws.close(code, reason);
        },
      };
      let ws = null;
      if (wx.cut || !wx.online || wx.tasks.size >= MAX_SOCKETS) {
        wx.refused++;
        const errMsg = wx.tasks.size >= MAX_SOCKETS ? 'connectSocket:fail exceed max task count' : 'connectSocket:fail interrupted';
        later(() => {
          if (o.fail) o.fail({ errMsg });
          if (h.error) h.error({ errMsg });
        });
        return task;
      }
      assert.ok(Array.isArray(o.protocols) && o.protocols.length === 1, 'one subprotocol offered');
      ws = new WebSocket(o.url, o.protocols, { autoPong: false, headers: o.header });
      ws.binaryType = 'arraybuffer';
      wx.tasks.add(task);
      wx.maxTasks = Math.max(wx.maxTasks, wx.tasks.size);
      let ended = false;
      const end = (code, reason) => {
        if (ended) return;
        ended = true;
        wx.tasks.delete(task);
        if (h.close) h.close({ code, reason });
      };
      ws.on('open', () => h.open && h.open({ header: {} }));
      ws.on('message', (data, isBinary) => {
        if (ended || task.silent) return;
        // WeChat gives text frames as strings and binary ones as ArrayBuffers
        if (h.message) h.message({ data: isBinary ? data : Buffer.from(data).toString('utf8') });
      });
      ws.on('close', (code, reason) => end(code, reason.toString()));
      ws.on('error', (e) => !ended && h.error && h.error({ errMsg: e.message }));
      task.interrupt = () => {
        ws.terminate();
        end(1000, 'interrupted');
      };
      return task;
    },
    onAppHide: (f) => hooks.hide.push(f),
    onAppShow: (f) => hooks.show.push(f),
    onNetworkStatusChange: (f) => hooks.net.push(f),
    offAppHide: (f) => hooks.hide.splice(hooks.hide.indexOf(f) >>> 0, 1),
    offAppShow: (f) => hooks.show.splice(hooks.show.indexOf(f) >>> 0, 1),
    offNetworkStatusChange: (f) => hooks.net.splice(hooks.net.indexOf(f) >>> 0, 1),
    // ---- the test's controls
    hide() {
      wx.hidden = true;
      hooks.hide.forEach((f) => f());
      wx.cutTimer = setTimeout(() => {
        wx.cut = true;
        for (const t of [...wx.tasks]) t.interrupt();
      }, cutAfterHideMs);
    },
    show() {
      clearTimeout(wx.cutTimer);
      wx.hidden = wx.cut = false;
      hooks.show.forEach((f) => f({ scene: 1001, path: 'pages/index/index' }));
    },
    setNetwork(up) {
      wx.online = up;
      if (!up) for (const t of wx.tasks) t.silent = true;
      hooks.net.forEach((f) => f({ isConnected: up, networkType: up ? 'wifi' : 'none' }));
    },
    hooks,
  };
  return wx;
}

test('adapter: frames, deferred close, fail → onerror (no server)', async () => {
  const calls = [];
  const h = {};
  const task = {
    onOpen: (f) => (h.open = f),
    onMessage: (f) => (h.message = f),
    onClose: (f) => (h.close = f),
    onError: (f) => (h.error = f),
    send: (o) => calls.push(['send', o.data]),
    close: (o) => calls.push(['close', o.code, o.reason]),
  };
  let params;
  const wx = { connectSocket: (o) => ((params = o), task) };
  const s = wxTransport(wx, { header: { 'x-app': 'demo' }, timeout: 5000 })('wss://gw.example.com/ws', ['cardgw.v1.msgpack']);
  assert.deepEqual([params.url, params.protocols, params.header, params.timeout], ['wss://gw.example.com/ws', ['cardgw.v1.msgpack'], { 'x-app': 'demo' }, 5000]);
  const seen = [];
  s.onopen = () => seen.push('open');
  s.onmessage = (ev) => seen.push(['message', ev.data]);
  s.onclose = (ev) => seen.push(['close', ev.code, ev.reason]);
  s.onerror = (ev) => seen.push(['error', ev.errMsg]);
  // close before the socket opened: asked at once (WeChat may refuse) and again on open
  s.close(3000, 'connect timeout');
  h.open();
  assert.deepEqual(seen, [], 'a socket closed before it opened is not reported open');
  assert.deepEqual(calls, [['close', 3000, 'connect timeout'], ['close', 3000, 'connect timeout']]);
  calls.length = 0;
  // an open socket: a Uint8Array view becomes exactly its bytes as an ArrayBuffer
  const s2 = wxTransport(wx)('wss://x/ws', ['cardgw.v1.msgpack']);
  s2.onopen = () => seen.push('open');
  s2.onmessage = (ev) => seen.push(['message', ev.data]);
  s2.onclose = (ev) => seen.push(['close', ev.code, ev.reason]);
  s2.onerror = (ev) => seen.push(['error', ev.errMsg]);
  h.open();
  const big = new Uint8Array([9, 1, 2, 3, 9]);
  s2.send(big.subarray(1, 4));
  s2.send('{"id":1}');
  assert.ok(calls[0][1] instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(calls[0][1])], [1, 2, 3]);
  assert.equal(calls[1][1], '{"id":1}');
  const ab = new ArrayBuffer(2);
  h.message({ data: ab });
  h.close({ code: 1000, reason: 'interrupted' });
  params.fail({ errMsg: 'connectSocket:fail' });
  assert.deepEqual(seen, ['open', ['message', ab], ['close', 1000, 'interrupted'], ['error', 'connectSocket:fail']]);
  s2.close(1000, 'bye');
  assert.deepEqual(calls[2], ['close', 1000, 'bye']);
});

test('WeChat: app hidden (1000 "interrupted") and shown, network off and on: every publication once, in order; both encodings', async (t) => {
  // ping 1 s: the node closes a client silent for 3 s; the fake answers no WebSocket ping
  const env = await setup(t, { extra: { ping_interval_s: 1 } });
  const node = env.nodes[0];

  async function scenario(name, codec) {
    const ch = `public:wx-${name}`;
    const wx = fakeWx();
    const c = new Client({ url: node.wsUrl, transport: wxTransport(wx), codec, token: jwt(`wx-${name}`), minReconnectDelay: 100 });
    const detach = attachWxLifecycle(c, wx);
    const got = [];
    let recovered = 0;
    c.on('publication', (ev) => {
      got.push(ev.data.k);
      if (ev.recovered) recovered++;
    });
    const closes = [];
    c.on('disconnected', (ev) => closes.push(ev));
    const sub = c.subscribe(ch);
    c.connect();
    let pub = null;
    try {
      assert.ok(await waitFor(() => sub.state === 'subscribed', 5000), `${name}: subscribed`);
      pub = steadyPublisher([node], [ch], 15);

      // connected and idle for longer than 3 × ping: the app-level ping is the heartbeat
      await sleep(3500);
      assert.deepEqual(closes, [], `${name}: no close while idle`);
      assert.ok(wx.cmds.filter((x) => x === 'ping').length >= 2, `${name}: app-level pings sent`);
      assert.ok(got.length > 50, `${name}: live publications`);

      // app hidden: WeChat cuts the socket with 1000 "interrupted"; publishing goes on
      wx.hide();
      assert.ok(await waitFor(() => closes.length === 1, 3000), `${name}: socket cut`);
      assert.deepEqual([closes[0].code, closes[0].reason, closes[0].reconnect], [1000, 'interrupted', true], `${name}: interrupted is a lost connection, not a final close`);
      const attempts = wx.attempts;
      await sleep(700);
      assert.equal(c.state, 'connecting');
      assert.equal(wx.attempts, attempts, `${name}: no reconnect attempts in the background`);
      const beforeShow = got.length;
      const t0 = Date.now();
      wx.show();
      assert.ok(await waitFor(() => sub.state === 'subscribed', 3000), `${name}: resubscribed after show`);
      assert.ok(Date.now() - t0 < 1500, `${name}: reconnected at once on show (${Date.now() - t0} ms)`);
      assert.ok(await waitFor(() => recovered > 0, 2000), `${name}: the publications made while hidden came by recovery`);
      assert.ok(got.length > beforeShow);

      // network gone: closed at once (the socket itself went silent), no attempts while offline
      await sleep(300);
      wx.setNetwork(false);
      assert.ok(await waitFor(() => closes.length === 2, 1000), `${name}: closed on network loss`);
      assert.deepEqual([closes[1].code, closes[1].reconnect], [CLOSE_SUSPENDED, true]);
      const offAttempts = wx.attempts;
      await sleep(500);
      assert.equal(wx.attempts, offAttempts, `${name}: no attempts while offline`);
      const t1 = Date.now();
      wx.setNetwork(true);
      assert.ok(await waitFor(() => sub.state === 'subscribed', 3000), `${name}: resubscribed when the network came back`);
      assert.ok(Date.now() - t1 < 1500, `${name}: reconnected at once when back (${Date.now() - t1} ms)`);

      await sleep(300);
      const sent = (await pub.stop()).get(ch);
      await waitFor(() => got.length >= sent.length, 5000);
      assert.equal(got.length, sent.length, `${name}: every publication exactly once (${got.length} of ${sent.length})`);
      assert.deepEqual(got, sent, `${name}: in order`);
      assert.equal(closes.length, 2, `${name}: no other close`);
      assert.equal(wx.badSends, 0, `${name}: only strings and ArrayBuffers sent`);
      assert.ok(wx.maxTasks <= 2, `${name}: at most ${wx.maxTasks} sockets at once`);
      return { name, pubs: sent.length, recovered, pings: wx.cmds.filter((x) => x === 'ping').length, attempts: wx.attempts };
    } finally {
      if (pub) await pub.stop();
      detach();
      c.disconnect();
    }
  }

  const settled = await Promise.allSettled([scenario('json', undefined), scenario('msgpack', msgpackCodec)]);
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  const res = settled.map((s) => s.value);
  for (const r of res) t.diagnostic(`${r.name}: ${r.pubs} publications, ${r.recovered} recovered, ${r.pings} app pings, ${r.attempts} sockets`);
});
