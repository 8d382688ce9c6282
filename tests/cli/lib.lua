-- tests/cli/lib.lua: TAP helpers for the dbpool command's Lua tests.
-- package.path reaches the checkout's lua/ (the tests also run without
-- with-servers.sh's LUA_PATH) and build/lua for the core.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local repo = here .. "/../.."
package.path = repo .. "/lua/?.lua;" .. repo .. "/lua/?/init.lua;" .. here .. "/?.lua;" .. package.path
package.cpath = repo .. "/build/lua/?.so;" .. package.cpath

local T = { n = 0, failed = 0, repo = repo, dbpool = repo .. "/scripts/dbpool" }

local function line(s) return (tostring(s):gsub("[\r\n]", " ")) end

function T.diag(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
    for l in (table.concat(parts, " ") .. "\n"):gmatch("(.-)\n") do io.write("# ", l, "\n") end
end

function T.ok(cond, desc)
    T.n = T.n + 1
    if not cond then T.failed = T.failed + 1 end
    io.write(cond and "" or "not ", "ok ", T.n, " - ", line(desc or ""), "\n")
    io.flush()
    return cond
end

function T.is(got, want, desc)
    local good = got == want
    T.ok(good, desc)
    if not good then T.diag("got:  " .. tostring(got), "want: " .. tostring(want)) end
    return good
end

function T.like(text, pat, desc)
    local good = type(text) == "string" and text:find(pat, 1, true) ~= nil
    T.ok(good, desc)
    if not good then T.diag("no '" .. pat .. "' in:", tostring(text)) end
    return good
end

function T.unlike(text, pat, desc)
    local good = type(text) == "string" and text:find(pat, 1, true) == nil
    T.ok(good, desc)
    if not good then T.diag("'" .. pat .. "' should not be in:", tostring(text)) end
    return good
end

function T.env(name)
    local v = os.getenv(name)
    if not v or v == "" then
        io.write("Bail out! ", name, " is not set (run through scripts/with-servers.sh)\n")
        os.exit(255)
    end
    return v
end

function T.done()
    io.write("1..", T.n, "\n")
    os.exit(T.failed == 0 and 0 or 1, true)
end

-- A stream that keeps what is written (for output checks).
function T.buffer()
    local b = { parts = {} }
    function b:write(...)
        for i = 1, select("#", ...) do self.parts[#self.parts + 1] = tostring((select(i, ...))) end
        return self
    end
    function b:flush() return self end
    function b:text() return table.concat(self.parts) end
    return b
end

return T
