#!/usr/bin/env lua5.4
-- Prepared statements from Lua (`prepare = true` on the pool or per query)
-- against a real MariaDB: the same values and result shape as text queries
-- for every column type, NULLs, errors, the cache, a reconnect.
package.path = arg[0]:match("^(.*)/[^/]*$") .. "/../lib/?.lua;" .. package.path
local T = require "tap"
local dbpool = require "dbpool"
local URL = T.env("DBPOOL_TEST_MYSQL_URL")
local null = dbpool.null

-- Where two Lua values differ (nil when they are the same, integer subtype included).
local function diff(a, b, path)
    path = path or "result"
    if type(a) ~= type(b) then return path .. ": " .. type(a) .. " vs " .. type(b) end
    if type(a) == "number" and math.type(a) ~= math.type(b) then
        return path .. ": " .. math.type(a) .. " " .. tostring(a) .. " vs " .. math.type(b) .. " " .. tostring(b)
    end
    if type(a) ~= "table" then
        if a ~= b then return path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
        return nil
    end
    for k, v in pairs(a) do
        local d = diff(v, b[k], path .. "." .. tostring(k))
        if d then return d end
    end
    for k in pairs(b) do
        if a[k] == nil then return path .. "." .. tostring(k) .. ": missing on the left" end
    end
    return nil
end

dbpool.run(function()
    local text = dbpool.open(URL, { max = 1 })
    local ps = dbpool.open(URL, { max = 1, prepare = true, prepare_cache = 4 })
    text:query("DROP TABLE IF EXISTS t_lua_ps"):await()
    text:query([[CREATE TABLE t_lua_ps (id INT PRIMARY KEY, ti TINYINT, bi BIGINT, ub BIGINT UNSIGNED,
        f FLOAT, d DOUBLE, dec_ DECIMAL(12,3), dt DATE, dtm DATETIME(3), yr YEAR, vc VARCHAR(32),
        vb VARBINARY(32), tx TEXT, bt BIT(4), js JSON)]]):await()
    local r = ps:query("INSERT INTO t_lua_ps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        { 1, -5, math.mininteger, "18446744073709551615", 1.5, 0.1, "-123456789.125", "2024-02-29",
          "2024-01-02 03:04:05.678", 2024, "h\u{e9}llo", "\0\1\255", "text", 9, '{"a": [1, null]}' }):await()
    T.is(r.affected_rows, 1, "a prepared INSERT with 15 values of every kind")
    ps:query("INSERT INTO t_lua_ps (id) VALUES (?)", { 2 }):await()
    local a = text:query("SELECT * FROM t_lua_ps ORDER BY id"):await()
    local b = ps:query("SELECT * FROM t_lua_ps ORDER BY id"):await()
    local d = diff(a, b)
    T.ok(not d, "every column type: the prepared result equals the text one (values, Lua types, columns, counts)"
        .. (d and (": " .. d) or ""))
    T.ok(b[2].ti == null and b[2].js == null, "NULLs are dbpool.null")
    T.ok(math.type(b[1].bi) == "integer" and b[1].bi == math.mininteger and b[1].ub == "18446744073709551615",
        "BIGINT min is an integer, BIGINT UNSIGNED max stays a string")
    T.is(b[1].vb, "\0\1\255", "binary bytes round-trip")
    T.ok(math.type(b[1].d) == "float" and b[1].d == 0.1, "a DOUBLE is a float")

    local x = text:query("SELECT id, vc FROM t_lua_ps WHERE id = ?", { 1 }, { prepare = true }):await()
    T.is(x[1].vc, "h\u{e9}llo", "{ prepare = true } on one query of a text pool")

    local ok, err = ps:query("INSERT INTO t_lua_ps (id) VALUES (?)", { 1 }):result()
    T.ok(not ok and err.kind == "sql" and err.code == 1062 and err.sent, "a duplicate key raises kind sql, code 1062: "
        .. tostring(err))
    ok, err = ps:query("SELECT nope FROM t_lua_ps WHERE id = ?", { 1 }):result()
    T.ok(not ok and err.code == 1054, "an unknown column: code 1054, as with text")
    local m = ps:query("SELECT 1 AS a; SELECT 2 AS b"):await()
    T.ok(m[1].a == 1 and m.results and m.results[2][1].b == 2, "several statements still give every result set")

    -- more statements than the cache holds, in turn
    local good = 0
    for i = 1, 20 do
        local q = ps:query("SELECT ? + " .. (i % 6) .. " AS v", { i }):await()
        if q[1].v == i + i % 6 then good = good + 1 end
    end
    T.is(good, 20, "6 statements in turn through a cache of 4: every result right")

    -- a reconnect: the connection killed on the server, its statements prepared again on the next
    local id = ps:query("SELECT CONNECTION_ID() AS id"):await()[1].id
    text:query("KILL " .. id):await()
    dbpool.sleep(0.2):await()
    local ok2, res = ps:query("SELECT CONNECTION_ID() AS id, ? AS x", { 5 }):result()
    if not ok2 then ok2, res = ps:query("SELECT CONNECTION_ID() AS id, ? AS x", { 5 }):result() end
    T.ok(ok2 and res[1].id ~= id and res[1].x == 5, "after the server killed the connection, a new one prepares again")

    text:query("DROP TABLE t_lua_ps"):await()
end)
T.done()
