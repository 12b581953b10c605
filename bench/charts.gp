# The charts of docs/benchmarks.md, from the data files bench/report.py writes.
#   gnuplot -e "data='DIR'; images='DIR'; n=SCENARIOS; n_rtt=SCENARIOS_WITH_RTT" bench/charts.gp
set terminal pngcairo size 1100,520 font "DejaVu Sans,10"
set style fill solid 0.85 border -1
set boxwidth 0.26
set grid ytics
set key top left
set xtics rotate by -30 left nomirror
set xrange [-0.6:n - 0.4]
set border 3
set ytics nomirror
set bmargin 7

set output images."/bench-throughput.png"
set title "Throughput relative to Asio (1.0 = Asio; portico with its 95% interval)"
set ylabel "ratio to Asio (log scale)"
set logscale y 2
set yrange [0.125:*]
plot data."/ratios.dat" using ($0-0.27):2:xtic(1) with boxes lc rgb "#9e9e9e" title "Asio", \
     ''                 using ($0):3 with boxes lc rgb "#1565c0" title "portico", \
     ''                 using ($0):3:4:5 with yerrorbars lc rgb "black" pt 0 notitle, \
     ''                 using ($0+0.27):6 with boxes lc rgb "#ef6c00" title "raw IOCP (floor)", \
     1 with lines lc rgb "black" dt 2 notitle

set output images."/bench-latency.png"
set title "Round-trip time, 99th percentile (lower is better)"
set ylabel "p99 RTT (µs, log scale)"
set logscale y 10
set yrange [*:*]
set xrange [-0.6:n_rtt - 0.4]
plot data."/latency.dat" using ($0-0.27):3:xtic(1) with boxes lc rgb "#9e9e9e" title "Asio", \
     ''                  using ($0):2 with boxes lc rgb "#1565c0" title "portico", \
     ''                  using ($0+0.27):4 with boxes lc rgb "#ef6c00" title "raw IOCP (floor)"
unset logscale y

set output images."/bench-calls.png"
set xrange [-0.6:n - 0.4]
set title "Win32 calls per message (lower is better)"
set ylabel "calls per message"
set yrange [0:*]
plot data."/calls.dat" using ($0-0.27):3:xtic(1) with boxes lc rgb "#9e9e9e" title "Asio", \
     ''                using ($0):2 with boxes lc rgb "#1565c0" title "portico", \
     ''                using ($0+0.27):4 with boxes lc rgb "#ef6c00" title "raw IOCP (floor)"
