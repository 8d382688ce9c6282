-- A re-keying job: moves Redis keys from an old naming scheme to a new one,
-- value and TTL included, as a migration between key layouts would.
--
--   REDIS_URL=redis://... scripts/dbpool run scripts/examples/rekey_redis.lua [KEYS] [CONCURRENCY]
--
--   ex:legacy:session:<n>  ->  ex:session:{<n>}
--
-- Each key is copied with DUMP / PTTL / RESTORE (any type, binary-safe, the
-- TTL kept), then the old key is deleted; the target may be another server
-- (TARGET_REDIS_URL), so keys can move between instances too. The job is
-- idempotent: RESTORE ... REPLACE, and a key already moved is simply gone
-- from the old scheme. Self-contained: it first writes KEYS (default 20000)
-- legacy keys, hashes and strings, a third of them with a TTL.
local KEYS = math.tointeger(tonumber(arg[1])) or 20000
local CONCURRENCY = math.tointeger(tonumber(arg[2])) or 32
assert(redis, "set REDIS_URL")
local target = os.getenv("TARGET_REDIS_URL") and dbpool.open(os.getenv("TARGET_REDIS_URL")) or redis

local OLD, NEW = "ex:legacy:session:", "ex:session:"

-- Deletes every key matching pattern on pool (SCAN + UNLINK).
local function wipe(pool, pattern)
    local cursor = "0"
    repeat
        local r = pool:call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000):await()
        cursor = r[1]
        if #r[2] > 0 then pool:call("UNLINK", table.unpack(r[2])):await() end
    until cursor == "0"
end

-- 1. The legacy keys.
wipe(redis, OLD .. "*")
wipe(target, NEW .. "*")
local ids = {}
for n = 1, KEYS do ids[n] = n end
dbpool.map(ids, function(n)
    local key = OLD .. n
    if n % 2 == 0 then
        redis:call("HSET", key, "user", "u" .. n, "agent", "curl/8." .. n % 10, "blob", "\0\1\2" .. n):await()
    else
        redis:call("SET", key, "token-" .. n .. "\255"):await()
    end
    if n % 3 == 0 then redis:call("PEXPIRE", key, 3600000 + n):await() end
end, { concurrency = CONCURRENCY }):await()

-- 2. The move. SCAN walks the old keys page by page; each page is moved
-- with CONCURRENCY keys in flight. (Keys deleted during a SCAN do not make
-- it skip the others: SCAN returns every key present for its whole length.)
local bar = dbpool.progress(KEYS, "rekey " .. OLD .. "* -> " .. NEW .. "{*}")
local moved, cursor = 0, "0"
repeat
    local page = redis:call("SCAN", cursor, "MATCH", OLD .. "*", "COUNT", 500):await()
    cursor = page[1]
    dbpool.map(page[2], function(old)
        local id = old:sub(#OLD + 1)
        local dump, pttl = table.unpack(dbpool.all({ redis:call("DUMP", old), redis:call("PTTL", old) }):await())
        if dump == dbpool.null then return end -- gone meanwhile (expired, or moved by another run)
        target:call("RESTORE", NEW .. "{" .. id .. "}", pttl > 0 and pttl or 0, dump, "REPLACE"):await()
        redis:call("DEL", old):await()
        moved = moved + 1
        bar:add(1)
    end, { concurrency = CONCURRENCY }):await()
until cursor == "0"
bar:done()

-- 3. The check: no old key left, every new one there, values and TTLs kept.
local left = 0
cursor = "0"
repeat
    local r = redis:call("SCAN", cursor, "MATCH", OLD .. "*", "COUNT", 1000):await()
    cursor, left = r[1], left + #r[2]
until cursor == "0"
assert(left == 0, left .. " old keys are left")
for _, n in ipairs({ 1, 2, 3, 6, KEYS }) do
    local key = NEW .. "{" .. n .. "}"
    if n % 2 == 0 then
        assert(target:call("HGET", key, "blob"):await() == "\0\1\2" .. n, key .. ": the hash was not moved intact")
    else
        assert(target:call("GET", key):await() == "token-" .. n .. "\255", key .. ": the value was not moved intact")
    end
    local ttl = target:call("PTTL", key):await()
    if n % 3 == 0 then assert(ttl > 3000000, key .. ": the TTL was lost") else assert(ttl == -1, key .. ": a TTL appeared") end
end
print(("moved %d keys %s<n> -> %s{<n>} (values and TTLs kept), %d in flight: OK"):format(moved, OLD, NEW, CONCURRENCY))
