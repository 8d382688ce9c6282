#!/usr/bin/env bash
# dbpool migrate and the REPL's \d on PostgreSQL (issue 16, with issue 13):
# up with a dollar-quoted function body, status --exit-code / --json, a
# failed migration (transactional DDL: nothing of it stays) refused until
# repair, no-transaction (CREATE INDEX CONCURRENTLY), a repeatable view,
# down --to, baseline, the advisory lock held by a second session, and \d /
# \d TABLE, up --dry-run, an out-of-order file, and a runner killed with
# SIGKILL mid-migration (nothing of it stays; the next up runs it again).
source "$(dirname "$0")/lib.sh"
need_env DBPOOL_TEST_PG_URL DBPOOL_TEST_PG_PASSWORD
unset REDIS_URL
export DATABASE_URL="$DBPOOL_TEST_PG_URL"
D="$T_TMP/m"
mkdir -p "$D"
TBL=cli_pg_migrations
M=(--dir "$D" --table "$TBL")
pg() { psql "$DBPOOL_TEST_PG_URL" -qAtX -v ON_ERROR_STOP=1 -c "$1" 2>&1; }
reset_db() {
    pg "DROP VIEW IF EXISTS cli_pg_v; DROP TABLE IF EXISTS $TBL, ${TBL}_repeatable, cli_pg_t, cli_pg_bad, cli_pg_k, cli_pg_dry, cli_pg_b_migrations, cli_pg_b_migrations_repeatable;
        DROP FUNCTION IF EXISTS cli_pg_double(int)" >/dev/null
}
reset_db

cat > "$D/0010_t.sql" <<'SQL'
CREATE TABLE cli_pg_t (id int PRIMARY KEY, v text NOT NULL DEFAULT 'x');
INSERT INTO cli_pg_t VALUES (1, 'ten');
-- down
DROP TABLE cli_pg_t;
SQL
cat > "$D/0020_fn.sql" <<'SQL'
CREATE FUNCTION cli_pg_double(n int) RETURNS int LANGUAGE plpgsql AS $body$
BEGIN
    -- a ';' inside the body does not end the statement
    RETURN n * 2;
END;
$body$;
INSERT INTO cli_pg_t VALUES (cli_pg_double(10), $$semi;colon$$);
-- down
DELETE FROM cli_pg_t WHERE id = 20;
DROP FUNCTION cli_pg_double(int);
SQL
cat > "$D/0030_idx.sql" <<'SQL'
-- dbpool: no-transaction
CREATE INDEX CONCURRENTLY cli_pg_t_v ON cli_pg_t (v);
-- down
DROP INDEX CONCURRENTLY cli_pg_t_v;
SQL
cat > "$D/R__view.sql" <<'SQL'
CREATE OR REPLACE VIEW cli_pg_v AS SELECT id, v FROM cli_pg_t WHERE id < 100;
SQL

run_bounded 20 "$DBPOOL" migrate status --exit-code "${M[@]}"
is "$T_RC" 1 "status --exit-code: exit 1 while migrations are pending"

run_bounded 40 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 0 "up: exit 0"
is "$(pg "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM cli_pg_t")" "1=ten,20=semi;colon" \
    "the dollar-quoted function body and string ran as one statement each"
is "$(pg "SELECT cli_pg_double(21)")" 42 "the function exists"
is "$(pg "SELECT count(*) FROM pg_indexes WHERE indexname = 'cli_pg_t_v'")" 1 "CREATE INDEX CONCURRENTLY ran outside a transaction"
is "$(pg "SELECT count(*) FROM cli_pg_v")" 2 "the repeatable view"
is "$(pg "SELECT string_agg(version::text || ':' || status, ',' ORDER BY version) FROM $TBL")" "10:applied,20:applied,30:applied" \
    "the bookkeeping table records each version as applied"

run_bounded 20 "$DBPOOL" migrate status --exit-code "${M[@]}"
is "$T_RC" 0 "status --exit-code: exit 0 when up to date"
run_bounded 20 "$DBPOOL" migrate status --json "${M[@]}"
like "$T_OUT" '"up_to_date":true' "status --json says up to date"

# --- a failing migration: PostgreSQL's DDL is transactional, nothing of it stays ----
cat > "$D/0040_bad.sql" <<'SQL'
CREATE TABLE cli_pg_bad (id int);
INSERT INTO cli_pg_bad VALUES (1);
SELECT no_such_column FROM cli_pg_t;
SQL
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 1 "up with a failing migration: exit 1"
like "$T_ERR" "no_such_column" "the error names the server's complaint"
is "$(pg "SELECT to_regclass('cli_pg_bad') IS NULL")" t "the table the migration created was rolled back with it"
is "$(pg "SELECT status FROM $TBL WHERE version = 40")" failed "recorded as failed"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 1 "up refuses to go on past a failed migration"
like "$T_ERR" "repair 40" "and says how to go on"
cat > "$D/0040_bad.sql" <<'SQL'
CREATE TABLE cli_pg_bad (id int);
INSERT INTO cli_pg_bad VALUES (1);
-- down
DROP TABLE cli_pg_bad;
SQL
run_bounded 20 "$DBPOOL" migrate repair 40 "${M[@]}"
is "$T_RC" 0 "repair 40: exit 0"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 0 "after repair, up runs the fixed migration"
is "$(pg "SELECT count(*) FROM cli_pg_bad")" 1 "its rows are there"

