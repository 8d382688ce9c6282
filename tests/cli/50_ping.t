#!/usr/bin/env bash
# dbpool ping: a live MySQL and Redis (line and JSON), a dead port, a wrong
# password, --wait's deadline.
source "$(dirname "$0")/lib.sh"
need_env DBPOOL_TEST_MYSQL_URL DBPOOL_TEST_REDIS_URL DBPOOL_TEST_MYSQL_PASSWORD DBPOOL_TEST_REDIS_PASSWORD \
    DBPOOL_TEST_CLUSTER_URL DBPOOL_TEST_CLUSTER_PASSWORD
unset DATABASE_URL REDIS_URL
DEAD_PORT=1   # privileged and unused: loopback refuses it at once

run_bounded 20 "$DBPOOL" ping "$DBPOOL_TEST_MYSQL_URL"
is "$T_RC" 0 "MySQL up: exit 0"
like "$T_OUT" "ok mysql://dbpool:***@127.0.0.1:$DBPOOL_TEST_MYSQL_PORT/dbpool_test mysql " "one line: ok, the URL without its password, the backend"
like "$T_OUT" "MariaDB" "the server version"
ok $([[ "$T_OUT" =~ rtt=[0-9.]+ms ]]; echo $?) "the round trip"
like "$T_OUT" "pool: total=1 idle=1 busy=0 waiting=0" "the pool's stats"
is "$(wc -l <<<"$T_OUT")" 1 "one line"
unlike "$T_OUT" "$DBPOOL_TEST_MYSQL_PASSWORD" "no password"

run_bounded 20 "$DBPOOL" ping --json "$DBPOOL_TEST_MYSQL_URL"
is "$T_RC" 0 "--json, MySQL up: exit 0"
like "$T_OUT" '"ok":true' "JSON: ok"
like "$T_OUT" '"backend":"mysql"' "JSON: the backend"
ok $([[ "$T_OUT" =~ \"rtt_ms\":[0-9.e-]+ ]]; echo $?) "JSON: rtt_ms"
like "$T_OUT" '"stats":{' "JSON: the stats"
like "$T_OUT" '"url":"mysql://dbpool:***@' "JSON: the URL without its password"
if command -v python3 >/dev/null; then
    python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ok"] and d["stats"]["total"] == 1' <<<"$T_OUT"
    ok $? "JSON: parses, stats.total = 1"
fi

run_bounded 20 "$DBPOOL" ping "$DBPOOL_TEST_REDIS_URL"
is "$T_RC" 0 "Redis up: exit 0"
like "$T_OUT" "ok redis://:***@127.0.0.1:$DBPOOL_TEST_REDIS_PORT/0 redis " "Redis: one line"
run_bounded 20 "$DBPOOL" ping --json "$DBPOOL_TEST_REDIS_URL"
like "$T_OUT" '"backend":"redis"' "Redis: JSON"

# a Redis Cluster (its pool:ping() leaves an op pending for ever: the command
# must still answer and exit; run_bounded's timeout would show a hang as 124)
run_bounded 20 "$DBPOOL" ping "$DBPOOL_TEST_CLUSTER_URL"
is "$T_RC" 0 "Redis Cluster up: exit 0 (and no hang at exit)"
like "$T_OUT" "ok redis-cluster://:***@127.0.0.1:" "Redis Cluster: one line, no password"
unlike "$T_OUT" "$DBPOOL_TEST_CLUSTER_PASSWORD" "Redis Cluster: no password"
run_bounded 20 "$DBPOOL" ping --json "$DBPOOL_TEST_CLUSTER_URL"
like "$T_OUT" '"backend":"redis-cluster"' "Redis Cluster: JSON"

DATABASE_URL="$DBPOOL_TEST_MYSQL_URL" run_bounded 20 "$DBPOOL" ping
is "$T_RC" 0 "no URL: DATABASE_URL"
REDIS_URL="$DBPOOL_TEST_REDIS_URL" run_bounded 20 "$DBPOOL" ping
like "$T_OUT" "ok redis://" "no URL and no DATABASE_URL: REDIS_URL"

# dead servers
t0=$(date +%s%N)
run_bounded 20 "$DBPOOL" ping "mysql://dbpool:secretpw@127.0.0.1:$DEAD_PORT/dbpool_test"
ms=$(elapsed_ms "$t0")
is "$T_RC" 1 "MySQL down: exit 1"
like "$T_ERR" "127.0.0.1:$DEAD_PORT" "the address is named"
unlike "$T_ERR$T_OUT" "secretpw" "no password"
ok $([[ $ms -lt 3000 ]]; echo $?) "a refused port fails at once (${ms} ms)"
run_bounded 20 "$DBPOOL" ping --json "redis://:secretpw@127.0.0.1:$DEAD_PORT/0"
is "$T_RC" 1 "Redis down, --json: exit 1"
like "$T_OUT" '"ok":false' "JSON: ok false"
like "$T_OUT" '"kind":"connection"' "JSON: the error's kind"
unlike "$T_OUT" "secretpw" "JSON: no password"

t0=$(date +%s%N)
run_bounded 20 "$DBPOOL" ping --wait --timeout 1.5 "mysql://dbpool:x@127.0.0.1:$DEAD_PORT/dbpool_test"
ms=$(elapsed_ms "$t0")
is "$T_RC" 1 "--wait on a dead port: exit 1"
ok $([[ $ms -ge 1300 && $ms -lt 6000 ]]; echo $?) "--wait retries until --timeout (${ms} ms)"

run_bounded 20 "$DBPOOL" ping "mysql://dbpool:wrong-pw@127.0.0.1:$DBPOOL_TEST_MYSQL_PORT/dbpool_test"
is "$T_RC" 1 "a wrong MySQL password: exit 1"
like "$T_ERR" "Access denied" "the server's answer"
unlike "$T_ERR" "wrong-pw" "no password"
run_bounded 20 "$DBPOOL" ping "redis://:wrong-pw@127.0.0.1:$DBPOOL_TEST_REDIS_PORT/0"
is "$T_RC" 1 "a wrong Redis password: exit 1"
unlike "$T_ERR" "wrong-pw" "no password"

run_bounded 20 "$DBPOOL" ping "ftp://example.com/"
is "$T_RC" 2 "an unknown scheme: exit 2"
run_bounded 20 "$DBPOOL" ping --timeout 0 "$DBPOOL_TEST_MYSQL_URL"
is "$T_RC" 2 "--timeout 0: exit 2"

done_testing
