#!/usr/bin/env bash
# dbpool repl end to end when its session connection is killed (issue 11,
# item 5): piped input fed line by line through a FIFO (MySQL, then Redis),
# and on a terminal (script(1)). The test reads the session's connection id
# from the REPL's own output, kills it with the mariadb client / redis-cli,
# then types the next statement: it runs on a new connection, and the REPL
# says it reconnected and that the session state is gone.
source "$(dirname "$0")/lib.sh"
need_env DBPOOL_TEST_MYSQL_URL DBPOOL_TEST_REDIS_URL DBPOOL_TEST_MYSQL_PASSWORD DBPOOL_TEST_REDIS_PASSWORD \
    DBPOOL_TEST_MYSQL_PORT DBPOOL_TEST_REDIS_PORT
unset DATABASE_URL REDIS_URL DBPOOL_HISTFILE
export HOME="$T_TMP/home"

# The REPL reads a FIFO that this test writes to (fd 3) as the lines are due.
start_repl() { # start_repl URL...
    rm -f "$T_TMP/fifo" "$T_TMP/o" "$T_TMP/e"
    mkfifo "$T_TMP/fifo"
    timeout -k 5 60 "$DBPOOL" repl "$@" < "$T_TMP/fifo" > "$T_TMP/o" 2> "$T_TMP/e" &
    REPL_PID=$!
    exec 3> "$T_TMP/fifo"
}
stop_repl() {
    exec 3>&-
    wait "$REPL_PID"
    REPL_RC=$?
    OUT="$(cat "$T_TMP/o")"
    ERR="$(cat "$T_TMP/e")"
}

# --- MySQL, piped ------------------------------------------------------------------
start_repl "db=$DBPOOL_TEST_MYSQL_URL"
echo "SELECT CONNECTION_ID() AS first_id;" >&3
wait_for "$T_TMP/o" 10 "1 row in set"
id1="$(grep -A2 first_id "$T_TMP/o" | tail -1 | tr -dc 0-9)"
sql "KILL $id1"
sleep 0.3
echo "SELECT 'after the kill' AS k;" >&3
echo "SELECT CONNECTION_ID() AS second_id;" >&3
stop_repl
is "$REPL_RC" 0 "piped: exit 0 (the statement after the kill ran: nothing failed)"
like "$OUT" "| after the kill |" "the statement after KILL $id1 ran"
like "$ERR" "ERROR: connection lost; reconnected (connection id " "stderr says the REPL reconnected"
like "$ERR" "Session state (variables, temporary tables, an open transaction) is gone." "and that the session state is gone"
id2="$(grep -A2 second_id <<<"$OUT" | tail -1 | tr -dc 0-9)"
like "$ERR" "(connection id $id2)" "the note names the new connection ($id2)"
ok $([[ -n "$id1" && -n "$id2" && "$id1" != "$id2" ]]; echo $?) "a new connection: $id1 -> $id2"

# a statement killed while it runs: reported, not run again, exit 1
start_repl "db=$DBPOOL_TEST_MYSQL_URL"
echo "SELECT CONNECTION_ID() AS first_id;" >&3
wait_for "$T_TMP/o" 10 "1 row in set"
id1="$(grep -A2 first_id "$T_TMP/o" | tail -1 | tr -dc 0-9)"
echo "SELECT SLEEP(5) AS slow;" >&3
sleep 0.5
sql "KILL $id1"
echo "SELECT 'next' AS k;" >&3
stop_repl
is "$REPL_RC" 1 "a statement killed while it ran: exit 1 (it failed)"
like "$ERR" "it may or may not have run" "it is reported as maybe run"
like "$ERR" "ERROR: connection lost; reconnected (connection id " "the REPL reconnected for the next one"
like "$OUT" "| next |" "and the next statement ran"
unlike "$OUT" "| slow |" "the killed statement was not run again"

# --- Redis, piped -----------------------------------------------------------------
start_repl "$DBPOOL_TEST_REDIS_URL"
echo "CLIENT ID" >&3
wait_for "$T_TMP/o" 10 "(integer)"
rid1="$(tr -dc 0-9 < "$T_TMP/o")"
rcli CLIENT KILL ID "$rid1" >/dev/null
sleep 0.3
echo "PING" >&3
echo "CLIENT ID" >&3
stop_repl
is "$REPL_RC" 0 "Redis, piped: exit 0"
like "$OUT" $'PONG\n(integer) ' "the command after CLIENT KILL ID $rid1 ran"
like "$ERR" "ERROR: connection lost; reconnected (connection id " "stderr says the REPL reconnected"
rid2="$(tail -1 <<<"$OUT" | tr -dc 0-9)"
ok $([[ -n "$rid1" && -n "$rid2" && "$rid1" != "$rid2" ]]; echo $?) "a new client: $rid1 -> $rid2"

# --- on a terminal ------------------------------------------------------------------
if ! command -v script >/dev/null; then
    echo "Bail out! script(1) (util-linux) is needed for the terminal tests"
    exit 255
fi
typed() {
    sleep 0.8; printf 'SELECT CONNECTION_ID() AS tty_id;\n'
    local i id=""
    for ((i = 0; i < 100; i++)); do
        sleep 0.05
        id="$(sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' "$T_TMP/tty.out" 2>/dev/null | tr -d '\r' | grep -A2 '| tty_id' | tail -1 | tr -dc 0-9)"
        [[ -n "$id" ]] && break
    done
    sql "KILL $id"
    sleep 0.3; printf "SELECT 'on the terminal' AS k;\n"
    sleep 0.8; printf '\\q\n'
}
typed | timeout -k 5 40 script -qfec "exec $DBPOOL repl --no-history db=$DBPOOL_TEST_MYSQL_URL" /dev/null > "$T_TMP/tty.out" 2>&1
TTY_RC=$?
TTY="$(sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' "$T_TMP/tty.out" | tr -d '\r')"
is "$TTY_RC" 0 "terminal: exit 0"
like "$TTY" $'Session state (variables, temporary tables, an open transaction) is gone.\n+-----------------+\n| k               |\n+-----------------+\n| on the terminal |' \
    "terminal: the reconnect note, then the result"

done_testing
