#!/usr/bin/env lua5.4
-- The REPL core fed scripted lines (no terminal): tables, NULL, \G, errors
-- survived, Redis commands and replies, Lua lines, named connections,
-- history entries without passwords.
local T = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local mysql_url = T.env("DBPOOL_TEST_MYSQL_URL")
local redis_url = T.env("DBPOOL_TEST_REDIS_URL")
local mysql_pw = T.env("DBPOOL_TEST_MYSQL_PASSWORD")
local redis_pw = T.env("DBPOOL_TEST_REDIS_PASSWORD")
local repl_core = require "dbpool.cli.repl_core"
local render = require "dbpool.cli.render"

local r = repl_core.new({})
local ok, msg = r:connect("db", mysql_url)
T.ok(ok, "connect db")
T.like(msg, "mysql://dbpool:***@127.0.0.1", "the connect message has no password")
T.is(r:prompt(), "db> ", "the prompt names the connection")

local feed = T.feeder(r)

feed("DROP TABLE IF EXISTS cli_repl;")
local out, err = feed("CREATE TABLE cli_repl (id INT PRIMARY KEY, name VARCHAR(20), score DECIMAL(6,2), note TEXT);")
T.is(err, "", "CREATE: no error")
T.like(out, "Query OK, 0 rows affected", "CREATE: Query OK")

-- multi-line, with quotes that hide a ';'
out = feed("INSERT INTO cli_repl VALUES (1, 'alice', 1.5, NULL),")
T.is(out, "", "an unfinished statement shows nothing")
T.is(r:prompt(), " -> ", "and the prompt says it continues")
out = feed("  (2, 'b;ob', 10.25, ''), (3, 'NULL', NULL, 'two", "lines');")
T.like(out, "Query OK, 3 rows affected", "a statement over three lines, ';' inside quotes")
T.like(out, "Records: 3  Duplicates: 0  Warnings: 0", "the server's info line")

out = feed("SELECT * FROM cli_repl ORDER BY id;")
T.like(out, "| id | name   | score | note       |", "a table like the mysql client's")
T.like(out, "|  1 | alice  |  1.50 | NULL       |", "numbers right-aligned, SQL NULL shown as NULL")
T.like(out, "|  3 | 'NULL' |  NULL | two\\nlines |", "the text 'NULL' is quoted, so NULL stays distinct; newlines escaped")
T.like(out, "|  2 | b;ob   | 10.25 |            |", "an empty string is empty")
T.like(out, "3 rows in set", "the row count")

out = feed("SELECT id, name FROM cli_repl WHERE id = 1\\G")
T.like(out, "*************************** 1. row ***************************\n  id: 1\nname: alice\n", "\\G shows rows vertically")

out = feed("SELECT * FROM cli_repl WHERE id > 100;")
T.like(out, "Empty set", "an empty result")

out = feed("SELECT 1 AS a; SELECT 2 AS b;")
T.like(out, "| a |", "two statements on a line: the first")
T.like(out, "| b |", "two statements on a line: the second")

-- errors are shown and the REPL goes on
local before = r.nerrors
out, err = feed("SELECT * FROM cli_no_such_table;")
T.like(err, "ERROR 1146 (42S02): Table 'dbpool_test.cli_no_such_table' doesn't exist", "an SQL error as mysql shows it")
T.is(r.nerrors, before + 1, "the error is counted")
out, err = feed("SELEC 1;")
T.like(err, "ERROR 1064 (42000)", "a syntax error")
out = feed("SELECT COUNT(*) AS n FROM cli_repl;")
T.like(out, "| 3 |", "the REPL goes on after errors")

-- the session is one connection: variables and transactions hold
feed("SET @x = 41;")
out = feed("SELECT @x + 1 AS y;")
T.like(out, "| 42 |", "a session variable survives between statements")
feed("BEGIN;", "DELETE FROM cli_repl;", "ROLLBACK;")
out = feed("SELECT COUNT(*) AS n FROM cli_repl;")
T.like(out, "| 3 |", "BEGIN / ROLLBACK on the REPL's connection")

