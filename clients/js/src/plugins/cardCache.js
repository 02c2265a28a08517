// cardCache: keeps uid -> card per group channel from the card-exchange events of
// PROTOCOL.md section 14 (`member_joined` / `card_updated` set the card, `member_left` removes
// it). Seed it with the REST snapshot (`load`), subscribe with since = the snapshot's position;
// on `recovered_false` the cache is marked stale and `onStale` is called so the app reloads the
// snapshot. With `consume: true` the directory events are consumed (the app's publication
// listeners do not see them; read the cache instead).
//
//   const cards = cardCache({ onStale: (ch) => reload(ch) });
//   client.use(cards, { priority: 10 });
//   cards.load('group:g1', snapshot.members /* [{uid, card}] */);
//   client.subscribe('group:g1', { since: snapshot.position });

const EVENTS = { member_joined: 1, card_updated: 1, member_left: 1 };

export function cardCache(opts) {
  const consume = !!(opts && opts.consume);
  const onStale = (opts && opts.onStale) || null;
  const onChange = (opts && opts.onChange) || null;
  const cards = new Map(); // channel -> Map(uid -> card)
  const stale = new Set();

  const table = (ch) => {
    let m = cards.get(ch);
    if (!m) cards.set(ch, (m = new Map()));
    return m;
  };

  return {
    name: 'cardCache',
    publication(ev) {
      const d = ev.data;
      if (!d || typeof d !== 'object' || !EVENTS[d.event] || typeof d.uid !== 'string') return;
      const m = table(ev.channel);
      if (d.event === 'member_left') m.delete(d.uid);
      else m.set(d.uid, d.card === undefined ? m.get(d.uid) || null : d.card);
      if (onChange) onChange(ev.channel, d.uid, m.get(d.uid));
      if (consume) ev.stop();
    },
    recovered_false(ev) {
      stale.add(ev.channel);
      if (onStale) onStale(ev.channel, ev);
    },
    /** Replaces the channel's cards with a snapshot: [{uid, card}] or a Map/object uid -> card. */
    load(channel, members) {
      const m = new Map();
      if (Array.isArray(members)) for (const x of members) m.set(x.uid, x.card);
      else if (members instanceof Map) for (const [k, v] of members) m.set(k, v);
      else if (members) for (const k of Object.keys(members)) m.set(k, members[k]);
      cards.set(channel, m);
      stale.delete(channel);
    },
    get(channel, uid) {
      const m = cards.get(channel);
      return m ? m.get(uid) : undefined;
    },
    cards(channel) {
      return cards.get(channel) || new Map();
    },
    isStale(channel) {
      return stale.has(channel);
    },
  };
}
