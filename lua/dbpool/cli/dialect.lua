-- dbpool.cli.dialect: what `dbpool migrate` and the REPL say differently to
-- each SQL backend, one entry per backend (pool._backend). Everything else in
-- the CLI is written against these entries, so a new backend (PostgreSQL) is
-- one more table here with the same fields:
--
--   name                   how messages name the server
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
-- PostgreSQL, when its backend lands, needs: quote with "..." ; ddl_commits
-- = false (its DDL is transactional; CREATE INDEX CONCURRENTLY and the like
-- need "-- dbpool: no-transaction"); now = clock_timestamp() (now() is the
-- transaction's start); the tables with TIMESTAMPTZ and TEXT; add_column with
-- ADD COLUMN IF NOT EXISTS; params turning '?' into $n; information_schema
-- queries on current_schema(); the lock as pg_advisory_lock on a bigint key
-- hashed from current_database(), current_schema() and the table (a wait
-- bounded with SET lock_timeout, pg_try_advisory_lock for 0), pg_locks for
-- lock_busy; \d from information_schema.columns and pg_index/pg_indexes;
-- cancel as SELECT pg_cancel_backend(id); use as SET search_path TO ....
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

-- The entry for a pool's backend, or nil (Redis has none).
function M.of(backend)
    return M[backend] ~= nil and type(M[backend]) == "table" and M[backend] or nil
end

return M
