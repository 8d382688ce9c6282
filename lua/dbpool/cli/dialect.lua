-- dbpool.cli.dialect: what `dbpool migrate` and the REPL say differently to
-- each SQL backend, one entry per backend (pool._backend). Everything else in
-- the CLI is written against these entries, so a new backend is one more
-- table here with the same fields (MySQL and PostgreSQL below):
--
--   name                   how messages name the server
--   split                  the statement splitter's flavor (dbpool.cli.sql)
--   quote(ident)           a quoted identifier
--   ddl_commits            DDL ends the open transaction (what a failure cannot roll back)
--   commits_implicitly(s)  whether statement s commits implicitly (when ddl_commits)
--   begin, commit, rollback
--   now                    an SQL expression for the current time, microseconds
--   migrations_ddl(q)      CREATE TABLE IF NOT EXISTS for the versioned table q
--   repeatable_ddl(q)      CREATE TABLE IF NOT EXISTS for the repeatable table q
--   add_column(q, name)    ALTER TABLE adding a column that older tables lack
--   params(text)           the CLI's own statements are written with '?'
--                          placeholders: this gives the backend's (identity
--                          on MySQL; $1, $2... on PostgreSQL)
--   table_exists           SQL, param: the table's name; a row with n
--   columns_of             SQL, param: the table's name; rows with name
--   lock(run, tbl, timeout)   takes the migrations' session lock, waiting up
--                          to timeout seconds (0: not at all) -> true | false;
--                          run(sql, params) runs a statement on the session
--   unlock(run, tbl), lock_busy(run, tbl) -> whether another session holds it
--   list_tables            SQL: the REPL's \d
--   describe_columns, describe_indexes   SQL, params: schema (or NULL), table
--   completion_names       SQL: rows of tbl, col in the current database
--   keywords               SQL keywords offered by tab completion
--   cancel(id)             SQL, run on another connection, that stops the
--                          statement running on session id (the REPL's Ctrl-C)
--   use(name)              SQL that makes name the current database again
--                          (the REPL, after a reconnect)
--
-- SQL given here is in the backend's own placeholders.
--
local sql = require "dbpool.cli.sql"

local M = {}

-- The migrations' lock is named after the database and the bookkeeping
-- table, so two projects in one server never wait for each other (MySQL
-- lock names: at most 64 characters).
local MY_LOCK = "CONCAT('dbpool_migrate:', SHA1(CONCAT(IFNULL(DATABASE(), ''), '.', ?)))"
local NULL = require("dbpool").null

local MY_COLUMNS = {
    status = "ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'applied'",
    error = "ADD COLUMN error TEXT NULL",
    statements_done = "ADD COLUMN statements_done INT UNSIGNED NOT NULL DEFAULT 0",
}

M.mysql = {
    name = "MySQL/MariaDB",
    split = sql.MYSQL,
    quote = function(id) return "`" .. tostring(id):gsub("`", "``") .. "`" end,
    ddl_commits = true,
    commits_implicitly = sql.commits_implicitly,
    begin = "BEGIN", commit = "COMMIT", rollback = "ROLLBACK",
    now = "NOW(6)",
    migrations_ddl = function(q)
        return "CREATE TABLE IF NOT EXISTS " .. q .. [[ (
  version BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  checksum CHAR(64) NOT NULL,
  applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  duration_ms INT UNSIGNED NOT NULL DEFAULT 0,
  status VARCHAR(16) NOT NULL DEFAULT 'applied',
  error TEXT NULL,
  statements_done INT UNSIGNED NOT NULL DEFAULT 0
) ENGINE=InnoDB]]
    end,
    repeatable_ddl = function(q)
        return "CREATE TABLE IF NOT EXISTS " .. q .. [[ (
  name VARCHAR(255) NOT NULL PRIMARY KEY,
  checksum CHAR(64) NOT NULL,
  applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  duration_ms INT UNSIGNED NOT NULL DEFAULT 0,
  status VARCHAR(16) NOT NULL DEFAULT 'applied',
  error TEXT NULL,
  statements_done INT UNSIGNED NOT NULL DEFAULT 0
) ENGINE=InnoDB]]
    end,
    add_column = function(q, name) return MY_COLUMNS[name] and ("ALTER TABLE " .. q .. " " .. MY_COLUMNS[name]) end,
    table_exists = "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
    columns_of = "SELECT column_name AS name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?",
    params = function(text) return text end,
    cancel = function(id) return "KILL QUERY " .. math.tointeger(id) end,
    use = function(name) return "USE " .. name end,
    lock = function(run, tbl, timeout)
        return run("SELECT GET_LOCK(" .. MY_LOCK .. ", ?) AS got", { tbl, timeout })[1].got == 1
    end,
    unlock = function(run, tbl) run("DO RELEASE_LOCK(" .. MY_LOCK .. ")", { tbl }) end,
    lock_busy = function(run, tbl)
        local h = run("SELECT IS_USED_LOCK(" .. MY_LOCK .. ") AS holder", { tbl })[1].holder
        return h ~= nil and h ~= NULL
    end,
    list_tables = [[SELECT table_name AS `table`, LOWER(table_type) AS `type`, engine AS `engine`,
  table_rows AS `rows (estimate)`, table_comment AS `comment`
FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY table_name]],
    describe_columns = [[SELECT column_name AS `column`, column_type AS `type`,
  IF(is_nullable = 'YES', 'yes', 'no') AS `null`,
  CASE WHEN column_default IS NULL THEN '' WHEN column_default = 'NULL' THEN NULL ELSE column_default END AS `default`,
  CONCAT_WS(' ', NULLIF(column_key, ''), NULLIF(extra, '')) AS `key / extra`
FROM information_schema.columns WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?
ORDER BY ordinal_position]],
    describe_indexes = [[SELECT index_name AS `index`, IF(non_unique = 0, 'yes', 'no') AS `unique`,
  GROUP_CONCAT(column_name ORDER BY seq_in_index SEPARATOR ', ') AS `columns`, index_type AS `type`
FROM information_schema.statistics WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?
GROUP BY index_name, non_unique, index_type ORDER BY index_name = 'PRIMARY' DESC, index_name]],
    completion_names = [[SELECT table_name AS tbl, column_name AS col FROM information_schema.columns
WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position]],
    keywords = {
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "NULL", "IS", "IN", "LIKE", "BETWEEN", "EXISTS",
        "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE", "REPLACE", "CREATE", "ALTER", "DROP",
        "TABLE", "INDEX", "VIEW", "DATABASE", "SCHEMA", "TRIGGER", "PROCEDURE", "FUNCTION", "TRUNCATE",
        "RENAME", "JOIN", "LEFT", "RIGHT", "INNER", "OUTER", "CROSS", "ON", "USING", "AS", "DISTINCT",
        "GROUP", "BY", "ORDER", "ASC", "DESC", "HAVING", "LIMIT", "OFFSET", "UNION", "ALL", "CASE",
        "WHEN", "THEN", "ELSE", "END", "BEGIN", "COMMIT", "ROLLBACK", "START", "TRANSACTION", "SHOW",
        "TABLES", "DATABASES", "COLUMNS", "DESCRIBE", "EXPLAIN", "USE", "PRIMARY", "KEY", "FOREIGN",
        "REFERENCES", "UNIQUE", "DEFAULT", "AUTO_INCREMENT", "COUNT", "SUM", "MIN", "MAX", "AVG",
        "COALESCE", "IFNULL", "CONCAT", "NOW", "WITH", "RECURSIVE", "DUPLICATE", "IGNORE", "GRANT",
        "REVOKE", "INT", "BIGINT", "VARCHAR", "TEXT", "BLOB", "DATETIME", "TIMESTAMP", "DECIMAL",
        "ENGINE", "CHARSET", "COLLATE", "PROCESSLIST", "VARIABLES", "STATUS", "KILL", "FOR",
    },
}

-- PostgreSQL. Its DDL is transactional, so a failed migration leaves
-- nothing behind (statements that cannot run in a transaction, such as
-- CREATE INDEX CONCURRENTLY, need "-- dbpool: no-transaction"). The lock is
-- an advisory lock keyed by (a constant, a hash of the database, schema and
-- table), held by the session.
local PG_KEY = "4242, hashtext(current_database() || '.' || current_schema() || '.' || $1)"
local PG_COLUMNS = {
    status = "ADD COLUMN IF NOT EXISTS status VARCHAR(16) NOT NULL DEFAULT 'applied'",
    error = "ADD COLUMN IF NOT EXISTS error TEXT NULL",
    statements_done = "ADD COLUMN IF NOT EXISTS statements_done INTEGER NOT NULL DEFAULT 0",
}

local function pg_table(q, key, keytype)
    return "CREATE TABLE IF NOT EXISTS " .. q .. " (\n  " .. key .. " " .. keytype .. [[ NOT NULL PRIMARY KEY,
  ]] .. (key == "version" and "name VARCHAR(255) NOT NULL,\n  " or "") .. [[checksum CHAR(64) NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  duration_ms INTEGER NOT NULL DEFAULT 0,
  status VARCHAR(16) NOT NULL DEFAULT 'applied',
  error TEXT NULL,
  statements_done INTEGER NOT NULL DEFAULT 0
)]]
end

