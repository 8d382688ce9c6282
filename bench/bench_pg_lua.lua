-- bench_pg_lua.lua - point selects on PostgreSQL from Lua: dbpool with a pool
-- of 8 and a sliding window of 64 promises, on pgbench's table (pgbench -i),
-- with text queries and with prepare = true; compare with pgbench -S
-- (bench/pgbench.sh runs it after pgbench and the C benchmark).
--
--   lua5.4 bench/bench_pg_lua.lua URL [N]
local dbpool = require "dbpool"
local url, N = arg[1], tonumber(arg[2]) or 100000
local K = 64
local rng = 88172645463325252

local function run(prepare)
    local db = dbpool.open(url, { max = 8, min = 8, prepare = prepare })
    local rows = db:query("SELECT count(*) AS n FROM pgbench_accounts"):await()[1].n
    local function one(window, n)
        local q, head, bad = {}, 1, 0
        for i = 1, n do
            rng = (rng * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
            q[i] = db:query("SELECT abalance FROM pgbench_accounts WHERE aid = $1", { rng % rows + 1 })
            if i - head + 1 >= window then
                local r = q[head]:await()
                if #r ~= 1 then bad = bad + 1 end
                q[head] = nil
                head = head + 1
            end
        end
        for i = head, n do if #q[i]:await() ~= 1 then bad = bad + 1 end end
        return bad
    end
    one(K, N // 10) -- warm-up
    local t0 = dbpool._core.now()
    local bad = one(K, N)
    local secs = dbpool._core.now() - t0
    print(("[pg] lua_window_pool8_%s = %.0f q/s  (%d in %.2f s; dbpool Lua, sliding window of %d promises%s; %d wrong)"):format(
        prepare and "ps" or "text", N / secs, N, secs, K, prepare and ", prepare=true" or "", bad))
    db:close():await()
    if bad > 0 then os.exit(1) end
end
run(false)
run(true)
