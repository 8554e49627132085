#!/bin/sh
# test_auth_postgres.sh - the AuthPostgres adapter against a real
# PostgreSQL server, started just for this test.
#
# Finds the server binaries (Debian: /usr/lib/postgresql/*/bin), installing
# the Debian package postgresql with apt-get when they are missing and we
# are root.  Then, in a fresh temporary directory and on a free port of
# 127.0.0.1, it creates a cluster and starts it as an unprivileged user
# (the postgres system user when run as root, else the current user):
# never the system's own service.  The server has TLS on (a self-signed
# certificate made with certtool or openssl), a role that may log in over
# TLS only, and an empty users table; tests/unit/test_auth_pg then fills
# the table and runs its CUnit tests, the last of which stops the server.
# The server is stopped and the directory removed on exit, whatever
# happens, and every step has a time limit.
#
# Without a PostgreSQL server this test FAILS (exit 1), with the reason:
# AuthPostgres was built, so it must be tested.
set -eu

say() { printf 'test_auth_postgres: %s\n' "$*"; }
fail() { printf 'test_auth_postgres: FAIL: %s\n' "$*" >&2; exit 1; }

if [ -z "${top_builddir:-}" ]; then
	top_builddir=$(cd "$(dirname "$0")/../.." && pwd)
fi
bin=$top_builddir/tests/unit/test_auth_pg
[ -x "$bin" ] || fail "$bin is missing ('make check' builds it)"

is_root=no
if [ "$(id -u)" -eq 0 ]; then
	is_root=yes
fi

# Prints the directory holding initdb and pg_ctl, newest version first.
find_pg_bindir() {
	# ls, not a glob: versions sort numerically (9 before 10).
	# shellcheck disable=SC2012
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null |
		   sort -t/ -k5 -n -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] &&
		   [ -x "$d/postgres" ]; then
			echo "$d"
			return 0
		fi
	done
	if command -v initdb >/dev/null 2>&1 &&
	   command -v pg_ctl >/dev/null 2>&1; then
		dirname "$(command -v initdb)"
		return 0
	fi
	return 1
}

apt_install() {
	[ "$is_root" = yes ] ||
		fail "$1 missing, and only root may install it" \
		     "(apt-get install $2)"
	command -v apt-get >/dev/null 2>&1 ||
		fail "$1 missing and no apt-get to install $2 with"
	say "installing $2 with apt-get"
	if ! timeout 600 apt-get update -qq >/dev/null 2>&1 ||
	   ! DEBIAN_FRONTEND=noninteractive timeout 900 \
		apt-get install -y -qq "$2" >/dev/null 2>&1; then
		fail "apt-get install $2 failed (no network or no package" \
		     "list?): cannot run a PostgreSQL server to test" \
		     "AuthPostgres against"
	fi
}

if ! pgbin=$(find_pg_bindir); then
	apt_install "PostgreSQL server (initdb, pg_ctl)" postgresql
	pgbin=$(find_pg_bindir) ||
		fail "postgresql installed but initdb/pg_ctl not found"
fi
if ! command -v certtool >/dev/null 2>&1 &&
   ! command -v openssl >/dev/null 2>&1; then
	apt_install "certtool or openssl" gnutls-bin
fi
psql=$pgbin/psql
[ -x "$psql" ] || psql=$(command -v psql) || fail "psql not found"

# Who runs the server: never root (initdb refuses it anyway).
if [ "$is_root" = yes ]; then
	id postgres >/dev/null 2>&1 ||
		fail "no postgres system user to run the server as"
	as_pg() { runuser -u postgres -- "$@"; }
	# The postgres user must reach it, whatever TMPDIR says.
	tmp=$(mktemp -d /tmp/pluto-pg.XXXXXX)
else
	as_pg() { "$@"; }
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/pluto-pg.XXXXXX")
fi
data=$tmp/data
started=no

