#!/usr/bin/env bash
# Where more concurrency stops paying: rates for pool sizes 1..32 and ops in
# flight 1..256, MySQL point selects and Redis GETs, from C (the full grid)
# and from Lua (pool sizes at 64 in flight, and ops in flight at a pool of 8,
# the window mode). Prints markdown tables (rates in thousands per second).
#
#   scripts/with-servers.sh bench/scaling.sh
#
# Environment: SCALE_MYSQL_N (5000), SCALE_REDIS_N (50000), SCALE_POOLS
# ("1 2 4 8 16 32"), SCALE_INFLIGHT ("1 4 16 64 256"), LUA (lua5.4).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"
export DBPOOL_REPO="$repo"
LUA="${LUA:-lua5.4}"
MN="${SCALE_MYSQL_N:-5000}"
RN="${SCALE_REDIS_N:-50000}"
POOLS="${SCALE_POOLS:-1 2 4 8 16 32}"
INFL="${SCALE_INFLIGHT:-1 4 16 64 256}"
make -s build-bench lua
build/bench/bench_redis --only pool -n 1000 >/dev/null   # the keys
rate() { awk '/ = [0-9]/ && !/ratio/ { printf "%.1f", $4 / 1000; exit }'; }
grid() { # title, command template with @P and @K
    local title="$1" tmpl="$2" p k cmd
    printf '\n%s (thousand/s)\n\n| pool \\ in flight |' "$title"
    for k in $INFL; do printf ' %s |' "$k"; done
    printf '\n|---|'; for k in $INFL; do printf '%s' '---:|'; done; printf '\n'
    for p in $POOLS; do
        printf '| %s |' "$p"
        for k in $INFL; do
            cmd="${tmpl//@P/$p}"; cmd="${cmd//@K/$k}"
            printf ' %s |' "$(eval "$cmd" 2>/dev/null | rate)"
        done
        printf '\n'
    done
}
line() { # title, command template with @P and @K, values for P, fixed K (or the other way)
    local title="$1" tmpl="$2" what="$3" fixed="$4" vals="$5" v cmd
    printf '\n%s (thousand/s; %s)\n\n| %s |' "$title" "$fixed" "$what"
    for v in $vals; do printf ' %s |' "$v"; done
    printf '\n|---|'; for v in $vals; do printf '%s' '---:|'; done; printf '\n| rate |'
    for v in $vals; do
        if [[ "$what" == pool ]]; then cmd="${tmpl//@P/$v}"; cmd="${cmd//@K/${fixed##* }}"
        else cmd="${tmpl//@K/$v}"; cmd="${cmd//@P/${fixed##* }}"; fi
        printf ' %s |' "$(eval "$cmd" 2>/dev/null | rate)"
    done
    printf '\n'
}
grid "MySQL point selects, C API" "build/bench/bench_mysql --only pool -n $MN --pool @P --inflight @K"
grid "Redis GETs, C API" "build/bench/bench_redis --only pool -n $RN --pool @P --inflight @K"
lt="BENCH_MYSQL_N=$MN BENCH_MYSQL_POOL=@P BENCH_MYSQL_INFLIGHT=@K $LUA bench/bench_lua.lua --one window"
line "MySQL point selects, Lua (window)" "$lt" pool "in flight 64" "$POOLS"
line "MySQL point selects, Lua (window)" "$lt" "in flight" "pool 8" "$INFL"
lr="BENCH_REDIS_N=$RN BENCH_REDIS_POOL=@P BENCH_REDIS_INFLIGHT=@K $LUA bench/bench_redis.lua --one window"
line "Redis GETs, Lua (window)" "$lr" pool "in flight 256" "$POOLS"
line "Redis GETs, Lua (window)" "$lr" "in flight" "pool 4" "$INFL"
