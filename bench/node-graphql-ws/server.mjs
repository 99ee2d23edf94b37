// A benchmark peer for Terminus: the demo schema (`hello`, `ticks`, and the
// shared fields `clock`, `room`, `say`) on the graphql-ws reference server
// (`useServer` with `ws`, graphql-js), over `graphql-transport-ws`
// (graphql-ws does not speak the legacy protocol).
//
// Ticks come from an in-process timer per subscription on a fixed schedule:
// tick n is due n * everyMs after the subscription started (setTimeout for
// the time left; a tick late by more than a period re-bases the schedule).
// There is no gRPC hop: Terminus gets the same ticks from its demo upstream
// over loopback HTTP/2.
//
// The tick iterator is hand-written rather than an async generator so that
// `return()` (client complete, socket closed) clears the timer at once; an
// async generator would only notice at its next `await`, i.e. up to everyMs
// later, and the peer would look worse at reclaiming than it has to.
//
// The shared fields are built the way graphql-ws users build them: a
// `PubSub` from graphql-subscriptions (an EventEmitter underneath) and one
// shared timer per distinct `everyMs`, with Terminus's demo
// semantics: `clock(everyMs)` ticks at every whole period since the server
// started, `seq` = the periods elapsed since then, so every subscriber of
// the same period gets the same ticks with the same `seq` (the timer is
// started by the period's first subscriber and cleared when its last one
// leaves). `say(room, text)` publishes `{room, seq, text}` to the room's
// topic, `seq` counting the room's messages from 1; a room exists while it
// has subscribers (its count starts again after it emptied); `room(name)`
// subscribes to that topic.
//
// GET /metrics exposes the gauges the load tool polls: bench_connections,
// bench_operations (live subscriptions of any field), bench_shared_streams
// (running clock timers plus rooms, which exist while they have subscribers), process_open_fds,
// process_resident_memory_bytes.
//
// Usage: node server.mjs [--listen 127.0.0.1:8082]; prints
// `listening on http://ADDR` once bound; runs until SIGINT/SIGTERM.

import { readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createServer } from 'node:http';
import {
  GraphQLBoolean,
  GraphQLInt,
  GraphQLNonNull,
  GraphQLObjectType,
  GraphQLSchema,
  GraphQLString,
} from 'graphql';
import { PubSub } from 'graphql-subscriptions';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';

const gauges = { connections: 0, operations: 0 };

// One emitter for every topic; thousands of subscribers listen to one topic.
const pubsub = new PubSub();
pubsub.ee.setMaxListeners(0);

