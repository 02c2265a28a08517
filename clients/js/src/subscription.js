// One channel's subscription: a state machine (unsubscribed → subscribing → subscribed) that
// tracks the channel's position (epoch, offset), drops duplicates, detects gaps and resumes with
// `since` (PROTOCOL.md section 6). The wire work is done by Client._reconcile: at most one
// subscribe/unsubscribe command of a channel is in flight, and when its reply comes the client
// compares what the app wants now with what the server holds and sends what is missing, so any
// sequence of subscribe()/unsubscribe() calls ends in the state of the last call and costs at
// most one command per round trip.
import { Emitter, makeEvent, withListeners } from './hooks.js';

export const UNSUBSCRIBED = 'unsubscribed';
export const SUBSCRIBING = 'subscribing';
export const SUBSCRIBED = 'subscribed';

export function normPosition(p) {
  if (!p || typeof p.offset !== 'number' || p.offset < 0) throw new TypeError('since must be {epoch, offset}');
  return { epoch: String(p.epoch == null ? '' : p.epoch), offset: p.offset };
}

export class Subscription {
  constructor(client, channel) {
    this.client = client;
    this.channel = channel;
    this.state = UNSUBSCRIBED;
    this._pos = null; // {epoch, offset}: the last publication applied (or the reply's position)
    this._since = null; // the position the next subscribe command carries
    this._wire = false; // the server may hold this subscription on the current connection
    this._inflight = false; // a subscribe/unsubscribe of this channel awaits its reply
    this._resub = false; // drop the server's subscription and subscribe again with since
    this._retry = null; // timer of a retried subscribe (error 100/111/115)
    this._retries = 0;
    this._em = new Emitter();
  }

  /** The last applied position {epoch, offset}, or null before the first subscribe reply. */
  get position() {
    return this._pos ? { epoch: this._pos.epoch, offset: this._pos.offset } : null;
  }

  /** Wants the channel subscribed (idempotent). opts.since: resume after this position (the
   * snapshot join); given while already subscribed, the subscription is renewed from there. */
  subscribe(opts) {
    const since = opts && opts.since ? normPosition(opts.since) : null;
    if (since) this._since = since;
    if (this.state === UNSUBSCRIBED) {
      this._setState(SUBSCRIBING, { reason: 'subscribe' });
    } else if (since) {
      this._resub = true;
      if (this.state === SUBSCRIBED) this._setState(SUBSCRIBING, { reason: 'since' });
    }
    this.client._reconcile(this);
    return this;
  }

  /** Wants the channel unsubscribed (idempotent). From now on nothing of the channel reaches
   * the app until subscribe() is called again; a late subscribe reply is ignored. */
  unsubscribe() {
    if (this.state === UNSUBSCRIBED) return this;
    this._since = null;
    this._resub = false;
    this._clearRetry();
    this._setState(UNSUBSCRIBED, { code: 0, reason: 'unsubscribe called' });
    this.client._reconcile(this);
    return this;
  }

  publish(data, opts) {
    return this.client.publish(this.channel, data, opts);
  }

  presence(opts) {
    return this.client.presence(this.channel, opts);
  }

  presenceUsers(opts) {
    return this.client.presenceUsers(this.channel, opts);
  }

  presenceStats(opts) {
    return this.client.presenceStats(this.channel, opts);
  }

  history(opts) {
    return this.client.history(this.channel, opts);
  }

  // ---- internal ----------------------------------------------------------------------------

  _clearRetry() {
    if (this._retry) clearTimeout(this._retry);
    this._retry = null;
  }

  /** Emits a channel event: plugins by priority, then sub listeners, then client listeners. */
  _emit(type, fields) {
    const ev = makeEvent(type, Object.assign({ channel: this.channel, subscription: this }, fields));
    if (!this.client._hooks.run(ev)) return ev;
    this._em.emit(type, ev);
    this.client._em.emit(type, ev);
    return ev;
  }

  _setState(state, fields) {
    if (this.state === state) return;
    this.state = state;
    this._emit(state, fields);
  }

  /** The connection closed: the server holds nothing any more; resume with since later. */
  _onConnectionLost() {
    this._wire = false;
    this._inflight = false;
    this._clearRetry();
    if (this.state === SUBSCRIBED) {
      this._since = this.position;
      this._setState(SUBSCRIBING, { reason: 'disconnected' });
    } else if (this.state === SUBSCRIBING && this._resub) {
      this._resub = false; // the new connection holds no subscription to drop
    }
  }

