-- dbpool.cli.run: `dbpool run [--drain-timeout S] [--quiet] SCRIPT [ARGS...]`.
--
-- Runs a Lua script as a dbpool.run task with the globals db (DATABASE_URL)
-- and redis (REDIS_URL), and exits 0 only when the script and everything it
-- spawned succeeded.
--
-- Signals: the core's trap_signals() catches SIGINT/SIGTERM and makes them
-- readable from a pipe the hub watches (a waiting poll() wakes). dbpool.run's
-- loop calls our _stop_hook every round; on the first signal the hook closes
-- every pool with the drain deadline (no new op is accepted, accepted ones
-- settle or are cut off at the deadline), drives the hub until the closes
-- settled, and tells run to stop. The second signal ends the process at once
-- from the core's handler itself, even while the script computes without
-- ever awaiting.
local dbpool = require "dbpool"
local util = require "dbpool.cli.util"
local progress = require "dbpool.progress"

local core = dbpool._core
local M = {}

local SPEC = {
    ["--drain-timeout"] = { key = "drain", value = "number" },
    ["-q"] = { key = "quiet" }, ["--quiet"] = { key = "quiet" },
}

local SIGNAL_EXIT = { SIGINT = "sigint", SIGTERM = "sigterm" }

-- os.exit inside a script: end it with that code once the pools drained.
local Exit = {}
Exit.__tostring = function(e) return "os.exit(" .. tostring(e.code) .. ")" end

