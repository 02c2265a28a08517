#!/usr/bin/env node
// cardgw-cli: the cardgw client SDK (src/) on a `ws` socket, from the shell. Every result and
// every publication / join / leave is one JSON line on stdout; errors go to stderr. Exit
// status: 0 done (also after Ctrl-C / SIGTERM and after --count), 1 server or connection error
// (the protocol's code is printed), 2 usage. See README.md, "cardgw-cli".
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { Client, CardgwError } from '../src/index.js';

const USAGE = `Usage: cardgw-cli [options] <command> [args]

Commands:
  subscribe CH [--since EPOCH:OFFSET] [--count N]
                          print each publication, join and leave of CH as a JSON line and
                          keep watching (resubscribing with since after a reconnect) until
                          Ctrl-C, SIGTERM, or N publications
  watch CH... [--count N] the same for several channels
  publish CH JSON         publish JSON (any JSON value: '{"a":1}', '"text"', 42) → {"epoch","offset"}
  presence CH             the connections subscribed to CH (this one included)
  presence-users CH       one entry per user
  presence-stats CH       {"connections","users"}
  history CH [--limit N] [--since EPOCH:OFFSET]
                          {"epoch","offset","publications"}: the latest, or those after since
  rpc METHOD JSON         call the backend; prints its result
  ping                    round trip → {"rtt_ms","node"}

publish, presence*, and history subscribe to CH first (the protocol requires it).

Options:
  --url URL               ws[s]://host:port/ws (default $CARDGW_URL or ws://127.0.0.1:8080/ws)
  --token T               session token or HS256 JWT (default $CARDGW_TOKEN)
  --msgpack               use cardgw.v1.msgpack: bin values print as {"$bin": base64}, and
                          {"$bin": base64} in a JSON argument is sent as bin (as with JSON)
  --timeout MS            connect and command timeout (default 10000); subscribe/watch fail
                          if the first connection takes longer, then reconnect forever
  -v, --verbose           connection and subscription notes on stderr
  -h, --help              this text

A JSON argument that starts with "-" goes after "--": cardgw-cli publish public:x -- -1

Exit status: 0 ok, 1 error (stderr: "cardgw-cli: error CODE: message", CODE the protocol's
error or close code, or timeout / disconnected / closed), 2 usage.
`;

// command → [min args, max args (Infinity), options it takes]
const COMMANDS = {
  subscribe: [1, 1, ['since', 'count']],
  watch: [1, Infinity, ['count']],
  publish: [2, 2, []],
  presence: [1, 1, []],
  'presence-users': [1, 1, []],
  'presence-stats': [1, 1, []],
  history: [1, 1, ['limit', 'since']],
  rpc: [2, 2, []],
  ping: [0, 0, []],
};

class UsageError extends Error {}

function uint(name, v, min) {
  if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) throw new UsageError(`--${name} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  return Number(v);
}

function position(v) {
  const m = /^(.*):(\d+)$/.exec(v); // epochs are opaque: the offset follows the last ':'
  if (!m || !Number.isSafeInteger(Number(m[2]))) throw new UsageError(`--since must be EPOCH:OFFSET, got ${JSON.stringify(v)}`);
  return { epoch: m[1], offset: Number(m[2]) };
}

// with msgpack, {"$bin": base64} in an argument is sent as bin (as the node reads it from JSON)
function binReviver(k, v) {
  if (v && typeof v === 'object' && !Array.isArray(v) && typeof v.$bin === 'string' && Object.keys(v).length === 1) {
    return new Uint8Array(Buffer.from(v.$bin, 'base64'));
  }
  return v;
}

function json(what, v, msgpack) {
  try {
    return JSON.parse(v, msgpack ? binReviver : undefined);
  } catch (e) {
    throw new UsageError(`${what} is not JSON: ${v} (${e.message}); quote strings: '"text"'`);
  }
}

function parse(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        msgpack: { type: 'boolean' },
        timeout: { type: 'string' },
        since: { type: 'string' },
        count: { type: 'string' },
        limit: { type: 'string' },
        verbose: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new UsageError(e.message);
  }
  const o = parsed.values;
  if (o.help) return { help: true };
  const [cmd, ...args] = parsed.positionals;
  if (!cmd) throw new UsageError('no command');
  const spec = COMMANDS[cmd];
  if (!spec) throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  if (args.length < spec[0] || args.length > spec[1]) throw new UsageError(`${cmd}: wrong number of arguments`);
  for (const k of ['since', 'count', 'limit']) if (o[k] !== undefined && !spec[2].includes(k)) throw new UsageError(`${cmd} does not take --${k}`);
  const url = o.url || process.env.CARDGW_URL || 'ws://127.0.0.1:8080/ws';
  let u;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`bad --url ${JSON.stringify(url)}`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new UsageError(`--url must be ws:// or wss://, got ${JSON.stringify(url)}`);
  const token = o.token || process.env.CARDGW_TOKEN;
  if (!token) throw new UsageError('no token: --token T or CARDGW_TOKEN');
  return {
    cmd,
    args,
    url,
    token,
    msgpack: !!o.msgpack,
    verbose: !!o.verbose,
    timeout: o.timeout !== undefined ? uint('timeout', o.timeout, 1) : 10000,
    since: o.since !== undefined ? position(o.since) : null,
    count: o.count !== undefined ? uint('count', o.count, 1) : 0,
    limit: o.limit !== undefined ? uint('limit', o.limit, 0) : undefined,
    data: cmd === 'publish' || cmd === 'rpc' ? json(cmd === 'rpc' ? 'the rpc data' : 'the publication', args[1], !!o.msgpack) : undefined,
  };
}