# --- the lock: another session holding it makes up wait, then give up --------------
key="4242, hashtext(current_database() || '.' || current_schema() || '.' || '$TBL')"
( psql "$DBPOOL_TEST_PG_URL" -qAtX -c "SELECT pg_advisory_lock($key)" -c "SELECT pg_sleep(6)" >/dev/null 2>&1 ) &
holder=$!
sleep 1.5
run_bounded 30 "$DBPOOL" migrate up --lock-timeout 1 "${M[@]}"
is "$T_RC" 1 "up while another session holds the lock: exit 1"
like "$T_ERR" "lock" "the error says the lock is held"
wait "$holder"

# --- up --dry-run and an out-of-order file --------------------------------------------
cat > "$D/0060_dry.sql" <<'SQL'
CREATE TABLE cli_pg_dry (id int);
SQL
run_bounded 20 "$DBPOOL" migrate up --dry-run "${M[@]}"
is "$T_RC" 0 "up --dry-run: exit 0"
like "$T_OUT" $'-- 0060_dry.sql\nCREATE TABLE cli_pg_dry (id int);' "the dry run prints the SQL that would run"
is "$(pg "SELECT to_regclass('cli_pg_dry') IS NULL")" t "and changes nothing"
rm "$D/0060_dry.sql"
cat > "$D/0015_late.sql" <<'SQL'
SELECT 1;
SQL
run_bounded 20 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 1 "up with an out-of-order file: exit 1"
like "$T_ERR" "0015_late.sql is older than the newest applied version" "the error names the file"
rm "$D/0015_late.sql"

# --- a runner killed with SIGKILL in the middle: nothing of its migration stays -------
cat > "$D/0050_kill.sql" <<'SQL'
CREATE TABLE cli_pg_k (a int);
INSERT INTO cli_pg_k VALUES (1);
SELECT pg_sleep(2) AS cli_pg_marker;
-- down
DROP TABLE cli_pg_k;
SQL
"$DBPOOL" migrate up "${M[@]}" >"$T_TMP/k.out" 2>&1 &
pid=$!
wait_for "$T_TMP/k.out" 20 "Applying 0050_kill.sql"
for ((i = 0; i < 100; i++)); do
    [[ "$(pg "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%cli_pg_marker%' AND pid <> pg_backend_pid()")" == 1 ]] && break
    sleep 0.05
done
kill -9 "$pid"
wait "$pid" 2>/dev/null
is "$?" 137 "the runner was killed with SIGKILL while 0050 ran"
is "$(pg "SELECT status FROM $TBL WHERE version = 50")" running "it left 0050 recorded as running"
run_bounded 40 "$DBPOOL" migrate up "${M[@]}"
like "$T_OUT" "0050_kill.sql was interrupted" "the next up reports the interrupted migration"
is "$(pg "SELECT status FROM $TBL WHERE version = 50")" applied "and, nothing of it having committed (transactional DDL), runs it again"
is "$(pg "SELECT count(*) FROM cli_pg_k")" 1 "its table holds one row: the killed run left nothing behind"

# --- down --to, baseline --------------------------------------------------------------
run_bounded 40 "$DBPOOL" migrate down --to 10 "${M[@]}"
is "$T_RC" 0 "down --to 10: exit 0"
is "$(pg "SELECT string_agg(version::text, ',' ORDER BY version) FROM $TBL WHERE status = 'applied'")" 10 "only version 10 left applied"
is "$(pg "SELECT to_regprocedure('cli_pg_double(int)') IS NULL")" t "the function's down ran"
is "$(pg "SELECT to_regclass('cli_pg_bad') IS NULL") $(pg "SELECT to_regclass('cli_pg_k') IS NULL")" "t t" "and 40's and 50's"
run_bounded 20 "$DBPOOL" migrate baseline 30 --dir "$D" --table cli_pg_b_migrations
is "$T_RC" 0 "baseline 30 on a fresh bookkeeping table: exit 0"
is "$(pg "SELECT string_agg(version::text, ',' ORDER BY version) FROM cli_pg_b_migrations")" "10,20,30" \
    "versions up to 30 recorded without running"

# --- the REPL's \d on PostgreSQL ------------------------------------------------------
run_bounded 20 "$DBPOOL" repl -e '\d' "$DBPOOL_TEST_PG_URL"
is "$T_RC" 0 "\\d: exit 0"
like "$T_OUT" "cli_pg_t" "\\d lists the table"
like "$T_OUT" "cli_pg_v" "and the view"
run_bounded 20 "$DBPOOL" repl -e '\d cli_pg_t' "$DBPOOL_TEST_PG_URL"
is "$T_RC" 0 "\\d TABLE: exit 0"
like "$T_OUT" "| id " "the columns"
like "$T_OUT" "PRI" "the primary key marked"
like "$T_OUT" "'x'::text" "a default as the server shows it"
like "$T_OUT" "cli_pg_t_pkey" "the indexes"
run_bounded 20 "$DBPOOL" repl --csv -e 'SELECT id, v FROM cli_pg_t ORDER BY id' "$DBPOOL_TEST_PG_URL"
is "$(tr -d '\r' <<<"$T_OUT")" $'id,v\n1,ten' "repl -e --csv on PostgreSQL"
like "$T_OUT" $'id,v\r\n' "with CRLF line ends (RFC 4180)"

reset_db
done_testing
