-- dbpool.cli.help: `dbpool --help` and `dbpool help COMMAND`.
local util = require "dbpool.cli.util"

local M = {}

local OVERVIEW = [[
usage: dbpool [--quiet] COMMAND [ARGS...]
       dbpool --help | --version | help COMMAND

MySQL/MariaDB and Redis pools from the command line: run migration scripts
with many queries in flight, an admin REPL, versioned schema migrations and a
health probe.

Commands:
  run SCRIPT [ARGS...]        run a Lua script as a dbpool task (globals db, redis)
  repl [[NAME=]URL...]        the admin REPL: SQL, Redis commands and Lua
  migrate up|down|status|baseline|repair|new
                              versioned and repeatable migrations, recorded in a table
  ping [URL]                  readiness probe: round trip, server version, stats
  help [COMMAND]              this text, or a command's

Global options:
  -h, --help      show this help
  -V, --version   show the version
  -q, --quiet     no progress output (same as DBPOOL_QUIET=1)

Environment:
  DATABASE_URL    mysql://user:password@host:port/db?max=8  (run: `db`, repl, migrate, ping)
  REDIS_URL       redis://:password@host:port/0             (run: `redis`, repl)

URLs are printed without their password everywhere (messages, history).
Exit status: 0 ok, 1 failure, 2 usage error, 130/143 stopped by SIGINT/SIGTERM.
See docs/cli.md for the full reference.
]]

local TEXT = {}

TEXT.run = [[
usage: dbpool run [OPTIONS] SCRIPT [ARGS...]

Runs the Lua 5.4 script SCRIPT ('-' reads it from stdin) as a dbpool task:
it may await promises anywhere, spawn tasks and use dbpool.map. The command
returns once the script and everything it spawned have settled and every pool
is closed gracefully.

The script sees:
  db       a pool opened from DATABASE_URL (when set)
  redis    a pool opened from REDIS_URL (when set)
  dbpool   the module (require "dbpool" gives the same table)
  arg      arg[0] = SCRIPT, arg[1..n] = ARGS; `...` holds ARGS too
  os.exit(code)  ends the script with that code, after the pools drained

Options:
  --drain-timeout S   on SIGINT/SIGTERM, seconds in-flight ops may take to
                      settle before they are cut off (default 10)
  -q, --quiet         no progress output (dbpool.progress); also DBPOOL_QUIET=1

Signals: on the first SIGINT or SIGTERM no new op is accepted (a task that
submits one gets a "pool is closing" error), ops already accepted settle up to
the drain deadline, the pools close, a summary of what was cut is printed and
the command exits 130 (SIGINT) or 143 (SIGTERM). A second signal exits at once.

Exit status: 0 only when the script and every op it started succeeded; 1 when
the script raised (message and traceback printed, passwords removed) or an op
nobody awaited failed; 2 usage; 130/143 stopped by a signal.
]]

