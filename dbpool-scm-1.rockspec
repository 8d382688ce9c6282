rockspec_format = "3.0"
package = "dbpool"
version = "scm-1"
source = { url = "git+file://." }
description = {
   summary = "Event-loop-free MySQL/MariaDB and Redis pools for Lua 5.4: every query a promise a coroutine can await",
   license = "MIT",
}
dependencies = { "lua >= 5.4" }
external_dependencies = {
   MARIADB = { header = "mariadb/mysql.h", library = "mariadb" },
   HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
}
build = {
   type = "builtin",
   modules = {
      dbpool = "lua/dbpool.lua",
      ["dbpool.core"] = {
         sources = { "lua/dbpool_core.c" },
         incdirs = { ".", "$(MARIADB_INCDIR)/mariadb", "$(HIREDIS_INCDIR)/hiredis" },
         libraries = { "mariadb", "hiredis", "m" },
         libdirs = { "$(MARIADB_LIBDIR)", "$(HIREDIS_LIBDIR)" },
         defines = { "_POSIX_C_SOURCE=200809L" },
      },
   },
   install = { bin = { dbpool = "scripts/dbpool" } },
}
