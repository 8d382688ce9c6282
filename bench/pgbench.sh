#!/usr/bin/env bash
# Point selects on PostgreSQL, in one run: pgbench -S (8 clients; -M simple,
# extended and prepared; -j 1 and -j 2) against dbpool's C API (a pool of 8)
# on the same server and table. Needs the test server up (scripts/with-servers.sh
# --only pg bench/pgbench.sh, or DBPOOL_TEST_PG_URL set) and build/bench/bench_pgsql.
#   BENCH_SECONDS (10 per pgbench run), BENCH_PG_N (dbpool queries, 200000), BENCH_PG_SCALE (1)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DBPOOL_TEST_PG_URL:?DBPOOL_TEST_PG_URL is not set (scripts/with-servers.sh --only pg ...)}"
secs="${BENCH_SECONDS:-10}"
scale="${BENCH_PG_SCALE:-1}"
bindir=/usr/lib/postgresql/15/bin
pgbench="$(command -v pgbench || echo "$bindir/pgbench")"
# the same connection settings for both sides: plain TCP, no TLS, no GSS
url="$DBPOOL_TEST_PG_URL?sslmode=disable&gssencmode=disable"
if ! psql "$url" -Atc "SELECT count(*) FROM pgbench_accounts" 2>/dev/null | grep -qx "$((scale * 100000))"; then
    "$pgbench" -q -i -s "$scale" "$url" >/dev/null 2>&1
fi
for mode in simple extended prepared; do
    for j in 1 2; do
        tps="$("$pgbench" -n -S -c 8 -j "$j" -T "$secs" -M "$mode" "$url" 2>/dev/null |
            sed -n 's/^tps = \([0-9.]*\).*/\1/p')"
        [[ -n "$tps" ]] || { echo "pgbench.sh: pgbench -S -M $mode -j $j failed" >&2; exit 1; }
        printf '[pg] pgbench_c8_j%d_%s = %.0f q/s  (pgbench -n -S -c 8 -j %d -T %d -M %s)\n' "$j" "$mode" "$tps" "$j" "$secs" "$mode"
    done
done
DBPOOL_TEST_PG_URL="$url" build/bench/bench_pgsql -n "${BENCH_PG_N:-200000}"
DBPOOL_TEST_PG_URL="$url" build/bench/bench_pgsql -n "${BENCH_PG_N:-200000}" --prepare
LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/build/lua/?.so;;" \
    lua5.4 bench/bench_pg_lua.lua "$url" "${BENCH_PG_N:-200000}"
