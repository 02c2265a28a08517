// The cardgw client: one connection at a time, reconnecting by the rules of PROTOCOL.md
// sections 3, 6 and 10; subscriptions resume with `since`.
import { Hooks, Emitter, makeEvent, withListeners } from './hooks.js';
import { jsonCodec } from './json.js';
import { Subscription, SUBSCRIBED, UNSUBSCRIBED, normPosition } from './subscription.js';

export const DISCONNECTED = 'disconnected';
export const CONNECTING = 'connecting';
export const CONNECTED = 'connected';

// client-side close reasons (3000–3999: not used by the server)
export const CLOSE_CONNECT_TIMEOUT = 3000; // no connect reply within `timeout`
export const CLOSE_DEAD = 3001; // nothing received for ping + pingMargin
export const CLOSE_BAD_FRAME = 3002; // a frame the codec could not decode
export const CLOSE_SUSPENDED = 3003; // suspend() called (network gone, app in the background)
export const CLOSE_CLIENT = 1000; // disconnect() called

const MAX_ID = 4294967295;
const noop = () => {};

/** The events a plugin may handle (a plugin's methods with other names are its own API). */
export const EVENTS = [
  'connecting', 'connected', 'disconnected', 'disconnect_advice', 'refresh', 'error',
  'subscribing', 'subscribed', 'unsubscribed', 'publication', 'join', 'leave', 'gap', 'recovered_false',
];

/** An error of the server (numeric `code`, PROTOCOL.md section 9; `appCode` for 119) or of the
 * client (`code` 'timeout' | 'disconnected' | 'closed' | 'token'). */
export class CardgwError extends Error {
  constructor(code, message, appCode) {
    super(message || String(code));
    this.name = 'CardgwError';
    this.code = code;
    if (appCode !== undefined) this.appCode = appCode;
  }
}

function defaultTransport(url, protocols) {
  const WS = globalThis.WebSocket;
  if (!WS) throw new Error('cardgw: no global WebSocket; pass options.transport');
  const ws = new WS(url, protocols);
  ws.binaryType = 'arraybuffer';
  return ws;
}

/**
 * What to do after a connection closed with `code` (after a `disconnect` push `advice`, if
 * any). Returns {reconnect, delay (ms, or null for the backoff), floor (ms added to the
 * backoff), newToken}. Exported for tests and for adapters.
 */
export function closePolicy(code, advice) {
  if (advice && advice.reconnect === false) return { reconnect: false };
  if (code === 4504) return { reconnect: false }; // kicked by the server API
  if (code === 4501) return { reconnect: true, newToken: true, badToken: true };
  if (code >= 4500 && code <= 4999) return { reconnect: false };
  if (advice && advice.reconnect) return { reconnect: true, delay: advice.delay };
  switch (code) {
    case 4000: // draining without advice
    case 1001:
      return { reconnect: true, delay: Math.random() * 5000 };
    case 4001: // slow consumer
    case 4002: // insufficient state
    case 4003: // auth timeout
    case 4007: // the server saw no traffic from us
    case CLOSE_DEAD:
      return { reconnect: true, delay: 'jitter' };
    case 4004: // flood
      return { reconnect: true, floor: 1000 };
    case 4005: // token expired
      return { reconnect: true, delay: 'jitter', newToken: true };
    case 4008: // too many connections of this user
      return { reconnect: true, floor: 5000 };
    // 1000 never comes from the node; from a platform it is not our close (we drop a socket's
    // handlers before closing it): WeChat reports 1000 "interrupted" when it cuts the sockets of
    // an app sent to the background. Reconnect (backoff, first retry within minReconnectDelay)
    // and resume with since.
    case 1000:
    default: // 1006 (network), 4006 (internal), refused, timeouts: backoff with jitter
      return { reconnect: true };
  }
}

