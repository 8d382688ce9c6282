#!/usr/bin/env bash
# dbpool repl, issue 16, end to end: \watch until SIGINT (a bounded run),
# \watch with a count, \i and \o from piped input; and on a terminal (a pty
# from script(1), 50 columns): tab completion of a table name and of a
# backslash command through readline, long values cut to the width with a
# marker, \x.
source "$(dirname "$0")/lib.sh"
need_env DBPOOL_TEST_MYSQL_URL DBPOOL_TEST_MYSQL_PASSWORD
unset DATABASE_URL REDIS_URL
URL="$DBPOOL_TEST_MYSQL_URL"
sql "DROP TABLE IF EXISTS cli_watch, cli_tty_completion_target; CREATE TABLE cli_watch (id INT)"

# --- \watch until SIGINT ------------------------------------------------------------
printf 'SELECT COUNT(*) AS n FROM cli_watch;\n\\watch 0.2\nSELECT "after" AS a;\n' > "$T_TMP/watch.in"
"$DBPOOL" repl "$URL" < "$T_TMP/watch.in" > "$T_TMP/watch.out" 2> "$T_TMP/watch.err" &
pid=$!
wait_for "$T_TMP/watch.out" 20 "Every 0.2s (3)"
ok $? "\\watch 0.2 runs the last statement again and again"
sql "INSERT INTO cli_watch VALUES (1), (2)"
wait_for "$T_TMP/watch.out" 10 "| 2 |"
ok $? "each run shows the table as it is then"
kill -INT "$pid"
t0=$(date +%s%N)
wait "$pid"; rc=$?
is "$rc" 0 "SIGINT stops \\watch and the REPL goes on to the end of its input: exit 0"
ok $([[ $(elapsed_ms "$t0") -lt 5000 ]]; echo $?) "at once"
out="$(cat "$T_TMP/watch.out")"
like "$out" "| after |" "the statement after \\watch ran"
like "$(cat "$T_TMP/watch.err")" "\\watch stopped (SIGINT)" "stderr says why \\watch stopped"
n=$(grep -c '^Every 0.2s' <<<"$out")
ok $([[ $n -ge 4 ]]; echo $?) "several runs ($n)"
like "$out" $'| n |\n+---+\n| 0 |' "the first runs saw no rows"

# --- a second \watch stopped by a second SIGINT: the REPL still goes on ----------------
printf 'SELECT 1 AS one;\n\\watch 0.2\n\\watch 0.2\nSELECT "after2" AS a;\n' > "$T_TMP/watch2.in"
"$DBPOOL" repl "$URL" < "$T_TMP/watch2.in" > "$T_TMP/watch2.out" 2> "$T_TMP/watch2.err" &
pid=$!
wait_for "$T_TMP/watch2.out" 20 "Every 0.2s (2)"
kill -INT "$pid"
wait_for "$T_TMP/watch2.err" 10 "stopped (SIGINT)"
ok $? "the first SIGINT stops the first \\watch"
wait_for "$T_TMP/watch2.out" 20 "Every 0.2s (6)"
kill -INT "$pid"
wait "$pid"; rc=$?
is "$rc" 0 "the second SIGINT stops the second \\watch, not the REPL: exit 0"
like "$(cat "$T_TMP/watch2.out")" "| after2 |" "the statement after both ran"
is "$(grep -c 'stopped (SIGINT)' "$T_TMP/watch2.err")" 2 "stderr says so twice"

# --- \watch SECONDS COUNT ends by itself ----------------------------------------------
run_bounded 20 "$DBPOOL" repl -e "SELECT COUNT(*) AS n FROM cli_watch" -e '\watch 0.1 3' "$URL"
is "$T_RC" 0 "\\watch 0.1 3: exit 0"
is "$(grep -c '^Every 0.1s' <<<"$T_OUT")" 3 "three runs, then the command ends"