  _deliver(p, epoch, recovered) {
    this._emit('publication', {
      offset: p.offset,
      epoch,
      data: p.data,
      from: p.from,
      recovered,
    });
  }

  /** Applies one publication in order; returns false when it opened a gap (resubscribing). */
  _apply(p, epoch, recovered) {
    const pos = this._pos;
    if (p.offset <= pos.offset) {
      this.client.stats.duplicates++;
      return true;
    }
    if (p.offset !== pos.offset + 1) {
      this._gap(pos.offset + 1, p.offset);
      return false;
    }
    pos.offset = p.offset;
    this._deliver(p, epoch, recovered);
    return true;
  }

  _gap(expected, got) {
    this.client.stats.gaps++;
    this._since = this.position;
    this._resub = true;
    this._emit('gap', { expected, got, position: this.position });
    if (this.state === SUBSCRIBED) this._setState(SUBSCRIBING, { reason: 'gap' });
    this.client._reconcile(this);
  }

  _onPub(msg) {
    // nothing reaches the app unless subscribed (late pushes after unsubscribe() are dropped;
    // while resubscribing, the subscribe reply's publications cover what these would)
    if (this.state !== SUBSCRIBED || !this._pos) return;
    this._apply(msg, this._pos.epoch, false);
  }

  _onPresence(type, msg) {
    if (this.state !== SUBSCRIBED) return;
    this._emit(type, { info: msg.info });
  }

  _onUnsubPush(code, reason) {
    this._wire = false;
    if (this.state === UNSUBSCRIBED) return;
    if (code === 116) {
      // the node lost track of the channel: subscribe again at once with since
      if (this._pos) this._since = this.position;
      this._resub = false;
      if (this.state === SUBSCRIBED) this._setState(SUBSCRIBING, { reason: 'insufficient state' });
      this.client._reconcile(this);
      return;
    }
    // 103 (permission lost) and anything else: unsubscribed for good
    this._since = null;
    this._resub = false;
    this._clearRetry();
    this._setState(UNSUBSCRIBED, { code, reason });
  }

  _onSubscribeReply(reply, sentSince) {
    this._inflight = false;
    if (!reply) return; // the connection closed; resumed on the next one
    const client = this.client;
    if (reply.error) {
      const code = reply.error.code;
      this._wire = false;
      if (this.state === UNSUBSCRIBED) return client._reconcile(this);
      if (code === 105) {
        // already subscribed: the server holds a subscription we lost track of; renew it
        this._wire = true;
        this._resub = true;
        if (this._pos && !this._since) this._since = this.position;
        return client._reconcile(this);
      }
      if (code === 100 || code === 111 || code === 115) {
        const delay = client._backoff(this._retries++, 1000);
        this._emit('error', { error: client._err(reply.error), retryIn: delay });
        this._retry = setTimeout(() => {
          this._retry = null;
          client._reconcile(this);
        }, delay);
        return;
      }
      const err = client._err(reply.error);
      this._emit('error', { error: err });
      this._since = null;
      this._setState(UNSUBSCRIBED, { code, reason: reply.error.message || '' });
      return;
    }
    if (this.state === UNSUBSCRIBED || this._resub) return client._reconcile(this); // late reply
    const r = reply.result || {};
    const epoch = String(r.epoch == null ? '' : r.epoch);
    const top = r.offset || 0;
    this._retries = 0;
    this._since = null;
    if (sentSince && r.recovered) {
      this._pos = { epoch, offset: sentSince.offset };
      this._setState(SUBSCRIBED, { epoch, offset: top, recovered: true, resumed: true });
      for (const p of r.publications || []) {
        if (this.state !== SUBSCRIBED) return; // a handler unsubscribed, or a gap
        if (!this._apply(p, epoch, true)) return;
      }
      if (this.state === SUBSCRIBED && this._pos.offset < top) this._gap(this._pos.offset + 1, top);
    } else if (sentSince) {
      const previous = sentSince;
      this._pos = { epoch, offset: top };
      client.stats.recoveredFalse++;
      this._setState(SUBSCRIBED, { epoch, offset: top, recovered: false, resumed: true });
      if (this.state === SUBSCRIBED) this._emit('recovered_false', { epoch, offset: top, previous });
    } else {
      this._pos = { epoch, offset: top };
      this._setState(SUBSCRIBED, { epoch, offset: top, resumed: false });
    }
  }
}

withListeners(Subscription); // on / once / off: the app's listeners
