#!/usr/bin/env bash
# Throwaway PostgreSQL 15 server for tests and benchmarks.
#
#   scripts/postgres.sh start|stop|restart|status|kill
#
# State lives in ${DBPOOL_RUN_DIR:-<repo>/.run}/postgres; the server listens on
# 127.0.0.1 only, port ${DBPOOL_PG_PORT:-25432} (and a unix socket in the
# state directory), with TLS from a test CA generated on first use (tls/ca.pem;
# tls/other-ca.pem is an unrelated CA, the "wrong CA" of tests). TCP logins
# use scram-sha-256. The first start creates database dbpool_test and:
#   dbpool     owner of dbpool_test; a password with '@', ':' and a space
#   limited    may log in to dbpool_test, at most 3 connections
#   postgres   the superuser (password below; trust on the unix socket)
# PostgreSQL refuses to run as root: as root, the server runs as the system
# user `postgres` (from the postgresql-15 package) and the state directory
# belongs to it.
# scripts/servers.sh env pg prints the URLs and credentials tests use.
set -euo pipefail

NAME=postgres
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STATE="$RUN_DIR/postgres"
PORT="${DBPOOL_PG_PORT:-25432}"
DATADIR="$STATE/data"
SOCKDIR="$STATE"
PIDFILE="$DATADIR/postmaster.pid"
LOGFILE="$STATE/postgres.log"
TLS="$STATE/tls"
PROVISIONED="$STATE/provisioned"

# Accounts (scripts/servers.sh prints the same values).
APP_USER=dbpool
APP_PASS='p@ss:w0rd 1'
LIMITED_USER=limited
LIMITED_PASS='lim:it@1'
SUPER_PASS='root:pw@1'
DATABASE=dbpool_test

START_TIMEOUT=60
STOP_TIMEOUT=30
STATUS_DETAIL="port $PORT, socket dir $SOCKDIR"

BINDIR="${DBPOOL_PG_BINDIR:-}"
if [[ -z "$BINDIR" ]]; then
    for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
        [[ -x "$d/postgres" ]] && { BINDIR="$d"; break; }
    done
fi

# postmaster.pid's first line is the postmaster's pid.
running_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(head -n 1 "$PIDFILE" 2>/dev/null | tr -dc '0-9')"
    [[ -n "$pid" ]] && alive "$pid" || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" =~ ^(postgres|postmaster)$ ]] || return 1
    printf '%s\n' "$pid"
}

# Runs a command as the server's user (postgres when we are root).
as_pg() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# psql as the superuser over the unix socket (trust).
super_sql() {
    as_pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$PORT" -U postgres -d "${1:-postgres}"
}

# SQL string literal.
sql_lit() { printf "'%s'" "${1//\'/\'\'}"; }

init_datadir() {
    [[ -f "$DATADIR/PG_VERSION" ]] && return 0
    log "initialising $DATADIR"
    rm -rf "$DATADIR" "$PROVISIONED"
    mkdir -p "$DATADIR"
    [[ "$(id -u)" -eq 0 ]] && chown -R postgres: "$STATE"
    chmod 700 "$DATADIR"
    local pwfile
    pwfile="$(mktemp "$STATE/pw.XXXXXX")"
    printf '%s\n' "$SUPER_PASS" >"$pwfile"
    [[ "$(id -u)" -eq 0 ]] && chown postgres: "$pwfile"
    if ! as_pg "$BINDIR/initdb" -D "$DATADIR" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >"$STATE/initdb.log" 2>&1; then
        rm -f "$pwfile"
        cat "$STATE/initdb.log" >&2
        die "initdb failed"
    fi
    rm -f "$pwfile"
    # TCP: scram everywhere, on loopback only (listen_addresses says so too)
    cat >"$DATADIR/pg_hba.conf" <<'EOF'
local   all   all                  trust
host    all   all   127.0.0.1/32   scram-sha-256
EOF
    [[ "$(id -u)" -eq 0 ]] && chown postgres: "$DATADIR/pg_hba.conf"
}