# --- \i and \o from piped input ---------------------------------------------------
printf 'INSERT INTO cli_watch VALUES (3);\nSELECT MAX(id) AS top FROM cli_watch\n' > "$T_TMP/inc.sql"
printf '\\o %s\n\\i %s\n\\o\nSELECT "back" AS b;\n' "$T_TMP/res.txt" "$T_TMP/inc.sql" > "$T_TMP/io.in"
run_bounded 20 "$DBPOOL" repl "$URL" < "$T_TMP/io.in"
is "$T_RC" 0 "\\i and \\o: exit 0"
like "$(cat "$T_TMP/res.txt")" "|   3 |" "\\i ran the file, \\o put its results in the file"
unlike "$T_OUT" "| top |" "not on the output"
like "$T_OUT" "| back |" "after \\o alone, results are on the output again"

# --- on a terminal ----------------------------------------------------------------
if ! command -v script >/dev/null; then
    echo "Bail out! script(1) (util-linux) is needed for the terminal tests"
    exit 255
fi
long="$(printf 'word%.0s ' {1..40})"
sql "CREATE TABLE cli_tty_completion_target (id INT, v TEXT); INSERT INTO cli_tty_completion_target VALUES (1, '$long'), (2, 'short')"
tty_session() { # tty_session TYPED_FUNCTION -> $TTY (escape sequences removed)
    "$1" | DBPOOL_HISTFILE="$T_TMP/h" timeout -k 5 40 script -qfec "stty cols 50 rows 40; exec $DBPOOL repl db=$URL" /dev/null \
        > "$T_TMP/tty.out" 2>&1
    TTY_RC=$?
    TTY="$(sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1b[>=]//g' "$T_TMP/tty.out" | tr -d '\r')"
}
session() {
    sleep 0.8; printf 'SELECT id, v FROM cli_tty_completion_t\t'
    sleep 0.5; printf 'ORDER BY id;\n'
    sleep 0.8; printf '\\tim\t'
    sleep 0.3; printf 'on\n'
    sleep 0.5; printf '\\x\n'
    sleep 0.3; printf 'SELECT v FROM cli_tty_completion_target WHERE id = 1;\n'
    sleep 0.8; printf '\\q\n'
}
tty_session session
is "$TTY_RC" 0 "terminal session: exit 0"
like "$TTY" "| id | v " "tab completed the table name: the statement ran"
like "$TTY" "2 rows in set" "both rows"
table_lines="$(grep -E '^[|+]' <<<"$TTY")"
widest=0
while IFS= read -r l; do
    w=$(printf '%s' "$l" | LC_ALL=C.UTF-8 wc -m) # characters, whatever the caller's locale
    (( w > widest )) && widest=$w
done <<<"$table_lines"
ok $([[ $widest -le 50 && $widest -gt 0 ]]; echo $?) "in 50 columns, no table line is wider (widest: $widest)"
like "$table_lines" "… |" "a long value is cut, with the marker"
like "$table_lines" "| short " "a short one is whole"
like "$TTY" "Timing is on." "tab completed a backslash command (\\tim -> \\timing)"
like "$TTY" "Expanded display is on." "\\x"
like "$TTY" "v: $long" "expanded output shows the long value whole"

watch_session() {
    sleep 0.8; printf 'SELECT 7 AS w;\n'
    sleep 0.3; printf '\\watch 0.3\n'
    sleep 1.2; printf '\003'
    sleep 0.5; printf 'SELECT "after" AS a;\n'
    sleep 0.5; printf '\\q\n'
}
tty_session watch_session
is "$TTY_RC" 0 "terminal: \\watch then Ctrl-C: exit 0"
like "$TTY" "Every 0.3s (2)" "\\watch ran the statement again"
like "$TTY" "\\watch stopped (SIGINT)" "Ctrl-C stopped it"
like "$TTY" "| after |" "and the REPL went on"

sql "DROP TABLE cli_watch, cli_tty_completion_target"
done_testing
