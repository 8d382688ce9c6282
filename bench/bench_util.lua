-- bench_util.lua - helpers shared by the Lua benchmarks: module paths, the
-- clock, environment knobs, URL parts for the peer clients, the MySQL
-- benchmark table, and the output format bench/run.sh parses:
--
--   [group] name = 12345 q/s  (free text)
--   [group] ratio a/b = 4.10  (target >= 4: met)
--
-- (the same format as bench/bench_common.h prints from C).
local U = {}

-- The repository, from this file's own path (bench/bench_util.lua).
-- DBPOOL_REPO (exported by scripts/with-servers.sh) wins: "bench/.." is
-- wrong when bench/ is a symbolic link.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
U.bench_dir = here
U.repo = os.getenv("DBPOOL_REPO") or (here .. "/..")

-- `require "dbpool"` from the checkout even without LUA_PATH/LUA_CPATH set.
package.path = U.repo .. "/lua/?.lua;" .. U.repo .. "/lua/?/init.lua;" .. package.path
package.cpath = U.repo .. "/build/lua/?.so;" .. package.cpath

-- A wall clock with sub-millisecond resolution (os.clock is CPU time).
do
    local ok, socket = pcall(require, "socket")
    if ok and socket.gettime then
        U.now = socket.gettime
    else
        local ok2, dbpool = pcall(require, "dbpool")
        if ok2 and dbpool._core and dbpool._core.now then
            U.now = dbpool._core.now
        else
            U.now = os.time
        end
    end
end

-- A positive integer from the environment, or def.
function U.env_int(name, def)
    local s = os.getenv(name)
    if not s or s == "" then return def end
    local v = tonumber(s)
    if not v or v <= 0 or v ~= math.floor(v) then
        io.stderr:write("bench: ignoring ", name, "=", s, " (not a positive integer)\n")
        return def
    end
    return math.tointeger(v)
end

-- Operation count: `var` if set, else `quick` under BENCH_QUICK=1, else `full`.
function U.count(var, full, quick)
    local q = os.getenv("BENCH_QUICK")
    local def = (q and q ~= "" and q ~= "0") and quick or full
    return U.env_int(var, def)
end

-- Seconds one measured phase may take before it stops submitting.
U.max_seconds = U.env_int("BENCH_MAX_SECONDS", 120)

function U.need_env(name)
    local v = os.getenv(name)
    if not v or v == "" then
        io.stderr:write("bench: ", name, " is not set (run under scripts/with-servers.sh, or bench/run.sh)\n")
        os.exit(1)
    end
    return v
end

local function flush() io.stdout:flush() end

-- Prints a figure line; returns the rate.
function U.rate(group, name, count, secs, unit, capped, extra)
    local rate = secs > 0 and count / secs or 0
    io.stdout:write(string.format("[%s] %s = %.0f %s  (%d in %.2f s%s%s)\n", group, name, rate, unit or "q/s",
        count, secs, capped and "; STOPPED AT BENCH_MAX_SECONDS" or "", extra and ("; " .. extra) or ""))
    flush()
    return rate
end

-- Prints a figure line for a rate measured elsewhere (or derived).
function U.show(group, name, rate, unit, note)
    io.stdout:write(string.format("[%s] %s = %.0f %s  (%s)\n", group, name, rate, unit or "q/s", note or ""))
    flush()
    return rate
end

-- Prints a ratio line (target nil: none).
function U.ratio(group, name, value, target)
    if target then
        io.stdout:write(string.format("[%s] ratio %s = %.2f  (target >= %g: %s)\n", group, name, value, target,
            value >= target and "met" or "NOT met"))
    else
        io.stdout:write(string.format("[%s] ratio %s = %.2f\n", group, name, value))
    end
    flush()
end

function U.info(group, fmt, ...)
    io.stdout:write(string.format("[%s] # " .. fmt .. "\n", group, ...))
    flush()
end

-- Percent-decoding, for the peers' connect calls.
local function pct(s)
    return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- mysql://user:pass@host:port/db?...  or  redis://[user]:pass@host:port/db
