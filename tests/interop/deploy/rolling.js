'use strict';
// Several gateways behind HAProxy (issue 13, docs/deploy.md): one
// `terminus demo-upstream` process, INSTANCES `terminus serve` instances
// sharing it, HAProxy in front with deploy/haproxy.cfg (ports filled in).
//
// 1. nginx: deploy/nginx.conf, filled in the same way, passes `nginx -t`
//    (skipped with a note when nginx is not installed).
// 2. Cross-instance rooms: subscribers spread by HAProxy over every
//    instance all get a `say` POSTed to one instance directly.
// 3. Rolling deploy: CLIENTS npm graphql-ws clients (in WORKERS processes)
//    each subscribed to a room through HAProxy; while `say` is POSTed
//    through HAProxy at SAY_PER_SEC, every instance in turn gets SIGTERM
//    (readiness false for drain_unready, then 1001), must exit 0 with its
//    final log line reporting zero leaked operations, and is started
//    again on its port. At the end every client is connected and
//    subscribed (it receives a final round of messages), and the messages
//    each client missed are counted and checked against its own
//    reconnect window. Prints the numbers (and one JSON line) for
//    docs/BENCHMARKS.md.
//
// Loopback only; every wait is bounded (DEPLOY_* below); HAProxy, the
// gateways and the workers are started and stopped here. Exit code 0 only
// when every check held.

const { spawn, fork, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const WebSocket = require('ws');
const { createClient } = require('graphql-ws');

const REPO = path.resolve(__dirname, '..', '..', '..');
const num = (name, fallback) => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number, got ${raw}`);
  return v;
};
const CLIENTS = num('DEPLOY_CLIENTS', 3000);
const INSTANCES = num('DEPLOY_INSTANCES', 3);
const WORKERS = num('DEPLOY_WORKERS', Math.max(1, Math.min(6, Math.ceil(CLIENTS / 750))));
const ROOMS = num('DEPLOY_ROOMS', 30);
const SAY_PER_SEC = num('DEPLOY_SAY_PER_SEC', 20);
/** timeouts.drain_unready of the instances; >= HAProxy's inter (500 ms) * fall (2). */
const UNREADY_MS = num('DEPLOY_UNREADY_MS', 1500);
/** Every single wait (start-up, connect-all, exit, ...). */
const WAIT_MS = num('DEPLOY_WAIT_MS', 90000);
/** The whole run. */
const TOTAL_MS = num('DEPLOY_TOTAL_MS', 300000);
/** Slack per client in the missed-messages bound. */
const MISSED_SLACK = num('DEPLOY_MISSED_SLACK', 3);
/** Clients opened per second in all (spread over the workers). */
const RAMP_PER_SEC = num('DEPLOY_RAMP_PER_SEC', 300);

/** The gateways' admin.token (/metrics needs it once a token is set). */
const ADMIN_TOKEN = 'deploy-test';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (...args) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
const failures = [];
const check = (ok, what) => {
  if (!ok) {
    failures.push(what);
    log(`FAIL: ${what}`);
  }
};

function binary() {
  if (process.env.TERMINUS_BIN) return path.resolve(process.env.TERMINUS_BIN);
  const candidates = ['release', 'debug']
    .map((p) => path.join(REPO, 'target', p, 'terminus'))
    .filter((b) => fs.existsSync(b))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (!candidates.length) throw new Error('no terminus binary: cargo build -p terminus, or set TERMINUS_BIN');
  return candidates[0];
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function until(ms, what, predicate, every = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(every);
  }
}

async function get(port, pathname) {
  try {
    const r = await fetch(`http://127.0.0.1:${port}${pathname}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      signal: AbortSignal.timeout(5000),
    });
    return { status: r.status, body: await r.text() };
  } catch (e) {
    return { status: 0, body: String(e) };
  }
}

/** The first few reasons a `say` failed. */
const sayErrors = [];

async function postSay(port, room, text) {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'mutation($r: String!, $t: String!) { say(room: $r, text: $t) }', variables: { r: room, t: text } }),
      signal: AbortSignal.timeout(5000),
    });
    const answer = await r.text();
    let body = {};
    try { body = JSON.parse(answer); } catch { /* reported below */ }
    const ok = r.status === 200 && body.data && body.data.say === true;
    if (!ok && sayErrors.length < 5) sayErrors.push(`${r.status} ${answer.slice(0, 200)}`);
    return ok;
  } catch (e) {
    if (sayErrors.length < 5) sayErrors.push(String(e));
    return false;
  }
}

