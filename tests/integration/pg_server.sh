#!/bin/sh
# pg_server.sh - a throw-away PostgreSQL server for the AuthPostgres tests
# (test_auth_postgres.sh, test_distributor_pg.py), never the system's own.
#
#   pg_server.sh start DIR     first time: create a cluster in DIR (a new
#                              or empty directory) and start it; later:
#                              start it again on the same port.  Prints
#                              the port on stdout.
#   pg_server.sh stop DIR      stop it (fast); fine when not running
#   pg_server.sh psql DIR      run the SQL on stdin as the superuser, in
#                              database plutoauth (stdout: the result)
#   pg_server.sh destroy DIR   stop it (immediate) and remove DIR
#
# The server binaries come from /usr/lib/postgresql/*/bin or $PATH; when
# they are missing and we are root, the Debian package postgresql is
# installed with apt-get.  The server runs as an unprivileged user (the
# postgres system user when we are root, so DIR must be reachable by it:
# put it under /tmp), listens on a free port of 127.0.0.1 and on a Unix
# socket in DIR, and has TLS on with a self-signed certificate.
#
# What the first start sets up, for the tests to use:
#   role pluto      owner of database plutoauth, password in DIR/password
#   role tlsonly    same password; pg_hba.conf turns it away without TLS,
#                   so a login as tlsonly proves the link was encrypted
#   table users (id integer PRIMARY KEY, name text UNIQUE NOT NULL,
#                password text NOT NULL), empty; tlsonly may SELECT it
# DIR/port holds the port, DIR/server.log the server's log.
#
# Every step has a time limit.  On failure it says why on stderr and
# exits 1: callers must fail too, since AuthPostgres was built and has to
# be tested.
set -eu

prog=pg_server
say() { printf '%s: %s\n' "$prog" "$*" >&2; }
fail() { printf '%s: FAIL: %s\n' "$prog" "$*" >&2; exit 1; }

