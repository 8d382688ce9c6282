#!/usr/bin/env lua5.4
-- The REPL core survives a lost connection (issue 11, item 5): its session
-- connection is killed by the server (KILL / CLIENT KILL from the mariadb
-- and redis-cli clients, so nothing in this process polls it first), and
--   * the next statement runs on a new connection, with a note in the mysql
--     client's manner (the statement was known not sent: run once more);
--   * the same when the REPL's hub noticed the death before the statement
--     (Redis: an idle MySQL socket is not polled, it is peeked before use);
--   * USE / SELECT are chosen again; other session state is gone, as said;
--   * a statement that may have run (killed while it ran) is reported
--     failed and not run again, and the next one gets a new connection;
--   * with a transaction (MULTI) open, the next statement is not run alone.
local T = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local mysql_url = T.env("DBPOOL_TEST_MYSQL_URL")
local redis_url = T.env("DBPOOL_TEST_REDIS_URL")
T.env("DBPOOL_TEST_MYSQL_PASSWORD")
T.env("DBPOOL_TEST_REDIS_PASSWORD")
local my_port = T.env("DBPOOL_TEST_MYSQL_PORT")
local rd_port = T.env("DBPOOL_TEST_REDIS_PORT")
local dbpool = require "dbpool"
local repl_core = require "dbpool.cli.repl_core"
local now = dbpool._core.now

-- Kills from outside this process: the REPL's hub does not step, so it
-- cannot see the EOF before its next statement; then waits for the server.
local function sh(cmd)
    local ok = os.execute(cmd .. " >/dev/null 2>&1")
    os.execute("sleep 0.3")
    return ok
end
local function kill_mysql(id)
    return sh(('MYSQL_PWD="$DBPOOL_TEST_MYSQL_PASSWORD" mysql --protocol=tcp -h127.0.0.1 -P%s -udbpool dbpool_test -e "KILL %d"')
        :format(my_port, id))
end
local function kill_redis(id)
    return sh(('REDISCLI_AUTH="$DBPOOL_TEST_REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p %s --no-auth-warning CLIENT KILL ID %d')
        :format(rd_port, id))
end

local r = repl_core.new({})
T.ok(r:connect("db", mysql_url), "connect db")

local feed = T.feeder(r)
local function cell(out) return tonumber(out:match("|%s*(%d+)%s*|")) end
local RECONNECTED = "ERROR: connection lost; reconnected (connection id "

-- --- MySQL: killed while idle; the next statement is known unsent ------------
local out, err, all = feed("SELECT CONNECTION_ID() AS id;")
local id1 = cell(out)
T.ok(id1 and id1 > 0, "the session's connection id: " .. tostring(id1))
feed("SET @v = 7;")
T.ok(kill_mysql(id1), "KILL " .. tostring(id1) .. " from the mariadb client")
local nerr = r.nerrors
out, err, all = feed("SELECT 'after the kill' AS k;")
T.like(out, "| after the kill |", "the next statement ran (on a new connection)")
T.like(err, RECONNECTED, "and the REPL says it reconnected")
T.like(err, "Session state (variables, temporary tables, an open transaction) is gone.", "and that the session state is gone")
T.is(r.nerrors, nerr, "a statement that ran is not counted as failed")
T.ok(all:find("reconnected", 1, true) < all:find("after the kill", 1, true), "on a terminal, the note comes before the result")
local id2 = tonumber(err:match("connection id (%d+)"))
out = feed("SELECT CONNECTION_ID() AS id;")
T.ok(id2 and id2 ~= id1 and cell(out) == id2, ("the new session is connection %s, as the note said (was %s)"):format(id2, id1))
out = feed("SELECT @v IS NULL AS gone;")
T.is(cell(out), 1, "a session variable is gone, as the note said")

-- --- USE is chosen again ------------------------------------------------------
feed("USE information_schema;")
kill_mysql(id2)
out, err = feed("SELECT DATABASE() AS d;")
T.like(out, "| information_schema |", "after a reconnect, the database chosen with USE is current again")
T.like(err, "Current database: information_schema.", "and the note says so, as the mysql client does")
feed("USE dbpool_test;")

local c = r.conns.db