function parseListen(argv) {
  let listen = '127.0.0.1:8082';
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--listen' && i + 1 < argv.length) {
      listen = argv[i + 1];
      i += 1;
    } else {
      console.error('usage: node server.mjs [--listen HOST:PORT]');
      process.exit(2);
    }
  }
  const colon = listen.lastIndexOf(':');
  const port = Number(listen.slice(colon + 1));
  if (colon < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--listen ${listen}: expected HOST:PORT`);
    process.exit(2);
  }
  return { host: listen.slice(0, colon), port };
}

// One tick every `everyMs`; ends after `limit` ticks; fails at `failAt`.
function ticks({ everyMs, limit, failAt }) {
  const every = Math.max(1, everyMs);
  let seq = 1;
  let due = performance.now() + every;
  let timer = null;
  let settle = null; // resolves the pending next() with {done: true}
  let finished = false;
  gauges.operations += 1;
  const finish = () => {
    if (finished) return;
    finished = true;
    gauges.operations -= 1;
    if (timer !== null) clearTimeout(timer);
    timer = null;
  };
  const ended = { done: true, value: undefined };
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    next() {
      if (finished || (limit != null && seq > limit)) {
        finish();
        return Promise.resolve(ended);
      }
      return new Promise((resolve, reject) => {
        settle = resolve;
        timer = setTimeout(() => {
          timer = null;
          settle = null;
          const n = seq;
          seq += 1;
          const now = performance.now();
          due += every;
          if (due < now) due = now + every;
          if (failAt === n) {
            finish();
            reject(new Error(`tick ${n} failed on purpose`));
            return;
          }
          resolve({ done: false, value: { seq: n } });
        }, Math.max(0, due - performance.now()));
      });
    },
    return() {
      const pending = settle;
      settle = null;
      finish();
      if (pending !== null) pending(ended);
      return Promise.resolve(ended);
    },
    throw(error) {
      finish();
      return Promise.reject(error);
    },
  };
}

// Wraps a PubSub iterator so the subscriber is counted while it lives and
// `onEnd` runs once when it ends (client complete, socket closed).
function counted(iterator, onEnd) {
  let finished = false;
  gauges.operations += 1;
  const finish = () => {
    if (finished) return;
    finished = true;
    gauges.operations -= 1;
    onEnd();
  };
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    next() {
      return iterator.next();
    },
    return() {
      finish();
      return iterator.return();
    },
    throw(error) {
      finish();
      return iterator.throw(error);
    },
  };
}

// clock: one shared timer per period, started by its first subscriber, at
// every whole period since the server started.
const epoch = performance.now();
const clocks = new Map(); // everyMs -> { timer, subscribers }
function clock({ everyMs }) {
  const every = Math.max(1, everyMs);
  const topic = `clock:${every}`;
  let state = clocks.get(every);
  if (state === undefined) {
    state = { timer: null, subscribers: 0 };
    // A timer re-armed for the next whole period at each tick (a plain
    // setInterval drifts later and later, and would skip a seq).
    // A timer may fire a little early: never repeat the last seq.
    const arm = (last) => {
      const since = performance.now() - epoch;
      const seq = Math.max(last + 1, Math.floor(since / every) + 1);
      state.timer = setTimeout(() => {
        pubsub.publish(topic, { seq });
        arm(seq);
      }, Math.max(0, seq * every - since));
    };
    arm(0);
    clocks.set(every, state);
  }
  state.subscribers += 1;
  return counted(pubsub.asyncIterableIterator(topic), () => {
    state.subscribers -= 1;
    if (state.subscribers === 0) {
      clearTimeout(state.timer);
      clocks.delete(every);
    }
  });
}

// room: a topic per room name; say() numbers the room's messages from 1.
const rooms = new Map(); // name -> { seq, subscribers }
function room({ name }) {
  let state = rooms.get(name);
  if (state === undefined) {
    state = { seq: 0, subscribers: 0 };
    rooms.set(name, state);
  }
  state.subscribers += 1;
  return counted(pubsub.asyncIterableIterator(`room:${name}`), () => {
    state.subscribers -= 1;
    if (state.subscribers === 0) rooms.delete(name);
  });
}
function say({ room: name, text }) {
  const state = rooms.get(name);
  if (state !== undefined) {
    state.seq += 1;
    pubsub.publish(`room:${name}`, { room: name, seq: state.seq, text });
  }
  return true;
}

const Tick = new GraphQLObjectType({
  name: 'Tick',
  description: 'One message of the Ticks stream.',
  fields: { seq: { type: new GraphQLNonNull(GraphQLInt) } },
});

const RoomEvent = new GraphQLObjectType({
  name: 'RoomEvent',
  description: 'One message said in a room.',
  fields: {
    room: { type: new GraphQLNonNull(GraphQLString) },
    seq: { type: new GraphQLNonNull(GraphQLInt) },
    text: { type: new GraphQLNonNull(GraphQLString) },
  },
});

const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: 'Query',
    fields: {
      hello: {
        type: new GraphQLNonNull(GraphQLString),
        args: { name: { type: GraphQLString } },
        resolve: (_root, { name }) => `Hello, ${name || 'world'}!`,
      },
    },
  }),
  mutation: new GraphQLObjectType({
    name: 'Mutation',
    fields: {
      say: {
        type: new GraphQLNonNull(GraphQLBoolean),
        args: {
          room: { type: new GraphQLNonNull(GraphQLString) },
          text: { type: new GraphQLNonNull(GraphQLString) },
        },
        resolve: (_root, args) => say(args),
      },
    },
  }),
  subscription: new GraphQLObjectType({
    name: 'Subscription',
    fields: {
      ticks: {
        type: new GraphQLNonNull(Tick),
        args: {
          everyMs: { type: new GraphQLNonNull(GraphQLInt) },
          limit: { type: GraphQLInt },
          failAt: { type: GraphQLInt },
        },
        subscribe: (_root, args) => ticks(args),
        resolve: (tick) => tick,
      },
      clock: {
        type: new GraphQLNonNull(Tick),
        args: { everyMs: { type: new GraphQLNonNull(GraphQLInt) } },
        subscribe: (_root, args) => clock(args),
        resolve: (tick) => tick,
      },
      room: {
        type: new GraphQLNonNull(RoomEvent),
        args: { name: { type: new GraphQLNonNull(GraphQLString) } },
        subscribe: (_root, args) => room(args),
        resolve: (event) => event,
      },
    },
  }),
});

function metrics() {
  // readdirSync holds one fd on the directory while it reads: leave it out.
  const fds = Math.max(0, readdirSync('/proc/self/fd').length - 1);
  return [
    `bench_connections ${gauges.connections}`,
    `bench_operations ${gauges.operations}`,
    `bench_shared_streams ${clocks.size + rooms.size}`,
    `process_open_fds ${fds}`,
    `process_resident_memory_bytes ${process.memoryUsage.rss()}`,
    '',
  ].join('\n');
}

const { host, port } = parseListen(process.argv.slice(2));
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/metrics') {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(metrics());
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  }
});
const wss = new WebSocketServer({ server, path: '/graphql' });
wss.on('connection', (socket) => {
  gauges.connections += 1;
  socket.once('close', () => {
    gauges.connections -= 1;
  });
});
useServer({ schema }, wss);

server.on('error', (error) => {
  console.error(`cannot listen on ${host}:${port}: ${error.message}`);
  process.exit(1);
});
server.listen({ host, port }, () => {
  const addr = server.address();
  console.log(`listening on http://${addr.address}:${addr.port}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    wss.close();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
