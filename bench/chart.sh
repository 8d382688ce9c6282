#!/usr/bin/env bash
# Draws the benchmark chart from a run's output.
#
#   bench/chart.sh RUN.log [OUT.svg]
#
# RUN.log: the lines the benchmarks print ("[group] name = 12345 unit (...)"),
# e.g. `make bench | tee run.log`, `bench/bench_ps.sh | tee -a run.log`.
# Writes RUN.dat beside the log (workload, figure, rate, ratio to the
# workload's reference) and OUT.svg (default RUN.svg): one bar per figure,
# as a multiple of its workload's reference, which is marked at 1 (the
# limit a client could reach there: the raw non-blocking loop for MySQL
# point selects, redis-benchmark -P 32 for GETs, sysbench with prepared
# statements for prepared point selects, the text C API for INSERTs, the
# mariadb | awk | redis-cli --pipe pipeline for the 1M-row copy).
# Needs gnuplot (Debian gnuplot-nox).
set -euo pipefail
log="$1"
svg="${2:-${log%.*}.svg}"
dat="${log%.*}.dat"
# one row per figure with a reference (bench/table.awk says which), grouped by workload
awk -v dat=1 -f "$(dirname "$0")/table.awk" "$log" | awk '/^#/ || $4 > 0' > "$dat"
n=$(grep -vc '^#' "$dat" || true)
[[ "$n" -gt 0 ]] || { echo "chart.sh: no figures in $log" >&2; exit 1; }
gnuplot <<GP
set terminal svg size 980,$((120 + 24 * n)) font "sans,11" background "white" noenhanced
set lmargin 40
set output "$svg"
set title "dbpool beside its peers, as a multiple of each workload's reference (marked at 1)"
set style fill solid 0.8 border -1
set yrange [-0.8:$n - 0.2]
set ytics nomirror
set xtics nomirror
set grid xtics
set xlabel "throughput / reference (same run)"
set key off
set offsets 0, 0.15, 0, 0
set arrow from 1, graph 0 to 1, graph 1 nohead lw 2 dt 2 lc rgb "#c00000"
plot "$dat" using (\$4):(\$0):(0):(\$4):(\$0 - 0.35):(\$0 + 0.35):ytic(sprintf("%s: %s", stringcolumn(1), stringcolumn(2))) \
     with boxxyerror lc rgb "#3a6ea5", \
     "$dat" using (\$4):(\$0):(sprintf(" %.2f (%s/s)", \$4, stringcolumn(3))) with labels left offset 0.3,0 font "sans,9"
GP
echo "chart.sh: $dat and $svg"
