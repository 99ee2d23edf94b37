// End-to-end test of the browser simulator: the real `terminus demo`
// binary serves the page at /simulator; headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) runs it.
//
// The page comes from the copy compiled into the binary: the gateway runs
// from a copy of the binary in an empty temporary directory, without
// TERMINUS_SIMULATOR_DIR, and every served file must equal the committed
// one in wasm/www (scripts/ci.d/70-browser.sh builds the binary without
// wasm-bindgen on the PATH).
//
//   0. the served files are the committed wasm/www, byte for byte;
//   1. offline: 1,000 simulated clients with every fault end with 0
//      invariant violations and 0 live operations;
//   2. live: 50 browser WebSockets subscribe through the gateway, are
//      dropped abruptly, and the gateway's terminus_operations returns to 0.
//
// Environment (all optional):
//   TERMINUS_BIN          the gateway binary (default <repo>/target/debug/terminus)
//   CHROMIUM              the browser (default /usr/bin/chromium)
//   SIM_OFFLINE_TIMEOUT_MS bound on the offline run (default 300000)
//   SIM_LIVE_TIMEOUT_MS   bound on each live phase (default 30000)
//   GATEWAY_START_TIMEOUT_MS bound on the gateway's start (default 30000)
// Screenshots go to tests/browser/out/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const out = path.join(here, 'out');
const bin = process.env.TERMINUS_BIN || path.join(repo, 'target', 'debug', 'terminus');
const browserPath = process.env.CHROMIUM || '/usr/bin/chromium';
const bound = (name, fallback) => Number(process.env[name] || fallback);
const OFFLINE_TIMEOUT_MS = bound('SIM_OFFLINE_TIMEOUT_MS', 300_000);
const LIVE_TIMEOUT_MS = bound('SIM_LIVE_TIMEOUT_MS', 30_000);
const START_TIMEOUT_MS = bound('GATEWAY_START_TIMEOUT_MS', 30_000);

let gateway;
let gatewayDir;
let gatewayLog = '';
let base;
let browser;
let page;
const pageErrors = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value or `ms` pass. */
async function eventually(what, ms, check) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) {
      return last;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}\ngateway log tail:\n${gatewayLog.slice(-3000)}`);
}

/** The gateway's value of `name` from /metrics (summed over labels). */
async function metric(name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = null;
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m && m[1] === name) {
      sum = (sum ?? 0) + Number(m[3]);
    }
  }
  if (sum === null) {
    throw new Error(`/metrics has no ${name}:\n${text}`);
  }
  return sum;
}

async function counter(id) {
  return (await page.textContent(`#c-${id}`)).trim();
}

async function fill(fields) {
  for (const [id, value] of Object.entries(fields)) {
    await page.fill(`#${id}`, String(value));
  }
}

