'use strict';
// The npm `graphql-sse` client (2.x, distinct connections mode) against
// `terminus demo` on /graphql/stream (docs/transports.md): iterate to
// completion, an upstream error, and dispose mid-stream: the gateway's
// operations and upstream streams go back to 0.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { createClient } = require('graphql-sse');
const { BOUNDS, startDemo, ticksQuery, within } = require('../lib/harness');

/** A distinct-connections client that never retries. */
function client(gateway) {
  return createClient({
    url: `${gateway.http}/graphql/stream`,
    singleConnection: false,
    retryAttempts: 0,
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

describe('npm graphql-sse client', () => {
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

  it('iterates a subscription to its completion', async () => {
    const c = client(gateway);
    const results = await collect(c.iterate({ query: ticksQuery({ everyMs: 10, limit: 3 }) }));
    assert.deepEqual(results.map((r) => r.data.ticks.seq), [1, 2, 3]);
    const hello = await collect(c.iterate({ query: '{ hello(name: "Ada") }' }));
    assert.deepEqual(hello, [{ data: { hello: 'Hello, Ada!' } }]);
    c.dispose();
  });

  it('delivers an upstream error as a result with errors, then completes', async () => {
    const c = client(gateway);
    const results = await collect(c.iterate({ query: ticksQuery({ everyMs: 10, failAt: 2 }) }));
    assert.equal(results.length, 2, JSON.stringify(results));
    assert.equal(results[0].data.ticks.seq, 1);
    assert.ok(Array.isArray(results[1].errors) && results[1].errors.length > 0, JSON.stringify(results));
    c.dispose();
  });

  it('dispose mid-stream ends the operation and its upstream stream', async () => {
    const c = client(gateway);
    const seen = [];
    let disposeSub;
    const first = new Promise((resolve, reject) => {
      disposeSub = c.subscribe({ query: ticksQuery({ everyMs: 50 }) }, {
        next: (result) => { seen.push(result); resolve(); },
        error: reject,
        complete: () => {},
      });
    });
    await within(BOUNDS.waitMs, 'the first tick', first);
    assert.equal(seen[0].data.ticks.seq, 1);
    assert.equal(await gateway.metric('terminus_operations'), 1);
    assert.equal(await gateway.metric('terminus_upstream_streams'), 1);
    disposeSub();
    c.dispose();
    await gateway.waitMetric('terminus_operations', 0);
    await gateway.waitMetric('terminus_upstream_streams', 0);
    await gateway.waitMetric('terminus_http_streams', 0);
  });
});
