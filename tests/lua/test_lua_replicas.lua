#!/usr/bin/env lua5.4
-- The Lua API of a MySQL pool with a read replica (scripts/mariadb-replica.sh):
-- the `replicas` option, routing, `{ on = ... }`, transactions on the primary,
-- read_your_writes, pool:nodes() and pool:stats(), and `dbpool ping` checking
-- every node. @@server_id says where a statement ran (1 primary, 2 replica).
package.path = arg[0]:match("^(.*)/[^/]*$") .. "/../lib/?.lua;" .. package.path
local T = require "tap"
local dbpool = require "dbpool"
local URL = T.env("DBPOOL_TEST_MYSQL_URL")
local PASSWORD = T.env("DBPOOL_TEST_MYSQL_PASSWORD")
local REPLICA_URL = T.env("DBPOOL_TEST_MYSQL_REPLICA_URL")
local REPLICA_ROOT_URL = T.env("DBPOOL_TEST_MYSQL_REPLICA_ROOT_URL")
local REPLICA_PORT = T.env("DBPOOL_TEST_MYSQL_REPLICA_PORT")
local REPO = T.env("DBPOOL_REPO")

-- Waits (up to `secs`) until node k of the pool is in `state`.
local function wait_state(db, k, state, secs)
    local t0 = dbpool._core.now()
    while dbpool._core.now() - t0 < (secs or 10) do
        local n = db:nodes()[k]
        if n and n.state == state then return true end
        dbpool.sleep(0.05):await()
    end
    return false
end

local function sid(r) return tonumber(r[1].sid) end

local db = dbpool.open(URL, { replicas = { REPLICA_URL }, max_lag = 2, max = 4 })
T.ok(not tostring(db):find(PASSWORD, 1, true) and tostring(db):find("+1 replica", 1, true),
    "tostring(pool) names the replicas, no password: " .. tostring(db))
T.ok(wait_state(db, 2, "ok"), "the replica's status is read in the background: usable")
T.is(sid(db:query("SELECT @@server_id AS sid"):await()), 2, "a SELECT runs on the replica")
T.is(sid(db:query("SELECT @@server_id AS sid", nil, { on = "primary" }):await()), 1, "{ on = \"primary\" } runs on the primary")
T.is(sid(db:query("SELECT @@server_id AS sid FOR UPDATE"):await()), 1, "SELECT ... FOR UPDATE runs on the primary")
T.raises(function() db:query("DELETE FROM rep_lua", nil, { on = "replica" }) end,
    "{ on = \"replica\" } for a write raises a usage error", "only a read")
T.raises(function() db:query("SELECT 1", nil, { on = "elsewhere" }) end, "a bad `on` raises", "primary")
db:query("DROP TABLE IF EXISTS rep_lua"):await()
db:query("CREATE TABLE rep_lua (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))"):await()
local in_tx = db:transaction(function(tx)
    tx:query("INSERT INTO rep_lua (v) VALUES ('tx')"):await()
    return sid(tx:query("SELECT @@server_id AS sid"):await())
end)
T.is(in_tx, 1, "a transaction runs on the primary")

-- read your writes, per query: 200 x insert then read at once
local stale, on_replica = 0, 0
for i = 1, 200 do
    local v = "ryw-" .. i
    db:query("INSERT INTO rep_lua (v) VALUES (?)", { v }):await()
    local r = db:query("SELECT COUNT(*) AS n, @@server_id AS sid FROM rep_lua WHERE v = ?", { v },
        { read_your_writes = true }):await()
    if r[1].n ~= 1 then stale = stale + 1 elseif sid(r) == 2 then on_replica = on_replica + 1 end
end
T.is(stale, 0, "200 x insert then read with { read_your_writes = true }: never stale (" .. on_replica .. " on the replica)")

local nodes = db:nodes()
T.is(#nodes, 2, "pool:nodes() lists the primary and the replica")
T.ok(nodes[1].role == "primary" and nodes[2].role == "replica" and nodes[2].state == "ok" and nodes[2].lag
    and nodes[2].routed > 0 and nodes[2].stats.ops > 0,
    ("each with role, state, lag and traffic (replica %s, lag %s s, %d sent)"):format(nodes[2].state, nodes[2].lag, nodes[2].routed))
local st = db:stats()
T.ok(st.nodes and #st.nodes == 2 and st.nodes[2].addr:find(REPLICA_PORT, 1, true), "pool:stats() has the nodes too")

-- dbpool ping checks every node
local function ping(url)
    local f = io.popen(("%s/scripts/dbpool ping '%s' 2>&1; echo rc=$?"):format(REPO, url))
    local out = f:read("a")
    f:close()
    return out
end
local purl = URL .. "?replica=127.0.0.1:" .. REPLICA_PORT
local out = ping(purl)
T.like(out, "ok replica 127.0.0.1:" .. REPLICA_PORT, "dbpool ping: a line for the replica")
T.like(out, "rc=0", "exit 0")
T.unlike(out, PASSWORD, "no password in its output")
local root = dbpool.open(REPLICA_ROOT_URL)
root:query("STOP SLAVE SQL_THREAD"):await()
out = ping(purl)
T.like(out, "warning: replica 127.0.0.1:" .. REPLICA_PORT .. " is stopped", "a stopped replica: a warning line")
T.like(out, "rc=0", "still exit 0 (the primary answers)")
root:query("START SLAVE SQL_THREAD"):await()
root:close():await()
out = ping(URL:gsub("127%.0%.0%.1:%d+", "127.0.0.1:1") .. "?replica=127.0.0.1:" .. REPLICA_PORT .. "&connect_timeout=1")
T.like(out, "rc=1", "the primary down: exit 1")

-- the REPL's \stats shows the nodes
do
    local f = io.popen(("printf 'SELECT 1;\\n\\\\stats\\n' | %s/scripts/dbpool repl '%s' 2>&1"):format(REPO, purl))
    local text = f:read("a")
    f:close()
    T.like(text, "replica 127.0.0.1:" .. REPLICA_PORT, "REPL \\stats: a line for the replica")
    T.like(text, "primary 127.0.0.1:", "... and for the primary")
    T.unlike(text, PASSWORD, "no password")
end

db:close():await()
T.done()
