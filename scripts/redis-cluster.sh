#!/usr/bin/env bash
# Throwaway six-node Redis Cluster (three primaries, three replicas).
#
#   scripts/redis-cluster.sh start|stop|status|wait-ok
#   scripts/redis-cluster.sh kill-node PORT|restart-node PORT
#
# Nodes listen on 127.0.0.1, ports ${DBPOOL_CLUSTER_BASE_PORT:-27001} and the
# five following ones (cluster bus: port + 100, not Redis' default + 10000,
# which lands in Linux's ephemeral range 32768-60999: a client socket that
# happens to hold that port makes a node fail to start); node state lives in
# ${DBPOOL_RUN_DIR:-<repo>/.run}/cluster/<port>. Every node requires the same
# password, which replicas also use to talk to their primaries.
#
#   start         start the nodes that are not running, create the cluster if
#                 it was never created, then wait-ok
#   wait-ok       wait (60 s) until every running node says cluster_state:ok,
#                 all 16384 slots are assigned and served by live primaries,
#                 every running replica is in sync, and all running nodes
#                 agree on who is primary or replica of whom and on slots
#   kill-node P   SIGKILL one node (it keeps its nodes.conf)
#   restart-node P  start it again; it rejoins from its nodes.conf
#   stop          stop every node (idempotent)
set -euo pipefail

NAME=redis-cluster
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STATE="$RUN_DIR/cluster"
BASE_PORT="${DBPOOL_CLUSTER_BASE_PORT:-27001}"
PORTS=()
for ((i = 0; i < 6; i++)); do
    PORTS+=("$((BASE_PORT + i))")
done

# Password of every node (scripts/servers.sh prints the same value).
PASSWORD='cl@ster: pw'

NODE_START_TIMEOUT=30
OK_TIMEOUT=60
STOP_TIMEOUT=30

show_logs() {
    local port
    for port in "${PORTS[@]}"; do
        show_log "$STATE/$port/redis.log" 15
    done
}

check_port() {
    local p
    for p in "${PORTS[@]}"; do
        [[ "$1" == "$p" ]] && return 0
    done
    die "not a cluster port: $1 (ports: ${PORTS[*]})"
}

running_pid() { pid_from_file "$STATE/$1/redis.pid" '^redis-server'; }

# cli PORT ARGS...: redis-cli against one node, bounded in time (redis-cli
# waits for ever for a reply from something that accepted the connection).
cli() {
    local port="$1"
    shift
    timeout 10 redis-cli -h 127.0.0.1 -p "$port" -a "$PASSWORD" --no-auth-warning "$@"
}

write_conf() {
    local port="$1" dir="$STATE/$1"
    {
        echo "# Written by scripts/redis-cluster.sh; rewritten on every start."
        redis_conf_common "$port" "$dir" "$PASSWORD"
        echo "cluster-enabled yes"
        echo "cluster-config-file nodes.conf"
        echo "cluster-node-timeout 2000"
        echo "cluster-announce-ip 127.0.0.1"
        echo "cluster-port $((port + 100))"
        echo "masterauth $(conf_quote "$PASSWORD")"
        # Replicas sync at once (the default waits 5 s for more replicas), and
        # a replica takes over from a failed primary however long its link
        # was down: a primary killed by a test is always replaced.
        echo "repl-diskless-sync-delay 0"
        echo "cluster-replica-validity-factor 0"
    } >"$dir/redis.conf.tmp"
    mv "$dir/redis.conf.tmp" "$dir/redis.conf"
}

# Launches one node (redis-server daemonizes); node_wait waits for its PONG.
node_launch() {
    local port="$1" dir="$STATE/$1" pid
    if pid="$(running_pid "$port")"; then
        log "node $port already running (pid $pid)"
        return 0
    fi
    mkdir -p "$dir"
    rm -f "$dir/redis.pid"
    write_conf "$port"
    : >>"$dir/redis.log"
    wc -c <"$dir/redis.log" >"$dir/log-offset"
    if ! redis-server "$dir/redis.conf" </dev/null >"$dir/redis-server.out" 2>&1; then
        cat "$dir/redis-server.out" >&2
        tail -n 20 "$dir/redis.log" >&2 || true
        die "node $port: redis-server failed to start"
    fi
}

