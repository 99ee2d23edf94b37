# Several gateways behind HAProxy (issue 13, docs/deploy.md): hot reload
# (tests/tests/reload.rs: POST /admin/reload in process, SIGHUP to the
# binary), the drain and capacity rules (core drain.rs, cargo test in
# 20-core), then tests/interop/deploy/rolling.js: HAProxy (installed here,
# idempotently, with nginx for `nginx -t` of deploy/nginx.conf), one demo
# upstream, three `terminus serve`, cross-instance rooms, and a rolling
# restart under 3,000 npm graphql-ws clients (DEPLOY_CLIENTS) with rooms
# posted to at a steady rate. HAProxy and the gateways are started and
# stopped by the test, on loopback ports; the whole run is bounded by
# DEPLOY_TOTAL_MS (default 5 min), each wait by DEPLOY_WAIT_MS.
set -euo pipefail
if ! command -v haproxy >/dev/null 2>&1 || ! command -v nginx >/dev/null 2>&1; then
  echo "installing haproxy and nginx"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -q
  timeout 600 apt-get install -y -q --no-install-recommends haproxy nginx-light ||
    timeout 600 apt-get install -y -q --no-install-recommends haproxy nginx
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "tests/interop/deploy needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
cargo test -p terminus-tests --test reload
# 3,000 clients, HAProxy and three gateways share two cores with the Node
# clients: the rolling deploy runs the release gateway (the soak stage,
# 80-soak.sh, builds it too; cargo builds it once). A debug gateway with
# about 2,000 connections on a busy two-core machine answers /readyz too
# late for HAProxy's checks; DEPLOY_CLIENTS=1000 runs with a debug build.
cargo build --release -p terminus
export TERMINUS_BIN="${TERMINUS_BIN:-$PWD/target/release/terminus}"
cd tests/interop
npm ci --cache "$OLDPWD/.cache/npm" --no-audit --no-fund --loglevel=error
# Many sockets: the clients, HAProxy's two sides and the gateways.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
node deploy/rolling.js