export class Client {
  /**
   * @param {object} o see index.d.ts (ClientOptions)
   */
  constructor(o) {
    o = o || {};
    if (!o.url) throw new TypeError('cardgw: options.url is required');
    if (!o.token && !o.getToken) throw new TypeError('cardgw: options.token or options.getToken is required');
    this.options = o;
    this._urls = o.url;
    this._urlIndex = 0;
    this._token = o.token || null;
    this._getToken = o.getToken || null;
    this._codec = o.codec || jsonCodec;
    this._transport = o.transport || defaultTransport;
    this._minDelay = o.minReconnectDelay != null ? o.minReconnectDelay : 200;
    this._maxDelay = o.maxReconnectDelay != null ? o.maxReconnectDelay : 20000;
    this._timeout = o.timeout != null ? o.timeout : 10000;
    this._pingMargin = o.pingMargin != null ? o.pingMargin : 5000;
    this._hooks = new Hooks((e, ev) => this._emitError('plugin', e, { event: ev.type }));
    this._em = new Emitter();
    this._subs = new Map();
    this._pending = new Map(); // id -> onReply(reply | null)
    this._queue = []; // public commands waiting for a connection
    this._conn = null;
    this._nextId = 1;
    this._attempt = 0; // failed connection attempts since the last successful connect
    this._reconnectTimer = null;
    this._suspended = false;
    this._openGen = 0;
    this._beat = null;
    this._needToken = false;
    this._badTokens = 0;
    this._tokenExpiresAt = 0;
    this.state = DISCONNECTED;
    /** The connect reply of the current connection: {client, uid, node, ping, expires_in}. */
    this.info = null;
    this.stats = { commands: 0, connects: 0, disconnects: 0, duplicates: 0, gaps: 0, recoveredFalse: 0, refreshes: 0 };
  }

  // ---- events and plugins --------------------------------------------------------------------

  /**
   * Registers a plugin: an object whose methods are named after events (`publication`,
   * `connected`, …) and get the event (transform it in place; ev.stop() or returning false
   * consumes it). Handlers run in ascending `priority` (default 100), ties in registration
   * order, all before the app's listeners. Returns a function that removes the plugin.
   */
  use(plugin, opts) {
    const priority = opts && opts.priority != null ? opts.priority : plugin.priority;
    const offs = [];
    for (const name of EVENTS) {
      if (typeof plugin[name] !== 'function') continue;
      offs.push(this._hooks.add(name, (ev) => plugin[name](ev, this), priority));
    }
    if (typeof plugin.install === 'function') plugin.install(this);
    return () => offs.forEach((f) => f());
  }

  _emit(type, fields) {
    const ev = makeEvent(type, fields || {});
    if (this._hooks.run(ev)) this._em.emit(type, ev);
    return ev;
  }

  _emitError(kind, error, extra) {
    this._emit('error', Object.assign({ kind, error }, extra));
  }

  _setState(state, fields) {
    if (this.state === state) return;
    this.state = state;
    this._emit(state, fields);
  }

  // ---- connection --------------------------------------------------------------------------

  /** Starts connecting (and reconnecting) until disconnect(). */
  connect() {
    if (this.state !== DISCONNECTED) return this;
    this._attempt = 0;
    this._badTokens = 0;
    this._suspended = false;
    this._setState(CONNECTING, { reason: 'connect called', attempt: 0 });
    this._open();
    return this;
  }

  /** Closes the connection and stops reconnecting; subscriptions are kept (resumed with since
   * by a later connect()); waiting commands fail with code 'closed'. */
  disconnect() {
    this._stop(CLOSE_CLIENT, 'disconnect called');
    return this;
  }

  /**
   * The network went away or the app went to the background: closes the current connection now
   * (close 3003, `disconnected` with `reconnect: true`) and holds reconnecting until resume()
   * (at most `maxReconnectDelay`, in case resume() is never called). Subscriptions resume with
   * `since`; commands wait for the connection within their timeout. No effect when stopped.
   * Called while a reconnect is pending, it only holds it.
   */
  suspend(reason) {
    if (this.state === DISCONNECTED) return this;
    this._suspended = true;
    if (this._conn) this._lost(this._conn, CLOSE_SUSPENDED, reason || 'suspended');
    else if (this._reconnectTimer) this._arm(0);
    return this;
  }

