#!/usr/bin/env bash
# dbpool --help, help COMMAND, --version, and usage mistakes (exit 2).
source "$(dirname "$0")/lib.sh"

run_bounded 10 "$DBPOOL" --help
is "$T_RC" 0 "--help exits 0"
like "$T_OUT" "usage: dbpool" "--help prints the usage"
for c in run repl migrate ping; do like "$T_OUT" "  $c " "--help lists $c"; done

for c in run repl migrate ping help; do
    run_bounded 10 "$DBPOOL" help "$c"
    is "$T_RC" 0 "help $c exits 0"
    like "$T_OUT" "usage: dbpool $c" "help $c shows its usage"
    run_bounded 10 "$DBPOOL" "$c" --help
    is "$T_RC" 0 "$c --help exits 0"
    like "$T_OUT" "usage: dbpool $c" "$c --help shows the same"
done
run_bounded 10 "$DBPOOL" help run
like "$T_OUT" "--drain-timeout" "help run documents --drain-timeout"
run_bounded 10 "$DBPOOL" help migrate
like "$T_OUT" "implicitly" "help migrate says what DDL cannot roll back"

run_bounded 10 "$DBPOOL" --version
is "$T_RC" 0 "--version exits 0"
like "$T_OUT" "dbpool 0." "--version prints the version"

run_bounded 10 "$DBPOOL"
is "$T_RC" 2 "no command: exit 2"
like "$T_ERR" "usage: dbpool" "no command: the usage on stderr"

run_bounded 10 "$DBPOOL" frobnicate
is "$T_RC" 2 "unknown command: exit 2"
like "$T_ERR" "unknown command 'frobnicate'" "unknown command: named"
like "$T_ERR" "dbpool --help" "unknown command: a hint"

run_bounded 10 "$DBPOOL" --frob
is "$T_RC" 2 "unknown global option: exit 2"
like "$T_ERR" "unknown option '--frob'" "unknown global option: named"

run_bounded 10 "$DBPOOL" ping --nope mysql://x@127.0.0.1:1/db
is "$T_RC" 2 "unknown ping option: exit 2"
like "$T_ERR" "dbpool ping: unknown option '--nope'" "unknown ping option: named with its command"
like "$T_ERR" "dbpool help ping" "unknown ping option: a hint"

run_bounded 10 "$DBPOOL" run
is "$T_RC" 2 "run without a script: exit 2"
run_bounded 10 "$DBPOOL" run --drain-timeout
is "$T_RC" 2 "an option without its value: exit 2"
like "$T_ERR" "needs a value" "an option without its value: said"
run_bounded 10 "$DBPOOL" run --drain-timeout abc x.lua
is "$T_RC" 2 "a non-numeric value: exit 2"
run_bounded 10 "$DBPOOL" migrate
is "$T_RC" 2 "migrate without a subcommand: exit 2"
run_bounded 10 "$DBPOOL" migrate sideways
is "$T_RC" 2 "migrate with an unknown subcommand: exit 2"
run_bounded 10 "$DBPOOL" help nosuch
is "$T_RC" 2 "help for an unknown command: exit 2"
run_bounded 10 "$DBPOOL" repl not-a-url
is "$T_RC" 2 "repl with something not a URL: exit 2"
run_bounded 10 env -u DATABASE_URL -u REDIS_URL "$DBPOOL" ping
is "$T_RC" 2 "ping without any URL: exit 2"
run_bounded 10 env -u DATABASE_URL "$DBPOOL" migrate up --dir "$T_TMP"
is "$T_RC" 2 "migrate without a database: exit 2"

# arguments after the script belong to the script, options included
printf 'print(select("#", ...), ...)\n' > "$T_TMP/args.lua"
run_bounded 10 env -u DATABASE_URL -u REDIS_URL "$DBPOOL" run "$T_TMP/args.lua" --help -x y
is "$T_RC" 0 "a script's own options are not the command's"
is "$T_OUT" $'3\t--help\t-x\ty' "the script gets its arguments untouched"

done_testing
