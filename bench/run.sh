#!/usr/bin/env bash
# The benchmark suite of docs/BENCHMARKS.md: every benchmark against every
# system, back to back, each system started fresh for each benchmark, under
# the same load generator (target/release/terminus-load).
#
#   bench/run.sh                          # issue 12's Targets table, every system
#   SYSTEMS="terminus node" BENCHES="memory reclaim" bench/run.sh
#   OUT=target/bench-results/mine bench/run.sh
#   SKIP_BUILD=1 bench/run.sh             # reuse the release builds
#   PROFILE=debug SCALE=0.02 HOLD=2s bench/run.sh   # a quick check of the
#       machinery (debug builds, 2% of the connections, 2 s holds): the
#       numbers of such a run mean nothing
# LOAD_THREADS=N gives terminus-load N executor threads (default 1).
# TERMINUS_THREADS=N gives the gateway and the demo upstream N executor
# threads each (`[runtime] threads`, `--threads`; default: theirs).
#
# Systems: terminus (`terminus serve` with bench/terminus/terminus-bench.toml
# in front of `terminus demo-upstream`, two processes talking gRPC over
# loopback HTTP/2; the config is the example's with the connection and
# upstream-stream bounds raised past 10,000), async-graphql
# (bench/async-graphql), node (bench/node-graphql-ws).
# Benches (default: the seven of issue 12's Targets table, in its order):
#   memory      RSS per idle initialised connection, 10,000 connections
#   subscribed  RSS per connection with one `ticks` subscription, 10,000
#   clock       `clock(everyMs: 20)` shared by 10,000 connections
#   frames      `ticks(everyMs: 20)` on 10,000 connections
#   latency     1,000 x `ticks(everyMs: 100)`: lateness
#   churn       subscribe-then-complete on 100 connections x 10 slots
#   reclaim-shared  10,000 subscribed clients (half on `clock` and `room`)
#               drop: time until every series is back to its baseline
# and, not in the default list: frames100, reclaim (10,000 x `ticks`
# only, the first suite's), soak (10 minutes, Terminus only).
# About 7 minutes for the default list on an idle 2-core machine, builds
# excluded; every run is bounded by terminus-load's own timeouts.
# Results: $OUT/<bench>-<system>.{txt,json,svg,server.log};
# bench/summarize.py prints the tables (run at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}"
systems="${SYSTEMS:-terminus async-graphql node}"
benches="${BENCHES:-memory subscribed clock frames latency churn reclaim-shared}"
start_timeout="${START_TIMEOUT:-30}"
profile="${PROFILE:-release}"
case "$profile" in
  release) cargo_profile=--release ;;
  debug) cargo_profile= ;;
  *) echo "PROFILE must be release or debug" >&2; exit 2 ;;
esac
scale="${SCALE:-1}"
hold="${HOLD:-}"
load_threads="${LOAD_THREADS:-1}"
mkdir -p "$out"

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build $cargo_profile -p terminus -p terminus-load
  (cd bench/async-graphql && CARGO_TARGET_DIR=../../target/bench cargo build $cargo_profile)
  (cd bench/node-graphql-ws && { [ -d node_modules ] || npm ci --no-audit --no-fund; })
fi

server_pid=
upstream_pid=
stop_pid() {
  local pid=$1
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
stop_server() {
  stop_pid "$server_pid"
  stop_pid "$upstream_pid"
  server_pid=
  upstream_pid=
}
trap stop_server EXIT

# wait_for LOG PATTERN PID: prints the first capture of PATTERN in LOG.
wait_for() {
  local log=$1 pattern=$2 pid=$3 found
  for _ in $(seq $((start_timeout * 5))); do
    found=$(sed -n "s#$pattern#\1#p" "$log" | head -n1)
    if [ -n "$found" ]; then echo "$found"; return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "did not start:" >&2
  cat "$log" >&2
  return 1
}

# start_terminus LOG: the demo upstream, then the gateway configured for it.
start_terminus() {
  local log=$1 upstream_addr config
  ./target/$profile/terminus demo-upstream --listen 127.0.0.1:0 \
    ${TERMINUS_THREADS:+--threads "$TERMINUS_THREADS"} >"$log.upstream" 2>&1 &
  upstream_pid=$!
  upstream_addr=$(wait_for "$log.upstream" '.*at http://\([0-9.:]*\).*' "$upstream_pid")
  config="$out/terminus-bench.toml"
  sed -e "s#@REPO@#$PWD#g" -e "s#@UPSTREAM@#$upstream_addr#g" \
    bench/terminus/terminus-bench.toml >"$config"
  if [ -n "${TERMINUS_THREADS:-}" ]; then
    printf '\n[runtime]\nthreads = %s\n' "$TERMINUS_THREADS" >>"$config"
  fi
  ./target/$profile/terminus serve --config "$config" >"$log" 2>&1 &
  server_pid=$!
}

# start_server SYSTEM LOG: starts it on a free port; sets server_pid, addr.
start_server() {
  local system=$1 log=$2
  case "$system" in
    terminus) start_terminus "$log" ;;
    async-graphql) ./target/bench/$profile/bench-async-graphql --listen 127.0.0.1:0 >"$log" 2>&1 & ;;
    node) node bench/node-graphql-ws/server.mjs --listen 127.0.0.1:0 >"$log" 2>&1 & ;;
    *) echo "unknown system $system" >&2; exit 2 ;;
  esac
  if [ "$system" != terminus ]; then server_pid=$!; fi
  addr=$(wait_for "$log" '.*listening on http://\([0-9.:]*\).*' "$server_pid")
}

