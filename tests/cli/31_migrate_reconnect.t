#!/usr/bin/env lua5.4
-- dbpool migrate survives a connection lost between two migrations (issue
-- 11, item 5), and never runs again a migration that may have run.
--
-- The command is run in this process (dbpool.cli.main) with an output
-- stream that acts when the migrator reports progress, which makes the
-- kill land exactly where it should:
--   * after "ok" of the first migration (it committed; the next has not
--     begun), the migrator's connection is killed with the mariadb client:
--     the next migration finds it dead at its BEGIN (known unsent), so the
--     migrator reconnects, takes the lock again and goes on; each migration
--     runs once and is recorded; when another migrator ran the next one
--     meanwhile (played by the test), it is skipped;
--   * while a migration's statement runs, its connection is killed: the
--     statement may have run, so the command stops with an error naming the
--     migration, saying it may or may not have been applied and pointing at
--     `migrate status`; nothing is recorded, nothing is run again.
local T = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local mysql_url = T.env("DBPOOL_TEST_MYSQL_URL")
T.env("DBPOOL_TEST_MYSQL_PASSWORD")
local my_port = T.env("DBPOOL_TEST_MYSQL_PORT")
local dbpool = require "dbpool"
local main = require "dbpool.cli.main"

local TBL = "cli_mr_migrations"
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p '" .. dir .. "'"))

