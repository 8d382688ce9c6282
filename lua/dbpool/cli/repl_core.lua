-- dbpool.cli.repl_core: the REPL without a terminal (as in hoelzro/lua-repl).
--
-- It is fed one line at a time and hands back what to show; it never reads
-- or writes a terminal, so tests drive it with scripted lines:
--
--   local repl = require("dbpool.cli.repl_core").new{}
--   repl:connect("db", url)
--   local out, err = repl:feed("SELECT 1;")
--   repl:prompt()          -- "db> ", "  -> " while a statement continues
--   repl:take_history()    -- what may go to the history file (redacted)
--   repl.done              -- true after \q
--   repl:close()
--
-- Each connection is a pool plus one pinned connection the REPL's statements
-- run on, so session state (USE, SET @x, BEGIN...COMMIT, temporary tables,
-- Redis SELECT and MULTI) behaves as in the mysql client and redis-cli. Lua
-- lines see the pools themselves.
local dbpool = require "dbpool"
local util = require "dbpool.cli.util"
local sql = require "dbpool.cli.sql"
local render = require "dbpool.cli.render"
local dialect = require "dbpool.cli.dialect"

local M = {}
local Repl = {}
Repl.__index = Repl

local now = dbpool._core.now

local HELP = [[
SQL (MySQL connection): end statements with ';' (or \G for vertical rows).
Redis connection: commands as in redis-cli, e.g.  SET k "a b"  /  HGETALL h
Lua: '= EXPR' or 'lua CODE'; pools by name (db, redis, ...), dbpool, null;
     returned promises are awaited.

\connect NAME URL   open a connection and use it     \use NAME      switch
\connect NAME       switch to NAME                    \list          connections
\disconnect NAME    close a connection                \ping [NAME]   round trip, version
\stats [NAME]       pool statistics                   \timing [on|off]
\d                  tables (Redis: key patterns)      \d NAME       describe a table (Redis: a key)
\x [on|off]         expanded output (one column per line)
\watch SECONDS [N]  run the last statement again every SECONDS (N times; Ctrl-C stops)
\i FILE             run the statements in FILE        \o [FILE]     results to FILE (\o: back)
\refresh            reload the names tab completes    \null TEXT     how NULL is shown
\c                  clear the statement being typed   \help          this text
\q                  quit (also quit, exit, Ctrl-D)
]]

-- Redis commands the REPL will not send: they turn a connection into a stream
-- or make its replies stop matching its commands.
local REDIS_REFUSED = {
    SUBSCRIBE = "use Lua: lua sub = redis:subscribe('ch', function(ch, msg) print(ch, msg) end)",
    PSUBSCRIBE = "use Lua: lua sub = redis:psubscribe('p*', function(ch, msg) print(ch, msg) end)",
    SSUBSCRIBE = "not supported in the REPL",
    MONITOR = "not supported in the REPL (use redis-cli monitor)",
    SYNC = "not supported in the REPL", PSYNC = "not supported in the REPL",
}

