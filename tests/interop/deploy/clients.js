'use strict';
// One worker process of the rolling-deploy test (rolling.js): opens COUNT
// real npm `graphql-ws` clients to URL (HAProxy in front of several
// gateways), each subscribed to `room(name: "r<k>")`, with the client's own
// retry: on a close (1001 from a draining gateway) it reconnects through
// HAProxy to a sibling and resubscribes. Records, per client, the number n
// of every message received (the poster says `m<n>`; a room's own `seq`
// starts again from 1 when the room was empty for a moment, so it is not
// used) and every disconnection window; answers the parent's
// messages over IPC: {cmd: 'status'} and {cmd: 'report'}, {cmd: 'stop'}.

const WebSocket = require('ws');
const { createClient } = require('graphql-ws');

const URL = process.env.DEPLOY_URL;
const FIRST = Number(process.env.DEPLOY_FIRST);
const COUNT = Number(process.env.DEPLOY_COUNT);
const ROOMS = Number(process.env.DEPLOY_ROOMS);
/** Retry waits are spread over this many ms so reconnects do not stampede. */
const RETRY_SPREAD_MS = Number(process.env.DEPLOY_RETRY_SPREAD_MS || 500);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Tracked {
  constructor(index) {
    this.index = index;
    this.room = `r${index % ROOMS}`;
    this.seqs = new Set();
    this.connected = false;
    this.subscribedAt = 0;
    this.closedAt = 0;
    this.reconnects = []; // ms from close to the next `connected`
    this.downMs = 0;
    this.closeCodes = {};
    this.errors = [];
    this.completed = false;
    this.client = createClient({
      url: URL,
      webSocketImpl: WebSocket,
      lazy: false,
      retryAttempts: Infinity,
      shouldRetry: () => true,
      retryWait: async () => sleep(50 + Math.random() * RETRY_SPREAD_MS),
      on: {
        connected: () => {
          this.connected = true;
          if (this.closedAt) {
            const took = Date.now() - this.closedAt;
            this.reconnects.push(took);
            this.downMs += took;
            this.closedAt = 0;
          }
        },
        closed: (event) => {
          if (this.connected || !this.closedAt) this.closedAt = Date.now();
          this.connected = false;
          const code = event && event.code !== undefined ? event.code : 'none';
          this.closeCodes[code] = (this.closeCodes[code] || 0) + 1;
        },
      },
    });
    this.unsubscribe = this.client.subscribe(
      { query: `subscription { room(name: "${this.room}") { text } }` },
      {
        next: (value) => {
          const text = value && value.data && value.data.room && value.data.room.text;
          const n = typeof text === 'string' && text.startsWith('m') ? Number(text.slice(1)) : NaN;
          if (Number.isInteger(n)) this.seqs.add(n);
          else this.errors.push(JSON.stringify(value));
        },
        error: (error) => this.errors.push(String(error && (error.message || error.reason || error))),
        complete: () => { this.completed = true; },
      },
    );
  }
}

/** New clients per second from this worker (the ramp). */
const RAMP_PER_SEC = Number(process.env.DEPLOY_RAMP_PER_SEC || 100);

const clients = [];
const ramp = (async () => {
  const t0 = Date.now();
  for (let i = 0; i < COUNT; i += 1) {
    clients.push(new Tracked(FIRST + i));
    const due = t0 + ((i + 1) * 1000) / RAMP_PER_SEC;
    if (due > Date.now()) await sleep(due - Date.now());
  }
})();

process.on('message', async (message) => {
  if (message.cmd === 'status') {
    process.send({
      cmd: 'status',
      connected: clients.filter((c) => c.connected).length,
      received: clients.reduce((n, c) => n + c.seqs.size, 0),
      // Clients that got at least `min` messages since `since` was asked.
    });
  } else if (message.cmd === 'report') {
    process.send({
      cmd: 'report',
      clients: clients.map((c) => ({
        index: c.index,
        room: c.room,
        connected: c.connected,
        completed: c.completed,
        seqs: [...c.seqs],
        reconnects: c.reconnects,
        downMs: c.downMs + (c.closedAt ? Date.now() - c.closedAt : 0),
        closeCodes: c.closeCodes,
        errors: c.errors.slice(0, 3),
      })),
    });
  } else if (message.cmd === 'stop') {
    await ramp;
    for (const c of clients) {
      c.unsubscribe();
      await c.client.dispose();
    }
    process.exit(0);
  }
});
process.send({ cmd: 'started', count: COUNT });
