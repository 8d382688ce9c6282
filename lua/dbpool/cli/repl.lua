-- dbpool.cli.repl: `dbpool repl [-e TEXT] [-B] [--no-history] [[NAME=]URL...]`.
-- Opens the named connections, then hands over to the terminal front end
-- (dbpool.cli.repl_term) around the terminal-free core (dbpool.cli.repl_core).
local dbpool = require "dbpool"
local util = require "dbpool.cli.util"
local repl_core = require "dbpool.cli.repl_core"
local repl_term = require "dbpool.cli.repl_term"

local M = {}

local SPEC = {
    ["-e"] = { key = "execute", value = true, list = true },
    ["--execute"] = { key = "execute", value = true, list = true },
    ["-B"] = { key = "batch" }, ["--batch"] = { key = "batch" },
    ["--no-history"] = { key = "no_history" },
    ["--csv"] = { key = "csv" },
    ["--json"] = { key = "json" },
}

function M.command(argv, ctx)
    local o, pos = util.parse_options(argv, 1, SPEC, "repl")
    if (o.csv and 1 or 0) + (o.json and 1 or 0) + (o.batch and 1 or 0) > 1 then
        util.usage("--csv, --json and --batch do not go together", "repl")
    end
    local targets = {}
    for _, a in ipairs(pos) do
        local name, url = a:match("^([%a_][%w_]*)=(%a[%w+.-]*://.*)$")
        if not name then
            if not a:match("^%a[%w+.-]*://") then
                util.usage(("'%s' is not a URL (mysql://..., redis://...) or NAME=URL"):format(util.redact_urls(a)), "repl")
            end
            url = a
        end
        targets[#targets + 1] = { name = name, url = url }
    end
    if #pos == 0 then
        local d, r = os.getenv("DATABASE_URL"), os.getenv("REDIS_URL")
        if d and d ~= "" then targets[#targets + 1] = { name = "db", url = d } end
        if r and r ~= "" then targets[#targets + 1] = { name = "redis", url = r } end
    end
    for _, t in ipairs(targets) do util.add_url_secrets(t.url) end

    local interactive = dbpool._core.isatty(0) and not o.execute
    local repl = repl_core.new({ batch = o.batch, format = o.csv and "csv" or o.json and "json" or "table" })
    local lines = {}
    local failed = false
    for _, t in ipairs(targets) do
        local name = t.name or repl:default_name(t.url)
        local ok, msg = repl:connect(name, t.url)
        if ok then lines[#lines + 1] = msg
        else
            failed = true
            ctx.err:write(util.scrub(msg), "\n")
        end
    end
    -- the first connection given is the current one
    if repl.order[1] then repl.current = repl.order[1] end
    if failed and not interactive then
        repl:close()
        util.fail("could not open every connection given")
    end

    local histfile = os.getenv("DBPOOL_HISTFILE")
    local explicit = histfile ~= nil and histfile ~= ""
    if not explicit then
        local home = os.getenv("HOME")
        histfile = home and home ~= "" and (home .. "/.dbpool_history") or nil
    end
    if o.no_history then histfile = nil end

    local banner = table.concat(lines, "\n") .. (#lines > 0 and "\n" or "")
        .. (#lines == 0 and "No connection yet: \\connect NAME URL opens one.\n" or "")
        .. "Type \\help for help, \\q to quit.\n"
    -- Ctrl-C cancels a statement instead of killing the process (see repl_term)
    dbpool._core.trap_signals()
    return repl_term.run(repl, {
        signals = dbpool._core.signals,
        reset_signals = dbpool._core.reset_signals,
        interactive = interactive,
        execute = o.execute,
        histfile = histfile,
        write_history = histfile ~= nil and (interactive or explicit),
        out = ctx.out, err = ctx.err,
        banner = banner,
    })
end

return M
