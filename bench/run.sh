#!/usr/bin/env bash
# The benchmark suite of docs/BENCHMARKS.md: every benchmark against every
# system, back to back, each system started fresh for each benchmark, under
# the same load generator (target/release/terminus-load).
#
#   bench/run.sh                          # everything
#   SYSTEMS="terminus node" BENCHES="memory reclaim" bench/run.sh
#   OUT=target/bench-results/mine bench/run.sh
#
# Systems: terminus (`terminus serve` with bench/terminus/terminus-bench.toml
# in front of `terminus demo-upstream`, two processes talking gRPC over
# loopback HTTP/2; the config is the example's with the connection and
# upstream-stream bounds raised past 10,000), async-graphql
# (bench/async-graphql), node (bench/node-graphql-ws).
# Benches: memory frames frames100 latency reclaim churn soak (soak: 10
# minutes, Terminus only, not in the default list).
# Results: $OUT/<bench>-<system>.{txt,json,svg}; bench/summarize.py prints
# the table.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}"
systems="${SYSTEMS:-terminus async-graphql node}"
benches="${BENCHES:-memory frames frames100 latency reclaim churn}"
start_timeout="${START_TIMEOUT:-30}"
mkdir -p "$out"

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p terminus -p terminus-load
  (cd bench/async-graphql && CARGO_TARGET_DIR=../../target/bench cargo build --release)
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
  ./target/release/terminus demo-upstream --listen 127.0.0.1:0 >"$log.upstream" 2>&1 &
  upstream_pid=$!
  upstream_addr=$(wait_for "$log.upstream" '.*at http://\([0-9.:]*\).*' "$upstream_pid")
  config="$out/terminus-bench.toml"
  sed -e "s#@REPO@#$PWD#g" -e "s#@UPSTREAM@#$upstream_addr#g" \
    bench/terminus/terminus-bench.toml >"$config"
  ./target/release/terminus serve --config "$config" >"$log" 2>&1 &
  server_pid=$!
}

# start_server SYSTEM LOG: starts it on a free port; sets server_pid, addr.
start_server() {
  local system=$1 log=$2
  case "$system" in
    terminus) start_terminus "$log" ;;
    async-graphql) ./target/bench/release/bench-async-graphql --listen 127.0.0.1:0 >"$log" 2>&1 & ;;
    node) node bench/node-graphql-ws/server.mjs --listen 127.0.0.1:0 >"$log" 2>&1 & ;;
    *) echo "unknown system $system" >&2; exit 2 ;;
  esac
  if [ "$system" != terminus ]; then server_pid=$!; fi
  addr=$(wait_for "$log" '.*listening on http://\([0-9.:]*\).*' "$server_pid")
}

series_args() {
  case "$1" in
    terminus) echo "--reclaim-series terminus_operations,terminus_upstream_streams,terminus_tasks,process_open_fds --ops-series terminus_operations" ;;
    *) echo "--reclaim-series bench_operations,bench_connections,process_open_fds --ops-series bench_operations" ;;
  esac
}

bench_args() {
  case "$1" in
    # RSS per idle initialised connection at 10,000 connections.
    memory) echo "--mode hold -c 10000 -s 0 --connect-rate 2000 --hold 5s --end abrupt" ;;
    # Delivered results per second with 10,000 subscriptions, asked for
    # far more than any of the systems delivers (10,000 x 1 per 20 ms).
    frames) echo "--mode hold -c 10000 -s 1 --every-ms 20 --connect-rate 2000 --hold 15s --end abrupt" ;;
    # The same at 10 ticks/s per subscription (100,000/s asked).
    frames100) echo "--mode hold -c 10000 -s 1 --every-ms 100 --connect-rate 2000 --hold 15s --end abrupt" ;;
    # Lateness at a fixed moderate rate: 1,000 subscriptions x 10/s.
    latency) echo "--mode hold -c 1000 -s 1 --every-ms 100 --connect-rate 1000 --hold 20s --end abrupt" ;;
    # Time to reclaim after 10,000 subscribed clients drop abruptly.
    reclaim) echo "--mode hold -c 10000 -s 1 --every-ms 1000 --connect-rate 2000 --hold 5s --end abrupt --reclaim-poll 5ms" ;;
    # Subscribe-then-complete churn: 100 connections x 10 slots.
    churn) echo "--mode churn -c 100 -s 10 --every-ms 1 --connect-rate 1000 --hold 10s --end clean" ;;
    # Ten minutes of connect, subscribe, first result, drop, repeat.
    soak) echo "--mode reconnect -c 200 -s 1 --every-ms 50 --connect-rate 1000 --hold 10m --end abrupt --sample-interval 2s" ;;
    *) echo "unknown bench $1" >&2; exit 2 ;;
  esac
}

for bench in $benches; do
  for system in $systems; do
    if [ "$bench" = soak ] && [ "$system" != terminus ]; then continue; fi
    name="$bench-$system"
    echo "=== $name"
    start_server "$system" "$out/$name.server.log"
    # shellcheck disable=SC2046
    ./target/release/terminus-load --url "ws://$addr/graphql" --label "$system" \
      $(bench_args "$bench") $(series_args "$system") \
      --pid "$server_pid" ${upstream_pid:+--pid "$upstream_pid"} \
      --json "$out/$name.json" --svg "$out/$name.svg" | tee "$out/$name.txt" || true
    stop_server
  done
done
echo "results in $out"
python3 bench/summarize.py "$out"
