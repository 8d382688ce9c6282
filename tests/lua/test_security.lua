#!/usr/bin/env lua5.4
-- Security: TLS to MariaDB (REQUIRED, VERIFY_IDENTITY with the test CA, a
-- wrong CA and a wrong host name refused), unsupported asks refused rather
-- than downgraded, and no password in anything dbpool prints: errors,
-- events, tostring, stats, the command's output, the REPL's history.
package.path = arg[0]:match("^(.*)/[^/]*$") .. "/../lib/?.lua;" .. package.path
local T = require "tap"
local dbpool = require "dbpool"
local URL = T.env("DBPOOL_TEST_MYSQL_URL")
local CA = T.env("DBPOOL_TEST_MYSQL_CA")
local OTHER_CA = T.env("DBPOOL_TEST_MYSQL_OTHER_CA")
local ALT_HOST = os.getenv("DBPOOL_TEST_MYSQL_ALT_HOST") or ""
local REDIS = T.env("DBPOOL_TEST_REDIS_URL")
local CLUSTER = T.env("DBPOOL_TEST_CLUSTER_URL")
local PASSWORDS = { T.env("DBPOOL_TEST_MYSQL_PASSWORD"), T.env("DBPOOL_TEST_REDIS_PASSWORD"),
                    T.env("DBPOOL_TEST_CLUSTER_PASSWORD"), "Wr0ng-P@ss:word", "An0ther:Wr0ng@pw" }
local captured = {}
local function keep(s) captured[#captured + 1] = tostring(s) end
local function with(url, q) return url .. (url:find("?", 1, true) and "&" or "?") .. q end

-- TLS
do
    local function cipher(db)
        local r = db:query("SHOW SESSION STATUS LIKE 'Ssl_cipher'"):await()
        return r[1] and r[1].Value or ""
    end
    local plain = dbpool.open(with(URL, "ssl-mode=DISABLED"))
    T.is(cipher(plain), "", "ssl-mode=DISABLED: no TLS")
    plain:close():await()
    local req = dbpool.open(with(URL, "ssl-mode=REQUIRED"))
    local c = cipher(req)
    T.ok(c ~= "", "ssl-mode=REQUIRED: the session is encrypted (" .. c .. ")")
    req:close():await()
    local vi = dbpool.open(URL, { ["ssl-mode"] = "VERIFY_IDENTITY", ["ssl-ca"] = CA })
    T.ok(cipher(vi) ~= "", "VERIFY_IDENTITY with the test CA: verified and encrypted")
    T.ok(vi:query("SELECT 1 AS one"):await()[1].one == 1, "  queries run over it")
    vi:close():await()
    local bad = dbpool.open(URL, { ["ssl-mode"] = "VERIFY_CA", ["ssl-ca"] = OTHER_CA, acquire_timeout = 10 })
    local t0 = dbpool._core.now()
    local ok, e = bad:query("SELECT 1"):result()
    keep(e)
    T.ok(not ok and e.kind == "connection" and tostring(e):lower():find("certificate"),
        "a server certificate from another CA is refused: " .. tostring(e))
    T.ok(dbpool._core.now() - t0 < 3, "  at once, not retried until the deadline")
    bad:close():await()
    if ALT_HOST ~= "" then
        local alt = URL:gsub("@127%.0%.0%.1:", "@" .. ALT_HOST .. ":")
        local wrong = dbpool.open(alt, { ["ssl-mode"] = "VERIFY_IDENTITY", ["ssl-ca"] = CA, acquire_timeout = 10 })
        local ok2, e2 = wrong:query("SELECT 1"):result()
        keep(e2)
        T.ok(not ok2 and e2.kind == "connection", "a host name the certificate does not name is refused: " .. tostring(e2))
        wrong:close():await()
        local nover = dbpool.open(alt, { ["ssl-mode"] = "REQUIRED" })
        T.ok(nover:query("SELECT 1"):result(), "  (the same host with REQUIRED only connects: it was the identity check)")
        nover:close():await()
    else
        T.ok(false, "the test server should listen on a second loopback address (DBPOOL_TEST_MYSQL_ALT_HOST)")
    end
    T.raises(function() dbpool.open(with(URL, "ssl-mode=VERIFY_CA")) end, "VERIFY_CA without a CA is refused at open", "ssl-ca")
end

-- asking for what this build cannot do is refused, never downgraded
do
    local e = T.raises(function() dbpool.open("rediss://:Wr0ng-P@ss:word@127.0.0.1:6380/0") end,
        "rediss:// is refused (hiredis 0.14 has no TLS), not sent in clear", "rediss")
    keep(e)
    T.ok(dbpool.is_error(e) and e.kind == "usage", "  as a usage error")
end

-- no password in errors, events, tostring, stats
do
    local function wrong(url, pw)
        local enc = pw:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end)
        return (url:gsub("(//[^:]*:)[^@]*@", function(head) return head .. enc .. "@" end, 1))
    end
    for _, u in ipairs { URL, REDIS, CLUSTER } do
        local pool = dbpool.open(u, { acquire_timeout = 5 })
        pool:on("error", function(ev) keep(ev.message); keep(ev.error) end)
        pool:on("connect", function(ev) keep(ev.message) end)
        keep(pool)
        local op = pool._backend == "mysql" and pool:query("SELECT 1") or pool:call("PING")
        op:await()
        keep(pool)
        for k, v in pairs(pool:stats()) do keep(k .. "=" .. tostring(v)) end
        pool:close():await()
        keep(pool)
        local bad = dbpool.open(wrong(u, "Wr0ng-P@ss:word"), { acquire_timeout = 5 })
        bad:on("error", function(ev) keep(ev.message); keep(ev.error) end)
        keep(bad)
        local ok, e = (bad._backend == "mysql" and bad:query("SELECT 1") or bad:call("GET", "x")):result()
        keep(e)
        T.ok(not ok and e.kind == "auth", ("a wrong password on %s is an auth error"):format(bad._backend))
        bad:close():await()
        local ok2, e2 = pcall(dbpool.open, with(wrong(u, "An0ther:Wr0ng@pw"), "bogus_option=1"))
        keep(e2)
        T.ok(not ok2, "  an unknown option is refused at open: " .. tostring(e2))
    end
