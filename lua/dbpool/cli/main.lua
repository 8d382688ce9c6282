-- dbpool.cli.main: the `dbpool` command's dispatcher.
--
-- As in luarocks' cmd/*.lua: one module per subcommand (dbpool.cli.run,
-- .repl, .migrate, .ping, .help), each exporting `command(argv, ctx)` that
-- returns a key of EXIT (or raises); ONE xpcall here turns anything raised into
-- a message and an exit code; scripts/dbpool calls os.exit once with what
-- main() returns. Nothing deeper exits (the one exception, a second SIGINT
-- during `run`'s drain, is an immediate _exit by design).
local util = require "dbpool.cli.util"

local M = {}

-- Every exit code the command uses.
local EXIT = {
    ok = 0,          -- success
    failure = 1,     -- the work failed (script error, server down, refused migration)
    usage = 2,       -- a mistake on the command line
    sigint = 130,    -- stopped by SIGINT (after draining)
    sigterm = 143,   -- stopped by SIGTERM (after draining)
}
M.EXIT = EXIT

local COMMANDS = { run = true, repl = true, migrate = true, ping = true, help = true }
M.COMMANDS = COMMANDS

local GLOBAL = {
    ["-h"] = { key = "help" }, ["--help"] = { key = "help" },
    ["-V"] = { key = "version" }, ["--version"] = { key = "version" },
    ["-q"] = { key = "quiet" }, ["--quiet"] = { key = "quiet" },
}

local function exit_code(what)
    if type(what) == "number" then return what end
    if what == nil or what == true then return EXIT.ok end
    return EXIT[what] or EXIT.failure
end

-- main(argv [, ctx]) -> exit code. ctx may carry out/err streams (tests).
function M.main(argv, ctx)
    ctx = ctx or {}
    ctx.out = ctx.out or io.stdout
    ctx.err = ctx.err or io.stderr
    ctx.program = ctx.program or "dbpool"
    ctx.exit = EXIT
    local command

    local function dispatch()
        -- global options come before the command
        local i = 1
        local globals = {}
        while argv[i] and argv[i]:sub(1, 1) == "-" do
            local o = GLOBAL[argv[i]]
            if not o then util.usage(("unknown option '%s'"):format(argv[i])) end
            globals[o.key] = true
            i = i + 1
        end
        if globals.quiet then
            ctx.quiet = true
            require("dbpool.progress").quiet = true
        end
        if globals.version then
            local dbpool = require "dbpool"
            ctx.out:write(dbpool._VERSION, " (", _VERSION, ")\n")
            return "ok"
        end
        command = argv[i]
        if globals.help or command == nil then
            if globals.help then
                require("dbpool.cli.help").overview(ctx.out)
                return "ok"
            end
            require("dbpool.cli.help").overview(ctx.err)
            return "usage"
        end
        if not COMMANDS[command] then
            util.usage(("unknown command '%s'"):format(command))
        end
        local rest = {}
        for j = i + 1, #argv do rest[#rest + 1] = argv[j] end
        -- `dbpool COMMAND --help` anywhere before a run script's own arguments
        for _, a in ipairs(rest) do
            if a == "--help" or a == "-h" then
                require("dbpool.cli.help").show(command, ctx.out)
                return "ok"
            end
            if a == "--" or (command == "run" and a:sub(1, 1) ~= "-") then break end
        end
        ctx.command = command
        local mod = require("dbpool.cli." .. command)
        return mod.command(rest, ctx)
    end

    local function handler(e)
        if util.is_cli_error(e) then return e end
        -- SIGINT through the interpreter's handler (commands that do not trap signals)
        if type(e) == "string" and e:match("interrupted!$") then return util.cli_error("sigint", "interrupted") end
        -- anything else is a bug in the command: keep the traceback
        return util.cli_error("failure", "internal error: " .. tostring(e), { traceback = debug.traceback("", 2) })
    end

    local ok, r = xpcall(dispatch, handler)
    if ok then return exit_code(r) end
    local prefix = ctx.program .. (command and COMMANDS[command] and (" " .. command) or "") .. ": "
    local msg = util.scrub(r.message)
    ctx.err:write(prefix, msg, "\n")
    if r.traceback then ctx.err:write(util.scrub(r.traceback), "\n") end
    if r.exit == "usage" then
        local hint = (command and COMMANDS[command] and command ~= "help")
            and ("Try '" .. ctx.program .. " help " .. command .. "'.")
            or ("Try '" .. ctx.program .. " --help'.")
        ctx.err:write(hint, "\n")
    end
    ctx.err:flush()
    return exit_code(r.exit)
end

return M