  /**
   * The network or the app is back: ends a suspend() and reconnects at once, skipping the wait
   * of a pending reconnect (the backoff still grows if attempts keep failing). A connected
   * client checks its connection with a ping and, with no answer within `pingMargin`, closes
   * it as dead (3001) and reconnects. No effect when stopped (after disconnect() or a final close).
   */
  resume(reason) {
    this._suspended = false;
    if (this.state === CONNECTING && this._reconnectTimer) {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      this._emit(CONNECTING, { reason: reason || 'resume', attempt: this._attempt, delay: 0 });
      this._open();
    } else if (this.state === CONNECTED && this._conn) {
      const conn = this._conn;
      this.ping({ timeout: this._pingMargin }).catch((e) => {
        if (e.code === 'timeout' && conn === this._conn) this._lost(conn, CLOSE_DEAD, 'no answer to a ping after resume');
      });
    }
    return this;
  }

  _stop(code, reason, fields) {
    if (this._reconnectTimer) clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    const was = this.state;
    if (this._conn) this._closeConn(this._conn, CLOSE_CLIENT, reason, true);
    for (const q of this._queue.splice(0)) q.fail(new CardgwError('closed', 'client disconnected'));
    if (was !== DISCONNECTED) {
      this.state = DISCONNECTED;
      this._emit(DISCONNECTED, Object.assign({ code, reason, reconnect: false }, fields));
    }
  }

  _url() {
    const u = this._urls;
    if (typeof u === 'function') return u(this._attempt);
    if (Array.isArray(u)) return u[this._urlIndex % u.length];
    return u;
  }

  async _open() {
    this._reconnectTimer = null;
    if (this.state !== CONNECTING || this._conn) return;
    const gen = ++this._openGen;
    if (this._getToken && (this._needToken || !this._token || (this._tokenExpiresAt && Date.now() > this._tokenExpiresAt - 1000))) {
      let token;
      try {
        token = await this._getToken();
      } catch (e) {
        if (this.state !== CONNECTING || this._conn || gen !== this._openGen) return;
        this._emitError('token', e);
        return this._schedule({ reconnect: true }, 0, 'getToken failed');
      }
      if (this.state !== CONNECTING || this._conn || gen !== this._openGen) return;
      if (!token) return this._stop(4501, 'getToken returned no token', { kicked: false });
      this._token = token;
      this._needToken = false;
      this._tokenExpiresAt = 0;
    }
    let ws;
    const url = this._url();
    const conn = { ws: null, url, advice: null, open: false, connected: false, lastRecv: 0, lastSent: 0, pingOut: false };
    try {
      ws = this._transport(url, [this._codec.name]);
    } catch (e) {
      this._emitError('transport', e);
      return this._schedule({ reconnect: true }, 1006, 'transport failed');
    }
    conn.ws = ws;
    this._conn = conn;
    conn.timer = setTimeout(() => this._lost(conn, CLOSE_CONNECT_TIMEOUT, 'connect timeout'), this._timeout);
    ws.onopen = () => {
      if (conn !== this._conn) return;
      conn.open = true;
      const f = { token: this._token };
      if (this.options.name) f.client = this.options.name;
      this._send('connect', f, (r) => this._onConnectReply(conn, r));
    };
    ws.onmessage = (ev) => this._onFrame(conn, ev.data);
    ws.onclose = (ev) => this._lost(conn, ev && ev.code ? ev.code : 1006, (ev && ev.reason) || '');
    ws.onerror = () => this._lost(conn, 1006, 'transport error');
  }

  _onConnectReply(conn, reply) {
    if (!reply || conn !== this._conn) return;
    if (reply.error) {
      // the node closes the connection after a failed connect (4501 / 4005 / 4008):
      // the close decides; remember what the error said in case the close code is lost
      conn.connectError = reply.error;
      this._emitError('connect', this._err(reply.error));
      return;
    }
    const r = reply.result || {};
    clearTimeout(conn.timer);
    conn.connected = true;
    this.info = r;
    this._attempt = 0;
    this._badTokens = 0;
    this.stats.connects++;
    if (r.expires_in != null) this._tokenExpiresAt = Date.now() + r.expires_in * 1000;
    this._startHeartbeat(conn, (r.ping || 25) * 1000);
    this._setState(CONNECTED, { client: r.client, uid: r.uid, node: r.node, ping: r.ping, expiresIn: r.expires_in, url: conn.url });
    if (conn !== this._conn) return; // a handler disconnected
    for (const sub of this._subs.values()) this._reconcile(sub);
    for (const q of this._queue.splice(0)) q.send();
  }

