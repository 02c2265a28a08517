// The demo page (examples/demo, on this client) in real headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core; nothing downloads a browser), served by a real
// node (static_root) beside the reference backend (examples/backend/backend.py): two pages log in
// as two users, see each other online with their cards, exchange cards; the node is restarted
// and both pages reconnect and catch up without a reload. Screenshots: build/test-logs/browser-*.png
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { setup, freePort, waitFor, waitPortClosed, ROOT, API_KEY, JWT_SECRET } from './harness.js';

const CHROMIUM = process.env.CARDGW_CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(ROOT, 'build', 'test-logs');

function staticRoot() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardgw-demo-'));
  fs.cpSync(path.join(ROOT, 'examples', 'demo'), dir, { recursive: true });
  fs.cpSync(path.join(ROOT, 'clients', 'js', 'src'), path.join(dir, 'sdk'), { recursive: true });
  return dir;
}

async function startBackend(t, node) {
  const port = await freePort();
  const proc = spawn('/usr/bin/python3', [path.join(ROOT, 'examples', 'backend', 'backend.py'),
    '--port', String(port), '--redis', node.redisUrl, '--gateway', `http://127.0.0.1:${node.port}`,
    '--api-key', API_KEY, '--jwt-secret', JWT_SECRET, '--ws', node.wsUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (b) => (out += b));
  proc.stderr.on('data', (b) => (out += b));
  t.after(async () => {
    proc.kill('SIGTERM');
    if (proc.exitCode === null) await new Promise((r) => proc.once('exit', r));
    await waitPortClosed(port);
  });
  const ok = await waitFor(async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
    } catch {
      return proc.exitCode !== null ? 'exited' : false;
    }
  }, 15000, 50);
  assert.equal(ok, true, `backend did not start:\n${out}`);
  return { port, url: `http://127.0.0.1:${port}` };
}

test('two users in the demo page: online badges, cards, exchange, node restart', { timeout: 120000 }, async (t) => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (scripts/install-deps.sh installs chromium)`);
  const root = staticRoot();
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const env = await setup(t, { nodes: 0 });
  const node = await env.node({ static_root: root, rpc_reply_methods: 'card.request,card.accept' });
  const backend = await startBackend(t, node);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());
  fs.mkdirSync(SHOTS, { recursive: true });
  const errors = [];
  const open = async (uid, name, title) => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on('pageerror', (e) => errors.push(`${uid}: ${e.message}`));
    await page.goto(`http://127.0.0.1:${node.port}/?backend=${encodeURIComponent(backend.url)}`);
    await page.fill('#uid', uid);
    await page.fill('#name', name);
    await page.fill('#title', title);
    await page.fill('#gid', 'g1');
    await page.click('#go');
    await page.waitForSelector('#status[data-state="connected"]');
    return page;
  };
  const alice = await open('alice', 'Alice', 'CTO');
  const bob = await open('bob', 'Bob', 'Sales');

  // each sees the other, online, with the card
  await alice.waitForSelector('#dir li[data-uid="bob"][data-online="yes"]');
  await bob.waitForSelector('#dir li[data-uid="alice"][data-online="yes"]');
  assert.equal(await alice.textContent('#dir li[data-uid="bob"] .title'), 'Sales');
  await alice.screenshot({ path: path.join(SHOTS, 'browser-1-directory.png') });

  // alice sends her card; bob accepts; both hold each other's card
  await alice.click('#dir li[data-uid="bob"] button.send');
  await bob.waitForSelector('#inbox li[data-from="alice"] button.accept');
  await bob.click('#inbox li[data-from="alice"] button.accept');
  await alice.waitForSelector('#contacts li[data-uid="bob"]');
  await bob.waitForSelector('#contacts li[data-uid="alice"]');
  await bob.screenshot({ path: path.join(SHOTS, 'browser-2-exchanged.png') });

  // the node restarts under both pages: they reconnect by themselves (no reload) and catch up
  const before = await alice.evaluate(() => window.demo.client.stats.connects);
  await node.restart();
  for (const p of [alice, bob]) {
    await p.waitForFunction((n) => window.demo.client.stats.connects > n && window.demo.client.state === 'connected', before, { timeout: 30000 });
  }
  const bobToken = await bob.evaluate(() => window.demo.token);
  const r = await fetch(`${backend.url}/card`, {
    method: 'PUT', headers: { Authorization: `Bearer ${bobToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ card: { name: 'Bob', title: 'VP Sales' } }),
  });
  assert.equal(r.status, 200);
  await alice.waitForFunction(() => document.querySelector('#dir li[data-uid="bob"] .title')?.textContent === 'VP Sales');
  await alice.waitForSelector('#dir li[data-uid="bob"][data-online="yes"]');
  await alice.screenshot({ path: path.join(SHOTS, 'browser-3-after-restart.png') });
  assert.deepEqual(errors, []);
});
