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
-- window), BENCH_LUA_MODES (map,batch,window), BENCH_MYSQL_BIN (the C
-- benchmark, default build/bench/bench_mysql), BENCH_MAX_SECONDS (120).
--
-- The dbpool side is measured three ways (each with its own line):
--   map     dbpool.map(ids, fn, {concurrency = K}), fn awaits one query
--   batch   submit K promises, await them all, submit the next K
--   window  a sliding window of K promises: await the oldest, submit one
-- The best of them is the headline figure (lua_pool8), and the line says
-- which. Every reply is checked: one row, the id asked for.
local U = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/bench_util.lua")
local dbpool = require "dbpool"

local G = "lua-mysql"
local url = U.need_env("DBPOOL_TEST_MYSQL_URL")
local N = U.count("BENCH_MYSQL_N", 100000, 10000)
local ROWS = U.env_int("BENCH_MYSQL_ROWS", 100000)
local POOL = U.env_int("BENCH_MYSQL_POOL", 8)
local K = U.env_int("BENCH_MYSQL_INFLIGHT", 64)
local MAX_S = U.max_seconds
local SQL = U.MYSQL_SELECT
local modes = {}
for m in (os.getenv("BENCH_LUA_MODES") or "map,batch,window"):gmatch("[^,%s]+") do modes[#modes + 1] = m end

local ids = U.ids(N, ROWS)
local warm = math.max(math.min(N // 20, 5000), math.min(N, 500))
local errors = 0

local db = dbpool.open(url, { max = POOL })
U.ensure_mysql_table(db, dbpool, ROWS)
print(string.format("bench_lua: %d point selects by primary key on %d rows (%s)", N, ROWS, SQL))

local function check(rows, id)
    if #rows ~= 1 or rows[1].id ~= id then
        errors = errors + 1
        if errors <= 3 then io.stderr:write("bench_lua: wrong reply for id ", id, "\n") end
    end
end

---------------------------------------------------------------------------
-- LuaSQL, one blocking connection
---------------------------------------------------------------------------
local luasql_rate
do
    local ok, luasql = pcall(require, "luasql.mysql")
    if not ok then
        print("[" .. G .. "] # luasql: not available (" .. tostring(luasql):match("^[^\n]*") .. ")")
    else
        local u = U.parse_url(url)
        local env = luasql.mysql()
        local con = assert(env:connect(u.database, u.user, os.getenv("DBPOOL_TEST_MYSQL_PASSWORD") or u.password,
            u.host, u.port))
        con:execute("SET NAMES utf8mb4")
        local prefix = "SELECT id, k, c FROM bench_points WHERE id = "
        local function run(n)
            local t0, capped = U.now(), false
            local i = 0
            while i < n do
                if i % 256 == 0 and U.now() - t0 > MAX_S then capped = true break end
                i = i + 1
                local id = ids[i]
                local cur = con:execute(prefix .. id)
                local row = cur and cur:fetch({}, "a")
                if not row or tonumber(row.id) ~= id or cur:fetch() then errors = errors + 1 end
                if cur then cur:close() end
            end
            return i, U.now() - t0, capped
        end
        run(warm)
        local n, secs, capped = run(N)
        luasql_rate = U.rate(G, "luasql_1conn", n, secs, "q/s", capped, tostring(luasql._VERSION))
        con:close()
        env:close()
    end
end

---------------------------------------------------------------------------
-- dbpool from Lua
---------------------------------------------------------------------------
local runners = {}

-- dbpool.map with a concurrency bound; each item's task awaits its query.
function runners.map(n)
    local t0, capped = U.now(), false
    local list = n == N and ids or table.move(ids, 1, n, 1, {})
    local done = 0
    dbpool.map(list, function(id)
        if capped then return end
        if done % 256 == 0 and U.now() - t0 > MAX_S then capped = true return end
        check(db:query(SQL, { id }):await(), id)
        done = done + 1
    end, { concurrency = K }):await()
    return done, U.now() - t0, capped
end

-- Batches of K promises, each batch awaited before the next is submitted.
function runners.batch(n)
    local t0, capped = U.now(), false
    local i, batch, bids = 0, {}, {}
    while i < n do
        if U.now() - t0 > MAX_S then capped = true break end
        local m = math.min(K, n - i)
        for j = 1, m do
            local id = ids[i + j]
            bids[j] = id
            batch[j] = db:query(SQL, { id })
        end
        for j = 1, m do check(batch[j]:await(), bids[j]) end
        i = i + m
    end
    return i, U.now() - t0, capped
end

-- A sliding window: K promises in flight, await the oldest, submit the next.
function runners.window(n)
    local t0, capped = U.now(), false
    local ring, rid = {}, {}
    local submitted, done = 0, 0
    while done < n do
        while submitted < n and submitted - done < K and not capped do
            submitted = submitted + 1
            local slot = submitted % K + 1
            rid[slot] = ids[submitted]
            ring[slot] = db:query(SQL, { ids[submitted] })
        end
        if submitted == done then break end
        done = done + 1
        local slot = done % K + 1
        check(ring[slot]:await(), rid[slot])
        ring[slot] = nil
        if done % 256 == 0 and U.now() - t0 > MAX_S then capped = true end
    end
    return done, U.now() - t0, capped
end

local best, best_mode = 0, nil
for _, mode in ipairs(modes) do
    local run = runners[mode]
    if not run then
        io.stderr:write("bench_lua: unknown mode '", mode, "' in BENCH_LUA_MODES (map, batch, window)\n")
        os.exit(2)
    end
    run(warm)
    collectgarbage()
    local n, secs, capped = run(N)
    local r = U.rate(G, "lua_" .. mode .. "_pool" .. POOL, n, secs, "q/s", capped,
        mode == "map" and ("dbpool.map, concurrency " .. K)
        or mode == "batch" and ("batches of " .. K .. " promises")
        or ("sliding window of " .. K .. " promises"))
    if r > best then best, best_mode = r, mode end
end
local st = db:stats()
db:close():await()
U.show(G, "lua_pool" .. POOL, best, "q/s", "headline = the best mode: " .. tostring(best_mode))
U.info(G, "pool: %d connections, run p50 %.0f us, p99 %.0f us", st.total or -1, (st.run_p50 or 0) * 1e6,
    (st.run_p99 or 0) * 1e6)

---------------------------------------------------------------------------
-- The C API on the same workload
---------------------------------------------------------------------------
local c_rate
do
    local bin = os.getenv("BENCH_MYSQL_BIN") or (U.repo .. "/build/bench/bench_mysql")
    local f = io.open(bin, "r")
    if not f then
        print("[" .. G .. "] # C API: not available (" .. bin .. " is missing: bench/run.sh builds it)")
    else
        f:close()
        local out, ok = U.run(string.format("%s --only pool -n %d --rows %d --pool %d --inflight %d", U.q(bin), N,
            ROWS, POOL, K))
        c_rate = U.figure(out, "mysql", "c_pool" .. POOL)
        if not ok or not c_rate then
            io.stderr:write("bench_lua: the C benchmark failed:\n", out)
            errors = errors + 1
        else
            U.show(G, "c_pool" .. POOL, c_rate, "q/s", "bench_mysql --only pool: C API, same ids, same run")
        end
    end
end

if luasql_rate and luasql_rate > 0 then U.ratio(G, "lua_pool" .. POOL .. "/luasql_1conn", best / luasql_rate, 4) end
if c_rate and c_rate > 0 then U.ratio(G, "lua_pool" .. POOL .. "/c_pool" .. POOL, best / c_rate, 0.9) end

if errors > 0 then
    io.stderr:write("bench_lua: ", errors, " queries failed or returned a wrong row\n")
    os.exit(1)
end
