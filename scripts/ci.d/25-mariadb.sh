# MariaDB on 127.0.0.1:3306 (user root without password, database `test`),
# installed and started if it is not answering, then the MySQL upstream's
# tests against it. Idempotent: on a machine where MariaDB already answers it
# only runs the tests. Every wait is bounded.
set -euo pipefail

# shellcheck source=../lib/ensure-mariadb.sh
. "$(dirname "$0")/../lib/ensure-mariadb.sh"

export TERMINUS_TEST_MYSQL_URL="${TERMINUS_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
cargo test -p terminus --lib mysql
cargo test -p terminus --test mysql --test mysql_mass_cancel
