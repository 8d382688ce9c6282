#!/usr/bin/env bash
# dbpool repl end to end: piped input, -e, -B, NAME=URL, the history file
# (no password in it), exit codes; and on a terminal (a pty from script(1)):
# readline, prompts, history, Ctrl-C cancelling a running statement.
source "$(dirname "$0")/lib.sh"
need_env DBPOOL_TEST_MYSQL_URL DBPOOL_TEST_REDIS_URL DBPOOL_TEST_MYSQL_PASSWORD DBPOOL_TEST_REDIS_PASSWORD \
    DBPOOL_TEST_CLUSTER_URL
unset DATABASE_URL REDIS_URL
H="$T_TMP/history"
enc_m="${DBPOOL_TEST_MYSQL_URL#*://*:}"; enc_m="${enc_m%%@*}"
enc_r="${DBPOOL_TEST_REDIS_URL#*://*:}"; enc_r="${enc_r%%@*}"
no_secrets() { # no_secrets TEXT WHAT
    local leak=0 p
    for p in "$DBPOOL_TEST_MYSQL_PASSWORD" "$DBPOOL_TEST_REDIS_PASSWORD" "$enc_m" "$enc_r"; do
        [[ "$1" == *"$p"* ]] && leak=1
    done
    ok $leak "$2: no password"
}

# --- piped input --------------------------------------------------------------
cat > "$T_TMP/in.txt" <<EOF2
DROP TABLE IF EXISTS cli_repl2;
CREATE TABLE cli_repl2 (id INT PRIMARY KEY, v VARCHAR(10));
INSERT INTO cli_repl2 VALUES (1, 'one'), (2, NULL);
SELECT * FROM cli_repl2
  ORDER BY id;
SELECT * FROM cli_no_such_table;
= db:query("SELECT COUNT(*) AS n FROM cli_repl2")
\\connect cache $DBPOOL_TEST_REDIS_URL
SET cli:piped "yes it works"
GET cli:piped
lua print(cache:call("STRLEN", "cli:piped"):await())
\\use db
SELECT v FROM cli_repl2 WHERE id = 1
EOF2
rm -f "$H"
DBPOOL_HISTFILE="$H" run_bounded 30 "$DBPOOL" repl "db=$DBPOOL_TEST_MYSQL_URL" < "$T_TMP/in.txt"
is "$T_RC" 1 "piped input with an error in it: exit 1 (without a terminal)"
like "$T_OUT" "|  2 | NULL |" "a table, NULL shown"
like "$T_OUT" "2 rows in set" "a statement over two lines"
like "$T_ERR" "ERROR 1146 (42S02)" "the error went to stderr"
like "$T_OUT" "| 2 |" "a Lua line after the error: the REPL went on"
like "$T_OUT" "Connected to redis://:***@127.0.0.1" "\\connect in the input"
like "$T_OUT" "\"yes it works\"" "a Redis command"
like "$T_OUT" $'OK\n"yes it works"\n12\n' "Redis replies and a Lua print, in order"
like "$T_OUT" "| one |" "a last statement without ';' runs at the end of the input"
no_secrets "$T_OUT$T_ERR" "the output"
hist="$(cat "$H" 2>/dev/null)"
like "$hist" "SELECT * FROM cli_repl2 ORDER BY id;" "the history file was written (DBPOOL_HISTFILE set)"
like "$hist" "\\connect cache redis://:***@127.0.0.1:$DBPOOL_TEST_REDIS_PORT/0" "the \\connect line is stored redacted"
no_secrets "$hist" "the history file"
is "$(stat -c %a "$H")" "600" "the history file is private"

# without DBPOOL_HISTFILE and without a terminal: no history written
HOME="$T_TMP/home" run_bounded 30 "$DBPOOL" repl "$DBPOOL_TEST_MYSQL_URL" <<<"SELECT 1;"
is "$T_RC" 0 "piped input without errors: exit 0"
ok $([[ ! -e "$T_TMP/home/.dbpool_history" ]]; echo $?) "no ~/.dbpool_history written for piped input"

# --- -e and -B -------------------------------------------------------------------
run_bounded 30 "$DBPOOL" repl -e "SELECT id, v FROM cli_repl2 ORDER BY id;" "$DBPOOL_TEST_MYSQL_URL"
is "$T_RC" 0 "-e: exit 0"
like "$T_OUT" "| id | v    |" "-e runs a statement"
run_bounded 30 "$DBPOOL" repl -B -e "SELECT id, v FROM cli_repl2 ORDER BY id" "$DBPOOL_TEST_MYSQL_URL"
is "$T_OUT" $'id\tv\n1\tone\n2\tNULL' "-B: tab-separated, like mysql -B"
run_bounded 30 "$DBPOOL" repl -e "INCR cli:cnt:e" -e "DEL cli:cnt:e" "$DBPOOL_TEST_REDIS_URL"
is "$T_OUT" $'(integer) 1\n(integer) 1' "-e twice, on Redis"
run_bounded 30 "$DBPOOL" repl -e "SELECT 1" "mysql://dbpool:bad%20pw@127.0.0.1:$DBPOOL_TEST_MYSQL_PORT/dbpool_test"
is "$T_RC" 1 "a connection that cannot open: exit 1"
like "$T_ERR" "Access denied" "the server's reason"
unlike "$T_ERR" "bad%20pw" "without the password"
DATABASE_URL="$DBPOOL_TEST_MYSQL_URL" REDIS_URL="$DBPOOL_TEST_REDIS_URL" \
    run_bounded 30 "$DBPOOL" repl -e '\list'
