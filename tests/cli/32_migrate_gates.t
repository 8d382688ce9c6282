#!/usr/bin/env bash
# dbpool migrate, issue 16: status --exit-code / --json, up --dry-run, up --to,
# repeatable R__ files, out-of-order refusal, down --to, no-transaction, a
# failed migration recorded and refused until repair, baseline, and a runner
# killed with SIGKILL in the middle, then the next run.
source "$(dirname "$0")/lib.sh"
need_env DBPOOL_TEST_MYSQL_URL DBPOOL_TEST_MYSQL_PASSWORD
export DATABASE_URL="$DBPOOL_TEST_MYSQL_URL"
D="$T_TMP/m"
mkdir -p "$D"
TBL=cli_m16_migrations
M=(--dir "$D" --table "$TBL")
reset_db() {
    sql "DROP VIEW IF EXISTS cli_m16_v; DROP TABLE IF EXISTS $TBL, ${TBL}_repeatable, cli_m16_b, cli_m16_b_repeatable,
         cli_m16_t, cli_m16_k, cli_m16_nt"
}
reset_db
json() { # json EXPR < JSON: EXPR over the strictly parsed value v
    lua5.4 -e "local S = dofile('$T_REPO/tests/cli/strict.lua'); local ok, v = pcall(S.json, io.read('a'))
               if not ok then print('PARSE ERROR: ' .. v) os.exit(1) end; print($1)"
}

cat > "$D/0010_t.sql" <<'SQL'
CREATE TABLE cli_m16_t (id INT PRIMARY KEY, v VARCHAR(20));
INSERT INTO cli_m16_t VALUES (1, 'ten');
-- down
DROP TABLE cli_m16_t;
SQL
cat > "$D/0020_more.sql" <<'SQL'
INSERT INTO cli_m16_t VALUES (2, 'twenty');
-- down
DELETE FROM cli_m16_t WHERE id = 2;
SQL
cat > "$D/0030_lua.lua" <<'LUA'
return {
    up = function(conn) conn:query("INSERT INTO cli_m16_t VALUES (3, 'thirty')"):await() end,
    down = function(conn) conn:query("DELETE FROM cli_m16_t WHERE id = 3"):await() end,
}
LUA
cat > "$D/R__view.sql" <<'SQL'
CREATE OR REPLACE VIEW cli_m16_v AS SELECT id, v FROM cli_m16_t WHERE id < 100;
SQL

# --- status --exit-code and --json on a database with nothing applied -------------
run_bounded 20 "$DBPOOL" migrate status "${M[@]}"
is "$T_RC" 0 "status without --exit-code: exit 0 with pending migrations"
run_bounded 20 "$DBPOOL" migrate status --exit-code "${M[@]}"
is "$T_RC" 1 "status --exit-code: exit 1 while migrations are pending"
run_bounded 20 "$DBPOOL" migrate status --json "${M[@]}"
is "$T_RC" 0 "status --json: exit 0"
is "$(json 'v.up_to_date, v.pending, v.applied, #v.migrations' <<<"$T_OUT")" $'false\t4\t0\t4' \
    "status --json parses strictly: not up to date, 4 pending"
is "$(json 'v.migrations[1].version, v.migrations[1].status, v.migrations[4].type, v.migrations[4].name, tostring(v.migrations[4].version)' <<<"$T_OUT")" \
    $'10\tpending\trepeatable\tview\tnull' "each migration with its version, status and type (a repeatable one has version null)"

# --- up --dry-run: prints, changes nothing ----------------------------------------
run_bounded 20 "$DBPOOL" migrate up --dry-run "${M[@]}"
is "$T_RC" 0 "up --dry-run: exit 0"
like "$T_OUT" $'-- 0010_t.sql\nCREATE TABLE cli_m16_t (id INT PRIMARY KEY, v VARCHAR(20));\nINSERT INTO cli_m16_t VALUES (1, \'ten\');' \
    "dry run: the SQL of the first migration"
