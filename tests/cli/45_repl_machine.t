#!/usr/bin/env lua5.4
-- `dbpool repl -e STATEMENT --csv / --json` (issue 16): the output parsed
-- back by strict parsers (tests/cli/strict.lua) and compared, field by
-- field, with the table's contents as the mariadb client reads them (hex of
-- each value's bytes): NULL, quotes, commas, newlines, CR, UTF-8, binary,
-- numbers. Nothing else on stdout; errors on stderr with exit 1.
local T = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local S = dofile(T.repo .. "/tests/cli/strict.lua")
local mysql_url = T.env("DBPOOL_TEST_MYSQL_URL")
local redis_url = T.env("DBPOOL_TEST_REDIS_URL")
local my_port = T.env("DBPOOL_TEST_MYSQL_PORT")
T.env("DBPOOL_TEST_MYSQL_PASSWORD")
local render = require "dbpool.cli.render"

local function sh(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local errfile = os.tmpname()

-- Runs the command; -> stdout, stderr, exit code.
local function dbpool(args)
    local p = assert(io.popen(sh(T.dbpool) .. " " .. args .. " 2>" .. errfile .. " </dev/null"))
    local out = p:read("a")
    local _, _, code = p:close()
    local ef = assert(io.open(errfile))
    local err = ef:read("a")
    ef:close()
    return out, err, code
end

local function mysql(stmt)
    local p = assert(io.popen(('MYSQL_PWD="$DBPOOL_TEST_MYSQL_PASSWORD" mysql --protocol=tcp -h127.0.0.1 -P%s -udbpool dbpool_test -BN -e %s 2>&1')
        :format(my_port, sh(stmt))))
    local out = p:read("a")
    p:close()
    return out
end

local function unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

mysql([[DROP TABLE IF EXISTS cli_machine;
CREATE TABLE cli_machine (id INT PRIMARY KEY, txt VARCHAR(100) NULL, bin VARBINARY(20) NULL,
  dec_ DECIMAL(10,3) NULL, dbl DOUBLE NULL, big BIGINT UNSIGNED NULL) CHARACTER SET utf8mb4;
INSERT INTO cli_machine VALUES
  (1, 'plain', NULL, 1.500, 0.25, 18446744073709551615),
  (2, 'a,b', 0x00FF0A0D, -2.000, -1e10, 0),
  (3, 'say "hi"', X'', NULL, NULL, NULL),
  (4, 'two\nlines\r\nand CRLF', 0x414243, 0.001, 1.5, 42),
  (5, '', 0xC3A9, 123456.789, 3, 7),
  (6, NULL, NULL, NULL, NULL, NULL),
  (7, 'h\u00e9llo \u00fc\u00f1\u00ee', 0xE282AC80, 0, 0, 1),
  (8, ' lead and trail ', 0x7F, 1, 2, 3),
  (9, 'base64:looks like a marker', NULL, NULL, NULL, NULL)]])
-- (row 7's text is sent as MariaDB reads it: \u escapes are not SQL; fix it)
mysql("UPDATE cli_machine SET txt = CONCAT('h', _utf8mb4 0xC3A9, 'llo ', _utf8mb4 0xC3BCC3B1C3AE) WHERE id = 7")

local COLS = { "id", "txt", "bin", "dec_", "dbl", "big" }
-- The expected bytes of every value, from the mariadb client: nil for NULL.
local expect = {}
do
    local sel = {}
    for i, c in ipairs(COLS) do sel[i] = ("COALESCE(HEX(CONCAT(%s)), 'N')"):format(c) end
    for line in mysql("SELECT " .. table.concat(sel, ", ") .. " FROM cli_machine ORDER BY id"):gmatch("([^\n]*)\n") do
        local row, j = {}, 0
        for h in (line .. "\t"):gmatch("([^\t]*)\t") do
            j = j + 1
            row[COLS[j]] = h ~= "N" and unhex(h) or nil
        end
        expect[#expect + 1] = row
    end
end
T.is(#expect, 9, "the reference rows from the mariadb client")

local function same_number(text, ref)
    -- DECIMAL stays text as the server wrote it; DOUBLE may be written otherwise
    return text == ref or tonumber(text) == tonumber(ref)
end

-- --- CSV ----------------------------------------------------------------------
local out, err, code = dbpool("repl --csv -e " .. sh("SELECT " .. table.concat(COLS, ", ") .. " FROM cli_machine ORDER BY id") .. " " .. sh(mysql_url))
T.is(code, 0, "--csv: exit 0")
T.is(err, "", "--csv: nothing on stderr")
local ok, recs = pcall(S.csv, out)
T.ok(ok, "--csv output parses as strict RFC 4180 (CRLF records, quoted fields)" .. (ok and "" or (": " .. tostring(recs))))
recs = ok and recs or {}
T.is(table.concat(recs[1] or {}, ","), table.concat(COLS, ","), "a header row with the column names")
T.is(#recs, 10, "then one record per row")
local bad = {}
for i = 1, #expect do
    local rec = recs[i + 1] or {}
    for j, c in ipairs(COLS) do
        local want, got = expect[i][c], rec[j]
        local quoted = S.csv_quoted[i + 1] and S.csv_quoted[i + 1][j]
        local good
        if want == nil then good = got == "" and not quoted
        elseif c == "bin" and (render.is_binary(want)) then good = got == "base64:" .. render.base64(want)
        elseif c == "dbl" then good = same_number(got, want)
        else good = got == want and (want ~= "" or quoted) end
        if not good then bad[#bad + 1] = ("row %d %s: got %q want %q"):format(i, c, tostring(got), tostring(want)) end
    end
end
T.is(#bad, 0, "every CSV field equals the table's value (NULL an empty unquoted field, '' a quoted empty one, binary base64:)")
if #bad > 0 then T.diag(table.concat(bad, "\n")) end
T.like(out, '"say ""hi"""', "a quote is doubled inside a quoted field")
T.like(out, '"two\nlines\r\nand CRLF"', "newlines stay inside a quoted field")

-- --- JSON ---------------------------------------------------------------------
out, err, code = dbpool("repl --json -e " .. sh("SELECT " .. table.concat(COLS, ", ") .. " FROM cli_machine ORDER BY id") .. " " .. sh(mysql_url))
T.is(code, 0, "--json: exit 0")
T.is(err, "", "--json: nothing on stderr")
local rows
ok, rows = pcall(S.json_lines, out)
T.ok(ok, "--json output parses strictly, one JSON value per line" .. (ok and "" or (": " .. tostring(rows))))
rows = ok and rows or {}
T.is(#rows, 9, "one object per row")
local keys = {}
for k in (out:match("^[^\n]*") or ""):gmatch('"([%w_]+)":') do keys[#keys + 1] = k end
T.is(table.concat(keys, ","), table.concat(COLS, ","), "keys in column order")
bad = {}
for i = 1, #expect do
    local row = rows[i] or {}
    for _, c in ipairs(COLS) do
        local want, got = expect[i][c], row[c]
        local good
        if want == nil then good = got == S.null
        elseif c == "bin" and render.is_binary(want) then good = type(got) == "table" and got["$base64"] == render.base64(want)
        elseif c == "id" or c == "dbl" or (c == "big" and math.tointeger(tonumber(want))) then
            good = type(got) == "number" and tonumber(want) == got
        elseif c == "big" then good = got == want -- beyond 2^63-1: a string
        else good = got == want end
        if not good then bad[#bad + 1] = ("row %d %s: got %s want %q"):format(i, c, tostring(got), tostring(want)) end
    end
end
T.is(#bad, 0, "every JSON value equals the table's (NULL null, numbers numbers, DECIMAL text, binary {\"$base64\": ...})")
if #bad > 0 then T.diag(table.concat(bad, "\n")) end
T.is(rows[1] and rows[1].big, "18446744073709551615", "an unsigned value beyond 2^63-1 stays a string")
T.is(rows[1] and rows[1].dec_, "1.500", "DECIMAL is text, as the server wrote it")

-- --- several statements, statements without rows, Redis ---------------------------
out, err, code = dbpool("repl --json -e " .. sh("UPDATE cli_machine SET id = id WHERE id = 1; SELECT 1 AS a; SELECT 2 AS b") .. " " .. sh(mysql_url))
T.is(code, 0, "--json with several statements: exit 0")
T.is(out, '{"a":1}\n{"b":2}\n', "rows of each statement; a statement without rows prints nothing")
out, err, code = dbpool("repl --json -e 'DEL cli:mj' -e 'RPUSH cli:mj x \"y z\"' -e 'LRANGE cli:mj 0 -1' -e 'GET cli:mj:none' -e 'DEL cli:mj' " .. sh(redis_url))
T.is(code, 0, "--json on Redis: exit 0")
T.is(out, '0\n2\n["x","y z"]\nnull\n1\n', "--json on Redis: one JSON value per reply")

-- --- errors: stderr, exit 1, stdout untouched ---------------------------------------
out, err, code = dbpool("repl --csv -e 'SELECT * FROM cli_no_such_table' " .. sh(mysql_url))
T.is(code, 1, "--csv with an SQL error: exit 1")
T.is(out, "", "nothing on stdout")
T.like(err, "ERROR 1146 (42S02)", "the error on stderr")
out, err, code = dbpool("repl --json -e 'SELECT 1 AS ok; SELECT * FROM cli_no_such_table; SELECT 2 AS after_' " .. sh(mysql_url))
T.is(code, 1, "--json with an error among statements: exit 1")
T.is(out, '{"ok":1}\n{"after_":2}\n', "stdout has only the rows")
out, err, code = dbpool("repl --json -e 'SELECT 1' " .. sh("mysql://dbpool:wrong@127.0.0.1:" .. my_port .. "/dbpool_test"))
T.is(code, 1, "--json with a connection that cannot open: exit 1")
T.is(out, "", "nothing on stdout")
T.like(err, "Access denied", "the reason on stderr")
out, err, code = dbpool("repl --csv --json -e 'SELECT 1' " .. sh(mysql_url))
T.is(code, 2, "--csv with --json: a usage error")
out, err, code = dbpool("repl --json -e '\\list' " .. sh(mysql_url))
T.is(out, "", "--json: a backslash command's output is not a result: it goes to stderr")
T.like(err, "| * | db ", "(there)")

out, err, code = dbpool("repl --json -e '\\d cli_machine' " .. sh(mysql_url))
T.is(code, 0, "--json \\d TABLE: exit 0")
ok, rows = pcall(S.json_lines, out)
T.ok(ok and rows[1] and rows[1].column == "id" and rows[2].column == "txt", "--json \\d TABLE: the columns as JSON rows")
T.ok(ok and rows[7] and rows[7].index == "PRIMARY", "then the indexes")
out, err, code = dbpool("repl --csv -e '\\d' " .. sh(mysql_url))
ok, recs = pcall(S.csv, out)
T.ok(ok and recs[1] and recs[1][1] == "table", "--csv \\d: strict CSV with a header")

mysql("DROP TABLE cli_machine")
os.remove(errfile)
T.done()
