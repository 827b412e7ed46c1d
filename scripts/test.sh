#!/usr/bin/env bash
# The test command (make test): starts the real servers the tests use, then
# vets and tests every module of the workspace, and checks that each module
# also builds and vets on its own (GOWORK=off). Installs what it needs on a
# fresh Debian machine with Go (MariaDB from Debian packages, Cassandra from npm).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH
start=$(date +%s)

echo "== starting MariaDB"
export HERALD_TEST_MYSQL_URL=${HERALD_TEST_MYSQL_URL:-$(deploy/scripts/mariadb.sh start)}
echo "   $HERALD_TEST_MYSQL_URL"
if [ -x deploy/scripts/cassandra.sh ] && [ "${HERALD_SKIP_CASSANDRA:-}" != 1 ]; then
	echo "== starting Cassandra"
	export HERALD_TEST_CASSANDRA_HOSTS=${HERALD_TEST_CASSANDRA_HOSTS:-$(deploy/scripts/cassandra.sh start)}
	echo "   $HERALD_TEST_CASSANDRA_HOSTS"
fi
if [ -x deploy/scripts/chromium.sh ]; then
	echo "== checking Chromium"
	export HERALD_TEST_CHROMIUM=${HERALD_TEST_CHROMIUM:-$(deploy/scripts/chromium.sh)}
fi

fail=0
echo "== static checks"
./scripts/check.sh || fail=1

for m in $(./scripts/modules.sh); do
	echo "== test $m"
	(cd "$m" && go test -count=1 -timeout 10m ./...) || fail=1
done

echo "== GOWORK=off build and vet of every module"
for m in $(./scripts/modules.sh); do
	(cd "$m" && GOWORK=off go build ./... && GOWORK=off go vet ./...) || { echo "GOWORK=off failed in $m"; fail=1; }
done

echo "== done in $(( $(date +%s) - start ))s"
exit $fail
