-- dbpool.cli.render: how the REPL shows things, as text. Pure: no I/O.
--
--   * SQL results as the mysql client does: a bordered table (numbers right
--     aligned, NULL shown distinctly), vertical with \G, tab-separated in
--     batch mode, and "N rows in set" / "Query OK" lines;
--   * Redis replies as redis-cli does on a terminal: "quoted" strings with
--     escapes, (integer) N, (nil), (error) ..., numbered nested arrays;
--   * Lua values for `=` lines.
local M = {}

local has_core, core = pcall(require, "dbpool.core")
local NULL = has_core and core.null or nil -- dbpool.null (SQL NULL, Redis nil)

local function is_null(v) return v == nil or (NULL ~= nil and v == NULL) end
M.is_null = is_null

-- The shortest text that reads back as the same float.
local function float_text(v)
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
    local s = ("%.15g"):format(v)
    if tonumber(s) ~= v then s = ("%.17g"):format(v) end
    return s
end
M.float_text = float_text

local function valid_utf8(s) return utf8.len(s) ~= nil end

local function width(s)
    return utf8.len(s) or #s
end

local function hex(s)
    return "0x" .. s:gsub(".", function(c) return ("%02X"):format(c:byte()) end)
end

local CELL_ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\0"] = "\\0" }

-- A value as the text of a table cell (one line).
function M.cell(v, null_text)
    null_text = null_text or "NULL"
    if is_null(v) then return null_text, "null" end
    local t = type(v)
    if t == "number" then
        if math.type(v) == "integer" then return tostring(v), "number" end
        return float_text(v), "number"
    end
    if t == "string" then
        if not valid_utf8(v) or v:find("[%z\1-\8\11\12\14-\31\127]") then return hex(v), "binary" end
        -- a text that reads like the NULL marker is quoted, so NULL stays distinct
        if v == null_text then return "'" .. v .. "'", "string" end
        local s = v:gsub("[\n\r\t%z]", CELL_ESCAPES)
        if s:match("^%-?%d+%.?%d*$") or s:match("^%-?%d*%.%d+$") then return s, "numeric" end
        return s, "string"
    end
    return tostring(v), t
end

local function rows_word(n) return n == 1 and "1 row" or (n .. " rows") end

local function secs(elapsed) return ("(%.3f sec)"):format(elapsed) end

M.CUT = "\u{2026}" -- marks a value cut to fit the terminal

-- The first n characters of a (UTF-8) text.
local function prefix(s, n)
    if not valid_utf8(s) then return s:sub(1, n) end
    local e = utf8.offset(s, n + 1)
    return e and s:sub(1, e - 1) or s
end

-- s cut to w characters, the last one the marker, when longer.
local function cut(s, w)
    if width(s) <= w then return s end
    return prefix(s, math.max(w - 1, 0)) .. M.CUT
end
M.cut = cut

-- Narrows the widest columns, one character at a time, until the table is
-- at most `limit` wide or every column is down to `floor` characters.
-- -> the total width
local function narrow(w, limit, floor)
    local total = 1
    for j = 1, #w do total = total + w[j] + 3 end
    while total > limit do
        local widest = nil
        for j = 1, #w do if w[j] > floor and (not widest or w[j] > w[widest]) then widest = j end end
        if not widest then break end
        w[widest] = w[widest] - 1
        total = total - 1
    end
    return total
end

