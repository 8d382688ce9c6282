#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the test servers need,
# if any is missing. Idempotent; does nothing (no apt-get update) when all are
# installed. Runs apt-get through sudo when not root.
#
# The system MariaDB and Redis services that the packages bring are not
# started by this script, and are not needed: the tests run their own servers
# on other ports (scripts/servers.sh).
#
#   scripts/deps.sh            what the build, the tests and the demo need
#   scripts/deps.sh --bench    and what only `make bench` needs: libzdb (a C
#                              pool peer) and Node.js with npm (the mysql2 and
#                              ioredis peers; their npm packages are installed
#                              into bench/node/ by bench/node/run.sh)
set -euo pipefail

PACKAGES=(
    build-essential
    pkg-config
    libmariadb-dev
    mariadb-server
    mariadb-client
    liblua5.4-dev
    lua5.4
    libhiredis-dev
    redis-server
    redis-tools
    postgresql-15
    libpq-dev
    lua-sql-mysql
    lua-redis
    lua-socket
    lua-readline
    valgrind
    clang
    libclang-rt-14-dev
    openssl
    luarocks
    procps
    iproute2
    sysbench       # bench/bench_ps.sh: the prepared-statement peer
    gnuplot-nox    # bench/chart.sh: the benchmark chart
)
if [[ "${1:-}" == "--bench" ]]; then
    PACKAGES+=(libzdb-dev)
    # Node.js may come from elsewhere (NodeSource): only a missing node or npm asks for Debian's
    command -v node >/dev/null || PACKAGES+=(nodejs)
    command -v npm >/dev/null || PACKAGES+=(npm)
fi

# Ports the test servers use (same defaults and overrides as their scripts).
MYSQL_PORT="${DBPOOL_MYSQL_PORT:-23306}"
REDIS_PORT="${DBPOOL_REDIS_PORT:-26379}"
CLUSTER_BASE_PORT="${DBPOOL_CLUSTER_BASE_PORT:-27001}"
PG_PORT="${DBPOOL_PG_PORT:-25432}"

log() { printf 'deps: %s\n' "$*" >&2; }

die() {
    log "$*"
    exit 1
}

installed() {
    local status
    status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]]
}

command -v dpkg-query >/dev/null || die "dpkg-query not found: this script is for Debian"

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    log "all ${#PACKAGES[@]} packages are installed"
    exit 0
fi

as_root=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install ${missing[*]}"
    as_root=(sudo)
fi

log "missing: ${missing[*]}"
"${as_root[@]}" apt-get update || die "apt-get update failed"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}" ||
    die "apt-get install failed"

failed=()
for pkg in "${missing[@]}"; do
    if installed "$pkg"; then
        echo "installed $pkg"
    else
        failed+=("$pkg")
    fi
done
((${#failed[@]} == 0)) || die "still not installed: ${failed[*]}"

# The mariadb-server, redis-server and postgresql-15 packages may have started
# their system services (on 3306, 6379 and 5432). That is harmless, but nothing may hold the
# ports of the test servers.
if command -v ss >/dev/null; then
    ports=("$MYSQL_PORT" "$REDIS_PORT" "$PG_PORT")
    for ((i = 0; i < 6; i++)); do
        ports+=("$((CLUSTER_BASE_PORT + i))" "$((CLUSTER_BASE_PORT + i + 100))")  # (bus: see redis-cluster.sh)
    done
    held=""
    for port in "${ports[@]}"; do
        line="$(ss -Hltnp "sport = :$port" 2>/dev/null || true)"
        [[ -n "$line" ]] && held+="$line"$'\n'
    done
    if [[ -n "$held" ]]; then
        log "warning: ports of the test servers are in use (fine if these are the test servers themselves):"
        printf '%s' "$held" >&2
    fi
fi
