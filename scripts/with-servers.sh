#!/usr/bin/env bash
# Runs a command with the throwaway test servers up, and stops them after,
# whatever the command's outcome. A server that cannot start fails the run.
#
#   scripts/with-servers.sh [--only WHICH] COMMAND [ARGS...]
#
# WHICH: all (the default), none, or a comma-separated list of mysql, replica,
# redis, cluster and pg (--only mysql,redis); only those are started and stopped.
# The command sees the DBPOOL_TEST_* variables of `scripts/servers.sh env`,
# and LUA_PATH / LUA_CPATH pointing into the build, so `require "dbpool"` works.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
which=all
if [[ "${1:-}" == "--only" ]]; then which="$2"; shift 2; fi
[[ $# -gt 0 ]] || { echo "usage: $0 [--only all|none|mysql,replica,redis,cluster,pg] COMMAND [ARGS...]" >&2; exit 2; }

started=0
cleanup() {
    local rc=$?
    if [[ $started == 1 && -z "${DBPOOL_KEEP_SERVERS:-}" ]]; then
        "$here/servers.sh" stop "$which" >/dev/null 2>&1 || true
    fi
    exit $rc
}
trap cleanup EXIT INT TERM

started=1
if ! "$here/servers.sh" start "$which"; then
    echo "with-servers: the test servers could not start; failing the run" >&2
    exit 1
fi
eval "$("$here/servers.sh" env "$which")"
export LUA_PATH="$repo/lua/?.lua;$repo/lua/?/init.lua;$repo/scripts/?.lua;;"
export LUA_CPATH="$repo/build/lua/?.so;;"
"$@"
