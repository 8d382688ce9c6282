#!/usr/bin/env lua5.4
-- The Lua API against a real MariaDB: promises, tasks, combinators, run,
-- close paths, transactions, pinned connections, streaming, values, errors.
package.path = arg[0]:match("^(.*)/[^/]*$") .. "/../lib/?.lua;" .. package.path
local T = require "tap"
local dbpool = require "dbpool"
local URL = T.env("DBPOOL_TEST_MYSQL_URL")
local PASSWORD = T.env("DBPOOL_TEST_MYSQL_PASSWORD")
local null = dbpool.null
local fds0 = T.fds()

local function open(opts) return dbpool.open(URL, opts) end

-- Open descriptors, once closes still in flight have had up to a second.
local function fds_upto(limit)
    local n = T.fds()
    for _ = 1, 50 do
        if n <= limit then return n end
        dbpool.sleep(0.02):await()
        n = T.fds()
    end
    return n
end

-- seed scenario first: 5 queries on a pool of 2, close right after submitting
do
    local db = open { max = 2 }
    local ps = {}
    for i = 1, 5 do ps[i] = db:query("SELECT SLEEP(0.05), ? AS i", { i }) end
    local closing = db:close()
    local late = db:query("SELECT 'late'")
    local ok, err = late:result()
    T.ok(not ok and err.kind == "closed", "a query during close is rejected with kind closed: " .. tostring(err))
    T.ok(closing:result(), "close settles")
    local n = 0
    for i = 1, 5 do
        local ok2, r = ps[i]:result()
        if ok2 and r[1].i == i then n = n + 1 end
    end
    T.is(n, 5, "seed: all 5 fulfilled, each with its own result")
    ok, err = db:query("SELECT 'later'"):result()
    T.ok(not ok and err.kind == "closed" and err.message:find("closed"), "a late query is rejected as closed")
    T.ok(tostring(db):find("closed"), "tostring says closed: " .. tostring(db))
end

local db = open { max = 4 }
T.ok(not tostring(db):find(PASSWORD, 1, true) and tostring(db):find("mysql://dbpool@127.0.0.1"),
    "tostring(pool) shows backend, host, db, no password: " .. tostring(db))

