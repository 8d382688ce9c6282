-- bench_cluster.lua - SET and GET throughput from Lua through the Redis
-- Cluster pool (redis-cluster://, three primaries) against the single-node
-- Redis pool, in one run, with the same client code: batches of K promises
-- submitted, then awaited (automatic pipelining; the cluster pool splits
-- each batch per node).
--
--   lua5.4 bench/bench_cluster.lua    (under scripts/with-servers.sh; bench/run.sh does it)
--
-- Environment: DBPOOL_TEST_CLUSTER_URL, DBPOOL_TEST_REDIS_URL;
-- BENCH_CLUSTER_N (SETs, then as many GETs, 200000; 20000 with
-- BENCH_QUICK=1), BENCH_CLUSTER_KEYS (10000), BENCH_CLUSTER_POOL (4: `max`,
-- per node for the cluster), BENCH_CLUSTER_INFLIGHT (2000),
-- BENCH_MAX_SECONDS (120).
--
-- While the cluster pool cannot be opened (or refuses ops as unsupported)
-- this prints "cluster: not available (<the error>)" and exits 0, so that
-- bench/run.sh keeps working until the cluster client lands.
local U = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/bench_util.lua")
local dbpool = require "dbpool"

local G = "lua-cluster"
local cluster_url = os.getenv("DBPOOL_TEST_CLUSTER_URL")
local single_url = U.need_env("DBPOOL_TEST_REDIS_URL")
local N = U.count("BENCH_CLUSTER_N", 200000, 20000)
local NKEYS = U.env_int("BENCH_CLUSTER_KEYS", 10000)
local POOL = U.env_int("BENCH_CLUSTER_POOL", 4)
local K = U.env_int("BENCH_CLUSTER_INFLIGHT", 2000)

local function not_available(why)
    print("cluster: not available (" .. tostring(why):gsub("\n.*", "") .. ")")
    U.info(G, "cluster: not available")
    os.exit(0)
end

local child = arg and arg[1] == "--one" and tostring(arg[2]) or nil
local cl

if child and child:match("^single") then
    -- a single-node measurement: no cluster pool in this process
elseif not cluster_url or cluster_url == "" then
    not_available("DBPOOL_TEST_CLUSTER_URL is not set")
else
    local ok
    ok, cl = pcall(dbpool.open, cluster_url, { max = POOL })
    if not ok then not_available(cl) end
    -- a first op: the pool may open lazily and fail here
    local ok2, err = cl:call("SET", "bench:c:probe", "xxx"):result()
    if not ok2 then
        local e = type(err) == "table" and err or {}
        if e.name == "DBP_EUNSUPPORTED" or (e.message or ""):find("not built", 1, true) then
            pcall(function() cl:close():await() end)
            not_available(err)
        end
        io.stderr:write("bench_cluster: the cluster pool opened but its first SET failed: ", tostring(err), "\n")
        os.exit(1)
    end
end
local keys = {}
for i, k in ipairs(U.ids(N, NKEYS)) do keys[i] = "bench:c:" .. (k - 1) end
local errors = 0

-- One measured pass: cmd "SET" or "GET" over keys[1..n] in batches of K
-- (bench_util.lua); returns count, seconds, capped.
local function pass(pool, cmd, n)
    local submit
    if cmd == "SET" then
        submit = function(i) return pool:call("SET", keys[i], "xxx") end
    else
        submit = function(i) return pool:call("GET", keys[i]) end
    end
    return U.batches(n, K, submit, function(p, i)
        local ok, v = p:result()
        if not ok or (cmd == "GET" and v ~= "xxx") then
            errors = errors + 1
            if errors <= 3 then io.stderr:write("bench_cluster: ", cmd, " ", keys[i], ": ", tostring(v), "\n") end
        end
    end)
end

---------------------------------------------------------------------------
-- One measurement (a child process): bench_cluster.lua --one SIDE-CMD
-- (single-set, single-get, cluster-set, cluster-get). A GET pass reads
-- what the SET pass of its side wrote.
---------------------------------------------------------------------------
if child then
    local side, cmd = child:match("^(%a+)%-(%a+)$")
    if (side ~= "single" and side ~= "cluster") or (cmd ~= "set" and cmd ~= "get") then
        io.stderr:write("bench_cluster: unknown measurement '", child, "'\n")
        os.exit(2)
    end
    local pool = side == "cluster" and cl or dbpool.open(single_url, { max = POOL })
    pass(pool, cmd:upper(), math.min(N, 5000)) -- warm-up (and, for GET, the keys are there from SET)
    collectgarbage()
    local n, secs, capped = pass(pool, cmd:upper(), N)
    U.rate(G, side .. "_" .. cmd .. "_pool" .. POOL, n, secs, "op/s", capped,
        side == "cluster" and "redis-cluster://, 3 primaries, max " .. POOL .. " per node" or "redis://, one server")
    if side == "cluster" then
        local okn, nodes = pcall(function() return cl:nodes() end)
        if okn and type(nodes) == "table" then
            local prim = 0
            for _, nd in ipairs(nodes) do if nd.primary == true or nd.role == "primary" then prim = prim + 1 end end
            U.info(G, "cluster: %d nodes known, %d primaries", #nodes, prim)
        end
    end
    pool:close():await()
    if errors > 0 then
        io.stderr:write("bench_cluster: ", errors, " ops failed or returned a wrong value\n")
        os.exit(1)
    end
    os.exit(0)
end

---------------------------------------------------------------------------
-- The run: each measurement in a child
---------------------------------------------------------------------------
cl:close():await()
print(string.format("bench_cluster: %d SETs then %d GETs over %d keys of 3 bytes, batches of %d", N, N, NKEYS, K))
local script = arg and arg[0] or "bench/bench_cluster.lua"
local rates = {}
for _, side in ipairs({ "single", "cluster" }) do
    for _, cmd in ipairs({ "set", "get" }) do
        local name = side .. "_" .. cmd .. "_pool" .. POOL
        local out, ok = U.child(script, side .. "-" .. cmd)
        if not ok then errors = errors + 1 end
        rates[side .. cmd] = U.figure(out, G, name)
    end
end

for _, cmd in ipairs({ "set", "get" }) do
    local c, s = rates["cluster" .. cmd], rates["single" .. cmd]
    if c and s and s > 0 then U.ratio(G, "cluster_" .. cmd .. "/single_" .. cmd, c / s) end
end

if errors > 0 then
    io.stderr:write("bench_cluster: ", errors, " measurements failed\n")
    os.exit(1)
end
