-- tests/cli/strict.lua: strict parsers for checking the command's machine
-- output (`dbpool repl --csv/--json`, `dbpool migrate status --json`). They
-- accept only what the standards allow and raise on anything else, so a
-- test that parses output also checks its form.
--
--   local S = dofile("tests/cli/strict.lua")
--   S.json(text)        -> value (null is S.null); raises on trailing text
--   S.json_lines(text)  -> list of values, one per line (NDJSON)
--   S.csv(text)         -> list of records (lists of fields), RFC 4180:
--                          CRLF line ends, "..." fields with "" for a quote;
--                          a field's `quoted` flag is kept in S.csv_quoted
local S = {}
S.null = setmetatable({}, { __tostring = function() return "null" end })

local function fail(msg, pos) error(("strict: %s at byte %d"):format(msg, pos), 0) end

function S.json(text)
    local i = 1
    local function ws() i = text:find("[^ \t\r\n]", i) or #text + 1 end
    local value
    local function str()
        i = i + 1
        local out = {}
        while true do
            local c = text:sub(i, i)
            if c == "" then fail("unterminated string", i) end
            if c == '"' then i = i + 1 return table.concat(out) end
            if c:byte() < 32 then fail("control character in a string", i) end
            if c == "\\" then
                local e = text:sub(i + 1, i + 1)
                local map = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
                if map[e] then out[#out + 1] = map[e] i = i + 2
                elseif e == "u" then
                    local h = text:sub(i + 2, i + 5)
                    if not h:match("^%x%x%x%x$") then fail("bad \\u escape", i) end
                    local cp = tonumber(h, 16)
                    i = i + 6
                    if cp >= 0xD800 and cp <= 0xDBFF then
                        local h2 = text:match("^\\u(%x%x%x%x)", i)
                        if not h2 then fail("lone surrogate", i) end
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (tonumber(h2, 16) - 0xDC00)
                        i = i + 6
                    end
                    out[#out + 1] = utf8.char(cp)
                else fail("bad escape", i) end
            else
                out[#out + 1] = c
                i = i + 1
            end
        end
    end
    function value()
        ws()
        local c = text:sub(i, i)
        if c == "{" then
            i = i + 1
            local obj = {}
            ws()
            if text:sub(i, i) == "}" then i = i + 1 return obj end
            while true do
                ws()
                if text:sub(i, i) ~= '"' then fail("expected a key", i) end
                local k = str()
                ws()
                if text:sub(i, i) ~= ":" then fail("expected ':'", i) end
                i = i + 1
                if obj[k] ~= nil then fail("duplicate key " .. k, i) end
                obj[k] = value()
                ws()
                local d = text:sub(i, i)
                i = i + 1
                if d == "}" then return obj end
                if d ~= "," then fail("expected ',' or '}'", i - 1) end
            end
        elseif c == "[" then
            i = i + 1
            local arr = { n = 0 }
            ws()
            if text:sub(i, i) == "]" then i = i + 1 return arr end
            while true do
                arr.n = arr.n + 1
                arr[arr.n] = value()
                ws()
                local d = text:sub(i, i)
                i = i + 1
                if d == "]" then return arr end
                if d ~= "," then fail("expected ',' or ']'", i - 1) end
            end
        elseif c == '"' then return str()
        elseif text:sub(i, i + 3) == "true" then i = i + 4 return true
        elseif text:sub(i, i + 4) == "false" then i = i + 5 return false
        elseif text:sub(i, i + 3) == "null" then i = i + 4 return S.null
        else
            local num = text:match("^-?%d+%.?%d*[eE]?[+-]?%d*", i)
            local int = num and num:match("^-?(%d+)")
            if not num or (#int > 1 and int:sub(1, 1) == "0") or num:match("%.$") or num:match("%.[eE]")
                or num:match("[eE][+-]?$") then
                fail("bad value", i)
            end
            i = i + #num
            return math.tointeger(tonumber(num)) or tonumber(num)
        end
    end
    local v = value()
    ws()
    if i <= #text then fail("trailing text", i) end
    return v
end

function S.json_lines(text)
    local out = {}
    if text == "" then return out end
    if text:sub(-1) ~= "\n" then fail("the last line has no newline", #text) end
    for line in text:gmatch("(.-)\n") do out[#out + 1] = S.json(line) end
    return out
end

-- RFC 4180: records end with CRLF (the last one too, here: we write it so);
-- a field is quoted ("...", "" inside) or has no quote, comma, CR or LF.
function S.csv(text)
    local records, i, n = {}, 1, #text
    S.csv_quoted = {}
    while i <= n do
        local rec, quoted = {}, {}
        while true do
            local field
            if text:sub(i, i) == '"' then
                local parts = {}
                i = i + 1
                while true do
                    local q = text:find('"', i, true)
                    if not q then fail("unterminated quoted field", i) end
                    parts[#parts + 1] = text:sub(i, q - 1)
                    if text:sub(q + 1, q + 1) == '"' then
                        parts[#parts + 1] = '"'
                        i = q + 2
                    else
                        i = q + 1
                        break
                    end
                end
                field = table.concat(parts)
                quoted[#rec + 1] = true
            else
                local e = text:find('[,\r\n"]', i) or n + 1
                if text:sub(e, e) == '"' then fail("a quote inside an unquoted field", e) end
                field = text:sub(i, e - 1)
                i = e
            end
            rec[#rec + 1] = field
            local c = text:sub(i, i)
            if c == "," then i = i + 1
            elseif text:sub(i, i + 1) == "\r\n" then i = i + 2 break
            else fail("expected ',' or CRLF after a field", i) end
        end
        records[#records + 1] = rec
        S.csv_quoted[#records] = quoted
    end
    return records
end

return S
