#!/usr/bin/env lua5.4
-- The Lua API against a real PostgreSQL: the seed scenario, values both ways
-- (booleans, integers, numeric as text, bytea, NULL), $n parameters, errors
-- with sqlstate/detail/hint, transactions (an aborted one rolled back),
-- rows() streaming, notices, DATABASE_URL.
package.path = arg[0]:match("^(.*)/[^/]*$") .. "/../lib/?.lua;" .. package.path
local T = require "tap"
local dbpool = require "dbpool"
local URL = T.env("DBPOOL_TEST_PG_URL")
local PASSWORD = T.env("DBPOOL_TEST_PG_PASSWORD")
local null = dbpool.null
local fds0 = T.fds()

local function open(opts) return dbpool.open(URL, opts) end

-- seed scenario first: 5 queries on a pool of 2, close right after submitting
do
    local db = open { max = 2 }
    local ps = {}
    for i = 1, 5 do ps[i] = db:query("SELECT pg_sleep(0.05), $1::int AS i", { i }) end
    local closing = db:close()
    local ok, err = db:query("SELECT 'late'"):result()
    T.ok(not ok and err.kind == "closed", "a query during close is rejected with kind closed: " .. tostring(err))
    T.ok(closing:result(), "close settles")
    local n = 0
    for i = 1, 5 do
        local ok2, r = ps[i]:result()
        if ok2 and r[1].i == i then n = n + 1 end
    end
    T.is(n, 5, "seed: all 5 fulfilled, each with its own result")
    ok, err = db:query("SELECT 'later'"):result()
    T.ok(not ok and err.kind == "closed", "a late query is rejected as closed")
end

local db = open { max = 4 }
T.ok(not tostring(db):find(PASSWORD, 1, true) and tostring(db):find("postgres://dbpool@127.0.0.1"),
    "tostring(pool) shows backend, host, db, no password: " .. tostring(db))

