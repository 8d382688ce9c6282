#!/usr/bin/env bash
# dbpool run: exit codes, the globals, errors without passwords, and the
# drain on SIGINT/SIGTERM (signals sent from here, work in flight).
source "$(dirname "$0")/lib.sh"
need_env DBPOOL_TEST_MYSQL_URL DBPOOL_TEST_REDIS_URL DBPOOL_TEST_MYSQL_PASSWORD DBPOOL_TEST_REDIS_PASSWORD
export DATABASE_URL="$DBPOOL_TEST_MYSQL_URL" REDIS_URL="$DBPOOL_TEST_REDIS_URL"
export DBPOOL_QUIET=1
S="$T_TMP"

# Neither password, in any form, may appear in what the command prints.
no_secrets() { # no_secrets TEXT WHAT
    local enc_m="${DBPOOL_TEST_MYSQL_URL#*://*:}"; enc_m="${enc_m%%@*}"
    local enc_r="${DBPOOL_TEST_REDIS_URL#*://*:}"; enc_r="${enc_r%%@*}"
    local leak=0 p
    for p in "$DBPOOL_TEST_MYSQL_PASSWORD" "$DBPOOL_TEST_REDIS_PASSWORD" "$enc_m" "$enc_r"; do
        [[ "$1" == *"$p"* ]] && leak=1
    done
    ok $leak "$2: no password in the output"
}

# --- success, globals, arg ---------------------------------------------------
cat > "$S/ok.lua" <<'LUA'
assert(db and redis and dbpool, "globals")
print("arg", arg[0]:match("[^/]*$"), arg[1], arg[2], select("#", ...))
print("mysql", db:query("SELECT 40 + ? AS n", { 2 }):await()[1].n)
print("redis", redis:call("PING"):await())
local tasks = {}
for i = 1, 10 do tasks[i] = dbpool.spawn(function() return db:query("SELECT ? AS i", { i }):await()[1].i end) end
local sum = 0
for i = 1, 10 do sum = sum + tasks[i]:await() end
print("sum", sum)
LUA
run_bounded 30 "$DBPOOL" run "$S/ok.lua" one two
is "$T_RC" 0 "a script that succeeds: exit 0"
like "$T_OUT" $'arg\tok.lua\tone\ttwo\t2' "arg and ... as in lua"
like "$T_OUT" $'mysql\t42' "db is a MySQL pool from DATABASE_URL"
like "$T_OUT" $'redis\tPONG' "redis is a Redis pool from REDIS_URL"
like "$T_OUT" $'sum\t55' "spawned tasks ran"
is "$T_ERR" "" "nothing on stderr"

run_bounded 30 env -u DATABASE_URL -u REDIS_URL "$DBPOOL" run - <<<'print(db == nil and redis == nil)'
is "$T_RC" 0 "a script from stdin"
is "$T_OUT" "true" "no db / redis when the variables are unset"

# a script written for plain lua (calls dbpool.run itself) works too
cat > "$S/plain.lua" <<'LUA'
local dbpool = require "dbpool"
local db2 = dbpool.open(os.getenv("DATABASE_URL"))
print(dbpool.run(function() return db2:query("SELECT 7 AS n"):await()[1].n end))
LUA
run_bounded 30 "$DBPOOL" run "$S/plain.lua"
is "$T_RC" 0 "a script that calls dbpool.run itself"
is "$T_OUT" "7" "its result"

# --- failures -----------------------------------------------------------------
cat > "$S/sqlerr.lua" <<'LUA'
local function load_users() local r = db:query("SELECT * FROM no_such_table_cli"):await(); return r end
load_users()
LUA
run_bounded 30 "$DBPOOL" run "$S/sqlerr.lua"
is "$T_RC" 1 "an uncaught SQL error: exit 1"
like "$T_ERR" "doesn't exist" "the error message"
like "$T_ERR" "stack traceback:" "a traceback"
like "$T_ERR" "sqlerr.lua:1: in" "the traceback names the script's line"
no_secrets "$T_ERR" "SQL error"

cat > "$S/leak.lua" <<'LUA'
error("cannot reach " .. os.getenv("DATABASE_URL") .. " nor " .. os.getenv("REDIS_URL")
    .. " (password " .. os.getenv("DBPOOL_TEST_MYSQL_PASSWORD") .. ")")
LUA
run_bounded 30 "$DBPOOL" run "$S/leak.lua"
is "$T_RC" 1 "a Lua error: exit 1"
like "$T_ERR" "leak.lua:1: cannot reach mysql://dbpool:***@127.0.0.1" "the URL is shown redacted"
no_secrets "$T_ERR" "an error that quotes the URLs and a password"

cat > "$S/other.lua" <<'LUA'
local p = dbpool.open("mysql://someone:Sekr3t%21pw@127.0.0.1:1/x?connect_timeout=1&acquire_timeout=1")
p:query("SELECT 1"):await()
LUA
run_bounded 30 "$DBPOOL" run "$S/other.lua"
is "$T_RC" 1 "a connection error: exit 1"
unlike "$T_ERR" "Sekr3t" "the password of a pool the script opened is not shown"

cat > "$S/spawned.lua" <<'LUA'
dbpool.spawn(function() db:query("SELECT * FROM no_such_table_cli_2"):await() end)
print("main task done")
LUA
run_bounded 30 "$DBPOOL" run "$S/spawned.lua"
is "$T_RC" 1 "a failed spawned task nobody awaited: exit 1"
like "$T_OUT" "main task done" "the main task had finished"
like "$T_ERR" "nobody awaited" "the failure is reported"

