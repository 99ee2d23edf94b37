# The gateway (issue 4): the server's unit tests, then the end-to-end tests
# on real sockets (both subprotocols, close codes, 500 abrupt disconnects,
# upstream faults, panic isolation, SIGTERM drain, the example config, SSE and
# multipart HTTP subscriptions (tests/tests/transports.rs), persisted queries
# (persisted.rs), `@shared` streams and the demo's rooms (shared.rs,
# rooms.rs), the write path, slow readers and RFC 6455 closes (wire.rs), and
# MySQL fields through the gateway on the MariaDB that 25-mariadb.sh starts).
# The drain and leak tests run the built binary, target/debug/terminus.
set -euo pipefail
# 500 clients and their 500 server sockets share this machine: make sure the
# soft fd limit allows it (raised up to the hard limit when lower).
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 4096 || true
fi
cargo build -p terminus
cargo test -p terminus --lib --bins
cargo test -p terminus-tests \
  --test protocols --test closing --test leaks --test drain --test faults --test example_config \
  --test mysql_gateway --test security --test hostile --test transports \
  --test persisted --test shared --test rooms --test wire
