-- MySQL -> MySQL batched copy, several batches in flight.
--
--   DATABASE_URL=mysql://user:pass@127.0.0.1:3306/app \
--     scripts/dbpool run scripts/examples/copy_mysql.lua [ROWS] [BATCH] [CONCURRENCY]
--
-- Source: the `db` pool (DATABASE_URL). Destination: DEST_DATABASE_URL, or the
-- same database. Self-contained: it first creates the source table
-- ex_copy_src with ROWS rows (default 20000), then copies it into ex_copy_dst
-- in BATCH-row pages (default 500), CONCURRENCY pages in flight (default 4),
-- and checks that both tables hold the same rows.
--
-- Pages are primary-key ranges (WHERE id BETWEEN lo AND hi), so memory stays
-- bounded whatever the table's size, and the copy can be re-run: rows are upserted.
local ROWS = math.tointeger(tonumber(arg[1])) or 20000
local BATCH = math.tointeger(tonumber(arg[2])) or 500
local CONCURRENCY = math.tointeger(tonumber(arg[3])) or 4
assert(db, "set DATABASE_URL (the source database)")
local dest = os.getenv("DEST_DATABASE_URL") and dbpool.open(os.getenv("DEST_DATABASE_URL")) or db

local COLUMNS = "id, email, name, balance, created_at, note"
local TABLE = [[(
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  email VARCHAR(120) NOT NULL,
  name VARCHAR(120) NOT NULL,
  balance DECIMAL(12,2) NOT NULL,
  created_at DATETIME NOT NULL,
  note TEXT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4]]

-- A multi-row INSERT with placeholders for n rows of 6 columns.
local function insert_sql(tbl, n, upsert)
    local row = "(?, ?, ?, ?, ?, ?)"
    local sql = "INSERT INTO " .. tbl .. " (" .. COLUMNS .. ") VALUES " .. (row .. ", "):rep(n - 1) .. row
    if upsert then
        sql = sql .. " ON DUPLICATE KEY UPDATE email = VALUES(email), name = VALUES(name),"
            .. " balance = VALUES(balance), created_at = VALUES(created_at), note = VALUES(note)"
    end
    return sql
end

-- 1. The source data (made in parallel batches too).
db:query("DROP TABLE IF EXISTS ex_copy_src"):await()
db:query("CREATE TABLE ex_copy_src " .. TABLE):await()
dest:query("DROP TABLE IF EXISTS ex_copy_dst"):await()
dest:query("CREATE TABLE ex_copy_dst " .. TABLE):await()

local seed_batches = {}
for first = 1, ROWS, BATCH do seed_batches[#seed_batches + 1] = first end
local seeding = dbpool.progress(ROWS, "seed ex_copy_src")
dbpool.map(seed_batches, function(first)
    local last = math.min(first + BATCH - 1, ROWS)
    local params = {}
    for id = first, last do
        local p = #params
        params[p + 1] = id
        params[p + 2] = ("user%d@example.com"):format(id)
        params[p + 3] = ("User %d ñ"):format(id)
        params[p + 4] = ("%d.%02d"):format(id * 7 % 10000, id % 100)
        params[p + 5] = ("2024-%02d-%02d 12:%02d:00"):format(id % 12 + 1, id % 28 + 1, id % 60)
        params[p + 6] = id % 10 == 0 and dbpool.null or ("note for " .. id)
    end
    db:query(insert_sql("ex_copy_src", last - first + 1), params):await()
    seeding:add(last - first + 1)
end, { concurrency = CONCURRENCY }):await()
seeding:done()

-- 2. The copy, by primary-key ranges: each worker reads a range and writes
-- it, CONCURRENCY ranges in flight. The ranges come from an iterator that
-- never awaits, so workers can pull from it at the same time (an iterator
-- that awaited, say reading "the page after the last id", would need a lock).
local bounds = db:query("SELECT COUNT(*) AS n, MIN(id) AS lo, MAX(id) AS hi FROM ex_copy_src"):await()[1]
local bar = dbpool.progress(bounds.n, "copy ex_copy_src -> ex_copy_dst")
local next_lo = bounds.n > 0 and bounds.lo or 1
local function ranges()
    if bounds.n == 0 or next_lo > bounds.hi then return nil end
    local lo = next_lo
    next_lo = lo + BATCH
    return { lo, lo + BATCH - 1 }
end
local copied = 0
dbpool.map(ranges, function(range)
    local page = db:query("SELECT " .. COLUMNS .. " FROM ex_copy_src WHERE id BETWEEN ? AND ? ORDER BY id",
        range):await()
    if #page == 0 then return 0 end
    local params = {}
    for _, r in ipairs(page) do
        local p = #params
        params[p + 1], params[p + 2], params[p + 3] = r.id, r.email, r.name
        params[p + 4], params[p + 5], params[p + 6] = r.balance, r.created_at, r.note
    end
    dest:query(insert_sql("ex_copy_dst", #page, true), params):await()
    copied = copied + #page
    bar:add(#page)
    return #page
end, { concurrency = CONCURRENCY }):await()
bar:done()

-- 3. The check: same count, same content.
local CHECK = "SELECT COUNT(*) AS n, COALESCE(SUM(CRC32(CONCAT_WS('|', id, email, name, balance, created_at,"
    .. " COALESCE(note, '<NULL>')))), 0) AS crc FROM "
local a = db:query(CHECK .. "ex_copy_src"):await()[1]
local b = dest:query(CHECK .. "ex_copy_dst"):await()[1]
print(("source:      %d rows, checksum %s"):format(a.n, tostring(a.crc)))
print(("destination: %d rows, checksum %s"):format(b.n, tostring(b.crc)))
if a.n ~= b.n or tostring(a.crc) ~= tostring(b.crc) then
    error(("copy mismatch: %d rows / %s at the source, %d rows / %s at the destination")
        :format(a.n, tostring(a.crc), b.n, tostring(b.crc)))
end
print(("copied %d rows in batches of %d, %d in flight: OK"):format(copied, BATCH, CONCURRENCY))
