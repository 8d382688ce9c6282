-- bench_lua.lua - point selects by primary key from Lua: dbpool (a pool of
-- 8) against LuaSQL (lua-sql-mysql, one blocking connection), and against
-- dbpool's C API on the same workload (build/bench/bench_mysql --only pool),
-- in one run.
--
--   lua5.4 bench/bench_lua.lua        (under scripts/with-servers.sh; bench/run.sh does it)
--
-- Environment: DBPOOL_TEST_MYSQL_URL, DBPOOL_TEST_MYSQL_PASSWORD (from
-- scripts/servers.sh env); BENCH_MYSQL_N (queries per measurement, 100000;
-- 10000 with BENCH_QUICK=1), BENCH_MYSQL_ROWS (100000), BENCH_MYSQL_POOL (8),
-- BENCH_MYSQL_INFLIGHT (64: map's concurrency, the batch size and the
-- window), BENCH_LUA_MODES (map,batch,window,many), BENCH_MYSQL_BIN (the C
-- benchmark, default build/bench/bench_mysql), BENCH_MAX_SECONDS (120).
--
-- The dbpool side is measured four ways (each with its own line):
--   map     dbpool.map(ids, fn, {concurrency = K}), fn awaits one query
--   batch   submit K promises, await them all, submit the next K
--   window  a sliding window of K promises: await the oldest, submit one
--   many    db:query_many(sql, K params lists), one promise per batch
-- The best of them is the headline figure (lua_pool8), and the line says
-- which. Every reply is checked: one row, the id asked for. Each
-- measurement runs in a fresh interpreter (`--one MODE`), warmed up first.
local U = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/bench_util.lua")
local dbpool = require "dbpool"

local G = "lua-mysql"
local script = arg and arg[0] or "bench/bench_lua.lua"
local url = U.need_env("DBPOOL_TEST_MYSQL_URL")
local N = U.count("BENCH_MYSQL_N", 100000, 10000)
local ROWS = U.env_int("BENCH_MYSQL_ROWS", 100000)
local POOL = U.env_int("BENCH_MYSQL_POOL", 8)
local K = U.env_int("BENCH_MYSQL_INFLIGHT", 64)
local MAX_S = U.max_seconds
local SQL = U.MYSQL_SELECT

local errors = 0
local function check(rows, id)
    if #rows ~= 1 or rows[1].id ~= id then
        errors = errors + 1
        if errors <= 3 then io.stderr:write("bench_lua: wrong reply for id ", id, "\n") end
    end
end

---------------------------------------------------------------------------
-- One measurement (a child process): bench_lua.lua --one MODE
---------------------------------------------------------------------------
local runners = {}

-- LuaSQL, one blocking connection.
function runners.luasql(ids, n)
    local luasql = require "luasql.mysql"
    local u = U.parse_url(url)
    local env = luasql.mysql()
    local con = assert(env:connect(u.database, u.user, os.getenv("DBPOOL_TEST_MYSQL_PASSWORD") or u.password,
        u.host, u.port))
    con:execute("SET NAMES utf8mb4")
    local prefix = "SELECT id, k, c FROM bench_points WHERE id = "
    local t0, capped, i = U.now(), false, 0
    while i < n do
        if i % 256 == 0 and U.now() - t0 > MAX_S then capped = true break end
        i = i + 1
        local id = ids[i]
        local cur = con:execute(prefix .. id)
        local row = cur and cur:fetch({}, "a")
        if not row or tonumber(row.id) ~= id or cur:fetch() then errors = errors + 1 end
        if cur then cur:close() end
    end
    local secs = U.now() - t0
    con:close()
    env:close()
    return i, secs, capped, tostring(luasql._VERSION)
end

-- dbpool.map with a concurrency bound; each item's task awaits its query.
function runners.map(ids, n, db)
    local t0, capped = U.now(), false
    local list = n == #ids and ids or table.move(ids, 1, n, 1, {})
    local done = 0
    dbpool.map(list, function(id)
        if capped then return end
        if done % 256 == 0 and U.now() - t0 > MAX_S then capped = true return end
        check(db:query(SQL, { id }):await(), id)
        done = done + 1
    end, { concurrency = K }):await()
    return done, U.now() - t0, capped, "dbpool.map, concurrency " .. K
end

