# The short soak: the release gateway (`terminus demo`) under 1,000
# connections with one subscription each for 30 s, then every connection
# dropped abruptly (TCP close, no complete); fails on any leak: live
# operations, upstream streams, tasks or fds not back to their baseline
# within the bound, or upstream connections other than 1 at any sample.
#
# Then memory returned after load (issue 16, item 7): RSS_CLIENTS (3000)
# subscribed clients connect, hold RSS_HOLD (10s) and leave at once; the
# gateway's RSS (/proc/<pid>/status VmRSS) must come back within
# RSS_BOUND_MIB (32) of its baseline (read when it started) within
# RSS_RECLAIM_SECONDS (30). docs/BENCHMARKS.md has the measurements.
#
# Then the same on the @shared field `clock` (SOAK_SHARED_HOLD, 10s), which
# also fails if any shared stream or subscriber is left.
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
  addr=$(sed -n 's#^terminus listening on https\{0,1\}://\([0-9.:]*\).*#\1#p' "$log" | head -n1)
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
# The fresh gateway's resident set: the baseline of the memory check below.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$gateway_pid/status"; }
baseline_kib=$(rss_kib)

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

# Shared subscriptions (issue 12): the same storm on the `@shared` field
# `clock`, so 1,000 operations ride one upstream stream; after the abrupt
# drop the shared streams and their subscribers must be gone too.
./target/release/terminus-load \
  --url "ws://$addr/graphql" \
  --label "terminus (ci soak, shared)" \
  --query "subscription { clock(everyMs: $every_ms) { seq } }" \
  --connections "$connections" --subscriptions 1 \
  --every-ms "$every_ms" --hold "${SOAK_SHARED_HOLD:-10s}" --end abrupt \
  --reclaim-series terminus_operations,terminus_upstream_streams,terminus_shared_streams,terminus_shared_subscribers,terminus_tasks,process_open_fds \
  --reclaim-timeout "$reclaim_timeout" \
  --pid "$gateway_pid" \
  --json "$out/soak-shared.json" \
  --fail-on-leak
echo "soak: shared subscriptions passed (report in $out/soak-shared.json)"

# ---- memory returned after load -------------------------------------------
rss_clients="${RSS_CLIENTS:-3000}"
rss_hold="${RSS_HOLD:-10s}"
rss_bound_mib="${RSS_BOUND_MIB:-32}"
rss_reclaim_seconds="${RSS_RECLAIM_SECONDS:-30}"
echo "rss: baseline ${baseline_kib} KiB; ${rss_clients} clients for ${rss_hold}"
./target/release/terminus-load \
  --url "ws://$addr/graphql" \
  --label "terminus (ci rss)" \
  --connections "$rss_clients" --subscriptions 1 \
  --every-ms "$every_ms" --hold "$rss_hold" --end abrupt \
  --reclaim-series terminus_operations,terminus_upstream_streams,terminus_tasks,process_open_fds \
  --reclaim-timeout "$reclaim_timeout" \
  --pid "$gateway_pid" \
  --json "$out/rss.json" \
  --fail-on-leak
# Every one of the 3,000 subscriptions must be served (the demo upstream's
# pool takes 16,384 streams), with no error and everything reclaimed; what
# this run adds is the resident set below.
left=$(date +%s)
limit_kib=$((baseline_kib + rss_bound_mib * 1024))
now_kib=$(rss_kib)
echo "rss: ${now_kib} KiB right after the clients left (bound ${limit_kib} KiB)"
while [ "$now_kib" -gt "$limit_kib" ]; do
  if [ $(( $(date +%s) - left )) -ge "$rss_reclaim_seconds" ]; then
    echo "rss: still ${now_kib} KiB ${rss_reclaim_seconds} s after the clients left;" \
      "baseline ${baseline_kib} KiB, bound ${rss_bound_mib} MiB above it" >&2
    exit 1
  fi
  sleep 1
  now_kib=$(rss_kib)
done
echo "rss: ${now_kib} KiB after $(( $(date +%s) - left )) s (baseline ${baseline_kib} KiB, bound +${rss_bound_mib} MiB): passed"
