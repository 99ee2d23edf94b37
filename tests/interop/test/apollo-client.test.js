'use strict';
// npm `@apollo/client` 3 in Node against `terminus demo`
// (docs/transports.md): its HttpLink doing a multipart subscription
// (`multipart/mixed;subscriptionSpec=1.0`) to completion and unsubscribed
// mid-stream (operations and upstream streams back to 0); its
// persisted-queries link doing automatic persisted queries over POST, GET
// (`useGETForHashedQueries`) and a multipart subscription; and the npm
// `graphql-ws` client with APQ in the `subscribe` extensions.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { createHash } = require('node:crypto');
const WebSocket = require('ws');
const { createClient } = require('graphql-ws');
const { ApolloClient, InMemoryCache, HttpLink, gql } = require('@apollo/client/core');
const { createPersistedQueryLink } = require('@apollo/client/link/persisted-queries');
const { print } = require('graphql');
const { BOUNDS, startDemo, within } = require('../lib/harness');

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

/** `fetch` that records each request (method, URL, parsed body). */
function recordingFetch() {
  const calls = [];
  const recorded = (url, options = {}) => {
    let body = null;
    if (typeof options.body === 'string') body = JSON.parse(options.body);
    calls.push({ method: options.method ?? 'GET', url: String(url), body });
    return fetch(url, options);
  };
  return { calls, fetch: recorded };
}

function apollo(gateway, { persisted, useGET, fetchImpl } = {}) {
  const http = new HttpLink({ uri: `${gateway.http}/graphql`, fetch: fetchImpl ?? fetch });
  const link = persisted
    ? createPersistedQueryLink({ sha256, useGETForHashedQueries: !!useGET }).concat(http)
    : http;
  return new ApolloClient({
    link,
    cache: new InMemoryCache(),
    defaultOptions: { query: { fetchPolicy: 'no-cache' } },
  });
}

/** Every value of an Apollo subscription until it completes. */
function collect(observable) {
  return within(BOUNDS.waitMs, 'the subscription to complete', new Promise((resolve, reject) => {
    const values = [];
    observable.subscribe({
      next: (value) => values.push(value),
      error: reject,
      complete: () => resolve(values),
    });
  }));
}

