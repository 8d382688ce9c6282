#!/usr/bin/env bash
# A 1M-row table copied MySQL -> PostgreSQL, in one run: dbpool's pool:load
# fed by rows() (bench/copy_mysql_pg.lua) against the shell pipeline
#   mariadb --quick -e "SELECT ..." | psql -c "\copy ... FROM STDIN"
# on the same servers and tables; wall time and peak RSS of each.
# Needs the test servers (scripts/with-servers.sh --only mysql,pg bench/copy_mysql_pg.sh).
#   BENCH_COPY_ROWS (1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DBPOOL_TEST_MYSQL_URL:?}" "${DBPOOL_TEST_PG_URL:?}"
rows="${BENCH_COPY_ROWS:-1000000}"
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/build/lua/?.so;;"
my_args=(--no-defaults -h 127.0.0.1 -P "$DBPOOL_TEST_MYSQL_PORT" -u dbpool "-p$DBPOOL_TEST_MYSQL_PASSWORD" dbpool_test)
pg_url="$DBPOOL_TEST_PG_URL?sslmode=disable"
ddl="DROP TABLE IF EXISTS bench_copy_dst; CREATE TABLE bench_copy_dst (id int PRIMARY KEY, k int NOT NULL, c text NOT NULL, amount numeric(12,2), note text)"
# the source, once
if [[ "$(mariadb "${my_args[@]}" -N -e "SELECT COUNT(*) FROM bench_copy_src" 2>/dev/null || echo 0)" != "$rows" ]]; then
    mariadb "${my_args[@]}" -e "DROP TABLE IF EXISTS bench_copy_src;
      CREATE TABLE bench_copy_src (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(60) NOT NULL, amount DECIMAL(12,2), note VARCHAR(40)) ENGINE=InnoDB;
      INSERT INTO bench_copy_src SELECT seq, seq * 7 % 100000, CONCAT('row ', seq, ' ', REPEAT('x', 40)), (seq % 100000) / 100,
             IF(seq % 10 = 0, NULL, CONCAT('note ', seq)) FROM seq_1_to_$rows"
fi
sel="SELECT id, k, c, amount, note FROM bench_copy_src"

psql "$pg_url" -qc "$ddl" >/dev/null 2>&1
/usr/bin/time -f '%e %M' -o /tmp/dbpool_copy_shell.time bash -c \
  "mariadb ${my_args[*]@Q} --quick -N -B -e \"$sel\" | sed 's/\\tNULL\$/\\t\\\\N/; s/\\tNULL\\t/\\t\\\\N\\t/g' |
   psql ${pg_url@Q} -qc \"\\\\copy bench_copy_dst FROM STDIN\""
read -r shell_s shell_kb </tmp/dbpool_copy_shell.time
n_shell="$(psql "$pg_url" -Atc "SELECT count(*) FROM bench_copy_dst")"

psql "$pg_url" -qc "$ddl" >/dev/null 2>&1
/usr/bin/time -f '%e %M' -o /tmp/dbpool_copy_lua.time lua5.4 bench/copy_mysql_pg.lua "$DBPOOL_TEST_MYSQL_URL" "$pg_url" >/dev/null
read -r lua_s lua_kb </tmp/dbpool_copy_lua.time
n_lua="$(psql "$pg_url" -Atc "SELECT count(*) FROM bench_copy_dst")"

printf 'shell pipeline (mariadb --quick | psql \\copy): %s rows in %s s, peak RSS of the largest process %s kB\n' "$n_shell" "$shell_s" "$shell_kb"
printf 'dbpool pool:load fed by rows():                 %s rows in %s s, peak RSS %s kB (%.2f x the pipeline'"'"'s speed)\n' \
    "$n_lua" "$lua_s" "$lua_kb" "$(echo "$shell_s / $lua_s" | bc -l)"
