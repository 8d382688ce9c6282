-- MySQL -> Redis backfill: every user row becomes a Redis hash, and a sorted
-- set ranks them, with dbpool.map keeping CONCURRENCY rows in flight and a
-- progress bar (plain lines when stderr is not a terminal).
--
--   DATABASE_URL=mysql://... REDIS_URL=redis://... \
--     scripts/dbpool run scripts/examples/backfill_redis.lua [ROWS] [CONCURRENCY]
--
-- Self-contained: it creates the table ex_users with ROWS rows (default
-- 50000) and removes the keys ex:user:* of an earlier run first. The rows
-- are streamed (db:rows), so memory stays bounded whatever the table's size.
-- Keys written: ex:user:<id> (hash: name, email, score), ex:users:by_score (zset).
local ROWS = math.tointeger(tonumber(arg[1])) or 50000
local CONCURRENCY = math.tointeger(tonumber(arg[2])) or 32
assert(db, "set DATABASE_URL (the MySQL source)")
assert(redis, "set REDIS_URL (the Redis target)")

-- 1. The source table, filled by the server itself (MariaDB's seq_1_to_N).
db:query("DROP TABLE IF EXISTS ex_users"):await()
db:query([[CREATE TABLE ex_users (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  email VARCHAR(120) NOT NULL,
  score INT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4]]):await()
db:query([[INSERT INTO ex_users (id, name, email, score)
  SELECT seq, CONCAT('User ', seq), CONCAT('user', seq, '@example.com'), (seq * 7919) % 1000
  FROM seq_1_to_]] .. ROWS):await()

-- 2. Keys of an earlier run go first (SCAN, then UNLINK in batches).
local cursor, removed = "0", 0
repeat
    local reply = redis:call("SCAN", cursor, "MATCH", "ex:user:*", "COUNT", 1000):await()
    cursor = reply[1]
    if #reply[2] > 0 then
        removed = removed + redis:call("UNLINK", table.unpack(reply[2])):await()
    end
until cursor == "0"
redis:call("DEL", "ex:users:by_score"):await()
if removed > 0 then print(("removed %d keys of an earlier run"):format(removed)) end

-- 3. The backfill: rows streamed from MySQL, two commands per row, sent
-- without waiting for each other (pipelined on the pool's connections).
local total = db:query("SELECT COUNT(*) AS n FROM ex_users"):await()[1].n
local bar = dbpool.progress(total, "backfill ex_users -> redis")
dbpool.map(db:rows("SELECT id, name, email, score FROM ex_users ORDER BY id"), function(u)
    local key = "ex:user:" .. u.id
    dbpool.all({
        redis:call("HSET", key, "name", u.name, "email", u.email, "score", u.score),
        redis:call("ZADD", "ex:users:by_score", u.score, key),
    }):await()
    bar:add(1)
end, { concurrency = CONCURRENCY }):await()
bar:done()

-- 4. The check: as many hashes as rows, and a few compared field by field.
local zcard = redis:call("ZCARD", "ex:users:by_score"):await()
print(("rows in ex_users: %d, hashes in ex:users:by_score: %d"):format(total, zcard))
assert(zcard == total, "the sorted set does not hold every user")
local sample = db:query("SELECT id, name, email, score FROM ex_users ORDER BY RAND() LIMIT 5"):await()
for _, u in ipairs(sample) do
    local h = redis:call("HGETALL", "ex:user:" .. u.id):await()
    local got = {}
    for i = 1, #h, 2 do got[h[i]] = h[i + 1] end
    assert(got.name == u.name and got.email == u.email and tonumber(got.score) == u.score,
        "ex:user:" .. u.id .. " differs from its row")
end
local top = redis:call("ZREVRANGE", "ex:users:by_score", 0, 2, "WITHSCORES"):await()
print(("top scores: %s (%s), %s (%s), %s (%s)"):format(table.unpack(top)))
print(("backfilled %d users into Redis, %d in flight: OK"):format(total, CONCURRENCY))
