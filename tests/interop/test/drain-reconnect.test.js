'use strict';
// Drain and come back: the gateway gets SIGTERM while clients are
// subscribed, closes every socket with 1001 and exits 0; a new gateway starts
// on the same port; the clients reconnect by themselves and subscriptions
// work again.

const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { createClient } = require('graphql-ws');
const { SubscriptionClient } = require('subscriptions-transport-ws');
const { BOUNDS, RawSocket, freePort, readyTransportWs, sleep, startDemo, ticksQuery, within } = require('../lib/harness');

/** How long clients get to reconnect once the new gateway is ready. */
const RECONNECT_MS = BOUNDS.waitMs * 2;
/** The graphql-ws client's fixed wait between reconnection attempts. */
const RETRY_WAIT_MS = 100;

async function until(ms, what, predicate) {
  await within(ms, what, (async () => {
    while (!predicate()) await sleep(10);
  })());
}

describe('drain with 1001, restart on the same port, clients reconnect', () => {
  const gateways = [];
  const cleanups = [];
  after(async () => {
    for (const cleanup of cleanups) await cleanup();
    for (const gateway of gateways) await gateway.child.kill();
  });

  it('reconnects graphql-ws and subscriptions-transport-ws clients after a drain', async () => {
    const port = await freePort();
    const first = await startDemo(port);
    gateways.push(first);

    // Raw sockets of both subprotocols, each with a live subscription, to see the exact close.
    const rawModern = await readyTransportWs(first.url);
    rawModern.send({ type: 'subscribe', id: 'r', payload: { query: ticksQuery({ everyMs: 50 }) } });
    assert.equal((await rawModern.next()).id, 'r');
    const rawLegacy = await RawSocket.open(first.url, 'graphql-ws');
    rawLegacy.send({ type: 'connection_init' });
    rawLegacy.send({ type: 'start', id: 'r', payload: { query: ticksQuery({ everyMs: 50 }) } });
    assert.equal((await rawLegacy.next()).type, 'connection_ack');

    // graphql-ws: a subscription without a limit that must survive the restart.
    const connected = [];
    const closed = [];
    const modern = createClient({
      url: first.url,
      webSocketImpl: WebSocket,
      lazy: false,
      onNonLazyError: () => {},
      retryAttempts: Math.ceil((BOUNDS.startMs + RECONNECT_MS) / RETRY_WAIT_MS),
      retryWait: () => sleep(RETRY_WAIT_MS),
      // While no gateway listens, a retry fails with ECONNREFUSED, an Error
      // rather than a CloseEvent, which graphql-ws treats as fatal unless
      // shouldRetry says otherwise; a client meant to outlive restarts says so.
      shouldRetry: () => true,
      on: {
        connected: () => connected.push(Date.now()),
        closed: (event) => closed.push(event.code),
      },
    });
    cleanups.push(() => modern.dispose());
    const modernResults = [];
    let modernEnd = null;
    modern.subscribe(
      { query: ticksQuery({ everyMs: 50 }) },
      {
        next: (result) => modernResults.push(result.data.ticks.seq),
        error: (error) => {
          modernEnd = { error };
        },
        complete: () => {
          modernEnd = { complete: true };
        },
      },
    );

    // subscriptions-transport-ws with reconnect: it re-sends its starts after reconnecting.
    const legacy = new SubscriptionClient(
      first.url,
      { reconnect: true, reconnectionAttempts: 1000, timeout: 30000, minTimeout: BOUNDS.waitMs },
      WebSocket,
    );
    cleanups.push(() => legacy.close());
    const legacyResults = [];
    let legacyReconnected = 0;
    legacy.onReconnected(() => legacyReconnected++);
    legacy.request({ query: ticksQuery({ everyMs: 50 }) }).subscribe({
      next: (result) => legacyResults.push(result.data.ticks.seq),
      error: () => {},
    });

    await until(BOUNDS.waitMs, 'ticks on both clients', () => modernResults.length >= 2 && legacyResults.length >= 2);
    assert.equal(await first.metric('terminus_connections'), 4);
    assert.equal(await first.metric('terminus_operations'), 4);

    // Drain.
    const exit = await first.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, `exit after SIGTERM\n${first.output}`);
    assert.match(first.output, /leaked_operations=0/);
    assert.equal((await rawModern.closed()).code, 1001);
    assert.equal((await rawLegacy.closed()).code, 1001);
    await until(BOUNDS.waitMs, 'graphql-ws client sees the close', () => closed.length >= 1);
    assert.equal(closed[0], 1001, `graphql-ws client close codes ${closed}`);
    assert.equal(modernEnd, null, 'the graphql-ws subscription ended instead of waiting to reconnect');

    // Come back on the same port.
    const beforeRestart = { modern: modernResults.length, legacy: legacyResults.length };
    const second = await startDemo(port);
    gateways.push(second);
    await until(RECONNECT_MS, 'graphql-ws client reconnects', () => connected.length >= 2);
    await until(RECONNECT_MS, 'the graphql-ws subscription resumes', () => modernResults.length > beforeRestart.modern);
    // A resubscription is a new operation on the new gateway: it counts from 1.
    assert.equal(modernResults[beforeRestart.modern], 1, `seqs ${modernResults}`);
    await until(RECONNECT_MS, 'subscriptions-transport-ws reconnects and resumes', () => legacyReconnected >= 1 && legacyResults.length > beforeRestart.legacy);
    assert.equal(legacyResults[beforeRestart.legacy], 1, `seqs ${legacyResults}`);

    // A new subscription on the reconnected graphql-ws client works.
    const fresh = [];
    await within(BOUNDS.waitMs, 'a new subscription after reconnecting', (async () => {
      for await (const result of modern.iterate({ query: ticksQuery({ everyMs: 10, limit: 3 }) })) {
        fresh.push(result.data.ticks.seq);
      }
    })());
    assert.deepEqual(fresh, [1, 2, 3]);

    // Clean up and check the new gateway reclaims everything.
    await modern.dispose();
    legacy.close();
    await second.waitMetric('terminus_operations', 0);
    await second.waitMetric('terminus_connections', 0);
    const secondExit = await second.stop();
    assert.deepEqual(secondExit, { code: 0, signal: null }, second.output);
  });
});
