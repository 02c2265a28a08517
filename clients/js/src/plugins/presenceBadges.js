// presenceBadges: keeps, per presence channel, the set of uids online now (with their
// conn_info and connection count), from a presence_users query at each (re)subscribe plus the
// join/leave pushes. Events stay visible to the app (nothing is consumed).
//
//   const badges = presenceBadges({ channels: (ch) => ch.startsWith('group:') });
//   client.use(badges, { priority: 20 });
//   badges.online('group:g1')   // Map uid -> {connections, info}
//   badges.isOnline('group:g1', 'bob')

export function presenceBadges(opts) {
  const wants = (opts && opts.channels) || (() => true);
  const onChange = (opts && opts.onChange) || null;
  const byChannel = new Map(); // channel -> Map(uid -> {connections, info, clients:Set})
  const gen = new Map(); // channel -> generation of the latest query (late replies are dropped)

  const changed = (channel) => onChange && onChange(channel, byChannel.get(channel));

  function load(channel, sub, client) {
    const g = (gen.get(channel) || 0) + 1;
    gen.set(channel, g);
    client.presenceUsers(channel).then(
      (r) => {
        if (gen.get(channel) !== g || sub.state !== 'subscribed') return;
        const m = new Map();
        for (const u of r.users || []) m.set(u.uid, { connections: u.connections, info: u.conn_info, clients: new Set() });
        byChannel.set(channel, m);
        changed(channel);
      },
      () => {} // unsubscribed meanwhile, or a presence-less namespace (103): no badges
    );
  }

  return {
    name: 'presenceBadges',
    subscribed(ev, client) {
      if (!wants(ev.channel)) return;
      byChannel.set(ev.channel, byChannel.get(ev.channel) || new Map());
      load(ev.channel, ev.subscription, client);
    },
    join(ev) {
      const m = byChannel.get(ev.channel);
      if (!m || !ev.info) return;
      const u = m.get(ev.info.uid) || { connections: 0, info: ev.info.conn_info, clients: new Set() };
      if (!u.clients.has(ev.info.client)) {
        u.clients.add(ev.info.client);
        u.connections++;
      }
      if (ev.info.conn_info !== undefined) u.info = ev.info.conn_info;
      m.set(ev.info.uid, u);
      changed(ev.channel);
    },
    leave(ev) {
      const m = byChannel.get(ev.channel);
      const u = m && ev.info && m.get(ev.info.uid);
      if (!u) return;
      u.clients.delete(ev.info.client);
      if (--u.connections <= 0) m.delete(ev.info.uid);
      changed(ev.channel);
    },
    unsubscribed(ev) {
      byChannel.delete(ev.channel);
      gen.set(ev.channel, (gen.get(ev.channel) || 0) + 1);
      changed(ev.channel);
    },
    /** Map uid -> {connections, info} of the channel (empty when unknown). */
    online(channel) {
      return byChannel.get(channel) || new Map();
    },
    isOnline(channel, uid) {
      const m = byChannel.get(channel);
      return !!(m && m.has(uid));
    },
  };
}
