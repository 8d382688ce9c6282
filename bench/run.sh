#!/usr/bin/env bash
# Runs every benchmark against the throwaway servers and ends with a summary
# table. `make bench` runs it under scripts/with-servers.sh, which starts the
# servers and exports DBPOOL_TEST_* (URLs, passwords, ports), LUA_PATH and
# LUA_CPATH. By hand, on your own ports and run directory:
#
#   export DBPOOL_MYSQL_PORT=23506 DBPOOL_REDIS_PORT=26579 \
#          DBPOOL_CLUSTER_BASE_PORT=27201 DBPOOL_RUN_DIR=/tmp/dbp-bench
#   scripts/with-servers.sh bench/run.sh
#
# Knobs (environment):
#   BENCH_QUICK=1        small counts (MySQL 10k, Redis 30k, cluster 20k): a smoke run
#   BENCH_ONLY=LIST      some of: mysql lua-mysql redis lua-redis cluster replicas (comma-separated)
#   BENCH_MAX_SECONDS=S  per measured phase; a phase past it stops submitting (120)
#   BENCH_TIMEOUT=S      hard limit per benchmark program, then it is killed (900)
#   BENCH_MYSQL_N, BENCH_REDIS_N, BENCH_CLUSTER_N, ...  see each benchmark's header
#   LUA=lua5.4           the interpreter
#
# Output: each benchmark's lines as they come ("[group] name = value unit
# (...)" for a figure, "[group] ratio a/b = x (target ...)" for a ratio),
# then the summary. Exit status 1 when a benchmark failed (wrong replies,
# errors, a server missing); a target not met is reported, not a failure.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo" || exit 1
LUA="${LUA:-lua5.4}"
TIMEOUT="${BENCH_TIMEOUT:-900}"
ONLY=",${BENCH_ONLY:-mysql,lua-mysql,redis,lua-redis,cluster,replicas},"
BUILD="$repo/build/bench"
export DBPOOL_REPO="$repo"

for v in DBPOOL_TEST_MYSQL_URL DBPOOL_TEST_REDIS_URL; do
    if [[ -z "${!v:-}" ]]; then
        echo "bench/run.sh: $v is not set: run it as 'make bench' or 'scripts/with-servers.sh bench/run.sh'" >&2
        exit 2
    fi
done

# The Lua module, the tests' binaries and the C benchmarks (always -O2:
# the Makefile's build-bench).
make -s all || { echo "bench/run.sh: make all failed" >&2; exit 1; }

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
[[ -n "${BENCH_QUICK:-}" && "${BENCH_QUICK}" != 0 ]] && echo "== BENCH_QUICK: small counts, figures are a smoke test only"

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

run mysql "$BUILD/bench_mysql"
run lua-mysql "$LUA" "$here/bench_lua.lua"
run redis "$BUILD/bench_redis"
run lua-redis "$LUA" "$here/bench_redis.lua"
run cluster "$LUA" "$here/bench_cluster.lua"
if [[ -n "${DBPOOL_TEST_MYSQL_REPLICA_PORT:-}" ]]; then
    run replicas "$LUA" "$here/bench_replicas.lua"
else
    echo "replicas: not available (no replica: scripts/servers.sh start replica)" | tee -a "$out"
fi

echo
echo "== summary ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores,$(uptime | sed 's/.*load average:/ load/'))"
printf '%-12s %-40s %14s\n' group figure value
grep -E '^\[[a-z-]+\] [A-Za-z0-9_]+ = [0-9.]+ ' "$out" |
    sed -E 's/^\[([a-z-]+)\] ([A-Za-z0-9_]+) = ([0-9.]+) ([^ ]+).*/\1 \2 \3 \4/' |
    while read -r g n v unit; do printf '%-12s %-40s %10s %-5s\n' "$g" "$n" "$v" "$unit"; done
echo
printf '%-12s %-40s %8s  %s\n' group ratio value target
grep -E '^\[[a-z-]+\] ratio ' "$out" |
    sed -E 's/^\[([a-z-]+)\] ratio ([^ ]+) = ([0-9.]+)(  \(target >= ([0-9.]+): (.*)\))?$/\1|\2|\3|\5|\6/' |
    while IFS='|' read -r g n v t m; do
        if [[ -n "$t" ]]; then printf '%-12s %-40s %8s  >= %s (%s)\n' "$g" "$n" "$v" "$t" "$m"
        else printf '%-12s %-40s %8s\n' "$g" "$n" "$v"; fi
    done
grep -E '^(cluster|replicas): not available' "$out" | sed 's/^/note: /'
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
exit 0
