'use strict';
// Issue 14 with real npm peers: the gateway serves wss:// and https:// with
// certificates generated at test time (rcgen, through the
// terminus-test-certs binary), and authenticates with JWTs minted by npm
// `jose`: RS256 and ES256 keys published as a JWKS by a node HTTP server,
// HS256 from a secret file. npm `ws` and `graphql-ws` connect over wss://.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const WebSocket = require('ws');
const { createClient } = require('graphql-ws');
const { BOUNDS, REPO, RawSocket, sleep, startServe, within } = require('../lib/harness');

const ISSUER = 'https://issuer.interop.test';
const AUDIENCE = 'terminus-interop';
const HS_SECRET = 'interop-hs256-secret-interop-hs256-secret';
const HELLO = '{ hello(name: "Ada") }';

/** The rcgen PKI writer next to the gateway binary (built by 50-interop.sh). */
function certsBinary() {
  const bin = process.env.TERMINUS_TEST_CERTS_BIN
    || path.join(REPO, 'target', 'debug', 'terminus-test-certs');
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} missing: cargo build -p terminus-tests --bin terminus-test-certs (or set TERMINUS_TEST_CERTS_BIN)`);
  }
  return bin;
}

describe('wss:// and JWT (npm ws, graphql-ws, jose)', () => {
  let jose;
  let gateway;
  let jwksServer;
  let jwksHits = 0;
  let dir;
  let ca;
  const keys = {};

  /** A token signed with `alg`'s key; `claims` override the defaults. */
  async function mint(alg, claims = {}, { key, kid } = {}) {
    const now = Math.floor(Date.now() / 1000);
    const signer = new jose.SignJWT({ sub: 'interop-user', ...claims })
      .setProtectedHeader({ alg, kid: kid ?? (alg === 'HS256' ? undefined : alg.toLowerCase()) })
      .setIssuer(claims.iss ?? ISSUER)
      .setAudience(claims.aud ?? AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(claims.exp ?? now + 600);
    return signer.sign(key ?? keys[alg]);
  }

  before(async () => {
    jose = await import('jose');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'terminus-tls-jwt-'));
    execFileSync(certsBinary(), [path.join(dir, 'pki')], { timeout: BOUNDS.startMs });
    ca = fs.readFileSync(path.join(dir, 'pki', 'ca.crt'));

    const rs = await jose.generateKeyPair('RS256');
    const es = await jose.generateKeyPair('ES256');
    keys.RS256 = rs.privateKey;
    keys.ES256 = es.privateKey;
    keys.HS256 = new TextEncoder().encode(HS_SECRET);
    const jwks = {
      keys: [
        { ...(await jose.exportJWK(rs.publicKey)), kid: 'rs256', alg: 'RS256', use: 'sig' },
        { ...(await jose.exportJWK(es.publicKey)), kid: 'es256', alg: 'ES256', use: 'sig' },
      ],
    };
    jwksServer = http.createServer((req, res) => {
      jwksHits += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(jwks));
    });
    await new Promise((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    const jwksUrl = `http://127.0.0.1:${jwksServer.address().port}/jwks.json`;
    fs.writeFileSync(path.join(dir, 'hs256.secret'), HS_SECRET);
    const toml = (s) => JSON.stringify(s);
    gateway = await startServe(
      [
        '[tls]',
        `cert_file = ${toml(path.join(dir, 'pki', 'server.crt'))}`,
        `key_file = ${toml(path.join(dir, 'pki', 'server.key'))}`,
        '',
        '[auth.jwt]',
        `issuer = ${toml(ISSUER)}`,
        `audience = ${toml(AUDIENCE)}`,
        `jwks_url = ${toml(jwksUrl)}`,
        `secret_file = ${toml(path.join(dir, 'hs256.secret'))}`,
        'leeway = "0s"',
        'token_field = "authToken"',
      ].join('\n'),
      { ca },
    );
  });

  after(async () => {
    if (gateway) {
      const { code } = await gateway.stop();
      assert.equal(code, 0, `gateway exit status after SIGTERM\n${gateway.output}`);
    }
    if (jwksServer) await new Promise((resolve) => jwksServer.close(resolve));
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A graphql-ws client over wss:// that trusts the test CA and never retries. */
  function client(connectionParams, extra = {}) {
    class TlsWebSocket extends WebSocket {
      constructor(url, protocols) {
        super(url, protocols, { ca });
      }
    }
    return createClient({
      url: gateway.url,
      webSocketImpl: TlsWebSocket,
      retryAttempts: 0,
      lazy: true,
      connectionParams,
      ...extra,
    });
  }

  async function query(c) {
    const results = [];
    await within(BOUNDS.waitMs, 'iterate() to end', (async () => {
      for await (const result of c.iterate({ query: HELLO })) results.push(result);
    })());
    return results;
  }

  it('prints wss:// and https:// URLs when [tls] is on', () => {
    assert.match(gateway.output, /terminus listening on https:\/\/127\.0\.0\.1:\d+/, gateway.output);
    assert.match(gateway.output, /GraphQL \(WebSocket, POST\): wss:\/\//, gateway.output);
  });

  for (const alg of ['RS256', 'ES256', 'HS256']) {
    it(`graphql-ws over wss:// with a ${alg} token from jose`, async () => {
      const c = client({ authToken: await mint(alg) });
      try {
        assert.deepEqual(await query(c), [{ data: { hello: 'Hello, Ada!' } }]);
      } finally {
        await c.dispose();
      }
    });
  }

  it('fetched the JWKS once for all of that', () => {
    assert.equal(jwksHits, 1);
  });

  it('closes 4403 with the reason for bad tokens (raw ws over wss://)', async () => {
    const other = await jose.generateKeyPair('RS256');
    const cases = [
      [await mint('RS256', {}, { key: other.privateKey }), 'Forbidden: bad signature'],
      [await mint('ES256', { aud: 'someone-else' }), 'Forbidden: wrong audience (aud)'],
      [await mint('RS256', { iss: 'https://evil.test' }), 'Forbidden: wrong issuer (iss)'],
      [await mint('HS256', { exp: Math.floor(Date.now() / 1000) - 60 }), 'Forbidden: token expired'],
    ];
    for (const [token, reason] of cases) {
      const socket = await RawSocket.open(gateway.url, 'graphql-transport-ws', { ca });
      socket.send({ type: 'connection_init', payload: { authToken: token } });
      assert.deepEqual(await socket.closed(), { code: 4403, reason });
    }
  });

  it('answers a legacy graphql-ws init with a bad token with connection_error', async () => {
    const socket = await RawSocket.open(gateway.url, 'graphql-ws', { ca });
    socket.send({ type: 'connection_init', payload: { authToken: 'not-a-jwt' } });
    const error = await socket.next();
    assert.equal(error.type, 'connection_error');
    assert.match(error.payload.message, /^malformed token/);
    assert.equal((await socket.closed()).code, 4403);
  });

  it('closes a live socket with 4403 at exp and cancels its subscription', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    let closed;
    const c = client({ authToken: await mint('ES256', { exp }) }, {
      on: { closed: (event) => { closed = event; } },
    });
    const results = [];
    const ended = new Promise((resolve) => {
      c.subscribe({ query: 'subscription { ticks(everyMs: 100) { seq } }' }, {
        next: (r) => results.push(r),
        error: (e) => resolve(e),
        complete: () => resolve(null),
      });
    });
    const error = await within(BOUNDS.waitMs, 'the expiry close', ended);
    assert.ok(Date.now() / 1000 >= exp, 'closed before exp');
    assert.ok(results.length > 3, `only ${results.length} ticks before the close`);
    assert.equal(closed.code, 4403);
    assert.equal(closed.reason, 'Forbidden: token expired');
    assert.equal(error.code, 4403);
    await gateway.waitMetric('terminus_operations', 0);
    await c.dispose();
  });

  it('POST over https:// needs Authorization: Bearer', async () => {
    const body = JSON.stringify({ query: HELLO });
    const json = { 'content-type': 'application/json' };
    const none = await gateway.request('POST', '/graphql', json, body);
    assert.equal(none.status, 401);
    assert.equal(JSON.parse(none.text).errors[0].extensions.code, 'UNAUTHENTICATED');
    assert.match(none.headers['www-authenticate'], /^Bearer/);
    const ok = await gateway.request('POST', '/graphql', {
      ...json,
      authorization: `Bearer ${await mint('RS256')}`,
    }, body);
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(JSON.parse(ok.text), { data: { hello: 'Hello, Ada!' } });
  });

  it('refuses clients that do not trust its CA, and plaintext ws://', async () => {
    const untrusted = new RawSocket(gateway.url, 'graphql-transport-ws');
    await assert.rejects(within(BOUNDS.waitMs, 'untrusted open', untrusted.opened), /self-signed|unable to verify|certificate/);
    const plain = new RawSocket(gateway.url.replace('wss://', 'ws://'), 'graphql-transport-ws');
    await assert.rejects(within(BOUNDS.waitMs, 'plaintext open', plain.opened));
    await sleep(50);
    const failures = await gateway.metric('terminus_tls_handshake_failures_total');
    assert.ok(failures >= 2, `terminus_tls_handshake_failures_total = ${failures}`);
  });
});
