'use strict';
// The npm `graphql-ws` client (6.x, graphql-transport-ws) against
// `terminus demo`: subscribe and iterate, dispose, terminate.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { createClient } = require('graphql-ws');
const { BOUNDS, startDemo, ticksQuery, within } = require('../lib/harness');

/** A client that never retries, so a failure surfaces at once. */
function client(gateway, extra = {}) {
  return createClient({
    url: gateway.url,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: true,
    ...extra,
  });
}

/** Every result of an iterate() until it ends, within BOUNDS.waitMs. */
async function collect(iterator) {
  const results = [];
  await within(BOUNDS.waitMs, 'iterate() to end', (async () => {
    for await (const result of iterator) results.push(result);
  })());
  return results;
}

/** subscribe() with a sink, as a promise of {results, error} once it ends. */
function subscribeAll(c, payload) {
  const results = [];
  let dispose;
  const done = new Promise((resolve) => {
    dispose = c.subscribe(payload, {
      next: (result) => results.push(result),
      error: (error) => resolve({ results, error }),
      complete: () => resolve({ results, error: null }),
    });
  });
  // A getter: the bound starts when a test waits, and an unawaited end leaves no timer.
  return {
    results,
    get done() {
      return within(BOUNDS.waitMs, 'subscribe() to end', done);
    },
    dispose,
  };
}

