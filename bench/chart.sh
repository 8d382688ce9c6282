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
# the reference of each workload, and which figures belong to it
awk '
function wl(g, n) {
    if (g == "mysql" || g == "lua-mysql") {
        if (n ~ /insert10/) return "insert10"
        return "point_select"
    }
    if (g == "ps") {
        if (n ~ /insert10/) return "insert10"
        return "ps_point_select"
    }
    if (g == "redis" || g == "lua-redis") return "get"
    if (g == "copy") return "copy_1m_rows"
    return ""
}
/^\[[a-z-]+\] [A-Za-z0-9_]+ = [0-9.]+ / && $2 !~ /^lua_pool[0-9]+$/ {
    g = substr($1, 2, length($1) - 2); n = $2; r = $4
    w = wl(g, n); if (w == "") next
    key = w SUBSEP n
    if (!(key in cnt)) order[++k] = key
    vals[key, ++cnt[key]] = r + 0
}
END {
    # several rounds of a figure: its median
    for (i = 1; i <= k; i++) {
        key = order[i]; m = cnt[key]
        for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++)
            if (vals[key, y] < vals[key, x]) { t = vals[key, x]; vals[key, x] = vals[key, y]; vals[key, y] = t }
        rate[key] = vals[key, int((m + 1) / 2)]
    }
    ref["point_select"] = "raw_nonblock8"; ref["get"] = "redis_benchmark_c8_P32"
    ref["ps_point_select"] = "sysbench_auto_t8"; ref["insert10"] = "c_insert10_pool8_text"
    ref["copy_1m_rows"] = "mariadb_awk_rediscli_pipe"
    print "# workload figure rate ratio_to_reference (reference: " ref["point_select"] ", " ref["get"] ", " ref["ps_point_select"] ", " ref["insert10"] ", " ref["copy_1m_rows"] ")"
    for (i = 1; i <= k; i++) {
        split(order[i], a, SUBSEP); w = a[1]; n = a[2]
        rk = w SUBSEP ref[w]
        ratio = (rk in rate && rate[rk] > 0) ? rate[order[i]] / rate[rk] : 0
        printf "%s %s %.0f %.3f\n", w, n, rate[order[i]], ratio
    }
}' "$log" > "$dat.tmp"
{ grep '^#' "$dat.tmp"; grep -v '^#' "$dat.tmp" | sort -s -k1,1; } > "$dat"   # grouped by workload
rm -f "$dat.tmp"
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
