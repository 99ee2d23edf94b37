# The gateway's @sql and @live fields end to end (issue 5): real WebSocket
# clients against the gateway in-process, and the real MariaDB on
# 127.0.0.1:3306 (installed and started if it does not answer, as in
# 25-mariadb.sh). Covers query and mutation with injection attempts,
# UPSTREAM_BUSY, UPSTREAM_TIMEOUT, cancel -> KILL QUERY (checked in the
# process list), shared @live polls, and 300 abrupt @live disconnects.
set -euo pipefail

# shellcheck source=../lib/ensure-mariadb.sh
. "$(dirname "$0")/../lib/ensure-mariadb.sh"

# 300 clients and their 300 server sockets share this process: make sure the
# soft fd limit allows it (raised up to the hard limit when lower).
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 4096 || true
fi

export TERMINUS_TEST_MYSQL_URL="${TERMINUS_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
# The demo tests run the built binary, target/debug/terminus.
cargo build -p terminus
cargo test -p terminus --lib config
cargo test -p terminus-tests --test gateway_mysql
cargo test -p terminus-tests --test gateway_mysql_model
# MySQL over TLS (issue 14): a mariadbd of its own with rcgen certificates.
cargo test -p terminus-tests --test mysql_tls
