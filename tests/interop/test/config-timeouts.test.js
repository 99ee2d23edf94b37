'use strict';
// Paths that need config knobs `terminus demo` does not expose:
// `terminus serve --config` with a short init timeout (4408), a short legacy
// ka period, and auth tokens (4403 / connection_error), in front of
// `terminus demo-upstream`.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { createClient } = require('graphql-ws');
const { SubscriptionClient } = require('subscriptions-transport-ws');
const { BOUNDS, RawSocket, sleep, startServe, within } = require('../lib/harness');

const INIT_TIMEOUT_MS = 300;
const KA_INTERVAL_MS = 200;
const TOKEN = 'interop-secret';
const HELLO = '{ hello(name: "Ada") }';

describe('serve --config: init timeout, legacy ka period, auth', () => {
  let gateway;
  before(async () => {
    gateway = await startServe(
      [
        '[timeouts]',
        `init = "${INIT_TIMEOUT_MS}ms"`,
        `legacy_ka_interval = "${KA_INTERVAL_MS}ms"`,
        '',
        '[auth]',
        `tokens = ["${TOKEN}"]`,
      ].join('\n'),
    );
  });
  after(async () => {
    if (gateway) {
      const { code } = await gateway.stop();
      assert.equal(code, 0, `gateway exit status after SIGTERM\n${gateway.output}`);
    }
  });

  it('closes 4408 when no connection_init arrives within the init timeout', async () => {
    const socket = await RawSocket.open(gateway.url, 'graphql-transport-ws');
    const opened = Date.now();
    const close = await socket.closed();
    const after = Date.now() - opened;
    assert.deepEqual(close, { code: 4408, reason: 'Connection initialisation timeout' });
    assert.ok(after >= INIT_TIMEOUT_MS - 50, `closed after ${after} ms, before the ${INIT_TIMEOUT_MS} ms timeout`);
    const counted = await gateway.metrics();
    assert.ok(counted['terminus_connections_closed_total{code="4408"}'] >= 1, JSON.stringify(counted));
  });

  it('closes 4408 on a legacy socket with no connection_init too', async () => {
    const socket = await RawSocket.open(gateway.url, 'graphql-ws');
    const close = await socket.closed();
    assert.equal(close.code, 4408, JSON.stringify(close));
  });

  it('keeps a socket whose init was accepted in time open past the init timeout', async () => {
    const socket = await RawSocket.open(gateway.url, 'graphql-transport-ws');
    socket.send({ type: 'connection_init', payload: { token: TOKEN } });
    assert.equal((await socket.next()).type, 'connection_ack');
    await sleep(INIT_TIMEOUT_MS * 2);
    assert.equal(socket.close, null, 'closed after an accepted init');
    socket.send({ type: 'subscribe', id: 'q', payload: { query: HELLO } });
    assert.deepEqual(await socket.next(), { type: 'next', id: 'q', payload: { data: { hello: 'Hello, Ada!' } } });
    assert.deepEqual(await socket.next(), { type: 'complete', id: 'q' });
    await socket.end();
  });

  it('closes 4403 Forbidden when the init is rejected', async () => {
    const socket = await RawSocket.open(gateway.url, 'graphql-transport-ws');
    socket.send({ type: 'connection_init', payload: { token: 'wrong' } });
    const close = await socket.closed();
    assert.equal(close.code, 4403, JSON.stringify(close));
    // PROTOCOL.md names the reason `Forbidden`; the gateway may say why after it.
    assert.match(close.reason, /^Forbidden\b/);
  });

  it('answers a rejected legacy init with connection_error and never runs its queued start', async () => {
    const startedBefore = await gateway.metric('terminus_operations_started_total');
    const socket = await RawSocket.open(gateway.url, 'graphql-ws');
    socket.send({ type: 'connection_init', payload: { token: 'wrong' } });
    socket.send({ type: 'start', id: '1', payload: { query: HELLO } });
    const reply = await socket.next();
    assert.equal(reply.type, 'connection_error', JSON.stringify(reply));
    const rest = await socket.drainFor();
    for (const m of rest) assert.notEqual(m.type, 'data', JSON.stringify(rest));
    assert.equal(await gateway.metric('terminus_operations_started_total'), startedBefore);
    await socket.end();
  });

  it('sends legacy ka right after the ack and then every legacy_ka_interval', async () => {
    const socket = await RawSocket.open(gateway.url, 'graphql-ws');
    socket.send({ type: 'connection_init', payload: { token: TOKEN } });
    assert.equal((await socket.next()).type, 'connection_ack');
    assert.deepEqual(await socket.next(), { type: 'ka' });
    const first = Date.now();
    // Over 5 periods, expect about 5 more ka; allow a slow machine some slack.
    const messages = await socket.drainFor(KA_INTERVAL_MS * 5 + 100);
    const elapsed = Date.now() - first;
    assert.ok(messages.every((m) => m.type === 'ka'), JSON.stringify(messages));
    assert.ok(
      messages.length >= 3 && messages.length <= 7,
      `${messages.length} ka in ${elapsed} ms at a ${KA_INTERVAL_MS} ms period`,
    );
    await socket.end();
  });

  it('accepts the graphql-ws client with the token in connectionParams, closes 4403 without it', async () => {
    const good = createClient({
      url: gateway.url,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { token: TOKEN },
    });
    try {
      const results = [];
      await within(BOUNDS.waitMs, 'query with a good token', (async () => {
        for await (const result of good.iterate({ query: HELLO })) results.push(result);
      })());
      assert.deepEqual(results, [{ data: { hello: 'Hello, Ada!' } }]);
    } finally {
      await good.dispose();
    }
    const closes = [];
    const bad = createClient({
      url: gateway.url,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { token: 'wrong' },
      on: { closed: (event) => closes.push(event.code) },
    });
    try {
      const thrown = await within(BOUNDS.waitMs, 'query with a bad token to fail', (async () => {
        try {
          for await (const result of bad.iterate({ query: HELLO })) return { unexpected: result };
        } catch (err) {
          return err;
        }
        return null;
      })());
      assert.equal(thrown && thrown.code, 4403, `iterate ended with ${JSON.stringify(thrown)}`);
      assert.deepEqual(closes, [4403]);
    } finally {
      await bad.dispose();
    }
  });

  it('reports a rejected init to the subscriptions-transport-ws connectionCallback', async () => {
    const verdicts = [];
    const c = new SubscriptionClient(
      gateway.url,
      {
        reconnect: false,
        timeout: 30000,
        minTimeout: BOUNDS.waitMs,
        connectionParams: { token: 'wrong' },
        connectionCallback: (error) => verdicts.push(error ?? 'accepted'),
      },
      WebSocket,
    );
    try {
      await within(BOUNDS.waitMs, 'connectionCallback', (async () => {
        while (verdicts.length === 0) await sleep(10);
      })());
      assert.notEqual(verdicts[0], 'accepted');
    } finally {
      c.close();
    }
  });
});
