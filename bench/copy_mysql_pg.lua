-- bench/copy_mysql_pg.sh's dbpool side: bench_copy_src (MySQL) streamed into
-- bench_copy_dst (PostgreSQL) with pool:load fed by rows().
local dbpool = require "dbpool"
local src = dbpool.open(arg[1], { max = 1 })
local dst = dbpool.open(arg[2], { max = 1 })
local n = dbpool.run(function()
    return dst:load("bench_copy_dst", { "id", "k", "c", "amount", "note" },
        src:rows("SELECT id, k, c, amount, note FROM bench_copy_src")):await()
end)
print(n)
