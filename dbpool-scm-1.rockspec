rockspec_format = "3.0"
package = "dbpool"
version = "scm-1"
source = { url = "git+file://." }
description = {
   summary = "Event-loop-free MySQL/MariaDB, PostgreSQL and Redis pools for Lua 5.4: every query a promise a coroutine can await",
   license = "MIT",
}
dependencies = { "lua >= 5.4" }
external_dependencies = {
   MARIADB = { header = "mariadb/mysql.h", library = "mariadb" },
   HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
   PQ = { header = "postgresql/libpq-fe.h", library = "pq" },
}
build = {
   type = "builtin",
   modules = {
      dbpool = "lua/dbpool.lua",
      ["dbpool.cli.dialect"] = "lua/dbpool/cli/dialect.lua",
      ["dbpool.cli.help"] = "lua/dbpool/cli/help.lua",
      ["dbpool.cli.main"] = "lua/dbpool/cli/main.lua",
      ["dbpool.cli.migrate"] = "lua/dbpool/cli/migrate.lua",
      ["dbpool.cli.ping"] = "lua/dbpool/cli/ping.lua",
      ["dbpool.cli.render"] = "lua/dbpool/cli/render.lua",
      ["dbpool.cli.repl"] = "lua/dbpool/cli/repl.lua",
      ["dbpool.cli.repl_core"] = "lua/dbpool/cli/repl_core.lua",
      ["dbpool.cli.repl_term"] = "lua/dbpool/cli/repl_term.lua",
      ["dbpool.cli.run"] = "lua/dbpool/cli/run.lua",
      ["dbpool.cli.sha256"] = "lua/dbpool/cli/sha256.lua",
      ["dbpool.cli.sql"] = "lua/dbpool/cli/sql.lua",
      ["dbpool.cli.util"] = "lua/dbpool/cli/util.lua",
      ["dbpool.progress"] = "lua/dbpool/progress.lua",
      ["dbpool.core"] = {
         sources = { "lua/dbpool_core.c" },
         incdirs = { ".", "$(MARIADB_INCDIR)/mariadb", "$(HIREDIS_INCDIR)/hiredis", "$(PQ_INCDIR)/postgresql" },
         libraries = { "mariadb", "pq", "hiredis", "m", "pthread" },
         libdirs = { "$(MARIADB_LIBDIR)", "$(PQ_LIBDIR)", "$(HIREDIS_LIBDIR)" },
         defines = { "_POSIX_C_SOURCE=200809L" },
      },
   },
   install = { bin = { dbpool = "scripts/dbpool" } },
}