printf 'local x = = 1\n' > "$S/syntax.lua"
run_bounded 30 "$DBPOOL" run "$S/syntax.lua"
is "$T_RC" 1 "a syntax error: exit 1"
like "$T_ERR" "syntax.lua:1:" "the syntax error's place"

run_bounded 30 "$DBPOOL" run "$S/does-not-exist.lua"
is "$T_RC" 1 "a missing script: exit 1"
like "$T_ERR" "does-not-exist.lua" "the missing script is named"

cat > "$S/exit3.lua" <<'LUA'
db:query("CREATE TABLE IF NOT EXISTS cli_run_exit (id INT)"):await()
db:query("INSERT INTO cli_run_exit SELECT SLEEP(0.3)") -- in flight when os.exit is called
os.exit(3)
LUA
sql "DROP TABLE IF EXISTS cli_run_exit"
run_bounded 30 "$DBPOOL" run "$S/exit3.lua"
is "$T_RC" 3 "os.exit(3) in a script: exit 3"
is "$(sql 'SELECT COUNT(*) FROM cli_run_exit')" 1 "the op in flight at os.exit settled first"

# --- signals --------------------------------------------------------------------
# Job control on: a background job of a script otherwise starts with SIGINT
# ignored (and a signal ignored is never delivered). No `timeout` wrapper
# either: it passes a signal on twice (to the child and to its group), which
# would be the "second signal". A watchdog bounds each run instead.
set -m
start_bounded() { # start_bounded SECS OUT ERR CMD... ; sets BG_PID
    "${@:4}" >"$2" 2>"$3" &
    BG_PID=$!
    ( sleep "$1"; kill -9 "$BG_PID" 2>/dev/null ) >/dev/null 2>&1 &
    WATCHDOG=$!
}
stop_watchdog() { kill "$WATCHDOG" 2>/dev/null; wait "$WATCHDOG" 2>/dev/null; }

# N inserts that each take SECS, in flight when the signal comes; the table
# tells which of them the drain let finish.
cat > "$S/slow.lua" <<'LUA'
local secs, n = tonumber(arg[1]), tonumber(arg[2])
local ps = {}
for i = 1, n do ps[i] = db:query("INSERT INTO cli_run_sig (v) SELECT ? + SLEEP(?)", { i, secs }) end
print("started")
io.stdout:flush()
dbpool.all(ps):await()
print("all settled")
for i = 1, 1000 do db:query("INSERT INTO cli_run_sig (v) VALUES (?)", { 1000 + i }):await() end
print("not reached")
LUA

signal_run() { # signal_run SIG DRAIN SECS N [SECOND_SIGNAL_AFTER]
    local sig="$1" drain="$2" secs="$3" n="$4" second="${5:-}"
    sql "DROP TABLE IF EXISTS cli_run_sig; CREATE TABLE cli_run_sig (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
    start_bounded 60 "$S/sig.out" "$S/sig.err" "$DBPOOL" run --drain-timeout "$drain" "$S/slow.lua" "$secs" "$n"
    local pid=$BG_PID
    wait_for "$S/sig.out" 10 started || diag "the script did not start"
    sleep 0.2
    local t0; t0=$(date +%s%N)
    kill -"$sig" "$pid"
    if [[ -n "$second" ]]; then sleep "$second"; kill -"$sig" "$pid"; fi
    wait "$pid"
    T_RC=$?
    T_MS=$(elapsed_ms "$t0")
    stop_watchdog
    T_OUT="$(cat "$S/sig.out")"
    T_ERR="$(cat "$S/sig.err")"
}

signal_run TERM 10 1 4
is "$T_RC" 143 "SIGTERM: exit 143"
is "$(sql 'SELECT COUNT(*) FROM cli_run_sig')" 4 "SIGTERM: the 4 inserts in flight were drained, none after"
like "$T_ERR" "SIGTERM: stopping" "SIGTERM: the stop is announced"
like "$T_ERR" "of 4 ops in flight 4 completed, 0 failed, 0 cut off" "SIGTERM: what completed and what was cut"
unlike "$T_OUT" "not reached" "SIGTERM: no new work after the drain"

signal_run INT 10 1 3
is "$T_RC" 130 "SIGINT: exit 130"
is "$(sql 'SELECT COUNT(*) FROM cli_run_sig')" 3 "SIGINT: the 3 inserts in flight were drained"

signal_run TERM 0.5 20 2
is "$T_RC" 143 "SIGTERM with a short drain: exit 143"
ok $([[ $T_MS -lt 5000 ]]; echo $?) "the drain deadline (0.5 s) is kept (took ${T_MS} ms)"
like "$T_ERR" "2 cut off at the deadline" "what was cut off is printed"

signal_run INT 30 20 2 0.3
is "$T_RC" 130 "a second SIGINT: exit 130 at once"
ok $([[ $T_MS -lt 3000 ]]; echo $?) "the second signal does not wait for the drain (took ${T_MS} ms)"
like "$T_ERR" "a second signal exits at once" "the first signal said the second would end it"

# a script that computes without awaiting: the second signal still ends it
printf 'print("started") io.stdout:flush()\nlocal x = 0\nwhile true do x = x + 1 end\n' > "$S/busy.lua"
start_bounded 30 "$S/busy.out" "$S/busy.err" "$DBPOOL" run "$S/busy.lua"
wait_for "$S/busy.out" 10 started
kill -INT "$BG_PID"; sleep 0.3; kill -INT "$BG_PID"
wait "$BG_PID"
is "$?" 130 "a busy loop ends at the second SIGINT"
stop_watchdog

sql "DROP TABLE IF EXISTS cli_run_sig; DROP TABLE IF EXISTS cli_run_exit"
done_testing
