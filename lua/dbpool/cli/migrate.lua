-- dbpool.cli.migrate: `dbpool migrate up|down|status|new NAME [options]`.
--
-- Versioned migrations for MySQL/MariaDB. Files in DIR:
--   NNNN_name.sql  statements (';', DELIMITER allowed); a line "-- down"
--                  starts the statements that undo them
--   NNNN_name.lua  returns { up = function(conn, pool) ... end, down = ... }
-- Applied ones are rows of schema_migrations (version, name, checksum =
-- SHA-256 of the file, applied_at, duration_ms).
--
-- PostgreSQL too: the lock is pg_advisory_lock, a .sql direction runs as one
-- multi-statement query (dollar-quoted bodies intact), and since PostgreSQL's
-- DDL is transactional a failed migration is rolled back whole.
--
-- Everything runs on ONE pinned connection holding GET_LOCK, so a second
-- migrator waits (or fails at --lock-timeout) and, once it has the lock,
-- reads the table afresh and finds nothing left to do. Each migration runs
-- in a transaction with its row in schema_migrations; MySQL/MariaDB commit
-- DDL implicitly, so after such a statement a new transaction is begun: a
-- failure rolls back the data changes made since the last DDL, never the DDL.
local dbpool = require "dbpool"
local util = require "dbpool.cli.util"
local sql = require "dbpool.cli.sql"
local sha256 = require "dbpool.cli.sha256"

local M = {}

local SPEC = {
    ["--dir"] = { key = "dir", value = true },
    ["--url"] = { key = "url", value = true },
    ["--table"] = { key = "table", value = true },
    ["--steps"] = { key = "steps", value = "integer" },
    ["--lock-timeout"] = { key = "lock_timeout", value = "number" },
    ["--lua"] = { key = "lua" },
}

local now = dbpool._core.now

---------------------------------------------------------------------------
-- Files
---------------------------------------------------------------------------

