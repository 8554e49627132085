#!/bin/bash
# vs-dovecot.sh - pluto and Dovecot side by side on this machine, and
# pluto's performance targets (doc/benchmarks.md).
#
#   tests/bench/vs-dovecot.sh [--rounds N] [--duration S] [--no-big]
#                             [--no-idle] [--sessions N] [--cold] [--keep]
#                             [--no-doc]
#
# Reproducible on a fresh Debian-like machine: installs dovecot-imapd,
# gnutls-bin and gnuplot when they are missing (no service is started),
# then, everything in one temporary directory on $TMPDIR's file system:
#
#  1. measures the disk's floor there (tests/bench/disk-floor): 4 KiB
#     append + fdatasync, and create + write + fsync + link + fsync of
#     the directory, alone and back to back;
#  2. starts a private, unprivileged Dovecot on 127.0.0.1 (its own
#     configuration, Maildir storage, the same users and passwords; the
#     system's Dovecot is never touched) and the pluto-local cluster
#     (storage, two workers, distributor) with [Limits] raised;
#  3. runs the same pluto-bench workloads (APPEND of 4 KiB, STORE,
#     CREATE+DELETE) with 1, 8 and 32 clients against both, over implicit
#     TLS, pluto through its distributor, alternating which server goes
#     first, ROUNDS times, plus a disk-floor measurement in every round;
#  4. measures APPEND into a mailbox of 100,000 messages against an empty
#     one (seeded with tests/bench/seed-store), 5,000 idle sessions
#     (tests/bench/idle-sessions.py) and the start-up of a worker holding
#     1,000 users x 1,000 messages (page cache warm; --cold drops the
#     whole machine's page cache first, which needs root);
#  5. writes the tables between the GENERATED markers of
#     doc/benchmarks.md and the plots into doc/img/.
#
# Nothing here asserts a timing; the numbers are for reading.  Every
# step is bounded by a timeout; the whole run takes about 15 minutes with
# the defaults.  Run it from a configured and built tree (make pluto
# pluto-pki pluto-bench tests/bench/disk-floor tests/bench/seed-store).
set -u

top_builddir=${top_builddir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
BENCH=$top_builddir/pluto-bench
FLOOR=$top_builddir/tests/bench/disk-floor
SEED=$top_builddir/tests/bench/seed-store
LOCAL=$top_srcdir/tools/pluto-local
IDLE=$top_srcdir/tests/bench/idle-sessions.py
PLOT=$top_srcdir/tests/bench/plot-cdf.sh
PRIVATE_DOVECOT=$top_srcdir/tests/bench/private-dovecot.sh
export PLUTO=${PLUTO:-$top_builddir/pluto}
export PLUTO_PKI=${PLUTO_PKI:-$top_builddir/pluto-pki}

rounds=3
duration=5
big=yes
idle=yes
cold=no
sessions=5000
keep=no
doc=yes
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift ;;
	--duration) duration=$2; shift ;;
	--no-big) big=no ;;
	--no-idle) idle=no ;;
	--cold) cold=yes ;;
	--sessions) sessions=$2; shift ;;
	--keep) keep=yes ;;
	--no-doc) doc=no ;;
	*) echo "usage: vs-dovecot.sh [--rounds N] [--duration S] [--no-big]" \
		"[--no-idle] [--sessions N] [--cold] [--keep] [--no-doc]" >&2
	   exit 2 ;;
	esac
	shift
done

say() { echo "vs-dovecot: $*"; }
die() { echo "vs-dovecot: $*" >&2; exit 1; }

for p in "$BENCH" "$FLOOR" "$SEED" "$PLUTO" "$PLUTO_PKI"; do
	[ -x "$p" ] || die "$p is not built (make ${p#$top_builddir/})"
done

# ---------------------------------------------------------------------
# Dependencies, the way tests/integration/test_bench.sh installs them.

need=
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] ||
	need="$need dovecot-imapd"
