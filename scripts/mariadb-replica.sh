#!/usr/bin/env bash
# Throwaway MariaDB GTID replica of the test primary (scripts/mariadb.sh).
#
#   scripts/mariadb-replica.sh start|stop|restart|status|kill
#
# State lives in ${DBPOOL_RUN_DIR:-<repo>/.run}/mariadb-replica; the server
# listens on 127.0.0.1 only, port ${DBPOOL_MYSQL_REPLICA_PORT:-23307},
# server_id 2, read_only, with the primary's test certificates. A second
# replica (DBPOOL_REPLICA_INDEX=2, `scripts/servers.sh start replica2`) lives
# in mariadb-replica2 on the next port, server_id 3; and so on. The primary
# must be running (scripts/servers.sh starts it first). The first start
# copies the primary (mariadb-dump --gtid: every database and the accounts,
# so the same URLs work here) and replicates from it with
# CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos as user `repl`; later
# starts resume. Start fails loudly unless both replication threads run.
# The application user may read the replica's status (SLAVE MONITOR).
set -euo pipefail

INDEX="${DBPOOL_REPLICA_INDEX:-1}"
[[ "$INDEX" =~ ^[1-9]$ ]] || { echo "mariadb-replica: DBPOOL_REPLICA_INDEX must be 1 to 9" >&2; exit 2; }
SUFFIX=""
((INDEX > 1)) && SUFFIX="$INDEX"
NAME="mariadb-replica$SUFFIX"
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STATE="$RUN_DIR/mariadb-replica$SUFFIX"
PORT="$((${DBPOOL_MYSQL_REPLICA_PORT:-23307} + INDEX - 1))"
SERVER_ID="$((INDEX + 1))"
PRIMARY_PORT="${DBPOOL_MYSQL_PORT:-23306}"
PRIMARY_STATE="$RUN_DIR/mariadb"
PRIMARY_SOCKET="$PRIMARY_STATE/mysqld.sock"
DATADIR="$STATE/data"
SOCKET="$STATE/mysqld.sock"
PIDFILE="$STATE/mysqld.pid"
ERRLOG="$STATE/error.log"
TLS="$PRIMARY_STATE/tls"
PROVISIONED="$STATE/provisioned"

# Accounts (as in scripts/mariadb.sh; scripts/servers.sh prints the same).
ROOT_PASS='root:pw@1'
APP_USER=dbpool
REPL_USER=repl
REPL_PASS='r3pl:ic@'

START_TIMEOUT=60
STOP_TIMEOUT=30
REPL_TIMEOUT=30
STATUS_DETAIL="port $PORT, socket $SOCKET, replica of 127.0.0.1:$PRIMARY_PORT"

running_pid() { pid_from_file "$PIDFILE" '^(mariadbd|mysqld)$'; }

root_sql() { mariadb_sql "$SOCKET" "$@"; }
primary_sql() { mariadb_sql "$PRIMARY_SOCKET" "$@"; }

# Waits until both replication threads run; dies with the replica's errors.
wait_replicating() {
    local deadline=$((SECONDS + REPL_TIMEOUT)) st io sqlt
    while :; do
        st="$(root_sql --column-names -e 'SHOW SLAVE STATUS\G' 2>/dev/null || true)"
        io="$(sed -n 's/^ *Slave_IO_Running: //p' <<<"$st")"
        sqlt="$(sed -n 's/^ *Slave_SQL_Running: //p' <<<"$st")"
        [[ "$io" == Yes && "$sqlt" == Yes ]] && return 0
        if ((SECONDS >= deadline)); then
            log "replication is not running after ${REPL_TIMEOUT}s (IO: ${io:-?}, SQL: ${sqlt:-?})"
            grep -E 'Last_(IO|SQL)_Error|Gtid' <<<"$st" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}

provision() {
    [[ -f "$PROVISIONED" ]] && return 0
    log "copying the primary (127.0.0.1:$PRIMARY_PORT) and starting replication"
    # the replication account, and the right to read replication status for
    # the application user (replicated with the rest)
    primary_sql <<EOF || die "creating the replication account on the primary failed"
CREATE USER IF NOT EXISTS '$REPL_USER'@'127.0.0.1';
ALTER USER '$REPL_USER'@'127.0.0.1' IDENTIFIED BY '$REPL_PASS';
GRANT REPLICATION SLAVE ON *.* TO '$REPL_USER'@'127.0.0.1';
GRANT SLAVE MONITOR ON *.* TO '$APP_USER'@'127.0.0.1';
GRANT SLAVE MONITOR ON *.* TO '$APP_USER'@'localhost';
EOF
    local dump="$STATE/primary.sql"
    if ! mariadb-dump --no-defaults --protocol=socket --socket="$PRIMARY_SOCKET" -uroot --password="$ROOT_PASS" \
        --all-databases --single-transaction --gtid --master-data=2 --routines --events --triggers \
        >"$dump" 2>"$STATE/dump.log"; then
        cat "$STATE/dump.log" >&2
        die "mariadb-dump of the primary failed"
    fi
    local pos
    pos="$(sed -n "s/^-- SET GLOBAL gtid_slave_pos='\(.*\)';/\1/p" "$dump" | head -n 1)"
    root_sql -e 'STOP SLAVE; RESET SLAVE ALL' >/dev/null 2>&1 || true
    root_sql <"$dump" || die "loading the primary's dump failed"
    root_sql <<EOF || die "CHANGE MASTER failed"
FLUSH PRIVILEGES;
SET GLOBAL gtid_slave_pos = '$pos';
CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$PRIMARY_PORT, MASTER_USER='$REPL_USER',
  MASTER_PASSWORD='$REPL_PASS', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
START SLAVE;
EOF
    rm -f "$dump"
    wait_replicating
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
    [[ -S "$PRIMARY_SOCKET" ]] && primary_sql -e 'SELECT 1' >/dev/null 2>&1 ||
        die "the primary (scripts/mariadb.sh, port $PRIMARY_PORT) is not running: start it first"
    rm -f "$PIDFILE"
    mariadb_init_datadir
    log "starting on 127.0.0.1:$PORT"
    : >>"$ERRLOG"
    local log_start
    log_start="$(wc -c <"$ERRLOG")"
    local ssl=()
    [[ -s "$TLS/ca.pem" ]] && ssl=(--ssl-ca="$TLS/ca.pem" --ssl-cert="$TLS/server-cert.pem" --ssl-key="$TLS/server-key.pem")
    setsid mariadbd --no-defaults "${mariadb_user_opt[@]}" \
        --datadir="$DATADIR" \
        --port="$PORT" \
        --bind-address=127.0.0.1 \
        --socket="$SOCKET" \
        --pid-file="$PIDFILE" \
        --log-error="$ERRLOG" \
        --skip-name-resolve \
        --max-connections=200 \
        --innodb-buffer-pool-size=64M \
        --innodb-log-file-size=48M \
        --innodb-flush-log-at-trx-commit=2 \
        --server-id="$SERVER_ID" \
        --skip-log-bin \
        --read-only=1 \
        --relay-log=relay-bin \
        --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_unicode_ci \
        "${ssl[@]}" \
        </dev/null >"$STATE/mariadbd.out" 2>&1 &
    local child=$!
    mariadb_wait_ready "$child" "$log_start" "$START_TIMEOUT"
    if [[ -f "$PROVISIONED" ]]; then
        # a test may have left it stopped
        root_sql -e 'START SLAVE' >/dev/null 2>&1 || true
        wait_replicating
    else
        provision
    fi
    log "ready (pid $(running_pid || echo "$child"))"
}

server_main "$@"
