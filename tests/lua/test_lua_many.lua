#!/usr/bin/env lua5.4
-- The bulk forms: pool:query_many(sql, list) and pool:call_many(commands),
-- one promise for many ops, against real MariaDB and Redis servers.
package.path = arg[0]:match("^(.*)/[^/]*$") .. "/../lib/?.lua;" .. package.path
local T = require "tap"
local dbpool = require "dbpool"
local MYSQL = T.env("DBPOOL_TEST_MYSQL_URL")
local REDIS = T.env("DBPOOL_TEST_REDIS_URL")

local kv = dbpool.open(REDIS, { max = 2 })
local r = kv:call_many({ { "SET", "many:a", "1" }, { "GET", "many:a" }, { "INCR", "many:a" }, { "HGET", "many:a", "f" },
    { "GET", "many:none" }, { "DEL", "many:a" } }):await()
T.is(r.n, 6, "call_many: one reply per command, n set")
T.ok(r[1] == "OK" and r[2] == "1" and r[3] == 2 and r[5] == dbpool.null and r[6] == 1, "  the replies in order, typed as call() gives them")
T.ok(dbpool.is_error(r[4]) and r[4].kind == "redis" and r[4].message:find("WRONGTYPE"), "  a command's error is an error object in its place")
local big = {}
for i = 1, 5000 do big[i] = { "ECHO", i } end
r = kv:call_many(big):await()
local good = 0
for i = 1, 5000 do if r[i] == tostring(i) then good = good + 1 end end
T.is(good, 5000, "5000 commands in one batch, every reply in its place")
T.is(kv:call_many({}):await().n, 0, "an empty batch settles with an empty list")
local ok, err = pcall(kv.call_many, kv, { { "SET", "many:x", "1" }, { "GET", {} } })
T.ok(not ok and err.kind == "usage", "a bad argument in any command raises at the call: " .. tostring(err))
T.is(kv:call("EXISTS", "many:x"):await(), 0, "  and nothing was sent")
-- numbers are sent as text (integers exactly, floats with every digit), a command's n is its length
r = kv:call_many({ { "ECHO", -42 }, { "ECHO", math.mininteger }, { "ECHO", 1.5 }, { "ECHO", 0.1 },
    { "ECHO", "a", "b", n = 2 } }):await()
T.ok(r[1] == "-42" and r[2] == tostring(math.mininteger) and r[3] == "1.5" and r[4] == "0.10000000000000001"
    and r[5] == "a", "call_many: numbers as text, n honoured")
-- a usage error late in a list (after many commands were read) leaves nothing behind, and the next batch works
do
    local bad, del = {}, { "DEL" }
    for i = 1, 3000 do bad[i] = { "HSET", "many:y" .. i, "a", i, "b", i + 0.5 }; del[i + 1] = "many:y" .. i end
    kv:call(del):await()
    bad[2999] = { "SET", "many:y", 0 / 0 }
    ok, err = pcall(kv.call_many, kv, bad)
    T.ok(not ok and err.kind == "usage" and err.message:find("item 2999: argument 3 is not a finite number", 1, true),
        "a NaN in item 2999 raises, naming it: " .. tostring(err))
    bad[2999] = { "SET", "many:y", {} }
    ok, err = pcall(kv.call_many, kv, bad)
    T.ok(not ok and err.message:find("item 2999: argument 3 is a table", 1, true), "  a table in its place too")
    T.is(dbpool.hub_stats().pending, 0, "  nothing was submitted")
    T.is(kv:call("EXISTS", "many:y1"):await(), 0, "  nothing was sent")
    bad[2999] = { "DEL", "many:y", "many:y1" }
    r = kv:call_many(bad):await()
    T.ok(r.n == 3000 and r[1] == 2 and r[3000] == 2, "  the same list, fixed, runs")
    local h = kv:call("HGETALL", "many:y3000"):await()
    T.ok(h[2] == "3000" and h[4] == "3000.5", "  its values as sent")
    kv:call(del):await()
end
ok, err = pcall(kv.query_many, kv, "SELECT 1", {})
T.ok(not ok and err.kind == "usage", "query_many on a Redis pool is a usage error")
kv:close():await()

local db = dbpool.open(MYSQL, { max = 4 })
local q = db:query_many("SELECT ? + 1 AS x", { { 1 }, { 2 }, { 3 } }):await()
T.ok(q.n == 3 and q[1][1].x == 2 and q[2][1].x == 3 and q[3][1].x == 4, "query_many: one result per params list, in order")
T.ok(q[1].columns and q[1].columns[1] == "x", "  each with the shape of query()'s")
db:query("DROP TABLE IF EXISTS t_many"):await()
db:query("CREATE TABLE t_many (id INT PRIMARY KEY, s VARCHAR(10))"):await()
db:query("INSERT INTO t_many VALUES (1, 'a')"):await()
-- (the items run at once over the pool's connections: the duplicate is of a row already there)
q = db:query_many("INSERT INTO t_many VALUES (?, ?)", { { 2, "b" }, { 3, "c" }, { 1, "dup" } }):await()
T.ok(q[1].affected_rows == 1 and q[2].affected_rows == 1, "inserts through query_many")
T.ok(dbpool.is_error(q[3]) and q[3].code == 1062, "  a failed one is an error object (1062) in its place")
ok, err = pcall(db.query_many, db, "INSERT INTO t_many VALUES (?, ?)", { { 4, "d" }, { 5 } })
T.ok(not ok and err.kind == "usage" and err.message:find("item 2"), "a params list of the wrong length raises: " .. tostring(err))
T.is(db:query("SELECT COUNT(*) AS n FROM t_many"):await()[1].n, 3, "  and nothing was sent")
ok, err = pcall(db.query_many, db, "INSERT INTO t_many VALUES (?, ?)", { { 4, "d" }, { {}, 5, 6 } })
T.ok(not ok and err.kind == "usage" and err.message:find("parameter 1 is a table", 1, true),
    "a bad value raises before a wrong count in the same item: " .. tostring(err))
-- results of one shape share their columns table; changing it must not change the keys of later rows
do
    local a = db:query("SELECT 1 AS x, 2 AS y"):await()
    a.columns[1] = "zzz"
    a.columns[3] = "extra"
    local b = db:query("SELECT 1 AS x, 2 AS y"):await()
    T.ok(b[1].x == 1 and b[1].y == 2 and b[1].zzz == nil and #b.columns == 2 and b.columns[1] == "x",
        "a result whose columns were changed by its user does not change the next result's keys")
end
dbpool.run(function()
    local res = db:query_many("SELECT id, s FROM t_many WHERE id = ?", { { 1 }, { 2 } }):await()
    T.ok(res[1][1].s == "a" and res[2][1].s == "b", "query_many awaited inside a task")
end)
T.done()
