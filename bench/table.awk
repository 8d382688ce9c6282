# bench/table.awk: one table of a benchmark run, from its log.
#
#   awk -f bench/table.awk RUN.log              the table, for people
#   awk -v dat=1 -f bench/table.awk RUN.log     the data file bench/chart.sh draws
#
# Reads the lines the benchmarks print, "[group] figure = rate unit (...)",
# and the instruction counts bench/run.sh adds, "[instr] workload/figure = N
# instr/op (...)". Each figure belongs to a workload, and each workload has a
# reference in the same run: the limit a client could reach there, or the
# tool a user would otherwise pick. A figure printed in several rounds (or by
# two benchmarks) counts as its median.
#
#   workload         reference                     figures
#   point_select     raw_nonblock8 (libmariadb     dbpool C and Lua, LuaSQL, libzdb
#                    non-blocking, no pool)        text, node mysql2 pool.query
#   ps_point_select  sysbench_auto_t8              dbpool prepared, libzdb prepared,
#                                                  mysql2 pool.execute, sysbench disable
#   insert10         c_insert10_pool8_text         dbpool prepared and text
#   get              redis_benchmark_c8_P32        dbpool C and Lua, redis-lua, ioredis
#   copy_1m_rows     mariadb_awk_rediscli_pipe     dbpool run (map, window, many)
#   pg_point_select  pgbench_c8_j1_simple          dbpool text, pgbench simple/extended
#   pg_ps_point_select pgbench_c8_j1_prepared      dbpool prepared, pgbench prepared
#   cluster, replicas  (none: rates only)
function workload(g, n) {
    if (n ~ /insert10/) return "insert10"
    if (g == "mysql" || g == "lua-mysql") return "point_select"
    if (g == "ps") return "ps_point_select"
    if (g == "zdb") return n ~ /prepared/ ? "ps_point_select" : "point_select"
    if (g == "node") {
        if (n ~ /^mysql2_execute/) return "ps_point_select"
        if (n ~ /^mysql2/) return "point_select"
        return "get"
    }
    if (g == "redis" || g == "lua-redis") return "get"
    if (g == "copy") return "copy_1m_rows"
    if (g == "pg") return (n ~ /_ps$|prepared/) ? "pg_ps_point_select" : "pg_point_select"
    if (g == "lua-cluster") return "cluster"
    if (g == "replicas") return g
    return ""
}
BEGIN {
    ref["point_select"] = "raw_nonblock8"; ref["ps_point_select"] = "sysbench_auto_t8"
    ref["insert10"] = "c_insert10_pool8_text"; ref["get"] = "redis_benchmark_c8_P32"
    ref["copy_1m_rows"] = "mariadb_awk_rediscli_pipe"
    ref["pg_point_select"] = "pgbench_c8_j1_simple"; ref["pg_ps_point_select"] = "pgbench_c8_j1_prepared"
}
/^\[instr\] [a-z_]+\/[A-Za-z0-9_]+ = [0-9.]+ / {
    instr[$2] = $4
    next
}
# lua_pool8 / lua_pool4 repeat the best Lua mode under another name
/^\[[a-z-]+\] [A-Za-z0-9_]+ = [0-9.]+ / && $2 !~ /^lua_pool[0-9]+$/ {
    g = substr($1, 2, length($1) - 2); n = $2
    w = workload(g, n); if (w == "") next
    key = w "/" n
    if (!(key in cnt)) { order[++k] = key; unit[key] = $5 }
    vals[key, ++cnt[key]] = $4 + 0
}
END {
    for (i = 1; i <= k; i++) {
        key = order[i]; m = cnt[key]
        for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++)
            if (vals[key, y] < vals[key, x]) { t = vals[key, x]; vals[key, x] = vals[key, y]; vals[key, y] = t }
        rate[key] = (m % 2) ? vals[key, (m + 1) / 2] : (vals[key, m / 2] + vals[key, m / 2 + 1]) / 2
    }
    # grouped by workload, in the order the workloads first appear
    nw = 0
    for (i = 1; i <= k; i++) {
        split(order[i], a, "/")
        if (!(a[1] in seen)) { seen[a[1]] = 1; wl[++nw] = a[1] }
    }
    if (dat) print "# workload figure rate ratio_to_reference instructions_per_op (bench/table.awk)"
    else {
        printf "%-19s %-32s %12s %-6s %7s %10s\n", "workload", "figure", "rate", "", "ratio", "instr/op"
        printf "%-19s %-32s %12s %-6s %7s %10s\n", "--------", "------", "----", "", "-----", "--------"
    }
    for (j = 1; j <= nw; j++) {
        w = wl[j]; rk = w "/" ref[w]
        for (i = 1; i <= k; i++) {
            split(order[i], a, "/"); if (a[1] != w) continue
            key = order[i]
            ratio = (w in ref && rk in rate && rate[rk] > 0) ? rate[key] / rate[rk] : 0
            ins = (key in instr) ? instr[key] : 0
            if (dat) printf "%s %s %.0f %.3f %.0f\n", w, a[2], rate[key], ratio, ins
            else printf "%-19s %-32s %12.0f %-6s %7s %10s\n", w, a[2] (key == rk ? " (ref)" : ""), rate[key], unit[key],
                        (ratio > 0) ? sprintf("%.2f", ratio) : "-", (ins > 0) ? sprintf("%.0f", ins) : ""
        }
    }
    if (dat) exit
    # issue 14's targets, from this run's figures
    print ""
    target("1", "instructions, Lua MySQL point select (query_many) / C API", "point_select/lua_many_pool8", "point_select/c_pool8", "<=", 1.3)
    target("1", "instructions, Lua MySQL point select (window) / C API", "point_select/lua_window_pool8", "point_select/c_pool8", "<=", 1.3)
    target("1", "the same, prepared (window) / C API prepared", "ps_point_select/lua_window_pool8_ps", "ps_point_select/c_pool8_ps", "<=", 1.3)
    target("2", "instructions, Lua Redis GET (call_many) / C API", "get/lua_many_pool4", "get/c_pool4", "<=", 1.5)
    target("2", "instructions, Lua Redis GET (window) / C API", "get/lua_window_pool4", "get/c_pool4", "<=", 1.5)
    target("3", "instructions, C API MySQL point select / raw loop", "point_select/c_pool8", "point_select/raw_nonblock8", "<=", 1.15)
    target("4", "rate, 1M-row copy dbpool run (many) / pipeline", "copy_1m_rows/dbpool_run_many", "copy_1m_rows/mariadb_awk_rediscli_pipe", ">=", 0.8)
    target("5", "rate, C API prepared / sysbench auto", "ps_point_select/c_pool8_ps", "ps_point_select/sysbench_auto_t8", ">=", 0.95)
    target("5", "rate, Lua prepared / sysbench auto", "ps_point_select/lua_window_pool8_ps", "ps_point_select/sysbench_auto_t8", ">=", 0.85)
}
# target N: a over b, instructions when the line says so (both must have them), else rates
function target(num, what, a, b, op, limit,    x, y, r, met) {
    if (what ~ /^instructions/ || what ~ /^the same/) { x = instr[a]; y = instr[b] } else { x = rate[a]; y = rate[b] }
    if (!(x > 0 && y > 0)) { printf "target %s: %-62s (not measured in this run)\n", num, what; return }
    r = x / y
    met = (op == "<=") ? (r <= limit) : (r >= limit)
    printf "target %s: %-62s %6.3f  (%s %s: %s)\n", num, what, r, op, limit, met ? "met" : "NOT met"
}
