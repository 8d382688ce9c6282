#!/usr/bin/env bash
# A 1M-row MySQL -> Redis copy (issue 14, target 4): every row of bench_copy
# (id, k, c: sysbench-like, c 120 bytes) becomes a Redis hash copy:<id> with
# one HSET of three fields. In one run: the shell pipeline
#   mariadb --quick -e 'SELECT ...' | awk (RESP) | redis-cli --pipe
# then `dbpool run bench/copy.lua FORM` for FORM in map, window, many, each
# timed with its peak RSS (GNU time). Redis database 0 of the test server is
# flushed before each copy and its key count checked after.
#
#   scripts/with-servers.sh bench/bench_copy.sh
#
# Environment: BENCH_COPY_ROWS (1000000), BENCH_COPY_FORMS (map,window,many).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"
ROWS="${BENCH_COPY_ROWS:-1000000}"
FORMS="${BENCH_COPY_FORMS:-map,window,many}"
: "${DBPOOL_TEST_MYSQL_URL:?run under scripts/with-servers.sh}" "${DBPOOL_TEST_REDIS_URL:?}"
my=(mariadb -h127.0.0.1 -P"$DBPOOL_TEST_MYSQL_PORT" -udbpool -p"$DBPOOL_TEST_MYSQL_PASSWORD" -Ddbpool_test)
rc=(redis-cli -p "$DBPOOL_TEST_REDIS_PORT" --no-auth-warning -a "$DBPOOL_TEST_REDIS_PASSWORD")
make -s lua
if [[ "$("${my[@]}" -Nse "SELECT COUNT(*) FROM bench_copy" 2>/dev/null || true)" != "$ROWS" ]]; then
    "${my[@]}" -e "DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (id INT PRIMARY KEY, k INT NOT NULL,
        c CHAR(120) NOT NULL) ENGINE=InnoDB; INSERT INTO bench_copy SELECT seq, (seq * 7919) % 100000,
        LEFT(REPEAT(MD5(seq), 4), 120) FROM seq_1_to_$ROWS"
fi
"${my[@]}" -Nse "SELECT SUM(LENGTH(c)) FROM bench_copy" >/dev/null   # warm the buffer pool
echo "bench_copy: $ROWS rows -> Redis hashes (HSET copy:<id> id k c)"
check() {
    local n
    n="$("${rc[@]}" DBSIZE)"
    [[ "$n" == "$ROWS" ]] || { echo "bench_copy: $1 left $n keys, not $ROWS" >&2; exit 1; }
}
report() { # name, "seconds maxrss_kb"
    local s kb
    read -r s kb <<<"$2"
    awk -v n="$1" -v s="$s" -v kb="$kb" -v r="$ROWS" \
        'BEGIN { printf "[copy] %s = %.0f rows/s  (%d rows in %.2f s; peak RSS %.1f MB)\n", n, r / s, r, s, kb / 1024 }'
}
tf="$(mktemp)"
trap 'rm -f "$tf"' EXIT
"${rc[@]}" FLUSHDB >/dev/null
/usr/bin/time -o "$tf" -f "%e %M" bash -c '
  "$@" --quick -N -B -e "SELECT id, k, c FROM bench_copy" |
  awk -F "\t" "{ k = \"copy:\" \$1; printf \"*8\r\n\$4\r\nHSET\r\n\$%d\r\n%s\r\n\$2\r\nid\r\n\$%d\r\n%s\r\n\$1\r\nk\r\n\$%d\r\n%s\r\n\$1\r\nc\r\n\$%d\r\n%s\r\n\", length(k), k, length(\$1), \$1, length(\$2), \$2, length(\$3), \$3 }" |
  redis-cli -p '"$DBPOOL_TEST_REDIS_PORT"' --no-auth-warning -a "$DBPOOL_TEST_REDIS_PASSWORD" --pipe >/dev/null' _ "${my[@]}"
check pipeline
report "mariadb_awk_rediscli_pipe" "$(tail -1 "$tf")"
for form in ${FORMS//,/ }; do
    "${rc[@]}" FLUSHDB >/dev/null
    DATABASE_URL="$DBPOOL_TEST_MYSQL_URL" REDIS_URL="$DBPOOL_TEST_REDIS_URL" \
        /usr/bin/time -o "$tf" -f "%e %M" scripts/dbpool run bench/copy.lua "$form" >/dev/null
    check "$form"
    report "dbpool_run_$form" "$(tail -1 "$tf")"
done
"${rc[@]}" FLUSHDB >/dev/null
