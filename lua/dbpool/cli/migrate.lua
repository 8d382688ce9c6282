-- dbpool.cli.migrate: `dbpool migrate up|down|status|baseline|repair|new`.
--
-- Versioned and repeatable migrations. Files in DIR:
--   NNNN_name.sql  statements (';', DELIMITER allowed); a line "-- down"
--                  starts the statements that undo them
--   NNNN_name.lua  returns { up = function(conn, pool) ... end, down = ... }
--   R__name.sql / R__name.lua   repeatable: applied after the versioned ones
--                  whenever its checksum changed (views, functions, grants)
-- A line "-- dbpool: no-transaction" among a file's first comment lines
-- runs it outside a transaction (a .lua file may say no_transaction = true).
--
-- Applied ones are rows of schema_migrations (version, name, checksum =
-- SHA-256 of the file, applied_at, duration_ms, status, error,
-- statements_done); repeatable ones of schema_migrations_repeatable (keyed
-- by name). status is applied, baseline (recorded by `baseline`, never run
-- here), failed (with its error: `up` refuses until `repair`) or running:
-- written (committed) before a migration starts, so a runner that dies in
-- the middle, even by SIGKILL, leaves a row the next run finds. The next
-- run holds the lock, so the runner of a running row is gone: if nothing of
-- the migration can have been committed (one transaction, no statement that
-- commits implicitly, none recorded as done) the server rolled it all back
-- and it runs again; otherwise it becomes failed, saying which statements
-- had committed.
--
-- Everything runs on ONE pinned connection holding the backend's session
-- lock (MySQL GET_LOCK), which the server drops with the connection: a
-- killed runner never leaves it behind. A second migrator waits (or fails at
-- --lock-timeout) and, once it has the lock, reads the table afresh.
--
-- What differs between SQL backends (the table's DDL, the lock, which
-- statements commit implicitly) is in dbpool.cli.dialect.
local dbpool = require "dbpool"
local util = require "dbpool.cli.util"
local sql = require "dbpool.cli.sql"
local sha256 = require "dbpool.cli.sha256"
local dialect = require "dbpool.cli.dialect"

local M = {}

local SPEC = {
    ["--dir"] = { key = "dir", value = true },
    ["--url"] = { key = "url", value = true },
    ["--table"] = { key = "table", value = true },
    ["--steps"] = { key = "steps", value = "integer" },
    ["--to"] = { key = "to", value = "integer" },
    ["--lock-timeout"] = { key = "lock_timeout", value = "number" },
    ["--lua"] = { key = "lua" },
    ["--repeatable"] = { key = "repeatable" },
    ["--dry-run"] = { key = "dry_run" },
    ["--exit-code"] = { key = "exit_code" },
    ["--json"] = { key = "json" },
    ["--allow-out-of-order"] = { key = "allow_out_of_order" },
}

local now = dbpool._core.now
local NULL = dbpool.null

local function is_null(v) return v == nil or v == NULL end

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

-- Whether "-- dbpool: no-transaction" is among the comment lines at the top.
function M.no_transaction(text)
    for line in (text .. "\n"):gmatch("(.-)\r?\n") do
        local l = line:gsub("^%s+", ""):gsub("%s+$", "")
        if l:lower():match("^%-%-%s*dbpool:%s*no%-transaction$") then return true end
        if l ~= "" and not l:match("^%-%-") and not l:match("^#") then return false end
    end
    return false
end

-- The statements of a SQL text.
local function statements(text, flavor)
    local list = sql.split(text, ";", true, flavor)
    local out = {}
    for i, s in ipairs(list) do out[i] = s.sql end
    return out
end

local function load_lua(m, text, path)
    local chunk, lerr = load(text, "@" .. path, "t")
    if not chunk then util.fail(lerr) end
    local ok, mod = pcall(chunk)
    if not ok then util.fail(("%s: %s"):format(path, tostring(mod))) end
    if type(mod) ~= "table" or type(mod.up) ~= "function" then
        util.fail(("%s must return a table with an up function (and optionally down)"):format(path))
    end
    m.up_fn, m.down_fn = mod.up, type(mod.down) == "function" and mod.down or nil
    if mod.no_transaction then m.no_tx = true end
end