// msgpack bin → {"$bin": base64} as in JSON mode (PROTOCOL.md section 7); 64-bit ints → strings
function replacer(k, v) {
  if (v instanceof Uint8Array) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  if (typeof v === 'bigint') return v.toString();
  return v;
}

const line = (o) => process.stdout.write(JSON.stringify(o, replacer) + '\n');
const note = (s) => process.stderr.write(`cardgw-cli: ${s}\n`);

async function main() {
  let o;
  try {
    o = parse(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    note(e.message);
    process.stderr.write('Run cardgw-cli --help for usage.\n');
    process.exit(2);
  }
  if (o.help) {
    process.stdout.write(USAGE);
    return;
  }
  const codec = o.msgpack ? (await import('../src/msgpack.js')).msgpackCodec : undefined;

  let socket = null; // the current ws, to wait for its close before exiting
  const transport = (url, protocols) => {
    socket = new WebSocket(url, protocols);
    socket.binaryType = 'arraybuffer';
    return socket;
  };
  const client = new Client({ url: o.url, token: o.token, transport, codec, timeout: o.timeout, maxReconnectDelay: 5000, name: 'cardgw-cli' });

  let finishing = false;
  async function finish(code) {
    // exit status `code` once the socket is closed (at most 1 s) and stdout is flushed
    if (finishing) return;
    finishing = true;
    const ws = socket;
    client.disconnect(); // close 1000
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      // the close handshake: the node answers our close frame (1000), then the socket ends
      const closed = await Promise.race([new Promise((r) => ws.once('close', r)), new Promise((r) => setTimeout(() => r('no answer'), 1000))]);
      if (o.verbose) note(`socket closed (${closed})`);
    }
    await new Promise((r) => process.stdout.write('', r));
    process.exit(code);
  }
  function fail(e, what) {
    if (finishing) return;
    const code = e instanceof CardgwError ? e.code : 'error';
    note(`${what ? what + ': ' : ''}error ${code}: ${e.message}`);
    finish(1);
  }
  process.on('SIGINT', () => finish(0));
  process.on('SIGTERM', () => finish(0));
  process.stdout.on('error', (e) => (e.code === 'EPIPE' ? finish(0) : fail(e)));

  // the server refused the connection for good (bad token 101 → 4501, kicked 4504, …)
  let connectError = null;
  let everConnected = false;
  client.on('error', (ev) => {
    if (ev.kind === 'connect') connectError = ev.error;
    if (o.verbose) note(`${ev.kind} error: ${ev.error && ev.error.message}`);
  });
  client.on('connected', (ev) => {
    everConnected = true;
    if (o.verbose) note(`connected to ${ev.node} as ${ev.uid} (${ev.client}) at ${ev.url}`);
  });
  client.on('disconnected', (ev) => {
    if (finishing) return;
    if (!ev.reconnect) {
      const e = connectError || new CardgwError(ev.code, ev.reason || 'connection closed');
      if (connectError) e.message += ` (closed ${ev.code})`;
      return fail(e);
    }
    if (o.verbose) note(`disconnected (${ev.code} ${ev.reason}); reconnecting in ${Math.round(ev.delay)} ms`);
  });
  client.connect();

  if (o.cmd === 'subscribe' || o.cmd === 'watch') {
    let n = 0;
    for (const ch of o.args) {
      const sub = client.subscribe(ch, o.since ? { since: o.since } : undefined);
      sub.on('publication', (ev) => {
        if (finishing) return;
        const p = { type: 'publication', channel: ev.channel, epoch: ev.epoch, offset: ev.offset, data: ev.data };
        if (ev.from !== undefined) p.from = ev.from;
        p.recovered = !!ev.recovered;
        line(p);
        if (o.count && ++n >= o.count) finish(0);
      });
      for (const kind of ['join', 'leave']) sub.on(kind, (ev) => !finishing && line({ type: kind, channel: ev.channel, info: ev.info }));
      sub.on('subscribed', (ev) => {
        if (o.verbose) note(`subscribed ${ev.channel} at ${ev.epoch}:${ev.offset}${ev.recovered !== undefined ? ` (recovered: ${ev.recovered})` : ''}`);
      });
      sub.on('recovered_false', (ev) => {
        note(`${ev.channel}: history does not cover ${ev.previous.epoch}:${ev.previous.offset} (recovered: false); continuing from ${ev.epoch}:${ev.offset}`);
      });
      sub.on('unsubscribed', (ev) => {
        if (ev.code) fail(new CardgwError(ev.code, ev.reason), `subscribe ${ev.channel}`);
      });
    }
    setTimeout(() => {
      if (!everConnected) fail(new CardgwError('timeout', `no connection within ${o.timeout} ms`));
    }, o.timeout).unref();
    return;
  }

  try {
    const [a] = o.args;
    const channelCmd = ['publish', 'presence', 'presence-users', 'presence-stats', 'history'].includes(o.cmd);
    if (channelCmd) client.subscribe(a); // sent before the command: the node runs them in order
    let r;
    switch (o.cmd) {
      case 'publish':
        r = await client.publish(a, o.data);
        break;
      case 'presence':
        r = await client.presence(a);
        break;
      case 'presence-users':
        r = await client.presenceUsers(a);
        break;
      case 'presence-stats':
        r = await client.presenceStats(a);
        break;
      case 'history':
        r = await client.history(a, { limit: o.limit, since: o.since || undefined });
        break;
      case 'rpc':
        r = await client.rpc(a, o.data);
        break;
      case 'ping':
        r = { rtt_ms: await client.ping(), node: client.info && client.info.node };
        break;
    }
    if (finishing) return;
    line(r === undefined ? null : r);
    finish(0);
  } catch (e) {
    fail(e, o.cmd);
  }
}

main().catch((e) => {
  note(`internal error: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
