-- dbpool: MySQL/MariaDB, PostgreSQL and Redis pools for Lua 5.4, where every query is a
-- promise that a coroutine can await.
--
--   local dbpool = require "dbpool"
--   local db = dbpool.open(os.getenv("DATABASE_URL"), { max = 8 })
--   dbpool.run(function()
--     local rows = db:query("SELECT id, name FROM users WHERE id > ?", { 10 }):await()
--   end)
--
-- The C core (dbpool.core) drives the connections; this file holds what calls
-- user functions: the task scheduler, promises and their combinators,
-- transactions, streaming iterators, event hooks and Redis method sugar.
local core = require "dbpool.core"

local pack, unpack = table.pack, table.unpack
local co_create, co_resume, co_yield, co_running, co_status =
    coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local type, setmetatable, getmetatable, pcall, xpcall, error, select, next =
    type, setmetatable, getmetatable, pcall, xpcall, error, select, next
local traceback = debug.traceback

local M = {
    _VERSION = "dbpool " .. core.version,
    null = core.null,
}

---------------------------------------------------------------------------
-- Errors: tables with kind, code, sqlstate, message, sent, name
---------------------------------------------------------------------------
local Error = {}
Error.__index = Error

function Error.__tostring(e)
    local s = "dbpool " .. tostring(e.kind or "?") .. " error: " .. tostring(e.message or "")
    if e.code or e.sqlstate then
        s = s .. " (" .. (e.code and ("code " .. e.code) or "")
            .. ((e.code and e.sqlstate) and ", " or "")
            .. (e.sqlstate and ("SQLSTATE " .. e.sqlstate) or "") .. ")"
    end
    if e.traceback then s = s .. "\n" .. e.traceback end
    return s
end

local function new_error(kind, message, fields)
    local e = { kind = kind, message = message, sent = false }
    if fields then for k, v in pairs(fields) do e[k] = v end end
    return setmetatable(e, Error)
end

local function copy_error(e)
    if getmetatable(e) ~= Error then return e end
    local c = {}
    for k, v in pairs(e) do c[k] = v end
    return setmetatable(c, Error)
end

local function usage(message) return new_error("usage", message, { name = "DBP_EUSAGE" }) end

function M.is_error(v) return getmetatable(v) == Error end
M.error = new_error

---------------------------------------------------------------------------
-- Promises
---------------------------------------------------------------------------
local Promise = {}
Promise.__index = Promise
core.set_metatables(Promise, Error)

local function is_promise(v) return getmetatable(v) == Promise end
M.is_promise = is_promise

-- scheduler state (one per Lua state: this module is loaded once per state)
local ready, ready_head, ready_tail = {}, 1, 0   -- coroutines to resume
local tasks = setmetatable({}, { __mode = "k" })  -- coroutine -> its promise
local ntasks = 0
local unhandled = {}                              -- rejected promises nobody handled
local AWAIT = setmetatable({}, { __tostring = function() return "dbpool.await" end })

local function push_ready(co)
    ready_tail = ready_tail + 1
    ready[ready_tail] = co
end

local function new_promise() return setmetatable({ _state = "pending" }, Promise) end

-- Wakes everything that waits on p (it has just settled).
local function wake(p)
    local sw = p._swait
    if sw then
        p._swait = nil
        for i = 1, #sw do push_ready(sw[i]) end
    end
    local w = p._waiters
    if w then
        p._waiters = nil
        local tw = type(w)
        if tw == "thread" then push_ready(w)          -- the common case: one task awaits
        elseif tw == "function" then w(p)
        else
            for i = 1, #w do
                local x = w[i]
                if type(x) == "thread" then push_ready(x) else x(p) end
            end
        end
    elseif p._state == "rejected" and not p._handled then
        unhandled[p] = true
    end
end

local function settle(p, state, value, values)
    if p._state ~= "pending" then return end
    p._state, p._value, p._values = state, value, values
    wake(p)
end
local function fulfill(p, v) settle(p, "fulfilled", v) end
local function reject(p, e) settle(p, "rejected", e) end

