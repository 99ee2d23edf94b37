# The short soak: the release gateway (`terminus demo`) under 1,000
# connections with one subscription each for 30 s, then every connection
# dropped abruptly (TCP close, no complete); fails on any leak: live
# operations, upstream streams, tasks or fds not back to their baseline
# within the bound, or upstream connections other than 1 at any sample.
#
# Knobs (environment, all optional): SOAK_CONNECTIONS (1000), SOAK_HOLD (30s),
# SOAK_EVERY_MS (250), SOAK_RECLAIM_TIMEOUT (5s: the bound on the reclaim,
# generous for a shared CI machine; docs/BENCHMARKS.md measures the real
# time), SOAK_START_TIMEOUT (30 s to wait for the gateway to listen).
# Reuses the release build an earlier stage made, if any (cargo decides).
set -euo pipefail
connections="${SOAK_CONNECTIONS:-1000}"
hold="${SOAK_HOLD:-30s}"
every_ms="${SOAK_EVERY_MS:-250}"
reclaim_timeout="${SOAK_RECLAIM_TIMEOUT:-5s}"
start_timeout="${SOAK_START_TIMEOUT:-30}"

cargo build --release -p terminus -p terminus-load

out=.cache/soak
mkdir -p "$out"
log="$out/gateway.log"
gateway_pid=
cleanup() {
  if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then
    kill -TERM "$gateway_pid" 2>/dev/null || true
    # Bounded: the drain has its own bound; do not wait forever for it.
    for _ in $(seq 50); do kill -0 "$gateway_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$gateway_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# Port 0: the kernel picks a free port; the gateway prints the one it got.
./target/release/terminus demo --listen 127.0.0.1:0 >"$log" 2>&1 &
gateway_pid=$!
addr=
for _ in $(seq $((start_timeout * 5))); do
  addr=$(sed -n 's#^terminus listening on http://\([0-9.:]*\).*#\1#p' "$log" | head -n1)
  [ -n "$addr" ] && break
  if ! kill -0 "$gateway_pid" 2>/dev/null; then
    echo "terminus demo exited before listening:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done
if [ -z "$addr" ]; then
  echo "terminus demo did not print its address within ${start_timeout} s:" >&2
  cat "$log" >&2
  exit 1
fi
echo "soak: terminus demo at $addr (pid $gateway_pid)"

./target/release/terminus-load \
  --url "ws://$addr/graphql" \
  --label "terminus (ci soak)" \
  --connections "$connections" --subscriptions 1 \
  --every-ms "$every_ms" --hold "$hold" --end abrupt \
  --reclaim-series terminus_operations,terminus_upstream_streams,terminus_tasks,process_open_fds \
  --reclaim-timeout "$reclaim_timeout" \
  --expect terminus_upstream_connections=1 \
  --pid "$gateway_pid" \
  --json "$out/soak.json" --svg "$out/soak.svg" \
  --fail-on-leak

# The gateway must still be serving after the storm.
if ! kill -0 "$gateway_pid" 2>/dev/null; then
  echo "terminus demo died during the soak:" >&2
  cat "$log" >&2
  exit 1
fi
echo "soak: passed (report in $out/soak.json, chart in $out/soak.svg)"
