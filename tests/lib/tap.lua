-- tap.lua: TAP output for the Lua tests (prove reads it).
local T = { n = 0, failed = 0 }

local function line(s) return (tostring(s):gsub("[\r\n]", " ")) end

function T.ok(cond, desc)
    T.n = T.n + 1
    if not cond then T.failed = T.failed + 1 end
    io.write(cond and "" or "not ", "ok ", T.n, " - ", line(desc or ""), "\n")
    io.flush()
    return cond
end

-- One "# " line per line of the message.
function T.diag(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
    for l in (table.concat(parts, " ") .. "\n"):gmatch("(.-)\n") do io.write("# ", l, "\n") end
end

function T.is(got, want, desc)
    local ok = got == want
    T.ok(ok, desc)
    if not ok then T.diag("got:  " .. tostring(got), "\nwant: " .. tostring(want)) end
    return ok
end

-- Whether text holds pat (plain text, not a pattern), and the reverse.
function T.like(text, pat, desc)
    local good = type(text) == "string" and text:find(pat, 1, true) ~= nil
    T.ok(good, desc)
    if not good then T.diag("no '" .. pat .. "' in:", "\n" .. tostring(text)) end
    return good
end

function T.unlike(text, pat, desc)
    local good = type(text) == "string" and text:find(pat, 1, true) == nil
    T.ok(good, desc)
    if not good then T.diag("'" .. pat .. "' should not be in:", "\n" .. tostring(text)) end
    return good
end

-- Calls fn, expects an error; returns it.
function T.raises(fn, desc, match)
    local ok, err = pcall(fn)
    local good = not ok and (not match or tostring(err):find(match, 1, true) ~= nil)
    T.ok(good, desc)
    if not good then T.diag("  got:", ok and "no error" or tostring(err)) end
    return err
end

function T.env(name)
    local v = os.getenv(name)
    if not v or v == "" then
        io.write("Bail out! ", name, " is not set (run the tests through scripts/with-servers.sh or scripts/test.sh)\n")
        os.exit(255)
    end
    return v
end

function T.fds()
    local n = 0
    local p = io.popen("ls /proc/" .. T.pid() .. "/fd")
    for _ in p:lines() do n = n + 1 end
    p:close()
    return n
end

function T.pid()
    local f = io.open("/proc/self/stat")
    local s = f:read("l")
    f:close()
    -- /proc/self is the reader here; ask the shell for our parent instead when needed
    return s:match("^(%d+)")
end

function T.done()
    io.write("1..", T.n, "\n")
    os.exit(T.failed == 0 and 0 or 1)
end

return T
