#!/bin/bash
# cpu-per-append.sh - CPU time per APPEND of each pluto node, for two
# builds side by side.
#
#   tests/bench/cpu-per-append.sh [--rounds N] [--appends N] OLD NEW
#
# OLD and NEW are build directories (each holding pluto and pluto-pki).
# Two pluto-local clusters run at once, one per build, with user1..user40
# added; each round runs, on one cluster and then the other, N APPENDs of
# 4 KiB from 32 clients (user1..user32) with NEW's pluto-bench, and reads
# the user and system CPU time of storage, worker-2 and the distributor
# from /proc before the run and after the nodes are idle again -- so the
# replication work storage finishes after the run counts too.  Prints,
# per round and build, microseconds of CPU per APPEND by node, pluto-bench's
# own, and the throughput.  Throughput on a shared 2-CPU machine is noisy;
# CPU time per APPEND much less so, which is why this measures it.
#
# Linux only (/proc).  Nothing of it runs in make check.
set -u

rounds=3
appends=16000
while [ $# -gt 2 ]; do
	case $1 in
	--rounds) rounds=$2; shift ;;
	--appends) appends=$2; shift ;;
	*) break ;;
	esac
	shift
done
[ $# -eq 2 ] || {
	echo "usage: cpu-per-append.sh [--rounds N] [--appends N] OLD NEW" >&2
	exit 2
}
here=$(cd "$(dirname "$0")" && pwd)
local_tool=$here/../../tools/pluto-local
bench=$2/pluto-bench
for f in "$1/pluto" "$2/pluto" "$bench"; do
	[ -x "$f" ] || { echo "cpu-per-append.sh: no $f" >&2; exit 2; }
done
clients=32
per_client=$((appends / clients))
appends=$((per_client * clients))

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cpu-per-append.XXXXXX") || exit 1
cleanup() {
	for d in "$tmp"/old "$tmp"/new; do
		[ -f "$d/pluto.ini" ] &&
			timeout 60 "$local_tool" down --dir "$d" >/dev/null 2>&1
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

free_base() {
	python3 "$here/free-base.py"
}

# start NAME BUILD: a cluster of BUILD's binaries in $tmp/NAME.
start() {
	local dir=$tmp/$1 base
	base=$(free_base)
	export PLUTO=$2/pluto PLUTO_PKI=$2/pluto-pki
	timeout 120 "$local_tool" up --dir "$dir" --base-port "$base" \
		>/dev/null 2>&1 &&
	timeout 60 "$local_tool" down --dir "$dir" >/dev/null 2>&1 || {
		echo "cpu-per-append.sh: pluto-local up failed" >&2; exit 1; }
	for u in $(seq 1 40); do echo "user$u:password$u"; done \
		>>"$dir/users.txt"
	timeout 120 "$local_tool" up --dir "$dir" >/dev/null 2>&1 || {
		echo "cpu-per-append.sh: pluto-local up failed" >&2; exit 1; }
	echo $((base + 993)) >"$dir/port"
}
start old "$1"
start new "$2"

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
all_pids=$(cat "$tmp"/*/run/*.pid | tr '\n' ' ')
# Waits (at most 120 s) until every node of both clusters is idle.
quiesce() {
	local last= t p
	for _ in $(seq 1 240); do
		t=0
		for p in $all_pids; do t=$((t + $(ticks "$p"))); done
		[ -n "$last" ] && [ $((t - last)) -le 1 ] && return
		last=$t
		sleep 0.5
	done
}
hz=$(getconf CLK_TCK)

for r in $(seq 1 "$rounds"); do
	for build in old new; do
		dir=$tmp/$build
		quiesce
		declare -A before=()
		for node in storage worker-2 distributor; do
			before[$node]=$(ticks "$(cat "$dir/run/$node.pid")")
		done
		out=$( { /usr/bin/time -f "bench-cpu %U %S" "$bench" \
			-H 127.0.0.1 -p "$(cat "$dir/port")" --insecure \
			--quiet --timeout 30 -c $clients -w append -s 4096 \
			-n $per_client --user-range 1-$clients; } 2>&1 )
		quiesce
		line="round $r $build:"
		for node in storage worker-2 distributor; do
			t=$(( $(ticks "$(cat "$dir/run/$node.pid")") - \
				before[$node] ))
			line="$line $node $(awk -v t="$t" -v n=$appends \
				-v hz="$hz" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }') us,"
		done
		line="$line pluto-bench $(echo "$out" | awk -v n=$appends \
			'/^bench-cpu/ { printf "%.0f", ($2 + $3) * 1e6 / n }') us;"
		line="$line $(echo "$out" | awk '$1 == "APPEND" {
			print $2, "APPENDs,", $3, "errors,", $9, "ok/s" }')"
		echo "$line"
	done
done