command -v certtool >/dev/null 2>&1 || need="$need gnutls-bin"
command -v gnuplot >/dev/null 2>&1 || need="$need gnuplot-nox"
command -v python3 >/dev/null 2>&1 || need="$need python3"
if [ -n "$need" ]; then
	say "installing$need"
	sudo=
	[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
	# RUNLEVEL=1: the packages' services are not started.
	{ timeout 300 $sudo apt-get update -qq &&
	  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 timeout 600 \
		$sudo apt-get install -y -qq --no-install-recommends $need; } \
		>/dev/null 2>&1 || die "could not install$need"
fi
DOVECOT=/usr/sbin/dovecot

# ---------------------------------------------------------------------
# The work directory, and cleaning up whatever runs in it.

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vs-dovecot.XXXXXX") || die "mktemp"
chmod 755 "$tmp"
pdir=$tmp/pluto
ddir=$tmp/dovecot
res=$tmp/results.tsv
floors=$tmp/floor.tsv
extra=$tmp/extra.txt
: >"$res"
: >"$floors"
: >"$extra"

dovecot_stop() {
	"$PRIVATE_DOVECOT" stop "$ddir"
}
pluto_stop_extra() {
	# Nodes this script started itself for the start-up measurement.
	for f in "$tmp"/startup-*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		kill "$pid" 2>/dev/null
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null
		rm -f "$f"
	done
}
cleanup() {
	pluto_stop_extra
	[ -f "$pdir/pluto.ini" ] &&
		timeout 60 "$LOCAL" down --dir "$pdir" >/dev/null 2>&1
	dovecot_stop
	if [ "$keep" = yes ]; then
		say "kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# Descriptors: 5,000 sessions are 10,000 sockets in the distributor
# alone.  The nodes inherit this limit from us.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
want=$((sessions * 2 + 2000))
[ "$hard" -lt "$want" ] && want=$hard
ulimit -n "$want" || die "cannot raise the descriptor limit to $want"
if [ "$idle" = yes ] && [ "$want" -lt $((sessions * 2 + 1000)) ]; then
	sessions=$(((want - 1000) / 2))
	say "descriptor limit $hard: only $sessions idle sessions"
fi

free_base() {
	python3 "$top_srcdir/tests/bench/free-base.py"
}
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Users: user1..user40 for the workloads, empty1..empty8 and big1 for the
# mailbox-size comparison, seed1..seed1000 for the start-up; passwords
# passwordN (the same for both servers, stored in plain text by both, so
# that neither pays a password hash at LOGIN).
nusers=40
nseed=1000
user_lines() {
	for i in $(seq 1 $nusers); do echo "user$i password$i"; done
	for i in $(seq 1 8); do echo "empty$i password$i"; done
	echo "big1 password1"
	for i in $(seq 1 $nseed); do echo "seed$i password$i"; done
}

# ---------------------------------------------------------------------
# The private Dovecot.

dovecot_start() {
	dport=$(free_port) || die "no free port"
	user_lines | "$PRIVATE_DOVECOT" start "$ddir" "$dport" || die "dovecot"
}

# ---------------------------------------------------------------------
# The pluto cluster: pluto-local, its configuration amended before the
# real start (limits raised, the benchmark users added).

pluto_start() {
	local base
	base=$(free_base)
	[ -n "$base" ] || die "no free base port for pluto-local"
	timeout 120 "$LOCAL" up --dir "$pdir" --base-port "$base" \
		>"$tmp/pluto-local.out" 2>&1 ||
		die "pluto-local up: $(tail -5 "$tmp/pluto-local.out")"
	timeout 60 "$LOCAL" down --dir "$pdir" >/dev/null 2>&1
	cat >>"$pdir/pluto.ini" <<INI

# Added by vs-dovecot.sh: room for 5,000 sessions from 127.0.0.1.
[Limits]
MaxConnections = 20000
MaxConnectionsPerIP = 20000
INI
	# The users follow the demo users (ids 1-4), so all of them have
	# ids from 5 up: worker-2's range.
	user_lines | awk '{ print $1 ":" $2 }' >>"$pdir/users.txt"
	pluto_up
	pport=$((base + 993))
}

pluto_up() {
	timeout 300 "$LOCAL" up --dir "$pdir" >"$tmp/pluto-local.out" 2>&1 ||
		die "pluto-local up: $(tail -5 "$tmp/pluto-local.out")"
}

pluto_down() {
	timeout 120 "$LOCAL" down --dir "$pdir" >/dev/null 2>&1
}

pluto_pids() {
	cat "$pdir"/run/*.pid 2>/dev/null | tr '\n' ',' | sed 's/,$//'
}

# ---------------------------------------------------------------------
# Running pluto-bench and keeping its summary rows.

# quiesce: waits (at most 120 s) until the pluto nodes use less than 3%
# of a CPU, so that one run does not pay for the replication backlog of
# the run before (storage applying what the workers wrote), whichever
# server it measures.  Dovecot does nothing in the background.
quiesce() {
	local pids start now ticks last i
	pids=$(pluto_pids | tr , ' ')
	[ -n "$pids" ] || return 0
	start=$(date +%s)
	last=
	for i in $(seq 1 240); do
		ticks=0
		for p in $pids; do
			[ -r "/proc/$p/stat" ] || continue
			ticks=$((ticks + $(awk '{ print $14 + $15 }' \
				"/proc/$p/stat")))
		done
		if [ -n "$last" ] && [ $((ticks - last)) -le 1 ]; then
			break
		fi
		last=$ticks
		sleep 0.5
	done
	now=$(date +%s)
	[ $((now - start)) -gt 1 ] &&
		echo "quiesce_waited_s $((now - start))" >>"$extra"
	return 0
}

# run SERVER TAG ROUND CLIENTS ARGS...: one pluto-bench run; appends
# "server tag clients round command count errors p50 p90 p99 ok/s" rows
# to results.tsv and keeps the CSV.
run() {
	local server=$1 tag=$2 round=$3 clients=$4 port out
	shift 4
	if [ "$server" = pluto ]; then port=$pport; else port=$dport; fi
	out=$tmp/out/$server-$tag-c$clients-r$round
	mkdir -p "$tmp/out"
	quiesce
	timeout -k 5 $((duration * 4 + 120)) "$BENCH" -H 127.0.0.1 \
		-p "$port" --insecure --quiet --timeout 30 -c "$clients" \
		--csv "$out.csv" "$@" >"$out.txt" 2>"$out.err"
	st=$?
	[ $st -eq 0 ] || say "pluto-bench $server $tag exited $st:" \
		"$(head -3 "$out.err")"
	awk -v s="$server" -v t="$tag" -v c="$clients" -v r="$round" '
		$1 ~ /^[A-Z]+$/ && NF == 9 {
			print s, t, c, r, $1, $2, $3, $5, $6, $7, $9 }' \
		"$out.txt" >>"$res"
}

floor_round() {
	"$FLOOR" -n "$1" "$tmp" | awk -v r="$2" '!/^#/ {
		print r, $1, $3, $4, $5 }' >>"$floors"
}

# workloads ROUND SERVER: every side-by-side workload on one server.
workloads() {
	local r=$1 s=$2 c
	for c in 1 8 32; do
		run "$s" append "$r" "$c" -w append -s 4096 -d "$duration" \
			--user-range 1-$c
		run "$s" store "$r" "$c" -w store -d "$duration" \
			--user-range 1-$c
		run "$s" createdelete "$r" "$c" -w createdelete \
			-d "$duration" --user-range 1-$c
	done
}

# startup LABEL: starts the distributor and worker-2 alone (storage
# would start catching up on the new records and disturb the worker),
# then LOGINs as seed1000 through the distributor every 20 ms from the
# worker's start until one is answered OK; notes the time, and SELECTs.
startup() {
	local label=$1 t0
	echo "startup_${label}_journal_bytes $(du -sb \
		"$pdir/data/worker-2/crdt/journal" | cut -f1)" >>"$extra"
	sync
	if [ "$cold" = yes ]; then
		echo 3 >/proc/sys/vm/drop_caches 2>/dev/null &&
			echo "startup_${label}_cold_cache yes" >>"$extra"
	fi
	(cd "$pdir" && exec "$PLUTO" -c pluto.ini --distributor \
		>>logs/distributor.log 2>&1) &
	echo $! >"$tmp/startup-distributor.pid"
	sleep 1
	t0=$(date +%s.%N)
	(cd "$pdir" && exec "$PLUTO" -c pluto.ini --worker worker-2 \
		>>logs/worker-2.log 2>&1) &
	echo $! >"$tmp/startup-worker.pid"
	python3 - "$pport" "$t0" "$label" >>"$extra" <<'PY'
import socket, ssl, sys, time
port, t0, label = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
deadline = t0 + 120
while time.time() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), 5) as raw:
            with ctx.wrap_socket(raw) as s:
                f = s.makefile("rwb")
                f.readline()
                f.write(b'a LOGIN "seed1000" "password1000"\r\n')
                f.flush()
                line = f.readline()
                if line.startswith(b"a OK"):
                    t = time.time() - t0
                    f.write(b"b SELECT INBOX\r\n")
                    f.flush()
                    exists = 0
                    while True:
                        line = f.readline()
                        if line.endswith(b"EXISTS\r\n"):
                            exists = int(line.split()[1])
                        if not line or line.startswith(b"b "):
                            break
                    print("startup_%s_first_login_s %.3f" % (label, t))
                    print("startup_%s_select_s %.3f"
                          % (label, time.time() - t0))
                    print("startup_%s_exists %d" % (label, exists))
                    sys.exit(0)
    except (OSError, ssl.SSLError):
        pass
    time.sleep(0.02)
print("startup_%s_first_login_s timeout" % label)
PY
	grep -h 'journal replayed' "$pdir/logs/worker-2.log" | tail -1 |
		sed "s/^/startup_${label}_log: /" >>"$extra"
	pluto_stop_extra
}

# ---------------------------------------------------------------------

start_s=$(date +%s)
say "work directory $tmp ($(df -hT "$tmp" | awk 'NR == 2 {
	print $2 " on " $1 }'))"
say "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "load_before $(cut -d' ' -f1-3 /proc/loadavg)" >>"$extra"
echo "date $(date -u +%Y-%m-%dT%H:%MZ)" >>"$extra"

dovecot_start
say "dovecot $($DOVECOT --version | cut -d' ' -f1) on port $dport"
pluto_start
say "pluto-local cluster, distributor on port $pport (pids $(pluto_pids))"

# Every user logs in once on both servers before anything is timed
# (pluto reconciles a user's Maildir on first use, Dovecot creates it).
for s in pluto dovecot; do
	run "$s" warmup 0 40 -w select -n 1 --user-range 1-40
	run "$s" warmup 0 8 -w select -n 1 -u empty%d --user-range 1-8
done

for r in $(seq 1 "$rounds"); do
	say "round $r of $rounds"
	floor_round 300 "$r"
	if [ $((r % 2)) -eq 1 ]; then
		workloads "$r" pluto
		workloads "$r" dovecot
	else
		workloads "$r" dovecot
		workloads "$r" pluto
	fi
done
floor_round 300 $((rounds + 1))

# ---------------------------------------------------------------------
# 5,000 idle sessions through the distributor.

if [ "$idle" = yes ]; then
	say "$sessions idle sessions"
	echo "rss_before_kib $(for p in $(pluto_pids | tr , ' '); do
		awk '/^VmRSS/ { print $2 }' /proc/$p/status; done |
		awk '{ s += $1 } END { print s }')" >>"$extra"
	timeout 900 python3 "$IDLE" --port "$pport" --sessions "$sessions" \
		--user-range 1-$nusers --probes 200 --pids "$(pluto_pids)" \
		>"$tmp/idle.txt" 2>"$tmp/idle.err" ||
		say "idle-sessions: $(head -3 "$tmp/idle.err")"
	sed 's/^/idle_/' "$tmp/idle.txt" >>"$extra"
	for n in storage worker-1 worker-2 distributor; do
		echo "pid_$n $(cat "$pdir/run/$n.pid" 2>/dev/null)" >>"$extra"
	done
fi

# ---------------------------------------------------------------------
# APPEND into 100,000 messages against an empty mailbox.

if [ "$big" = yes ]; then
	say "seeding big1 with 100,000 messages"
	pluto_down
	timeout 900 "$SEED" -c "$pdir/pluto.ini" -N worker-2 -u big%d \
		-U 1 -m 100000 -s 1024 -S >"$tmp/seed-big.txt" 2>&1 ||
		die "seed-store: $(tail -3 "$tmp/seed-big.txt")"
	sed 's/^/seed_big: /' "$tmp/seed-big.txt" >>"$extra"
	pluto_up
	# The first LOGIN reconciles the user's Maildir with its state.
	run pluto bigfirst 0 1 -w select -n 1 -u big%d --user-range 1-1
	for r in $(seq 1 "$rounds"); do
		say "100k round $r of $rounds"
		if [ $((r % 2)) -eq 1 ]; then
			run pluto big100k "$r" 1 -w append -s 4096 -n 300 \
				-u big%d --user-range 1-1
			run pluto bigempty "$r" 1 -w append -s 4096 -n 300 \
				-u empty%d --user-range $r-$r
		else
			run pluto bigempty "$r" 1 -w append -s 4096 -n 300 \
				-u empty%d --user-range $r-$r
			run pluto big100k "$r" 1 -w append -s 4096 -n 300 \
				-u big%d --user-range 1-1
		fi
	done

	# A worker holding 1,000 users x 1,000 messages: from its start
	# to the first LOGIN answered through the distributor.  Twice:
	# with the whole journal (storage never acknowledged anything: the
	# worst case), then in the steady state, storage caught up and the
	# journal trimmed as the worker's trim thread would have done.
	say "seeding 1,000 users x 1,000 messages"
	pluto_down
	timeout 1800 "$SEED" -c "$pdir/pluto.ini" -N worker-2 -u seed%d \
		-U "$nseed" -m 1000 -s 1024 -t 2 >"$tmp/seed-1000.txt" 2>&1 ||
		die "seed-store: $(tail -3 "$tmp/seed-1000.txt")"
	sed 's/^/seed_1000: /' "$tmp/seed-1000.txt" >>"$extra"
	startup untrimmed
	say "catching storage up, trimming the worker's journal"
	timeout 1800 "$SEED" -c "$pdir/pluto.ini" -N worker-2 -u seed%d \
		-U 1 -m 0 -S -T >"$tmp/seed-trim.txt" 2>&1 ||
		die "seed-store: $(tail -3 "$tmp/seed-trim.txt")"
	sed 's/^/seed_trim: /' "$tmp/seed-trim.txt" >>"$extra"
	startup trimmed
fi

echo "load_after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$extra"
echo "elapsed_s $(($(date +%s) - start_s))" >>"$extra"
cp "$res" "$floors" "$extra" "$tmp/out/" 2>/dev/null

# ---------------------------------------------------------------------
# Tables and plots.

if [ "$doc" = yes ]; then
	mkdir -p "$top_srcdir/doc/img"
	if command -v gnuplot >/dev/null 2>&1; then
		for w in append store createdelete; do
			case $w in
			append) cmd=APPEND ;;
			store) cmd=STORE ;;
			createdelete) cmd=CREATE ;;
			esac
			for c in 1 32; do
				for s in pluto dovecot; do
					head -1 "$tmp/out/$s-$w-c$c-r1.csv" \
						>"$tmp/$s.csv"
					for r in $(seq 1 "$rounds"); do
						tail -n +2 \
						  "$tmp/out/$s-$w-c$c-r$r.csv"
					done >>"$tmp/$s.csv"
				done
				sh "$PLOT" -c "$cmd" \
					-o "$top_srcdir/doc/img/$w-$c" \
					"$tmp/pluto.csv" "$tmp/dovecot.csv" \
					>/dev/null ||
					say "plot of $w with $c clients failed"
				# One point per request: megabytes of SVG.
				rm -f "$top_srcdir/doc/img/$w-$c.svg"
			done
		done
	fi
	python3 "$top_srcdir/tests/bench/report.py" --results "$res" \
		--floors "$floors" --extra "$extra" --rounds "$rounds" \
		--img "$top_srcdir/doc/img" \
		--doc "$top_srcdir/doc/benchmarks.md" ||
		say "report.py failed"
else
	python3 "$top_srcdir/tests/bench/report.py" --results "$res" \
		--floors "$floors" --extra "$extra" --rounds "$rounds"
fi
say "done in $(($(date +%s) - start_s)) s"