  _startHeartbeat(conn, pingMs) {
    conn.pingMs = pingMs;
    const tick = Math.max(50, Math.min(1000, pingMs / 4));
    this._beat = setInterval(() => {
      if (conn !== this._conn) return;
      const now = Date.now();
      if (now - conn.lastRecv > pingMs + this._pingMargin) {
        return this._lost(conn, CLOSE_DEAD, 'nothing received for ' + (now - conn.lastRecv) + ' ms');
      }
      // app-level ping when we have been idle (the node closes a client silent for 3 × ping),
      // or when the server has been silent (its reply proves the connection alive)
      if (!conn.pingOut && (now - conn.lastSent >= pingMs || now - conn.lastRecv >= pingMs)) {
        conn.pingOut = true;
        this._send('ping', {}, () => {
          conn.pingOut = false;
        });
      }
    }, tick);
  }

  _onFrame(conn, data) {
    if (conn !== this._conn) return;
    conn.lastRecv = Date.now();
    let msg;
    try {
      msg = this._codec.decode(data);
    } catch (e) {
      this._emitError('decode', e);
      return this._lost(conn, CLOSE_BAD_FRAME, 'undecodable frame');
    }
    if (!msg || typeof msg !== 'object') return;
    if (typeof msg.push === 'string') return this._onPush(conn, msg);
    const cb = this._pending.get(msg.id);
    if (cb) {
      this._pending.delete(msg.id);
      cb(msg);
    }
  }

  _onPush(conn, m) {
    const sub = m.channel != null ? this._subs.get(m.channel) : null;
    switch (m.push) {
      case 'pub':
        if (sub) sub._onPub(m);
        break;
      case 'join':
      case 'leave':
        if (sub) sub._onPresence(m.push, m);
        break;
      case 'unsub':
        if (sub) sub._onUnsubPush(m.code, m.reason);
        break;
      case 'disconnect':
        conn.advice = { code: m.code, reason: m.reason, reconnect: !!m.reconnect, delay: m.delay_ms || 0, at: Date.now() };
        this._emit('disconnect_advice', { code: m.code, reason: m.reason, reconnect: !!m.reconnect, delayMs: m.delay_ms || 0 });
        break;
      case 'refresh':
        this._refresh(conn, m.expires_in);
        break;
      default: // unknown push kinds are ignored (PROTOCOL.md section 1)
    }
  }

  async _refresh(conn, expiresIn) {
    this._emit('refresh', { expiresIn });
    if (!this._getToken) return this._emitError('refresh', new CardgwError('token', 'refresh push but no getToken option'));
    for (let tries = 0; tries < 5 && conn === this._conn; tries++) {
      let token;
      try {
        token = await this._getToken();
      } catch (e) {
        this._emitError('refresh', e);
        token = null;
      }
      if (conn !== this._conn) return;
      if (token) {
        const reply = await new Promise((res) => this._send('refresh', { token }, res));
        if (!reply || conn !== this._conn) return;
        if (!reply.error) {
          this._token = token;
          this._tokenExpiresAt = 0; // unknown until the next connect reply; getToken on 4005
          this.stats.refreshes++;
          return;
        }
        this._emitError('refresh', this._err(reply.error));
        if (reply.error.code !== 111) {
          this._needToken = true; // the node closes (4501 / 4005)
          return;
        }
      }
      await new Promise((res) => setTimeout(res, 1000 + Math.random() * 2000));
    }
  }