-- _waiters holds a lone waiter (a task or a function) as itself, and a list
-- only once there are two: most promises have exactly one.
local function add_waiter(p, x)
    local w = p._waiters
    if w == nil then p._waiters = x
    elseif type(w) == "table" then w[#w + 1] = x
    else p._waiters = { w, x } end
end

-- Calls fn(p) once p has settled (at once if it has). Counts as handling it.
local function when_settled(p, fn)
    p._handled = true
    unhandled[p] = nil
    if p._state ~= "pending" then fn(p) return end
    add_waiter(p, fn)
end

-- A stream (or an op settled by the core) made progress.
local function on_core_promise(p)
    if p._state == "pending" then
        local sw = p._swait
        if sw then
            p._swait = nil
            for i = 1, #sw do push_ready(sw[i]) end
        end
        return
    end
    wake(p)
end

local pools = setmetatable({}, { __mode = "k" })          -- wrapper -> true, for run()'s final close
local pool_by_ud = setmetatable({}, { __mode = "kv" })    -- core userdata -> wrapper
local sub_by_id = setmetatable({}, { __mode = "v" })      -- lightuserdata -> Sub wrapper
local nsubs = 0
local dispatch_events

-- Resumes ready tasks until none is ready (bounded so I/O is never starved).
local function run_ready()
    local budget = 100000
    while ready_head <= ready_tail and budget > 0 do
        local co = ready[ready_head]
        ready[ready_head] = nil
        ready_head = ready_head + 1
        budget = budget - 1
        if co_status(co) == "suspended" then
            local ok, err = co_resume(co)
            if not ok then
                -- a task body never raises (it runs under xpcall); this is a bug
                io.stderr:write("dbpool: internal error in a task: ", tostring(err), "\n")
            end
        end
    end
    if ready_head > ready_tail then ready_head, ready_tail = 1, 0 end
end

-- One round: ready tasks, then the hub (waiting only when nothing is ready).
local function step(block)
    run_ready()
    local pending = core.pending()
    local timeout = 0
    if block and ready_head > ready_tail then
        if pending > 0 then timeout = -1
        elseif nsubs > 0 then timeout = 1
        else timeout = 0 end
    end
    local settled, events, nsettled = core.step(timeout)
    for i = 1, #settled do on_core_promise(settled[i]) end
    if events then dispatch_events(events) end
    run_ready()
    return #settled + nsettled
end

local function in_task()
    local co, main = co_running()
    if main then return nil end
    return tasks[co] and co or nil
end

-- Waits for p: yields inside a task, drives the hub anywhere else.
local function wait(p)
    if p._state ~= "pending" then return end
    local co = in_task()
    if co then
        repeat
            add_waiter(p, co)
            co_yield(AWAIT)
        until p._state ~= "pending"
    else
        local idle = 0
        while p._state == "pending" do
            if step(true) == 0 and ready_head > ready_tail and core.pending() == 0 and nsubs == 0 then
                idle = idle + 1
                if idle > 2 and p._state == "pending" then
                    error(usage("await would wait forever: the promise cannot settle (nothing is pending)"), 3)
                end
            end
        end
    end
end

-- promise:await() -> the value, or raises the op's error.
-- (a settled promise, the common case in a window or a batch, skips the call to wait)
function Promise:await()
    local st = self._state
    if st == "pending" then
        wait(self)
        st = self._state
    end
    if st == "fulfilled" then
        local v = self._values
        if v then return unpack(v, 1, v.n) end
        return self._value
    end
    -- (only a rejection needs marking: a fourth field would grow the table)
    self._handled = true
    unhandled[self] = nil
    error(copy_error(self._value), 0)
end

-- promise:result() -> true, value | false, err
function Promise:result()
    local st = self._state
    if st == "pending" then
        wait(self)
        st = self._state
    end
    if st == "fulfilled" then
        local v = self._values
        if v then return true, unpack(v, 1, v.n) end
        return true, self._value
    end
    self._handled = true
    unhandled[self] = nil
    return false, self._value
end

function Promise:status() return self._state end

local spawn

-- promise:next(on_ok, on_err) -> a new promise, settled by the handler's outcome
function Promise:next(on_ok, on_err)
    local p2 = new_promise()
    when_settled(self, function(p)
        local fn = p._state == "fulfilled" and on_ok or on_err
        if not fn then
            if p._state == "fulfilled" then settle(p2, "fulfilled", p._value, p._values)
            else reject(p2, p._value) end
            return
        end
        local arg = p._value
        spawn(function()
            local r = pack(fn(arg))
            if r.n == 1 and is_promise(r[1]) then return r[1]:await() end
            return unpack(r, 1, r.n)
        end):next_raw(p2)
    end)
    return p2
end

-- Settles p2 like self (internal chaining, no task).
function Promise:next_raw(p2)
    when_settled(self, function(p)
        if p._state == "fulfilled" then settle(p2, "fulfilled", p._value, p._values)
        else reject(p2, p._value) end
    end)
end

Promise.__tostring = function(p) return "dbpool.promise (" .. p._state .. ")" end

local function value_of(p)
    if p._values then return p._values[1] end
    return p._value
end

function M.all(list)
    local p, n = new_promise(), #list
    local results, left = { n = n }, n
    if n == 0 then fulfill(p, results) return p end
    for i = 1, n do
        local q = list[i]
        if not is_promise(q) then error(usage("dbpool.all: item " .. i .. " is not a promise"), 2) end
        when_settled(q, function(x)
            if p._state ~= "pending" then return end
            if x._state == "fulfilled" then
                results[i] = value_of(x)
                left = left - 1
                if left == 0 then fulfill(p, results) end
            else
                reject(p, x._value)
            end
        end)
    end
    return p
end

function M.all_settled(list)
    local p, n = new_promise(), #list
    local results, left = { n = n }, n
    if n == 0 then fulfill(p, results) return p end
    for i = 1, n do
        local q = list[i]
        if not is_promise(q) then error(usage("dbpool.all_settled: item " .. i .. " is not a promise"), 2) end
        when_settled(q, function(x)
            if x._state == "fulfilled" then
                results[i] = { status = "fulfilled", value = value_of(x) }
            else
                results[i] = { status = "rejected", reason = x._value }
            end
            left = left - 1
            if left == 0 then fulfill(p, results) end
        end)
    end
    return p
end

function M.race(list)
    local p = new_promise()
    for i = 1, #list do
        local q = list[i]
        if not is_promise(q) then error(usage("dbpool.race: item " .. i .. " is not a promise"), 2) end
        when_settled(q, function(x)
            if p._state ~= "pending" then return end
            if x._state == "fulfilled" then settle(p, "fulfilled", x._value, x._values)
            else reject(p, x._value) end
        end)
    end
    return p
end

function M.sleep(seconds)
    if type(seconds) ~= "number" or seconds ~= seconds then error(usage("dbpool.sleep: seconds must be a number"), 2) end
    return core.sleep(seconds)
end

-- A resolved or rejected promise, for code that builds its own.
function M.resolved(v) local p = new_promise(); fulfill(p, v); return p end
function M.rejected(e) local p = new_promise(); reject(p, e); return p end

---------------------------------------------------------------------------
-- Tasks
---------------------------------------------------------------------------
local function task_handler(e)
    if getmetatable(e) == Error then
        if not e.traceback then
            e = copy_error(e)
            e.traceback = traceback("", 2):gsub("^\n", "")
        end
        return e
    end
    if type(e) == "table" then return e end
    return traceback(tostring(e), 2)
end

function spawn(fn, ...)
    if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
        error(usage("dbpool.spawn: expected a function"), 2)
    end
    local p = new_promise()
    local args = pack(...)
    local co
    co = co_create(function()
        local r = pack(xpcall(fn, task_handler, unpack(args, 1, args.n)))
        tasks[co] = nil
        ntasks = ntasks - 1
        if r[1] then
            local vals = { n = r.n - 1 }
            for i = 2, r.n do vals[i - 1] = r[i] end
            settle(p, "fulfilled", vals[1], vals)
        else
            reject(p, r[2])
        end
    end)
    tasks[co] = p
    ntasks = ntasks + 1
    push_ready(co)
    return p
end
M.spawn = spawn

-- dbpool.map(iterable, fn, {concurrency = n}) -> promise of the results, in input order.
-- iterable: a list, or an iterator function (such as pool:rows(...)).
function M.map(iterable, fn, opts)
    local n = opts and opts.concurrency or 8
    if type(n) ~= "number" or n < 1 or n ~= math.floor(n) then
        error(usage("dbpool.map: concurrency must be a positive integer"), 2)
    end
    if type(fn) ~= "function" then error(usage("dbpool.map: expected a function"), 2) end
    local pull
    local count = 0
    if type(iterable) == "table" then
        local len = #iterable
        pull = function()
            if count >= len then return nil end
            count = count + 1
            return count, iterable[count]
        end
    elseif type(iterable) == "function" then
        local done = false
        pull = function()
            if done then return nil end
            local item = iterable()
            if item == nil then done = true return nil end
            count = count + 1
            return count, item
        end
    else
        error(usage("dbpool.map: expected a list or an iterator function"), 2)
    end
    local results, first_err, stop = {}, nil, false
    -- One worker pulls at a time: an iterator that awaits (a stream, a
    -- paged query) must not be entered twice.
    local pulling
    local function pull_one()
        if type(iterable) == "table" then return pull() end -- a list never yields
        while pulling do pulling:result() end
        local done = new_promise()
        pulling = done
        local r = pack(pcall(pull))
        pulling = nil
        fulfill(done, true)
        if not r[1] then error(r[2], 0) end
        return r[2], r[3]
    end
    local function worker()
        while not stop do
            local ok, idx, item = pcall(pull_one)
            if not ok then
                if not first_err then first_err = idx end
                stop = true
                break
            end
            if idx == nil then break end
            local ok2, r = pcall(fn, item, idx)
            if ok2 and is_promise(r) then ok2, r = pcall(r.await, r) end
            if ok2 then
                results[idx] = r
            else
                if not first_err then first_err = r end
                stop = true -- no new work; what runs settles
            end
        end
    end
    local workers = {}
    for k = 1, n do workers[k] = spawn(worker) end
    return spawn(function()
        for k = 1, n do workers[k]:await() end
        if first_err then error(first_err, 0) end
        results.n = count
        return results
    end)
end

---------------------------------------------------------------------------
-- Pools
---------------------------------------------------------------------------
local Pool, Conn, Sub = {}, {}, {}
local pool_methods, conn_methods = {}, {}
local sugar_cache = {}

local function redis_sugar(k)
    local f = sugar_cache[k]
    if not f then
        local cmd = k:upper()
        f = function(self, ...) return self:call(cmd, ...) end
        sugar_cache[k] = f
    end
    return f
end

-- SQL pools (MySQL, PostgreSQL): the same methods, the same result shapes.
local function is_sql(backend) return backend == "mysql" or backend == "postgres" end

-- SQL pools and connections index their methods; Redis ones a table that
-- also makes command sugar (pool:hgetall(k)) on first use and keeps it, so
-- a method call costs a table lookup, never a function call.
local function sugared(methods)
    return setmetatable({}, { __index = function(t, k)
        local m = methods[k]
        if m == nil and type(k) == "string" and k:match("^%a[%w_]*$") then m = redis_sugar(k) end
        if m ~= nil then rawset(t, k, m) end
        return m
    end })
end
Pool.__index = pool_methods
Conn.__index = conn_methods
local RedisPool, RedisConn = {}, {}   -- filled from Pool and Conn below

-- dbpool.open(url [, opts]) -> pool. Without a URL: DATABASE_URL (or
-- REDIS_URL with opts.backend = "redis").
function M.open(url, opts)
    if url ~= nil and type(url) ~= "string" then error(usage("dbpool.open: the URL must be a string"), 2) end
    if opts ~= nil and type(opts) ~= "table" then error(usage("dbpool.open: options must be a table"), 2) end
    local ok, ud = pcall(core.open, url, opts)
    if not ok then error(ud, 2) end
    local desc, backend = ud:describe()
    local self = setmetatable({ _c = ud, _backend = backend, _desc = desc, _handlers = {} },
        is_sql(backend) and Pool or RedisPool)
    pools[self] = true
    pool_by_ud[ud] = self
    return self
end

local function check_open(self, what)
    if self._c:state() ~= "open" then
        error(new_error("closed", "pool is " .. self._c:state() .. ": " .. what .. " refused", { name = "DBP_ECLOSED" }), 3)
    end
end

-- pool:query(sql [, params [, opts]]) and pool:call(cmd, ...) are the core's
-- own (self._c is the pool userdata): they raise only error tables, to which
-- error(e, 2) would add nothing, and the Lua method forwarding to them, with
-- its pcall, was a tenth of the Lua side's cost per query.
pool_methods.query = core.pool_query
pool_methods.call = core.pool_call
-- Bulk: one promise for many queries or commands (its value is the list of
-- results or replies, an error object where one failed; dbpool.is_error
-- tells). pool:query_many(sql, { params1, params2, ... } [, opts]) runs one
-- statement with each params list over the pool's connections;
-- pool:call_many({ { "GET", k1 }, { "SET", k2, v }, ... } [, opts]) sends
-- the commands pipelined. A usage mistake in any item raises before
-- anything is sent.
pool_methods.query_many = core.pool_query_many
pool_methods.call_many = core.pool_call_many

-- A MySQL pool with replicas adds `nodes`: each node's role, state, lag and
-- traffic (pool:nodes()).
function pool_methods:stats()
    local s = self._c:stats()
    if self._backend == "mysql" then
        local n = self._c:nodes()
        if #n > 0 then s.nodes = n end
    end
    return s
end
function pool_methods:nodes() return self._c:nodes() end

function pool_methods:ping(opts)
    local op = self._c:ping(opts)
    local p = new_promise()
    local c = self._c
    when_settled(op, function(q)
        if q._state == "fulfilled" then
            local _, started, settled = q._op:times()
            local _, _, version = c:describe()
            fulfill(p, { rtt = settled - started, version = version, backend = self._backend })
        else
            reject(p, q._value)
        end
    end)
    return p
end

function pool_methods:close(opts)
    local timeout = type(opts) == "table" and opts.timeout or (type(opts) == "number" and opts) or nil
    if self._c:state() == "released" then return M.resolved(true) end
    local ok, p = pcall(self._c.close, self._c, timeout)
    if not ok then error(p, 2) end
    return p
end

function pool_methods:on(event, fn)
    if type(fn) ~= "function" then error(usage("on: expected a function"), 2) end
    local ok = { connect = true, enqueue = true, error = true, slow = true, notice = true }
    if not ok[event] then error(usage("on: unknown event '" .. tostring(event) .. "' (connect, enqueue, error, slow, notice)"), 2) end
    local list = self._handlers[event] or {}
    list[#list + 1] = fn
    self._handlers[event] = list
    self._c:listen(event)
    return self
end

local function call_handlers(list, ...)
    for i = 1, #list do
        local ok, err = pcall(list[i], ...)
        if not ok then io.stderr:write("dbpool: an event handler failed: ", tostring(err), "\n") end
    end
end

function dispatch_events(events)
    for i = 1, #events do
        local ev = events[i]
        if ev.sub then
            local s = sub_by_id[ev.sub]
            if s and s._handler then
                local h = s._handler
                if ev.type == "message" then
                    spawn(h, ev.channel, ev.message)
                elseif ev.type == "pmessage" then
                    spawn(h, ev.channel, ev.message, ev.pattern)
                elseif ev.type == "subscribed" then
                    s._confirmed = (s._confirmed or 0) + 1
                    if s._confirmed >= s._count and s._ready._state == "pending" then fulfill(s._ready, s) end
                elseif ev.type == "resubscribed" and s._on_gap then
                    spawn(s._on_gap, ev.message)
                elseif ev.type == "error" then
                    s._error = ev.message
                end
            end
        else
            local pool = ev.pool and pool_by_ud[ev.pool]
            if pool then
                local kind = ev.event == "leak" and "error" or ev.event
                local list = pool._handlers[kind]
                if list then
                    call_handlers(list, ev)
                elseif ev.event == "leak" then
                    io.stderr:write("dbpool: ", ev.message, ev.where and ("; acquired at:\n" .. ev.where) or "", "\n")
                end
            end
        end
    end
end

function Pool:__tostring()
    local st = self._c:state()
    if st ~= "open" then return "dbpool.pool " .. self._desc .. " (" .. st .. ")" end
    local s = self._c:stats()
    return ("dbpool.pool %s (total %d, idle %d, busy %d, waiting %d)"):format(self._desc, s.total, s.idle, s.busy, s.waiting)
end

function Pool:__close()
    if self._c:state() == "open" then self:close():await() end
end

-- pool:acquire([opts]) -> promise of a pinned connection (release it, or use <close>)
function pool_methods:acquire(opts)
    local op = self._c:acquire(opts)
    local p = new_promise()
    local where = traceback("acquired", 2)
    local backend = self._backend
    when_settled(op, function(q)
        if q._state == "fulfilled" then
            local ud = core.take_conn(q._op)
            ud:set_where(where)
            fulfill(p, setmetatable({ _c = ud, _backend = backend }, is_sql(backend) and Conn or RedisConn))
        else
            reject(p, q._value)
        end
    end)
    return p
end

function conn_methods:query(sql, params, opts)
    local ok, p = pcall(self._c.query, self._c, sql, params, opts)
    if not ok then error(p, 2) end
    return p
end
function conn_methods:call(...)
    local ok, p = pcall(self._c.call, self._c, ...)
    if not ok then error(p, 2) end
    return p
end
function conn_methods:release() self._c:release() end
function conn_methods:discard() self._c:discard() end
function conn_methods:in_transaction() return self._c:in_transaction() end
function conn_methods:id() return self._c:id() end
function conn_methods:ok() return self._c:ok() end
Conn.__close = function(self) self._c:release() end
Conn.__tostring = function(self) return "dbpool.conn (" .. self._backend .. ")" end
for k, v in pairs(Pool) do RedisPool[k] = v end
for k, v in pairs(Conn) do RedisConn[k] = v end
RedisPool.__index = sugared(pool_methods)
RedisConn.__index = sugared(conn_methods)

local in_tx = setmetatable({}, { __mode = "k" })

-- pool:transaction(function(tx) ... end [, opts]) -> the function's results.
-- MySQL, PostgreSQL: BEGIN, COMMIT on return, ROLLBACK on error (re-raised;
-- on PostgreSQL a transaction aborted by an error, state E, is rolled back too).
-- Redis: MULTI, the function queues commands, EXEC; returns EXEC's replies.
function pool_methods:transaction(fn, opts)
    if type(fn) ~= "function" then error(usage("transaction: expected a function"), 2) end
    local co = co_running()
    if in_tx[co] then error(usage("transaction: nested use in the same task is not allowed"), 2) end
    local tx = self:acquire(opts):await()
    in_tx[co] = true
    local mysql = is_sql(self._backend)
    local r
    local ok, err = pcall(function()
        if mysql then tx:query("BEGIN"):await() else tx:call("MULTI"):await() end
        r = pack(fn(tx))
        if mysql then
            tx:query("COMMIT"):await()
        else
            r = pack(tx:call("EXEC"):await())
        end
    end)
    in_tx[co] = nil
    if not ok then
        local rb = mysql and tx._c:ok() and tx:query("ROLLBACK") or (not mysql and tx._c:ok() and tx:call("DISCARD"))
        if rb then rb:result() end
        if tx._c:ok() and not tx:in_transaction() then tx:release() else tx:discard() end
        error(err, 0)
    end
    tx:release()
    return unpack(r, 1, r.n)
end

-- pool:load(table, columns, source [, opts]) -> promise of the number of rows
-- loaded (DESIGN "Bulk load"). source: a list of rows, or a function (an
-- iterator such as another pool's rows()) returning one row at a time, nil at
-- the end; a row is a list in `columns` order or a table keyed by column name
-- (a missing key is NULL). Values are encoded by the library, never spliced.
-- PostgreSQL: one COPY ... FROM STDIN, streamed (memory bounded: the task
-- waits while the COPY's buffer is full); it is one statement, so a failure
-- stores nothing. MySQL: multi-row INSERTs of opts.batch rows (1000) on up to
-- opts.concurrency connections at once (the pool's max); a failed batch
-- rejects the load with `loaded`, the rows committed before it.
local function quote_ident(backend, name)
    local q = backend == "postgres" and '"' or "`"
    local parts = {}
    for part in tostring(name):gmatch("[^.]+") do
        parts[#parts + 1] = q .. part:gsub(q, q .. q) .. q
    end
    return table.concat(parts, ".")
end

local function row_source(source)
    if type(source) == "table" and not (getmetatable(source) or {}).__call then
        local i = 0
        return function() i = i + 1; return source[i] end
    end
    return source
end

local function row_values(row, columns, out)
    local ncol = #columns
    for i = 1, ncol do
        local v = row[i]
        if v == nil then v = row[columns[i]] end
        out[i] = v
    end
    out.n = ncol
    return out
end

local function load_copy(self, tbl, columns, next_row, opts)
    local cols = {}
    for i = 1, #columns do cols[i] = quote_ident("postgres", columns[i]) end
    local sql = ("COPY %s (%s) FROM STDIN"):format(quote_ident("postgres", tbl), table.concat(cols, ", "))
    local p = self._c:copy_in(sql, opts.timeout and { timeout = opts.timeout } or nil)
    local op = p._op
    local vals, n = {}, 0
    local ok, err = pcall(function()
        for row in next_row do
            n = n + 1
            if not op:copy_row(row_values(row, columns, vals)) then
                -- the buffer is full: let the socket take it (other tasks run meanwhile)
                while op:copy_full() do M.sleep(0.001):await() end
            end
            if opts.progress and n % (opts.progress_every or 10000) == 0 then opts.progress(n) end
        end
    end)
    if not ok then
        op:copy_end("load stopped: " .. tostring(type(err) == "table" and err.message or err))
        p:result()
        error(err, 0)
    end
    op:copy_end()
    local r = p:await()
    if opts.progress then opts.progress(n) end
    return r.affected_rows
end

local function load_insert(self, tbl, columns, next_row, opts)
    local ncol = #columns
    local batch = opts.batch or 1000
    if batch * ncol > 65535 then batch = 65535 // ncol end
    local concurrency = opts.concurrency or self._c:stats().max or 4
    local cols = {}
    for i = 1, ncol do cols[i] = quote_ident("mysql", columns[i]) end
    local head = ("INSERT INTO %s (%s) VALUES "):format(quote_ident("mysql", tbl), table.concat(cols, ", "))
    local tuple = "(" .. ("?, "):rep(ncol - 1) .. "?)"
    local sql_cache = {}
    local inflight, loaded, failed = {}, 0, nil
    local function finish_one()
        local q = table.remove(inflight, 1)
        local ok, r = q.p:result()
        if ok then
            loaded = loaded + q.rows
            if opts.progress then opts.progress(loaded) end
        elseif not failed then
            failed = r
        end
    end
    local params, rows, vals = { n = 0 }, 0, {}
    local function send()
        if rows == 0 then return end
        local sql = sql_cache[rows]
        if not sql then
            local t = {}
            for i = 1, rows do t[i] = tuple end
            sql = head .. table.concat(t, ", ")
            sql_cache[rows] = sql
        end
        inflight[#inflight + 1] = { p = self:query(sql, params), rows = rows }
        params, rows = { n = 0 }, 0
        while #inflight >= concurrency do finish_one() end
    end
    for row in next_row do
        if failed then break end
        row_values(row, columns, vals)
        local base = params.n
        for i = 1, ncol do params[base + i] = vals[i] end
        params.n = base + ncol
        rows = rows + 1
        if rows >= batch then send() end
    end
    if not failed then send() end
    while #inflight > 0 do finish_one() end
    if failed then
        local e = type(failed) == "table" and failed or new_error("sql", tostring(failed))
        e.loaded = loaded
        e.message = (e.message or "") .. ("; %d rows were committed before the failed batch"):format(loaded)
        error(e, 0)
    end
    return loaded
end

function pool_methods:load(tbl, columns, source, opts)
    if type(tbl) ~= "string" or tbl == "" then error(usage("load: the table must be a name"), 2) end
    if type(columns) ~= "table" or #columns == 0 then error(usage("load: columns must be a non-empty list of names"), 2) end
    if type(source) ~= "table" and type(source) ~= "function" then
        error(usage("load: the source must be a list of rows or a function returning rows"), 2)
    end
    if opts ~= nil and type(opts) ~= "table" then error(usage("load: options must be a table"), 2) end
    opts = opts or {}
    check_open(self, "load")
    local next_row = row_source(source)
    local backend = self._backend
    return spawn(function()
        if backend == "postgres" then return load_copy(self, tbl, columns, next_row, opts) end
        return load_insert(self, tbl, columns, next_row, opts)
    end)
end

-- pool:rows(sql, params [, opts]): for row in db:rows(...) do ... end
-- streams a result with bounded memory; breaking out of the loop ends it.
function pool_methods:rows(sql, params, opts)
    if type(sql) ~= "string" then error(usage("rows: the SQL must be a string"), 2) end
    local ok, p = pcall(self._c.stream, self._c, sql, params, opts)
    if not ok then error(p, 2) end
    local op, cache, done = p._op, {}, false
    p._handled = true
    local function iter()
        if done then return nil end
        while true do
            local st, row = op:fetch(cache)
            if st == "row" then return row end
            done = true
            if st == "done" then return nil end
            if st == "error" then error(row, 2) end
            done = false
            local co = in_task()
            if co then
                local sw = p._swait
                if not sw then sw = {}; p._swait = sw end
                sw[#sw + 1] = co
                co_yield(AWAIT)
            else
                step(true)
            end
        end
    end
    local closer = setmetatable({}, { __close = function()
        if not done then done = true; op:cancel() end
    end })
    return iter, nil, nil, closer
end

-- pool:subscribe(channels, handler) / pool:psubscribe(patterns, handler) -> subscription
local function subscribe(self, channels, patterns, handler)
    if type(handler) ~= "function" then error(usage("subscribe: expected a handler function"), 3) end
    local ok, ud = pcall(self._c.subscribe, self._c, channels, patterns)
    if not ok then error(ud, 3) end
    local s = setmetatable({ _c = ud, _handler = handler, _pool = self, _ready = new_promise(),
                             _count = #channels + #patterns }, Sub)
    sub_by_id[ud:id()] = s
    nsubs = nsubs + 1
    return s
end
function pool_methods:subscribe(channels, handler)
    if type(channels) == "string" then channels = { channels } end
    return subscribe(self, channels, {}, handler)
end
function pool_methods:psubscribe(patterns, handler)
    if type(patterns) == "string" then patterns = { patterns } end
    return subscribe(self, {}, patterns, handler)
end

Sub.__index = Sub
function Sub:unsubscribe()
    if self._c then
        sub_by_id[self._c:id()] = nil
        self._c:close()
        self._c = nil
        nsubs = nsubs - 1
    end
end
Sub.close = Sub.unsubscribe
Sub.__close = Sub.unsubscribe
function Sub:reconnects() return self._c and self._c:reconnects() or 0 end
function Sub:on_gap(fn) self._on_gap = fn; return self end
-- sub:ready() -> a promise fulfilled once the server confirmed every channel
-- and pattern (a message published before that is not received)
function Sub:ready() return self._ready end

---------------------------------------------------------------------------
-- run
---------------------------------------------------------------------------
local running = false

local function unhandled_error()
    local list = {}
    for p in pairs(unhandled) do if not p._handled then list[#list + 1] = p end end
    if #list == 0 then return nil end
    table.sort(list, function(a, b) return tostring(a._value) < tostring(b._value) end)
    local first = list[1]._value
    unhandled = {}
    return new_error(first.kind or "usage",
        ("%d op%s failed and nobody awaited %s; the first: %s"):format(#list, #list == 1 and "" or "s",
            #list == 1 and "it" or "them", tostring(first.message or first)),
        { name = first.name, code = first.code, sqlstate = first.sqlstate, sent = first.sent })
end

-- Closes every pool gracefully and waits for the closes.
local function close_all(timeout)
    local closing = {}
    for pool in pairs(pools) do
        if pool._c:state() == "open" then closing[#closing + 1] = pool:close({ timeout = timeout }) end
    end
    for i = 1, #closing do closing[i]:result() end
end

-- dbpool.run(fn, ...) runs fn as a task, drives until it and everything it
-- spawned have settled, closes every pool gracefully, and returns fn's
-- results or re-raises its error (with the traceback of where it began).
function M.run(fn, ...)
    if in_task() then error(usage("dbpool.run: already inside a task; use dbpool.spawn"), 2) end
    if running then error(usage("dbpool.run cannot be nested"), 2) end
    running = true
    local main = spawn(fn, ...)
    local ok, err = pcall(function()
        while true do
            if main._state ~= "pending" and ntasks == 0 and ready_head > ready_tail then
                local pending, queued = core.pending()
                if pending == 0 and not queued then break end
            end
            if M._stop_hook and M._stop_hook() then break end
            step(true)
        end
    end)
    main._handled = true
    unhandled[main] = nil
    local cerr
    local cok = pcall(close_all, M._drain_timeout)
    running = false
    if not ok then error(err, 0) end
    if main._state == "rejected" then error(main._value, 0) end
    if main._state == "pending" then
        error(new_error("closed", "stopped before the main task finished", { name = "DBP_ECANCELLED" }), 0)
    end
    cerr = unhandled_error()
    if cerr then error(cerr, 0) end
    if not cok then error(new_error("closed", "closing the pools failed"), 0) end
    local v = main._values
    return unpack(v, 1, v.n)
end

-- dbpool.progress(total, label) -> a progress reporter (see lua/dbpool/progress.lua)
function M.progress(...) return require("dbpool.progress").new(...) end

-- What the module's hub holds alive (ops, pools, connections; dbp_hub_stats
-- in C): all 0 once every pool is closed and every op has settled.
function M.hub_stats() return core.hub_stats() end

-- For the dbpool command: drive once (bounded wait), and the scheduler's state.
function M._step(block) return step(block) end
function M._counts() return ntasks, core.pending() end
function M._close_all(timeout) return close_all(timeout) end
M._core = core

-- A script that never calls run() or close() still loses nothing: when the
-- state closes, the core drives pending ops to settlement before the pools
-- go. Failures nobody awaited are reported here.
M._sentinel = setmetatable({}, { __gc = function()
    local e = unhandled_error()
    if e then io.stderr:write("dbpool: ", tostring(e.message), "\n") end
end })

return M
