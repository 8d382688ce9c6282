#!/usr/bin/env bash
# The test servers, together.
#
#   scripts/servers.sh start|stop|status|env [WHICH]
#
# WHICH is all (the default), none, or a comma-separated list of mysql,
# replica, replica2, redis, cluster and pg (mysql,redis). replica is a MariaDB
# GTID replica of mysql (scripts/mariadb-replica.sh): it needs mysql, which
# is started with it whenever it is asked for; replica2 is a second one (for
# benchmarks, not in all).
#
# start/stop/status call scripts/mariadb.sh, scripts/mariadb-replica.sh,
# scripts/redis.sh, scripts/redis-cluster.sh and scripts/postgres.sh. env
# prints shell-quoted export lines for the tests:
#
#   eval "$(scripts/servers.sh env)"
#
# Ports and the state directory follow DBPOOL_MYSQL_PORT,
# DBPOOL_MYSQL_REPLICA_PORT, DBPOOL_REDIS_PORT, DBPOOL_CLUSTER_BASE_PORT,
# DBPOOL_PG_PORT and DBPOOL_RUN_DIR, like the individual scripts.
set -euo pipefail

NAME=servers
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPTS="$REPO/scripts"
MYSQL_PORT="${DBPOOL_MYSQL_PORT:-23306}"
MYSQL_REPLICA_PORT="${DBPOOL_MYSQL_REPLICA_PORT:-23307}"
REDIS_PORT="${DBPOOL_REDIS_PORT:-26379}"
CLUSTER_BASE_PORT="${DBPOOL_CLUSTER_BASE_PORT:-27001}"
PG_PORT="${DBPOOL_PG_PORT:-25432}"

# Same values as in the individual scripts.
MYSQL_USER=dbpool
MYSQL_PASSWORD='p@ss:w0rd 1'
MYSQL_LIMITED_USER=limited
MYSQL_LIMITED_PASSWORD='lim:it@1'
MYSQL_ROOT_PASSWORD='root:pw@1'
MYSQL_DATABASE=dbpool_test
REDIS_PASSWORD='r3d:s@pw'
REDIS_ACL_USER=dbpool
REDIS_ACL_PASSWORD='acl:p@ss'
CLUSTER_PASSWORD='cl@ster: pw'
PG_USER=dbpool
PG_PASSWORD='p@ss:w0rd 1'
PG_LIMITED_USER=limited
PG_LIMITED_PASSWORD='lim:it@1'
PG_SUPER_PASSWORD='root:pw@1'
PG_DATABASE=dbpool_test

usage() {
    echo "usage: $0 start|stop|status|env [all|none|mysql,replica,redis,cluster,pg]" >&2
    exit 2
}