-- The bordered table. result: an array of rows with .columns. With
-- opts.width (the terminal's), long values are cut with a marker so that the
-- table fits: a wrapped line would break it. -> text, width (nil when it
-- cannot fit even so)
function M.table(result, opts)
    opts = opts or {}
    local cols = result.columns or {}
    local ncol = #cols
    local cells, w, numeric = {}, {}, {}
    for j = 1, ncol do
        w[j] = width(cols[j])
        numeric[j] = true
    end
    local seen = {}
    for i = 1, #result do
        local row = result[i]
        local line = {}
        for j = 1, ncol do
            local text, kind = M.cell(row[cols[j]], opts.null)
            line[j] = text
            local cw = width(text)
            if cw > w[j] then w[j] = cw end
            if kind ~= "null" then
                seen[j] = true
                if kind ~= "number" and kind ~= "numeric" then numeric[j] = false end
            end
        end
        cells[i] = line
    end
    local heads = {}
    for j = 1, ncol do heads[j] = cols[j] end
    if opts.width and opts.width > 0 then
        if narrow(w, opts.width, 4) > opts.width then return nil end
        for j = 1, ncol do
            heads[j] = cut(heads[j], w[j])
            for i = 1, #cells do cells[i][j] = cut(cells[i][j], w[j]) end
        end
    end
    local sep = { "+" }
    for j = 1, ncol do sep[#sep + 1] = ("-"):rep(w[j] + 2) .. "+" end
    sep = table.concat(sep)
    local out = { sep }
    local head = { "|" }
    for j = 1, ncol do head[#head + 1] = " " .. heads[j] .. (" "):rep(w[j] - width(heads[j])) .. " |" end
    out[#out + 1] = table.concat(head)
    out[#out + 1] = sep
    for i = 1, #cells do
        local line = { "|" }
        for j = 1, ncol do
            local text = cells[i][j]
            local pad = (" "):rep(w[j] - width(text))
            if numeric[j] and seen[j] then line[#line + 1] = " " .. pad .. text .. " |"
            else line[#line + 1] = " " .. text .. pad .. " |" end
        end
        out[#out + 1] = table.concat(line)
    end
    out[#out + 1] = sep
    return table.concat(out, "\n") .. "\n", #sep
end

-- \G: one block per row.
function M.vertical(result, opts)
    opts = opts or {}
    local cols = result.columns or {}
    local wn = 0
    for j = 1, #cols do if width(cols[j]) > wn then wn = width(cols[j]) end end
    local out = {}
    for i = 1, #result do
        out[#out + 1] = ("*"):rep(27) .. " " .. i .. ". row " .. ("*"):rep(27)
        for j = 1, #cols do
            local text = M.cell(result[i][cols[j]], opts.null)
            out[#out + 1] = (" "):rep(wn - width(cols[j])) .. cols[j] .. ": " .. text
        end
    end
    return #out > 0 and (table.concat(out, "\n") .. "\n") or ""
end

local BATCH_ESCAPES = { ["\n"] = "\\n", ["\t"] = "\\t", ["\\"] = "\\\\", ["\0"] = "\\0" }

-- mysql -B: a header line, then tab-separated rows.
function M.batch(result, opts)
    opts = opts or {}
    local cols = result.columns or {}
    local out = { table.concat(cols, "\t") }
    for i = 1, #result do
        local line = {}
        for j = 1, #cols do
            local v = result[i][cols[j]]
            if is_null(v) then line[j] = opts.null or "NULL"
            elseif type(v) == "string" then line[j] = (v:gsub("[\n\t\\%z]", BATCH_ESCAPES))
            else line[j] = (M.cell(v)) end
        end
        out[#out + 1] = table.concat(line, "\t")
    end
    return table.concat(out, "\n") .. "\n"
end

-- One result (a set of rows, or what a write did), with its status line.
-- opts: vertical, batch, null, width (switch to vertical when the table is
-- wider), elapsed (seconds, shown when opts.timing)
function M.result(res, opts)
    opts = opts or {}
    local parts = {}
    local function status(s)
        if opts.timing and opts.elapsed then s = s .. " " .. secs(opts.elapsed) end
        return s .. "\n"
    end
    local list = res.results or { res }
    for k, r in ipairs(list) do
        local cols = r.columns
        if cols and #cols > 0 then
            if opts.batch then
                parts[#parts + 1] = M.batch(r, opts)
            elseif #r == 0 then
                parts[#parts + 1] = status("Empty set")
            else
                local text
                -- (a table that cannot fit even with its values cut is shown expanded)
                if not opts.vertical then text = M.table(r, opts) end
                if not text then text = M.vertical(r, opts) end
                parts[#parts + 1] = text .. status(rows_word(#r) .. " in set")
            end
        elseif not opts.batch then
            local n = r.affected_rows or 0
            local w = r.warning_count or 0
            local s = "Query OK, " .. (n == 1 and "1 row" or (n .. " rows")) .. " affected"
                .. (w > 0 and (", " .. w .. (w == 1 and " warning" or " warnings")) or "")
            local lines = { status(s) }
            if r.info and r.info ~= "" then lines[#lines + 1] = r.info .. "\n" end
            if r.insert_id and r.insert_id ~= 0 then lines[#lines + 1] = "Last insert id: " .. r.insert_id .. "\n" end
            parts[#parts + 1] = table.concat(lines)
        end
        if k < #list and not opts.batch then parts[#parts + 1] = "\n" end
    end
    return table.concat(parts)
end

---------------------------------------------------------------------------
-- Machine-readable output (repl --csv / --json)
---------------------------------------------------------------------------

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function M.base64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = (a << 16) | ((b or 0) << 8) | (c or 0)
        local q = {}
        for k = 1, 4 do
            local idx = (n >> (6 * (4 - k))) & 63
            q[k] = B64:sub(idx + 1, idx + 1)
        end
        if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
        out[#out + 1] = table.concat(q)
    end
    return table.concat(out)
end

-- Bytes that are not text: invalid UTF-8, or control characters other than
-- tab, newline and carriage return.
local function is_binary(s)
    return not valid_utf8(s) or s:find("[%z\1-\8\11\12\14-\31\127]") ~= nil
end
M.is_binary = is_binary

-- The marker of a binary value: {"$base64": "..."} in JSON, base64:... in CSV.
M.BASE64_KEY, M.BASE64_PREFIX = "$base64", "base64:"

local function json_text(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        local e = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
        return e[c] or ("\\u%04x"):format(c:byte())
    end) .. '"'
end

-- One value as JSON: NULL null, integers, floats (shortest exact text;
-- NaN/inf null), booleans, text; binary {"$base64": "..."}.
function M.json_value(v)
    if is_null(v) then return "null" end
    local t = type(v)
    if t == "number" then
        if math.type(v) == "integer" then return tostring(v) end
        if v ~= v or v == math.huge or v == -math.huge then return "null" end
        local f = float_text(v)
        return f:find("[%.eE]") and f or (f .. ".0")
    end
    if t == "boolean" then return tostring(v) end
    if t == "string" then
        if is_binary(v) then return '{"' .. M.BASE64_KEY .. '":"' .. M.base64(v) .. '"}' end
        return json_text(v)
    end
    if t == "table" and not (getmetatable(v) and v.kind) then
        local parts = {}
        for i = 1, #v do parts[i] = M.json_value(v[i]) end
        return "[" .. table.concat(parts, ",") .. "]"
    end
    return json_text(tostring(v))
end

-- One JSON object per row, keys in column order, one per line.
function M.json_rows(res)
    local out = {}
    for _, r in ipairs(res.results or { res }) do
        local cols = r.columns
        if cols and #cols > 0 then
            for i = 1, #r do
                local parts = {}
                for j, c in ipairs(cols) do parts[j] = json_text(c) .. ":" .. M.json_value(r[i][c]) end
                out[#out + 1] = "{" .. table.concat(parts, ",") .. "}\n"
            end
        end
    end
    return table.concat(out)
end

-- An RFC 4180 field: quoted when it holds a comma, a quote, CR or LF (or
-- is empty text, so that NULL, an empty unquoted field, stays distinct).
local function csv_field(v)
    if is_null(v) then return "" end
    local s
    if type(v) == "string" then
        s = is_binary(v) and (M.BASE64_PREFIX .. M.base64(v)) or v
    elseif type(v) == "number" then
        s = math.type(v) == "integer" and tostring(v) or float_text(v)
    else
        s = tostring(v)
    end
    if s == "" or s:find('[,"\r\n]') then return '"' .. s:gsub('"', '""') .. '"' end
    return s
end
M.csv_field = csv_field

-- RFC 4180 CSV: a header row, then the rows; CRLF line ends. Each result set
-- of a statement is one such table.
function M.csv(res)
    local out = {}
    for _, r in ipairs(res.results or { res }) do
        local cols = r.columns
        if cols and #cols > 0 then
            local line = {}
            for j, c in ipairs(cols) do line[j] = csv_field(c) end
            out[#out + 1] = table.concat(line, ",") .. "\r\n"
            for i = 1, #r do
                for j, c in ipairs(cols) do line[j] = csv_field(r[i][c]) end
                out[#out + 1] = table.concat(line, ",") .. "\r\n"
            end
        end
    end
    return table.concat(out)
end

-- A Redis reply: JSON, one value per line; CSV, a "value" column with one
-- row per element of an array reply (one row for any other reply).
function M.redis_machine(v, format)
    if format == "json" then return M.json_value(v) .. "\n" end
    local out = { "value\r\n" }
    local list = (type(v) == "table" and not is_null(v)) and v or { v }
    for i = 1, math.max(#list, type(v) == "table" and 0 or 1) do
        local e = list[i]
        if type(e) == "table" and not is_null(e) then
            out[#out + 1] = csv_field(M.json_value(e)) .. "\r\n"
        else
            out[#out + 1] = csv_field(e) .. "\r\n"
        end
    end
    return table.concat(out)
end

---------------------------------------------------------------------------
-- Redis
---------------------------------------------------------------------------

-- redis-cli's sdscatrepr
function M.redis_quote(s)
    return '"' .. s:gsub('[%c"\\\128-\255]', function(c)
        if c == "\\" then return "\\\\" elseif c == '"' then return '\\"'
        elseif c == "\n" then return "\\n" elseif c == "\r" then return "\\r"
        elseif c == "\t" then return "\\t" elseif c == "\a" then return "\\a"
        elseif c == "\b" then return "\\b" end
        return ("\\x%02x"):format(c:byte())
    end) .. '"'
end

local function is_error(v) return type(v) == "table" and v.kind ~= nil and v.message ~= nil and getmetatable(v) ~= nil end

-- A reply as redis-cli shows it on a terminal. status: the top-level string
-- is a status reply (OK, PONG, QUEUED...), shown without quotes.
function M.redis(v, status, prefix)
    prefix = prefix or ""
    if is_null(v) then return "(nil)\n" end
    local t = type(v)
    if t == "string" then
        if status then return v .. "\n" end
        return M.redis_quote(v) .. "\n"
    end
    if t == "number" then
        if math.type(v) == "integer" then return "(integer) " .. v .. "\n" end
        return "(double) " .. float_text(v) .. "\n"
    end
    if is_error(v) then return "(error) " .. tostring(v.message) .. "\n" end
    if t == "table" then
        local n = #v
        if n == 0 then return "(empty array)\n" end
        local idxlen = #tostring(n)
        local sub = prefix .. (" "):rep(idxlen + 2)
        local out = {}
        for i = 1, n do
            out[#out + 1] = (i == 1 and "" or prefix) .. ("%" .. idxlen .. "d) "):format(i)
            out[#out + 1] = M.redis(v[i], false, sub)
        end
        return table.concat(out)
    end
    return tostring(v) .. "\n"
end

-- Commands whose (top-level, string) reply is a status, not a bulk string.
local STATUS = {
    SET = true, SETEX = true, PSETEX = true, MSET = true, SELECT = true, FLUSHDB = true, FLUSHALL = true,
    RENAME = true, TYPE = true, LSET = true, LTRIM = true, HMSET = true, AUTH = true, QUIT = true,
    SAVE = true, BGSAVE = true, BGREWRITEAOF = true, SHUTDOWN = true, SWAPDB = true, RESTORE = true,
    MIGRATE = true, PFMERGE = true, MULTI = true, DISCARD = true, WATCH = true, UNWATCH = true,
    READONLY = true, READWRITE = true, RESET = true, ASKING = true, SLAVEOF = true, REPLICAOF = true,
    XSETID = true, ["RESTORE-ASKING"] = true,
}
-- Container commands: their "OK" replies are statuses.
local STATUS_OK = { CONFIG = true, CLIENT = true, SCRIPT = true, FUNCTION = true, CLUSTER = true,
                    ACL = true, XGROUP = true, MODULE = true, DEBUG = true, MEMORY = true, LATENCY = true }

-- Whether the reply to argv, when a string, is a status reply.
function M.redis_status(argv, reply, in_multi)
    if type(reply) ~= "string" then return false end
    local cmd = tostring(argv[1] or ""):upper()
    if in_multi and reply == "QUEUED" then return true end
    if cmd == "PING" then return #argv == 1 end
    if cmd == "SET" then
        for i = 4, #argv do if tostring(argv[i]):upper() == "GET" then return false end end
        return true
    end
    if STATUS[cmd] then return true end
    if STATUS_OK[cmd] and reply == "OK" then return true end
    return false
end

-- redis-cli's argument splitting (sdssplitargs): spaces separate; "double"
-- quotes take \n \r \t \b \a \\ \" and \xHH; 'single' quotes take only \';
-- a closing quote must be followed by a space or the end.
-- Returns the list, or nil and "Invalid argument(s)".
function M.redis_split(line)
    local args = {}
    local i, n = 1, #line
    local HEX = "0123456789abcdefABCDEF"
    while true do
        while i <= n and line:sub(i, i):match("%s") do i = i + 1 end
        if i > n then return args end
        local cur = {}
        local inq, insq, done = false, false, false
        while not done do
            local c = line:sub(i, i)
            if inq then
                if i > n then return nil, "Invalid argument(s)" end
                if c == "\\" and line:sub(i + 1, i + 1) == "x" and i + 3 <= n
                    and HEX:find(line:sub(i + 2, i + 2), 1, true) and HEX:find(line:sub(i + 3, i + 3), 1, true) then
                    cur[#cur + 1] = string.char(tonumber(line:sub(i + 2, i + 3), 16))
                    i = i + 3
                elseif c == "\\" and i + 1 <= n then
                    local e = line:sub(i + 1, i + 1)
                    local map = { n = "\n", r = "\r", t = "\t", b = "\b", a = "\a" }
                    cur[#cur + 1] = map[e] or e
                    i = i + 1
                elseif c == '"' then
                    local nx = line:sub(i + 1, i + 1)
                    if nx ~= "" and not nx:match("%s") then return nil, "Invalid argument(s)" end
                    done = true
                else
                    cur[#cur + 1] = c
                end
            elseif insq then
                if i > n then return nil, "Invalid argument(s)" end
                if c == "\\" and line:sub(i + 1, i + 1) == "'" then
                    cur[#cur + 1] = "'"
                    i = i + 1
                elseif c == "'" then
                    local nx = line:sub(i + 1, i + 1)
                    if nx ~= "" and not nx:match("%s") then return nil, "Invalid argument(s)" end
                    done = true
                else
                    cur[#cur + 1] = c
                end
            else
                if i > n or c:match("%s") then
                    done = true
                elseif c == '"' then
                    inq = true
                elseif c == "'" then
                    insq = true
                else
                    cur[#cur + 1] = c
                end
            end
            if i <= n then i = i + 1 end
        end
        args[#args + 1] = table.concat(cur)
    end
end

---------------------------------------------------------------------------
-- Lua values
---------------------------------------------------------------------------
local function lua_key(k)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") then return k end
    return "[" .. M.lua(k, 1) .. "]"
end

-- A Lua value as text: strings quoted, tables expanded a few levels deep.
function M.lua(v, depth, seen)
    depth = depth or 0
    local t = type(v)
    if is_null(v) and v ~= nil then return "null" end
    if t == "string" then
        if valid_utf8(v) then return (("%q"):format(v):gsub("\\\n", "\\n")) end
        return hex(v)
    end
    if t == "number" then
        if math.type(v) == "float" then
            local f = float_text(v)
            return f:find("[%.eEn]") and f or (f .. ".0")
        end
        return tostring(v)
    end
    if t ~= "table" then return tostring(v) end
    local mt = getmetatable(v)
    if mt and mt.__tostring then return tostring(v) end
    seen = seen or {}
    if seen[v] then return "<cycle>" end
    if depth >= 4 then return "{...}" end
    seen[v] = true
    local parts = {}
    local n = #v
    local count = 0
    for i = 1, n do
        count = count + 1
        if count > 50 then parts[#parts + 1] = "..." break end
        parts[#parts + 1] = M.lua(v[i], depth + 1, seen)
    end
    local keys = {}
    for k in pairs(v) do
        if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b)
        if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
        return type(a) < type(b)
    end)
    for _, k in ipairs(keys) do
        count = count + 1
        if count > 50 then parts[#parts + 1] = "..." break end
        parts[#parts + 1] = lua_key(k) .. " = " .. M.lua(v[k], depth + 1, seen)
    end
    seen[v] = nil
    return "{" .. table.concat(parts, ", ") .. "}"
end

return M
