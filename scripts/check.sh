#!/usr/bin/env bash
# One test, verbose, with only the servers it needs: what `make check T=FILE`
# runs.
#
#   scripts/check.sh FILE
#
# FILE is a C test (tests/test_mysql.c, or its binary build/tests/test_mysql.t),
# a soak (tests/soak.c, tests/soak_lifetimes.c, or build/tests/soak), a Lua
# test (tests/lua/test_lua_redis.lua), a CLI test (tests/cli/20_run.t) or
# tests/faultproxy_selftest.sh. It builds what the test needs (through make),
# then runs it with `prove -v` under scripts/with-servers.sh, starting only
# the servers whose DBPOOL_TEST_MYSQL* / _MYSQL_REPLICA* / _REDIS* / _CLUSTER* variables the
# test's source names (none: no server). Environment as for the suite
# (DBPOOL_*_PORT, DBPOOL_RUN_DIR, SOAK_SEED, SOAK_SECONDS, ...).
set -euo pipefail

NAME=check
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

usage() {
    echo "usage: make check T=FILE  (tests/test_NAME.c, build/tests/test_NAME.t, tests/soak.c," \
        "tests/lua/NAME.lua, tests/cli/NN_NAME.t, tests/faultproxy_selftest.sh)" >&2
    exit 2
}

t="${1:-}"
[[ -n "$t" ]] || usage
[[ "$t" == "$REPO"/* ]] && t="${t#"$REPO"/}"
t="${t#./}"

# src: the file whose variables say which servers; run: what prove runs;
# build: the make targets it needs.
case "$t" in
    tests/*.c | build/tests/*.t | build/tests/soak | build/tests/soak_lifetimes)
        name="$(basename "$t")"
        name="${name%.c}"
        name="${name%.t}"
        src="tests/$name.c"
        case "$name" in
            soak | soak_lifetimes) run="build/tests/$name" ;;
            test_*) run="build/tests/$name.t" ;;
            *) die "$t is not a test (tests/test_*.c, tests/soak.c, tests/soak_lifetimes.c)" ;;
        esac
        # tests/proxy.h runs the fault proxy binary
        build=("$run" build/tests/faultproxy)
        ;;
    tests/lua/*.lua | tests/cli/*.t)
        src="$t"
        run="$t"
        build=(lua)
        ;;
    tests/faultproxy_selftest.sh)
        src="$t"
        run="$t"
        build=(build/tests/faultproxy)
        ;;
    *) usage ;;
esac
[[ -f "$src" ]] || die "$src: no such file"

which=""
for kind in MYSQL MYSQL_REPLICA REDIS CLUSTER PG; do
    if grep -q "DBPOOL_TEST_$kind" "$src"; then
        case "$kind" in
            MYSQL) part=mysql ;;
            MYSQL_REPLICA) part=replica ;;
            REDIS) part=redis ;;
            CLUSTER) part=cluster ;;
            PG) part=pg ;;
        esac
        which+="${which:+,}$part"
    fi
done

"${MAKE:-make}" --no-print-directory "${build[@]}"
log "$t: servers: ${which:-none}"
exec scripts/with-servers.sh --only "${which:-none}" prove -v --merge --timer --exec '' "$run"
