# tests/cli/lib.sh: TAP helpers for the dbpool command's bash tests.
# Sourced by tests/cli/*.t; run them through scripts/with-servers.sh, which
# exports the DBPOOL_TEST_* variables (a missing one bails out: no silent skip).
set -uo pipefail

T_N=0
T_FAILED=0
T_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DBPOOL="$T_REPO/scripts/dbpool"
T_TMP="$(mktemp -d "${TMPDIR:-/tmp}/dbpool-cli-test.XXXXXX")"
trap 'rm -rf "$T_TMP"' EXIT

ok() { # ok COND_STATUS DESCRIPTION  (use: some_command; ok $? "desc")
    local status="$1"; shift
    T_N=$((T_N + 1))
    if [[ "$status" == 0 ]]; then
        echo "ok $T_N - $*"
    else
        T_FAILED=$((T_FAILED + 1))
        echo "not ok $T_N - $*"
    fi
}

diag() { printf '%s\n' "$@" | sed 's/^/# /'; }

is() { # is GOT WANT DESCRIPTION
    local got="$1" want="$2"; shift 2
    [[ "$got" == "$want" ]]
    ok $? "$*"
    [[ "$got" == "$want" ]] || diag "got:  '$got'" "want: '$want'"
}

like() { # like TEXT FIXED_STRING DESCRIPTION
    local text="$1" pat="$2"; shift 2
    [[ "$text" == *"$pat"* ]]
    local s=$?
    ok $s "$*"
    [[ $s == 0 ]] || diag "no '$pat' in:" "$text"
}

unlike() { # unlike TEXT FIXED_STRING DESCRIPTION
    local text="$1" pat="$2"; shift 2
    [[ "$text" != *"$pat"* ]]
    local s=$?
    ok $s "$*"
    [[ $s == 0 ]] || diag "'$pat' should not be in:" "$text"
}

done_testing() {
    echo "1..$T_N"
    [[ $T_FAILED == 0 ]]
    exit $?
}

need_env() {
    local v
    for v in "$@"; do
        if [[ -z "${!v:-}" ]]; then
            echo "Bail out! $v is not set (run through scripts/with-servers.sh)"
            exit 255
        fi
    done
}

# The independent clients that check what the command did.
sql() { # sql "STATEMENTS" -> tab-separated rows, no header
    MYSQL_PWD="$DBPOOL_TEST_MYSQL_PASSWORD" mysql --protocol=tcp -h127.0.0.1 -P"$DBPOOL_TEST_MYSQL_PORT" \
        -udbpool dbpool_test -BN -e "$1"
}
rcli() { # rcli ARGS... -> redis-cli's raw reply
    REDISCLI_AUTH="$DBPOOL_TEST_REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$DBPOOL_TEST_REDIS_PORT" --no-auth-warning "$@"
}

# Waits (at most $2 seconds, default 10) until file $1 contains text $3.
wait_for() {
    local file="$1" secs="${2:-10}" text="$3" i
    for ((i = 0; i < secs * 20; i++)); do
        grep -qF -- "$text" "$file" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# Runs a command bounded in time (SIGTERM after $1 s, SIGKILL 5 s later);
# its stdout, stderr and status in $T_OUT, $T_ERR, $T_RC.
run_bounded() {
    local secs="$1"; shift
    timeout -k 5 "$secs" "$@" >"$T_TMP/out" 2>"$T_TMP/err"
    T_RC=$?
    T_OUT="$(cat "$T_TMP/out")"
    T_ERR="$(cat "$T_TMP/err")"
}

# Seconds since the epoch, with fractions.
now() { date +%s.%N; }
elapsed_ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