-- Reads DIR: the versioned migrations sorted by version, them by version,
-- and the repeatable ones sorted by name. flavor: how to split .sql files
-- into statements (dbpool.cli.sql; PostgreSQL's has dollar quoting).
function M.load(dir, flavor)
    local names, err = util.list_dir(dir)
    if not names then util.fail(err .. " (create it with `dbpool migrate new NAME`, or pass --dir)") end
    local list, by_version, rep = {}, {}, {}
    for _, file in ipairs(names) do
        local digits, label, ext = file:match("^(%d+)_(.-)%.(%a+)$")
        local rname, rext = file:match("^R__(.+)%.(%a+)$")
        if rname and (rext == "sql" or rext == "lua") then label, ext = rname, rext end
        if (digits or rname) and (ext == "sql" or ext == "lua") then
            local path = dir .. "/" .. file
            local text, rerr = util.read_file(path)
            if not text then util.fail(("cannot read %s: %s"):format(path, rerr)) end
            local m = { name = label, file = file, path = path, kind = ext, checksum = sha256(text), text = text,
                        no_tx = M.no_transaction(text) }
            if ext == "sql" then
                local up, down = M.split_sql(text)
                m.up, m.down = statements(up, flavor), down and statements(down, flavor) or nil
                if down and #m.down == 0 then m.down = nil end
            else
                load_lua(m, text, path)
            end
            if rname then
                m.repeatable, m.key = true, label
                rep[#rep + 1] = m
            else
                local version = math.tointeger(tonumber(digits))
                if not version then util.fail(("%s: the version number is too large"):format(file)) end
                if by_version[version] then
                    util.fail(("two migrations have version %d: %s and %s"):format(version, by_version[version].file, file))
                end
                m.version, m.digits, m.key = version, digits, version
                by_version[version] = m
                list[#list + 1] = m
            end
        end
    end
    table.sort(list, function(a, b) return a.version < b.version end)
    table.sort(rep, function(a, b) return a.name < b.name end)
    return list, by_version, rep
end

-- Whether nothing of m can outlive a failure: one transaction, and no
-- statement the server commits implicitly.
local function all_or_nothing(d, m)
    if m.no_tx or m.kind ~= "sql" then return false end
    if not d.ddl_commits then return true end
    for _, st in ipairs(m.up) do if d.commits_implicitly(st) then return false end end
    return true
end

---------------------------------------------------------------------------
-- The database side
---------------------------------------------------------------------------
local Session = {}
Session.__index = Session

local function q(self, text, params)
    return self.conn:query(text, params):await()
end

-- The migrator's own statements (written with '?' placeholders).
local function own(self, text, params)
    return self.conn:query(self.d.params(text), params):await()
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
    local d = dialect.of(pool._backend)
    if not d then
        pool:close():result()
        util.usage("migrations need an SQL database URL (mysql://...)", "migrate")
    end
    local self = setmetatable({ pool = pool, d = d, tbl = tbl, qtbl = d.quote(tbl),
                                rtbl = tbl .. "_repeatable", qrtbl = d.quote(tbl .. "_repeatable"), out = out }, Session)
    pool:on("error", function(ev)
        -- a warning (no error kind: a replica lagging or down, a limit) is no failure
        if ev.error and (ev.error.kind or "") == "" then return end
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

function Session:exists(name)
    return q(self, self.d.table_exists, { name })[1].n > 0
end

-- The columns a table has (an older bookkeeping table lacks some).
function Session:columns(name)
    local set = {}
    for _, r in ipairs(q(self, self.d.columns_of, { name })) do set[r.name:lower()] = true end
    return set
end

-- Both tables, and the columns an older versioned table lacks.
function Session:ensure_tables()
    q(self, self.d.migrations_ddl(self.qtbl))
    q(self, self.d.repeatable_ddl(self.qrtbl))
    local have = self:columns(self.tbl)
    for _, c in ipairs({ "status", "error", "statements_done" }) do
        if not have[c] then q(self, self.d.add_column(self.qtbl, c)) end
    end
end

-- Reads a bookkeeping table whichever columns it has (read-only commands
-- must not change it). -> rows, rows by key
function Session:read(name, qname, key)
    if not self:exists(name) then return {}, {} end
    local have = self:columns(name)
    local cols = { key, "name", "checksum", "applied_at", "duration_ms" }
    for _, c in ipairs({ "status", "error", "statements_done" }) do
        if have[c] then cols[#cols + 1] = c end
    end
    if key == "name" then table.remove(cols, 2) end
    local rows = q(self, "SELECT " .. table.concat(cols, ", ") .. " FROM " .. qname .. " ORDER BY " .. key)
    local by = {}
    for _, r in ipairs(rows) do
        if is_null(r.status) then r.status = "applied" end
        if is_null(r.error) then r.error = nil end
        r.statements_done = not is_null(r.statements_done) and r.statements_done or 0
        by[r[key]] = r
    end
    return rows, by
end

-- The recorded state: versioned rows (and by version), repeatable rows by name.
function Session:state()
    local rows, by = self:read(self.tbl, self.qtbl, "version")
    local _, rby = self:read(self.rtbl, self.qrtbl, "name")
    return { rows = rows, by = by, rep = rby }
end

function Session:lock(timeout)
    local d = self.d
    local run = function(text, params) return q(self, text, params) end
    local got = d.lock(run, self.tbl, 0)
    if not got and timeout > 0 then
        self.out:write(("Another migrator holds the lock; waiting up to %g s...\n"):format(timeout))
        self.out:flush()
        got = d.lock(run, self.tbl, timeout)
    end
    if not got then
        util.fail(("another migrator holds the migration lock (waited %g s); try again, or raise --lock-timeout"):format(timeout))
    end
    self.locked = true
end

-- Whether another session holds the lock (a running row is then live).
function Session:lock_busy()
    return self.d.lock_busy(function(text, params) return q(self, text, params) end, self.tbl)
end

function Session:close()
    if self.conn then
        if self.locked then pcall(self.d.unlock, function(text, params) return q(self, text, params) end, self.tbl) end
        -- a connection left inside a transaction is not handed back to the pool
        if self.conn._c:ok() and not self.conn:in_transaction() then self.conn:release() else self.conn:discard() end
        self.conn = nil
    end
    self.pool:close({ timeout = 5 }):result()
end

-- The bookkeeping of one migration (versioned: by version; repeatable: by name).
local function where(s, m)
    if m.repeatable then return s.qrtbl, "name = ?", m.name end
    return s.qtbl, "version = ?", m.version
end

-- The row that says m is running, committed before m starts.
function Session:mark_running(m)
    local t, w, k = where(self, m)
    own(self, "DELETE FROM " .. t .. " WHERE " .. w, { k })
    if m.repeatable then
        own(self, "INSERT INTO " .. t .. " (name, checksum, status, applied_at) VALUES (?, ?, 'running', " .. self.d.now .. ")",
            { m.name, m.checksum })
    else
        own(self, "INSERT INTO " .. t .. " (version, name, checksum, status, applied_at) VALUES (?, ?, ?, 'running', "
            .. self.d.now .. ")", { m.version, m.name, m.checksum })
    end
end

function Session:mark_done_so_far(m, n)
    local t, w, k = where(self, m)
    own(self, "UPDATE " .. t .. " SET statements_done = ? WHERE " .. w, { n, k })
end

function Session:mark_applied(m, ms, n)
    local t, w, k = where(self, m)
    own(self, "UPDATE " .. t .. " SET status = 'applied', error = NULL, duration_ms = ?, statements_done = ?, applied_at = "
        .. self.d.now .. " WHERE " .. w, { ms, n, k })
end

function Session:mark_failed(m, message, n)
    local t, w, k = where(self, m)
    if #message > 60000 then message = message:sub(1, 60000) .. "..." end
    own(self, "UPDATE " .. t .. " SET status = 'failed', error = ?, statements_done = ?, applied_at = "
        .. self.d.now .. " WHERE " .. w, { message, n, k })
end

function Session:forget(m)
    local t, w, k = where(self, m)
    own(self, "DELETE FROM " .. t .. " WHERE " .. w, { k })
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
    if not tbl:match("^[%w_]+$") or #tbl > 53 then
        util.usage("--table takes at most 53 letters, digits and _ (the repeatable table adds _repeatable)", "migrate")
    end
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

local function label(m) return m.file end

-- Runs one migration's direction, inside transactions unless m says
-- no-transaction; then record() in the same (last) transaction. progress(n)
-- is told each time statements 1..n are known committed (a DDL committed
-- them, or they ran without a transaction). On error: rollback, and a
-- message that names what could not be rolled back.
-- -> true, n | false, message, where, n   (n: statements known committed;
-- where = "before" when the connection was found dead before anything of m
-- was sent)
local function execute(s, m, direction, record, progress)
    local conn, d = s.conn, s.d
    local committed = {} -- statements the server committed (implicitly, with a DDL)
    local since_begin = {}
    local step = 0
    local current, began, committing
    local tx = not m.no_tx
    progress = progress or function() end
    local ok, err = pcall(function()
        if tx then q(s, d.begin) end
        began = true
        if m.kind == "sql" then
            for i, st in ipairs(direction == "up" and m.up or m.down) do
                step, current = i, st
                q(s, st)
                since_begin[#since_begin + 1] = st
                if not tx then
                    committed[#committed + 1] = st
                    since_begin = {}
                    progress(#committed)
                elseif not conn:in_transaction() then
                    -- the statement committed the transaction: all since BEGIN is permanent
                    for _, x in ipairs(since_begin) do committed[#committed + 1] = x end
                    since_begin = {}
                    progress(#committed)
                    q(s, d.begin)
                end
            end
        else
            current = nil
            local fn = direction == "up" and m.up_fn or m.down_fn
            fn(conn, s.pool)
            -- (a dead connection is in no transaction: the next statement says it is lost)
            if tx and conn:ok() and not conn:in_transaction() then
                committed[#committed + 1] = "(" .. direction .. "() ended the transaction)"
                q(s, d.begin)
            end
        end
        step, current = nil, nil
        record(#committed)
        if tx then
            committing = true
            q(s, d.commit)
        end
    end)
    if ok then return true, #committed end
    local dead = lost(conn, err)
    -- nothing of m was sent: the connection was dead at its first statement
    if dead and not began and not err.sent then return false, errmsg(err), "before", 0 end
    if dead and committing and err.sent then
        return false, ("%s %s: the connection was lost after its COMMIT was sent: the migration may or may not have been %s"
            .. " (its row in the table is written in the same transaction). `dbpool migrate status` shows the recorded state."):format(
            label(m), direction, direction == "up" and "applied" or "rolled back"), nil, #committed
    end
    if tx and conn._c:ok() then pcall(q, s, d.rollback) end
    local lines = {}
    if current then
        lines[#lines + 1] = ("%s %s failed at statement %d (%s): %s"):format(label(m), direction, step, first_line(current), errmsg(err))
    else
        lines[#lines + 1] = ("%s %s failed: %s"):format(label(m), direction, errmsg(err))
    end
    if dead and err.sent then
        lines[#lines + 1] = ("The connection was lost while it ran: the server rolled back the open transaction, but the"
            .. " statement may or may not have run (DDL commits itself), so %s may or may not have been partly %s."
            .. " `dbpool migrate status` shows the recorded state. It is not run again."):format(
            label(m), direction == "up" and "applied" or "rolled back")
    elseif dead then
        lines[#lines + 1] = "The connection was lost (the statement was not sent); the server rolled back the open transaction."
    end
    if not tx then
        if #committed > 0 then
            lines[#lines + 1] = "It ran without a transaction (-- dbpool: no-transaction); these statements had run and stay:"
            for _, st in ipairs(committed) do lines[#lines + 1] = "  " .. first_line(st) end
        else
            lines[#lines + 1] = "It ran without a transaction (-- dbpool: no-transaction); no statement of it had run before."
        end
    else
        if #since_begin > 0 or #committed == 0 then
            lines[#lines + 1] = "Rolled back: the changes of the statements run since the last commit."
        end
        if #committed > 0 then
            lines[#lines + 1] = "NOT rolled back: " .. d.name .. " commit DDL implicitly, and with it what ran before it;"
                .. " undo these by hand before running the migration again:"
            for _, st in ipairs(committed) do lines[#lines + 1] = "  " .. first_line(st) end
        end
    end
    return false, table.concat(lines, "\n"), dead and "lost" or nil, #committed
end

-- Applied rows whose file changed are refused; rows without a file warned about.
local function verify(files_by, st, out)
    local bad = {}
    for _, r in ipairs(st.rows) do
        local f = files_by[r.version]
        if r.status == "applied" or r.status == "baseline" then
            if f and f.checksum ~= r.checksum then
                bad[#bad + 1] = ("%s was changed after it was %s (recorded checksum %s..., file %s...)"):format(
                    f.file, r.status == "baseline" and "baselined" or "applied", r.checksum:sub(1, 12), f.checksum:sub(1, 12))
            elseif not f and not (r.status == "baseline" and r.checksum == "") then
                out:write(("warning: applied migration %d (%s) has no file in the directory\n"):format(r.version, r.name))
            end
        end
    end
    if #bad > 0 then
        util.fail(table.concat(bad, "\n") .. "\nRefusing to run: restore the file(s); a change to the schema needs a new migration.")
    end
end

-- The newest version recorded as applied or baselined (0 when none).
local function newest(st)
    local top = 0
    for _, r in ipairs(st.rows) do
        if (r.status == "applied" or r.status == "baseline") and r.version > top then top = r.version end
    end
    return top
end

-- Running rows when this session holds the lock: their runner is gone
-- (killed, or its connection lost). One that cannot have committed anything
-- is forgotten (the server rolled it back; it runs again); any other
-- becomes failed, with what is known about how far it got.
local function settle_interrupted(ctx, s, st, files_by, rep_files)
    local rep_by = {}
    for _, f in ipairs(rep_files) do rep_by[f.name] = f end
    local function one(r, f, what)
        local when = tostring(r.applied_at):gsub("%.%d+$", "")
        local head = ("%s was interrupted: the migrator that started it at %s died or lost its connection"):format(what, when)
        if f and f.checksum == r.checksum and r.statements_done == 0 and all_or_nothing(s.d, f) then
            s:forget(f)
            ctx.out:write(head, "; nothing of it had committed (one transaction, which the server rolled back), so it runs again.\n")
            return true
        end
        local lines = { head .. " in the middle." }
        if f and f.kind == "sql" and f.checksum == r.checksum then
            local n = r.statements_done
            if n > 0 then
                lines[#lines + 1] = ("Statements 1..%d of it had committed%s:"):format(n,
                    f.no_tx and " (it runs without a transaction)" or " (" .. s.d.name .. " commit DDL implicitly)")
                for i = 1, math.min(n, #f.up) do lines[#lines + 1] = "  " .. first_line(f.up[i]) end
            else
                lines[#lines + 1] = "No statement of it was recorded as committed."
            end
            if f.up[n + 1] then
                lines[#lines + 1] = ("Statement %d (%s) and those after it may or may not have run%s."):format(n + 1,
                    first_line(f.up[n + 1]), f.no_tx and "" or " (the open transaction was rolled back; a DDL among them commits itself)")
            end
        else
            lines[#lines + 1] = "How far it got is not known (a Lua migration, or its file changed since)."
        end
        local msg = table.concat(lines, "\n")
        s:mark_failed({ repeatable = r.version == nil, version = r.version, name = r.name }, msg, r.statements_done)
        r.status, r.error = "failed", msg
        ctx.out:write(msg, "\n")
        return false
    end
    for _, r in ipairs(st.rows) do
        if r.status == "running" then
            if one(r, files_by[r.version], files_by[r.version] and files_by[r.version].file or ("migration " .. r.version)) then
                r.status = "gone"
            end
        end
    end
    for name, r in pairs(st.rep) do
        r.name = name
        if r.status == "running" then
            if one(r, rep_by[name], rep_by[name] and rep_by[name].file or ("R__" .. name)) then st.rep[name] = nil end
        end
    end
    local keep = {}
    for _, r in ipairs(st.rows) do
        if r.status == "gone" then st.by[r.version] = nil else keep[#keep + 1] = r end
    end
    st.rows = keep
end

-- Refuses while a migration is recorded as failed.
local function refuse_failed(st, files_by, rep_files)
    local lines = {}
    local rep_by = {}
    for _, f in ipairs(rep_files or {}) do rep_by[f.name] = f end
    local function add(what, key, r)
        lines[#lines + 1] = ("%s is recorded as FAILED (%s): %s"):format(what, tostring(r.applied_at):gsub("%.%d+$", ""),
            (r.error or "no error recorded"):gsub("\n", "\n  "))
        lines[#lines + 1] = ("Fix the database by hand (see above), then `dbpool migrate repair %s` clears the record and"
            .. " `dbpool migrate up` runs it again."):format(key)
    end
    for _, r in ipairs(st.rows) do
        if r.status == "failed" then
            add(files_by[r.version] and files_by[r.version].file or ("migration " .. r.version), tostring(r.version), r)
        end
    end
    local names = {}
    for name, r in pairs(st.rep) do if r.status == "failed" then names[#names + 1] = name end end
    table.sort(names)
    for _, name in ipairs(names) do add(rep_by[name] and rep_by[name].file or ("R__" .. name), "R__" .. name, st.rep[name]) end
    if #lines > 0 then util.fail(table.concat(lines, "\n") .. "\nRefusing to migrate past a failed migration.") end
end

-- What `up` would do: the versioned migrations to apply (up to o.to), and
-- the repeatable ones whose checksum changed (only when no versioned one is
-- left pending). Refuses out-of-order files unless o.allow_out_of_order.
local function plan_up(o, files, rep_files, st)
    local top = newest(st)
    local pending, late = {}, {}
    for _, f in ipairs(files) do
        if not st.by[f.version] and (not o.to or f.version <= o.to) then
            pending[#pending + 1] = f
            if f.version < top then late[#late + 1] = f.file end
        end
    end
    if #late > 0 and not o.allow_out_of_order then
        util.fail(("out-of-order migration%s: %s %s older than the newest applied version (%d)."
            .. " Renumber %s, or pass --allow-out-of-order to apply %s anyway."):format(
            #late == 1 and "" or "s", table.concat(late, ", "), #late == 1 and "is" or "are", top,
            #late == 1 and "it" or "them", #late == 1 and "it" or "them"))
    end
    local left = 0
    for _, f in ipairs(files) do if not st.by[f.version] then left = left + 1 end end
    local rep = {}
    if left == #pending then
        for _, f in ipairs(rep_files) do
            local r = st.rep[f.name]
            if not r or r.checksum ~= f.checksum then rep[#rep + 1] = f end
        end
    end
    return pending, rep, left - #pending
end

-- One attempt at one migration, one line of output; raises when it fails.
-- A connection found dead when the migration begins (lost between two
-- migrations: killed, a server restart, its idle timeout) is replaced once
-- (attempt 1): renew() reconnects, takes the lock again and returns what is
-- applied now. A migration that may have run is never run again: that ends
-- the command (see execute).
-- -> "ok" | "renewed", state
local function run_one(ctx, s, m, verb, direction, record, renew, attempt, hooks)
    ctx.out:write(verb, " ", m.file, " ... ")
    ctx.out:flush()
    local t0 = now()
    local started = false
    local ok, msg, where_, n = (function()
        if hooks and hooks.start then
            local sok, serr = pcall(hooks.start, m)
            if not sok then
                if lost(s.conn, serr) and not serr.sent then return false, errmsg(serr), "before", 0 end
                error(serr, 0)
            end
            started = true
        end
        return execute(s, m, direction, function(k) record(m, t0, k) end, hooks and hooks.progress and function(k) hooks.progress(m, k) end)
    end)()
    if ok then
        ctx.out:write(("ok (%s)\n"):format(util.duration(now() - t0)))
        return "ok"
    end
    if where_ ~= "before" or attempt > 1 then
        ctx.out:write("FAILED\n")
        if where_ ~= "before" and started and hooks.failed and where_ ~= "lost" then
            -- the connection works: the failure is recorded with its error
            local fok = pcall(hooks.failed, m, msg, n)
            if fok then
                msg = msg .. ("\nRecorded as failed: `dbpool migrate up` refuses to go on until `dbpool migrate repair %s`"
                    .. " (after the database is fixed)."):format(m.repeatable and ("R__" .. m.name) or tostring(m.version))
            end
        elseif where_ == "lost" and started then
            msg = msg .. "\nIt stays recorded as running; the next `dbpool migrate up` says what state it is in."
        end
        util.fail(where_ == "before"
            and ("%s %s: the connection was lost again before it began: %s"):format(m.file, direction, msg) or msg)
    end
    local rok, state = pcall(renew)
    if not rok then
        ctx.out:write("FAILED\n")
        util.fail(("%s %s: the connection was lost before it began (nothing of it ran), and reconnecting failed: %s")
            :format(m.file, direction, errmsg(state)))
    end
    ctx.out:write(("connection lost before it began (nothing of it ran); reconnected (connection id %s), lock taken again.\n")
        :format(tostring(s.conn:id())))
    return "renewed", state
end

-- Runs each migration of list in `direction` (run_one). After a reconnect,
-- todo(m, state) says whether m still needs running: another migrator may
-- have run it while the lock was free. -> how many ran
local function run_each(ctx, s, list, verb, direction, record, renew, todo, hooks)
    local n, state = 0, nil
    for _, m in ipairs(list) do
        for attempt = 1, 2 do
            if state and not todo(m, state) then
                ctx.out:write(("%s %s: done meanwhile by another migrator; skipped.\n"):format(verb, m.file))
                break
            end
            local r, st = run_one(ctx, s, m, verb, direction, record, renew, attempt, hooks)
            if r == "ok" then n = n + 1 break end
            state = st
        end
    end
    return n
end

-- After a reconnect: the lock again, the table read afresh and checked.
-- (a running row there is this migrator's own, from a start whose connection
-- died before the migration began: settled as any interrupted one)
local function renewer(ctx, s, o, files_by, rep_files)
    return function()
        s:reconnect(o.lock_timeout or 60)
        local st = s:state()
        verify(files_by, st, ctx.out)
        settle_interrupted(ctx, s, st, files_by, rep_files)
        refuse_failed(st, files_by, rep_files)
        return st
    end
end

local function print_plan(ctx, pending, rep)
    local function show(m, note)
        ctx.out:write(("-- %s%s\n"):format(m.file, note))
        if m.kind == "sql" then
            for _, st in ipairs(m.up) do ctx.out:write(st, ";\n") end
        else
            ctx.out:write("-- (Lua: its up function runs)\n")
        end
        ctx.out:write("\n")
    end
    for _, m in ipairs(pending) do show(m, m.no_tx and " (no transaction)" or "") end
    for _, m in ipairs(rep) do show(m, m.no_tx and " (repeatable, no transaction)" or " (repeatable)") end
end

local function cmd_up(ctx, o, dir)
    local files, files_by, rep_files = M.load(dir, dialect.split_for_url(o.url or os.getenv("DATABASE_URL")))
    return with_session(ctx, o, function(s)
        if o.dry_run then
            -- read only: no lock, no table created, nothing written
            local st = s:state()
            verify(files_by, st, ctx.out)
            local running = {}
            for _, r in ipairs(st.rows) do if r.status == "running" then running[#running + 1] = r.version end end
            for name, r in pairs(st.rep) do if r.status == "running" then running[#running + 1] = "R__" .. name end end
            if #running > 0 then
                local busy = s:lock_busy()
                ctx.out:write(("Recorded as running: %s (%s).\n"):format(table.concat(running, ", "), busy
                    and "another migrator holds the lock" or "its migrator is gone; `up` will say what state it is in"))
            end
            refuse_failed(st, files_by, rep_files)
            local pending, rep, held = plan_up(o, files, rep_files, st)
            if #pending + #rep == 0 then
                ctx.out:write("Dry run: nothing to migrate.\n")
                return "ok"
            end
            ctx.out:write(("Dry run: %d migration%s would run, in this order (nothing is changed):\n\n"):format(
                #pending + #rep, #pending + #rep == 1 and "" or "s"))
            print_plan(ctx, pending, rep)
            if held > 0 and #rep_files > 0 then
                ctx.out:write("(repeatable migrations run once every versioned one is applied)\n")
            end
            return "ok"
        end
        s:lock(o.lock_timeout or 60)
        s:ensure_tables()
        local st = s:state()
        verify(files_by, st, ctx.out)
        settle_interrupted(ctx, s, st, files_by, rep_files)
        refuse_failed(st, files_by, rep_files)
        local pending, rep = plan_up(o, files, rep_files, st)
        local applied = 0
        for _, r in ipairs(st.rows) do if r.status == "applied" or r.status == "baseline" then applied = applied + 1 end end
        if #pending + #rep == 0 then
            ctx.out:write(("Nothing to migrate: %d applied, the database is up to date%s.\n"):format(applied,
                o.to and (" up to " .. o.to) or ""))
            return "ok"
        end
        local hooks = {
            start = function(m) s:mark_running(m) end,
            progress = function(m, k) s:mark_done_so_far(m, k) end,
            failed = function(m, msg, k) s:mark_failed(m, msg, k) end,
        }
        local record = function(m, t0, k) s:mark_applied(m, math.floor((now() - t0) * 1000 + 0.5), k) end
        local n = run_each(ctx, s, pending, "Applying", "up", record, renewer(ctx, s, o, files_by, rep_files),
            function(m, by) return by.by[m.version] == nil end, hooks)
        local nr = 0
        if #rep > 0 then
            nr = run_each(ctx, s, rep, "Applying (repeatable)", "up", record, renewer(ctx, s, o, files_by, rep_files),
                function(m, by) return not by.rep[m.name] or by.rep[m.name].checksum ~= m.checksum end, hooks)
        end
        ctx.out:write(("Applied %d migration%s%s.\n"):format(n, n == 1 and "" or "s",
            nr > 0 and (" and " .. nr .. " repeatable") or ""))
        return "ok"
    end)
end

local function cmd_down(ctx, o, dir)
    local files, files_by, rep_files = M.load(dir, dialect.split_for_url(o.url or os.getenv("DATABASE_URL")))
    if o.steps and o.to then util.usage("--steps and --to do not go together", "migrate") end
    local steps = o.steps or 1
    if steps < 1 then util.usage("--steps must be at least 1", "migrate") end
    return with_session(ctx, o, function(s)
        s:lock(o.lock_timeout or 60)
        local st = s:state()
        settle_interrupted(ctx, s, st, files_by, rep_files)
        refuse_failed(st, files_by, rep_files)
        local applied = {}
        for _, r in ipairs(st.rows) do
            if r.status == "applied" or r.status == "baseline" then applied[#applied + 1] = r end
        end
        if #applied == 0 then
            ctx.out:write("Nothing to roll back: no migration is applied.\n")
            return "ok"
        end
        verify(files_by, st, ctx.out)
        local todo = {}
        local last = o.to and 1 or math.max(#applied - steps + 1, 1)
        for i = #applied, last, -1 do
            local r = applied[i]
            if o.to and r.version <= o.to then break end
            if r.status == "baseline" then
                util.fail(("migration %d (%s) was recorded by `baseline`, never run here: cannot roll it back"):format(r.version, r.name))
            end
            local m = files_by[r.version]
            if not m then util.fail(("migration %d (%s) has no file: cannot roll it back"):format(r.version, r.name)) end
            if (m.kind == "sql" and not m.down) or (m.kind == "lua" and not m.down_fn) then
                util.fail(("%s has no down part: cannot roll it back"):format(m.file))
            end
            todo[#todo + 1] = m
        end
        if #todo == 0 then
            ctx.out:write(("Nothing to roll back: no applied migration is newer than %d.\n"):format(o.to))
            return "ok"
        end
        local n = run_each(ctx, s, todo, "Reverting", "down", function(m)
            own(s, "DELETE FROM " .. s.qtbl .. " WHERE version = ?", { m.version })
        end, renewer(ctx, s, o, files_by, rep_files), function(m, by) return by.by[m.version] ~= nil end)
        ctx.out:write(("Rolled back %d migration%s.\n"):format(n, n == 1 and "" or "s"))
        return "ok"
    end)
end

local function cmd_baseline(ctx, o, dir, arg)
    local version = arg and math.tointeger(tonumber(arg))
    if not version or version < 0 or not arg:match("^%d+$") then
        util.usage("migrate baseline needs a VERSION (a whole number)", "migrate")
    end
    local files = M.load(dir, dialect.split_for_url(o.url or os.getenv("DATABASE_URL")))
    return with_session(ctx, o, function(s)
        s:lock(o.lock_timeout or 60)
        s:ensure_tables()
        local st = s:state()
        if #st.rows > 0 then
            util.fail(("%s already records %d migration%s: baseline adopts a database that has none"):format(
                s.tbl, #st.rows, #st.rows == 1 and "" or "s"))
        end
        local n, exact = 0, false
        for _, f in ipairs(files) do
            if f.version <= version then
                own(s, "INSERT INTO " .. s.qtbl .. " (version, name, checksum, status) VALUES (?, ?, ?, 'baseline')",
                    { f.version, f.name, f.checksum })
                n = n + 1
                ctx.out:write(("Baselined %s (recorded as applied, not run)\n"):format(f.file))
                if f.version == version then exact = true end
            end
        end
        if not exact then
            -- the marker: versions up to here count as applied
            own(s, "INSERT INTO " .. s.qtbl .. " (version, name, checksum, status) VALUES (?, 'baseline', '', 'baseline')", { version })
        end
        ctx.out:write(("Baseline at version %d: %d file%s recorded as applied without running; `up` applies what is newer.\n")
            :format(version, n, n == 1 and "" or "s"))
        return "ok"
    end)
end

local function cmd_repair(ctx, o, dir, arg)
    if not arg then util.usage("migrate repair needs a VERSION (or R__name of a repeatable migration)", "migrate") end
    local _, files_by, rep_files = M.load(dir, dialect.split_for_url(o.url or os.getenv("DATABASE_URL")))
    return with_session(ctx, o, function(s)
        s:lock(o.lock_timeout or 60)
        s:ensure_tables()
        local st = s:state()
        settle_interrupted(ctx, s, st, files_by, rep_files)
        local r, m
        local rname = arg:match("^R__(.-)%.%a+$") or arg:match("^R__(.+)$")
        if rname then
            r = st.rep[rname]
            m = { repeatable = true, name = rname }
        else
            local v = arg:match("^%d+$") and math.tointeger(tonumber(arg))
            if not v then util.usage(("'%s' is not a VERSION or R__name"):format(arg), "migrate") end
            r = st.by[v]
            m = { version = v }
        end
        if not r then util.fail(("%s is not recorded: nothing to repair"):format(arg)) end
        if r.status ~= "failed" then
            util.fail(("%s is recorded as %s, not failed: nothing to repair"):format(arg, r.status))
        end
        s:forget(m)
        ctx.out:write(("Cleared the failed record of %s; `dbpool migrate up` runs it again.\n"):format(arg))
        return "ok"
    end)
end

local function when(r) return r and tostring(r.applied_at):gsub("%.%d+$", "") or "" end

local function cmd_status(ctx, o, dir)
    local files, files_by, rep_files = M.load(dir, dialect.split_for_url(o.url or os.getenv("DATABASE_URL")))
    return with_session(ctx, o, function(s)
        local st = s:state()
        local busy
        local list = {}
        local counts = { applied = 0, pending = 0, changed = 0, missing = 0, failed = 0, running = 0, interrupted = 0 }
        local all, seen = {}, {}
        for _, f in ipairs(files) do all[#all + 1] = f.version; seen[f.version] = true end
        for _, r in ipairs(st.rows) do if not seen[r.version] then all[#all + 1] = r.version end end
        table.sort(all)
        local top = newest(st)
        local function running_state()
            if busy == nil then busy = s:lock_busy() end
            return busy and "running" or "interrupted"
        end
        for _, v in ipairs(all) do
            local f, r = files_by[v], st.by[v]
            local status
            if r and r.status == "failed" then status = "failed"
            elseif r and r.status == "running" then status = running_state()
            elseif f and r then
                status = f.checksum == r.checksum and (r.status == "baseline" and "baseline" or "applied") or "CHANGED"
            elseif f then
                status = f.version < top and "pending (out of order)" or "pending"
            elseif r.status == "baseline" then
                status = "baseline"
            else
                status = "applied, file missing"
            end
            local key = (status == "applied" or status == "baseline") and "applied" or status:match("^pending") and "pending"
                or status == "CHANGED" and "changed" or status == "failed" and "failed" or status == "running" and "running"
                or status == "interrupted" and "interrupted" or "missing"
            counts[key] = counts[key] + 1
            list[#list + 1] = { version = v, name = f and f.name or r.name, file = f and f.file or NULL, type = "versioned",
                                status = status, checksum = r and r.checksum or f.checksum, applied_at = r and when(r) or NULL,
                                duration_ms = r and r.duration_ms or NULL, error = r and r.error or NULL }
        end
        local rnames, rseen = {}, {}
        local rep_by = {}
        for _, f in ipairs(rep_files) do rnames[#rnames + 1] = f.name; rseen[f.name] = true; rep_by[f.name] = f end
        for name in pairs(st.rep) do if not rseen[name] then rnames[#rnames + 1] = name end end
        table.sort(rnames)
        for _, name in ipairs(rnames) do
            local f, r = rep_by[name], st.rep[name]
            local status
            if r and r.status == "failed" then status = "failed"
            elseif r and r.status == "running" then status = running_state()
            elseif f and r then status = f.checksum == r.checksum and "applied" or "pending (changed)"
            elseif f then status = "pending"
            else status = "applied, file missing" end
            local key = status == "applied" and "applied" or status:match("^pending") and "pending"
                or status == "failed" and "failed" or status == "running" and "running"
                or status == "interrupted" and "interrupted" or "missing"
            counts[key] = counts[key] + 1
            list[#list + 1] = { version = NULL, name = name, file = f and f.file or NULL, type = "repeatable",
                                status = status, checksum = r and r.checksum or f.checksum, applied_at = r and when(r) or NULL,
                                duration_ms = r and r.duration_ms or NULL, error = r and r.error or NULL }
        end
        local up_to_date = counts.pending == 0 and counts.failed == 0 and counts.changed == 0
            and counts.running == 0 and counts.interrupted == 0
        if o.json then
            local items = setmetatable({}, util.json_array)
            for i, e in ipairs(list) do items[i] = e end
            ctx.out:write(util.json({ up_to_date = up_to_date, applied = counts.applied, pending = counts.pending,
                failed = counts.failed, changed = counts.changed, running = counts.running,
                interrupted = counts.interrupted, missing = counts.missing, migrations = items }), "\n")
        elseif #list == 0 then
            ctx.out:write("No migrations in ", dir, " and none applied.\n")
        else
            local rows = { columns = { "version", "name", "status", "applied_at" } }
            for _, e in ipairs(list) do
                local f = e.type == "versioned" and files_by[e.version]
                rows[#rows + 1] = { version = e.type == "repeatable" and "R" or (f and f.digits or tostring(e.version)),
                                    name = e.name, status = e.status, applied_at = is_null(e.applied_at) and "" or e.applied_at }
            end
            ctx.out:write((require("dbpool.cli.render").table(rows)))
            local extra = {}
            if counts.failed > 0 then extra[#extra + 1] = counts.failed .. " FAILED" end
            if counts.interrupted > 0 then extra[#extra + 1] = counts.interrupted .. " interrupted (its migrator is gone; `up` says what state it is in)" end
            if counts.running > 0 then extra[#extra + 1] = counts.running .. " running" end
            if counts.changed > 0 then extra[#extra + 1] = counts.changed .. " CHANGED after being applied" end
            if counts.missing > 0 then extra[#extra + 1] = counts.missing .. " without a file" end
            ctx.out:write(("%d applied, %d pending%s\n"):format(counts.applied + counts.changed + counts.missing, counts.pending,
                #extra > 0 and (", " .. table.concat(extra, ", ")) or ""))
            for _, e in ipairs(list) do
                if e.status == "failed" then
                    local key = e.type == "repeatable" and ("R__" .. e.name) or tostring(e.version)
                    ctx.out:write(("\n%s failed at %s:\n  %s\nFix the database, then `dbpool migrate repair %s`.\n"):format(
                        is_null(e.file) and key or e.file, e.applied_at, (is_null(e.error) and "" or tostring(e.error)):gsub("\n", "\n  "), key))
                end
            end
        end
        if o.exit_code and not up_to_date then return "failure" end
        if counts.changed > 0 then return "failure" end
        return "ok"
    end)
end

local SQL_TEMPLATE = [[
-- %s: describe the change here.
-- Statements end with ';'. MySQL/MariaDB commit DDL (CREATE, ALTER, DROP,
-- RENAME, TRUNCATE) implicitly: a failure cannot roll it back.
-- A line "-- dbpool: no-transaction" here would run it outside a transaction.

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

local SQL_REPEATABLE = [[
-- %s: a repeatable migration, applied again whenever this file changes.
-- Define the whole object each time: CREATE OR REPLACE VIEW ..., or
-- DROP ... IF EXISTS then CREATE.
]]

local LUA_REPEATABLE = [[
-- %s: a repeatable migration, applied again whenever this file changes.
return {
    up = function(conn, pool)
        -- conn:query("CREATE OR REPLACE VIEW ..."):await()
    end,
}
]]

local function cmd_new(ctx, o, dir, name)
    if not name then util.usage("migrate new needs a NAME", "migrate") end
    local clean = name:lower():gsub("[^%w]+", "_"):gsub("^_+", ""):gsub("_+$", "")
    if clean == "" then util.usage(("'%s' is not a usable migration name"):format(name), "migrate") end
    if not util.is_dir(dir) and not util.mkdir_p(dir) then util.fail("cannot create " .. dir) end
    local files = M.load(dir, dialect.split_for_url(o.url or os.getenv("DATABASE_URL")))
    local last, width = 0, 4
    for _, f in ipairs(files) do
        if f.version > last then last = f.version end
        if #f.digits > width then width = #f.digits end
    end
    local ext = o.lua and "lua" or "sql"
    local file = o.repeatable and ("R__%s.%s"):format(clean, ext) or ("%0" .. width .. "d_%s.%s"):format(last + 1, clean, ext)
    local path = dir .. "/" .. file
    if util.file_exists(path) then util.fail(path .. " exists already") end
    local f, err = io.open(path, "w")
    if not f then util.fail(("cannot create %s: %s"):format(path, tostring(err))) end
    f:write((o.repeatable and (o.lua and LUA_REPEATABLE or SQL_REPEATABLE) or (o.lua and LUA_TEMPLATE or SQL_TEMPLATE)):format(file))
    f:close()
    ctx.out:write("Created ", path, "\n")
    return "ok"
end

-- Which options each subcommand takes (the rest are refused by name).
local ALLOWED = {
    up = { dir = true, url = true, table = true, lock_timeout = true, to = true, dry_run = true, allow_out_of_order = true },
    down = { dir = true, url = true, table = true, lock_timeout = true, steps = true, to = true },
    status = { dir = true, url = true, table = true, json = true, exit_code = true },
    baseline = { dir = true, url = true, table = true, lock_timeout = true },
    repair = { dir = true, url = true, table = true, lock_timeout = true },
    new = { dir = true, lua = true, repeatable = true },
}
local OPTION_NAME = {}
for name, o in pairs(SPEC) do OPTION_NAME[o.key] = name end

function M.command(argv, ctx)
    local o, pos = util.parse_options(argv, 1, SPEC, "migrate")
    local sub = pos[1]
    if not sub then util.usage("expected up, down, status, baseline VERSION, repair VERSION or new NAME", "migrate") end
    if not ALLOWED[sub] then
        util.usage(("unknown subcommand '%s' (up, down, status, baseline, repair, new)"):format(sub), "migrate")
    end
    for key in pairs(o) do
        if not ALLOWED[sub][key] then util.usage(("%s does not go with %s"):format(OPTION_NAME[key], sub), "migrate") end
    end
    local dir = o.dir or os.getenv("DBPOOL_MIGRATIONS_DIR")
    if not dir or dir == "" then dir = "migrations" end
    dir = dir:gsub("/+$", "")
    local takes_arg = sub == "new" or sub == "baseline" or sub == "repair"
    if #pos > (takes_arg and 2 or 1) then util.usage(("unexpected argument '%s'"):format(pos[takes_arg and 3 or 2]), "migrate") end
    if sub == "up" then return cmd_up(ctx, o, dir)
    elseif sub == "down" then return cmd_down(ctx, o, dir)
    elseif sub == "status" then return cmd_status(ctx, o, dir)
    elseif sub == "baseline" then return cmd_baseline(ctx, o, dir, pos[2])
    elseif sub == "repair" then return cmd_repair(ctx, o, dir, pos[2])
    end
    return cmd_new(ctx, o, dir, pos[2])
end

return M