like "$T_OUT" $'-- 0030_lua.lua\n-- (Lua: its up function runs)' "dry run: a Lua migration by name"
o10="${T_OUT%%0010_t.sql*}"; o20="${T_OUT%%0020_more.sql*}"; o30="${T_OUT%%0030_lua.lua*}"; orr="${T_OUT%%R__view.sql*}"
ok $([[ ${#o10} -lt ${#o20} && ${#o20} -lt ${#o30} && ${#o30} -lt ${#orr} ]]; echo $?) \
    "dry run: in the order they would run (versions, then repeatable)"
is "$(sql "SHOW TABLES LIKE 'cli_m16%'")" "" "dry run: no table was created (not even the bookkeeping one)"

# --- up --to ---------------------------------------------------------------------
run_bounded 30 "$DBPOOL" migrate up --to 10 "${M[@]}"
is "$T_RC" 0 "up --to 10: exit 0"
like "$T_OUT" "Applied 1 migration." "up --to 10 applied one"
unlike "$T_OUT" "R__view" "repeatable migrations wait while versioned ones are pending"
is "$(sql "SELECT GROUP_CONCAT(version) FROM $TBL")" "10" "only 0010 is recorded"

# --- up: the rest, then the repeatable one --------------------------------------------
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 0 "up: exit 0"
like "$T_OUT" $'Applying 0030_lua.lua ... ok' "0030 applied"
like "$T_OUT" "Applying (repeatable) R__view.sql ... ok" "then the repeatable one"
like "$T_OUT" "Applied 2 migrations and 1 repeatable." "the summary counts both"
is "$(sql "SELECT GROUP_CONCAT(id ORDER BY id) FROM cli_m16_v")" "1,2,3" "the view exists"
is "$(sql "SELECT CONCAT(name, ' ', status, ' ', checksum) FROM ${TBL}_repeatable")" \
    "view applied $(sha256sum "$D/R__view.sql" | cut -d' ' -f1)" "the repeatable one is recorded with its checksum"
run_bounded 20 "$DBPOOL" migrate status --exit-code "${M[@]}"
is "$T_RC" 0 "status --exit-code: exit 0 when up to date"
is "$(json 'v.up_to_date' <<<"$("$DBPOOL" migrate status --json "${M[@]}")")" "true" "status --json: up to date"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
like "$T_OUT" "Nothing to migrate" "an unchanged repeatable one is not run again"

cat > "$D/R__view.sql" <<'SQL'
CREATE OR REPLACE VIEW cli_m16_v AS SELECT id, UPPER(v) AS v FROM cli_m16_t WHERE id < 100;
SQL
run_bounded 20 "$DBPOOL" migrate status --exit-code "${M[@]}"
is "$T_RC" 1 "status --exit-code: exit 1 when a repeatable one changed"
like "$T_OUT" "pending (changed)" "status says it changed"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
like "$T_OUT" "Applying (repeatable) R__view.sql ... ok" "a changed repeatable one runs again"
is "$(sql "SELECT v FROM cli_m16_v WHERE id = 1")" "TEN" "its new text is in force"

# --- out of order --------------------------------------------------------------------
cat > "$D/0015_late.sql" <<'SQL'
INSERT INTO cli_m16_t VALUES (15, 'late');
-- down
DELETE FROM cli_m16_t WHERE id = 15;
SQL
run_bounded 20 "$DBPOOL" migrate status "${M[@]}"
like "$T_OUT" "pending (out of order)" "status marks an out-of-order file"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 1 "up with an out-of-order file: exit 1"
like "$T_ERR" "out-of-order migration: 0015_late.sql is older than the newest applied version (30)" "the error names the file"
like "$T_ERR" "--allow-out-of-order" "and the flag"
is "$(sql "SELECT COUNT(*) FROM cli_m16_t WHERE id = 15")" "0" "nothing ran"
run_bounded 30 "$DBPOOL" migrate up --dry-run "${M[@]}"
is "$T_RC" 1 "up --dry-run refuses it too"
run_bounded 30 "$DBPOOL" migrate up --allow-out-of-order "${M[@]}"
is "$T_RC" 0 "up --allow-out-of-order: exit 0"
like "$T_OUT" "Applying 0015_late.sql ... ok" "it is applied"

# --- down --to -------------------------------------------------------------------
run_bounded 30 "$DBPOOL" migrate down --to 10 "${M[@]}"
is "$T_RC" 0 "down --to 10: exit 0"
like "$T_OUT" $'Reverting 0030_lua.lua ... ok' "reverts 0030"
like "$T_OUT" "Rolled back 3 migrations." "and 0020 and 0015: every version above 10"
is "$(sql "SELECT GROUP_CONCAT(version) FROM $TBL")" "10" "0010 stays applied"
is "$(sql "SELECT GROUP_CONCAT(id ORDER BY id) FROM cli_m16_t")" "1" "their down parts ran"
run_bounded 30 "$DBPOOL" migrate down --to 10 "${M[@]}"
like "$T_OUT" "Nothing to roll back" "down --to 10 again: nothing to do"
run_bounded 30 "$DBPOOL" migrate down --to 5 --steps 1 "${M[@]}"
is "$T_RC" 2 "--to and --steps together: a usage error"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 0 "up again: exit 0"

# --- no-transaction, a failure recorded, refused until repair ------------------------
cat > "$D/0040_nt.sql" <<'SQL'
-- the index is built outside a transaction
-- dbpool: no-transaction
INSERT INTO cli_m16_t VALUES (40, 'no tx');
INSERT INTO cli_m16_no_such VALUES (1);
SQL
run_bounded 30 "$DBPOOL" migrate up --dry-run "${M[@]}"
like "$T_OUT" "-- 0040_nt.sql (no transaction)" "dry run says a file runs without a transaction"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 1 "a failing migration: exit 1"
like "$T_ERR" "0040_nt.sql up failed at statement 2" "the failing statement is named"
like "$T_ERR" $'these statements had run and stay:\n  INSERT INTO cli_m16_t VALUES (40, \'no tx\')' \
    "the statements that had run are named"
is "$(sql "SELECT COUNT(*) FROM cli_m16_t WHERE id = 40")" "1" "without a transaction, the first INSERT stayed"
is "$(sql "SELECT CONCAT(status, ' ', statements_done, ' ', applied_at IS NOT NULL) FROM $TBL WHERE version = 40")" "failed 1 1" \
    "recorded as failed, with the time and how many statements had run"
like "$(sql "SELECT error FROM $TBL WHERE version = 40")" "ERROR 1146 (42S02)" "and the error"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 1 "up again: refused"
like "$T_ERR" "0040_nt.sql is recorded as FAILED" "it names the failed migration"
like "$T_ERR" "dbpool migrate repair 40" "and how to go on"
run_bounded 20 "$DBPOOL" migrate status --exit-code "${M[@]}"
is "$T_RC" 1 "status --exit-code: exit 1 with a failed migration"
like "$T_OUT" "1 FAILED" "status counts it"
like "$T_OUT" "0040_nt.sql failed at" "status shows when"
is "$(json 'v.failed, v.migrations[5].status' <<<"$("$DBPOOL" migrate status --json "${M[@]}")")" $'1\tfailed' "status --json: failed"
run_bounded 20 "$DBPOOL" migrate repair 30 "${M[@]}"
is "$T_RC" 1 "repair of a migration that did not fail: exit 1"
like "$T_ERR" "recorded as applied, not failed" "it says why"
# the operator fixes the database and the file
sql "DELETE FROM cli_m16_t WHERE id = 40"
sed -i 's/cli_m16_no_such VALUES (1)/cli_m16_t VALUES (41, $$x$$)/; s/\$\$/'"'"'/g' "$D/0040_nt.sql"
run_bounded 20 "$DBPOOL" migrate repair 40 "${M[@]}"
is "$T_RC" 0 "repair 40: exit 0"
like "$T_OUT" "Cleared the failed record of 40" "it says what it did"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 0 "up after repair: exit 0"
like "$T_OUT" "Applying 0040_nt.sql ... ok" "the migration runs again"
is "$(sql "SELECT GROUP_CONCAT(id ORDER BY id) FROM cli_m16_t WHERE id >= 40")" "40,41" "both its statements ran"

# --- a runner killed with SIGKILL in the middle -----------------------------------------
lock_free() { sql "SELECT IS_FREE_LOCK(CONCAT('dbpool_migrate:', SHA1(CONCAT(DATABASE(), '.', '$TBL'))))"; }
kill_mid() { # kill_mid FILE: starts up, kills it with SIGKILL while FILE's SLEEP runs
    "$DBPOOL" migrate up "${M[@]}" >"$T_TMP/k.out" 2>&1 &
    local pid=$!
    wait_for "$T_TMP/k.out" 20 "Applying $1"
    local i
    for ((i = 0; i < 100; i++)); do
        [[ "$(sql "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%cli_m16_marker%' AND ID <> CONNECTION_ID()")" == 1 ]] && break
        sleep 0.05
    done
    kill -9 "$pid"
    wait "$pid" 2>/dev/null
    KILLED_RC=$?
}
# (1) DDL committed before the kill: the next run says what committed and refuses
cat > "$D/0050_kill.sql" <<'SQL'
CREATE TABLE cli_m16_k (a INT);
INSERT INTO cli_m16_k VALUES (1);
SELECT SLEEP(2) AS cli_m16_marker;
SQL
kill_mid 0050_kill.sql
is "$KILLED_RC" 137 "the runner was killed with SIGKILL while 0050 ran"
is "$(sql "SELECT status FROM $TBL WHERE version = 50")" "running" "it left 0050 recorded as running"
run_bounded 20 "$DBPOOL" migrate status "${M[@]}"
like "$T_OUT" "| 0050    | kill" "status lists 0050"
ok $([[ "$T_OUT" == *"interrupted"* || "$T_OUT" == *"running"* ]]; echo $?) "as running or interrupted (its server thread may still hold the lock)"
t0=$(date +%s%N)
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 1 "the next up: exit 1"
ok $([[ $(elapsed_ms "$t0") -lt 15000 ]]; echo $?) "it got the lock: the killed runner left none behind"
like "$T_OUT" "0050_kill.sql was interrupted: the migrator that started it at" "it reports the interrupted migration"
like "$T_OUT" $'Statements 1..1 of it had committed (MySQL/MariaDB commit DDL implicitly):\n  CREATE TABLE cli_m16_k (a INT)' \
    "with the statements that had committed"
like "$T_OUT" "Statement 2 (INSERT INTO cli_m16_k VALUES (1)) and those after it may or may not have run" "and where it stopped"
like "$T_ERR" "0050_kill.sql is recorded as FAILED" "then refuses, as for a failed migration"
is "$(sql "SELECT status FROM $TBL WHERE version = 50")" "failed" "0050 is now recorded as failed"
is "$(sql "SELECT COUNT(*) FROM cli_m16_k")" "0" "the INSERT after the DDL was rolled back by the server"
is "$(lock_free)" "1" "the lock is free"
sql "DROP TABLE cli_m16_k"
sed -i 's/SLEEP(2)/SLEEP(0)/' "$D/0050_kill.sql"
run_bounded 20 "$DBPOOL" migrate repair 50 "${M[@]}"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 0 "after repair, up continues: exit 0"
like "$T_OUT" "Applying 0050_kill.sql ... ok" "0050 applied"
# (2) one transaction of DML: nothing committed; the next run runs it again
cat > "$D/0060_dml.sql" <<'SQL'
INSERT INTO cli_m16_t VALUES (60, 'dml');
SELECT SLEEP(2) AS cli_m16_marker;
SQL
kill_mid 0060_dml.sql
is "$KILLED_RC" 137 "the runner was killed with SIGKILL while 0060 ran"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 0 "the next up: exit 0"
like "$T_OUT" "0060_dml.sql was interrupted" "it reports the interrupted migration"
like "$T_OUT" "nothing of it had committed (one transaction, which the server rolled back), so it runs again" "and why it is safe to run it again"
like "$T_OUT" "Applying 0060_dml.sql ... ok" "and continues"
is "$(sql "SELECT CONCAT(COUNT(*), ' ', (SELECT status FROM $TBL WHERE version = 60)) FROM cli_m16_t WHERE id = 60")" "1 applied" \
    "0060 ran once in all"

# --- a repeatable migration that fails ------------------------------------------------
printf 'CREATE OR REPLACE VIEW cli_m16_bad AS SELECT nosuchcol FROM cli_m16_t;\n' > "$D/R__bad.sql"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 1 "a failing repeatable migration: exit 1"
like "$T_ERR" "R__bad.sql up failed at statement 1" "it is named"
is "$(sql "SELECT status FROM ${TBL}_repeatable WHERE name = 'bad'")" "failed" "it is recorded as failed"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 1 "up again: refused"
like "$T_ERR" "dbpool migrate repair R__bad" "naming how to repair it"
printf 'CREATE OR REPLACE VIEW cli_m16_bad AS SELECT id FROM cli_m16_t;\n' > "$D/R__bad.sql"
run_bounded 20 "$DBPOOL" migrate repair R__bad "${M[@]}"
is "$T_RC" 0 "repair R__bad: exit 0"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 0 "then up: exit 0"
like "$T_OUT" "Applying (repeatable) R__bad.sql ... ok" "the fixed file is applied"
sql "DROP VIEW cli_m16_bad"
rm "$D/R__bad.sql"

# --- baseline ----------------------------------------------------------------------
B=(--dir "$D" --table cli_m16_b)
run_bounded 30 "$DBPOOL" migrate baseline 20 "${B[@]}"
is "$T_RC" 0 "baseline 20: exit 0"
like "$T_OUT" "Baselined 0015_late.sql" "files up to 20 are recorded"
is "$(sql "SELECT GROUP_CONCAT(CONCAT(version, ':', status) ORDER BY version) FROM cli_m16_b")" "10:baseline,15:baseline,20:baseline" \
    "as baseline, without running them"
run_bounded 30 "$DBPOOL" migrate up --dry-run "${B[@]}"
like "$T_OUT" "-- 0030_lua.lua" "after the baseline, up would apply 0030"
unlike "$T_OUT" "-- 0020_more.sql" "and not 0020"
run_bounded 30 "$DBPOOL" migrate baseline 20 "${B[@]}"
is "$T_RC" 1 "baseline on a table that records migrations: exit 1"
run_bounded 30 "$DBPOOL" migrate down "${B[@]}"
is "$T_RC" 1 "down of a baselined migration: exit 1"
like "$T_ERR" "recorded by \`baseline\`, never run here" "it says why"
sql "DROP TABLE cli_m16_b, cli_m16_b_repeatable"
run_bounded 30 "$DBPOOL" migrate baseline 25 "${B[@]}"
is "$(sql "SELECT GROUP_CONCAT(CONCAT(version, ':', status) ORDER BY version) FROM cli_m16_b")" "10:baseline,15:baseline,20:baseline,25:baseline" \
    "baseline at a version without a file records a marker for it"
run_bounded 20 "$DBPOOL" migrate status "${B[@]}"
unlike "$T_OUT$T_ERR" "no file" "the marker is not reported as a missing file"

# --- a table made by an older dbpool (five columns) ---------------------------------
sql "DROP TABLE cli_m16_b; CREATE TABLE cli_m16_b (version BIGINT UNSIGNED NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL,
     checksum CHAR(64) NOT NULL, applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
     duration_ms INT UNSIGNED NOT NULL DEFAULT 0) ENGINE=InnoDB;
     DROP TABLE IF EXISTS cli_m16_b_repeatable;
     INSERT INTO cli_m16_b (version, name, checksum) VALUES (10, 't', '$(sha256sum "$D/0010_t.sql" | cut -d' ' -f1)')"
run_bounded 20 "$DBPOOL" migrate status "${B[@]}"
is "$T_RC" 0 "status on an older table: exit 0"
like "$T_OUT" "| 0010    | t" "its rows read as applied"
is "$(sql "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'cli_m16_b'")" "5" \
    "status only reads: the table is unchanged"
run_bounded 30 "$DBPOOL" migrate up --to 10 "${B[@]}"
is "$T_RC" 0 "up on an older table: exit 0"
like "$T_OUT" "Nothing to migrate: 1 applied" "its row counts as applied"
is "$(sql "SELECT CONCAT(COUNT(*), ' ', GROUP_CONCAT(column_name ORDER BY ordinal_position)) FROM information_schema.columns
           WHERE table_schema = DATABASE() AND table_name = 'cli_m16_b' AND ordinal_position > 5")" "3 status,error,statements_done" \
    "up added the new columns"
is "$(sql "SELECT status FROM cli_m16_b")" "applied" "the old row reads applied"

# --- new --repeatable -----------------------------------------------------------------
run_bounded 20 "$DBPOOL" migrate new --repeatable "Active users" --dir "$T_TMP/new"
is "$T_RC" 0 "new --repeatable: exit 0"
like "$T_OUT" "$T_TMP/new/R__active_users.sql" "it writes R__NAME.sql"
run_bounded 20 "$DBPOOL" migrate new --repeatable --lua grants --dir "$T_TMP/new"
like "$T_OUT" "R__grants.lua" "and R__NAME.lua with --lua"
run_bounded 20 "$DBPOOL" migrate up --dry-run --dir "$T_TMP/new" --table cli_m16_none
like "$T_OUT" "-- R__active_users.sql (repeatable)" "the new files load as repeatable migrations"

# --- usage ------------------------------------------------------------------------
run_bounded 20 "$DBPOOL" migrate status --dry-run "${M[@]}"
is "$T_RC" 2 "--dry-run with status: a usage error"
run_bounded 20 "$DBPOOL" migrate repair "${M[@]}"
is "$T_RC" 2 "repair without a VERSION: a usage error"
run_bounded 20 "$DBPOOL" migrate baseline x "${M[@]}"
is "$T_RC" 2 "baseline with a bad VERSION: a usage error"

reset_db
done_testing
