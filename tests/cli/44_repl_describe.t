#!/usr/bin/env lua5.4
-- The REPL core, issue 16: \d and \d TABLE (MySQL), \d on Redis (key
-- patterns by bounded SCAN, one key), tab completion (the function readline
-- calls, tested directly), \x, long values cut to the width, \watch with a
-- count, \i FILE, \o FILE, and the csv/json formats.
local T = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local S = dofile(T.repo .. "/tests/cli/strict.lua")
local mysql_url = T.env("DBPOOL_TEST_MYSQL_URL")
local redis_url = T.env("DBPOOL_TEST_REDIS_URL")
local repl_core = require "dbpool.cli.repl_core"
local render = require "dbpool.cli.render"

local r = repl_core.new({})
T.ok(r:connect("db", mysql_url), "connect db")
local feed = T.feeder(r)

feed("DROP TABLE IF EXISTS cli_d_orders, cli_d_users;")
feed("CREATE TABLE cli_d_users (id INT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(100) NOT NULL,"
    .. " nick VARCHAR(20) NULL DEFAULT 'anon', note TEXT, UNIQUE KEY users_email (email)) COMMENT 'people';")
feed("CREATE TABLE cli_d_orders (id INT PRIMARY KEY, user_id INT NOT NULL, total DECIMAL(8,2) DEFAULT NULL,"
    .. " KEY orders_user (user_id, total));")

-- --- \d ---------------------------------------------------------------------
local out, err = feed("\\d")
T.is(err, "", "\\d: no error")
T.like(out, "| cli_d_orders ", "\\d lists the tables")
T.like(out, "| cli_d_users  | base table | InnoDB ", "with their type and engine")
T.like(out, "| people  |", "and comment")
out, err = feed("\\d cli_d_users")
T.is(err, "", "\\d TABLE: no error")
T.like(out, "Table cli_d_users\n", "\\d TABLE names the table")
T.like(out, "| column | type         | null | default | key / extra        |", "columns, types, null, default, key")
T.like(out, "| id     | int(11)      | no   |         | PRI auto_increment |", "the primary key, auto_increment, no default")
T.like(out, "| email  | varchar(100) | no   |         | UNI", "NOT NULL without default")
T.like(out, "| nick   | varchar(20)  | yes  | 'anon'  |", "a default")
T.like(out, "| note   | text         | yes  | NULL    |", "a NULL default")
T.like(out, "Indexes\n", "then the indexes")
T.like(out, "| PRIMARY     | yes    | id      | BTREE |", "the primary key index")
T.like(out, "| users_email | yes    | email   | BTREE |", "a unique index")
out = feed("\\d cli_d_orders")
T.like(out, "| orders_user | no     | user_id, total | BTREE |", "a two-column index, columns in order")
out = feed("\\d dbpool_test.cli_d_orders")
T.like(out, "| user_id | int(11)", "\\d SCHEMA.TABLE")
out, err = feed("\\d cli_d_nosuch")
T.like(err, "ERROR: no table or view named 'cli_d_nosuch'", "\\d of an unknown table is an error")

-- --- completion (the function readline calls) ----------------------------------------
local function complete(line, from, to)
    from = from or (line:find("[^%s\\(]*$"))
    to = to or #line
    return table.concat(r:complete(line, from, to), " ")
