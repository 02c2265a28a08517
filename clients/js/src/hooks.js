// Ordered extension points: every lifecycle event goes through the plugins' handlers in
// ascending `priority` (ties: registration order), then to the app's listeners (sub.on, then
// client.on) unless a handler consumed it.

export const DEFAULT_PRIORITY = 100;

/** An event object: its fields plus `type`, `stopped` and `stop()` (consume). */
export function makeEvent(type, fields) {
  const ev = Object.assign({ type, stopped: false }, fields);
  ev.stop = () => {
    ev.stopped = true;
  };
  return ev;
}

export class Hooks {
  constructor(onError) {
    this._by = Object.create(null); // event -> sorted [{fn, priority, seq}]
    this._seq = 0;
    this._onError = onError;
  }

  /** Adds one handler; returns a function that removes it. */
  add(event, fn, priority) {
    const p = typeof priority === 'number' && !Number.isNaN(priority) ? priority : DEFAULT_PRIORITY;
    const list = this._by[event] || (this._by[event] = []);
    const h = { fn, priority: p, seq: this._seq++ };
    list.push(h);
    list.sort((a, b) => a.priority - b.priority || a.seq - b.seq);
    return () => {
      const i = list.indexOf(h);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /** Runs the handlers of ev.type in order; false when one consumed the event (ev.stop() or
   * returned false): the later handlers and the app do not see it. */
  run(ev) {
    const list = this._by[ev.type];
    if (!list) return !ev.stopped;
    for (const h of list.slice()) {
      let r;
      try {
        r = h.fn(ev);
      } catch (e) {
        if (this._onError) this._onError(e, ev);
      }
      if (r === false) ev.stopped = true;
      if (ev.stopped) return false;
    }
    return true;
  }
}

/** Gives cls (whose instances keep an Emitter in this._em) the app-facing on/once/off. */
export function withListeners(cls) {
  cls.prototype.on = function on(event, fn) {
    return this._em.on(event, fn);
  };
  cls.prototype.once = function once(event, fn) {
    return this._em.once(event, fn);
  };
  cls.prototype.off = function off(event, fn) {
    this._em.off(event, fn);
  };
  return cls;
}

/** A plain emitter for the app's listeners (registration order). */
export class Emitter {
  constructor() {
    this._l = Object.create(null);
  }

  on(event, fn) {
    (this._l[event] || (this._l[event] = [])).push(fn);
    return () => this.off(event, fn);
  }

  once(event, fn) {
    const off = this.on(event, (ev) => {
      off();
      fn(ev);
    });
    return off;
  }

  off(event, fn) {
    const list = this._l[event];
    if (!list) return;
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  }

  emit(event, ev) {
    const list = this._l[event];
    if (!list) return;
    for (const fn of list.slice()) {
      try {
        fn(ev);
      } catch (e) {
        // an app listener's exception must not break the client; surface it asynchronously
        setTimeout(() => {
          throw e;
        }, 0);
      }
    }
  }
}
