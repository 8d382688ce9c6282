#!/usr/bin/env lua5.4
-- Lifetimes from Lua, counted with dbpool.hub_stats(): streams broken out
-- of, fire-and-forget writes, pools dropped with work in flight, a pinned
-- connection the server killed. On the header of 1fddf2d every broken
-- rows() loop kept its op and row batch (RSS grew ~33 KB a loop), dropped
-- pools were never reaped, and the killed connection was freed under its
-- holder (ASan: heap-use-after-free in dbp_conn_ok).
package.path = arg[0]:match("^(.*)/[^/]*$") .. "/../lib/?.lua;" .. package.path
local T = require "tap"
local dbpool = require "dbpool"
local MY = T.env("DBPOOL_TEST_MYSQL_URL")
local RD = T.env("DBPOOL_TEST_REDIS_URL")

-- Lets ops freed from Lua settle and be freed, then counts.
local function settle_counts()
    collectgarbage(); collectgarbage()
    for _ = 1, 100 do
        local k = dbpool.hub_stats()
        if k.pending == 0 and k.ops_released == 0 and k.pools_released == 0 then return k end
        dbpool.sleep(0.02):await()
        collectgarbage()
    end
    return dbpool.hub_stats()
end

local function rss_kb()
    local f = io.open("/proc/self/status")
    if not f then return 0 end
    local s = f:read("a"); f:close()
    return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

-- broken rows() loops
do
    local db = dbpool.open(MY, { max = 2 })
    db:query("SELECT 1"):await()
    local k0 = settle_counts()
    local function breaks(n)
        for _ = 1, n do
            for row in db:rows("SELECT seq, REPEAT('x', 200) AS pad FROM seq_1_to_5000") do
                assert(row.seq == 1)
                break
            end
        end
    end
    breaks(50)                      -- warm up the allocator
    local rss0 = rss_kb()
    breaks(300)
    local k = settle_counts()
    local grown = rss_kb() - rss0
    T.is(k.ops, k0.ops, "300 rows() loops broken after their first row leave no op behind (" .. k.ops .. ")")
    -- (ASan's quarantine and valgrind keep freed memory: RSS means nothing there)
    local preload = os.getenv("LD_PRELOAD") or ""
    if preload:find("asan", 1, true) or preload:find("vgpreload", 1, true) then
        T.diag("RSS not measured under a sanitizer or valgrind (grew " .. grown .. " KB)")
    else
        T.ok(grown < 4000, "  and memory stays flat: RSS grew " .. grown .. " KB over 300 loops (was ~33 KB a loop)")
    end
    T.is(db:query("SELECT 2 AS v"):await()[1].v, 2, "  the pool still answers")
    db:close():await()
end

-- fire-and-forget writes: submitted, never awaited, dropped
do
    local kv = dbpool.open(RD, { max = 2 })
    kv:call("PING"):await()
    local k0 = settle_counts()
    for i = 1, 500 do kv:call("SET", "lt:" .. i, i) end
    local k = settle_counts()
    T.is(k.ops, k0.ops, "500 commands never awaited free themselves once settled (" .. k.ops .. " ops alive)")
    T.is(kv:call("GET", "lt:500"):await(), "500", "  and they ran")
    kv:call("DEL", "lt:1"):await()
    kv:close():await()
end

-- pools dropped with work in flight, collected by __gc
do
    local k0 = settle_counts()
    for i = 1, 20 do
        local p = dbpool.open(i % 2 == 0 and RD or MY, { max = 2 })
        for _ = 1, 5 do
            if i % 2 == 0 then p:call("PING") else p:query("SELECT SLEEP(0.01)") end
        end
        p = nil -- luacheck: ignore
        collectgarbage()
    end
    local k = settle_counts()
    T.ok(k.pools == k0.pools and k.conns == k0.conns,
        "20 pools dropped with work in flight are reaped: pools " .. k0.pools .. " -> " .. k.pools
        .. ", connections " .. k0.conns .. " -> " .. k.conns)
end

-- a pinned connection killed by the server: the handle stays valid
do
    local db = dbpool.open(MY, { max = 2 })
    local admin = dbpool.open(MY, { max = 1 })
    local c = db:acquire():await()
    local id = c:query("SELECT CONNECTION_ID() AS id"):await()[1].id
    admin:query("KILL " .. id):await()
    local ok1, e1 = c:query("SELECT 1"):result()
    T.ok(not ok1 and e1.kind == "connection", "a statement on a killed pinned connection fails with kind connection: " .. tostring(e1))
    dbpool.sleep(0.05):await()
    T.ok(not c:ok(), "  ok() is false, and reading it is safe")
    local ok2, e2 = c:query("SELECT 2"):result()
    T.ok(not ok2 and e2.kind == "connection" and not e2.sent, "  the next one is rejected unsent: " .. tostring(e2))
    T.is(dbpool.hub_stats().conns_dead_held, 1, "  the dead connection is kept while its holder has it")
    c:release()
    T.is(dbpool.hub_stats().conns_dead_held, 0, "  release frees it")
    T.is(db:query("SELECT 3 AS v"):await()[1].v, 3, "  the pool goes on")
    db:close():await()
    admin:close():await()
end

local k = settle_counts()
T.ok(k.ops == 0 and k.pools == 0 and k.conns == 0, string.format(
    "at the end nothing is alive: ops %d, pools %d, connections %d", k.ops, k.pools, k.conns))
T.done()