like "$T_OUT" "| * | db    | mysql" "no URL: db from DATABASE_URL"
like "$T_OUT" "|   | redis | redis" "and redis from REDIS_URL"
run_bounded 30 "$DBPOOL" repl -e 'SET {cli}k "in the cluster"' -e 'GET {cli}k' -e 'MGET cli:a cli:b' -e '\ping' \
    "$DBPOOL_TEST_CLUSTER_URL"
is "$T_RC" 1 "Redis Cluster: exit 1 (one command failed), and no hang at exit"
like "$T_OUT" $'OK\n"in the cluster"' "Redis Cluster: commands routed by key"
like "$T_ERR" "different cluster slots" "Redis Cluster: a cross-slot command is refused, the REPL goes on"
like "$T_OUT" "PONG from 'cluster' (redis-cluster" "Redis Cluster: \\ping"

# --- on a terminal ---------------------------------------------------------------
# script(1) gives the REPL a pty; input is typed with pauses, as a person would.
# script runs the command through $SHELL -c; `exec` makes the REPL the pty's
# only process, since a shell that stays (dash does) dies of the Ctrl-C itself.
if ! command -v script >/dev/null; then
    echo "Bail out! script(1) (util-linux) is needed for the terminal tests"
    exit 255
fi
rm -f "$H"
tty_session() { # tty_session TYPED_FUNCTION -> $TTY (escape sequences removed), $TTY_RC, $TTY_MS
    local t0; t0=$(date +%s%N)
    "$1" | DBPOOL_HISTFILE="$H" timeout -k 5 40 script -qfec "exec $DBPOOL repl db=$DBPOOL_TEST_MYSQL_URL" /dev/null \
        > "$T_TMP/tty.out" 2>&1
    TTY_RC=$?
    TTY_MS=$(elapsed_ms "$t0")
    TTY="$(sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' "$T_TMP/tty.out" | tr -d '\r')"
}
session1() {
    sleep 0.8; printf 'SELECT 40 + 2 AS answer;\n'
    sleep 0.5; printf '\\connect r %s\n' "$DBPOOL_TEST_REDIS_URL"
    sleep 0.5; printf 'PING\n'
    sleep 0.3; printf '\\use db\n'
    sleep 0.3; printf 'SELECT SLEEP(20) AS s;\n'
    sleep 0.8; printf '\003'
    sleep 0.8; printf 'SELECT "after" AS ctrl_c;\n'
    sleep 0.5; printf '\\q\n'
}
tty_session session1
is "$TTY_RC" 0 "terminal session: exit 0"
like "$TTY" "Type \\help for help" "a banner on a terminal"
like "$TTY" "db> SELECT 40 + 2 AS answer;" "the prompt, and readline echoing the line"
like "$TTY" "|     42 |" "the result"
like "$TTY" "r> PING" "the prompt follows \\connect"
like "$TTY" "PONG" "Redis on the terminal"
like "$TTY" "Query execution was interrupted" "Ctrl-C cancelled the running statement (KILL QUERY)"
ok $([[ $TTY_MS -lt 15000 ]]; echo $?) "without waiting for it (${TTY_MS} ms)"
like "$TTY" "Ctrl-C again quits" "a hint says what a second Ctrl-C does"
like "$TTY" "| after  |" "the REPL went on after Ctrl-C"
# (the \connect line readline echoes is what the user typed; all else must be clean)
no_secrets "$(grep -v '^db> \\connect ' <<<"$TTY")" "the terminal session, but for the echo of the typed URL"
hist="$(cat "$H" 2>/dev/null)"
like "$hist" "SELECT 40 + 2 AS answer;" "the terminal session's history was written"
like "$hist" "\\connect r redis://:***@" "with the \\connect redacted"
no_secrets "$hist" "the terminal history"

session2() {
    sleep 0.8; printf 'SELECT 1'
    sleep 0.3; printf '\003'
    sleep 0.3; printf '\n'
    sleep 0.5; printf 'SELECT 2 AS two;\n'
    sleep 0.5; printf '\\q\n'
}
tty_session session2
is "$TTY_RC" 0 "Ctrl-C while typing: the REPL goes on"
like "$TTY" "^C: line discarded" "the line being typed is discarded"
like "$TTY" "| two |" "the next line runs"
unlike "$(cat "$H")" "SELECT 1" "a discarded line is not in the history"

session3() {
    sleep 0.8; printf 'SELECT 1'; sleep 0.3; printf '\003'; sleep 0.3; printf '\n'
    sleep 0.5; printf 'SELECT 3'; sleep 0.3; printf '\003'
    sleep 2; printf '\n\\q\n'
}
tty_session session3
is "$TTY_RC" 130 "a second Ctrl-C quits the REPL: exit 130"
is "$(grep -c 'line discarded' <<<"$TTY")" 1 "at once: not when its line ends"

done_testing