describe('npm @apollo/client (HttpLink multipart, persisted queries)', () => {
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

  it('HttpLink runs a multipart subscription to completion', async () => {
    const client = apollo(gateway);
    const values = await collect(client.subscribe({
      query: gql`subscription { ticks(everyMs: 10, limit: 3) { seq } }`,
    }));
    assert.deepEqual(values.map((v) => v.data.ticks.seq), [1, 2, 3]);
    await gateway.waitMetric('terminus_operations', 0);
  });

  it('unsubscribing mid-stream ends the operation and its upstream stream', async () => {
    const client = apollo(gateway);
    const seen = [];
    let subscription;
    await within(BOUNDS.waitMs, 'the first tick', new Promise((resolve, reject) => {
      subscription = client.subscribe({
        query: gql`subscription { ticks(everyMs: 50) { seq } }`,
      }).subscribe({
        next: (value) => { seen.push(value); resolve(); },
        error: reject,
      });
    }));
    assert.equal(seen[0].data.ticks.seq, 1);
    assert.equal(await gateway.metric('terminus_operations'), 1);
    assert.equal(await gateway.metric('terminus_upstream_streams'), 1);
    assert.equal(await gateway.metric('terminus_http_streams'), 1);
    subscription.unsubscribe();
    await gateway.waitMetric('terminus_operations', 0);
    await gateway.waitMetric('terminus_upstream_streams', 0);
    await gateway.waitMetric('terminus_http_streams', 0);
  });

  it('the persisted-queries link registers after PERSISTED_QUERY_NOT_FOUND (POST)', async () => {
    const query = gql`query Apq { hello(name: "apq") }`;
    const first = recordingFetch();
    const result = await apollo(gateway, { persisted: true, fetchImpl: first.fetch }).query({ query });
    assert.deepEqual(result.data, { hello: 'Hello, apq!' });
    // The hash alone, refused as not found; then hash and query.
    assert.equal(first.calls.length, 2, JSON.stringify(first.calls));
    assert.equal(first.calls[0].body.query, undefined);
    assert.equal(first.calls[0].body.extensions.persistedQuery.sha256Hash, sha256(print(query)));
    assert.equal(typeof first.calls[1].body.query, 'string');
    // A new client (empty link state): the hash alone now runs, over GET.
    const second = recordingFetch();
    const again = await apollo(gateway, { persisted: true, useGET: true, fetchImpl: second.fetch })
      .query({ query });
    assert.deepEqual(again.data, { hello: 'Hello, apq!' });
    assert.equal(second.calls.length, 1, JSON.stringify(second.calls));
    assert.equal(second.calls[0].method, 'GET');
    assert.ok(second.calls[0].url.includes('extensions='), second.calls[0].url);
    assert.ok(!second.calls[0].url.includes('query='), second.calls[0].url);
  });

  it('GET with an unknown hash is retried with the query', async () => {
    const query = gql`query ApqGet { hello(name: "apq-get") }`;
    const rec = recordingFetch();
    const result = await apollo(gateway, { persisted: true, useGET: true, fetchImpl: rec.fetch })
      .query({ query });
    assert.deepEqual(result.data, { hello: 'Hello, apq-get!' });
    assert.deepEqual(rec.calls.map((c) => c.method), ['GET', 'POST']);
  });

  it('APQ on a multipart subscription', async () => {
    const query = gql`subscription ApqTicks { ticks(everyMs: 10, limit: 2) { seq } }`;
    const rec = recordingFetch();
    const values = await collect(apollo(gateway, { persisted: true, fetchImpl: rec.fetch })
      .subscribe({ query }));
    assert.deepEqual(values.map((v) => v.data.ticks.seq), [1, 2]);
    assert.equal(rec.calls.length, 2, JSON.stringify(rec.calls));
    assert.equal(rec.calls[0].body.query, undefined);
    const again = recordingFetch();
    const values2 = await collect(apollo(gateway, { persisted: true, fetchImpl: again.fetch })
      .subscribe({ query }));
    assert.deepEqual(values2.map((v) => v.data.ticks.seq), [1, 2]);
    assert.equal(again.calls.length, 1, JSON.stringify(again.calls));
    await gateway.waitMetric('terminus_operations', 0);
  });
});

describe('npm graphql-ws client with APQ in subscribe extensions', () => {
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

  it('not found, then registered with the query, then the hash alone', async () => {
    const client = createClient({ url: gateway.url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
    const query = 'subscription { ticks(everyMs: 10, limit: 2) { seq } }';
    const persistedQuery = { version: 1, sha256Hash: sha256(query) };
    const run = async (payload) => {
      const results = [];
      await within(BOUNDS.waitMs, 'iterate() to end', (async () => {
        for await (const result of client.iterate(payload)) results.push(result);
      })());
      return results;
    };
    // graphql-ws requires a string query: the empty one means "by hash".
    await assert.rejects(run({ query: '', extensions: { persistedQuery } }), (errors) => {
      assert.ok(Array.isArray(errors), String(errors));
      assert.equal(errors[0].message, 'PersistedQueryNotFound');
      assert.equal(errors[0].extensions.code, 'PERSISTED_QUERY_NOT_FOUND');
      return true;
    });
    const registered = await run({ query, extensions: { persistedQuery } });
    assert.deepEqual(registered.map((r) => r.data.ticks.seq), [1, 2]);
    const byHash = await run({ query: '', extensions: { persistedQuery } });
    assert.deepEqual(byHash.map((r) => r.data.ticks.seq), [1, 2]);
    await assert.rejects(
      run({ query: '{ hello }', extensions: { persistedQuery } }),
      (errors) => errors[0].extensions.code === 'PERSISTED_QUERY_HASH_MISMATCH',
    );
    await client.dispose();
    await gateway.waitMetric('terminus_operations', 0);
  });
});