-- -> { user, password, host, port, database }
function U.parse_url(url)
    local scheme, rest = url:match("^([%w-]+)://(.*)$")
    if not scheme then return nil end
    local userinfo, hostpart = rest:match("^(.*)@([^@]*)$")
    if not userinfo then hostpart = rest end
    local hostport, path = hostpart:match("^([^/?]*)(.*)$")
    local u = { scheme = scheme }
    if userinfo then
        local user, pass = userinfo:match("^([^:]*):(.*)$")
        if user then u.user, u.password = pct(user), pct(pass) else u.user = pct(userinfo) end
        if u.user == "" then u.user = nil end
    end
    local host, port = hostport:match("^%[(.*)%]:?(%d*)$")
    if not host then host, port = hostport:match("^([^:,]*):?(%d*)") end
    u.host = host ~= "" and host or "127.0.0.1"
    u.port = tonumber(port)
    u.database = path:match("^/([^?]*)")
    if u.database == "" then u.database = nil end
    if u.database then u.database = pct(u.database) end
    return u
end

-- The id sequence bench_mysql.c uses: xorshift64* seeded with 0x5eed5eed,
-- (x >> 11) % rows + 1. Lua integers wrap like C's unsigned arithmetic.
function U.ids(n, rows)
    local x = 0x5eed5eed
    local t = {}
    for i = 1, n do
        x = x ~ (x >> 12); x = x ~ (x << 25); x = x ~ (x >> 27)
        local v = x * 2685821657736338717
        t[i] = (v >> 11) % rows + 1
    end
    return t
end

U.MYSQL_TABLE = "bench_points"
U.MYSQL_CREATE = "CREATE TABLE IF NOT EXISTS bench_points ("
    .. " id INT UNSIGNED NOT NULL PRIMARY KEY,"
    .. " k INT UNSIGNED NOT NULL DEFAULT 0,"
    .. " c CHAR(120) NOT NULL DEFAULT '',"
    .. " pad CHAR(60) NOT NULL DEFAULT '',"
    .. " KEY k_1 (k)) ENGINE=InnoDB"
U.MYSQL_SELECT = "SELECT id, k, c FROM bench_points WHERE id = ?"

-- The filler of bench_mysql.c, so both fill the table identically.
local function filler(len, n)
    local t = {}
    for i = 0, len - 1 do
        n = n * 6364136223846793005 + 1442695040888963407
        t[i + 1] = (i % 12 == 11) and 45 or 97 + (n >> 33) % 26
    end
    return string.char(table.unpack(t))
end