-- await at top level and in tasks
do
    local r = db:query("SELECT 1 AS one"):await()
    T.is(r[1].one, 1, "await at top level drives the hub")
    local got = dbpool.run(function()
        local a = db:query("SELECT 2 AS two"):await()
        return a[1].two, "extra"
    end)
    T.is(got, 2, "await inside run's task yields and returns the value")
    db = open { max = 4 } -- run closed every pool
    local t0 = dbpool._core.now()
    local order = {}
    dbpool.run(function()
        local a = dbpool.spawn(function() db:query("SELECT SLEEP(0.2)"):await(); order[#order + 1] = "a" end)
        local b = dbpool.spawn(function() db:query("SELECT SLEEP(0.1)"):await(); order[#order + 1] = "b" end)
        dbpool.all { a, b }:await()
    end)
    T.ok(order[1] == "b" and order[2] == "a", "tasks run concurrently (b finished first)")
    T.ok(dbpool._core.now() - t0 < 0.6, "two sleeping tasks overlapped")
    db = open { max = 4 }
end

-- status, result, next
do
    local p = db:query("SELECT 3 AS x")
    T.is(p:status(), "pending", "status pending before the hub runs")
    local ok, v = p:result()
    T.ok(ok and v[1].x == 3 and p:status() == "fulfilled", "result() gives true, value")
    local bad = db:query("SELECT * FROM no_such_table")
    local ok2, e = bad:result()
    T.ok(not ok2 and e.kind == "sql" and e.code == 1146 and e.sqlstate == "42S02" and e.sent == true,
        "result() gives false, err with kind/code/sqlstate/sent")
    T.ok(tostring(e):find("SQLSTATE 42S02"), "error __tostring: " .. tostring(e))
    local chained = db:query("SELECT 20 AS v"):next(function(r) return r[1].v + 1 end)
    T.is(chained:await(), 21, "next() chains a value")
    local recovered = bad:next(nil, function(err) return "recovered from " .. err.kind end)
    T.is(recovered:await(), "recovered from sql", "next(nil, on_err) handles a rejection")
    local viaPromise = db:query("SELECT 1"):next(function() return db:query("SELECT 7 AS s") end)
    T.is(viaPromise:await()[1].s, 7, "a promise returned from next() is awaited")
    local raised = T.raises(function() bad:await() end, "await raises the op's error")
    T.ok(dbpool.is_error(raised) and raised.kind == "sql", "the raised value is the error table")
end

-- all / all_settled / race with mixed failures
do
    local vals = dbpool.all { db:query("SELECT 1 AS v"), db:query("SELECT 2 AS v") }:await()
    T.ok(vals[1][1].v == 1 and vals[2][1].v == 2 and vals.n == 2, "all() gives the values in order")
    local ok, e = dbpool.all { db:query("SELECT 1"), db:query("SELECT nope"), db:query("SELECT SLEEP(0.1)") }:result()
    T.ok(not ok and e.kind == "sql" and e.code == 1054, "all() rejects with the first failure")
    local s = dbpool.all_settled { db:query("SELECT 5 AS v"), db:query("SELECT nope") }:await()
    T.ok(s[1].status == "fulfilled" and s[1].value[1].v == 5 and s[2].status == "rejected" and s[2].reason.kind == "sql",
        "all_settled() entries {status, value|reason}")
    local r = dbpool.race { db:query("SELECT SLEEP(0.3), 'slow' AS w"), db:query("SELECT 'fast' AS w") }:await()
    T.is(r[1].w, "fast", "race() settles with the first")
    local ok3, e3 = dbpool.race { db:query("SELECT SLEEP(0.3)"), db:query("SELECT nope") }:result()
    T.ok(not ok3 and e3.code == 1054, "race() rejects when the first to settle fails")
    T.ok(#dbpool.all({}):await() == 0, "all({}) is an empty list")
    dbpool.sleep(0.35):await() -- let the slow ones finish
end

-- sleep and spawn
do
    local t0 = dbpool._core.now()
    dbpool.sleep(0.15):await()
    local dt = dbpool._core.now() - t0
    T.ok(dt >= 0.14 and dt < 0.5, ("sleep(0.15) took %.3f s"):format(dt))
    local p = dbpool.spawn(function(a, b) return a + b, a * b end, 3, 4)
    local x, y = p:await()
    T.ok(x == 7 and y == 12, "spawn passes arguments and returns several values")
    local f = dbpool.spawn(function() error("boom") end)
    local ok, e = f:result()
    T.ok(not ok and tostring(e):find("boom") and tostring(e):find("traceback"), "a failing task rejects with its traceback")
end

-- map's concurrency bound, observed through the pool's own statistics
do
    local busiest, started = 0, 0
    local res = dbpool.map({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, function(item, idx)
        started = started + 1
        local q = db:query("SELECT SLEEP(0.05), ? AS item", { item })
        local st = db:stats()
        if st.busy + st.connecting > busiest then busiest = st.busy + st.connecting end
        return q:await()[1].item * 10
    end, { concurrency = 3 }):await()
    T.ok(res.n == 10 and res[1] == 10 and res[10] == 100, "map keeps input order")
    T.ok(busiest <= 3 and busiest >= 2, "map never had more than 3 in flight (saw " .. busiest .. ")")
    -- first error stops new work and is raised after the in-flight ones settle
    local calls = 0
    local ok, e = dbpool.map({ 1, 2, 3, 4, 5, 6, 7, 8 }, function(item)
        calls = calls + 1
        if item == 2 then error("item two failed") end
        db:query("SELECT SLEEP(0.05)"):await()
        return item
    end, { concurrency = 2 }):result()
    T.ok(not ok and tostring(e):find("item two failed"), "map raises the first error")
    T.ok(calls < 8, "no new work after the first error (" .. calls .. " of 8 started)")
    local list = {}
    for i = 1, 25 do list[i] = i end
    local sum = 0
    dbpool.map(list, function(i) sum = sum + i end, { concurrency = 4 }):await()
    T.is(sum, 325, "map over plain values")
    T.raises(function() dbpool.map({}, function() end, { concurrency = 0 }) end, "concurrency 0 is a usage error", "concurrency")
end

-- run re-raises a task's error, still closing the pools
do
    local p2 = open { max = 2 }
    local ok, e = pcall(dbpool.run, function()
        p2:query("SELECT 1"):await()
        p2:query("SELECT * FROM still_no_such_table"):await()
    end)
    T.ok(not ok and dbpool.is_error(e) and e.code == 1146, "run re-raises the task's error")
    T.ok(e.traceback and e.traceback:find("test_lua_mysql"), "with the traceback of where it happened")
    T.is(p2._c:state(), "closed", "and still closed the pools")
    local ok2, e2 = pcall(dbpool.run, function()
        local p3 = open { max = 1 }
        p3:query("INSERT INTO no_table VALUES (1)") -- nobody awaits it
        dbpool.sleep(0.1):await()
    end)
    T.ok(not ok2 and tostring(e2):find("nobody awaited"), "run reports a failure nobody awaited: " .. tostring(e2))
    db = open { max = 4 }
end

-- <close> and __gc
do
    do
        local scoped <close> = open { max = 1 }
        scoped:query("SELECT 1"):await()
        _G.keep_scoped = scoped
    end
    T.is(_G.keep_scoped._c:state(), "closed", "<close> closes the pool gracefully at scope exit")
    _G.keep_scoped = nil
    local fds_before = T.fds()
    do
        local g = open { max = 2 }
        g:query("SELECT 1"):await()
    end
    collectgarbage(); collectgarbage()
    dbpool.sleep(0.2):await()
    local now = fds_upto(fds_before)
    T.ok(now <= fds_before, "a pool collected by __gc closes its connections (fds " .. fds_before .. " -> " .. now .. ")")
end

-- a script that never calls close exits only after its writes are in the table
do
    db:query("DROP TABLE IF EXISTS t_forgot"):await()
    db:query("CREATE TABLE t_forgot (i INT)"):await()
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write([[
local dbpool = require "dbpool"
local db = dbpool.open(os.getenv("DBPOOL_TEST_MYSQL_URL"), { max = 3 })
for i = 1, 50 do db:query("INSERT INTO t_forgot VALUES (?)", { i }) end
-- no await, no close, no run: the state closing must drive them
]])
    f:close()
    local ok = os.execute("lua5.4 " .. script)
    os.remove(script)
    local n = db:query("SELECT COUNT(*) AS n FROM t_forgot"):await()[1].n
    T.ok(ok and n == 50, "a script that never awaits nor closes still lands all 50 writes (" .. n .. ")")
    db:query("DROP TABLE t_forgot"):await()
end

-- transactions, verified from another connection
do
    db:query("DROP TABLE IF EXISTS t_tx"):await()
    db:query("CREATE TABLE t_tx (i INT) ENGINE=InnoDB"):await()
    local other = open { max = 1 }
    local r = db:transaction(function(tx)
        tx:query("INSERT INTO t_tx VALUES (1)"):await()
        local seen = other:query("SELECT COUNT(*) AS n FROM t_tx"):await()[1].n
        T.is(seen, 0, "another connection does not see the uncommitted row")
        return "done"
    end)
    T.is(r, "done", "transaction returns the function's value")
    T.is(other:query("SELECT COUNT(*) AS n FROM t_tx"):await()[1].n, 1, "commit: the row is there")
    local ok, e = pcall(db.transaction, db, function(tx)
        tx:query("INSERT INTO t_tx VALUES (2)"):await()
        error("abort this")
    end)
    T.ok(not ok and tostring(e):find("abort this"), "an error in the function is re-raised")
    T.is(other:query("SELECT COUNT(*) AS n FROM t_tx"):await()[1].n, 1, "rollback: the second row is not there")
    T.is(db:stats().pinned, 0, "no connection left pinned")
    local ok2, e2 = pcall(db.transaction, db, function(tx)
        db:transaction(function() end)
    end)
    T.ok(not ok2 and tostring(e2):find("nested"), "nested transaction is a usage error")
    dbpool.run(function()
        db = open { max = 4 }
        db:transaction(function(tx) tx:query("INSERT INTO t_tx VALUES (3)"):await() end)
    end)
    db = open { max = 4 }
    T.is(db:query("SELECT COUNT(*) AS n FROM t_tx"):await()[1].n, 2, "transaction inside a task commits")
    db:query("DROP TABLE t_tx"):await()
    other:close():await()
end

-- pinned connections by hand, and a leaked one reclaimed
do
    local c = db:acquire():await()
    T.ok(c:query("SELECT 1 AS v"):await()[1].v == 1, "acquire() gives a pinned connection")
    T.is(db:stats().pinned, 1, "stats count it as pinned")
    c:release()
    T.is(db:stats().pinned, 0, "release() returns it")
    T.raises(function() c:query("SELECT 1") end, "a released connection refuses queries", "released")
    do
        local c2 <close> = db:acquire():await()
        c2:query("SELECT 1"):await()
    end
    T.is(db:stats().pinned, 0, "<close> releases it")
    local leaks = {}
    db:on("error", function(ev) if ev.event == "leak" then leaks[#leaks + 1] = ev end end)
    local function leak() local x = db:acquire():await(); x:query("SELECT 1"):await() end
    leak()
    collectgarbage(); collectgarbage()
    db:query("SELECT 1"):await()
    T.ok(#leaks == 1 and leaks[1].where and leaks[1].where:find("test_lua_mysql"),
        "a leaked connection is reported with where it was acquired")
    T.is(db:stats().pinned, 0, "and went back to the pool")
    local function leak_tx() local x = db:acquire():await(); x:query("BEGIN"):await(); x:query("SELECT 1"):await() end
    local created = db:stats().created
    leak_tx()
    collectgarbage(); collectgarbage()
    db:query("SELECT 1"):await()
    T.ok(#leaks == 2 and leaks[2].message:find("discarded"), "one leaked mid-transaction is discarded")
end

-- an error inside a task never leaves a connection checked out
do
    local ok = pcall(dbpool.run, function()
        db = open { max = 2 }
        dbpool.spawn(function()
            db:transaction(function(tx) tx:query("SELECT 1"):await(); error("task failure") end)
        end):await()
    end)
    T.ok(not ok and db._c:state() == "closed", "the failing task's run ended and closed the pool")
    db = open { max = 2 }
    local ok2 = pcall(function()
        db:transaction(function(tx) tx:query("SELECT nope"):await() end)
    end)
    T.ok(not ok2 and db:stats().pinned == 0 and db:stats().busy == 0, "a failed query inside a transaction leaves nothing checked out")
end

-- every value type round-tripped
do
    db:query("DROP TABLE IF EXISTS t_types"):await()
    db:query([[CREATE TABLE t_types (i INT, bi BIGINT, ub BIGINT UNSIGNED, d DOUBLE, f FLOAT, dec1 DECIMAL(20,6),
        s VARCHAR(50), b VARBINARY(50), bl BLOB, dt DATETIME, da DATE, tm TIME, nul INT, e VARCHAR(5), bo BOOLEAN)]]):await()
    local bin = "\0\1\2\255\254'\"\\"
    db:query("INSERT INTO t_types VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        { -42, math.maxinteger, "18446744073709551615", 0.1, 1.5, "12345.678901", "h\195\169llo \240\159\152\128",
          bin, bin:rep(100), "2026-11-22 10:11:12", "2026-11-22", "10:11:12", null, "", true }):await()
    local r = db:query("SELECT * FROM t_types"):await()[1]
    T.ok(r.i == -42 and math.type(r.i) == "integer", "INT -> integer")
    T.ok(r.bi == math.maxinteger and math.type(r.bi) == "integer", "BIGINT max -> integer")
    T.is(r.ub, "18446744073709551615", "BIGINT UNSIGNED above 2^63-1 stays a string")
    T.ok(r.d == 0.1 and math.type(r.d) == "float", "DOUBLE -> number")
    T.is(r.f, 1.5, "FLOAT -> number")
    T.is(r.dec1, "12345.678901", "DECIMAL stays a string")
    T.is(r.s, "h\195\169llo \240\159\152\128", "UTF-8 text round-trips")
    T.is(r.b, bin, "binary with NUL, 0xff and quotes round-trips")
    T.is(r.bl, bin:rep(100), "BLOB round-trips")
    T.is(r.dt, "2026-11-22 10:11:12", "DATETIME is a string")
    T.ok(r.da == "2026-11-22" and r.tm == "10:11:12", "DATE and TIME are strings")
    T.ok(r.nul == null, "NULL is dbpool.null")
    T.ok(r.e == "" and r.e ~= null, "empty string is not NULL")
    T.is(r.bo, 1, "BOOLEAN (TINYINT) -> 1")
    local res = db:query("INSERT INTO t_types (i) VALUES (1), (2)"):await()
    T.ok(res.affected_rows == 2 and res.warning_count == 0 and #res == 0, "affected_rows and warning_count")
    local multi = db:query("SELECT 1 AS a; SELECT 2 AS b"):await()
    T.ok(multi[1].a == 1 and multi.results and multi.results[2][1].b == 2, "several result sets under .results")
    T.ok(r and db:query("SELECT i FROM t_types WHERE i = ?", { -42 }):await()[1].i == -42, "parameters in WHERE")
    db:query("DROP TABLE t_types"):await()
end

-- usage errors raise at the call, before anything is sent
do
    local one = open { max = 1 }
    local function selects()
        return tonumber(one:query("SHOW SESSION STATUS LIKE 'Com_select'"):await()[1].Value)
    end
    local before = selects()
    local e = T.raises(function() one:query("SELECT ?, ?", { 1 }) end, "wrong parameter count raises at the call", "2 placeholders")
    T.ok(dbpool.is_error(e) and e.kind == "usage", "  as a usage error table")
    T.raises(function() one:query("SELECT ?", { {} }) end, "a table as a parameter raises", "table")
    T.raises(function() one:query("SELECT ?", { 0 / 0 }) end, "NaN raises", "NaN")
    T.raises(function() one:query("SELECT ?", { math.huge }) end, "infinity raises", "infinite")
    T.raises(function() one:query(42) end, "a non-string SQL raises", "string")
    T.raises(function() one:call("PING") end, "call() on a MySQL pool raises", "Redis")
    T.is(selects(), before, "nothing reached the server (Com_select of the only connection unchanged)")
    one:close():await()
    T.raises(function() dbpool.open("mysql://u:pw@h/db?nosuch=1") end, "an unknown option raises at open", "unknown option")
    local e2 = T.raises(function() dbpool.open("mysql://u:S3cretPw@h:99999/db") end, "a malformed URL raises at open", "port")
    T.ok(not tostring(e2):find("S3cretPw"), "  without the password")
    T.raises(function() dbpool.open(URL, { max = "lots" }) end, "a bad option value raises", "max")
end

-- streaming 200k rows: the Lua heap stays flat
do
    local n, sum, lo, hi = 0, 0, math.huge, 0
    collectgarbage(); collectgarbage()
    for row in db:rows("SELECT seq AS id, REPEAT('x', 200) AS pad FROM seq_1_to_200000") do
        n = n + 1
        sum = sum + row.id
        if n % 10000 == 0 then
            local kb = collectgarbage("count")
            if n > 20000 then lo = math.min(lo, kb); hi = math.max(hi, kb) end
        end
    end
    T.ok(n == 200000 and sum == 200000 * 200001 // 2, "rows() streamed 200000 rows once each")
    T.ok(hi - lo < 4096, ("the Lua heap stayed flat: %.0f..%.0f KiB"):format(lo, hi))
    -- inside a task the iterator yields between reads: a second task makes progress meanwhile
    local ticks = 0
    dbpool.run(function()
        db = open { max = 4 }
        local ticker = dbpool.spawn(function()
            for _ = 1, 5 do dbpool.sleep(0.01):await(); ticks = ticks + 1 end
        end)
        local count = 0
        for row in db:rows("SELECT seq FROM seq_1_to_50000") do count = count + 1 end
        ticker:await()
        T.is(count, 50000, "rows() inside a task")
    end)
    T.is(ticks, 5, "another task ran while the stream was read")
    db = open { max = 1 }
    local got = 0
    for row in db:rows("SELECT seq FROM seq_1_to_100000") do
        got = got + 1
        if got == 10 then break end
    end
    T.ok(db:query("SELECT 42 AS v"):await()[1].v == 42 and db:stats().total == 1,
        "breaking out of rows() drains the stream and frees the connection")
    local ok, e = pcall(function() for _ in db:rows("SELECT * FROM no_such") do end end)
    T.ok(not ok and e.kind == "sql", "a failing streamed query raises from the loop")
    local rows = {}
    local m = dbpool.map(db:rows("SELECT seq FROM seq_1_to_100"), function(row) return row.seq * 2 end, { concurrency = 4 }):await()
    T.ok(m.n == 100 and m[100] == 200, "map over a rows() iterator")
end

-- stats, ping, events
do
    local p = open { max = 2, slow_threshold = 0.05 }
    local events = {}
    p:on("connect", function(ev) events[#events + 1] = "connect" end)
    p:on("slow", function(ev) events[#events + 1] = "slow:" .. ev.message end)
    local pong = p:ping():await()
    T.ok(pong.rtt >= 0 and pong.rtt < 1 and pong.version:find("MariaDB"), ("ping: rtt %.4f s, version %s"):format(pong.rtt, pong.version))
    p:query("SELECT SLEEP(0.1)"):await()
    p:query("SELECT 1"):await()
    local st = p:stats()
    T.ok(st.total >= 1 and st.ops >= 3 and st.fulfilled >= 3 and st.run_p99 >= 0.09, "stats: totals, counters and run latency")
    T.ok(events[1] == "connect", "connect event")
    local slow = 0
    for _, e in ipairs(events) do if e:find("^slow:.*SLEEP") then slow = slow + 1 end end
    T.is(slow, 1, "slow event for the slow query only")
    -- max = 2: the third of three concurrent queries waits in the queue
    local enq = 0
    p:on("enqueue", function() enq = enq + 1 end)
    dbpool.all { p:query("SELECT SLEEP(0.1)"), p:query("SELECT SLEEP(0.1)"), p:query("SELECT 3") }:await()
    T.ok(enq >= 1, ("enqueue event when an op waits for a connection (%d)"):format(enq))
    p:close():await()
end

-- the error hook hears about a connection the server killed
do
    local p = open { max = 1 }
    local errs = {}
    p:on("error", function(ev) errs[#errs + 1] = ev.message end)
    local id = p:query("SELECT CONNECTION_ID() AS id"):await()[1].id
    db:query("KILL ?", { id }):await()
    local ok = p:query("SELECT SLEEP(0.05)"):result()
    T.ok(ok, "after a KILL of its idle connection the next query succeeds")
    T.ok(#errs >= 1, ("error event for the dropped connection: %s"):format(errs[1] or "none"))
    p:close():await()
end

db:close():await()
collectgarbage(); collectgarbage()
local fds1 = fds_upto(fds0)
T.ok(fds1 <= fds0, "no file descriptor leaked (" .. fds0 .. " -> " .. fds1 .. ")")
T.done()