-- query_many: batches of K point selects, one promise per batch (the bulk form).
function runners.many(ids, n, db)
    local t0, capped, i = U.now(), false, 0
    local list = {}
    while i < n do
        if U.now() - t0 > MAX_S then capped = true break end
        local m = math.min(K, n - i)
        for j = 1, m do list[j] = { ids[i + j] } end
        for j = m + 1, #list do list[j] = nil end
        local res = db:query_many(SQL, list):await()
        for j = 1, m do check(res[j], ids[i + j]) end
        i = i + m
    end
    return i, U.now() - t0, capped, "query_many, batches of " .. K
end

-- Batches of K promises, and a sliding window of K (bench_util.lua).
for mode, drive in pairs(U.drivers) do
    runners[mode] = function(ids, n, db)
        return drive(n, K, function(i) return db:query(SQL, { ids[i] }) end,
            function(p, i) check(p:await(), ids[i]) end)
    end
end

-- (bench_lua.lua and bench_redis.lua run a measurement in the same steps,
-- each over its own state and figures: kept apart, like their headers.)
if arg and arg[1] == "--one" then
    local mode = arg[2]
    local run = U.runner(runners, "bench_lua", mode)
    local ids = U.ids(N, ROWS)
    local warm = math.max(math.min(N // 20, 5000), math.min(N, 500))
    local db = mode ~= "luasql" and dbpool.open(url, { max = POOL, prepare = ({ ["0"] = false, ["1"] = true })[os.getenv("BENCH_MYSQL_PREPARE") or ""] }) or nil
    run(ids, warm, db)
    collectgarbage()
    local n, secs, capped, what = run(ids, N, db)
    local name = mode == "luasql" and "luasql_1conn" or ("lua_" .. mode .. "_pool" .. POOL)
    U.rate(G, name, n, secs, "q/s", capped, what)
    if db then
        local st = db:stats()
        db:close():await()
        U.info(G, "%s: %d connections, run p50 %.0f us, p99 %.0f us", mode, st.total or -1,
            (st.run_p50 or 0) * 1e6, (st.run_p99 or 0) * 1e6)
    end
    if errors > 0 then
        io.stderr:write("bench_lua: ", errors, " queries failed or returned a wrong row\n")
        os.exit(1)
    end
    os.exit(0)
end

---------------------------------------------------------------------------
-- The run: the table, then each measurement in a child, then the C API
---------------------------------------------------------------------------
do
    local db = dbpool.open(url, { max = POOL })
    U.ensure_mysql_table(db, dbpool, ROWS)
    db:close():await()
end
print(string.format("bench_lua: %d point selects by primary key on %d rows (%s)", N, ROWS, SQL))

local function measure(mode, name)
    local rate, ok = U.measure(script, mode, G, name)
    if not ok then errors = errors + 1 end
    return rate
end

local luasql_rate
if pcall(require, "luasql.mysql") then
    luasql_rate = measure("luasql", "luasql_1conn")
else
    U.info(G, "luasql: not available (require 'luasql.mysql' failed: install lua-sql-mysql)")
end

local best, best_mode = 0, nil
for m in (os.getenv("BENCH_LUA_MODES") or "map,batch,window,many"):gmatch("[^,%s]+") do
    local r = measure(m, "lua_" .. m .. "_pool" .. POOL)
    if r and r > best then best, best_mode = r, m end
end
if best_mode then U.show(G, "lua_pool" .. POOL, best, "q/s", "headline = the best mode: " .. best_mode) end

local c_rate, c_failed = U.c_figure(G, "BENCH_MYSQL_BIN", U.repo .. "/build/bench/bench_mysql",
    string.format("--only pool -n %d --rows %d --pool %d --inflight %d", N, ROWS, POOL, K),
    "mysql", "c_pool" .. POOL, "q/s", "bench_mysql --only pool: C API, same ids, same run", "bench_lua")
if c_failed then errors = errors + 1 end

if best_mode and luasql_rate and luasql_rate > 0 then
    U.ratio(G, "lua_pool" .. POOL .. "/luasql_1conn", best / luasql_rate, 4)
end
if best_mode and c_rate and c_rate > 0 then U.ratio(G, "lua_pool" .. POOL .. "/c_pool" .. POOL, best / c_rate, 0.9) end

if errors > 0 then
    io.stderr:write("bench_lua: ", errors, " measurements failed\n")
    os.exit(1)
end