# Percent-encodes everything but RFC 3986 unreserved characters.
urlencode() {
    local s="$1" out="" c i
    local LC_ALL=C
    for ((i = 0; i < ${#s}; i++)); do
        c="${s:i:1}"
        case "$c" in
            [A-Za-z0-9._~-]) out+="$c" ;;
            *) out+="$(printf '%%%02X' "'$c")" ;;
        esac
    done
    printf '%s' "$out"
}

# export NAME='value', quoted for any POSIX shell.
emit() {
    local v="$2"
    v="${v//\'/\'\\\'\'}"
    printf "export %s='%s'\n" "$1" "$v"
}

env_mysql() {
    local state="$RUN_DIR/mariadb" alt=""
    [[ -f "$state/alt_host" ]] && alt="$(<"$state/alt_host")"
    local hostport="127.0.0.1:$MYSQL_PORT"
    emit DBPOOL_TEST_MYSQL_URL "mysql://$MYSQL_USER:$(urlencode "$MYSQL_PASSWORD")@$hostport/$MYSQL_DATABASE"
    emit DBPOOL_TEST_MYSQL_ROOT_URL "mysql://root:$(urlencode "$MYSQL_ROOT_PASSWORD")@$hostport/$MYSQL_DATABASE"
    emit DBPOOL_TEST_MYSQL_LIMITED_URL "mysql://$MYSQL_LIMITED_USER:$(urlencode "$MYSQL_LIMITED_PASSWORD")@$hostport/$MYSQL_DATABASE"
    emit DBPOOL_TEST_MYSQL_PASSWORD "$MYSQL_PASSWORD"
    emit DBPOOL_TEST_MYSQL_PORT "$MYSQL_PORT"
    emit DBPOOL_TEST_MYSQL_SOCKET "$state/mysqld.sock"
    emit DBPOOL_TEST_MYSQL_CA "$state/tls/ca.pem"
    emit DBPOOL_TEST_MYSQL_OTHER_CA "$state/tls/other-ca.pem"
    emit DBPOOL_TEST_MYSQL_ALT_HOST "$alt"
}

env_replica() {
    local hostport="127.0.0.1:$MYSQL_REPLICA_PORT"
    emit DBPOOL_TEST_MYSQL_REPLICA_URL "mysql://$MYSQL_USER:$(urlencode "$MYSQL_PASSWORD")@$hostport/$MYSQL_DATABASE"
    emit DBPOOL_TEST_MYSQL_REPLICA_ROOT_URL "mysql://root:$(urlencode "$MYSQL_ROOT_PASSWORD")@$hostport/$MYSQL_DATABASE"
    emit DBPOOL_TEST_MYSQL_REPLICA_PORT "$MYSQL_REPLICA_PORT"
    emit DBPOOL_TEST_MYSQL_REPLICA_SOCKET "$RUN_DIR/mariadb-replica/mysqld.sock"
}

# A second replica (benchmarks; not in `all`).
env_replica2() {
    emit DBPOOL_TEST_MYSQL_REPLICA2_PORT "$((MYSQL_REPLICA_PORT + 1))"
}

env_redis() {
    local hostport="127.0.0.1:$REDIS_PORT"
    emit DBPOOL_TEST_REDIS_URL "redis://:$(urlencode "$REDIS_PASSWORD")@$hostport/0"
    emit DBPOOL_TEST_REDIS_ACL_URL "redis://$REDIS_ACL_USER:$(urlencode "$REDIS_ACL_PASSWORD")@$hostport/0"
    emit DBPOOL_TEST_REDIS_PASSWORD "$REDIS_PASSWORD"
    emit DBPOOL_TEST_REDIS_PORT "$REDIS_PORT"
}

env_cluster() {
    local ports=() i
    for ((i = 0; i < 6; i++)); do
        ports+=("$((CLUSTER_BASE_PORT + i))")
    done
    emit DBPOOL_TEST_CLUSTER_URL "redis-cluster://:$(urlencode "$CLUSTER_PASSWORD")@127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}/"
    emit DBPOOL_TEST_CLUSTER_PASSWORD "$CLUSTER_PASSWORD"
    emit DBPOOL_TEST_CLUSTER_PORTS "${ports[*]}"
}

env_pg() {
    local state="$RUN_DIR/postgres" hostport="127.0.0.1:$PG_PORT"
    emit DBPOOL_TEST_PG_URL "postgres://$PG_USER:$(urlencode "$PG_PASSWORD")@$hostport/$PG_DATABASE"
    emit DBPOOL_TEST_PG_SUPER_URL "postgres://postgres:$(urlencode "$PG_SUPER_PASSWORD")@$hostport/$PG_DATABASE"
    emit DBPOOL_TEST_PG_LIMITED_URL "postgres://$PG_LIMITED_USER:$(urlencode "$PG_LIMITED_PASSWORD")@$hostport/$PG_DATABASE"
    emit DBPOOL_TEST_PG_PASSWORD "$PG_PASSWORD"
    emit DBPOOL_TEST_PG_PORT "$PG_PORT"
    emit DBPOOL_TEST_PG_SOCKET_DIR "$state"
    emit DBPOOL_TEST_PG_CA "$state/tls/ca.pem"
    emit DBPOOL_TEST_PG_OTHER_CA "$state/tls/other-ca.pem"
}

[[ $# -ge 1 && $# -le 2 ]] || usage
cmd="$1"
what="${2:-all}"
parts=()
case "$what" in
    all) parts=(mysql replica redis cluster pg) ;;
    none) ;;
    "" | *,,* | ,* | *,) usage ;;
    *)
        # started in this order (stopped in reverse), whatever the list's
        IFS=, read -r -a asked <<<"$what"
        for p in "${asked[@]}"; do
            [[ "$p" == mysql || "$p" == replica || "$p" == replica2 || "$p" == redis || "$p" == cluster || "$p" == pg ]] || usage
        done
        # the replica needs its primary (started with it; stopped only when asked)
        [[ "$cmd" == start && ",$what," == *",replica"* ]] && what="mysql,$what"
        for p in mysql replica replica2 redis cluster pg; do
            [[ ",$what," == *",$p,"* ]] && parts+=("$p")
        done
        ;;
esac

script_for() {
    case "$1" in
        mysql) echo "$SCRIPTS/mariadb.sh" ;;
        replica) echo "$SCRIPTS/mariadb-replica.sh" ;;
        replica2) echo "$SCRIPTS/mariadb-replica.sh" ;;
        redis) echo "$SCRIPTS/redis.sh" ;;
        cluster) echo "$SCRIPTS/redis-cluster.sh" ;;
        pg) echo "$SCRIPTS/postgres.sh" ;;
    esac
}

# run_part PART ACTION: the part's script (replica2: the replica script, second instance).
run_part() {
    if [[ "$1" == replica2 ]]; then
        DBPOOL_REPLICA_INDEX=2 "$(script_for "$1")" "$2"
    else
        "$(script_for "$1")" "$2"
    fi
}

case "$cmd" in
    start)
        for p in "${parts[@]}"; do
            run_part "$p" start
        done
        ;;
    stop)
        # Stop everything asked for, even if one of them fails.
        rc=0
        for ((i = ${#parts[@]} - 1; i >= 0; i--)); do
            run_part "${parts[i]}" stop || rc=1
        done
        exit "$rc"
        ;;
    status)
        rc=0
        for p in "${parts[@]}"; do
            run_part "$p" status || rc=3
        done
        exit "$rc"
        ;;
    env)
        for p in "${parts[@]}"; do
            "env_$p"
        done
        emit DBPOOL_RUN_DIR "$RUN_DIR"
        emit DBPOOL_REPO "$REPO"
        ;;
    *) usage ;;
esac
