'use strict';
// The interop suite's harness: starts the real `terminus` binary on a free
// loopback port, talks to it over real sockets, and stops it. Every wait is
// bounded; each bound is read from the environment (see README.md).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const WebSocket = require('ws');

/** The repository root (tests/interop/lib -> ../../..). */
const REPO = path.resolve(__dirname, '..', '..', '..');

/** Reads a positive integer bound (milliseconds) from the environment. */
function bound(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive integer of milliseconds, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** The bounds every wait in the suite uses. */
const BOUNDS = {
  /** Gateway start-up until /readyz answers 200 (a debug build on a busy machine is slow). */
  startMs: bound('TERMINUS_INTEROP_START_MS', 30000),
  /** Gateway exit after SIGTERM (its own drain bound defaults to 10 s). */
  exitMs: bound('TERMINUS_INTEROP_EXIT_MS', 15000),
  /** One expected message, close or state change. */
  waitMs: bound('TERMINUS_INTEROP_WAIT_MS', 5000),
  /** How long "nothing more arrives" is watched for. */
  silenceMs: bound('TERMINUS_INTEROP_SILENCE_MS', 300),
};

/**
 * The gateway binary: $TERMINUS_BIN, else the newer of target/release/terminus
 * and target/debug/terminus (so a stale build of the other profile is not used).
 */
function gatewayBinary() {
  if (process.env.TERMINUS_BIN) {
    const bin = path.resolve(process.env.TERMINUS_BIN);
    if (!fs.existsSync(bin)) throw new Error(`TERMINUS_BIN=${bin} does not exist`);
    return bin;
  }
  const candidates = ['release', 'debug']
    .map((profile) => path.join(REPO, 'target', profile, 'terminus'))
    .filter((bin) => fs.existsSync(bin))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (candidates.length === 0) {
    throw new Error(
      `no terminus binary: build it (cargo build -p terminus) or set TERMINUS_BIN; looked in ${REPO}/target/{release,debug}`,
    );
  }
  return candidates[0];
}

/** A free loopback TCP port (bound and released; the gateway binds it next). */
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

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects with `what` when `promise` has not settled within `ms`. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Every child process started by this file, so a failing test cannot leak one. */
const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** A running child process with its output kept for failure messages. */
class Child {
  constructor(name, args) {
    this.name = name;
    this.args = args;
    this.output = '';
    this.proc = spawn(gatewayBinary(), args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RUST_LOG || 'info' },
    });
    children.add(this.proc);
    const keep = (chunk) => {
      // Keep the last 64 KiB: enough to explain a failure, bounded in memory.
      this.output = (this.output + chunk.toString()).slice(-65536);
    };
    this.proc.stdout.on('data', keep);
    this.proc.stderr.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        children.delete(this.proc);
        resolve({ code, signal });
      });
    });
    this.proc.on('error', (err) => {
      this.output += `\nspawn error: ${err.message}`;
    });
  }

  get running() {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** SIGTERM, then the exit status, within BOUNDS.exitMs (SIGKILL after that, and throw). */
  async terminate() {
    if (!this.running) return this.exited;
    this.proc.kill('SIGTERM');
    try {
      return await within(BOUNDS.exitMs, `${this.name} exit after SIGTERM`, this.exited);
    } catch (err) {
      this.proc.kill('SIGKILL');
      await within(BOUNDS.exitMs, `${this.name} exit after SIGKILL`, this.exited);
      throw new Error(`${err.message}\n--- ${this.name} output ---\n${this.output}`);
    }
  }

  /** SIGKILL and wait for the exit; for clean-up after a failure. */
  async kill() {
    if (!this.running) return;
    this.proc.kill('SIGKILL');
    await within(BOUNDS.exitMs, `${this.name} exit after SIGKILL`, this.exited);
  }
}

