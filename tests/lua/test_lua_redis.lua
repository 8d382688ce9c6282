#!/usr/bin/env lua5.4
-- Redis from Lua: replies as Lua values, sugar, pipelining, transactions,
-- pub/sub across a kill, and a migration copying 20k rows MySQL -> Redis.
package.path = arg[0]:match("^(.*)/[^/]*$") .. "/../lib/?.lua;" .. package.path
local T = require "tap"
local dbpool = require "dbpool"
local REDIS = T.env("DBPOOL_TEST_REDIS_URL")
local MYSQL = T.env("DBPOOL_TEST_MYSQL_URL")
local null = dbpool.null

local kv = dbpool.open(REDIS, { max = 4 })
T.ok(not tostring(kv):find(T.env("DBPOOL_TEST_REDIS_PASSWORD"), 1, true), "tostring has no password: " .. tostring(kv))

-- replies as Lua values
do
    T.is(kv:call("SET", "lt:a", "1"):await(), "OK", "status reply -> string")
    T.is(kv:set("lt:b", "x\0y"):await(), "OK", "method sugar: kv:set")
    T.is(kv:get("lt:b"):await(), "x\0y", "binary-safe bulk string")
    T.ok(kv:get("lt:none"):await() == null, "nil -> dbpool.null")
    kv:del("lt:n"):await()
    local n = kv:incrby("lt:n", 41):await()
    T.ok(n == 41 and math.type(n) == "integer", "integer reply -> Lua integer")
    kv:hset("lt:h", "f1", "v1", "f2", "v2"):await()
    local h = kv:hgetall("lt:h"):await()
    T.ok(type(h) == "table" and #h == 4, "array reply -> list")
    local nested = kv:call("EVAL", "return {1, {2, {3, 'deep'}}, false}", 0):await()
    T.ok(nested[2][2][2] == "deep" and nested[3] == null, "nested arrays, with a nil element as dbpool.null")
    local ok, e = kv:call("HGET", "lt:a"):result()
    T.ok(not ok and e.kind == "redis" and e.message:find("wrong number") and e.sent, "error reply -> kind redis: " .. tostring(e))
    T.is(kv:call({ "ECHO", "from a list" }, { timeout = 2 }):await(), "from a list", "call with a list and options")
    T.is(kv:echo(12.5):await(), "12.5", "numbers become their text")
    T.raises(function() kv:set("k", {}) end, "a table argument raises at the call", "table")
    T.raises(function() kv:query("SELECT 1") end, "query() on a Redis pool raises", "MySQL")
    T.raises(function() kv:call("MULTI") end, "MULTI on the pool raises", "pinned")
    local p = kv:ping():await()
    T.ok(p.version:match("^7%.") and p.rtt < 1, "ping gives rtt and version " .. p.version)
end

-- MySQL and Redis awaited side by side
do
    local db = dbpool.open(MYSQL, { max = 2 })
    local r = dbpool.all { db:query("SELECT 7 AS v"), kv:incr("lt:side") }:await()
    T.ok(r[1][1].v == 7 and math.type(r[2]) == "integer", "a MySQL query and a Redis command in one all()")
    db:close():await()
end

-- pipelining from Lua
do
    local ps = {}
    for i = 1, 20000 do ps[i] = kv:call("ECHO", i) end
    local bad = 0
    for i = 1, 20000 do if ps[i]:await() ~= tostring(i) then bad = bad + 1 end end
    T.is(bad, 0, "20000 pipelined commands, each its own reply")
end

-- transactions
do
    kv:del("lt:tx"):await()
    local res = kv:transaction(function(tx)
        T.is(tx:incr("lt:tx"):await(), "QUEUED", "inside MULTI commands are queued")
        tx:incr("lt:tx")
        tx:get("lt:tx")
    end)
    T.ok(res[1] == 1 and res[2] == 2 and res[3] == "2", "transaction returns EXEC's replies")
    local ok, e = pcall(kv.transaction, kv, function(tx) tx:incr("lt:tx"); error("changed my mind") end)
    T.ok(not ok and tostring(e):find("changed my mind"), "an error discards the transaction")
    T.is(kv:get("lt:tx"):await(), "2", "nothing of it ran")
    T.is(kv:stats().pinned, 0, "no connection left pinned")
    local c <close> = kv:acquire():await()
    c:watch("lt:tx"):await()
    T.is(c:get("lt:tx"):await(), "2", "acquire() for WATCH by hand")
    c:multi():await(); c:incr("lt:tx")
    local ex = c:exec():await()
    T.ok(ex[1] == 3, "WATCH/MULTI/EXEC on a pinned connection")
end

-- pub/sub with handlers that may await, across a kill of the subscriber
do
    local got, gaps = {}, 0
    local admin = dbpool.open(REDIS, { max = 1 })
    local sub = kv:subscribe({ "lt:chan" }, function(ch, msg)
        got[#got + 1] = msg
        admin:incr("lt:seen"):await() -- a handler runs as a task: it may await
    end)
    sub:on_gap(function() gaps = gaps + 1 end)
    local psub = kv:psubscribe("lt:p:*", function(ch, msg, pat) got[#got + 1] = pat .. ":" .. ch .. "=" .. msg end)
    T.ok(sub:ready():await() == sub and psub:ready():await() == psub, "ready() once the server confirmed the subscriptions")
    admin:publish("lt:chan", "m1"):await()
    admin:publish("lt:p:x", "m2"):await()
    for _ = 1, 50 do if #got >= 2 then break end dbpool.sleep(0.02):await() end
    T.ok(got[1] == "m1" and got[2] == "lt:p:*:lt:p:x=m2", "channel and pattern messages")
    admin:client("KILL", "TYPE", "pubsub"):await()
    for _ = 1, 100 do if gaps >= 2 then break end dbpool.sleep(0.02):await() end
    T.ok(gaps >= 1 and sub:reconnects() == 1, "the subscription reconnected and reported the gap")
    admin:publish("lt:chan", "m3"):await()
    for _ = 1, 50 do if got[#got] == "m3" then break end dbpool.sleep(0.02):await() end
    T.is(got[#got], "m3", "messages after the reconnect arrive")
    sub:unsubscribe(); psub:unsubscribe()
    admin:close():await()
end

-- migration: 20k rows from MySQL into Redis hashes with dbpool.map, counted after
do
    local db = dbpool.open(MYSQL, { max = 4 })
    db:query("DROP TABLE IF EXISTS t_users"):await()
    db:query("CREATE TABLE t_users (id INT PRIMARY KEY, name VARCHAR(40), email VARCHAR(80))"):await()
    db:query([[INSERT INTO t_users SELECT seq, CONCAT('user', seq), CONCAT('u', seq, '@example.com') FROM seq_1_to_20000]]):await()
    local keys = kv:keys("mig:user:*"):await()
    if #keys > 0 then kv:del(table.unpack(keys)):await() end
    local t0 = dbpool._core.now()
    local done = dbpool.run(function()
        db = dbpool.open(MYSQL, { max = 4 })
        kv = dbpool.open(REDIS, { max = 4 })
        local res = dbpool.map(db:rows("SELECT id, name, email FROM t_users ORDER BY id"), function(row)
            return kv:hset("mig:user:" .. row.id, "name", row.name, "email", row.email)
        end, { concurrency = 64 }):await()
        return res.n
    end)
    local dt = dbpool._core.now() - t0
    T.is(done, 20000, ("map copied 20000 rows (%.2f s)"):format(dt))
    kv = dbpool.open(REDIS, { max = 2 })
    local n = 0
    local cursor = "0"
    repeat
        local r = kv:scan(cursor, "MATCH", "mig:user:*", "COUNT", 5000):await()
        cursor = r[1]
        n = n + #r[2]
    until cursor == "0"
    T.is(n, 20000, "20000 hashes in Redis, counted by SCAN")
    T.is(kv:hget("mig:user:12345", "email"):await(), "u12345@example.com", "a sample hash is right")
    db = dbpool.open(MYSQL, { max = 1 })
    db:query("DROP TABLE t_users"):await()
    db:close():await()
end

kv:close():await()
T.done()
