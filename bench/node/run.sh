#!/usr/bin/env bash
# Runs the Node.js peers of dbpool's benchmarks: bench_mysql2.js (mysql2's
# pool, pool.query and pool.execute) and bench_ioredis.js (ioredis with
# automatic pipelining, 1 and 4 clients). Their npm packages (pinned in
# package.json and package-lock.json) are installed into bench/node/node_modules
# by `npm ci` when it is missing or older than the lock file.
#
#   bench/node/run.sh [mysql2] [ioredis]      (both by default)
#
# Needs node (>= 20, for ioredis 6) and npm: scripts/deps.sh --bench. The
# servers' URLs come from the environment (scripts/with-servers.sh, or
# eval "$(scripts/servers.sh env)"), as do the knobs each script's header
# lists (BENCH_QUICK, BENCH_MAX_SECONDS, BENCH_MYSQL_N, BENCH_REDIS_N, ...).
# bench_mysql2.js reads bench_mysql's table: run build/bench/bench_mysql once
# first. Exit 1 when a benchmark failed, 2 when node or npm is missing.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "bench/node/run.sh: $tool not found: run scripts/deps.sh --bench" >&2
        exit 2
    fi
done
major="$(node -p 'process.versions.node.split(".")[0]')"
if (( major < 20 )); then
    echo "bench/node/run.sh: node $(node --version) is too old (ioredis 6 needs >= 20): install a newer Node.js" >&2
    exit 2
fi

# npm writes node_modules/.package-lock.json last: what is installed, and when.
if [[ ! -f "$here/node_modules/.package-lock.json" || "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]]; then
    echo "bench/node/run.sh: npm ci in bench/node" >&2
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

which=("$@")
[[ ${#which[@]} -gt 0 ]] || which=(mysql2 ioredis)
rc=0
for b in "${which[@]}"; do
    case "$b" in
        mysql2 | ioredis) node "$here/bench_$b.js" || rc=1 ;;
        *) echo "usage: bench/node/run.sh [mysql2] [ioredis]" >&2; exit 2 ;;
    esac
done
exit "$rc"