before(async () => {
  assert.ok(existsSync(bin), `the gateway binary ${bin} is missing: cargo build -p terminus`);
  mkdirSync(out, { recursive: true });
  // Nothing of the repository next to or above the binary, nor in its
  // working directory: the page can only come from the binary itself.
  gatewayDir = mkdtempSync(path.join(os.tmpdir(), 'terminus-browser-'));
  const gatewayBin = path.join(gatewayDir, 'terminus');
  copyFileSync(bin, gatewayBin);
  const env = { ...process.env };
  delete env.TERMINUS_SIMULATOR_DIR;
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  gateway = spawn(gatewayBin, ['demo', '--listen', `127.0.0.1:${port}`], {
    cwd: gatewayDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  gateway.stdout.on('data', (d) => (gatewayLog += d));
  gateway.stderr.on('data', (d) => (gatewayLog += d));
  await eventually('the gateway to answer /healthz', START_TIMEOUT_MS, async () => {
    if (gateway.exitCode !== null) {
      throw new Error(`terminus demo exited with ${gateway.exitCode}:\n${gatewayLog}`);
    }
    try {
      return (await fetch(`${base}/healthz`)).ok;
    } catch {
      return false;
    }
  });
  browser = await chromium.launch({
    executablePath: browserPath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') {
      pageErrors.push(m.text());
    }
  });
  await page.goto(`${base}/simulator`);
  await page.waitForFunction(() => window.terminusSimulator && window.terminusSimulator.ready, null, {
    timeout: START_TIMEOUT_MS,
  });
});

after(async () => {
  if (browser) {
    await browser.close();
  }
  if (gateway && gateway.exitCode === null) {
    const exited = new Promise((r) => gateway.once('exit', r));
    gateway.kill('SIGTERM');
    await Promise.race([exited, sleep(10_000)]);
    if (gateway.exitCode === null) {
      gateway.kill('SIGKILL');
    }
  }
  if (gatewayDir) {
    rmSync(gatewayDir, { recursive: true, force: true });
  }
});

test('the binary serves the committed page, byte for byte', async () => {
  const www = path.join(repo, 'wasm', 'www');
  const files = ['index.html', 'app.js', 'style.css', 'pkg/terminus_wasm.js', 'pkg/terminus_wasm_bg.wasm'];
  for (const file of files) {
    const response = await fetch(`${base}/simulator/${file}`);
    assert.equal(response.status, 200, file);
    const served = Buffer.from(await response.arrayBuffer());
    assert.ok(served.equals(readFileSync(path.join(www, file))), `${file} differs from wasm/www/${file}`);
  }
  const wasm = await fetch(`${base}/simulator/pkg/terminus_wasm_bg.wasm`);
  assert.equal(wasm.headers.get('content-type'), 'application/wasm');
});

test('/admin links to the simulator', async () => {
  const admin = await (await fetch(`${base}/admin`)).text();
  assert.match(admin, /href="\/simulator\/?"/);
});

test('offline: 1,000 clients with faults end with 0 violations and 0 live operations', async () => {
  await fill({
    'o-seed': 7,
    'o-clients': 1000,
    'o-durationMs': 30000,
    'o-abruptDisconnect': 0.1,
    'o-lostPong': 0.05,
    'o-slowReader': 0.05,
    'o-upstreamError': 0.1,
    'o-duplicateId': 0.05,
    'o-malformedFrame': 0.05,
    'o-rejectAuth': 0.02,
    'o-stepsPerFrame': 500,
    'log-client': 3,
  });
  await page.dispatchEvent('#log-client', 'change');
  await page.click('#o-start');
  await page.waitForFunction(() => window.terminusSimulator.settled, null, { timeout: OFFLINE_TIMEOUT_MS });
  // Operations were live along the way, and the chart saw them.
  const peak = await page.evaluate(() => window.terminusSimulator.peakLive);
  assert.ok(peak > 100, `peak live operations ${peak}`);
  const findings = await page.evaluate(() => window.terminusSimulator.findings);
  assert.deepEqual(findings, []);
  assert.equal(await counter('violations'), '0');
  assert.equal(await counter('liveOperations'), '0');
  assert.equal(await counter('clients'), '0 / 1000');
  const c = await page.evaluate(() => window.terminusSimulator.counters);
  assert.ok(c.started > 1000, `started ${c.started}`);
  assert.ok(c.faults > 100, `faults ${c.faults}`);
  assert.ok(c.completed > 0 && c.errored > 0 && c.cancelled > 0, JSON.stringify(c));
  assert.equal(c.started, c.completed + c.errored + c.cancelled, JSON.stringify(c));
  assert.match(await page.textContent('#status'), /0 invariant violations/);
  const logRows = await page.locator('#log li').count();
  assert.ok(logRows > 2, `log rows ${logRows}`);
  await page.screenshot({ path: path.join(out, 'offline.png'), fullPage: true });
  assert.deepEqual(pageErrors, []);
});

test('live: 50 browser clients dropped abruptly leave 0 operations on the gateway', async () => {
  await page.click('#mode-live');
  assert.equal(await page.inputValue('#l-url'), `${base.replace('http', 'ws')}/graphql`);
  await fill({ 'l-clients': 50, 'l-subscriptionsPerClient': 1, 'l-tickEveryMs': 200, 'log-client': 0 });
  await page.dispatchEvent('#log-client', 'change');
  assert.equal(await metric('terminus_operations'), 0);
  await page.click('#l-start');
  // Every client acknowledged, each with its endless ticks subscription
  // running on the gateway (the hello query completes by itself).
  await page.waitForFunction(
    () => {
      const c = window.terminusSimulator.counters;
      return c && c.readyClients === 50 && c.liveOperations === 50 && c.results >= 100;
    },
    null,
    { timeout: LIVE_TIMEOUT_MS },
  );
  const running = await eventually('50 operations on the gateway', LIVE_TIMEOUT_MS, async () => {
    const n = await metric('terminus_operations');
    return n >= 50 ? n : false;
  });
  assert.equal(running, 50);
  await page.screenshot({ path: path.join(out, 'live-running.png'), fullPage: true });
  await page.click('#l-drop');
  await eventually('terminus_operations back to 0', LIVE_TIMEOUT_MS, async () => (await metric('terminus_operations')) === 0);
  await page.waitForFunction(() => window.terminusSimulator.counters?.openClients === 0, null, {
    timeout: LIVE_TIMEOUT_MS,
  });
  const c = await page.evaluate(() => window.terminusSimulator.counters);
  assert.equal(c.violations, 0, JSON.stringify(c));
  assert.equal(c.liveOperations, 0, JSON.stringify(c));
  assert.equal(c.completed, 50, 'each hello query completed');
  assert.equal(c.cancelled, 50, 'each ticks subscription ended with its socket');
  const log = await page.locator('#log li').allTextContents();
  assert.ok(log.some((row) => row.includes('connection_ack')), log.join('\n'));
  assert.ok(log.some((row) => row.includes('[socket dropped]')), log.join('\n'));
  await page.screenshot({ path: path.join(out, 'live.png'), fullPage: true });
  assert.deepEqual(pageErrors, []);
});
