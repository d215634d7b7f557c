# Dashboard latency against dataset rows, ours vs naive SQL, one panel per
# function.  gnuplot -e "dir='bench/results/<date>'" bench/plot_dashboards.gp
set terminal pngcairo noenhanced size 1600,800 font ",10"
set output dir."/dashboards.png"
set datafile missing "NaN"
set key top left font ",9"
set logscale xy
set xrange [5e5:2e7]
set grid
set xlabel "rows in the log (heavy key: 20 %)"
set ylabel "latency, ms (median)"
set format x "%.0s%c"
set multiplot layout 2,4 title "apikey_usage dashboards: the heavy key over 30 days, 1 client"
do for [d in "summary by_method by_status top_endpoints timeseries log_page1 log_page100"] {
	f = dir."/raw/plot/dash_".d.".dat"
	set title d
	plot f using 1:2 with linespoints lw 2 pt 7 title "ours", \
	     f using 1:3 with linespoints lw 2 pt 5 title "naive SQL"
}
unset multiplot
