-- bench/copy.lua - the 1M-row MySQL -> Redis copy of bench/bench_copy.sh, as
-- a `dbpool run` script: every row of bench_copy becomes the hash
-- copy:<id> (fields id, k, c), the rows streamed with db:rows().
--
--   DATABASE_URL=... REDIS_URL=... scripts/dbpool run bench/copy.lua FORM [N]
--
-- FORM: map     dbpool.map over db:rows(), fn awaits redis:hset(...) and
--               returns nothing (the form the README teaches), concurrency N (256)
--       window  a loop over db:rows() keeping N HSET promises in flight (1024)
--       many    a loop over db:rows() sending batches of N HSETs with
--               redis:call_many (2000), the next batch built while one is out
assert(db and redis, "set DATABASE_URL and REDIS_URL")
local form, n = arg[1] or "map", math.tointeger(tonumber(arg[2] or ""))
local SQL = "SELECT id, k, c FROM bench_copy"
local rows = 0
if form == "map" then
    -- (fn returns nothing: map keeps what fn returns for every item until it ends)
    dbpool.map(db:rows(SQL), function(r)
        rows = rows + 1
        redis:hset("copy:" .. r.id, "id", r.id, "k", r.k, "c", r.c):await()
    end, { concurrency = n or 256 }):await()
elseif form == "window" then
    local k, ring, head, tail = n or 1024, {}, 1, 0
    for r in db:rows(SQL) do
        tail = tail + 1
        ring[tail] = redis:hset("copy:" .. r.id, "id", r.id, "k", r.k, "c", r.c)
        rows = rows + 1
        if tail - head + 1 >= k then ring[head]:await(); ring[head] = nil; head = head + 1 end
    end
    for i = head, tail do ring[i]:await() end
elseif form == "many" then
    local k, batch, out = n or 2000, {}, nil
    for r in db:rows(SQL) do
        batch[#batch + 1] = { "HSET", "copy:" .. r.id, "id", r.id, "k", r.k, "c", r.c }
        rows = rows + 1
        if #batch == k then
            if out then out:await() end
            out, batch = redis:call_many(batch), {}
        end
    end
    if out then out:await() end
    if #batch > 0 then redis:call_many(batch):await() end
else
    error("copy.lua: FORM is map, window or many")
end
print(("copy.lua: %s copied %d rows"):format(form, rows))
