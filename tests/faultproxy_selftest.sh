#!/usr/bin/env bash
# Self-test for tests/faultproxy.c against a real, throw-away redis-server.
#
#   tests/faultproxy_selftest.sh
#   CC=clang CFLAGS='-O1 -g -fsanitize=address,undefined' tests/faultproxy_selftest.sh
#
# CC defaults to cc, CFLAGS to -O2; -std=c99 -Wall -Wextra -Wpedantic are
# always added because warning-freedom is one of the things checked.
# Output is TAP (plan at the end); exit status is non-zero if anything failed.
# Needs bash (for /dev/tcp), redis-server, redis-cli and coreutils timeout.

set -u
# Writing to a connection the proxy has reset must not kill the script.
trap '' PIPE

HERE=$(cd "$(dirname "$0")" && pwd) || exit 1
SRC=$HERE/faultproxy.c
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/faultproxy-selftest.XXXXXX") || exit 1
BIN=$TMP/faultproxy
PROXY_PID=
PROXY2_PID=
T=0
FAILED=0

# stop_pid PID: TERM, wait up to 5 s, then KILL.  Works for our children
# and for the daemonized redis-server, which is not our child.
stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

cleanup() {
    stop_pid "$PROXY_PID"
    stop_pid "$PROXY2_PID"
    if [ -s "$TMP/redis.pid" ]; then
        stop_pid "$(cat "$TMP/redis.pid")"
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tap() { # tap STATUS DESCRIPTION [DIAGNOSTIC]
    T=$((T + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $T - $2"
    else
        echo "not ok $T - $2"
        FAILED=$((FAILED + 1))
        if [ -n "${3:-}" ]; then
            printf '%s\n' "$3" | sed 's/^/#   /'
        fi
    fi
}

bail() {
    echo "Bail out! $1"
    exit 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ctl COMMAND: one control round trip on a fresh connection; prints the reply.
ctl() {
    local fd reply= rc
    # Braces scope the 2>/dev/null; a bare `exec ... 2>` would be permanent.
    if ! { exec {fd}<>"/dev/tcp/127.0.0.1/$CPORT"; } 2>/dev/null; then
        echo "ERR (cannot connect to control port)"
        return 1
    fi
    printf '%s\n' "$1" >&"$fd"
    IFS= read -r -t 5 reply <&"$fd"
    rc=$?
    exec {fd}>&-
    printf '%s\n' "${reply%$'\r'}"
    return $rc
}

# stat NAME: one counter from "stats".
stat() {
    local reply
    reply=$(ctl stats)
    if [[ $reply =~ (^|\ )$1=([0-9]+) ]]; then
        echo "${BASH_REMATCH[2]}"
    else
        echo "-1"
    fi
}

# wait_conns N: closed clients take a moment to be noticed; bounded wait.
wait_conns() {
    local i
    for ((i = 0; i < 40; i++)); do
        [ "$(stat conns)" = "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

rcli() { timeout 10 redis-cli -p "$LPORT" "$@"; }
dcli() { timeout 10 redis-cli -p "$RPORT" "$@"; }

# raw_req FD DATA TIMEOUT: write DATA (printf %b escapes) and read one line.
# Sets LINE, RAWRC (read status: 0 ok, 1 EOF/error, >128 timeout), RAWERR.
raw_req() {
    LINE=
    printf '%b' "$2" >&"$1" 2>/dev/null
    { IFS= read -r -t "$3" LINE <&"$1"; } 2>"$TMP/read.err"
    RAWRC=$?
    LINE=${LINE%$'\r'}
    RAWERR=$(cat "$TMP/read.err")
}

# raw_drain FD DATA: write DATA, count bytes until the connection ends
# (bounded to 5 s).  Sets NBYTES and DRAINERR (cat's complaint, if any).
raw_drain() {
    printf '%b' "$2" >&"$1" 2>/dev/null
    NBYTES=$(timeout 5 cat <&"$1" 2>"$TMP/cat.err" | wc -c)
    DRAINERR=$(cat "$TMP/cat.err")
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_redis() {
    local try p i
    for ((try = 0; try < 10; try++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$p" && continue
        rm -f "$TMP/redis.pid"
        redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize yes --dir "$TMP" --pidfile "$TMP/redis.pid" \
            --logfile "$TMP/redis.log" >/dev/null 2>&1 || continue
        for ((i = 0; i < 50; i++)); do
            if [ -s "$TMP/redis.pid" ] &&
                [ "$(timeout 2 redis-cli -p "$p" ping 2>/dev/null)" = PONG ]; then
                RPORT=$p
                return 0
            fi
            sleep 0.1
        done
        # Lost a race for the port (or some other failure): clean up, retry.
        [ -s "$TMP/redis.pid" ] && stop_pid "$(cat "$TMP/redis.pid")"
    done
    return 1
}

# start_proxy NAME: sets SPAWNED_PID, SPAWNED_LPORT, SPAWNED_CPORT.
start_proxy() {
    local i line=
    SPAWNED_LPORT=
    SPAWNED_CPORT=
    : >"$TMP/$1.out" # so the polling below never reads a missing file
    "$BIN" --listen 127.0.0.1:0 --target "127.0.0.1:$RPORT" --control 127.0.0.1:0 \
        --pidfile "$TMP/$1.pid" >"$TMP/$1.out" 2>>"$TMP/proxy.err" &
    SPAWNED_PID=$!
    for ((i = 0; i < 100; i++)); do
        IFS= read -r line <"$TMP/$1.out"
        if [[ $line =~ ^LISTEN\ ([0-9]+)\ CONTROL\ ([0-9]+)$ ]]; then
            SPAWNED_LPORT=${BASH_REMATCH[1]}
            SPAWNED_CPORT=${BASH_REMATCH[2]}
            return 0
        fi
        kill -0 "$SPAWNED_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# wait_exit PID: bounded wait for our child to exit; sets EXIT_STATUS.
wait_exit() {
    local i
    EXIT_STATUS=
    for ((i = 0; i < 30; i++)); do
        if ! kill -0 "$1" 2>/dev/null; then
            wait "$1"
            EXIT_STATUS=$?
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- build

# shellcheck disable=SC2086 # CFLAGS is a list of words on purpose
"$CC" -std=c99 -Wall -Wextra -Wpedantic $CFLAGS -o "$BIN" "$SRC" >"$TMP/build.log" 2>&1
rc=$?
tap $((rc != 0 || $(wc -c <"$TMP/build.log") != 0)) \
    "builds warning-free with $CC $CFLAGS" "$(cat "$TMP/build.log")"
[ -x "$BIN" ] || bail "no proxy binary"

start_redis || bail "cannot start redis-server"
BIG=$TMP/big
head -c 750000 /dev/urandom | base64 -w0 >"$BIG" # exactly 1,000,000 bytes
{ cat "$BIG"; echo; } >"$BIG.expected"              # redis-cli adds a newline

start_proxy proxy
PROXY_PID=$SPAWNED_PID
LPORT=$SPAWNED_LPORT
CPORT=$SPAWNED_CPORT
[ -n "$LPORT" ] && [ -n "$CPORT" ]
tap $? "prints 'LISTEN <port> CONTROL <port>'" \
    "$(cat "$TMP/proxy.out" "$TMP/proxy.err" 2>/dev/null)"
[ -n "$LPORT" ] && [ -n "$CPORT" ] || bail "proxy did not start"
[ "$(wc -l <"$TMP/proxy.out")" -eq 1 ]
tap $? "prints exactly one line on stdout"
[ "$(cat "$TMP/proxy.pid" 2>/dev/null)" = "$PROXY_PID" ]
tap $? "pidfile holds the proxy's pid"

# ---------------------------------------------------------------- pass

out=$(rcli ping 2>&1)
[ "$out" = PONG ]
tap $? "pass: PING -> PONG" "$out"
out=$(rcli set fp:key hello 2>&1)
[ "$out" = OK ]
tap $? "pass: SET" "$out"
out=$(rcli get fp:key 2>&1)
[ "$out" = hello ]
tap $? "pass: GET returns the value" "$out"
out=$(rcli -x set fp:big <"$BIG" 2>&1)
[ "$out" = OK ]
tap $? "pass: SET of a 1 MB value through the proxy" "$out"
rcli get fp:big >"$TMP/got" 2>&1
cmp -s "$TMP/got" "$BIG.expected"
tap $? "pass: GET of the 1 MB value arrives intact" "$(head -c 200 "$TMP/got")"

# ---------------------------------------------------------------- latency

out=$(ctl "latency 300")
[ "$out" = "OK latency 300" ]
tap $? "latency 300 accepted" "$out"
t0=$(now_ms)
out=$(rcli ping 2>&1)
dt=$(($(now_ms) - t0))
[ "$out" = PONG ] && [ "$dt" -ge 300 ]
tap $? "latency 300: PING takes >= 300 ms (took $dt ms)" "$out"
t0=$(now_ms)
rcli get fp:big >"$TMP/got" 2>&1
dt=$(($(now_ms) - t0))
cmp -s "$TMP/got" "$BIG.expected" && [ "$dt" -ge 300 ]
tap $? "latency 300: 1 MB GET arrives intact and in order (took $dt ms)"
out=$(ctl "latency 0")
[ "$out" = "OK latency 0" ]
tap $? "latency 0 accepted" "$out"
t0=$(now_ms)
out=$(rcli ping 2>&1)
dt=$(($(now_ms) - t0))
[ "$out" = PONG ] && [ "$dt" -lt 300 ]
tap $? "latency 0: PING is fast again (took $dt ms)" "$out"

# ---------------------------------------------------------------- reset-after

resets0=$(stat resets)
out=$(ctl "reset-after 100000")
[ "$out" = "OK reset-after 100000 down" ]
tap $? "reset-after 100000 (default direction down) accepted" "$out"
rcli get fp:big >"$TMP/got" 2>"$TMP/cli.err"
rc=$?
size=$(wc -c <"$TMP/got")
[ "$rc" -ne 0 ] && [ "$size" -lt 1000000 ]
tap $? "reset-after: redis-cli GET of 1 MB fails (rc=$rc, $size bytes)" "$(cat "$TMP/cli.err")"
resets1=$(stat resets)
[ "$resets1" -gt "$resets0" ]
tap $? "reset-after: stats counts the reset ($resets0 -> $resets1)"
exec {R}<>"/dev/tcp/127.0.0.1/$LPORT"
raw_drain "$R" 'GET fp:big\r\n'
exec {R}>&-
[ "$NBYTES" -eq 100000 ] && [[ $DRAINERR == *"reset by peer"* ]]
tap $? "reset-after: client gets exactly 100000 bytes, then RST ($NBYTES)" "$DRAINERR"

dcli del fp:cut >/dev/null
out=$(ctl "reset-after 20 up")
[ "$out" = "OK reset-after 20 up" ]
tap $? "reset-after 20 up accepted" "$out"
up0=$(stat up)
exec {R}<>"/dev/tcp/127.0.0.1/$LPORT"
raw_req "$R" '*3\r\n$3\r\nSET\r\n$6\r\nfp:cut\r\n$5\r\nvalue\r\n' 3
exec {R}>&-
[ "$RAWRC" -eq 1 ] && [[ $RAWERR == *"reset by peer"* ]]
tap $? "reset-after up: half-written request gets RST (rc=$RAWRC)" "$RAWERR"
up1=$(stat up)
[ $((up1 - up0)) -eq 20 ]
tap $? "reset-after up: exactly 20 bytes reached the server ($((up1 - up0)))"
out=$(dcli exists fp:cut)
[ "$out" = 0 ]
tap $? "reset-after up: the cut SET was not executed" "$out"

out=$(ctl "reset-after 10 both")
[ "$out" = "OK reset-after 10 both" ]
tap $? "reset-after 10 both accepted" "$out"
exec {R}<>"/dev/tcp/127.0.0.1/$LPORT"
raw_drain "$R" 'PING\r\n' # 6 bytes up, so 4 of '+PONG\r\n' come down
exec {R}>&-
[ "$NBYTES" -eq 4 ] && [[ $DRAINERR == *"reset by peer"* ]]
tap $? "reset-after both: bytes of both directions count ($NBYTES bytes down)" "$DRAINERR"

out=$(ctl "reset-after off")
[ "$out" = "OK reset-after off" ]
tap $? "reset-after off accepted" "$out"
out=$(rcli get fp:big 2>&1 | wc -c)
[ "$out" -eq 1000001 ]
tap $? "reset-after off: large GET works again ($out bytes)"

# ---------------------------------------------------------------- stats

wait_conns 0
tap $? "stats: finished connections are no longer counted" "$(ctl stats)"
s0=$(ctl stats)
exec {H1}<>"/dev/tcp/127.0.0.1/$LPORT"
raw_req "$H1" 'PING\r\n' 2
tap $(($RAWRC != 0)) "stats: held raw connection answers PING" "$LINE $RAWERR"
s1=$(ctl stats)
field() { [[ $1 =~ (^|\ )$2=([0-9]+) ]] && echo "${BASH_REMATCH[2]}"; }
[[ $s1 =~ ^OK\ conns=[0-9]+\ accepted=[0-9]+\ up=[0-9]+\ down=[0-9]+\ resets=[0-9]+$ ]]
tap $? "stats: reply format" "$s1"
[ "$(field "$s1" conns)" -eq 1 ] &&
    [ $(($(field "$s1" accepted) - $(field "$s0" accepted))) -eq 1 ] &&
    [ $(($(field "$s1" up) - $(field "$s0" up))) -eq 6 ] &&
    [ $(($(field "$s1" down) - $(field "$s0" down))) -eq 7 ] &&
    [ "$(field "$s1" resets)" -eq "$(field "$s0" resets)" ]
tap $? "stats: conns=1, accepted +1, up +6, down +7, resets unchanged" "$s0 -> $s1"

# ---------------------------------------------------------------- blackhole

out=$(ctl blackhole)
[ "$out" = "OK blackhole" ]
tap $? "blackhole accepted" "$out"
timeout 2 redis-cli -p "$LPORT" ping >/dev/null 2>&1
rc=$?
tap $((rc != 124)) "blackhole: new connection's PING times out (rc=$rc)"
raw_req "$H1" 'PING\r\n' 1
tap $((RAWRC <= 128)) "blackhole: existing connection gets no reply, no FIN, no RST (rc=$RAWRC)" "$LINE $RAWERR"
exec {H2}<>"/dev/tcp/127.0.0.1/$LPORT"
raw_req "$H2" 'PING\r\n' 1
tap $((RAWRC <= 128)) "blackhole: connection accepted during blackhole hangs too (rc=$RAWRC)" "$LINE $RAWERR"
out=$(ctl pass)
[ "$out" = "OK pass" ]
tap $? "pass ends blackhole" "$out"
out=$(rcli ping 2>&1)
[ "$out" = PONG ]
tap $? "blackhole->pass: new connections work" "$out"
raw_req "$H1" 'ECHO after\r\n' 2
[ "$RAWRC" -eq 0 ] && [ "$LINE" = "+PONG" ]
tap $? "blackhole->pass: the PING held during the blackhole is answered first (nothing dropped)" "$LINE $RAWERR"
raw_req "$H1" '' 2
[ "$RAWRC" -eq 0 ] && [ "$LINE" = "\$5" ]
tap $? "blackhole->pass: then the request sent after it, in order" "$LINE $RAWERR"
raw_req "$H1" '' 2  # (the ECHO's payload line)
raw_req "$H2" '' 2
[ "$RAWRC" -eq 0 ] && [ "$LINE" = "+PONG" ]
tap $? "blackhole->pass: connection accepted during blackhole gets relayed, its held PING answered" "$LINE $RAWERR"

# ---------------------------------------------------------------- refuse

out=$(ctl refuse)
[ "$out" = "OK refuse" ]
tap $? "refuse accepted" "$out"
t0=$(now_ms)
out=$(timeout 5 redis-cli -p "$LPORT" ping 2>&1)
rc=$?
dt=$(($(now_ms) - t0))
[ "$rc" -ne 0 ] && [[ $out == *"Connection refused"* ]] && [ "$dt" -lt 1000 ]
tap $? "refuse: new connection is refused at once (rc=$rc, $dt ms)" "$out"
raw_req "$H1" 'PING\r\n' 2
[ "$RAWRC" -eq 0 ] && [ "$LINE" = "+PONG" ]
tap $? "refuse: existing connection still works" "$LINE $RAWERR"
out=$(ctl accept)
[ "$out" = "OK accept" ]
tap $? "accept accepted" "$out"
out=$(rcli ping 2>&1)
[ "$out" = PONG ]
tap $? "accept: new connections work again on the same port" "$out"
ctl refuse >/dev/null
out=$(ctl pass)
[ "$out" = "OK pass" ] && [ "$(rcli ping 2>&1)" = PONG ]
tap $? "refuse->pass: listener re-opened" "$out"

# ---------------------------------------------------------------- reset-all

wait_conns 2
r0=$(stat resets)
out=$(ctl reset-all)
[ "$out" = "OK reset-all conns=2" ]
tap $? "reset-all resets both held connections" "$out"
raw_req "$H1" '' 2
[ "$RAWRC" -eq 1 ] && [[ $RAWERR == *"reset by peer"* ]]
tap $? "reset-all: client sees RST" "rc=$RAWRC $RAWERR"
raw_req "$H2" '' 2
[ "$RAWRC" -eq 1 ] && [[ $RAWERR == *"reset by peer"* ]]
tap $? "reset-all: second client sees RST" "rc=$RAWRC $RAWERR"
exec {H1}>&- {H2}>&-
r1=$(stat resets)
[ $((r1 - r0)) -eq 2 ] && [ "$(stat conns)" -eq 0 ]
tap $? "reset-all: stats resets +2, conns=0" "$(ctl stats)"
# Only our own CLIENT LIST connection should remain on the server side.
for ((i = 0; i < 40; i++)); do
    n=$(dcli client list | wc -l)
    [ "$n" -eq 1 ] && break
    sleep 0.05
done
[ "$n" -eq 1 ]
tap $? "reset-all: server side connections are gone too ($n left)" "$(dcli client list)"

# ---------------------------------------------------------------- control

out=$(ctl "frobnicate")
[[ $out == ERR* ]]
tap $? "unknown command -> ERR" "$out"
out=$(ctl "latency soon")
[[ $out == ERR* ]]
tap $? "bad latency argument -> ERR" "$out"
out=$(ctl "reset-after 5 sideways")
[[ $out == ERR* ]]
tap $? "bad reset-after direction -> ERR" "$out"
exec {C1}<>"/dev/tcp/127.0.0.1/$CPORT" {C2}<>"/dev/tcp/127.0.0.1/$CPORT"
printf 'stats\nlatency 0\n' >&"$C2"
printf 'stats\n' >&"$C1"
a= b= c=
IFS= read -r -t 5 a <&"$C1"
IFS= read -r -t 5 b <&"$C2"
IFS= read -r -t 5 c <&"$C2"
exec {C1}>&- {C2}>&-
[[ $a == "OK conns="* ]] && [[ $b == "OK conns="* ]] && [ "$c" = "OK latency 0" ]
tap $? "several control clients, several commands per connection" "$a | $b | $c"

# ---------------------------------------------------------------- quit / SIGTERM

out=$(ctl quit)
[[ $out == OK* ]]
tap $? "quit replies OK" "$out"
if wait_exit "$PROXY_PID"; then
    tap $((EXIT_STATUS != 0)) "quit: proxy exits with status 0 (status $EXIT_STATUS)"
    PROXY_PID=
else
    tap 1 "quit: proxy exits within 3 s"
fi
[ ! -e "$TMP/proxy.pid" ]
tap $? "quit: pidfile removed"
port_in_use "$LPORT"
tap $((!$?)) "quit: listen port closed"

if start_proxy proxy2; then
    PROXY2_PID=$SPAWNED_PID
    kill -TERM "$PROXY2_PID"
    if wait_exit "$PROXY2_PID"; then
        tap $((EXIT_STATUS != 0)) "SIGTERM: proxy exits with status 0 (status $EXIT_STATUS)"
        PROXY2_PID=
    else
        tap 1 "SIGTERM: proxy exits within 3 s"
    fi
else
    tap 1 "SIGTERM: second proxy starts"
fi

! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$TMP/proxy.err"
tap $? "no sanitizer reports from the proxy" "$(head -c 4000 "$TMP/proxy.err")"

echo "1..$T"
[ "$FAILED" -eq 0 ] || echo "# $FAILED of $T failed"
[ "$FAILED" -eq 0 ]
