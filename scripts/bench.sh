#!/usr/bin/env bash
# make bench (short) and make bench-full: runs `herald bench` on embedded
# SQLite and on MariaDB. The full run is what docs/benchmarks.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-short}
mkdir -p .tmp
# The test suite leaves its Cassandra running for the next run; its
# background work moves the latency figures by half (docs/benchmarks.md).
if [ -x deploy/scripts/cassandra.sh ] && deploy/scripts/cassandra.sh status >/dev/null 2>&1; then
	echo "== stopping the test Cassandra for the benchmark"
	deploy/scripts/cassandra.sh stop
fi
if [ "$mode" = full ]; then
	args=(--duration 10s --group-size 1000000)
else
	args=(--duration 5s --group-size 100000)
fi
echo "== embedded SQLite"
./bin/herald bench "${args[@]}" --json .tmp/bench-sqlite.json
url=$(deploy/scripts/mariadb.sh start)
echo "== MariaDB ($url, innodb_flush_log_at_trx_commit=1)"
./bin/herald bench "${args[@]}" --scenarios accept,rate10k,e2e5k,priority --database-url "$url" --json .tmp/bench-mariadb.json