-- Lines that may set a password are kept out of the history entirely (as
-- the mysql client's default histignore "*IDENTIFIED*:*PASSWORD*" does).
local HIST_IGNORE = { "identified", "password", "requirepass", "masterauth", "acl%s+setuser" }

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function first_line(s)
    local l = s:match("^[^\n]*")
    if #l > 60 then l = l:sub(1, 57) .. "..." end
    return l
end

local function errtext(e)
    if type(e) == "table" then
        if e.kind == "sql" and e.code then
            return ("ERROR %d (%s): %s"):format(e.code, e.sqlstate or "HY000", tostring(e.message))
        end
        if e.kind == "redis" then return "(error) " .. tostring(e.message) end
        if e.message then return "ERROR: " .. tostring(e.message) end
    end
    return "ERROR: " .. tostring(e)
end

-- new{ batch = false, format = "table" | "csv" | "json", width = 0, timing = false,
--      null = "NULL", probe_timeout = 5 }
function M.new(opts)
    opts = opts or {}
    local self = setmetatable({
        conns = {}, order = {}, current = nil,
        buffer = "", delimiter = ";", hist_lines = {}, history = {},
        lua_buf = nil,
        timing = opts.timing or false,
        batch = opts.batch or false,
        format = opts.format or "table",
        width = opts.width or 0,
        vertical = false,
        null = opts.null or "NULL",
        probe_timeout = opts.probe_timeout or 5,
        nerrors = 0,
        done = false,
    }, Repl)
    self.env = setmetatable({}, { __index = function(_, k)
        local c = self.conns[k]
        if c then return c.pool end
        if k == "dbpool" then return dbpool end
        if k == "null" then return dbpool.null end
        if k == "print" then return self.print end
        return _G[k]
    end })
    -- print() in Lua lines: into the REPL's output, in order with the rest
    self.print = function(...)
        local parts = {}
        for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
        local text = table.concat(parts, "\t") .. "\n"
        if self.printing then self:_say(self.printing, text) else io.stdout:write(text) end
    end
    return self
end

---------------------------------------------------------------------------
-- Connections
---------------------------------------------------------------------------

-- A default name for a URL's connection: db, db2 ... / redis, redis2 ...
function Repl:default_name(url)
    local scheme = tostring(url):match("^(%a[%w+.-]*)://") or "db"
    local base = (scheme == "mysql" or scheme == "postgres" or scheme == "postgresql") and "db" or (scheme == "redis-cluster" and "cluster") or (scheme == "redis" and "redis") or scheme
    local name, k = base, 1
    while self.conns[name] do k = k + 1; name = base .. k end
    return name
end

-- connect(name, url) -> ok, message. Opens the pool and pins the REPL's
-- session connection (so a wrong password or a dead server shows at once).
function Repl:connect(name, url)
    if not name:match("^[%a_][%w_]*$") then
        return false, ("ERROR: '%s' is not a usable name (letters, digits, _)"):format(name)
    end
    util.add_url_secrets(url)
    local ok, pool = pcall(dbpool.open, url, {})
    if not ok then return false, errtext(pool) end
    local c = { name = name, url = util.redact(url), pool = pool, backend = pool._backend }
    -- while the REPL waits for a session, the first failed connect ends the wait
    pool:on("error", function(ev)
        -- a warning (no error kind: a replica lagging or down, a limit) is no failed connect
        if ev.error and (ev.error.kind or "") == "" then return end
        if c.watch then c.failed = c.failed or ev.error or { kind = "connection", message = ev.message } end
    end)
    local sok, serr = self:session(c)
    if not sok then
        pcall(function() pool:close({ timeout = 0 }):result() end)
        return false, errtext(serr)
    end
    local old = self.conns[name]
    if old then self:disconnect(name) end
    self.conns[name] = c
    self.order[#self.order + 1] = name
    self.current = name
    local _, _, version = pool._c:describe()
    return true, ("Connected to %s as '%s' (%s%s)."):format(c.url, name, c.backend,
        version and version ~= "" and (" " .. version) or "")
end

function Repl:disconnect(name)
    local c = self.conns[name]
    if not c then return false end
    if c.conn then pcall(function() c.conn:discard() end) c.conn = nil end
    pcall(function() c.pool:close({ timeout = 2 }):result() end)
    self.conns[name] = nil
    for i, n in ipairs(self.order) do if n == name then table.remove(self.order, i) break end end
    if self.current == name then self.current = self.order[1] end
    return true
end

-- The pinned connection of c (a fresh one when the old one died).
-- -> true, conn, note: note is set when the session had to be renewed (it
-- says so, as the mysql client does); -> false, err when no connection came.
-- Fails fast: a refused connect is an answer, not something to wait 30 s for.
function Repl:session(c)
    if c.backend == "redis-cluster" then return true, c.pool end -- routed per key: no pinning
    if c.conn then
        if c.conn._c:ok() then return true, c.conn end
        self:_drop_session(c)
    end
    -- the error event of a connection that died before now is not this
    -- connect's failure: let it be delivered before the watch begins
    dbpool._step(false)
    c.failed, c.watch = nil, true
    local p = c.pool:acquire({ timeout = self.probe_timeout })
    while p:status() == "pending" and not c.failed do dbpool._step(true) end
    c.watch = false
    local failed = c.failed
    if p:status() == "pending" then
        -- the acquire is abandoned: when it settles, its connection goes back
        p:next(function(conn) conn:release() end, function() end)
        return false, failed
    end
    local ok, conn = p:result()
    if not ok then return false, conn end
    c.conn = conn
    c.in_multi = false
    if not c.lost then return true, conn end
    c.lost = nil
    return true, conn, self:_renewed(c, conn)
end

-- Lets go of c's dead (or abandoned) session connection; the next statement
-- gets a new one and is told that the session state is gone.
function Repl:_drop_session(c)
    if c.conn then pcall(function() c.conn:discard() end) end
    c.conn = nil
    c.lost = true
    -- (the state after the last statement: a dead connection knows none)
    c.lost_tx = c.lost_tx or c.in_tx or c.in_multi
    c.in_multi, c.in_tx = false, false
end

local SESSION_STATE = {
    mysql = "variables, temporary tables, an open transaction",
    postgres = "settings, temporary tables, an open transaction, prepared statements, LISTEN",
    redis = "MULTI, WATCH, CLIENT SETNAME",
}

-- A new session after a lost one: the database chosen with USE / SELECT is
-- chosen again (as the mysql client and redis-cli do); the note says what
-- happened, in the mysql client's manner.
function Repl:_renewed(c, conn)
    local again = ""
    local ok, err
    local d = dialect.of(c.backend)
    if d and c.database then
        ok, err = pcall(function() return conn:query(d.use(c.database)):await() end)
        again = ok and (" Current database: " .. c.database .. ".")
            or (" Could not USE " .. c.database .. " again: " .. errtext(err) .. ".")
    elseif c.backend == "redis" and c.db then
        ok, err = pcall(function() return conn:call("SELECT", c.db):await() end)
        again = ok and (" Database " .. c.db .. " selected again.")
            or (" Could not SELECT " .. c.db .. " again: " .. errtext(err) .. ".")
    end
    return ("ERROR: connection lost; reconnected (connection id %s). Session state (%s) is gone.%s"):format(
        tostring(conn:id()), SESSION_STATE[c.backend] or "its state", again)
end

function Repl:close()
    if self.outfile then self.outfile:close() self.outfile = nil end
    for _, name in ipairs({ table.unpack(self.order) }) do self:disconnect(name) end
end

---------------------------------------------------------------------------
-- Output helpers
---------------------------------------------------------------------------
-- What one feed shows: output, errors, and both in the order they came
-- (a terminal shows them interleaved).
local function Out()
    return { out = {}, err = {}, all = {} }
end

local function put(o, stream, text)
    stream[#stream + 1] = text
    o.all[#o.all + 1] = text
end

function Repl:_error(o, text)
    self.nerrors = self.nerrors + 1
    put(o, o.err, util.scrub(text) .. "\n")
end

-- A message (not a result): in --csv/--json mode stdout carries results
-- alone, so messages go to the error stream (they are not errors).
function Repl:_say(o, text)
    if self.format ~= "table" then return put(o, o.err, text) end
    put(o, o.out, text)
end

-- A result (rows, a reply, \d, a Lua value): to the \o file when one is open.
function Repl:_result(o, text)
    if self.outfile then
        self.outfile:write(text)
        self.outfile:flush()
        return
    end
    put(o, o.out, text)
end

-- Error-stream text that is not a failed statement (a reconnect notice).
function Repl:_note(o, text)
    put(o, o.err, util.scrub(text) .. "\n")
end

---------------------------------------------------------------------------
-- History
---------------------------------------------------------------------------

-- The form of an input that may be stored: URLs redacted, known passwords
-- taken out, and nil for lines that may carry a password in another form.
function M.history_entry(text)
    local lower = text:lower()
    for _, pat in ipairs(HIST_IGNORE) do
        if lower:find(pat) then return nil end
    end
    local first = lower:match("^%s*(%S+)")
    if first == "auth" or first == "hello" or first == "migrate" and lower:find("%sauth2?%s") then return nil end
    local c = text:match("^%s*\\connect%s+(.*)$")
    if c then
        local name, url = c:match("^(%S+)%s+(%S+)")
        if not url and c:find("://", 1, true) then url = trim(c) name = nil end
        if url then
            text = "\\connect " .. (name and (name .. " ") or "") .. util.redact(url)
        end
    end
    return util.scrub(text)
end

function Repl:_remember(text)
    local e = M.history_entry(text)
    if e and e ~= "" then self.history[#self.history + 1] = e end
end

-- Entries completed since the last call.
function Repl:take_history()
    local h = self.history
    self.history = {}
    return h
end

---------------------------------------------------------------------------
-- Prompt
---------------------------------------------------------------------------
-- How the current connection's SQL splits into statements.
function Repl:_split_flavor()
    local c = self.current and self.conns[self.current]
    local d = c and dialect.of(c.backend)
    return d and d.split or nil
end

function Repl:prompt()
    local name = self.current or "dbpool"
    local main = name .. "> "
    local pad = function(s) return (" "):rep(math.max(#main - #s, 0)) .. s end
    if self.lua_buf then return pad(">> ") end
    if self.buffer ~= "" then
        local _, _, open = sql.split(self.buffer, self.delimiter, false, self:_split_flavor())
        if open == "/*" then return pad("/*> ") end
        if open then return pad(open .. "> ") end
        return pad("-> ")
    end
    return main
end

---------------------------------------------------------------------------
-- Evaluation
---------------------------------------------------------------------------

-- Awaits promises among the values (a Lua line's results).
local function settle_values(r)
    for i = 1, r.n do
        if dbpool.is_promise(r[i]) then
            local ok, v = r[i]:result()
            if not ok then error(v, 0) end
            r[i] = v
        end
    end
    return r
end

function Repl:_lua(o, code)
    local fn, err = load("return " .. code, "=lua", "t", self.env)
    if not fn then fn, err = load(code, "=lua", "t", self.env) end
    if not fn then
        if err:match("<eof>$") then
            self.lua_buf = code
            return
        end
        return self:_error(o, "ERROR: " .. err)
    end
    local t0 = now()
    self.printing = o
    local check = self.check_interrupt
    if check then
        -- Ctrl-C ends a Lua line, even one that computes or awaits at length
        debug.sethook(function()
            local sig = check()
            if sig then self.interrupted = sig error("interrupted (" .. sig .. ")", 0) end
        end, "", 10000)
    end
    local r = table.pack(xpcall(function() return settle_values(table.pack(fn())) end, function(e)
        if type(e) == "table" then return e end
        return tostring(e)
    end))
    if check then debug.sethook() end
    self.printing = nil
    local dt = now() - t0
    if not r[1] then
        local e = r[2]
        if type(e) == "string" then e = e:match("^[^\n]*") end -- the message; a one-liner needs no traceback
        return self:_error(o, type(e) == "table" and errtext(e) or ("ERROR: " .. e))
    end
    local vals = r[2]
    if vals.n > 0 then self.env._ = vals[1] end
    local texts = {}
    for i = 1, vals.n do
        local v = vals[i]
        if type(v) == "table" and v.columns and getmetatable(v) == nil then
            texts[#texts + 1] = render.result(v, self:_render_opts(nil, dt, false))
        elseif render.is_null(v) and v ~= nil then
            texts[#texts + 1] = "null\n"
        else
            texts[#texts + 1] = render.lua(v) .. "\n"
        end
    end
    if #texts > 0 then self:_result(o, table.concat(texts)) end
    if self.timing then self:_say(o, ("(%.3f sec)\n"):format(dt)) end
end

-- Waits for p. With check_interrupt (the front end's Ctrl-C), an interrupt
-- calls cancel() (KILL QUERY, or dropping the connection) and the wait goes
-- on a few seconds for the op to settle before it is abandoned.
function Repl:_await(p, cancel)
    local check = self.check_interrupt
    if check then
        local deadline
        while p:status() == "pending" do
            dbpool._step(true)
            local sig = check()
            if sig and not deadline then
                self.interrupted = sig
                deadline = now() + 3
                if cancel then pcall(cancel) end
            end
            if deadline and now() > deadline then
                p:next(nil, function() end) -- settles later; nobody needs it
                return false, { kind = "closed", message = "interrupted; the statement was abandoned" }
            end
        end
    end
    return p:result()
end

function Repl:_render_opts(term, elapsed, vertical)
    return {
        vertical = vertical or self.vertical,
        batch = self.batch,
        null = self.null,
        width = self.width,
        timing = self.timing,
        elapsed = elapsed,
    }
end

-- The error of a statement whose session connection died under it.
local function lost_with(conn, err)
    return type(err) == "table" and err.kind == "connection" and not conn:ok()
end

local function not_run_in_tx(c)
    return { kind = "connection", sent = false, message = dialect.of(c.backend)
        and "connection lost with a transaction open (the server rolled it back); the statement was not run"
        or "connection lost inside MULTI (the queued commands were discarded); the command was not run" }
end

-- Runs one statement on c's session: send(conn) -> promise, cancel function.
-- -> true, value | false, err, note (a note to show after the error).
-- When the session connection turns out dead (killed, timed out by the
-- server, restarted), the session is renewed (session() says so) and:
--   * a statement known NOT sent (err.sent false) runs once more on the new
--     connection;
--   * one that may have run (err.sent true) is reported failed and not run
--     again;
--   * but if the lost session had a transaction or MULTI open, the statement
--     is not run at all: the server rolled the transaction back, and running
--     its next statement alone (autocommitted) is not what was typed.
function Repl:_on_session(o, c, send)
    local ok, conn, note = self:session(c)
    if not ok then return false, conn end
    if note then
        self:_note(o, note)
        if c.lost_tx then c.lost_tx = nil return false, not_run_in_tx(c) end
    end
    for attempt = 1, 2 do
        local sok, p, cancel = pcall(send, conn)
        local res = p
        if sok then sok, res = self:_await(p, cancel) end
        if conn ~= c.pool and conn:ok() then c.in_tx = conn:in_transaction() end
        if sok then return true, res end
        if conn == c.pool or self.interrupted or not lost_with(conn, res) then return false, res end
        self:_drop_session(c)
        local in_tx = c.lost_tx
        if res.sent or in_tx or attempt == 2 then
            c.lost_tx = nil
            local renewed, why, after = self:session(c)
            if not renewed then
                after = "ERROR: connection lost; could not reconnect (" .. errtext(why) .. "); the next statement tries again."
            end
            if res.sent then return false, res, after end
            if in_tx then return false, not_run_in_tx(c), after end
            return false, { kind = "connection", sent = false, message = "connection lost again; the statement was not run" }, after
        end
        -- known not sent: a new session, and the statement once more
        ok, conn, note = self:session(c)
        if not ok then
            return false, { kind = "connection", sent = false, message = "connection lost; could not reconnect ("
                .. errtext(conn) .. "); the statement was not run" }
        end
        if note then self:_note(o, note) end
    end
end

-- Shows a failed statement's error, then what followed it (a reconnect).
function Repl:_failed(o, err, after)
    self:_error(o, errtext(err))
    if after then self:_note(o, after) end
end

function Repl:_run_sql(o, c, stmt)
    local t0 = now()
    local ok, res, after = self:_on_session(o, c, function(conn)
        return conn:query(stmt.sql), function()
            -- as the mysql client does on Ctrl-C: stop the statement on the server
            local id = conn:id()
            if id and id > 0 then c.pool:query(dialect.of(c.backend).cancel(id)):next(nil, function() end) end
        end
    end)
    local dt = now() - t0
    if not ok then return self:_failed(o, res, after) end
    -- USE is chosen again when the session is renewed (as the mysql client does)
    local db = stmt.sql:match("^[Uu][Ss][Ee]%s+(%S+)$")
    if db then c.database = db end
    self.last = { conn = c.name, stmt = stmt }
    -- the names tab completes change with the schema
    local kw = sql.keyword(stmt.sql)
    if db or kw == "CREATE" or kw == "ALTER" or kw == "DROP" or kw == "RENAME" then c.names = nil end
    if self.format == "csv" then return self:_result(o, render.csv(res)) end
    if self.format == "json" then return self:_result(o, render.json_rows(res)) end
    local vertical = stmt.term == "\\G"
    self:_result(o, render.result(res, self:_render_opts(stmt.term, dt, vertical)))
end

function Repl:_redis(o, c, line)
    local argv, err = render.redis_split(line)
    if not argv then return self:_error(o, "(error) " .. err) end
    if #argv == 0 then return end
    local cmd = argv[1]:upper()
    local why = REDIS_REFUSED[cmd]
    if not why and cmd == "HELLO" and argv[2] == "3" then why = "RESP3 is not supported; HELLO 2 is" end
    if not why and cmd == "CLIENT" and tostring(argv[2]):upper() == "REPLY" then why = "not supported in the REPL" end
    if why then return self:_error(o, ("(error) %s: %s"):format(cmd, why)) end
    local t0 = now()
    local rok, reply, after = self:_on_session(o, c, function(target)
        return target:call(argv), function()
            -- a Redis command cannot be stopped: drop the connection under it
            if c.conn then self:_drop_session(c) end
        end
    end)
    local dt = now() - t0
    self.last = { conn = c.name, line = line }
    if rok and self.format ~= "table" then
        if cmd == "MULTI" then c.in_multi = true end
        if cmd == "EXEC" or cmd == "DISCARD" then c.in_multi = false end
        return self:_result(o, render.redis_machine(reply, self.format))
    end
    if rok then
        if cmd == "MULTI" then c.in_multi = true end
        -- SELECT is made again when the session is renewed (as redis-cli does)
        if cmd == "SELECT" and not c.in_multi and argv[2] then c.db = argv[2] end
        self:_result(o, render.redis(reply, render.redis_status(argv, reply, c.in_multi and cmd ~= "MULTI")))
        if cmd == "EXEC" or cmd == "DISCARD" then c.in_multi = false end
    else
        if cmd == "EXEC" or cmd == "DISCARD" then c.in_multi = false end
        self:_failed(o, reply, after)
    end
    if self.timing then self:_say(o, ("(%.3f sec)\n"):format(dt)) end
end

---------------------------------------------------------------------------
-- Backslash commands
---------------------------------------------------------------------------
local COMMANDS = {}

COMMANDS["connect"] = function(self, o, args)
    local name, url = args[1], args[2]
    if not name then return self:_error(o, "ERROR: usage: \\connect NAME URL (or \\connect NAME to switch)") end
    if not url and name:find("://", 1, true) then url, name = name, self:default_name(name) end
    if not url then
        if not self.conns[name] then return self:_error(o, ("ERROR: no connection named '%s' (\\list shows them)"):format(name)) end
        self.current = name
        return self:_say(o, ("Using '%s' (%s).\n"):format(name, self.conns[name].url))
    end
    local ok, msg = self:connect(name, url)
    if ok then self:_say(o, msg .. "\n") else self:_error(o, msg) end
end

COMMANDS["use"] = function(self, o, args)
    local name = args[1]
    if not name or not self.conns[name] then
        return self:_error(o, ("ERROR: no connection named '%s' (\\list shows them)"):format(tostring(name)))
    end
    self.current = name
    self:_say(o, ("Using '%s' (%s).\n"):format(name, self.conns[name].url))
end
COMMANDS["u"] = COMMANDS["use"]

COMMANDS["list"] = function(self, o)
    if #self.order == 0 then return self:_say(o, "No connections. \\connect NAME URL opens one.\n") end
    local res = { columns = { "", "name", "backend", "url" } }
    for _, n in ipairs(self.order) do
        local c = self.conns[n]
        res[#res + 1] = { [""] = n == self.current and "*" or "", name = n, backend = c.backend, url = c.url }
    end
    self:_say(o, render.table(res))
end
COMMANDS["l"] = COMMANDS["list"]

COMMANDS["disconnect"] = function(self, o, args)
    local name = args[1] or self.current
    if not name or not self:disconnect(name) then
        return self:_error(o, ("ERROR: no connection named '%s'"):format(tostring(name)))
    end
    self:_say(o, ("Closed '%s'.%s\n"):format(name, self.current and (" Using '" .. self.current .. "'.") or ""))
end

COMMANDS["timing"] = function(self, o, args)
    local a = args[1] and args[1]:lower()
    if a == "on" then self.timing = true elseif a == "off" then self.timing = false
    elseif a == nil then self.timing = not self.timing
    else return self:_error(o, "ERROR: usage: \\timing [on|off]") end
    self:_say(o, "Timing is " .. (self.timing and "on" or "off") .. ".\n")
end

COMMANDS["x"] = function(self, o, args)
    local a = args[1] and args[1]:lower()
    if a == "on" then self.vertical = true elseif a == "off" then self.vertical = false
    elseif a == nil then self.vertical = not self.vertical
    else return self:_error(o, "ERROR: usage: \\x [on|off]") end
    self:_say(o, "Expanded display is " .. (self.vertical and "on" or "off") .. ".\n")
end

COMMANDS["null"] = function(self, o, args, rest)
    if rest == "" then return self:_error(o, "ERROR: usage: \\null TEXT") end
    self.null = rest
    self:_say(o, ("NULL is shown as '%s'.\n"):format(rest))
end

local function pick(self, o, name)
    name = name or self.current
    local c = name and self.conns[name]
    if not c then self:_error(o, name and ("ERROR: no connection named '" .. name .. "'") or "ERROR: no connection (\\connect NAME URL)") end
    return c
end

COMMANDS["stats"] = function(self, o, args)
    local c = pick(self, o, args[1])
    if not c then return end
    local s = c.pool:stats()
    local ms = function(x) return ("%.3f ms"):format((x or 0) * 1000) end
    local rows = { columns = { "stat", "value" } }
    local function add(k, v) rows[#rows + 1] = { stat = k, value = v } end
    add("connections", ("%d (idle %d, busy %d, connecting %d, pinned %d; max %d)"):format(
        s.total, s.idle, s.busy, s.connecting, s.pinned, s.max))
    add("waiting", s.waiting)
    add("ops", ("%d (fulfilled %d, rejected %d)"):format(s.ops, s.fulfilled, s.rejected))
    add("errors", ("%d (timeouts %d, retried %d, lost %d, connect failures %d)"):format(
        s.errors, s.timeouts, s.retried, s.lost, s.connect_failures))
    add("created / closed", ("%d / %d"):format(s.created, s.closed))
    add("wait p50 / p99 / max", ms(s.wait_p50) .. " / " .. ms(s.wait_p99) .. " / " .. ms(s.wait_max))
    add("run p50 / p99 / max", ms(s.run_p50) .. " / " .. ms(s.run_p99) .. " / " .. ms(s.run_max))
    if s.server_max_connections then add("server max connections", s.server_max_connections) end
    if s.server_wait_timeout then add("server idle timeout", s.server_wait_timeout .. " s") end
    for _, n in ipairs(s.nodes or {}) do
        -- a pool with replicas: one line per node
        add(n.role .. " " .. n.addr, ("%s%s, %d sent here, %d ops, %d errors%s"):format(
            n.state or "?", n.lag and (", lag " .. n.lag .. " s") or "", n.routed or 0, n.stats.ops, n.stats.errors,
            n.error and ("; " .. n.error) or ""))
    end
    self:_say(o, c.name .. " " .. c.url .. "\n" .. render.table(rows))
end

COMMANDS["ping"] = function(self, o, args)
    local c = pick(self, o, args[1])
    if not c then return end
    local ok, r = pcall(function() return require("dbpool.cli.ping").ping_promise(c.pool, self.probe_timeout):await() end)
    if not ok then return self:_error(o, errtext(r)) end
    self:_say(o, ("PONG from '%s' (%s %s) in %.3f ms\n"):format(c.name, r.backend, r.version, r.rtt * 1000))
end

COMMANDS["help"] = function(self, o) self:_say(o, HELP) end
COMMANDS["h"] = COMMANDS["help"]
COMMANDS["?"] = COMMANDS["help"]

COMMANDS["q"] = function(self) self.done = true end
COMMANDS["quit"] = COMMANDS["q"]
COMMANDS["exit"] = COMMANDS["q"]

COMMANDS["c"] = function(self) self:clear() end

---------------------------------------------------------------------------
-- \d: what is in the database
---------------------------------------------------------------------------

-- Runs one query of the REPL's own on c's session. -> result | nil (the
-- error shown)
function Repl:_query(o, c, text, params)
    local ok, res, after = self:_on_session(o, c, function(conn) return conn:query(text, params) end)
    if not ok then self:_failed(o, res, after) return nil end
    return res
end

-- Rows the REPL made itself (\d), in the output format: a table, or CSV /
-- JSON rows like a statement's.
function Repl:_rows_text(res, title)
    if self.format == "csv" then return render.csv(res) end
    if self.format == "json" then return render.json_rows(res) end
    return (title or "") .. render.result(res, self:_render_opts(nil, nil, false))
end

-- Redis: keys are grouped into patterns by replacing each part (between
-- ':' or '.') that is a number, a UUID or a long hex id with '*'.
function M.key_pattern(key)
    return (key:gsub("[^:./]+", function(part)
        if part:match("^%d+$") or part:match("^%x+%-%x+%-%x+%-%x+%-%x+$") or (#part >= 12 and part:match("^%x+$")) then
            return "*"
        end
        return part
    end))
end

M.SCAN_LIMIT = 10000 -- \d on Redis looks at no more keys than this

local function redis_call(self, o, c, ...)
    local argv = { ... }
    local ok, r, after = self:_on_session(o, c, function(target) return target:call(argv) end)
    if not ok then self:_failed(o, r, after) return nil end
    return r
end

function Repl:_describe_redis(o, c, arg)
    if c.backend == "redis-cluster" then
        return self:_error(o, "ERROR: \\d scans one server; on a cluster use Lua (cluster:nodes()) or redis-cli --cluster")
    end
    if arg and not arg:find("[*?%[]") then
        -- one key: its type, size and expiry
        local t = redis_call(self, o, c, "TYPE", arg)
        if not t then return end
        if t == "none" then return self:_error(o, ("ERROR: no key named '%s'"):format(arg)) end
        local LEN = { string = "STRLEN", list = "LLEN", hash = "HLEN", set = "SCARD", zset = "ZCARD", stream = "XLEN" }
        local rows = { columns = { "key", "type", "length", "ttl", "encoding" } }
        local len = LEN[t] and redis_call(self, o, c, LEN[t], arg)
        local ttl = redis_call(self, o, c, "TTL", arg)
        local enc = redis_call(self, o, c, "OBJECT", "ENCODING", arg)
        rows[1] = { key = arg, type = t, length = len or dbpool.null,
                    ttl = ttl == -1 and "none" or ttl, encoding = enc or dbpool.null }
        return self:_result(o, self:_rows_text(rows))
    end
    local cursor, seen, groups, order = "0", 0, {}, {}
    local done = false
    repeat
        local r = redis_call(self, o, c, "SCAN", cursor, "MATCH", arg or "*", "COUNT", tostring(math.min(1000, M.SCAN_LIMIT)))
        if not r then return end
        cursor = r[1]
        for _, key in ipairs(r[2]) do
            seen = seen + 1
            local p = M.key_pattern(key)
            local g = groups[p]
            if not g then g = { n = 0, sample = key } groups[p] = g order[#order + 1] = p end
            g.n = g.n + 1
        end
        done = cursor == "0"
    until done or seen >= M.SCAN_LIMIT
    table.sort(order)
    local rows = { columns = { "pattern", "keys", "type", "example" } }
    for _, p in ipairs(order) do
        local g = groups[p]
        rows[#rows + 1] = { pattern = p, keys = g.n, type = redis_call(self, o, c, "TYPE", g.sample) or "?", example = g.sample }
    end
    local total = redis_call(self, o, c, "DBSIZE")
    if self.format ~= "table" then return self:_result(o, self:_rows_text(rows)) end
    local text = #order > 0 and render.table(rows, { null = self.null, width = self.width }) or ""
    text = text .. ("%d key%s seen in %d pattern%s (of %s in the database)%s\n"):format(seen, seen == 1 and "" or "s",
        #order, #order == 1 and "" or "s", tostring(total),
        done and "" or ("; stopped after " .. M.SCAN_LIMIT .. " keys: there are more"))
    self:_result(o, text)
end

function Repl:_describe_sql(o, c, arg)
    local d = dialect.of(c.backend)
    if not arg then
        local res = self:_query(o, c, d.list_tables)
        if not res then return end
        if #res == 0 and self.format == "table" then return self:_result(o, "No tables in the current database.\n") end
        return self:_result(o, self:_rows_text(res))
    end
    local schema, name = arg:match("^([^.]+)%.(.+)$")
    if not schema then name = arg end
    local unq = function(x) return x and (x:match("^`(.*)`$") or x:match('^"(.*)"$') or x) end
    schema, name = unq(schema), unq(name)
    local cols = self:_query(o, c, d.describe_columns, { schema or dbpool.null, name })
    if not cols then return end
    if #cols == 0 then return self:_error(o, ("ERROR: no table or view named '%s'"):format(arg)) end
    local idx = self:_query(o, c, d.describe_indexes, { schema or dbpool.null, name })
    if not idx then return end
    local text = self:_rows_text(cols, "Table " .. arg .. "\n")
    if #idx > 0 then text = text .. self:_rows_text(idx, "Indexes\n")
    elseif self.format == "table" then text = text .. "No indexes.\n" end
    self:_result(o, text)
end

COMMANDS["d"] = function(self, o, args)
    local c = pick(self, o)
    if not c then return end
    if not dialect.of(c.backend) then return self:_describe_redis(o, c, args[1]) end
    return self:_describe_sql(o, c, args[1])
end
COMMANDS["dt"] = COMMANDS["d"]

COMMANDS["refresh"] = function(self, o)
    local c = pick(self, o)
    if not c then return end
    c.names = nil
    local names = self:_names(c)
    self:_say(o, ("Completion names reloaded: %d table%s, %d column%s.\n"):format(#names.tables,
        #names.tables == 1 and "" or "s", #names.columns, #names.columns == 1 and "" or "s"))
end

---------------------------------------------------------------------------
-- \watch, \i, \o
---------------------------------------------------------------------------

COMMANDS["watch"] = function(self, o, args)
    local secs = tonumber(args[1] or "2")
    local count = args[2] and math.tointeger(tonumber(args[2]))
    if not secs or secs <= 0 or secs ~= secs or (args[2] and (not count or count < 1)) then
        return self:_error(o, "ERROR: usage: \\watch SECONDS [COUNT]")
    end
    if not self.last or not self.conns[self.last.conn] then
        return self:_error(o, "ERROR: \\watch runs the last statement again: run one first")
    end
    self.watching = { interval = secs, count = count, n = 0, last = self.last }
end

-- One run of the watched statement, with a header line. The front end calls
-- it, then waits `repl.watching.interval` seconds, until repl.watching is nil
-- (the count reached, or stop_watch() on Ctrl-C).
function Repl:watch_tick()
    local o = Out()
    local w = self.watching
    if not w then return "", "", "" end
    local c = self.conns[w.last.conn]
    if not c then self.watching = nil return "", "", "" end
    w.n = w.n + 1
    local text = w.last.stmt and w.last.stmt.sql or w.last.line
    if self.format == "table" then
        self:_result(o, ("Every %gs (%d)  %s  %s\n"):format(w.interval, w.n, os.date("%Y-%m-%d %H:%M:%S"), first_line(text)))
    end
    local errors = self.nerrors
    if w.last.stmt then self:_run_sql(o, c, w.last.stmt) else self:_redis(o, c, w.last.line) end
    if self.interrupted or (w.count and w.n >= w.count) or self.nerrors > errors then self.watching = nil end
    return table.concat(o.out), table.concat(o.err), table.concat(o.all)
end

function Repl:stop_watch()
    self.watching = nil
end

COMMANDS["i"] = function(self, o, args, rest)
    if rest == "" then return self:_error(o, "ERROR: usage: \\i FILE") end
    if (self.depth or 0) >= 16 then return self:_error(o, "ERROR: \\i nested too deep (16 files)") end
    local f, err = io.open(rest, "r")
    if not f then return self:_error(o, "ERROR: " .. tostring(err)) end
    local text = f:read("a")
    f:close()
    self.depth = (self.depth or 0) + 1
    local ok, e = pcall(function()
        for line in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\r?\n") do
            self:_feed(o, line)
            if self.done or self.interrupted then break end
        end
        -- a last statement without its ';' runs at the end of the file
        if self.buffer ~= "" and not self.done then
            local c = self.current and self.conns[self.current]
            local stmts = sql.split(self.buffer, self.delimiter, true, self:_split_flavor())
            self.buffer, self.hist_lines = "", {}
            if c then for _, st in ipairs(stmts) do self:_run_sql(o, c, st) end end
        end
    end)
    self.depth = self.depth - 1
    if not ok then error(e, 0) end
end
COMMANDS["include"] = COMMANDS["i"]

COMMANDS["o"] = function(self, o, args, rest)
    if self.outfile then self.outfile:close() self.outfile = nil end
    if rest == "" then return self:_say(o, "Results go to the output again.\n") end
    local f, err = io.open(rest, "w")
    if not f then return self:_error(o, "ERROR: " .. tostring(err)) end
    self.outfile = f
    self:_say(o, ("Results go to %s (\\o alone ends it).\n"):format(rest))
end
COMMANDS["out"] = COMMANDS["o"]

---------------------------------------------------------------------------
-- Tab completion
---------------------------------------------------------------------------

-- Command names of Redis, for completion.
M.REDIS_COMMANDS = {
    "APPEND", "AUTH", "BGSAVE", "BITCOUNT", "BITOP", "BITPOS", "BLMOVE", "BLPOP", "BRPOP", "BZPOPMAX", "BZPOPMIN",
    "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "COPY", "DBSIZE", "DECR", "DECRBY", "DEL", "DISCARD", "DUMP", "ECHO",
    "EVAL", "EVALSHA", "EXEC", "EXISTS", "EXPIRE", "EXPIREAT", "EXPIRETIME", "FLUSHALL", "FLUSHDB", "FUNCTION",
    "GEOADD", "GEODIST", "GEOPOS", "GEOSEARCH", "GET", "GETBIT", "GETDEL", "GETEX", "GETRANGE", "GETSET", "HDEL",
    "HELLO", "HEXISTS", "HGET", "HGETALL", "HINCRBY", "HINCRBYFLOAT", "HKEYS", "HLEN", "HMGET", "HMSET",
    "HRANDFIELD", "HSCAN", "HSET", "HSETNX", "HSTRLEN", "HVALS", "INCR", "INCRBY", "INCRBYFLOAT", "INFO", "KEYS",
    "LASTSAVE", "LATENCY", "LINDEX", "LINSERT", "LLEN", "LMOVE", "LMPOP", "LPOP", "LPOS", "LPUSH", "LPUSHX",
    "LRANGE", "LREM", "LSET", "LTRIM", "MEMORY", "MGET", "MOVE", "MSET", "MSETNX", "MULTI", "OBJECT", "PERSIST",
    "PEXPIRE", "PEXPIREAT", "PFADD", "PFCOUNT", "PFMERGE", "PING", "PSETEX", "PTTL", "PUBLISH", "PUBSUB",
    "RANDOMKEY", "RENAME", "RENAMENX", "RESTORE", "ROLE", "RPOP", "RPOPLPUSH", "RPUSH", "RPUSHX", "SADD", "SAVE",
    "SCAN", "SCARD", "SCRIPT", "SDIFF", "SDIFFSTORE", "SELECT", "SET", "SETBIT", "SETEX", "SETNX", "SETRANGE",
    "SINTER", "SINTERCARD", "SINTERSTORE", "SISMEMBER", "SLOWLOG", "SMEMBERS", "SMISMEMBER", "SMOVE", "SORT",
    "SPOP", "SRANDMEMBER", "SREM", "SSCAN", "STRLEN", "SUNION", "SUNIONSTORE", "SWAPDB", "TIME", "TOUCH", "TTL",
    "TYPE", "UNLINK", "UNWATCH", "WAIT", "WATCH", "XACK", "XADD", "XAUTOCLAIM", "XCLAIM", "XDEL", "XGROUP",
    "XINFO", "XLEN", "XPENDING", "XRANGE", "XREAD", "XREADGROUP", "XREVRANGE", "XTRIM", "ZADD", "ZCARD", "ZCOUNT",
    "ZDIFF", "ZINCRBY", "ZINTER", "ZINTERCARD", "ZLEXCOUNT", "ZMPOP", "ZMSCORE", "ZPOPMAX", "ZPOPMIN",
    "ZRANDMEMBER", "ZRANGE", "ZRANGEBYLEX", "ZRANGEBYSCORE", "ZRANGESTORE", "ZRANK", "ZREM", "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE", "ZREVRANGE", "ZREVRANK", "ZSCAN", "ZSCORE", "ZUNION", "ZUNIONSTORE",
}

-- The backslash commands tab completes (aliases left out).
M.BACKSLASH = { "c", "connect", "d", "disconnect", "help", "i", "list", "null", "o", "ping", "q", "refresh",
                "stats", "timing", "use", "watch", "x" }

-- The table and column names of c's current database, cached until
-- \refresh, a USE or a statement that changes the schema.
function Repl:_names(c)
    if c.names then return c.names end
    local names = { tables = {}, columns = {}, by_table = {} }
    local d = dialect.of(c.backend)
    if d and d.completion_names then
        local ok, conn = self:session(c)
        local rok, rows = false, nil
        if ok then rok, rows = pcall(function() return conn:query(d.completion_names):await() end) end
        if rok then
            local seen_c = {}
            for _, r in ipairs(rows) do
                local t, col = r.tbl, r.col
                if not names.by_table[t] then
                    names.by_table[t] = {}
                    names.tables[#names.tables + 1] = t
                end
                table.insert(names.by_table[t], col)
                if not seen_c[col] then seen_c[col] = true names.columns[#names.columns + 1] = col end
            end
        end
    end
    c.names = names
    return names
end

-- complete(line, from, to) -> the completions of line:sub(from, to), as
-- readline's completion function wants them (lua-readline's
-- set_complete_function). readline ends a word at '\', so a backslash
-- command's word may or may not include it.
function Repl:complete(line, from, to)
    local word = line:sub(from, to)
    local before = line:sub(1, from - 1)
    local out, seen = {}, {}
    local function add(cand, keep_case)
        if not keep_case and word:match("^%l") then cand = cand:lower() end
        if cand:sub(1, #word):lower() == word:lower() and not seen[cand] then
            seen[cand] = true
            out[#out + 1] = cand
        end
    end
    -- a backslash command's name
    local bs = word:sub(1, 1) == "\\" and "\\" or ""
    if (bs ~= "" and before:match("^%s*$")) or before:match("^%s*\\$") then
        for _, n in ipairs(M.BACKSLASH) do add(bs .. n, true) end
        table.sort(out)
        return out
    end
    local cmd = before:match("^%s*\\(%a+)%s")
    if cmd == "use" or cmd == "u" or cmd == "connect" or cmd == "disconnect" or cmd == "stats" or cmd == "ping" then
        for _, n in ipairs(self.order) do add(n, true) end
        table.sort(out)
        return out
    end
    local c = self.current and self.conns[self.current]
    if not c or before:match("^%s*=") or before:match("^%s*lua%s") then return out end
    if not dialect.of(c.backend) then
        if before:match("^%s*$") then for _, n in ipairs(M.REDIS_COMMANDS) do add(n) end end
        table.sort(out)
        return out
    end
    local names = self:_names(c)
    local tbl, part = word:match("^([%w_$]+)%.([%w_$]*)$")
    if tbl and names.by_table[tbl] then
        for _, col in ipairs(names.by_table[tbl]) do
            if col:sub(1, #part):lower() == part:lower() then
                local cand = tbl .. "." .. col
                if not seen[cand] then seen[cand] = true out[#out + 1] = cand end
            end
        end
        table.sort(out)
        return out
    end
    for _, t in ipairs(names.tables) do add(t, true) end
    if cmd ~= "d" and cmd ~= "dt" then
        for _, col in ipairs(names.columns) do add(col, true) end
        local d = dialect.of(c.backend)
        for _, k in ipairs(d and d.keywords or {}) do add(k) end
    end
    table.sort(out)
    return out
end

function Repl:_command(o, line)
    local word, rest = line:match("^\\(%S+)%s*(.-)%s*$")
    word = word or ""
    local f = COMMANDS[word] or COMMANDS[word:lower()]
    if not f then
        return self:_error(o, ("ERROR: unknown command '\\%s' (\\help lists them)"):format(word))
    end
    local args = {}
    for a in rest:gmatch("%S+") do args[#args + 1] = a end
    f(self, o, args, rest)
end

---------------------------------------------------------------------------
-- feed
---------------------------------------------------------------------------

-- feed(line) -> output text, error text (either may be ""), both in order
function Repl:feed(line)
    local o = Out()
    line = line:gsub("\r?\n$", "")
    local ok, err = xpcall(function() self:_feed(o, line) end, debug.traceback)
    if not ok then
        -- a bug in the REPL itself: say so and go on
        self:_error(o, "ERROR: internal: " .. tostring(err))
    end
    return table.concat(o.out), table.concat(o.err), table.concat(o.all)
end

function Repl:_feed(o, line)
    local t = trim(line)
    if self.lua_buf then
        local code = self.lua_buf .. "\n" .. line
        self.hist_lines[#self.hist_lines + 1] = line
        self.lua_buf = nil
        self:_lua(o, code)
        if not self.lua_buf then
            self:_remember(table.concat(self.hist_lines, " "))
            self.hist_lines = {}
        end
        return
    end
    if self.buffer == "" then
        if t == "" then return end
        local lower = t:lower():gsub("%s*;$", "")
        if lower == "quit" or lower == "exit" or lower == "\\q" then
            self:_remember(t)
            self.done = true
            return
        end
        if t:sub(1, 1) == "=" or t:match("^lua%s") or t == "lua" then
            local code = t:sub(1, 1) == "=" and t:sub(2) or t:sub(4)
            self.hist_lines = { t }
            self:_lua(o, code)
            if not self.lua_buf then
                self:_remember(t)
                self.hist_lines = {}
            end
            return
        end
    end
    if t:sub(1, 1) == "\\" and not t:match("^\\[Gg]%s*$") then
        self:_remember(t)
        return self:_command(o, t)
    end
    local c = self.current and self.conns[self.current]
    if not c then
        if t ~= "" then
            self:_remember(t)
            self:_error(o, "ERROR: no connection: \\connect NAME URL opens one")
        end
        return
    end
    -- an SQL backend is one with a dialect entry; the rest speak Redis
    if not dialect.of(c.backend) then
        self:_remember(t)
        return self:_redis(o, c, line)
    end
    -- SQL: collect until the delimiter (or \G)
    self.hist_lines[#self.hist_lines + 1] = t
    local text = self.buffer .. line .. "\n"
    local stmts, rest, _, delim = sql.split(text, self.delimiter, false, self:_split_flavor())
    self.delimiter = delim
    self.buffer = rest
    for _, st in ipairs(stmts) do self:_run_sql(o, c, st) end
    if self.buffer == "" then
        self:_remember(table.concat(self.hist_lines, " "))
        self.hist_lines = {}
    end
end

-- Feeds several lines; returns everything shown (output and errors, in order).
function Repl:feed_lines(lines)
    local all = {}
    for _, l in ipairs(lines) do
        local out, err = self:feed(l)
        all[#all + 1] = out
        all[#all + 1] = err
        if self.done then break end
    end
    return table.concat(all)
end

-- Forgets the statement or Lua being typed.
function Repl:clear()
    self.buffer = ""
    self.lua_buf = nil
    self.hist_lines = {}
end

-- Input not yet complete at the end (a statement without its ';').
function Repl:pending_input()
    return self.buffer ~= "" or self.lua_buf ~= nil
end

-- Runs what is left unterminated at the end of the input (as mysql does in batch mode).
function Repl:finish()
    local o = Out()
    if self.lua_buf then
        local code = self.lua_buf
        self.lua_buf = nil
        self:_lua(o, code .. "\n")
        if self.lua_buf then self.lua_buf = nil self:_error(o, "ERROR: incomplete Lua at the end of the input") end
    elseif self.buffer ~= "" then
        local c = self.current and self.conns[self.current]
        local stmts = sql.split(self.buffer, self.delimiter, true, self:_split_flavor())
        self.buffer = ""
        self:_remember(table.concat(self.hist_lines, " "))
        self.hist_lines = {}
        if c then for _, st in ipairs(stmts) do self:_run_sql(o, c, st) end end
    end
    return table.concat(o.out), table.concat(o.err), table.concat(o.all)
end

return M
