-- dbpool.cli.repl_term: the REPL's thin terminal front end.
--
-- Reads lines (GNU readline through Debian's lua-readline when stdin is a
-- terminal, plain io.read otherwise), feeds them to dbpool.cli.repl_core and
-- writes what it hands back. History: the core gives the entries that may be
-- stored (URLs redacted, lines that could carry a password left out); they go
-- to readline's in-memory list and are appended to the history file, which
-- readline itself never writes.
local M = {}

local KEEP = 1000 -- history entries kept in the file

local function load_history(path)
    local lines = {}
    local f = path and io.open(path, "r")
    if not f then return lines end
    for l in f:lines() do if l ~= "" then lines[#lines + 1] = l end end
    f:close()
    if #lines > 2 * KEEP then
        -- keep the file short: rewrite it with the newest entries
        local keep = {}
        for i = #lines - KEEP + 1, #lines do keep[#keep + 1] = lines[i] end
        lines = keep
        local w = io.open(path, "w")
        if w then w:write(table.concat(lines, "\n"), "\n") w:close() end
    end
    return lines
end

local function append_history(path, entries)
    if not path or #entries == 0 then return end
    local existed = io.open(path, "r")
    if existed then existed:close() end
    local f = io.open(path, "a")
    if not f then return end
    for _, e in ipairs(entries) do f:write((e:gsub("[\r\n]", " ")), "\n") end
    f:close()
    -- only the owner reads it (it never holds a password, but it holds queries)
    if not existed then os.execute("chmod 600 -- '" .. path:gsub("'", "'\\''") .. "' 2>/dev/null") end
end

-- Splits a text given with -e into lines.
local function lines_of(text)
    local out = {}
    for l in (text .. "\n"):gmatch("(.-)\r?\n") do out[#out + 1] = l end
    return out
end

-- The terminal's width: readline exports COLUMNS once it has started; before
-- that (and without readline) stty asks the terminal.
local function term_width()
    local c = tonumber(os.getenv("COLUMNS"))
    if c and c > 0 then return c end
    local p = io.popen("stty size </dev/tty 2>/dev/null")
    local line = p and p:read("l")
    if p then p:close() end
    return tonumber(line and line:match("^%d+%s+(%d+)")) or 0
end

-- run(repl, opts) -> "ok" | "failure"
--   opts.interactive   stdin is a terminal: readline, prompts, history
--   opts.execute       list of texts to run instead of reading input
--   opts.histfile      history file; opts.write_history: append to it
--   opts.readline      the readline module (default: require "readline")
--   opts.input, opts.out, opts.err   streams (default io.stdin/stdout/stderr)
--   opts.banner        text shown first when interactive
--   opts.signals       a function returning the signals caught since the
--                      last call (dbpool.core.signals once trap_signals ran)
--   opts.reset_signals the next signal counts as a first one again
--                      (dbpool.core.reset_signals)
--
-- Ctrl-C (with opts.signals): a running statement is cancelled (MySQL: KILL
-- QUERY; Redis: its connection is dropped), a Lua line is interrupted; at the
-- prompt the line being typed is discarded when it ends. SIGTERM, or SIGINT
-- without a terminal, ends the REPL: "sigint" / "sigterm". The core's
-- handler ends the process at the second signal it ever receives, so a
-- second Ctrl-C in a session quits the REPL at once (exit 130); the hint
-- says so. Stopping a \watch does not count towards it. (History is appended entry by entry, so nothing is lost.)
function M.run(repl, opts)
    local out, err = opts.out or io.stdout, opts.err or io.stderr
    local input = opts.input or io.stdin
    local interactive = opts.interactive
    local hist_path = opts.write_history and opts.histfile or nil

    local caught = {}
    local function take_signal()
        if not opts.signals then return nil end
        for _, s in ipairs(opts.signals()) do caught[#caught + 1] = s end
        local sig
        for _, s in ipairs(caught) do if s == "SIGTERM" or not sig then sig = s end end
        caught = {}
        return sig
    end
    if opts.signals then repl.check_interrupt = take_signal end
    local stopped

    local rl
    if interactive and not opts.execute then
        local ok, mod = pcall(function() return opts.readline or require("readline") end)
        if ok then
            rl = mod
            -- readline keeps the list; we alone write the file (redacted entries)
            rl.set_options({ histfile = "", auto_add = false, keeplines = KEEP, completion = true })
            rl.set_readline_name("dbpool")
            -- completion asks the core (backslash commands, SQL keywords, the
            -- database's table and column names, Redis commands)
            if rl.set_complete_function then
                rl.set_complete_function(function(text, from, to)
                    local ok, list = pcall(repl.complete, repl, text, from, to)
                    return ok and list or {}
                end)
            end
            if opts.histfile then
                for _, l in ipairs(load_history(opts.histfile)) do rl.add_history(l) end
            end
        end
    end

    -- interactive: one stream, in the order the core said things
    local function show(o, e, all)
        if interactive then
            out:write(all or (o .. e))
        else
            if o ~= "" then out:write(o) end
            if e ~= "" then err:write(e) end
        end
        out:flush()
    end

    local function after_feed()
        local h = repl:take_history()
        if rl then for _, e in ipairs(h) do rl.add_history(e) end end
        append_history(hist_path, h)
    end

    if interactive and opts.banner then out:write(opts.banner) end

    -- \watch: the watched statement, then a wait of its interval, until
    -- the count is reached or a signal stops it (Ctrl-C: the REPL goes on).
    local sleep = opts.sleep or function(s) require("dbpool").sleep(s):await() end
    local clock = opts.clock or require("dbpool")._core.now
    -- Ctrl-C is how a \watch is meant to end: it was handled, so the next
    -- one counts as a first again (it cancels, rather than quitting the REPL)
    local function watch_stopped(sig)
        show("", "\\watch stopped (" .. sig .. ").\n")
        if opts.reset_signals then opts.reset_signals() end
    end
    local function watch()
        while repl.watching and not stopped do
            show(repl:watch_tick())
            local isig = repl.interrupted
            repl.interrupted = nil
            if isig then
                repl:stop_watch()
                if isig == "SIGTERM" then stopped = isig else watch_stopped(isig) end
                break
            end
            local w = repl.watching
            if not w then break end
            local deadline = clock() + w.interval
            while clock() < deadline do
                local sig = take_signal()
                if sig then
                    repl:stop_watch()
                    if sig == "SIGTERM" then stopped = sig else watch_stopped(sig) end
                    break
                end
                sleep(math.min(0.05, math.max(deadline - clock(), 0)))
            end
        end
    end

    if opts.execute then
        for _, text in ipairs(opts.execute) do
            for _, l in ipairs(lines_of(text)) do
                show(repl:feed(l))
                after_feed()
                if repl.watching then watch() end
                if repl.done or stopped then break end
            end
            if stopped then break end
            if repl.done then break end
            -- each -e text stands alone: an unterminated last statement runs
            show(repl:finish())
        end
    else
        while not repl.done and not stopped do
            if interactive then repl.width = term_width() end
            local line
            if rl then
                line = rl.readline(repl:prompt())
            else
                if interactive then out:write(repl:prompt()) out:flush() end
                line = input:read("L")
                if line then line = line:gsub("\r?\n$", "") end
            end
            local sig = take_signal()
            if sig == "SIGTERM" or (sig and not interactive) then stopped = sig break end
            if line == nil then
                if interactive then out:write("\n") end
                break
            end
            if sig then
                repl:clear()
                out:write("^C: line discarded (Ctrl-C again quits)\n")
            else
                show(repl:feed(line))
                after_feed()
                if repl.watching then watch() end
                if stopped then break end
                local isig = repl.interrupted
                repl.interrupted = nil
                if isig == "SIGTERM" or (isig and not interactive) then stopped = isig break end
                if isig then out:write("(Ctrl-C again quits)\n") end
            end
        end
        if not repl.done and not stopped then show(repl:finish()) end
    end
    repl:close()
    if stopped then
        err:write("dbpool repl: stopped by ", stopped, "\n")
        return stopped == "SIGTERM" and "sigterm" or "sigint"
    end
    if not interactive and repl.nerrors > 0 then return "failure" end
    return "ok"
end

M.load_history = load_history
M.append_history = append_history

return M
