#!/usr/bin/env lua5.4
-- The REPL core on PostgreSQL (issue 16 with issue 13): \d and \d TABLE from
-- PostgreSQL's catalogs, tab completion of its tables and columns, \x, a
-- $$-quoted function body typed over several lines, \watch with a count,
-- \i / \o, and the csv/json formats with PostgreSQL's types.
local T = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local S = dofile(T.repo .. "/tests/cli/strict.lua")
local pg_url = T.env("DBPOOL_TEST_PG_URL")
local repl_core = require "dbpool.cli.repl_core"

local r = repl_core.new({})
T.ok(r:connect("pg", pg_url), "connect pg")
local feed = T.feeder(r)

feed("DROP TABLE IF EXISTS cli_p_orders, cli_p_users;", "DROP FUNCTION IF EXISTS cli_p_twice(int);")
feed("CREATE TABLE cli_p_users (id serial PRIMARY KEY, email varchar(100) NOT NULL UNIQUE,"
    .. " nick text DEFAULT 'anon', active boolean NOT NULL DEFAULT true, photo bytea);")
feed("CREATE TABLE cli_p_orders (id int PRIMARY KEY, user_id int NOT NULL, total numeric(8,2));")
feed("CREATE INDEX cli_p_orders_user ON cli_p_orders (user_id, total);")

-- --- \d ---------------------------------------------------------------------
local out, err = feed("\\d")
T.is(err, "", "\\d: no error")
T.like(out, "| cli_p_orders ", "\\d lists the tables")
T.like(out, "base table", "with their type")
out, err = feed("\\d cli_p_users")
T.is(err, "", "\\d TABLE: no error")
T.like(out, "| id ", "the columns")
T.like(out, "PRI", "the primary key")
T.like(out, "character varying(100)", "a type with its length")
T.like(out, "nextval(", "a serial's default as the server shows it")
T.like(out, "cli_p_users_email_key", "the unique index")
out = feed("\\d cli_p_orders")
T.like(out, "| cli_p_orders_user | no     | user_id, total | btree |", "a two-column index, columns in order")
T.like(out, "numeric(8,2)", "numeric with precision and scale")

-- --- completion --------------------------------------------------------------------
local function complete(line)
    return table.concat(r:complete(line, (line:find("[^%s\\(]*$")), #line), " ")
end
T.is(complete("SELECT * FROM cli_p_u"), "cli_p_users", "a PostgreSQL table name")
T.is(complete("SELECT ema"), "email", "a column name")
T.like(complete("SELECT * FROM cli_p_users RETUR"), "RETURNING", "PostgreSQL's own keywords")

-- --- a $$ body over several lines, then \x ------------------------------------------------
out, err = feed("CREATE FUNCTION cli_p_twice(n int) RETURNS int LANGUAGE plpgsql AS $$",
    "BEGIN", "  RETURN n * 2;", "END;", "$$;")
T.is(err, "", "a function body with ';' inside $$ ... $$ is one statement")
out = feed("SELECT cli_p_twice(21) AS v;")
T.like(out, "| 42 |", "and it was created whole")
feed("INSERT INTO cli_p_users (email, photo) VALUES ('a@example.com', '\\x00ff'), ('b@example.com', NULL);")
out = feed("\\x")
T.is(out, "Expanded display is on.\n", "\\x on")
out = feed("SELECT id, email, active FROM cli_p_users ORDER BY id;")
T.like(out, "*************************** 1. row ***************************\n    id: 1\n", "one column per line")
T.like(out, "active: true", "a boolean as true")
feed("\\x off")

-- --- \watch with a count -------------------------------------------------------------
feed("SELECT count(*) AS n FROM cli_p_users;")
feed("\\watch 0.1 2")
local ticks = {}
while r.watching do ticks[#ticks + 1] = r:watch_tick() end
T.is(#ticks, 2, "\\watch SECONDS COUNT runs the statement COUNT times")
T.like(ticks[2], "| 2 |", "with its result")

-- --- \i and \o -------------------------------------------------------------------
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p '" .. dir .. "'")
local f = assert(io.open(dir .. "/in.sql", "w"))
f:write("INSERT INTO cli_p_orders VALUES (1, 1, 9.5), (2, 2, NULL);\nSELECT id, total FROM cli_p_orders ORDER BY id;\n")
f:close()
feed("\\o " .. dir .. "/out.txt")
out, err = feed("\\i " .. dir .. "/in.sql")
T.is(err, "", "\\i: no error")
feed("\\o")
local saved = assert(io.open(dir .. "/out.txt")):read("a")
T.like(saved, "|  1 |  9.50 |", "\\i ran the file, \\o kept its results")

-- --- csv and json ------------------------------------------------------------------
local m = repl_core.new({ format = "csv" })
m:connect("pg", pg_url)
out = m:feed("SELECT id, total FROM cli_p_orders ORDER BY id;")
T.is(out, "id,total\r\n1,9.50\r\n2,\r\n", "csv: a header and rows, NULL an empty field, numeric as the server writes it")
m:close()
m = repl_core.new({ format = "json" })
m:connect("pg", pg_url)
out = m:feed("SELECT id, email, active, photo FROM cli_p_users ORDER BY id;")
local rows = {}
for line in out:gmatch("[^\n]+") do rows[#rows + 1] = S.json(line) end
T.is(#rows, 2, "json: one object per row")
T.is(rows[1].active, true, "a boolean as true")
T.is(rows[1].photo["$base64"], "AP8=", "bytea as base64 with a marker")
T.is(rows[2].photo, S.null, "NULL as null")
m:close()

feed("DROP TABLE cli_p_orders, cli_p_users;", "DROP FUNCTION cli_p_twice(int);")
r:close()
os.execute("rm -rf '" .. dir .. "'")
T.done()