end

-- the command's output and the REPL's history
do
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local hist = dir .. "/history"
    local function run(cmd)
        local p = io.popen(cmd .. " 2>&1")
        local out = p:read("a")
        p:close()
        keep(out)
        return out
    end
    local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
    local badurl = URL:gsub("(//[^:]*:)[^@]*@", function(head) return head .. "Wr0ng-P%40ss%3Aword@" end, 1)
    run("scripts/dbpool ping " .. q(badurl))
    run("scripts/dbpool ping --json " .. q(badurl))
    run("scripts/dbpool ping " .. q(URL))
    local script = dir .. "/fail.lua"
    local f = io.open(script, "w")
    f:write("local x = db:query('SELECT * FROM no_such_table'):await()\n")
    f:close()
    run("DATABASE_URL=" .. q(URL) .. " scripts/dbpool run " .. q(script))
    local input = table.concat({
        "\\connect secondary " .. URL,
        "\\use secondary",
        "SELECT 1;",
        "\\connect r " .. REDIS,
        "\\use r",
        "GET nothing",
        "= dbpool.open(" .. ("%q"):format(badurl) .. "):query('SELECT 1'):result()",
        "\\q", "" }, "\n")
    f = io.open(dir .. "/in.txt", "w")
    f:write(input)
    f:close()
    local out = run("DBPOOL_HISTFILE=" .. q(hist) .. " scripts/dbpool repl " .. q(URL) .. " < " .. q(dir .. "/in.txt"))
    T.ok(out:find("1") ~= nil, "the REPL ran the scripted session")
    f = io.open(hist)
    local h = f and f:read("a") or ""
    if f then f:close() end
    keep(h)
    T.ok(h:find("\\connect secondary", 1, true) ~= nil, "the history was written (" .. #h .. " bytes)")
    os.execute("rm -rf " .. q(dir))
end

local all = table.concat(captured, "\n")
for _, pw in ipairs(PASSWORDS) do
    local enc = pw:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end)
    T.ok(not all:find(pw, 1, true) and not all:find(enc, 1, true),
        ("no captured output contains a password (%d bytes checked, password #%d)"):format(#all, _))
end
T.done()
