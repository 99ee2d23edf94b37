'use strict';
// The legacy `graphql-ws` subprotocol (subscriptions-transport-ws) with raw
// `ws` frames: queued starts, ka, stop -> complete, connection_terminate.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { RawSocket, startDemo, ticksQuery } = require('../lib/harness');

const HELLO = '{ hello(name: "Ada") }';

/** Opens a legacy socket, sends connection_init and reads the ack and the first ka. */
async function readyLegacy(url) {
  const socket = await RawSocket.open(url, 'graphql-ws');
  assert.equal(socket.protocol, 'graphql-ws');
  socket.send({ type: 'connection_init', payload: {} });
  assert.equal((await socket.next()).type, 'connection_ack');
  assert.deepEqual(await socket.next(), { type: 'ka' });
  return socket;
}

describe('legacy graphql-ws, raw frames', () => {
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

  it('queues a start sent before the ack and runs it after connection_ack and ka', async () => {
    const socket = await RawSocket.open(gateway.url, 'graphql-ws');
    // Both frames in one go, the way deployed clients send them.
    socket.send({ type: 'connection_init', payload: {} });
    socket.send({ type: 'start', id: '1', payload: { query: HELLO } });
    assert.equal((await socket.next()).type, 'connection_ack');
    assert.deepEqual(await socket.next(), { type: 'ka' });
    assert.deepEqual(await socket.next(), {
      type: 'data',
      id: '1',
      payload: { data: { hello: 'Hello, Ada!' } },
    });
    assert.deepEqual(await socket.next(), { type: 'complete', id: '1' });
    await socket.end();
  });

  it('never runs a start without connection_init', async () => {
    const startedBefore = await gateway.metric('terminus_operations_started_total');
    const socket = await RawSocket.open(gateway.url, 'graphql-ws');
    socket.send({ type: 'start', id: '1', payload: { query: HELLO } });
    // Whatever the gateway answers (an error, a close, or nothing), it is never data.
    const messages = await socket.drainFor(500);
    for (const m of messages) assert.notEqual(m.type, 'data', JSON.stringify(messages));
    // Nothing ran; the start waits behind the missing init and is counted
    // as held in terminus_operations (docs/metrics.md) until the socket ends.
    assert.equal(await gateway.metric('terminus_operations_started_total'), startedBefore);
    assert.equal(await gateway.metric('terminus_operations'), 1);
    await socket.end();
    await gateway.waitMetric('terminus_operations', 0);
  });

  it('streams a subscription with a limit as data messages, then complete', async () => {
    const socket = await readyLegacy(gateway.url);
    socket.send({
      type: 'start',
      id: 't',
      payload: { query: ticksQuery({ everyMs: 10, limit: 3 }), variables: null, operationName: null },
    });
    for (let seq = 1; seq <= 3; seq++) {
      assert.deepEqual(await socket.next(), { type: 'data', id: 't', payload: { data: { ticks: { seq } } } });
    }
    assert.deepEqual(await socket.next(), { type: 'complete', id: 't' });
    await socket.end();
  });

  it('reports an upstream failure (failAt) for that operation', async () => {
    const socket = await readyLegacy(gateway.url);
    socket.send({ type: 'start', id: 'f', payload: { query: ticksQuery({ everyMs: 10, failAt: 2 }) } });
    assert.deepEqual(await socket.next(), { type: 'data', id: 'f', payload: { data: { ticks: { seq: 1 } } } });
    const error = await socket.next();
    assert.equal(error.id, 'f', JSON.stringify(error));
    assert.equal(error.type, 'error', JSON.stringify(error));
    assert.ok(error.payload !== undefined && error.payload !== null, JSON.stringify(error));
    await gateway.waitMetric('terminus_operations', 0);
    await socket.end();
  });

  it('answers stop with complete and stops the operation', async () => {
    const socket = await readyLegacy(gateway.url);
    socket.send({ type: 'start', id: 's', payload: { query: ticksQuery({ everyMs: 20 }) } });
    assert.deepEqual(await socket.next(), { type: 'data', id: 's', payload: { data: { ticks: { seq: 1 } } } });
    socket.send({ type: 'stop', id: 's' });
    for (;;) {
      const message = await socket.next();
      assert.equal(message.id, 's', JSON.stringify(message));
      if (message.type === 'complete') break;
      assert.equal(message.type, 'data', JSON.stringify(message));
    }
    assert.deepEqual(
      (await socket.drainFor()).filter((m) => m.type !== 'ka'),
      [],
      'messages after complete',
    );
    await gateway.waitMetric('terminus_operations', 0);
    await socket.end();
  });

  it('closes the connection on connection_terminate and stops its operations', async () => {
    const socket = await readyLegacy(gateway.url);
    socket.send({ type: 'start', id: 'x', payload: { query: ticksQuery({ everyMs: 20 }) } });
    assert.equal((await socket.next()).id, 'x');
    socket.send({ type: 'connection_terminate' });
    const close = await socket.closed();
    assert.ok([1000, 1005].includes(close.code), `close after connection_terminate: ${JSON.stringify(close)}`);
    await gateway.waitMetric('terminus_operations', 0);
    await gateway.waitMetric('terminus_connections', 0);
  });

  it('answers a duplicate active start id with an error and keeps the running operation', async () => {
    const socket = await readyLegacy(gateway.url);
    socket.send({ type: 'start', id: 'd', payload: { query: ticksQuery({ everyMs: 30 }) } });
    assert.deepEqual(await socket.next(), { type: 'data', id: 'd', payload: { data: { ticks: { seq: 1 } } } });
    socket.send({ type: 'start', id: 'd', payload: { query: HELLO } });
    let error;
    let lastSeq = 1;
    while (!error) {
      const message = await socket.next();
      assert.equal(message.id, 'd', JSON.stringify(message));
      if (message.type === 'error') error = message;
      else lastSeq = message.payload.data.ticks.seq;
    }
    assert.ok(Array.isArray(error.payload) && error.payload.length > 0, JSON.stringify(error));
    // The first operation keeps running: its next tick follows.
    const tick = await socket.next();
    assert.deepEqual(tick, { type: 'data', id: 'd', payload: { data: { ticks: { seq: lastSeq + 1 } } } });
    assert.equal(await gateway.metric('terminus_operations'), 1);
    socket.send({ type: 'stop', id: 'd' });
    await gateway.waitMetric('terminus_operations', 0);
    await socket.end();
  });

  it('answers an unparsable frame with connection_error and keeps serving', async () => {
    const socket = await readyLegacy(gateway.url);
    socket.send('{not json');
    const reply = await socket.next();
    assert.equal(reply.type, 'connection_error', JSON.stringify(reply));
    socket.send({ type: 'start', id: 'q', payload: { query: HELLO } });
    assert.deepEqual(await socket.next(), { type: 'data', id: 'q', payload: { data: { hello: 'Hello, Ada!' } } });
    assert.deepEqual(await socket.next(), { type: 'complete', id: 'q' });
    await socket.end();
  });
});