-- values, both ways
do
    local bin = "a\0b'\\\"\255\128"
    local num40 = "1234567890123456789012345678901234567890.0123456789"
    db:query("DROP TABLE IF EXISTS t_lua_values"):await()
    db:query([[CREATE TABLE t_lua_values (id int PRIMARY KEY, b bool, nb bool, i8 int8, f float8, n numeric(60,10),
               y bytea, t text, z text, d date)]]):await()
    local r = db:query("INSERT INTO t_lua_values VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        { 1, true, false, math.mininteger, 0.1, num40, bin, "h\195\169", null, "2024-02-29" }):await()
    T.is(r.affected_rows, 1, "insert with $1..$10 (booleans, min integer, float, numeric text, bytes, NULL)")
    r = db:query("SELECT * FROM t_lua_values WHERE id = $1", { 1 }):await()
    local row = r[1]
    T.ok(row.b == true and row.nb == false, "bool comes back as Lua booleans")
    T.ok(math.type(row.i8) == "integer" and row.i8 == math.mininteger, "int8 is a Lua integer (minimum included)")
    T.ok(math.type(row.f) == "float" and row.f == 0.1, "float8 is a Lua float")
    T.is(row.n, num40, "numeric stays an exact string (40 digits)")
    T.is(row.y, bin, "bytea with NUL and 0xff round-trips as a Lua string")
    T.is(row.t, "h\195\169", "UTF-8 text")
    T.ok(row.z == null, "NULL is dbpool.null")
    T.is(row.d, "2024-02-29", "a date is the server's text")
    T.is(r.columns[1], "id", "columns in order")
    T.ok(r.insert_id == nil or r.insert_id == 0, "no insert_id on PostgreSQL (use RETURNING)")
    r = db:query("INSERT INTO t_lua_values (id) VALUES ($1) RETURNING id * 10 AS x", { 2 }):await()
    T.is(r[1].x, 20, "RETURNING gives the new row")
    r = db:query("SELECT 1 AS a; SELECT 2 AS b"):await()
    T.ok(r.results and #r.results == 2 and r.results[2][1].b == 2, "several statements give results[]")
    db:query("DROP TABLE t_lua_values"):await()
end

-- prepared statements: per query, and for the whole pool
do
    local r = db:query("SELECT $1::int * 2 AS v", { 21 }, { prepare = true }):await()
    T.is(r[1].v, 42, "a query with { prepare = true }")
    local p = open { max = 1, prepare = true }
    local sum = 0
    for i = 1, 20 do sum = sum + p:query("SELECT $1::int AS v", { i }):await()[1].v end
    T.is(sum, 210, "a pool with prepare = true runs its queries prepared")
    T.is(p:query("SELECT count(*) AS n FROM pg_prepared_statements"):await()[1].n, 1, "  one statement, prepared once")
    p:close():await()
end

-- errors
do
    local ok, err = pcall(db.query, db, "SELECT $1, $2", { 1 })
    T.ok(not ok and err.kind == "usage" and err.sent == false, "$n count mismatch raises at the call: kind usage, not sent: " .. tostring(err))
    T.raises(function() db:query("SELECT $1", { 0 / 0 }) end, "NaN raises at the call")
    db:query("CREATE TEMP TABLE IF NOT EXISTS t_err (a int PRIMARY KEY)"):await()
    ok, err = db:query("SELECT * FROM no_such_table"):result()
    T.ok(not ok and err.kind == "sql" and err.sqlstate == "42P01", "an SQL error: kind sql, sqlstate 42P01: " .. tostring(err))
    ok, err = db:query("SELECT no_such_function(1)"):result()
    T.ok(not ok and err.sqlstate == "42883" and type(err.hint) == "string" and #err.hint > 0, "hint: " .. tostring(err.hint))
    local p = open { max = 1 }
    p:query("CREATE TEMP TABLE t_dup (a int PRIMARY KEY)"):await()
    p:query("INSERT INTO t_dup VALUES (1)"):await()
    ok, err = p:query("INSERT INTO t_dup VALUES (1)"):result()
    T.ok(not ok and err.sqlstate == "23505" and tostring(err.detail):find("already exists"), "detail: " .. tostring(err.detail))
    p:close():await()
    local bad = dbpool.open((URL:gsub("^(postgres://[^:]+:)[^@]+@", "%1Wr0ngPw@")))
    ok, err = bad:query("SELECT 1"):result()
    T.ok(not ok and err.kind == "auth" and not tostring(err):find("Wr0ngPw", 1, true), "a wrong password: kind auth: " .. tostring(err))
    bad:close():await()
end

-- transactions
do
    db:query("DROP TABLE IF EXISTS t_lua_tx"):await()
    db:query("CREATE TABLE t_lua_tx (a int PRIMARY KEY)"):await()
    local r = db:transaction(function(tx)
        tx:query("INSERT INTO t_lua_tx VALUES ($1)", { 1 }):await()
        return "done"
    end)
    T.is(r, "done", "transaction returns the function's value")
    local ok, e = pcall(db.transaction, db, function(tx)
        tx:query("INSERT INTO t_lua_tx VALUES (2)"):await()
        tx:query("INSERT INTO t_lua_tx VALUES (1)"):await() -- duplicate: the transaction is aborted (state E)
    end)
    T.ok(not ok and e.sqlstate == "23505", "an error inside a transaction is raised: " .. tostring(e))
    T.is(db:query("SELECT count(*) AS n FROM t_lua_tx"):await()[1].n, 1, "and rolled back: only the committed row")
    local c = db:acquire():await()
    c:query("BEGIN"):await()
    c:query("SELECT 1/0"):result()
    T.ok(c:in_transaction(), "a pinned connection in an aborted transaction says so")
    c:release()
    local c2 = db:acquire():await()
    T.ok(not c2:in_transaction() and c2:query("SELECT 1 AS x"):await()[1].x == 1, "released in state E: rolled back before reuse")
    c2:release()
    db:query("DROP TABLE t_lua_tx"):await()
end

-- rows(): streaming
do
    local n, sum = 0, 0
    for row in db:rows("SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 50000) g") do
        n = n + 1
        sum = sum + row.id
    end
    T.ok(n == 50000 and sum == 50000 * 50001 // 2, "rows() streamed 50000 rows once each")
    local count = 0
    for _ in db:rows("SELECT g FROM generate_series(1, 100000) g") do
        count = count + 1
        if count == 10 then break end
    end
    T.is(db:query("SELECT 5 AS five"):await()[1].five, 5, "breaking out of rows() leaves the pool usable")
end

-- notices go to the hook, not to stderr
do
    local seen = {}
    db:on("notice", function(ev) seen[#seen + 1] = ev.message end)
    db:query("DO $$BEGIN RAISE NOTICE 'from plpgsql %', 7; END$$"):await()
    dbpool.sleep(0.01):await()
    T.is(seen[1], "NOTICE: from plpgsql 7", "notice event")
end

-- subscribe: LISTEN/NOTIFY, resubscribed after the backend is terminated
do
    local p = open { max = 1, application_name = "lua_listener", backoff_max = 0.2 }
    local got, gaps = {}, 0
    local sub = p:subscribe({ "events" }, function(channel, payload) got[#got + 1] = channel .. "=" .. payload end)
    sub:on_gap(function() gaps = gaps + 1 end)
    sub:ready():await()
    db:query("SELECT pg_notify('events', $1)", { "first" }):await()
    for _ = 1, 100 do if #got >= 1 then break end dbpool.sleep(0.02):await() end
    T.is(got[1], "events=first", "a notification reaches the handler")
    db:query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'lua_listener'"):await()
    for _ = 1, 250 do if gaps >= 1 then break end dbpool.sleep(0.02):await() end
    T.ok(gaps == 1 and sub:reconnects() == 1, "after pg_terminate_backend the subscription reconnects and reports the gap")
    for _ = 1, 50 do
        db:query("SELECT pg_notify('events', 'second')"):await()
        dbpool.sleep(0.05):await()
        if #got >= 2 then break end
    end
    T.is(got[2], "events=second", "notifications arrive again")
    T.raises(function() p:psubscribe({ "e*" }, function() end) end, "psubscribe is refused on PostgreSQL")
    sub:unsubscribe()
    p:close():await()
end

-- DATABASE_URL is the default, ping has the version
do
    local ok_env = pcall(function()
        local p = dbpool.open(nil, { max = 1 })
        p:close():await()
    end)
    T.ok(ok_env or not os.getenv("DATABASE_URL"), "dbpool.open() without a URL uses DATABASE_URL when set")
    local ping = db:ping():await()
    T.ok(ping ~= nil, "ping")
end

db:close():await()
collectgarbage(); collectgarbage()
T.ok(T.fds() <= fds0 + 1, "no file descriptor leaked (" .. fds0 .. " -> " .. T.fds() .. ")")
T.done()
