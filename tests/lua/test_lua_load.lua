#!/usr/bin/env lua5.4
-- pool:load against real servers: 200k rows into PostgreSQL (COPY) and into
-- MySQL (batched INSERTs) with memory flat, keyed and list rows, NULLs, a
-- failing load, and a table copied MySQL -> PostgreSQL fed by rows().
package.path = arg[0]:match("^(.*)/[^/]*$") .. "/../lib/?.lua;" .. package.path
local T = require "tap"
local dbpool = require "dbpool"
local PG_URL = T.env("DBPOOL_TEST_PG_URL")
local MY_URL = T.env("DBPOOL_TEST_MYSQL_URL")
local null = dbpool.null

local function rss_kb()
    local f = io.open("/proc/self/status")
    if not f then return 0 end
    local kb = f:read("a"):match("VmRSS:%s*(%d+)")
    f:close()
    return tonumber(kb) or 0
end

local pg = dbpool.open(PG_URL, { max = 4 })
local my = dbpool.open(MY_URL, { max = 4 })
-- (20000 under a checker, whose run is many times slower; memory is not asserted there)
local CHECKED = (os.getenv("LD_PRELOAD") or ""):find("asan") or (os.getenv("LD_PRELOAD") or ""):find("vgpreload")
local N = CHECKED and 20000 or 200000

