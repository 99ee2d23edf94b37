'use strict';
// The npm `subscriptions-transport-ws` client (0.11, legacy graphql-ws)
// against `terminus demo`: request().subscribe, unsubscribe, close. This
// client sends its starts right after connection_init without waiting for
// the ack, so every test here also exercises the gateway's start queue.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { SubscriptionClient } = require('subscriptions-transport-ws');
const { BOUNDS, startDemo, ticksQuery, within, sleep } = require('../lib/harness');

/**
 * A client that does not reconnect, so a failure surfaces at once. Its
 * `timeout` (no ka for this long closes the socket) is the library default,
 * 30 s, above the gateway's 15 s ka period; `minTimeout` bounds the connect.
 */
function client(gateway, options = {}) {
  return new SubscriptionClient(
    gateway.url,
    { reconnect: false, lazy: false, timeout: 30000, minTimeout: BOUNDS.waitMs, ...options },
    WebSocket,
  );
}

/** request(op).subscribe(...) as {results, done: promise of {results, error}, subscription}. */
function requestAll(c, request) {
  const results = [];
  let subscription;
  const done = new Promise((resolve) => {
    subscription = c.request(request).subscribe({
      next: (result) => results.push(result),
      error: (error) => resolve({ results, error }),
      complete: () => resolve({ results, error: null }),
    });
  });
  // A getter: the bound starts when a test waits, and an unawaited end leaves no timer.
  return {
    results,
    get done() {
      return within(BOUNDS.waitMs, 'request() to end', done);
    },
    subscription,
  };
}

async function until(what, predicate) {
  await within(BOUNDS.waitMs, what, (async () => {
    while (!predicate()) await sleep(10);
  })());
}

describe('npm subscriptions-transport-ws client', () => {
  let gateway;
  before(async () => {
    gateway = await startDemo();
  });
  after(async () => {
    if (gateway) {
      const { code } = await gateway.stop();
      assert.equal(code, 0, `gateway exit status after SIGTERM\n${gateway.output}`);
    }
  });

  it('connects, is acknowledged and runs a query', async () => {
    let connected = 0;
    const c = client(gateway, { connectionCallback: (error) => { if (!error) connected++; } });
    try {
      const { done } = requestAll(c, { query: 'query Greet($n: String) { hello(name: $n) }', variables: { n: 'Ada' } });
      assert.deepEqual(await done, { results: [{ data: { hello: 'Hello, Ada!' } }], error: null });
      assert.equal(connected, 1, 'connectionCallback after connection_ack');
      assert.equal(c.status, WebSocket.OPEN);
    } finally {
      c.close();
    }
  });

  it('streams a subscription with a limit, then completes', async () => {
    const c = client(gateway);
    try {
      const { done } = requestAll(c, { query: ticksQuery({ everyMs: 10, limit: 4 }) });
      const { results, error } = await done;
      assert.equal(error, null);
      assert.deepEqual(results, [1, 2, 3, 4].map((seq) => ({ data: { ticks: { seq } } })));
    } finally {
      c.close();
    }
  });

  it('runs several operations started before the ack, in order', async () => {
    const c = client(gateway);
    try {
      const all = [
        requestAll(c, { query: '{ hello(name: "one") }' }),
        requestAll(c, { query: ticksQuery({ everyMs: 10, limit: 2 }) }),
        requestAll(c, { query: '{ hello(name: "two") }' }),
      ];
      const [one, ticks, two] = await Promise.all(all.map((r) => r.done));
      assert.deepEqual(one, { results: [{ data: { hello: 'Hello, one!' } }], error: null });
      assert.deepEqual(ticks, { results: [{ data: { ticks: { seq: 1 } } }, { data: { ticks: { seq: 2 } } }], error: null });
      assert.deepEqual(two, { results: [{ data: { hello: 'Hello, two!' } }], error: null });
    } finally {
      c.close();
    }
  });

  it('delivers an upstream failure (failAt) to the observer as an error', async () => {
    const c = client(gateway);
    try {
      const { done } = requestAll(c, { query: ticksQuery({ everyMs: 10, failAt: 3 }) });
      const { results, error } = await done;
      assert.deepEqual(results, [{ data: { ticks: { seq: 1 } } }, { data: { ticks: { seq: 2 } } }]);
      // The client hands the first GraphQL error of the `error` message to observer.error.
      assert.equal(typeof error.message, 'string', `observer.error got ${JSON.stringify(error)}`);
      assert.ok(error.message.length > 0);
      await gateway.waitMetric('terminus_operations', 0);
    } finally {
      c.close();
    }
  });

  it('unsubscribes and the gateway drops the operation (terminus_operations back to 0)', async () => {
    const c = client(gateway);
    try {
      const { results, subscription } = requestAll(c, { query: ticksQuery({ everyMs: 20 }) });
      await until('two ticks', () => results.length >= 2);
      assert.equal(await gateway.metric('terminus_operations'), 1);
      subscription.unsubscribe();
      await gateway.waitMetric('terminus_operations', 0);
      await gateway.waitMetric('terminus_upstream_streams', 0);
      const seen = results.length;
      await sleep(BOUNDS.silenceMs);
      assert.ok(results.length <= seen + 1, 'ticks kept coming after unsubscribe');
      // The socket still serves.
      const { done } = requestAll(c, { query: '{ hello(name: "again") }' });
      assert.deepEqual(await done, { results: [{ data: { hello: 'Hello, again!' } }], error: null });
    } finally {
      c.close();
    }
  });

  it('close() sends connection_terminate; the gateway closes the socket and its operations', async () => {
    const c = client(gateway);
    const { results } = requestAll(c, { query: ticksQuery({ everyMs: 20 }) });
    const other = requestAll(c, { query: ticksQuery({ everyMs: 30 }) });
    await until('ticks on both', () => results.length >= 1 && other.results.length >= 1);
    assert.equal(await gateway.metric('terminus_operations'), 2);
    assert.equal(await gateway.metric('terminus_connections'), 1);
    c.close();
    await gateway.waitMetric('terminus_operations', 0);
    await gateway.waitMetric('terminus_connections', 0);
    await gateway.waitMetric('terminus_upstream_streams', 0);
  });
});