-- Splits a .sql migration at its "-- down" line: up text, down text (or nil).
-- Accepted markers: "-- down", "-- migrate:down" (dbmate), "-- +migrate Down".
function M.split_sql(text)
    local up, down = {}, nil
    for line in (text:gsub("\r\n", "\n") .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do
        local l = line:lower():gsub("%s+$", "")
        if down == nil and (l:match("^%-%-%s*down$") or l:match("^%-%-%s*migrate:down$") or l:match("^%-%-%s*%+migrate%s+down$")) then
            down = {}
        elseif down then
            down[#down + 1] = line
        else
            up[#up + 1] = line
        end
    end
    return table.concat(up, "\n"), down and table.concat(down, "\n") or nil
end

-- The statements of a SQL text.
local function statements(text)
    local list = sql.split(text, ";", true)
    local out = {}
    for i, s in ipairs(list) do out[i] = s.sql end
    return out
end

-- Reads DIR: the migrations sorted by version.
function M.load(dir)
    local names, err = util.list_dir(dir)
    if not names then util.fail(err .. " (create it with `dbpool migrate new NAME`, or pass --dir)") end
    local list, by_version = {}, {}
    for _, file in ipairs(names) do
        local digits, label, ext = file:match("^(%d+)_(.-)%.(%a+)$")
        if digits and (ext == "sql" or ext == "lua") then
            local version = math.tointeger(tonumber(digits))
            if not version then util.fail(("%s: the version number is too large"):format(file)) end
            if by_version[version] then
                util.fail(("two migrations have version %d: %s and %s"):format(version, by_version[version].file, file))
            end
            local path = dir .. "/" .. file
            local text, rerr = util.read_file(path)
            if not text then util.fail(("cannot read %s: %s"):format(path, rerr)) end
            local m = { version = version, digits = digits, name = label, file = file, path = path,
                        kind = ext, checksum = sha256(text), text = text }
            if ext == "sql" then
                local up, down = M.split_sql(text)
                m.up_text, m.down_text = up, down
                m.up, m.down = statements(up), down and statements(down) or nil
                if down and #m.down == 0 then m.down = nil end
            else
                local chunk, lerr = load(text, "@" .. path, "t")
                if not chunk then util.fail(lerr) end
                local ok, mod = pcall(chunk)
                if not ok then util.fail(("%s: %s"):format(path, tostring(mod))) end
                if type(mod) ~= "table" or type(mod.up) ~= "function" then
                    util.fail(("%s must return a table with an up function (and optionally down)"):format(path))
                end
                m.up_fn, m.down_fn = mod.up, type(mod.down) == "function" and mod.down or nil
            end
            by_version[version] = m
            list[#list + 1] = m
        end
    end
    table.sort(list, function(a, b) return a.version < b.version end)
    return list, by_version
end

---------------------------------------------------------------------------
-- The database side
---------------------------------------------------------------------------
local Session = {}
Session.__index = Session

-- (on PostgreSQL the `?` of this module's own statements become $1..$n)
local function q(self, text, params)
    if self.pg and params then
        local n = 0
        text = text:gsub("%?", function() n = n + 1; return "$" .. n end)
    end
    return self.conn:query(text, params):await()
end

-- A pinned connection from the session's pool. Fails fast: a refused or
-- failed connect ends the wait at once (the pool would retry until 30 s).
function Session:pin()
    -- the error event of a connection that died before now is not this
    -- connect's failure: let it be delivered before the watch begins
    dbpool._step(false)
    self.failed, self.watch = nil, true
    local p = self.pool:acquire({ timeout = 30 })
    while p:status() == "pending" and not self.failed do dbpool._step(true) end
    self.watch = false
    if p:status() == "pending" then
        -- abandoned: when it settles, its connection goes back
        p:next(function(conn) conn:release() end, function() end)
        error(self.failed, 0)
    end
    self.conn = p:await()
    return self.conn
end

function Session.open(url, tbl, out)
    local pool = dbpool.open(url, { max = 2 })
    if pool._backend ~= "mysql" and pool._backend ~= "postgres" then
        pool:close():result()
        util.usage("migrations need a MySQL/MariaDB or PostgreSQL URL", "migrate")
    end
    local pg = pool._backend == "postgres"
    local self = setmetatable({ pool = pool, tbl = tbl, qtbl = pg and ('"' .. tbl .. '"') or ("`" .. tbl .. "`"), out = out,
                                pg = pg }, Session)
    pool:on("error", function(ev)
        if self.watch then self.failed = self.failed or ev.error or { kind = "connection", message = ev.message } end
    end)
    local ok, err = pcall(self.pin, self)
    if not ok then
        pool:close({ timeout = 0 }):result()
        error(err, 0)
    end
    return self
end

-- The session's connection died: a new one, and the lock taken again (the
-- server released it with the old connection).
function Session:reconnect(lock_timeout)
    if self.conn then pcall(function() self.conn:discard() end) end
    self.conn, self.locked = nil, false
    self:pin()
    self:lock(lock_timeout)
    return self.conn
end

function Session:table_exists()
    local r = q(self, "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = "
        .. (self.pg and "current_schema()" or "DATABASE()") .. " AND table_name = ?", { self.tbl })
    return r[1].n > 0
end

function Session:ensure_table()
    if self.pg then
        q(self, "CREATE TABLE IF NOT EXISTS " .. self.qtbl .. [[ (
  version bigint NOT NULL PRIMARY KEY,
  name varchar(255) NOT NULL,
  checksum char(64) NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  duration_ms integer NOT NULL DEFAULT 0
)]])
        return
    end
    q(self, "CREATE TABLE IF NOT EXISTS " .. self.qtbl .. [[ (
  version BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  checksum CHAR(64) NOT NULL,
  applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  duration_ms INT UNSIGNED NOT NULL DEFAULT 0
) ENGINE=InnoDB]])
end

function Session:applied()
    if not self:table_exists() then return {}, {} end
    local rows = q(self, "SELECT version, name, checksum, applied_at FROM " .. self.qtbl .. " ORDER BY version")
    local by = {}
    for _, r in ipairs(rows) do by[r.version] = r end
    return rows, by
end

-- GET_LOCK, named after the database and the table (at most 64 characters).
local LOCK = "CONCAT('dbpool_migrate:', SHA1(CONCAT(IFNULL(DATABASE(), ''), '.', ?)))"

-- PostgreSQL: an advisory lock on a hash of the same name (released with
-- the session as well).
local PG_LOCK = "hashtext('dbpool_migrate:' || current_database() || '.' || ?)"

function Session:lock(timeout)
    if self.pg then
        local got = q(self, "SELECT pg_try_advisory_lock(" .. PG_LOCK .. ") AS got", { self.tbl })[1].got
        if not got and timeout > 0 then
            self.out:write(("Another migrator holds the lock; waiting up to %g s...\n"):format(timeout))
            self.out:flush()
            local deadline = now() + timeout
            while not got and now() < deadline do
                dbpool.sleep(0.1):await()
                got = q(self, "SELECT pg_try_advisory_lock(" .. PG_LOCK .. ") AS got", { self.tbl })[1].got
            end
        end
        if not got then
            util.fail(("another migrator holds the migration lock (waited %g s); try again, or raise --lock-timeout"):format(timeout))
        end
        self.locked = true
        return
    end
    local got = q(self, "SELECT GET_LOCK(" .. LOCK .. ", 0) AS got", { self.tbl })[1].got
    if got ~= 1 and timeout > 0 then
        self.out:write(("Another migrator holds the lock; waiting up to %g s...\n"):format(timeout))
        self.out:flush()
        got = q(self, "SELECT GET_LOCK(" .. LOCK .. ", ?) AS got", { self.tbl, timeout })[1].got
    end
    if got ~= 1 then
        util.fail(("another migrator holds the migration lock (waited %g s); try again, or raise --lock-timeout"):format(timeout))
    end
    self.locked = true
end

function Session:close()
    if self.conn then
        if self.locked then
            pcall(q, self, self.pg and ("SELECT pg_advisory_unlock(" .. PG_LOCK .. ")") or ("DO RELEASE_LOCK(" .. LOCK .. ")"), { self.tbl })
        end
        -- a connection left inside a transaction is not handed back to the pool
        if self.conn._c:ok() and not self.conn:in_transaction() then self.conn:release() else self.conn:discard() end
        self.conn = nil
    end
    self.pool:close({ timeout = 5 }):result()
end

-- Whether err is the session connection dying under a statement.
local function lost(conn, err)
    return type(err) == "table" and err.kind == "connection" and not conn:ok()
end

local function errmsg(e)
    if type(e) == "table" then
        if e.kind == "sql" and e.code then return ("ERROR %d (%s): %s"):format(e.code, e.sqlstate or "HY000", e.message) end
        return tostring(e.message or e)
    end
    return tostring(e)
end

-- Runs fn(session) with the pool open, closing it whatever happens.
local function with_session(ctx, o, fn)
    local url = o.url or os.getenv("DATABASE_URL")
    if not url or url == "" then util.usage("no database: pass --url URL or set DATABASE_URL", "migrate") end
    util.add_url_secrets(url)
    local tbl = o.table or "schema_migrations"
    if not tbl:match("^[%w_]+$") then util.usage("--table takes letters, digits and _", "migrate") end
    local function failure(e)
        if util.is_cli_error(e) then error(e, 0) end
        util.fail(util.redact(url) .. ": " .. errmsg(e))
    end
    local sok, s = pcall(Session.open, url, tbl, ctx.out)
    if not sok then failure(s) end
    local ok, r = pcall(fn, s)
    local cok, cerr = pcall(s.close, s)
    if not ok then failure(r) end
    if not cok then failure(cerr) end
    return r
end

---------------------------------------------------------------------------
-- Applying and reverting
---------------------------------------------------------------------------

local function first_line(s)
    local l = s:match("^[^\n]*")
    if #l > 70 then l = l:sub(1, 67) .. "..." end
    return l
end

-- Runs one migration's direction inside transactions; then record() in the
-- same (last) transaction. On error: rollback, and a message that names what
-- could not be rolled back. -> true | false, message, "before" when the
-- connection was found dead at the migration's BEGIN (nothing of it ran).
local function execute(s, m, direction, record)
    local conn = s.conn
    local committed = {} -- statements the server committed (implicitly, with a DDL)
    local since_begin = {}
    local step = 0
    local current, began, committing
    local ok, err = pcall(function()
        q(s, "BEGIN")
        began = true
        if m.kind == "sql" then
            local list = direction == "up" and m.up or m.down
            if s.pg then
                -- one multi-statement query: PostgreSQL's own lexer splits it ($$ bodies intact)
                list = { direction == "up" and m.up_text or m.down_text }
            end
            for i, st in ipairs(list) do
                step, current = i, st
                q(s, st)
                since_begin[#since_begin + 1] = st
                if not conn:in_transaction() then
                    -- the statement committed the transaction: all since BEGIN is permanent
                    for _, x in ipairs(since_begin) do committed[#committed + 1] = x end
                    since_begin = {}
                    q(s, "BEGIN")
                end
            end
        else
            current = nil
            local fn = direction == "up" and m.up_fn or m.down_fn
            fn(conn, s.pool)
            -- (a dead connection is in no transaction: the next statement says it is lost)
            if conn:ok() and not conn:in_transaction() then
                committed[#committed + 1] = "(" .. direction .. "() ended the transaction)"
                q(s, "BEGIN")
            end
        end
        step, current = nil, nil
        record()
        committing = true
        q(s, "COMMIT")
    end)
    if ok then return true end
    local dead = lost(conn, err)
    -- BEGIN has no effect: a connection lost there lost nothing of m
    if dead and not began then return false, errmsg(err), "before" end
    if dead and committing and err.sent then
        return false, ("%s %s: the connection was lost after its COMMIT was sent: the migration may or may not have been %s"
            .. " (its row in the table is written in the same transaction). `dbpool migrate status` shows the recorded state."):format(
            m.file, direction, direction == "up" and "applied" or "rolled back")
    end
    if conn._c:ok() then pcall(q, s, "ROLLBACK") end
    local lines = {}
    if current then
        lines[#lines + 1] = ("%s %s failed at statement %d (%s): %s"):format(m.file, direction, step, first_line(current), errmsg(err))
    else
        lines[#lines + 1] = ("%s %s failed: %s"):format(m.file, direction, errmsg(err))
    end
    if dead and err.sent then
        lines[#lines + 1] = ("The connection was lost while it ran: the server rolled back the open transaction, but the"
            .. " statement may or may not have run (DDL commits itself), so %s may or may not have been partly %s."
            .. " It is not recorded; `dbpool migrate status` shows the recorded state. It is not run again."):format(
            m.file, direction == "up" and "applied" or "rolled back")
    elseif dead then
        lines[#lines + 1] = "The connection was lost (the statement was not sent); the server rolled back the open transaction."
    end
    if #since_begin > 0 or #committed == 0 then
        lines[#lines + 1] = "Rolled back: the changes of the statements run since the last commit."
    end
    if #committed > 0 then
        lines[#lines + 1] = "NOT rolled back: MySQL/MariaDB commit DDL implicitly, and with it what ran before it;"
            .. " undo these by hand before running the migration again:"
        for _, st in ipairs(committed) do lines[#lines + 1] = "  " .. first_line(st) end
    end
    return false, table.concat(lines, "\n")
end

local function verify(s, files_by, applied, out)
    local bad = {}
    for _, r in ipairs(applied) do
        local f = files_by[r.version]
        if f and f.checksum ~= r.checksum then
            bad[#bad + 1] = ("%s was changed after it was applied (recorded checksum %s..., file %s...)"):format(
                f.file, r.checksum:sub(1, 12), f.checksum:sub(1, 12))
        elseif not f then
            out:write(("warning: applied migration %d (%s) has no file in the directory\n"):format(r.version, r.name))
        end
    end
    if #bad > 0 then
        util.fail(table.concat(bad, "\n") .. "\nRefusing to run: restore the file(s); a change to the schema needs a new migration.")
    end
end

-- One attempt at one migration, one line of output; raises when it fails.
-- A connection found dead when the migration begins (lost between two
-- migrations: killed, a server restart, its idle timeout) is replaced once
-- (attempt 1): renew() reconnects, takes the lock again and returns what is
-- applied now. A migration that may have run is never run again: that ends
-- the command (see execute).
-- -> "ok" | "renewed", applied_by
local function run_one(ctx, s, m, verb, direction, record, renew, attempt)
    ctx.out:write(verb, " ", m.file, " ... ")
    ctx.out:flush()
    local t0 = now()
    local ok, msg, where = execute(s, m, direction, function() record(m, t0) end)
    if ok then
        ctx.out:write(("ok (%s)\n"):format(util.duration(now() - t0)))
        return "ok"
    end
    if where ~= "before" or attempt > 1 then
        ctx.out:write("FAILED\n")
        util.fail(where == "before"
            and ("%s %s: the connection was lost again before it began: %s"):format(m.file, direction, msg) or msg)
    end
    local rok, applied_by = pcall(renew)
    if not rok then
        ctx.out:write("FAILED\n")
        util.fail(("%s %s: the connection was lost before it began (nothing of it ran), and reconnecting failed: %s")
            :format(m.file, direction, errmsg(applied_by)))
    end
    ctx.out:write(("connection lost before it began (nothing of it ran); reconnected (connection id %s), lock taken again.\n")
        :format(tostring(s.conn:id())))
    return "renewed", applied_by
end

-- Runs each migration of list in `direction` (run_one). After a reconnect,
-- todo(m, applied_by) says whether m still needs running: another migrator
-- may have run it while the lock was free. -> how many ran
local function run_each(ctx, s, list, verb, direction, record, renew, todo)
    local n, applied_by = 0, nil
    for _, m in ipairs(list) do
        for attempt = 1, 2 do
            if applied_by and not todo(m, applied_by) then
                ctx.out:write(("%s %s: done meanwhile by another migrator; skipped.\n"):format(verb, m.file))
                break
            end
            local r, by = run_one(ctx, s, m, verb, direction, record, renew, attempt)
            if r == "ok" then n = n + 1 break end
            applied_by = by
        end
    end
    return n
end

-- After a reconnect: the lock again, the table read afresh and checked.
local function renewer(s, o, files_by, out)
    return function()
        s:reconnect(o.lock_timeout or 60)
        local applied, applied_by = s:applied()
        verify(s, files_by, applied, out)
        return applied_by
    end
end

local function cmd_up(ctx, o, dir)
    local files, files_by = M.load(dir)
    return with_session(ctx, o, function(s)
        s:lock(o.lock_timeout or 60)
        s:ensure_table()
        local applied, applied_by = s:applied()
        verify(s, files_by, applied, ctx.out)
        local pending = {}
        for _, f in ipairs(files) do if not applied_by[f.version] then pending[#pending + 1] = f end end
        if #pending == 0 then
            ctx.out:write(("Nothing to migrate: %d applied, the database is up to date.\n"):format(#applied))
            return "ok"
        end
        local n = run_each(ctx, s, pending, "Applying", "up", function(m, t0)
            q(s, "INSERT INTO " .. s.qtbl .. " (version, name, checksum, duration_ms) VALUES (?, ?, ?, ?)",
                { m.version, m.name, m.checksum, math.floor((now() - t0) * 1000 + 0.5) })
        end, renewer(s, o, files_by, ctx.out), function(m, by) return by[m.version] == nil end)
        ctx.out:write(("Applied %d migration%s.\n"):format(n, n == 1 and "" or "s"))
        return "ok"
    end)
end

local function cmd_down(ctx, o, dir)
    local files, files_by = M.load(dir)
    local steps = o.steps or 1
    if steps < 1 then util.usage("--steps must be at least 1", "migrate") end
    return with_session(ctx, o, function(s)
        s:lock(o.lock_timeout or 60)
        local applied = s:applied()
        if #applied == 0 then
            ctx.out:write("Nothing to roll back: no migration is applied.\n")
            return "ok"
        end
        verify(s, files_by, applied, ctx.out)
        local todo = {}
        for i = #applied, math.max(#applied - steps + 1, 1), -1 do
            local r = applied[i]
            local m = files_by[r.version]
            if not m then util.fail(("migration %d (%s) has no file: cannot roll it back"):format(r.version, r.name)) end
            if (m.kind == "sql" and not m.down) or (m.kind == "lua" and not m.down_fn) then
                util.fail(("%s has no down part: cannot roll it back"):format(m.file))
            end
            todo[#todo + 1] = m
        end
        local n = run_each(ctx, s, todo, "Reverting", "down", function(m)
            q(s, "DELETE FROM " .. s.qtbl .. " WHERE version = ?", { m.version })
        end, renewer(s, o, files_by, ctx.out), function(m, by) return by[m.version] ~= nil end)
        ctx.out:write(("Rolled back %d migration%s.\n"):format(n, n == 1 and "" or "s"))
        return "ok"
    end)
end

local function cmd_status(ctx, o, dir)
    local files, files_by = M.load(dir)
    return with_session(ctx, o, function(s)
        local applied, applied_by = s:applied()
        local rows = { columns = { "version", "name", "status", "applied_at" } }
        local seen = {}
        local counts = { applied = 0, pending = 0, changed = 0, missing = 0 }
        local all = {}
        for _, f in ipairs(files) do all[#all + 1] = f.version; seen[f.version] = true end
        for _, r in ipairs(applied) do if not seen[r.version] then all[#all + 1] = r.version end end
        table.sort(all)
        for _, v in ipairs(all) do
            local f, r = files_by[v], applied_by[v]
            local status
            if f and r then
                status = f.checksum == r.checksum and "applied" or "CHANGED"
            elseif f then
                status = "pending"
            else
                status = "applied, file missing"
            end
            local key = status == "applied" and "applied" or status == "pending" and "pending"
                or status == "CHANGED" and "changed" or "missing"
            counts[key] = counts[key] + 1
            rows[#rows + 1] = { version = f and f.digits or tostring(v), name = f and f.name or r.name,
                                status = status, applied_at = r and tostring(r.applied_at):gsub("%.%d+$", "") or "" }
        end
        if #rows == 0 then
            ctx.out:write("No migrations in ", dir, " and none applied.\n")
            return "ok"
        end
        ctx.out:write((require("dbpool.cli.render").table(rows)))
        ctx.out:write(("%d applied, %d pending%s%s\n"):format(counts.applied + counts.changed + counts.missing, counts.pending,
            counts.changed > 0 and (", " .. counts.changed .. " CHANGED after being applied") or "",
            counts.missing > 0 and (", " .. counts.missing .. " without a file") or ""))
        if counts.changed > 0 then return "failure" end
        return "ok"
    end)
end

local SQL_TEMPLATE = [[
-- %s: describe the change here.
-- Statements end with ';'. MySQL/MariaDB commit DDL (CREATE, ALTER, DROP,
-- RENAME, TRUNCATE) implicitly: a failure cannot roll it back.

-- down
]]

local LUA_TEMPLATE = [[
-- %s: describe the change here.
-- conn is the migration's connection (inside its transaction); pool is the
-- pool, for work that may run beside it.
return {
    up = function(conn, pool)
        -- conn:query("ALTER TABLE ..."):await()
    end,
    down = function(conn, pool)
    end,
}
]]

local function cmd_new(ctx, o, dir, name)
    if not name then util.usage("migrate new needs a NAME", "migrate") end
    local clean = name:lower():gsub("[^%w]+", "_"):gsub("^_+", ""):gsub("_+$", "")
    if clean == "" then util.usage(("'%s' is not a usable migration name"):format(name), "migrate") end
    if not util.is_dir(dir) and not util.mkdir_p(dir) then util.fail("cannot create " .. dir) end
    local files = M.load(dir)
    local last, width = 0, 4
    for _, f in ipairs(files) do
        if f.version > last then last = f.version end
        if #f.digits > width then width = #f.digits end
    end
    local ext = o.lua and "lua" or "sql"
    local file = ("%0" .. width .. "d_%s.%s"):format(last + 1, clean, ext)
    local path = dir .. "/" .. file
    if util.file_exists(path) then util.fail(path .. " exists already") end
    local f, err = io.open(path, "w")
    if not f then util.fail(("cannot create %s: %s"):format(path, tostring(err))) end
    f:write((o.lua and LUA_TEMPLATE or SQL_TEMPLATE):format(file))
    f:close()
    ctx.out:write("Created ", path, "\n")
    return "ok"
end

function M.command(argv, ctx)
    local o, pos = util.parse_options(argv, 1, SPEC, "migrate")
    local sub = pos[1]
    if not sub then util.usage("expected up, down, status or new NAME", "migrate") end
    local dir = o.dir or os.getenv("DBPOOL_MIGRATIONS_DIR")
    if not dir or dir == "" then dir = "migrations" end
    dir = dir:gsub("/+$", "")
    if sub ~= "new" and #pos > 1 then util.usage(("unexpected argument '%s'"):format(pos[2]), "migrate") end
    if sub ~= "new" and o.lua then util.usage("--lua only goes with new", "migrate") end
    if sub ~= "down" and o.steps then util.usage("--steps only goes with down", "migrate") end
    if sub == "up" then return cmd_up(ctx, o, dir)
    elseif sub == "down" then return cmd_down(ctx, o, dir)
    elseif sub == "status" then return cmd_status(ctx, o, dir)
    elseif sub == "new" then
        if #pos > 2 then util.usage("migrate new takes one NAME", "migrate") end
        return cmd_new(ctx, o, dir, pos[2])
    end
    util.usage(("unknown subcommand '%s' (up, down, status, new)"):format(sub), "migrate")
end

return M