-- a generator of N rows, as a migration would produce them; memory sampled as it goes
local function generator(n, samples)
    local i = 0
    return function()
        i = i + 1
        if i > n then return nil end
        if i % 20000 == 0 then samples[#samples + 1] = rss_kb() end
        return { i, "name " .. i, i % 7 == 0 and null or i * 0.5, i % 2 == 0 }
    end
end

local function flat(samples)
    -- after the first fifth, resident memory grows by less than 16 MB
    local base, top = samples[2] or 0, 0
    for k = 2, #samples do if samples[k] > top then top = samples[k] end end
    return top - base < 16384, base, top
end

for _, case in ipairs { { name = "PostgreSQL (COPY)", db = pg, ddl = "id int8 PRIMARY KEY, name text, score float8, even bool" },
                        { name = "MySQL (batched INSERT)", db = my, ddl = "id BIGINT PRIMARY KEY, name VARCHAR(64), score DOUBLE, even BOOL" } } do
    local db = case.db
    db:query("DROP TABLE IF EXISTS t_load"):await()
    db:query("CREATE TABLE t_load (" .. case.ddl .. ")"):await()
    local samples = {}
    collectgarbage()
    local t0 = dbpool._core.now()
    local n = db:load("t_load", { "id", "name", "score", "even" }, generator(N, samples)):await()
    local secs = dbpool._core.now() - t0
    T.is(n, N, ("%s: load of %d rows reports them all (%.2f s, %.0f rows/s)"):format(case.name, N, secs, N / secs))
    local r = db:query("SELECT count(*) AS n, sum(id) AS s, sum(CASE WHEN score IS NULL THEN 1 ELSE 0 END) AS nulls FROM t_load"):await()[1]
    T.ok(tonumber(r.n) == N and tonumber(r.s) == N * (N + 1) // 2 and tonumber(r.nulls) == N // 7,
        ("%s: count, sum and NULLs as generated (%s, %s, %s)"):format(case.name, r.n, r.s, r.nulls))
    local ok, base, top = flat(samples)
    if CHECKED then
        -- AddressSanitizer's quarantine and Valgrind's own heap: RSS says nothing there
        T.ok(true, ("%s: memory flat while loading # skip under a checker (RSS %d kB -> at most %d kB)"):format(case.name, base, top))
    else
        T.ok(ok, ("%s: memory flat while loading (RSS %d kB -> at most %d kB)"):format(case.name, base, top))
    end
    -- keyed rows and list rows, quotes and odd names
    db:query("DELETE FROM t_load"):await()
    n = db:load("t_load", { "id", "name", "score", "even" }, {
        { id = 1, name = "it's \"quoted\"\t\\ tab", even = true },
        { 2, "two\nlines", 2.5, false },
    }):await()
    T.is(n, 2, case.name .. ": keyed rows (a missing key is NULL) and list rows")
    local rows = db:query("SELECT id, name, score FROM t_load ORDER BY id"):await()
    T.ok(rows[1].name == "it's \"quoted\"\t\\ tab" and rows[1].score == null and rows[2].name == "two\nlines" and rows[2].score == 2.5,
        case.name .. ": values arrive exactly as given")
    -- a failing load
    local okl, err = db:load("t_load", { "id", "name" }, { { 3, "ok" }, { 1, "duplicate" } }):result()
    T.ok(not okl and err.kind == "sql", case.name .. ": a failing load is rejected: " .. tostring(err))
end

-- a source that fails half-way: the COPY is ended with an error, nothing is stored
do
    pg:query("DELETE FROM t_load"):await()
    local i = 0
    local ok, err = pg:load("t_load", { "id", "name", "score", "even" }, function()
        i = i + 1
        if i == 5000 then error("the source broke") end
        return { i, "n", 1.0, true }
    end):result()
    T.ok(not ok and tostring(err):find("the source broke"), "a source that raises rejects the load: " .. tostring(err))
    T.is(pg:query("SELECT count(*) AS n FROM t_load"):await()[1].n, 0, "  and the COPY stored nothing")
    ok, err = pcall(pg.load, pg, "t_load", {}, {})
    T.ok(not ok and err.kind == "usage", "load without columns is a usage error")
end

-- MySQL -> PostgreSQL, fed by rows(): the migration in one line
do
    my:query("DROP TABLE IF EXISTS t_src"):await()
    my:query("CREATE TABLE t_src (id INT PRIMARY KEY, label VARCHAR(32), amount DECIMAL(20,4), note TEXT)"):await()
    my:load("t_src", { "id", "label", "amount", "note" }, (function()
        local i = 0
        return function()
            i = i + 1
            if i > 50000 then return nil end
            return { i, "l" .. (i % 100), ("%d.%04d"):format(i, i % 10000), i % 3 == 0 and null or ("note " .. i) }
        end
    end)()):await()
    pg:query("DROP TABLE IF EXISTS t_dst"):await()
    pg:query("CREATE TABLE t_dst (id int PRIMARY KEY, label text, amount numeric(20,4), note text)"):await()
    local copied = dbpool.run(function()
        return pg:load("t_dst", { "id", "label", "amount", "note" }, my:rows("SELECT id, label, amount, note FROM t_src")):await()
    end)
    pg = dbpool.open(PG_URL, { max = 4 }) -- (run closed every pool)
    my = dbpool.open(MY_URL, { max = 4 })
    T.is(copied, 50000, "a MySQL table copied into PostgreSQL with load() fed by rows()")
    local a = my:query("SELECT count(*) AS n, SUM(id) AS s, SUM(amount) AS m, SUM(note IS NULL) AS z FROM t_src"):await()[1]
    local b = pg:query("SELECT count(*) AS n, sum(id) AS s, sum(amount) AS m, sum((note IS NULL)::int) AS z FROM t_dst"):await()[1]
    T.ok(tonumber(a.n) == tonumber(b.n) and tonumber(a.s) == tonumber(b.s) and a.m == b.m and tonumber(a.z) == tonumber(b.z),
        ("both sides agree: count %s/%s, sum %s/%s, decimal sum %s/%s, NULLs %s/%s"):format(a.n, b.n, a.s, b.s, a.m, b.m, a.z, b.z))
    my:query("DROP TABLE t_src"):await()
    pg:query("DROP TABLE t_dst"):await()
end

pg:query("DROP TABLE IF EXISTS t_load"):await()
my:query("DROP TABLE IF EXISTS t_load"):await()
pg:close():await()
my:close():await()
T.done()