usage() {
	fail "usage: pg_server.sh start|stop|psql|destroy DIR"
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2
case $dir in
/*) ;;
*) dir=$(pwd)/$dir ;;
esac
# The path goes into postgresql.conf between single quotes.
nl='
'
case $dir in
*"'"* | *\\* | *"$nl"*) fail "unusable directory name: $dir" ;;
esac
data=$dir/data
# The server's user must be able to read the working directory.
cd /

is_root=no
if [ "$(id -u)" -eq 0 ]; then
	is_root=yes
fi
if [ "$is_root" = yes ]; then
	as_pg() { runuser -u postgres -- "$@"; }
else
	as_pg() { "$@"; }
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

# $1 = install: install the server when missing; else fail quietly.
need_bindir() {
	if ! pgbin=$(find_pg_bindir); then
		[ "$1" = install ] || return 1
		apt_install "PostgreSQL server (initdb, pg_ctl)" postgresql
		pgbin=$(find_pg_bindir) ||
			fail "postgresql installed but initdb/pg_ctl not found"
	fi
	psql=$pgbin/psql
	[ -x "$psql" ] || psql=$(command -v psql) || fail "psql not found"
}

show_log() {
	if [ -f "$dir/server.log" ]; then
		say "last lines of the server log:"
		tail -n 20 "$dir/server.log" >&2 || true
	fi
}

running() {
	[ -f "$data/postmaster.pid" ] &&
		as_pg "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

make_cert() {
	# For 127.0.0.1: AuthPostgres asks for sslmode=require, which
	# encrypts without checking the certificate.
	if command -v certtool >/dev/null 2>&1; then
		cat >"$dir/cert.tmpl" <<-EOF
		cn = "127.0.0.1"
		ip_address = "127.0.0.1"
		expiration_days = 2
		tls_www_server
		signing_key
		encryption_key
		EOF
		certtool --generate-privkey --key-type=ecdsa \
			--outfile "$dir/server.key" >/dev/null 2>&1 ||
			fail "certtool cannot make a key"
		certtool --generate-self-signed \
			--load-privkey "$dir/server.key" \
			--template "$dir/cert.tmpl" \
			--outfile "$dir/server.crt" >/dev/null 2>&1 ||
			fail "certtool cannot make a certificate"
	else
		openssl req -x509 -newkey ec \
			-pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout "$dir/server.key" -out "$dir/server.crt" \
			-days 2 -subj /CN=127.0.0.1 >/dev/null 2>&1 ||
			fail "openssl cannot make a certificate"
	fi
	chmod 600 "$dir/server.key"
	if [ "$is_root" = yes ]; then
		chown postgres "$dir/server.key" "$dir/server.crt"
	fi
}

run_psql() {
	as_pg timeout 60 "$psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" \
		-p "$(cat "$dir/port")" -U postgres "$@"
}

# Creates and configures the cluster in the empty $dir.
create() {
	if ! command -v certtool >/dev/null 2>&1 &&
	   ! command -v openssl >/dev/null 2>&1; then
		apt_install "certtool or openssl" gnutls-bin
	fi
	mkdir -p "$dir"
	[ -z "$(ls -A "$dir")" ] || fail "$dir is not empty"
	chmod 700 "$dir"
	if [ "$is_root" = yes ]; then
		id postgres >/dev/null 2>&1 ||
			fail "no postgres system user to run the server as"
		chown postgres "$dir"
		as_pg test -w "$dir" ||
			fail "the postgres user cannot reach $dir" \
			     "(use a directory under /tmp)"
	fi
	port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])') || fail "cannot pick a free port"
	echo "$port" >"$dir/port"
	od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$dir/password"
	chmod 600 "$dir/password"

	say "initdb in $dir with $pgbin"
	as_pg timeout 120 "$pgbin/initdb" -D "$data" -U postgres -A trust \
		--no-locale -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; fail "initdb failed"; }
	make_cert
	as_pg sh -c "cat >>'$data/postgresql.conf'" <<-EOF
	listen_addresses = '127.0.0.1'
	port = $port
	unix_socket_directories = '$dir'
	ssl = on
	ssl_cert_file = '$dir/server.crt'
	ssl_key_file = '$dir/server.key'
	password_encryption = 'scram-sha-256'
	fsync = off
	max_connections = 40
	EOF
	# First match wins: the tlsonly role is turned away without TLS.
	as_pg sh -c "cat >'$data/pg_hba.conf'" <<-EOF
	local all all trust
	hostnossl all tlsonly 127.0.0.1/32 reject
	host all all 127.0.0.1/32 scram-sha-256
	EOF
}

# Creates the roles, the database and the table (first start only).
populate() {
	password=$(cat "$dir/password")
	run_psql -d postgres >/dev/null <<-EOF || fail "database setup failed"
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
}

start() {
	need_bindir install
	first=no
	if [ ! -d "$data" ]; then
		create
		first=yes
	fi
	if ! running; then
		say "starting PostgreSQL on 127.0.0.1:$(cat "$dir/port")"
		as_pg "$pgbin/pg_ctl" -D "$data" -l "$dir/server.log" \
			-w -t 60 start >/dev/null ||
			{ show_log; fail "the server did not start"; }
	fi
	if [ "$first" = yes ]; then
		populate
	fi
	cat "$dir/port"
}

stop() {
	[ -d "$data" ] || return 0
	need_bindir noinstall || return 0
	running || return 0
	as_pg "$pgbin/pg_ctl" -D "$data" -m "$1" -w -t 30 stop >/dev/null ||
		{ show_log; fail "the server did not stop"; }
}

case $cmd in
start)
	start
	;;
stop)
	stop fast
	;;
psql)
	need_bindir noinstall || fail "no PostgreSQL binaries"
	[ -f "$dir/port" ] || fail "no server in $dir"
	run_psql -d plutoauth -t -A
	;;
destroy)
	if [ -d "$data" ]; then
		(stop immediate) || true
	fi
	rm -rf "$dir"
	;;
*)
	usage
	;;
esac
