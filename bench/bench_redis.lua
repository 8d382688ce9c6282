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
-- BENCH_REDIS_MODES (batch,window), BENCH_REDIS_BIN (the C benchmark,
-- default build/bench/bench_redis), BENCH_REDIS_BENCHMARK (redis-benchmark),
-- BENCH_MAX_SECONDS (120).
--
-- The keys and values are those of bench_redis.c (bench:k:<i> = "xxx", the
-- same pseudo-random sequence; key:__rand_int__ = "xxx" for
-- redis-benchmark); every reply is checked. redis-lua needs Lua 5.3's
-- module directory (Debian ships lua-redis for 5.1-5.3 only; it is plain
-- Lua over luasocket, which is installed for 5.4).
local U = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/bench_util.lua")
local dbpool = require "dbpool"

local G = "lua-redis"
local url = U.need_env("DBPOOL_TEST_REDIS_URL")
local password = os.getenv("DBPOOL_TEST_REDIS_PASSWORD")
local N = U.count("BENCH_REDIS_N", 300000, 30000)
local NKEYS = U.env_int("BENCH_REDIS_KEYS", 10000)
local POOL = U.env_int("BENCH_REDIS_POOL", 4)
local K = U.env_int("BENCH_REDIS_INFLIGHT", 2000)
local MAX_S = U.max_seconds
local modes = {}
for m in (os.getenv("BENCH_REDIS_MODES") or "batch,window"):gmatch("[^,%s]+") do modes[#modes + 1] = m end

local errors = 0
local u = U.parse_url(url)

-- the keys of every GET, made before anything is timed
local keys = {}
for i, k in ipairs(U.ids(N, NKEYS)) do keys[i] = "bench:k:" .. (k - 1) end
local warm = math.max(math.min(N // 20, 20000), math.min(N, 1000))

local kv = dbpool.open(url, { max = POOL })
do -- setup: every key holds "xxx"
    local ps = {}
    for i = 0, NKEYS - 1 do
        ps[#ps + 1] = kv:call("SET", "bench:k:" .. i, "xxx")
        if #ps == 1000 then dbpool.all(ps):await(); ps = {} end
    end
    ps[#ps + 1] = kv:call("SET", "key:__rand_int__", "xxx")
    dbpool.all(ps):await()
end
print(string.format("bench_redis.lua: %d GETs over %d keys of 3 bytes", N, NKEYS))

local function bad(v, i)
    errors = errors + 1
    if errors <= 3 then io.stderr:write("bench_redis.lua: GET ", keys[i], " returned ", tostring(v), "\n") end
end

---------------------------------------------------------------------------
-- redis-lua, one blocking connection
---------------------------------------------------------------------------
local redislua_rate
do
    package.path = package.path .. ";/usr/share/lua/5.3/?.lua"
    local ok, redis = pcall(require, "redis")
    if not ok then
        U.info(G, "redis-lua: not available (%s)", tostring(redis):match("^[^\n]*"))
    else
        local ok2, client = pcall(redis.connect, u.host, u.port)
        if not ok2 then
            U.info(G, "redis-lua: cannot connect (%s)", tostring(client))
        else
            if password and password ~= "" then client:auth(password) end
            local function run(n)
                local t0, capped, i = U.now(), false, 0
                while i < n do
                    if i % 1024 == 0 and U.now() - t0 > MAX_S then capped = true break end
                    i = i + 1
                    local v = client:get(keys[i])
                    if v ~= "xxx" then bad(v, i) end
                end
                return i, U.now() - t0, capped
            end
            run(math.min(warm, 2000))
            local n, secs, capped = run(N)
            redislua_rate = U.rate(G, "redislua_1conn", n, secs, "GET/s", capped,
                "redis-lua " .. tostring(redis._VERSION or "") .. ", blocking, one connection")
            pcall(client.quit, client)
        end
    end
end

---------------------------------------------------------------------------
-- dbpool from Lua
---------------------------------------------------------------------------
local runners = {}

-- Submit K GETs, await them all, submit the next K.
function runners.batch(n)
    local t0, capped = U.now(), false
    local i, batch = 0, {}
    while i < n do
        if U.now() - t0 > MAX_S then capped = true break end
        local m = math.min(K, n - i)
        for j = 1, m do batch[j] = kv:call("GET", keys[i + j]) end
        for j = 1, m do
            local v = batch[j]:await()
            if v ~= "xxx" then bad(v, i + j) end
        end
        i = i + m
    end
    return i, U.now() - t0, capped
end

-- A sliding window of K promises: await the oldest, submit the next.
function runners.window(n)
    local t0, capped = U.now(), false
    local ring = {}
    local submitted, done = 0, 0
    while done < n do
        while submitted < n and submitted - done < K and not capped do
            submitted = submitted + 1
            ring[submitted % K + 1] = kv:call("GET", keys[submitted])
        end
        if submitted == done then break end
        done = done + 1
        local slot = done % K + 1
        local v = ring[slot]:await()
        ring[slot] = nil
        if v ~= "xxx" then bad(v, done) end
        if done % 4096 == 0 and U.now() - t0 > MAX_S then capped = true end
    end
    return done, U.now() - t0, capped
end

local best, best_mode = 0, nil
for _, mode in ipairs(modes) do
    local run = runners[mode]
    if not run then
        io.stderr:write("bench_redis.lua: unknown mode '", mode, "' in BENCH_REDIS_MODES (batch, window)\n")
        os.exit(2)
    end
    run(warm)
    collectgarbage()
    local n, secs, capped = run(N)
    local r = U.rate(G, "lua_" .. mode .. "_pool" .. POOL, n, secs, "GET/s", capped,
        mode == "batch" and ("batches of " .. K .. " promises") or ("sliding window of " .. K .. " promises"))
    if r > best then best, best_mode = r, mode end
end
local st = kv:stats()
kv:close():await()
U.show(G, "lua_pool" .. POOL, best, "GET/s", "headline = the best mode: " .. tostring(best_mode))
U.info(G, "pool: %d connections", st.total or -1)

---------------------------------------------------------------------------
-- redis-benchmark and the C API, same run
---------------------------------------------------------------------------
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

    local bin = os.getenv("BENCH_REDIS_BIN") or (U.repo .. "/build/bench/bench_redis")
    local f = io.open(bin, "r")
    if not f then
        U.info(G, "C API: not available (%s is missing: bench/run.sh builds it)", bin)
    else
        f:close()
        local cout, ok = U.run(string.format("%s --only pool -n %d --keys %d --pool %d --inflight %d", U.q(bin), N,
            NKEYS, POOL, K))
        c_rate = U.figure(cout, "redis", "c_pool" .. POOL)
        if not ok or not c_rate then
            io.stderr:write("bench_redis.lua: the C benchmark failed:\n", cout)
            errors = errors + 1
        else
            U.show(G, "c_pool" .. POOL, c_rate, "GET/s", "bench_redis --only pool: C API, same keys, same run")
        end
    end
end

local name = "lua_pool" .. POOL
if redislua_rate and redislua_rate > 0 then U.ratio(G, name .. "/redislua_1conn", best / redislua_rate, 20) end
if rb_rate and rb_rate > 0 then U.ratio(G, name .. "/redis_benchmark_c8_P32", best / rb_rate) end
if c_rate and c_rate > 0 then U.ratio(G, name .. "/c_pool" .. POOL, best / c_rate) end
if c_rate and rb_rate and rb_rate > 0 then U.ratio(G, "c_pool" .. POOL .. "/redis_benchmark_c8_P32", c_rate / rb_rate, 0.5) end

if errors > 0 then
    io.stderr:write("bench_redis.lua: ", errors, " errors\n")
    os.exit(1)
end
