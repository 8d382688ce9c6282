#!/usr/bin/env bash
# Every example under scripts/examples, run with `dbpool run` against the
# test servers, and its result checked with the mysql, redis and psql clients.
source "$(dirname "$0")/lib.sh"
need_env DBPOOL_TEST_MYSQL_URL DBPOOL_TEST_REDIS_URL DBPOOL_TEST_MYSQL_PASSWORD DBPOOL_TEST_REDIS_PASSWORD DBPOOL_TEST_PG_URL
export DATABASE_URL="$DBPOOL_TEST_MYSQL_URL" REDIS_URL="$DBPOOL_TEST_REDIS_URL"
EX="$T_REPO/scripts/examples"

n=0
for f in "$EX"/*.lua; do n=$((n + 1)); done
is "$n" 4 "four examples (each one is run below)"

# MySQL -> MySQL batched copy
run_bounded 120 "$DBPOOL" run "$EX/copy_mysql.lua" 3000 250 4
is "$T_RC" 0 "copy_mysql: exit 0"
like "$T_OUT" "copied 3000 rows in batches of 250, 4 in flight: OK" "copy_mysql: its own check passed"
like "$T_ERR" "copy ex_copy_src -> ex_copy_dst: 3000/3000 done" "copy_mysql: progress (plain lines, stderr is no terminal)"
is "$(sql "SELECT COUNT(*) FROM ex_copy_dst")" 3000 "copy_mysql: 3000 rows at the destination"
is "$(sql "SELECT COUNT(*) FROM ex_copy_src s JOIN ex_copy_dst d USING (id)
          WHERE NOT (s.email <=> d.email AND s.name <=> d.name AND s.balance <=> d.balance
                     AND s.created_at <=> d.created_at AND s.note <=> d.note)")" 0 "copy_mysql: every row equal"
is "$(sql "SELECT COUNT(*) FROM ex_copy_dst WHERE note IS NULL")" 300 "copy_mysql: NULLs copied as NULL"
run_bounded 120 "$DBPOOL" run --quiet "$EX/copy_mysql.lua" 1000 333 2
is "$T_RC" 0 "copy_mysql again (other sizes): exit 0"
is "$T_ERR" "" "copy_mysql --quiet: no progress"

# MySQL -> Redis backfill
run_bounded 120 "$DBPOOL" run "$EX/backfill_redis.lua" 4000 16
is "$T_RC" 0 "backfill_redis: exit 0"
like "$T_OUT" "backfilled 4000 users into Redis, 16 in flight: OK" "backfill_redis: its own check passed"
like "$T_ERR" "backfill ex_users -> redis: 4000/4000 done" "backfill_redis: progress"
is "$(rcli ZCARD ex:users:by_score)" 4000 "backfill_redis: 4000 members in the sorted set"
is "$(rcli HGET ex:user:1234 email)" "user1234@example.com" "backfill_redis: a hash holds its row"
is "$(rcli HGET ex:user:1234 score)" "$(sql "SELECT score FROM ex_users WHERE id = 1234")" "backfill_redis: the score matches MySQL"
run_bounded 120 "$DBPOOL" run "$EX/backfill_redis.lua" 500 4
is "$T_RC" 0 "backfill_redis re-run with fewer rows: exit 0"
like "$T_OUT" "removed 4000 keys of an earlier run" "backfill_redis: an earlier run's keys are removed first"
is "$(rcli ZCARD ex:users:by_score)" 500 "backfill_redis: 500 members now"

# Redis re-keying
run_bounded 120 "$DBPOOL" run "$EX/rekey_redis.lua" 3000 16
is "$T_RC" 0 "rekey_redis: exit 0"
like "$T_OUT" "moved 3000 keys" "rekey_redis: its own check passed"
is "$(rcli --scan --pattern 'ex:legacy:session:*' | wc -l)" 0 "rekey_redis: no old key left"
is "$(rcli --scan --pattern 'ex:session:*' | wc -l)" 3000 "rekey_redis: 3000 new keys"
is "$(rcli TYPE 'ex:session:{42}')" "hash" "rekey_redis: a hash stays a hash"
is "$(rcli HGET 'ex:session:{42}' user)" "u42" "rekey_redis: its fields moved"
ttl=$(rcli TTL 'ex:session:{42}')
ok $([[ $ttl -gt 3000 ]]; echo $?) "rekey_redis: the TTL moved with the key ($ttl s)"
is "$(rcli TTL 'ex:session:{43}')" "-1" "rekey_redis: a key without a TTL has none"

# MySQL -> PostgreSQL with pool:load fed by rows()
run_bounded 120 env DATABASE_URL="$DBPOOL_TEST_PG_URL" MYSQL_URL="$DBPOOL_TEST_MYSQL_URL" "$DBPOOL" run "$EX/mysql_to_postgres.lua" 5000
is "$T_RC" 0 "mysql_to_postgres: exit 0"
like "$T_OUT" "both sides agree" "mysql_to_postgres: its own check passed"
like "$T_ERR" "copy ex_orders: 5000/5000" "mysql_to_postgres: progress"
is "$(psql "$DBPOOL_TEST_PG_URL" -Atc "SELECT count(*) FROM ex_orders")" 5000 "mysql_to_postgres: 5000 rows in PostgreSQL"
psql "$DBPOOL_TEST_PG_URL" -qc "DROP TABLE IF EXISTS ex_orders" >/dev/null 2>&1

sql "DROP TABLE IF EXISTS ex_copy_src, ex_copy_dst, ex_users, ex_orders"
rcli --scan --pattern 'ex:*' | xargs -r -n 500 sh -c 'REDISCLI_AUTH="$0" redis-cli -h 127.0.0.1 -p "$1" --no-auth-warning UNLINK "$@" >/dev/null' \
    "$DBPOOL_TEST_REDIS_PASSWORD" "$DBPOOL_TEST_REDIS_PORT" 2>/dev/null
done_testing