-- The traceback of a task ends where the script's code ends: the frames of
-- the task machinery below it say nothing to the script's author.
local function trim_traceback(s)
    local out, cut = {}, false
    for line in (s .. "\n"):gmatch("(.-)\n") do
        if line:find("in function 'xpcall'", 1, true) then cut = true end
        if not cut and not line:find("/dbpool/cli/run.lua:", 1, true) then out[#out + 1] = line end
    end
    while #out > 0 and (out[#out]:match("^%s*$") or out[#out]:find("(...tail calls...)", 1, true)) do
        out[#out] = nil
    end
    return table.concat(out, "\n")
end

local function error_text(e)
    if type(e) == "table" and getmetatable(e) and getmetatable(e).__tostring then return tostring(e) end
    if type(e) == "table" then return tostring(e.message or e) end
    return tostring(e)
end

function M.command(argv, ctx)
    local o, pos = util.parse_options(argv, 1, SPEC, "run", { stop_at_positional = true })
    if #pos == 0 then util.usage("expected a script to run", "run") end
    local script = pos[1]
    local args = table.pack(table.unpack(pos, 2))
    if o.quiet or ctx.quiet then progress.quiet = true end
    local drain = o.drain or 10

    local env_db, env_redis = os.getenv("DATABASE_URL"), os.getenv("REDIS_URL")
    util.add_url_secrets(env_db)
    util.add_url_secrets(env_redis)

    local chunk, lerr = loadfile(script ~= "-" and script or nil, "t")
    if not chunk then util.fail(lerr) end

    -- Every pool the script opens is known, for the drain, and so are its passwords.
    local pools = setmetatable({}, { __mode = "k" })
    local saved = { open = dbpool.open, run = dbpool.run, exit = os.exit }
    local function tracked_open(url, opts)
        util.add_url_secrets(url)
        local p = saved.open(url, opts)
        pools[p] = true
        return p
    end

    local exit_request
    local caught = {}
    local stopping = false
    local summary

    local function poll_signals()
        local s = core.signals()
        for i = 1, #s do caught[#caught + 1] = s[i] end
        if #caught >= 2 then
            ctx.err:write("\ndbpool run: second signal (", caught[#caught], "): exiting at once\n")
            core.exit_now(ctx.exit[SIGNAL_EXIT[caught[1]] or "failure"])
        end
        return #caught > 0
    end

    -- Closes every pool with the drain deadline and drives until they closed.
    local function drain_pools()
        local sig = caught[1]
        local t0 = core.now()
        local inflight, ok0, rej0 = 0, 0, 0
        local open = {}
        for p in pairs(pools) do
            if p._c:state() == "open" then
                local s = p:stats()
                inflight = inflight + s.busy + s.waiting
                ok0, rej0 = ok0 + s.fulfilled, rej0 + s.rejected
                open[#open + 1] = p
            end
        end
        ctx.err:write(("\ndbpool run: %s: stopping: no new work is accepted; %d op%s in flight may settle for up to %g s (a second signal exits at once)\n")
            :format(sig, inflight, inflight == 1 and "" or "s", drain))
        ctx.err:flush()
        local closes = {}
        for i, p in ipairs(open) do closes[i] = p:close({ timeout = drain }) end
        local limit = t0 + drain + 5 -- each close has the deadline; this only guards the loop
        local function pending()
            for i = 1, #closes do if closes[i]:status() == "pending" then return true end end
            return false
        end
        while pending() and core.now() < limit do
            dbpool._step(true)
            poll_signals()
        end
        local ok1, rej1, cut = 0, 0, 0
        for i, p in ipairs(open) do
            local s = p:stats()
            ok1, rej1 = ok1 + s.fulfilled, rej1 + s.rejected
            local cok, cerr = closes[i]:result()
            if not cok then
                cut = cut + (tonumber(tostring(cerr and cerr.message or ""):match("cut off (%d+)")) or 0)
            end
        end
        local tasks = dbpool._counts()
        -- of the ops in flight at the signal: completed, failed, cut off; any
        -- op beyond those was a new one, refused because the pool was closing
        local done_ok = math.min(ok1 - ok0, inflight)
        local failed = math.max(math.min(rej1 - rej0 - cut, inflight - done_ok - cut), 0)
        local refused = math.max((ok1 - ok0) + (rej1 - rej0) - inflight, 0)
        summary = ("dbpool run: stopped by %s after %.2f s: of %d op%s in flight %d completed, %d failed, %d cut off at the deadline; %d new op%s refused; %d task%s unfinished; pools closed")
            :format(sig, core.now() - t0, inflight, inflight == 1 and "" or "s", done_ok, failed, cut,
                refused, refused == 1 and "" or "s", tasks, tasks == 1 and "" or "s")
    end

    local function stop_hook()
        if exit_request then return true end
        if not poll_signals() then return false end
        if not stopping then
            stopping = true
            drain_pools()
        end
        return true
    end

    local function restore()
        dbpool.open, dbpool.run, os.exit = saved.open, saved.run, saved.exit
        dbpool._stop_hook = nil
    end

    local ok, err = pcall(function()
        dbpool.open = tracked_open
        -- A script written for plain `lua` calls dbpool.run itself: here it
        -- already is the task, so its function just runs.
        dbpool.run = function(fn, ...) return fn(...) end
        os.exit = function(code)
            if code == nil or code == true then code = 0 elseif code == false then code = 1 end
            exit_request = math.tointeger(code) or 1
            error(setmetatable({ code = exit_request }, Exit), 0)
        end
        _G.dbpool = dbpool
        local a = { [0] = script }
        for i = 1, args.n do a[i] = args[i] end
        _G.arg = a
        if env_db and env_db ~= "" then _G.db = tracked_open(env_db) end
        if env_redis and env_redis ~= "" then _G.redis = tracked_open(env_redis) end

        core.trap_signals()
        dbpool._drain_timeout = drain
        dbpool._stop_hook = stop_hook
        return saved.run(chunk, table.unpack(args, 1, args.n))
    end)
    restore()

    if caught[1] then
        if not summary then
            -- the signal came as the script was ending: run closed the pools
            summary = ("dbpool run: stopped by %s"):format(caught[1])
        end
        if not ok and not (type(err) == "table" and getmetatable(err) == Exit) then
            local first = util.scrub(error_text(err)):match("^[^\n]*")
            if not first:find("stopped before the main task finished", 1, true) then
                ctx.err:write("dbpool run: the script ended with: ", first, "\n")
            end
        end
        ctx.err:write(summary, "\n")
        return SIGNAL_EXIT[caught[1]] or "failure"
    end
    if exit_request then return exit_request end
    if ok then return "ok" end
    if type(err) == "table" and getmetatable(err) == Exit then return err.code end
    util.fail(trim_traceback(util.scrub(error_text(err))))
end

return M
