// A benchmark peer for Terminus: the demo schema (`hello`, `ticks`) on the
// graphql-ws reference server (`useServer` with `ws`, graphql-js), over
// `graphql-transport-ws` (graphql-ws does not speak the legacy protocol).
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
// GET /metrics exposes the gauges the load tool polls: bench_connections,
// bench_operations (live tick iterators), process_open_fds,
// process_resident_memory_bytes.
//
// Usage: node server.mjs [--listen 127.0.0.1:8082]; prints
// `listening on http://ADDR` once bound; runs until SIGINT/SIGTERM.

import { readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createServer } from 'node:http';
import {
  GraphQLInt,
  GraphQLNonNull,
  GraphQLObjectType,
  GraphQLSchema,
  GraphQLString,
} from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';

const gauges = { connections: 0, operations: 0 };

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

const Tick = new GraphQLObjectType({
  name: 'Tick',
  description: 'One message of the Ticks stream.',
  fields: { seq: { type: new GraphQLNonNull(GraphQLInt) } },
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
    },
  }),
});

function metrics() {
  // readdirSync holds one fd on the directory while it reads: leave it out.
  const fds = Math.max(0, readdirSync('/proc/self/fd').length - 1);
  return [
    `bench_connections ${gauges.connections}`,
    `bench_operations ${gauges.operations}`,
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
