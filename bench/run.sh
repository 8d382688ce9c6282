#!/usr/bin/env bash
# Runs every benchmark against the throwaway servers, dbpool beside the peers
# a user would otherwise pick, and ends with one table: each figure's rate,
# its ratio to its workload's reference in the same run, and instructions per
# op for the dbpool rows (bench/table.awk). `make bench` runs it under
# scripts/with-servers.sh, which starts the servers and exports DBPOOL_TEST_*
# (URLs, passwords, ports), LUA_PATH and LUA_CPATH. By hand, on your own ports
# and run directory:
#
#   export DBPOOL_MYSQL_PORT=23506 DBPOOL_REDIS_PORT=26579 \
#          DBPOOL_CLUSTER_BASE_PORT=27201 DBPOOL_PG_PORT=25632 DBPOOL_RUN_DIR=/tmp/dbp-bench
#   scripts/with-servers.sh bench/run.sh | tee run.log
#   bench/chart.sh run.log          (the chart, from the same log)
#
# It first installs what only the benchmarks need (scripts/deps.sh --bench:
# libzdb, Node.js; bench/node/run.sh installs the npm packages into bench/node/).
#
# Groups, and their peers:
#   mysql      C API point selects; a blocking libmariadb connection; the raw non-blocking loop
#   lua-mysql  the Lua forms; LuaSQL
#   redis      C API GETs; redis-benchmark -P 32
#   lua-redis  the Lua forms; redis-lua
#   node       node's mysql2 pool (query, execute) and ioredis with auto-pipelining
#   zdb        libzdb's C pool, 8 threads (text, prepared)
#   ps         prepared against text; sysbench oltp_point_select (bench_ps.sh)
#   pg         PostgreSQL point selects; pgbench -S (pgbench.sh)
#   copy       1M MySQL rows into Redis hashes; mariadb | awk | redis-cli --pipe (bench_copy.sh)
#   cluster    Redis Cluster SET/GET
#   replicas   MySQL read replicas
#   instr      callgrind instructions per op of the dbpool rows (instr.sh)
#
# Knobs (environment):
#   BENCH_QUICK=1        small counts everywhere: a smoke run, figures mean little
#   BENCH_ONLY=LIST      some of the groups above (comma-separated); default all
#   BENCH_MAX_SECONDS=S  per measured phase; a phase past it stops submitting (120)
#   BENCH_TIMEOUT=S      hard limit per benchmark program, then it is killed (900)
#   BENCH_MYSQL_N, BENCH_REDIS_N, BENCH_COPY_ROWS, BENCH_PS_ROUNDS, ...  see each benchmark's header
#   LUA=lua5.4           the interpreter
#
# Output: each benchmark's lines as they come ("[group] name = value unit
# (...)" for a figure, "[group] ratio a/b = x (target ...)" for a ratio),
# then the table and issue 14's targets. Exit status 1 when a benchmark
# failed (wrong replies, errors, a server missing); a target not met is
# reported, not a failure.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo" || exit 1
LUA="${LUA:-lua5.4}"
TIMEOUT="${BENCH_TIMEOUT:-900}"
ONLY=",${BENCH_ONLY:-mysql,lua-mysql,redis,lua-redis,node,zdb,ps,pg,copy,cluster,replicas,instr},"
BUILD="$repo/build/bench"
export DBPOOL_REPO="$repo"

for v in DBPOOL_TEST_MYSQL_URL DBPOOL_TEST_REDIS_URL; do
    if [[ -z "${!v:-}" ]]; then
        echo "bench/run.sh: $v is not set: run it as 'make bench' or 'scripts/with-servers.sh bench/run.sh'" >&2
        exit 2
    fi
done

quick=""
[[ -n "${BENCH_QUICK:-}" && "${BENCH_QUICK}" != 0 ]] && quick=1
"$repo/scripts/deps.sh" --bench || { echo "bench/run.sh: scripts/deps.sh --bench failed" >&2; exit 1; }
# The Lua module, the tests' binaries and the C benchmarks (always -O2:
# the Makefile's build-bench), and the libzdb peer.
make -s all build-bench-zdb || { echo "bench/run.sh: make failed" >&2; exit 1; }

