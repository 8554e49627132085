# plot-cdf.gp - latency CDFs of pluto-bench runs, as PNG and SVG.
#
# Normally run through plot-cdf.sh, which turns pluto-bench CSV files into
# the two-column data this script reads ("latency_ms fraction", sorted).
# Variables (gnuplot -e):
#   datafiles  space-separated data files, one curve each
#   titles     space-separated curve titles, one per data file
#   out        output prefix: writes out.png and out.svg
#   what       what is plotted, for the title (e.g. "APPEND")
#   logx       1 for a logarithmic latency axis (default 1)

if (!exists("datafiles") || !exists("out")) {
	print "plot-cdf.gp: set datafiles and out (see plot-cdf.sh)"
	exit status 2
}
if (!exists("titles")) titles = datafiles
if (!exists("what")) what = "all commands"
if (!exists("logx")) logx = 1

n = words(datafiles)

set title sprintf("pluto-bench latency CDF: %s", what) noenhanced
set xlabel "latency (ms)"
set ylabel "fraction of requests at or below"
set yrange [0:1]
set ytics 0.1
set grid xtics ytics mxtics
set key bottom right noenhanced
if (logx) set logscale x 10

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
	set terminal pngcairo size 1000,640 noenhanced
} else {
	set terminal png size 1000,640
}
set output out.".png"
plot for [i=1:n] word(datafiles, i) using 1:2 with steps lw 2 \
	title word(titles, i)

set terminal svg size 1000,640 dynamic noenhanced
set output out.".svg"
replot
set output
