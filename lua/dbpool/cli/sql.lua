-- dbpool.cli.sql: splits SQL text into statements as the mysql client does.
--
-- A statement ends at the delimiter (';' unless a DELIMITER line changed
-- it) or at \G / \g, never inside '...', "...", `...`, -- / # comments or
-- /* ... */. Used by the REPL (text arrives line by line: what is not yet
-- complete is handed back) and by migrations (a whole file).
-- Pure: no I/O.
local M = {}

local function is_space(c) return c == " " or c == "\t" or c == "\n" or c == "\r" or c == "\f" or c == "\v" end

-- The flavors: MySQL (the default) has # comments and backslash escapes in
-- strings; PostgreSQL has neither ('\' is a plain character with
-- standard_conforming_strings, '#' an operator) but has dollar quoting:
-- $$ ... $$ and $tag$ ... $tag$ (function bodies), inside which nothing ends
-- a statement.
M.MYSQL = { hash_comments = true, backslash = true }
M.POSTGRES = { dollar = true }

-- split(text, delimiter, final, flavor) -> statements, rest, open, delimiter
--   statements: list of { sql = text without its terminator, term = ";" / "\\G" / "\\g" / the delimiter }
--   rest: the text after the last complete statement ("" when none); with
--         final, a non-empty rest becomes a last statement (term = "")
--   open: nil, or what is still open at the end of text: "'", '"', "`", "/*",
--         or a dollar quote's tag ("$$", "$body$")
--   flavor: M.MYSQL (nil) or M.POSTGRES
--   delimiter: the delimiter in force after text (DELIMITER lines change it)
function M.split(text, delimiter, final, flavor)
    delimiter = delimiter or ";"
    flavor = flavor or M.MYSQL
    local out = {}
    local n = #text
    local i = 1
    local start = 1          -- where the current statement's text begins
    local content = false    -- the statement has more than blanks and comments
    local open = nil

    local function emit(stop, term)
        local s = text:sub(start, stop)
        if content then
            out[#out + 1] = { sql = (s:gsub("^%s+", ""):gsub("%s+$", "")), term = term }
        end
        content = false
    end

    while i <= n do
        local c = text:sub(i, i)
        if not content and is_space(c) then
            i = i + 1
        elseif not content and text:sub(i, i + 8):upper() == "DELIMITER" and is_space(text:sub(i + 9, i + 9)) then
            -- DELIMITER xyz, to the end of its line (client side, never sent)
            local eol = text:find("\n", i, true)
            if not eol and not final then open = nil break end
            local line = text:sub(i, eol or n)
            local d = line:match("^%a+[ \t]+(%S+)")
            if d then delimiter = d end
            i = (eol or n) + 1
            start = i
        elseif c == "'" or c == '"' or c == "`" then
            content = true
            local j = i + 1
            local closed = false
            while j <= n do
                local d = text:sub(j, j)
                if d == "\\" and c ~= "`" and flavor.backslash then
                    j = j + 2
                elseif d == c then
                    closed = true
                    break
                else
                    j = j + 1
                end
            end
            if not closed then open = c i = n + 1 break end
            i = j + 1
        elseif (c == "#" and flavor.hash_comments) or (c == "-" and text:sub(i + 1, i + 1) == "-" and
                (i + 2 > n or is_space(text:sub(i + 2, i + 2)) or text:byte(i + 2) < 32)) then
            local eol = text:find("\n", i, true)
            i = (eol or n) + 1
        elseif c == "/" and text:sub(i + 1, i + 1) == "*" then
            local close = text:find("*/", i + 2, true)
            -- /*! ... */ and /*M! ... */ are code for the server: they count as content
            if text:sub(i + 2, i + 2) == "!" or text:sub(i + 2, i + 3) == "M!" then content = true end
            if not close then open = "/*" i = n + 1 break end
            i = close + 2
        elseif c == "$" and flavor.dollar and (i == 1 or not text:sub(i - 1, i - 1):match("[%w_]"))
                and (text:match("^%$[%a_][%w_]*%$", i) or text:match("^%$%$", i)) then
            -- a dollar quote: to the same tag
            local tag = text:match("^%$[%a_][%w_]*%$", i) or "$$"
            content = true
            local close = text:find(tag, i + #tag, true)
            if not close then open = tag i = n + 1 break end
            i = close + #tag
        elseif text:sub(i, i + #delimiter - 1) == delimiter then
            emit(i - 1, delimiter)
            i = i + #delimiter
            start = i
        elseif c == "\\" and (text:sub(i + 1, i + 1) == "G" or text:sub(i + 1, i + 1) == "g") then
            emit(i - 1, "\\" .. text:sub(i + 1, i + 1))
            i = i + 2
            start = i
        else
            if not content then start = i end
            content = true
            i = i + 1
        end
    end
    local rest = text:sub(start)
    if final then
        if content then
            out[#out + 1] = { sql = (rest:gsub("^%s+", ""):gsub("%s+$", "")), term = "" }
        end
        rest = ""
    elseif not content and not open then
        rest = "" -- only blanks or finished comments: nothing to wait for
    end
    return out, rest, open, delimiter
end

-- The first keyword of a statement, upper-cased ("CREATE", "SELECT", ...).
function M.keyword(sqltext)
    local s = sqltext
    while true do
        s = s:gsub("^%s+", "")
        if s:sub(1, 2) == "/*" and s:sub(3, 3) ~= "!" then
            local e = s:find("*/", 3, true)
            if not e then return "" end
            s = s:sub(e + 2)
        elseif s:sub(1, 1) == "#" or s:match("^%-%-[%s]") then
            local e = s:find("\n", 1, true)
            if not e then return "" end
            s = s:sub(e + 1)
        else
            break
        end
    end
    return (s:match("^(%a+)") or ""):upper()
end

-- Statements MySQL/MariaDB commit implicitly (they cannot be rolled back).
local IMPLICIT_COMMIT = {
    CREATE = true, ALTER = true, DROP = true, RENAME = true, TRUNCATE = true,
    GRANT = true, REVOKE = true, LOCK = true, UNLOCK = true, ANALYZE = true,
    OPTIMIZE = true, REPAIR = true, CACHE = true, FLUSH = true, INSTALL = true, UNINSTALL = true,
}
function M.commits_implicitly(sqltext)
    return IMPLICIT_COMMIT[M.keyword(sqltext)] == true
end

return M