/** Waits until a TCP connect to `port` succeeds or `child` exits. */
async function waitListening(child, port) {
  const deadline = Date.now() + BOUNDS.startMs;
  for (;;) {
    if (!child.running) {
      throw new Error(`${child.name} exited before listening on ${port}\n${child.output}`);
    }
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.setTimeout(500);
      socket.on('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
      socket.on('timeout', () => {
        socket.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    if (Date.now() > deadline) {
      throw new Error(`${child.name} not listening on ${port} within ${BOUNDS.startMs} ms\n${child.output}`);
    }
    await sleep(50);
  }
}

/** A gateway process and the ways to reach it. */
class Gateway {
  /** `ca`: the PEM of the CA that signed the listener's certificate, when it serves TLS. */
  constructor(child, port, ca) {
    this.child = child;
    this.port = port;
    this.ca = ca ?? null;
    this.http = `${ca ? 'https' : 'http'}://127.0.0.1:${port}`;
    this.url = `${ca ? 'wss' : 'ws'}://127.0.0.1:${port}/graphql`;
  }

  /** A request with a bounded wait; resolves to {status, text}. */
  request(method, p, headers = {}, body = undefined) {
    const lib = this.ca ? require('node:https') : require('node:http');
    return within(BOUNDS.waitMs, `${method} ${p}`, new Promise((resolve, reject) => {
      const req = lib.request(this.http + p, { method, headers, ca: this.ca ?? undefined }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => { text += chunk; });
        res.on('end', () => resolve({ status: res.statusCode, text, headers: res.headers }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.setTimeout(BOUNDS.waitMs, () => req.destroy(new Error('request timed out')));
      req.end(body);
    }));
  }

  /** GET `p` with a bounded wait; resolves to {status, text}. */
  async get(p) {
    if (this.ca) return this.request('GET', p);
    const res = await fetch(this.http + p, { signal: AbortSignal.timeout(BOUNDS.waitMs) });
    return { status: res.status, text: await res.text() };
  }

  /** Every unlabelled sample of /metrics as name -> number. */
  async metrics() {
    const { status, text } = await this.get('/metrics');
    if (status !== 200) throw new Error(`/metrics answered ${status}: ${text}`);
    const samples = {};
    for (const line of text.split('\n')) {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
      if (m) samples[m[1]] = Number(m[2]);
    }
    return samples;
  }

  /** One series of /metrics; throws when the gateway does not export it. */
  async metric(name) {
    const samples = await this.metrics();
    if (!(name in samples)) throw new Error(`/metrics has no series ${name}`);
    return samples[name];
  }

  /** Polls /metrics until `name` equals `want`, within BOUNDS.waitMs; throws with the last value. */
  async waitMetric(name, want) {
    const deadline = Date.now() + BOUNDS.waitMs;
    let last;
    for (;;) {
      last = await this.metric(name);
      if (last === want) return last;
      if (Date.now() > deadline) {
        throw new Error(`${name} stayed at ${last}, expected ${want} within ${BOUNDS.waitMs} ms`);
      }
      await sleep(50);
    }
  }

  /** Waits for /readyz to answer 200. */
  async waitReady() {
    const deadline = Date.now() + BOUNDS.startMs;
    for (;;) {
      if (!this.child.running) throw new Error(`${this.child.name} exited\n${this.child.output}`);
      try {
        const { status } = await this.get('/readyz');
        if (status === 200) return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) {
        throw new Error(`/readyz not 200 within ${BOUNDS.startMs} ms\n${this.child.output}`);
      }
      await sleep(50);
    }
  }

  /** SIGTERM (drain) and the exit status. */
  stop() {
    return this.child.terminate();
  }

  get output() {
    return this.child.output;
  }
}

/** Starts `terminus demo` on `port` (a free one when omitted) and waits until it is ready. */
async function startDemo(port) {
  const listen = port ?? (await freePort());
  const child = new Child(`terminus demo :${listen}`, ['demo', '--listen', `127.0.0.1:${listen}`]);
  const gateway = new Gateway(child, listen);
  try {
    await gateway.waitReady();
  } catch (err) {
    await child.kill();
    throw err;
  }
  return gateway;
}

/**
 * Starts `terminus demo-upstream` and `terminus serve --config` with the demo
 * schema and `extraToml` appended to the config (for instance a
 * `[timeouts]` table), and waits until the gateway is ready. With `ca` (the
 * PEM of the CA of a `[tls]` listener) it is reached over https:// and wss://.
 * The returned gateway's stop() also stops the upstream.
 */
async function startServe(extraToml, { ca } = {}) {
  const upstreamPort = await freePort();
  const upstream = new Child(`terminus demo-upstream :${upstreamPort}`, [
    'demo-upstream',
    '--listen',
    `127.0.0.1:${upstreamPort}`,
  ]);
  let gateway;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'terminus-interop-'));
  const removeDir = () => fs.rmSync(dir, { recursive: true, force: true });
  try {
    await waitListening(upstream, upstreamPort);
    const port = await freePort();
    const config = path.join(dir, 'terminus.toml');
    const toml = (s) => JSON.stringify(s); // a JSON string is a valid TOML basic string
    fs.writeFileSync(
      config,
      [
        `listen = ${toml(`127.0.0.1:${port}`)}`,
        `schema = ${toml(path.join(REPO, 'core', 'schemas', 'demo.graphql'))}`,
        '',
        extraToml,
        '',
        '[grpc.demo]',
        `endpoint = ${toml(`http://127.0.0.1:${upstreamPort}`)}`,
        `protos = [${toml(path.join(REPO, 'proto', 'proto', 'terminus', 'demo', 'v1', 'demo.proto'))}]`,
        `includes = [${toml(path.join(REPO, 'proto', 'proto'))}]`,
        '',
      ].join('\n'),
    );
    const child = new Child(`terminus serve :${port}`, ['serve', '--config', config]);
    gateway = new Gateway(child, port, ca);
    await gateway.waitReady();
  } catch (err) {
    if (gateway) await gateway.child.kill();
    await upstream.kill();
    removeDir();
    throw err;
  }
  const stopGateway = gateway.stop.bind(gateway);
  gateway.stop = async () => {
    try {
      return await stopGateway();
    } finally {
      await upstream.terminate();
      removeDir();
    }
  };
  return gateway;
}

/**
 * A raw WebSocket with a queue of received messages, for exact frames and
 * close codes. `next()` and `closed()` wait at most BOUNDS.waitMs.
 */
class RawSocket {
  constructor(url, protocols, options = {}) {
    this.ws = new WebSocket(url, protocols, options);
    this.queue = [];
    this.waiters = [];
    this.close = null;
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (_req, res) => {
        reject(Object.assign(new Error(`HTTP ${res.statusCode} instead of an upgrade`), { status: res.statusCode }));
      });
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.ws.on('error', () => {});
    this.ws.on('message', (data, isBinary) => {
      this.queue.push(isBinary ? { binary: data } : JSON.parse(data.toString()));
      this.wake();
    });
    this.closedPromise = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.close = { code, reason: reason.toString() };
        resolve(this.close);
        this.wake();
      });
    });
  }

  /** Opens a socket offering `protocol` and waits for the upgrade. */
  static async open(url, protocol, options = {}) {
    const socket = new RawSocket(url, protocol, options);
    await within(BOUNDS.waitMs, `WebSocket open (${protocol})`, socket.opened);
    return socket;
  }

  wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  get protocol() {
    return this.ws.protocol;
  }

  send(message) {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** The next message; throws if the socket closes first or nothing comes within `ms`. */
  async next(ms = BOUNDS.waitMs) {
    const deadline = Date.now() + ms;
    while (this.queue.length === 0) {
      if (this.close) {
        throw new Error(`socket closed (${this.close.code} ${this.close.reason}) while a message was expected`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${ms} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.queue.shift();
  }

  /** Messages received during `ms` (after those already queued). */
  async drainFor(ms = BOUNDS.silenceMs) {
    await sleep(ms);
    const got = this.queue;
    this.queue = [];
    return got;
  }

  /** The close {code, reason}, within `ms`. */
  closed(ms = BOUNDS.waitMs) {
    return within(ms, 'WebSocket close', this.closedPromise);
  }

  /** Closes from the client side and waits for the close to finish. */
  async end(code = 1000) {
    if (!this.close) {
      this.ws.close(code);
      try {
        await this.closed();
      } catch {
        this.ws.terminate();
      }
    }
  }
}

/** Opens a graphql-transport-ws socket and completes connection_init / connection_ack. */
async function readyTransportWs(url, payload) {
  const socket = await RawSocket.open(url, 'graphql-transport-ws');
  socket.send(payload === undefined ? { type: 'connection_init' } : { type: 'connection_init', payload });
  const ack = await socket.next();
  if (ack.type !== 'connection_ack') throw new Error(`expected connection_ack, got ${JSON.stringify(ack)}`);
  return socket;
}

/** The demo's subscription text. */
function ticksQuery({ everyMs, limit, failAt }) {
  const args = [`everyMs: ${everyMs}`];
  if (limit !== undefined) args.push(`limit: ${limit}`);
  if (failAt !== undefined) args.push(`failAt: ${failAt}`);
  return `subscription { ticks(${args.join(', ')}) { seq } }`;
}

module.exports = {
  BOUNDS,
  REPO,
  RawSocket,
  freePort,
  gatewayBinary,
  readyTransportWs,
  sleep,
  startDemo,
  startServe,
  ticksQuery,
  within,
};