node_wait() {
    local port="$1" offset
    offset="$(cat "$STATE/$port/log-offset" 2>/dev/null || echo 0)"
    wait_redis_up "node $port" "$port" "$PASSWORD" "$STATE/$port/redis.log" "$offset" "$NODE_START_TIMEOUT" \
        running_pid "$port"
}

# info_field PORT FIELD: one field of CLUSTER INFO.
info_field() {
    cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

# The cluster's shape as one node sees it: "<id> <role> <primary id> <slot
# ranges>" for every node not flagged as failing, sorted.
cluster_view() {
    cli "$1" cluster nodes 2>/dev/null | tr -d '\r' |
        awk 'NF >= 8 && $3 !~ /fail/ {
                role = ($3 ~ /master/) ? "master" : ($3 ~ /slave/) ? "replica" : "?"
                line = $1 " " role " " $4
                for (i = 9; i <= NF; i++) if ($i !~ /^\[/) line = line " " $i
                print line
            }' | sort
}

# Why the cluster is not usable yet (empty when it is): checked on every
# running node.
cluster_problem() {
    local port state assigned ok view first_view="" first_port=""
    # Ports of the running nodes, as a regex alternative.
    local live_re=""
    for port in "${PORTS[@]}"; do
        running_pid "$port" >/dev/null || continue
        live_re+="${live_re:+|}$port"
    done
    if [[ -z "$live_re" ]]; then
        echo "no node is running"
        return 0
    fi
    for port in "${PORTS[@]}"; do
        running_pid "$port" >/dev/null || continue
        state="$(info_field "$port" cluster_state)"
        assigned="$(info_field "$port" cluster_slots_assigned)"
        ok="$(info_field "$port" cluster_slots_ok)"
        if [[ "$state" != ok ]]; then
            echo "node $port: cluster_state:${state:-?}"
            return 0
        fi
        if [[ "$assigned" != 16384 ]]; then
            echo "node $port: cluster_slots_assigned:${assigned:-?}"
            return 0
        fi
        if [[ "$ok" != 16384 ]]; then
            echo "node $port: cluster_slots_ok:${ok:-?} (slots of a failing primary)"
            return 0
        fi
        # Every running node must look alive and connected to this one.
        local bad
        bad="$(cli "$port" cluster nodes 2>/dev/null | tr -d '\r' |
            awk -v re="^127[.]0[.]0[.]1:($live_re)@" '$2 ~ re &&
                ($3 ~ /fail|handshake|noaddr/ || ($3 !~ /myself/ && $8 != "connected")) {
                    print $2 " " $3 " " $8 }')"
        if [[ -n "$bad" ]]; then
            echo "node $port sees: $bad"
            return 0
        fi
        # A replica must have synced with its primary, or it could not
        # replace it.
        local repl
        repl="$(cli "$port" info replication 2>/dev/null | tr -d '\r')"
        if grep -qx 'role:slave' <<<"$repl" && ! grep -qx 'master_link_status:up' <<<"$repl"; then
            echo "node $port: replica not in sync with its primary"
            return 0
        fi
        view="$(cluster_view "$port")"
        if [[ -z "$first_port" ]]; then
            first_port="$port"
            first_view="$view"
        elif [[ "$view" != "$first_view" ]]; then
            echo "nodes $first_port and $port disagree about the cluster's shape"
            return 0
        fi
    done
}

do_wait_ok() {
    local deadline=$((SECONDS + OK_TIMEOUT)) problem
    while :; do
        problem="$(cluster_problem)"
        [[ -z "$problem" ]] && return 0
        if ((SECONDS >= deadline)); then
            log "cluster not ok after ${OK_TIMEOUT}s: $problem"
            show_logs
            exit 1
        fi
        sleep 0.25
    done
}

# True when every node is a fresh, lonely node: the cluster was never created.
cluster_is_fresh() {
    local port known assigned
    for port in "${PORTS[@]}"; do
        known="$(info_field "$port" cluster_known_nodes)"
        assigned="$(info_field "$port" cluster_slots_assigned)"
        [[ "$known" == 1 && "$assigned" == 0 ]] || return 1
    done
}

# True when no node is fresh.
cluster_is_formed() {
    local port known
    for port in "${PORTS[@]}"; do
        known="$(info_field "$port" cluster_known_nodes)"
        [[ -n "$known" && "$known" -gt 1 ]] || return 1
    done
}

do_start() {
    command -v redis-server >/dev/null || die "redis-server not found (run scripts/deps.sh)"
    command -v redis-cli >/dev/null || die "redis-cli not found (run scripts/deps.sh)"
    mkdir -p "$STATE"
    local port
    log "starting nodes ${PORTS[*]}"
    for port in "${PORTS[@]}"; do
        node_launch "$port"
    done
    for port in "${PORTS[@]}"; do
        node_wait "$port"
    done
    if cluster_is_fresh; then
        local addrs=()
        for port in "${PORTS[@]}"; do
            addrs+=("127.0.0.1:$port")
        done
        log "creating the cluster"
        if ! timeout 120 redis-cli -a "$PASSWORD" --no-auth-warning --cluster create \
            "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
            >"$STATE/create.log" 2>&1; then
            cat "$STATE/create.log" >&2
            show_logs
            die "redis-cli --cluster create failed"
        fi
    elif ! cluster_is_formed; then
        die "some nodes belong to a cluster and some do not; run '$0 stop' and remove $STATE"
    fi
    do_wait_ok
    log "ready (ports ${PORTS[*]})"
}

do_stop() {
    local port pid pids=()
    for port in "${PORTS[@]}"; do
        if pid="$(running_pid "$port")"; then
            pids+=("$pid")
        fi
    done
    if ((${#pids[@]} == 0)); then
        log "not running"
        return 0
    fi
    log "stopping ${#pids[@]} node(s)"
    stop_pids "${pids[@]}"
    for port in "${PORTS[@]}"; do
        rm -f "$STATE/$port/redis.pid"
    done
}

do_kill_node() {
    local port="$1" pid
    check_port "$port"
    if ! pid="$(running_pid "$port")"; then
        # no pid file to trust: the process that serves the port, if any
        pid="$(pgrep -f "^redis-server 127\.0\.0\.1:$port( |$)" | head -n 1 || true)"
        if [[ -z "$pid" ]]; then
            log "node $port not running"
            return 0
        fi
        log "node $port has no usable pid file; found pid $pid by its title"
    fi
    log "killing node $port (SIGKILL pid $pid)"
    kill_pid "$pid"
}

do_restart_node() {
    local port="$1"
    check_port "$port"
    [[ -f "$STATE/$port/nodes.conf" ]] || die "node $port has no nodes.conf; use '$0 start'"
    log "starting node $port"
    node_launch "$port"
    node_wait "$port"
}

do_status() {
    local port pid up=0 state
    for port in "${PORTS[@]}"; do
        if pid="$(running_pid "$port")"; then
            up=$((up + 1))
            state="$(info_field "$port" cluster_state)"
            echo "redis-cluster: node $port running (pid $pid, cluster_state:${state:-?})"
        else
            echo "redis-cluster: node $port not running"
        fi
    done
    ((up == ${#PORTS[@]})) || return 3
}

case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    wait-ok) do_wait_ok ;;
    kill-node)
        [[ $# -eq 2 ]] || die "usage: $0 kill-node PORT"
        do_kill_node "$2"
        ;;
    restart-node)
        [[ $# -eq 2 ]] || die "usage: $0 restart-node PORT"
        do_restart_node "$2"
        ;;
    *)
        echo "usage: $0 start|stop|status|wait-ok|kill-node PORT|restart-node PORT" >&2
        exit 2
        ;;
esac
