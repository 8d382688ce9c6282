# shellcheck shell=bash disable=SC2034  # (REPO, RUN_DIR are for the scripts that source this)
# scripts/lib.sh: what the server scripts share (scripts/mariadb.sh,
# scripts/mariadb-replica.sh, scripts/redis.sh, scripts/redis-cluster.sh; scripts/servers.sh takes the
# paths). Sourced, never run:
#
#   NAME=redis                               # the prefix of every message
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sets REPO (the checkout) and RUN_DIR (${DBPOOL_RUN_DIR:-<repo>/.run}, made
# absolute). A single-server script also defines running_pid and do_start
# and ends with `server_main "$@"`, which gives it stop, restart, status and
# kill.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${DBPOOL_RUN_DIR:-$REPO/.run}"
[[ "$RUN_DIR" == /* ]] || RUN_DIR="$PWD/$RUN_DIR"

log() { printf '%s: %s\n' "$NAME" "$*" >&2; }

die() {
    log "$*"
    exit 1
}

# show_log FILE N: the last N lines of a server's log, for failures.
show_log() {
    if [[ -f "$1" ]]; then
        log "last lines of $1:"
        tail -n "$2" "$1" >&2 || true
    fi
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

# pid_from_file PIDFILE COMM_REGEX: prints the pid in PIDFILE when that
# process is alive and its command name matches (a stale pid file may name
# a pid the system has given to something else).
pid_from_file() {
    local pid comm
    [[ -f "$1" ]] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [[ -n "$pid" ]] || return 1
    alive "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    [[ "$comm" =~ $2 ]] || return 1
    printf '%s\n' "$pid"
}

# stop_pids PID...: SIGTERM to all of them at once, then waits for each
# (STOP_TIMEOUT seconds) and SIGKILLs one that is still there.
stop_pids() {
    local pid
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
            log "pid $pid still running after ${STOP_TIMEOUT}s, sending SIGKILL"
            kill_pid "$pid"
        fi
    done
}

# kill_pid PID: SIGKILL, and wait until it is gone.
kill_pid() {
    kill -KILL "$1" 2>/dev/null || true
    wait_gone "$1" 10 || die "pid $1 does not die"
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

# redis_conf_common PORT DIR PASSWORD: the lines every redis.conf of ours
# starts with (one daemonized server, nothing saved to disk, a password, DEBUG
# for the timeout tests); the caller adds its own.
redis_conf_common() {
    echo "port $1"
    echo "bind 127.0.0.1"
    echo "dir $(conf_quote "$2")"
    echo "daemonize yes"
    echo "pidfile $(conf_quote "$2/redis.pid")"
    echo "logfile $(conf_quote "$2/redis.log")"
    echo "save \"\""
    echo "appendonly no"
    echo "requirepass $(conf_quote "$3")"
    # DEBUG SLEEP and friends, for timeout tests (loopback clients only).
    echo "enable-debug-command local"
}

# wait_redis_up WHAT PORT PASSWORD LOGFILE OFFSET TIMEOUT RUNNING_CMD...:
# waits until the redis-server on PORT answers PING with PONG. It exits 1
# (with the log's new lines) when the server died during startup (RUNNING_CMD
# fails and the log past OFFSET says why) or after TIMEOUT seconds.
# WHAT names it in messages ("redis-server", "node 31001").
wait_redis_up() {
    local what="$1" port="$2" password="$3" logfile="$4" offset="$5" timeout="$6"
    shift 6
    local deadline=$((SECONDS + timeout)) reply
    while :; do
        # The daemon exits at once if it cannot listen (and whatever holds
        # the port may never answer): look for that before pinging.
        if ! "$@" >/dev/null &&
            tail -c "+$((offset + 1))" "$logfile" | grep -qiE 'aborting|fatal|failed'; then
            log "$what exited during startup"
            tail -c "+$((offset + 1))" "$logfile" | tail -n 30 >&2 || true
            exit 1
        fi
        # redis-cli waits for ever for a reply from something that accepted
        # the connection and says nothing: bound every call.
        reply="$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" -a "$password" --no-auth-warning ping \
            2>/dev/null || true)"
        [[ "$reply" == PONG ]] && return 0
        if ((SECONDS >= deadline)); then
            log "$what: no PONG after ${timeout}s (last reply: ${reply:-none})"
            tail -n 30 "$logfile" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
}

# make_test_tls DIR PARENT: a test CA, a server certificate for
# 127.0.0.1/localhost signed by it, and a second, unrelated CA that tests use
# as the "wrong CA", in DIR (made in a temporary directory under PARENT, then
# moved in place). Nothing is done when DIR has them already.
make_test_tls() {
    local TLS="$1" STATE="$2"
    if [[ -s "$TLS/ca.pem" && -s "$TLS/server-cert.pem" && -s "$TLS/server-key.pem" &&
        -s "$TLS/other-ca.pem" ]]; then
        return 0
    fi
    command -v openssl >/dev/null || die "openssl not found (run scripts/deps.sh)"
    log "generating test certificates in $TLS"
    local tmp
    tmp="$(mktemp -d "$STATE/tls.XXXXXX")"
    (
        cd "$tmp"
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
            -keyout ca-key.pem -out ca.pem -subj '/CN=dbpool test CA' \
            -addext 'basicConstraints=critical,CA:TRUE' \
            -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
            -keyout other-ca-key.pem -out other-ca.pem -subj '/CN=dbpool other test CA' \
            -addext 'basicConstraints=critical,CA:TRUE' \
            -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
        openssl req -new -newkey rsa:2048 -nodes -sha256 \
            -keyout server-key.pem -out server.csr -subj '/CN=localhost' 2>/dev/null
        cat >server-ext.cnf <<'EOF'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
EOF
        openssl x509 -req -sha256 -days 3650 -in server.csr \
            -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
            -extfile server-ext.cnf -out server-cert.pem 2>/dev/null
        openssl verify -CAfile ca.pem server-cert.pem >/dev/null
        rm -f server.csr server-ext.cnf ca.srl
        chmod 600 ./*-key.pem
    ) || {
        rm -rf "$tmp"
        die "certificate generation failed"
    }
    rm -rf "$TLS"
    mv "$tmp" "$TLS"
    chmod 755 "$TLS"
}

# ==== MariaDB servers (scripts/mariadb.sh, scripts/mariadb-replica.sh) ====
# The script sets STATE, DATADIR, SOCKET, ERRLOG, PROVISIONED and ROOT_PASS.

# The --user option mariadbd and mariadb-install-db need: mariadbd refuses
# to run as root unless told to.
if [[ "$(id -u)" -eq 0 ]]; then
    mariadb_user_opt=(--user=root)
else
    mariadb_user_opt=(--user="$(id -un)")
fi

# mariadb_sql SOCKET [ARGS...]: the mariadb client as root over SOCKET, in
# batch mode without column names. root@localhost accepts unix_socket
# authentication (when we are the OS user root) or its password; try both so
# the script works however the account was left.
mariadb_sql() {
    local sock="$1"
    shift
    if mariadb --no-defaults --protocol=socket --socket="$sock" -uroot \
        --batch --skip-column-names -e 'SELECT 1' >/dev/null 2>&1; then
        mariadb --no-defaults --protocol=socket --socket="$sock" -uroot \
            --batch --skip-column-names "$@"
    else
        mariadb --no-defaults --protocol=socket --socket="$sock" -uroot \
            --password="$ROOT_PASS" --batch --skip-column-names "$@"
    fi
}

# A fresh data directory in DATADIR (when there is none yet).
mariadb_init_datadir() {
    [[ -d "$DATADIR/mysql" ]] && return 0
    command -v mariadb-install-db >/dev/null || die "mariadb-install-db not found (run scripts/deps.sh)"
    log "initialising $DATADIR"
    rm -rf "$DATADIR" "$PROVISIONED"
    # mariadb-install-db breaks on a path with a space (an unquoted chown);
    # then initialise in a temporary directory and move it in place.
    local target="$DATADIR"
    if [[ "$DATADIR" =~ [^A-Za-z0-9_./+-] ]]; then
        target="$(mktemp -d "${TMPDIR:-/tmp}/dbpool-$NAME.XXXXXX")"
    fi
    mkdir -p "$target"
    if ! mariadb-install-db --no-defaults --datadir="$target" "${mariadb_user_opt[@]}" \
        --auth-root-authentication-method=normal --skip-test-db \
        >"$STATE/install-db.log" 2>&1; then
        cat "$STATE/install-db.log" >&2
        rm -rf "$target"
        die "mariadb-install-db failed"
    fi
    if [[ "$target" != "$DATADIR" ]]; then
        mv "$target" "$DATADIR"
    fi
}

# mariadb_wait_ready CHILD LOG_START TIMEOUT: waits until the server started
# as CHILD answers on SOCKET; exits 1 with its log (past LOG_START) when it
# died or did not answer within TIMEOUT seconds. Ping succeeds as soon as
# the server answers, even if root's authentication fails; the server opens
# its TCP and socket listeners together, just before it is ready.
mariadb_wait_ready() {
    local child="$1" log_start="$2" deadline=$((SECONDS + $3))
    until timeout 10 mariadb-admin --no-defaults --protocol=socket --socket="$SOCKET" \
        -uroot --connect-timeout=2 ping >/dev/null 2>&1; do
        if ! alive "$child"; then
            log "mariadbd exited during startup"
            tail -c "+$((log_start + 1))" "$ERRLOG" | tail -n 40 >&2 || true
            tail -n 20 "$STATE/mariadbd.out" >&2 2>/dev/null || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "not accepting connections after ${3}s"
            show_log "$ERRLOG" 40
            kill -KILL "$child" 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
}

# ==== a single server (scripts/mariadb.sh, scripts/redis.sh) ====
# The script defines running_pid (prints the pid, or fails), do_start,
# PIDFILE, STOP_TIMEOUT and STATUS_DETAIL (what `status` says after the pid).

server_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    log "stopping (pid $pid)"
    stop_pids "$pid"
    rm -f "$PIDFILE"
}

server_kill() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        return 0
    fi
    log "killing (SIGKILL pid $pid)"
    kill_pid "$pid"
}

# Exit status 3 when it is not running (the LSB convention).
server_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "$NAME: running (pid $pid, $STATUS_DETAIL)"
        return 0
    fi
    echo "$NAME: not running"
    return 3
}

server_main() {
    case "${1:-}" in
        start) do_start ;;
        stop) server_stop ;;
        restart)
            server_stop
            do_start
            ;;
        status) server_status ;;
        kill) server_kill ;;
        *)
            echo "usage: $0 start|stop|restart|status|kill" >&2
            exit 2
            ;;
    esac
}
