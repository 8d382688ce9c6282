-- dbpool.cli.ping: `dbpool ping [URL] [--json] [--timeout S] [--wait]`, a
-- readiness probe. Connects, pings (MySQL COM_PING, Redis PING), prints the
-- round trip, the server version and the pool's statistics; exit 0 when the
-- server answered, 1 when it did not. A MySQL URL with replicas
-- (?replica=host:port&...) checks every node: the primary answers or the
-- probe fails; a replica that is down, stopped or lagging gets a warning
-- line (exit 0: reads go to the primary meanwhile).
local dbpool = require "dbpool"
local util = require "dbpool.cli.util"

local M = {}

local SPEC = {
    ["--json"] = { key = "json" },
    ["--timeout"] = { key = "timeout", value = "number" },
    ["--wait"] = { key = "wait" },
}

local LINE_STATS = { "total", "idle", "busy", "waiting", "created", "errors", "connect_failures" }

local function ms(s) return math.floor(s * 1e6 + 0.5) / 1000 end

-- pool:ping() with the probe's timeout (a Redis Cluster pool pings one
-- primary). Kept as a function: the REPL's \ping uses it too.
function M.ping_promise(pool, timeout)
    return pool:ping({ timeout = timeout })
end

function M.command(argv, ctx)
    local o, pos = util.parse_options(argv, 1, SPEC, "ping")
    if #pos > 1 then util.usage("expected at most one URL", "ping") end
    local url = pos[1] or os.getenv("DATABASE_URL") or os.getenv("REDIS_URL")
    if not url or url == "" then
        util.usage("no URL given, and neither DATABASE_URL nor REDIS_URL is set", "ping")
    end
    util.add_url_secrets(url)
    local timeout = o.timeout or 5
    if timeout <= 0 then util.usage("--timeout must be above 0", "ping") end
    local shown = util.redact(url)
    local now = dbpool._core.now
    local started = now()

    local function report_failure(err)
        local e = type(err) == "table" and err or { kind = "connection", message = tostring(err) }
        local message = util.scrub(e.message or tostring(e))
        if o.json then
            ctx.out:write(util.json({
                ok = false, url = shown, time_ms = ms(now() - started),
                error = { kind = e.kind, code = e.code, sqlstate = e.sqlstate, message = message },
            }), "\n")
            return "failure"
        end
        util.fail(("%s: %s"):format(shown, message))
    end

    local okopen, pool = pcall(dbpool.open, url, { max = 1, connect_timeout = timeout })
    if not okopen then
        if type(pool) == "table" and pool.kind == "usage" then
            util.usage(util.scrub(pool.message or tostring(pool)), "ping")
        end
        return report_failure(pool)
    end

    -- By default the first failed connect ends the probe (a refused port is
    -- an answer); with --wait the pool's own backoff retries until the deadline.
    local connect_err
    if not o.wait then
        pool:on("error", function(ev)
            -- a warning (no error kind: a replica lagging or down) is reported below, per node
            if ev.error and (ev.error.kind or "") == "" then return end
            connect_err = connect_err or ev.error or ev.message
        end)
    end
    local p = M.ping_promise(pool, timeout)
    while p:status() == "pending" and not connect_err do dbpool._step(true) end
    local ok, res = false, connect_err
    if p:status() ~= "pending" then ok, res = p:result() end
    -- replicas: wait (bounded) until each one's status has been read
    local nodes = ok and pool:nodes() or {}
    if #nodes > 1 then
        local deadline = now() + timeout
        local function unknown()
            for i = 2, #nodes do if nodes[i].state == "unknown" then return true end end
            return false
        end
        while unknown() and now() < deadline do
            dbpool._step(true)
            nodes = pool:nodes()
        end
    end
    local stats = pool:stats()
    local elapsed = now() - started
    pool:close({ timeout = 0 }):result()
    p:result() -- settled by the close when it was cut short; handled either way
    if not ok then return report_failure(res) end

    if o.json then
        ctx.out:write(util.json({
            ok = true, url = shown, backend = res.backend, version = res.version,
            rtt_ms = ms(res.rtt), time_ms = ms(elapsed), stats = stats,
            nodes = #nodes > 1 and nodes or nil,
        }), "\n")
        return "ok"
    end
    local parts = {}
    for _, k in ipairs(LINE_STATS) do parts[#parts + 1] = k .. "=" .. tostring(stats[k]) end
    ctx.out:write(("ok %s %s %s rtt=%.3fms time=%.3fms pool: %s\n"):format(
        shown, res.backend, res.version ~= "" and res.version or "?", ms(res.rtt), ms(elapsed),
        table.concat(parts, " ")))
    for i = 2, #nodes do
        local n = nodes[i]
        if n.state == "ok" then
            ctx.out:write(("ok replica %s lag=%ds\n"):format(n.addr, n.lag or 0))
        else
            ctx.out:write(("warning: replica %s is %s%s; reads go to the primary or the other replicas\n"):format(
                n.addr, n.state, n.error and (": " .. util.scrub(n.error)) or ""))
        end
    end
    return "ok"
end

return M
