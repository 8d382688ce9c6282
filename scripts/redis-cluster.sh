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

REPO="$(cd "$(dirname "$0")/.." && pwd)"
RUN_DIR="${DBPOOL_RUN_DIR:-$REPO/.run}"
[[ "$RUN_DIR" == /* ]] || RUN_DIR="$PWD/$RUN_DIR"
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

log() { printf 'redis-cluster: %s\n' "$*" >&2; }

die() {
    log "$*"
    exit 1
}

show_logs() {
    local port
    for port in "${PORTS[@]}"; do
        if [[ -f "$STATE/$port/redis.log" ]]; then
            log "last lines of $STATE/$port/redis.log:"
            tail -n 15 "$STATE/$port/redis.log" >&2 || true
        fi
    done
}

# One redis.conf argument: double-quoted, with backslash and double quote
# escaped (redis.conf is split like a command line: an unquoted space would
# end the value).
conf_quote() {
    local s="$1"
    s="${s//\\/\\\\}"
    s="${s//\"/\\\"}"
    printf '"%s"' "$s"
}

check_port() {
    local p
    for p in "${PORTS[@]}"; do
        [[ "$1" == "$p" ]] && return 0
    done
    die "not a cluster port: $1 (ports: ${PORTS[*]})"
}

running_pid() {
    local pidfile="$STATE/$1/redis.pid" pid comm
    [[ -f "$pidfile" ]] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [[ -n "$pid" ]] || return 1
    alive "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    [[ "$comm" == redis-server* ]] || return 1
    printf '%s\n' "$pid"
}

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
        echo "port $port"
        echo "bind 127.0.0.1"
        echo "dir $(conf_quote "$dir")"
        echo "daemonize yes"
        echo "pidfile $(conf_quote "$dir/redis.pid")"
        echo "logfile $(conf_quote "$dir/redis.log")"
        echo "cluster-enabled yes"
        echo "cluster-config-file nodes.conf"
        echo "cluster-node-timeout 2000"
        echo "cluster-announce-ip 127.0.0.1"
        echo "cluster-port $((port + 100))"
        echo "requirepass $(conf_quote "$PASSWORD")"
        echo "masterauth $(conf_quote "$PASSWORD")"
        echo "save \"\""
        echo "appendonly no"
        # Replicas sync at once (the default waits 5 s for more replicas), and
        # a replica takes over from a failed primary however long its link
        # was down: a primary killed by a test is always replaced.
        echo "repl-diskless-sync-delay 0"
        echo "cluster-replica-validity-factor 0"
        # DEBUG SLEEP and friends, for timeout tests (loopback clients only).
        echo "enable-debug-command local"
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
    local port="$1" dir="$STATE/$1" reply offset
    local deadline=$((SECONDS + NODE_START_TIMEOUT))
    offset="$(cat "$dir/log-offset" 2>/dev/null || echo 0)"
    while :; do
        if ! running_pid "$port" >/dev/null &&
            tail -c "+$((offset + 1))" "$dir/redis.log" | grep -qiE 'aborting|fatal|failed'; then
            log "node $port exited during startup"
            tail -c "+$((offset + 1))" "$dir/redis.log" | tail -n 20 >&2 || true
            exit 1
        fi
        reply="$(cli "$port" ping 2>/dev/null || true)"
        [[ "$reply" == PONG ]] && return 0
        if ((SECONDS >= deadline)); then
            log "node $port: no PONG after ${NODE_START_TIMEOUT}s (last reply: ${reply:-none})"
            tail -n 20 "$dir/redis.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
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

do_stop() {
    local port pid pids=() stopped=0
    for port in "${PORTS[@]}"; do
        if pid="$(running_pid "$port")"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            stopped=$((stopped + 1))
        fi
    done
    if ((stopped == 0)); then
        log "not running"
        return 0
    fi
    log "stopping $stopped node(s)"
    for pid in "${pids[@]}"; do
        if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
            log "pid $pid still running after ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$pid" 10 || die "pid $pid does not die"
        fi
    done
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
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pid $pid does not die"
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
