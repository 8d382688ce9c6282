-- dbpool.cli.util: what the subcommands share.
--
--   * CLI errors: util.usage(msg) (exit 2) and util.fail(msg) (exit 1) raise a
--     table the one top-level handler in dbpool.cli.main turns into a message
--     and an exit code. No command calls os.exit.
--   * an option parser (GNU style: --opt value, --opt=value, -x, `--` ends);
--   * secrets: every password the command has seen (from URLs) and a scrubber
--     that takes them, and any user:password@ in a URL, out of a text;
--   * small helpers: JSON, shell quoting, files.
local M = {}

---------------------------------------------------------------------------
-- Errors that carry an exit code
---------------------------------------------------------------------------
local CliError = {}
CliError.__index = CliError
CliError.__tostring = function(e) return e.message end

-- exit: a key of dbpool.cli.main's EXIT table ("usage", "failure", ...)
local function cli_error(exit, message, fields)
    local e = setmetatable({ exit = exit, message = message }, CliError)
    if fields then for k, v in pairs(fields) do e[k] = v end end
    return e
end

function M.is_cli_error(e) return getmetatable(e) == CliError end

-- A usage mistake on the command line: the message, a hint, exit 2.
function M.usage(message, command)
    error(cli_error("usage", message, { command = command }), 0)
end

-- A failure already explained by message (no traceback): exit 1.
function M.fail(message, exit)
    error(cli_error(exit or "failure", message), 0)
end

M.cli_error = cli_error

---------------------------------------------------------------------------
-- Options
---------------------------------------------------------------------------

