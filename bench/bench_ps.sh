#!/usr/bin/env bash
# Text against prepared statements, beside sysbench, on the same server in
# one run: point selects (sysbench oltp_point_select --threads=8 with
# --db-ps-mode=disable and auto; dbpool's C API and Lua, pool of 8, 64 in
# flight, prepare off and on) and a 10-parameter INSERT (C API). The rounds
# interleave the programs so that the load of the shared machine falls on
# all of them alike.
#
#   scripts/with-servers.sh bench/bench_ps.sh      (or with the servers' env set)
#
# Environment: BENCH_PS_ROUNDS (3), BENCH_PS_SECONDS (sysbench's --time, 10),
# BENCH_PS_N (dbpool point selects per measurement, 60000), BENCH_PS_INSERTS
# (20000), LUA (lua5.4). Prints "[ps] name = rate q/s (round r)" lines, then
# the median of each over the rounds. bench/chart.sh draws them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"
LUA="${LUA:-lua5.4}"
ROUNDS="${BENCH_PS_ROUNDS:-3}"
SECS="${BENCH_PS_SECONDS:-10}"
N="${BENCH_PS_N:-60000}"
NI="${BENCH_PS_INSERTS:-20000}"
: "${DBPOOL_TEST_MYSQL_URL:?run under scripts/with-servers.sh}"
: "${DBPOOL_TEST_MYSQL_PORT:?}" "${DBPOOL_TEST_MYSQL_PASSWORD:?}"
export DBPOOL_REPO="$repo"
command -v sysbench >/dev/null || { echo "bench_ps: sysbench is not installed (scripts/deps.sh)" >&2; exit 2; }
make -s build-bench lua
sb=(sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$DBPOOL_TEST_MYSQL_PORT"
    --mysql-user=dbpool --mysql-password="$DBPOOL_TEST_MYSQL_PASSWORD" --mysql-db=dbpool_test
    --tables=1 --table-size=100000)
if ! mariadb -h127.0.0.1 -P"$DBPOOL_TEST_MYSQL_PORT" -udbpool -p"$DBPOOL_TEST_MYSQL_PASSWORD" dbpool_test \
        -Nse "SELECT COUNT(*) FROM sbtest1" 2>/dev/null | grep -qx 100000; then
    "${sb[@]}" cleanup >/dev/null 2>&1 || true
    "${sb[@]}" prepare >/dev/null
fi
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
line() { printf '[ps] %s = %.0f q/s  (round %d)\n' "$1" "$2" "$3" | tee -a "$out"; }
for r in $(seq 1 "$ROUNDS"); do
    for mode in disable auto; do
        rate=$("${sb[@]}" --threads=8 --time="$SECS" --db-ps-mode="$mode" run | awk '/queries:/ { gsub(/[(]/, "", $3); print $3 }')
        line "sysbench_${mode}_t8" "$rate" "$r"
    done
    for ps in 0 1; do
        sfx=$([[ $ps == 1 ]] && echo _ps || echo _text)
        rate=$(BENCH_MYSQL_PREPARE=$ps build/bench/bench_mysql --only pool -n "$N" | awk '/c_pool8/ { print $4 }')
        line "c_pool8$sfx" "$rate" "$r"
        rate=$(BENCH_MYSQL_PREPARE=$ps BENCH_MYSQL_N="$N" "$LUA" bench/bench_lua.lua --one window | awk '/lua_window/ { print $4 }')
        line "lua_window_pool8$sfx" "$rate" "$r"
        rate=$(BENCH_MYSQL_PREPARE=$ps build/bench/bench_mysql --only insert -n "$NI" | awk '/c_insert10/ { print $4 }')
        line "c_insert10_pool8$sfx" "$rate" "$r"
    done
done
echo "medians over $ROUNDS rounds:"
awk '{ v[$2] = v[$2] " " $4 } END { for (k in v) { n = split(v[k], a, " "); 
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      printf "  %-24s %8.0f q/s  (%s )\n", k, a[int((n + 1) / 2)], v[k] } }' "$out" | sort
