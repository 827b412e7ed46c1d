#!/usr/bin/env bash
# Makes sure Debian's Chromium (and its driver) is installed for the
# dashboard's real-browser test, then prints the browser binary's path, for
# use as HERALD_TEST_CHROMIUM. Idempotent: nothing is installed when
# /usr/bin/chromium is already there. Installation messages go to stderr, so
#
#   export HERALD_TEST_CHROMIUM=$(deploy/scripts/chromium.sh)
#
# captures just the path.
set -euo pipefail
bin=/usr/bin/chromium

if [ ! -x "$bin" ]; then
	echo "installing chromium and chromium-driver from Debian packages..." >&2
	SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
	# A concurrent run (another test script) waits for this one instead of
	# fighting over the dpkg lock.
	exec 9>/tmp/herald-chromium-install.lock
	flock 9
	if [ ! -x "$bin" ]; then
		$SUDO apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >&2
	fi
	flock -u 9
fi

if [ ! -x "$bin" ]; then
	echo "chromium is not at $bin after installing it" >&2
	exit 1
fi
echo "$bin"