-- --- a transaction open: the next statement is not run alone ------------------------
feed("DROP TABLE IF EXISTS cli_reconnect;", "CREATE TABLE cli_reconnect (id INT PRIMARY KEY);")
feed("BEGIN;", "INSERT INTO cli_reconnect VALUES (1);")
kill_mysql(c.conn:id())
nerr = r.nerrors
out, err = feed("INSERT INTO cli_reconnect VALUES (2);")
T.like(err, "connection lost with a transaction open (the server rolled it back); the statement was not run",
    "inside a transaction: the statement is not run on the new connection")
T.like(err, RECONNECTED, "and the REPL reconnected for the next one")
T.is(r.nerrors, nerr + 1, "the statement counts as failed")
out = feed("SELECT COUNT(*) AS n FROM cli_reconnect;")
T.is(cell(out), 0, "neither row is there: the transaction was rolled back, the second INSERT never ran")

-- --- killed while it ran: it may have run; it is not run again -----------------------
local side = dbpool.open(mysql_url)
local victim = c.conn:id()
local killer = dbpool.sleep(0.3):next(function() return side:query("KILL " .. victim) end)
nerr = r.nerrors
local t0 = now()
out, err = feed("INSERT INTO cli_reconnect SELECT 10 FROM (SELECT SLEEP(5)) AS s;")
local took = now() - t0
T.like(err, "it may or may not have run", "a statement killed while it ran: reported as maybe run")
T.like(err, RECONNECTED, "the REPL reconnected for the next statement")
T.is(r.nerrors, nerr + 1, "it counts as failed")
T.ok(took < 4, ("it was not run again (%.1f s)"):format(took))
T.ok(killer:result(), "the KILL ran")
out = feed("SELECT 'next' AS k;")
T.like(out, "| next |", "the next statement runs")
feed("DROP TABLE cli_reconnect;")
side:close():await()

-- --- Redis ----------------------------------------------------------------------------
T.ok(r:connect("cache", redis_url), "connect cache (redis)")
feed("DEL cli:rc:k cli:rc:n", "SELECT 2", "SET cli:rc:k in-db-2")
out = feed("CLIENT ID")
local rid = tonumber(out:match("%(integer%) (%d+)"))
T.ok(rid and rid > 0, "the Redis session's client id: " .. tostring(rid))
T.ok(kill_redis(rid), "CLIENT KILL ID " .. tostring(rid) .. " from redis-cli")
nerr = r.nerrors
out, err = feed("GET cli:rc:k")
T.is(out, "\"in-db-2\"\n", "the next command ran, in the database chosen with SELECT")
T.like(err, RECONNECTED, "the REPL says it reconnected")
T.like(err, "Database 2 selected again.", "and that SELECT was made again")
T.is(r.nerrors, nerr, "not counted as failed")
out = feed("CLIENT ID")
T.ok(tonumber(out:match("(%d+)")) ~= rid, "a new client id")

-- --- the REPL's hub noticed the death first (it polls an idle Redis socket) --
local rc = r.conns.cache
kill_redis(rc.conn:id())
local deadline = now() + 5
while rc.conn:ok() and now() < deadline do dbpool._step(false) os.execute("sleep 0.02") end
T.ok(not rc.conn:ok(), "the hub saw the session connection die while the REPL waited")
out, err = feed("GET cli:rc:k")
T.is(out, "\"in-db-2\"\n", "the next command runs on a new connection, in the same database")
T.like(err, RECONNECTED, "with the note")

feed("MULTI", "INCR cli:rc:n")
out = feed("CLIENT ID")
kill_redis(r.conns.cache.conn:id())
out, err = feed("INCR cli:rc:n")
T.like(err, "connection lost inside MULTI (the queued commands were discarded); the command was not run",
    "inside MULTI: the command is not run on the new connection")
out = feed("EXISTS cli:rc:n")
T.is(out, "(integer) 0\n", "nothing of the MULTI ran")

local rside = dbpool.open(redis_url)
local rvictim = r.conns.cache.conn:id()
killer = dbpool.sleep(0.3):next(function() return rside:call("CLIENT", "KILL", "ID", tostring(rvictim)) end)
out, err = feed("BLPOP cli:rc:empty 5")
T.like(err, "it may or may not have run", "a command cut off while it waited: reported as maybe run")
T.like(err, RECONNECTED, "the REPL reconnected")
out = feed("PING")
T.is(out, "PONG\n", "the next command runs")
feed("DEL cli:rc:k", "SELECT 0")
killer:result()
rside:close():await()

r:close()
T.done()
