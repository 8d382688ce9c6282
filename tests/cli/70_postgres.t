#!/usr/bin/env bash
# The command on PostgreSQL: ping (line and JSON, a wrong password), the
# REPL's SQL (tables, NULL, booleans, errors), run with a postgres://
# DATABASE_URL (db is the PostgreSQL pool), migrate up/status/down.
source "$(dirname "$0")/lib.sh"
need_env DBPOOL_TEST_PG_URL DBPOOL_TEST_PG_PASSWORD DBPOOL_TEST_PG_PORT
unset DATABASE_URL REDIS_URL

run_bounded 20 "$DBPOOL" ping "$DBPOOL_TEST_PG_URL"
is "$T_RC" 0 "PostgreSQL up: exit 0"
like "$T_OUT" "ok postgres://dbpool:***@127.0.0.1:$DBPOOL_TEST_PG_PORT/dbpool_test postgres 15" "one line: the URL without its password, the backend, the version"
unlike "$T_OUT" "$DBPOOL_TEST_PG_PASSWORD" "no password"
run_bounded 20 "$DBPOOL" ping --json "$DBPOOL_TEST_PG_URL"
like "$T_OUT" '"backend":"postgres"' "JSON: the backend"
bad_url="postgres://dbpool:Wr0ngPw@127.0.0.1:$DBPOOL_TEST_PG_PORT/dbpool_test"
run_bounded 20 "$DBPOOL" ping "$bad_url"
ok $([[ "$T_RC" != 0 ]]; echo $?) "a wrong password: non-zero exit ($T_RC)"
like "$T_OUT$T_ERR" "auth" "  said to be an auth error"
unlike "$T_OUT$T_ERR" "Wr0ngPw" "  without the password"

run_bounded 20 bash -c "printf '%s\n' 'SELECT 1 AS a, NULL AS b, true AS c, 12.50::numeric AS n;' 'SELECT nosuch;' | DATABASE_URL='$DBPOOL_TEST_PG_URL' '$DBPOOL' repl"
like "$T_OUT" "| a | b    | c    | n     |" "repl: a table with the columns"
like "$T_OUT" "| 1 | NULL | true | 12.50 |" "repl: NULL, a boolean, an exact numeric"
like "$T_OUT$T_ERR" 'column "nosuch" does not exist' "repl: the server's error"

script="$(mktemp "${TMPDIR:-/tmp}/dbpool-pg-run.XXXXXX.lua")"
cat >"$script" <<'LUA'
db:query("CREATE TEMP TABLE t (id int, ok bool)"):await()
db:query("INSERT INTO t VALUES ($1, $2), ($3, $4)", { 1, true, 2, false }):await()
local r = db:query("SELECT count(*) AS n, bool_or(ok) AS any FROM t"):await()
print(("rows=%d any=%s backend=%s"):format(r[1].n, tostring(r[1].any), db:ping():await().backend))
LUA
run_bounded 30 env DATABASE_URL="$DBPOOL_TEST_PG_URL" "$DBPOOL" run "$script"
is "$T_RC" 0 "run with a postgres:// DATABASE_URL: exit 0"
like "$T_OUT" "rows=2 any=true backend=postgres" "run: db is the PostgreSQL pool, values as Lua types"
rm -f "$script"

# migrate: an advisory lock, each migration in a transaction (DDL included), $$ bodies intact
dir="$(mktemp -d "${TMPDIR:-/tmp}/dbpool-pg-mig.XXXXXX")"
cat >"$dir/001_create.sql" <<'SQL'
CREATE TABLE mig_pg (id int PRIMARY KEY, v text);
CREATE FUNCTION mig_pg_f() RETURNS int AS $$ SELECT 1; SELECT 2; $$ LANGUAGE sql;
-- down
DROP FUNCTION mig_pg_f();
DROP TABLE mig_pg;
SQL
cat >"$dir/002_fill.sql" <<'SQL'
INSERT INTO mig_pg VALUES (1, 'a');
CREATE TABLE mig_pg (x int);
-- down
DELETE FROM mig_pg;
SQL
pq() { psql "$DBPOOL_TEST_PG_URL" -Atc "$1" 2>/dev/null; }
pq "DROP TABLE IF EXISTS mig_pg, schema_migrations; DROP FUNCTION IF EXISTS mig_pg_f()" >/dev/null
run_bounded 30 "$DBPOOL" migrate up --url "$DBPOOL_TEST_PG_URL" --dir "$dir"
ok $([[ "$T_RC" != 0 ]]; echo $?) "migrate up: a failing migration fails the run ($T_RC)"
like "$T_OUT" "Applying 001_create.sql ... ok" "migrate: the first one applied"
is "$(pq "SELECT count(*) FROM mig_pg")" 0 "migrate: the failed one was rolled back whole (its INSERT too)"
is "$(pq "SELECT mig_pg_f()")" 2 "migrate: a function with a \$\$ body containing ';' was created intact"
is "$(pq "SELECT string_agg(version::text || ':' || status, ',' ORDER BY version) FROM schema_migrations")" "1:applied,2:failed" \
    "migrate: the first is recorded as applied, the failed one as failed"
sed -i 's/^CREATE TABLE mig_pg (x int);$/UPDATE mig_pg SET v = $$b;c$$;/' "$dir/002_fill.sql"
run_bounded 30 "$DBPOOL" migrate repair 2 --url "$DBPOOL_TEST_PG_URL" --dir "$dir"
is "$T_RC" 0 "migrate repair 2 (nothing of it stayed: PostgreSQL's DDL is transactional)"
run_bounded 30 "$DBPOOL" migrate up --url "$DBPOOL_TEST_PG_URL" --dir "$dir"
is "$T_RC" 0 "migrate up again once fixed: exit 0"
is "$(pq "SELECT v FROM mig_pg")" "b;c" "migrate: the fixed migration ran"
run_bounded 30 "$DBPOOL" migrate status --url "$DBPOOL_TEST_PG_URL" --dir "$dir"
like "$T_OUT" "2 applied, 0 pending" "migrate status"
run_bounded 30 "$DBPOOL" migrate down --steps 2 --url "$DBPOOL_TEST_PG_URL" --dir "$dir"
is "$T_RC" 0 "migrate down --steps 2: exit 0"
is "$(pq "SELECT count(*) FROM schema_migrations") $(pq "SELECT to_regclass('mig_pg') IS NULL")" "0 t" "migrate down: both reverted"
pq "DROP TABLE IF EXISTS schema_migrations" >/dev/null
rm -rf "$dir"
done_testing
