#!/usr/bin/env bash
# Throwaway single Redis server for tests and benchmarks.
#
#   scripts/redis.sh start|stop|restart|status|kill
#
# State lives in ${DBPOOL_RUN_DIR:-<repo>/.run}/redis; the server listens on
# 127.0.0.1:${DBPOOL_REDIS_PORT:-26379}, keeps nothing on disk, requires a
# password for the default user and has an ACL user "dbpool".
# scripts/servers.sh env prints the URLs and credentials tests use.
set -euo pipefail

# Its name, state and files (alike in each server script: the code they
# share is in lib.sh, these are what differs).
NAME=redis
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STATE="$RUN_DIR/redis"
PORT="${DBPOOL_REDIS_PORT:-26379}"
CONF="$STATE/redis.conf"
PIDFILE="$STATE/redis.pid"
LOGFILE="$STATE/redis.log"

# Credentials (scripts/servers.sh prints the same values).
PASSWORD='r3d:s@pw'
ACL_USER=dbpool
ACL_PASSWORD='acl:p@ss'

START_TIMEOUT=30
STOP_TIMEOUT=30
STATUS_DETAIL="port $PORT"

running_pid() { pid_from_file "$PIDFILE" '^redis-server'; }

write_conf() {
    {
        echo "# Written by scripts/redis.sh; rewritten on every start."
        redis_conf_common "$PORT" "$STATE" "$PASSWORD"
        echo "user $ACL_USER on $(conf_quote ">$ACL_PASSWORD") ~* &* +@all"
    } >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
}

do_start() {
    local pid
    mkdir -p "$STATE"
    if pid="$(running_pid)"; then
        log "already running (pid $pid, port $PORT)"
        return 0
    fi
    command -v redis-server >/dev/null || die "redis-server not found (run scripts/deps.sh)"
    command -v redis-cli >/dev/null || die "redis-cli not found (run scripts/deps.sh)"
    rm -f "$PIDFILE"
    write_conf
    : >>"$LOGFILE"
    local log_start
    log_start="$(wc -c <"$LOGFILE")"
    log "starting on 127.0.0.1:$PORT"
    if ! redis-server "$CONF" </dev/null >"$STATE/redis-server.out" 2>&1; then
        cat "$STATE/redis-server.out" >&2
        show_log "$LOGFILE" 30
        die "redis-server failed to start"
    fi

    wait_redis_up redis-server "$PORT" "$PASSWORD" "$LOGFILE" "$log_start" "$START_TIMEOUT" running_pid
    log "ready (pid $(running_pid || echo '?'))"
}

server_main "$@"
