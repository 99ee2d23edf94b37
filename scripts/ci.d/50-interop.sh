# Real npm clients against the real gateway binary (issue 8): graphql-ws 6,
# graphql-sse 2 (issue 15, /graphql/stream),
# subscriptions-transport-ws 0.11 and raw `ws` frames (tests/interop).
# Builds the debug binary, the profile the other stages build, so nothing is
# compiled twice; installs the locked npm packages into tests/interop with
# the npm cache under .cache/; runs node's built-in test runner, one test
# file at a time (each file starts its own gateway on a free port).
set -euo pipefail
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "tests/interop needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
cargo build -p terminus -p terminus-tests --bin terminus-test-certs
export TERMINUS_BIN="$PWD/target/debug/terminus"
cd tests/interop
npm ci --cache "$OLDPWD/.cache/npm" --no-audit --no-fund --loglevel=error
# --test-timeout bounds each test as a whole; every wait inside is bounded
# too (TERMINUS_INTEROP_* in tests/interop/README.md).
node --test --test-concurrency=1 --test-timeout="${TERMINUS_INTEROP_TEST_MS:-120000}" test/*.test.js
