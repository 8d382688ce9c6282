#!/usr/bin/env bash
# `make install` (into a DESTDIR) gives a dbpool command that works from the
# system's Lua paths alone: the CLI modules are installed with the module.
source "$(dirname "$0")/lib.sh"
need_env DBPOOL_TEST_MYSQL_URL
ROOT="$T_TMP/root"
# -o: use the module as built; installing must not rebuild it under the other tests
make -s -C "$T_REPO" -o build/lua/dbpool/core.so install DESTDIR="$ROOT" PREFIX=/usr/local >"$T_TMP/make.out" 2>&1
ok $? "make install DESTDIR=... exits 0"
BIN="$ROOT/usr/local/bin/dbpool"
ok $([[ -x "$BIN" ]]; echo $?) "bin/dbpool is installed"
LMOD="$ROOT/usr/local/share/lua/5.4"
CORE="$(find "$ROOT" -name core.so -path '*dbpool*' | head -1)"
ok $([[ -n "$CORE" && -f "$LMOD/dbpool/cli/main.lua" && -f "$LMOD/dbpool/progress.lua" ]]; echo $?) \
    "the module, the CLI modules and the core are installed"
CMOD="${CORE%/dbpool/core.so}"
# only the installed tree: no LUA_PATH into the checkout
INST=(env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "LUA_PATH=$LMOD/?.lua;$LMOD/?/init.lua" "LUA_CPATH=$CMOD/?.so")
run_bounded 20 "${INST[@]}" "$BIN" --version
is "$T_RC" 0 "the installed dbpool runs"
like "$T_OUT" "dbpool 0." "and prints its version"
printf 'print(package.searchpath("dbpool.cli.main", package.path))\nprint(db:query("SELECT 6 * 7 AS n"):await()[1].n)\n' > "$T_TMP/s.lua"
DATABASE_URL="$DBPOOL_TEST_MYSQL_URL" run_bounded 20 "${INST[@]}" "$BIN" run "$T_TMP/s.lua"
is "$T_RC" 0 "the installed dbpool runs a script"
like "$T_OUT" "$LMOD/dbpool/cli/main.lua" "with the installed modules, not the checkout's"
like "$T_OUT" "42" "against the server"
run_bounded 20 "${INST[@]}" "$BIN" repl -e "SELECT 1 AS one;" "$DBPOOL_TEST_MYSQL_URL"
is "$T_RC" 0 "the installed REPL"
done_testing