-- \c, \timing, \null, \x
feed("SELECT 'abandoned'", "\\c")
T.is(r:prompt(), "db> ", "\\c clears the statement being typed")
out = feed("\\timing on", "SELECT 1 AS one;", "\\timing off")
T.like(out, "Timing is on.", "\\timing on")
T.ok(out:match("1 row in set %(%d+%.%d%d%d sec%)") ~= nil, "timing shown with the row count")
out = feed("\\null <null>", "SELECT NULL AS v;", "\\null NULL")
T.like(out, "| <null> |", "\\null sets how NULL is shown")

-- Lua lines: = and lua, pools in scope, promises awaited
out = feed("= 1 + 2")
T.is(out, "3\n", "= evaluates an expression")
out = feed("= db:query('SELECT name FROM cli_repl WHERE id = ?', { 2 })")
T.like(out, "| b;ob |", "a returned promise is awaited; a result renders as a table")
out = feed("lua x = 40", "= x + 2, 'str', null")
T.like(out, "42\n\"str\"\nnull\n", "lua statements persist; strings quoted; null shown")
out = feed("lua for i = 1,", "  2 do print('i', i) end")
T.like(out, "i\t1\ni\t2\n", "an unfinished Lua line continues; print() goes to the output")
out, err = feed("= nosuch.field")
T.like(err, "attempt to index a nil value (global 'nosuch')", "a Lua error is shown")
out = feed("= db:query('SELECT 5 AS five'):await()[1].five")
T.is(out, "5\n", "await at the REPL drives the pool")
out, err = feed("= db:query('SELECT * FROM cli_no_such_table')")
T.like(err, "ERROR 1146", "a rejected promise from a Lua line is an error")

-- Redis: a second named connection
ok, msg = r:connect("cache", redis_url)
T.ok(ok, "connect cache (redis)")
T.is(r.current, "cache", "the new connection is current")
T.is(r:prompt(), "cache> ", "the prompt follows")
feed("DEL cli:greeting cli:h cli:l cli:n")
out = feed("SET cli:greeting \"hello world\"")
T.is(out, "OK\n", "a status reply as redis-cli shows it")
out = feed("GET cli:greeting")
T.is(out, "\"hello world\"\n", "a bulk string quoted; double quotes group words")
out = feed("SET cli:n 'it\\'s'", "GET cli:n")
T.like(out, "\"it's\"", "single quotes with \\' inside")
out = feed("SET cli:n \"a\\x41\\n\"", "GET cli:n")
T.like(out, "\"aA\\n\"", "\\xHH and \\n in double quotes; control bytes escaped in replies")
out = feed("INCR cli:count:x", "DEL cli:count:x")
T.like(out, "(integer) 1\n", "an integer reply")
out = feed("GET cli:missing")
T.is(out, "(nil)\n", "a nil reply")
out = feed("RPUSH cli:l a b c", "LRANGE cli:l 0 -1")
T.like(out, "1) \"a\"\n2) \"b\"\n3) \"c\"\n", "an array reply, numbered")
out = feed("LRANGE cli:none 0 -1")
T.is(out, "(empty array)\n", "an empty array")
out, err = feed("INCR cli:greeting")
T.is(err, "(error) ERR value is not an integer or out of range\n", "a Redis error as redis-cli shows it")
out, err = feed("GET \"unterminated")
T.is(err, "(error) Invalid argument(s)\n", "unbalanced quotes, as redis-cli")
out = feed("MULTI", "INCR cli:count:y", "GET cli:greeting", "EXEC", "DEL cli:count:y")
T.like(out, "OK\nQUEUED\nQUEUED\n1) (integer) 1\n2) \"hello world\"\n", "MULTI/EXEC on the REPL's connection")
out, err = feed("SUBSCRIBE ch")
T.like(err, "(error) SUBSCRIBE", "SUBSCRIBE is refused with a hint")
out = feed("= cache:call('GET', 'cli:greeting')")
T.is(out, "\"hello world\"\n", "Lua sees the Redis pool by its name")

