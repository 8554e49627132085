#!/bin/sh
# plot-cdf.sh - draw latency CDFs of pluto-bench CSV files with gnuplot.
#
#   plot-cdf.sh [-c COMMAND] [-o PREFIX] [-l] FILE.csv FILE.csv ...
#
# Each CSV file (pluto-bench --csv) becomes one curve: the successful
# requests' latencies, of COMMAND only when -c is given.  Writes PREFIX.png
# and PREFIX.svg (default prefix: latency-cdf).  -l draws a linear latency
# axis instead of a logarithmic one.  Needs gnuplot.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cmd=
prefix=latency-cdf
logx=1

usage() {
	echo "usage: plot-cdf.sh [-c COMMAND] [-o PREFIX] [-l] FILE.csv..." >&2
	exit 2
}

while getopts c:o:lh opt; do
	case $opt in
	c) cmd=$OPTARG ;;
	o) prefix=$OPTARG ;;
	l) logx=0 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage
case $cmd in
*[!A-Za-z]*) echo "plot-cdf.sh: -c takes a command name" >&2; exit 2 ;;
esac
command -v gnuplot >/dev/null 2>&1 || {
	echo "plot-cdf.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2
	exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/plot-cdf.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Data files get plain names and titles lose anything gnuplot's string
# handling could trip on, whatever the CSV files are called.
datafiles=
titles=
i=0
for f in "$@"; do
	i=$((i + 1))
	[ -r "$f" ] || { echo "plot-cdf.sh: cannot read $f" >&2; exit 1; }
	awk -F, -v cmd="$cmd" 'NR > 1 && $5 == "OK" && (cmd == "" || $2 == cmd) \
		{ printf "%.3f\n", $4 / 1000 }' "$f" | sort -g >"$tmp/raw"
	n=$(wc -l <"$tmp/raw")
	if [ "$n" -eq 0 ]; then
		echo "plot-cdf.sh: $f has no successful ${cmd:-request}" \
			"samples" >&2
		exit 1
	fi
	awk -v n="$n" '{ print $1, NR / n }' "$tmp/raw" >"$tmp/$i.dat"
	title=$(basename "$f" .csv | tr -c 'A-Za-z0-9._+\n-' '_')
	datafiles="$datafiles $tmp/$i.dat"
	titles="$titles $title"
done

gnuplot -e "datafiles='${datafiles# }'; titles='${titles# }'; \
out='$tmp/out'; what='${cmd:-all commands}'; logx=$logx" \
	"$here/plot-cdf.gp"
cp "$tmp/out.png" "$prefix.png"
cp "$tmp/out.svg" "$prefix.svg"
echo "plot-cdf.sh: wrote $prefix.png and $prefix.svg"
