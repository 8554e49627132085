#!/bin/sh
# repl-lag.sh - replication lag of pluto's sync links: the time from a
# worker's APPEND being acknowledged (durable in its journal and Maildir)
# until storage has stored, acknowledged and applied it.
#
# Runs the "replication lag" case of tests/unit/test_sync: a worker and a
# storage user store in one process, linked by the real sync code over
# loopback mutual TLS, with their data on $TMPDIR (so fsync cost is that
# file system's).  One APPEND every 2 ms; prints median, p99 and max.
#
# usage: tests/bench/repl-lag.sh [SAMPLES]     (default 2000)
# Run it from the build tree on an otherwise idle machine, after
# `make tests/unit/test_sync`.
set -eu
samples=${1:-2000}
top=${top_builddir:-$(dirname "$0")/../..}
bin="$top/tests/unit/test_sync"
if [ ! -x "$bin" ]; then
	echo "repl-lag.sh: build $bin first (make tests/unit/test_sync)" >&2
	exit 2
fi
PLUTO_LAG_ONLY=1 PLUTO_LAG_SAMPLES=$samples "$bin" 2>&1 |
	grep -E '^replication lag|passed|FAILED'