-- \use, \list, \ping, \stats
out = feed("\\use db")
T.like(out, "Using 'db'", "\\use switches")
out = feed("SELECT 1 AS back;")
T.like(out, "| back |", "SQL again on db")
out = feed("\\list")
T.like(out, "| * | db    | mysql", "\\list marks the current connection")
T.like(out, "redis://:***@127.0.0.1", "\\list shows URLs without passwords")
out = feed("\\ping cache")
T.like(out, "PONG from 'cache' (redis", "\\ping")
out = feed("\\stats")
T.like(out, "| connections", "\\stats")
out, err = feed("\\use nosuch")
T.like(err, "no connection named 'nosuch'", "\\use of an unknown name")
out, err = feed("\\frob")
T.like(err, "unknown command '\\frob'", "an unknown backslash command")
out, err = feed("\\connect bad mysql://dbpool:wrongpass@127.0.0.1:1/x")
T.like(err, "ERROR", "a connect that fails is reported")
T.unlike(err, "wrongpass", "without its password")
T.is(r.current, "db", "and the current connection stays")

-- history: what is kept, and nothing with a password
r:take_history()
-- (only harmless lines are fed: each one is executed too)
feed("\\connect other " .. mysql_url, "\\use db", "SELECT 1", "AS z;", "SELECT 'IDENTIFIED BY' AS x;",
    "= dbpool.open('redis://:" .. redis_pw .. "@127.0.0.1:1/0')")
r.current = "cache"
feed("CONFIG GET requirepass", "GET cli:greeting")
local hist = r:take_history()
local all = table.concat(hist, "\n")
T.like(all, "\\connect other mysql://dbpool:***@127.0.0.1", "a \\connect line is stored redacted")
T.like(all, "SELECT 1 AS z;", "a statement over two lines is one entry")
T.like(all, "GET cli:greeting", "ordinary commands are stored")
T.unlike(all, "IDENTIFIED", "lines with IDENTIFIED are not stored")
T.unlike(all, "requirepass", "lines naming requirepass are not stored")
T.like(all, "redis://:***@127.0.0.1:1/0", "a URL in a Lua line is stored redacted")
for _, line in ipairs({ "SET PASSWORD = PASSWORD('x');", "CREATE USER u IDENTIFIED BY 'pw';", "AUTH s3cret",
                        "auth user s3cret", "CONFIG SET requirepass s3cret", "ACL SETUSER bob on >s3cret",
                        "HELLO 2 AUTH bob s3cret", "CONFIG SET masterauth s3cret" }) do
    T.is(repl_core.history_entry(line), nil, "not stored: " .. line)
end
local enc = mysql_url:match("^mysql://[^:]*:([^@]*)@")
for _, secret in ipairs({ mysql_pw, redis_pw, enc }) do
    T.unlike(all, secret, "no password in the history")
end

-- \q
feed("\\q")
T.ok(r.done, "\\q ends the REPL")
r:close()

-- pure parts
local argv = render.redis_split([[set "a b" 'c\'d' "\x41\t" plain]])
T.is(table.concat(argv, "|"), "set|a b|c'd|A\t|plain", "redis-cli argument splitting")
T.is(render.redis_split([["a"b]]), nil, "a closing quote must be followed by a space")
T.is(render.redis({ "a", { 1, "b" }, require("dbpool").null }),
    "1) \"a\"\n2) 1) (integer) 1\n   2) \"b\"\n3) (nil)\n", "nested arrays indent as in redis-cli")
T.is(repl_core.history_entry("\\connect x redis://u:pw123@h:1/0"), "\\connect x redis://u:***@h:1/0", "history_entry redacts a \\connect")

T.done()
