#!/bin/bash
# test_bench.sh - pluto-bench against a real, private Dovecot.
#
# Starts an unprivileged Dovecot of our own on 127.0.0.1 (its own
# configuration, base and state directories, self-signed certificate and
# log, all in a temporary directory; the system service is never
# touched), then runs every pluto-bench workload over implicit TLS and
# STARTTLS and checks the exit status, the per-command counts and errors
# of the summary and the number of CSV rows.  Negative checks: a wrong
# password, an unverifiable certificate and a refused connection must
# all be reported as failures.  Every step has a timeout.
set -u

top_builddir=${top_builddir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BENCH=${PLUTO_BENCH:-$top_builddir/pluto-bench}
checks=0

fail() {
	echo "FAIL: $*"
	exit 1
}

ok() {
	checks=$((checks + 1))
	echo "ok $checks - $*"
}

[ -x "$BENCH" ] || fail "$BENCH not built"

# Dovecot and certtool, installed the way tools/setup.sh installs things.
need=
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] ||
	need="$need dovecot-imapd"
command -v certtool >/dev/null 2>&1 || need="$need gnutls-bin"
command -v python3 >/dev/null 2>&1 || need="$need python3"
if [ -n "$need" ]; then
	echo "# installing$need"
	sudo=
	[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
	# No service may start: policy-rc.d style, via RUNLEVEL=1.
	if ! { timeout 300 $sudo apt-get update -qq &&
	       DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 timeout 600 \
		$sudo apt-get install -y -qq --no-install-recommends \
		$need; } >/dev/null 2>&1; then
		fail "could not install$need (run tools/setup.sh deps or" \
			"apt-get install$need)"
	fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pluto-bench-test.XXXXXX") ||
	fail "mktemp"
PRIVATE_DOVECOT=$top_srcdir/tests/bench/private-dovecot.sh
# Dovecot's own accounts read files below it.
chmod 755 "$tmp"
cleanup() {
	"$PRIVATE_DOVECOT" stop "$tmp/dovecot"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# Two free ports: implicit TLS and plain+STARTTLS.
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
port_tls=$(free_port) || fail "no free port"
port_starttls=$(free_port) || fail "no free port"
[ "$port_tls" != "$port_starttls" ] || port_starttls=$(free_port)

# The private Dovecot: user1..user4 with passwordN.
for i in 1 2 3 4; do echo "user$i password$i"; done |
	"$PRIVATE_DOVECOT" start "$tmp/dovecot" "$port_tls" "$port_starttls" ||
	fail "private dovecot did not start"
ok "private dovecot on 127.0.0.1:$port_tls (imaps) and :$port_starttls"

out=$tmp/out
err=$tmp/err
csv=$tmp/bench.csv

# bench EXPECTED-STATUS ARGS...: runs pluto-bench, bounded in time.
bench() {
	want=$1
	shift
	rm -f "$csv"
	timeout -k 5 120 "$BENCH" -H 127.0.0.1 --quiet --timeout 20 "$@" \
		>"$out" 2>"$err"
	st=$?
	if [ "$want" = 0 ] && [ "$st" -ne 0 ]; then
		cat "$out" "$err"
		fail "pluto-bench $* exited $st"
	fi
	if [ "$want" != 0 ] && [ "$st" -eq 0 ]; then
		cat "$out" "$err"
		fail "pluto-bench $* succeeded but should fail"
	fi
	[ "$st" -ne 124 ] && [ "$st" -ne 137 ] ||
		fail "pluto-bench $* timed out"
}

# count COMMAND / errors COMMAND: columns of the summary table.
count() {
	awk -v c="$1" '$1 == c { print $2; found = 1 }
		END { if (!found) print 0 }' "$out"
}
errors() {
	awk -v c="$1" '$1 == c { print $3; found = 1 }
		END { if (!found) print -1 }' "$out"
}

# expect COMMAND N: the summary counts N requests of COMMAND, none failed.
expect() {
	n=$(count "$1")
	e=$(errors "$1")
	if [ "$n" != "$2" ] || [ "$e" != 0 ]; then
		cat "$out" "$err"
		fail "$1: count $n (want $2), errors $e (want 0)"
	fi
}

# csv_rows N: the CSV has N requests, all OK, and its columns.
csv_rows() {
	[ -f "$csv" ] || fail "no CSV written"
	head -1 "$csv" | grep -qx 'client,command,start_us,latency_us,status' ||
		fail "CSV header: $(head -1 "$csv")"
	rows=$(($(wc -l <"$csv") - 1))
	[ "$rows" -eq "$1" ] || fail "CSV has $rows rows, want $1"
	bad=$(awk -F, 'NR > 1 && ($5 != "OK" || NF != 5 || $4 !~ /^[0-9]+$/)' \
		"$csv" | head -3)
	[ -z "$bad" ] || fail "CSV rows not OK: $bad"
}

C=4
R=5
for mode in implicit starttls; do
	if [ "$mode" = implicit ]; then
		port=$port_tls
	else
		port=$port_starttls
	fi
	common="-p $port --tls $mode --insecure --clients $C --runs $R
		--user-range 1-4 --csv $csv"

	bench 0 $common --workload append --msg-size 2000
	expect LOGIN $C; expect APPEND $((C * R)); expect LOGOUT $C
	expect total $((C * (R + 2)))
	csv_rows $((C * (R + 2)))
	ok "$mode: append"

	bench 0 $common --workload createdelete
	expect CREATE $((C * R)); expect DELETE $((C * R))
	expect total $((C * (2 * R + 2)))
	csv_rows $((C * (2 * R + 2)))
	ok "$mode: createdelete"

	bench 0 $common --workload store
	expect SELECT $C; expect STORE $((C * R))
	expect total $((C * (R + 3)))
	csv_rows $((C * (R + 3)))
	ok "$mode: store"

	bench 0 $common --workload select
	expect SELECT $((C * R))
	expect total $((C * (R + 2)))
	csv_rows $((C * (R + 2)))
	ok "$mode: select"

	bench 0 $common --workload fetch --msg-size 5000
	expect FETCH $((C * R))
	expect total $((C * (R + 3)))
	csv_rows $((C * (R + 3)))
	ok "$mode: fetch"

	bench 0 $common --workload mixed --seed 7 --runs 20
	total=$(count total)
	expect total "$total"
	[ "$total" -ge $((C * 23)) ] || fail "mixed: only $total requests"
	csv_rows "$total"
	ok "$mode: mixed ($total requests)"
done

# Latency CDFs of two runs, when gnuplot is there to draw them.
if command -v gnuplot >/dev/null 2>&1; then
	bench 0 -p "$port_tls" --insecure --clients 2 --runs 10 --csv "$csv"
	cp "$csv" "$tmp/one.csv"
	bench 0 -p "$port_tls" --insecure --clients 2 --runs 10 --csv "$csv" \
		--msg-size 20000
	cp "$csv" "$tmp/two.csv"
	timeout 60 sh "$top_srcdir/tests/bench/plot-cdf.sh" -c APPEND \
		-o "$tmp/cdf" "$tmp/one.csv" "$tmp/two.csv" >"$out" 2>&1 ||
		fail "plot-cdf.sh: $(cat "$out")"
	head -c 8 "$tmp/cdf.png" | od -An -c | grep -q 'P   N   G' ||
		fail "plot-cdf.sh wrote no PNG"
	grep -q '<svg' "$tmp/cdf.svg" || fail "plot-cdf.sh wrote no SVG"
	ok "latency CDF plotted as PNG and SVG"
else
	echo "# gnuplot not installed: the CDF plot is not checked"
fi

# Certificates are verified: against our self-signed certificate they
# pass, against the system store they do not.
bench 0 -p "$port_tls" --tls implicit --cafile "$tmp/dovecot/cert.pem" --runs 2 \
	--csv "$csv"
expect total 4
csv_rows 4
ok "implicit TLS verified with --cafile"
bench 0 -p "$port_starttls" --tls starttls --cafile "$tmp/dovecot/cert.pem" \
	-H localhost --runs 2
expect total 4
ok "STARTTLS verified with --cafile and a host name"
bench 1 -p "$port_tls" --tls implicit --runs 2
grep -q "TLS handshake" "$err" || fail "no handshake error: $(cat "$err")"
ok "an unverifiable certificate fails"

# Replication lag, here between the two listeners of one server.
bench 0 -p "$port_tls" --tls implicit --insecure --workload lag \
	--lag-port "$port_starttls" --lag-tls starttls --clients 2 \
	--user-range 1-2 --runs 3 \
	--csv "$csv"
expect APPEND 6; expect LAG 6
csv_rows 16
ok "lag"

# Dovecot advertises LITERAL+: the non-synchronising path must work too.
bench 0 -p "$port_tls" --tls implicit --insecure --literal-plus --runs 3 \
	--csv "$csv"
expect APPEND 3
ok "--literal-plus"

# Plain text (Dovecot counts loopback as secure enough for LOGIN).
bench 0 -p "$port_starttls" --tls plain --literal-plus --runs 3 --csv "$csv"
expect APPEND 3
csv_rows 5
ok "plain text"

# Failures: a wrong password (last: Dovecot then delays this address's
# logins), a refused connection.
bench 1 -p "$port_tls" --tls implicit --insecure --clients 3 --runs 2 \
	--password wrong%d --csv "$csv"
[ "$(count LOGIN)" = 3 ] && [ "$(errors LOGIN)" = 3 ] ||
	fail "wrong password: $(cat "$out")"
grep -q "LOGIN" "$err" || fail "wrong password: no error shown"
grep -q "no client could connect and log in" "$err" ||
	fail "wrong password: no final error"
ok "a wrong password fails every LOGIN and the run"

bench 1 -p 1 --tls plain --runs 1
grep -q "connect" "$err" || fail "refused connection not reported"
ok "a refused connection fails"

echo "PASS: $checks checks"
exit 0
