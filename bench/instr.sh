#!/usr/bin/env bash
# Client instructions per operation, by callgrind, marginal between two run
# sizes (start-up, connects and table checks cancel out). Needs the servers
# up and their environment (scripts/with-servers.sh, or
# eval "$(scripts/servers.sh env)"), LUA_PATH/LUA_CPATH into the build.
#
#   bench/instr.sh WHICH [SMALL LARGE]
#
# WHICH: c-mysql, raw-mysql, lua-mysql[-MODE], c-redis, lua-redis[-MODE]
# (MODE: map, batch, window, many, and the peers luasql and redislua; default window). BENCH_MYSQL_PREPARE=1 makes
# the dbpool MySQL ones use prepared statements. Prints
#   WHICH: <instructions per op> (Ir A at n=SMALL, B at n=LARGE, ops counted)
# The op counts include each program's warm-up (the same formulas as the
# benchmarks use), so the marginal is per measured op.
#
#   bench/instr.sh --all
#
# measures each dbpool row of bench/run.sh's table (and the Lua peers, LuaSQL
# and redis-lua) and prints it the way the
# table reads it: "[instr] WORKLOAD/FIGURE = N instr/op  (...)". With
# BENCH_QUICK=1, small run sizes (a smoke run).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
which="${1:?usage: bench/instr.sh WHICH [SMALL LARGE] | --all}"

if [[ "$which" == --all ]]; then
    # WHICH, prepared (1) or text, and the row of the table
    rows=(
        "raw-mysql 0 point_select/raw_nonblock8"
        "c-mysql 0 point_select/c_pool8"
        "lua-mysql-window 0 point_select/lua_window_pool8"
        "lua-mysql-map 0 point_select/lua_map_pool8"
        "lua-mysql-many 0 point_select/lua_many_pool8"
        "lua-mysql-luasql 0 point_select/luasql_1conn"
        "c-mysql 1 ps_point_select/c_pool8_ps"
        "lua-mysql-window 1 ps_point_select/lua_window_pool8_ps"
        "c-redis 0 get/c_pool4"
        "lua-redis-window 0 get/lua_window_pool4"
        "lua-redis-batch 0 get/lua_batch_pool4"
        "lua-redis-many 0 get/lua_many_pool4"
        "lua-redis-redislua 0 get/redislua_1conn"
    )
    for row in "${rows[@]}"; do
        read -r w ps label <<<"$row"
        sizes=()
        if [[ -n "${BENCH_QUICK:-}" && "$BENCH_QUICK" != 0 ]]; then
            if [[ "$w" == *redis* ]]; then sizes=(5000 15000); else sizes=(1000 3000); fi
        fi
        line="$(BENCH_MYSQL_PREPARE=$ps "$0" "$w" "${sizes[@]}")"
        echo "$line" | sed -E "s|^[^:]+: ([0-9]+) instructions/op +(.*)|[instr] $label = \\1 instr/op  (bench/instr.sh $w, prepare=$ps; \\2)|"
    done
    exit 0
fi
LUA="${LUA:-lua5.4}"
out="${TMPDIR:-/tmp}/dbp-instr.$$"
mkdir -p "$out"
trap 'rm -rf "$out"' EXIT

# ops actually run by one program for n (measured + warm-up)
ops() {
    local n="$1" w
    case "$which" in
        c-mysql|raw-mysql|lua-mysql*) w=$(( n / 20 < 500 ? (n < 500 ? n : 500) : (n / 20 > 5000 ? 5000 : n / 20) )) ;;
        c-redis|lua-redis*) w=$(( n / 20 < 1000 ? (n < 1000 ? n : 1000) : (n / 20 > 20000 ? 20000 : n / 20) )) ;;
    esac
    echo $(( n + w ))
}

run() {
    local n="$1" f="$out/cg.$1"
    local pool="${BENCH_MYSQL_POOL:-8}" infl="${BENCH_MYSQL_INFLIGHT:-64}"
    local rpool="${BENCH_REDIS_POOL:-4}" rinfl="${BENCH_REDIS_INFLIGHT:-2000}"
    local vg=(valgrind --tool=callgrind --callgrind-out-file="$f" -q)
    case "$which" in
        c-mysql) "${vg[@]}" "$repo/build/bench/bench_mysql" --only pool -n "$n" --pool "$pool" --inflight "$infl" >/dev/null ;;
        raw-mysql) "${vg[@]}" "$repo/build/bench/bench_mysql" --only raw -n "$n" --pool "$pool" --inflight "$infl" >/dev/null ;;
        c-redis) "${vg[@]}" "$repo/build/bench/bench_redis" --only pool -n "$n" --pool "$rpool" --inflight "$rinfl" >/dev/null ;;
        lua-mysql*) local m="${which#lua-mysql}"; m="${m#-}"
            BENCH_MYSQL_N="$n" "${vg[@]}" "$LUA" "$here/bench_lua.lua" --one "${m:-window}" >/dev/null ;;
        lua-redis*) local m="${which#lua-redis}"; m="${m#-}"
            BENCH_REDIS_N="$n" "${vg[@]}" "$LUA" "$here/bench_redis.lua" --one "${m:-window}" >/dev/null ;;
        *) echo "instr.sh: unknown benchmark $which" >&2; exit 2 ;;
    esac || { echo "instr.sh: $which failed at n=$n (wrong replies or errors: run it without valgrind to see)" >&2; return 1; }
    callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }'
}

case "$which" in *redis*) small="${2:-20000}" large="${3:-60000}" ;; *) small="${2:-4000}" large="${3:-12000}" ;; esac
a=$(run "$small"); b=$(run "$large")
oa=$(ops "$small"); ob=$(ops "$large")
awk -v a="$a" -v b="$b" -v oa="$oa" -v ob="$ob" -v w="$which" -v s="$small" -v l="$large" \
    'BEGIN { printf "%s: %.0f instructions/op  (Ir %d at n=%d, %d at n=%d; %d ops apart)\n", w, (b - a) / (ob - oa), a, s, b, l, ob - oa }'