# The series that must be back to their baseline after the drop. Shared
# streams: Terminus's gauge (named by TERMINUS_SHARED_SERIES) when its
# /metrics has it, the peers' bench_shared_streams.
terminus_shared_series="${TERMINUS_SHARED_SERIES:-terminus_shared_streams}"
series_args() {
  case "$1" in
    terminus)
      local series=terminus_operations,terminus_upstream_streams,terminus_tasks,process_open_fds
      # Read whole before grepping: with pipefail, `curl | grep -q` fails
      # when grep exits at its first match before curl has written
      # everything (curl: (23)), and the series was left out at random.
      local metrics
      metrics=$(curl -fsS --max-time 5 "http://$addr/metrics" || true)
      if grep -q "^$terminus_shared_series[ {]" <<<"$metrics"; then
        series="$series,$terminus_shared_series"
      fi
      echo "--reclaim-series $series --ops-series terminus_operations" ;;
    *) echo "--reclaim-series bench_operations,bench_connections,bench_shared_streams,process_open_fds --ops-series bench_operations" ;;
  esac
}

bench_args() {
  case "$1" in
    # RSS per idle initialised connection at 10,000 connections.
    memory) echo "--mode hold -c 10000 -s 0 --connect-rate 2000 --hold 5s --end abrupt" ;;
    # RSS per connection with one `ticks` subscription each (1 tick/s).
    subscribed) echo "--mode hold -c 10000 -s 1 --every-ms 1000 --connect-rate 2000 --hold 5s --end abrupt" ;;
    # One shared `clock(everyMs: 20)` for 10,000 subscribers: 500,000
    # deliveries/s asked.
    clock) echo "--mode hold -c 10000 -s 1 --every-ms 20 --query subscription{clock(everyMs:20){seq}} --connect-rate 2000 --hold 10s --end abrupt" ;;
    # Delivered results per second with 10,000 per-subscriber `ticks`
    # streams, asked for far more than any of the systems delivers
    # (10,000 x 1 per 20 ms).
    frames) echo "--mode hold -c 10000 -s 1 --every-ms 20 --connect-rate 2000 --hold 10s --end abrupt" ;;
    # The same at 10 ticks/s per subscription (100,000/s asked).
    frames100) echo "--mode hold -c 10000 -s 1 --every-ms 100 --connect-rate 2000 --hold 15s --end abrupt" ;;
    # Lateness at a fixed moderate rate: 1,000 subscriptions x 10/s.
    latency) echo "--mode hold -c 1000 -s 1 --every-ms 100 --connect-rate 1000 --hold 20s --end abrupt" ;;
    # Time to reclaim after 10,000 subscribed clients drop abruptly: client
    # i subscribes to ticks (i mod 4 = 0, 1), to the shared clock (2) or to
    # room-k, k = (i / 4) mod 20 (3), 125 members per room; one more
    # connection says something in every room every second.
    reclaim-shared) echo "--mode hold -c 10000 -s 1 --every-ms 1000 --query subscription{ticks(everyMs:1000){seq}} --query subscription{ticks(everyMs:1000){seq}} --query subscription{clock(everyMs:1000){seq}} --query subscription{room(name:\"room-{k}\"){seq}} --variants 20 --say-every 1s --connect-rate 2000 --hold 5s --end abrupt --reclaim-poll 5ms" ;;
    # The same, every client on its own `ticks` (the first suite's).
    reclaim) echo "--mode hold -c 10000 -s 1 --every-ms 1000 --connect-rate 2000 --hold 5s --end abrupt --reclaim-poll 5ms" ;;
    # Subscribe-then-complete churn: 100 connections x 10 slots.
    churn) echo "--mode churn -c 100 -s 10 --every-ms 1 --connect-rate 1000 --hold 10s --end clean" ;;
    # Ten minutes of connect, subscribe, first result, drop, repeat.
    soak) echo "--mode reconnect -c 200 -s 1 --every-ms 50 --connect-rate 1000 --hold 10m --end abrupt --sample-interval 2s" ;;
    *) echo "unknown bench $1" >&2; exit 2 ;;
  esac
}

{
  echo "started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "nproc $(nproc)"
  echo "uptime at start: $(uptime)"
} >"$out/machine.txt"
# scaled ARGS...: bench arguments with -c scaled by SCALE and --hold
# replaced by HOLD (for quick checks of the machinery only).
scaled() {
  local out=() next=
  for arg in "$@"; do
    case "$next" in
      c) arg=$(python3 -c "print(max(1, round($arg * $scale)))") ;;
      hold) [ -n "$hold" ] && arg=$hold ;;
    esac
    next=
    case "$arg" in
      -c) next=c ;;
      --hold) next=hold ;;
    esac
    out+=("$arg")
  done
  echo "${out[@]}"
}

for bench in $benches; do
  for system in $systems; do
    if [ "$bench" = soak ] && [ "$system" != terminus ]; then continue; fi
    name="$bench-$system"
    echo "=== $name"
    start_server "$system" "$out/$name.server.log"
    # shellcheck disable=SC2046
    ./target/$profile/terminus-load --url "ws://$addr/graphql" --label "$system" \
      $(scaled $(bench_args "$bench")) $(series_args "$system") --threads "$load_threads" --ramp-timeout 60s \
      --pid "$server_pid" ${upstream_pid:+--pid "$upstream_pid"} \
      --json "$out/$name.json" --svg "$out/$name.svg" | tee "$out/$name.txt" || true
    stop_server
  done
done
{
  echo "ended $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "uptime at end: $(uptime)"
} >>"$out/machine.txt"
echo "results in $out"
python3 bench/summarize.py "$out"