cleanup() {
	rc=$?
	if [ "$started" = yes ]; then
		as_pg "$pgbin/pg_ctl" -D "$data" -m immediate -w -t 30 \
			stop >/dev/null 2>&1 || true
	fi
	if [ "$rc" -ne 0 ] && [ -f "$tmp/server.log" ]; then
		say "last lines of the server log:"
		tail -n 20 "$tmp/server.log" >&2 || true
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

if [ "$is_root" = yes ]; then
	chown postgres "$tmp"
fi
chmod 700 "$tmp"
# initdb and pg_ctl complain when they cannot read the working directory.
cd "$tmp"

port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])') || fail "cannot pick a free port"
password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

say "initdb in $tmp with $pgbin"
as_pg timeout 120 "$pgbin/initdb" -D "$data" -U postgres -A trust \
	--no-locale -E UTF8 --no-sync >"$tmp/initdb.log" 2>&1 ||
	{ cat "$tmp/initdb.log" >&2; fail "initdb failed"; }

# A self-signed certificate for 127.0.0.1: the adapter asks for
# sslmode=require, which encrypts without checking it.
if command -v certtool >/dev/null 2>&1; then
	cat >"$tmp/cert.tmpl" <<-EOF
	cn = "127.0.0.1"
	ip_address = "127.0.0.1"
	expiration_days = 2
	tls_www_server
	signing_key
	encryption_key
	EOF
	certtool --generate-privkey --key-type=ecdsa \
		--outfile "$tmp/server.key" >/dev/null 2>&1 ||
		fail "certtool cannot make a key"
	certtool --generate-self-signed --load-privkey "$tmp/server.key" \
		--template "$tmp/cert.tmpl" --outfile "$tmp/server.crt" \
		>/dev/null 2>&1 || fail "certtool cannot make a certificate"
else
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-nodes -keyout "$tmp/server.key" -out "$tmp/server.crt" \
		-days 2 -subj /CN=127.0.0.1 >/dev/null 2>&1 ||
		fail "openssl cannot make a certificate"
fi
chmod 600 "$tmp/server.key"
if [ "$is_root" = yes ]; then
	chown postgres "$tmp/server.key" "$tmp/server.crt"
fi

as_pg sh -c "cat >>'$data/postgresql.conf'" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$tmp'
ssl = on
ssl_cert_file = '$tmp/server.crt'
ssl_key_file = '$tmp/server.key'
password_encryption = 'scram-sha-256'
fsync = off
max_connections = 40
EOF
# First match wins: the tlsonly role is turned away without TLS.
as_pg sh -c "cat >'$data/pg_hba.conf'" <<EOF
local all all trust
hostnossl all tlsonly 127.0.0.1/32 reject
host all all 127.0.0.1/32 scram-sha-256
EOF

say "starting PostgreSQL on 127.0.0.1:$port"
started=yes
as_pg "$pgbin/pg_ctl" -D "$data" -l "$tmp/server.log" -w -t 60 start \
	>/dev/null || fail "the server did not start"

as_pg timeout 60 "$psql" -X -q -v ON_ERROR_STOP=1 -h "$tmp" -p "$port" \
	-U postgres -d postgres >/dev/null <<EOF || fail "database setup failed"
CREATE ROLE pluto LOGIN PASSWORD '$password';
CREATE ROLE tlsonly LOGIN PASSWORD '$password';
CREATE DATABASE plutoauth OWNER pluto;
\\connect plutoauth pluto
CREATE TABLE users (
	id integer PRIMARY KEY,
	name text UNIQUE NOT NULL,
	password text NOT NULL
);
GRANT SELECT ON users TO tlsonly;
EOF

stop="'$pgbin/pg_ctl' -D '$data' -m fast -w -t 30 stop"
if [ "$is_root" = yes ]; then
	stop="runuser -u postgres -- $stop"
fi

say "running $bin"
rc=0
PLUTO_PG_HOST=127.0.0.1 PLUTO_PG_PORT=$port PLUTO_PG_DB=plutoauth \
PLUTO_PG_USER=pluto PLUTO_PG_PASSWORD=$password PLUTO_PG_TLS_USER=tlsonly \
PLUTO_PG_STOP="$stop >/dev/null" \
	timeout 300 "$bin" || rc=$?
if [ "$rc" -ne 0 ]; then
	fail "test_auth_pg exited with $rc"
fi
say "PASS"
