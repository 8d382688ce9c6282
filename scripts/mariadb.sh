#!/usr/bin/env bash
# Throwaway MariaDB server for tests and benchmarks.
#
#   scripts/mariadb.sh start|stop|restart|status|kill
#
# State lives in ${DBPOOL_RUN_DIR:-<repo>/.run}/mariadb; the server listens on
# 127.0.0.1 (and 127.0.0.2 when this MariaDB can bind several addresses), port
# ${DBPOOL_MYSQL_PORT:-23306}, with TLS from a test CA generated on first use
# (tls/ca.pem; tls/other-ca.pem is an unrelated CA, the "wrong CA" of tests).
# The first start creates database dbpool_test and the accounts:
#   dbpool@127.0.0.1, dbpool@localhost   ALL on dbpool_test.*, PROCESS,
#                                        CONNECTION ADMIN (KILL any query)
#   limited@127.0.0.1                    ALL on dbpool_test.*, at most 3
#                                        connections
#   root@127.0.0.1                       everything, WITH GRANT OPTION
#   root@localhost (socket)              unix_socket or the root password
# The address tests may use as a host name the certificate does not cover is
# written to alt_host (empty if the server could not bind a second address).
# scripts/servers.sh env prints the URLs and credentials tests use.
# It writes a binary log with GTIDs (server_id 1, ROW format), so that
# scripts/mariadb-replica.sh can replicate from it.
set -euo pipefail

# Its name, state and files (alike in each server script: the code they
# share is in lib.sh, these are what differs).
NAME=mariadb
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STATE="$RUN_DIR/mariadb"
PORT="${DBPOOL_MYSQL_PORT:-23306}"
DATADIR="$STATE/data"
SOCKET="$STATE/mysqld.sock"
PIDFILE="$STATE/mysqld.pid"
ERRLOG="$STATE/error.log"
TLS="$STATE/tls"
ALT_HOST_FILE="$STATE/alt_host"
PROVISIONED="$STATE/provisioned"

# Accounts (scripts/servers.sh prints the same values).
APP_USER=dbpool
APP_PASS='p@ss:w0rd 1'
LIMITED_USER=limited
LIMITED_PASS='lim:it@1'
ROOT_PASS='root:pw@1'
DATABASE=dbpool_test

START_TIMEOUT=60
STOP_TIMEOUT=30
STATUS_DETAIL="port $PORT, socket $SOCKET"

# Prints the server's pid when it is running (and is a mariadbd).
running_pid() { pid_from_file "$PIDFILE" '^(mariadbd|mysqld)$'; }

# Runs the mariadb client as root over the socket (scripts/lib.sh).
root_sql() { mariadb_sql "$SOCKET" "$@"; }

# 10.11 and later accept a comma-separated list of addresses.
supports_multi_bind() {
    local ver major minor
    ver="$(mariadbd --version 2>/dev/null | sed -n 's/.*Ver \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')"
    [[ -n "$ver" ]] || return 1
    major="${ver%%.*}"
    minor="${ver#*.}"
    ((major > 10 || (major == 10 && minor >= 11)))
}

# True when something accepts TCP connections on HOST:PORT.
tcp_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

provision() {
    [[ -f "$PROVISIONED" ]] && return 0
    log "creating database $DATABASE and test accounts"
    local alt
    alt="$(cat "$ALT_HOST_FILE" 2>/dev/null || true)"
    {
        cat <<EOF
CREATE DATABASE IF NOT EXISTS \`$DATABASE\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('$ROOT_PASS');
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '$ROOT_PASS';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
EOF
        # The application and limited users, from 127.0.0.1, the socket
        # (localhost) and the alternative loopback address if it is bound.
        local host
        for host in 127.0.0.1 localhost ${alt:+"$alt"}; do
            cat <<EOF
CREATE USER IF NOT EXISTS '$APP_USER'@'$host';
ALTER USER '$APP_USER'@'$host' IDENTIFIED BY '$APP_PASS';
GRANT ALL PRIVILEGES ON \`$DATABASE\`.* TO '$APP_USER'@'$host';
GRANT PROCESS, CONNECTION ADMIN ON *.* TO '$APP_USER'@'$host';
EOF
        done
        for host in 127.0.0.1 ${alt:+"$alt"}; do
            cat <<EOF
CREATE USER IF NOT EXISTS '$LIMITED_USER'@'$host';
ALTER USER '$LIMITED_USER'@'$host' IDENTIFIED BY '$LIMITED_PASS' WITH MAX_USER_CONNECTIONS 3;
GRANT ALL PRIVILEGES ON \`$DATABASE\`.* TO '$LIMITED_USER'@'$host';
EOF
        done
        echo 'FLUSH PRIVILEGES;'
    } | root_sql || die "provisioning failed"
    # mariadb-install-db also made password-less root@<hostname> and
    # root@::1 (and, on some versions, anonymous users, which would let a
    # wrong user name log in): drop them.
    root_sql <<'EOF' | root_sql || die "dropping default accounts failed"
SELECT CONCAT('DROP USER ', QUOTE(user), '@', QUOTE(host), ';') FROM mysql.user
 WHERE (user = 'root' AND host NOT IN ('localhost', '127.0.0.1')) OR user = '';
EOF
    touch "$PROVISIONED"
}

do_start() {
    local pid
    mkdir -p "$STATE"
    if pid="$(running_pid)"; then
        log "already running (pid $pid, port $PORT)"
        return 0
    fi
    command -v mariadbd >/dev/null || die "mariadbd not found (run scripts/deps.sh)"
    rm -f "$PIDFILE"
    make_test_tls "$TLS" "$STATE"
    mariadb_init_datadir

    local bind=127.0.0.1 alt=
    if supports_multi_bind; then
        bind=127.0.0.1,127.0.0.2
        alt=127.0.0.2
    fi

    log "starting on 127.0.0.1:$PORT${alt:+ and $alt:$PORT}"
    : >>"$ERRLOG"
    local log_start
    log_start="$(wc -c <"$ERRLOG")"
    # setsid: not in the caller's process group, so a Ctrl-C aimed at a test
    # run does not take the server down halfway through a query.
    setsid mariadbd --no-defaults "${mariadb_user_opt[@]}" \
        --datadir="$DATADIR" \
        --port="$PORT" \
        --bind-address="$bind" \
        --socket="$SOCKET" \
        --pid-file="$PIDFILE" \
        --log-error="$ERRLOG" \
        --skip-name-resolve \
        --max-connections=200 \
        --innodb-buffer-pool-size=128M \
        --innodb-log-file-size=48M \
        --innodb-flush-log-at-trx-commit=2 \
        --server-id=1 \
        --log-bin=mysql-bin \
        --binlog-format=ROW \
        --log-slave-updates \
        --gtid-strict-mode=1 \
        --log-bin-trust-function-creators=1 \
        --expire-logs-days=1 \
        --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_unicode_ci \
        --ssl-ca="$TLS/ca.pem" \
        --ssl-cert="$TLS/server-cert.pem" \
        --ssl-key="$TLS/server-key.pem" \
        </dev/null >"$STATE/mariadbd.out" 2>&1 &
    local child=$!

    mariadb_wait_ready "$child" "$log_start" "$START_TIMEOUT"

    if [[ -n "$alt" ]] && ! tcp_open "$alt" "$PORT"; then
        log "warning: $alt:$PORT is not listening; no alternative host for tests"
        alt=
    fi
    printf '%s\n' "$alt" >"$ALT_HOST_FILE"

    provision
    log "ready (pid $(running_pid || echo "$child"))"
}

server_main "$@"
