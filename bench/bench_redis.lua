-- bench_redis.lua - GETs from Lua: dbpool (a pool of 4, automatic
-- pipelining: many promises submitted before they are awaited) against
-- redis-lua (Debian lua-redis, one blocking connection) and
-- `redis-benchmark -c 8 -P 32 -t get`, plus dbpool's C API on the same
-- workload (build/bench/bench_redis --only pool), in one run.
--
--   lua5.4 bench/bench_redis.lua      (under scripts/with-servers.sh; bench/run.sh does it)
--
-- Environment: DBPOOL_TEST_REDIS_URL, DBPOOL_TEST_REDIS_PASSWORD,
-- DBPOOL_TEST_REDIS_PORT; BENCH_REDIS_N (GETs per measurement, 300000;
-- 30000 with BENCH_QUICK=1), BENCH_REDIS_KEYS (10000), BENCH_REDIS_POOL (4),
-- BENCH_REDIS_INFLIGHT (2000: the batch size and the window),
-- BENCH_REDIS_MODES (batch,window,many), BENCH_REDIS_BIN (the C benchmark,
-- default build/bench/bench_redis), BENCH_REDIS_BENCHMARK (redis-benchmark),
-- BENCH_MAX_SECONDS (120).
--
-- The dbpool side is measured three ways: batch (submit K GETs, await them
-- all, next K), window (K in flight, await the oldest, submit one) and many
-- (kv:call_many of K GETs, one promise per batch); the best is the headline
-- (lua_pool4). Keys and values are those of
-- bench_redis.c (bench:k:<i> = "xxx", the same pseudo-random sequence;
-- key:__rand_int__ = "xxx" for redis-benchmark); every reply is checked.
-- Each measurement runs in a fresh interpreter (`--one MODE`), warmed up.
-- redis-lua is found in Lua 5.3's module directory (Debian ships lua-redis
-- for 5.1-5.3 only; it is plain Lua over luasocket, installed for 5.4).
local U = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/bench_util.lua")
local dbpool = require "dbpool"

local G = "lua-redis"
local script = arg and arg[0] or "bench/bench_redis.lua"
local url = U.need_env("DBPOOL_TEST_REDIS_URL")
local password = os.getenv("DBPOOL_TEST_REDIS_PASSWORD")
local N = U.count("BENCH_REDIS_N", 300000, 30000)
local NKEYS = U.env_int("BENCH_REDIS_KEYS", 10000)
local POOL = U.env_int("BENCH_REDIS_POOL", 4)
local K = U.env_int("BENCH_REDIS_INFLIGHT", 2000)
local MAX_S = U.max_seconds
local u = U.parse_url(url)
package.path = package.path .. ";/usr/share/lua/5.3/?.lua"

local errors = 0
local keys

local function bad(v, i)
    errors = errors + 1
    if errors <= 3 then io.stderr:write("bench_redis.lua: GET ", keys[i], " returned ", tostring(v), "\n") end
end

---------------------------------------------------------------------------
-- One measurement (a child process): bench_redis.lua --one MODE
---------------------------------------------------------------------------
local runners = {}

-- redis-lua, one blocking connection.
function runners.redislua(n, st)
    if not st.client then
        local redis = require "redis"
        st.client = redis.connect(u.host, u.port)
        if password and password ~= "" then st.client:auth(password) end
        st.version = tostring(redis._VERSION or "")
    end
    local client = st.client
    local t0, capped, i = U.now(), false, 0
    while i < n do
        if i % 1024 == 0 and U.now() - t0 > MAX_S then capped = true break end
        i = i + 1
        local v = client:get(keys[i])
        if v ~= "xxx" then bad(v, i) end
    end
    return i, U.now() - t0, capped, "redis-lua " .. st.version .. ", blocking, one connection"
end

-- Batches of K GETs, and a sliding window of K (bench_util.lua).
for mode, drive in pairs(U.drivers) do
    runners[mode] = function(n, st)
        return drive(n, K, function(i) return st.kv:call("GET", keys[i]) end, function(p, i)
            local v = p:await()
            if v ~= "xxx" then bad(v, i) end
        end)
    end
end

-- call_many: batches of K GETs, one promise per batch (the bulk form).
function runners.many(n, st)
    local t0, capped, i = U.now(), false, 0
    local cmds = {}
    while i < n do
        if U.now() - t0 > MAX_S then capped = true break end
        local m = math.min(K, n - i)
        for j = 1, m do cmds[j] = { "GET", keys[i + j] } end
        for j = m + 1, #cmds do cmds[j] = nil end
        local vals = st.kv:call_many(cmds):await()
        for j = 1, m do
            if vals[j] ~= "xxx" then bad(vals[j], i + j) end
        end
        i = i + m
    end
    return i, U.now() - t0, capped, "call_many, batches of " .. K
end