end
T.is(complete("\\ti", 1), "\\timing", "a backslash command, with its backslash in the word")
T.is(complete("\\w", 2), "watch", "a backslash command, readline having ended the word at '\\'")
T.like(complete("\\r", 2), "refresh", "\\refresh completes")
T.is(complete("SELECT * FROM cli_d_u"), "cli_d_users", "a table name")
T.is(complete("SELECT em"), "email", "a column name")
T.is(complete("SELECT cli_d_users.n"), "cli_d_users.nick cli_d_users.note", "TABLE.column")
T.like(complete("sel"), "select", "a keyword, in the case typed")
T.like(complete("SEL"), "SELECT", "a keyword, upper case")
T.is(complete("\\d cli_d_o"), "cli_d_orders", "\\d completes table names")
T.is(complete("\\use d"), "db", "\\use completes connection names")
-- the cache: a new table is not offered until \refresh (or DDL through the REPL)
local side = require("dbpool").open(mysql_url)
side:query("DROP TABLE IF EXISTS cli_d_zz"):await()
side:query("CREATE TABLE cli_d_zz (zcol INT)"):await()
T.is(complete("SELECT * FROM cli_d_z"), "", "names are cached: a table made elsewhere is not offered yet")
out = feed("\\refresh")
T.like(out, "Completion names reloaded", "\\refresh")
T.is(complete("SELECT * FROM cli_d_z"), "cli_d_zz", "after \\refresh it is")
feed("DROP TABLE cli_d_zz;")
T.is(complete("SELECT * FROM cli_d_z"), "", "DDL through the REPL refreshes the names")
side:close():await()

-- --- \x and cutting to the width ---------------------------------------------------
feed("INSERT INTO cli_d_users (email, note) VALUES ('a@example.com', '" .. ("long text "):rep(20) .. "'),"
    .. " ('b@example.com', 'short');")
r.width = 60
out = feed("SELECT id, email, note FROM cli_d_users ORDER BY id;")
local widest = 0
for line in out:gmatch("[^\n]+") do widest = math.max(widest, utf8.len(line)) end
T.ok(widest <= 60, ("with a width of 60, no line is wider (%d)"):format(widest))
T.like(out, "| long text long text" , "a long value is cut")
T.like(out, render.CUT .. " |", "with a marker at its end")
T.like(out, "| short", "a short value is whole")
T.like(out, "2 rows in set", "still a table")
out = feed("\\x")
T.is(out, "Expanded display is on.\n", "\\x turns expanded output on")
out = feed("SELECT id, email, note FROM cli_d_users ORDER BY id;")
T.like(out, "*************************** 1. row ***************************\n   id: 1\ne", "one column per line")
T.like(out, ("long text "):rep(20), "expanded output shows long values whole")
out = feed("\\x off")
T.is(out, "Expanded display is off.\n", "\\x off")
r.width = 0

