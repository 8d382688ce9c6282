-- tests/cli/lib.lua: TAP helpers for the dbpool command's Lua tests.
-- package.path reaches the checkout's lua/ (the tests also run without
-- with-servers.sh's LUA_PATH) and build/lua for the core.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local repo = here .. "/../.."
package.path = repo .. "/lua/?.lua;" .. repo .. "/lua/?/init.lua;" .. here .. "/?.lua;" .. package.path
package.cpath = repo .. "/build/lua/?.so;" .. package.cpath

-- The TAP helpers are the Lua tests' own (tests/lib/tap.lua); this adds
-- what the command's tests need.
local T = dofile(repo .. "/tests/lib/tap.lua")
T.repo, T.dbpool = repo, repo .. "/scripts/dbpool"

-- (closes the Lua state on exit, so the pools the test opened end cleanly)
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

-- feed = T.feeder(r): feed(line, ...) gives each line to the REPL core r and
-- returns what they wrote, joined: the output, the errors, and both.
function T.feeder(r)
    return function(...)
        local out, err, all = {}, {}, {}
        for _, l in ipairs({ ... }) do
            local o, e, a = r:feed(l)
            out[#out + 1], err[#err + 1], all[#all + 1] = o, e, a
        end
        return table.concat(out), table.concat(err), table.concat(all)
    end
end

return T