TEXT.repl = [[
usage: dbpool repl [OPTIONS] [[NAME=]URL...]
       dbpool repl -e STATEMENT [--csv|--json] [[NAME=]URL...]

The admin REPL. Each URL opens a named connection (NAME=URL, or by default
"db" for the first MySQL URL and "redis" for the first Redis URL). Without
URLs: DATABASE_URL and REDIS_URL. The first one is current.

Input, on the current connection:
  MySQL   SQL ending with ';' (several lines allowed), or '\G' for a
          vertical display; DELIMITER works as in the mysql client
  Redis   a command as typed in redis-cli ("double" and 'single' quotes,
          \n \t \xHH escapes in double quotes); replies shown like redis-cli
  = EXPR  or  lua CODE   Lua, with the pools in scope by name (db, redis, ...),
          dbpool and null; returned promises are awaited, results printed

Commands:
  \connect NAME URL   open a connection (\connect NAME alone switches)
  \use NAME           switch the current connection
  \list               list connections
  \disconnect NAME    close a connection
  \timing [on|off]    show how long each statement took
  \stats [NAME]       pool statistics
  \ping [NAME]        round trip and server version
  \d                  list tables (Redis: key patterns, by a bounded SCAN)
  \d NAME             describe a table: columns, types, null, default, indexes
                      (Redis: a key's type, length, TTL; a glob: its patterns)
  \x [on|off]         expanded output: one column per line
  \watch SECONDS [N]  run the last statement again every SECONDS seconds,
                      until Ctrl-C (or N times)
  \i FILE             run the statements in FILE
  \o [FILE]           send results to FILE; \o alone: back to the output
  \refresh            reload the table and column names tab completes
  \null TEXT          how SQL NULL is shown (default NULL)
  \c                  clear the statement being typed
  \help               this list
  \q                  quit (also quit, exit, Ctrl-D)

Tab completes backslash commands, SQL keywords, the current database's
table and column names (TABLE.column too; cached until \refresh, USE or DDL)
and Redis command names. On a terminal, values too long for its width are
cut with a marker (…) so that tables never wrap; \x shows them whole.

Ctrl-C cancels a running statement (KILL QUERY) or discards the line being
typed; a second Ctrl-C in the session quits at once.

A lost connection (KILL, a server restart) is replaced at once, and the REPL
says so: the session state is gone, but the database of USE / SELECT is
chosen again. A statement known not sent runs once more on the new
connection; one that may have run is reported and never repeated; after a
transaction or MULTI was lost, the next statement is not run.

Options:
  -e, --execute TEXT  run TEXT as if typed, then exit (repeatable)
  -B, --batch         tab-separated results without borders (like mysql -B)
  --csv               results as RFC 4180 CSV: a header row, CRLF, NULL an
                      empty unquoted field, binary as base64:...
  --json              results as one JSON object per row (keys in column
                      order), NULL null, binary {"$base64": "..."}
                      With --csv/--json stdout carries results only: messages
                      and errors go to stderr, and any error exits 1.
  --no-history        neither read nor write the history file

History: ~/.dbpool_history (or DBPOOL_HISTFILE), written when input is a
terminal or DBPOOL_HISTFILE is set. Passwords are never written: URLs are
stored redacted and lines that set passwords (IDENTIFIED BY, PASSWORD(),
AUTH, requirepass, ACL SETUSER) are not stored at all.
Exit status: 0; without a terminal, 1 if any statement failed.
]]

TEXT.migrate = [[
usage: dbpool migrate up [--to VERSION] [--dry-run] [--allow-out-of-order] [OPTIONS]
       dbpool migrate down [--steps N | --to VERSION] [OPTIONS]
       dbpool migrate status [--exit-code] [--json] [OPTIONS]
       dbpool migrate baseline VERSION [OPTIONS]
       dbpool migrate repair VERSION|R__name [OPTIONS]
       dbpool migrate new NAME [--lua] [--repeatable] [--dir DIR]

Versioned and repeatable migrations for MySQL/MariaDB, in DIR:
  NNNN_name.sql   statements separated by ';' (DELIMITER allowed); an optional
                  line '-- down' starts the statements that undo them
  NNNN_name.lua   returns { up = function(conn) ... end, down = function(conn) ... end };
                  conn:query(sql, params):await() runs on the migration's connection
  R__name.sql, R__name.lua
                  repeatable: applied after the versioned ones, again whenever
                  the file changes (views, functions, grants)
  A line '-- dbpool: no-transaction' among a file's first comment lines runs
  it outside a transaction (a .lua file may return no_transaction = true).

Subcommands:
  up        apply the pending migrations in version order (--to VERSION: only
            up to it), then the changed repeatable ones; --dry-run prints what
            would run, with its SQL, and changes nothing
  down      roll back the latest applied migration (--steps N, or --to VERSION:
            every one newer than VERSION)
  status    list migrations: applied, pending, failed, interrupted, CHANGED;
            --exit-code: exit 1 unless up to date; --json: one JSON object
  baseline VERSION   record every file up to VERSION as applied without running
            it (adopting an existing database)
  repair VERSION     clear the record of a failed migration (after fixing the
            database by hand), so `up` runs it again
  new NAME  create the next NNNN_NAME.sql (or .lua) with an up and a down part
            (--repeatable: R__NAME.sql)

Applied migrations are recorded in the table schema_migrations (version,
name, checksum (SHA-256 of the file), applied_at, duration_ms, status,
error, statements_done), repeatable ones in schema_migrations_repeatable. A
migration whose file changed after it was applied is refused. A pending
version older than the newest applied one is refused (out of order) unless
--allow-out-of-order. GET_LOCK keeps two migrators from running at once: the
second waits (--lock-timeout) and then finds nothing left to apply; the
server drops the lock with the connection, so a killed migrator never leaves
it behind. Each migration runs in one transaction, but MySQL/MariaDB commit
DDL implicitly: a failed migration rolls back its data changes, not its DDL;
it is recorded as failed with its error, naming the statements that had
committed, and `up` refuses to go on until `repair`. A migration is marked
running before it starts: if its migrator dies (even by SIGKILL), the next
run reports it, runs it again if nothing of it can have committed, or else
records it as failed with the statements that had.

Options:
  --dir DIR               migrations directory (default $DBPOOL_MIGRATIONS_DIR or ./migrations)
  --url URL               the database (default $DATABASE_URL)
  --table NAME            bookkeeping table (default schema_migrations)
  --to VERSION            up: apply only up to VERSION; down: roll back to it
  --steps N               down: migrations to roll back (default 1)
  --dry-run               up: print the plan, change nothing
  --allow-out-of-order    up: apply pending versions older than the newest applied one
  --exit-code             status: exit 1 when anything is pending, failed or interrupted
  --json                  status: print one JSON object
  --lock-timeout S        seconds to wait for another migrator (default 60; 0 = fail at once)
  --lua                   new: write a Lua migration
  --repeatable            new: write a repeatable one (R__NAME)

Exit status: 0 ok; 1 failure (or, with status --exit-code, not up to date); 2 usage.
]]

TEXT.ping = [[
usage: dbpool ping [URL] [--json] [--timeout S] [--wait]

A readiness probe: connects to URL (default $DATABASE_URL, else $REDIS_URL),
runs a ping (MySQL COM_PING, Redis PING), and prints the round-trip time, the
server version and the pool's statistics on one line, or as one JSON object.
A MySQL URL with replicas (mysql://...?replica=host:port&replica=...) checks
every node: the primary must answer; each replica gets a line, "ok replica
ADDR lag=Ns", or "warning: replica ADDR is lagging|stopped|down: why".

Options:
  --json          print {"ok":..., "url":..., "rtt_ms":..., "version":..., "stats":{...}}
                  (and "nodes":[...] with replicas)
  --timeout S     give up after S seconds (default 5)
  --wait          retry refused connections until the timeout (a server that
                  is starting); by default the first failed connect fails

Exit status: 0 the server (the primary) answered, 1 it did not, 2 usage.
]]

TEXT.help = [[
usage: dbpool help [COMMAND]

Shows the overview, or the reference of COMMAND (run, repl, migrate, ping).
]]

function M.overview(out) out:write(OVERVIEW) end

-- The reference of one command.
function M.show(name, out) out:write(TEXT[name] or OVERVIEW) end

function M.text(name) return TEXT[name] end

-- `dbpool help [COMMAND]`
function M.command(argv, ctx)
    local _, pos = util.parse_options(argv, 1, {}, "help")
    if #pos == 0 then M.overview(ctx.out) return "ok" end
    if #pos > 1 then util.usage("expected one command name", "help") end
    if not TEXT[pos[1]] then util.usage(("no such command '%s'"):format(pos[1]), "help") end
    M.show(pos[1], ctx.out)
    return "ok"
end

return M