M.postgres = {
    name = "PostgreSQL",
    split = sql.POSTGRES,
    quote = function(id) return '"' .. tostring(id):gsub('"', '""') .. '"' end,
    ddl_commits = false,
    commits_implicitly = function() return false end,
    begin = "BEGIN", commit = "COMMIT", rollback = "ROLLBACK",
    now = "clock_timestamp()",   -- now() is the transaction's start
    migrations_ddl = function(q) return pg_table(q, "version", "BIGINT") end,
    repeatable_ddl = function(q) return pg_table(q, "name", "VARCHAR(255)") end,
    add_column = function(q, name) return PG_COLUMNS[name] and ("ALTER TABLE " .. q .. " " .. PG_COLUMNS[name]) end,
    table_exists = "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
    columns_of = "SELECT column_name::text AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
    -- the CLI's own statements use '?' only as placeholders
    params = function(text)
        local n = 0
        return (text:gsub("%?", function() n = n + 1 return "$" .. n end))
    end,
    cancel = function(id) return "SELECT pg_cancel_backend(" .. math.tointeger(id) .. ")" end,
    use = function(name) return "SET search_path TO " .. name end,
    lock = function(run, tbl, timeout)
        if timeout <= 0 then
            return run("SELECT pg_try_advisory_lock(" .. PG_KEY .. ") AS got", { tbl })[1].got == true
        end
        run("SET lock_timeout = " .. math.max(1, math.floor(timeout * 1000)), {})
        local ok, err = pcall(run, "SELECT pg_advisory_lock(" .. PG_KEY .. ")", { tbl })
        run("SET lock_timeout = 0", {})
        if ok then return true end
        if type(err) == "table" and err.sqlstate == "55P03" then return false end -- lock_not_available
        error(err, 0)
    end,
    unlock = function(run, tbl) run("SELECT pg_advisory_unlock(" .. PG_KEY .. ")", { tbl }) end,
    lock_busy = function(run, tbl)
        return run([[SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = 4242 AND objsubid = 2
  AND objid = (hashtext(current_database() || '.' || current_schema() || '.' || $1)::bigint & 4294967295)::oid
  AND granted AND pid <> pg_backend_pid()]], { tbl })[1].n > 0
    end,
    list_tables = [[SELECT c.relname AS "table",
  CASE c.relkind WHEN 'r' THEN 'base table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
    WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table' ELSE c.relkind::text END AS "type",
  GREATEST(c.reltuples, 0)::bigint AS "rows (estimate)", obj_description(c.oid, 'pg_class') AS "comment"
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY c.relname]],
    describe_columns = [[SELECT c.column_name::text AS "column",
  CASE WHEN c.character_maximum_length IS NOT NULL THEN c.data_type || '(' || c.character_maximum_length || ')'
       WHEN c.data_type = 'numeric' AND c.numeric_precision IS NOT NULL
         THEN 'numeric(' || c.numeric_precision || ',' || c.numeric_scale || ')'
       ELSE c.data_type END AS "type",
  CASE WHEN c.is_nullable = 'YES' THEN 'yes' ELSE 'no' END AS "null",
  c.column_default AS "default",
  CASE WHEN EXISTS (SELECT 1 FROM information_schema.table_constraints t
                    JOIN information_schema.key_column_usage k
                      ON k.constraint_schema = t.constraint_schema AND k.constraint_name = t.constraint_name
                    WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_schema = c.table_schema
                      AND k.table_name = c.table_name AND k.column_name = c.column_name) THEN 'PRI'
       ELSE '' END || CASE WHEN c.is_identity = 'YES' THEN ' identity' ELSE '' END AS "key / extra"
FROM information_schema.columns c
WHERE c.table_schema = COALESCE($1, current_schema()) AND c.table_name = $2 ORDER BY c.ordinal_position]],
    describe_indexes = [[SELECT i.relname AS "index", CASE WHEN x.indisunique THEN 'yes' ELSE 'no' END AS "unique",
  (SELECT string_agg(a.attname, ', ' ORDER BY k.ord)
     FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
     JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) AS "columns",
  am.amname AS "type"
FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = i.relam
WHERE n.nspname = COALESCE($1, current_schema()) AND t.relname = $2
ORDER BY x.indisprimary DESC, i.relname]],
    completion_names = [[SELECT table_name::text AS tbl, column_name::text AS col FROM information_schema.columns
WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position]],
    keywords = {
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "NULL", "IS", "IN", "LIKE", "ILIKE", "BETWEEN",
        "EXISTS", "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE", "CREATE", "ALTER", "DROP",
        "TABLE", "INDEX", "VIEW", "MATERIALIZED", "SCHEMA", "TRIGGER", "FUNCTION", "TRUNCATE", "RENAME",
        "JOIN", "LEFT", "RIGHT", "INNER", "OUTER", "CROSS", "FULL", "LATERAL", "ON", "USING", "AS",
        "DISTINCT", "GROUP", "BY", "ORDER", "ASC", "DESC", "NULLS", "FIRST", "LAST", "HAVING", "LIMIT",
        "OFFSET", "UNION", "ALL", "CASE", "WHEN", "THEN", "ELSE", "END", "BEGIN", "COMMIT", "ROLLBACK",
        "START", "TRANSACTION", "SHOW", "EXPLAIN", "ANALYZE", "VACUUM", "PRIMARY", "KEY", "FOREIGN",
        "REFERENCES", "UNIQUE", "DEFAULT", "RETURNING", "CONFLICT", "DO", "NOTHING", "COUNT", "SUM",
        "MIN", "MAX", "AVG", "COALESCE", "NULLIF", "NOW", "WITH", "RECURSIVE", "GRANT", "REVOKE",
        "INTEGER", "BIGINT", "TEXT", "VARCHAR", "BOOLEAN", "BYTEA", "NUMERIC", "TIMESTAMPTZ", "JSONB",
        "UUID", "SERIAL", "CONCURRENTLY", "LISTEN", "NOTIFY", "COPY", "FOR",
    },
}

-- The splitter's flavor for a URL, before any connection (migration files
-- are read first): PostgreSQL's for postgres:// and postgresql://.
function M.split_for_url(url)
    local scheme = type(url) == "string" and url:match("^(%a+)://") or ""
    return (scheme == "postgres" or scheme == "postgresql") and sql.POSTGRES or sql.MYSQL
end

-- The entry for a pool's backend, or nil (Redis has none).
function M.of(backend)
    return M[backend] ~= nil and type(M[backend]) == "table" and M[backend] or nil
end

return M