-- Creates and fills bench_points through a dbpool pool when it is missing
-- or has another row count (multi-row INSERTs with placeholders), then
-- reads the whole table once so the buffer pool is warm.
function U.ensure_mysql_table(db, dbpool, rows)
    db:query(U.MYSQL_CREATE):await()
    local r = db:query("SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS m FROM bench_points"):await()
    local have, maxid = tonumber(r[1].n), tonumber(r[1].m)
    if have ~= rows or maxid ~= rows then
        local t0 = U.now()
        io.stdout:write(string.format("bench: filling bench_points with %d rows (had %d)\n", rows, have))
        db:query("TRUNCATE TABLE bench_points"):await()
        local per = 1000
        local starts = {}
        for s = 1, rows, per do starts[#starts + 1] = s end
        dbpool.map(starts, function(s)
            local last = math.min(s + per - 1, rows)
            local params, ph = {}, {}
            for id = s, last do
                ph[#ph + 1] = "(?,?,?,?)"
                params[#params + 1] = id
                params[#params + 1] = (id * 7919) % rows + 1
                params[#params + 1] = filler(120, id)
                params[#params + 1] = filler(60, id * 31)
            end
            db:query("INSERT INTO bench_points (id, k, c, pad) VALUES " .. table.concat(ph, ","), params):await()
        end, { concurrency = 4 }):await()
        io.stdout:write(string.format("bench: filled in %.2f s\n", U.now() - t0))
    end
    db:query("SELECT SUM(LENGTH(c)) AS s FROM bench_points"):await()
end

-- The two ways the benchmarks drive a pool from Lua, measured over ops 1..n
-- with k in flight: submit(i) submits op i and returns its promise;
-- settle(p, i) awaits promise p of op i and checks what it gave. Both stop
-- submitting after U.max_seconds; they return the count done, the seconds,
-- whether they stopped early and what they did (for the figure's line).

-- Batches: submit k, await them all, submit the next k.
function U.batches(n, k, submit, settle)
    local t0, capped = U.now(), false
    local i, batch = 0, {}
    while i < n do
        if U.now() - t0 > U.max_seconds then capped = true break end
        local m = math.min(k, n - i)
        for j = 1, m do batch[j] = submit(i + j) end
        for j = 1, m do settle(batch[j], i + j) end
        i = i + m
    end
    return i, U.now() - t0, capped, "batches of " .. k .. " promises"
end

-- A sliding window: k in flight, await the oldest, submit the next.
function U.window(n, k, submit, settle)
    local t0, capped = U.now(), false
    local ring = {}
    local submitted, done = 0, 0
    while done < n do
        while submitted < n and submitted - done < k and not capped do
            submitted = submitted + 1
            ring[submitted % k + 1] = submit(submitted)
        end
        if submitted == done then break end
        done = done + 1
        local slot = done % k + 1
        local p = ring[slot]
        ring[slot] = nil
        settle(p, done)
        if done % 256 == 0 and U.now() - t0 > U.max_seconds then capped = true end
    end
    return done, U.now() - t0, capped, "sliding window of " .. k .. " promises"
end

U.drivers = { batch = U.batches, window = U.window }

-- The runner of `--one MODE` (runners[MODE]), or exit 2 naming the modes.
function U.runner(runners, prog, mode)
    if runners[mode] then return runners[mode] end
    local names = {}
    for name in pairs(runners) do names[#names + 1] = name end
    table.sort(names)
    io.stderr:write(prog, ": unknown mode '", tostring(mode), "' (", table.concat(names, ", "), ")\n")
    os.exit(2)
end

-- Runs a command, echoes its output, returns the output and whether it succeeded.
function U.run(cmd)
    local f = io.popen(cmd .. " 2>&1", "r")
    local out = f:read("a")
    local ok, how, code = f:close()
    return out, ok, how, code
end

-- The Lua interpreter running this script (for child processes).
U.lua = os.getenv("LUA") or (arg and arg[-1]) or "lua5.4"

-- Runs `script --one mode` in a fresh interpreter and echoes its output.
-- Each measurement gets a process of its own, so none inherits the heap
-- (and the glibc malloc fragmentation) of the ones before it.
-- Returns the output and whether the child succeeded.
function U.child(script, mode)
    io.stdout:flush()
    local out, ok = U.run(string.format("%s %s --one %s", U.q(U.lua), U.q(script), U.q(mode)))
    io.stdout:write(out)
    io.stdout:flush()
    return out, ok
end

-- One measurement: `script --one mode` in a child (U.child); returns the
-- figure `name` of `group` it printed, and false when the child failed.
function U.measure(script, mode, group, name)
    local out, ok = U.child(script, mode)
    if not ok then return nil, false end
    return U.figure(out, group, name), true
end

-- Shell-quotes one word.
function U.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The figure `name` of group `group` in a benchmark's output.
function U.figure(out, group, name)
    local pat = "%[" .. group:gsub("%-", "%%-") .. "%] " .. name:gsub("[%-%.]", "%%%0") .. " = ([%d%.]+)"
    return tonumber(out:match(pat))
end

-- The C API's figure for the same workload, from the C benchmark run in the
-- same process tree: `bin` (or the path in env var `bin_var`) with `args`,
-- its `[c_group] c_name` line shown in this group as `c_name`. Returns the
-- rate, or nil (reported; *errors counted when the benchmark failed).
function U.c_figure(G, bin_var, default_bin, args, c_group, c_name, unit, note, label)
    local bin = os.getenv(bin_var) or default_bin
    local f = io.open(bin, "r")
    if not f then
        U.info(G, "C API: not available (%s is missing: bench/run.sh builds it)", bin)
        return nil, false
    end
    f:close()
    local out, ok = U.run(U.q(bin) .. " " .. args)
    local rate = U.figure(out, c_group, c_name)
    if not ok or not rate then
        io.stderr:write(label, ": the C benchmark failed:\n", out)
        return nil, true
    end
    U.show(G, c_name, rate, unit, note)
    return rate, false
end

return U