-- (bench_lua.lua and bench_redis.lua run a measurement in the same steps,
-- each over its own state and figures: kept apart, like their headers.)
if arg and arg[1] == "--one" then
    local mode = arg[2]
    local run = U.runner(runners, "bench_redis.lua", mode)
    -- the keys of every GET, made before anything is timed
    keys = {}
    for i, k in ipairs(U.ids(N, NKEYS)) do keys[i] = "bench:k:" .. (k - 1) end
    local warm = math.max(math.min(N // 20, 20000), math.min(N, 1000))
    local st = {}
    if mode ~= "redislua" then st.kv = dbpool.open(url, { max = POOL }) end
    run(mode == "redislua" and math.min(warm, 2000) or warm, st)
    collectgarbage()
    local n, secs, capped, what = run(N, st)
    U.rate(G, mode == "redislua" and "redislua_1conn" or ("lua_" .. mode .. "_pool" .. POOL), n, secs, "GET/s",
        capped, what)
    if st.kv then
        local s = st.kv:stats()
        st.kv:close():await()
        U.info(G, "%s: %d connections", mode, s.total or -1)
    end
    if st.client then pcall(st.client.quit, st.client) end
    if errors > 0 then
        io.stderr:write("bench_redis.lua: ", errors, " GETs failed or returned a wrong value\n")
        os.exit(1)
    end
    os.exit(0)
end

---------------------------------------------------------------------------
-- The run: the keys, each measurement in a child, redis-benchmark, the C API
---------------------------------------------------------------------------
do
    local kv = dbpool.open(url, { max = POOL })
    local ps = {}
    for i = 0, NKEYS - 1 do
        ps[#ps + 1] = kv:call("SET", "bench:k:" .. i, "xxx")
        if #ps == 1000 then dbpool.all(ps):await(); ps = {} end
    end
    ps[#ps + 1] = kv:call("SET", "key:__rand_int__", "xxx")
    dbpool.all(ps):await()
    kv:close():await()
end
print(string.format("bench_redis.lua: %d GETs over %d keys of 3 bytes", N, NKEYS))

local function measure(mode, name)
    local rate, ok = U.measure(script, mode, G, name)
    if not ok then errors = errors + 1 end
    return rate
end

local redislua_rate
do
    local ok, err = pcall(require, "redis")
    if ok then
        redislua_rate = measure("redislua", "redislua_1conn")
    else
        U.info(G, "redis-lua: not available (%s)", tostring(err):match("^[^\n]*"))
    end
end

local best, best_mode = 0, nil
for m in (os.getenv("BENCH_REDIS_MODES") or "batch,window,many"):gmatch("[^,%s]+") do
    local r = measure(m, "lua_" .. m .. "_pool" .. POOL)
    if r and r > best then best, best_mode = r, m end
end
if best_mode then U.show(G, "lua_pool" .. POOL, best, "GET/s", "headline = the best mode: " .. best_mode) end

local rb_rate, c_rate
do
    local rb = os.getenv("BENCH_REDIS_BENCHMARK") or "redis-benchmark"
    local cmd = string.format("%s -h %s -p %d %s -c 8 -P 32 -t get -n %d --csv", U.q(rb), U.q(u.host), u.port,
        (password and password ~= "") and ("-a " .. U.q(password)) or "", N)
    local out = U.run(cmd)
    rb_rate = tonumber(out:match('"GET","([%d%.]+)"'))
    if rb_rate then
        U.show(G, "redis_benchmark_c8_P32", rb_rate, "GET/s", "redis-benchmark -c 8 -P 32 -t get -n " .. N)
    else
        io.stderr:write("bench_redis.lua: redis-benchmark failed:\n", out, "\n")
        errors = errors + 1
    end

    local c_failed
    c_rate, c_failed = U.c_figure(G, "BENCH_REDIS_BIN", U.repo .. "/build/bench/bench_redis",
        string.format("--only pool -n %d --keys %d --pool %d --inflight %d", N, NKEYS, POOL, K),
        "redis", "c_pool" .. POOL, "GET/s", "bench_redis --only pool: C API, same keys, same run", "bench_redis.lua")
    if c_failed then errors = errors + 1 end
end

local name = "lua_pool" .. POOL
if best_mode then
    if redislua_rate and redislua_rate > 0 then U.ratio(G, name .. "/redislua_1conn", best / redislua_rate, 20) end
    if rb_rate and rb_rate > 0 then U.ratio(G, name .. "/redis_benchmark_c8_P32", best / rb_rate) end
    if c_rate and c_rate > 0 then U.ratio(G, name .. "/c_pool" .. POOL, best / c_rate) end
end
if c_rate and rb_rate and rb_rate > 0 then
    U.ratio(G, "c_pool" .. POOL .. "/redis_benchmark_c8_P32", c_rate / rb_rate, 0.5)
end

if errors > 0 then
    io.stderr:write("bench_redis.lua: ", errors, " measurements failed\n")
    os.exit(1)
end