provision() {
    [[ -f "$PROVISIONED" ]] && return 0
    log "creating database $DATABASE and test accounts"
    super_sql <<EOF || die "provisioning failed"
SET password_encryption = 'scram-sha-256';
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_USER') THEN CREATE ROLE $APP_USER LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$LIMITED_USER') THEN CREATE ROLE $LIMITED_USER LOGIN; END IF;
END \$\$;
ALTER ROLE $APP_USER PASSWORD $(sql_lit "$APP_PASS");
ALTER ROLE $LIMITED_USER PASSWORD $(sql_lit "$LIMITED_PASS") CONNECTION LIMIT 3;
-- the pool cancels a runaway query from a side connection: pg_signal_backend
-- lets the app user signal any non-superuser backend (its own need no role)
GRANT pg_signal_backend, pg_read_all_stats TO $APP_USER;
SELECT 'CREATE DATABASE $DATABASE OWNER $APP_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DATABASE')
\gexec
GRANT CONNECT ON DATABASE $DATABASE TO $LIMITED_USER;
EOF
    super_sql "$DATABASE" <<EOF || die "provisioning failed"
GRANT ALL ON SCHEMA public TO $LIMITED_USER;
EOF
    touch "$PROVISIONED"
}

do_start() {
    local pid
    [[ -n "$BINDIR" && -x "$BINDIR/postgres" ]] ||
        die "PostgreSQL server binaries not found (install postgresql-15: scripts/deps.sh)"
    if [[ "$(id -u)" -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        die "running as root needs the system user 'postgres' (from the postgresql-15 package)"
    fi
    mkdir -p "$STATE"
    if pid="$(running_pid)"; then
        log "already running (pid $pid, port $PORT)"
        return 0
    fi
    make_test_tls "$TLS" "$STATE"
    init_datadir
    # the server reads its key as its own user, and refuses a key others can read
    mkdir -p "$STATE/srv-tls"
    cp "$TLS/server-cert.pem" "$TLS/server-key.pem" "$TLS/ca.pem" "$STATE/srv-tls/"
    chmod 600 "$STATE/srv-tls/server-key.pem"
    if [[ "$(id -u)" -eq 0 ]]; then
        chown -R postgres: "$STATE/srv-tls" "$DATADIR"
        touch "$LOGFILE"
        chown postgres: "$LOGFILE" "$STATE"
        # the postgres user must reach the state directory from /
        local d="$STATE"
        while [[ "$d" != / ]]; do
            d="$(dirname "$d")"
            [[ -x "$d" ]] || break
            chmod o+x "$d" 2>/dev/null || true
        done
    fi
    rm -f "$PIDFILE"

    log "starting on 127.0.0.1:$PORT"
    : >>"$LOGFILE"
    local log_start
    log_start="$(wc -c <"$LOGFILE")"
    # setsid: not in the caller's process group (a Ctrl-C aimed at a test
    # run does not take the server down halfway through a query)
    setsid "${as_pg_prefix[@]}" "$BINDIR/postgres" -D "$DATADIR" \
        -c listen_addresses=127.0.0.1 \
        -c port="$PORT" \
        -c unix_socket_directories="$SOCKDIR" \
        -c max_connections=200 \
        -c shared_buffers=64MB \
        -c fsync=off \
        -c synchronous_commit=off \
        -c full_page_writes=off \
        -c ssl=on \
        -c ssl_cert_file="$STATE/srv-tls/server-cert.pem" \
        -c ssl_key_file="$STATE/srv-tls/server-key.pem" \
        -c ssl_ca_file="$STATE/srv-tls/ca.pem" \
        -c password_encryption=scram-sha-256 \
        -c log_min_messages=warning \
        </dev/null >>"$LOGFILE" 2>&1 &
    local child=$!

    local deadline=$((SECONDS + START_TIMEOUT))
    until as_pg "$BINDIR/pg_isready" -q -h "$SOCKDIR" -p "$PORT" -U postgres -t 2; do
        if ! alive "$child"; then
            log "postgres exited during startup"
            tail -c "+$((log_start + 1))" "$LOGFILE" | tail -n 40 >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "not accepting connections after ${START_TIMEOUT}s"
            show_log "$LOGFILE" 40
            kill -KILL "$child" 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
    provision
    log "ready (pid $(running_pid || echo "$child"))"
}

# SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client
# to leave (a pool never does): stop with SIGINT, the "fast" shutdown that
# ends the sessions, and SIGKILL what is still there after STOP_TIMEOUT.
pg_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        return 0
    fi
    log "stopping (pid $pid, fast shutdown)"
    kill -INT "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        log "pid $pid still running after ${STOP_TIMEOUT}s, sending SIGKILL"
        kill_pid "$pid"
    fi
}

as_pg_prefix=()
[[ "$(id -u)" -eq 0 ]] && as_pg_prefix=(runuser -u postgres --)

case "${1:-}" in
    stop) pg_stop ;;
    restart)
        pg_stop
        do_start
        ;;
    *) server_main "$@" ;;
esac
