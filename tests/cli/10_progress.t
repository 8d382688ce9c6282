#!/usr/bin/env lua5.4
-- dbpool.progress: a bar on a terminal, plain lines at most once a second
-- otherwise, nothing when quiet; and through `dbpool run`.
local T = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local progress = require "dbpool.progress"

local t = 0
local clock = function() return t end

-- plain lines
local buf = T.buffer()
local p = progress.new(1000, "copy", { stream = buf, tty = false, now = clock, quiet = false })
for i = 1, 20 do t = t + 0.125; p:add(50) end -- 2.5 s, 1000 done
local lines = {}
for l in buf:text():gmatch("[^\n]+") do lines[#lines + 1] = l end
T.is(#lines, 2, "plain: one line per second at most (2 in 2.5 s)")
T.like(lines[1] or "", "copy: 400/1000 (40%)", "plain: count, total, percent")
T.like(lines[2] or "", "copy: 800/1000 (80%)", "plain: the next line a second later")
T.like(lines[1] or "", "400/s", "plain: the rate")
T.like(lines[1] or "", "ETA", "plain: an ETA")
p:done()
T.like(buf:text(), "copy: 1000/1000 done in 2.50s (400/s)", "plain: done() prints the final line")
local before = #buf:text()
p:done()
T.is(#buf:text(), before, "done() twice prints once")

-- terminal
t = 0
buf = T.buffer()
p = progress.new(200, "keys", { stream = buf, tty = true, now = clock, quiet = false })
t = 0.5; p:add(50)
t = 0.55; p:add(10) -- within 0.1 s of the last draw: not redrawn
t = 1.0; p:set(100)
local text = buf:text()
local draws = select(2, text:gsub("\r", ""))
T.is(draws, 2, "terminal: redrawn in place, at most ten times a second")
T.like(text, "keys [", "terminal: a bar")
T.like(text, "50%", "terminal: the percentage")
T.like(text, "ETA 0:01", "terminal: the ETA as a clock")
p:done()
T.like(buf:text(), "\rkeys: 100/200 done in 1.00s (100/s)", "terminal: the final line replaces the bar")
T.ok(buf:text():sub(-1) == "\n", "terminal: and ends it with a newline")

-- unknown total
t = 0
buf = T.buffer()
p = progress.new(nil, "rows", { stream = buf, tty = false, now = clock, quiet = false })
t = 1.5; p:add(30)
T.like(buf:text(), "rows: 30 20/s", "no total: count and rate, no ETA")
T.unlike(buf:text(), "ETA", "no total: no ETA")

-- quiet
buf = T.buffer()
p = progress.new(10, "q", { stream = buf, tty = true, now = clock, quiet = true })
t = 5; p:add(5); p:done()
T.is(buf:text(), "", "quiet: nothing at all")

-- usage
T.ok(not pcall(progress.new, -1, "x"), "a negative total is refused")
T.ok(not pcall(progress.new, 1, {}), "a label that is not a string is refused")

-- through dbpool run: stderr is not a terminal here -> plain lines; --quiet and DBPOOL_QUIET silence it
local script = os.tmpname()
local f = io.open(script, "w")
f:write([[
local bar = dbpool.progress(30, "steps")
for i = 1, 30 do dbpool.sleep(0.05):await(); bar:add(1) end
bar:done()
print("finished")
]])
f:close()
local function run(cmd)
    local errf = os.tmpname()
    local p2 = io.popen(cmd .. " 2>" .. errf)
    local out = p2:read("a")
    local ok, _, code = p2:close()
    local ef = io.open(errf)
    local err = ef:read("a")
    ef:close()
    os.remove(errf)
    return out, err, code
end
local env = "env -u DATABASE_URL -u REDIS_URL -u DBPOOL_QUIET "
local out, err, code = run(env .. "timeout -k 5 30 " .. T.dbpool .. " run " .. script)
T.is(code, 0, "dbpool run with progress exits 0")
T.like(out, "finished", "the script ran")
T.ok(err:match("steps: %d+/30 %(%d+%%%)") ~= nil, "a plain progress line after a second")
T.like(err, "steps: 30/30 done in", "the final line")
out, err = run(env .. "timeout -k 5 30 " .. T.dbpool .. " run --quiet " .. script)
T.is(err, "", "run --quiet: no progress output")
out, err = run(env .. "timeout -k 5 30 " .. T.dbpool .. " --quiet run " .. script)
T.is(err, "", "dbpool --quiet run: no progress output")
out, err = run("env -u DATABASE_URL -u REDIS_URL DBPOOL_QUIET=1 timeout -k 5 30 " .. T.dbpool .. " run " .. script)
T.is(err, "", "DBPOOL_QUIET=1: no progress output")
os.remove(script)

T.done()
