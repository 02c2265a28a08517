// rpc against a real node with rpc_reply_methods = *: no worker → error 118 (the node's
// rpc_timeout_ms); a worker written here over a raw RESP connection (XREADGROUP on
// cardgw:inbox, PUBLISH the answer on the entry's `reply` channel, docs/redis-schema.md) →
// the result, or error 119 with app_code; the client-side timeout. Both encodings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode } from '@msgpack/msgpack';
import { Client, CardgwError } from '../src/index.js';
import { msgpackCodec } from '../src/msgpack.js';
import { setup, jwt, wsTransport, str } from './harness.js';

/** A worker in the consumer group `workers`: echo → result, refuse → error 409, slow → never. */
async function startWorker(redis) {
  const r = await redis.client();
  try {
    await r.cmd('XGROUP', 'CREATE', 'cardgw:inbox', 'workers', '$', 'MKSTREAM');
  } catch (e) {
    if (!/BUSYGROUP/.test(e.message)) throw e;
  }
  const pub = await redis.client();
  let running = true;
  const seen = [];
  const loop = (async () => {
    for (let i = 0; running && i < 1000; i++) {
      const res = await r.cmd('XREADGROUP', 'GROUP', 'workers', 'w1', 'COUNT', '10', 'BLOCK', '100', 'STREAMS', 'cardgw:inbox', '>');
      if (!res) continue;
      for (const [, entries] of res) {
        for (const [id, kv] of entries) {
          const f = {};
          for (let k = 0; k < kv.length; k += 2) f[str(kv[k])] = kv[k + 1];
          const method = str(f.method);
          const data = decode(f.data); // msgpack bytes, whatever the client's encoding
          seen.push({ method, uid: str(f.uid), data });
          let answer = null;
          if (method === 'echo') answer = { result: { echo: data, uid: str(f.uid), node: str(f.node) } };
          else if (method === 'refuse') answer = { error: { code: 409, message: 'card already taken' } };
          if (answer && f.reply) {
            answer.req = str(f.req);
            await pub.cmd('PUBLISH', str(f.reply), JSON.stringify(answer));
          }
          await r.cmd('XACK', 'cardgw:inbox', 'workers', str(id));
        }
      }
    }
  })();
  return {
    seen,
    async stop() {
      running = false;
      await loop;
      r.close();
      pub.close();
    },
  };
}

test('rpc: 118 without a worker, result / 119 app_code with one, client-side timeout', async (t) => {
  const env = await setup(t, { extra: { rpc_reply_methods: '*', rpc_timeout_ms: 300 } });
  const node = env.nodes[0];
  for (const [enc, codec] of [['json', undefined], ['msgpack', msgpackCodec]]) {
    await t.test(enc, async () => {
      const c = new Client({ url: node.wsUrl, transport: wsTransport, codec, token: jwt(`rpc-${enc}`) });
      c.connect();
      try {
        // nobody answers: the node's rpc_timeout_ms gives 118, the connection stays usable
        const t0 = Date.now();
        await assert.rejects(c.rpc('card.request', { to: 'bob' }), (e) => e instanceof CardgwError && e.code === 118);
        assert.ok(Date.now() - t0 >= 250);
        assert.equal(c.state, 'connected');

        const w = await startWorker(env.redis);
        try {
          const res = await c.rpc('echo', { to: 'bob', n: [1, 2.5, '三'] });
          assert.deepEqual(res, { echo: { to: 'bob', n: [1, 2.5, '三'] }, uid: `rpc-${enc}`, node: node.name });
          await assert.rejects(c.rpc('refuse', { card: 'c1' }), (e) => {
            assert.ok(e instanceof CardgwError);
            assert.equal(e.code, 119);
            assert.equal(e.appCode, 409);
            assert.equal(e.message, 'card already taken');
            return true;
          });
          // a client-side timeout shorter than the node's
          await assert.rejects(c.rpc('slow', {}, { timeout: 100 }), (e) => e.code === 'timeout');
          // several calls at once, replies matched by id
          const many = await Promise.all([1, 2, 3, 4, 5].map((i) => c.rpc('echo', i)));
          assert.deepEqual(many.map((m) => m.echo), [1, 2, 3, 4, 5]);
          assert.ok(w.seen.some((s) => s.method === 'slow'));
        } finally {
          await w.stop();
        }
      } finally {
        c.disconnect();
      }
    });
  }
});
