-- MySQL -> PostgreSQL: a table copied with pool:load fed by rows(), with
-- progress, then both sides compared (row count and a checksum).
--
--   DATABASE_URL=postgres://user:pass@127.0.0.1:5432/app \
--   MYSQL_URL=mysql://user:pass@127.0.0.1:3306/app \
--     scripts/dbpool run scripts/examples/mysql_to_postgres.lua [ROWS]
--
-- `db` is the PostgreSQL target (DATABASE_URL); the source is MYSQL_URL.
-- Self-contained: it creates the source table ex_orders with ROWS rows
-- (default 100000) on MySQL, and ex_orders on PostgreSQL (dropped first).
-- rows() streams the source and load() streams one COPY FROM STDIN into the
-- target: memory stays bounded whatever the table's size, and a failure
-- stores nothing on the PostgreSQL side (COPY is one statement).
local dbpool = require "dbpool"
local ROWS = math.tointeger(tonumber(arg[1])) or 100000
assert(db, "set DATABASE_URL (the PostgreSQL target)")
assert(os.getenv("MYSQL_URL"), "set MYSQL_URL (the MySQL source)")
local src <close> = dbpool.open(os.getenv("MYSQL_URL"), { max = 2 })

-- 1. The source table, filled by the server itself (MariaDB's seq_1_to_N).
src:query("DROP TABLE IF EXISTS ex_orders"):await()
src:query([[CREATE TABLE ex_orders (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  customer VARCHAR(64) NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  paid BOOL NOT NULL,
  note TEXT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4]]):await()
src:query([[INSERT INTO ex_orders
  SELECT seq, CONCAT('customer ', seq % 1000), (seq * 37) % 100000 / 100, seq % 3 = 0,
         IF(seq % 10 = 0, NULL, CONCAT('note ', seq))
  FROM seq_1_to_]] .. ROWS):await()

-- 2. The target table.
db:query("DROP TABLE IF EXISTS ex_orders"):await()
db:query([[CREATE TABLE ex_orders (
  id int PRIMARY KEY, customer text NOT NULL, amount numeric(12,2) NOT NULL, paid bool NOT NULL, note text)]]):await()

-- 3. The copy: rows() of one pool feeds load() of the other.
local bar = dbpool.progress(ROWS, "copy ex_orders")
local last = 0
local copied = db:load("ex_orders", { "id", "customer", "amount", "paid", "note" },
    src:rows("SELECT id, customer, amount, paid <> 0 AS paid, note FROM ex_orders ORDER BY id"),
    { progress = function(n) bar:add(n - last); last = n end, progress_every = 5000 }):await()
bar:done()

-- 4. Both sides compared: count, sum of ids, sum of amounts (exact decimals), NULL notes.
local a = src:query([[SELECT COUNT(*) AS n, SUM(id) AS ids, SUM(amount) AS amount,
  SUM(paid) AS paid, SUM(note IS NULL) AS nulls FROM ex_orders]]):await()[1]
local b = db:query([[SELECT count(*) AS n, sum(id) AS ids, sum(amount) AS amount,
  sum(paid::int) AS paid, sum((note IS NULL)::int) AS nulls FROM ex_orders]]):await()[1]
local same = tonumber(a.n) == tonumber(b.n) and tonumber(a.ids) == tonumber(b.ids) and
    a.amount == b.amount and tonumber(a.paid) == tonumber(b.paid) and tonumber(a.nulls) == tonumber(b.nulls)
print(("copied %d rows; MySQL: %s rows, ids %s, amount %s, paid %s, NULL notes %s"):format(
    copied, a.n, a.ids, a.amount, a.paid, a.nulls))
print(("                PostgreSQL: %s rows, ids %s, amount %s, paid %s, NULL notes %s"):format(
    b.n, b.ids, b.amount, b.paid, b.nulls))
if not same then error("the two sides differ") end
print("both sides agree")
