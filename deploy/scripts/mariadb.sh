#!/usr/bin/env bash
# Starts a throwaway MariaDB on 127.0.0.1 for tests and benchmarks, installing
# it from Debian's packages when missing. Idempotent: if a server already
# answers on the port, it is reused. Prints the URL to use as
# HERALD_TEST_MYSQL_URL / HERALD_DATABASE_URL.
#
#   deploy/scripts/mariadb.sh start [port]   (default port 3306)
#   deploy/scripts/mariadb.sh stop  [port]
set -euo pipefail
cmd=${1:-start}
port=${2:-${HERALD_MARIADB_PORT:-3306}}
dir=${HERALD_MARIADB_DIR:-/tmp/herald-mariadb-$port}

ping() { mariadb-admin --protocol=tcp -h127.0.0.1 -P"$port" -uroot status >/dev/null 2>&1; }

case "$cmd" in
stop)
	if [ -f "$dir/p" ]; then kill "$(cat "$dir/p")" 2>/dev/null || true; fi
	exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop [port]" >&2; exit 2 ;;
esac

if ! command -v mariadbd >/dev/null 2>&1; then
	echo "installing mariadb-server from Debian packages..." >&2
	SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mariadb-server >&2
fi

if ping; then
	echo "mysql://root@127.0.0.1:$port/"
	exit 0
fi

if [ ! -d "$dir/mysql" ]; then
	mkdir -p "$dir"
	mariadb-install-db --user=root --datadir="$dir" --auth-root-authentication-method=normal --skip-test-db >"$dir.install.log" 2>&1
fi
# Durable settings: every commit is flushed (innodb_flush_log_at_trx_commit=1, sync_binlog irrelevant: no binlog).
nohup mariadbd --no-defaults --user=root --datadir="$dir" --bind-address=127.0.0.1 --port="$port" \
	--socket="$dir/s" --pid-file="$dir/p" --innodb-flush-log-at-trx-commit=1 \
	--innodb-buffer-pool-size=512M --innodb-log-file-size=256M --max-connections=500 \
	--skip-name-resolve --log-error="$dir.err.log" >/dev/null 2>&1 &
for _ in $(seq 1 60); do
	if ping; then
		echo "mysql://root@127.0.0.1:$port/"
		exit 0
	fi
	sleep 0.5
done
echo "mariadb did not start; see $dir.err.log" >&2
tail -20 "$dir.err.log" >&2 || true
exit 1
