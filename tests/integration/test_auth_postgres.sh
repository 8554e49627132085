#!/bin/sh
# test_auth_postgres.sh - the AuthPostgres adapter against a real
# PostgreSQL server, started just for this test.
#
# pg_server.sh (next to this script) creates a throw-away server in a
# fresh temporary directory, on a free port of 127.0.0.1, run by an
# unprivileged user, with TLS on, a role that may log in over TLS only and
# an empty users table, installing PostgreSQL with apt-get when it is
# missing and we are root.  tests/unit/test_auth_pg then fills the table
# and runs its CUnit tests, the last of which stops the server.  The
# server is stopped and the directory removed on exit, whatever happens,
# and every step has a time limit.
#
# Without a PostgreSQL server this test FAILS (exit 1), with the reason:
# AuthPostgres was built, so it must be tested.
set -eu

say() { printf 'test_auth_postgres: %s\n' "$*"; }
fail() { printf 'test_auth_postgres: FAIL: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
pg_server=$here/pg_server.sh
if [ -z "${top_builddir:-}" ]; then
	top_builddir=$(cd "$here/../.." && pwd)
fi
bin=$top_builddir/tests/unit/test_auth_pg
[ -x "$bin" ] || fail "$bin is missing ('make check' builds it)"

# Under /tmp whatever TMPDIR says: the postgres user must reach it when
# we are root.
if [ "$(id -u)" -eq 0 ]; then
	tmp=$(mktemp -d /tmp/pluto-pg.XXXXXX)
else
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/pluto-pg.XXXXXX")
fi

cleanup() {
	rc=$?
	if [ "$rc" -ne 0 ] && [ -f "$tmp/server.log" ]; then
		say "last lines of the server log:"
		tail -n 20 "$tmp/server.log" >&2 || true
	fi
	"$pg_server" destroy "$tmp" || true
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

port=$("$pg_server" start "$tmp") || fail "no PostgreSQL server to test with"
password=$(cat "$tmp/password")

say "running $bin against 127.0.0.1:$port"
rc=0
PLUTO_PG_HOST=127.0.0.1 PLUTO_PG_PORT=$port PLUTO_PG_DB=plutoauth \
PLUTO_PG_USER=pluto PLUTO_PG_PASSWORD=$password PLUTO_PG_TLS_USER=tlsonly \
PLUTO_PG_STOP="'$pg_server' stop '$tmp' >/dev/null" \
	timeout 300 "$bin" || rc=$?
if [ "$rc" -ne 0 ]; then
	fail "test_auth_pg exited with $rc"
fi
say "PASS"
