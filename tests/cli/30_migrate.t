#!/usr/bin/env bash
# dbpool migrate: a directory applied, re-applied (no-op), status, a changed
# checksum refused, two migrators at once, down, new, a failed migration.
source "$(dirname "$0")/lib.sh"
need_env DBPOOL_TEST_MYSQL_URL DBPOOL_TEST_MYSQL_PASSWORD
export DATABASE_URL="$DBPOOL_TEST_MYSQL_URL"
D="$T_TMP/migrations"
TBL=cli_schema_migrations          # the bookkeeping table of these tests
M=(--dir "$D" --table "$TBL")
reset_db() {
    sql "DROP TABLE IF EXISTS $TBL, ${TBL}_repeatable, cli_mig_users, cli_mig_posts, cli_mig_slow, cli_mig_bad, cli_mig_log"
}
reset_db

# --- new ------------------------------------------------------------------------
run_bounded 20 "$DBPOOL" migrate new "Create users!" --dir "$D"
is "$T_RC" 0 "new: exit 0"
like "$T_OUT" "$D/0001_create_users.sql" "new: the first file is 0001_<name>.sql"
like "$(cat "$D/0001_create_users.sql")" "-- down" "new: the file has a down section"
run_bounded 20 "$DBPOOL" migrate new seed --lua --dir "$D"
like "$T_OUT" "0002_seed.lua" "new --lua: the next number, a .lua file"
run_bounded 20 "$DBPOOL" migrate new "" --dir "$D"
is "$T_RC" 2 "new with an unusable name: exit 2"

cat > "$D/0001_create_users.sql" <<'SQL'
-- the users
CREATE TABLE cli_mig_users (id INT PRIMARY KEY, name VARCHAR(50));
INSERT INTO cli_mig_users VALUES (1, 'a;b'), (2, 'it''s');
-- down
DROP TABLE cli_mig_users;
SQL
cat > "$D/0002_seed.lua" <<'LUA'
return {
    up = function(conn)
        conn:query("INSERT INTO cli_mig_users VALUES (?, ?)", { 3, "from lua" }):await()
    end,
    down = function(conn)
        conn:query("DELETE FROM cli_mig_users WHERE id = 3"):await()
    end,
}
LUA
cat > "$D/0003_posts.sql" <<'SQL'
CREATE TABLE cli_mig_posts (id INT PRIMARY KEY, user_id INT);
DELIMITER //
CREATE TRIGGER cli_mig_posts_bi BEFORE INSERT ON cli_mig_posts
FOR EACH ROW BEGIN SET NEW.user_id = COALESCE(NEW.user_id, 0); END//
DELIMITER ;
INSERT INTO cli_mig_posts (id) VALUES (1);
-- down
DROP TABLE cli_mig_posts;
SQL

# --- status, up, up again ----------------------------------------------------------
run_bounded 20 "$DBPOOL" migrate status "${M[@]}"
is "$T_RC" 0 "status before anything: exit 0"
like "$T_OUT" "0 applied, 3 pending" "status: 3 pending"

run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 0 "up: exit 0"
like "$T_OUT" "Applying 0001_create_users.sql ... ok" "up: 0001 applied"
like "$T_OUT" "Applied 3 migrations." "up: all three"
is "$(sql "SELECT GROUP_CONCAT(id ORDER BY id) FROM cli_mig_users")" "1,2,3" "the SQL and the Lua migration ran"
is "$(sql "SELECT user_id FROM cli_mig_posts")" "0" "DELIMITER and a trigger body with ';' work"
is "$(sql "SELECT GROUP_CONCAT(version ORDER BY version) FROM $TBL")" "1,2,3" "schema_migrations records the versions"
is "$(sql "SELECT checksum FROM $TBL WHERE version = 1")" "$(sha256sum "$D/0001_create_users.sql" | cut -d' ' -f1)" \
    "the checksum is the file's SHA-256"

run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 0 "up again: exit 0"
like "$T_OUT" "Nothing to migrate: 3 applied" "up again: a no-op"
is "$(sql "SELECT COUNT(*) FROM cli_mig_users")" "3" "up again: nothing ran twice"

run_bounded 20 "$DBPOOL" migrate status "${M[@]}"
like "$T_OUT" "3 applied, 0 pending" "status: 3 applied"
like "$T_OUT" "|    0002 | seed         | applied |" "status lists each migration"

# --- a changed checksum is refused ---------------------------------------------------
cp "$D/0001_create_users.sql" "$T_TMP/orig.sql"
echo "-- an edit after the fact" >> "$D/0001_create_users.sql"
cat > "$D/0004_log.sql" <<'SQL'
CREATE TABLE cli_mig_log (id INT);
SQL
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 1 "up with a changed applied migration: exit 1"
like "$T_ERR" "0001_create_users.sql was changed after it was applied" "the changed file is named"
is "$(sql "SHOW TABLES LIKE 'cli_mig_log'")" "" "nothing was applied"
run_bounded 20 "$DBPOOL" migrate status "${M[@]}"
is "$T_RC" 1 "status with a changed file: exit 1"
like "$T_OUT" "CHANGED" "status marks it"
run_bounded 20 "$DBPOOL" migrate down "${M[@]}"
is "$T_RC" 1 "down with a changed file: refused too"
cp "$T_TMP/orig.sql" "$D/0001_create_users.sql"
rm "$D/0004_log.sql"

