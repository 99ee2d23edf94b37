'use strict';
// graphql-transport-ws with raw `ws` frames: the exact messages and close
// codes of docs/protocol.md against `terminus demo`.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { BOUNDS, RawSocket, readyTransportWs, startDemo, ticksQuery } = require('../lib/harness');

const HELLO = '{ hello(name: "Ada") }';

describe('graphql-transport-ws, raw frames', () => {
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

  it('negotiates the subprotocol and answers ping before init with pong', async () => {
    const socket = await RawSocket.open(gateway.url, 'graphql-transport-ws');
    assert.equal(socket.protocol, 'graphql-transport-ws');
    socket.send({ type: 'ping', payload: { n: 1 } });
    const pong = await socket.next();
    assert.equal(pong.type, 'pong');
    socket.send({ type: 'connection_init', payload: {} });
    assert.equal((await socket.next()).type, 'connection_ack');
    // An unsolicited pong is a heartbeat: ignored, the connection stays.
    socket.send({ type: 'pong' });
    assert.deepEqual(await socket.drainFor(), []);
    assert.equal(socket.close, null);
    await socket.end();
  });

  it('refuses a handshake that offers no known subprotocol', async () => {
    const socket = new RawSocket(gateway.url, 'graphql-nonsense');
    let outcome;
    try {
      await socket.opened;
      outcome = { close: await socket.closed() };
    } catch (err) {
      outcome = { status: err.status };
    }
    assert.ok(
      outcome.status === 400 || (outcome.close && outcome.close.code === 4406),
      `expected HTTP 400 or close 4406, got ${JSON.stringify(outcome)}`,
    );
  });

  it('answers a query with one next then complete', async () => {
    const socket = await readyTransportWs(gateway.url);
    socket.send({ type: 'subscribe', id: 'q1', payload: { query: HELLO } });
    assert.deepEqual(await socket.next(), {
      type: 'next',
      id: 'q1',
      payload: { data: { hello: 'Hello, Ada!' } },
    });
    assert.deepEqual(await socket.next(), { type: 'complete', id: 'q1' });
    // Variables and operationName, optional fields as null.
    socket.send({
      type: 'subscribe',
      id: 'q2',
      payload: {
        query: 'query Greet($n: String) { hello(name: $n) }',
        operationName: 'Greet',
        variables: { n: 'Grace' },
        extensions: null,
      },
    });
    assert.deepEqual(await socket.next(), {
      type: 'next',
      id: 'q2',
      payload: { data: { hello: 'Hello, Grace!' } },
    });
    assert.deepEqual(await socket.next(), { type: 'complete', id: 'q2' });
    await socket.end();
  });

  it('streams a subscription with a limit, then completes; the id may be reused', async () => {
    const socket = await readyTransportWs(gateway.url);
    for (let round = 0; round < 2; round++) {
      socket.send({ type: 'subscribe', id: 't', payload: { query: ticksQuery({ everyMs: 10, limit: 3 }) } });
      for (let seq = 1; seq <= 3; seq++) {
        assert.deepEqual(await socket.next(), { type: 'next', id: 't', payload: { data: { ticks: { seq } } } });
      }
      assert.deepEqual(await socket.next(), { type: 'complete', id: 't' });
    }
    await socket.end();
  });

  it('reports an upstream failure (failAt) as error for that operation only', async () => {
    const socket = await readyTransportWs(gateway.url);
    socket.send({ type: 'subscribe', id: 'f', payload: { query: ticksQuery({ everyMs: 10, failAt: 3 }) } });
    for (let seq = 1; seq <= 2; seq++) {
      assert.deepEqual(await socket.next(), { type: 'next', id: 'f', payload: { data: { ticks: { seq } } } });
    }
    const error = await socket.next();
    assert.equal(error.type, 'error', JSON.stringify(error));
    assert.equal(error.id, 'f');
    assert.ok(Array.isArray(error.payload) && error.payload.length > 0, JSON.stringify(error));
    for (const e of error.payload) assert.equal(typeof e.message, 'string', JSON.stringify(e));
    // Nothing follows error for that id, not even complete.
    assert.deepEqual(await socket.drainFor(), []);
    await gateway.waitMetric('terminus_operations', 0);
    await gateway.waitMetric('terminus_upstream_streams', 0);
    // The connection still serves.
    socket.send({ type: 'subscribe', id: 'after', payload: { query: HELLO } });
    assert.equal((await socket.next()).type, 'next');
    assert.deepEqual(await socket.next(), { type: 'complete', id: 'after' });
    await socket.end();
  });

  it('reports a validation failure as error', async () => {
    const socket = await readyTransportWs(gateway.url);
    socket.send({ type: 'subscribe', id: 'v', payload: { query: '{ nope }' } });
    const error = await socket.next();
    assert.equal(error.type, 'error', JSON.stringify(error));
    assert.equal(error.id, 'v');
    assert.ok(Array.isArray(error.payload) && error.payload.length > 0);
    assert.deepEqual(await socket.drainFor(), []);
    await socket.end();
  });

  it('stops a subscription on client complete: silent afterwards, operations back to 0', async () => {
    const socket = await readyTransportWs(gateway.url);
    socket.send({ type: 'subscribe', id: 'c', payload: { query: ticksQuery({ everyMs: 20 }) } });
    assert.deepEqual(await socket.next(), { type: 'next', id: 'c', payload: { data: { ticks: { seq: 1 } } } });
    assert.equal(await gateway.metric('terminus_operations'), 1);
    socket.send({ type: 'complete', id: 'c' });
    // Ticks already on the wire may still arrive; after they are read, nothing more for c.
    await socket.drainFor();
    assert.deepEqual(await socket.drainFor(BOUNDS.silenceMs), [], 'messages after complete');
    await gateway.waitMetric('terminus_operations', 0);
    await gateway.waitMetric('terminus_upstream_streams', 0);
    // Messages for unknown or ended ids are ignored, not errors.
    socket.send({ type: 'complete', id: 'c' });
    socket.send({ type: 'complete', id: 'never-existed' });
    assert.deepEqual(await socket.drainFor(), []);
    assert.equal(socket.close, null);
    await socket.end();
  });

  it('closes 4400 on invalid JSON', async () => {
    const socket = await readyTransportWs(gateway.url);
    socket.send('{not json');
    const close = await socket.closed();
    assert.equal(close.code, 4400, JSON.stringify(close));
    assert.ok(close.reason.length > 0, 'a short reason');
  });

  it('closes 4400 on an unknown message type', async () => {
    const socket = await readyTransportWs(gateway.url);
    socket.send({ type: 'subscribe_please', id: 'x' });
    assert.equal((await socket.closed()).code, 4400);
  });

  it('closes 4400 on a server-to-client type sent by the client', async () => {
    const socket = await readyTransportWs(gateway.url);
    socket.send({ type: 'next', id: 'x', payload: { data: {} } });
    assert.equal((await socket.closed()).code, 4400);
  });

  it('closes 4400 on a subscribe without a query', async () => {
    const socket = await readyTransportWs(gateway.url);
    socket.send({ type: 'subscribe', id: 'x', payload: {} });
    assert.equal((await socket.closed()).code, 4400);
  });

  it('closes 4400 on a subscribe with an empty id', async () => {
    const socket = await readyTransportWs(gateway.url);
    socket.send({ type: 'subscribe', id: '', payload: { query: HELLO } });
    assert.equal((await socket.closed()).code, 4400);
  });

  it('closes 4401 Unauthorized on subscribe before connection_ack', async () => {
    const socket = await RawSocket.open(gateway.url, 'graphql-transport-ws');
    socket.send({ type: 'subscribe', id: 's', payload: { query: HELLO } });
    const close = await socket.closed();
    assert.deepEqual(close, { code: 4401, reason: 'Unauthorized' });
  });

  it('closes 4409 on a subscribe whose id is still active, and cancels its operations', async () => {
    const socket = await readyTransportWs(gateway.url);
    socket.send({ type: 'subscribe', id: 'dup', payload: { query: ticksQuery({ everyMs: 50 }) } });
    assert.equal((await socket.next()).id, 'dup');
    socket.send({ type: 'subscribe', id: 'dup', payload: { query: ticksQuery({ everyMs: 50 }) } });
    let close;
    // Ticks of the first may arrive before the close.
    for (;;) {
      try {
        const message = await socket.next();
        assert.equal(message.id, 'dup', JSON.stringify(message));
      } catch {
        close = await socket.closed();
        break;
      }
    }
    assert.deepEqual(close, { code: 4409, reason: 'Subscriber for dup already exists' });
    await gateway.waitMetric('terminus_operations', 0);
  });

  it('truncates a long 4409 reason to the 123 bytes a close frame allows', async () => {
    const socket = await readyTransportWs(gateway.url);
    const id = 'é'.repeat(100); // 200 bytes of UTF-8
    socket.send({ type: 'subscribe', id, payload: { query: ticksQuery({ everyMs: 1000 }) } });
    socket.send({ type: 'subscribe', id, payload: { query: ticksQuery({ everyMs: 1000 }) } });
    const close = await socket.closed();
    assert.equal(close.code, 4409);
    assert.ok(Buffer.byteLength(close.reason) <= 123, `${Buffer.byteLength(close.reason)} bytes`);
    assert.ok(close.reason.startsWith('Subscriber for éé'), close.reason);
    assert.ok(!close.reason.includes('\uFFFD'), 'cut inside a character');
    await gateway.waitMetric('terminus_operations', 0);
  });

  it('closes 4429 on a second connection_init', async () => {
    const socket = await readyTransportWs(gateway.url);
    socket.send({ type: 'connection_init' });
    const close = await socket.closed();
    assert.deepEqual(close, { code: 4429, reason: 'Too many initialisation requests' });
  });

  it('closes 4429 on a second connection_init sent before the ack', async () => {
    const socket = await RawSocket.open(gateway.url, 'graphql-transport-ws');
    socket.send({ type: 'connection_init' });
    socket.send({ type: 'connection_init' });
    const messages = [];
    let close;
    for (;;) {
      try {
        messages.push(await socket.next());
      } catch {
        close = await socket.closed();
        break;
      }
    }
    assert.equal(close.code, 4429, JSON.stringify({ close, messages }));
    for (const m of messages) assert.equal(m.type, 'connection_ack');
  });

  it('stops every operation when the client socket drops', async () => {
    const socket = await readyTransportWs(gateway.url);
    for (const id of ['a', 'b', 'c']) {
      socket.send({ type: 'subscribe', id, payload: { query: ticksQuery({ everyMs: 30 }) } });
    }
    const seen = new Set();
    while (seen.size < 3) seen.add((await socket.next()).id);
    assert.equal(await gateway.metric('terminus_operations'), 3);
    socket.ws.terminate(); // no close frame
    await gateway.waitMetric('terminus_operations', 0);
    await gateway.waitMetric('terminus_upstream_streams', 0);
    await gateway.waitMetric('terminus_connections', 0);
  });
});
