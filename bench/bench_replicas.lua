-- bench_replicas.lua - read replicas from Lua: point selects by primary key
-- on the primary alone against a pool with replicas (one, and two when a
-- second replica runs), each node a pool of BENCH_MYSQL_POOL connections;
-- then the cost of read_your_writes on an insert-then-read-it-back loop.
--
--   lua5.4 bench/bench_replicas.lua   (bench/run.sh runs it when the replica is up;
--                                      `scripts/servers.sh start replica2` adds the second)
--
-- Environment: DBPOOL_TEST_MYSQL_URL, DBPOOL_TEST_MYSQL_REPLICA_PORT,
-- DBPOOL_TEST_MYSQL_REPLICA2_PORT (optional); BENCH_REPLICAS_N (point
-- selects per measurement, 50000; 5000 with BENCH_QUICK=1), BENCH_REPLICAS_RYW_N
-- (insert-then-read loops, 2000; 300 quick), BENCH_MYSQL_POOL (8 per node),
-- BENCH_MYSQL_INFLIGHT (64 in flight). Every reply is checked.
local U = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/bench_util.lua")
local dbpool = require "dbpool"

local G = "replicas"
local url = U.need_env("DBPOOL_TEST_MYSQL_URL")
local port1 = U.need_env("DBPOOL_TEST_MYSQL_REPLICA_PORT")
local port2 = os.getenv("DBPOOL_TEST_MYSQL_REPLICA2_PORT")
local N = U.count("BENCH_REPLICAS_N", 50000, 5000)
local RYW_N = U.count("BENCH_REPLICAS_RYW_N", 2000, 300)
local POOL = U.env_int("BENCH_MYSQL_POOL", 8)
local K = U.env_int("BENCH_MYSQL_INFLIGHT", 64)
local ROWS = 10000

local function wait_usable(db, n)
    local t0 = U.now()
    while U.now() - t0 < 20 do
        local nodes, ok = db:nodes(), 0
        for i = 2, #nodes do if nodes[i].state == "ok" then ok = ok + 1 end end
        if ok == n then return true end
        dbpool.sleep(0.05):await()
    end
    error("the replicas did not become usable within 20 s")
end

-- setup on the primary, then wait until the replicas have it
local setup = dbpool.open(url, { max = 2 })
setup:query("CREATE TABLE IF NOT EXISTS bench_rep (id INT PRIMARY KEY, v VARCHAR(32))"):await()
local have = setup:query("SELECT COUNT(*) AS n FROM bench_rep"):await()[1].n
if have ~= ROWS then
    setup:query("DELETE FROM bench_rep"):await()
    for i = 1, ROWS, 1000 do
        local vals, params = {}, {}
        for j = i, i + 999 do vals[#vals + 1] = "(?, ?)"; params[#params + 1] = j; params[#params + 1] = "v" .. j end
        setup:query("INSERT INTO bench_rep VALUES " .. table.concat(vals, ","), params):await()
    end
end
setup:query("DROP TABLE IF EXISTS bench_rep_w"):await()
setup:query("CREATE TABLE bench_rep_w (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))"):await()
setup:close():await()

-- N point selects, K in flight (a sliding window); returns q/s
local function selects(db, qopts)
    local window, head, bad = {}, 1, 0
    local t0 = U.now()
    for i = 1, N do
        local id = (i * 7919) % ROWS + 1
        window[#window + 1] = { db:query("SELECT id, v FROM bench_rep WHERE id = ?", { id }, qopts), id }
        if #window - head + 1 >= K then
            local w = window[head]; window[head] = nil; head = head + 1
            local r = w[1]:await()
            if r[1].id ~= w[2] then bad = bad + 1 end
        end
    end
    for j = head, #window do
        local r = window[j][1]:await()
        if r[1].id ~= window[j][2] then bad = bad + 1 end
    end
    local secs = U.now() - t0
    if bad > 0 then error(bad .. " wrong replies") end
    return N / secs, secs
end

local function measure(name, opts, nrep, qopts, to)
    local db = dbpool.open(to or url, opts)
    if nrep > 0 then wait_usable(db, nrep) end
    selects(db, qopts) -- warm up every connection
    local rate, secs = selects(db, qopts)
    local nodes = db:nodes()
    local spread = {}
    for i = 1, #nodes do spread[i] = ("%s %d"):format(nodes[i].role, nodes[i].routed) end
    db:close():await()
    U.show(G, name, rate, "q/s", ("%d point selects in %.2f s, %d in flight%s"):format(N, secs, K,
        #spread > 0 and ("; sent: " .. table.concat(spread, ", ")) or ""))
    return rate
end

local r0 = measure("primary_alone", { max = POOL }, 0)
-- the router's own cost: the same pool with a replica, every read forced to the primary
local rp = measure("routed_to_primary", { max = POOL, replicas = { "127.0.0.1:" .. port1 } }, 1, { on = "primary" })
U.ratio(G, "routed_to_primary/primary_alone", rp / r0)
-- the replica's server alone (no router): what the replica itself does on this machine
local ra = measure("replica_alone", { max = POOL }, 0, nil, (url:gsub("@([^/@]*):%d+/", "@%1:" .. port1 .. "/", 1)))
U.ratio(G, "replica_alone/primary_alone", ra / r0)
local r1 = measure("with_1_replica", { max = POOL, replicas = { "127.0.0.1:" .. port1 } }, 1)
U.ratio(G, "with_1_replica/primary_alone", r1 / r0)
if port2 and port2 ~= "" then
    local r2 = measure("with_2_replicas", { max = POOL, replicas = { "127.0.0.1:" .. port1, "127.0.0.1:" .. port2 } }, 2)
    U.ratio(G, "with_2_replicas/primary_alone", r2 / r0)
else
    U.info(G, "no second replica (scripts/servers.sh start replica2 adds one)")
end

-- insert, then read it back at once: without and with read_your_writes
local function ryw(name, ryw_on)
    local db = dbpool.open(url, { max = POOL, replicas = { "127.0.0.1:" .. port1 }, read_your_writes = ryw_on })
    wait_usable(db, 1)
    local stale, on_replica = 0, 0
    local t0 = U.now()
    for i = 1, RYW_N do
        local v = ("%s-%d-%d"):format(name, i, math.floor(t0))
        db:query("INSERT INTO bench_rep_w (v) VALUES (?)", { v }):await()
        local r = db:query("SELECT COUNT(*) AS n, @@server_id AS sid FROM bench_rep_w WHERE v = ?", { v }):await()
        if r[1].n ~= 1 then stale = stale + 1 end
        if tonumber(r[1].sid) ~= 1 then on_replica = on_replica + 1 end
    end
    local secs = U.now() - t0
    db:close():await()
    U.show(G, name, RYW_N / secs, "loops/s", ("%d x insert then read: %d stale reads, %d reads on the replica"):format(
        RYW_N, stale, on_replica))
    if ryw_on and stale > 0 then error("read_your_writes gave " .. stale .. " stale reads") end
    return RYW_N / secs
end
local a = ryw("insert_read_plain", false)
local b = ryw("insert_read_ryw", true)
U.ratio(G, "insert_read_ryw/insert_read_plain", b / a)