function metric(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

/** A child process whose output is kept (bounded) for the report. */
function run(cmd, args, name) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' } });
  const proc = { child, name, out: '', exited: null };
  const keep = (chunk) => {
    // Without the log's colours, so its fields can be matched.
    proc.out += chunk.toString().replace(/\x1b\[[0-9;]*m/g, '');
    if (proc.out.length > 200000) proc.out = proc.out.slice(-100000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  proc.exit = new Promise((resolve) => child.on('exit', (code, signal) => { proc.exited = { code, signal }; resolve(proc.exited); }));
  return proc;
}

async function stop(proc, ms) {
  if (proc.exited) return proc.exited;
  proc.child.kill('SIGTERM');
  const done = await Promise.race([proc.exit, sleep(ms).then(() => null)]);
  if (!done) {
    proc.child.kill('SIGKILL');
    await proc.exit;
    return { code: null, signal: 'SIGKILL (did not exit in time)' };
  }
  return done;
}

function render(template, values) {
  return template.replace(/\{\{([A-Z_]+)\}\}/g, (_, key) => {
    if (!(key in values)) throw new Error(`no value for {{${key}}}`);
    return values[key];
  });
}

const percentile = (values, p) => {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};

async function main() {
  const started = Date.now();
  const bin = binary();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'terminus-deploy-'));
  const procs = [];
  const workers = [];
  const cleanup = async () => {
    for (const w of workers) if (w.connected) w.kill('SIGKILL');
    for (const p of procs) if (!p.exited) { p.child.kill('SIGKILL'); await p.exit; }
  };
  // Interrupted: stop everything this run started before leaving.
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, async () => {
      log(`${signal}: stopping the gateways, HAProxy and the workers`);
      await cleanup();
      process.exit(1);
    });
  }
  const overall = setTimeout(async () => {
    log(`FAIL: the whole run took longer than DEPLOY_TOTAL_MS=${TOTAL_MS}`);
    await cleanup();
    process.exit(1);
  }, TOTAL_MS);
  try {
    // The shared upstream.
    const upstreamPort = await freePort();
    const upstream = run(bin, ['demo-upstream', '--listen', `127.0.0.1:${upstreamPort}`], 'demo-upstream');
    procs.push(upstream);
    await until(WAIT_MS, 'demo-upstream listening', () => upstream.out.includes('gRPC service'));

    // The gateways' config: examples/ with every deploy bound set.
    const ports = [];
    for (let i = 0; i < INSTANCES; i += 1) ports.push(await freePort());
    const configFor = (port) => {
      const file = path.join(dir, `terminus-${port}.toml`);
      fs.writeFileSync(file, [
        `listen = "127.0.0.1:${port}"`,
        `schema = ${JSON.stringify(path.join(REPO, 'examples', 'schema.graphql'))}`,
        '[limits]',
        `max_connections = ${CLIENTS + 100}`,
        'unready_at_capacity = true',
        '[timeouts]',
        `drain_unready = "${UNREADY_MS}ms"`,
        'drain = "30s"',
        '[admin]',
        `token = "${ADMIN_TOKEN}"`,
        '[grpc.demo]',
        `endpoint = "http://127.0.0.1:${upstreamPort}"`,
        `protos = [${JSON.stringify(path.join(REPO, 'examples', 'demo.proto'))}]`,
        `max_concurrent_streams = ${CLIENTS * 2}`,
        '',
      ].join('\n'));
      return file;
    };
    const gateways = [];
    const startGateway = async (i) => {
      const g = run(bin, ['serve', '--config', configFor(ports[i])], `gateway-${i}`);
      procs.push(g);
      gateways[i] = g;
      await until(WAIT_MS, `gateway ${i} ready`, async () => (await get(ports[i], '/readyz')).status === 200, 100);
      return g;
    };
    for (let i = 0; i < INSTANCES; i += 1) await startGateway(i);
    log(`${INSTANCES} gateways ready on ${ports.join(', ')}; upstream on ${upstreamPort}`);

    // HAProxy with deploy/haproxy.cfg.
    const frontPort = await freePort();
    const statsPort = await freePort();
    const serverLines = ports.map((p, i) => `    server t${i} 127.0.0.1:${p} check`).join('\n');
    const haproxyCfg = path.join(dir, 'haproxy.cfg');
    fs.writeFileSync(haproxyCfg, render(fs.readFileSync(path.join(REPO, 'deploy', 'haproxy.cfg'), 'utf8'), {
      FRONTEND_PORT: frontPort, STATS_PORT: statsPort, SERVER_LINES: serverLines,
    }));
    execFileSync('haproxy', ['-c', '-f', haproxyCfg], { stdio: 'pipe' });
    const haproxy = run('haproxy', ['-db', '-f', haproxyCfg], 'haproxy');
    procs.push(haproxy);
    const upCount = async () => {
      const r = await get(statsPort, '/stats;csv');
      return r.body.split('\n').filter((l) => l.startsWith('terminus,t') && l.split(',')[17] === 'UP').length;
    };
    await until(WAIT_MS, 'HAProxy sees every gateway UP', async () => (await upCount()) === INSTANCES, 100);
    log(`HAProxy on ${frontPort} (stats ${statsPort}), ${INSTANCES} servers UP`);

    // nginx equivalent: validated.
    let nginxNote = 'nginx not installed: deploy/nginx.conf not validated';
    const nginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p));
    if (nginx) {
      const conf = path.join(dir, 'nginx.conf');
      fs.writeFileSync(conf, render(fs.readFileSync(path.join(REPO, 'deploy', 'nginx.conf'), 'utf8'), {
        FRONTEND_PORT: frontPort, PID_FILE: path.join(dir, 'nginx.pid'),
        SERVER_LINES: ports.map((p) => `        server 127.0.0.1:${p} max_fails=1 fail_timeout=1s;`).join('\n'),
      }));
      try {
        execFileSync(nginx, ['-t', '-q', '-c', conf, '-e', 'stderr'], { stdio: 'pipe' });
        nginxNote = 'deploy/nginx.conf passes nginx -t';
      } catch (e) {
        check(false, `nginx -t on deploy/nginx.conf: ${e.stderr}`);
      }
    }
    log(nginxNote);

    // 2. Cross-instance rooms through HAProxy.
    {
      const url = `ws://127.0.0.1:${frontPort}/graphql`;
      const got = [];
      const subs = [];
      for (let i = 0; i < INSTANCES * 2; i += 1) {
        const client = createClient({ url, webSocketImpl: WebSocket, lazy: false, retryAttempts: 0 });
        const mine = [];
        got.push(mine);
        subs.push({ client, dispose: client.subscribe({ query: 'subscription { room(name: "cross") { text } }' }, {
          next: (v) => mine.push(v.data.room.text), error: (e) => mine.push(`error ${e}`), complete: () => {},
        }) });
      }
      const perInstance = async () => Promise.all(ports.map(async (p) => metric((await get(p, '/metrics')).body, 'terminus_operations')));
      await until(WAIT_MS, 'the cross-room subscribers on every instance', async () => (await perInstance()).every((n) => n >= 1));
      log(`cross-instance: subscribers per instance ${(await perInstance()).join(', ')}`);
      await sleep(300); // the upstream streams are open once the gateway counted the operation; give them a moment
      check(await postSay(ports[0], 'cross', 'via-A'), 'say through instance A');
      check(await postSay(frontPort, 'cross', 'via-haproxy'), 'say through HAProxy');
      await until(WAIT_MS, 'every subscriber got both says', () => got.every((m) => m.includes('via-A') && m.includes('via-haproxy')))
        .catch((e) => check(false, `cross-instance rooms: ${e.message}; got ${JSON.stringify(got)}`));
      for (const s of subs) { s.dispose(); await s.client.dispose(); }
      log('cross-instance rooms: a say through instance A reached the subscribers on every instance');
    }

    // 3. Rolling deploy.
    const per = Math.ceil(CLIENTS / WORKERS);
    const replies = new Map();
    const ask = (w, message) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker did not answer ${message.cmd}`)), WAIT_MS);
      replies.set(w, (reply) => { clearTimeout(timer); resolve(reply); });
      w.send(message);
    });
    for (let k = 0; k < WORKERS; k += 1) {
      const first = k * per;
      const count = Math.max(0, Math.min(per, CLIENTS - first));
      const w = fork(path.join(__dirname, 'clients.js'), [], {
        env: { ...process.env, DEPLOY_URL: `ws://127.0.0.1:${frontPort}/graphql`, DEPLOY_FIRST: first, DEPLOY_COUNT: count, DEPLOY_ROOMS: ROOMS, DEPLOY_RAMP_PER_SEC: RAMP_PER_SEC / WORKERS },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      w.on('message', (m) => { const r = replies.get(w); if (r && m.cmd !== 'started') { replies.delete(w); r(m); } });
      workers.push(w);
    }
    const status = async () => {
      const all = await Promise.all(workers.map((w) => ask(w, { cmd: 'status' })));
      return { connected: all.reduce((n, s) => n + s.connected, 0), received: all.reduce((n, s) => n + s.received, 0) };
    };
    const subscribedOps = async () => {
      let n = 0;
      for (const p of ports) n += metric((await get(p, '/metrics')).body, 'terminus_operations') || 0;
      return n;
    };
    await until(WAIT_MS, `${CLIENTS} clients connected`, async () => (await status()).connected === CLIENTS, 250);
    await until(WAIT_MS, `${CLIENTS} room subscriptions live`, async () => (await subscribedOps()) >= CLIENTS, 250);
    const spread = await Promise.all(ports.map(async (p) => metric((await get(p, '/metrics')).body, 'terminus_connections')));
    log(`${CLIENTS} clients connected and subscribed through HAProxy; per instance: ${spread.join(', ')}`);

    // The steady poster: round-robin over the rooms, through HAProxy.
    // Per room, the numbers n of the messages (`m<n>`) said in it.
    const posted = {};
    let sayFailures = 0;
    let posting = true;
    let n = 0;
    const say = async (room) => {
      const mine = n;
      n += 1;
      if (await postSay(frontPort, room, `m${mine}`)) (posted[room] = posted[room] || []).push(mine);
      else sayFailures += 1;
      return mine;
    };
    // On a fixed schedule, not one after the other: a slow answer during a
    // restart must not slow the rate down (at most 100 says in flight).
    const inFlight = new Set();
    let behind = 0;
    const poster = (async () => {
      const t0 = Date.now();
      let k = 0;
      while (posting) {
        if (inFlight.size < 100) {
          const p = say(`r${k % ROOMS}`).finally(() => inFlight.delete(p));
          inFlight.add(p);
        } else {
          behind += 1;
        }
        k += 1;
        const due = t0 + (k * 1000) / SAY_PER_SEC;
        if (due > Date.now()) await sleep(due - Date.now());
      }
      await Promise.all([...inFlight]);
    })();
    const postStarted = Date.now();
    await sleep(2000);
    const drains = [];
    for (let i = 0; i < INSTANCES; i += 1) {
      const g = gateways[i];
      const t = Date.now();
      g.child.kill('SIGTERM');
      // Readiness turns false first: /readyz answers 503 while the
      // connections are still open.
      let early = 0;
      await until(1000, `instance ${i}: /readyz 503 after SIGTERM`, async () => {
        early = (await get(ports[i], '/readyz')).status;
        return early !== 200;
      }, 10).catch(() => {});
      check(early === 503, `instance ${i}: /readyz after SIGTERM is ${early}, not 503, while its connections are still open`);
      const exited = await Promise.race([g.exit, sleep(WAIT_MS).then(() => null)]);
      check(exited && exited.code === 0, `instance ${i}: exit ${JSON.stringify(exited)}`);
      const finalLine = g.out.trim().split('\n').filter((l) => l.includes('terminus stopped')).pop() || '';
      const drained = g.out.split('\n').filter((l) => l.includes('drained')).pop() || '';
      check(/leaked_operations=0/.test(finalLine), `instance ${i}: final line "${finalLine}"`);
      check(/forced_connections=0/.test(drained), `instance ${i}: drain line "${drained}"`);
      const unreadyAt = g.out.indexOf('readiness false');
      const closingAt = g.out.indexOf('closing every connection');
      check(unreadyAt >= 0 && closingAt > unreadyAt, `instance ${i}: readiness false is logged before the connections are closed`);
      drains.push({ instance: i, exitMs: Date.now() - t, drained: drained.replace(/^.*drained\s*/, '') });
      log(`instance ${i}: SIGTERM -> exit 0 in ${Date.now() - t} ms (${drained.trim().slice(-90)})`);
      await startGateway(i);
      await until(WAIT_MS, `HAProxy sees instance ${i} UP again`, async () => (await upCount()) === INSTANCES, 100);
      // Every client is back before the next instance goes.
      await until(WAIT_MS, `every client reconnected after instance ${i}`, async () => (await status()).connected === CLIENTS, 250);
      await until(WAIT_MS, `every subscription live after instance ${i}`, async () => (await subscribedOps()) >= CLIENTS, 250);
      log(`instance ${i}: restarted; all ${CLIENTS} clients connected and subscribed again`);
    }
    await sleep(2000);
    posting = false;
    await poster;
    const postSeconds = (Date.now() - postStarted) / 1000;
    // A final round: one more message per room proves every subscription is live.
    const finals = {};
    for (let r = 0; r < ROOMS; r += 1) finals[`r${r}`] = await say(`r${r}`);
    await until(WAIT_MS, 'every client got its room\'s final message', async () => {
      const all = await Promise.all(workers.map((w) => ask(w, { cmd: 'report' })));
      return all.every((rep) => rep.clients.every((c) => c.seqs.includes(finals[c.room])));
    }, 500).catch((e) => check(false, e.message));

    const reports = (await Promise.all(workers.map((w) => ask(w, { cmd: 'report' })))).flatMap((r) => r.clients);
    const perSecPerRoom = SAY_PER_SEC / ROOMS;
    const missed = [];
    const reconnects = [];
    let overBound = 0;
    let notConnected = 0;
    let closes1001 = 0;
    for (const c of reports) {
      const said = posted[c.room] || [];
      const have = new Set(c.seqs);
      const lost = said.filter((x) => !have.has(x));
      const total = said.length;
      const m = lost.length;
      missed.push(m);
      reconnects.push(...c.reconnects);
      closes1001 += c.closeCodes['1001'] || 0;
      if (!c.connected || c.completed) notConnected += 1;
      // Bounded by the reconnect window: the room's rate times the time
      // this client was away (plus resubscribing), plus a little slack.
      const bound = Math.ceil(perSecPerRoom * (c.downMs + 1000) / 1000) + MISSED_SLACK;
      if (m > bound) {
        overBound += 1;
        if (overBound <= 5) {
          log(`client ${c.index} (${c.room}) missed ${m} > bound ${bound} (down ${c.downMs} ms, reconnects ${c.reconnects}, posted ${total}, missing ${lost.slice(0, 30)}, errors ${c.errors})`);
        }
      }
    }
    check(notConnected === 0, `${notConnected} clients not connected and subscribed at the end`);
    check(overBound === 0, `${overBound} clients missed more than their reconnect window allows`);
    check(sayFailures === 0, `${sayFailures} says through HAProxy failed during the rolling deploy (${sayErrors.join('; ')})`);
    check(behind === 0, `${behind} says skipped: 100 were in flight`);

    // Stop everything: the final drains report zero leaks too.
    await Promise.all(workers.map((w) => new Promise((resolve) => {
      const timer = setTimeout(() => { w.kill('SIGKILL'); resolve(); }, WAIT_MS);
      w.on('exit', () => { clearTimeout(timer); resolve(); });
      w.send({ cmd: 'stop' });
    })));
    for (let i = 0; i < INSTANCES; i += 1) {
      const exited = await stop(gateways[i], WAIT_MS);
      const finalLine = gateways[i].out.trim().split('\n').filter((l) => l.includes('terminus stopped')).pop() || '';
      check(exited.code === 0 && /leaked_operations=0/.test(finalLine), `instance ${i} final stop: ${JSON.stringify(exited)} "${finalLine}"`);
    }
    await stop(haproxy, 5000);
    await stop(upstream, WAIT_MS);

    const messages = Object.values(posted).reduce((a, b) => a + b.length, 0);
    const summary = {
      clients: CLIENTS,
      instances: INSTANCES,
      workers: WORKERS,
      rooms: ROOMS,
      say_per_sec: SAY_PER_SEC,
      messages_posted: messages,
      say_rate_achieved: Number(((messages - ROOMS) / postSeconds).toFixed(1)),
      say_failures: sayFailures,
      closes_1001: closes1001,
      reconnects: reconnects.length,
      reconnect_ms_p50: percentile(reconnects, 50),
      reconnect_ms_p99: percentile(reconnects, 99),
      reconnect_ms_max: percentile(reconnects, 100),
      missed_per_client_max: Math.max(...missed),
      missed_per_client_p99: percentile(missed, 99),
      missed_per_client_mean: Number((missed.reduce((a, b) => a + b, 0) / missed.length).toFixed(2)),
      clients_over_bound: overBound,
      leaked_operations: 0,
      drain_unready_ms: UNREADY_MS,
      drains,
      run_s: Math.round((Date.now() - started) / 1000),
      failures: failures.length,
    };
    log('summary', JSON.stringify(summary));
    console.log(`DEPLOY_RESULT ${JSON.stringify(summary)}`);
  } catch (e) {
    failures.push(e.message);
    log(`FAIL: ${e.stack}`);
    for (const p of procs) {
      if (p.out) log(`--- ${p.name} (${p.exited ? `exited ${JSON.stringify(p.exited)}` : 'running'}; last output)\n${p.out.slice(-1500)}`);
    }
  } finally {
    clearTimeout(overall);
    await cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (failures.length) {
    log(`${failures.length} check(s) failed:\n - ${failures.join('\n - ')}`);
    process.exit(1);
  }
  log('rolling deploy: every check held');
  process.exit(0);
}

main();