  /** The connection `conn` is gone (closed by the server, the network, or us). */
  _lost(conn, code, reason) {
    if (conn !== this._conn) return;
    this._closeConn(conn, code, reason, false);
    if (this.state === DISCONNECTED) return;
    const adv = conn.advice;
    if (!adv && conn.connectError) {
      const c = conn.connectError.code;
      if (code === 1006 || code === 1005) code = c === 110 ? 4005 : c === 101 ? 4501 : c === 117 ? 4008 : code;
    }
    let pol = closePolicy(code, adv);
    if (pol.badToken) {
      // a bad token: with getToken, fetch a new one and try again, once; else stop
      if (!this._getToken || ++this._badTokens > 1) pol = { reconnect: false };
    }
    if (!pol.reconnect) {
      return this._stop(code, reason, { kicked: code === 4504 || (adv && adv.code === 4504) || false });
    }
    if (pol.newToken) this._needToken = true;
    let delay;
    if (pol.delay === 'jitter') delay = Math.random() * this._minDelay;
    else if (typeof pol.delay === 'number') delay = Math.max(0, pol.delay - (Date.now() - adv.at)) + Math.random() * 100;
    this._schedule(pol, code, reason, delay);
  }

  _schedule(pol, code, reason, delay) {
    if (delay == null) delay = (pol.floor || 0) + this._backoff(this._attempt, pol.floor || this._minDelay);
    if (this._suspended) delay = this._maxDelay;
    this._attempt++;
    if (Array.isArray(this._urls)) this._urlIndex++;
    this._conn = null;
    this.state = CONNECTING;
    this._emit(DISCONNECTED, { code, reason, reconnect: true, delay });
    if (this.state !== CONNECTING) return; // a handler called disconnect()
    this._emit(CONNECTING, { reason, attempt: this._attempt, delay });
    if (this.state !== CONNECTING || this._conn || this._reconnectTimer) return; // a handler reconnected
    this._arm(delay);
  }

  /** (Re)arms the reconnect timer; while suspended it waits maxReconnectDelay (or resume()). */
  _arm(delay) {
    if (this._reconnectTimer) clearTimeout(this._reconnectTimer);
    if (this._suspended) delay = this._maxDelay;
    this._reconnectTimer = setTimeout(() => this._open(), delay);
  }

  /** Full jitter: uniform in [0, min(max, base · 2^attempt)]. */
  _backoff(attempt, base) {
    const cap = Math.min(this._maxDelay, (base || this._minDelay) * Math.pow(2, Math.min(attempt, 16)));
    return Math.random() * cap;
  }

  _closeConn(conn, code, reason, byUs) {
    clearTimeout(conn.timer);
    if (this._beat) clearInterval(this._beat);
    this._beat = null;
    this._conn = null;
    this.stats.disconnects += conn.connected ? 1 : 0;
    const ws = conn.ws;
    if (ws) {
      // no-ops rather than null: some transports (ws) throw on an 'error' without a listener
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = noop;
      try {
        ws.close(code >= 3000 && code <= 4999 ? code : 1000, reason ? String(reason).slice(0, 100) : undefined);
      } catch (e) {
        /* already closed */
      }
    }
    const pending = Array.from(this._pending.values());
    this._pending.clear();
    this.info = null;
    for (const cb of pending) cb(null);
    for (const sub of this._subs.values()) sub._onConnectionLost();
  }

  // ---- commands ----------------------------------------------------------------------------

  _send(cmd, fields, onReply) {
    const conn = this._conn;
    const id = this._nextId;
    this._nextId = id >= MAX_ID ? 1 : id + 1;
    const msg = Object.assign({ id, cmd }, fields);
    this._pending.set(id, onReply);
    try {
      conn.ws.send(this._codec.encode(msg));
      conn.lastSent = Date.now();
      this.stats.commands++;
    } catch (e) {
      this._pending.delete(id);
      this._emitError('send', e);
      onReply(null);
      this._lost(conn, 1006, 'send failed');
    }
    return id;
  }

  _err(e) {
    return new CardgwError(e.code, e.message, e.app_code);
  }

