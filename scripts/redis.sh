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

REPO="$(cd "$(dirname "$0")/.." && pwd)"
RUN_DIR="${DBPOOL_RUN_DIR:-$REPO/.run}"
[[ "$RUN_DIR" == /* ]] || RUN_DIR="$PWD/$RUN_DIR"
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

log() { printf 'redis: %s\n' "$*" >&2; }

die() {
    log "$*"
    exit 1
}

show_log() {
    if [[ -f "$LOGFILE" ]]; then
        log "last lines of $LOGFILE:"
        tail -n 30 "$LOGFILE" >&2 || true
    fi
}

# One redis.conf argument: double-quoted, with backslash and double quote
# escaped (redis.conf is split like a command line, so an unquoted space would
# end the value; ':' and '@' need no quoting but quoting is harmless).
conf_quote() {
    local s="$1"
    s="${s//\\/\\\\}"
    s="${s//\"/\\\"}"
    printf '"%s"' "$s"
}

running_pid() {
    local pid comm
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(tr -dc '0-9' <"$PIDFILE")"
    [[ -n "$pid" ]] || return 1
    alive "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    [[ "$comm" == redis-server* ]] || return 1
    printf '%s\n' "$pid"
}

# redis-cli waits for ever for a reply from something that accepted the
# connection and says nothing: bound every call.
cli() {
    timeout 10 redis-cli -h 127.0.0.1 -p "$PORT" -a "$PASSWORD" --no-auth-warning "$@"
}

write_conf() {
    {
        echo "# Written by scripts/redis.sh; rewritten on every start."
        echo "port $PORT"
        echo "bind 127.0.0.1"
        echo "dir $(conf_quote "$STATE")"
        echo "daemonize yes"
        echo "pidfile $(conf_quote "$PIDFILE")"
        echo "logfile $(conf_quote "$LOGFILE")"
        echo "save \"\""
        echo "appendonly no"
        echo "requirepass $(conf_quote "$PASSWORD")"
        echo "user $ACL_USER on $(conf_quote ">$ACL_PASSWORD") ~* &* +@all"
        # DEBUG SLEEP and friends, for timeout tests (loopback clients only).
        echo "enable-debug-command local"
    } >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
}

# True while PID is a live process. A daemon's parent is init (or whatever
# reaps orphans here), which may leave it a zombie for a while: that is gone.
alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != Z ]]
}

wait_gone() {
    local pid="$1" timeout="$2"
    local deadline=$((SECONDS + timeout))
    while alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
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
        show_log
        die "redis-server failed to start"
    fi

    local deadline=$((SECONDS + START_TIMEOUT)) reply
    while :; do
        # The daemon exits at once if it cannot listen (and whatever holds
        # the port may never answer): look for that before pinging.
        if ! running_pid >/dev/null &&
            tail -c "+$((log_start + 1))" "$LOGFILE" | grep -qiE 'aborting|fatal|failed'; then
            log "redis-server exited during startup"
            tail -c "+$((log_start + 1))" "$LOGFILE" | tail -n 30 >&2 || true
            exit 1
        fi
        reply="$(cli ping 2>/dev/null || true)"
        [[ "$reply" == PONG ]] && break
        if ((SECONDS >= deadline)); then
            log "no PONG after ${START_TIMEOUT}s (last reply: ${reply:-none})"
            show_log
            exit 1
        fi
        sleep 0.1
    done
    log "ready (pid $(running_pid || echo '?'))"
}

do_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    log "stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        log "still running after ${STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "pid $pid does not die"
    fi
    rm -f "$PIDFILE"
}

do_kill() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        return 0
    fi
    log "killing (SIGKILL pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pid $pid does not die"
}

do_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "redis: running (pid $pid, port $PORT)"
        return 0
    fi
    echo "redis: not running"
    return 3
}

case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    restart)
        do_stop
        do_start
        ;;
    status) do_status ;;
    kill) do_kill ;;
    *)
        echo "usage: $0 start|stop|restart|status|kill" >&2
        exit 2
        ;;
esac