-- --- \watch with a count (the front end's loop is the caller) ------------------------------
do
    local fresh = repl_core.new({})
    local _, e = fresh:feed("\\watch 1")
    T.like(e, "run one first", "\\watch before any statement says so")
end
feed("SELECT COUNT(*) AS n FROM cli_d_users;")
out = feed("\\watch 0.1 3")
T.ok(r.watching ~= nil, "\\watch starts watching")
local ticks = {}
while r.watching do
    ticks[#ticks + 1] = r:watch_tick()
end
T.is(#ticks, 3, "\\watch SECONDS COUNT runs the statement COUNT times")
T.like(ticks[1], "Every 0.1s (1)", "each run has a header")
T.like(ticks[3], "| 2 |", "and the result")
out, err = feed("\\watch 0")
T.like(err, "usage: \\watch SECONDS [COUNT]", "\\watch 0 is refused")

-- --- \i and \o -------------------------------------------------------------------
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p '" .. dir .. "'")
local f = assert(io.open(dir .. "/in.sql", "w"))
f:write("INSERT INTO cli_d_orders VALUES (1, 1, 9.50);\nINSERT INTO cli_d_orders VALUES\n  (2, 1, NULL);\nSELECT COUNT(*) AS orders FROM cli_d_orders")
f:close()
out, err = feed("\\i " .. dir .. "/in.sql")
T.is(err, "", "\\i: no error")
T.like(out, "Query OK, 1 row affected", "\\i runs the file's statements")
T.like(out, "| orders |\n+--------+\n|      2 |", "a last statement without ';' runs at the end of the file")
out, err = feed("\\i " .. dir .. "/none.sql")
T.like(err, "No such file", "\\i of a missing file")
out = feed("\\o " .. dir .. "/out.txt")
T.like(out, "Results go to " .. dir .. "/out.txt", "\\o FILE")
out, err = feed("SELECT id, total FROM cli_d_orders ORDER BY id;", "SELECT * FROM cli_d_nosuch;", "\\d cli_d_orders")
T.is(out, "", "results do not go to the output")
T.like(err, "ERROR 1146", "errors still do")
out = feed("\\o")
T.like(out, "Results go to the output again", "\\o alone ends it")
local saved = assert(io.open(dir .. "/out.txt")):read("a")
T.like(saved, "|  2 |  NULL |", "the results are in the file")
T.like(saved, "| orders_user |", "\\d output too")
T.unlike(saved, "ERROR", "errors are not")

-- --- csv and json from the core ---------------------------------------------------
local m = repl_core.new({ format = "csv" })
m:connect("db", mysql_url)
out, err = m:feed("SELECT id, total FROM cli_d_orders ORDER BY id;")
T.is(out, "id,total\r\n1,9.50\r\n2,\r\n", "csv: a header and rows, NULL an empty field")
out, err = m:feed("UPDATE cli_d_orders SET total = total;")
T.is(out, "", "csv: a statement without rows prints nothing on the output")
m:close()
m = repl_core.new({ format = "json" })
m:connect("r", redis_url)
m:feed("DEL cli:d:j")
m:feed("RPUSH cli:d:j a \"\\xff\"")
out = m:feed("LRANGE cli:d:j 0 -1")
local v = S.json(out)
T.is(v[1], "a", "json Redis: an array reply")
T.is(v[2]["$base64"], "/w==", "binary as base64 with a marker")
T.is(m:feed("GET cli:d:none"), "null\n", "json Redis: nil is null")
m:feed("DEL cli:d:j")
m:close()

-- --- \d on Redis -------------------------------------------------------------------
T.ok(r:connect("cache", redis_url), "connect cache")
feed("SELECT 9", "FLUSHDB")
for i = 1, 30 do feed(("SET user:%d:name n%d"):format(i, i)) end
for i = 1, 5 do feed(("HSET session:%s f v"):format(("%08x-aaaa-bbbb-cccc-%012d"):format(i, i))) end
feed("RPUSH queue:jobs a b c")
out, err = feed("\\d")
T.is(err, "", "\\d on Redis: no error")
T.like(out, "| user:*:name |   30 | string |", "keys grouped by pattern, numbers as *")
T.like(out, "| session:*   |    5 | hash   |", "UUIDs as *, with the type")
T.like(out, "| queue:jobs  |    1 | list   |", "a key without ids is its own pattern")
T.like(out, "36 keys seen in 3 patterns (of 36 in the database)", "how many keys were seen")
local limit = repl_core.SCAN_LIMIT
repl_core.SCAN_LIMIT = 10
out = feed("\\d")
T.like(out, "stopped after 10 keys: there are more", "the scan is bounded")
repl_core.SCAN_LIMIT = limit
out = feed("\\d user:1*")
T.like(out, "| user:*:name |   11 |", "\\d PATTERN scans what matches")
out = feed("\\d queue:jobs")
T.like(out, "| queue:jobs | list |      3 | none | quicklist |", "\\d KEY: type, length, ttl, encoding")
out, err = feed("\\d nosuchkey")
T.like(err, "no key named 'nosuchkey'", "\\d of a missing key")
T.like(complete("HGET"), "HGETALL", "Redis command names complete")
T.is(complete("hgeta"), "hgetall", "in the case typed")
T.is(complete("GET hge"), "", "but only as the first word")
feed("FLUSHDB")
T.is(repl_core.key_pattern("a:123:b.456/x"), "a:*:b.*/x", "key_pattern: parts between : . /")

feed("\\use db", "DROP TABLE cli_d_orders, cli_d_users;")
r:close()
os.execute("rm -rf '" .. dir .. "'")
T.done()