-- Parses argv[first..] against spec. spec maps option names ("--json", "-q")
-- to { key = "json" } for a flag, { key = "dir", value = true } for an option
-- with an argument (value = "number" checks it is a number, "integer" a
-- non-negative integer), or { key = ..., count = true } for repeatable flags.
-- { key = ..., list = true, value = true } collects every occurrence.
-- With opts.stop_at_positional, the first non-option ends parsing (for
-- `run SCRIPT args...`). Returns options, positionals.
function M.parse_options(argv, first, spec, command, opts)
    local out, pos = {}, {}
    local i = first or 1
    local n = #argv
    local function want_value(name, o, inline)
        local v = inline
        if v == nil then
            i = i + 1
            v = argv[i]
            if v == nil then M.usage(("option %s needs a value"):format(name), command) end
        end
        if o.value == "number" or o.value == "integer" then
            local x = tonumber(v)
            if not x or x ~= x or x < 0 or (o.value == "integer" and math.type(x) ~= "integer") then
                M.usage(("option %s needs a %s, got '%s'"):format(name,
                    o.value == "integer" and "whole number" or "non-negative number", v), command)
            end
            v = x
        end
        return v
    end
    while i <= n do
        local a = argv[i]
        if a == "--" then
            for j = i + 1, n do pos[#pos + 1] = argv[j] end
            break
        elseif a:sub(1, 1) == "-" and a ~= "-" then
            local name, inline = a:match("^(%-%-[^=]+)=(.*)$")
            name = name or a
            local o = spec[name]
            if not o then
                M.usage(("unknown option '%s'"):format(name), command)
            end
            if o.value then
                local v = want_value(name, o, inline)
                if o.list then
                    local l = out[o.key] or {}
                    l[#l + 1] = v
                    out[o.key] = l
                else
                    out[o.key] = v
                end
            else
                if inline ~= nil then M.usage(("option %s takes no value"):format(name), command) end
                if o.count then out[o.key] = (out[o.key] or 0) + 1 else out[o.key] = true end
            end
        else
            pos[#pos + 1] = a
            if opts and opts.stop_at_positional then
                for j = i + 1, n do pos[#pos + 1] = argv[j] end
                break
            end
        end
        i = i + 1
    end
    return out, pos
end

---------------------------------------------------------------------------
-- Secrets
---------------------------------------------------------------------------
local secrets = {}          -- list of strings to take out of any text we print
local secret_set = {}

local function pct_decode(s)
    return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Remembers a secret (short ones would garble text and guard nothing).
function M.add_secret(s)
    if type(s) ~= "string" or #s < 3 or secret_set[s] then return end
    secret_set[s] = true
    secrets[#secrets + 1] = s
    table.sort(secrets, function(a, b) return #a > #b end) -- longest first
end

-- The userinfo of a URL: user, password (raw, still percent-encoded) or nil.
local function url_userinfo(url)
    local rest = url:match("^%a[%w+.-]*://(.*)$")
    if not rest then return nil end
    local authority = rest:match("^([^/?#]*)")
    local userinfo = authority:match("^(.*)@")
    if not userinfo then return nil end
    local user, pw = userinfo:match("^([^:]*):(.*)$")
    if not user then return userinfo, nil end
    return user, pw
end

-- Remembers the password of a URL (encoded and decoded) and the URL itself.
function M.add_url_secrets(url)
    if type(url) ~= "string" then return end
    local _, pw = url_userinfo(url)
    if pw and pw ~= "" then
        M.add_secret(pw)
        M.add_secret(pct_decode(pw))
        M.add_secret(url)
    end
end

-- "scheme://user:password@host" -> "scheme://user:***@host" anywhere in s.
function M.redact_urls(s)
    return (s:gsub("(%a[%w+.-]*://)([^%s/'\"`]*)@", function(scheme, userinfo)
        local user = userinfo:match("^([^:]*):")
        if not user then return scheme .. userinfo .. "@" end
        return scheme .. user .. ":***@"
    end))
end

local function plain_replace(s, what, with)
    local out, start = {}, 1
    while true do
        local a, b = s:find(what, start, true)
        if not a then break end
        out[#out + 1] = s:sub(start, a - 1)
        out[#out + 1] = with
        start = b + 1
    end
    if start == 1 then return s end
    out[#out + 1] = s:sub(start)
    return table.concat(out)
end

-- Takes every known secret and every URL password out of s.
function M.scrub(s)
    s = tostring(s)
    for i = 1, #secrets do
        local x = secrets[i]
        if x:find("://", 1, true) then
            s = plain_replace(s, x, M.redact_urls(x))
        end
    end
    s = M.redact_urls(s)
    for i = 1, #secrets do s = plain_replace(s, secrets[i], "***") end
    return s
end

-- A URL safe to print: the core's redaction (it knows every URL form), else ours.
function M.redact(url)
    local ok, core = pcall(require, "dbpool.core")
    if ok and type(url) == "string" then
        local r = core.redact(url)
        if r ~= url or not url:find("@", 1, true) then return r end
    end
    return M.redact_urls(tostring(url))
end

---------------------------------------------------------------------------
-- JSON (for --json output: strings, numbers, booleans, nested tables)
---------------------------------------------------------------------------
local json_escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                       ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

local function json_string(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        return json_escapes[c] or ("\\u%04x"):format(c:byte())
    end) .. '"'
end

function M.json(v)
    local t = type(v)
    if v == nil then return "null" end
    if t == "boolean" then return tostring(v) end
    if t == "number" then
        if v ~= v or v == math.huge or v == -math.huge then return "null" end
        if math.type(v) == "integer" then return tostring(v) end
        return (("%.6g"):format(v))
    end
    if t == "string" then return json_string(v) end
    if t == "table" then
        if #v > 0 or next(v) == nil and getmetatable(v) == M.json_array then
            local parts = {}
            for i = 1, #v do parts[i] = M.json(v[i]) end
            return "[" .. table.concat(parts, ",") .. "]"
        end
        local keys = {}
        for k in pairs(v) do keys[#keys + 1] = tostring(k) end
        table.sort(keys)
        local parts = {}
        for i, k in ipairs(keys) do parts[i] = json_string(k) .. ":" .. M.json(v[k]) end
        return "{" .. table.concat(parts, ",") .. "}"
    end
    return "null" -- lightuserdata (dbpool.null) and the rest
end
M.json_array = {}

---------------------------------------------------------------------------
-- Files and the shell
---------------------------------------------------------------------------
function M.shell_quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function M.read_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s = f:read("a")
    f:close()
    return s
end

function M.file_exists(path)
    local f = io.open(path, "rb")
    if f then f:close() return true end
    return false
end

-- Whether path is a directory (io.open on a directory succeeds but reads fail).
function M.is_dir(path)
    local f = io.open(path, "rb")
    if not f then return false end
    local ok, _, code = f:read(1)
    f:close()
    return ok == nil and code == 21 -- EISDIR
end

-- The names in a directory (no "." / ".."), sorted; nil, err if it cannot be read.
-- Pure Lua has no readdir: ls is POSIX and always there.
function M.list_dir(path)
    if not M.is_dir(path) then return nil, path .. ": no such directory" end
    local p = io.popen("ls -1A -- " .. M.shell_quote(path) .. " 2>/dev/null")
    if not p then return nil, "cannot list " .. path end
    local names = {}
    for name in p:lines() do names[#names + 1] = name end
    p:close()
    table.sort(names)
    return names
end

function M.mkdir_p(path)
    local ok = os.execute("mkdir -p -- " .. M.shell_quote(path))
    return ok == true
end

-- Human durations: 0.000312 -> "0.31 ms", 2.5 -> "2.50 s"
function M.duration(s)
    if s < 1 then return ("%.2f ms"):format(s * 1000) end
    return ("%.2f s"):format(s)
end

return M
