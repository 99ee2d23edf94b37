# Sourced by the stages that need MariaDB (25-mariadb.sh, 45-gateway-mysql.sh):
# makes sure MariaDB answers on 127.0.0.1:3306 (user root without password,
# database `test`), installing and starting it if it does not. Idempotent:
# where MariaDB already answers it only checks. Every wait is bounded.
# Exits the sourcing script with 1 when MariaDB cannot be made to answer.

ping_tcp() {
  command -v mysqladmin >/dev/null 2>&1 &&
    mysqladmin --connect-timeout=2 -uroot -h127.0.0.1 -P3306 ping >/dev/null 2>&1
}

if ! ping_tcp; then
  if [ ! -x /usr/sbin/mariadbd ] || ! command -v mysqladmin >/dev/null 2>&1; then
    echo "installing mariadb-server"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -q
    timeout 600 apt-get install -y -q --no-install-recommends mariadb-server mariadb-client
  fi
  # Loopback only, and no reverse DNS: TCP logins from 127.0.0.1 then match
  # the 'root'@'127.0.0.1' account created below.
  if [ -d /etc/mysql/mariadb.conf.d ] && [ ! -f /etc/mysql/mariadb.conf.d/90-terminus.cnf ]; then
    printf '[mysqld]\nbind-address = 127.0.0.1\nport = 3306\nskip-name-resolve\n' \
      >/etc/mysql/mariadb.conf.d/90-terminus.cnf
  fi
  if [ ! -d /var/lib/mysql/mysql ]; then
    timeout 120 mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  mkdir -p /run/mysqld
  chown mysql:mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  for _ in $(seq 1 120); do
    if mysqladmin --connect-timeout=2 -uroot ping >/dev/null 2>&1 || ping_tcp; then break; fi
    sleep 0.5
  done
fi

# root over TCP without a password, and the `test` database. A fresh Debian
# install only has root@localhost over the unix socket; use that to add them.
if ! timeout 10 mysql --connect-timeout=2 -uroot -h127.0.0.1 -P3306 -e 'SELECT 1' test >/dev/null 2>&1; then
  timeout 10 mysql --connect-timeout=2 -uroot -e "
    CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
    CREATE DATABASE IF NOT EXISTS test;"
fi
if ! ping_tcp; then
  echo "MariaDB does not answer on 127.0.0.1:3306" >&2
  exit 1
fi