# --- two migrators at once ----------------------------------------------------------
cat > "$D/0004_slow.sql" <<'SQL'
CREATE TABLE cli_mig_slow (n INT);
INSERT INTO cli_mig_slow SELECT SLEEP(1.5);
SQL
"$DBPOOL" migrate up "${M[@]}" >"$T_TMP/a.out" 2>&1 &
a=$!
sleep 0.4
"$DBPOOL" migrate up "${M[@]}" >"$T_TMP/b.out" 2>&1 &
b=$!
sleep 0.2
run_bounded 20 "$DBPOOL" migrate up "${M[@]}" --lock-timeout 0
c_rc=$T_RC; c_err=$T_ERR
wait $a; a_rc=$?
wait $b; b_rc=$?
is "$a_rc" 0 "the first migrator: exit 0"
like "$(cat "$T_TMP/a.out")" "Applying 0004_slow.sql ... ok" "the first migrator applied 0004"
is "$b_rc" 0 "the second migrator: exit 0"
like "$(cat "$T_TMP/b.out")" "waiting" "the second one waited for the lock"
like "$(cat "$T_TMP/b.out")" "Nothing to migrate: 4 applied" "and then found nothing to do"
is "$c_rc" 1 "a third with --lock-timeout 0: exit 1"
like "$c_err" "another migrator holds the migration lock" "and it says why"
is "$(sql "SELECT COUNT(*) FROM cli_mig_slow")" "1" "0004 ran once"
is "$(sql "SELECT COUNT(*) FROM $TBL WHERE version = 4")" "1" "0004 is recorded once"

# --- down ------------------------------------------------------------------------
run_bounded 30 "$DBPOOL" migrate down "${M[@]}"
is "$T_RC" 1 "down of a migration without a down part: exit 1"
like "$T_ERR" "0004_slow.sql has no down part" "it says so"
printf -- '-- down\nDROP TABLE cli_mig_slow;\n' >> "$D/0004_slow.sql"
sql "UPDATE $TBL SET checksum = '$(sha256sum "$D/0004_slow.sql" | cut -d' ' -f1)' WHERE version = 4"
run_bounded 30 "$DBPOOL" migrate down "${M[@]}"
is "$T_RC" 0 "down: exit 0"
like "$T_OUT" "Reverting 0004_slow.sql ... ok" "down reverts the latest"
is "$(sql "SHOW TABLES LIKE 'cli_mig_slow'")" "" "its down part ran"
run_bounded 30 "$DBPOOL" migrate down --steps 2 "${M[@]}"
is "$T_RC" 0 "down --steps 2: exit 0"
is "$(sql "SELECT GROUP_CONCAT(version) FROM $TBL")" "1" "two more reverted"
is "$(sql "SELECT GROUP_CONCAT(id ORDER BY id) FROM cli_mig_users")" "1,2" "the Lua down ran"
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 0 "up after down: exit 0"
like "$T_OUT" "Applied 3 migrations." "the reverted ones are applied again"

# --- a migration that fails ---------------------------------------------------------
cat > "$D/0005_bad.sql" <<'SQL'
INSERT INTO cli_mig_users VALUES (10, 'before the DDL');
CREATE TABLE cli_mig_bad (a INT);
INSERT INTO cli_mig_users VALUES (11, 'after the DDL');
INSERT INTO cli_mig_no_such_table VALUES (1);
SQL
run_bounded 30 "$DBPOOL" migrate up "${M[@]}"
is "$T_RC" 1 "a failing migration: exit 1"
like "$T_ERR" "0005_bad.sql up failed at statement 4" "the failing statement is named"
like "$T_ERR" "NOT rolled back" "what could not be rolled back is said"
like "$T_ERR" "CREATE TABLE cli_mig_bad" "the DDL is listed"
is "$(sql "SELECT GROUP_CONCAT(id ORDER BY id) FROM cli_mig_users WHERE id >= 10")" "10" \
    "the insert after the DDL was rolled back (the one before it was committed with the DDL)"
is "$(sql "SELECT status FROM $TBL WHERE version = 5")" "failed" "the failed migration is recorded as failed"
like "$T_ERR" "Recorded as failed" "and the error says so"

# --- errors ------------------------------------------------------------------------
run_bounded 20 "$DBPOOL" migrate up --dir "$T_TMP/none" --table "$TBL"
is "$T_RC" 1 "a missing directory: exit 1"
like "$T_ERR" "no such directory" "it says so"
run_bounded 20 "$DBPOOL" migrate status "${M[@]}" --url "mysql://dbpool:wrong@127.0.0.1:$DBPOOL_TEST_MYSQL_PORT/dbpool_test"
is "$T_RC" 1 "a wrong password: exit 1"
like "$T_ERR" "Access denied" "the server's answer"
unlike "$T_ERR" ":wrong@" "without the password"

reset_db
done_testing
