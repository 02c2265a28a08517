// app.js — the demo page's logic on the cardgw JavaScript client (./sdk, clients/js/src): the
// directory is the cardCache plugin (cards from the REST snapshot + group events) and the
// presenceBadges plugin (online badges), exchanges are rpc calls the reference backend answers.
import { Client } from './sdk/index.js';
import { cardCache } from './sdk/plugins/cardCache.js';
import { presenceBadges } from './sdk/plugins/presenceBadges.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const BACKEND = params.get('backend') || `${location.protocol}//${location.hostname}:8000`;
const S = { token: null, uid: null, gid: null, client: null, inbox: new Map() };
window.demo = S; // for the browser test and the curious

const log = (...a) => {
  $('log').textContent += a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' ') + '\n';
  $('log').scrollTop = 1e9;
};

async function rest(method, path, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (S.token) headers.Authorization = `Bearer ${S.token}`;
  const r = await fetch(BACKEND + path, { method, headers, body: body && JSON.stringify(body) });
  const j = await r.json();
  if (!r.ok) throw new Error(`${path}: ${j.error || r.status}`);
  return j;
}

const groupCh = () => `group:${S.gid}`;
const cards = cardCache({ onChange: () => render(), onStale: () => reload() });
const badges = presenceBadges({ channels: (ch) => ch.startsWith('group:'), onChange: () => render() });

function render() {
  if (!S.gid) return;
  $('gname').textContent = groupCh();
  const ul = $('dir');
  ul.innerHTML = '';
  const entries = [...cards.cards(groupCh())].sort(([a], [b]) => (a < b ? -1 : 1));
  for (const [uid, card] of entries) {
    const li = document.createElement('li');
    li.dataset.uid = uid;
    const on = badges.isOnline(groupCh(), uid);
    li.dataset.online = on ? 'yes' : 'no';
    li.innerHTML = `<b class="${on ? 'on' : 'off'}">●</b> <span class="name"></span> — <span class="title"></span> <small>(${uid})</small> `;
    li.querySelector('.name').textContent = (card && card.name) || uid;
    li.querySelector('.title').textContent = (card && card.title) || '';
    if (uid !== S.uid) {
      const b = document.createElement('button');
      b.textContent = 'send my card';
      b.className = 'send';
      b.onclick = async () => {
        try {
          log('card.request', uid, '→', await S.client.rpc('card.request', { to: uid }));
        } catch (e) {
          log('card.request failed:', e.code, e.appCode || '', e.message);
        }
      };
      li.appendChild(b);
    }
    ul.appendChild(li);
  }
}

async function contacts() {
  const c = await rest('GET', '/contacts');
  $('contacts').innerHTML = '';
  for (const x of c.contacts) {
    const li = document.createElement('li');
    li.dataset.uid = x.uid;
    li.textContent = `${x.card.name} — ${x.card.title || ''} (${x.uid}, exchange ${x.exchange})`;
    $('contacts').appendChild(li);
  }
}

function showReceived(d) {
  if (S.inbox.has(d.exchange)) return;
  const li = document.createElement('li');
  li.dataset.exchange = d.exchange;
  li.dataset.from = d.from;
  if (d.status === 'accepted') { // the answer to a card we sent: nothing to accept
    li.textContent = `${d.card.name} (${d.from}) accepted: you have their card`;
    S.inbox.set(d.exchange, li);
    $('inbox').appendChild(li);
    return;
  }
  li.textContent = `${d.card.name} (${d.from}) sent you a card `;
  const b = document.createElement('button');
  b.textContent = 'accept';
  b.className = 'accept';
  b.onclick = async () => {
    try {
      log('card.accept →', await S.client.rpc('card.accept', { exchange: d.exchange }));
      b.remove();
    } catch (e) {
      log('card.accept failed:', e.code, e.message);
    }
  };
  li.appendChild(b);
  S.inbox.set(d.exchange, li);
  $('inbox').appendChild(li);
}

async function reload() { // recovered_false: the directory's history is gone, read it again
  const snap = await rest('GET', `/groups/${S.gid}/directory`);
  cards.load(groupCh(), snap.members);
  S.client.subscribe(groupCh(), { since: snap.position });
  render();
}

async function start() {
  S.uid = $('uid').value;
  S.gid = $('gid').value;
  const res = await rest('POST', '/login', { uid: S.uid, card: { name: $('name').value, title: $('title').value } });
  S.token = res.token;
  await rest('POST', `/groups/${S.gid}/join`);
  const cfg = await rest('GET', '/config');
  const here = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  const urls = [here, ...cfg.ws.filter((u) => u !== here)];
  const snap = await rest('GET', `/groups/${S.gid}/directory`);
  const client = new Client({ url: urls, token: S.token, getToken: async () => S.token, name: 'demo-page' });
  S.client = client;
  client.use(cards, { priority: 10 });
  client.use(badges, { priority: 20 });
  cards.load(groupCh(), snap.members);
  client.on('connected', (ev) => {
    $('status').textContent = `connected to ${ev.node}`;
    $('status').dataset.state = 'connected';
    contacts();
  });
  client.on('disconnected', (ev) => {
    $('status').textContent = `disconnected (${ev.code}${ev.reconnect ? ', reconnecting' : ''})`;
    $('status').dataset.state = 'disconnected';
  });
  client.subscribe(groupCh(), { since: snap.position });
  client.subscribe(`user:${S.uid}`).on('publication', (ev) => {
    log('user event', ev.data);
    if (ev.data.event === 'card.received') {
      if (ev.data.from && !cards.get(groupCh(), ev.data.from)) render();
      showReceived(ev.data);
      contacts();
    } else if (ev.data.event === 'card.accepted') {
      contacts();
    }
  });
  client.connect();
  render();
}

$('go').onclick = () => start().catch((e) => log('error:', e.message));