describe('npm graphql-ws client', () => {
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

  it('runs a query with iterate()', async () => {
    const c = client(gateway);
    try {
      const results = await collect(
        c.iterate({ query: 'query Greet($n: String) { hello(name: $n) }', variables: { n: 'Ada' } }),
      );
      assert.deepEqual(results, [{ data: { hello: 'Hello, Ada!' } }]);
    } finally {
      await c.dispose();
    }
  });

  it('runs a query with subscribe() and a sink', async () => {
    const c = client(gateway);
    try {
      const { done } = subscribeAll(c, { query: '{ hello(name: "Grace") }' });
      assert.deepEqual(await done, { results: [{ data: { hello: 'Hello, Grace!' } }], error: null });
    } finally {
      await c.dispose();
    }
  });

  it('streams a subscription with a limit to its end, with iterate()', async () => {
    const c = client(gateway);
    try {
      const results = await collect(c.iterate({ query: ticksQuery({ everyMs: 10, limit: 5 }) }));
      assert.deepEqual(
        results,
        [1, 2, 3, 4, 5].map((seq) => ({ data: { ticks: { seq } } })),
      );
    } finally {
      await c.dispose();
    }
  });

  it('runs concurrent subscriptions on one socket', async () => {
    const c = client(gateway);
    try {
      const [a, b] = await Promise.all([
        collect(c.iterate({ query: ticksQuery({ everyMs: 10, limit: 3 }) })),
        collect(c.iterate({ query: ticksQuery({ everyMs: 15, limit: 4 }) })),
      ]);
      assert.deepEqual(a.map((r) => r.data.ticks.seq), [1, 2, 3]);
      assert.deepEqual(b.map((r) => r.data.ticks.seq), [1, 2, 3, 4]);
    } finally {
      await c.dispose();
    }
  });

  it('delivers an upstream failure (failAt) to the sink as GraphQL errors', async () => {
    const c = client(gateway);
    try {
      const { done } = subscribeAll(c, { query: ticksQuery({ everyMs: 10, failAt: 3 }) });
      const { results, error } = await done;
      assert.deepEqual(results, [{ data: { ticks: { seq: 1 } } }, { data: { ticks: { seq: 2 } } }]);
      // graphql-ws hands an `error` message's payload (the GraphQL errors) to sink.error.
      assert.ok(Array.isArray(error) && error.length > 0, `sink.error got ${JSON.stringify(error)}`);
      assert.equal(typeof error[0].message, 'string');
      await gateway.waitMetric('terminus_operations', 0);
    } finally {
      await c.dispose();
    }
  });

  it('throws the GraphQL errors from iterate() on an upstream failure', async () => {
    const c = client(gateway);
    try {
      const seen = [];
      const thrown = await within(BOUNDS.waitMs, 'iterate() to throw', (async () => {
        try {
          for await (const result of c.iterate({ query: ticksQuery({ everyMs: 10, failAt: 2 }) })) {
            seen.push(result);
          }
        } catch (err) {
          return err;
        }
        return null;
      })());
      assert.deepEqual(seen, [{ data: { ticks: { seq: 1 } } }]);
      assert.ok(Array.isArray(thrown) && thrown.length > 0, `iterate threw ${JSON.stringify(thrown)}`);
    } finally {
      await c.dispose();
    }
  });

  it('unsubscribes (the cleanup function) and the gateway drops the operation', async () => {
    const c = client(gateway);
    try {
      const { results, dispose } = subscribeAll(c, { query: ticksQuery({ everyMs: 20 }) });
      await within(BOUNDS.waitMs, 'two ticks', (async () => {
        while (results.length < 2) await new Promise((r) => setTimeout(r, 10));
      })());
      assert.equal(await gateway.metric('terminus_operations'), 1);
      dispose();
      await gateway.waitMetric('terminus_operations', 0);
      await gateway.waitMetric('terminus_upstream_streams', 0);
    } finally {
      await c.dispose();
    }
    // A lazy client closes its socket after the last unsubscribe.
    await gateway.waitMetric('terminus_connections', 0);
  });

  it('ends an iterate() early with return() and the gateway drops the operation', async () => {
    const c = client(gateway);
    try {
      const iterator = c.iterate({ query: ticksQuery({ everyMs: 20 }) });
      const first = await within(BOUNDS.waitMs, 'first tick', iterator.next());
      assert.deepEqual(first, { done: false, value: { data: { ticks: { seq: 1 } } } });
      await within(BOUNDS.waitMs, 'iterator.return()', iterator.return());
      await gateway.waitMetric('terminus_operations', 0);
    } finally {
      await c.dispose();
    }
  });

  it('dispose() closes the socket and ends its subscriptions on the gateway', async () => {
    const closes = [];
    const c = client(gateway, { lazy: false, onNonLazyError: () => {}, on: { closed: (e) => closes.push(e.code) } });
    const { results, done } = subscribeAll(c, { query: ticksQuery({ everyMs: 20 }) });
    await within(BOUNDS.waitMs, 'a tick', (async () => {
      while (results.length < 1) await new Promise((r) => setTimeout(r, 10));
    })());
    assert.equal(await gateway.metric('terminus_connections'), 1);
    await c.dispose();
    // The sink completes when the client is disposed.
    assert.equal((await done).error, null);
    await gateway.waitMetric('terminus_operations', 0);
    await gateway.waitMetric('terminus_connections', 0);
    assert.deepEqual(closes, [1000]);
  });

  it('terminate() drops the socket abruptly and the gateway reclaims everything', async () => {
    const closes = [];
    const c = client(gateway, { on: { closed: (e) => closes.push(e.code) } });
    const sinks = [subscribeAll(c, { query: ticksQuery({ everyMs: 20 }) }), subscribeAll(c, { query: ticksQuery({ everyMs: 25 }) })];
    await within(BOUNDS.waitMs, 'ticks on both', (async () => {
      while (sinks.some((s) => s.results.length < 1)) await new Promise((r) => setTimeout(r, 10));
    })());
    assert.equal(await gateway.metric('terminus_operations'), 2);
    c.terminate();
    // terminate() is not fatal for graphql-ws but retryAttempts is 0: both sinks error out.
    for (const sink of sinks) assert.notEqual((await sink.done).error, null);
    assert.equal(closes[0], 4499);
    await gateway.waitMetric('terminus_operations', 0);
    await gateway.waitMetric('terminus_upstream_streams', 0);
    await gateway.waitMetric('terminus_connections', 0);
    await c.dispose();
  });

  it('reclaims everything after 50 subscribed clients terminate at once', async () => {
    const before = await gateway.metrics();
    const clients = Array.from({ length: 50 }, () => client(gateway));
    try {
      const sinks = clients.map((c) => subscribeAll(c, { query: ticksQuery({ everyMs: 50 }) }));
      await within(BOUNDS.waitMs * 2, 'a tick on every client', (async () => {
        while (sinks.some((s) => s.results.length < 1)) await new Promise((r) => setTimeout(r, 20));
      })());
      assert.equal(await gateway.metric('terminus_operations'), 50);
      for (const c of clients) c.terminate();
      await gateway.waitMetric('terminus_operations', 0);
      await gateway.waitMetric('terminus_upstream_streams', 0);
      await gateway.waitMetric('terminus_connections', 0);
      await gateway.waitMetric('terminus_tasks', before.terminus_tasks);
    } finally {
      await Promise.all(clients.map((c) => c.dispose()));
    }
  });

  it('gets a pong for every keep-alive ping of the client', async () => {
    const pongs = [];
    const c = client(gateway, { keepAlive: 50, on: { pong: (received) => received && pongs.push(Date.now()) } });
    try {
      const results = await collect(c.iterate({ query: ticksQuery({ everyMs: 50, limit: 8 }) }));
      assert.equal(results.length, 8);
      assert.ok(pongs.length >= 3, `${pongs.length} pongs in 400 ms at a 50 ms ping period`);
    } finally {
      await c.dispose();
    }
  });

  it('reports a validation error for a bad query to the sink', async () => {
    const c = client(gateway);
    try {
      const { done } = subscribeAll(c, { query: '{ nope }' });
      const { results, error } = await done;
      assert.deepEqual(results, []);
      assert.ok(Array.isArray(error) && error.length > 0, JSON.stringify(error));
    } finally {
      await c.dispose();
    }
  });
});
