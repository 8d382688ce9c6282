#!/usr/bin/env bash
# The README's first command: one data migration end to end, on throwaway
# servers.
#
#   scripts/demo.sh [ROWS]
#
# 1. installs the Debian packages that are missing (scripts/deps.sh),
# 2. builds the Lua module and the tests (make -j2 all),
# 3. starts a MariaDB and a Redis on loopback, in a temporary directory
#    (scripts/with-servers.sh; ports DBPOOL_MYSQL_PORT / DBPOOL_REDIS_PORT,
#    default 23306 / 26379),
# 4. runs scripts/examples/backfill_redis.lua: ROWS users (default 100000)
#    streamed from MySQL into Redis hashes, 32 rows in flight, with progress,
# 5. shows the result from both sides with the dbpool REPL,
# 6. stops the servers and removes their directory (whatever happened).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [[ "${1:-}" == "--inside" ]]; then
    # Run by with-servers.sh below: the servers are up, DBPOOL_TEST_* set.
    rows="$2"
    export DATABASE_URL="$DBPOOL_TEST_MYSQL_URL" REDIS_URL="$DBPOOL_TEST_REDIS_URL"
    dbpool=scripts/dbpool
    step "The servers answer (dbpool ping)"
    "$dbpool" ping "$DATABASE_URL"
    "$dbpool" ping "$REDIS_URL"
    step "Backfill: $rows rows from MySQL into Redis (dbpool run scripts/examples/backfill_redis.lua $rows)"
    "$dbpool" run scripts/examples/backfill_redis.lua "$rows"
    step "MySQL side (dbpool repl -e ...)"
    "$dbpool" repl -e "SELECT COUNT(*) AS users, MIN(score) AS min_score, MAX(score) AS max_score FROM ex_users;" \
        -e "SELECT * FROM ex_users ORDER BY id LIMIT 3;" "$DATABASE_URL"
    step "Redis side"
    "$dbpool" repl -e "ZCARD ex:users:by_score" -e "HGETALL ex:user:1" \
        -e "ZREVRANGE ex:users:by_score 0 2 WITHSCORES" "$REDIS_URL"
    step "Done: the same $rows users on both sides. Stopping the servers."
    exit 0
fi

rows="${1:-100000}"
[[ "$rows" =~ ^[0-9]+$ && "$rows" -gt 0 ]] || { echo "usage: $0 [ROWS]" >&2; exit 2; }

step "Dependencies (scripts/deps.sh)"
scripts/deps.sh
step "Build (make -j2 all)"
make -j2 all

own_dir=""
if [[ -z "${DBPOOL_RUN_DIR:-}" ]]; then
    own_dir="$(mktemp -d /tmp/dbpool-demo.XXXXXX)"
    export DBPOOL_RUN_DIR="$own_dir"
    trap 'rm -rf "$own_dir"' EXIT
fi
step "Throwaway servers in $DBPOOL_RUN_DIR (scripts/with-servers.sh)"
# One with-servers per server (MySQL and Redis; the cluster is not needed):
# each stops its server when the command inside ends, whatever its outcome.
scripts/with-servers.sh --only mysql scripts/with-servers.sh --only redis "$0" --inside "$rows"