  /**
   * Sends a command once connected (waiting up to `timeout` ms for the connection and the
   * reply). Resolves with the result; rejects with CardgwError: the server's error, or code
   * 'timeout', 'disconnected' (the connection closed before the reply: the command may or may
   * not have taken effect) or 'closed' (disconnect() called).
   */
  _call(cmd, fields, opts) {
    const timeout = opts && opts.timeout != null ? opts.timeout : this._timeout;
    return new Promise((resolve, reject) => {
      if (this.state === DISCONNECTED) return reject(new CardgwError('closed', 'client is disconnected'));
      let done = false;
      let id = 0;
      const q = {
        send: () => {
          id = this._send(cmd, fields, (reply) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            if (!reply) reject(new CardgwError('disconnected', 'connection closed before the reply'));
            else if (reply.error) reject(this._err(reply.error));
            else resolve(reply.result);
          });
        },
        fail: (e) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const i = this._queue.indexOf(q);
        if (i >= 0) this._queue.splice(i, 1);
        if (id) this._pending.delete(id);
        q.fail(new CardgwError('timeout', cmd + ' timed out after ' + timeout + ' ms'));
      }, timeout);
      if (this.state === CONNECTED && this._conn) q.send();
      else this._queue.push(q);
    });
  }

  publish(channel, data, opts) {
    return this._call('publish', { channel, data: data === undefined ? null : data }, opts);
  }

  presence(channel, opts) {
    return this._call('presence', { channel }, opts);
  }

  presenceUsers(channel, opts) {
    return this._call('presence_users', { channel }, opts);
  }

  presenceStats(channel, opts) {
    return this._call('presence_stats', { channel }, opts);
  }

  /** history(channel, {limit, since, timeout}) → {epoch, offset, publications} */
  history(channel, opts) {
    const f = { channel };
    if (opts && opts.limit != null) f.limit = opts.limit;
    if (opts && opts.since) f.since = normPosition(opts.since);
    return this._call('history', f, opts);
  }

  /** rpc(method, data, {timeout}) → the backend's result (the reply's `data`). */
  async rpc(method, data, opts) {
    const r = await this._call('rpc', { method, data: data === undefined ? null : data }, opts);
    return r ? r.data : undefined;
  }

  /** An app-level ping; resolves with the round trip in ms. */
  async ping(opts) {
    const t = Date.now();
    await this._call('ping', {}, opts);
    return Date.now() - t;
  }

  // ---- subscriptions -----------------------------------------------------------------------

  /** The channel's Subscription, created and subscribing (idempotent; see Subscription). */
  subscribe(channel, opts) {
    return this.subscription(channel).subscribe(opts);
  }

  /** Unsubscribes the channel if it has a Subscription (idempotent). */
  unsubscribe(channel) {
    const sub = this._subs.get(channel);
    if (sub) sub.unsubscribe();
    return sub || null;
  }

  /** The channel's Subscription object (created unsubscribed if new). */
  subscription(channel) {
    if (typeof channel !== 'string' || !channel) throw new TypeError('cardgw: channel must be a non-empty string');
    let sub = this._subs.get(channel);
    if (!sub) {
      sub = new Subscription(this, channel);
      this._subs.set(channel, sub);
    }
    return sub;
  }

  getSubscription(channel) {
    return this._subs.get(channel) || null;
  }

  subscriptions() {
    return Array.from(this._subs.values());
  }

  /** Sends what the server lacks for `sub` to match the app's wish (one command in flight). */
  _reconcile(sub) {
    if (this.state !== CONNECTED || !this._conn || sub._inflight || sub._retry) return;
    const want = sub.state !== UNSUBSCRIBED;
    if (sub._wire && (!want || sub._resub)) {
      sub._inflight = true;
      this._send('unsubscribe', { channel: sub.channel }, (reply) => {
        sub._inflight = false;
        if (!reply) return;
        if (reply.error && reply.error.code === 115) {
          // too many commands waiting: try again shortly
          sub._retry = setTimeout(() => {
            sub._retry = null;
            this._reconcile(sub);
          }, 200);
          return;
        }
        sub._wire = false;
        this._reconcile(sub);
      });
    } else if (!sub._wire && want) {
      const since = sub._since;
      const f = { channel: sub.channel };
      if (since) f.since = since;
      sub._inflight = true;
      sub._wire = true;
      sub._resub = false;
      this._send('subscribe', f, (reply) => sub._onSubscribeReply(reply, since));
    }
  }
}

export { Subscription, SUBSCRIBED, UNSUBSCRIBED };

withListeners(Client); // on / once / off: the app's listeners