-- The mariadb client, from outside this process (nothing here polls the
-- migrator's socket first).
local function sql(stmt)
    local p = assert(io.popen(('MYSQL_PWD="$DBPOOL_TEST_MYSQL_PASSWORD" mysql --protocol=tcp -h127.0.0.1 -P%s -udbpool dbpool_test -BN -e %q 2>&1')
        :format(my_port, stmt)))
    local out = p:read("a")
    p:close()
    return (out:gsub("%s+$", ""))
end
local function write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
end

sql("DROP TABLE IF EXISTS " .. TBL .. ", " .. TBL .. "_repeatable, cli_mr_log")
sql("CREATE TABLE cli_mr_log (conn BIGINT, version INT)")

write("0001_first.lua", [[
return { up = function(conn) conn:query("INSERT INTO cli_mr_log VALUES (CONNECTION_ID(), 1)"):await() end }
]])
write("0002_second.sql", "INSERT INTO cli_mr_log VALUES (CONNECTION_ID(), 2);\n")
write("0003_third.sql", "INSERT INTO cli_mr_log VALUES (CONNECTION_ID(), 3);\n")

-- An output stream that calls on_write(text) for each piece written.
local function stream(on_write)
    local b = T.buffer()
    local write_ = b.write
    function b:write(...)
        write_(self, ...)
        for i = 1, select("#", ...) do on_write(tostring((select(i, ...)))) end
        return self
    end
    return b
end

local function migrate(out, ...)
    local err = T.buffer()
    local code = main.main({ "migrate", ... }, { out = out, err = err })
    return code, out:text(), err:text()
end

-- --- lost between two migrations: reconnect, lock again, go on ---------------
local killed
local out = stream(function(text)
    if text:match("^ok %(") and not killed then
        -- 0001 committed; 0002 has not begun: kill the connection 0001 ran on
        killed = tonumber(sql("SELECT conn FROM cli_mr_log WHERE version = 1"))
        sql("KILL " .. tostring(killed))
        os.execute("sleep 0.3")
    end
end)
local code, text, etext = migrate(out, "up", "--dir", dir, "--table", TBL, "--url", mysql_url)
T.is(code, 0, "up with the connection killed between two migrations: exit 0")
if code ~= 0 then T.diag(text, etext) end
T.ok(killed and killed > 0, "the connection of 0001 was killed after it committed (" .. tostring(killed) .. ")")
T.like(text, "Applying 0002_second.sql ... connection lost before it began (nothing of it ran); reconnected (connection id ",
    "the migrator says it lost the connection before 0002 began, and reconnected")
T.like(text, "lock taken again.\nApplying 0002_second.sql ... ok (", "then it applies 0002")
T.like(text, "Applying 0003_third.sql ... ok (", "and goes on with 0003")
T.like(text, "Applied 3 migrations.", "three applied")
T.is(sql("SELECT GROUP_CONCAT(version ORDER BY version) FROM " .. TBL), "1,2,3", "all three are recorded")
T.is(sql("SELECT GROUP_CONCAT(version ORDER BY version) FROM cli_mr_log"), "1,2,3", "each ran exactly once")
local new_id = tonumber(text:match("reconnected %(connection id (%d+)%)"))
T.is(sql("SELECT COUNT(*) FROM cli_mr_log WHERE version IN (2, 3) AND conn = " .. tostring(new_id)), "2",
    "0002 and 0003 ran on the new connection the message named")
T.ok(new_id ~= killed, "which is not the killed one")
T.is(sql("SELECT IS_FREE_LOCK(CONCAT('dbpool_migrate:', SHA1(CONCAT(DATABASE(), '.', '" .. TBL .. "'))))"), "1",
    "the lock (taken again on the new connection) is released at the end")

-- --- lost between two migrations while another migrator ran the next ----------
-- (the other migrator is played by the test: while the lock is free it
-- records 0002 as applied, with the file's checksum)
sql("DROP TABLE IF EXISTS " .. TBL)
sql("DELETE FROM cli_mr_log")
local sha256 = require "dbpool.cli.sha256"
local f2 = assert(io.open(dir .. "/0002_second.sql")):read("a")
killed = nil
out = stream(function(text)
    if text:match("^ok %(") and not killed then
        killed = tonumber(sql("SELECT conn FROM cli_mr_log WHERE version = 1"))
        sql("KILL " .. tostring(killed))
        sql(("INSERT INTO %s (version, name, checksum) VALUES (2, 'second', '%s')"):format(TBL, sha256(f2)))
        os.execute("sleep 0.3")
    end
end)
code, text, etext = migrate(out, "up", "--dir", dir, "--table", TBL, "--url", mysql_url)
T.is(code, 0, "up, with 0002 applied by another migrator while the connection was lost: exit 0")
if code ~= 0 then T.diag(text, etext) end
T.like(text, "lock taken again.\nApplying 0002_second.sql: done meanwhile by another migrator; skipped.\nApplying 0003_third.sql ... ok (",
    "after reconnecting, the table is read afresh: 0002 is skipped, 0003 applied")
T.like(text, "Applied 2 migrations.", "two applied by this run")
T.is(sql("SELECT GROUP_CONCAT(version ORDER BY version) FROM cli_mr_log"), "1,3", "0002 was not run by this migrator")
T.is(sql("SELECT GROUP_CONCAT(version ORDER BY version) FROM " .. TBL), "1,2,3", "all three are recorded")

-- --- lost while a migration's statement ran: stop, never run it again -------------
write("0004_slow.sql", "INSERT INTO cli_mr_log VALUES (CONNECTION_ID(), 4);\nSELECT SLEEP(5) AS cli_mr_marker;\n")
local side = dbpool.open(mysql_url)
local killer
out = stream(function(text)
    if text == "Applying" then
        -- while SLEEP runs: find the migrator's connection by its statement, kill it
        killer = dbpool.sleep(0.5):next(function()
            return side:query("SELECT ID AS id FROM information_schema.PROCESSLIST WHERE INFO LIKE '%cli_mr_marker%' AND ID <> CONNECTION_ID()")
        end):next(function(rows)
            return rows[1] and side:query("KILL " .. rows[1].id) or "not found"
        end)
    end
end)
local t0 = dbpool._core.now()
code, text, etext = migrate(out, "up", "--dir", dir, "--table", TBL, "--url", mysql_url)
local took = dbpool._core.now() - t0
local kok, kres = killer:result()
T.ok(kok and kres ~= "not found", "the migrator's connection was killed while SLEEP ran")
T.is(code, 1, "up with the connection killed during a statement: exit 1")
T.like(text, "Applying 0004_slow.sql ... FAILED", "the migration is reported failed")
T.like(etext, "0004_slow.sql up failed at statement 2", "the error names the migration and the statement")
T.like(etext, "may or may not have been partly applied", "and says it may or may not have been applied")
T.like(etext, "`dbpool migrate status` shows the recorded state", "and points at migrate status")
T.like(etext, "It is not run again.", "and that it is not run again")
T.ok(took < 4.5, ("it was not run again (%.1f s)"):format(took))
T.like(etext, "It stays recorded as running", "and that it stays recorded as running")
T.is(sql("SELECT status FROM " .. TBL .. " WHERE version = 4"), "running", "0004 is recorded as running (issue 16)")
T.is(sql("SELECT COUNT(*) FROM cli_mr_log WHERE version = 4"), "0", "its INSERT was rolled back with the transaction")
code, text = migrate(T.buffer(), "status", "--dir", dir, "--table", TBL, "--url", mysql_url)
T.like(text, "3 applied, 0 pending, 1 interrupted", "migrate status shows the recorded state: 0004 interrupted")
-- the next run holds the lock, so 0004's migrator is gone; 0004 is one
-- transaction of DML: the server rolled it back, so it runs again
code, text, etext = migrate(T.buffer(), "up", "--dir", dir, "--table", TBL, "--url", mysql_url)
T.is(code, 0, "the next up: exit 0")
T.like(text, "0004_slow.sql was interrupted", "it reports the interrupted migration")
T.like(text, "nothing of it had committed", "says nothing of it had committed")
T.like(text, "Applying 0004_slow.sql ... ok", "and runs it again")
T.is(sql("SELECT CONCAT(status, ' ', (SELECT COUNT(*) FROM cli_mr_log WHERE version = 4)) FROM " .. TBL .. " WHERE version = 4"),
    "applied 1", "0004 applied once")
side:close():await()

sql("DROP TABLE IF EXISTS " .. TBL .. ", " .. TBL .. "_repeatable, cli_mr_log")
os.execute("rm -rf '" .. dir .. "'")
T.done()
