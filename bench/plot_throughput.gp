# Request-path throughput by clients, each call next to SELECT 1 and its
# naive SQL version.  gnuplot -e "dir='bench/results/<date>'" bench/plot_throughput.gp
set terminal pngcairo noenhanced size 1400,1000 font ",10"
set output dir."/throughput.png"
set datafile missing "NaN"
set key top left box opaque font ",9"
set logscale y
set grid ytics mytics
set xlabel "pgbench clients"
set ylabel "transactions per second (median)"
set format y "%.0s%c"
set multiplot layout 2,2 title "apikey_usage request path: throughput by clients (fsync on, -M prepared)"
do for [g in "verify limiter logging gateway"] {
	f = dir."/raw/plot/throughput_".g.".dat"
	set title g
	plot for [i=2:*] f using 0:i:xtic(1) with linespoints lw 2 pt 7 title columnhead(i)
}
unset multiplot