out="$(mktemp "${TMPDIR:-/tmp}/dbpool-bench.XXXXXX")"
trap 'rm -f "$out"' EXIT
failed=()

echo "== dbpool benchmarks: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, $(uname -m)"
if commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null)"; then
    git -C "$repo" diff --quiet HEAD -- dbpool.h lua 2>/dev/null || commit+=" (dbpool.h or lua/ modified since)"
    echo "== commit $commit"
else
    echo "== commit unknown (not a git checkout)"
fi
echo "== load before:$(uptime | sed 's/.*load average:/ load average:/')"
[[ -n "$quick" ]] && echo "== BENCH_QUICK: small counts, figures are a smoke test only"

# run NAME COMMAND...: one benchmark, bounded by BENCH_TIMEOUT; its lines are
# shown and kept for the summary.
run() {
    local name="$1" rc
    shift
    [[ "$ONLY" == *",$name,"* ]] || return 0
    echo
    echo "-- $name: ${*//$repo\//} ($(uptime | sed 's/.*load average: /load /'))"  # paths relative to the repo
    timeout --kill-after=10 "$TIMEOUT" "$@" 2>&1 | tee -a "$out"
    rc=${PIPESTATUS[0]}
    if [[ $rc -ne 0 ]]; then
        [[ $rc -eq 124 ]] && echo "-- $name: killed after BENCH_TIMEOUT=${TIMEOUT}s"
        echo "-- $name: FAILED (exit $rc)"
        failed+=("$name")
    fi
}

if [[ -n "$quick" ]]; then
    export BENCH_COPY_ROWS="${BENCH_COPY_ROWS:-50000}" BENCH_PS_ROUNDS="${BENCH_PS_ROUNDS:-1}" \
           BENCH_PS_SECONDS="${BENCH_PS_SECONDS:-3}" BENCH_PS_N="${BENCH_PS_N:-10000}" \
           BENCH_PS_INSERTS="${BENCH_PS_INSERTS:-3000}" BENCH_SECONDS="${BENCH_SECONDS:-3}" \
           BENCH_PG_N="${BENCH_PG_N:-20000}"
fi

run mysql "$BUILD/bench_mysql"
run lua-mysql "$LUA" "$here/bench_lua.lua"
run redis "$BUILD/bench_redis"
run lua-redis "$LUA" "$here/bench_redis.lua"
run node "$here/node/run.sh"
run zdb "$BUILD/bench_zdb"                        # a connection borrowed per query, as a pool is used
run zdb env BENCH_ZDB_HOLD=1 "$BUILD/bench_zdb"   # one connection held per thread: libzdb's best case
run ps "$here/bench_ps.sh"
if [[ -n "${DBPOOL_TEST_PG_URL:-}" ]]; then
    run pg "$here/pgbench.sh"
else
    echo "pg: not available (no PostgreSQL: scripts/servers.sh start pg)" | tee -a "$out"
fi
run copy "$here/bench_copy.sh"
run cluster "$LUA" "$here/bench_cluster.lua"
if [[ -n "${DBPOOL_TEST_MYSQL_REPLICA_PORT:-}" ]]; then
    run replicas "$LUA" "$here/bench_replicas.lua"
else
    echo "replicas: not available (no replica: scripts/servers.sh start replica)" | tee -a "$out"
fi
run instr "$here/instr.sh" --all

echo
echo "== summary ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores,$(uptime | sed 's/.*load average:/ load/'))"
echo "== rate: the median of a figure's rounds; ratio: to the workload's reference (ref), same run;"
echo "== instr/op: client instructions per op by callgrind, marginal between two run sizes"
awk -f "$here/table.awk" "$out"
grep -E '^(cluster|replicas|pg): not available' "$out" | sed 's/^/note: /'
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
exit 0
