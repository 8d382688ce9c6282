/* dbpool.h - v0.1.0 - event-loop-free connection pools for MySQL/MariaDB, PostgreSQL and Redis
                       public domain or MIT, see the end of this file

   A single-header C library: one *hub* drives the non-blocking state machine of
   every connection of every pool under a single poll(), only while someone
   waits. Queries and commands are *ops*, futures that settle exactly once.
   Pools close gracefully: every op accepted is run and settled before the
   sockets go.

   QUICK START

     Do this in *one* C file of your program:

         #define DBPOOL_IMPLEMENTATION
         #include "dbpool.h"

     and link with `pkg-config --libs libmariadb libpq hiredis` -lpthread. Everywhere
     else, include "dbpool.h" without the #define.

         dbp_hub *hub = dbp_hub_open(NULL);
         dbp_pool_config cfg;
         dbp_pool_config_init(&cfg);
         cfg.url = "mysql://app:secret@127.0.0.1:3306/app?max=8";
         dbp_error err;
         dbp_pool *db = dbp_pool_open(hub, &cfg, &err);
         if (!db) { fprintf(stderr, "%s\n", err.message); return 1; }

         dbp_value id = dbp_v_int(42);
         dbp_op *op = dbp_pool_query(db, "SELECT name FROM users WHERE id = ?", &id, 1, NULL);
         if (dbp_op_wait(op, -1) == DBP_OK) {
             const dbp_result *r = dbp_op_result(op);
             if (r->nrows) printf("%.*s\n", (int)dbp_result_cell(r, 0, 0)->len, dbp_result_cell(r, 0, 0)->data);
         } else {
             fprintf(stderr, "%s\n", dbp_op_error(op)->message);
         }
         dbp_op_free(op);
         dbp_op_free(dbp_pool_close(db, 5000)); // graceful: queued ops still run
         dbp_hub_free(hub, 10000);              // closes what is open, frees everything

   NAMES

     Every public function is dbp_<object>_<verb>: dbp_pool_query(),
     dbp_conn_release(), dbp_op_wait(), dbp_sub_add(). Two verbs mean one thing
     each, on every object:
       close   ends gracefully and asynchronously: nothing new is accepted,
               what was accepted still runs; the handle stays valid
               (dbp_pool_close() returns an op that settles when it is done)
       free    releases the handle and its memory; whatever it still had open
               is closed first, cut off when the timeout given (if any) runs
               out (dbp_hub_free, dbp_pool_free, dbp_sub_free, dbp_op_free)

   CONTENTS

     Compile-time options    DBPOOL_STATIC, DBPOOL_NO_MYSQL, DBPOOL_NO_PGSQL, DBPOOL_NO_REDIS,
                             DBPOOL_NO_THREADS,
                             DBP_MALLOC...
     Concepts                hub, helper threads, pool, op, pinned connection, deadlines,
                             replicas, errors
     API                     result codes, values, configuration, hub, pool, ops,
                             results, Redis replies, pub/sub, statistics, URLs
     Implementation          behind DBPOOL_IMPLEMENTATION, sections marked
                             "==== SECTION: name ====" so they can be grepped,
                             in this order:
         foundations         platform, utilities, errors, values and the
                             parameter binder, settings (with the backend
                             seam: the table every backend fills)
         structures          core structures (with a legend of the state
                             machines), forward declarations, timers,
                             histogram, results
         engine              sockets, helper threads, connections, pool
                             engine, hub, pool API, the op API
         backends            MySQL backend; MySQL replicas (a router over
                             MySQL pools); PostgreSQL backend; Redis
                             replies, Redis backend, pub/sub (Redis, and
                             PostgreSQL's LISTEN), Redis commands; Redis
                             Cluster (a router over Redis pools); the
                             backends table
         URLs                the URL parser

   COMPILE-TIME OPTIONS (define before including the implementation)

     DBPOOL_STATIC           make every function static (one translation unit)
     DBPOOL_NO_MYSQL         leave the MySQL/MariaDB backend out (no libmariadb)
     DBPOOL_NO_PGSQL         leave the PostgreSQL backend out (no libpq)
     DBPOOL_NO_REDIS         leave the Redis backend out (no hiredis)
     DBPOOL_NO_THREADS       no helper threads (no -lpthread): host name lookups
                             and MySQL TLS connects run inline on the hub's
                             thread and block it while they wait, as in
                             drivers without a helper
     DBP_MALLOC(n) DBP_REALLOC(p,n) DBP_FREE(p)
                             the allocator; define all three or none (with
                             helper threads they must be thread-safe: see
                             "Helper threads")
     DBP_MAX_PARAMS          most `?` parameters in one statement (65535)
     DBPOOL_NO_RECYCLE       free every op and MySQL result to the allocator
                             at once instead of keeping up to 1024 of each on
                             the hub for reuse (the default when built with
                             AddressSanitizer, so it still sees a use after
                             free; define it for Valgrind's memcheck too, as
                             the Makefile's test-valgrind builds do)
     DBP_STREAM_BATCH        rows buffered per streaming op before the hub
                             stops reading (256)

   CONCEPTS

     Hub.  Owns the pools of one thread and is the only place that waits: it
     collects every connection's socket and wanted events, calls poll() once
     with the nearest deadline as its timeout, and steps each ready connection.
     It runs only inside dbp_op_wait(), dbp_hub_step() and dbp_hub_run(). A
     program with its own loop asks for dbp_hub_fds() and calls
     dbp_hub_process(). A hub and everything made from it belong to one thread;
     two hubs in two threads never meet. There is no global state.

     Helper threads.  No step blocks the hub: a hung server, a slow DNS
     server or a stalled TLS handshake holds up only its own connection. Two
     steps can only be done by a call that blocks, and each runs as a job on
     a detached helper thread started for it alone:
       - the lookup of a host name that is not an IP literal (getaddrinfo,
         Redis, MySQL and PostgreSQL alike); the connect then goes to the
         addresses found, in order (MySQL: Connector/C is given the numeric
         address; PostgreSQL: libpq gets it as `hostaddr`, with the name as
         `host` for verify-full);
       - a MySQL connect with any ssl-mode but DISABLED, because Connector/C
         3.3 runs the TLS handshake with a blocking wait (CONC-594). The
         helper runs the whole mysql_real_connect() with the host *name*
         (so the certificate is checked against it, and the name is looked
         up there too), then hands the connected handle back; every query on
         it is non-blocking on the hub's thread as usual.
     A job owns copies of what its call needs (host, port; for MySQL the
     MYSQL handle and copies of user, password, database, socket), and the
     thread touches nothing else. The hub polls the job's end of a socket
     pair like any socket (it is among dbp_hub_fds()). When connect_timeout
     passes first, the connect fails at once as any connect timeout does
     (DBP_ECONNECT, "... within N s (connect_timeout); the TLS handshake did
     not finish") and the job is abandoned: the thread finishes its call
     (bounded by Connector/C's own connect timeout, or by the resolver's),
     closes a handle nobody took and frees the job. So an abandoned job may
     call DBP_FREE from its thread, and Connector/C and the libc resolver
     are used from it. IP literals ([::1], 127.0.0.1), unix sockets and
     MySQL connects without TLS use no thread. The helpers block every
     signal, so signals still reach the hub's thread.

     Pool.  Connections to one server (or one Redis Cluster), opened lazily up
     to `max`, at least `min` kept warm, idle ones past `idle_timeout` closed,
     each recycled after `max_lifetime` (a replacement is opened first). Ops
     wait in a FIFO queue (bounded by `max_waiting`) for a free connection.
     A connection that saw an I/O, timeout or protocol error is never handed
     out again; a server error (duplicate key, syntax error, Redis -ERR) leaves
     it usable. An idle connection that the server closed is dropped as soon as
     poll() sees it, and one idle longer than `validate_after` is pinged before
     it is used.

     Op.  A query, a Redis command, an acquire, a ping, a close or a timer.
     queued -> running -> fulfilled | rejected, exactly once. An op is accepted
     at once (a usage mistake gives an op that is already rejected, so every
     error has a place to live); it starts as soon as a connection is free.
     The caller owns the op it gets back and frees it with dbp_op_free(); an
     op freed while pending still runs to completion and frees itself (see
     Lifetimes).

     Retries.  An op that was never sent when its connection died is retried
     on a fresh connection. An op that was sent is rejected with DBP_ELOST
     ("lost after send": it may or may not have run) unless it was marked
     idempotent, which allows one retry. A write is never silently repeated.

     Deadlines.  `acquire_timeout` covers time in the queue (including a
     connect made for the op), `query_timeout` covers running, and an op's own
     `timeout_ms` covers all of it. A MySQL query that runs past its deadline
     is stopped on the server with KILL QUERY from a side connection, a
     PostgreSQL one with SELECT pg_cancel_backend(pid) (libpq 15's PQcancel
     blocks); the connection is kept if it is clean afterwards.

     Close.  dbp_pool_close() accepts no new op ("pool is closing"), lets every
     queued and running op finish and settle, then sends QUIT and closes every
     socket. With a deadline, what is still queued at the deadline is rejected
     and what still runs is cut off, each with DBP_ECANCELLED saying so.

     Replicas.  A MySQL pool opened with `replicas` (cfg.replicas, or
     replica=host:port in the URL, once per replica; each entry "host[:port]"
     or a mysql:// URL, the primary's user, password and database otherwise)
     routes each statement: a read goes to a replica, the rest to the
     primary. A read is a statement submitted to the pool (not to a pinned
     connection) whose first word is SELECT or WITH without FOR UPDATE, FOR
     SHARE, LOCK IN SHARE MODE, INTO or a named lock, or SHOW, DESCRIBE,
     EXPLAIN, and that is one statement. dbp_pool_acquire() (transactions)
     and dbp_pool_ping() use the primary; dbp_op_options.on = DBP_ON_PRIMARY
     or DBP_ON_REPLICA overrides per statement (a statement that is not a
     read is refused on a replica with DBP_EUSAGE: no write is ever sent to
     one). Of the usable replicas, the one with the least work queued and
     running there is chosen; with none usable, reads go to the primary.
     While the pool is open and the hub runs, each replica's SHOW SLAVE
     STATUS is read every second: a replica is usable when both replication
     threads run and Seconds_Behind_Master <= max_lag (5 s). One that lags,
     stops replicating, or fails (a read that fails on it for a connection
     reason runs again elsewhere: reads are safe to repeat) is skipped,
     read again with backoff (backoff_min doubling to backoff_max) and used
     again once it is fine; each change is told through the event hook.
     read_your_writes (pool option, or per statement): the primary's
     connections track @@last_gtid (session tracking); before a read on a
     replica, SELECT MASTER_GTID_WAIT(gtid, max_lag) runs there for the
     newest GTID the pool's writes made, and when it does not return 0 the
     read runs on the primary. So a read sees every write this pool had
     finished before it was submitted (on any of its connections, pinned
     ones included); the cost is one round trip on the replica per read
     after a new write. This needs MariaDB (GTIDs, MASTER_GTID_WAIT). A
     write the primary refuses with 1290 (--read-only) is rejected as any
     server error (DBP_ESQL, code 1290) and the pool reads @@read_only there
     every second, saying so through the hook, until it is off.
     dbp_pool_nodes() lists the primary and then each replica with its
     state ("ok", "lagging", "stopped", "down", "read-only", "unknown" before
     the first status read), lag, statements sent and statistics. A stream
     runs on the node chosen when it starts (no failover once it runs).

     Lifetimes.  Who owns what, and what a busy object does when let go. The
     rule: a handle its holder has not let go of stays valid whatever the
     servers do; an object let go while busy finishes its work, then frees
     itself; dbp_hub_stats() counts what is alive, so a test (or a health
     page) can check that nothing is left.

       object      made by                 let go with            let go while busy
       ----------  ----------------------  ---------------------  ------------------------------
       hub         dbp_hub_open            dbp_hub_free          drives every pool closed (bounded),
                                                                  then frees everything it made;
                                                                  ops the caller holds stay
                                                                  readable until dbp_op_free
       pool        dbp_pool_open           dbp_pool_free          closes gracefully (close_timeout),
                                                                  freed at the end of the step
                                                                  that finished the close, but not
                                                                  before every dead pinned
                                                                  connection it handed out is let go
       op          dbp_pool_query, dbp_pool_call,    dbp_op_free            runs on; freed when it settles
                   dbp_pool_acquire, ...                          (its callback is dropped); a
                                                                  stream is cancelled and drained
       pinned conn dbp_op_take_conn        dbp_conn_release,      its ops finish, then back to the
                                           dbp_conn_discard       pool (or closed). If the server
                                                                  closes it first, it stays
                                                                  allocated and dead for its holder:
                                                                  dbp_conn_ok() 0, dbp_conn_error()
                                                                  says why, every op on it is
                                                                  rejected (kind connection, not
                                                                  sent); release/discard free it
       subscription dbp_pool_subscribe          dbp_sub_free          ended at once; from inside its
                                                                  own callback, as that returns
       result,     dbp_op_take_result,     dbp_result_free,       (plain data: the caller's)
       reply       dbp_op_take_reply       dbp_reply_free

     Borrowed data (a result or reply read through dbp_op_result/_reply, a
     stream's row and dbp_op_fields) is valid until the op is freed or, for
     a stream's row, until the next dbp_op_fetch().

     Errors.  Every error lives on the object that failed: an op's dbp_error
     has the result code, its kind (usage, connection, timeout, closed, sql,
     redis, auth), the server's own code and SQLSTATE, whether the request was
     sent, and a bounded message. No message ever contains a password.

   EXAMPLES

     tests/ holds small programs that use every part of this API against real
     servers; bench/bench_mysql.c is a compact example of many ops in flight.
*/

/* The implementation needs POSIX (poll, sockets, clock_gettime), which a
   strict -std=c99 hides. When nothing was included before this header (no
   C library feature macros settled yet), ask for it here; a file that
   includes system headers first must define _POSIX_C_SOURCE itself, and the
   implementation says so if it did not. */
#if defined(DBPOOL_IMPLEMENTATION) && !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && \
    !defined(_DEFAULT_SOURCE) && !defined(__GLIBC__)
#  define _POSIX_C_SOURCE 200809L
#endif

#ifndef DBPOOL_H
#define DBPOOL_H

#define DBPOOL_VERSION_MAJOR 0
#define DBPOOL_VERSION_MINOR 1
#define DBPOOL_VERSION_PATCH 0
#define DBPOOL_VERSION "0.1.0"

#ifndef DBPDEF
#  ifdef DBPOOL_STATIC
#    if defined(__GNUC__) || defined(__clang__)
#      define DBPDEF static __attribute__((unused))
#    else
#      define DBPDEF static
#    endif
#  else
#    define DBPDEF extern
#  endif
#endif

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Result codes ========================================================
   One enum for every function. DBP_OK is 0, DBP_PENDING (not an error) is
   positive, errors are negative and grouped; values are only ever appended. */
typedef enum dbp_rc {
    DBP_OK = 0,
    DBP_PENDING = 1,            /* the op has not settled yet */
    DBP_ROW = 2,                /* dbp_op_fetch(): a row is ready */

    /* usage: the caller's mistake, caught before anything was sent */
    DBP_EUSAGE = -1,            /* a bad argument or a call in the wrong state */
    DBP_EURL = -2,              /* malformed URL */
    DBP_EOPTION = -3,           /* unknown or invalid option */
    DBP_EPARAM = -4,            /* wrong parameter count or an unusable value */
    DBP_EUNSUPPORTED = -5,      /* asks for something this build cannot do */
    DBP_ECROSSSLOT = -6,        /* Redis Cluster: keys hash to different slots */
    DBP_ENOMEM = -7,            /* out of memory */

    /* connection */
    DBP_ECONNECT = -20,         /* could not connect (the message says why) */
    DBP_EAUTH = -21,            /* the server refused the credentials */
    DBP_ELOST = -22,            /* connection lost after the op was sent */
    DBP_EPROTOCOL = -23,        /* the server sent something unparseable */
    DBP_EQUEUE_FULL = -24,      /* max_waiting ops already queued */
    DBP_EREDIRECT = -25,        /* Redis Cluster: too many redirections */

    /* timeout */
    DBP_ETIMEOUT = -40,         /* the op ran past its query timeout/deadline */
    DBP_EACQUIRE_TIMEOUT = -41, /* no connection within the acquire timeout */

    /* server */
    DBP_ESQL = -60,             /* the server rejected the statement */
    DBP_EREDIS = -61,           /* Redis replied with an error */

    /* closed */
    DBP_ECLOSED = -100,         /* the pool is closing or closed: not accepted */
    DBP_ECANCELLED = -101       /* cut off by a close deadline */
} dbp_rc;

/* The kind of an error: what a caller usually branches on. */
typedef enum dbp_kind {
    DBP_KIND_NONE = 0,
    DBP_KIND_USAGE,
    DBP_KIND_CONNECTION,
    DBP_KIND_TIMEOUT,
    DBP_KIND_CLOSED,
    DBP_KIND_SQL,
    DBP_KIND_REDIS,
    DBP_KIND_AUTH
} dbp_kind;

#define DBP_ERRMSG_MAX 320

/* An error, kept on the object that failed. Plain data: copy it freely. */
typedef struct dbp_error {
    int rc;                      /* a dbp_rc; DBP_OK when there is no error */
    int code;                    /* the server's own error code (MySQL errno), or 0 */
    int sent;                    /* 1 when the request reached, or may have reached, the server */
    char sqlstate[6];            /* MySQL SQLSTATE, "" when none */
    char message[DBP_ERRMSG_MAX]; /* never contains a password */
} dbp_error;

/* Symbolic name of a result code: "DBP_ELOST". Never NULL. */
DBPDEF const char *dbp_rc_name(int rc);
/* One-line description of a result code. Never NULL. */
DBPDEF const char *dbp_rc_string(int rc);
/* The kind of a result code (DBP_KIND_NONE for DBP_OK and DBP_PENDING). */
DBPDEF dbp_kind dbp_rc_kind(int rc);
/* "usage", "connection", "timeout", "closed", "sql", "redis", "auth" ("" for none). */
DBPDEF const char *dbp_kind_name(dbp_kind kind);

/* ==== Handles ============================================================= */
typedef struct dbp_hub dbp_hub;     /* the poll loop of one thread */
typedef struct dbp_pool dbp_pool;   /* connections to one server or cluster */
typedef struct dbp_op dbp_op;       /* one query, command, acquire, ping, close or timer */
typedef struct dbp_conn dbp_conn;   /* a pinned connection, taken out of its pool */
typedef struct dbp_sub dbp_sub;     /* a pub/sub subscription (Redis, PostgreSQL LISTEN) */

/* ==== Values (query parameters) ==========================================
   Parameters are copied when the op is submitted: the caller's buffers may
   be reused as soon as dbp_pool_query() returns. */
typedef enum dbp_type {
    DBP_NULL = 0,
    DBP_BOOL,
    DBP_INT,      /* signed 64-bit */
    DBP_UINT,     /* unsigned 64-bit */
    DBP_DOUBLE,   /* NaN and infinities are rejected with DBP_EPARAM */
    DBP_TEXT,     /* a string, escaped by the connection's charset */
    DBP_BLOB      /* binary bytes, sent as a hex literal X'...' */
} dbp_type;

typedef struct dbp_value {
    dbp_type type;
    union {
        int b;
        long long i;
        unsigned long long u;
        double d;
        struct { const char *data; size_t len; } s;
    } v;
} dbp_value;

DBPDEF dbp_value dbp_v_null(void);
DBPDEF dbp_value dbp_v_bool(int b);
DBPDEF dbp_value dbp_v_int(long long i);
DBPDEF dbp_value dbp_v_uint(unsigned long long u);
DBPDEF dbp_value dbp_v_double(double d);
/* A NUL-terminated string (len = strlen). */
DBPDEF dbp_value dbp_v_text(const char *s);
/* `len` bytes of text (may contain NUL). */
DBPDEF dbp_value dbp_v_textn(const char *s, size_t len);
/* `len` bytes of binary data. */
DBPDEF dbp_value dbp_v_blob(const void *p, size_t len);

/* ==== Configuration =======================================================
   Fill with dbp_pool_config_init(), set what you need, pass to
   dbp_pool_open(), which deep-copies it. Integer fields left at -1 and
   string fields left NULL are "unset": the URL's query string decides, then
   the default. An explicit field always wins over the URL. Durations here
   are milliseconds (in URLs and Lua tables they are seconds). */

/* Events delivered to a pool's hook, during a hub step. */
typedef enum dbp_event_type {
    DBP_EVENT_CONNECT = 1,  /* a connection was opened and initialised */
    DBP_EVENT_ENQUEUE,      /* an op had to wait in the queue */
    DBP_EVENT_ERROR,        /* a connection error, a dropped connection or a warning */
    DBP_EVENT_SLOW,         /* an op ran longer than slow_threshold */
    DBP_EVENT_NOTICE        /* a server notice or warning (PostgreSQL NOTICE, WARNING, ...):
                               `message` is "SEVERITY: text"; never printed to stderr */
} dbp_event_type;

typedef struct dbp_event {
    dbp_event_type type;
    const char *message;     /* human-readable, no password; valid during the call */
    const dbp_error *error;  /* for DBP_EVENT_ERROR, else NULL */
    long long duration_us;   /* SLOW: run time; CONNECT: connect time */
    int conn_id;             /* the pool's number for the connection, 0 if none */
    unsigned long server_id; /* MySQL thread id of the connection, 0 if none */
    int waiting;             /* ENQUEUE: ops waiting now */
} dbp_event;

typedef void (*dbp_event_fn)(dbp_pool *pool, const dbp_event *ev, void *ud);

typedef struct dbp_pool_config {
    const char *url;        /* mysql://, postgres:// (postgresql://), redis://, redis-cluster://;
                               NULL: DATABASE_URL, or REDIS_URL when `backend` is "redis" */
    const char *backend;    /* "mysql" | "postgres" | "redis" | "redis-cluster": only needed without a URL */
    /* connection, overriding the URL */
    const char *host;
    int port;
    const char *user;
    const char *password;
    const char *database;   /* MySQL schema, PostgreSQL database; Redis db number as text */
    const char *socket;     /* MySQL unix socket path; PostgreSQL: the socket's directory */
    const char *charset;    /* MySQL, default "utf8mb4"; PostgreSQL client_encoding, default "UTF8" */
    const char *name;       /* client name (Redis CLIENT SETNAME, MySQL program_name,
                               PostgreSQL application_name) */
    /* sizing */
    int max;                /* most connections (10) */
    int min;                /* connections kept open even when idle (0) */
    int max_waiting;        /* most queued ops, 0 = unbounded (0) */
    int max_blocking;       /* Redis: most connections for blocking commands (max) */
    int pipeline;           /* Redis: most commands in flight per connection (1000) */
    int prepare;            /* 1 = queries with parameters run as server-side prepared
                               statements (MySQL: mysql_stmt_*; PostgreSQL: PQsendPrepare /
                               PQsendQueryPrepared), 0 = every query as text (1); an op's
                               `prepare` overrides it */
    int prepare_cache;      /* prepared statements kept per connection, least recently used
                               given back beyond it; a new connection prepares again (256) */
    /* time, milliseconds; 0 turns a timeout off where noted */
    int acquire_timeout_ms; /* waiting in the queue, connect included (30000) */
    int connect_timeout_ms; /* one connection attempt (10000) */
    int query_timeout_ms;   /* running one op, 0 = none (0) */
    int idle_timeout_ms;    /* close idle connections beyond min, 0 = never (60000) */
    int max_lifetime_ms;    /* recycle connections, 0 = never (1800000) */
    int validate_after_ms;  /* ping before use when idle this long, 0 = never (1000) */
    int keepalive_ms;       /* TCP keepalive idle time, 0 = off (30000) */
    int backoff_min_ms;     /* reconnect backoff, first delay (100) */
    int backoff_max_ms;     /* reconnect backoff, cap (5000) */
    int slow_threshold_ms;  /* DBP_EVENT_SLOW above this, 0 = off (0) */
    int close_timeout_ms;   /* bound for closes nobody waits on (dbp_pool_free, dbp_hub_free) (30000) */
    /* statements run on every new connection before it is used (MySQL, PostgreSQL) */
    const char *const *init;
    int ninit;
    /* TLS (MySQL, PostgreSQL; the URL may use PostgreSQL's names: sslmode,
       sslrootcert, sslcert, sslkey) */
    const char *ssl_mode;   /* DISABLED | PREFERRED | REQUIRED | VERIFY_CA | VERIFY_IDENTITY, or
                               PostgreSQL's disable | allow | prefer | require | verify-ca | verify-full */
    const char *ssl_ca;
    const char *ssl_cert;
    const char *ssl_key;
    /* Redis Cluster */
    const char *read_from;  /* "primary" | "replica" | "prefer_replica" */
    int max_redirects;      /* per op (16) */
    /* hook */
    dbp_event_fn on_event;
    void *event_ud;
    /* PostgreSQL: GSSAPI encryption, "disable" unless set ("prefer", "require") */
    const char *gssencmode;
    /* MySQL read replicas (see "Replicas" below): each entry "host[:port]"
       or a mysql:// URL (its user, password and database, else the
       primary's); in URLs, one replica=host:port option per replica */
    const char *const *replicas;
    int nreplicas;
    int max_lag_ms;         /* a replica further behind is not read from (5000) */
    int read_your_writes;   /* 1: a replica read waits for the pool's latest write (0) */
} dbp_pool_config;

/* Fills every field with "unset". */
DBPDEF void dbp_pool_config_init(dbp_pool_config *cfg);
/* Sets one option by the name it has in URLs and Lua tables ("max",
   "connect_timeout", "ssl-mode", ...), from text; durations in seconds
   (fractions allowed, or a "ms" suffix). `value` is borrowed like every
   string of the struct. DBP_EOPTION names an unknown option or a bad value. */
DBPDEF int dbp_pool_config_set(dbp_pool_config *cfg, const char *key, const char *value,
                               dbp_error *err);

/* ==== Hub =================================================================
   A hub belongs to one thread. Everything it made is driven by it. */

/* Makes a hub. NULL on out-of-memory (err filled when given). */
DBPDEF dbp_hub *dbp_hub_open(dbp_error *err);

/* What a hub holds alive, to check that nothing is left behind (a test's
   last assertion, a service's health page). Between steps, with every op
   freed and every pool freed and closed, all of it is 0. */
typedef struct dbp_hub_counts {
    int ops;              /* op records alive (held by the caller, or running) */
    int ops_released;     /* ... of which the caller freed: they free themselves when settled */
    int pending;          /* ops not settled yet */
    int pools;            /* pools alive (open, closing, or closed but not freed) */
    int pools_released;   /* ... of which dbp_pool_free() was called: still closing */
    int conns;            /* connections alive, every state */
    int conns_dead_held;  /* pinned connections dead under their holder, kept until released */
    int conns_buried;     /* dead, freed at the end of the current step */
} dbp_hub_counts;
/* Fills *out with the hub's live objects. O(objects). */
DBPDEF void dbp_hub_stats(const dbp_hub *hub, dbp_hub_counts *out);
/* Closes every pool gracefully (each bounded by its close_timeout), drives
   them until closed or until timeout_ms (-1: use the pools' bounds), then
   frees the hub, its pools and every op still owned by it. Ops the caller
   has not freed stay valid (settled) until dbp_op_free(). No-op on NULL. */
DBPDEF void dbp_hub_free(dbp_hub *hub, int timeout_ms);
/* One round: run due timers, poll() for at most timeout_ms (-1: until the
   next deadline or event), step the ready connections, deliver callbacks.
   Returns the number of ops settled in this round, or a negative dbp_rc. */
DBPDEF int dbp_hub_step(dbp_hub *hub, int timeout_ms);
/* Steps until no op is pending (DBP_OK) or timeout_ms passed (DBP_PENDING). */
DBPDEF int dbp_hub_run(dbp_hub *hub, int timeout_ms);
/* Number of ops accepted and not yet settled, pools' closes included. */
DBPDEF int dbp_hub_pending(const dbp_hub *hub);
/* A timer op: fulfilled after ms milliseconds. */
DBPDEF dbp_op *dbp_hub_sleep(dbp_hub *hub, int ms);
/* Also watches fd (e.g. a signalfd or a self-pipe) in every poll(): when it
   is readable, the step returns early so the caller can look. The hub never
   reads it. -1 removes it. */
DBPDEF void dbp_hub_set_wakeup_fd(dbp_hub *hub, int fd);

/* For programs with their own loop. dbp_hub_fds() fills up to `max` pollfd
   entries (struct pollfd from <poll.h>, passed as void* so this header does
   not need it), sets *timeout_ms to the time until the next deadline (-1:
   none) and returns how many entries it needs (call again with more room if
   that exceeds max). After your poll(), pass the same array, revents filled,
   to dbp_hub_process(), which returns like dbp_hub_step(). Do not step the
   hub between the two calls. */
DBPDEF int dbp_hub_fds(dbp_hub *hub, void *pollfds, int max, int *timeout_ms);
DBPDEF int dbp_hub_process(dbp_hub *hub, void *pollfds, int n);

/* ==== Pool ================================================================ */

/* Opens a pool (no connection is made until one is needed, or until `min`
   asks for them). NULL on error, with err filled (never the password). */
DBPDEF dbp_pool *dbp_pool_open(dbp_hub *hub, const dbp_pool_config *cfg, dbp_error *err);
/* Starts a graceful close and returns an op that settles when the pool is
   closed (fulfilled, or rejected with DBP_ECANCELLED when the deadline cut
   ops off). timeout_ms -1: no deadline. Calling it again returns another op
   for the same close. The pool handle stays valid until dbp_pool_free(). */
DBPDEF dbp_op *dbp_pool_close(dbp_pool *pool, int timeout_ms);
/* Releases the handle. A pool not yet closed is closed gracefully (bounded
   by close_timeout) while the hub runs, and freed after. No-op on NULL. */
DBPDEF void dbp_pool_free(dbp_pool *pool);
/* "mysql://app@127.0.0.1:3306/app" style: never the password. Writes at most
   n bytes including the NUL, returns the length it wanted. */
DBPDEF size_t dbp_pool_describe(const dbp_pool *pool, char *buf, size_t n);
/* Where a pool is in its life: open, closing (dbp_pool_close() was called;
   its work is finishing), closed (every connection gone). */
typedef enum dbp_pool_state { DBP_POOL_OPEN = 1, DBP_POOL_CLOSING, DBP_POOL_CLOSED } dbp_pool_state;
DBPDEF dbp_pool_state dbp_pool_get_state(const dbp_pool *pool);
/* The monotonic clock the hub runs on, in microseconds (the unit of
   dbp_op_times()). */
DBPDEF long long dbp_clock_us(void);
/* "mysql", "redis" or "redis-cluster". */
DBPDEF const char *dbp_pool_backend(const dbp_pool *pool);
/* The server's version string from the latest connection ("" before any). */
DBPDEF const char *dbp_pool_server_version(const dbp_pool *pool);
/* The hub a pool belongs to. */
DBPDEF dbp_hub *dbp_pool_hub(const dbp_pool *pool);
/* Replaces the event hook (NULL to remove). */
DBPDEF void dbp_pool_set_hook(dbp_pool *pool, dbp_event_fn fn, void *ud);

/* Options of one op (NULL: all defaults). */
typedef struct dbp_op_options {
    int timeout_ms;   /* one deadline over queueing, connecting and running; 0 = none */
    int idempotent;   /* 1: may be retried once after a connection lost after send */
    int prepare;      /* 1 a server-side prepared statement, -1 text, 0 the pool's `prepare` */
    int on;           /* a pool with replicas: DBP_ON_PRIMARY or DBP_ON_REPLICA
                         overrides where the statement runs (0: by the routing rule) */
    int read_your_writes; /* a pool with replicas: 1 waits for the pool's latest write
                             before reading on a replica, as the pool option does */
} dbp_op_options;
enum { DBP_ON_ANY = 0, DBP_ON_PRIMARY = 1, DBP_ON_REPLICA = 2 };

/* ==== SQL ops (MySQL, PostgreSQL) ========================================
   MySQL: `?` placeholders. A query with placeholders runs, by default (the
   pool option `prepare`), as a server-side prepared statement: prepared
   once per connection (kept in an LRU of `prepare_cache` statements), then
   executed with the values sent apart from the SQL; its result has the
   same shape and the same text values as a text query's. Otherwise
   (prepare=0, dbp_op_options.prepare = -1, a query without placeholders,
   several statements, CALL) the values are bound client-side, escaped by
   the charset of the connection that runs the statement. A `?` inside a
   string literal, a quoted identifier or a comment is not a placeholder.
   PostgreSQL: `$1`..`$n` placeholders, the values sent apart from the SQL
   (PQsendQueryParams, or PQsendQueryPrepared with `prepare`: text, a blob
   as binary bytea); `?` is left alone (jsonb operators). Text values
   cannot hold a NUL byte (use a blob).
   Either way a count mismatch or an unusable value gives an op already
   rejected with DBP_EPARAM; nothing is sent. Several statements separated
   by `;` give several result sets (PostgreSQL: only without parameters,
   which uses the simple protocol). */

/* Submits a query. Returns NULL only when out of memory. */
DBPDEF dbp_op *dbp_pool_query(dbp_pool *pool, const char *sql, const dbp_value *params,
                              size_t nparams, const dbp_op_options *opts);
/* Like dbp_pool_query() with an explicit length (sql may contain NUL bytes). */
DBPDEF dbp_op *dbp_pool_queryn(dbp_pool *pool, const char *sql, size_t len, const dbp_value *params,
                               size_t nparams, const dbp_op_options *opts);
/* Submit and wait: returns the op's rc; *out (if not NULL) receives the op,
   which the caller frees; with out NULL the op is freed here. */
DBPDEF int dbp_pool_exec(dbp_pool *pool, const char *sql, const dbp_value *params, size_t nparams,
                         dbp_op **out);
/* A streaming query (mysql_use_result): rows arrive in batches and memory
   stays bounded whatever the size of the result. See dbp_op_fetch(). */
DBPDEF dbp_op *dbp_pool_query_stream(dbp_pool *pool, const char *sql, const dbp_value *params,
                                     size_t nparams, const dbp_op_options *opts);

/* The bound SQL text a query would send, escaped without a connection
   (the client default charset, backslash escapes). For tests and tools. The
   returned string is the caller's, freed with dbp_free(). NULL on error, with
   err set (DBP_EPARAM names the problem). */
DBPDEF char *dbp_sql_bind(const char *sql, size_t len, const dbp_value *params, size_t nparams,
                          size_t *out_len, dbp_error *err);
/* Number of `?` placeholders in sql (see above for what does not count). */
DBPDEF size_t dbp_sql_count_params(const char *sql, size_t len);
/* Frees memory handed out by this library (dbp_sql_bind). No-op on NULL. */
DBPDEF void dbp_free(void *p);

/* ==== Results (MySQL, PostgreSQL) ========================================
   Owned by the op until the op is freed (or taken with dbp_op_take_result,
   then freed with dbp_result_free). One dbp_result per result set, chained
   through `next`. */
typedef struct dbp_field {
    const char *name;
    size_t name_len;
    int type;              /* MySQL: enum_field_types from mysql.h (MYSQL_TYPE_LONG, ...);
                              PostgreSQL: the type's OID (23 = int4, ...) */
    unsigned flags;        /* MySQL: UNSIGNED_FLAG, BINARY_FLAG, ... from mysql.h; PostgreSQL: 0 */
    unsigned charsetnr;    /* 63 = binary */
    unsigned decimals;
    dbp_type vtype;        /* how to read a cell, whatever the backend: DBP_INT (decimal
                              digits), DBP_UINT, DBP_DOUBLE, DBP_BOOL ("t"/"f" on PostgreSQL,
                              never for MySQL), DBP_BLOB (raw bytes: bytea arrives decoded),
                              DBP_TEXT (the rest: DECIMAL/numeric, dates, json, ...) */
} dbp_field;

typedef struct dbp_cell {
    const char *data;      /* NULL for SQL NULL; else `len` bytes plus a NUL */
    size_t len;
} dbp_cell;

typedef struct dbp_result {
    size_t ncols;
    const dbp_field *fields;
    size_t nrows;
    const dbp_cell *cells;            /* row-major: cells[row * ncols + col] */
    unsigned long long affected_rows;
    unsigned long long insert_id;
    unsigned warning_count;
    const char *info;                 /* mysql_info(), "" when none */
    struct dbp_result *next;          /* the next result set, or NULL */
} dbp_result;

/* The cell at (row, col); NULL when out of range. */
DBPDEF const dbp_cell *dbp_result_cell(const dbp_result *r, size_t row, size_t col);
/* Frees a taken result and the sets chained to it. No-op on NULL. */
DBPDEF void dbp_result_free(dbp_result *r);

/* ==== Bulk load: PostgreSQL COPY FROM STDIN ==============================
   dbp_pool_copy_in() runs `sql`, a COPY ... FROM STDIN statement (text
   format, the default), on a connection of its own, then takes the data:
   rows put with dbp_op_copy_row() (the values encoded by the library: NULL,
   numbers, text escaped, blobs as bytea) or raw COPY text with
   dbp_op_copy_data(), then dbp_op_copy_end(). The op settles when the
   server has them all: fulfilled with a result whose affected_rows is the
   number of rows stored, or rejected with the server's error (COPY is one
   statement: nothing was stored). The data waits in the op and goes out as
   the socket takes it (PQputCopyData returning 0 is not an error: the rest
   waits for the next step); memory stays bounded if the caller stops
   putting while a put returns DBP_PENDING and steps the hub, or calls
   dbp_op_copy_wait(). An op let go of before dbp_op_copy_end() ends the
   COPY with an error (nothing stored). query_timeout covers the statement
   until the last row is stored. */
#ifndef DBP_COPY_BUFFER
#  define DBP_COPY_BUFFER (1u << 20)   /* bytes buffered per COPY op before a put says DBP_PENDING */
#endif
/* Starts a COPY ... FROM STDIN. Returns NULL only when out of memory. */
DBPDEF dbp_op *dbp_pool_copy_in(dbp_pool *pool, const char *sql, const dbp_op_options *opts);
/* Adds one row of n values (in the COPY statement's column order). DBP_OK,
   DBP_PENDING (taken, but the buffer is full: wait before the next), or an
   error (DBP_EPARAM for a NaN or a text with a NUL byte; the op's rc once
   it failed; DBP_EUSAGE after dbp_op_copy_end). */
DBPDEF int dbp_op_copy_row(dbp_op *op, const dbp_value *values, size_t n);
/* Adds bytes of COPY text format as they are (rows ending in '
'). Returns as dbp_op_copy_row(). */
DBPDEF int dbp_op_copy_data(dbp_op *op, const void *data, size_t len);
/* Ends the data: the server stores the rows. With `error` not NULL, the
   COPY fails with that message instead and nothing is stored. */
DBPDEF int dbp_op_copy_end(dbp_op *op, const char *error);
/* Steps the hub until at most half of DBP_COPY_BUFFER waits, or the op
   settled (DBP_OK), or timeout_ms passed (DBP_PENDING; -1: no limit). */
DBPDEF int dbp_op_copy_wait(dbp_op *op, int timeout_ms);
/* Rows put so far. */
DBPDEF unsigned long long dbp_op_copy_rows(const dbp_op *op);

/* ==== Redis ops ===========================================================
   Commands are binary-safe argv; argvlen NULL means strlen of each. Many
   commands may be in flight on one connection (replies come back in order).
   Commands submitted before the hub next runs are written together.
   MULTI/EXEC/WATCH/DISCARD/UNWATCH and SELECT are refused on a pool (use a
   pinned connection); SUBSCRIBE and friends are refused (use dbp_pool_subscribe);
   blocking commands (BLPOP, BRPOP, BLMOVE, BZPOPMIN, XREAD ... BLOCK, WAIT,
   ...) run on a connection of their own so they never stall the others. */
DBPDEF dbp_op *dbp_pool_call(dbp_pool *pool, int argc, const char *const *argv,
                             const size_t *argvlen, const dbp_op_options *opts);

typedef enum dbp_reply_type {
    DBP_REPLY_STRING = 1,  /* bulk string: str/len, binary-safe */
    DBP_REPLY_ARRAY = 2,   /* elements/element */
    DBP_REPLY_INTEGER = 3, /* integer */
    DBP_REPLY_NIL = 4,
    DBP_REPLY_STATUS = 5,  /* +OK: str/len */
    DBP_REPLY_ERROR = 6    /* -ERR inside an array (a top-level error rejects the op) */
} dbp_reply_type;

typedef struct dbp_reply {
    dbp_reply_type type;
    long long integer;
    size_t len;
    char *str;                   /* NUL-terminated as well */
    size_t elements;
    struct dbp_reply **element;
} dbp_reply;

/* Frees a taken reply tree with one call. No-op on NULL. */
DBPDEF void dbp_reply_free(dbp_reply *r);

/* ==== Ops ================================================================= */
typedef enum dbp_state {
    DBP_OP_QUEUED = 0,
    DBP_OP_RUNNING,
    DBP_OP_FULFILLED,
    DBP_OP_REJECTED
} dbp_state;

/* Called when the op settles (and, for a streaming op, whenever new rows
   are ready), from inside a hub step. Do not free the op in the callback;
   submitting new ops from it is allowed. */
typedef void (*dbp_settle_fn)(dbp_op *op, void *ud);

/* Drives the op's hub until the op settles (returns its rc: DBP_OK or the
   error) or timeout_ms passes (DBP_PENDING; -1 waits without limit). */
DBPDEF int dbp_op_wait(dbp_op *op, int timeout_ms);
/* Where the op is: queued, running, fulfilled or rejected. */
DBPDEF dbp_state dbp_op_state(const dbp_op *op);
/* DBP_PENDING while not settled, then DBP_OK or the error code. */
DBPDEF int dbp_op_rc(const dbp_op *op);
/* The error of a rejected op (rc DBP_OK otherwise). Never NULL: for a NULL
   op (what a submit returns when out of memory) an error saying so. */
DBPDEF const dbp_error *dbp_op_error(const dbp_op *op);
/* PostgreSQL's DETAIL and HINT of a rejected op's server error ("" when the
   server sent none, and for every other backend). Valid while the op is. */
DBPDEF const char *dbp_op_error_detail(const dbp_op *op);
DBPDEF const char *dbp_op_error_hint(const dbp_op *op);
/* The columns of a query's result, or of a stream once its first row or its
   end arrived; NULL (and *ncols 0) when there are none yet. Valid while the
   op is. ncols may be NULL. */
DBPDEF const dbp_field *dbp_op_fields(const dbp_op *op, size_t *ncols);
/* MySQL result of a fulfilled query; NULL otherwise. */
DBPDEF const dbp_result *dbp_op_result(const dbp_op *op);
/* Takes the result out of the op: the caller frees it with dbp_result_free(). */
DBPDEF dbp_result *dbp_op_take_result(dbp_op *op);
/* Redis reply of a fulfilled command; NULL otherwise. */
DBPDEF const dbp_reply *dbp_op_reply(const dbp_op *op);
/* Takes the reply out of the op: the caller frees it with dbp_reply_free(). */
DBPDEF dbp_reply *dbp_op_take_reply(dbp_op *op);
/* The pinned connection of a fulfilled acquire op: the caller now owns it
   and must release it. NULL when there is none or it was taken already. */
DBPDEF dbp_conn *dbp_op_take_conn(dbp_op *op);
/* Registers the callback (replacing any). If the op has already settled,
   the callback runs at the next hub step. */
DBPDEF void dbp_op_on_settle(dbp_op *op, dbp_settle_fn fn, void *ud);
/* Timestamps in microseconds of the monotonic clock: submitted, started
   (a connection began running it; 0 if never), settled (0 if not yet). */
DBPDEF void dbp_op_times(const dbp_op *op, long long *submitted, long long *started,
                         long long *settled);
/* Releases the caller's reference. A pending op runs on and frees itself
   when it settles (its callback is dropped). No-op on NULL. */
DBPDEF void dbp_op_free(dbp_op *op);

/* Streaming: after dbp_pool_query_stream(), returns DBP_ROW and points *row at
   the next row's ncols cells (valid until the next call), DBP_OK at the end
   of the result (the op is fulfilled), DBP_PENDING when no row is buffered yet
   (wait on the op or step the hub), or the op's error code when it failed.
   *ncols is set whenever known. The column descriptions come from
   dbp_op_fields() once the first row or the end arrived. */
DBPDEF int dbp_op_fetch(dbp_op *op, const dbp_cell **row, size_t *ncols);
/* Drives the hub until dbp_op_fetch() would not return DBP_PENDING, or
   timeout_ms passes (DBP_PENDING). Returns DBP_OK otherwise. */
DBPDEF int dbp_op_fetch_wait(dbp_op *op, int timeout_ms);

/* ==== Pinned connections ==================================================
   For transactions and anything that needs one session: acquire, run ops on
   the connection (they run in order), release. A connection released inside
   a MySQL transaction is rolled back first; a Redis connection left in
   MULTI, WATCH or another database is reset or discarded.
   When the server closes a pinned connection, nothing is retried (the
   session is gone with it): its ops are rejected with kind connection, and
   err.sent says whether each may have run. Before the first write on an idle
   pinned connection its socket is checked for EOF, as the pool does, so an
   op on one the server closed while it sat idle is rejected with sent == 0:
   the holder may take a new connection and run it again. */

/* An op that settles with a connection (dbp_op_take_conn). */
DBPDEF dbp_op *dbp_pool_acquire(dbp_pool *pool, const dbp_op_options *opts);
DBPDEF dbp_op *dbp_conn_query(dbp_conn *conn, const char *sql, const dbp_value *params,
                              size_t nparams, const dbp_op_options *opts);
DBPDEF dbp_op *dbp_conn_call(dbp_conn *conn, int argc, const char *const *argv,
                             const size_t *argvlen, const dbp_op_options *opts);
/* Returns the connection to its pool once its ops have settled. No-op on NULL. */
DBPDEF void dbp_conn_release(dbp_conn *conn);
/* Closes the connection instead of returning it. No-op on NULL. */
DBPDEF void dbp_conn_discard(dbp_conn *conn);
/* 1 while the connection can still run ops (its socket is healthy). */
DBPDEF int dbp_conn_ok(const dbp_conn *conn);
/* MySQL thread id / Redis client id of the connection (0 if unknown). */
DBPDEF unsigned long long dbp_conn_server_id(const dbp_conn *conn);
/* What a pinned connection's session holds: DBP_SESSION_TRANSACTION while a
   MySQL transaction or a Redis MULTI is open; DBP_SESSION_CHANGED when state
   a fresh connection would not have is set (the transaction, a Redis WATCH
   or SELECT). 0 for a dead connection or NULL. */
enum { DBP_SESSION_TRANSACTION = 1, DBP_SESSION_CHANGED = 2 };
DBPDEF unsigned dbp_conn_session(const dbp_conn *conn);
/* Why a dead pinned connection died (rc DBP_OK while it is alive). Never NULL. */
DBPDEF const dbp_error *dbp_conn_error(const dbp_conn *conn);

/* ==== Ping ================================================================
   Takes a connection (validating it) and makes one round trip. Fulfilled
   with a one-row result (MySQL: "version") or a status reply (Redis: the
   version in dbp_pool_server_version()). */
DBPDEF dbp_op *dbp_pool_ping(dbp_pool *pool, const dbp_op_options *opts);

/* ==== Pub/sub (Redis SUBSCRIBE, PostgreSQL LISTEN/NOTIFY) ==================
   A subscription owns one dedicated connection. After the connection drops
   it reconnects with backoff and subscribes again to every channel and
   pattern, then reports the gap through the pool's hook (DBP_EVENT_ERROR)
   and through a DBP_MSG_RESUBSCRIBED message. On PostgreSQL a channel is
   the exact name (LISTEN "name"; pg_notify('name', ...) reaches it), a
   message's payload is the NOTIFY payload, and patterns are refused
   (DBP_EUSAGE). */
typedef enum dbp_msg_type {
    DBP_MSG_MESSAGE = 1,    /* channel, payload */
    DBP_MSG_PMESSAGE,       /* pattern, channel, payload */
    DBP_MSG_SUBSCRIBED,     /* channel (or pattern) confirmed */
    DBP_MSG_RESUBSCRIBED,   /* after a reconnect: messages in between may be lost */
    DBP_MSG_ERROR           /* the subscription failed: payload says why */
} dbp_msg_type;

typedef struct dbp_message {
    dbp_msg_type type;
    const char *channel; size_t channel_len;
    const char *pattern; size_t pattern_len;
    const char *payload; size_t payload_len;
} dbp_message;

typedef void (*dbp_message_fn)(dbp_sub *sub, const dbp_message *msg, void *ud);

/* Subscribes to channels and patterns (either list may be empty). The
   strings are copied. NULL on error with err filled. */
DBPDEF dbp_sub *dbp_pool_subscribe(dbp_pool *pool, int nchannels, const char *const *channels,
                                   int npatterns, const char *const *patterns,
                                   dbp_message_fn fn, void *ud, dbp_error *err);
/* Adds channels (patterns: 1) to a subscription. */
DBPDEF int dbp_sub_add(dbp_sub *sub, int patterns, int n, const char *const *names);
/* Unsubscribes and closes the connection; the callback is not called after
   this returns. No-op on NULL. */
DBPDEF void dbp_sub_free(dbp_sub *sub);
/* Number of reconnects so far. */
DBPDEF int dbp_sub_reconnects(const dbp_sub *sub);

/* ==== Statistics ========================================================== */
typedef struct dbp_stats {
    int total, idle, busy, connecting, pinned, waiting;
    int max;                          /* effective max (may be capped by the server) */
    unsigned long long ops, fulfilled, rejected;
    unsigned long long created, closed;
    unsigned long long closed_idle, closed_lifetime, closed_error, closed_close, closed_dead;
    unsigned long long errors, timeouts, retried, lost, connect_failures;
    long long wait_p50_us, wait_p99_us, wait_max_us;   /* time in the queue */
    long long run_p50_us, run_p99_us, run_max_us;      /* time on a connection */
    long long server_wait_timeout;    /* seconds, MySQL wait_timeout / Redis timeout, -1 unknown */
    long long server_max_connections; /* max_connections / maxclients, -1 unknown */
    long long server_max_user_connections; /* -1 unknown, 0 none */
} dbp_stats;

/* Fills *st with a consistent snapshot. For a cluster pool: the sum over nodes. */
DBPDEF void dbp_pool_stats(const dbp_pool *pool, dbp_stats *st);

/* ==== Nodes: Redis Cluster, MySQL replicas ================================ */
typedef struct dbp_node_info {
    char addr[80];          /* "host:port" */
    int primary;            /* 1 primary, 0 replica */
    int slots;              /* slots served (primaries) */
    int slot_ranges;        /* number of ranges */
    char primary_addr[80];  /* for replicas: their primary */
    dbp_stats stats;
    /* MySQL replicas */
    int lag;                /* replicas: seconds behind the primary, -1 unknown */
    char state[16];         /* "ok", "lagging", "stopped", "down", "read-only", "unknown" */
    unsigned long long routed; /* statements the pool sent here */
    char last_error[DBP_ERRMSG_MAX]; /* why it is not "ok" ("" when it is) */
} dbp_node_info;

/* Fills up to max entries, returns how many nodes are known: a Redis
   Cluster's nodes, or a MySQL pool's primary (first) and replicas. */
DBPDEF int dbp_pool_nodes(const dbp_pool *pool, dbp_node_info *out, int max);
/* The hash slot of a key: CRC16-XMODEM modulo 16384, {hash tags} honoured. */
DBPDEF unsigned dbp_key_slot(const char *key, size_t len);

/* ==== URLs ================================================================
   mysql://user:pass@host:port/db?opt=v&...   redis://[user]:pass@host:port/db
   redis-cluster://[user:]pass@h1:p1,h2:p2/?opt=v
   Percent-decoding of every part, IPv6 in brackets, unix socket via
   ?socket=. Pure: no I/O, no environment. */
#define DBP_URL_MAX_HOSTS 64
#define DBP_URL_MAX_OPTIONS 64

typedef struct dbp_url {
    char *scheme;                       /* "mysql", "redis", "redis-cluster" */
    char *user, *password, *database;   /* NULL when absent */
    int nhosts;
    struct { char *host; int port; } hosts[DBP_URL_MAX_HOSTS]; /* port 0 when absent */
    int noptions;
    struct { char *key; char *value; } options[DBP_URL_MAX_OPTIONS];
    char *buf_;                         /* storage of all the strings */
} dbp_url;

/* Parses url into *out (which the caller frees with dbp_url_free). Returns
   DBP_OK or DBP_EURL with err naming the problem (never the password). */
DBPDEF int dbp_url_parse(const char *url, dbp_url *out, dbp_error *err);
DBPDEF void dbp_url_free(dbp_url *u);
/* Writes the URL without its password. Returns the length wanted. */
DBPDEF size_t dbp_url_redact(const char *url, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* DBPOOL_H */

/* ========================================================================== */
/*                              IMPLEMENTATION                                */
/* ========================================================================== */
#ifdef DBPOOL_IMPLEMENTATION
#ifndef DBPOOL_IMPLEMENTATION_ONCE
#define DBPOOL_IMPLEMENTATION_ONCE

#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
/* ==== SECTION: platform ==== */

#  error "dbpool.h: a system header came first; define _POSIX_C_SOURCE 200809L (or _GNU_SOURCE) at the top of the implementation file"
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#ifndef DBPOOL_NO_THREADS
#  include <pthread.h>
#  include <signal.h>
#endif
/* a SQL backend is compiled in: the engine's parts that only they use */
#if !defined(DBPOOL_NO_MYSQL) || !defined(DBPOOL_NO_PGSQL)
#  define DBP__HAVE_SQL 1
#endif

#ifndef DBPOOL_NO_MYSQL
#  include <mysql.h>
#  include <errmsg.h>
#endif
#ifndef DBPOOL_NO_PGSQL
/* Debian and most distributions put libpq's header in postgresql/: found
   there without `pkg-config --cflags libpq` too */
#  if defined(__has_include)
#    if __has_include(<libpq-fe.h>)
#      include <libpq-fe.h>
#    else
#      include <postgresql/libpq-fe.h>
#    endif
#  else
#    include <libpq-fe.h>
#  endif
#endif
#ifndef DBPOOL_NO_REDIS
#  include <hiredis/read.h>
#endif

#if defined(DBP_MALLOC) && defined(DBP_REALLOC) && defined(DBP_FREE)
#elif !defined(DBP_MALLOC) && !defined(DBP_REALLOC) && !defined(DBP_FREE)
#  define DBP_MALLOC(n) malloc(n)
#  define DBP_REALLOC(p, n) realloc(p, n)
#  define DBP_FREE(p) free(p)
#else
#  error "dbpool.h: define all of DBP_MALLOC, DBP_REALLOC and DBP_FREE, or none"
#endif

#ifndef DBP_MAX_PARAMS
#  define DBP_MAX_PARAMS 65535
#endif
#ifndef DBP_STREAM_BATCH
#  define DBP_STREAM_BATCH 256
#endif

/* C-style casts compile as C and C++ alike; the macro marks every one. */
#define DBP__CAST(T, x) ((T)(x))
#define DBP__ALLOC(T, n) DBP__CAST(T *, dbp__calloc((n), sizeof(T)))
#define DBP__UNUSED(x) ((void)(x))


/* ==== SECTION: utilities ==== */

/* calloc through the configured allocator, with the size product checked. */
static void *dbp__calloc(size_t n, size_t size)
{
    void *p;
    size_t total;
    if (size && n > (size_t)-1 / size) return NULL;
    total = n * size;
    p = DBP_MALLOC(total > 0 ? total : 1);
    if (p) memset(p, 0, total);
    return p;
}

static char *dbp__strndup(const char *s, size_t n)
{
    char *p = DBP__CAST(char *, DBP_MALLOC(n + 1));
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *dbp__strdup(const char *s) { return s ? dbp__strndup(s, strlen(s)) : NULL; }

/* Monotonic clock. Milliseconds drive deadlines; microseconds measure ops. */
static long long dbp__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}
static long long dbp__now_ms(void) { return dbp__now_us() / 1000; }

/* A small xorshift generator for jitter; seeded per hub, never global. */
static unsigned dbp__rand(unsigned long long *state)
{
    unsigned long long x = *state;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    *state = x;
    return (unsigned)(x >> 32);
}

/* Intrusive doubly linked list: the owner embeds a dbp__link. */
typedef struct dbp__link { struct dbp__link *prev, *next; } dbp__link;
#define DBP__CONTAINER(ptr, T, member) DBP__CAST(T *, (void *)((char *)(ptr) - offsetof(T, member)))

static void dbp__list_init(dbp__link *l) { l->prev = l->next = l; }
static int dbp__list_empty(const dbp__link *l) { return l->next == l; }
static int dbp__linked(const dbp__link *n) { return n->next != NULL && n->next != n; }
static void dbp__list_insert_before(dbp__link *at, dbp__link *n)
{
    n->prev = at->prev; n->next = at;
    at->prev->next = n; at->prev = n;
}
static void dbp__list_push(dbp__link *l, dbp__link *n) { dbp__list_insert_before(l, n); }
static void dbp__list_unshift(dbp__link *l, dbp__link *n) { dbp__list_insert_before(l->next, n); }
static void dbp__list_remove(dbp__link *n)
{
    if (!n->next) return;
    n->prev->next = n->next; n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

/* A growable byte buffer with a read offset. */
typedef struct dbp__buf { char *data; size_t len, cap, off; } dbp__buf;

/* Bytes not yet consumed. Unlike len, it does not change when reserve moves
   the unconsumed bytes to the front: count what was appended with it. */
#ifndef DBPOOL_NO_REDIS
static size_t dbp__buf_unread(const dbp__buf *b) { return b->len - b->off; }
#endif

static int dbp__buf_reserve(dbp__buf *b, size_t extra)
{
    size_t need, cap;
    char *p;
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (extra > (size_t)-1 - b->len - 1) return DBP_ENOMEM;
    need = b->len + extra + 1;
    if (need <= b->cap) return DBP_OK;
    if (b->off > 0 && b->len - b->off + extra + 1 <= b->cap) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off; b->off = 0;
        return DBP_OK;
    }
    cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > (size_t)-1 / 2) { cap = need; break; }
        cap *= 2;
    }
    p = DBP__CAST(char *, DBP_REALLOC(b->data, cap));
    if (!p) return DBP_ENOMEM;
    b->data = p; b->cap = cap;
    return DBP_OK;
}
static int dbp__buf_add(dbp__buf *b, const void *p, size_t n)
{
    if (dbp__buf_reserve(b, n)) return DBP_ENOMEM;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n; b->data[b->len] = '\0';
    return DBP_OK;
}
static int dbp__buf_adds(dbp__buf *b, const char *s) { return dbp__buf_add(b, s, strlen(s)); }
#ifndef DBPOOL_NO_MYSQL /* (only MySQL formats a statement of its own: KILL QUERY) */
static int dbp__buf_printf(dbp__buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    char tmp[64];
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return DBP_EUSAGE;
    if ((size_t)n < sizeof tmp) return dbp__buf_add(b, tmp, (size_t)n);
    if (dbp__buf_reserve(b, (size_t)n)) return DBP_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return DBP_OK;
}
#endif
static void dbp__buf_free(dbp__buf *b) { DBP_FREE(b->data); memset(b, 0, sizeof *b); }

/* op->cmd (upper-cased) is the literal NAME; the first letter is checked first */
#define dbp__cmd_eq(op, NAME) ((op)->cmd[0] == (NAME)[0] && strcmp((op)->cmd, (NAME)) == 0)


/* ==== SECTION: errors ==== */

DBPDEF const char *dbp_rc_name(int rc)
{
    switch (rc) {
    case DBP_OK: return "DBP_OK";
    case DBP_PENDING: return "DBP_PENDING";
    case DBP_ROW: return "DBP_ROW";
    case DBP_EUSAGE: return "DBP_EUSAGE";
    case DBP_EURL: return "DBP_EURL";
    case DBP_EOPTION: return "DBP_EOPTION";
    case DBP_EPARAM: return "DBP_EPARAM";
    case DBP_EUNSUPPORTED: return "DBP_EUNSUPPORTED";
    case DBP_ECROSSSLOT: return "DBP_ECROSSSLOT";
    case DBP_ENOMEM: return "DBP_ENOMEM";
    case DBP_ECONNECT: return "DBP_ECONNECT";
    case DBP_EAUTH: return "DBP_EAUTH";
    case DBP_ELOST: return "DBP_ELOST";
    case DBP_EPROTOCOL: return "DBP_EPROTOCOL";
    case DBP_EQUEUE_FULL: return "DBP_EQUEUE_FULL";
    case DBP_EREDIRECT: return "DBP_EREDIRECT";
    case DBP_ETIMEOUT: return "DBP_ETIMEOUT";
    case DBP_EACQUIRE_TIMEOUT: return "DBP_EACQUIRE_TIMEOUT";
    case DBP_ESQL: return "DBP_ESQL";
    case DBP_EREDIS: return "DBP_EREDIS";
    case DBP_ECLOSED: return "DBP_ECLOSED";
    case DBP_ECANCELLED: return "DBP_ECANCELLED";
    default: return "DBP_UNKNOWN";
    }
}

DBPDEF const char *dbp_rc_string(int rc)
{
    switch (rc) {
    case DBP_OK: return "success";
    case DBP_PENDING: return "not settled yet";
    case DBP_ROW: return "a row is ready";
    case DBP_EUSAGE: return "invalid use of the API";
    case DBP_EURL: return "malformed URL";
    case DBP_EOPTION: return "unknown or invalid option";
    case DBP_EPARAM: return "bad query parameters";
    case DBP_EUNSUPPORTED: return "not supported by this build";
    case DBP_ECROSSSLOT: return "keys hash to different cluster slots";
    case DBP_ENOMEM: return "out of memory";
    case DBP_ECONNECT: return "could not connect";
    case DBP_EAUTH: return "authentication failed";
    case DBP_ELOST: return "connection lost after the request was sent; it may or may not have run";
    case DBP_EPROTOCOL: return "protocol error";
    case DBP_EQUEUE_FULL: return "too many ops waiting (max_waiting)";
    case DBP_EREDIRECT: return "too many cluster redirections";
    case DBP_ETIMEOUT: return "timed out while running";
    case DBP_EACQUIRE_TIMEOUT: return "no connection available in time";
    case DBP_ESQL: return "SQL error";
    case DBP_EREDIS: return "Redis error";
    case DBP_ECLOSED: return "pool is closing or closed";
    case DBP_ECANCELLED: return "cut off by the close deadline";
    default: return "unknown result code";
    }
}

DBPDEF dbp_kind dbp_rc_kind(int rc)
{
    switch (rc) {
    case DBP_OK: case DBP_PENDING: case DBP_ROW: return DBP_KIND_NONE;
    case DBP_EUSAGE: case DBP_EURL: case DBP_EOPTION: case DBP_EPARAM:
    case DBP_EUNSUPPORTED: case DBP_ECROSSSLOT: return DBP_KIND_USAGE;
    case DBP_ETIMEOUT: case DBP_EACQUIRE_TIMEOUT: return DBP_KIND_TIMEOUT;
    case DBP_ESQL: return DBP_KIND_SQL;
    case DBP_EREDIS: case DBP_EREDIRECT: return DBP_KIND_REDIS;
    case DBP_EAUTH: return DBP_KIND_AUTH;
    case DBP_ECLOSED: case DBP_ECANCELLED: return DBP_KIND_CLOSED;
    default: return DBP_KIND_CONNECTION;
    }
}

DBPDEF const char *dbp_kind_name(dbp_kind kind)
{
    static const char *const names[] = { "", "usage", "connection", "timeout", "closed",
                                         "sql", "redis", "auth" };
    return (unsigned)kind < sizeof names / sizeof names[0] ? names[kind] : "";
}

static void dbp__err_clear(dbp_error *e)
{
    if (!e) return;
    e->rc = DBP_OK; e->code = 0; e->sent = 0; e->sqlstate[0] = '\0'; e->message[0] = '\0';
}

/* Sets an error; the message is formatted and truncated to fit. */
static int dbp__err_set(dbp_error *e, int rc, const char *fmt, ...)
{
    va_list ap;
    if (!e) return rc;
    e->rc = rc; e->code = 0; e->sent = 0; e->sqlstate[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return rc;
}


/* Removes every occurrence of a secret from a message (drivers may echo one). */
static void dbp__err_scrub(dbp_error *e, const char *secret)
{
    size_t n;
    char *p;
    if (!e || !secret || !*secret) return;
    n = strlen(secret);
    p = e->message;
    while ((p = strstr(p, secret)) != NULL) {
        size_t k = n < 3 ? n : 3;
        memset(p, '*', k);
        memmove(p + k, p + n, strlen(p + n) + 1);
        p += k; /* go on after the mask: a secret of '*' would match its own mask */
    }
}


/* ==== SECTION: values and the parameter binder ==== */

DBPDEF dbp_value dbp_v_null(void) { dbp_value v; memset(&v, 0, sizeof v); v.type = DBP_NULL; return v; }
DBPDEF dbp_value dbp_v_bool(int b) { dbp_value v = dbp_v_null(); v.type = DBP_BOOL; v.v.b = b != 0; return v; }
DBPDEF dbp_value dbp_v_int(long long i) { dbp_value v = dbp_v_null(); v.type = DBP_INT; v.v.i = i; return v; }
DBPDEF dbp_value dbp_v_uint(unsigned long long u) { dbp_value v = dbp_v_null(); v.type = DBP_UINT; v.v.u = u; return v; }
DBPDEF dbp_value dbp_v_double(double d) { dbp_value v = dbp_v_null(); v.type = DBP_DOUBLE; v.v.d = d; return v; }
DBPDEF dbp_value dbp_v_textn(const char *s, size_t len)
{
    dbp_value v = dbp_v_null();
    v.type = DBP_TEXT; v.v.s.data = s ? s : ""; v.v.s.len = s ? len : 0;
    return v;
}
DBPDEF dbp_value dbp_v_text(const char *s) { return dbp_v_textn(s, s ? strlen(s) : 0); }
DBPDEF dbp_value dbp_v_blob(const void *p, size_t len)
{
    dbp_value v = dbp_v_textn(DBP__CAST(const char *, p), len);
    v.type = DBP_BLOB;
    return v;
}

DBPDEF void dbp_free(void *p) { DBP_FREE(p); }

/* Walks sql the way the server's lexer splits it into code, quoted text and
   comments, and calls fn at every `?` that is a placeholder. Backslash
   escapes inside quotes are assumed (the server default). */
typedef int (*dbp__ph_fn)(void *ud, size_t pos);

/* The bytes that start something (a quote, a comment, a placeholder): " # ' - / ? ` */
static const unsigned char dbp__scan_special[256] = {
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,1,1,0,0,0,1,0,0,0,0,0,1,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0
};

static size_t dbp__scan_placeholders(const char *sql, size_t len, dbp__ph_fn fn, void *ud)
{
    size_t i = 0, n = 0;
    while (i < len) {
        char c;
        /* (a table lookup per byte: the scan runs twice per query, at submit and at bind) */
        while (i < len && !dbp__scan_special[(unsigned char)sql[i]]) i++;
        if (i >= len) break;
        c = sql[i];
        if (c == '\'' || c == '"' || c == '`') {
            char q = c;
            i++;
            while (i < len) {
                if (sql[i] == '\\' && q != '`') { i += 2; continue; }
                if (sql[i] == q) {
                    if (i + 1 < len && sql[i + 1] == q) { i += 2; continue; }
                    break;
                }
                i++;
            }
            i++;
        } else if (c == '#' || (c == '-' && i + 1 < len && sql[i + 1] == '-' &&
                                /* MariaDB starts a comment at "--" and any control character or space */
                                (i + 2 >= len || (unsigned char)sql[i + 2] <= ' ' || sql[i + 2] == 0x7f))) {
            while (i < len && sql[i] != '\n') i++;
        } else if (c == '/' && i + 1 < len && sql[i + 1] == '*') {
            i += 2;
            while (i + 1 < len && !(sql[i] == '*' && sql[i + 1] == '/')) i++;
            i += 2;
        } else {
            if (c == '?') {
                if (fn && fn(ud, i)) return n;
                n++;
            }
            i++;
        }
    }
    return n;
}

DBPDEF size_t dbp_sql_count_params(const char *sql, size_t len)
{
    return sql ? dbp__scan_placeholders(sql, len, NULL, NULL) : 0;
}

/* Escapes text for a quoted literal; writes at most 2*len bytes, returns the count. */
typedef size_t (*dbp__escape_fn)(void *ud, char *to, const char *from, size_t len);

static size_t dbp__escape_default(void *ud, char *to, const char *from, size_t len)
{
    size_t i, o = 0;
    DBP__UNUSED(ud);
    for (i = 0; i < len; i++) {
        char e = 0;
        switch (from[i]) {
        case '\0': e = '0'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        case '\\': e = '\\'; break;
        case '\'': e = '\''; break;
        case '"': e = '"'; break;
        case '\032': e = 'Z'; break;
        default: break;
        }
        if (e) { to[o++] = '\\'; to[o++] = e; } else to[o++] = from[i];
    }
    return o;
}

/* Checks values before anything is sent: count and finite doubles. */
/* The positions of the first DBP__PH_KEPT placeholders, noted at submit so
   that binding need not scan the SQL again. */
#define DBP__PH_KEPT 8
typedef struct dbp__ph_list { unsigned pos[DBP__PH_KEPT]; size_t n; } dbp__ph_list;
static int dbp__ph_note(void *ud, size_t pos)
{
    dbp__ph_list *l = DBP__CAST(dbp__ph_list *, ud);
    if (l->n < DBP__PH_KEPT) l->pos[l->n] = (unsigned)pos;
    l->n++;
    return 0;
}

/* Checks the values against `want` placeholders. */
static int dbp__check_values(size_t want, const dbp_value *params, size_t n, dbp_error *err)
{
    size_t i;
    if (n > DBP_MAX_PARAMS)
        return dbp__err_set(err, DBP_EPARAM, "too many parameters (%lu, at most %d)",
                            (unsigned long)n, DBP_MAX_PARAMS);
    if (want != n)
        return dbp__err_set(err, DBP_EPARAM, "the statement has %lu placeholder%s but %lu parameter%s given",
                            (unsigned long)want, want == 1 ? "" : "s", (unsigned long)n, n == 1 ? " was" : "s were");
    for (i = 0; i < n; i++) {
        switch (params[i].type) {
        case DBP_NULL: case DBP_BOOL: case DBP_INT: case DBP_UINT: break;
        case DBP_DOUBLE:
            if (isnan(params[i].v.d) || isinf(params[i].v.d))
                return dbp__err_set(err, DBP_EPARAM, "parameter %lu is %s: SQL has no such number",
                                    (unsigned long)i + 1, isnan(params[i].v.d) ? "NaN" : "infinite");
            break;
        case DBP_TEXT: case DBP_BLOB:
            if (!params[i].v.s.data && params[i].v.s.len)
                return dbp__err_set(err, DBP_EPARAM, "parameter %lu has no data", (unsigned long)i + 1);
            break;
        default:
            return dbp__err_set(err, DBP_EPARAM, "parameter %lu has an unknown type %d",
                                (unsigned long)i + 1, (int)params[i].type);
        }
    }
    return DBP_OK;
}

static int dbp__check_params_at(const char *sql, size_t len, const dbp_value *params, size_t n,
                                dbp_error *err, dbp__ph_list *ph)
{
    size_t want = ph ? (dbp__scan_placeholders(sql, len, dbp__ph_note, ph), ph->n)
                     : dbp__scan_placeholders(sql, len, NULL, NULL);
    return dbp__check_values(want, params, n, err);
}

static int dbp__check_params(const char *sql, size_t len, const dbp_value *params, size_t n, dbp_error *err)
{
    return dbp__check_params_at(sql, len, params, n, err, NULL);
}

typedef struct dbp__bind_ctx {
    const char *sql;
    const dbp_value *params;
    dbp__buf *out;
    dbp__escape_fn escape;
    void *escape_ud;
    size_t last, idx;
    int rc;
} dbp__bind_ctx;

/* The decimal text of an integer value (DBP_INT or DBP_UINT) ending at
   `end`; returns where it starts (at most 20 bytes before). By hand:
   vsnprintf cost as much as the rest of the bind. */
static char *dbp__int_text(const dbp_value *v, char *end)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    unsigned long long u = v->type == DBP_UINT ? v->v.u
                         : v->v.i < 0 ? 0ULL - (unsigned long long)v->v.i : (unsigned long long)v->v.i;
    char *d = end;
    /* two digits per division */
    while (u >= 100) { unsigned k = (unsigned)(u % 100) * 2; u /= 100; *--d = pairs[k + 1]; *--d = pairs[k]; }
    if (u >= 10) { unsigned k = (unsigned)u * 2; *--d = pairs[k + 1]; *--d = pairs[k]; }
    else *--d = (char)('0' + u);
    if (v->type == DBP_INT && v->v.i < 0) *--d = '-';
    return d;
}

static int dbp__bind_value(dbp__buf *out, const dbp_value *v, dbp__escape_fn escape, void *ud)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i;
    char num[40];
    switch (v->type) {
    case DBP_NULL: return dbp__buf_adds(out, "NULL");
    case DBP_BOOL: return dbp__buf_adds(out, v->v.b ? "TRUE" : "FALSE");
    case DBP_INT: case DBP_UINT: {
        char *d = dbp__int_text(v, num + sizeof num);
        return dbp__buf_add(out, d, (size_t)(num + sizeof num - d));
    }
    case DBP_DOUBLE: {
        /* Shortest text that reads back as the same double; the e0 suffix
           makes the server read a DOUBLE literal, not an exact DECIMAL. */
        int prec;
        for (prec = 15; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, v->v.d);
            if (strtod(num, NULL) == v->v.d) break;
        }
        if (!strchr(num, 'e') && !strchr(num, 'E')) strcat(num, "e0");
        return dbp__buf_adds(out, num);
    }
    case DBP_TEXT:
        if (v->v.s.len > ((size_t)-1 - 3) / 2) return DBP_ENOMEM;
        if (dbp__buf_reserve(out, v->v.s.len * 2 + 2)) return DBP_ENOMEM;
        out->data[out->len++] = '\'';
        out->len += escape(ud, out->data + out->len, v->v.s.data, v->v.s.len);
        out->data[out->len++] = '\'';
        out->data[out->len] = '\0';
        return DBP_OK;
    case DBP_BLOB:
        if (v->v.s.len > ((size_t)-1 - 4) / 2) return DBP_ENOMEM;
        if (dbp__buf_reserve(out, v->v.s.len * 2 + 3)) return DBP_ENOMEM;
        out->data[out->len++] = 'X';
        out->data[out->len++] = '\'';
        for (i = 0; i < v->v.s.len; i++) {
            unsigned char c = (unsigned char)v->v.s.data[i];
            out->data[out->len++] = hex[c >> 4];
            out->data[out->len++] = hex[c & 15];
        }
        out->data[out->len++] = '\'';
        out->data[out->len] = '\0';
        return DBP_OK;
    default: return DBP_EPARAM;
    }
}

static int dbp__bind_cb(void *ud, size_t pos)
{
    dbp__bind_ctx *b = DBP__CAST(dbp__bind_ctx *, ud);
    if (dbp__buf_add(b->out, b->sql + b->last, pos - b->last) ||
        dbp__bind_value(b->out, &b->params[b->idx], b->escape, b->escape_ud)) {
        b->rc = DBP_ENOMEM;
        return 1;
    }
    b->idx++;
    b->last = pos + 1;
    return 0;
}

/* Binds params into sql, appending to out. Values must have been checked.
   ph: the placeholders' positions when known (at most DBP__PH_KEPT), else NULL. */
static int dbp__bind_at(const char *sql, size_t len, const dbp_value *params, dbp__buf *out,
                        dbp__escape_fn escape, void *ud, const unsigned *ph, size_t nph)
{
    dbp__bind_ctx b;
    size_t k;
    if (ph) {
        /* Integers, NULL and booleans only (ids, limits: the common case):
           room for the longest text of each at once, then written in place. */
        size_t need = len;
        for (k = 0; k < nph; k++) {
            int t = params[k].type;
            if (t != DBP_INT && t != DBP_UINT && t != DBP_NULL && t != DBP_BOOL) break;
            need += 20;
        }
        if (k == nph) {
            size_t last = 0;
            char *w;
            if (dbp__buf_reserve(out, need)) return DBP_ENOMEM;
            w = out->data + out->len;
            for (k = 0; k < nph; k++) {
                const dbp_value *v = &params[k];
                memcpy(w, sql + last, ph[k] - last);
                w += ph[k] - last;
                last = ph[k] + 1;
                if (v->type == DBP_NULL) { memcpy(w, "NULL", 4); w += 4; }
                else if (v->type == DBP_BOOL) { memcpy(w, v->v.b ? "TRUE" : "FALSE", v->v.b ? 4 : 5); w += v->v.b ? 4 : 5; }
                else {
                    char num[24], *d = dbp__int_text(v, num + sizeof num);
                    memcpy(w, d, (size_t)(num + sizeof num - d));
                    w += num + sizeof num - d;
                }
            }
            memcpy(w, sql + last, len - last);
            w += len - last;
            *w = '\0';
            out->len = (size_t)(w - out->data);
            return DBP_OK;
        }
    }
    memset(&b, 0, sizeof b);
    b.sql = sql; b.params = params; b.out = out; b.escape = escape; b.escape_ud = ud;
    if (ph) {
        for (k = 0; k < nph && !b.rc; k++) dbp__bind_cb(&b, ph[k]);
    } else {
        dbp__scan_placeholders(sql, len, dbp__bind_cb, &b);
    }
    if (b.rc) return b.rc;
    return dbp__buf_add(out, sql + b.last, len - b.last);
}

static int dbp__bind(const char *sql, size_t len, const dbp_value *params, dbp__buf *out,
                     dbp__escape_fn escape, void *ud)
{
    return dbp__bind_at(sql, len, params, out, escape, ud, NULL, 0);
}

DBPDEF char *dbp_sql_bind(const char *sql, size_t len, const dbp_value *params, size_t nparams,
                          size_t *out_len, dbp_error *err)
{
    dbp__buf out;
    int rc;
    memset(&out, 0, sizeof out);
    dbp__err_clear(err);
    if (!sql) { dbp__err_set(err, DBP_EUSAGE, "sql is NULL"); return NULL; }
    if (nparams && !params) { dbp__err_set(err, DBP_EUSAGE, "params is NULL"); return NULL; }
    if (dbp__check_params(sql, len, params, nparams, err)) return NULL;
    rc = dbp__bind(sql, len, params, &out, dbp__escape_default, NULL);
    if (rc == DBP_OK && !out.data) rc = dbp__buf_add(&out, "", 0);
    if (rc) { dbp__buf_free(&out); dbp__err_set(err, rc, "out of memory"); return NULL; }
    if (out_len) *out_len = out.len;
    return out.data;
}

/* Deep copy of parameters in one allocation, so an op owns its values. */
static dbp_value *dbp__params_copy(const dbp_value *params, size_t n)
{
    size_t i, bytes = 0, head;
    dbp_value *copy;
    char *p;
    if (!n) return NULL;
    for (i = 0; i < n; i++)
        if (params[i].type == DBP_TEXT || params[i].type == DBP_BLOB) {
            if (params[i].v.s.len > (size_t)-1 / 2 - bytes) return NULL;
            bytes += params[i].v.s.len + 1;
        }
    if (n > ((size_t)-1 / 2) / sizeof(dbp_value)) return NULL;
    head = n * sizeof(dbp_value);
    copy = DBP__CAST(dbp_value *, DBP_MALLOC(head + bytes + 1));
    if (!copy) return NULL;
    memcpy(copy, params, head);
    p = DBP__CAST(char *, copy) + head;
    for (i = 0; i < n; i++)
        if (copy[i].type == DBP_TEXT || copy[i].type == DBP_BLOB) {
            if (copy[i].v.s.len) memcpy(p, copy[i].v.s.data, copy[i].v.s.len);
            p[copy[i].v.s.len] = '\0';
            copy[i].v.s.data = p;
            p += copy[i].v.s.len + 1;
        }
    return copy;
}


/* ==== SECTION: settings ==== */

enum { DBP__SSL_UNSET = 0, DBP__SSL_DISABLED, DBP__SSL_PREFERRED, DBP__SSL_REQUIRED,
       DBP__SSL_VERIFY_CA, DBP__SSL_VERIFY_IDENTITY };
enum { DBP__READ_PRIMARY = 0, DBP__READ_REPLICA, DBP__READ_PREFER_REPLICA };

DBPDEF void dbp_pool_config_init(dbp_pool_config *cfg)
{
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->port = -1;
    cfg->max = cfg->min = cfg->max_waiting = cfg->max_blocking = cfg->pipeline = -1;
    cfg->prepare = cfg->prepare_cache = -1;
    cfg->acquire_timeout_ms = cfg->connect_timeout_ms = cfg->query_timeout_ms = -1;
    cfg->idle_timeout_ms = cfg->max_lifetime_ms = cfg->validate_after_ms = -1;
    cfg->keepalive_ms = cfg->backoff_min_ms = cfg->backoff_max_ms = -1;
    cfg->slow_threshold_ms = cfg->close_timeout_ms = cfg->max_redirects = -1;
    cfg->ninit = -1;
    cfg->prepare = cfg->prepare_cache = -1;
    cfg->nreplicas = cfg->max_lag_ms = cfg->read_your_writes = -1;
}

enum { DBP__OPT_COUNT, DBP__OPT_MS, DBP__OPT_STR, DBP__OPT_BOOL };
enum { DBP__FOR_ALL = 15, DBP__FOR_MYSQL = 1, DBP__FOR_REDIS = 2, DBP__FOR_CLUSTER = 4, DBP__FOR_PGSQL = 8 };
#define DBP__FOR_SQL (DBP__FOR_MYSQL | DBP__FOR_PGSQL)

/* Everything a pool needs, resolved and owned. */
typedef struct dbp__backend dbp__backend;

typedef struct dbp__settings {
    const dbp__backend *bk;  /* what the URL's scheme (or cfg->backend) names */
    char *host;              /* NULL: localhost / unix socket default */
    int port;
    char *user, *password, *database, *socket, *charset, *name;
    int nseeds;
    char **seed_hosts;       /* cluster seeds */
    int *seed_ports;
    int redis_db;
    int max, min, max_waiting, max_blocking, pipeline, prepare, prepare_cache;
    int acquire_timeout, connect_timeout, query_timeout, idle_timeout, max_lifetime;
    int validate_after, keepalive, backoff_min, backoff_max, slow_threshold, close_timeout;
    char **init;
    int ninit;
    int ssl_mode;
    char *ssl_ca, *ssl_cert, *ssl_key;
    char *gssencmode;        /* PostgreSQL */
    int read_from;
    int max_redirects;
    int readonly;            /* a cluster replica's node pool: READONLY on every connection */
    char **replicas;         /* MySQL replicas, as given ("host:port" or a URL) */
    int nreplicas;
    int max_lag, read_your_writes;
} dbp__settings;

/* ---- the backend seam ----
   What a backend provides; the pool engine is the same for all and calls a
   backend only through this table. A backend with connections fills the
   connection entries. A router (Redis Cluster) has no connection of its
   own: it passes each op on to one of the pools under it (their `parent` is
   the router's pool) and fills `router` instead. Adding a backend is adding
   one table: dbp__backends_all() lists them. */
enum { DBP__BKF_SQL = 1,        /* query(), `init` statements */
       DBP__BKF_COMMANDS = 2,   /* call() */
       DBP__BKF_PUBSUB = 4,     /* subscribe() */
       DBP__BKF_SEEDS = 8,      /* a URL's several hosts are seeds of one system */
       DBP__BKF_PATTERNS = 16,  /* subscribe() takes patterns too */
       DBP__BKF_LISTEN = 32,    /* subscribe() is LISTEN/NOTIFY on a connection of the backend */
       DBP__BKF_COPY = 64,      /* dbp_pool_copy_in() */
       DBP__BKF_REPLICAS = 128 }; /* a router over a primary and its replicas: it takes
                                     over a pool of the backend with its name when the
                                     `replicas` option is given; no scheme of its own */

typedef struct dbp__router dbp__router;

struct dbp__backend {
    const char *name;                            /* dbp_pool_backend(), messages, descriptions */
    const char *schemes;                         /* its URL schemes, space separated */
    int default_port;
    int scope;                                   /* DBP__FOR_* bit: the options that apply */
    unsigned flags;                              /* DBP__BKF_* */
    const char *charset;                         /* the default charset, NULL none */
    int (*settings)(dbp__settings *s, dbp_error *err);  /* its own checks once resolved; NULL none */
    void (*describe)(const dbp__settings *s, char *buf, size_t size); /* NULL: scheme://user@host:port/database */
    /* connections */
    int (*conn_open)(dbp_conn *c);               /* start connecting; error: c->err set */
    void (*conn_io)(dbp_conn *c, int revents);   /* poll events, or DBP__EV_TIMER */
    void (*op_start)(dbp_conn *c, dbp_op *op);   /* run op on a ready connection */
    void (*op_timeout)(dbp_conn *c, dbp_op *op); /* op ran past its deadline */
    void (*validate)(dbp_conn *c);               /* ping c->pending's connection */
    void (*quit)(dbp_conn *c);                   /* graceful close: QUIT, then dead */
    void (*abort)(dbp_conn *c);                  /* close without waiting; frees backend state */
    void (*flush)(dbp_conn *c);                  /* before poll: write what is queued */
    int (*idle_dead)(dbp_conn *c, int revents);  /* 1 when an idle socket's event means death */
    void (*release)(dbp_conn *c);                /* pinned conn back: reset session if dirty, then idle */
    unsigned (*session)(const dbp_conn *c);      /* DBP_SESSION_* bits of a live connection */
    void (*stream_cancel)(dbp_op *op);           /* the stream's reader let go: drain and drop the rest */
    void (*stream_resume)(dbp_op *op);           /* the reader used up the batch: read the next */
    int pipelined;                               /* 1: up to `pipeline` ops in flight per
                                                    connection (replies in order); 0: one */
    int (*check_params)(const char *sql, size_t len, const dbp_value *params, size_t n,
                        dbp_error *err);         /* a query's placeholders and values, before
                                                    anything is sent; NULL: `?` (dbp__check_params) */
    const dbp__router *router;                   /* a router's pool-level entries, else NULL */
};

/* A router's entries. The engine queues the router pool's ops and settles
   them as for any pool; what runs where is the router's. */
struct dbp__router {
    int (*open)(dbp_pool *p, dbp_error *err);    /* its state and its first pools */
    void (*free)(dbp_pool *p);                   /* its state and the pools under it */
    int (*prepare)(dbp_pool *p, dbp_op *op, int argc, const char *const *argv, const size_t *lens);
                                                 /* a new command: where it must go (an error settles it) */
    void (*dispatch)(dbp_pool *p);               /* pass on what is queued */
    void (*detach)(dbp_pool *p);                 /* an op settled before the op it passed on did */
    int (*running)(const dbp_pool *p);           /* ops passed on and not back yet */
    int (*busy)(const dbp_pool *p);              /* anything under it not closed yet */
    void (*close)(dbp_pool *p, int timeout_ms);  /* close the pools under it */
    const char *(*last_error)(const dbp_pool *p);
    dbp_pool *(*any)(dbp_pool *p, dbp_pool *not_this); /* an open pool under it (subscriptions), NULL none */
    dbp_op *(*ping)(dbp_pool *p, const dbp_op_options *o);
    int (*nodes)(const dbp_pool *p, dbp_node_info *out, int max);
    const char *no_pin;                          /* why acquire() is refused */
    dbp_pool *(*pin)(dbp_pool *p);               /* the pool under it that acquire() takes a
                                                    connection from; NULL: refused (no_pin) */
};

/* The backends of this build (NULL-terminated), defined after them all. */
static const dbp__backend *const *dbp__backends_all(void);

/* One pool option: its name in URLs and dbp_pool_config_set, where it lives
   in dbp_pool_config and (numbers) in dbp__settings, its default, the
   smallest value accepted, and the backends it applies to. This table is the
   one place an option is described; resolving walks it. */
typedef struct dbp__option {
    const char *name;
    int kind;
    size_t off;     /* in dbp_pool_config */
    int min;        /* smallest accepted count / ms */
    int scope;      /* DBP__FOR_* bits */
    size_t soff;    /* numbers: in dbp__settings */
    int def;        /* numbers: the default (DBP__DEF_MAX: the pool's max) */
} dbp__option;

#define DBP__DEF_MAX (-2)
#define DBP__NUM(n, k, f, m, sc, sf, d) { n, k, offsetof(dbp_pool_config, f), m, sc, offsetof(dbp__settings, sf), d }
#define DBP__STR(n, f, sc) { n, DBP__OPT_STR, offsetof(dbp_pool_config, f), 0, sc, 0, 0 }
static const dbp__option dbp__options[] = {
    DBP__NUM("max", DBP__OPT_COUNT, max, 1, DBP__FOR_ALL, max, 10),
    DBP__NUM("min", DBP__OPT_COUNT, min, 0, DBP__FOR_ALL, min, 0),
    DBP__NUM("max_waiting", DBP__OPT_COUNT, max_waiting, 0, DBP__FOR_ALL, max_waiting, 0),
    DBP__NUM("max_blocking", DBP__OPT_COUNT, max_blocking, 1, DBP__FOR_REDIS | DBP__FOR_CLUSTER, max_blocking, DBP__DEF_MAX),
    DBP__NUM("pipeline", DBP__OPT_COUNT, pipeline, 1, DBP__FOR_REDIS | DBP__FOR_CLUSTER, pipeline, 1000),
    DBP__NUM("prepare", DBP__OPT_BOOL, prepare, 0, DBP__FOR_SQL, prepare, 1),
    DBP__NUM("prepare_cache", DBP__OPT_COUNT, prepare_cache, 1, DBP__FOR_SQL, prepare_cache, 256),
    DBP__NUM("acquire_timeout", DBP__OPT_MS, acquire_timeout_ms, 0, DBP__FOR_ALL, acquire_timeout, 30000),
    DBP__NUM("connect_timeout", DBP__OPT_MS, connect_timeout_ms, 1, DBP__FOR_ALL, connect_timeout, 10000),
    DBP__NUM("query_timeout", DBP__OPT_MS, query_timeout_ms, 0, DBP__FOR_ALL, query_timeout, 0),
    DBP__NUM("idle_timeout", DBP__OPT_MS, idle_timeout_ms, 0, DBP__FOR_ALL, idle_timeout, 60000),
    DBP__NUM("max_lifetime", DBP__OPT_MS, max_lifetime_ms, 0, DBP__FOR_ALL, max_lifetime, 1800000),
    DBP__NUM("validate_after", DBP__OPT_MS, validate_after_ms, 0, DBP__FOR_ALL, validate_after, 1000),
    DBP__NUM("keepalive", DBP__OPT_MS, keepalive_ms, 0, DBP__FOR_ALL, keepalive, 30000),
    DBP__NUM("backoff_min", DBP__OPT_MS, backoff_min_ms, 1, DBP__FOR_ALL, backoff_min, 100),
    DBP__NUM("backoff_max", DBP__OPT_MS, backoff_max_ms, 1, DBP__FOR_ALL, backoff_max, 5000),
    DBP__NUM("slow_threshold", DBP__OPT_MS, slow_threshold_ms, 0, DBP__FOR_ALL, slow_threshold, 0),
    DBP__NUM("close_timeout", DBP__OPT_MS, close_timeout_ms, 0, DBP__FOR_ALL, close_timeout, 30000),
    DBP__NUM("max_redirects", DBP__OPT_COUNT, max_redirects, 1, DBP__FOR_CLUSTER, max_redirects, 16),
    DBP__STR("charset", charset, DBP__FOR_SQL),
    DBP__STR("name", name, DBP__FOR_ALL),
    DBP__STR("socket", socket, DBP__FOR_SQL),
    DBP__STR("ssl-mode", ssl_mode, DBP__FOR_SQL),
    DBP__STR("ssl-ca", ssl_ca, DBP__FOR_SQL),
    DBP__STR("ssl-cert", ssl_cert, DBP__FOR_SQL),
    DBP__STR("ssl-key", ssl_key, DBP__FOR_SQL),
    DBP__STR("read_from", read_from, DBP__FOR_CLUSTER),
    /* libpq's names, for postgres:// URLs as people write them */
    DBP__STR("sslmode", ssl_mode, DBP__FOR_SQL),
    DBP__STR("sslrootcert", ssl_ca, DBP__FOR_SQL),
    DBP__STR("sslcert", ssl_cert, DBP__FOR_SQL),
    DBP__STR("sslkey", ssl_key, DBP__FOR_SQL),
    DBP__STR("application_name", name, DBP__FOR_ALL),
    DBP__STR("gssencmode", gssencmode, DBP__FOR_PGSQL),
    DBP__NUM("max_lag", DBP__OPT_MS, max_lag_ms, 0, DBP__FOR_MYSQL, max_lag, 5000),
    DBP__NUM("read_your_writes", DBP__OPT_COUNT, read_your_writes, 0, DBP__FOR_MYSQL, read_your_writes, 0)
};
#undef DBP__NUM
#undef DBP__STR

/* Parses a count: decimal digits only, within [min, INT_MAX]. */
static int dbp__parse_count(const char *v, int min, int *out)
{
    long long n = 0;
    const char *p = v;
    if (!*p) return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        n = n * 10 + (*p - '0');
        if (n > INT_MAX) return -1;
    }
    if (n < min) return -1;
    *out = (int)n;
    return 0;
}

/* Parses a duration: seconds ("2", "0.25", "1.5s") or milliseconds ("250ms"). */
static int dbp__parse_ms(const char *v, int min, int *out)
{
    char *end;
    double d;
    if (!*v || *v == '-' || *v == '+' || *v == ' ') return -1;
    errno = 0;
    d = strtod(v, &end);
    if (errno || end == v || isnan(d) || isinf(d) || d < 0) return -1;
    if (strcmp(end, "ms") == 0) ;
    else if (*end == '\0' || strcmp(end, "s") == 0) d *= 1000.0;
    else return -1;
    if (d > (double)INT_MAX) return -1;
    *out = (int)(d + 0.5);
    if (d > 0 && *out == 0) *out = 1;
    if (*out < min) return -1;
    return 0;
}

static const dbp__option *dbp__option_find(const char *key)
{
    size_t i;
    char norm[40];
    size_t n = strlen(key);
    if (n >= sizeof norm) return NULL;
    /* "ssl_mode" and "ssl-mode" are the same option; so are "max-waiting" and "max_waiting". */
    for (i = 0; i <= n; i++) norm[i] = key[i];
    for (i = 0; i < sizeof dbp__options / sizeof dbp__options[0]; i++) {
        const char *a = dbp__options[i].name, *b = norm;
        while (*a && (*a == *b || ((*a == '-' || *a == '_') && (*b == '-' || *b == '_')))) { a++; b++; }
        if (!*a && !*b) return &dbp__options[i];
    }
    return NULL;
}

DBPDEF int dbp_pool_config_set(dbp_pool_config *cfg, const char *key, const char *value,
                               dbp_error *err)
{
    const dbp__option *o;
    dbp__err_clear(err);
    if (!cfg || !key) return dbp__err_set(err, DBP_EUSAGE, "no config or no option name");
    if (!value) value = "";
    if (strcmp(key, "init") == 0)
        return dbp__err_set(err, DBP_EOPTION, "option 'init' takes a list: set cfg.init/cfg.ninit");
    if (strcmp(key, "replicas") == 0 || strcmp(key, "replica") == 0)
        return dbp__err_set(err, DBP_EOPTION, "option 'replicas' takes a list: set cfg.replicas/cfg.nreplicas");
    o = dbp__option_find(key);
    if (!o) return dbp__err_set(err, DBP_EOPTION, "unknown option '%.64s'", key);
    switch (o->kind) {
    case DBP__OPT_COUNT: {
        int n;
        if (dbp__parse_count(value, o->min, &n))
            return dbp__err_set(err, DBP_EOPTION, "option '%s' must be an integer >= %d, got '%.40s'",
                                o->name, o->min, value);
        *DBP__CAST(int *, (void *)((char *)cfg + o->off)) = n;
        return DBP_OK;
    }
    case DBP__OPT_BOOL: {
        int n = strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 ||
                strcmp(value, "on") == 0 ? 1 :
                strcmp(value, "0") == 0 || strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
                strcmp(value, "off") == 0 ? 0 : -1;
        if (n < 0) return dbp__err_set(err, DBP_EOPTION, "option '%s' must be true or false, got '%.40s'", o->name, value);
        *DBP__CAST(int *, (void *)((char *)cfg + o->off)) = n;
        return DBP_OK;
    }
    case DBP__OPT_MS: {
        int n;
        if (dbp__parse_ms(value, o->min, &n))
            return dbp__err_set(err, DBP_EOPTION,
                                "option '%s' must be a duration in seconds (e.g. 2, 0.5, 250ms)%s, got '%.40s'",
                                o->name, o->min > 0 ? " above 0" : "", value);
        *DBP__CAST(int *, (void *)((char *)cfg + o->off)) = n;
        return DBP_OK;
    }
    default:
        *DBP__CAST(const char **, (void *)((char *)cfg + o->off)) = value;
        return DBP_OK;
    }
}

static void dbp__settings_free(dbp__settings *s)
{
    int i;
    if (!s) return;
    DBP_FREE(s->host); DBP_FREE(s->user); DBP_FREE(s->password); DBP_FREE(s->database);
    DBP_FREE(s->socket); DBP_FREE(s->charset); DBP_FREE(s->name);
    for (i = 0; i < s->nseeds; i++) DBP_FREE(s->seed_hosts[i]);
    DBP_FREE(s->seed_hosts); DBP_FREE(s->seed_ports);
    for (i = 0; i < s->ninit; i++) DBP_FREE(s->init[i]);
    DBP_FREE(s->init);
    DBP_FREE(s->ssl_ca); DBP_FREE(s->ssl_cert); DBP_FREE(s->ssl_key); DBP_FREE(s->gssencmode);
    for (i = 0; i < s->nreplicas; i++) DBP_FREE(s->replicas[i]);
    DBP_FREE(s->replicas);
    memset(s, 0, sizeof *s);
}

static int dbp__settings_str(char **dst, const char *explicit_v, const char *url_v, const char *def)
{
    const char *v = explicit_v ? explicit_v : url_v ? url_v : def;
    *dst = NULL;
    if (!v) return DBP_OK;
    *dst = dbp__strdup(v);
    return *dst ? DBP_OK : DBP_ENOMEM;
}

static int dbp__pick(int explicit_v, int url_v, int def) { return explicit_v >= 0 ? explicit_v : url_v >= 0 ? url_v : def; }

/* 1 when word is one of the space-separated words of list. */
static int dbp__word_in(const char *list, const char *word)
{
    size_t n = strlen(word);
    while (*list) {
        size_t k = strcspn(list, " ");
        if (k == n && memcmp(list, word, n) == 0) return 1;
        list += k;
        while (*list == ' ') list++;
    }
    return 0;
}

/* The backend a URL's scheme (or, without a URL, cfg->backend) names. */
static int dbp__settings_backend(const dbp_pool_config *cfg, const dbp_url *u, const char *url, dbp__settings *s, dbp_error *err)
{
    const char *want = url ? u->scheme : cfg->backend ? cfg->backend : "mysql";
    const dbp__backend *const *b;
    char known[128];
    size_t off = 0;
    known[0] = '\0';
    for (b = dbp__backends_all(); *b; b++) {
        if (dbp__word_in((*b)->schemes, want) || strcmp((*b)->name, want) == 0) { s->bk = *b; return DBP_OK; }
        if (off < sizeof known) {
            int n = snprintf(known + off, sizeof known - off, "%s%s://", off ? ", " : "", (*b)->name);
            if (n > 0) off += (size_t)n;
        }
    }
    if (strcmp(want, "rediss") == 0 || strcmp(want, "rediss-cluster") == 0)
        return dbp__err_set(err, DBP_EUNSUPPORTED,
                            "TLS to Redis (rediss://) is not supported: this build uses hiredis 0.14, "
                            "which has no TLS; refusing rather than sending in clear");
#ifdef DBPOOL_NO_MYSQL
    if (dbp__word_in("mysql mariadb", want)) return dbp__err_set(err, DBP_EUNSUPPORTED, "built without MySQL (DBPOOL_NO_MYSQL)");
#endif
#ifdef DBPOOL_NO_REDIS
    if (dbp__word_in("redis redis-cluster", want)) return dbp__err_set(err, DBP_EUNSUPPORTED, "built without Redis (DBPOOL_NO_REDIS)");
#endif
#ifdef DBPOOL_NO_PGSQL
    if (dbp__word_in("postgres postgresql pgsql", want)) return dbp__err_set(err, DBP_EUNSUPPORTED, "built without PostgreSQL (DBPOOL_NO_PGSQL)");
#endif
    if (!url) return dbp__err_set(err, DBP_EOPTION, "unknown backend '%.20s'", want);
    return dbp__err_set(err, DBP_EURL, "unknown scheme '%.20s' (expected %s)", want, known);
}

/* The URL's query string into uc (as dbp_pool_config_set would), `init`
   statements aside; each option must apply to the backend. */
static int dbp__settings_url_options(const dbp_url *u, const dbp__settings *s, dbp_pool_config *uc,
                                     const char **init_url, int *ninit_url, dbp_error *err)
{
    int i, rc;
    for (i = 0; i < u->noptions; i++) {
        const dbp__option *o;
        if (strcmp(u->options[i].key, "init") == 0) {
            if (!(s->bk->flags & DBP__BKF_SQL)) return dbp__err_set(err, DBP_EOPTION, "option 'init' does not apply to %s", s->bk->name);
            init_url[(*ninit_url)++] = u->options[i].value;
            continue;
        }
        if (strcmp(u->options[i].key, "replica") == 0) continue; /* dbp__settings_replicas */
        o = dbp__option_find(u->options[i].key);
        if (o && !(o->scope & s->bk->scope))
            return dbp__err_set(err, DBP_EOPTION, "option '%s' does not apply to %s", o->name, u->scheme);
        if ((rc = dbp_pool_config_set(uc, u->options[i].key, u->options[i].value, err)) != DBP_OK) {
            if (err) {
                size_t n = strlen(err->message);
                if (n + 14 < sizeof err->message) memcpy(err->message + n, " (in the URL)", 14);
            }
            return rc;
        }
    }
    return DBP_OK;
}

/* Explicit string options of the config must fit the backend too. */
static int dbp__settings_check_scope(const dbp_pool_config *cfg, const dbp__settings *s, dbp_error *err)
{
    size_t k;
    for (k = 0; k < sizeof dbp__options / sizeof dbp__options[0]; k++) {
        const dbp__option *o = &dbp__options[k];
        if (o->kind == DBP__OPT_STR && !(o->scope & s->bk->scope) &&
            *DBP__CAST(const char *const *, (const void *)((const char *)cfg + o->off)))
            return dbp__err_set(err, DBP_EOPTION, "option '%s' does not apply to this backend", o->name);
    }
    if (cfg->ninit > 0 && !(s->bk->flags & DBP__BKF_SQL)) return dbp__err_set(err, DBP_EOPTION, "option 'init' does not apply to %s", s->bk->name);
    return DBP_OK;
}

/* Where to connect and as whom: seeds, host, port, credentials, database,
   the string options; then the backend's own checks. */
static int dbp__settings_target(const dbp_pool_config *cfg, const dbp_url *u, const dbp_pool_config *uc, dbp__settings *s,
                                dbp_error *err)
{
    if (s->bk->flags & DBP__BKF_SEEDS) {
        int n = cfg->host ? 1 : u->nhosts, k;
        s->seed_hosts = DBP__ALLOC(char *, (size_t)(n ? n : 1));
        s->seed_ports = DBP__ALLOC(int, (size_t)(n ? n : 1));
        if (!s->seed_hosts || !s->seed_ports) return dbp__err_set(err, DBP_ENOMEM, "out of memory");
        for (k = 0; k < n; k++) {
            const char *h = cfg->host ? cfg->host : u->hosts[k].host;
            int p = cfg->host ? (cfg->port > 0 ? cfg->port : s->bk->default_port) :
                    (u->hosts[k].port ? u->hosts[k].port : s->bk->default_port);
            if (!h || !*h) return dbp__err_set(err, DBP_EURL, "malformed URL: a seed has no host");
            s->seed_hosts[k] = dbp__strdup(h);
            if (!s->seed_hosts[k]) return dbp__err_set(err, DBP_ENOMEM, "out of memory");
            s->seed_ports[k] = p;
            s->nseeds++;
        }
        if (!s->nseeds) return dbp__err_set(err, DBP_EURL, "malformed URL: no seed nodes");
    } else if (u->nhosts > 1) {
        return dbp__err_set(err, DBP_EURL, "malformed URL: several hosts are only allowed with redis-cluster:// (%s:// takes one)",
                            s->bk->name);
    }
    if (dbp__settings_str(&s->host, cfg->host, u->nhosts && u->hosts[0].host[0] ? u->hosts[0].host : NULL, NULL) ||
        dbp__settings_str(&s->user, cfg->user, u->user, NULL) ||
        dbp__settings_str(&s->password, cfg->password, u->password, NULL) ||
        dbp__settings_str(&s->database, cfg->database, u->database, NULL) ||
        dbp__settings_str(&s->socket, cfg->socket, uc->socket, NULL) ||
        dbp__settings_str(&s->charset, cfg->charset, uc->charset, s->bk->charset) ||
        dbp__settings_str(&s->gssencmode, cfg->gssencmode, uc->gssencmode, NULL) ||
        dbp__settings_str(&s->name, cfg->name, uc->name, NULL) ||
        dbp__settings_str(&s->ssl_ca, cfg->ssl_ca, uc->ssl_ca, NULL) ||
        dbp__settings_str(&s->ssl_cert, cfg->ssl_cert, uc->ssl_cert, NULL) ||
        dbp__settings_str(&s->ssl_key, cfg->ssl_key, uc->ssl_key, NULL))
        return dbp__err_set(err, DBP_ENOMEM, "out of memory");
    s->port = cfg->port > 0 ? cfg->port : (u->nhosts && u->hosts[0].port) ? u->hosts[0].port : s->bk->default_port;
    return s->bk->settings ? s->bk->settings(s, err) : DBP_OK;
}

/* Every number of the option table: explicit field, else URL, else default. */
static int dbp__settings_numbers(const dbp_pool_config *cfg, const dbp_pool_config *uc, dbp__settings *s, dbp_error *err)
{
    size_t k;
    for (k = 0; k < sizeof dbp__options / sizeof dbp__options[0]; k++) {
        const dbp__option *o = &dbp__options[k];
        if (o->kind == DBP__OPT_STR) continue;
        *DBP__CAST(int *, (void *)((char *)s + o->soff)) =
            dbp__pick(*DBP__CAST(const int *, (const void *)((const char *)cfg + o->off)),
                      *DBP__CAST(const int *, (const void *)((const char *)uc + o->off)), o->def);
    }
    if (s->max_blocking == DBP__DEF_MAX) s->max_blocking = s->max;
    if (s->max < 1) return dbp__err_set(err, DBP_EOPTION, "option 'max' must be at least 1");
    if (s->min > s->max) return dbp__err_set(err, DBP_EOPTION, "option 'min' (%d) exceeds 'max' (%d)", s->min, s->max);
    if (s->connect_timeout < 1) return dbp__err_set(err, DBP_EOPTION, "option 'connect_timeout' must be above 0");
    if (s->backoff_min > s->backoff_max) s->backoff_max = s->backoff_min;
    if (s->max_blocking < 1 || s->pipeline < 1 || s->backoff_min < 1 || s->max_redirects < 1)
        return dbp__err_set(err, DBP_EOPTION, "options 'max_blocking', 'pipeline', 'backoff_min' and 'max_redirects' must be at least 1");
    return DBP_OK;
}

/* ssl-mode (case and '-'/'_' free), VERIFY_* needing ssl-ca; read_from. */
static int dbp__settings_modes(const dbp_pool_config *cfg, const dbp_pool_config *uc, dbp__settings *s, dbp_error *err)
{
    static const char *const modes[] = { "DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY" };
    const char *m = cfg->ssl_mode ? cfg->ssl_mode : uc->ssl_mode;
    const char *r = cfg->read_from ? cfg->read_from : uc->read_from;
    s->ssl_mode = DBP__SSL_UNSET;
    if (m) {
        int k;
        for (k = 0; k < 5; k++) {
            const char *a = modes[k], *b = m;
            while (*a && (*a == *b || *a == *b - 32 || (*a == '_' && *b == '-'))) { a++; b++; }
            if (!*a && !*b) { s->ssl_mode = k + 1; break; }
        }
        if (!s->ssl_mode) {
            /* libpq's names; "allow" (plain first, TLS if refused) is taken as prefer */
            static const char *const pg[] = { "disable", "prefer", "require", "verify-ca", "verify-full", "allow" };
            for (k = 0; k < 6; k++)
                if (strcmp(m, pg[k]) == 0) { s->ssl_mode = k == 5 ? DBP__SSL_PREFERRED : k + 1; break; }
        }
        if (!s->ssl_mode)
            return dbp__err_set(err, DBP_EOPTION, "option 'ssl-mode' must be DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY "
                                "(or disable, allow, prefer, require, verify-ca, verify-full), got '%.32s'", m);
    } else if (s->ssl_ca) {
        s->ssl_mode = DBP__SSL_VERIFY_CA;
    }
    if ((s->ssl_mode == DBP__SSL_VERIFY_CA || s->ssl_mode == DBP__SSL_VERIFY_IDENTITY) && !s->ssl_ca)
        return dbp__err_set(err, DBP_EOPTION, "ssl-mode %s needs ssl-ca", modes[s->ssl_mode - 1]);
    s->read_from = DBP__READ_PRIMARY;
    if (!r || strcmp(r, "primary") == 0 || strcmp(r, "master") == 0) return DBP_OK;
    if (strcmp(r, "replica") == 0 || strcmp(r, "slave") == 0) s->read_from = DBP__READ_REPLICA;
    else if (strcmp(r, "prefer_replica") == 0 || strcmp(r, "prefer-replica") == 0) s->read_from = DBP__READ_PREFER_REPLICA;
    else return dbp__err_set(err, DBP_EOPTION, "option 'read_from' must be primary, replica or prefer_replica, got '%.32s'", r);
    return DBP_OK;
}

/* The init statements: the config's when given (ninit >= 0), else the URL's. */
static int dbp__settings_init(const dbp_pool_config *cfg, const char *const *init_url, int ninit_url, dbp__settings *s,
                              dbp_error *err)
{
    const char *const *src = cfg->ninit >= 0 ? cfg->init : init_url;
    int n = cfg->ninit >= 0 ? cfg->ninit : ninit_url, i;
    if (n <= 0) return DBP_OK;
    if (!src) return dbp__err_set(err, DBP_EUSAGE, "cfg.ninit is set but cfg.init is NULL");
    s->init = DBP__ALLOC(char *, (size_t)n);
    if (!s->init) return dbp__err_set(err, DBP_ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        if (!src[i]) return dbp__err_set(err, DBP_EUSAGE, "init statement %d is NULL", i + 1);
        s->init[i] = dbp__strdup(src[i]);
        if (!s->init[i]) return dbp__err_set(err, DBP_ENOMEM, "out of memory");
        s->ninit++;
    }
    return DBP_OK;
}

/* The replicas: the config's list when given (nreplicas >= 0), else the
   URL's replica= options. A pool with replicas is run by the router of its
   backend's name that has DBP__BKF_REPLICAS (MySQL replicas). */
static int dbp__settings_replicas(const dbp_pool_config *cfg, const dbp_url *u, dbp__settings *s, dbp_error *err)
{
    const dbp__backend *const *b;
    int i, n = 0;
    if (cfg->nreplicas > 0 && !cfg->replicas) return dbp__err_set(err, DBP_EUSAGE, "cfg.nreplicas is set but cfg.replicas is NULL");
    n = cfg->nreplicas >= 0 ? cfg->nreplicas : 0;
    if (cfg->nreplicas < 0)
        for (i = 0; i < u->noptions; i++) if (strcmp(u->options[i].key, "replica") == 0) n++;
    if (n == 0) return DBP_OK;
    for (b = dbp__backends_all(); *b; b++)
        if (((*b)->flags & DBP__BKF_REPLICAS) && strcmp((*b)->name, s->bk->name) == 0 && *b != s->bk) break;
    if (!*b) return dbp__err_set(err, DBP_EOPTION, "option 'replicas' does not apply to %s", s->bk->name);
    s->replicas = DBP__ALLOC(char *, (size_t)n);
    if (!s->replicas) return dbp__err_set(err, DBP_ENOMEM, "out of memory");
    for (i = 0; i < (cfg->nreplicas >= 0 ? cfg->nreplicas : u->noptions); i++) {
        const char *v = cfg->nreplicas >= 0 ? cfg->replicas[i] : strcmp(u->options[i].key, "replica") == 0 ? u->options[i].value : NULL;
        if (cfg->nreplicas < 0 && !v) continue;
        if (!v || !*v) return dbp__err_set(err, DBP_EOPTION, "replica %d is empty", s->nreplicas + 1);
        if (!(s->replicas[s->nreplicas] = dbp__strdup(v))) return dbp__err_set(err, DBP_ENOMEM, "out of memory");
        s->nreplicas++;
    }
    s->bk = *b;
    return DBP_OK;
}

/* Resolves defaults <- URL (and its query string) <- explicit fields, one
   step per concern. Pure but for the DATABASE_URL / REDIS_URL fallback. */
static int dbp__settings_resolve(const dbp_pool_config *cfg, dbp__settings *s, dbp_error *err)
{
    dbp_url u;
    dbp_pool_config uc;
    const char *url = cfg->url, *init_url[DBP_URL_MAX_OPTIONS];
    int ninit_url = 0, rc;
    memset(s, 0, sizeof *s);
    memset(&u, 0, sizeof u);
    dbp_pool_config_init(&uc);
    if (!url && !cfg->host && !cfg->socket) {
        int want_redis = cfg->backend && strncmp(cfg->backend, "redis", 5) == 0;
        url = getenv(want_redis ? "REDIS_URL" : "DATABASE_URL");
        if (!url || !*url)
            return dbp__err_set(err, DBP_EURL, "no URL given and %s is not set", want_redis ? "REDIS_URL" : "DATABASE_URL");
    }
    if (url && dbp_url_parse(url, &u, err)) return DBP_EURL;
    if ((rc = dbp__settings_backend(cfg, &u, url, s, err)) != DBP_OK ||
        (rc = dbp__settings_url_options(&u, s, &uc, init_url, &ninit_url, err)) != DBP_OK ||
        (rc = dbp__settings_check_scope(cfg, s, err)) != DBP_OK ||
        (rc = dbp__settings_target(cfg, &u, &uc, s, err)) != DBP_OK ||
        (rc = dbp__settings_numbers(cfg, &uc, s, err)) != DBP_OK ||
        (rc = dbp__settings_modes(cfg, &uc, s, err)) != DBP_OK ||
        (rc = dbp__settings_init(cfg, init_url, ninit_url, s, err)) != DBP_OK ||
        (rc = dbp__settings_replicas(cfg, &u, s, err)) != DBP_OK) {
        if (err && s->password) dbp__err_scrub(err, s->password);
        if (err && u.password) dbp__err_scrub(err, u.password);
        dbp__settings_free(s);
        dbp_url_free(&u);
        return rc;
    }
    dbp_url_free(&u);
    return DBP_OK;
}


/* ==== SECTION: core structures ==== */

/* A hub timer: embedded in ops, connections and pools; kept in a binary
   heap, or, when it fires no sooner than every timer in one of them, at the
   end of one of the hub's ordered lists (see dbp__timer_set). */
typedef struct dbp__timer {
    long long at;                       /* ms of the monotonic clock */
    int idx;                            /* heap index; DBP__TIMER_LISTED + k in list k;
                                           -1 when not armed */
    void (*fire)(struct dbp__timer *t);
    struct dbp__timer *prev, *next;     /* in an ordered list */
} dbp__timer;
#define DBP__TIMER_LISTS 4
#define DBP__TIMER_LISTED (INT_MAX - DBP__TIMER_LISTS)

/* Latency histogram: 8 sub-buckets per power of two, microseconds. Bounded
   memory whatever the number of samples; percentiles within 12.5%. */
#define DBP__HIST_BUCKETS 320
typedef struct dbp__hist {
    unsigned long long count[DBP__HIST_BUCKETS];
    unsigned long long n;
    long long max;
} dbp__hist;

enum { DBP__OP_QUERY = 1, DBP__OP_STREAM, DBP__OP_CALL, DBP__OP_ACQUIRE, DBP__OP_PING,
       DBP__OP_CLOSE, DBP__OP_SLEEP, DBP__OP_KILL, DBP__OP_CLUSTER, DBP__OP_COPY };

/* The data side of a COPY FROM STDIN op (dbp_pool_copy_in). */
typedef struct dbp__copy {
    dbp__buf buf;                  /* encoded rows not yet handed to the driver */
    int end;                       /* dbp_op_copy_end was called */
    char *abort_msg;               /* ... with this error: the COPY fails */
    unsigned long long rows;
} dbp__copy;

enum {
    DBP__OF_CALLER = 1u << 0,      /* the caller holds a reference */
    DBP__OF_IDEMPOTENT = 1u << 1,
    DBP__OF_SENT = 1u << 2,        /* the request reached, or may have reached, the server */
    DBP__OF_RETRIED_SENT = 1u << 3,
    DBP__OF_BLOCKING = 1u << 4,    /* Redis blocking command: a connection of its own */
    DBP__OF_NOTIFY = 1u << 5,      /* in the hub's notify list */
    DBP__OF_ZOMBIE = 1u << 6,      /* settled by a timeout; its reply will be discarded */
    DBP__OF_SIDE_OK = 1u << 7,     /* may open a connection beyond max (KILL QUERY) */
    DBP__OF_ASKING = 1u << 8,      /* Redis Cluster: send ASKING first */
    DBP__OF_READONLY = 1u << 9,    /* Redis Cluster: may go to a replica */
    DBP__OF_CANCEL = 1u << 10,     /* stream abandoned by its caller */
    DBP__OF_WAITED = 1u << 11,     /* counted as waiting in the queue */
    DBP__OF_BORROWED = 1u << 12,   /* req belongs to another op (a cluster child) */
    DBP__OF_ASKED = 1u << 13,      /* the +OK of its ASKING has been read */
    DBP__OF_GETKEYS = 1u << 14,    /* Redis Cluster: a COMMAND GETKEYS asked for a routed op */
    DBP__OF_PREPARE = 1u << 15,    /* run as a server-side prepared statement */
    DBP__OF_NOPREPARE = 1u << 16,  /* never, whatever the pool says */
    DBP__OF_INLINE = 1u << 17,     /* sql and params live in the op's own block */
    DBP__OF_ON_PRIMARY = 1u << 18, /* MySQL replicas: dbp_op_options.on */
    DBP__OF_ON_REPLICA = 1u << 19,
    DBP__OF_RYW = 1u << 20,        /* MySQL replicas: read your writes (dbp_op_options) */
    DBP__OF_SLAB = 1u << 21        /* its block is DBP__OP_SLAB long: reusable (dbp__slab_take) */
};

typedef struct dbp__stream dbp__stream;

struct dbp_op {
    dbp__link link;                /* pool queue, connection op list, pin queue */
    dbp__link notify;              /* hub notify list */
    dbp__link all;                 /* hub list of every live op */
    dbp__timer timer;
    dbp_hub *hub;
    dbp_pool *pool;
    dbp_conn *conn;                /* running on */
    dbp_conn *pin;                 /* submitted to a pinned connection */
    int type;
    int state;
    unsigned flags;
    int retries;
    int redirects;
    long long t_submit, t_start, t_settle;   /* us */
    long long deadline;            /* ms, the op's own; 0 none */
    long long acquire_deadline;    /* ms; 0 none */
    int query_timeout;             /* ms; 0 none */
    /* request */
    char *sql;
    size_t sql_len;
    dbp_value *params;
    size_t nparams;
    unsigned ph[DBP__PH_KEPT];     /* MySQL: where the placeholders are (nph <= DBP__PH_KEPT), noted at submit */
    size_t nph;
    char *req;                     /* Redis: the command in RESP */
    size_t req_len;
    unsigned long long out_end;    /* Redis: stream offset just past this command */
    char cmd[24];                  /* Redis: upper-case command name */
    int slot;                      /* Redis Cluster: -1 keyless */
    unsigned long long kill_id;    /* DBP__OP_KILL: the thread to stop */
    /* outcome */
    dbp_result *result;
    dbp_reply *reply;
    dbp_conn *acquired;
    dbp__stream *stream;
    dbp_error err;
    dbp_settle_fn cb;
    void *cb_ud;
    void (*done)(dbp_op *op);      /* internal continuation, run in the notify phase */
    dbp_op *peer;                  /* Redis Cluster: a routed op and its node op (or its
                                      COMMAND GETKEYS), each pointing at the other */
    dbp_conn *target;              /* DBP__OP_KILL: the connection whose query it stops */
    dbp_pool *owner;               /* a CLUSTER SLOTS read: the cluster pool it is for */
    char *err_extra;               /* a server error's detail, NUL, hint, NUL (PostgreSQL); NULL none */
    dbp__copy *copy;               /* DBP__OP_COPY */
};

/* ---- the state machines, a legend ----

   An op (dbp_state, public):
     QUEUED ---(a connection takes it)---> RUNNING ---> FULFILLED | REJECTED
       |  waits in pool->queue (or a pinned      settled exactly once, in
       |  connection's pinq) until a             dbp__op_settle(); its callback
       |  connection is free                     and continuation run in the
       +--(deadline, close, usage error)-------> hub's notify phase
     A RUNNING op whose connection dies before it was sent goes back to
     QUEUED (never sent: safe to retry); after it was sent it is rejected
     (DBP_ELOST) unless marked idempotent.

   A connection (DBP__CS_*):
     CONNECTING --> INIT --> IDLE <--> BUSY             --> CLOSING --> DEAD
      TCP, TLS,     init     |   \--> VALIDATING --/       QUIT sent    socket gone,
      handshake     statements,  (a ping before reuse)      politely     freed at the
      (the backend) limits                                               end of the step
     Any state goes straight to DEAD on an error (dbp__conn_failed). A
     pinned connection (DBP__CF_PINNED) is IDLE/BUSY for its holder only.

   A pool (DBP__PS_*):  OPEN --(dbp_pool_close)--> CLOSING --> CLOSED
     CLOSING accepts nothing new and runs what it accepted; CLOSED once the
     queue, the connections and the subscriptions are gone (or the close
     deadline cut them). The handle lives until dbp_pool_free.

   Each backend has its own phases inside a connection's state (MySQL:
   DBP__MY_* calls and DBP__MP_* purposes; PostgreSQL: DBP__PG_*; Redis:
   DBP__RP_*), described in its section. */

enum { DBP__CS_CONNECTING = 1, DBP__CS_INIT, DBP__CS_IDLE, DBP__CS_BUSY, DBP__CS_VALIDATING,
       DBP__CS_CLOSING, DBP__CS_DEAD };

enum {
    DBP__CF_PINNED = 1u << 0,
    DBP__CF_BROKEN = 1u << 1,      /* never hand out again: close when its ops are done */
    DBP__CF_BLOCKING = 1u << 2,    /* Redis: the class for blocking commands */
    DBP__CF_SUB = 1u << 3,         /* Redis: owned by a subscription */
    DBP__CF_RETIRING = 1u << 4,    /* lifetime over: close once idle */
    DBP__CF_KILLING = 1u << 5,     /* MySQL: its query timed out; KILL QUERY under way */
    DBP__CF_RELEASE = 1u << 6,     /* pinned: release once its ops are done */
    DBP__CF_DISCARD = 1u << 7,     /* pinned: discard once its ops are done */
    DBP__CF_SUSPECT = 1u << 8,     /* Redis: a timed-out reply is outstanding */
    DBP__CF_TLS = 1u << 9,
    DBP__CF_REPLACED = 1u << 10,   /* a replacement was opened for its retirement */
    DBP__CF_REPLICA = 1u << 11,    /* Redis Cluster: READONLY sent */
    DBP__CF_OPENED = 1u << 12,     /* it was ready once: its close counts in the statistics */
    DBP__CF_FATAL = 1u << 13,      /* its connect failed in a way retrying cannot fix */
    DBP__CF_HELD = 1u << 14,       /* pinned and handed out: its holder frees it (release/discard) */
    DBP__CF_HUSK = 1u << 15        /* dead but still held: kept in pool->husks until let go */
};

struct dbp_conn {
    dbp__link link;                /* pool->conns */
    dbp__link idle_link;           /* pool->idle or pool->idle_blocking */
    dbp_pool *pool;
    int id;
    int state;
    unsigned flags;
    int fd;
    short events;                  /* poll events wanted now */
    dbp__timer timer;              /* backend deadline: connect, KILL grace, QUIT, reply grace */
    dbp__timer htimer;             /* housekeeping: idle timeout, lifetime, keepalive */
    long long created_ms, idle_since_ms, expires_ms, connect_started_us;
    dbp__link ops;                 /* running ops, in order */
    int nops;
    dbp__link pinq;                /* pinned: ops waiting their turn */
    dbp_op *pending;               /* op waiting for a validation ping */
    dbp_op *pin_op;                /* the acquire op that handed it out (until taken) */
    unsigned long long server_id;
    dbp_error err;
    dbp_sub *sub;
    void *be;                      /* backend state */
};


#define DBP__EV_TIMER 0x4000

enum { DBP__PS_OPEN = 1, DBP__PS_CLOSING, DBP__PS_CLOSED }; /* see the legend above */

struct dbp_pool {
    dbp__link link;                /* hub->pools */
    dbp_hub *hub;
    const dbp__backend *bk;
    dbp__settings s;
    int state;
    int freed;                     /* the handle was released */
    dbp__link conns, idle, idle_blocking, queue, subs, close_ops;
    dbp__link husks;               /* dead pinned connections their holders still have */
    int nqueue, nqueue_blocking, nconns, nblocking, nconnecting, npinned;
    int in_dispatch;
    int next_conn_id;
    int cap;                       /* max as limited by the server, 0 none */
    int fail_streak;
    int fatal;                     /* the last connect failed in a way retrying cannot fix */
    long long next_connect_ms;     /* backoff: no connect before */
    dbp_error last_connect_err;
    dbp__timer timer;              /* backoff end, maintenance, close deadline */
    long long close_deadline;      /* ms, 0 none */
    int close_cut;                 /* the deadline cut ops off */
    char version[64];
    long long srv_wait_timeout, srv_max_conn, srv_max_user_conn;
    int limits_read;
    char describe[160];
    /* statistics */
    unsigned long long st_ops, st_fulfilled, st_rejected, st_created, st_closed;
    unsigned long long st_closed_idle, st_closed_lifetime, st_closed_error, st_closed_close, st_closed_dead;
    unsigned long long st_errors, st_timeouts, st_retried, st_lost, st_connect_failures;
    dbp__hist h_wait, h_run;
    dbp_event_fn hook;
    void *hook_ud;
    void *rt;                      /* a router's state */
    dbp_pool *parent;              /* pools under a router: the router's pool */
    int fail_fast;                 /* a failed connect rejects what waits at once, and new ops
                                      fail during the backoff: a router's node pool, when the
                                      router can send them elsewhere */
    char gtid[64];                 /* MySQL: the GTID of the latest write on its connections,
                                      when the session tracks last_gtid (replicas) */
    char *ph_sql;                  /* the last statement scanned for placeholders (a copy), */
    size_t ph_len;                 /* its length, and where they are: the same SQL again */
    dbp__ph_list ph_last;          /* skips the scan */
};

struct dbp_hub {
    dbp__link pools;
    dbp__timer **heap;
    int nheap, capheap;
    dbp__timer *tfirst[DBP__TIMER_LISTS], *tlast[DBP__TIMER_LISTS]; /* ordered lists, soonest first */
    dbp__link notify;
    dbp__link all_ops;
    dbp__link graveyard;           /* dead connections, freed at the end of a step */
    int pending;
    unsigned long long rng;
    struct pollfd *pfd;
    dbp_conn **pconn;
    int npfd, cappfd;
    int in_notify;
    int closing;
    int reap;                      /* a released pool finished closing: free it after the step */
    int wakeup_fd;
    int timers_reserved;           /* heap slots promised to live timers */
    void *free_ops;                /* op blocks kept for reuse, linked through their first word */
    void *free_results;            /* MySQL result blocks kept for reuse, the same way */
    int nfree_ops, nfree_results;
};

/* Keeping freed ops and small results on the hub for the next ones saves
   glibc's malloc and free (about 0.8k instructions per query): every block
   is of one size (DBP__OP_SLAB bytes after the op, DBP__RESULT_SLAB in
   all), so any kept block fits any op or result that small. Off under
   AddressSanitizer, which would no longer see a use after free. */
#ifndef DBPOOL_NO_RECYCLE
#  if defined(__SANITIZE_ADDRESS__)
#    define DBPOOL_NO_RECYCLE
#  elif defined(__has_feature)
#    if __has_feature(address_sanitizer)
#      define DBPOOL_NO_RECYCLE
#    endif
#  endif
#endif
#define DBP__OP_SLAB 256
#define DBP__RESULT_SLAB 512
#define DBP__RECYCLE_MAX 1024

/* A zeroed block of `bytes` (at most `slab`) from the list, else a new one of
   `slab` bytes; NULL when out of memory. */
static void *dbp__slab_take(void **list, int *n, size_t slab, size_t bytes)
{
    void *b;
#ifndef DBPOOL_NO_RECYCLE
    if (*list) {
        b = *list;
        memcpy(list, b, sizeof(void *));
        (*n)--;
        memset(b, 0, bytes);
        return b;
    }
#else
    DBP__UNUSED(list); DBP__UNUSED(n);
#endif
    b = DBP_MALLOC(slab);
    if (b) memset(b, 0, bytes);
    return b;
}

/* Gives back a block taken with dbp__slab_take (freed when the list is full). */
static void dbp__slab_give(void **list, int *n, void *b)
{
#ifndef DBPOOL_NO_RECYCLE
    if (*n < DBP__RECYCLE_MAX) {
        memcpy(b, list, sizeof(void *));
        *list = b;
        (*n)++;
        return;
    }
#else
    DBP__UNUSED(list); DBP__UNUSED(n);
#endif
    DBP_FREE(b);
}

static void dbp__slab_drain(void **list, int *n)
{
    while (*list) {
        void *b = *list;
        memcpy(list, b, sizeof(void *));
        DBP_FREE(b);
    }
    *n = 0;
}


/* ==== SECTION: forward declarations ==== */

/* The engine's functions call one another across the sections below. */

enum { DBP__CLOSE_IDLE = 1, DBP__CLOSE_LIFETIME, DBP__CLOSE_ERROR, DBP__CLOSE_POOL, DBP__CLOSE_DEAD,
       DBP__CLOSE_SURPLUS };

static long long dbp__ms_now(void) { return dbp__now_ms(); }

/* what follows a backend's internal statements (dbp__conn_steps_done) */
enum { DBP__AFTER_READY = 1, DBP__AFTER_IDLE, DBP__AFTER_RELEASE };
#ifdef DBP__HAVE_SQL
static void dbp__conn_steps_done(dbp_conn *c, int after);
static void dbp__conn_kill_query(dbp_conn *c, void (*done)(dbp_op *), dbp_op **slot, long long *started_ms);
#endif

/* the server limits a backend tells dbp__pool_limit() of */
enum { DBP__LIMIT_IDLE = 1, DBP__LIMIT_CONNS, DBP__LIMIT_USER_CONNS };

static dbp_op *dbp__op_new_extra(dbp_hub *hub, dbp_pool *pool, int type, size_t extra);
static dbp_op *dbp__op_new(dbp_hub *hub, dbp_pool *pool, int type);
static void dbp__op_destroy(dbp_op *op);
static int dbp__op_settled(const dbp_op *op);
static void dbp__op_maybe_free(dbp_op *op);
static void dbp__op_settle(dbp_op *op, int rc);
static void dbp__op_fail(dbp_op *op, int rc, int sent, const char *fmt, ...);
static void dbp__op_fail_err(dbp_op *op, const dbp_error *e, int rc, int sent);
static void dbp__emit(dbp_pool *p, dbp_event_type type, const char *message, const dbp_error *e,
                      long long dur, const dbp_conn *c);
static void dbp__warn(dbp_pool *p, const char *fmt, ...);
static int dbp__pool_max(const dbp_pool *p);
static void dbp__pool_op_settled(dbp_pool *p, dbp_op *op);
static long long dbp__op_queue_deadline(const dbp_op *op);
static long long dbp__op_run_deadline(const dbp_op *op);
static void dbp__op_arm(dbp_op *op, long long at);
static void dbp__queue_op(dbp_pool *p, dbp_op *op, int front);
static void dbp__unqueue_op(dbp_pool *p, dbp_op *op);
static int dbp__pool_fail_queue(dbp_pool *p, const dbp_error *e, int rc);
static void dbp__op_begin(dbp_conn *c, dbp_op *op);
static void dbp__conn_unlink_op(dbp_conn *c, dbp_op *op);
static void dbp__op_orphaned(dbp_pool *p, dbp_op *op, const dbp_error *why);
static long long dbp__backoff_ms(dbp_pool *p, int streak, int cap);
static void dbp__pool_limit(dbp_pool *p, int which, long long v, const char *name);
static void dbp__pool_backoff(dbp_pool *p);
static void dbp__pool_close_idle(dbp_pool *p);
static dbp_conn *dbp__pool_open_conn(dbp_pool *p, unsigned flags);
static dbp_conn *dbp__pool_pick(dbp_pool *p, dbp_op *op);
static void dbp__pool_dispatch(dbp_pool *p);
static dbp_op *dbp__pool_submit(dbp_pool *p, dbp_op *op);
static void dbp__router_submit(dbp_pool *p, dbp_op *op);
static void dbp__op_timer_fire(dbp__timer *t);
static void dbp__pool_maintain(dbp_pool *p);
static void dbp__pool_cut(dbp_pool *p);
static void dbp__pool_timer_fire(dbp__timer *t);
static void dbp__pool_begin_close(dbp_pool *p, int timeout_ms);
static void dbp__pool_check_closed(dbp_pool *p);
static void dbp__pool_finish_close(dbp_pool *p);
static int dbp__hub_notify(dbp_hub *h);
static void dbp__hub_bury(dbp_hub *h);
static void dbp__hub_timers(dbp_hub *h);
static int dbp__hub_collect(dbp_hub *h, struct pollfd *pfd, dbp_conn **pc, int max);
static int dbp__hub_grow(dbp_hub *h, int need);
static int dbp__hub_timeout(const dbp_hub *h, int limit);
static int dbp__hub_dispatch_events(dbp_hub *h, struct pollfd *pfd, dbp_conn **pc, int n);
static void dbp__describe_host(const dbp__settings *s, const char *database, char *buf, size_t size);
static void dbp__pool_describe_init(dbp_pool *p);
static dbp_pool *dbp__pool_make(dbp_hub *hub, dbp__settings *s, dbp_error *err);
static void dbp__pool_destroy(dbp_pool *p);
static void dbp__stats_one(const dbp_pool *p, dbp_stats *st);
static void dbp__op_apply_options(dbp_op *op, const dbp_op_options *o);
static void dbp__conn_unpin(dbp_conn *c);
static void dbp__conn_free(dbp_conn *c);
static void dbp__count_close(dbp_conn *c, int reason);
static void dbp__conn_bury(dbp_conn *c, int reason);
static void dbp__conn_failed(dbp_conn *c, const dbp_error *why, int connecting);
static void dbp__conn_ready(dbp_conn *c);
static void dbp__conn_kill(dbp_conn *c, int reason);
static void dbp__conn_close(dbp_conn *c, int reason);
static void dbp__conn_closed(dbp_conn *c);
static void dbp__conn_idle(dbp_conn *c);
static dbp_conn *dbp__conn_new(dbp_pool *p, unsigned flags);
static int dbp__needs_validation(const dbp_pool *p, const dbp_conn *c);
static void dbp__conn_take(dbp_conn *c, dbp_op *op);
static void dbp__conn_validated(dbp_conn *c);
static void dbp__acquire_done(dbp_conn *c, dbp_op *op);
static int dbp__conn_slots(const dbp_pool *p);
static int dbp__conn_available(const dbp_pool *p, const dbp_conn *c);
static int dbp__conn_dead_before_write(dbp_conn *c);
static void dbp__conn_timer_fire(dbp__timer *t);
static void dbp__conn_arm_housekeeping(dbp_conn *c);
static void dbp__conn_htimer_fire(dbp__timer *t);
static void dbp__pinned_next(dbp_conn *c);
static dbp_op *dbp__pinned_submit(dbp_conn *c, dbp_op *op);
static int dbp__conn_let_go(dbp_conn *c);
static dbp_op *dbp__query_make(dbp_pool *p, int type, const char *sql, size_t len, const dbp_value *params,
                               size_t n, const dbp_op_options *o);
static void dbp__hub_reap(dbp_hub *h);
static int dbp__hexval(int c);
static int dbp__pct_decode(const char *s, size_t n, char *dst, size_t *outn);
static int dbp__url_password_span(const char *url, size_t *start, size_t *end);
static int dbp__url_fail(dbp_url *u, dbp_error *err, const char *what);
static const char *dbp__url_scheme(const char *url, const char *sep, dbp_url *u, char **w);
static const char *dbp__url_userinfo(const char *auth, const char *at, dbp_url *u, char **w);
static const char *dbp__url_port(const char *ps, const char *pe, int *port);
static const char *dbp__url_hosts(const char *q, const char *auth_end, dbp_url *u, char **w);
static const char *dbp__url_path(const char *path, const char *query, dbp_url *u, char **w);
static const char *dbp__url_query(const char *q, const char *end, dbp_url *u, char **w);
static dbp_op *dbp__call_make(dbp_hub *hub, dbp_pool *p, int pinned, int argc, const char *const *argv,
                              const size_t *argvlen, const dbp_op_options *o, size_t *lens_buf_fallback);
static void dbp__stream_free(dbp__stream *s);
static void dbp__sub_ready(dbp_conn *c);
static void dbp__sub_lost(dbp_conn *c, const dbp_error *e);
static void dbp__sub_pool_closing(dbp_pool *p);


/* ==== SECTION: timers ==== */

static void dbp__heap_swap(dbp_hub *h, int a, int b)
{
    dbp__timer *t = h->heap[a];
    h->heap[a] = h->heap[b]; h->heap[b] = t;
    h->heap[a]->idx = a; h->heap[b]->idx = b;
}
static void dbp__heap_up(dbp_hub *h, int i)
{
    while (i > 0) {
        int p = (i - 1) / 2;
        if (h->heap[p]->at <= h->heap[i]->at) break;
        dbp__heap_swap(h, p, i);
        i = p;
    }
}
static void dbp__heap_down(dbp_hub *h, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->nheap && h->heap[l]->at < h->heap[m]->at) m = l;
        if (r < h->nheap && h->heap[r]->at < h->heap[m]->at) m = r;
        if (m == i) break;
        dbp__heap_swap(h, i, m);
        i = m;
    }
}
static void dbp__timer_init(dbp__timer *t, void (*fire)(dbp__timer *))
{
    t->at = 0; t->idx = -1; t->fire = fire; t->prev = t->next = NULL;
}
static void dbp__timer_clear(dbp_hub *h, dbp__timer *t)
{
    int i = t->idx;
    if (i < 0) return;
    if (i >= DBP__TIMER_LISTED) {
        int k = i - DBP__TIMER_LISTED;
        if (t->prev) t->prev->next = t->next; else h->tfirst[k] = t->next;
        if (t->next) t->next->prev = t->prev; else h->tlast[k] = t->prev;
        t->prev = t->next = NULL;
        t->idx = -1;
        t->at = 0;
        return;
    }
    h->nheap--;
    if (i != h->nheap) {
        h->heap[i] = h->heap[h->nheap];
        h->heap[i]->idx = i;
        dbp__heap_down(h, i);
        dbp__heap_up(h, i);
    }
    t->idx = -1;
    t->at = 0;
}
/* Arms (or re-arms) a timer. Fails only when the heap cannot grow.
   Most deadlines are now plus a fixed timeout (the acquire deadline of
   every queued op, a connection's idle timeout), so each is no sooner than
   the one of its kind set before it: such a timer goes at the end of the
   first ordered list whose last timer fires no later, where arming and
   clearing it cost a few pointer moves instead of sifts through the heap
   (an op left the queue with the heap's root: a sift down its height, per
   op). A few lists, so that kinds with different timeouts each find one;
   the rest go to the heap; the soonest of all fires first. */
static int dbp__timer_set(dbp_hub *h, dbp__timer *t, long long at_ms)
{
    int k;
    if (t->idx >= DBP__TIMER_LISTED) dbp__timer_clear(h, t);
    for (k = 0; t->idx < 0 && k < DBP__TIMER_LISTS; k++) {
        dbp__timer *last = h->tlast[k];
        if (last && at_ms < last->at) continue;
        t->at = at_ms;
        t->idx = DBP__TIMER_LISTED + k;
        t->prev = last;
        t->next = NULL;
        if (last) last->next = t; else h->tfirst[k] = t;
        h->tlast[k] = t;
        return DBP_OK;
    }
    if (t->idx >= 0) {
        t->at = at_ms;
        dbp__heap_down(h, t->idx);
        dbp__heap_up(h, t->idx);
        return DBP_OK;
    }
    if (h->nheap == h->capheap) {
        int cap = h->capheap ? h->capheap * 2 : 64;
        dbp__timer **p = DBP__CAST(dbp__timer **, DBP_REALLOC(h->heap, (size_t)cap * sizeof *p));
        if (!p) return DBP_ENOMEM;
        h->heap = p; h->capheap = cap;
    }
    t->at = at_ms;
    t->idx = h->nheap;
    h->heap[h->nheap++] = t;
    dbp__heap_up(h, t->idx);
    return DBP_OK;
}
/* Every object that owns timers reserves their heap slots when it is made,
   so arming one later never needs memory (and never fails). */
static int dbp__timers_reserve(dbp_hub *h, int k)
{
    if (h->capheap < h->timers_reserved + k) {
        int cap = h->capheap ? h->capheap * 2 : 64;
        dbp__timer **p;
        while (cap < h->timers_reserved + k) cap *= 2;
        p = DBP__CAST(dbp__timer **, DBP_REALLOC(h->heap, (size_t)cap * sizeof *p));
        if (!p) return DBP_ENOMEM;
        h->heap = p;
        h->capheap = cap;
    }
    h->timers_reserved += k;
    return DBP_OK;
}
static void dbp__timers_release(dbp_hub *h, int k) { if (h) h->timers_reserved -= k; }

/* The armed timer that fires first, NULL when none. */
static dbp__timer *dbp__timer_first(const dbp_hub *h)
{
    dbp__timer *t = h->nheap > 0 ? h->heap[0] : NULL;
    int k;
    for (k = 0; k < DBP__TIMER_LISTS; k++)
        if (h->tfirst[k] && (!t || h->tfirst[k]->at < t->at)) t = h->tfirst[k];
    return t;
}

/* Arms a timer only if that makes it fire earlier (or it is not armed). */
static void dbp__timer_min(dbp_hub *h, dbp__timer *t, long long at_ms)
{
    if (t->idx < 0 || at_ms < t->at) dbp__timer_set(h, t, at_ms);
}


/* ==== SECTION: histogram ==== */

static int dbp__hist_bucket(long long v)
{
    int e = 0;
    unsigned long long x;
    if (v < 8) return v < 0 ? 0 : (int)v;
    x = (unsigned long long)v;
#if defined(__GNUC__) || defined(__clang__)
    /* the top bit's position in one instruction: two samples per op */
    e = 63 - __builtin_clzll(x);
#else
    while (x >> (e + 1)) e++;
#endif
    {
        int idx = (e - 2) * 8 + (int)((x >> (e - 3)) & 7);
        return idx < DBP__HIST_BUCKETS ? idx : DBP__HIST_BUCKETS - 1;
    }
}
static long long dbp__hist_upper(int idx)
{
    int e, sub;
    if (idx < 8) return idx;
    e = idx / 8 + 2; sub = idx % 8;
    return ((long long)(8 + sub + 1) << (e - 3)) - 1;
}
static void dbp__hist_add(dbp__hist *h, long long v)
{
    h->count[dbp__hist_bucket(v)]++;
    h->n++;
    if (v > h->max) h->max = v;
}
static long long dbp__hist_pct(const dbp__hist *h, double p)
{
    unsigned long long want, acc = 0;
    int i;
    if (!h->n) return 0;
    want = (unsigned long long)(p * (double)h->n + 0.999999);
    if (want < 1) want = 1;
    for (i = 0; i < DBP__HIST_BUCKETS; i++) {
        acc += h->count[i];
        if (acc >= want) {
            long long u = dbp__hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}


/* ==== SECTION: results ==== */

/* A result set as handed out, with what keeps its cells alive. */
typedef struct dbp__result {
    dbp_result pub;
    void *res;            /* MYSQL_RES of a stored result, freed with it */
    dbp_field *fields;
    dbp_cell *cells;
    char *arena;          /* copied text (streamed header, info) */
    int single;           /* fields, cells and arena live in this block (2: one of
                             DBP__RESULT_SLAB bytes, see dbp__slab_take) */
} dbp__result;

DBPDEF const dbp_cell *dbp_result_cell(const dbp_result *r, size_t row, size_t col)
{
    if (!r || row >= r->nrows || col >= r->ncols) return NULL;
    return &r->cells[row * r->ncols + col];
}

/* dbp_result_free, keeping the blocks of small MySQL results on the hub */
static void dbp__result_give(dbp_hub *h, dbp_result *r)
{
    while (r) {
        dbp_result *next = r->next;
        dbp__result *x = DBP__CAST(dbp__result *, (void *)r);
        if (x->single != 2) { r->next = NULL; dbp_result_free(r); r = next; continue; }
#ifndef DBPOOL_NO_MYSQL
        if (x->res) mysql_free_result(DBP__CAST(MYSQL_RES *, x->res));
#endif
        dbp__slab_give(&h->free_results, &h->nfree_results, x);
        r = next;
    }
}

DBPDEF void dbp_result_free(dbp_result *r)
{
    while (r) {
        dbp_result *next = r->next;
        dbp__result *x = DBP__CAST(dbp__result *, (void *)r);
#ifndef DBPOOL_NO_MYSQL
        if (x->res) mysql_free_result(DBP__CAST(MYSQL_RES *, x->res));
#endif
        if (!x->single) {
            DBP_FREE(x->fields);
            DBP_FREE(x->cells);
            DBP_FREE(x->arena);
        }
        DBP_FREE(x);
        r = next;
    }
}

/* Streaming state: the header of the result and one batch of copied rows. */
struct dbp__stream {
    dbp__result *head;         /* fields, counts; cells unused */
    size_t ncols;
    dbp_cell *rows;            /* batch: nrows * ncols cells */
    size_t nrows, cap, pos;
    dbp__buf data;             /* the batch's bytes */
    int eof;                   /* the server sent the last row */
    int paused;                /* the batch is full: reading waits for the consumer */
    size_t total;
};

static void dbp__stream_free(dbp__stream *s)
{
    if (!s) return;
    dbp_result_free(s->head ? &s->head->pub : NULL);
    DBP_FREE(s->rows);
    dbp__buf_free(&s->data);
    DBP_FREE(s);
}

#ifdef DBP__HAVE_SQL
/* A finished batch: the cells' offsets become pointers into its bytes. */
static void dbp__stream_fix(dbp__stream *s)
{
    size_t i, n = s->nrows * s->ncols;
    for (i = 0; i < n; i++)
        if (s->rows[i].data) s->rows[i].data = s->data.data + ((size_t)s->rows[i].data - 1);
}

static void dbp__stream_notify(dbp_op *op)
{
    dbp_hub *h = op->hub;
    if (h && op->cb && !(op->flags & DBP__OF_NOTIFY)) {
        op->flags |= DBP__OF_NOTIFY;
        dbp__list_push(&h->notify, &op->notify);
    }
}
#endif


#if !defined(DBPOOL_NO_MYSQL) || !defined(DBPOOL_NO_REDIS)
/* ==== SECTION: sockets ==== */

/* An idle connection is owed nothing: readable means EOF or a farewell
   from the server. With TLS a late session ticket may arrive, so only a
   hang-up counts. */
static int dbp__idle_socket_dead(dbp_conn *c, int revents)
{
    char b;
    ssize_t n;
    if (revents & (POLLERR | POLLHUP | POLLNVAL)) return 1;
#ifdef POLLRDHUP
    if (revents & POLLRDHUP) return 1;
#endif
    if (c->flags & DBP__CF_TLS) return 0;
    /* an idle connection gets nothing unless the server is closing it */
    n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    return 1;
}
#endif

/* TCP keepalive (and a user timeout) on a connection's socket, for every
   backend: a peer that vanished without a FIN is found within ~ms. */
static void dbp__socket_keepalive(int fd, int ms)
{
    int on = 1;
    if (fd < 0) return;
    if (ms > 0) {
        int idle = ms / 1000 > 0 ? ms / 1000 : 1, intvl = idle / 3 > 0 ? idle / 3 : 1, cnt = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
#ifdef TCP_KEEPIDLE
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
#endif
#ifdef TCP_USER_TIMEOUT
        {
            /* unacknowledged data for this long means the peer is gone (a silent blackhole) */
            unsigned ut = (unsigned)(idle + intvl * cnt) * 1000u;
            setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
        }
#endif
    }
}


/* ==== SECTION: helper threads ==== */

/* The hub never blocks (DESIGN: "No step may block the hub"), yet two things
   can only be done by a call that blocks: getaddrinfo() of a host name (NSS
   and DNS), and Connector/C 3.3's TLS handshake, which waits inside
   mysql_real_connect_start with its own poll() (CONC-594). Each such call
   runs as a *job* on a detached helper thread of its own.

   A job is the whole world of its thread: everything the blocking call needs
   is copied into it (or, for a MySQL connect, handed over: the MYSQL handle),
   so the thread touches nothing else, and nothing of the hub, the pool or the
   connection. The hub polls the job's end of a socket pair like any socket;
   the thread sends one byte there when the job is done. The job is freed by
   whichever side lets go of it last (a reference count under the job's own
   mutex), so a connection that gives up on its job (connect deadline, pool
   close) just lets go: the thread finishes its call, frees what the job still
   owns (an unused MYSQL handle, after its own mysql_close) and exits.

   Why threads rather than getaddrinfo_a or c-ares: getaddrinfo_a is a glibc
   extension that runs its lookups on glibc's own threads anyway (and cannot
   cancel a running one), c-ares is a new link dependency that bypasses NSS,
   and neither helps the TLS handshake, which needs a thread regardless. One
   mechanism serves both, with no dependency beyond -lpthread. */

#define DBP__JOB_ADDRS 8

typedef struct dbp__job dbp__job;
struct dbp__job {
#ifndef DBPOOL_NO_THREADS
    pthread_mutex_t mu;
#endif
    int refs;                       /* the hub's and the thread's (under mu) */
    int done;                       /* the blocking call returned (under mu) */
    int rfd;                        /* the hub's end: one byte arrives when done */
    int wfd;                        /* the thread's end */
    void (*work)(dbp__job *j);      /* the blocking call, on the helper thread */
    void (*drop)(dbp__job *j);      /* frees what the job still owns, on either side */
    void (*thread_end)(void);       /* last thing the helper thread does (a backend's, or NULL) */
    /* a name lookup: in host, port; out naddr, addr, addrlen, gai_rc */
    char *host;
    int port;
    int gai_rc;
    int naddr;
    struct sockaddr_storage addr[DBP__JOB_ADDRS];
    socklen_t addrlen[DBP__JOB_ADDRS];
    void *arg;                      /* the work's own data (a backend's): drop frees it */
};

/* Whether a host needs no lookup: an IPv4 or IPv6 address (brackets already
   gone), or a unix socket path. */
static int dbp__host_is_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (!host || !*host || host[0] == '/') return 1;
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void dbp__job_free(dbp__job *j)
{
    if (j->drop) j->drop(j);
    DBP_FREE(j->host);
#ifndef DBPOOL_NO_THREADS
    pthread_mutex_destroy(&j->mu);
#endif
    DBP_FREE(j);
}

/* Lets go of one reference; the last one frees the job. Returns 1 when it did. */
static int dbp__job_unref(dbp__job *j)
{
    int last;
#ifndef DBPOOL_NO_THREADS
    pthread_mutex_lock(&j->mu);
#endif
    last = --j->refs == 0;
#ifndef DBPOOL_NO_THREADS
    pthread_mutex_unlock(&j->mu);
#endif
    if (last) dbp__job_free(j);
    return last;
}

/* The hub side lets go: the job is abandoned if still running, else freed. */
static void dbp__job_release(dbp__job *j)
{
    int fd;
    if (!j) return;
    fd = j->rfd;
    j->rfd = -1;
    dbp__job_unref(j);
    if (fd >= 0) close(fd);
}

/* Whether the job finished (after its byte arrived: a spurious wakeup is not
   taken for the end). What the thread wrote before is visible once this
   returned 1 (the mutex orders it). */
static int dbp__job_done(dbp__job *j)
{
    int done;
    char b[8];
    while (recv(j->rfd, b, sizeof b, MSG_DONTWAIT) > 0) {}
#ifndef DBPOOL_NO_THREADS
    pthread_mutex_lock(&j->mu);
#endif
    done = j->done;
#ifndef DBPOOL_NO_THREADS
    pthread_mutex_unlock(&j->mu);
#endif
    return done;
}

static dbp__job *dbp__job_new(void (*work)(dbp__job *), void (*drop)(dbp__job *), dbp_error *err)
{
    dbp__job *j = DBP__ALLOC(dbp__job, 1);
    if (!j) { dbp__err_set(err, DBP_ENOMEM, "out of memory"); return NULL; }
    j->rfd = j->wfd = -1;
    j->work = work;
    j->drop = drop;
#ifndef DBPOOL_NO_THREADS
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        DBP_FREE(j);
        dbp__err_set(err, DBP_ENOMEM, "could not create a mutex for a helper thread");
        return NULL;
    }
#endif
    j->refs = 1;
    return j;
}

#ifndef DBPOOL_NO_THREADS
static void *dbp__job_main(void *arg)
{
    dbp__job *j = DBP__CAST(dbp__job *, arg);
    void (*thread_end)(void) = j->thread_end;
    int wfd = j->wfd;
    char one = 1;
    int last;
    j->work(j);
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    /* the hub let go while the call ran: nobody else will free the job.
       From here the job may be gone: only the local copies are used. */
    if (last) dbp__job_free(j);
    send(wfd, &one, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(wfd);
    if (thread_end) thread_end();
    return NULL;
}
#endif

/* Starts the job on a detached helper thread; on success the hub polls
   j->rfd (readable when the job is done). On failure the job is freed and
   err says why. */
static int dbp__job_start(dbp__job *j, dbp_error *err)
{
#ifdef DBPOOL_NO_THREADS
    /* no threads: the call blocks the hub, as every driver without a helper does */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        int e = errno;
        dbp__job_free(j);
        return dbp__err_set(err, DBP_ECONNECT, "socketpair(): %s", strerror(e));
    }
    j->work(j);
    j->done = 1;
    if (send(sv[1], "", 1, MSG_NOSIGNAL) < 0) {}
    close(sv[1]);
    j->rfd = sv[0];
    fcntl(j->rfd, F_SETFD, FD_CLOEXEC);
    return DBP_OK;
#else
    int sv[2], rc;
    pthread_attr_t attr;
    pthread_t tid;
    sigset_t all, old;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        rc = errno;
        dbp__job_free(j);
        return dbp__err_set(err, DBP_ECONNECT, "socketpair(): %s", strerror(rc));
    }
    fcntl(sv[0], F_SETFD, FD_CLOEXEC);
    fcntl(sv[1], F_SETFD, FD_CLOEXEC);
    j->rfd = sv[0];
    j->wfd = sv[1];
    j->refs = 2;
    if (pthread_attr_init(&attr) != 0) { rc = ENOMEM; goto fail; }
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* the helper starts with every signal blocked, so that a signal meant for
       the program (SIGINT draining a migration) interrupts the hub's poll()
       instead of landing in a thread that ignores it */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&tid, &attr, dbp__job_main, j);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) goto fail;
    return DBP_OK;
fail:
    close(sv[0]);
    close(sv[1]);
    j->rfd = j->wfd = -1;
    dbp__job_free(j);
    return dbp__err_set(err, DBP_ECONNECT, "could not start a helper thread: %s", strerror(rc));
#endif
}

/* The lookup, on the helper thread: up to DBP__JOB_ADDRS addresses in the
   resolver's order. */
static void dbp__lookup_work(dbp__job *j)
{
    struct addrinfo hints, *res = NULL, *ai;
    char ps[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    snprintf(ps, sizeof ps, "%d", j->port);
    j->gai_rc = getaddrinfo(j->host, ps, &hints, &res);
    for (ai = j->gai_rc ? NULL : res; ai && j->naddr < DBP__JOB_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof j->addr[0]) continue;
        memcpy(&j->addr[j->naddr], ai->ai_addr, ai->ai_addrlen);
        j->addrlen[j->naddr] = (socklen_t)ai->ai_addrlen;
        j->naddr++;
    }
    if (res) freeaddrinfo(res);
    if (!j->gai_rc && !j->naddr) j->gai_rc = EAI_NONAME;
}

/* Starts resolving host:port off the hub's thread. */
static dbp__job *dbp__lookup_start(const char *host, int port, dbp_error *err)
{
    dbp__job *j = dbp__job_new(dbp__lookup_work, NULL, err);
    if (!j) return NULL;
    j->port = port;
    j->host = dbp__strdup(host);
    if (!j->host) { dbp__job_free(j); dbp__err_set(err, DBP_ENOMEM, "out of memory"); return NULL; }
    if (dbp__job_start(j, err) != DBP_OK) return NULL;
    return j;
}

/* The outcome of a finished lookup: DBP_OK, or a connect error naming the host. */
static int dbp__lookup_result(const dbp__job *j, dbp_error *err)
{
    if (j->gai_rc == 0) return DBP_OK;
    return dbp__err_set(err, DBP_ECONNECT, "cannot resolve host '%.100s': %s", j->host,
                        j->gai_rc == EAI_SYSTEM ? "system error" : gai_strerror(j->gai_rc));
}


/* ==== SECTION: connections ==== */

/* A pinned connection goes back to being the pool's (its holder let go, or
   it closes): the one place pinned accounting drops. */
static void dbp__conn_unpin(dbp_conn *c)
{
    if (!(c->flags & DBP__CF_PINNED)) return;
    c->pool->npinned--;
    c->flags &= ~DBP__CF_PINNED;
}

static void dbp__conn_free(dbp_conn *c)
{
    dbp_hub *h = c->pool->hub;
    dbp__timers_release(h, 2);
    dbp__timer_clear(h, &c->timer);
    dbp__timer_clear(h, &c->htimer);
    DBP_FREE(c);
}

/* The close statistics, once per connection that was ever ready. */
static void dbp__count_close(dbp_conn *c, int reason)
{
    dbp_pool *p = c->pool;
    if (!(c->flags & DBP__CF_OPENED)) return;
    p->st_closed++;
    switch (reason) {
    case DBP__CLOSE_IDLE: case DBP__CLOSE_SURPLUS: p->st_closed_idle++; break;
    case DBP__CLOSE_LIFETIME: p->st_closed_lifetime++; break;
    case DBP__CLOSE_ERROR: p->st_closed_error++; break;
    case DBP__CLOSE_POOL: p->st_closed_close++; break;
    default: p->st_closed_dead++; break; /* DBP__CLOSE_DEAD: the server or the network ended it */
    }
}

/* Takes a dead connection out of its pool; it is freed at the end of the step. */
static void dbp__conn_bury(dbp_conn *c, int reason)
{
    dbp_pool *p = c->pool;
    dbp_hub *h = p->hub;
    if (c->state == DBP__CS_DEAD) return;
    if (c->state == DBP__CS_CONNECTING || c->state == DBP__CS_INIT) p->nconnecting--;
    dbp__conn_unpin(c);
    if (!(c->flags & DBP__CF_SUB)) {
        if (c->flags & DBP__CF_BLOCKING) p->nblocking--; else p->nconns--;
    }
    c->state = DBP__CS_DEAD;
    c->fd = -1;
    c->events = 0;
    dbp__list_remove(&c->idle_link);
    dbp__list_remove(&c->link);
    dbp__timer_clear(h, &c->timer);
    dbp__timer_clear(h, &c->htimer);
    dbp__count_close(c, reason);
    dbp__list_push(&h->graveyard, &c->link);
    if (p->s.min > 0 && p->state == DBP__PS_OPEN && !(c->flags & DBP__CF_SUB))
        dbp__timer_min(h, &p->timer, dbp__ms_now()); /* keep min warm: replace it */
}

/* A connection failed: while connecting (a connect error) or later (I/O).
   Its ops are retried or rejected, it is buried, the pool carries on. */
static void dbp__conn_failed(dbp_conn *c, const dbp_error *why, int connecting)
{
    dbp_pool *p = c->pool;
    dbp_error e = *why;
    if (c->state == DBP__CS_DEAD) return;
    if (c->pool->s.password) dbp__err_scrub(&e, c->pool->s.password);
    c->err = e;
    if (p->bk->abort) p->bk->abort(c);
    if (connecting) {
        p->fail_streak++;
        p->st_connect_failures++;
        p->last_connect_err = e;
        p->fatal = e.rc == DBP_EAUTH || e.rc == DBP_EUNSUPPORTED || (c->flags & DBP__CF_FATAL);
        dbp__pool_backoff(p);
        dbp__emit(p, DBP_EVENT_ERROR, e.message, &e, 0, c);
    } else if (!(c->flags & DBP__CF_SUB)) {
        dbp__emit(p, DBP_EVENT_ERROR, e.message, &e, 0, c);
    }
    dbp__conn_bury(c, connecting ? DBP__CLOSE_DEAD : DBP__CLOSE_ERROR);
    if (c->sub) dbp__sub_lost(c, &e);
    if (c->pending) {
        dbp_op *op = c->pending;
        c->pending = NULL;
        op->conn = NULL;
        /* never sent: back to the front of the queue */
        op->retries++;
        dbp__queue_op(p, op, 1);
    }
    /* newest first: each retried op goes to the front of the queue, so they
       run again in the order they were submitted */
    while (!dbp__list_empty(&c->ops)) {
        dbp_op *op = DBP__CONTAINER(c->ops.prev, dbp_op, link);
        dbp__conn_unlink_op(c, op);
        if (op->flags & DBP__OF_ZOMBIE) {
            op->flags &= ~DBP__OF_ZOMBIE;
            dbp__op_maybe_free(op);
            continue;
        }
        dbp__op_orphaned(p, op, &e);
    }
    while (!dbp__list_empty(&c->pinq)) {
        dbp_op *op = DBP__CONTAINER(c->pinq.next, dbp_op, link);
        dbp__list_remove(&op->link);
        dbp__op_orphaned(p, op, &e);
    }
    if (c->pin_op) {
        /* handed out but not taken yet: nobody holds it, it is freed */
        dbp_op *op = c->pin_op;
        c->pin_op = NULL;
        c->flags &= ~DBP__CF_HELD;
        if (op->acquired == c) op->acquired = NULL;
    }
    if ((p->fatal || p->fail_fast) && connecting && p->nconns + p->nblocking == 0) {
        /* retrying cannot fix a wrong password or a refused TLS handshake:
           fail the waiting ops now rather than at their deadlines */
        dbp__pool_fail_queue(p, &e, e.rc ? e.rc : DBP_ECONNECT);
    }
    dbp__pool_dispatch(p);
    dbp__pool_check_closed(p);
}

/* The backend finished connecting and initialising a connection. */
static void dbp__conn_ready(dbp_conn *c)
{
    dbp_pool *p = c->pool;
    long long took = dbp__now_us() - c->connect_started_us;
    char msg[96];
    p->nconnecting--;
    p->fail_streak = 0;
    p->fatal = 0;
    p->st_created++;
    c->flags |= DBP__CF_OPENED;
    c->state = DBP__CS_IDLE;
    c->idle_since_ms = dbp__ms_now();
    if (p->s.max_lifetime > 0) {
        /* up to 10% negative jitter so connections made together do not expire together */
        long long life = p->s.max_lifetime;
        long long jitter = (long long)(dbp__rand(&p->hub->rng) % (unsigned)(life / 10 + 1));
        c->expires_ms = c->created_ms + life - jitter;
    }
    snprintf(msg, sizeof msg, "connection %d opened in %.1f ms", c->id, (double)took / 1000.0);
    if (c->flags & DBP__CF_SUB) {
        dbp__sub_ready(c);
        return;
    }
    dbp__emit(p, DBP_EVENT_CONNECT, msg, NULL, took, c);
    /* a new connection retires one whose lifetime is ending */
    {
        dbp__link *l;
        for (l = p->conns.next; l != &p->conns; l = l->next) {
            dbp_conn *o = DBP__CONTAINER(l, dbp_conn, link);
            if (o != c && (o->flags & DBP__CF_REPLACED) && !(o->flags & DBP__CF_RETIRING)) {
                o->flags |= DBP__CF_RETIRING;
                if (o->state == DBP__CS_IDLE) { dbp__conn_close(o, DBP__CLOSE_LIFETIME); }
                break;
            }
        }
    }
    if (c->flags & DBP__CF_BLOCKING) dbp__list_push(&p->idle_blocking, &c->idle_link);
    else dbp__list_push(&p->idle, &c->idle_link);
    dbp__conn_arm_housekeeping(c);
    dbp__pool_dispatch(p);
    if (p->nconns < p->s.min) dbp__pool_maintain(p);
    dbp__pool_check_closed(p);
}

/* Closes a connection at once, without QUIT; ops still on it are cut off. */
static void dbp__conn_kill(dbp_conn *c, int reason)
{
    dbp_pool *p = c->pool;
    if (c->state == DBP__CS_DEAD) return;
    if (c->state == DBP__CS_CLOSING) { dbp__conn_closed(c); return; }
    if (p->bk->abort) p->bk->abort(c);
    dbp__conn_bury(c, reason);
    if (c->pending) {
        dbp_op *op = c->pending;
        c->pending = NULL;
        op->conn = NULL;
        dbp__op_fail(op, DBP_ECANCELLED, 0, "the pool's close deadline passed before the op started; it did not run");
    }
    while (!dbp__list_empty(&c->ops)) {
        dbp_op *op = DBP__CONTAINER(c->ops.next, dbp_op, link);
        dbp__conn_unlink_op(c, op);
        if (op->flags & DBP__OF_ZOMBIE) { op->flags &= ~DBP__OF_ZOMBIE; dbp__op_maybe_free(op); continue; }
        dbp__op_fail(op, DBP_ECANCELLED, (op->flags & DBP__OF_SENT) != 0,
                     "the pool's close deadline cut the op off while it ran%s",
                     (op->flags & DBP__OF_SENT) ? "; it may or may not have run" : "");
    }
    while (!dbp__list_empty(&c->pinq)) {
        dbp_op *op = DBP__CONTAINER(c->pinq.next, dbp_op, link);
        dbp__list_remove(&op->link);
        dbp__op_fail(op, DBP_ECANCELLED, 0, "the pool's close deadline passed before the op started; it did not run");
    }
    if (c->sub) dbp__sub_lost(c, &c->err);
}

/* Graceful close of one connection (QUIT) when it is idle, else at once. */
static void dbp__conn_close(dbp_conn *c, int reason)
{
    dbp_pool *p = c->pool;
    if (c->state == DBP__CS_DEAD || c->state == DBP__CS_CLOSING) return;
    if (c->state != DBP__CS_IDLE || !p->bk->quit) { dbp__conn_kill(c, reason); return; }
    dbp__list_remove(&c->idle_link);
    dbp__timer_clear(p->hub, &c->htimer);
    /* counted as gone now: the QUIT finishes on its own */
    dbp__conn_unpin(c);
    c->state = DBP__CS_CLOSING;
    dbp__count_close(c, reason);
    if (!(c->flags & DBP__CF_SUB)) {
        if (c->flags & DBP__CF_BLOCKING) p->nblocking--; else p->nconns--;
    }
    dbp__timer_set(p->hub, &c->timer, dbp__ms_now() + 2000);
    if (p->s.min > 0 && p->state == DBP__PS_OPEN && !(c->flags & DBP__CF_SUB))
        dbp__timer_min(p->hub, &p->timer, dbp__ms_now());
    p->bk->quit(c);
}

/* A connection in CLOSING finished its QUIT (or gave up). */
static void dbp__conn_closed(dbp_conn *c)
{
    dbp_pool *p = c->pool;
    dbp_hub *h = p->hub;
    if (c->state == DBP__CS_DEAD) return;
    if (p->bk->abort) p->bk->abort(c);
    c->state = DBP__CS_DEAD;
    c->fd = -1;
    c->events = 0;
    dbp__list_remove(&c->link);
    dbp__timer_clear(h, &c->timer);
    dbp__timer_clear(h, &c->htimer);
    dbp__list_push(&h->graveyard, &c->link);
    dbp__pool_check_closed(p);
}

/* A connection has no more work: back to idle, or closed, or next pinned op. */
static void dbp__conn_idle(dbp_conn *c)
{
    dbp_pool *p = c->pool;
    if (c->state == DBP__CS_DEAD || c->state == DBP__CS_CLOSING) return;
    if (c->nops > 0) return;
    if (c->flags & DBP__CF_KILLING) return;
    c->state = DBP__CS_IDLE;
    c->idle_since_ms = dbp__ms_now();
    if (c->flags & DBP__CF_SUB) return;
    if (c->flags & DBP__CF_PINNED) {
        if (!dbp__list_empty(&c->pinq)) { dbp__pinned_next(c); return; }
        if (c->flags & DBP__CF_DISCARD) {
            c->flags &= ~DBP__CF_DISCARD;
            dbp__conn_unpin(c);
            dbp__conn_close(c, DBP__CLOSE_ERROR);
            dbp__pool_dispatch(p);
            dbp__pool_check_closed(p);
            return;
        }
        if (c->flags & DBP__CF_RELEASE) {
            c->flags &= ~DBP__CF_RELEASE;
            if (p->bk->release) { p->bk->release(c); return; }
            dbp__conn_unpin(c);
        } else {
            return; /* still pinned: waits for its owner */
        }
    }
    if ((c->flags & (DBP__CF_BROKEN | DBP__CF_RETIRING)) ||
        (p->state != DBP__PS_OPEN && dbp__list_empty(&p->queue)) ||
        (!(c->flags & DBP__CF_BLOCKING) && p->nconns > dbp__pool_max(p) && dbp__list_empty(&p->queue))) {
        dbp__conn_close(c, (c->flags & DBP__CF_RETIRING) ? DBP__CLOSE_LIFETIME :
                           (c->flags & DBP__CF_BROKEN) ? DBP__CLOSE_ERROR :
                           p->state != DBP__PS_OPEN ? DBP__CLOSE_POOL : DBP__CLOSE_SURPLUS);
        dbp__pool_dispatch(p);
        dbp__pool_check_closed(p);
        return;
    }
    dbp__list_remove(&c->idle_link);
    /* LIFO: the most recently used connection goes out first, so the others
       can reach idle_timeout when traffic drops */
    if (c->flags & DBP__CF_BLOCKING) dbp__list_unshift(&p->idle_blocking, &c->idle_link);
    else dbp__list_unshift(&p->idle, &c->idle_link);
    dbp__conn_arm_housekeeping(c);
    dbp__pool_dispatch(p);
}

#ifdef DBP__HAVE_SQL
/* A statement on c ran past its deadline and the backend stops it on the
   server from another connection of the pool: an op of kind KILL (MySQL's
   KILL QUERY, PostgreSQL's pg_cancel_backend) whose continuation is `done`,
   kept in *slot. c is marked KILLING and gets a grace timer: should the kill
   not end the statement by then, the connection is closed (that timer also
   covers running out of memory here, *slot then NULL). A closing pool still
   stops runaway statements. */
static void dbp__conn_kill_query(dbp_conn *c, void (*done)(dbp_op *), dbp_op **slot, long long *started_ms)
{
    dbp_pool *p = c->pool;
    dbp_op *k;
    c->flags |= DBP__CF_KILLING;
    *started_ms = dbp__ms_now();
    dbp__timer_set(p->hub, &c->timer, *started_ms + (p->s.connect_timeout > 2000 ? p->s.connect_timeout : 2000) + 1000);
    *slot = k = dbp__op_new(p->hub, p, DBP__OP_KILL);
    if (!k) return;
    k->flags &= ~DBP__OF_CALLER;
    k->flags |= DBP__OF_SIDE_OK;
    k->kill_id = c->server_id;
    k->done = done;
    k->target = c;
    k->deadline = c->timer.at; /* no use after the grace period that it races */
    if (p->state != DBP__PS_OPEN) {
        k->acquire_deadline = dbp__ms_now() + p->s.connect_timeout;
        dbp__queue_op(p, k, 1);
        dbp__pool_dispatch(p);
    } else {
        dbp__pool_submit(p, k);
    }
}
#endif

#ifdef DBP__HAVE_SQL
/* A backend ran the internal statements it queued on c (init, limits, a
   rollback, clearing a KILL): the connection is ready for the first time,
   goes back to the pool after its holder let go, or is idle again. */
static void dbp__conn_steps_done(dbp_conn *c, int after)
{
    if (after == DBP__AFTER_READY) {
        dbp__conn_ready(c);
    } else if (after == DBP__AFTER_RELEASE) {
        dbp__conn_unpin(c);
        dbp__conn_idle(c);
    } else {
        c->flags &= ~DBP__CF_KILLING;
        dbp__timer_clear(c->pool->hub, &c->timer);
        dbp__conn_idle(c);
    }
}
#endif

static dbp_conn *dbp__conn_new(dbp_pool *p, unsigned flags)
{
    dbp_conn *c = DBP__ALLOC(dbp_conn, 1);
    if (!c) return NULL;
    if (dbp__timers_reserve(p->hub, 2) != DBP_OK) { DBP_FREE(c); return NULL; }
    c->pool = p;
    c->id = ++p->next_conn_id;
    c->flags = flags;
    c->fd = -1;
    c->state = DBP__CS_CONNECTING;
    c->created_ms = dbp__ms_now();
    c->connect_started_us = dbp__now_us();
    dbp__timer_init(&c->timer, dbp__conn_timer_fire);
    dbp__timer_init(&c->htimer, dbp__conn_htimer_fire);
    dbp__list_init(&c->ops);
    dbp__list_init(&c->pinq);
    c->idle_link.next = c->idle_link.prev = NULL;
    return c;
}

/* Whether an idle connection must be pinged before use. */
static int dbp__needs_validation(const dbp_pool *p, const dbp_conn *c)
{
    return p->s.validate_after > 0 && dbp__ms_now() - c->idle_since_ms >= p->s.validate_after;
}

/* Hands an op to an idle connection, validating it first when it has been idle a while. */
static void dbp__conn_take(dbp_conn *c, dbp_op *op)
{
    dbp_pool *p = c->pool;
    if (c->state == DBP__CS_IDLE && dbp__needs_validation(p, c) && p->bk->validate) {
        dbp__list_remove(&c->idle_link);
        dbp__timer_clear(p->hub, &c->htimer);
        c->pending = op;
        op->conn = c;
        c->state = DBP__CS_VALIDATING;
        p->bk->validate(c);
        return;
    }
    dbp__op_begin(c, op);
}

static void dbp__conn_validated(dbp_conn *c)
{
    dbp_op *op = c->pending;
    c->pending = NULL;
    c->state = DBP__CS_IDLE;
    if (!op) { dbp__conn_idle(c); return; }
    op->conn = NULL;
    /* an acquire waited for the ping only: it is done, nothing is sent (begun
       as an op, it would sit in a Redis pipeline and take another's reply) */
    if (op->type == DBP__OP_ACQUIRE) { dbp__acquire_done(c, op); return; }
    dbp__op_begin(c, op);
}

/* Settles an acquire op with a pinned connection. */
static void dbp__acquire_done(dbp_conn *c, dbp_op *op)
{
    dbp_pool *p = c->pool;
    dbp__list_remove(&c->idle_link);
    dbp__timer_clear(p->hub, &c->htimer);
    c->flags |= DBP__CF_PINNED | DBP__CF_HELD;
    p->npinned++;
    c->state = DBP__CS_IDLE;
    c->pin_op = op;
    op->acquired = c;
    if (!op->t_start) {
        op->t_start = dbp__now_us();
        dbp__hist_add(&p->h_wait, op->t_start - op->t_submit);
    }
    dbp__op_settle(op, DBP_OK);
}

/* How many ops may be in flight on one connection of the pool. */
static int dbp__conn_slots(const dbp_pool *p) { return p->bk->pipelined ? p->s.pipeline : 1; }

/* A connection of a pipelined backend that can take one more op. */
static int dbp__conn_available(const dbp_pool *p, const dbp_conn *c)
{
    return (c->state == DBP__CS_IDLE || c->state == DBP__CS_BUSY) &&
           !(c->flags & (DBP__CF_PINNED | DBP__CF_BLOCKING | DBP__CF_SUB | DBP__CF_BROKEN |
                         DBP__CF_RETIRING | DBP__CF_SUSPECT)) &&
           c->nops < dbp__conn_slots(p) && !c->pending;
}

/* A connection with nothing in flight is owed nothing: if its socket is
   readable (EOF, or a farewell from the server) it died while idle, perhaps
   since the last poll. Checked before the first write, so a dead socket is
   dropped and its ops stay unsent (go-sql-driver's check, PR #934). */
static int dbp__conn_dead_before_write(dbp_conn *c)
{
    dbp_error e;
    if (c->fd < 0 || c->state != DBP__CS_IDLE || c->nops || !c->pool->bk->idle_dead) return 0;
    if (!c->pool->bk->idle_dead(c, 0)) return 0;
    dbp__err_set(&e, DBP_ECONNECT, "the server closed idle connection %d", c->id);
    dbp__conn_failed(c, &e, 0);
    return 1;
}

/* A connection's backend deadline passed. */
static void dbp__conn_timer_fire(dbp__timer *t)
{
    dbp_conn *c = DBP__CONTAINER(t, dbp_conn, timer);
    if (c->state == DBP__CS_DEAD) return;
    if (c->state == DBP__CS_CLOSING) { dbp__conn_closed(c); return; }
    c->pool->bk->conn_io(c, DBP__EV_TIMER);
}

/* Housekeeping of an idle connection: idle timeout, lifetime, keepalive. */
static void dbp__conn_arm_housekeeping(dbp_conn *c)
{
    dbp_pool *p = c->pool;
    long long at = 0;
    if (c->state != DBP__CS_IDLE || (c->flags & (DBP__CF_PINNED | DBP__CF_SUB))) return;
    if (p->s.idle_timeout > 0) at = c->idle_since_ms + p->s.idle_timeout;
    if (c->expires_ms) {
        long long pre = c->expires_ms - (p->s.connect_timeout < 30000 ? p->s.connect_timeout : 30000);
        long long when = (c->flags & DBP__CF_REPLACED) ? c->expires_ms : pre;
        if (!at || when < at) at = when;
    }
    if (p->srv_wait_timeout > 0) {
        /* keep the server's idle timer from firing: ping at half of it */
        long long ka = c->idle_since_ms + p->srv_wait_timeout * 500;
        if (!at || ka < at) at = ka;
    }
    if (!at) return;
    if (at < c->idle_since_ms + 1) at = c->idle_since_ms + 1;
    /* one armed to fire sooner stays: dbp__conn_htimer_fire checks the
       clock and arms it again, so firing early costs one wake-up, where
       moving it in the heap on every op cost more */
    if (c->htimer.idx < 0 || at < c->htimer.at) dbp__timer_set(p->hub, &c->htimer, at);
}

static void dbp__conn_htimer_fire(dbp__timer *t)
{
    dbp_conn *c = DBP__CONTAINER(t, dbp_conn, htimer);
    dbp_pool *p = c->pool;
    long long now = dbp__ms_now();
    if (c->state != DBP__CS_IDLE || (c->flags & DBP__CF_PINNED)) return;
    if (c->expires_ms && now >= c->expires_ms) {
        c->flags |= DBP__CF_RETIRING;
        dbp__conn_close(c, DBP__CLOSE_LIFETIME);
        dbp__pool_dispatch(p);
        return;
    }
    if (c->expires_ms && !(c->flags & DBP__CF_REPLACED) &&
        now >= c->expires_ms - (p->s.connect_timeout < 30000 ? p->s.connect_timeout : 30000)) {
        /* make before break: open the replacement now, retire this one when it is ready */
        c->flags |= DBP__CF_REPLACED;
        if (p->nconns < dbp__pool_max(p) && p->state == DBP__PS_OPEN &&
            !(c->flags & DBP__CF_BLOCKING)) {
            dbp__pool_open_conn(p, 0);
        }
        dbp__conn_arm_housekeeping(c);
        return;
    }
    if (p->s.idle_timeout > 0 && now - c->idle_since_ms >= p->s.idle_timeout &&
        (c->flags & DBP__CF_BLOCKING ? 1 : p->nconns > p->s.min)) {
        dbp__conn_close(c, DBP__CLOSE_IDLE);
        return;
    }
    if (p->srv_wait_timeout > 0 && now - c->idle_since_ms >= p->srv_wait_timeout * 500 &&
        p->bk->validate) {
        /* keepalive ping of a connection kept open for min */
        dbp__list_remove(&c->idle_link);
        c->state = DBP__CS_VALIDATING;
        c->pending = NULL;
        p->bk->validate(c);
        return;
    }
    dbp__conn_arm_housekeeping(c);
}

/* Ops on a pinned connection run one after another (MySQL) or pipelined (Redis).
   Before the first write on an idle one, the same peek as the pool's: a
   socket the server already closed fails the connection, and its queued ops
   are rejected as never sent (a pinned session cannot be retried elsewhere,
   but its holder knows that running the op again is safe). */
static void dbp__pinned_next(dbp_conn *c)
{
    dbp_pool *p = c->pool;
    while (!dbp__list_empty(&c->pinq) && c->state != DBP__CS_DEAD && c->state != DBP__CS_CLOSING &&
           !(c->flags & DBP__CF_KILLING)) {
        dbp_op *op;
        if (c->nops >= dbp__conn_slots(p)) return;
        if (dbp__conn_dead_before_write(c)) return;
        op = DBP__CONTAINER(c->pinq.next, dbp_op, link);
        dbp__list_remove(&op->link);
        dbp__op_begin(c, op);
    }
}

static dbp_op *dbp__pinned_submit(dbp_conn *c, dbp_op *op)
{
    dbp_pool *p = c->pool;
    op->pin = c;
    if (c->state == DBP__CS_DEAD || !(c->flags & DBP__CF_PINNED)) {
        dbp__op_fail_err(op, &c->err, c->err.rc ? c->err.rc : DBP_ECONNECT, 0);
        if (!c->err.rc) snprintf(op->err.message, sizeof op->err.message, "the pinned connection is closed");
        return op;
    }
    if (c->flags & (DBP__CF_RELEASE | DBP__CF_DISCARD)) {
        dbp__op_fail(op, DBP_EUSAGE, 0, "the pinned connection was released");
        return op;
    }
    if (!op->query_timeout) op->query_timeout = p->s.query_timeout;
    op->state = DBP_OP_QUEUED;
    dbp__list_push(&c->pinq, &op->link);
    if (op->deadline) dbp__op_arm(op, op->deadline);
    if (c->state == DBP__CS_IDLE || (p->bk->pipelined && c->state == DBP__CS_BUSY))
        dbp__pinned_next(c);
    return op;
}

/* The holder lets go of a pinned connection: from here on the pool owns it.
   Returns 1 when the connection is still alive and the caller goes on to
   release or discard it; a dead one is freed here (or, still in the
   graveyard of this step, at its end). */
static int dbp__conn_let_go(dbp_conn *c)
{
    dbp_pool *p = c->pool;
    if (!(c->flags & DBP__CF_HELD)) return 0;
    c->flags &= ~DBP__CF_HELD;
    if (c->pin_op) { dbp_op *op = c->pin_op; c->pin_op = NULL; if (op->acquired == c) op->acquired = NULL; }
    if (c->state != DBP__CS_DEAD) return 1;
    if (c->flags & DBP__CF_HUSK) {
        dbp__list_remove(&c->link);
        dbp__conn_free(c);
        if (p->freed && p->state == DBP__PS_CLOSED) p->hub->reap = 1;
    }
    return 0;
}

DBPDEF void dbp_conn_release(dbp_conn *c)
{
    if (!c || !dbp__conn_let_go(c)) return;
    if (!(c->flags & DBP__CF_PINNED) || (c->flags & (DBP__CF_RELEASE | DBP__CF_DISCARD))) return;
    c->flags |= DBP__CF_RELEASE;
    if (c->state == DBP__CS_IDLE) dbp__conn_idle(c);
}

DBPDEF void dbp_conn_discard(dbp_conn *c)
{
    if (!c || !dbp__conn_let_go(c)) return;
    if (!(c->flags & DBP__CF_PINNED) || (c->flags & (DBP__CF_RELEASE | DBP__CF_DISCARD))) return;
    c->flags |= DBP__CF_DISCARD;
    if (c->state == DBP__CS_IDLE) dbp__conn_idle(c);
}

DBPDEF int dbp_conn_ok(const dbp_conn *c)
{
    return c && c->state != DBP__CS_DEAD && c->state != DBP__CS_CLOSING && !(c->flags & DBP__CF_BROKEN);
}

DBPDEF unsigned long long dbp_conn_server_id(const dbp_conn *c) { return c ? c->server_id : 0; }

DBPDEF unsigned dbp_conn_session(const dbp_conn *c)
{
    unsigned bits;
    if (!c || c->state == DBP__CS_DEAD || !c->pool->bk->session) return 0;
    bits = c->pool->bk->session(c);
    if (bits & DBP_SESSION_TRANSACTION) bits |= DBP_SESSION_CHANGED;
    return bits;
}

DBPDEF const dbp_error *dbp_conn_error(const dbp_conn *c)
{
    static const dbp_error none = { DBP_EUSAGE, 0, 0, "", "no connection" };
    return c ? &c->err : &none;
}

DBPDEF dbp_op *dbp_conn_query(dbp_conn *c, const char *sql, const dbp_value *params, size_t n,
                              const dbp_op_options *o)
{
    dbp_op *op;
    if (!c) return NULL;
    op = dbp__query_make(c->pool, DBP__OP_QUERY, sql, sql ? strlen(sql) : 0, params, n, o);
    if (!op || dbp__op_settled(op)) return op;
    return dbp__pinned_submit(c, op);
}

DBPDEF dbp_op *dbp_conn_call(dbp_conn *c, int argc, const char *const *argv, const size_t *argvlen,
                             const dbp_op_options *o)
{
    dbp_op *op;
    if (!c) return NULL;
    op = dbp__call_make(c->pool->hub, c->pool, 1, argc, argv, argvlen, o, NULL);
    if (!op || dbp__op_settled(op)) return op;
    if (op->query_timeout < 0) op->query_timeout = 0;
    return dbp__pinned_submit(c, op);
}


/* ==== SECTION: pool engine ==== */

static void dbp__emit(dbp_pool *p, dbp_event_type type, const char *message, const dbp_error *e,
                      long long dur, const dbp_conn *c)
{
    dbp_event ev;
    dbp_pool *target = p->parent ? p->parent : p;
    char msg[DBP_ERRMSG_MAX + 96];
    if (!target->hook) return;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    if (p->parent) {
        /* pools under a router speak through the router pool's hook, naming the node */
        snprintf(msg, sizeof msg, "%s:%d: %s", p->s.host ? p->s.host : "", p->s.port, message ? message : "");
        ev.message = msg;
    } else {
        ev.message = message ? message : "";
    }
    ev.error = e;
    ev.duration_us = dur;
    ev.conn_id = c ? c->id : 0;
    ev.server_id = c ? (unsigned long)c->server_id : 0;
    ev.waiting = p->nqueue;
    target->hook(target, &ev, target->hook_ud);
}

static void dbp__warn(dbp_pool *p, const char *fmt, ...)
{
    dbp_error e;
    va_list ap;
    dbp__err_clear(&e);
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    dbp__emit(p, DBP_EVENT_ERROR, e.message, &e, 0, NULL);
}

static int dbp__pool_max(const dbp_pool *p)
{
    return p->cap > 0 && p->cap < p->s.max ? p->cap : p->s.max;
}

/* Statistics at settle time. */
static void dbp__pool_op_settled(dbp_pool *p, dbp_op *op)
{
    if (op->type == DBP__OP_CLOSE || op->type == DBP__OP_SLEEP || op->type == DBP__OP_KILL) return;
    p->st_ops++;
    if (op->state == DBP_OP_FULFILLED) {
        p->st_fulfilled++;
    } else {
        p->st_rejected++;
        switch (op->err.rc) {
        case DBP_ETIMEOUT: case DBP_EACQUIRE_TIMEOUT: p->st_timeouts++; p->st_errors++; break;
        case DBP_ELOST: p->st_lost++; p->st_errors++; break;
        case DBP_ESQL: case DBP_EREDIS: case DBP_EPARAM: case DBP_EUSAGE: case DBP_ECROSSSLOT: break;
        default: p->st_errors++; break;
        }
    }
    if (op->t_start) {
        long long run = op->t_settle - op->t_start;
        dbp__hist_add(&p->h_run, run);
        if (p->s.slow_threshold > 0 && run >= (long long)p->s.slow_threshold * 1000 &&
            op->state == DBP_OP_FULFILLED) {
            char msg[200];
            if (op->sql)
                snprintf(msg, sizeof msg, "slow query (%.3f s): %.120s", (double)run / 1e6, op->sql);
            else
                snprintf(msg, sizeof msg, "slow command (%.3f s): %s", (double)run / 1e6, op->cmd);
            dbp__emit(p, DBP_EVENT_SLOW, msg, NULL, run, op->conn);
        }
    }
}

/* The deadline that applies to an op in the queue. */
static long long dbp__op_queue_deadline(const dbp_op *op)
{
    long long d = op->acquire_deadline;
    if (op->deadline && (!d || op->deadline < d)) d = op->deadline;
    return d;
}

/* The deadline that applies to an op while it runs. */
static long long dbp__op_run_deadline(const dbp_op *op)
{
    long long d = op->query_timeout > 0 ? dbp__ms_now() + op->query_timeout : 0;
    if (op->deadline && (!d || op->deadline < d)) d = op->deadline;
    return d;
}

static void dbp__op_arm(dbp_op *op, long long at)
{
    if (!op->hub) return;
    if (at) dbp__timer_set(op->hub, &op->timer, at);
    else dbp__timer_clear(op->hub, &op->timer);
}

/* Puts an op in the pool's queue (front: a retry keeps its place). */
static void dbp__queue_op(dbp_pool *p, dbp_op *op, int front)
{
    op->state = DBP_OP_QUEUED;
    op->conn = NULL;
    if (front) dbp__list_unshift(&p->queue, &op->link);
    else dbp__list_push(&p->queue, &op->link);
    p->nqueue++;
    if (op->flags & DBP__OF_BLOCKING) p->nqueue_blocking++;
    dbp__op_arm(op, dbp__op_queue_deadline(op));
}

static void dbp__unqueue_op(dbp_pool *p, dbp_op *op)
{
    dbp__list_remove(&op->link);
    p->nqueue--;
    if (op->flags & DBP__OF_BLOCKING) p->nqueue_blocking--;
}

/* Rejects every op waiting in the queue (none was sent) with a copy of `e`
   under `rc`; returns how many. */
static int dbp__pool_fail_queue(dbp_pool *p, const dbp_error *e, int rc)
{
    int n = 0;
    while (!dbp__list_empty(&p->queue)) {
        dbp_op *op = DBP__CONTAINER(p->queue.next, dbp_op, link);
        dbp__unqueue_op(p, op);
        dbp__op_fail_err(op, e, rc, 0);
        n++;
    }
    return n;
}

/* The op leaves the queue for a connection. */
static void dbp__op_begin(dbp_conn *c, dbp_op *op)
{
    dbp_pool *p = c->pool;
    op->conn = c;
    op->state = DBP_OP_RUNNING;
    if (!op->t_start) {
        op->t_start = dbp__now_us();
        dbp__hist_add(&p->h_wait, op->t_start - op->t_submit);
    }
    dbp__op_arm(op, dbp__op_run_deadline(op));
    dbp__list_push(&c->ops, &op->link);
    c->nops++;
    c->state = DBP__CS_BUSY;
    dbp__list_remove(&c->idle_link);
    /* the housekeeping timer stays armed: firing on a busy connection does
       nothing, and the next dbp__conn_idle keeps or re-arms it */
    p->bk->op_start(c, op);
}

/* A backend is done with an op on a connection (settled or to be retried). */
static void dbp__conn_unlink_op(dbp_conn *c, dbp_op *op)
{
    if (op->conn != c) return;
    dbp__list_remove(&op->link);
    c->nops--;
    op->conn = NULL;
}

/* Decides the fate of an op whose connection died under it: retried when it
   was never sent (or is idempotent and not yet retried after a send), else
   rejected as lost after send. */
static void dbp__op_orphaned(dbp_pool *p, dbp_op *op, const dbp_error *why)
{
    int sent = (op->flags & DBP__OF_SENT) != 0;
    if (dbp__op_settled(op)) return;
    if (op->pin) {
        /* a pinned session is gone with its connection: nothing can be retried */
        dbp__op_fail(op, sent ? DBP_ELOST : DBP_ECONNECT, sent,
                     sent ? "connection lost after the request was sent; it may or may not have run (%s)"
                          : "the pinned connection was lost (%s)", why->message);
        return;
    }
    if (p->state != DBP__PS_CLOSED && op->type != DBP__OP_STREAM &&
        ((!sent && op->retries < 3) ||
         (sent && (op->flags & DBP__OF_IDEMPOTENT) && !(op->flags & DBP__OF_RETRIED_SENT)))) {
        if (sent) op->flags |= DBP__OF_RETRIED_SENT;
        op->flags &= ~DBP__OF_SENT;
        op->retries++;
        p->st_retried++;
        dbp__queue_op(p, op, 1);
        return;
    }
    if (sent && why->rc == DBP_ENOMEM)
        dbp__op_fail(op, DBP_ENOMEM, 1, "%s; the request was sent and may or may not have run", why->message);
    else if (sent)
        dbp__op_fail(op, DBP_ELOST, 1,
                     "connection lost after the request was sent; it may or may not have run (%s)", why->message);
    else
        dbp__op_fail_err(op, why, why->rc ? why->rc : DBP_ECONNECT, 0);
}

/* The wait before the next try after `streak` failures in a row: capped
   exponential (backoff_min doubling up to backoff_max; `cap` starts at the
   top), with jitter over the upper half: never a thundering herd, never 0. */
static long long dbp__backoff_ms(dbp_pool *p, int streak, int cap)
{
    long long d = p->s.backoff_min;
    int i;
    for (i = 1; i < streak && d < p->s.backoff_max; i++) d *= 2;
    if (d > p->s.backoff_max || cap) d = p->s.backoff_max;
    return d / 2 + (long long)(dbp__rand(&p->hub->rng) % (unsigned)(d / 2 + 1));
}

/* A backend learnt one of the server's limits (-1: unknown); the engine
   keeps the pool inside it: idle connections close before the server's
   idle timeout would close them, `max` is capped to the account's limit,
   and a `max` the server cannot fit is reported. `name` is the server's. */
static void dbp__pool_limit(dbp_pool *p, int which, long long v, const char *name)
{
    switch (which) {
    case DBP__LIMIT_IDLE:
        p->srv_wait_timeout = v;
        if (v > 0 && p->s.idle_timeout > 0 && p->s.idle_timeout >= v * 1000) {
            p->s.idle_timeout = (int)(v * 1000 * 3 / 4);
            if (p->s.idle_timeout < 1) p->s.idle_timeout = 1;
        }
        break;
    case DBP__LIMIT_CONNS:
        p->srv_max_conn = v;
        if (v > 0 && p->s.max > v) dbp__warn(p, "max=%d exceeds the server's %s=%lld", p->s.max, name, v);
        break;
    default:
        p->srv_max_user_conn = v;
        if (v > 0 && p->s.max > v) {
            p->cap = (int)v;
            dbp__warn(p, "max=%d but the server allows this user %lld connections (%s); the pool will use at most %d",
                      p->s.max, v, name, p->cap);
        }
    }
}

/* Backoff after a failed connect (at the cap when retrying cannot help). */
static void dbp__pool_backoff(dbp_pool *p)
{
    p->next_connect_ms = dbp__ms_now() + dbp__backoff_ms(p, p->fail_streak, p->fatal);
    dbp__timer_min(p->hub, &p->timer, p->next_connect_ms);
}

/* Closes the idle connections of a pool that has nothing left for them.
   Closing one may settle ops and close others: rescan from the head. */
static void dbp__pool_close_idle(dbp_pool *p)
{
    int guard = 0;
    while (guard++ < 100000) {
        dbp__link *l;
        dbp_conn *found = NULL;
        for (l = p->conns.next; l != &p->conns; l = l->next) {
            dbp_conn *c = DBP__CONTAINER(l, dbp_conn, link);
            if (c->state == DBP__CS_IDLE && !(c->flags & (DBP__CF_PINNED | DBP__CF_SUB)) && !c->nops) { found = c; break; }
            if ((c->state == DBP__CS_CONNECTING || c->state == DBP__CS_INIT) && !(c->flags & DBP__CF_SUB) &&
                dbp__list_empty(&p->queue)) { found = c; break; }
        }
        if (!found) return;
        if (found->state == DBP__CS_IDLE) dbp__conn_close(found, DBP__CLOSE_POOL);
        else dbp__conn_kill(found, DBP__CLOSE_POOL);
    }
}

/* Opens one more connection (of the blocking class when asked). */
static dbp_conn *dbp__pool_open_conn(dbp_pool *p, unsigned flags)
{
    dbp_conn *c = dbp__conn_new(p, flags);
    if (!c) {
        /* as a failed connect: remembered, retried after a backoff, and what
           waits on a pool with no connection hears it now */
        dbp__err_set(&p->last_connect_err, DBP_ENOMEM, "out of memory opening a connection");
        p->fail_streak++;
        p->st_connect_failures++;
        dbp__pool_backoff(p);
        if (p->nconns + p->nblocking == 0) {
            dbp__pool_fail_queue(p, &p->last_connect_err, DBP_ENOMEM);
        }
        return NULL;
    }
    dbp__list_push(&p->conns, &c->link);
    if (!(flags & DBP__CF_SUB)) {
        if (flags & DBP__CF_BLOCKING) p->nblocking++; else p->nconns++;
    }
    p->nconnecting++;
    dbp__timer_set(p->hub, &c->timer, dbp__ms_now() + p->s.connect_timeout);
    if (p->bk->conn_open(c) != DBP_OK) {
        dbp_error e = c->err;
        dbp__conn_failed(c, &e, 1);
        return NULL;
    }
    return c;
}

/* Finds a connection for the op at the head of the queue, or NULL. */
static dbp_conn *dbp__pool_pick(dbp_pool *p, dbp_op *op)
{
    dbp__link *l;
    if (op->flags & DBP__OF_BLOCKING) {
        if (dbp__list_empty(&p->idle_blocking)) return NULL;
        return DBP__CONTAINER(p->idle_blocking.next, dbp_conn, idle_link);
    }
    if (!p->bk->pipelined || op->type == DBP__OP_ACQUIRE) {
        for (l = p->idle.next; l != &p->idle; l = l->next) {
            dbp_conn *c = DBP__CONTAINER(l, dbp_conn, idle_link);
            if (c->state == DBP__CS_IDLE && c->nops == 0 && !(c->flags & (DBP__CF_BROKEN | DBP__CF_RETIRING))) return c;
        }
        return NULL;
    }
    /* pipelined: the ready connection with the fewest ops in flight */
    {
        dbp_conn *best = NULL;
        for (l = p->conns.next; l != &p->conns; l = l->next) {
            dbp_conn *c = DBP__CONTAINER(l, dbp_conn, link);
            if (dbp__conn_available(p, c) && (!best || c->nops < best->nops)) {
                best = c;
                if (c->nops == 0) break;
            }
        }
        return best;
    }
}

/* Assigns queued ops to connections and opens connections as needed. */
static void dbp__pool_dispatch(dbp_pool *p)
{
    int guard = 0;
    if (p->bk->router) { p->bk->router->dispatch(p); return; }
    if (p->in_dispatch) return; /* a connection failing inside the loop: the loop goes on */
    p->in_dispatch = 1;
    while (!dbp__list_empty(&p->queue)) {
        dbp_op *op = DBP__CONTAINER(p->queue.next, dbp_op, link);
        dbp_conn *c = dbp__pool_pick(p, op);
        if (!c) break;
        if (dbp__conn_dead_before_write(c)) {
            if (++guard > 1000000) break;
            continue;
        }
        dbp__unqueue_op(p, op);
        if (op->type == DBP__OP_ACQUIRE) {
            if (c->state == DBP__CS_IDLE && dbp__needs_validation(p, c) && p->bk->validate) {
                dbp__conn_take(c, op);
            } else {
                dbp__acquire_done(c, op);
            }
        } else {
            dbp__conn_take(c, op);
        }
        if (++guard > 1000000) break;
    }
    p->in_dispatch = 0;
    if (dbp__list_empty(&p->queue) || p->state == DBP__PS_CLOSED) return;
    /* Grow: one new connection per waiting op not yet covered by one being
       opened, up to max (the blocking class has its own max). */
    /* (no clock read while no connect ever failed: next_connect_ms is 0) */
    if (p->next_connect_ms && dbp__ms_now() < p->next_connect_ms) {
        dbp__timer_min(p->hub, &p->timer, p->next_connect_ms);
        return;
    }
    {
        int want_normal = p->nqueue - p->nqueue_blocking, want_blocking = p->nqueue_blocking;
        int connecting_normal = 0, connecting_blocking = 0;
        /* a KILL QUERY waits at the head and may use one connection beyond max */
        int side = (DBP__CONTAINER(p->queue.next, dbp_op, link)->flags & DBP__OF_SIDE_OK) != 0;
        dbp__link *l;
        /* a full pool under load (every dispatch with a queue): neither class
           can open one more, so the walk over the connections below would
           only count what it cannot use */
        if (p->nconns >= dbp__pool_max(p) + side &&
            (want_blocking == 0 || p->nblocking >= p->s.max_blocking))
            return;
        for (l = p->conns.next; l != &p->conns; l = l->next) {
            dbp_conn *c = DBP__CONTAINER(l, dbp_conn, link);
            if (c->state != DBP__CS_CONNECTING && c->state != DBP__CS_INIT) continue;
            if (c->flags & DBP__CF_SUB) continue;
            if (c->flags & DBP__CF_BLOCKING) connecting_blocking++; else connecting_normal++;
        }
        if (p->bk->pipelined && want_normal > 0) {
            /* a pipelined connection takes many ops: grow only when every
               ready connection is full */
            int busy_all = 1;
            for (l = p->conns.next; l != &p->conns; l = l->next) {
                dbp_conn *c = DBP__CONTAINER(l, dbp_conn, link);
                if (dbp__conn_available(p, c)) { busy_all = 0; break; }
            }
            if (!busy_all) want_normal = 0;
        }
        /* Until one connection has come up, open one at a time: a wrong
           password then fails once, and the server's limits are known
           before the pool grows into them. */
        if (!p->st_created && (connecting_normal + connecting_blocking) > 0) return;
        if (!p->st_created && want_normal > 1) want_normal = 1;
        while (want_normal > connecting_normal &&
               (p->nconns < dbp__pool_max(p) || (side && p->nconns < dbp__pool_max(p) + 1))) {
            if (!dbp__pool_open_conn(p, 0)) return;
            connecting_normal++;
            side = 0;
        }
        while (want_blocking > connecting_blocking && p->nblocking < p->s.max_blocking) {
            if (!dbp__pool_open_conn(p, DBP__CF_BLOCKING)) return;
            connecting_blocking++;
        }
    }
}

/* Accepts an op into the pool. */
static dbp_op *dbp__pool_submit(dbp_pool *p, dbp_op *op)
{
    if (p->state != DBP__PS_OPEN) {
        dbp__op_fail(op, DBP_ECLOSED, 0, "pool is %s: no new ops are accepted",
                     p->state == DBP__PS_CLOSING ? "closing" : "closed");
        return op;
    }
    if (p->s.max_waiting > 0 && p->nqueue >= p->s.max_waiting && !(op->flags & DBP__OF_SIDE_OK)) {
        /* an op that can start at once does not count against the bound */
        dbp_conn *c = dbp__pool_pick(p, op);
        if (!c) {
            dbp__op_fail(op, DBP_EQUEUE_FULL, 0, "%d ops already waiting (max_waiting); op refused",
                         p->nqueue);
            return op;
        }
    }
    if ((p->fatal || (p->fail_fast && p->fail_streak > 0)) && p->nconns + p->nblocking == 0 &&
        dbp__ms_now() < p->next_connect_ms && !(op->flags & DBP__OF_SIDE_OK)) {
        /* the last connect failed for a reason retrying cannot fix: fail fast
           until the backoff allows the next attempt */
        dbp__op_fail_err(op, &p->last_connect_err,
                         p->last_connect_err.rc ? p->last_connect_err.rc : DBP_ECONNECT, 0);
        return op;
    }
    if (p->s.acquire_timeout > 0) op->acquire_deadline = dbp__ms_now() + p->s.acquire_timeout;
    if (!op->query_timeout) op->query_timeout = p->s.query_timeout;
    if (dbp__list_empty(&p->queue) && !p->bk->router) {
        /* nobody waits and a connection is free: start at once, without a
           trip through the queue and its deadline timer */
        dbp_conn *c = dbp__pool_pick(p, op);
        if (c && !dbp__conn_dead_before_write(c)) {
            if (op->type == DBP__OP_ACQUIRE &&
                !(c->state == DBP__CS_IDLE && dbp__needs_validation(p, c) && p->bk->validate))
                dbp__acquire_done(c, op);
            else
                dbp__conn_take(c, op);
            return op;
        }
    }
    dbp__queue_op(p, op, (op->flags & DBP__OF_SIDE_OK) != 0);
    dbp__pool_dispatch(p);
    if (op->state == DBP_OP_QUEUED && !(op->flags & DBP__OF_SIDE_OK)) {
        dbp__emit(p, DBP_EVENT_ENQUEUE, "op waiting for a connection", NULL, 0, NULL);
    }
    return op;
}

/* A router's pool takes an op: queued, and the router passes it on. */
static void dbp__router_submit(dbp_pool *p, dbp_op *op)
{
    if (p->state != DBP__PS_OPEN) {
        dbp__op_fail(op, DBP_ECLOSED, 0, "pool is %s: no new ops are accepted", p->state == DBP__PS_CLOSING ? "closing" : "closed");
        return;
    }
    op->acquire_deadline = dbp__ms_now() + (p->s.acquire_timeout > 0 ? p->s.acquire_timeout : 30000);
    if (!op->query_timeout) op->query_timeout = p->s.query_timeout;
    dbp__queue_op(p, op, 0);
    p->bk->router->dispatch(p);
}

/* An op's deadline passed. */
static void dbp__op_timer_fire(dbp__timer *t)
{
    dbp_op *op = DBP__CONTAINER(t, dbp_op, timer);
    dbp_pool *p = op->pool;
    long long now = dbp__ms_now();
    if (op->type == DBP__OP_SLEEP) { dbp__op_settle(op, DBP_OK); return; }
    if (dbp__op_settled(op)) return;
    if (p->bk->router && op->state == DBP_OP_RUNNING && !op->peer) {
        /* a routed op's retry delay is over: route it again */
        op->state = DBP_OP_QUEUED;
        dbp__queue_op(p, op, 1);
        p->bk->router->dispatch(p);
        return;
    }
    if (op->state == DBP_OP_QUEUED) {
        int own = op->deadline && op->deadline <= now + 1;
        if (op->conn && op->conn->pending == op) {
            /* waiting for a validation ping: the connection is suspect */
            dbp_conn *c = op->conn;
            dbp_error e;
            c->pending = NULL;
            op->conn = NULL;
            dbp__err_set(&e, DBP_ETIMEOUT, "validation ping timed out");
            dbp__conn_failed(c, &e, 0);
            if (dbp__op_settled(op) || op->state != DBP_OP_QUEUED) return;
        }
        if (dbp__linked(&op->link)) {
            if (op->pin) dbp__list_remove(&op->link);
            else dbp__unqueue_op(p, op);
        }
        if (own)
            dbp__op_fail(op, DBP_ETIMEOUT, 0, "deadline of %.3f s expired while waiting for a connection%s%s",
                         (double)(op->deadline - op->t_submit / 1000) / 1000.0,
                         p->fail_streak > 0 ? "; last connect error: " : "",
                         p->fail_streak > 0 ? p->last_connect_err.message : "");
        else if (p->bk->router)
            dbp__op_fail(op, DBP_EACQUIRE_TIMEOUT, 0, "no %s node took the command within %.3f s (acquire_timeout); last error: %s",
                         p->bk->name, (double)p->s.acquire_timeout / 1000.0, p->bk->router->last_error(p));
        else
            dbp__op_fail(op, DBP_EACQUIRE_TIMEOUT, 0, "no connection within %.3f s (acquire_timeout)%s%s",
                         (double)p->s.acquire_timeout / 1000.0,
                         p->fail_streak > 0 ? "; last connect error: " : "",
                         p->fail_streak > 0 ? p->last_connect_err.message : "");
        dbp__pool_check_closed(p);
        return;
    }
    if (op->state == DBP_OP_RUNNING && op->conn) {
        p->bk->op_timeout(op->conn, op);
        return;
    }
}

/* Keeps min connections open and the close deadline honoured. */
static void dbp__pool_maintain(dbp_pool *p)
{
    long long now = dbp__ms_now();
    if (p->state == DBP__PS_OPEN && p->nconns < p->s.min) {
        if (now < p->next_connect_ms) {
            dbp__timer_min(p->hub, &p->timer, p->next_connect_ms);
        } else {
            int connecting = 0, guard = 0;
            dbp__link *l;
            for (l = p->conns.next; l != &p->conns; l = l->next) {
                dbp_conn *c = DBP__CONTAINER(l, dbp_conn, link);
                if ((c->state == DBP__CS_CONNECTING || c->state == DBP__CS_INIT) && !(c->flags & DBP__CF_SUB)) connecting++;
            }
            /* the first alone (see dispatch), then the rest of min together */
            if (!p->st_created) { if (connecting == 0) dbp__pool_open_conn(p, 0); }
            else while (p->nconns < p->s.min && p->state == DBP__PS_OPEN && guard++ < 1000)
                if (!dbp__pool_open_conn(p, 0)) break;
        }
    }
}

static void dbp__pool_cut(dbp_pool *p)
{
    int guard = 0;
    p->close_cut = 0;
    {
        dbp_error e;
        dbp__err_set(&e, DBP_ECANCELLED, "the pool's close deadline passed before the op started; it did not run");
        p->close_cut = dbp__pool_fail_queue(p, &e, DBP_ECANCELLED);
    }
    dbp__sub_pool_closing(p);
    if (p->bk->router) {
        /* what runs under it is cut there; routed ops hear it from the ops they passed on */
        p->close_cut += p->bk->router->running(p);
        p->bk->router->close(p, 0);
    }
    while (!dbp__list_empty(&p->conns) && guard++ < 100000) {
        dbp_conn *c = DBP__CONTAINER(p->conns.next, dbp_conn, link);
        if (c->state != DBP__CS_CLOSING &&
            (c->nops || c->pending || !dbp__list_empty(&c->pinq) || (c->flags & DBP__CF_PINNED)))
            p->close_cut++;
        dbp__conn_kill(c, DBP__CLOSE_POOL);
    }
}

static void dbp__pool_timer_fire(dbp__timer *t)
{
    dbp_pool *p = DBP__CONTAINER(t, dbp_pool, timer);
    long long now = dbp__ms_now();
    if (p->state == DBP__PS_CLOSING && p->close_deadline && now >= p->close_deadline) {
        dbp__pool_cut(p);
        dbp__pool_check_closed(p);
        return;
    }
    if (p->state == DBP__PS_CLOSED) return;
    dbp__pool_dispatch(p);
    dbp__pool_maintain(p);
    if (p->state == DBP__PS_CLOSING && p->close_deadline) dbp__timer_min(p->hub, &p->timer, p->close_deadline);
}

/* Starts closing: idle connections quit now, the rest when their work is done. */
static void dbp__pool_begin_close(dbp_pool *p, int timeout_ms)
{
    long long now = dbp__ms_now();
    if (p->state == DBP__PS_OPEN) {
        p->state = DBP__PS_CLOSING;
        dbp__sub_pool_closing(p);
    }
    if (timeout_ms >= 0 && p->state == DBP__PS_CLOSING) {
        long long d = now + timeout_ms;
        if (!p->close_deadline || d < p->close_deadline) p->close_deadline = d;
        dbp__timer_min(p->hub, &p->timer, p->close_deadline);
    }
    if (dbp__list_empty(&p->queue)) dbp__pool_close_idle(p);
    dbp__pool_check_closed(p);
}

/* Finishes the close when nothing is left: settles the close ops. */
static void dbp__pool_check_closed(dbp_pool *p)
{
    if (p->state != DBP__PS_CLOSING) return;
    if (!dbp__list_empty(&p->queue) || !dbp__list_empty(&p->conns) || !dbp__list_empty(&p->subs)) {
        /* idle connections with an empty queue have nothing left to do */
        if (dbp__list_empty(&p->queue)) dbp__pool_close_idle(p);
        if (!dbp__list_empty(&p->queue) || !dbp__list_empty(&p->conns) || !dbp__list_empty(&p->subs)) return;
    }
    if (p->bk->router) {
        const dbp__router *r = p->bk->router;
        if (!r->running(p))
            r->close(p, p->close_deadline ? (int)(p->close_deadline - dbp__ms_now() > 0 ? p->close_deadline - dbp__ms_now() : 0) : -1);
        if (r->busy(p)) return;
    }
    dbp__pool_finish_close(p);
}

static void dbp__pool_finish_close(dbp_pool *p)
{
    p->state = DBP__PS_CLOSED;
    dbp__timer_clear(p->hub, &p->timer);
    while (!dbp__list_empty(&p->close_ops)) {
        dbp_op *op = DBP__CONTAINER(p->close_ops.next, dbp_op, link);
        dbp__list_remove(&op->link);
        if (p->close_cut)
            dbp__op_fail(op, DBP_ECANCELLED, 0, "pool closed; the close deadline cut off %d op%s or connection%s",
                         p->close_cut, p->close_cut == 1 ? "" : "s", p->close_cut == 1 ? "" : "s");
        else
            dbp__op_settle(op, DBP_OK);
    }
    if (p->parent && p->parent->state == DBP__PS_CLOSING) dbp__pool_check_closed(p->parent);
    if (p->freed) p->hub->reap = 1; /* released while it closed: freed after this step */
}


/* ==== SECTION: hub ==== */

DBPDEF dbp_hub *dbp_hub_open(dbp_error *err)
{
    dbp_hub *h = DBP__ALLOC(dbp_hub, 1);
    dbp__err_clear(err);
    if (!h) { dbp__err_set(err, DBP_ENOMEM, "out of memory"); return NULL; }
    dbp__list_init(&h->pools);
    dbp__list_init(&h->notify);
    dbp__list_init(&h->all_ops);
    dbp__list_init(&h->graveyard);
    h->wakeup_fd = -1;
    h->rng = (unsigned long long)dbp__now_us() ^ ((unsigned long long)(size_t)h << 16) ^ 0x9E3779B97F4A7C15ULL;
    if (!h->rng) h->rng = 1;
    return h;
}

DBPDEF int dbp_hub_pending(const dbp_hub *h) { return h ? h->pending : 0; }

DBPDEF void dbp_hub_stats(const dbp_hub *h, dbp_hub_counts *out)
{
    const dbp__link *l, *k;
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!h) return;
    out->pending = h->pending;
    for (l = h->all_ops.next; l != &h->all_ops; l = l->next) {
        const dbp_op *op = DBP__CONTAINER(l, const dbp_op, all);
        out->ops++;
        if (!(op->flags & DBP__OF_CALLER)) out->ops_released++;
    }
    for (l = h->pools.next; l != &h->pools; l = l->next) {
        const dbp_pool *p = DBP__CONTAINER(l, const dbp_pool, link);
        out->pools++;
        if (p->freed) out->pools_released++;
        for (k = p->conns.next; k != &p->conns; k = k->next) out->conns++;
        for (k = p->husks.next; k != &p->husks; k = k->next) out->conns_dead_held++;
    }
    for (l = h->graveyard.next; l != &h->graveyard; l = l->next) out->conns_buried++;
}
DBPDEF void dbp_hub_set_wakeup_fd(dbp_hub *h, int fd) { if (h) h->wakeup_fd = fd; }

/* Runs callbacks of settled ops; they may submit new ops. */
static int dbp__hub_notify(dbp_hub *h)
{
    int n = 0;
    if (h->in_notify) return 0;
    h->in_notify = 1;
    while (!dbp__list_empty(&h->notify)) {
        dbp_op *op = DBP__CONTAINER(h->notify.next, dbp_op, notify);
        dbp__list_remove(&op->notify);
        op->flags &= ~DBP__OF_NOTIFY;
        if (op->done) op->done(op);
        if (op->cb) op->cb(op, op->cb_ud);
        dbp__op_maybe_free(op);
        n++;
    }
    h->in_notify = 0;
    return n;
}

/* Frees the connections that died during the step. One whose holder still
   has it (a pinned connection not yet released) stays allocated, dead, in
   its pool's husks, until dbp_conn_release/discard. */
static void dbp__hub_bury(dbp_hub *h)
{
    while (!dbp__list_empty(&h->graveyard)) {
        dbp_conn *c = DBP__CONTAINER(h->graveyard.next, dbp_conn, link);
        dbp__list_remove(&c->link);
        if (c->flags & DBP__CF_HELD) {
            c->flags |= DBP__CF_HUSK;
            dbp__list_push(&c->pool->husks, &c->link);
            continue;
        }
        dbp__conn_free(c);
    }
}

static void dbp__hub_timers(dbp_hub *h)
{
    long long now = dbp__ms_now();
    int guard = 0;
    for (;;) {
        dbp__timer *t = dbp__timer_first(h);
        if (!t || t->at > now || guard++ >= 100000) break;
        dbp__timer_clear(h, t);
        t->fire(t);
    }
}

/* Before poll: flush queued writes, collect fds; returns how many. */
static int dbp__hub_collect(dbp_hub *h, struct pollfd *pfd, dbp_conn **pc, int max)
{
    dbp__link *pl, *cl;
    int n = 0, restarts = 0;
    /* A write that fails kills its connection, which moves to the graveyard
       (and may end a closing pool): the lists walked here change under the
       walk, so it starts again from the top. A connection already flushed
       has nothing left to write, so another pass costs little. */
again:
    for (pl = h->pools.next; pl != &h->pools; pl = pl->next) {
        dbp_pool *p = DBP__CONTAINER(pl, dbp_pool, link);
        if (!p->bk->flush) continue;
        for (cl = p->conns.next; cl != &p->conns; cl = cl->next) {
            dbp_conn *c = DBP__CONTAINER(cl, dbp_conn, link);
            if (c->state == DBP__CS_DEAD) continue;
            p->bk->flush(c);
            if (c->state == DBP__CS_DEAD) {
                if (restarts++ < 10000) goto again;
                goto flushed; /* (what is left is written at the next step) */
            }
        }
    }
flushed:
    for (pl = h->pools.next; pl != &h->pools; pl = pl->next) {
        dbp_pool *p = DBP__CONTAINER(pl, dbp_pool, link);
        for (cl = p->conns.next; cl != &p->conns; cl = cl->next) {
            dbp_conn *c = DBP__CONTAINER(cl, dbp_conn, link);
            if (c->state == DBP__CS_DEAD || c->fd < 0 || !c->events) continue;
            if (n < max) {
                pfd[n].fd = c->fd;
                pfd[n].events = c->events;
                pfd[n].revents = 0;
                pc[n] = c;
            }
            n++;
        }
    }
    return n;
}

static int dbp__hub_grow(dbp_hub *h, int need)
{
    struct pollfd *pfd;
    dbp_conn **pc;
    int cap;
    if (need <= h->cappfd) return DBP_OK;
    cap = h->cappfd ? h->cappfd : 32;
    while (cap < need) cap *= 2;
    pfd = DBP__CAST(struct pollfd *, DBP_REALLOC(h->pfd, (size_t)cap * sizeof *pfd));
    if (!pfd) return DBP_ENOMEM;
    h->pfd = pfd;
    pc = DBP__CAST(dbp_conn **, DBP_REALLOC(h->pconn, (size_t)cap * sizeof *pc));
    if (!pc) return DBP_ENOMEM;
    h->pconn = pc;
    h->cappfd = cap;
    return DBP_OK;
}

/* Milliseconds until the nearest timer (-1: none), at most `limit` (-1: none). */
static int dbp__hub_timeout(const dbp_hub *h, int limit)
{
    long long d;
    const dbp__timer *t = dbp__timer_first(h);
    if (!dbp__list_empty(&h->notify)) return 0;
    if (!t) return limit;
    d = t->at - dbp__ms_now();
    if (d < 0) d = 0;
    if (d > INT_MAX) d = INT_MAX;
    if (limit >= 0 && d > limit) d = limit;
    return (int)d;
}

static int dbp__hub_dispatch_events(dbp_hub *h, struct pollfd *pfd, dbp_conn **pc, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        dbp_conn *c = pc[i];
        if (!pfd[i].revents) continue;
        /* a connection buried earlier in this round may have been reached */
        if (c->state == DBP__CS_DEAD || c->fd != pfd[i].fd) continue;
        c->pool->bk->conn_io(c, pfd[i].revents);
    }
    dbp__hub_timers(h);
    {
        int settled = dbp__hub_notify(h);
        dbp__hub_bury(h);
        if (h->reap) { h->reap = 0; dbp__hub_reap(h); }
        return settled;
    }
}

DBPDEF int dbp_hub_step(dbp_hub *h, int timeout_ms)
{
    int n, rc, to;
    if (!h) return DBP_EUSAGE;
    dbp__hub_timers(h);
    n = dbp__hub_collect(h, h->pfd, h->pconn, h->cappfd);
    if (n > h->cappfd) {
        if (dbp__hub_grow(h, n)) return DBP_ENOMEM;
        n = dbp__hub_collect(h, h->pfd, h->pconn, h->cappfd);
    }
    to = dbp__hub_timeout(h, timeout_ms);
    if (h->wakeup_fd >= 0) {
        if (dbp__hub_grow(h, n + 1)) return DBP_ENOMEM;
        h->pfd[n].fd = h->wakeup_fd;
        h->pfd[n].events = POLLIN;
        h->pfd[n].revents = 0;
        rc = poll(h->pfd, (nfds_t)n + 1, to);
    } else {
        rc = poll(h->pfd, (nfds_t)n, to);
    }
    if (rc < 0 && errno != EINTR) return DBP_EUSAGE;
    if (rc < 0) n = 0;
    return dbp__hub_dispatch_events(h, h->pfd, h->pconn, n);
}

DBPDEF int dbp_hub_fds(dbp_hub *h, void *pollfds, int max, int *timeout_ms)
{
    int n;
    if (!h) return DBP_EUSAGE;
    dbp__hub_timers(h);
    dbp__hub_notify(h);
    n = dbp__hub_collect(h, h->pfd, h->pconn, h->cappfd);
    if (n > h->cappfd) {
        if (dbp__hub_grow(h, n)) return DBP_ENOMEM;
        n = dbp__hub_collect(h, h->pfd, h->pconn, h->cappfd);
    }
    h->npfd = n;
    if (pollfds && max > 0) memcpy(pollfds, h->pfd, (size_t)(n < max ? n : max) * sizeof(struct pollfd));
    if (timeout_ms) *timeout_ms = dbp__hub_timeout(h, -1);
    return n;
}

DBPDEF int dbp_hub_process(dbp_hub *h, void *pollfds, int n)
{
    struct pollfd *user = DBP__CAST(struct pollfd *, pollfds);
    int i;
    if (!h) return DBP_EUSAGE;
    if (n > h->npfd) n = h->npfd;
    for (i = 0; i < n; i++) {
        /* match by fd: the caller may have reordered nothing, but be safe */
        if (user && h->pfd[i].fd == user[i].fd) h->pfd[i].revents = user[i].revents;
        else h->pfd[i].revents = 0;
    }
    h->npfd = 0;
    return dbp__hub_dispatch_events(h, h->pfd, h->pconn, n);
}

DBPDEF int dbp_hub_run(dbp_hub *h, int timeout_ms)
{
    long long end = timeout_ms >= 0 ? dbp__ms_now() + timeout_ms : 0;
    if (!h) return DBP_EUSAGE;
    dbp__hub_notify(h);
    while (h->pending > 0 || !dbp__list_empty(&h->notify)) {
        int left = -1, rc;
        if (timeout_ms >= 0) {
            long long l = end - dbp__ms_now();
            if (l <= 0) return DBP_PENDING;
            left = (int)(l > INT_MAX ? INT_MAX : l);
        }
        rc = dbp_hub_step(h, left);
        if (rc < 0) return rc;
    }
    return DBP_OK;
}

DBPDEF dbp_op *dbp_hub_sleep(dbp_hub *h, int ms)
{
    dbp_op *op;
    if (!h) return NULL;
    op = dbp__op_new(h, NULL, DBP__OP_SLEEP);
    if (!op) return NULL;
    op->state = DBP_OP_RUNNING;
    if (dbp__timer_set(h, &op->timer, dbp__ms_now() + (ms > 0 ? ms : 0))) {
        dbp__op_fail(op, DBP_ENOMEM, 0, "out of memory");
    }
    return op;
}


/* Frees pools that are closed and released. */
static void dbp__hub_reap(dbp_hub *h)
{
    int again = 1;
    /* destroying a cluster pool destroys its node pools too: rescan each time */
    while (again) {
        dbp__link *l;
        again = 0;
        for (l = h->pools.next; l != &h->pools; l = l->next) {
            dbp_pool *p = DBP__CONTAINER(l, dbp_pool, link);
            if (p->freed && p->state == DBP__PS_CLOSED && !p->parent && dbp__list_empty(&p->husks)) {
                dbp__hub_bury(h);
                dbp__pool_destroy(p);
                again = 1;
                break;
            }
        }
    }
}

DBPDEF void dbp_hub_free(dbp_hub *h, int timeout_ms)
{
    dbp__link *l;
    long long end;
    if (!h) return;
    h->closing = 1;
    for (l = h->pools.next; l != &h->pools; l = l->next) {
        dbp_pool *p = DBP__CONTAINER(l, dbp_pool, link);
        if (p->state == DBP__PS_OPEN && !p->parent) {
            dbp_op *op = dbp_pool_close(p, p->s.close_timeout);
            dbp_op_free(op);
        }
    }
    end = dbp__ms_now() + (timeout_ms >= 0 ? timeout_ms : 0);
    for (;;) {
        int open = 0;
        for (l = h->pools.next; l != &h->pools; l = l->next) {
            dbp_pool *p = DBP__CONTAINER(l, dbp_pool, link);
            if (p->state != DBP__PS_CLOSED) open = 1;
        }
        if (!open && h->pending == 0) break;
        if (timeout_ms >= 0 && dbp__ms_now() >= end) break;
        if (dbp_hub_step(h, timeout_ms >= 0 ? (int)(end - dbp__ms_now() > 0 ? end - dbp__ms_now() : 0) : 100) < 0) break;
    }
    /* whatever is left is cut off */
    for (l = h->pools.next; l != &h->pools; l = l->next) {
        dbp_pool *p = DBP__CONTAINER(l, dbp_pool, link);
        if (p->state != DBP__PS_CLOSED) { dbp__pool_cut(p); p->state = DBP__PS_CLOSING; dbp__pool_finish_close(p); }
    }
    dbp__hub_notify(h);
    dbp__hub_bury(h);
    for (;;) {
        dbp_pool *top = NULL;
        for (l = h->pools.next; l != &h->pools; l = l->next) {
            dbp_pool *p = DBP__CONTAINER(l, dbp_pool, link);
            if (!p->parent) { top = p; break; }
        }
        if (!top) break;
        dbp__pool_destroy(top); /* with its node pools, if a cluster */
    }
    while (!dbp__list_empty(&h->pools)) dbp__pool_destroy(DBP__CONTAINER(h->pools.next, dbp_pool, link));
    /* ops still held by the caller stay readable; the rest go */
    while (!dbp__list_empty(&h->all_ops)) {
        dbp_op *op = DBP__CONTAINER(h->all_ops.next, dbp_op, all);
        dbp__list_remove(&op->all);
        dbp__list_remove(&op->notify);
        dbp__timer_clear(h, &op->timer);
        op->flags &= ~(DBP__OF_NOTIFY | DBP__OF_ZOMBIE);
        dbp__list_remove(&op->link);
        op->conn = NULL;
        op->pool = NULL;
        op->hub = NULL;
        if (!dbp__op_settled(op)) {
            op->state = DBP_OP_REJECTED;
            dbp__err_set(&op->err, DBP_ECANCELLED, "the hub was closed before the op settled");
        }
        if (op->acquired) { op->acquired = NULL; }
        if (!(op->flags & DBP__OF_CALLER)) dbp__op_destroy(op);
    }
    dbp__slab_drain(&h->free_ops, &h->nfree_ops);
    dbp__slab_drain(&h->free_results, &h->nfree_results);
    DBP_FREE(h->heap);
    DBP_FREE(h->pfd);
    DBP_FREE(h->pconn);
    DBP_FREE(h);
}


/* ==== SECTION: pool API ==== */

/* scheme://user@host:port/ and the database: the usual description. */
static void dbp__describe_host(const dbp__settings *s, const char *database, char *buf, size_t size)
{
    int v6 = s->host && strchr(s->host, ':') != NULL;
    if (s->socket && !s->host)
        snprintf(buf, size, "%s://%s%slocalhost/%s", s->bk->name, s->user ? s->user : "", s->user ? "@" : "",
                 database ? database : "");
    else
        snprintf(buf, size, "%s://%s%s%s%s%s:%d/%s", s->bk->name, s->user ? s->user : "", s->user ? "@" : "",
                 v6 ? "[" : "", s->host ? s->host : "localhost", v6 ? "]" : "", s->port, database ? database : "");
}

static void dbp__pool_describe_init(dbp_pool *p)
{
    if (p->s.bk->describe) p->s.bk->describe(&p->s, p->describe, sizeof p->describe);
    else dbp__describe_host(&p->s, p->s.database, p->describe, sizeof p->describe);
}

static dbp_pool *dbp__pool_make(dbp_hub *hub, dbp__settings *s, dbp_error *err)
{
    dbp_pool *p = DBP__ALLOC(dbp_pool, 1);
    if (!p || dbp__timers_reserve(hub, 1) != DBP_OK) {
        DBP_FREE(p);
        dbp__settings_free(s);
        dbp__err_set(err, DBP_ENOMEM, "out of memory");
        return NULL;
    }
    p->hub = hub;
    p->s = *s;
    p->state = DBP__PS_OPEN;
    p->bk = s->bk;
    p->srv_wait_timeout = p->srv_max_conn = p->srv_max_user_conn = -1;
    dbp__list_init(&p->conns);
    dbp__list_init(&p->idle);
    dbp__list_init(&p->idle_blocking);
    dbp__list_init(&p->queue);
    dbp__list_init(&p->subs);
    dbp__list_init(&p->close_ops);
    dbp__list_init(&p->husks);
    dbp__timer_init(&p->timer, dbp__pool_timer_fire);
    dbp__pool_describe_init(p);
    dbp__list_push(&hub->pools, &p->link);
    return p;
}

DBPDEF dbp_pool *dbp_pool_open(dbp_hub *hub, const dbp_pool_config *cfg, dbp_error *err)
{
    dbp__settings s;
    dbp_pool_config def;
    dbp_pool *p;
    dbp__err_clear(err);
    if (!hub) { dbp__err_set(err, DBP_EUSAGE, "no hub"); return NULL; }
    if (!cfg) { dbp_pool_config_init(&def); cfg = &def; }
    if (dbp__settings_resolve(cfg, &s, err) != DBP_OK) return NULL;
    p = dbp__pool_make(hub, &s, err);
    if (!p) return NULL;
    p->hook = cfg->on_event;
    p->hook_ud = cfg->event_ud;
    if (p->bk->router) {
        if (p->bk->router->open(p, err) != DBP_OK) {
            dbp__list_remove(&p->link);
            dbp__settings_free(&p->s);
            DBP_FREE(p);
            return NULL;
        }
    } else if (p->s.min > 0) {
        dbp__pool_maintain(p);
    }
    return p;
}

DBPDEF dbp_op *dbp_pool_close(dbp_pool *p, int timeout_ms)
{
    dbp_op *op;
    if (!p) return NULL;
    op = dbp__op_new(p->hub, p, DBP__OP_CLOSE);
    if (!op) return NULL;
    if (p->state == DBP__PS_CLOSED) {
        if (p->close_cut) dbp__op_fail(op, DBP_ECANCELLED, 0, "pool closed; the close deadline cut off %d op%s",
                                       p->close_cut, p->close_cut == 1 ? "" : "s");
        else dbp__op_settle(op, DBP_OK);
        return op;
    }
    op->state = DBP_OP_RUNNING;
    dbp__list_push(&p->close_ops, &op->link);
    dbp__pool_begin_close(p, timeout_ms);
    return op;
}

static void dbp__pool_destroy(dbp_pool *p)
{
    dbp_hub *h = p->hub;
    dbp__timers_release(h, 1);
    dbp__timer_clear(h, &p->timer);
    while (!dbp__list_empty(&p->conns)) {
        dbp_conn *c = DBP__CONTAINER(p->conns.next, dbp_conn, link);
        if (p->bk->abort) p->bk->abort(c);
        dbp__list_remove(&c->link);
        dbp__conn_free(c);
    }
    while (!dbp__list_empty(&p->husks)) { /* only at dbp_hub_free: held handles end with the hub */
        dbp_conn *c = DBP__CONTAINER(p->husks.next, dbp_conn, link);
        dbp__list_remove(&c->link);
        dbp__conn_free(c);
    }
    if (p->bk->router) p->bk->router->free(p);
    dbp__list_remove(&p->link);
    dbp__settings_free(&p->s);
    DBP_FREE(p->ph_sql);
    DBP_FREE(p);
}

DBPDEF void dbp_pool_free(dbp_pool *p)
{
    if (!p) return;
    p->freed = 1;
    if (p->state == DBP__PS_OPEN) {
        dbp_op *op = dbp_pool_close(p, p->s.close_timeout);
        dbp_op_free(op);
    }
    if (p->state == DBP__PS_CLOSED) {
        if (p->hub->in_notify) p->hub->reap = 1;
        else dbp__hub_reap(p->hub);
    }
}

DBPDEF dbp_pool_state dbp_pool_get_state(const dbp_pool *p)
{
    if (!p || p->state == DBP__PS_CLOSED) return DBP_POOL_CLOSED;
    return p->state == DBP__PS_OPEN ? DBP_POOL_OPEN : DBP_POOL_CLOSING;
}

DBPDEF long long dbp_clock_us(void) { return dbp__now_us(); }

DBPDEF size_t dbp_pool_describe(const dbp_pool *p, char *buf, size_t n)
{
    size_t len;
    if (!p) { if (n) buf[0] = '\0'; return 0; }
    len = strlen(p->describe);
    if (n) {
        size_t c = len < n - 1 ? len : n - 1;
        memcpy(buf, p->describe, c);
        buf[c] = '\0';
    }
    return len;
}

DBPDEF const char *dbp_pool_backend(const dbp_pool *p)
{
    if (!p) return "";
    return p->bk->name;
}
DBPDEF const char *dbp_pool_server_version(const dbp_pool *p)
{
    dbp__link *l;
    if (!p) return "";
    if (p->bk->router && !p->version[0]) /* the first pool under it that knows */
        for (l = p->hub->pools.next; l != &p->hub->pools; l = l->next) {
            const dbp_pool *n = DBP__CONTAINER(l, dbp_pool, link);
            if (n->parent == p && n->version[0]) return n->version;
        }
    return p->version;
}
DBPDEF dbp_hub *dbp_pool_hub(const dbp_pool *p) { return p ? p->hub : NULL; }
DBPDEF void dbp_pool_set_hook(dbp_pool *p, dbp_event_fn fn, void *ud) { if (p) { p->hook = fn; p->hook_ud = ud; } }

static void dbp__stats_one(const dbp_pool *p, dbp_stats *st)
{
    dbp__link *l;
    for (l = p->conns.next; l != &p->conns; l = l->next) {
        const dbp_conn *c = DBP__CONTAINER(l, dbp_conn, link);
        if (c->flags & DBP__CF_SUB) continue;
        switch (c->state) {
        case DBP__CS_CONNECTING: case DBP__CS_INIT: st->connecting++; st->total++; break;
        case DBP__CS_IDLE:
            st->total++;
            if (c->flags & DBP__CF_PINNED) st->pinned++; else st->idle++;
            break;
        case DBP__CS_BUSY: case DBP__CS_VALIDATING:
            st->total++;
            if (c->flags & DBP__CF_PINNED) st->pinned++; else st->busy++;
            break;
        default: break;
        }
    }
    st->waiting += p->nqueue;
    st->max += dbp__pool_max(p);
    st->ops += p->st_ops; st->fulfilled += p->st_fulfilled; st->rejected += p->st_rejected;
    st->created += p->st_created; st->closed += p->st_closed;
    st->closed_idle += p->st_closed_idle; st->closed_lifetime += p->st_closed_lifetime;
    st->closed_error += p->st_closed_error; st->closed_close += p->st_closed_close;
    st->closed_dead += p->st_closed_dead;
    st->errors += p->st_errors; st->timeouts += p->st_timeouts; st->retried += p->st_retried;
    st->lost += p->st_lost; st->connect_failures += p->st_connect_failures;
}

DBPDEF void dbp_pool_stats(const dbp_pool *p, dbp_stats *st)
{
    dbp__hist wait, run;
    int i;
    if (!st) return;
    memset(st, 0, sizeof *st);
    st->server_wait_timeout = st->server_max_connections = st->server_max_user_connections = -1;
    if (!p) return;
    memcpy(&wait, &p->h_wait, sizeof wait);
    memcpy(&run, &p->h_run, sizeof run);
    dbp__stats_one(p, st);
    if (p->bk->router) {
        dbp__link *l;
        for (l = p->hub->pools.next; l != &p->hub->pools; l = l->next) {
            const dbp_pool *n = DBP__CONTAINER(l, dbp_pool, link);
            if (n->parent != p) continue;
            dbp__stats_one(n, st);
            for (i = 0; i < DBP__HIST_BUCKETS; i++) { wait.count[i] += n->h_wait.count[i]; run.count[i] += n->h_run.count[i]; }
            wait.n += n->h_wait.n; run.n += n->h_run.n;
            if (n->h_wait.max > wait.max) wait.max = n->h_wait.max;
            if (n->h_run.max > run.max) run.max = n->h_run.max;
        }
        /* the router's pool counts routed ops; the pools under it count them again */
        st->ops = p->st_ops; st->fulfilled = p->st_fulfilled; st->rejected = p->st_rejected;
    }
    st->wait_p50_us = dbp__hist_pct(&wait, 0.50);
    st->wait_p99_us = dbp__hist_pct(&wait, 0.99);
    st->wait_max_us = wait.max;
    st->run_p50_us = dbp__hist_pct(&run, 0.50);
    st->run_p99_us = dbp__hist_pct(&run, 0.99);
    st->run_max_us = run.max;
    st->server_wait_timeout = p->srv_wait_timeout;
    st->server_max_connections = p->srv_max_conn;
    st->server_max_user_connections = p->srv_max_user_conn;
}

static void dbp__op_apply_options(dbp_op *op, const dbp_op_options *o)
{
    if (!o) return;
    if (o->timeout_ms > 0) op->deadline = dbp__ms_now() + o->timeout_ms;
    if (o->idempotent) op->flags |= DBP__OF_IDEMPOTENT;
}

DBPDEF dbp_op *dbp_pool_acquire(dbp_pool *p, const dbp_op_options *o)
{
    dbp_op *op;
    if (!p) return NULL;
    /* a router that pins (replicas: the primary) hands out its pool's connections */
    if (p->bk->router && p->bk->router->pin && p->bk->router->pin(p)) p = p->bk->router->pin(p);
    op = dbp__op_new(p->hub, p, DBP__OP_ACQUIRE);
    if (!op) return NULL;
    dbp__op_apply_options(op, o);
    if (p->bk->router) {
        dbp__op_fail(op, DBP_EUSAGE, 0, "%s", p->bk->router->no_pin);
        return op;
    }
    return dbp__pool_submit(p, op);
}

DBPDEF dbp_op *dbp_pool_ping(dbp_pool *p, const dbp_op_options *o)
{
    dbp_op *op;
    if (!p) return NULL;
    if (p->bk->router) return p->bk->router->ping(p, o);
    op = dbp__op_new(p->hub, p, DBP__OP_PING);
    if (!op) return NULL;
    dbp__op_apply_options(op, o);
    return dbp__pool_submit(p, op);
}


DBPDEF dbp_op *dbp_pool_queryn(dbp_pool *p, const char *sql, size_t len, const dbp_value *params, size_t n,
                               const dbp_op_options *o)
{
    dbp_op *op;
    if (!p) return NULL;
    op = dbp__query_make(p, DBP__OP_QUERY, sql, len, params, n, o);
    if (!op || dbp__op_settled(op)) return op;
    if (p->bk->router) { dbp__router_submit(p, op); return op; }
    return dbp__pool_submit(p, op);
}

DBPDEF dbp_op *dbp_pool_query(dbp_pool *p, const char *sql, const dbp_value *params, size_t n, const dbp_op_options *o)
{
    return dbp_pool_queryn(p, sql, sql ? strlen(sql) : 0, params, n, o);
}

DBPDEF dbp_op *dbp_pool_query_stream(dbp_pool *p, const char *sql, const dbp_value *params, size_t n,
                                     const dbp_op_options *o)
{
    dbp_op *op;
    if (!p) return NULL;
    op = dbp__query_make(p, DBP__OP_STREAM, sql, sql ? strlen(sql) : 0, params, n, o);
    if (!op || dbp__op_settled(op)) return op;
    if (p->bk->router) { dbp__router_submit(p, op); return op; }
    return dbp__pool_submit(p, op);
}

DBPDEF int dbp_pool_exec(dbp_pool *p, const char *sql, const dbp_value *params, size_t n, dbp_op **out)
{
    dbp_op *op = dbp_pool_query(p, sql, params, n, NULL);
    int rc;
    if (out) *out = op;
    if (!op) return p ? DBP_ENOMEM : DBP_EUSAGE;
    rc = dbp_op_wait(op, -1);
    if (!out) dbp_op_free(op);
    return rc;
}

DBPDEF dbp_op *dbp_pool_call(dbp_pool *p, int argc, const char *const *argv, const size_t *argvlen,
                             const dbp_op_options *o)
{
    dbp_op *op;
    if (!p) return NULL;
    op = dbp__call_make(p->hub, p, 0, argc, argv, argvlen, o, NULL);
    if (!op || dbp__op_settled(op)) return op;
    if (op->query_timeout < 0) op->query_timeout = 0; else if (!op->query_timeout) op->query_timeout = p->s.query_timeout;
    if (op->query_timeout == 0 && (op->flags & DBP__OF_BLOCKING)) op->query_timeout = -1;
    if (p->bk->router) { dbp__router_submit(p, op); return op; }
    dbp__pool_submit(p, op);
    if (op->query_timeout < 0) op->query_timeout = 0;
    return op;
}


/* ==== SECTION: the op API ==== */

/* An op with `extra` bytes after it (an inline request). */
static dbp_op *dbp__op_new_extra(dbp_hub *hub, dbp_pool *pool, int type, size_t extra)
{
    int slab = extra <= DBP__OP_SLAB;
    dbp_op *op = slab ? DBP__CAST(dbp_op *, dbp__slab_take(&hub->free_ops, &hub->nfree_ops,
                                                           sizeof(dbp_op) + DBP__OP_SLAB, 0))
               : extra > (size_t)-1 / 2 ? NULL : DBP__CAST(dbp_op *, dbp__calloc(1, sizeof(dbp_op) + extra));
    if (!op) return NULL;
    if (dbp__timers_reserve(hub, 1) != DBP_OK) {
        if (slab) dbp__slab_give(&hub->free_ops, &hub->nfree_ops, op); else DBP_FREE(op);
        return NULL;
    }
    if (slab) {
        /* zeroed but for the error message past its first byte (nothing
           reads past its NUL) and the inline request (dbp__query_make
           writes all of it): that was half the op's bytes */
        char *b = DBP__CAST(char *, (void *)op), *m = op->err.message + 1, *e = DBP__CAST(char *, (void *)(&op->err + 1));
        memset(b, 0, (size_t)(m - b));
        memset(e, 0, sizeof(dbp_op) - (size_t)(e - b));
        op->flags = DBP__OF_SLAB;
    }
    op->hub = hub;
    op->pool = pool;
    op->type = type;
    op->state = DBP_OP_QUEUED;
    op->flags |= DBP__OF_CALLER;
    op->slot = -1;
    op->t_submit = dbp__now_us();
    dbp__timer_init(&op->timer, dbp__op_timer_fire);
    dbp__list_push(&hub->all_ops, &op->all);
    hub->pending++;
    return op;
}

static dbp_op *dbp__op_new(dbp_hub *hub, dbp_pool *pool, int type)
{
    return dbp__op_new_extra(hub, pool, type, 0);
}

static void dbp__op_destroy(dbp_op *op)
{
    dbp_hub *h = op->hub;
    if (op->hub) {
        dbp__timers_release(op->hub, 1);
        dbp__timer_clear(op->hub, &op->timer);
        dbp__list_remove(&op->all);
        dbp__list_remove(&op->notify);
    }
    if (!(op->flags & DBP__OF_INLINE)) {
        DBP_FREE(op->sql);
        DBP_FREE(op->params);
    }
    if (!(op->flags & DBP__OF_BORROWED)) DBP_FREE(op->req);
    if (h) dbp__result_give(h, op->result); else dbp_result_free(op->result);
    dbp_reply_free(op->reply);
    dbp__stream_free(op->stream);
    if (op->acquired) dbp_conn_release(op->acquired);
    DBP_FREE(op->err_extra);
    if (op->copy) {
        dbp__buf_free(&op->copy->buf);
        DBP_FREE(op->copy->abort_msg);
        DBP_FREE(op->copy);
    }
    if (h && (op->flags & DBP__OF_SLAB)) dbp__slab_give(&h->free_ops, &h->nfree_ops, op);
    else DBP_FREE(op);
}

static int dbp__op_settled(const dbp_op *op) { return op->state >= DBP_OP_FULFILLED; }

/* Frees the op when nobody needs it any more: not held by the caller,
   settled, not waiting for its notification, not a zombie in a pipeline. */
static void dbp__op_maybe_free(dbp_op *op)
{
    if (op->flags & (DBP__OF_CALLER | DBP__OF_NOTIFY | DBP__OF_ZOMBIE)) return;
    if (!dbp__op_settled(op)) return;
    if (op->conn || dbp__linked(&op->link)) return;
    dbp__op_destroy(op);
}

/* Settles an op exactly once. The caller has unlinked it from queues. */
static void dbp__op_settle(dbp_op *op, int rc)
{
    dbp_hub *h = op->hub;
    if (dbp__op_settled(op)) return;
    op->state = rc == DBP_OK ? DBP_OP_FULFILLED : DBP_OP_REJECTED;
    op->err.rc = rc;
    op->t_settle = dbp__now_us();
    if (h) {
        dbp__timer_clear(h, &op->timer);
        h->pending--;
    }
    if (op->pool && op->pool->bk->router && op->peer) {
        /* a routed op settled before the op it passed on (or its COMMAND
           GETKEYS): that one must not come back to it, so it no longer
           counts as running here (else a close would wait for it for ever) */
        op->peer->peer = NULL;
        op->peer = NULL;
        op->pool->bk->router->detach(op->pool);
    }
    if (op->pool) dbp__pool_op_settled(op->pool, op);
    /* the notify phase runs its continuation and callback and, when the
       caller let go of it already, frees it (not here: the code settling it
       may still look at it) */
    if (h && (op->cb || op->done || !(op->flags & DBP__OF_CALLER)) && !(op->flags & DBP__OF_NOTIFY)) {
        op->flags |= DBP__OF_NOTIFY;
        dbp__list_push(&h->notify, &op->notify);
    }
}

/* Rejects an op with a formatted message. */
static void dbp__op_fail(dbp_op *op, int rc, int sent, const char *fmt, ...)
{
    va_list ap;
    if (dbp__op_settled(op)) return;
    op->err.rc = rc;
    op->err.code = 0;
    op->err.sqlstate[0] = '\0';
    op->err.sent = sent;
    va_start(ap, fmt);
    vsnprintf(op->err.message, sizeof op->err.message, fmt, ap);
    va_end(ap);
    dbp__op_settle(op, rc);
}

/* Rejects an op with a copy of an error, keeping its code and SQLSTATE. */
static void dbp__op_fail_err(dbp_op *op, const dbp_error *e, int rc, int sent)
{
    if (dbp__op_settled(op)) return;
    op->err = *e;
    op->err.rc = rc;
    op->err.sent = sent;
    dbp__op_settle(op, rc);
}

DBPDEF dbp_state dbp_op_state(const dbp_op *op) { return op ? (dbp_state)op->state : DBP_OP_REJECTED; }
DBPDEF int dbp_op_rc(const dbp_op *op)
{
    if (!op) return DBP_EUSAGE;
    return dbp__op_settled(op) ? op->err.rc : DBP_PENDING;
}
DBPDEF const dbp_error *dbp_op_error(const dbp_op *op)
{
    /* as sqlite3_errmsg(NULL): the NULL a submit returns on out-of-memory */
    static const dbp_error no_op = { DBP_ENOMEM, 0, 0, "", "out of memory (no op was made)" };
    return op ? &op->err : &no_op;
}
DBPDEF const char *dbp_op_error_detail(const dbp_op *op)
{
    return op && op->err_extra && op->state == DBP_OP_REJECTED ? op->err_extra : "";
}
DBPDEF const char *dbp_op_error_hint(const dbp_op *op)
{
    return op && op->err_extra && op->state == DBP_OP_REJECTED ? op->err_extra + strlen(op->err_extra) + 1 : "";
}
DBPDEF const dbp_result *dbp_op_result(const dbp_op *op)
{
    return op && op->state == DBP_OP_FULFILLED ? op->result : NULL;
}
DBPDEF dbp_result *dbp_op_take_result(dbp_op *op)
{
    dbp_result *r;
    if (!op || op->state != DBP_OP_FULFILLED) return NULL;
    r = op->result; op->result = NULL;
    return r;
}
DBPDEF const dbp_reply *dbp_op_reply(const dbp_op *op)
{
    return op && op->state == DBP_OP_FULFILLED ? op->reply : NULL;
}
DBPDEF dbp_reply *dbp_op_take_reply(dbp_op *op)
{
    dbp_reply *r;
    if (!op || op->state != DBP_OP_FULFILLED) return NULL;
    r = op->reply; op->reply = NULL;
    return r;
}
DBPDEF dbp_conn *dbp_op_take_conn(dbp_op *op)
{
    dbp_conn *c;
    if (!op || op->state != DBP_OP_FULFILLED) return NULL;
    c = op->acquired; op->acquired = NULL;
    if (c) c->pin_op = NULL;
    return c;
}
DBPDEF void dbp_op_on_settle(dbp_op *op, dbp_settle_fn fn, void *ud)
{
    if (!op) return;
    op->cb = fn; op->cb_ud = ud;
    if (fn && dbp__op_settled(op) && op->hub && !(op->flags & DBP__OF_NOTIFY)) {
        op->flags |= DBP__OF_NOTIFY;
        dbp__list_push(&op->hub->notify, &op->notify);
    }
}
DBPDEF void dbp_op_times(const dbp_op *op, long long *submitted, long long *started, long long *settled)
{
    if (submitted) *submitted = op ? op->t_submit : 0;
    if (started) *started = op ? op->t_start : 0;
    if (settled) *settled = op ? op->t_settle : 0;
}


DBPDEF int dbp_op_wait(dbp_op *op, int timeout_ms)
{
    long long end = timeout_ms >= 0 ? dbp__ms_now() + timeout_ms : 0;
    if (!op) return DBP_EUSAGE;
    while (!dbp__op_settled(op)) {
        int left = -1, rc;
        if (!op->hub) return DBP_EUSAGE;
        if (timeout_ms >= 0) {
            long long l = end - dbp__ms_now();
            if (l <= 0) return DBP_PENDING;
            left = (int)(l > INT_MAX ? INT_MAX : l);
        }
        rc = dbp_hub_step(op->hub, left);
        if (rc < 0) return rc;
    }
    if (op->hub) dbp__hub_notify(op->hub);
    return op->err.rc;
}

DBPDEF void dbp_op_free(dbp_op *op)
{
    if (!op) return;
    if (!(op->flags & DBP__OF_CALLER)) return;
    op->flags &= ~DBP__OF_CALLER;
    op->cb = NULL;
    op->cb_ud = NULL;
    if (!op->hub) { dbp__op_destroy(op); return; }
    if (op->type == DBP__OP_SLEEP && !dbp__op_settled(op)) {
        dbp__timer_clear(op->hub, &op->timer);
        op->state = DBP_OP_REJECTED;
        op->err.rc = DBP_ECANCELLED;
        op->hub->pending--;
    }
    if (op->type == DBP__OP_STREAM && op->state == DBP_OP_RUNNING) {
        op->flags |= DBP__OF_CANCEL;
        if (op->pool && op->pool->bk->stream_cancel) op->pool->bk->stream_cancel(op);
    }
    if (op->type == DBP__OP_ACQUIRE && op->acquired && dbp__op_settled(op)) {
        /* nobody took the connection: it goes back */
        dbp_conn *c = op->acquired;
        op->acquired = NULL;
        c->pin_op = NULL;
        dbp_conn_release(c);
    }
    dbp__op_maybe_free(op);
}

DBPDEF const dbp_field *dbp_op_fields(const dbp_op *op, size_t *ncols)
{
    const dbp_result *r = NULL;
    if (op && op->stream && op->stream->head) r = &op->stream->head->pub;
    else if (op && op->state == DBP_OP_FULFILLED) r = op->result;
    if (ncols) *ncols = r ? r->ncols : 0;
    return r ? r->fields : NULL;
}

DBPDEF int dbp_op_fetch(dbp_op *op, const dbp_cell **row, size_t *ncols)
{
    dbp__stream *s;
    if (!op || op->type != DBP__OP_STREAM) return DBP_EUSAGE;
    s = op->stream;
    if (s && ncols) *ncols = s->ncols;
    if (s && s->pos < s->nrows && (s->paused || s->eof)) {
        if (row) *row = &s->rows[s->pos * s->ncols];
        s->pos++;
        return DBP_ROW;
    }
    if (s && s->pos >= s->nrows && s->nrows) {
        /* the batch is used up: let the connection read the next one */
        s->pos = s->nrows = 0;
        s->data.len = s->data.off = 0;
        if (!s->eof) {
            if (op->pool && op->pool->bk->stream_resume) op->pool->bk->stream_resume(op);
            /* what was already in the socket may have arrived, up to the end */
            if (s->pos < s->nrows && (s->paused || s->eof)) {
                if (row) *row = &s->rows[s->pos * s->ncols];
                s->pos++;
                return DBP_ROW;
            }
        }
    }
    if (op->state == DBP_OP_REJECTED) return op->err.rc;
    if (op->state == DBP_OP_FULFILLED && (!s || s->eof)) return DBP_OK;
    return DBP_PENDING;
}

DBPDEF int dbp_op_fetch_wait(dbp_op *op, int timeout_ms)
{
    long long end = timeout_ms >= 0 ? dbp__ms_now() + timeout_ms : 0;
    if (!op || op->type != DBP__OP_STREAM) return DBP_EUSAGE;
    for (;;) {
        dbp__stream *s = op->stream;
        int left = -1;
        if (dbp__op_settled(op)) return DBP_OK;
        if (s && (s->paused || s->eof) && s->pos < s->nrows) return DBP_OK;
        if (s && s->pos >= s->nrows && s->nrows) return DBP_OK; /* fetch will resume */
        if (!op->hub) return DBP_EUSAGE;
        if (timeout_ms >= 0) {
            long long l = end - dbp__ms_now();
            if (l <= 0) return DBP_PENDING;
            left = (int)l;
        }
        if (dbp_hub_step(op->hub, left) < 0) return DBP_EUSAGE;
    }
}

/* dbp__check_params_at with the pool's memory of the last statement: a
   program sends the same SQL again and again, and scanning it cost more
   than the rest of the submit. The copy is compared, not the pointer (the
   caller may reuse its buffer for another statement). */
#define DBP__PH_CACHE_MAX 1024
static int dbp__check_params_cached(dbp_pool *p, const char *sql, size_t len, const dbp_value *params,
                                    size_t n, dbp_error *err, dbp__ph_list *ph)
{
    int rc;
    if (p->ph_sql && len == p->ph_len && memcmp(sql, p->ph_sql, len) == 0) {
        *ph = p->ph_last;
        return dbp__check_values(ph->n, params, n, err);
    }
    rc = dbp__check_params_at(sql, len, params, n, err, ph);
    if (len <= DBP__PH_CACHE_MAX) {
        /* room for the longest statement kept, once (none when that fails) */
        if (!p->ph_sql) p->ph_sql = DBP__CAST(char *, DBP_MALLOC(DBP__PH_CACHE_MAX));
        if (p->ph_sql) {
            p->ph_last = *ph;
            if (len) memcpy(p->ph_sql, sql, len);
            p->ph_len = len;
        }
    }
    return rc;
}

static dbp_op *dbp__query_make(dbp_pool *p, int type, const char *sql, size_t len, const dbp_value *params,
                               size_t n, const dbp_op_options *o)
{
    /* one block: the op, its parameters with their bytes, then the SQL */
    size_t i, bytes = 0, head = n * sizeof(dbp_value), extra;
    dbp__ph_list ph;
    dbp_op *op;
    for (i = 0; params && i < n && i <= DBP_MAX_PARAMS; i++)
        if ((params[i].type == DBP_TEXT || params[i].type == DBP_BLOB) && params[i].v.s.data) {
            if (params[i].v.s.len > (size_t)-1 / 4 - bytes) { bytes = (size_t)-1 / 4; break; }
            bytes += params[i].v.s.len + 1;
        }
    extra = (n && !params) || n > DBP_MAX_PARAMS || !sql || len > (size_t)-1 / 4 || bytes >= (size_t)-1 / 4 ? 0
          : head + bytes + len + 1;
    op = dbp__op_new_extra(p->hub, p, type, extra);
    if (!op) return NULL;
    if (o) {
        if (o->timeout_ms > 0) op->deadline = dbp__ms_now() + o->timeout_ms;
        if (o->idempotent) op->flags |= DBP__OF_IDEMPOTENT;
        if (o->prepare > 0) op->flags |= DBP__OF_PREPARE;
        else if (o->prepare < 0) op->flags |= DBP__OF_NOPREPARE;
        if (o->on == DBP_ON_PRIMARY) op->flags |= DBP__OF_ON_PRIMARY;
        else if (o->on == DBP_ON_REPLICA) op->flags |= DBP__OF_ON_REPLICA;
        if (o->read_your_writes) op->flags |= DBP__OF_RYW;
    }
    if (!(p->bk->flags & DBP__BKF_SQL)) {
        dbp__op_fail(op, DBP_EUSAGE, 0, "query() needs a MySQL or PostgreSQL pool; use call() for Redis");
        return op;
    }
    /* the pool's `prepare` applies to statements with parameters (those are
       the ones run again with other values); an op's own choice to any */
    if (type == DBP__OP_QUERY && !(op->flags & (DBP__OF_PREPARE | DBP__OF_NOPREPARE)) && p->s.prepare > 0 && n > 0)
        op->flags |= DBP__OF_PREPARE;
    if (!sql) { dbp__op_fail(op, DBP_EUSAGE, 0, "sql is NULL"); return op; }
    if (n && !params) { dbp__op_fail(op, DBP_EUSAGE, 0, "params is NULL but nparams is %lu", (unsigned long)n); return op; }
    memset(&ph, 0, sizeof ph);
    if ((p->bk->check_params ? p->bk->check_params(sql, len, params, n, &op->err)
                             : dbp__check_params_cached(p, sql, len, params, n, &op->err, &ph)) != DBP_OK) {
        dbp__op_settle(op, op->err.rc);
        return op;
    }
    if (ph.n <= DBP__PH_KEPT) {
        memcpy(op->ph, ph.pos, sizeof op->ph);
        op->nph = ph.n;
    } else {
        op->nph = (size_t)-1;                       /* bind scans again */
    }
    if (extra) {
        char *q = DBP__CAST(char *, (void *)(op + 1));
        op->flags |= DBP__OF_INLINE;
        if (n) {
            op->params = DBP__CAST(dbp_value *, (void *)q);
            memcpy(op->params, params, head);
            q += head;
            for (i = 0; i < n; i++)
                if (op->params[i].type == DBP_TEXT || op->params[i].type == DBP_BLOB) {
                    if (!op->params[i].v.s.data) continue;
                    if (op->params[i].v.s.len) memcpy(q, op->params[i].v.s.data, op->params[i].v.s.len);
                    q[op->params[i].v.s.len] = '\0';
                    op->params[i].v.s.data = q;
                    q += op->params[i].v.s.len + 1;
                }
        }
        if (len) memcpy(q, sql, len);
        q[len] = '\0';
        op->sql = q;
    } else {
        op->sql = dbp__strndup(sql, len);
        op->params = dbp__params_copy(params, n);
    }
    op->sql_len = len;
    op->nparams = n;
    if (!op->sql || (n && !op->params)) { dbp__op_fail(op, DBP_ENOMEM, 0, "out of memory"); return op; }
    return op;
}


#ifndef DBPOOL_NO_MYSQL
/* ==== SECTION: MySQL backend ==== */

enum { DBP__MY_NONE = 0, DBP__MY_CONNECT, DBP__MY_QUERY, DBP__MY_STORE, DBP__MY_NEXT, DBP__MY_FETCH,
       DBP__MY_FREE, DBP__MY_PING, DBP__MY_CLOSE, DBP__MY_PAUSED, DBP__MY_KILLWAIT,
       DBP__MY_HELPER, /* a helper thread resolves the host or runs the TLS connect */
       DBP__MY_SPREPARE, DBP__MY_SEXEC, DBP__MY_SSTORE, DBP__MY_SCLOSE /* prepared statements */ };
/* what the statement under way is for */
enum { DBP__MP_USER = 1, DBP__MP_STEP, DBP__MP_DISCARD, DBP__MP_VALIDATE };
/* internal statements */
enum { DBP__MS_INIT = 1, DBP__MS_LIMITS, DBP__MS_CLEAR_KILL, DBP__MS_ROLLBACK };
/* what follows the internal statements */
enum { DBP__MA_READY = DBP__AFTER_READY, DBP__MA_IDLE = DBP__AFTER_IDLE, DBP__MA_RELEASE = DBP__AFTER_RELEASE };

#define DBP__MY_MAX_STEPS 70

/* A prepared statement of a connection's cache (most recently used first). */
typedef struct dbp__my_stmt {
    char *sql;
    size_t len;
    unsigned hash;
    MYSQL_STMT *stmt;
    int ready;                      /* prepared on the server */
    int text;                       /* the server cannot prepare it: run as text */
} dbp__my_stmt;

typedef struct dbp__my {
    MYSQL *m;
    int phase, started, purpose;
    int r_int;
    my_bool r_bool;
    MYSQL *r_conn;
    MYSQL_RES *r_res;
    MYSQL_ROW r_row;
    dbp__buf sql;
    MYSQL_RES *res;                 /* result being streamed or freed */
    dbp_result *head, **tail;       /* result sets of the query under way */
    dbp_op *op;                     /* the user op under way, NULL when discarded */
    dbp_op *kill_op;
    int steps[DBP__MY_MAX_STEPS], nsteps, stepi, step_kind, step_arg, after;
    long long kill_started_ms;
    const char *host;               /* what Connector/C connects to: the name, or one of its addresses */
    dbp__job *job;                  /* the lookup (kept for its other addresses) or the TLS connect */
    int addri;                      /* the lookup's address being tried */
    char addr[INET6_ADDRSTRLEN];
    /* prepared statements */
    dbp__my_stmt *stmts;            /* the cache, most recently used first */
    int nstmts, capstmts;
    MYSQL_STMT *stmt;               /* the statement under way (stmts[0] while it runs) */
    MYSQL_STMT *closing;            /* an evicted statement being closed */
    MYSQL_BIND *binds;              /* parameters, then result columns */
    unsigned long *lens;
    my_bool *nulls, *errs;
    char **bufs;
    size_t *bufcap;
    size_t nbinds;
    long long *bools;               /* BOOL parameters, as TINYs */
} dbp__my;

#define DBP__MY(c) DBP__CAST(dbp__my *, (c)->be)
#define DBP__MY_CLIENT_FLAGS (CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS | CLIENT_FOUND_ROWS)

/* The one error classifier of the MySQL backend. LOST: a client error
   (2000-2999), the connection is gone or out of step; FATAL: a server error
   after which the session cannot go on (1927 connection killed, 1053 server
   shutdown, 1152 aborted, 4031 idle session timeout); SQL: the statement
   failed and the connection is fine. What a phase does with each is its
   own: reading a result, a FATAL code is reported as the statement's error. */
enum { DBP__MYE_SQL = 0, DBP__MYE_LOST, DBP__MYE_FATAL };
static int dbp__my_err_class(unsigned e)
{
    if (e >= 2000 && e < 3000) return DBP__MYE_LOST;
    if (e == 1927 || e == 1053 || e == 1152 || e == 4031) return DBP__MYE_FATAL;
    return DBP__MYE_SQL;
}

static void dbp__my_error(dbp_conn *c, dbp_error *e, int rc, const char *prefix)
{
    dbp__my *my = DBP__MY(c);
    const char *msg = my && my->m ? mysql_error(my->m) : "";
    e->rc = rc;
    e->code = my && my->m ? (int)mysql_errno(my->m) : 0;
    e->sent = 0;
    snprintf(e->sqlstate, sizeof e->sqlstate, "%s", my && my->m ? mysql_sqlstate(my->m) : "");
    if (strcmp(e->sqlstate, "00000") == 0) e->sqlstate[0] = '\0';
    snprintf(e->message, sizeof e->message, "%s%s%s", prefix ? prefix : "", prefix && *prefix ? ": " : "",
             msg && *msg ? msg : "unknown error");
    if (c->pool->s.password) dbp__err_scrub(e, c->pool->s.password);
}

/* One call of the non-blocking API for the current phase: start or continue. */
static int dbp__my_call(dbp_conn *c, int ev)
{
    dbp__my *my = DBP__MY(c);
    const dbp__settings *s = &c->pool->s;
    int st = 0, cont = my->started;
    my->started = 1;
    switch (my->phase) {
    case DBP__MY_CONNECT:
        st = cont ? mysql_real_connect_cont(&my->r_conn, my->m, ev)
                  : mysql_real_connect_start(&my->r_conn, my->m, my->host, s->user, s->password, s->database,
                                             (unsigned)s->port, s->socket, DBP__MY_CLIENT_FLAGS);
        break;
    case DBP__MY_QUERY:
        st = cont ? mysql_real_query_cont(&my->r_int, my->m, ev)
                  : mysql_real_query_start(&my->r_int, my->m, my->sql.data ? my->sql.data : "", (unsigned long)my->sql.len);
        break;
    case DBP__MY_STORE:
        st = cont ? mysql_store_result_cont(&my->r_res, my->m, ev) : mysql_store_result_start(&my->r_res, my->m);
        break;
    case DBP__MY_NEXT:
        st = cont ? mysql_next_result_cont(&my->r_int, my->m, ev) : mysql_next_result_start(&my->r_int, my->m);
        break;
    case DBP__MY_FETCH:
        st = cont ? mysql_fetch_row_cont(&my->r_row, my->res, ev) : mysql_fetch_row_start(&my->r_row, my->res);
        break;
    case DBP__MY_FREE:
        st = cont ? mysql_free_result_cont(my->res, ev) : mysql_free_result_start(my->res);
        break;
    case DBP__MY_PING:
        st = cont ? mysql_ping_cont(&my->r_int, my->m, ev) : mysql_ping_start(&my->r_int, my->m);
        break;
    case DBP__MY_CLOSE:
        st = cont ? mysql_close_cont(my->m, ev) : mysql_close_start(my->m);
        break;
    case DBP__MY_SPREPARE:
        st = cont ? mysql_stmt_prepare_cont(&my->r_int, my->stmt, ev)
                  : mysql_stmt_prepare_start(&my->r_int, my->stmt, my->stmts[0].sql, (unsigned long)my->stmts[0].len);
        break;
    case DBP__MY_SEXEC:
        st = cont ? mysql_stmt_execute_cont(&my->r_int, my->stmt, ev) : mysql_stmt_execute_start(&my->r_int, my->stmt);
        break;
    case DBP__MY_SSTORE:
        st = cont ? mysql_stmt_store_result_cont(&my->r_int, my->stmt, ev)
                  : mysql_stmt_store_result_start(&my->r_int, my->stmt);
        break;
    case DBP__MY_SCLOSE:
        st = cont ? mysql_stmt_close_cont(&my->r_bool, my->closing, ev) : mysql_stmt_close_start(&my->r_bool, my->closing);
        break;
    default:
        my->started = 0;
        return 0;
    }
    if (!st) my->started = 0;
    return st;
}

/* Translates what the library waits for into poll events and a timer. */
static void dbp__my_wait(dbp_conn *c, int st)
{
    dbp__my *my = DBP__MY(c);
    short ev = 0;
    c->fd = (int)mysql_get_socket(my->m);
    if (st & MYSQL_WAIT_READ) ev |= POLLIN;
    if (st & MYSQL_WAIT_WRITE) ev |= POLLOUT;
    if (st & MYSQL_WAIT_EXCEPT) ev |= POLLPRI;
    c->events = ev;
    if (st & MYSQL_WAIT_TIMEOUT) {
        long long at = dbp__ms_now() + mysql_get_timeout_value_ms(my->m);
        if (c->timer.idx < 0 || at < c->timer.at) dbp__timer_set(c->pool->hub, &c->timer, at);
    }
}


static void dbp__my_run(dbp_conn *c, int ev);

/* The statement cache and the bind buffers. Only after mysql_close(): the
   handle has let go of its statements then, and closing one sends nothing. */
static void dbp__my_stmts_free(dbp__my *my)
{
    int i;
    size_t k;
    for (i = 0; i < my->nstmts; i++) {
        if (my->stmts[i].stmt) mysql_stmt_close(my->stmts[i].stmt);
        DBP_FREE(my->stmts[i].sql);
    }
    if (my->closing) mysql_stmt_close(my->closing);
    DBP_FREE(my->stmts);
    my->stmts = NULL;
    my->nstmts = my->capstmts = 0;
    my->stmt = my->closing = NULL;
    for (k = 0; k < my->nbinds; k++) DBP_FREE(my->bufs ? my->bufs[k] : NULL);
    DBP_FREE(my->binds); DBP_FREE(my->lens); DBP_FREE(my->nulls); DBP_FREE(my->errs);
    DBP_FREE(my->bufs); DBP_FREE(my->bufcap); DBP_FREE(my->bools);
    my->binds = NULL; my->lens = NULL; my->nulls = my->errs = NULL; my->bufs = NULL; my->bufcap = NULL;
    my->bools = NULL;
    my->nbinds = 0;
}

/* Frees a copied secret, wiped first. */
static void dbp__free_secret(char *p)
{
    volatile char *v = p;
    if (!p) return;
    while (*v) *v++ = '\0';
    DBP_FREE(p);
}

/* The TLS connect on the helper thread: blocking, bounded by the handle's
   MYSQL_OPT_CONNECT_TIMEOUT, which Connector/C 3.3 applies to every read and
   write of the connect, the handshake included (ma_pvio.c sets the read and
   write timeouts to it until the connect is done, then to the read/write
   timeouts, which stay unset: a long query must not be cut by them). With
   MYSQL_OPT_NONBLOCK set but no _start call under way the handle behaves as
   a blocking one, and the non-blocking calls work on it afterwards. */
typedef struct dbp__my_hs {
    MYSQL *m;                       /* the handle, options set; the hub takes it back */
    int connected;
    char *user, *password, *database, *socket;
    unsigned long client_flags;
} dbp__my_hs;

static void dbp__my_handshake_work(dbp__job *j)
{
    dbp__my_hs *a = DBP__CAST(dbp__my_hs *, j->arg);
#ifndef DBPOOL_NO_THREADS
    mysql_thread_init();
#endif
    a->connected = mysql_real_connect(a->m, j->host, a->user, a->password, a->database, (unsigned)j->port,
                                      a->socket, a->client_flags) != NULL;
}

/* What a connect job still owns when it is freed: a handle nobody took (the
   hub gave up on it), closed without a goodbye that could wait. */
static void dbp__my_handshake_drop(dbp__job *j)
{
    dbp__my_hs *a = DBP__CAST(dbp__my_hs *, j->arg);
    if (!a) return;
    if (a->m) {
        int fd = (int)mysql_get_socket(a->m);
        if (fd >= 0) shutdown(fd, SHUT_RDWR);
        mysql_close(a->m);
    }
    DBP_FREE(a->user);
    dbp__free_secret(a->password);
    DBP_FREE(a->database);
    DBP_FREE(a->socket);
    DBP_FREE(a);
    j->arg = NULL;
}

/* Hands the handle and copies of the connect arguments to a helper thread. */
static int dbp__my_handshake_start(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    const dbp__settings *s = &c->pool->s;
    dbp__job *j = dbp__job_new(dbp__my_handshake_work, dbp__my_handshake_drop, &c->err);
    dbp__my_hs *a;
    if (!j) return c->err.rc;
    j->arg = a = DBP__ALLOC(dbp__my_hs, 1);
    j->host = dbp__strdup(my->host);
    if (a) {
        a->user = dbp__strdup(s->user);
        a->password = dbp__strdup(s->password);
        a->database = dbp__strdup(s->database);
        a->socket = dbp__strdup(s->socket);
    }
    if (!a || !j->host || (s->user && !a->user) || (s->password && !a->password) || (s->database && !a->database) ||
        (s->socket && !a->socket)) {
        dbp__job_free(j);
        return dbp__err_set(&c->err, DBP_ENOMEM, "out of memory");
    }
    j->port = s->port;
    a->client_flags = DBP__MY_CLIENT_FLAGS;
#ifndef DBPOOL_NO_THREADS
    j->thread_end = mysql_thread_end;
#endif
    a->m = my->m;
    my->m = NULL;
    if (dbp__job_start(j, &c->err) != DBP_OK) return c->err.rc; /* (the handle went with the job) */
    my->job = j;
    my->phase = DBP__MY_HELPER;
    c->fd = j->rfd;
    c->events = POLLIN;
    return DBP_OK;
}

/* Starts resolving the host on a helper thread. */
static int dbp__my_lookup_begin(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    my->job = dbp__lookup_start(my->host, c->pool->s.port, &c->err);
    if (!my->job) return c->err.rc;
    my->phase = DBP__MY_HELPER;
    c->fd = my->job->rfd;
    c->events = POLLIN;
    return DBP_OK;
}

/* Points the connect at the lookup's address number i (numeric: Connector/C
   does no lookup of its own). */
static int dbp__my_use_addr(dbp_conn *c, int i)
{
    dbp__my *my = DBP__MY(c);
    const dbp__job *j = my->job;
    if (i >= j->naddr || getnameinfo(DBP__CAST(const struct sockaddr *, (const void *)&j->addr[i]), j->addrlen[i],
                                     my->addr, sizeof my->addr, NULL, 0, NI_NUMERICHOST) != 0)
        return 0;
    my->addri = i;
    my->host = my->addr;
    return 1;
}

static int dbp__my_finish(dbp_conn *c);

/* The helper thread's byte arrived: take over the connected handle (and go
   on as after a non-blocking connect), or connect to the looked-up address. */
static void dbp__my_helper_done(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    dbp__job *j = my->job;
    dbp_error e;
    if (!dbp__job_done(j)) return;
    c->fd = -1;
    c->events = 0;
    my->phase = DBP__MY_CONNECT;
    my->started = 0;
    if (j->work == dbp__my_handshake_work) {
        dbp__my_hs *a = DBP__CAST(dbp__my_hs *, j->arg);
        my->m = a->m;
        a->m = NULL;
        my->r_conn = a->connected ? my->m : NULL;
        my->job = NULL;
        dbp__job_release(j);
        dbp__my_finish(c);
        return;
    }
    dbp__err_clear(&e);
    if (dbp__lookup_result(j, &e) != DBP_OK || !dbp__my_use_addr(c, 0)) {
        if (e.rc == DBP_OK) dbp__err_set(&e, DBP_ECONNECT, "cannot use the address of host '%.100s'", j->host);
        dbp__conn_failed(c, &e, 1);
        return;
    }
    dbp__my_run(c, 0);
}

static int dbp__my_open(dbp_conn *c)
{
    dbp__my *my = DBP__ALLOC(dbp__my, 1);
    const dbp__settings *s = &c->pool->s;
    unsigned int timeout;
    if (!my) return dbp__err_set(&c->err, DBP_ENOMEM, "out of memory");
    c->be = my;
    my->tail = &my->head;
    my->m = mysql_init(NULL);
    if (!my->m) return dbp__err_set(&c->err, DBP_ENOMEM, "out of memory (mysql_init)");
    mysql_options(my->m, MYSQL_OPT_NONBLOCK, 0);
    if (s->charset) mysql_options(my->m, MYSQL_SET_CHARSET_NAME, s->charset);
    timeout = (unsigned)(s->connect_timeout + 999) / 1000;
    mysql_options(my->m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    {
        unsigned proto = s->socket && !s->host ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
        if (!s->socket || s->host) mysql_options(my->m, MYSQL_OPT_PROTOCOL, &proto);
    }
    if (s->name) mysql_optionsv(my->m, MYSQL_OPT_CONNECT_ATTR_ADD, "program_name", s->name);
    if (s->ssl_mode >= DBP__SSL_PREFERRED) {
        my_bool yes = 1;
        if (s->ssl_ca) mysql_options(my->m, MYSQL_OPT_SSL_CA, s->ssl_ca);
        if (s->ssl_cert) mysql_options(my->m, MYSQL_OPT_SSL_CERT, s->ssl_cert);
        if (s->ssl_key) mysql_options(my->m, MYSQL_OPT_SSL_KEY, s->ssl_key);
        if (s->ssl_mode >= DBP__SSL_REQUIRED) mysql_options(my->m, MYSQL_OPT_SSL_ENFORCE, &yes);
        /* Connector/C 3.3 verifies the chain and the host name together */
        if (s->ssl_mode >= DBP__SSL_VERIFY_CA) mysql_options(my->m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &yes);
    }
    my->phase = DBP__MY_CONNECT;
    my->started = 0;
    c->state = DBP__CS_CONNECTING;
    my->host = s->host ? s->host : "localhost";
    /* Connector/C 3.3 runs the TLS handshake with a blocking wait (CONC-594):
       with any ssl-mode but DISABLED the whole connect goes to a helper
       thread, which also resolves the name there and checks the certificate
       against it */
    if (s->ssl_mode >= DBP__SSL_PREFERRED) return dbp__my_handshake_start(c);
    /* Connector/C resolves names with a blocking getaddrinfo(): a name is
       resolved on a helper thread and Connector/C is given its address */
    if ((!s->socket || s->host) && !dbp__host_is_literal(my->host)) return dbp__my_lookup_begin(c);
    dbp__my_run(c, 0);
    return DBP_OK;
}

/* Stops whatever call is suspended and frees the handle, without blocking. */
static void dbp__my_abort(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    int i;
    if (!my) return;
    if (my->job) {
        /* a helper still busy with it is abandoned: it cleans up after itself */
        dbp__job_release(my->job);
        my->job = NULL;
        c->fd = -1;
    }
    if (my->m) {
        int fd = (int)mysql_get_socket(my->m);
        if (fd >= 0) shutdown(fd, SHUT_RDWR);
        for (i = 0; i < 32 && my->started; i++) {
            int st = dbp__my_call(c, MYSQL_WAIT_TIMEOUT);
            if (!st) break;
        }
        if (my->phase == DBP__MY_CLOSE && !my->started) my->m = NULL; /* mysql_close_cont freed it */
        if (my->res) { mysql_free_result(my->res); my->res = NULL; }
        if (my->m) mysql_close(my->m);
        my->m = NULL;
    }
    dbp__my_stmts_free(my);
    if (my->kill_op) {
        /* the connection it was to rescue is gone: a KILL still queued is withdrawn */
        dbp_op *k = my->kill_op;
        k->target = NULL;
        my->kill_op = NULL;
        if (k->state == DBP_OP_QUEUED && dbp__linked(&k->link) && !k->pin) {
            dbp__unqueue_op(k->pool, k);
            dbp__op_fail(k, DBP_ECANCELLED, 0, "the connection to rescue was closed");
        }
    }
    dbp_result_free(my->head);
    dbp__buf_free(&my->sql);
    DBP_FREE(my);
    c->be = NULL;
    c->fd = -1;
    c->events = 0;
}

/* Queues an internal statement to run before the connection is next ready. */
static void dbp__my_step_add(dbp_conn *c, int kind, int arg)
{
    dbp__my *my = DBP__MY(c);
    if (my->nsteps < DBP__MY_MAX_STEPS) { my->steps[my->nsteps++] = kind | (arg << 8); }
}

static void dbp__my_next_step(dbp_conn *c);

static void dbp__my_steps_start(dbp_conn *c, int after)
{
    dbp__my *my = DBP__MY(c);
    my->after = after;
    my->stepi = 0;
    dbp__my_next_step(c);
}

static void dbp__my_start_query(dbp_conn *c, int purpose)
{
    dbp__my *my = DBP__MY(c);
    /* from here the server may run it; only a failed write proves it did not */
    if (purpose == DBP__MP_USER && my->op) my->op->flags |= DBP__OF_SENT;
    my->purpose = purpose;
    my->phase = DBP__MY_QUERY;
    my->started = 0;
    dbp__my_run(c, 0);
}

/* Runs the next internal statement, or moves on when there are none left. */
static void dbp__my_next_step(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    const dbp__settings *s = &c->pool->s;
    if (my->stepi >= my->nsteps) {
        int after = my->after;
        my->nsteps = my->stepi = 0;
        my->phase = DBP__MY_NONE;
        my->purpose = 0;
        c->events = 0;
        dbp__conn_steps_done(c, after);
        return;
    }
    my->step_kind = my->steps[my->stepi] & 0xff;
    my->step_arg = my->steps[my->stepi] >> 8;
    my->stepi++;
    my->sql.len = my->sql.off = 0;
    switch (my->step_kind) {
    case DBP__MS_INIT: dbp__buf_adds(&my->sql, s->init[my->step_arg]); break;
    case DBP__MS_LIMITS:
        dbp__buf_adds(&my->sql, "SELECT @@wait_timeout, @@max_connections, @@max_user_connections");
        break;
    case DBP__MS_CLEAR_KILL: dbp__buf_adds(&my->sql, "DO 0"); break;
    case DBP__MS_ROLLBACK: dbp__buf_adds(&my->sql, "ROLLBACK"); break;
    default: break;
    }
    if (!my->sql.data) {
        dbp_error e;
        dbp__err_set(&e, DBP_ENOMEM, "out of memory");
        dbp__conn_failed(c, &e, c->state == DBP__CS_INIT);
        return;
    }
    dbp__my_start_query(c, DBP__MP_STEP);
}

/* The server's limits, read once per pool. */
static void dbp__my_read_limits(dbp_conn *c, MYSQL_RES *res)
{
    dbp_pool *p = c->pool;
    MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
    if (!row) return;
    p->limits_read = 1;
    dbp__pool_limit(p, DBP__LIMIT_IDLE, row[0] ? atoll(row[0]) : -1, "wait_timeout");
    dbp__pool_limit(p, DBP__LIMIT_CONNS, row[1] ? atoll(row[1]) : -1, "max_connections");
    dbp__pool_limit(p, DBP__LIMIT_USER_CONNS, row[2] ? atoll(row[2]) : -1, "max_user_connections");
}

/* The user op under way is done: settle it and free the connection. */
/* Replicas' read-your-writes: the GTID a write left in the session, when
   the connection tracks last_gtid (session_track_system_variables; the
   replicas router asks for it on its primary). The pool keeps the newest. */
static void dbp__my_track_gtid(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    const char *d;
    size_t n;
    int name = 1, want = 0;
    if (mysql_session_track_get_first(my->m, SESSION_TRACK_SYSTEM_VARIABLES, &d, &n) != 0) return;
    do {
        if (name) {
            want = n == 9 && memcmp(d, "last_gtid", 9) == 0;
        } else if (want && n > 0 && n < sizeof c->pool->gtid) {
            char g[sizeof c->pool->gtid];
            const char *old = c->pool->gtid, *od = strchr(old, '-'), *nd;
            memcpy(g, d, n);
            g[n] = '\0';
            nd = strchr(g, '-');
            /* domain-server-seq: within one domain keep the higher seq (replies
               may come back out of commit order over several connections) */
            if (!old[0] || !od || !nd || od - old != nd - g || memcmp(old, g, (size_t)(nd - g)) != 0 ||
                strtoull(strrchr(old, '-') + 1, NULL, 10) < strtoull(strrchr(g, '-') + 1, NULL, 10))
                memcpy(c->pool->gtid, g, n + 1);
            return;
        }
        name = !name;
    } while (mysql_session_track_get_next(my->m, SESSION_TRACK_SYSTEM_VARIABLES, &d, &n) == 0);
}

static void dbp__my_op_finish(dbp_conn *c, int rc, const dbp_error *e)
{
    dbp__my *my = DBP__MY(c);
    dbp_op *op = my->op;
    if (rc == DBP_OK && op && my->m) dbp__my_track_gtid(c);
    my->op = NULL;
    my->phase = DBP__MY_NONE;
    my->purpose = 0;
    c->events = 0;
    if (op) {
        dbp__conn_unlink_op(c, op);
        if (rc == DBP_OK) {
            op->result = my->head;
            my->head = NULL;
            dbp__op_settle(op, DBP_OK);
        } else {
            dbp__op_fail_err(op, e, rc, (op->flags & DBP__OF_SENT) != 0);
        }
    }
    dbp_result_free(my->head);
    my->head = NULL;
    my->tail = &my->head;
    if (c->flags & DBP__CF_KILLING) {
        /* the killed statement has ended; wait for the KILL itself, then clear its flag */
        if (my->kill_op) { my->phase = DBP__MY_KILLWAIT; return; }
        my->nsteps = 0;
        dbp__my_step_add(c, DBP__MS_CLEAR_KILL, 0);
        dbp__my_steps_start(c, DBP__MA_IDLE);
        return;
    }
    dbp__conn_idle(c);
}

/* A client-side error on a running statement: the connection is gone. */
static void dbp__my_broken(dbp_conn *c, int during_send)
{
    dbp__my *my = DBP__MY(c);
    dbp_error e;
    dbp_op *op = my->op;
    dbp__my_error(c, &e, DBP_ECONNECT, "connection lost");
    /* "server has gone away" while writing, or "commands out of sync": the
       statement never got there */
    if (op && ((during_send && e.code == CR_SERVER_GONE_ERROR) || e.code == CR_COMMANDS_OUT_OF_SYNC))
        op->flags &= ~DBP__OF_SENT;
    my->op = NULL;
    dbp__conn_failed(c, &e, 0);
}

/* How a MySQL column's cells read (dbp_field.vtype). */
static dbp_type dbp__my_vtype(const MYSQL_FIELD *f)
{
    switch (f->type) {
    case MYSQL_TYPE_TINY: case MYSQL_TYPE_SHORT: case MYSQL_TYPE_LONG: case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_YEAR: return DBP_INT;
    case MYSQL_TYPE_LONGLONG: return (f->flags & UNSIGNED_FLAG) ? DBP_UINT : DBP_INT;
    case MYSQL_TYPE_FLOAT: case MYSQL_TYPE_DOUBLE: return DBP_DOUBLE;
    case MYSQL_TYPE_TINY_BLOB: case MYSQL_TYPE_MEDIUM_BLOB: case MYSQL_TYPE_LONG_BLOB: case MYSQL_TYPE_BLOB:
    case MYSQL_TYPE_STRING: case MYSQL_TYPE_VAR_STRING: case MYSQL_TYPE_VARCHAR:
        return f->charsetnr == 63 ? DBP_BLOB : DBP_TEXT;
    default: return DBP_TEXT;
    }
}

/* A zeroed block for a result of `bytes`: a small one is of DBP__RESULT_SLAB
   bytes, kept on the hub for reuse when freed with its op (single = 2). */
static void *dbp__my_result_block(dbp_conn *c, size_t bytes)
{
    dbp_hub *h = c->pool->hub;
    if (bytes <= DBP__RESULT_SLAB)
        return dbp__slab_take(&h->free_results, &h->nfree_results, DBP__RESULT_SLAB, bytes);
    return dbp__calloc(1, bytes);
}

/* Builds a dbp_result from a stored MYSQL_RES (or a statement without rows),
   in one allocation: the struct, the fields, the cells and the info text. */
static dbp__result *dbp__my_make_result(dbp_conn *c, MYSQL_RES *res)
{
    dbp__my *my = DBP__MY(c);
    dbp__result *r;
    const char *info = mysql_info(my->m);
    size_t infolen = info ? strlen(info) : 0, nf = res ? mysql_num_fields(res) : 0, nr = 0, bytes, i;
    char *block;
    if (res) nr = (size_t)mysql_num_rows(res);
    if (nf && nr > ((size_t)-1 / 2) / nf / sizeof(dbp_cell)) return NULL;
    bytes = sizeof(dbp__result) + nf * sizeof(dbp_field) + nr * nf * sizeof(dbp_cell) + infolen + 1;
    block = DBP__CAST(char *, dbp__my_result_block(c, bytes));
    if (!block) return NULL;
    r = DBP__CAST(dbp__result *, (void *)block);
    r->single = bytes <= DBP__RESULT_SLAB ? 2 : 1;
    r->fields = DBP__CAST(dbp_field *, (void *)(block + sizeof(dbp__result)));
    r->cells = DBP__CAST(dbp_cell *, (void *)(block + sizeof(dbp__result) + nf * sizeof(dbp_field)));
    r->arena = block + sizeof(dbp__result) + nf * sizeof(dbp_field) + nr * nf * sizeof(dbp_cell);
    if (infolen) memcpy(r->arena, info, infolen);
    r->pub.info = r->arena;
    r->pub.affected_rows = (unsigned long long)mysql_affected_rows(my->m);
    r->pub.insert_id = (unsigned long long)mysql_insert_id(my->m);
    r->pub.warning_count = mysql_warning_count(my->m);
    if (res) {
        MYSQL_FIELD *f = mysql_fetch_fields(res);
        size_t row = 0;
        r->res = res;
        r->pub.ncols = nf;
        r->pub.nrows = nr;
        for (i = 0; i < nf; i++) {
            r->fields[i].name = f[i].name;
            r->fields[i].name_len = f[i].name_length;
            r->fields[i].type = (int)f[i].type;
            r->fields[i].flags = f[i].flags;
            r->fields[i].charsetnr = f[i].charsetnr;
            r->fields[i].decimals = f[i].decimals;
            r->fields[i].vtype = dbp__my_vtype(&f[i]);
        }
        for (;;) {
            MYSQL_ROW rw = mysql_fetch_row(res);
            unsigned long *len;
            if (!rw || row >= nr) break;
            len = mysql_fetch_lengths(res);
            for (i = 0; i < nf; i++) {
                r->cells[row * nf + i].data = rw[i];
                r->cells[row * nf + i].len = rw[i] ? len[i] : 0;
            }
            row++;
        }
        r->pub.fields = r->fields;
        r->pub.cells = nr && nf ? r->cells : NULL;
    }
    return r;
}

/* Streaming: copies one row into the batch. */
static int dbp__stream_add_row(dbp__stream *s, MYSQL_ROW row, unsigned long *len)
{
    size_t i, base;
    if (s->nrows == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        dbp_cell *p;
        if (cap > (size_t)-1 / (s->ncols ? s->ncols : 1) / sizeof(dbp_cell)) return DBP_ENOMEM;
        p = DBP__CAST(dbp_cell *, DBP_REALLOC(s->rows, cap * (s->ncols ? s->ncols : 1) * sizeof(dbp_cell)));
        if (!p) return DBP_ENOMEM;
        s->rows = p; s->cap = cap;
    }
    base = s->nrows * s->ncols;
    for (i = 0; i < s->ncols; i++) {
        if (!row[i]) {
            s->rows[base + i].data = NULL;
            s->rows[base + i].len = 0;
        } else {
            /* offsets now, pointers once the batch is complete (the buffer may move) */
            s->rows[base + i].data = DBP__CAST(const char *, (void *)(size_t)(s->data.len + 1));
            s->rows[base + i].len = len[i];
            if (dbp__buf_add(&s->data, row[i], len[i]) || dbp__buf_add(&s->data, "", 1)) return DBP_ENOMEM;
        }
    }
    s->nrows++;
    s->total++;
    return DBP_OK;
}

/* Header of a streamed result: column descriptions, copied. */
static int dbp__my_stream_begin(dbp_conn *c, dbp_op *op)
{
    dbp__my *my = DBP__MY(c);
    dbp__stream *s = DBP__ALLOC(dbp__stream, 1);
    dbp__result *r;
    unsigned i, nf;
    MYSQL_FIELD *f;
    size_t bytes = 1, off = 0;
    if (!s) return DBP_ENOMEM;
    op->stream = s;
    nf = mysql_num_fields(my->res);
    f = mysql_fetch_fields(my->res);
    s->ncols = nf;
    r = DBP__ALLOC(dbp__result, 1);
    if (!r) return DBP_ENOMEM;
    s->head = r;
    for (i = 0; i < nf; i++) bytes += f[i].name_length + 1;
    r->arena = DBP__CAST(char *, DBP_MALLOC(bytes));
    r->fields = DBP__ALLOC(dbp_field, nf ? nf : 1);
    if (!r->arena || !r->fields) return DBP_ENOMEM;
    for (i = 0; i < nf; i++) {
        memcpy(r->arena + off, f[i].name, f[i].name_length);
        r->arena[off + f[i].name_length] = '\0';
        r->fields[i].name = r->arena + off;
        r->fields[i].name_len = f[i].name_length;
        r->fields[i].type = (int)f[i].type;
        r->fields[i].flags = f[i].flags;
        r->fields[i].charsetnr = f[i].charsetnr;
        r->fields[i].decimals = f[i].decimals;
        r->fields[i].vtype = dbp__my_vtype(&f[i]);
        off += f[i].name_length + 1;
    }
    r->arena[off] = '\0';
    r->pub.info = r->arena + off;
    r->pub.ncols = nf;
    r->pub.fields = r->fields;
    op->result = NULL;
    return DBP_OK;
}

/* Escapes with the connection's charset (and NO_BACKSLASH_ESCAPES when set). */
static size_t dbp__my_escape(void *ud, char *to, const char *from, size_t len)
{
    return (size_t)mysql_real_escape_string(DBP__CAST(MYSQL *, ud), to, from, (unsigned long)len);
}

/* A query as text: parameters bound into the SQL on this connection, whose
   charset and sql_mode decide the escaping. */
static void dbp__my_text_start(dbp_conn *c, dbp_op *op)
{
    dbp__my *my = DBP__MY(c);
    my->sql.len = my->sql.off = 0;
    if (dbp__buf_reserve(&my->sql, op->sql_len + 16) ||
        dbp__bind_at(op->sql, op->sql_len, op->params, &my->sql, dbp__my_escape, my->m,
                     op->nph <= DBP__PH_KEPT ? op->ph : NULL, op->nph) != DBP_OK) {
        dbp_error e;
        dbp__err_set(&e, DBP_ENOMEM, "out of memory binding parameters");
        dbp__my_op_finish(c, DBP_ENOMEM, &e);
        return;
    }
    dbp__my_start_query(c, DBP__MP_USER);
}

/* ---- prepared statements ---------------------------------------------------
   A query with DBP__OF_PREPARE runs through the binary protocol: the
   statement is prepared once per connection and kept in its cache (LRU,
   `prepare_cache` long; the least recently used one is closed on the server
   to make room), then executed with the parameters bound, its result stored
   and each value fetched as text, so that results have the shape and the
   values of a text query. What the server cannot prepare (several
   statements, CALL, a statement the binary protocol lacks) runs as text,
   and the cache remembers it; a statement that fails to prepare for another
   reason runs as text once, which reports the server's error as a text
   query would. When the server's max_prepared_stmt_count is reached, the
   cache gives back its least recently used statement and prepares again,
   or, with nothing to give back, runs the query as text. */

static unsigned dbp__my_hash(const char *s, size_t n)
{
    unsigned h = 2166136261u;
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* Room for n binds (their buffers kept from query to query). */
static int dbp__my_binds(dbp__my *my, size_t n)
{
    size_t k;
    if (n > my->nbinds) {
        MYSQL_BIND *b = DBP__CAST(MYSQL_BIND *, DBP_REALLOC(my->binds, n * sizeof *b));
        if (!b) return DBP_ENOMEM;
        my->binds = b;
#define DBP__GROW(f, T) do { T *x = DBP__CAST(T *, DBP_REALLOC(my->f, n * sizeof(T))); if (!x) return DBP_ENOMEM; my->f = x; } while (0)
        DBP__GROW(lens, unsigned long);
        DBP__GROW(nulls, my_bool);
        DBP__GROW(errs, my_bool);
        DBP__GROW(bufcap, size_t);
        DBP__GROW(bools, long long);
        {
            char **x = DBP__CAST(char **, DBP_REALLOC(my->bufs, n * sizeof(char *)));
            if (!x) return DBP_ENOMEM;
            my->bufs = x;
        }
#undef DBP__GROW
        for (k = my->nbinds; k < n; k++) { my->bufs[k] = NULL; my->bufcap[k] = 0; }
        my->nbinds = n;
    }
    memset(my->binds, 0, n * sizeof *my->binds);
    return DBP_OK;
}

static void dbp__my_stmt_error(dbp_conn *c, MYSQL_STMT *st, dbp_error *e)
{
    const char *msg = mysql_stmt_error(st);
    e->rc = DBP_ESQL;
    e->code = (int)mysql_stmt_errno(st);
    e->sent = 1;
    snprintf(e->sqlstate, sizeof e->sqlstate, "%s", mysql_stmt_sqlstate(st));
    if (strcmp(e->sqlstate, "00000") == 0) e->sqlstate[0] = '\0';
    snprintf(e->message, sizeof e->message, "%s", msg && *msg ? msg : "unknown error");
    if (c->pool->s.password) dbp__err_scrub(e, c->pool->s.password);
}

/* Statements the binary protocol would run differently: CALL (result sets
   of a procedure) goes as text. */
static int dbp__my_text_only(const char *sql, size_t len)
{
    size_t i = 0;
    while (i < len && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r' || sql[i] == '(')) i++;
    return len - i >= 5 && (sql[i] | 32) == 'c' && (sql[i + 1] | 32) == 'a' && (sql[i + 2] | 32) == 'l' &&
           (sql[i + 3] | 32) == 'l' && !((sql[i + 4] | 32) >= 'a' && (sql[i + 4] | 32) <= 'z') && sql[i + 4] != '_';
}

/* Drops cache entry i whose server statement is gone or never was (no I/O). */
static void dbp__my_stmt_drop(dbp__my *my, int i)
{
    if (my->stmts[i].stmt) mysql_stmt_close(my->stmts[i].stmt);
    DBP_FREE(my->stmts[i].sql);
    memmove(&my->stmts[i], &my->stmts[i + 1], (size_t)(my->nstmts - i - 1) * sizeof *my->stmts);
    my->nstmts--;
}

static int dbp__my_ps_execute(dbp_conn *c);

/* Gives back the least recently used statement at index from or later
   that the server holds: closed there (phase SCLOSE), after which the op
   under way starts again; returns 0 then. With none, drops the last entry
   beyond from, if any (no I/O), and returns 1. */
static int dbp__my_ps_evict(dbp_conn *c, int from)
{
    dbp__my *my = DBP__MY(c);
    int i;
    for (i = my->nstmts - 1; i >= from; i--) if (my->stmts[i].stmt && my->stmts[i].ready) break;
    if (i < from) {
        if (my->nstmts - 1 >= from) dbp__my_stmt_drop(my, my->nstmts - 1);
        return 1;
    }
    my->closing = my->stmts[i].stmt;
    my->stmts[i].stmt = NULL;
    dbp__my_stmt_drop(my, i);
    my->phase = DBP__MY_SCLOSE;
    my->started = 0;
    return 0;
}

/* Starts op as a prepared statement: from the cache, or prepared now.
   Returns 0 with a phase set to run, 1 when it went elsewhere (text, an
   error) and that already ran. */
static int dbp__my_ps_begin(dbp_conn *c, dbp_op *op)
{
    dbp__my *my = DBP__MY(c);
    unsigned h = dbp__my_hash(op->sql, op->sql_len);
    int i;
    dbp__my_stmt e0;
    for (i = 0; i < my->nstmts; i++) {
        const dbp__my_stmt *x = &my->stmts[i];
        if (x->hash == h && x->len == op->sql_len && memcmp(x->sql, op->sql, op->sql_len) == 0) break;
    }
    if (i < my->nstmts) {
        if (i > 0) {                                /* to the front: most recently used */
            e0 = my->stmts[i];
            memmove(&my->stmts[1], &my->stmts[0], (size_t)i * sizeof *my->stmts);
            my->stmts[0] = e0;
        }
        if (my->stmts[0].text) { dbp__my_text_start(c, op); return 1; }
        my->stmt = my->stmts[0].stmt;
        if (my->stmts[0].ready) return dbp__my_ps_execute(c);
        my->purpose = DBP__MP_USER;
        my->phase = DBP__MY_SPREPARE;
        my->started = 0;
        return 0;
    }
    if (dbp__my_text_only(op->sql, op->sql_len)) { dbp__my_text_start(c, op); return 1; }
    if (my->nstmts >= c->pool->s.prepare_cache && dbp__my_ps_evict(c, 0) == 0) return 0; /* then here again */
    if (my->nstmts >= my->capstmts) {
        int cap = my->capstmts ? my->capstmts * 2 : 8;
        dbp__my_stmt *x = DBP__CAST(dbp__my_stmt *, DBP_REALLOC(my->stmts, (size_t)cap * sizeof *x));
        if (!x) goto nomem;
        my->stmts = x;
        my->capstmts = cap;
    }
    memset(&e0, 0, sizeof e0);
    e0.sql = dbp__strndup(op->sql, op->sql_len);
    e0.len = op->sql_len;
    e0.hash = h;
    e0.stmt = e0.sql ? mysql_stmt_init(my->m) : NULL;
    if (!e0.stmt) { DBP_FREE(e0.sql); goto nomem; }
    {
        my_bool yes = 1;
        mysql_stmt_attr_set(e0.stmt, STMT_ATTR_UPDATE_MAX_LENGTH, &yes);
    }
    memmove(&my->stmts[1], &my->stmts[0], (size_t)my->nstmts * sizeof *my->stmts);
    my->stmts[0] = e0;
    my->nstmts++;
    my->stmt = e0.stmt;
    my->purpose = DBP__MP_USER;
    my->phase = DBP__MY_SPREPARE;
    my->started = 0;
    return 0;
nomem:
    {
        dbp_error e;
        dbp__err_set(&e, DBP_ENOMEM, "out of memory preparing the statement");
        dbp__my_op_finish(c, DBP_ENOMEM, &e);
    }
    return 1;
}

static void dbp__my_ps_start(dbp_conn *c, dbp_op *op)
{
    dbp__my *my = DBP__MY(c);
    my->op = op;
    if (dbp__my_ps_begin(c, op) == 0) dbp__my_run(c, 0);
}

/* Binds the op's parameters and starts the execution (phase SEXEC). */
static int dbp__my_ps_execute(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    dbp_op *op = my->op;
    size_t i, n = op->nparams;
    if (n) {
        if (dbp__my_binds(my, n) != DBP_OK) {
            dbp_error e;
            dbp__err_set(&e, DBP_ENOMEM, "out of memory binding parameters");
            dbp__my_op_finish(c, DBP_ENOMEM, &e);
            return 1;
        }
        for (i = 0; i < n; i++) {
            const dbp_value *v = &op->params[i];
            MYSQL_BIND *b = &my->binds[i];
            switch (v->type) {
            case DBP_BOOL:
                my->bools[i] = v->v.b ? 1 : 0;
                b->buffer_type = MYSQL_TYPE_LONGLONG;
                b->buffer = &my->bools[i];
                break;
            case DBP_INT: b->buffer_type = MYSQL_TYPE_LONGLONG; b->buffer = DBP__CAST(void *, &v->v.i); break;
            case DBP_UINT:
                b->buffer_type = MYSQL_TYPE_LONGLONG;
                b->buffer = DBP__CAST(void *, &v->v.u);
                b->is_unsigned = 1;
                break;
            case DBP_DOUBLE: b->buffer_type = MYSQL_TYPE_DOUBLE; b->buffer = DBP__CAST(void *, &v->v.d); break;
            case DBP_TEXT: case DBP_BLOB:
                b->buffer_type = v->type == DBP_TEXT ? MYSQL_TYPE_STRING : MYSQL_TYPE_BLOB;
                b->buffer = DBP__CAST(void *, v->v.s.data);
                b->buffer_length = (unsigned long)v->v.s.len;
                break;
            default: b->buffer_type = MYSQL_TYPE_NULL; break;
            }
        }
        if (mysql_stmt_bind_param(my->stmt, my->binds)) {
            dbp_error e;
            dbp__my_stmt_error(c, my->stmt, &e);
            e.sent = 0;
            dbp__my_op_finish(c, DBP_ESQL, &e);
            return 1;
        }
    }
    /* from here the server may run it; only a failed write proves it did not */
    op->flags |= DBP__OF_SENT;
    my->purpose = DBP__MP_USER;
    my->phase = DBP__MY_SEXEC;
    my->started = 0;
    return 0;
}

/* The stored result of the statement under way, each value fetched as text
   into one block: the struct, the fields (names copied: the statement may
   be closed before the result is freed), the cells, then the bytes. */
static dbp__result *dbp__my_ps_result(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    MYSQL_STMT *st = my->stmt;
    size_t nf = mysql_stmt_field_count(st), nr = (size_t)mysql_stmt_num_rows(st), i, row = 0, names = 0, bytes;
    MYSQL_FIELD *f = st->fields;
    const char *info = mysql_info(my->m);
    size_t infolen = info ? strlen(info) : 0;
    dbp__buf data;
    size_t *tmp = NULL;            /* per cell: offset in data ((size_t)-1: NULL), length */
    dbp__result *r = NULL;
    char *block, *q;
    int rc;
    memset(&data, 0, sizeof data);
    if (nf && nr > ((size_t)-1 / 4) / nf / sizeof(dbp_cell)) return NULL;
    if (nf) {
        if (dbp__my_binds(my, nf) != DBP_OK) return NULL;
        for (i = 0; i < nf; i++) {
            size_t want = (size_t)f[i].max_length + 1;
            if (want < 72) want = 72;                 /* numbers, dates and times as text */
            if (my->bufcap[i] < want) {
                char *b = DBP__CAST(char *, DBP_REALLOC(my->bufs[i], want));
                if (!b) return NULL;
                my->bufs[i] = b;
                my->bufcap[i] = want;
            }
            my->binds[i].buffer_type = MYSQL_TYPE_STRING;
            my->binds[i].buffer = my->bufs[i];
            my->binds[i].buffer_length = (unsigned long)my->bufcap[i];
            my->binds[i].length = &my->lens[i];
            my->binds[i].is_null = &my->nulls[i];
            my->binds[i].error = &my->errs[i];
            names += f[i].name_length + 1;
        }
        if (mysql_stmt_bind_result(st, my->binds)) return NULL;
        if (nr && !(tmp = DBP__CAST(size_t *, DBP_MALLOC(2 * nr * nf * sizeof *tmp)))) return NULL;
        while (row < nr && ((rc = mysql_stmt_fetch(st)) == 0 || rc == MYSQL_DATA_TRUNCATED)) {
            int rebind = 0;
            for (i = 0; i < nf; i++) {
                size_t *cell = &tmp[2 * (row * nf + i)];
                size_t len = my->lens[i];
                if (my->nulls[i]) { cell[0] = (size_t)-1; cell[1] = 0; continue; }
                if (len >= my->bufcap[i]) {
                    char *b = DBP__CAST(char *, DBP_REALLOC(my->bufs[i], len + 1));
                    if (!b) goto fail;
                    my->bufs[i] = b;
                    my->bufcap[i] = len + 1;
                    my->binds[i].buffer = b;
                    my->binds[i].buffer_length = (unsigned long)(len + 1);
                    if (mysql_stmt_fetch_column(st, &my->binds[i], (unsigned)i, 0)) goto fail;
                    rebind = 1;
                }
                cell[0] = data.len;
                cell[1] = len;
                if ((len && dbp__buf_add(&data, my->bufs[i], len)) || dbp__buf_add(&data, "", 1)) goto fail;
            }
            if (rebind && mysql_stmt_bind_result(st, my->binds)) goto fail;
            row++;
        }
        nr = row;
    }
    bytes = sizeof(dbp__result) + nf * sizeof(dbp_field) + nr * nf * sizeof(dbp_cell) + names + data.len + infolen + 1;
    block = DBP__CAST(char *, dbp__my_result_block(c, bytes));
    if (!block) goto fail;
    r = DBP__CAST(dbp__result *, (void *)block);
    r->single = bytes <= DBP__RESULT_SLAB ? 2 : 1;
    r->fields = DBP__CAST(dbp_field *, (void *)(block + sizeof(dbp__result)));
    r->cells = DBP__CAST(dbp_cell *, (void *)(block + sizeof(dbp__result) + nf * sizeof(dbp_field)));
    q = block + sizeof(dbp__result) + nf * sizeof(dbp_field) + nr * nf * sizeof(dbp_cell);
    for (i = 0; i < nf; i++) {
        if (f[i].name_length) memcpy(q, f[i].name, f[i].name_length);
        r->fields[i].name = q;
        r->fields[i].name_len = f[i].name_length;
        r->fields[i].type = (int)f[i].type;
        r->fields[i].flags = f[i].flags;
        r->fields[i].charsetnr = f[i].charsetnr;
        r->fields[i].decimals = f[i].decimals;
        q += f[i].name_length + 1;
    }
    if (data.len) memcpy(q, data.data, data.len);
    for (i = 0; i < nr * nf; i++) {
        r->cells[i].len = tmp[2 * i + 1];
        r->cells[i].data = tmp[2 * i] == (size_t)-1 ? NULL : q + tmp[2 * i];
    }
    q += data.len;
    r->arena = q;
    if (infolen) memcpy(q, info, infolen);
    r->pub.info = q;
    r->pub.affected_rows = (unsigned long long)mysql_stmt_affected_rows(st);
    r->pub.insert_id = (unsigned long long)mysql_stmt_insert_id(st);
    r->pub.warning_count = (unsigned)mysql_stmt_warning_count(st);
    if (nf) {
        r->pub.ncols = nf;
        r->pub.nrows = nr;
        r->pub.fields = r->fields;
        r->pub.cells = nr ? r->cells : NULL;
    }
fail:
    DBP_FREE(tmp);
    dbp__buf_free(&data);
    return r;
}

static void dbp__my_op_start(dbp_conn *c, dbp_op *op)
{
    dbp__my *my = DBP__MY(c);
    my->op = op;
    if (op->type == DBP__OP_PING) {
        my->purpose = DBP__MP_USER;
        my->phase = DBP__MY_PING;
        my->started = 0;
        op->flags |= DBP__OF_SENT;
        dbp__my_run(c, 0);
        return;
    }
    if (op->type == DBP__OP_KILL) {
        my->sql.len = my->sql.off = 0;
        if (dbp__buf_printf(&my->sql, "KILL QUERY %llu", op->kill_id)) {
            dbp_error e;
            dbp__err_set(&e, DBP_ENOMEM, "out of memory");
            dbp__my_op_finish(c, DBP_ENOMEM, &e);
            return;
        }
        dbp__my_start_query(c, DBP__MP_USER);
        return;
    }
    if (op->flags & DBP__OF_PREPARE) { dbp__my_ps_start(c, op); return; }
    dbp__my_text_start(c, op);
}

/* The phases' completions: what happens when the call of a phase returns. */

/* Prepared statements: a statement that failed or ran for an op gone
   (timed out): its connection goes idle through the usual finish. */
static int dbp__my_ps_failed(dbp_conn *c, int during_send)
{
    dbp__my *my = DBP__MY(c);
    unsigned code = mysql_stmt_errno(my->stmt);
    dbp_error e;
    if (dbp__my_err_class(code) != DBP__MYE_SQL) { dbp__my_broken(c, during_send); return 1; }
    dbp__my_stmt_error(c, my->stmt, &e);
    dbp__my_op_finish(c, DBP_ESQL, &e);
    return 1;
}

static int dbp__my_done_sprepare(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    dbp_op *op = my->op;
    if (my->r_int) {
        unsigned code = mysql_stmt_errno(my->stmt);
        if (dbp__my_err_class(code) == DBP__MYE_LOST) { dbp__my_broken(c, 1); return 1; }
        if (code == 1461 && op && dbp__my_ps_evict(c, 1) == 0) return 0;   /* max_prepared_stmt_count: give one back */
        if (code == 1295 || code == 1064) {
            /* not preparable (ER_UNSUPPORTED_PS; several statements, or
               SQL only the text protocol takes): text from now on */
            mysql_stmt_close(my->stmt);
            my->stmts[0].stmt = NULL;
            my->stmts[0].text = 1;
        } else {
            dbp__my_stmt_drop(my, 0);
        }
        my->stmt = NULL;
        if (!op) { dbp__my_op_finish(c, DBP_OK, NULL); return 1; }
        dbp__my_text_start(c, op);                  /* reports the server's error the text way */
        return 1;
    }
    my->stmts[0].ready = 1;
    if (!op) { dbp__my_op_finish(c, DBP_OK, NULL); return 1; }
    if (mysql_stmt_param_count(my->stmt) != op->nparams) {
        /* the server counts the placeholders differently: the text binder decides */
        my->phase = DBP__MY_SCLOSE;
        my->closing = my->stmt;
        my->stmts[0].stmt = NULL;
        my->stmts[0].text = 1;
        my->stmt = NULL;
        my->started = 0;
        return 0;
    }
    return dbp__my_ps_execute(c);
}

static int dbp__my_done_sexec(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    if (my->r_int) return dbp__my_ps_failed(c, 1);
    if (mysql_stmt_field_count(my->stmt) > 0) { my->phase = DBP__MY_SSTORE; return 0; }
    if (my->op && my->purpose == DBP__MP_USER) {
        dbp__result *r = dbp__my_ps_result(c);
        if (!r) {
            dbp_error e;
            dbp__err_set(&e, DBP_ENOMEM, "out of memory storing the result");
            e.sent = 1;
            dbp__my_op_finish(c, DBP_ENOMEM, &e);
            return 1;
        }
        *my->tail = &r->pub;
        my->tail = &r->pub.next;
    }
    my->stmt = NULL;
    dbp__my_op_finish(c, DBP_OK, NULL);
    return 1;
}

static int dbp__my_done_sstore(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    MYSQL_STMT *st = my->stmt;
    if (my->r_int) return dbp__my_ps_failed(c, 0);
    if (my->op && my->purpose == DBP__MP_USER) {
        dbp__result *r = dbp__my_ps_result(c);
        if (!r) {
            dbp_error e;
            mysql_stmt_free_result(st);
            dbp__err_set(&e, DBP_ENOMEM, "out of memory storing the result");
            e.sent = 1;
            dbp__my_op_finish(c, DBP_ENOMEM, &e);
            return 1;
        }
        *my->tail = &r->pub;
        my->tail = &r->pub.next;
    }
    mysql_stmt_free_result(st);
    my->stmt = NULL;
    /* (a CALL runs as text: a prepared statement gives one result set) */
    if (mysql_stmt_more_results(st)) c->flags |= DBP__CF_BROKEN;
    dbp__my_op_finish(c, DBP_OK, NULL);
    return 1;
}

static int dbp__my_done_sclose(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    my->closing = NULL;                             /* freed by the close, whatever it said */
    if (my->r_bool && dbp__my_err_class(mysql_errno(my->m)) == DBP__MYE_LOST) { dbp__my_broken(c, 0); return 1; }
    if (!my->op) { dbp__my_op_finish(c, DBP_OK, NULL); return 1; }
    if (my->stmts && my->nstmts && my->stmts[0].text && !my->stmt && !my->stmts[0].stmt &&
        my->stmts[0].len == my->op->sql_len && memcmp(my->stmts[0].sql, my->op->sql, my->op->sql_len) == 0) {
        dbp__my_text_start(c, my->op);
        return 1;
    }
    return dbp__my_ps_begin(c, my->op);
}

static int dbp__my_done_connect(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    dbp_pool *p = c->pool;
    dbp_error e;
    if (!my->r_conn && my->job && (mysql_errno(my->m) == CR_CONN_HOST_ERROR || mysql_errno(my->m) == CR_CONNECTION_ERROR) &&
        dbp__my_use_addr(c, my->addri + 1)) {
        /* the name has another address: try it, within the same connect deadline */
        my->phase = DBP__MY_CONNECT;
        my->started = 0;
        dbp__my_run(c, 0);
        return 1;
    }
    if (my->job) { dbp__job_release(my->job); my->job = NULL; }
    dbp__timer_clear(p->hub, &c->timer);
    if (!my->r_conn) {
        unsigned code = mysql_errno(my->m);
        int rc = (code == 1045 || code == 1044 || code == 1698 || code == 1251) ? DBP_EAUTH : DBP_ECONNECT;
        dbp__my_error(c, &e, rc, rc == DBP_EAUTH ? "authentication failed" : "could not connect");
        /* errors retrying cannot fix (unknown database, a refused TLS
           handshake or certificate): fail waiting ops at once */
        if (code == 1049 || code == CR_SSL_CONNECTION_ERROR) c->flags |= DBP__CF_FATAL;
        if ((code == 1040 || code == 1203 || code == 1226) && p->nconns - 1 > 0) {
            /* the server is full: use the connections we have, no backoff */
            dbp_error full;
            p->cap = p->nconns - 1;
            dbp__my_error(c, &full, DBP_ECONNECT, "the server refused one more connection");
            dbp__warn(p, "%s; the pool will use at most %d", full.message, p->cap);
            if (p->bk->abort) p->bk->abort(c);
            dbp__conn_bury(c, DBP__CLOSE_DEAD);
            dbp__pool_dispatch(p);
            return 1;
        }
        dbp__conn_failed(c, &e, 1);
        return 1;
    }
    c->fd = (int)mysql_get_socket(my->m);
    c->server_id = mysql_thread_id(my->m);
    if (mysql_get_ssl_cipher(my->m)) c->flags |= DBP__CF_TLS;
    if (!p->s.socket || p->s.host) dbp__socket_keepalive(c->fd, p->s.keepalive);
    snprintf(p->version, sizeof p->version, "%s", mysql_get_server_info(my->m));
    c->state = DBP__CS_INIT;
    {
        int i;
        my->nsteps = 0;
        for (i = 0; i < p->s.ninit; i++) dbp__my_step_add(c, DBP__MS_INIT, i);
        if (!p->limits_read) dbp__my_step_add(c, DBP__MS_LIMITS, 0);
    }
    dbp__my_steps_start(c, DBP__MA_READY);
    return 1;
}

static int dbp__my_done_query(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    dbp_error e;
    if (my->r_int) {
        unsigned code = mysql_errno(my->m);
        if (my->purpose == DBP__MP_STEP) {
            if (my->step_kind == DBP__MS_INIT) {
                char pre[64];
                snprintf(pre, sizeof pre, "init statement %d failed", my->step_arg + 1);
                dbp__my_error(c, &e, DBP_ECONNECT, pre);
                c->flags |= DBP__CF_FATAL; /* a configuration error: retrying will not help */
                dbp__conn_failed(c, &e, 1);
                return 1;
            }
            if (dbp__my_err_class(code) == DBP__MYE_LOST) { dbp__my_broken(c, 0); return 1; }
            if (my->step_kind == DBP__MS_ROLLBACK) { dbp__my_broken(c, 0); return 1; }
            dbp__my_next_step(c);
            return 1;
        }
        if (dbp__my_err_class(code) != DBP__MYE_SQL) {
            dbp__my_broken(c, 1);
            return 1;
        }
        if (my->op) my->op->flags |= DBP__OF_SENT;
        dbp__my_error(c, &e, DBP_ESQL, NULL);
        e.sent = 1;
        dbp__my_op_finish(c, DBP_ESQL, &e);
        return 1;
    }
    if (my->op) my->op->flags |= DBP__OF_SENT;
    if (my->purpose == DBP__MP_USER && my->op && my->op->type == DBP__OP_STREAM && mysql_field_count(my->m) > 0) {
        my->res = mysql_use_result(my->m);
        if (!my->res || dbp__my_stream_begin(c, my->op) != DBP_OK) {
            dbp__err_set(&e, DBP_ENOMEM, "out of memory starting the stream");
            /* its unread rows make the connection unusable: it closes, never handed on */
            c->flags |= DBP__CF_BROKEN;
            dbp__my_op_finish(c, DBP_ENOMEM, &e);
            return 1;
        }
        /* the statement ran: from here only the op's own deadline applies */
        dbp__op_arm(my->op, my->op->deadline);
        dbp__stream_notify(my->op);
        my->phase = DBP__MY_FETCH;
        return 0;
    }
    my->phase = DBP__MY_STORE;
    return 0;
}

static int dbp__my_done_store(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    dbp_error e;
    /* a lost connection resets field_count: the error code is what tells */
    if (!my->r_res && (mysql_errno(my->m) || mysql_field_count(my->m) > 0)) {
        unsigned code = mysql_errno(my->m);
        if (dbp__my_err_class(code) == DBP__MYE_LOST) { dbp__my_broken(c, 0); return 1; }
        if (my->purpose == DBP__MP_STEP) { dbp__my_next_step(c); return 1; }
        dbp__my_error(c, &e, DBP_ESQL, NULL);
        e.sent = 1;
        dbp__my_op_finish(c, DBP_ESQL, &e);
        return 1;
    }
    if (my->purpose == DBP__MP_STEP) {
        if (my->step_kind == DBP__MS_LIMITS) dbp__my_read_limits(c, my->r_res);
        if (my->r_res) mysql_free_result(my->r_res);
    } else if (my->purpose == DBP__MP_DISCARD) {
        if (my->r_res) mysql_free_result(my->r_res);
    } else {
        dbp__result *r = dbp__my_make_result(c, my->r_res);
        if (!r) {
            if (my->r_res) mysql_free_result(my->r_res);
            dbp__err_set(&e, DBP_ENOMEM, "out of memory storing the result");
            e.sent = 1;
            if (mysql_more_results(my->m)) c->flags |= DBP__CF_BROKEN;
            dbp__my_op_finish(c, DBP_ENOMEM, &e);
            return 1;
        }
        *my->tail = &r->pub;
        my->tail = &r->pub.next;
    }
    my->r_res = NULL;
    if (mysql_more_results(my->m)) { my->phase = DBP__MY_NEXT; return 0; }
    if (my->purpose == DBP__MP_STEP) { dbp__my_next_step(c); return 1; }
    if (my->purpose == DBP__MP_DISCARD) { dbp__my_op_finish(c, DBP_OK, NULL); return 1; }
    if (my->op && my->op->type == DBP__OP_STREAM) {
        /* a stream whose statement returned no rows: an empty header */
        dbp_op *op = my->op;
        if (!op->stream) {
            op->stream = DBP__ALLOC(dbp__stream, 1);
            if (op->stream) { op->stream->head = DBP__CAST(dbp__result *, (void *)my->head); my->head = NULL; my->tail = &my->head; op->stream->eof = 1; }
        }
    }
    dbp__my_op_finish(c, DBP_OK, NULL);
    return 1;
}

static int dbp__my_done_next(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    dbp_error e;
    if (my->r_int == 0) { my->phase = DBP__MY_STORE; return 0; }
    if (my->r_int < 0) {
        if (my->purpose == DBP__MP_STEP) { dbp__my_next_step(c); return 1; }
        dbp__my_op_finish(c, DBP_OK, NULL);
        return 1;
    }
    {
        unsigned code = mysql_errno(my->m);
        if (dbp__my_err_class(code) != DBP__MYE_SQL) { dbp__my_broken(c, 0); return 1; }
        if (my->purpose == DBP__MP_STEP) { dbp__my_next_step(c); return 1; }
        dbp__my_error(c, &e, DBP_ESQL, "a later statement failed");
        e.sent = 1;
        dbp__my_op_finish(c, DBP_ESQL, &e);
        return 1;
    }
}

static int dbp__my_done_fetch(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    dbp_error e;
    dbp_op *op = my->op;
    if (!my->r_row) {
        unsigned code = mysql_errno(my->m);
        if (code) {
            if (dbp__my_err_class(code) == DBP__MYE_LOST) {
                my->res = NULL; /* freed with the handle */
                dbp__my_broken(c, 0);
                return 1;
            }
            dbp__my_error(c, &e, DBP_ESQL, "while streaming rows");
            e.sent = 1;
            mysql_free_result(my->res);
            my->res = NULL;
            dbp__my_op_finish(c, DBP_ESQL, &e);
            return 1;
        }
        /* end of rows: no I/O left in freeing the result */
        mysql_free_result(my->res);
        my->res = NULL;
        if (op && op->stream) {
            op->stream->eof = 1;
            op->stream->head->pub.affected_rows = op->stream->total;
            op->stream->head->pub.warning_count = mysql_warning_count(my->m);
            dbp__stream_fix(op->stream);
        }
        if (mysql_more_results(my->m)) {
            /* later result sets of a streamed multi-statement are read and dropped */
            my->purpose = DBP__MP_DISCARD;
            if (op) {
                dbp__conn_unlink_op(c, op);
                my->op = NULL;
                dbp__op_settle(op, DBP_OK);
                dbp__stream_notify(op);
            }
            my->phase = DBP__MY_NEXT;
            return 0;
        }
        if (op) {
            dbp__conn_unlink_op(c, op);
            my->op = NULL;
            dbp__op_settle(op, DBP_OK);
        }
        my->phase = DBP__MY_NONE;
        my->purpose = 0;
        c->events = 0;
        dbp__conn_idle(c);
        return 1;
    }
    if (my->purpose == DBP__MP_DISCARD || !op || (op->flags & DBP__OF_CANCEL)) return 0;
    if (dbp__stream_add_row(op->stream, my->r_row, mysql_fetch_lengths(my->res)) != DBP_OK) {
        dbp__err_set(&e, DBP_ENOMEM, "out of memory buffering streamed rows");
        e.sent = 1;
        dbp__conn_unlink_op(c, op);
        my->op = NULL;
        dbp__op_fail_err(op, &e, DBP_ENOMEM, 1);
        my->purpose = DBP__MP_DISCARD;
        return 0;
    }
    if (op->stream->nrows >= DBP_STREAM_BATCH || op->stream->data.len >= 4u << 20) {
        /* bounded memory: stop reading until the consumer has taken the batch */
        dbp__stream_fix(op->stream);
        op->stream->paused = 1;
        my->phase = DBP__MY_PAUSED;
        c->events = 0;
        dbp__stream_notify(op);
        return 1;
    }
    return 0;
}

static int dbp__my_done_free(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    my->res = NULL;
    my->phase = DBP__MY_NONE;
    if (mysql_more_results(my->m)) { my->purpose = DBP__MP_DISCARD; my->phase = DBP__MY_NEXT; return 0; }
    dbp__my_op_finish(c, DBP_OK, NULL);
    return 1;
}

static int dbp__my_done_ping(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    dbp_pool *p = c->pool;
    dbp_error e;
    if (my->r_int) {
        dbp__my_error(c, &e, DBP_ECONNECT, "ping failed");
        if (my->purpose == DBP__MP_VALIDATE) { dbp__conn_failed(c, &e, 0); return 1; }
        dbp__my_broken(c, 1);
        return 1;
    }
    if (my->purpose == DBP__MP_VALIDATE) {
        my->phase = DBP__MY_NONE;
        my->purpose = 0;
        c->events = 0;
        dbp__timer_clear(p->hub, &c->timer);
        dbp__conn_validated(c);
        return 1;
    }
    dbp__my_op_finish(c, DBP_OK, NULL);
    return 1;
}

static int dbp__my_done_close(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    my->m = NULL; /* mysql_close_cont freed it */
    dbp__conn_closed(c);
    return 1;

}

/* What happens when the call of each phase completes, in the order of the
   phase enum (a phase with nothing to finish has NULL). Each returns 1 to
   stop running, 0 to go on with the phase it set. */
static int (*const dbp__my_done[])(dbp_conn *c) = {
    NULL, /* DBP__MY_NONE */
    dbp__my_done_connect, /* DBP__MY_CONNECT */
    dbp__my_done_query, /* DBP__MY_QUERY */
    dbp__my_done_store, /* DBP__MY_STORE */
    dbp__my_done_next, /* DBP__MY_NEXT */
    dbp__my_done_fetch, /* DBP__MY_FETCH */
    dbp__my_done_free, /* DBP__MY_FREE */
    dbp__my_done_ping, /* DBP__MY_PING */
    dbp__my_done_close, /* DBP__MY_CLOSE */
    NULL, /* DBP__MY_PAUSED */
    NULL, /* DBP__MY_KILLWAIT */
    NULL, /* DBP__MY_HELPER */
    dbp__my_done_sprepare, /* DBP__MY_SPREPARE */
    dbp__my_done_sexec, /* DBP__MY_SEXEC */
    dbp__my_done_sstore, /* DBP__MY_SSTORE */
    dbp__my_done_sclose, /* DBP__MY_SCLOSE */
};

/* What happens when the current call completes. Returns 1 to stop running. */
static int dbp__my_finish(dbp_conn *c)
{
    int phase = DBP__MY(c)->phase;
    if (phase < 0 || phase >= (int)(sizeof dbp__my_done / sizeof dbp__my_done[0]) || !dbp__my_done[phase]) return 1;
    return dbp__my_done[phase](c);
}

/* Drives the current phase as far as it goes without blocking. */
static void dbp__my_run(dbp_conn *c, int ev)
{
    int guard = 0;
    while (c->be && c->state != DBP__CS_DEAD && guard++ < 1000000) {
        dbp__my *my = DBP__MY(c);
        int st;
        if (my->phase == DBP__MY_NONE || my->phase == DBP__MY_PAUSED || my->phase == DBP__MY_KILLWAIT ||
            my->phase == DBP__MY_HELPER) return;
        st = dbp__my_call(c, ev);
        if (st) { dbp__my_wait(c, st); return; }
        ev = 0;
        if (dbp__my_finish(c)) return;
    }
}


static void dbp__my_conn_io(dbp_conn *c, int revents)
{
    dbp__my *my = DBP__MY(c);
    int ev = 0;
    if (!my) return;
    if (revents == DBP__EV_TIMER) {
        dbp_error e;
        if (c->state == DBP__CS_CONNECTING || c->state == DBP__CS_INIT) {
            const char *what = my->phase != DBP__MY_HELPER ? ""
                             : my->m ? "; the host name lookup did not finish"
                             : "; the TLS handshake did not finish";
            dbp__err_set(&e, DBP_ECONNECT, "could not connect to %s within %.1f s (connect_timeout)%s",
                         c->pool->describe, c->pool->s.connect_timeout / 1000.0, what);
            dbp__conn_failed(c, &e, 1);
            return;
        }
        if (c->flags & DBP__CF_KILLING) {
            dbp__err_set(&e, DBP_ETIMEOUT, "the statement did not stop within %.1f s of KILL QUERY; connection closed",
                         (double)(dbp__ms_now() - my->kill_started_ms) / 1000.0);
            dbp__conn_failed(c, &e, 0);
            return;
        }
        if (c->state == DBP__CS_VALIDATING) {
            dbp__err_set(&e, DBP_ETIMEOUT, "validation ping got no answer");
            dbp__conn_failed(c, &e, 0);
            return;
        }
        if (my->started) { dbp__my_run(c, MYSQL_WAIT_TIMEOUT); return; }
        return;
    }
    if (my->phase == DBP__MY_HELPER) {
        dbp__my_helper_done(c);
        return;
    }
    if (c->state == DBP__CS_IDLE && my->phase == DBP__MY_NONE) {
        if (dbp__idle_socket_dead(c, revents)) {
            dbp_error e;
            dbp__err_set(&e, DBP_ECONNECT, "the server closed idle connection %d", c->id);
            dbp__conn_failed(c, &e, 0);
        }
        return;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) ev |= MYSQL_WAIT_READ;
    if (revents & (POLLOUT | POLLHUP | POLLERR)) ev |= MYSQL_WAIT_WRITE;
    if (revents & POLLPRI) ev |= MYSQL_WAIT_EXCEPT;
    dbp__my_run(c, ev);
}

static void dbp__my_kill_done(dbp_op *kop)
{
    dbp_conn *c = kop->target;
    dbp__my *my;
    if (!c || c->state == DBP__CS_DEAD || !c->be) return;
    my = DBP__MY(c);
    if (my->kill_op != kop) return;
    my->kill_op = NULL;
    if (my->phase == DBP__MY_KILLWAIT) {
        my->nsteps = 0;
        dbp__my_step_add(c, DBP__MS_CLEAR_KILL, 0);
        dbp__my_steps_start(c, DBP__MA_IDLE);
    }
}

/* A statement ran past its deadline: reject it now, stop it on the server
   from another connection, keep this connection if it comes back clean. */
static void dbp__my_op_timeout(dbp_conn *c, dbp_op *op)
{
    dbp__my *my = DBP__MY(c);
    double secs = op->t_start ? (double)(dbp__now_us() - op->t_start) / 1e6 : 0;
    if (!my || my->op != op) return;
    dbp__conn_unlink_op(c, op);
    my->op = NULL;
    if (op->type == DBP__OP_STREAM && my->phase == DBP__MY_PAUSED) {
        /* the consumer is slow, not the server: just end the stream */
        op->flags |= DBP__OF_CANCEL;
    }
    if (my->phase == DBP__MY_PAUSED)
        /* the server sent everything it had room for and waits on us: no
           statement runs there, so nothing is killed; the rest is read and dropped */
        dbp__op_fail(op, DBP_ETIMEOUT, 1, "stream ran past its deadline (%.3f s) while paused for its reader; the rest of the result is discarded",
                     secs);
    else
        dbp__op_fail(op, DBP_ETIMEOUT, (op->flags & DBP__OF_SENT) != 0,
                     "%s ran past its deadline (%.3f s); stopped with KILL QUERY on the server",
                     op->type == DBP__OP_PING ? "ping" : "query", secs);
    if (my->phase == DBP__MY_PAUSED) {
        my->purpose = DBP__MP_DISCARD;
        my->phase = DBP__MY_FREE;
        my->started = 0;
        dbp__my_run(c, 0);
        return;
    }
    my->purpose = DBP__MP_DISCARD;
    dbp__conn_kill_query(c, dbp__my_kill_done, &my->kill_op, &my->kill_started_ms);
}

static void dbp__my_validate(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    my->purpose = DBP__MP_VALIDATE;
    my->phase = DBP__MY_PING;
    my->started = 0;
    dbp__timer_set(c->pool->hub, &c->timer, dbp__ms_now() + c->pool->s.connect_timeout);
    dbp__my_run(c, 0);
}

static void dbp__my_quit(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    /* an unread result points into the handle that QUIT would free: close
       without QUIT instead (the abort frees the result first) */
    if (!my || !my->m || my->res) { dbp__conn_closed(c); return; }
    my->phase = DBP__MY_CLOSE;
    my->started = 0;
    dbp__my_run(c, 0);
}

static void dbp__my_release(dbp_conn *c)
{
    dbp__my *my = DBP__MY(c);
    if (my && my->m && (my->m->server_status & SERVER_STATUS_IN_TRANS)) {
        /* a transaction left open by its owner never reaches the next one */
        my->nsteps = 0;
        dbp__my_step_add(c, DBP__MS_ROLLBACK, 0);
        c->state = DBP__CS_BUSY;
        dbp__my_steps_start(c, DBP__MA_RELEASE);
        return;
    }
    dbp__conn_unpin(c);
    dbp__conn_idle(c);
}

/* The stream's caller let it go: read the rest off the wire and drop it. */
static void dbp__my_stream_cancel(dbp_op *op)
{
    dbp_conn *c = op->conn;
    dbp__my *my;
    if (!c || !c->be) return;
    my = DBP__MY(c);
    if (my->op != op || my->phase != DBP__MY_PAUSED) return;
    my->purpose = DBP__MP_DISCARD;
    my->phase = DBP__MY_FREE;
    my->started = 0;
    dbp__my_run(c, 0);
}

/* Streaming consumer side. */
static void dbp__my_stream_resume(dbp_op *op)
{
    dbp_conn *c = op->conn;
    dbp__my *my;
    if (!c || !c->be) return;
    my = DBP__MY(c);
    if (my->phase != DBP__MY_PAUSED) return;
    op->stream->paused = 0;
    my->phase = DBP__MY_FETCH;
    my->started = 0;
    dbp__my_run(c, 0);
}

static unsigned dbp__my_session(const dbp_conn *c)
{
    const dbp__my *my = DBP__CAST(const dbp__my *, c->be);
    return my && my->m && (my->m->server_status & SERVER_STATUS_IN_TRANS) ? DBP_SESSION_TRANSACTION : 0;
}

static const dbp__backend dbp__mysql_backend = {
    "mysql", "mysql mariadb", 3306, DBP__FOR_MYSQL, DBP__BKF_SQL, "utf8mb4", NULL, NULL,
    dbp__my_open, dbp__my_conn_io, dbp__my_op_start, dbp__my_op_timeout, dbp__my_validate,
    dbp__my_quit, dbp__my_abort, NULL, dbp__idle_socket_dead, dbp__my_release, dbp__my_session,
    dbp__my_stream_cancel, dbp__my_stream_resume, 0, NULL, NULL
};
#endif /* DBPOOL_NO_MYSQL */


/* ==== SECTION: MySQL replicas ==== */

/* A MySQL pool opened with `replicas` is a router (as Redis Cluster is):
   its pool has no connection of its own; under it are one ordinary MySQL
   pool for the primary and one per replica (their `parent` is it). Each
   routed query is queued on the router's pool and passed on as a child op
   linked by op->peer, so a replica that fails under it can give the query
   to another node. What goes where:
     - a read (dbp__sql_is_read: SELECT without a locking clause or INTO,
       SHOW, DESCRIBE, EXPLAIN) goes to the usable replica with the least
       outstanding work (queued plus running there), else to the primary;
     - everything else, acquire() (so transactions) and ping() go to the
       primary; dbp_op_options.on overrides for one statement (a statement
       that is not a read is never sent to a replica);
     - a stream runs on the node chosen, as an op of that pool (no failover
       once it started: its rows are read there).
   The router's timer reads each replica's SHOW SLAVE STATUS every second
   while the pool is open (and the hub runs): a replica is usable when both
   threads run and Seconds_Behind_Master <= max_lag. One that fails, stops or
   lags is skipped and read again with backoff (backoff_min doubling up to
   backoff_max), and used again once it is fine. Read your writes: the
   primary's connections track last_gtid (session tracking, see
   dbp__my_track_gtid), the primary pool keeps the newest; a read that asks
   for it first runs SELECT MASTER_GTID_WAIT(gtid, max_lag) on the replica
   chosen and runs on the primary if that does not return 0. A write the
   primary refuses as read-only (1290) makes the router read @@read_only
   there until it is off again, and say so through the event hook. */

#ifndef DBPOOL_NO_MYSQL
#define DBP__REP_PROBE_MS 1000
#define DBP__REP_ER_READ_ONLY 1290   /* ER_OPTION_PREVENTS_STATEMENT (--read-only) */

enum { DBP__RN_UNKNOWN = 0, DBP__RN_OK, DBP__RN_LAGGING, DBP__RN_STOPPED, DBP__RN_DOWN, DBP__RN_READ_ONLY };
static const char *const dbp__rn_names[] = { "unknown", "ok", "lagging", "stopped", "down", "read-only" };

typedef struct dbp__rnode {
    dbp_pool *pool;
    int state;                 /* DBP__RN_* */
    int lag;                   /* seconds behind, -1 unknown */
    int fails;                 /* status reads failed in a row: the backoff */
    long long next_probe;      /* ms */
    dbp_op *probe;             /* the status read under way */
    unsigned long long routed;
    char applied[64];          /* the newest GTID it was seen to have applied */
    dbp_error err;             /* why it is not usable */
} dbp__rnode;

typedef struct dbp__rep {
    dbp__rnode *nodes;         /* [0] is the primary */
    int n;
    int running;               /* child ops and GTID waits under way */
    unsigned rr;
    dbp__timer rtimer;
    dbp_pool *pool;
} dbp__rep;

#define DBP__RP(p) DBP__CAST(dbp__rep *, (p)->rt)

/* ---- what is a read (pure: no I/O, unit-tested) ---- */

/* The upper-cased words of sql outside strings, quoted names and comments,
   one call per word; a ';' followed by more is reported as the word ";". */
static size_t dbp__sql_word(const char *s, size_t len, size_t i, char *w, size_t wn)
{
    size_t k = 0;
    for (;;) {
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '(' ||
                           s[i] == ')' || s[i] == ','))
            i++;
        if (i >= len) { w[0] = '\0'; return i; }
        if (s[i] == '#' || (s[i] == '-' && i + 2 < len + 1 && i + 1 < len && s[i + 1] == '-' &&
                            (i + 2 >= len || s[i + 2] == ' ' || s[i + 2] == '\t' || s[i + 2] == '\n'))) {
            while (i < len && s[i] != '\n') i++;
            continue;
        }
        if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
            if (i + 2 < len && s[i + 2] == '!') { i += 3; while (i < len && s[i] >= '0' && s[i] <= '9') i++; continue; }
            for (i += 2; i + 1 < len && !(s[i] == '*' && s[i + 1] == '/'); i++) ;
            i += 2;
            continue;
        }
        if (s[i] == '*' && i + 1 < len && s[i + 1] == '/') { i += 2; continue; } /* end of a version comment */
        if (s[i] == '\'' || s[i] == '"' || s[i] == '`') {
            char q = s[i++];
            while (i < len && s[i] != q) { if (s[i] == '\\' && q != '`') i++; i++; }
            i++;
            continue;
        }
        if (s[i] == ';') {
            size_t j = i + 1;
            while (j < len && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r' || s[j] == ';')) j++;
            if (j >= len) { w[0] = '\0'; return len; }
            w[0] = ';'; w[1] = '\0';
            return j;
        }
        break;
    }
    while (i < len && (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '@' || s[i] == '$')) {
        if (k + 1 < wn) w[k++] = (char)toupper((unsigned char)s[i]);
        i++;
    }
    if (k == 0) { i++; w[0] = '?'; w[1] = '\0'; return i; }
    w[k] = '\0';
    return i;
}

/* 1 when the statement only reads and may run on a replica: its first word
   is SELECT (or WITH), SHOW, DESCRIBE, DESC or EXPLAIN; a SELECT with FOR
   UPDATE, FOR SHARE, LOCK IN SHARE MODE, INTO (a variable or a file) or a
   named lock (GET_LOCK...) is not, and neither is more than one statement. */
static int dbp__sql_is_read(const char *sql, size_t len)
{
    char w[32], prev[32] = "", prev2[32] = "";
    size_t i = 0;
    int select;
    i = dbp__sql_word(sql, len, i, w, sizeof w);
    if (strcmp(w, "SHOW") == 0 || strcmp(w, "DESCRIBE") == 0 || strcmp(w, "DESC") == 0 || strcmp(w, "EXPLAIN") == 0) {
        select = 0;
    } else if (strcmp(w, "SELECT") == 0 || strcmp(w, "WITH") == 0) {
        select = 1;
    } else {
        return 0;
    }
    while (i < len) {
        memcpy(prev2, prev, sizeof prev);
        memcpy(prev, w, sizeof w);
        i = dbp__sql_word(sql, len, i, w, sizeof w);
        if (!w[0]) break;
        if (w[0] == ';') return 0;
        if (!select) continue;
        if ((strcmp(prev, "FOR") == 0 && (strcmp(w, "UPDATE") == 0 || strcmp(w, "SHARE") == 0)) ||
            (strcmp(prev2, "LOCK") == 0 && strcmp(prev, "IN") == 0 && strcmp(w, "SHARE") == 0) ||
            strcmp(w, "INTO") == 0 || strcmp(w, "GET_LOCK") == 0 || strcmp(w, "RELEASE_LOCK") == 0 ||
            strcmp(w, "RELEASE_ALL_LOCKS") == 0 || strcmp(w, "NEXTVAL") == 0 || strcmp(w, "SETVAL") == 0 ||
            strcmp(w, "LAST_INSERT_ID") == 0)
            return 0;
    }
    return 1;
}

/* ---- nodes ---- */

static void dbp__rep_node_state(dbp_pool *p, int k, int state, int lag, const dbp_error *why)
{
    dbp__rep *rp = DBP__RP(p);
    dbp__rnode *nd = &rp->nodes[k];
    int was = nd->state;
    nd->lag = lag;
    nd->state = state;
    if (state == DBP__RN_OK) dbp__err_clear(&nd->err);
    else if (why) nd->err = *why;
    if (was == state) return;
    if (k == 0) {
        if (state == DBP__RN_READ_ONLY)
            dbp__warn(p, "primary %s:%d is read-only: writes are refused there (never sent to a replica); "
                      "reading @@read_only until it is off", nd->pool->s.host ? nd->pool->s.host : "localhost", nd->pool->s.port);
        else if (was == DBP__RN_READ_ONLY && state == DBP__RN_OK)
            dbp__warn(p, "primary %s:%d accepts writes again", nd->pool->s.host ? nd->pool->s.host : "localhost", nd->pool->s.port);
        return;
    }
    if (state == DBP__RN_OK) {
        if (was != DBP__RN_UNKNOWN)
            dbp__warn(p, "replica %s:%d is usable again (%d s behind): reads go there", nd->pool->s.host, nd->pool->s.port, lag);
    } else if (state == DBP__RN_LAGGING) {
        dbp__warn(p, "replica %s:%d is %d s behind (max_lag %.3f s): reads go elsewhere until it catches up",
                  nd->pool->s.host, nd->pool->s.port, lag, (double)p->s.max_lag / 1000.0);
    } else {
        dbp__warn(p, "replica %s:%d is %s: reads go elsewhere; %s", nd->pool->s.host, nd->pool->s.port,
                  dbp__rn_names[state], nd->err.message);
    }
}

static void dbp__rep_probe_done(dbp_op *op);

/* The delay before reading a failing node's status again. */
static long long dbp__rep_backoff(const dbp_pool *p, int fails)
{
    long long d = p->s.backoff_min;
    int i;
    for (i = 1; i < fails && d < p->s.backoff_max; i++) d *= 2;
    return d > p->s.backoff_max ? p->s.backoff_max : d;
}

/* Reads a node's status: SHOW SLAVE STATUS on a replica, @@read_only on the primary. */
static void dbp__rep_probe(dbp_pool *p, int k)
{
    dbp__rep *rp = DBP__RP(p);
    dbp__rnode *nd = &rp->nodes[k];
    const char *sql = k ? "SHOW SLAVE STATUS" : "SELECT @@read_only";
    dbp_op *op;
    if (nd->probe || nd->pool->state != DBP__PS_OPEN) return;
    op = dbp__query_make(nd->pool, DBP__OP_QUERY, sql, strlen(sql), NULL, 0, NULL);
    if (!op || dbp__op_settled(op)) {
        /* out of memory: try again later */
        if (op) { op->flags &= ~DBP__OF_CALLER; dbp__op_maybe_free(op); }
        nd->next_probe = dbp__ms_now() + dbp__rep_backoff(p, ++nd->fails);
        dbp__timer_min(p->hub, &rp->rtimer, nd->next_probe);
        return;
    }
    op->flags &= ~DBP__OF_CALLER;
    op->owner = p;
    op->done = dbp__rep_probe_done;
    op->deadline = dbp__ms_now() + p->s.connect_timeout + 1000;
    nd->probe = op;
    dbp__pool_submit(nd->pool, op);
}

/* The column named name of a one-row result, NULL when absent or NULL. */
static const dbp_cell *dbp__rep_col(const dbp_result *r, const char *name)
{
    size_t j;
    for (j = 0; r && r->nrows && j < r->ncols; j++)
        if (strcmp(r->fields[j].name, name) == 0) return r->cells[j].data ? &r->cells[j] : NULL;
    return NULL;
}

static void dbp__rep_probe_done(dbp_op *op)
{
    dbp_pool *p = op->owner;
    dbp__rep *rp;
    int k;
    long long now = dbp__ms_now();
    if (!p || !p->rt) return;
    rp = DBP__RP(p);
    for (k = 0; k < rp->n && rp->nodes[k].probe != op; k++) ;
    if (k == rp->n) return;
    rp->nodes[k].probe = NULL;
    if (op->state != DBP_OP_FULFILLED) {
        dbp_error e = op->err;
        rp->nodes[k].fails++;
        rp->nodes[k].next_probe = now + dbp__rep_backoff(p, rp->nodes[k].fails);
        if (k) {
            char m[DBP_ERRMSG_MAX];
            snprintf(m, sizeof m, "reading its status failed: %.200s", op->err.message);
            dbp__err_set(&e, op->err.rc, "%s", m);
            e.code = op->err.code;
            dbp__rep_node_state(p, k, DBP__RN_DOWN, -1, &e);
        } else if (rp->nodes[0].state == DBP__RN_READ_ONLY) {
            rp->nodes[0].next_probe = now + DBP__REP_PROBE_MS;
        }
    } else if (k == 0) {
        const dbp_cell *ro = dbp__rep_col(op->result, "@@read_only");
        rp->nodes[0].fails = 0;
        if (ro && ro->len == 1 && ro->data[0] == '1') {
            dbp_error e;
            dbp__err_set(&e, DBP_ESQL, "the primary runs with read_only = 1");
            e.code = DBP__REP_ER_READ_ONLY;
            dbp__rep_node_state(p, 0, DBP__RN_READ_ONLY, 0, &e);
            rp->nodes[0].next_probe = now + DBP__REP_PROBE_MS;
        } else {
            dbp__rep_node_state(p, 0, DBP__RN_OK, 0, NULL);
        }
    } else {
        const dbp_result *r = op->result;
        const dbp_cell *io = dbp__rep_col(r, "Slave_IO_Running"), *sq = dbp__rep_col(r, "Slave_SQL_Running");
        const dbp_cell *sbm = dbp__rep_col(r, "Seconds_Behind_Master");
        dbp_error e;
        rp->nodes[k].fails = 0;
        rp->nodes[k].next_probe = now + DBP__REP_PROBE_MS;
        dbp__err_clear(&e);
        if (!r || !r->nrows) {
            dbp__err_set(&e, DBP_ESQL, "it does not replicate (SHOW SLAVE STATUS is empty)");
            dbp__rep_node_state(p, k, DBP__RN_STOPPED, -1, &e);
        } else if (!io || !sq || strcmp(io->data, "Yes") != 0 || strcmp(sq->data, "Yes") != 0 || !sbm) {
            dbp__err_set(&e, DBP_ESQL, "replication is stopped (IO thread %s, SQL thread %s)",
                         io ? io->data : "?", sq ? sq->data : "?");
            dbp__rep_node_state(p, k, DBP__RN_STOPPED, -1, &e);
        } else {
            long long lag = strtoll(sbm->data, NULL, 10);
            int l = lag > INT_MAX ? INT_MAX : (int)lag;
            if (p->s.max_lag > 0 && lag * 1000 > p->s.max_lag) {
                dbp__err_set(&e, DBP_ETIMEOUT, "%d s behind the primary (max_lag %.3f s)", l, (double)p->s.max_lag / 1000.0);
                dbp__rep_node_state(p, k, DBP__RN_LAGGING, l, &e);
            } else {
                dbp__rep_node_state(p, k, DBP__RN_OK, l, NULL);
            }
        }
    }
    if (p->state == DBP__PS_OPEN) dbp__timer_min(p->hub, &rp->rtimer, rp->nodes[k].next_probe);
    dbp__pool_check_closed(p);
}

static void dbp__rep_rtimer_fire(dbp__timer *t)
{
    dbp__rep *rp = DBP__CONTAINER(t, dbp__rep, rtimer);
    dbp_pool *p = rp->pool;
    long long now = dbp__ms_now(), next = 0;
    int k;
    if (p->state != DBP__PS_OPEN) return;
    for (k = 0; k < rp->n; k++) {
        dbp__rnode *nd = &rp->nodes[k];
        /* the primary is read only while it refuses writes */
        if (k == 0 && nd->state != DBP__RN_READ_ONLY) continue;
        if (!nd->probe && now >= nd->next_probe) dbp__rep_probe(p, k);
        if (!nd->probe && (!next || nd->next_probe < next)) next = nd->next_probe;
    }
    if (next) dbp__timer_min(p->hub, &rp->rtimer, next);
}

/* A deep copy of the primary's settings for the node at host:port. */
static int dbp__rep_node_settings(dbp__settings *d, const dbp__settings *src, const char *spec, dbp_error *err)
{
    dbp_url u;
    int rc = DBP_OK;
    const char *host = NULL, *user = src->user, *pass = src->password, *db = src->database;
    int port = 0;
    char hb[256];
    memset(&u, 0, sizeof u);
    if (strstr(spec, "://")) {
        if (dbp_url_parse(spec, &u, err) != DBP_OK) return DBP_EURL;
        if (u.nhosts != 1) { dbp_url_free(&u); return dbp__err_set(err, DBP_EURL, "a replica URL names one host"); }
        host = u.hosts[0].host;
        port = u.hosts[0].port;
        if (u.user) { user = u.user; pass = u.password; }
        if (u.database) db = u.database;
    } else {
        const char *c = strrchr(spec, ':');
        size_t n = strlen(spec);
        if (spec[0] == '[') { const char *e = strchr(spec, ']'); c = e && e[1] == ':' ? e + 1 : NULL; }
        if (c) n = (size_t)(c - spec);
        if (n >= sizeof hb) return dbp__err_set(err, DBP_EOPTION, "'%.40s': host name too long", spec);
        memcpy(hb, spec, n);
        hb[n] = '\0';
        if (hb[0] == '[' && n > 1 && hb[n - 1] == ']') { memmove(hb, hb + 1, n - 2); hb[n - 2] = '\0'; }
        host = hb;
        if (c && dbp__parse_count(c + 1, 1, &port)) return dbp__err_set(err, DBP_EOPTION, "'%.40s': bad port", spec);
    }
    *d = *src;
    d->bk = &dbp__mysql_backend;
    d->replicas = NULL; d->nreplicas = 0;
    d->nseeds = 0; d->seed_hosts = NULL; d->seed_ports = NULL;
    d->host = d->user = d->password = d->database = d->socket = d->charset = d->name = NULL;
    d->ssl_ca = d->ssl_cert = d->ssl_key = NULL;
    d->init = NULL; d->ninit = 0;
    if (dbp__settings_str(&d->host, host && *host ? host : NULL, NULL, src->host) ||
        dbp__settings_str(&d->user, user, NULL, NULL) || dbp__settings_str(&d->password, pass, NULL, NULL) ||
        dbp__settings_str(&d->database, db, NULL, NULL) || dbp__settings_str(&d->charset, src->charset, NULL, NULL) ||
        dbp__settings_str(&d->name, src->name, NULL, NULL) || dbp__settings_str(&d->ssl_ca, src->ssl_ca, NULL, NULL) ||
        dbp__settings_str(&d->ssl_cert, src->ssl_cert, NULL, NULL) || dbp__settings_str(&d->ssl_key, src->ssl_key, NULL, NULL))
        rc = dbp__err_set(err, DBP_ENOMEM, "out of memory");
    d->port = port ? port : src->port;
    if (rc == DBP_OK && !spec[0] && dbp__settings_str(&d->socket, src->socket, NULL, NULL)) /* the primary */
        rc = dbp__err_set(err, DBP_ENOMEM, "out of memory");
    if (rc == DBP_OK && src->ninit > 0) {
        int i;
        d->init = DBP__ALLOC(char *, (size_t)src->ninit + 1);
        if (!d->init) rc = dbp__err_set(err, DBP_ENOMEM, "out of memory");
        for (i = 0; rc == DBP_OK && i < src->ninit; i++) {
            if (!(d->init[i] = dbp__strdup(src->init[i]))) rc = dbp__err_set(err, DBP_ENOMEM, "out of memory");
            else d->ninit++;
        }
    }
    dbp_url_free(&u);
    if (rc != DBP_OK) dbp__settings_free(d);
    return rc;
}

static void dbp__rep_free(dbp_pool *p);

static int dbp__rep_open(dbp_pool *p, dbp_error *err)
{
    dbp__rep *rp = DBP__ALLOC(dbp__rep, 1);
    int k;
    static const char track[] =
        "SET SESSION session_track_system_variables = CONCAT_WS(',', NULLIF(@@session_track_system_variables, ''), 'last_gtid')";
    if (!rp || dbp__timers_reserve(p->hub, 1) != DBP_OK) { DBP_FREE(rp); return dbp__err_set(err, DBP_ENOMEM, "out of memory"); }
    rp->nodes = DBP__ALLOC(dbp__rnode, (size_t)p->s.nreplicas + 1);
    p->rt = rp;
    rp->pool = p;
    dbp__timer_init(&rp->rtimer, dbp__rep_rtimer_fire);
    if (!rp->nodes) { dbp__rep_free(p); return dbp__err_set(err, DBP_ENOMEM, "out of memory"); }
    for (k = 0; k <= p->s.nreplicas; k++) {
        dbp__settings s;
        dbp_pool *np;
        dbp_error e;
        if (dbp__rep_node_settings(&s, &p->s, k ? p->s.replicas[k - 1] : "", err) != DBP_OK) {
            if (err && k) {
                char m[DBP_ERRMSG_MAX];
                snprintf(m, sizeof m, "replica %d: %.280s", k, err->message);
                memcpy(err->message, m, sizeof m);
            }
            dbp__rep_free(p);
            return err ? err->rc : DBP_EOPTION;
        }
        if (k == 0) {
            /* the primary tracks last_gtid: read your writes */
            char **in = DBP__CAST(char **, DBP_REALLOC(s.init, ((size_t)s.ninit + 1) * sizeof *in));
            if (!in || !(in[s.ninit] = dbp__strdup(track))) {
                if (in) s.init = in;
                dbp__settings_free(&s);
                dbp__rep_free(p);
                return dbp__err_set(err, DBP_ENOMEM, "out of memory");
            }
            s.init = in;
            s.ninit++;
        }
        np = dbp__pool_make(p->hub, &s, &e);
        if (!np) { dbp__rep_free(p); return dbp__err_set(err, DBP_ENOMEM, "out of memory"); }
        np->parent = p;
        np->fail_fast = k > 0; /* a replica's reads go elsewhere; the primary waits as a plain pool does */
        np->hook = NULL;
        rp->nodes[k].pool = np;
        rp->nodes[k].lag = k ? -1 : 0;
        rp->nodes[k].state = k ? DBP__RN_UNKNOWN : DBP__RN_OK;
        rp->n++;
        if (np->s.min > 0) dbp__pool_maintain(np); /* `min` applies to each node */
    }
    for (k = 1; k < rp->n; k++) dbp__rep_probe(p, k);
    return DBP_OK;
}

static void dbp__rep_free(dbp_pool *p)
{
    dbp__rep *rp = DBP__RP(p);
    int k;
    if (!rp) return;
    dbp__timers_release(p->hub, 1);
    dbp__timer_clear(p->hub, &rp->rtimer);
    for (k = 0; k < rp->n; k++) {
        if (rp->nodes[k].probe) rp->nodes[k].probe->owner = NULL;
        if (rp->nodes[k].pool) dbp__pool_destroy(rp->nodes[k].pool);
    }
    DBP_FREE(rp->nodes);
    DBP_FREE(rp);
    p->rt = NULL;
}

static int dbp__rep_running(const dbp_pool *p) { return DBP__RP(p) ? DBP__RP(p)->running : 0; }
static void dbp__rep_detach(dbp_pool *p) { if (DBP__RP(p) && DBP__RP(p)->running > 0) DBP__RP(p)->running--; }

static int dbp__rep_busy(const dbp_pool *p)
{
    dbp__rep *rp = DBP__RP(p);
    int k;
    if (!rp) return 0;
    if (rp->running) return 1;
    for (k = 0; k < rp->n; k++)
        if (rp->nodes[k].probe || (rp->nodes[k].pool && rp->nodes[k].pool->state != DBP__PS_CLOSED)) return 1;
    return 0;
}

static void dbp__rep_close(dbp_pool *p, int timeout_ms)
{
    dbp__rep *rp = DBP__RP(p);
    int k;
    dbp__timer_clear(p->hub, &rp->rtimer);
    for (k = 0; k < rp->n; k++)
        if (rp->nodes[k].pool->state != DBP__PS_CLOSED) dbp__pool_begin_close(rp->nodes[k].pool, timeout_ms);
}

static const char *dbp__rep_last_error(const dbp_pool *p)
{
    dbp__rep *rp = DBP__RP(p);
    int k;
    for (k = 0; rp && k < rp->n; k++)
        if (rp->nodes[k].pool->last_connect_err.message[0]) return rp->nodes[k].pool->last_connect_err.message;
    return "none";
}

static dbp_pool *dbp__rep_primary(dbp_pool *p) { return DBP__RP(p) ? DBP__RP(p)->nodes[0].pool : NULL; }

static dbp_op *dbp__rep_ping(dbp_pool *p, const dbp_op_options *o) { return dbp_pool_ping(dbp__rep_primary(p), o); }

/* ---- routing ---- */

/* Work waiting and running on a node's pool. */
static int dbp__rep_load(const dbp_pool *np)
{
    int n = np->nqueue;
    dbp__link *l;
    for (l = np->conns.next; l != &np->conns; l = l->next) n += DBP__CONTAINER(l, dbp_conn, link)->nops;
    return n;
}

/* The usable replica with the least outstanding work (ties in turn), -1 none. */
static int dbp__rep_pick(dbp_pool *p)
{
    dbp__rep *rp = DBP__RP(p);
    int k, best = -1, bl = 0, start = (int)(rp->rr++ % (unsigned)(rp->n > 1 ? rp->n - 1 : 1));
    for (k = 0; k < rp->n - 1; k++) {
        int i = 1 + (start + k) % (rp->n - 1), l;
        if (rp->nodes[i].state != DBP__RN_OK || rp->nodes[i].pool->state != DBP__PS_OPEN) continue;
        l = dbp__rep_load(rp->nodes[i].pool);
        if (best < 0 || l < bl) { best = i; bl = l; }
    }
    return best;
}

/* 1 when GTID a is known to include b (same domain, seq at least b's). */
static int dbp__gtid_covers(const char *a, const char *b)
{
    const char *da = strchr(a, '-'), *db = strchr(b, '-');
    if (!a[0] || !da || !db || da - a != db - b || memcmp(a, b, (size_t)(da - a)) != 0) return 0;
    return strtoull(strrchr(a, '-') + 1, NULL, 10) >= strtoull(strrchr(b, '-') + 1, NULL, 10);
}

static void dbp__rep_child_done(dbp_op *child);
static void dbp__rep_wait_done(dbp_op *w);

/* Passes a routed query to node k as a child op (a stream: the op itself). */
static void dbp__rep_send(dbp_pool *p, dbp_op *top, int k)
{
    dbp__rep *rp = DBP__RP(p);
    dbp_pool *np = rp->nodes[k].pool;
    dbp_op *child;
    rp->nodes[k].routed++;
    if (top->type == DBP__OP_STREAM) {
        top->pool = np;
        dbp__pool_submit(np, top);
        dbp__pool_check_closed(p);
        return;
    }
    /* the child has its own copy of the statement (checked again, its
       placeholders noted, in one block): the routed op keeps its own for a
       fail-over, and may be freed while the child still runs */
    {
        dbp_op_options o;
        memset(&o, 0, sizeof o);
        o.idempotent = (top->flags & DBP__OF_IDEMPOTENT) != 0;
        o.prepare = (top->flags & DBP__OF_PREPARE) ? 1 : (top->flags & DBP__OF_NOPREPARE) ? -1 : 0;
        child = dbp__query_make(np, DBP__OP_QUERY, top->sql, top->sql_len, top->params, top->nparams, &o);
    }
    if (!child || dbp__op_settled(child)) {
        if (child) { dbp__op_fail_err(top, &child->err, child->err.rc, 0); child->flags &= ~DBP__OF_CALLER; dbp__op_maybe_free(child); }
        else dbp__op_fail(top, DBP_ENOMEM, 0, "out of memory routing the query");
        return;
    }
    child->flags &= ~DBP__OF_CALLER;
    child->deadline = top->deadline ? top->deadline : top->acquire_deadline;
    child->query_timeout = top->query_timeout;
    child->done = dbp__rep_child_done;
    child->peer = top;
    top->peer = child;
    top->slot = k;                         /* the node it runs on */
    top->state = DBP_OP_RUNNING;
    if (!top->t_start) top->t_start = dbp__now_us();
    dbp__timer_clear(p->hub, &top->timer);
    rp->running++;
    dbp__pool_submit(np, child);
    if (!dbp__op_settled(child) && child->acquire_deadline && child->deadline && child->deadline < child->acquire_deadline)
        child->acquire_deadline = child->deadline;
}

/* Read your writes: wait on replica k for the primary's newest GTID first. */
static void dbp__rep_wait(dbp_pool *p, dbp_op *top, int k, const char *gtid)
{
    dbp__rep *rp = DBP__RP(p);
    dbp_value v[2];
    dbp_op *w;
    long long end;
    v[0] = dbp_v_text(gtid);
    v[1] = dbp_v_double((double)(p->s.max_lag > 0 ? p->s.max_lag : 1000) / 1000.0);
    w = dbp__query_make(rp->nodes[k].pool, DBP__OP_QUERY, "SELECT MASTER_GTID_WAIT(?, ?)", 29, v, 2, NULL);
    if (!w || dbp__op_settled(w)) {
        if (w) { w->flags &= ~DBP__OF_CALLER; dbp__op_maybe_free(w); }
        dbp__rep_send(p, top, 0);
        return;
    }
    w->flags &= ~DBP__OF_CALLER;
    w->done = dbp__rep_wait_done;
    w->peer = top;
    top->peer = w;
    top->slot = k;
    top->state = DBP_OP_RUNNING;
    if (!top->t_start) top->t_start = dbp__now_us();
    dbp__timer_clear(p->hub, &top->timer);
    end = dbp__ms_now() + (p->s.max_lag > 0 ? p->s.max_lag : 1000) + p->s.connect_timeout;
    w->deadline = top->deadline && top->deadline < end ? top->deadline : end;
    rp->running++;
    dbp__pool_submit(rp->nodes[k].pool, w);
}

/* Where a query goes, then on its way. */
static void dbp__rep_route(dbp_pool *p, dbp_op *op)
{
    dbp__rep *rp = DBP__RP(p);
    int read = dbp__sql_is_read(op->sql, op->sql_len), k = -1;
    if ((op->flags & DBP__OF_ON_REPLICA) && !read) {
        dbp__op_fail(op, DBP_EUSAGE, 0, "on = replica: only a read (SELECT without a locking clause, SHOW, DESCRIBE, "
                                        "EXPLAIN) may run on a replica; this statement would run on the primary");
        return;
    }
    if (read && !(op->flags & DBP__OF_ON_PRIMARY)) k = dbp__rep_pick(p);
    if (k > 0 && (p->s.read_your_writes || (op->flags & DBP__OF_RYW))) {
        const char *g = rp->nodes[0].pool->gtid;
        if (g[0] && !dbp__gtid_covers(rp->nodes[k].applied, g)) {
            /* a stream runs as an op of the node's pool: no wait in front of it, so the primary */
            if (op->type == DBP__OP_STREAM) k = 0;
            else { dbp__rep_wait(p, op, k, g); return; }
        }
    }
    dbp__rep_send(p, op, k > 0 ? k : 0);
}

static void dbp__rep_dispatch(dbp_pool *p)
{
    dbp__link *l, *next;
    if (!DBP__RP(p)) return;
    for (l = p->queue.next; l != &p->queue; l = next) {
        dbp_op *op = DBP__CONTAINER(l, dbp_op, link);
        next = l->next;
        dbp__unqueue_op(p, op);
        dbp__rep_route(p, op);
    }
    dbp__pool_check_closed(p);
}

/* A failure of the node rather than of the statement: a read may go elsewhere. */
static int dbp__rep_node_failed(int rc)
{
    return rc == DBP_ECONNECT || rc == DBP_ELOST || rc == DBP_EPROTOCOL || rc == DBP_EAUTH || rc == DBP_ECLOSED;
}

static void dbp__rep_wait_done(dbp_op *w)
{
    dbp_op *top = w->peer;
    dbp_pool *p;
    dbp__rep *rp;
    int k;
    const dbp_cell *c;
    if (!top) return;
    p = top->pool;
    rp = DBP__RP(p);
    k = top->slot;
    rp->running--;
    top->peer = NULL;
    w->peer = NULL;
    if (dbp__op_settled(top)) { dbp__pool_check_closed(p); return; }
    c = w->state == DBP_OP_FULFILLED && w->result && w->result->nrows == 1 ? &w->result->cells[0] : NULL;
    if (c && c->data && strcmp(c->data, "0") == 0) {
        /* caught up: remember how far, so the next read needs no wait */
        if (!dbp__gtid_covers(rp->nodes[k].applied, w->params[0].v.s.data) && w->params[0].v.s.len < sizeof rp->nodes[k].applied)
            memcpy(rp->nodes[k].applied, w->params[0].v.s.data, w->params[0].v.s.len + 1);
        dbp__rep_send(p, top, k);
        return;
    }
    if (w->state == DBP_OP_REJECTED && dbp__rep_node_failed(w->err.rc)) {
        rp->nodes[k].next_probe = dbp__ms_now();
        dbp__rep_node_state(p, k, DBP__RN_DOWN, -1, &w->err);
        dbp__timer_min(p->hub, &rp->rtimer, rp->nodes[k].next_probe + dbp__rep_backoff(p, 1));
    }
    /* not caught up within max_lag (or the wait failed): the primary has the write */
    dbp__rep_send(p, top, 0);
}

static void dbp__rep_child_done(dbp_op *child)
{
    dbp_op *top = child->peer;
    dbp_pool *p;
    dbp__rep *rp;
    int k;
    const dbp_error *e = &child->err;
    if (!top) return;
    p = top->pool;
    rp = DBP__RP(p);
    k = top->slot;
    rp->running--;
    top->peer = NULL;
    child->peer = NULL;
    if (dbp__op_settled(top)) { dbp__pool_check_closed(p); return; }
    if (child->state == DBP_OP_FULFILLED) {
        top->result = child->result;
        child->result = NULL;
        top->flags |= DBP__OF_SENT;
        if (k == 0 && rp->nodes[0].state == DBP__RN_DOWN) dbp__rep_node_state(p, 0, DBP__RN_OK, 0, NULL);
        dbp__op_settle(top, DBP_OK);
        dbp__pool_check_closed(p);
        return;
    }
    if (k > 0 && dbp__rep_node_failed(e->rc) && top->retries < 3 && p->state != DBP__PS_CLOSED) {
        /* the replica failed under a read: reads are safe to run again, elsewhere */
        dbp_error why = *e;
        rp->nodes[k].fails++;
        rp->nodes[k].next_probe = dbp__ms_now() + dbp__rep_backoff(p, rp->nodes[k].fails);
        dbp__rep_node_state(p, k, DBP__RN_DOWN, -1, &why);
        dbp__timer_min(p->hub, &rp->rtimer, rp->nodes[k].next_probe);
        top->retries++;
        dbp__queue_op(p, top, 1);
        dbp__rep_dispatch(p);
        return;
    }
    if (k == 0 && e->code == DBP__REP_ER_READ_ONLY) {
        dbp__rep_node_state(p, 0, DBP__RN_READ_ONLY, 0, e);
        rp->nodes[0].next_probe = dbp__ms_now() + DBP__REP_PROBE_MS;
        dbp__timer_min(p->hub, &rp->rtimer, rp->nodes[0].next_probe);
    } else if (k == 0 && dbp__rep_node_failed(e->rc)) {
        dbp__rep_node_state(p, 0, DBP__RN_DOWN, 0, e);
    }
    dbp__op_fail_err(top, e, e->rc, e->sent);
    dbp__pool_check_closed(p);
}

static int dbp__rep_nodes(const dbp_pool *p, dbp_node_info *out, int max)
{
    dbp__rep *rp = DBP__RP(p);
    int k;
    if (!rp) return 0;
    for (k = 0; out && k < rp->n && k < max; k++) {
        const dbp__rnode *nd = &rp->nodes[k];
        const dbp_pool *np = nd->pool;
        memset(&out[k], 0, sizeof out[k]);
        snprintf(out[k].addr, sizeof out[k].addr, "%s:%d", np->s.host ? np->s.host : "localhost", np->s.port);
        out[k].primary = k == 0;
        if (k) snprintf(out[k].primary_addr, sizeof out[k].primary_addr, "%s", out[0].addr);
        dbp_pool_stats(np, &out[k].stats);
        out[k].lag = nd->lag;
        snprintf(out[k].state, sizeof out[k].state, "%s", dbp__rn_names[nd->state]);
        out[k].routed = nd->routed;
        if (nd->state != DBP__RN_OK) snprintf(out[k].last_error, sizeof out[k].last_error, "%s", nd->err.message);
    }
    return rp->n;
}

/* mysql://user@host:port/db (+N replicas) */
static void dbp__rep_describe(const dbp__settings *s, char *buf, size_t size)
{
    size_t n;
    dbp__describe_host(s, s->database, buf, size);
    n = strlen(buf);
    if (n < size) snprintf(buf + n, size - n, " (+%d replica%s)", s->nreplicas, s->nreplicas == 1 ? "" : "s");
}

static const dbp__router dbp__replicas_router = {
    dbp__rep_open, dbp__rep_free, NULL, dbp__rep_dispatch, dbp__rep_detach,
    dbp__rep_running, dbp__rep_busy, dbp__rep_close, dbp__rep_last_error,
    NULL, dbp__rep_ping, dbp__rep_nodes,
    "a MySQL pool with replicas pins on its primary", dbp__rep_primary
};

/* A router over MySQL pools (the primary, its replicas); chosen by the
   `replicas` option, never by a scheme (see dbp__settings_replicas). */
static const dbp__backend dbp__replicas_backend = {
    "mysql", "", 3306, DBP__FOR_MYSQL, DBP__BKF_SQL | DBP__BKF_REPLICAS, "utf8mb4", NULL, dbp__rep_describe,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, &dbp__replicas_router
};
#endif /* DBPOOL_NO_MYSQL */
#ifndef DBPOOL_NO_PGSQL
/* ==== SECTION: PostgreSQL backend ==== */

/* libpq 15 driven without ever blocking (DESIGN "PostgreSQL"):
   - connect: PQconnectStartParams, then PQconnectPoll on every event of
     PQsocket(), which is read again after every call (libpq may change
     sockets between TLS/GSS attempts); libpq ignores connect_timeout in
     this mode, so the deadline is the engine's connect timer. A host name
     is looked up on a helper thread and libpq gets `hostaddr` (the
     address) with `host` (the name, for verify-full), so libpq's own
     blocking getaddrinfo never runs. gssencmode=disable unless asked: a
     GSS attempt costs a round trip per connect on Debian's libpq.
   - a statement: PQsendQuery (no parameters: the simple protocol, so
     several statements in one string give several results, as on MySQL)
     or PQsendQueryParams ($1..$n sent apart from the SQL as text, a blob
     as binary), then PQflush until it returns 0, consuming input while it
     waits (the server may be blocked sending notices), then
     PQconsumeInput and PQisBusy/PQgetResult drained to NULL before the
     next poll (PQconsumeInput reads at most one buffer).
   - query_timeout: libpq 15's PQcancel blocks, so the query is cancelled
     with SELECT pg_cancel_backend(pid) on another connection of the pool
     (as MySQL's KILL QUERY); the connection waits for that op before it
     is handed out again (a cancel reaching an idle backend is ignored by
     the server, so it cannot hit the next statement).
   - notices go to the pool's hook (DBP_EVENT_NOTICE), never to stderr; a
     FATAL one while idle (pg_terminate_backend) marks the session gone. */

enum { DBP__PG_NONE = 0, DBP__PG_LOOKUP, DBP__PG_CONNECT, DBP__PG_SEND, DBP__PG_READ, DBP__PG_PAUSED,
       DBP__PG_KILLWAIT, DBP__PG_COPY /* COPY FROM STDIN: the op's data goes out */ };
/* what the statement under way is for */
enum { DBP__PP_USER = 1, DBP__PP_STEP, DBP__PP_DISCARD, DBP__PP_VALIDATE, DBP__PP_LISTEN,
       DBP__PP_PREPARE /* PQsendPrepare for the op */, DBP__PP_DEALLOC /* DEALLOCATE of the least used */ };
/* internal statements, and what follows them */
enum { DBP__PGS_INIT = 1, DBP__PGS_LIMITS, DBP__PGS_ROLLBACK };
enum { DBP__PGA_READY = DBP__AFTER_READY, DBP__PGA_IDLE = DBP__AFTER_IDLE, DBP__PGA_RELEASE = DBP__AFTER_RELEASE };

#define DBP__PG_MAX_STEPS 70
#define DBP__PG_OID_BOOL 16
#define DBP__PG_OID_BYTEA 17
#define DBP__PG_OID_INT8 20
#define DBP__PG_OID_INT2 21
#define DBP__PG_OID_INT4 23
#define DBP__PG_OID_OID 26
#define DBP__PG_OID_FLOAT4 700
#define DBP__PG_OID_FLOAT8 701

/* A statement prepared on a connection, as "dbp_<id>". */
typedef struct dbp__pg_stmt { char *sql; unsigned long long used; int id, nparams; } dbp__pg_stmt;

typedef struct dbp__pg {
    PGconn *pg;
    int phase, purpose;
    dbp_op *op;                     /* the user op under way, NULL when discarded */
    dbp_result *head, **tail;       /* result sets of the statement under way */
    int failed;                     /* a result was an error: err (and extra) hold the first */
    dbp_error err;
    char *extra;                    /* its detail, NUL, hint, NUL */
    int lost;                       /* the server ended the session (a FATAL message) */
    int partial;                    /* part of the request may be out (a flush left some, or it was big) */
    int copy_out;                   /* a COPY TO STDOUT is being read and dropped */
    int steps[DBP__PG_MAX_STEPS], nsteps, stepi, step_kind, step_arg, after;
    dbp_op *kill_op;
    long long kill_started_ms;
    dbp__job *job;                  /* the host name's lookup (kept for its other addresses) */
    int addri;
    char addr[INET6_ADDRSTRLEN];
    int listen_from, listen_to;     /* a subscription's LISTEN under way: its names */
    int listen_more;                /* names added meanwhile, from this one (-1 none) */
    dbp__pg_stmt *stmts;            /* prepared on this connection */
    int nstmts, next_stmt;
    unsigned long long use_clock;
} dbp__pg;

#define DBP__PG(c) DBP__CAST(dbp__pg *, (c)->be)

static void dbp__pg_next_step(dbp_conn *c);
static void dbp__pg_drain(dbp_conn *c);
static int dbp__pg_connect_start(dbp_conn *c);
/* (pub/sub, below) */
static int dbp__sub_send(dbp_sub *s, int from);
static void dbp__sub_listened(dbp_conn *c, int from, int to);
static int dbp__sub_notified(dbp_conn *c, const char *ch, const char *payload);

/* ---- pure parts: placeholders, values ---- */

static int dbp__pg_identchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '$' || ch >= 0x80;
}

/* The highest $n of sql, walking it as PostgreSQL's lexer does: '...'
   (E'...' with backslash escapes), "...", $tag$...$tag$, -- and nested
   comments are not code; a '$' inside an identifier (a$1) is not a
   placeholder. `?` is nothing here (jsonb operators use it). */
static size_t dbp__pg_count_params(const char *sql, size_t len)
{
    size_t i = 0, max = 0;
    while (i < len) {
        unsigned char ch = (unsigned char)sql[i];
        if (ch == '\'') {
            int esc = i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') &&
                      (i < 2 || !dbp__pg_identchar((unsigned char)sql[i - 2]));
            i++;
            while (i < len) {
                if (esc && sql[i] == '\\') { i += 2; continue; }
                if (sql[i] == '\'') {
                    if (i + 1 < len && sql[i + 1] == '\'') { i += 2; continue; }
                    break;
                }
                i++;
            }
            i++;
        } else if (ch == '"') {
            i++;
            while (i < len && sql[i] != '"') i++;
            i++;
        } else if (ch == '-' && i + 1 < len && sql[i + 1] == '-') {
            while (i < len && sql[i] != '\n') i++;
        } else if (ch == '/' && i + 1 < len && sql[i + 1] == '*') {
            int depth = 1;
            i += 2;
            while (i < len && depth > 0) {
                if (sql[i] == '/' && i + 1 < len && sql[i + 1] == '*') { depth++; i += 2; }
                else if (sql[i] == '*' && i + 1 < len && sql[i + 1] == '/') { depth--; i += 2; }
                else i++;
            }
        } else if (ch == '$') {
            size_t j = i + 1;
            if (i > 0 && dbp__pg_identchar((unsigned char)sql[i - 1])) { i++; continue; }
            if (j < len && sql[j] >= '0' && sql[j] <= '9') {
                size_t n = 0;
                while (j < len && sql[j] >= '0' && sql[j] <= '9') {
                    if (n < 1000000) n = n * 10 + (size_t)(sql[j] - '0');
                    j++;
                }
                if (n > max) max = n;
                i = j;
                continue;
            }
            while (j < len && dbp__pg_identchar((unsigned char)sql[j]) && sql[j] != '$') j++;
            if (j < len && sql[j] == '$') {
                /* a dollar-quoted string: up to the same tag */
                size_t taglen = j - i + 1, k = j + 1;
                while (k + taglen <= len && memcmp(sql + k, sql + i, taglen) != 0) k++;
                i = k + taglen <= len ? k + taglen : len;
                continue;
            }
            i++;
        } else if (dbp__pg_identchar(ch)) {
            while (i < len && dbp__pg_identchar((unsigned char)sql[i])) i++;
        } else {
            i++;
        }
    }
    return max;
}

/* Before anything is sent: $n against the values, and values PostgreSQL
   can take (text cannot hold a NUL byte: that is a blob, bytea). */
static int dbp__pg_check_params(const char *sql, size_t len, const dbp_value *params, size_t n, dbp_error *err)
{
    size_t want, i;
    if (memchr(sql, '\0', len)) return dbp__err_set(err, DBP_EPARAM, "the SQL text contains a NUL byte");
    if (n > DBP_MAX_PARAMS)
        return dbp__err_set(err, DBP_EPARAM, "too many parameters (%lu, at most %d)", (unsigned long)n, DBP_MAX_PARAMS);
    want = dbp__pg_count_params(sql, len);
    if (want != n) {
        char uses[48];
        if (!want) snprintf(uses, sizeof uses, "has no $n placeholder");
        else if (want == 1) snprintf(uses, sizeof uses, "uses $1");
        else snprintf(uses, sizeof uses, "uses $1..$%lu", (unsigned long)want);
        return dbp__err_set(err, DBP_EPARAM, "the statement %s but %lu parameter%s given", uses, (unsigned long)n,
                            n == 1 ? " was" : "s were");
    }
    for (i = 0; i < n; i++) {
        switch (params[i].type) {
        case DBP_NULL: case DBP_BOOL: case DBP_INT: case DBP_UINT: break;
        case DBP_DOUBLE:
            if (isnan(params[i].v.d) || isinf(params[i].v.d))
                return dbp__err_set(err, DBP_EPARAM, "parameter %lu is %s: pass it as text ('NaN', 'Infinity') if meant",
                                    (unsigned long)i + 1, isnan(params[i].v.d) ? "NaN" : "infinite");
            break;
        case DBP_TEXT:
            if (!params[i].v.s.data && params[i].v.s.len)
                return dbp__err_set(err, DBP_EPARAM, "parameter %lu has no data", (unsigned long)i + 1);
            if (params[i].v.s.len && memchr(params[i].v.s.data, '\0', params[i].v.s.len))
                return dbp__err_set(err, DBP_EPARAM, "parameter %lu is text with a NUL byte, which PostgreSQL text cannot "
                                    "hold; pass it as a blob (bytea)", (unsigned long)i + 1);
            break;
        case DBP_BLOB:
            if (!params[i].v.s.data && params[i].v.s.len)
                return dbp__err_set(err, DBP_EPARAM, "parameter %lu has no data", (unsigned long)i + 1);
            break;
        default:
            return dbp__err_set(err, DBP_EPARAM, "parameter %lu has an unknown type %d", (unsigned long)i + 1,
                                (int)params[i].type);
        }
    }
    return DBP_OK;
}

/* How a column's cells read (dbp_field.vtype), from the type's OID. */
static dbp_type dbp__pg_vtype(Oid t)
{
    switch (t) {
    case DBP__PG_OID_BOOL: return DBP_BOOL;
    case DBP__PG_OID_INT2: case DBP__PG_OID_INT4: case DBP__PG_OID_INT8: case DBP__PG_OID_OID: return DBP_INT;
    case DBP__PG_OID_FLOAT4: case DBP__PG_OID_FLOAT8: return DBP_DOUBLE;
    case DBP__PG_OID_BYTEA: return DBP_BLOB;
    default: return DBP_TEXT; /* numeric stays exact text, as DECIMAL on MySQL */
    }
}

/* bytea's text form ("\x4142", or the old escape form) into bytes; out
   has room for len bytes. Returns the length written. */
static size_t dbp__pg_unbytea(const char *s, size_t len, char *out)
{
    size_t i, o = 0;
    if (len >= 2 && s[0] == '\\' && s[1] == 'x') {
        for (i = 2; i + 1 < len; i += 2) {
            int h = dbp__hexval((unsigned char)s[i]), l = dbp__hexval((unsigned char)s[i + 1]);
            if (h < 0 || l < 0) break;
            out[o++] = (char)(h * 16 + l);
        }
        return o;
    }
    for (i = 0; i < len; i++) {
        if (s[i] == '\\' && i + 1 < len && s[i + 1] == '\\') { out[o++] = '\\'; i++; }
        else if (s[i] == '\\' && i + 3 < len && s[i + 1] >= '0' && s[i + 1] <= '3') {
            out[o++] = (char)(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0'));
            i += 3;
        } else out[o++] = s[i];
    }
    return o;
}

/* ---- errors ---- */

/* libpq's own messages end in a newline and may span lines: one line. */
static void dbp__pg_oneline(char *m)
{
    char *p;
    for (p = m; *p; p++) if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    while (p > m && p[-1] == ' ') *--p = '\0';
}

/* A server error from a result into e (kind sql), its detail and hint into *extra. */
static void dbp__pg_result_error(dbp_conn *c, const PGresult *res, dbp_error *e, char **extra)
{
    dbp__pg *pg = DBP__PG(c);
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
    if (!msg || !*msg) msg = PQresultErrorMessage(res);
    if ((!msg || !*msg) && pg && pg->pg) msg = PQerrorMessage(pg->pg);
    e->rc = DBP_ESQL;
    e->code = 0;
    e->sent = 1;
    snprintf(e->sqlstate, sizeof e->sqlstate, "%s", st ? st : "");
    snprintf(e->message, sizeof e->message, "%s", msg && *msg ? msg : "unknown error");
    dbp__pg_oneline(e->message);
    if (c->pool->s.password) dbp__err_scrub(e, c->pool->s.password);
    if (extra && ((detail && *detail) || (hint && *hint))) {
        size_t dl = detail ? strlen(detail) : 0, hl = hint ? strlen(hint) : 0;
        char *x = DBP__CAST(char *, DBP_MALLOC(dl + hl + 2));
        if (x) {
            if (dl) memcpy(x, detail, dl);
            x[dl] = '\0';
            if (hl) memcpy(x + dl + 1, hint, hl);
            x[dl + 1 + hl] = '\0';
            DBP_FREE(*extra);
            *extra = x;
        }
    }
}

/* SQLSTATEs after which the session is over: admin shutdown, crash,
   cannot connect now, idle (in transaction) session timeout, class 08. */
static int dbp__pg_state_fatal(const char *st)
{
    return st && (strncmp(st, "57P", 3) == 0 || strcmp(st, "25P03") == 0 || strncmp(st, "08", 2) == 0);
}

/* Notices (and errors the server sends while no statement runs) from
   libpq: to the hook, never to stderr. */
static void dbp__pg_notice(void *arg, const PGresult *res)
{
    dbp_conn *c = DBP__CAST(dbp_conn *, arg);
    dbp__pg *pg = c ? DBP__PG(c) : NULL;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char line[DBP_ERRMSG_MAX];
    if (!c || !pg) return;
    if (!sev) sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
    if (!msg) msg = PQresultErrorMessage(res);
    if (sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)) {
        pg->lost = 1;
        if (!pg->failed) {
            pg->failed = 1;
            dbp__pg_result_error(c, res, &pg->err, NULL);
        }
    }
    snprintf(line, sizeof line, "%s: %s", sev ? sev : "NOTICE", msg ? msg : "");
    dbp__pg_oneline(line);
    dbp__emit(c->pool, DBP_EVENT_NOTICE, line, NULL, 0, c);
}

static void dbp__pg_notice_drop(void *arg, const PGresult *res) { DBP__UNUSED(arg); DBP__UNUSED(res); }

/* ---- connect ---- */

static int dbp__pg_tcp(const dbp__settings *s) { return !(s->socket && !s->host); }

static const char *dbp__pg_sslmode(int m)
{
    switch (m) {
    case DBP__SSL_DISABLED: return "disable";
    case DBP__SSL_PREFERRED: return "prefer";
    case DBP__SSL_REQUIRED: return "require";
    case DBP__SSL_VERIFY_CA: return "verify-ca";
    case DBP__SSL_VERIFY_IDENTITY: return "verify-full";
    default: return NULL; /* libpq's default (prefer) */
    }
}

static int dbp__pg_connect_start(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    const dbp__settings *s = &c->pool->s;
    const char *k[24], *v[24];
    char port[16];
    int n = 0;
    const char *host = s->host ? s->host : "localhost";
#define DBP__PG_KV(key, val) do { if (val) { k[n] = key; v[n] = val; n++; } } while (0)
    snprintf(port, sizeof port, "%d", s->port);
    if (!dbp__pg_tcp(s)) {
        DBP__PG_KV("host", s->socket);
    } else {
        DBP__PG_KV("host", host);
        /* libpq looks up `host` with a blocking getaddrinfo unless hostaddr is given */
        DBP__PG_KV("hostaddr", pg->job ? pg->addr : host);
    }
    k[n] = "port"; v[n] = port; n++;
    DBP__PG_KV("user", s->user);
    DBP__PG_KV("password", s->password);
    DBP__PG_KV("dbname", s->database);
    DBP__PG_KV("client_encoding", s->charset);
    DBP__PG_KV("application_name", s->name);
    DBP__PG_KV("gssencmode", s->gssencmode);
    DBP__PG_KV("sslmode", dbp__pg_sslmode(s->ssl_mode));
    DBP__PG_KV("sslrootcert", s->ssl_ca);
    DBP__PG_KV("sslcert", s->ssl_cert);
    DBP__PG_KV("sslkey", s->ssl_key);
#undef DBP__PG_KV
    k[n] = NULL;
    v[n] = NULL;
    pg->pg = PQconnectStartParams(k, v, 0);
    if (!pg->pg) return dbp__err_set(&c->err, DBP_ENOMEM, "out of memory (PQconnectStartParams)");
    PQsetNoticeReceiver(pg->pg, dbp__pg_notice, c);
    if (PQstatus(pg->pg) == CONNECTION_BAD) {
        dbp__err_set(&c->err, DBP_ECONNECT, "could not connect: %s", PQerrorMessage(pg->pg));
        dbp__pg_oneline(c->err.message);
        if (strstr(c->err.message, "invalid") || strstr(c->err.message, "unrecognized")) c->flags |= DBP__CF_FATAL;
        return DBP_ECONNECT;
    }
    pg->phase = DBP__PG_CONNECT;
    c->state = DBP__CS_CONNECTING;
    /* "just after PQconnectStart, behave as if it last returned PGRES_POLLING_WRITING" */
    c->fd = PQsocket(pg->pg);
    c->events = POLLOUT;
    return DBP_OK;
}

/* Points the connect at the lookup's address number i. */
static int dbp__pg_use_addr(dbp_conn *c, int i)
{
    dbp__pg *pg = DBP__PG(c);
    const dbp__job *j = pg->job;
    if (i >= j->naddr || getnameinfo(DBP__CAST(const struct sockaddr *, (const void *)&j->addr[i]), j->addrlen[i],
                                     pg->addr, sizeof pg->addr, NULL, 0, NI_NUMERICHOST) != 0)
        return 0;
    pg->addri = i;
    return 1;
}

static void dbp__pg_steps_start(dbp_conn *c, int after)
{
    dbp__pg *pg = DBP__PG(c);
    pg->after = after;
    pg->stepi = 0;
    dbp__pg_next_step(c);
}

static void dbp__pg_step_add(dbp_conn *c, int kind, int arg)
{
    dbp__pg *pg = DBP__PG(c);
    if (pg->nsteps < DBP__PG_MAX_STEPS) pg->steps[pg->nsteps++] = kind | (arg << 8);
}

static void dbp__pg_connected(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    dbp_pool *p = c->pool;
    const char *ver;
    int i;
    if (pg->job) { dbp__job_release(pg->job); pg->job = NULL; }
    dbp__timer_clear(p->hub, &c->timer);
    PQsetnonblocking(pg->pg, 1);
    c->fd = PQsocket(pg->pg);
    c->events = 0;
    c->server_id = (unsigned long long)PQbackendPID(pg->pg);
    if (PQsslInUse(pg->pg)) c->flags |= DBP__CF_TLS;
    if (dbp__pg_tcp(&p->s)) dbp__socket_keepalive(c->fd, p->s.keepalive);
    ver = PQparameterStatus(pg->pg, "server_version");
    snprintf(p->version, sizeof p->version, "%s", ver ? ver : "");
    c->state = DBP__CS_INIT;
    pg->phase = DBP__PG_NONE;
    pg->nsteps = 0;
    for (i = 0; i < p->s.ninit; i++) dbp__pg_step_add(c, DBP__PGS_INIT, i);
    if (!p->limits_read) dbp__pg_step_add(c, DBP__PGS_LIMITS, 0);
    dbp__pg_steps_start(c, DBP__PGA_READY);
}

static void dbp__pg_connect_failed(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    dbp_pool *p = c->pool;
    dbp_error e;
    char msg[DBP_ERRMSG_MAX];
    int rc;
    snprintf(msg, sizeof msg, "%s", pg->pg ? PQerrorMessage(pg->pg) : "");
    {
        /* libpq adds a line per attempt (sslmode=prefer retries without TLS): the first says it */
        char *nl = strchr(msg, '\n');
        if (nl && nl[1] && strncmp(msg, nl + 1, (size_t)(nl - msg)) == 0) *nl = '\0';
    }
    dbp__pg_oneline(msg);
    if (pg->job && (strstr(msg, "Connection refused") || strstr(msg, "No route") || strstr(msg, "unreachable")) &&
        dbp__pg_use_addr(c, pg->addri + 1)) {
        /* the name has another address: try it, within the same connect deadline */
        PQfinish(pg->pg);
        pg->pg = NULL;
        if (dbp__pg_connect_start(c) != DBP_OK) { e = c->err; dbp__conn_failed(c, &e, 1); }
        return;
    }
    rc = strstr(msg, "authentication failed") || strstr(msg, "no password supplied") || strstr(msg, "pg_hba.conf") ||
         strstr(msg, "password is required") ? DBP_EAUTH : DBP_ECONNECT;
    dbp__err_set(&e, rc, "%s: %s", rc == DBP_EAUTH ? "authentication failed" : "could not connect", msg);
    /* errors retrying cannot fix: an unknown database or role, a refused
       TLS handshake or certificate */
    if (strstr(msg, "does not exist") || strstr(msg, "certificate") || strstr(msg, "SSL") || strstr(msg, "ssl"))
        c->flags |= DBP__CF_FATAL;
    if ((strstr(msg, "too many clients") || strstr(msg, "remaining connection slots") ||
         strstr(msg, "too many connections")) && p->nconns - 1 > 0) {
        /* the server is full: use the connections we have, no backoff */
        p->cap = p->nconns - 1;
        dbp__warn(p, "the server refused one more connection (%s); the pool will use at most %d", msg, p->cap);
        if (p->bk->abort) p->bk->abort(c);
        dbp__conn_bury(c, DBP__CLOSE_DEAD);
        dbp__pool_dispatch(p);
        return;
    }
    dbp__conn_failed(c, &e, 1);
}

/* One round of PQconnectPoll per event, socket re-read after each call. */
static void dbp__pg_connect_poll(dbp_conn *c)
{
    int guard = 0;
    while (c->be && guard++ < 100) {
        dbp__pg *pg = DBP__PG(c);
        PostgresPollingStatusType st = PQconnectPoll(pg->pg);
        c->fd = PQsocket(pg->pg);
        switch (st) {
        case PGRES_POLLING_READING: c->events = POLLIN; return;
        case PGRES_POLLING_WRITING: c->events = POLLOUT; return;
        case PGRES_POLLING_OK: dbp__pg_connected(c); return;
        case PGRES_POLLING_FAILED: dbp__pg_connect_failed(c); return;
        default: break; /* (PGRES_POLLING_ACTIVE) call again */
        }
    }
}

/* The helper thread's lookup finished: connect to its first address. */
static void dbp__pg_helper_done(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    dbp__job *j = pg->job;
    dbp_error e;
    if (!dbp__job_done(j)) return;
    c->fd = -1;
    c->events = 0;
    dbp__err_clear(&e);
    if (dbp__lookup_result(j, &e) != DBP_OK || !dbp__pg_use_addr(c, 0)) {
        if (e.rc == DBP_OK) dbp__err_set(&e, DBP_ECONNECT, "cannot use the address of host '%.100s'", j->host);
        dbp__conn_failed(c, &e, 1);
        return;
    }
    if (dbp__pg_connect_start(c) != DBP_OK) {
        e = c->err;
        dbp__conn_failed(c, &e, 1);
    }
}

static int dbp__pg_open(dbp_conn *c)
{
    dbp__pg *pg = DBP__ALLOC(dbp__pg, 1);
    const dbp__settings *s = &c->pool->s;
    const char *host = s->host ? s->host : "localhost";
    if (!pg) return dbp__err_set(&c->err, DBP_ENOMEM, "out of memory");
    c->be = pg;
    pg->tail = &pg->head;
    pg->listen_more = -1;
    c->state = DBP__CS_CONNECTING;
    if (dbp__pg_tcp(s) && !dbp__host_is_literal(host)) {
        pg->job = dbp__lookup_start(host, s->port, &c->err);
        if (!pg->job) return c->err.rc;
        pg->phase = DBP__PG_LOOKUP;
        c->fd = pg->job->rfd;
        c->events = POLLIN;
        return DBP_OK;
    }
    return dbp__pg_connect_start(c);
}

/* Closes without waiting and frees the backend state. */
static void dbp__pg_abort(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    if (!pg) return;
    if (pg->job) {
        dbp__job_release(pg->job);
        pg->job = NULL;
    }
    if (pg->pg) {
        PQsetNoticeReceiver(pg->pg, dbp__pg_notice_drop, NULL);
        PQfinish(pg->pg);
        pg->pg = NULL;
    }
    if (pg->kill_op) {
        /* the connection it was to rescue is gone: a cancel still queued is withdrawn */
        dbp_op *k = pg->kill_op;
        k->target = NULL;
        pg->kill_op = NULL;
        if (k->state == DBP_OP_QUEUED && dbp__linked(&k->link) && !k->pin) {
            dbp__unqueue_op(k->pool, k);
            dbp__op_fail(k, DBP_ECANCELLED, 0, "the connection to rescue was closed");
        }
    }
    {
        int i;
        for (i = 0; i < pg->nstmts; i++) DBP_FREE(pg->stmts[i].sql);
        DBP_FREE(pg->stmts);
    }
    dbp_result_free(pg->head);
    DBP_FREE(pg->extra);
    DBP_FREE(pg);
    c->be = NULL;
    c->fd = -1;
    c->events = 0;
}

/* ---- statements ---- */

/* The connection is gone under a statement (or between statements). */
static void dbp__pg_broken(dbp_conn *c, int never_sent)
{
    dbp__pg *pg = DBP__PG(c);
    dbp_error e;
    dbp_op *op = pg->op;
    char msg[DBP_ERRMSG_MAX];
    if (pg->lost && pg->failed) snprintf(msg, sizeof msg, "%s", pg->err.message);
    else snprintf(msg, sizeof msg, "%s", pg->pg ? PQerrorMessage(pg->pg) : "");
    dbp__pg_oneline(msg);
    dbp__err_set(&e, DBP_ECONNECT, "connection lost: %s", *msg ? msg : "the server closed the connection");
    if (op && never_sent) op->flags &= ~DBP__OF_SENT;
    pg->op = NULL;
    dbp__conn_failed(c, &e, c->state == DBP__CS_INIT);
}

/* The values of a statement's parameters as libpq takes them: text (a
   number printed, the shortest double that reads back the same), a blob as
   binary (bytea). One block holds the arrays and the printed numbers; the
   caller frees it. *bytes grows by the values' size. NULL on OOM. */
typedef struct dbp__pg_args { const char **vals; int *lens, *fmts; } dbp__pg_args;

static char *dbp__pg_args_make(const dbp_value *params, size_t n, dbp__pg_args *a, size_t *bytes)
{
    size_t i;
    char *block = DBP__CAST(char *, DBP_MALLOC(n * (sizeof(char *) + 2 * sizeof(int) + 32) + 1));
    char *nums;
    if (!block) return NULL;
    a->vals = DBP__CAST(const char **, (void *)block);
    a->lens = DBP__CAST(int *, (void *)(block + n * sizeof(char *)));
    a->fmts = a->lens + n;
    nums = DBP__CAST(char *, (void *)(a->fmts + n));
    for (i = 0; i < n; i++) {
        const dbp_value *v = &params[i];
        char *num = nums + i * 32;
        a->lens[i] = 0;
        a->fmts[i] = 0;
        switch (v->type) {
        case DBP_NULL: a->vals[i] = NULL; break;
        case DBP_BOOL: a->vals[i] = v->v.b ? "t" : "f"; break;
        case DBP_INT: snprintf(num, 32, "%lld", v->v.i); a->vals[i] = num; break;
        case DBP_UINT: snprintf(num, 32, "%llu", v->v.u); a->vals[i] = num; break;
        case DBP_DOUBLE: {
            int prec;
            for (prec = 15; prec <= 17; prec++) {
                snprintf(num, 32, "%.*g", prec, v->v.d);
                if (strtod(num, NULL) == v->v.d) break;
            }
            a->vals[i] = num;
            break;
        }
        case DBP_BLOB:
            a->vals[i] = v->v.s.data ? v->v.s.data : "";
            a->lens[i] = (int)v->v.s.len;
            a->fmts[i] = 1;
            *bytes += v->v.s.len;
            break;
        default: /* text, NUL-terminated by the op's copy of its values */
            a->vals[i] = v->v.s.data ? v->v.s.data : "";
            *bytes += v->v.s.len;
            break;
        }
    }
    return block;
}

/* Sends a statement: the simple protocol without parameters (several
   statements allowed), else PQsendQueryParams; or, with name, the prepared
   statement of that name. 1 sent, 0 refused by libpq, -1 out of memory. */
static int dbp__pg_send_any(dbp_conn *c, const char *name, const char *sql, const dbp_value *params, size_t n, int single)
{
    dbp__pg *pg = DBP__PG(c);
    size_t bytes = sql ? strlen(sql) : 0;
    int ok;
    if (!name && !n) {
        ok = PQsendQuery(pg->pg, sql);
    } else {
        dbp__pg_args a;
        char *block = dbp__pg_args_make(params, n, &a, &bytes);
        if (!block) return -1;
        ok = name ? PQsendQueryPrepared(pg->pg, name, (int)n, a.vals, a.lens, a.fmts, 0)
                  : PQsendQueryParams(pg->pg, sql, (int)n, NULL, a.vals, a.lens, a.fmts, 0);
        DBP_FREE(block);
    }
    if (ok && single) PQsetSingleRowMode(pg->pg);
    /* libpq writes out a request of 8 kB or more while queueing it */
    pg->partial = bytes >= 8000;
    return ok ? 1 : 0;
}

static int dbp__pg_send(dbp_conn *c, const char *sql, const dbp_value *params, size_t n, int single)
{
    return dbp__pg_send_any(c, NULL, sql, params, n, single);
}

static int dbp__pg_send_prepared(dbp_conn *c, const char *name, const dbp_value *params, size_t n, int single)
{
    return dbp__pg_send_any(c, name, NULL, params, n, single);
}

/* Flushes the request; then waits for its results. */
static void dbp__pg_flush(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    int r = PQflush(pg->pg);
    if (r < 0) { dbp__pg_broken(c, !pg->partial); return; }
    if (r > 0) {
        pg->partial = 1;
        c->events = POLLIN | POLLOUT;
        return;
    }
    pg->phase = DBP__PG_READ;
    c->events = POLLIN;
    dbp__pg_drain(c);
}

/* A statement was queued by libpq: from here the server may run it. */
static void dbp__pg_started(dbp_conn *c, int purpose)
{
    dbp__pg *pg = DBP__PG(c);
    pg->purpose = purpose;
    pg->failed = 0;
    pg->copy_out = 0;
    if (purpose == DBP__PP_USER && pg->op) pg->op->flags |= DBP__OF_SENT;
    pg->phase = DBP__PG_SEND;
    dbp__pg_flush(c);
}

/* Runs the next internal statement, or moves on when there are none left. */
static void dbp__pg_next_step(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    const dbp__settings *s = &c->pool->s;
    const char *sql = "";
    if (pg->stepi >= pg->nsteps) {
        int after = pg->after;
        pg->nsteps = pg->stepi = 0;
        pg->phase = DBP__PG_NONE;
        pg->purpose = 0;
        c->events = 0;
        dbp__conn_steps_done(c, after);
        return;
    }
    pg->step_kind = pg->steps[pg->stepi] & 0xff;
    pg->step_arg = pg->steps[pg->stepi] >> 8;
    pg->stepi++;
    switch (pg->step_kind) {
    case DBP__PGS_INIT: sql = s->init[pg->step_arg]; break;
    case DBP__PGS_LIMITS:
        sql = "SELECT (SELECT setting FROM pg_settings WHERE name = 'max_connections'), "
              "(SELECT setting FROM pg_settings WHERE name = 'idle_session_timeout'), "
              "(SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user)";
        break;
    case DBP__PGS_ROLLBACK: sql = "ROLLBACK"; break;
    default: break;
    }
    if (dbp__pg_send(c, sql, NULL, 0, 0) != 1) { dbp__pg_broken(c, 1); return; }
    dbp__pg_started(c, DBP__PP_STEP);
}

/* The server's limits, read once per pool. */
static void dbp__pg_read_limits(dbp_conn *c, const PGresult *res)
{
    dbp_pool *p = c->pool;
    long long idle_ms, conns, role;
    if (PQntuples(res) < 1 || PQnfields(res) < 3) return;
    p->limits_read = 1;
    conns = PQgetisnull(res, 0, 0) ? -1 : atoll(PQgetvalue(res, 0, 0));
    idle_ms = PQgetisnull(res, 0, 1) ? -1 : atoll(PQgetvalue(res, 0, 1));
    role = PQgetisnull(res, 0, 2) ? -1 : atoll(PQgetvalue(res, 0, 2));
    dbp__pool_limit(p, DBP__LIMIT_IDLE, idle_ms > 0 ? (idle_ms + 999) / 1000 : 0, "idle_session_timeout");
    dbp__pool_limit(p, DBP__LIMIT_CONNS, conns, "max_connections");
    dbp__pool_limit(p, DBP__LIMIT_USER_CONNS, role >= 0 ? role : 0, "rolconnlimit");
}

/* A result set, copied into one block (bytea decoded), so that nothing of
   libpq's outlives the PGresult. */
static dbp__result *dbp__pg_make_result(const PGresult *res)
{
    size_t nf = (size_t)PQnfields(res), nr = (size_t)PQntuples(res), bytes, i, j, text = 0;
    const char *status = PQcmdStatus(DBP__CAST(PGresult *, res));
    const char *tuples = PQcmdTuples(DBP__CAST(PGresult *, res));
    size_t statuslen = status ? strlen(status) : 0;
    dbp__result *r;
    char *block, *w;
    if (nf && nr > ((size_t)-1 / 4) / nf / sizeof(dbp_cell)) return NULL;
    for (i = 0; i < nf; i++) text += strlen(PQfname(res, (int)i)) + 1;
    for (j = 0; j < nr; j++)
        for (i = 0; i < nf; i++)
            if (!PQgetisnull(res, (int)j, (int)i)) text += (size_t)PQgetlength(res, (int)j, (int)i) + 1;
    bytes = sizeof(dbp__result) + nf * sizeof(dbp_field) + nr * nf * sizeof(dbp_cell) + text + statuslen + 1;
    block = DBP__CAST(char *, dbp__calloc(1, bytes));
    if (!block) return NULL;
    r = DBP__CAST(dbp__result *, (void *)block);
    r->single = 1;
    r->fields = DBP__CAST(dbp_field *, (void *)(block + sizeof(dbp__result)));
    r->cells = DBP__CAST(dbp_cell *, (void *)(block + sizeof(dbp__result) + nf * sizeof(dbp_field)));
    r->arena = block + sizeof(dbp__result) + nf * sizeof(dbp_field) + nr * nf * sizeof(dbp_cell);
    w = r->arena;
    if (statuslen) memcpy(w, status, statuslen);
    w[statuslen] = '\0';
    r->pub.info = w;
    w += statuslen + 1;
    for (i = 0; i < nf; i++) {
        const char *name = PQfname(res, (int)i);
        size_t n = strlen(name);
        Oid t = PQftype(res, (int)i);
        memcpy(w, name, n + 1);
        r->fields[i].name = w;
        r->fields[i].name_len = n;
        r->fields[i].type = (int)t;
        r->fields[i].charsetnr = t == DBP__PG_OID_BYTEA ? 63 : 0;
        r->fields[i].vtype = dbp__pg_vtype(t);
        w += n + 1;
    }
    for (j = 0; j < nr; j++)
        for (i = 0; i < nf; i++) {
            dbp_cell *cell = &r->cells[j * nf + i];
            const char *v;
            size_t n;
            if (PQgetisnull(res, (int)j, (int)i)) continue;
            v = PQgetvalue(res, (int)j, (int)i);
            n = (size_t)PQgetlength(res, (int)j, (int)i);
            if (r->fields[i].vtype == DBP_BLOB) n = dbp__pg_unbytea(v, n, w);
            else memcpy(w, v, n);
            w[n] = '\0';
            cell->data = w;
            cell->len = n;
            w += n + 1;
        }
    r->pub.ncols = nf;
    r->pub.nrows = nr;
    r->pub.fields = nf ? r->fields : NULL;
    r->pub.cells = nr && nf ? r->cells : NULL;
    r->pub.affected_rows = tuples && *tuples ? strtoull(tuples, NULL, 10) : 0;
    return r;
}

/* The header of a stream (column descriptions, copied) from its first result. */
static int dbp__pg_stream_begin(dbp_op *op, const PGresult *res)
{
    dbp__stream *s = DBP__ALLOC(dbp__stream, 1);
    dbp__result *r;
    size_t nf = (size_t)PQnfields(res), i, bytes = 1, off = 0;
    if (!s) return DBP_ENOMEM;
    op->stream = s;
    s->ncols = nf;
    r = DBP__ALLOC(dbp__result, 1);
    if (!r) return DBP_ENOMEM;
    s->head = r;
    for (i = 0; i < nf; i++) bytes += strlen(PQfname(res, (int)i)) + 1;
    r->arena = DBP__CAST(char *, DBP_MALLOC(bytes));
    r->fields = DBP__ALLOC(dbp_field, nf ? nf : 1);
    if (!r->arena || !r->fields) return DBP_ENOMEM;
    for (i = 0; i < nf; i++) {
        const char *name = PQfname(res, (int)i);
        size_t n = strlen(name);
        Oid t = PQftype(res, (int)i);
        memcpy(r->arena + off, name, n + 1);
        r->fields[i].name = r->arena + off;
        r->fields[i].name_len = n;
        r->fields[i].type = (int)t;
        r->fields[i].charsetnr = t == DBP__PG_OID_BYTEA ? 63 : 0;
        r->fields[i].vtype = dbp__pg_vtype(t);
        off += n + 1;
    }
    r->arena[off] = '\0';
    r->pub.info = r->arena + off;
    r->pub.ncols = nf;
    r->pub.fields = r->fields;
    return DBP_OK;
}

/* Streaming: copies the one row of a single-row result into the batch. */
static int dbp__pg_stream_add_row(dbp__stream *s, const PGresult *res)
{
    size_t i, base;
    if (s->nrows == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        dbp_cell *p;
        if (cap > (size_t)-1 / (s->ncols ? s->ncols : 1) / sizeof(dbp_cell)) return DBP_ENOMEM;
        p = DBP__CAST(dbp_cell *, DBP_REALLOC(s->rows, cap * (s->ncols ? s->ncols : 1) * sizeof(dbp_cell)));
        if (!p) return DBP_ENOMEM;
        s->rows = p;
        s->cap = cap;
    }
    base = s->nrows * s->ncols;
    for (i = 0; i < s->ncols; i++) {
        const char *v;
        size_t n;
        if (PQgetisnull(res, 0, (int)i)) { s->rows[base + i].data = NULL; s->rows[base + i].len = 0; continue; }
        v = PQgetvalue(res, 0, (int)i);
        n = (size_t)PQgetlength(res, 0, (int)i);
        if (dbp__buf_reserve(&s->data, n + 1)) return DBP_ENOMEM;
        /* offsets now, pointers once the batch is complete (the buffer may move) */
        s->rows[base + i].data = DBP__CAST(const char *, (void *)(size_t)(s->data.len + 1));
        if (s->head->fields[i].vtype == DBP_BLOB) n = dbp__pg_unbytea(v, n, s->data.data + s->data.len);
        else memcpy(s->data.data + s->data.len, v, n);
        s->data.len += n;
        s->data.data[s->data.len++] = '\0';
        s->rows[base + i].len = n;
    }
    s->nrows++;
    s->total++;
    return DBP_OK;
}

/* The user op under way is done: settle it, free the connection. */
static void dbp__pg_op_finish(dbp_conn *c, int rc, const dbp_error *e)
{
    dbp__pg *pg = DBP__PG(c);
    dbp_op *op = pg->op;
    pg->op = NULL;
    pg->phase = DBP__PG_NONE;
    pg->purpose = 0;
    c->events = 0;
    if (op) {
        dbp__conn_unlink_op(c, op);
        if (rc == DBP_OK) {
            op->result = pg->head;
            pg->head = NULL;
            dbp__op_settle(op, DBP_OK);
        } else {
            if (pg->extra) {
                DBP_FREE(op->err_extra);
                op->err_extra = pg->extra;
                pg->extra = NULL;
            }
            dbp__op_fail_err(op, e, rc, (op->flags & DBP__OF_SENT) != 0);
        }
    }
    dbp_result_free(pg->head);
    pg->head = NULL;
    pg->tail = &pg->head;
    DBP_FREE(pg->extra);
    pg->extra = NULL;
    pg->failed = 0;
    if (c->flags & DBP__CF_KILLING) {
        /* the cancelled statement has ended: wait for the cancel itself */
        if (pg->kill_op) { pg->phase = DBP__PG_KILLWAIT; return; }
        c->flags &= ~DBP__CF_KILLING;
        dbp__timer_clear(c->pool->hub, &c->timer);
    }
    dbp__conn_idle(c);
}

/* One result of the statement under way. Returns 1 to stop draining. */
static int dbp__pg_result(dbp_conn *c, PGresult *res)
{
    dbp__pg *pg = DBP__PG(c);
    dbp_op *op = pg->op;
    ExecStatusType st = PQresultStatus(res);
    int user = pg->purpose == DBP__PP_USER && op && !(op->flags & DBP__OF_CANCEL) && !dbp__op_settled(op);
    switch (st) {
    case PGRES_SINGLE_TUPLE:
        if (!user || pg->failed) break;
        if (!op->stream && dbp__pg_stream_begin(op, res) != DBP_OK) goto nomem;
        if (!op->stream->nrows && !op->stream->total) {
            /* the statement ran: from here only the op's own deadline applies */
            dbp__op_arm(op, op->deadline);
            dbp__stream_notify(op);
        }
        if (dbp__pg_stream_add_row(op->stream, res) != DBP_OK) goto nomem;
        if (op->stream->nrows >= DBP_STREAM_BATCH || op->stream->data.len >= 4u << 20) {
            /* bounded memory: stop reading until the consumer has taken the batch */
            dbp__stream_fix(op->stream);
            op->stream->paused = 1;
            pg->phase = DBP__PG_PAUSED;
            c->events = 0;
            dbp__stream_notify(op);
            PQclear(res);
            return 1;
        }
        break;
    case PGRES_TUPLES_OK: case PGRES_COMMAND_OK: case PGRES_EMPTY_QUERY:
        if (pg->failed) break;
        if (pg->purpose == DBP__PP_STEP && pg->step_kind == DBP__PGS_LIMITS) {
            dbp__pg_read_limits(c, res);
        } else if (user && op->type == DBP__OP_STREAM) {
            if (!op->stream || !op->stream->eof) {
                if (!op->stream && dbp__pg_stream_begin(op, res) != DBP_OK) goto nomem;
                op->stream->eof = 1;
                op->stream->head->pub.affected_rows = op->stream->total;
                dbp__stream_fix(op->stream);
            }
        } else if (user) {
            dbp__result *r = dbp__pg_make_result(res);
            if (!r) goto nomem;
            *pg->tail = &r->pub;
            pg->tail = &r->pub.next;
        }
        break;
    case PGRES_COPY_IN:
        if (user && op->type == DBP__OP_COPY && op->copy && !pg->failed) {
            /* the server takes the data now: from the next flush on */
            pg->phase = DBP__PG_COPY;
            c->events = POLLIN | POLLOUT;
            PQclear(res);
            return 1;
        }
        /* the server waits for data nobody will send: end it with an error */
        PQputCopyEnd(pg->pg, "COPY FROM STDIN needs pool:load(), not query()");
        if (PQflush(pg->pg) > 0) c->events = POLLIN | POLLOUT;
        break;
    case PGRES_COPY_OUT:
        pg->copy_out = 1;
        if (!pg->failed) {
            pg->failed = 1;
            dbp__err_set(&pg->err, DBP_EUSAGE, "COPY TO STDOUT is not supported by query(); its data was discarded");
            pg->err.sent = 1;
        }
        break;
    default:
        if (!pg->failed) {
            pg->failed = 1;
            dbp__pg_result_error(c, res, &pg->err, &pg->extra);
            if (st == PGRES_BAD_RESPONSE) { pg->err.rc = DBP_EPROTOCOL; pg->lost = 1; }
        }
        if (dbp__pg_state_fatal(PQresultErrorField(res, PG_DIAG_SQLSTATE))) pg->lost = 1;
        break;
    }
    PQclear(res);
    return 0;
nomem:
    PQclear(res);
    if (!pg->failed) {
        pg->failed = 1;
        dbp__err_set(&pg->err, DBP_ENOMEM, "out of memory storing the result");
        pg->err.sent = 1;
    }
    return 0;
}

/* Every result of the statement arrived (PQgetResult gave NULL). */
static void dbp__pg_listen_done(dbp_conn *c);
static void dbp__pg_prepared_done(dbp_conn *c);

static void dbp__pg_done(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    PGnotify *n;
    if (pg->lost || PQstatus(pg->pg) == CONNECTION_BAD) { dbp__pg_broken(c, 0); return; }
    if (pg->purpose == DBP__PP_LISTEN) { dbp__pg_listen_done(c); return; }
    if (pg->purpose == DBP__PP_PREPARE || pg->purpose == DBP__PP_DEALLOC) { dbp__pg_prepared_done(c); return; }
    while ((n = PQnotifies(pg->pg)) != NULL) PQfreemem(n);
    switch (pg->purpose) {
    case DBP__PP_STEP:
        if (pg->failed && pg->step_kind == DBP__PGS_INIT) {
            dbp_error e;
            dbp__err_set(&e, DBP_ECONNECT, "init statement %d failed: %s", pg->step_arg + 1, pg->err.message);
            c->flags |= DBP__CF_FATAL; /* a configuration error: retrying will not help */
            dbp__conn_failed(c, &e, 1);
            return;
        }
        if (pg->failed && pg->step_kind == DBP__PGS_ROLLBACK) { dbp__pg_broken(c, 0); return; }
        pg->failed = 0;
        dbp__pg_next_step(c);
        return;
    case DBP__PP_VALIDATE:
        pg->phase = DBP__PG_NONE;
        pg->purpose = 0;
        c->events = 0;
        dbp__timer_clear(c->pool->hub, &c->timer);
        if (pg->failed) { dbp_error e = pg->err; e.rc = DBP_ECONNECT; dbp__conn_failed(c, &e, 0); return; }
        dbp__conn_validated(c);
        return;
    default:
        if (pg->failed) dbp__pg_op_finish(c, pg->err.rc, &pg->err);
        else dbp__pg_op_finish(c, DBP_OK, NULL);
        return;
    }
}

/* Takes every result libpq can give without waiting. */
static void dbp__pg_drain(dbp_conn *c)
{
    int guard = 0;
    while (c->be && c->state != DBP__CS_DEAD && guard++ < 10000000) {
        dbp__pg *pg = DBP__PG(c);
        PGresult *res;
        if (pg->phase != DBP__PG_READ) return;
        if (pg->copy_out) {
            char *buf = NULL;
            int r = PQgetCopyData(pg->pg, &buf, 1);
            if (buf) PQfreemem(buf);
            if (r > 0) continue;
            if (r == 0) { c->events = POLLIN; return; }
            pg->copy_out = 0;
            continue;
        }
        if (PQisBusy(pg->pg)) {
            if (!(c->events & POLLOUT)) c->events = POLLIN;
            return;
        }
        res = PQgetResult(pg->pg);
        if (!res) { dbp__pg_done(c); return; }
        if (dbp__pg_result(c, res)) return;
    }
}

/* ---- prepared statements: per connection, least recently used dropped ---- */

static int dbp__pg_stmt_find(dbp__pg *pg, const char *sql)
{
    int i;
    for (i = 0; i < pg->nstmts; i++) if (strcmp(pg->stmts[i].sql, sql) == 0) return i;
    return -1;
}

/* Runs the op's statement prepared: at once when this connection has it,
   else DEALLOCATE the least used one if the cache is full, then prepare it. */
static void dbp__pg_prepared_start(dbp_conn *c, dbp_op *op)
{
    dbp__pg *pg = DBP__PG(c);
    int i = dbp__pg_stmt_find(pg, op->sql), ok;
    char name[32], sql[64];
    if (i >= 0) {
        pg->stmts[i].used = ++pg->use_clock;
        snprintf(name, sizeof name, "dbp_%d", pg->stmts[i].id);
        ok = dbp__pg_send_prepared(c, name, op->params, op->nparams, op->type == DBP__OP_STREAM);
        if (ok < 0) {
            dbp_error e;
            dbp__err_set(&e, DBP_ENOMEM, "out of memory binding parameters");
            dbp__pg_op_finish(c, DBP_ENOMEM, &e);
            return;
        }
        if (!ok) { dbp__pg_broken(c, 1); return; }
        dbp__pg_started(c, DBP__PP_USER);
        return;
    }
    if (pg->nstmts >= c->pool->s.prepare_cache && pg->nstmts > 0) {
        int lru = 0, k;
        for (k = 1; k < pg->nstmts; k++) if (pg->stmts[k].used < pg->stmts[lru].used) lru = k;
        snprintf(sql, sizeof sql, "DEALLOCATE dbp_%d", pg->stmts[lru].id);
        DBP_FREE(pg->stmts[lru].sql);
        pg->stmts[lru] = pg->stmts[--pg->nstmts];
        if (!PQsendQuery(pg->pg, sql)) { dbp__pg_broken(c, 1); return; }
        dbp__pg_started(c, DBP__PP_DEALLOC);
        return;
    }
    snprintf(name, sizeof name, "dbp_%d", ++pg->next_stmt);
    if (!PQsendPrepare(pg->pg, name, op->sql, (int)op->nparams, NULL)) { dbp__pg_broken(c, 1); return; }
    dbp__pg_started(c, DBP__PP_PREPARE);
}

/* The prepare (or the DEALLOCATE before it) finished. */
static void dbp__pg_prepared_done(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    dbp_op *op = pg->op;
    if (pg->purpose == DBP__PP_PREPARE && !pg->failed && op) {
        dbp__pg_stmt *st = DBP__CAST(dbp__pg_stmt *, DBP_REALLOC(pg->stmts, (size_t)(pg->nstmts + 1) * sizeof *pg->stmts));
        char *sql = dbp__strdup(op->sql);
        if (st) pg->stmts = st;
        if (st && sql) {
            pg->stmts[pg->nstmts].sql = sql;
            pg->stmts[pg->nstmts].id = pg->next_stmt;
            pg->stmts[pg->nstmts].nparams = (int)op->nparams;
            pg->stmts[pg->nstmts].used = ++pg->use_clock;
            pg->nstmts++;
        } else {
            DBP_FREE(sql); /* (not cached: prepared again next time, under a new name) */
        }
    }
    if (pg->failed) {
        /* the statement could not be prepared (a syntax error): nothing ran */
        dbp__pg_op_finish(c, pg->err.rc, &pg->err);
        return;
    }
    pg->failed = 0;
    if (!op) { dbp__pg_op_finish(c, DBP_OK, NULL); return; }
    if (pg->purpose == DBP__PP_DEALLOC || dbp__pg_stmt_find(pg, op->sql) < 0) {
        /* room was made (or caching failed): prepare, or run it unprepared */
        if (pg->purpose == DBP__PP_DEALLOC) { dbp__pg_prepared_start(c, op); return; }
        if (dbp__pg_send(c, op->sql, op->params, op->nparams, op->type == DBP__OP_STREAM) != 1) { dbp__pg_broken(c, 1); return; }
        dbp__pg_started(c, DBP__PP_USER);
        return;
    }
    dbp__pg_prepared_start(c, op);
}

static void dbp__pg_op_start(dbp_conn *c, dbp_op *op)
{
    dbp__pg *pg = DBP__PG(c);
    char kill[64];
    int ok;
    pg->op = op;
    pg->failed = 0;
    if (op->type == DBP__OP_PING) {
        ok = dbp__pg_send(c, "", NULL, 0, 0);
    } else if (op->type == DBP__OP_KILL) {
        snprintf(kill, sizeof kill, "SELECT pg_cancel_backend(%llu)", op->kill_id);
        ok = dbp__pg_send(c, kill, NULL, 0, 0);
    } else if ((op->type == DBP__OP_QUERY || op->type == DBP__OP_STREAM) && !(op->flags & DBP__OF_NOPREPARE) &&
               ((op->flags & DBP__OF_PREPARE) || (c->pool->s.prepare > 0 && op->nparams > 0))) {
        dbp__pg_prepared_start(c, op);
        return;
    } else {
        ok = dbp__pg_send(c, op->sql, op->params, op->nparams, op->type == DBP__OP_STREAM);
    }
    if (ok != 1) {
        dbp_error e;
        if (ok < 0) {
            dbp__err_set(&e, DBP_ENOMEM, "out of memory binding parameters");
            dbp__pg_op_finish(c, DBP_ENOMEM, &e);
            return;
        }
        /* libpq refused to queue it: the connection is not usable */
        dbp__pg_broken(c, 1);
        return;
    }
    dbp__pg_started(c, DBP__PP_USER);
}

/* COPY: hands the op's buffered data to libpq as far as it takes it, then
   the end of the data once the caller ended it (or let go of the op). */
static void dbp__pg_copy_push(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    dbp_op *op = pg->op;
    dbp__copy *cp = op ? op->copy : NULL;
    int r;
    if (!cp) {
        /* the op was settled under it (a timeout): end the copy, read what follows */
        r = PQputCopyEnd(pg->pg, "abandoned");
        if (r < 0) { dbp__pg_broken(c, 0); return; }
        if (r == 0) { c->events = POLLIN | POLLOUT; return; }
        pg->phase = DBP__PG_SEND;
        dbp__pg_flush(c);
        return;
    }
    /* a chunk at a time, each once libpq has written the last out: libpq
       would otherwise take it all and grow its own buffer without bound */
    for (;;) {
        size_t n = cp->buf.len - cp->buf.off;
        r = PQflush(pg->pg);
        if (r < 0) { dbp__pg_broken(c, 0); return; }
        if (r > 0) { c->events = POLLIN | POLLOUT; return; }
        if (!n) break;
        if (n > 65536) n = 65536;
        r = PQputCopyData(pg->pg, cp->buf.data + cp->buf.off, (int)n);
        if (r < 0) { dbp__pg_broken(c, 0); return; }
        if (r == 0) { c->events = POLLIN | POLLOUT; return; } /* libpq's buffer is full: not an error */
        cp->buf.off += n;
    }
    cp->buf.len = cp->buf.off = 0;
    if (!cp->end && !(op->flags & DBP__OF_CALLER)) {
        cp->end = 1;
        DBP_FREE(cp->abort_msg);
        cp->abort_msg = dbp__strdup("the caller let go of the COPY before its end");
    }
    if (cp->end) {
        r = PQputCopyEnd(pg->pg, cp->abort_msg);
        if (r < 0) { dbp__pg_broken(c, 0); return; }
        if (r == 0) { c->events = POLLIN | POLLOUT; return; }
        /* PQputCopyEnd may only queue the end: flush, then read the result */
        pg->phase = DBP__PG_SEND;
        dbp__pg_flush(c);
        return;
    }
    c->events = POLLIN;
}

/* ---- LISTEN/NOTIFY: a subscription's connection ---- */

/* LISTEN to names [from, n) (the subscription's, quoted as identifiers: a
   channel is the exact string, as pg_notify() takes it). */
static int dbp__pg_listen(dbp_conn *c, const char *const *names, int from, int n)
{
    dbp__pg *pg = DBP__PG(c);
    dbp__buf sql;
    int i, ok;
    if (from >= n) return DBP_OK;
    if (pg->phase != DBP__PG_NONE) {
        /* a LISTEN is under way: these follow it */
        if (pg->listen_more < 0 || from < pg->listen_more) pg->listen_more = from;
        return DBP_OK;
    }
    memset(&sql, 0, sizeof sql);
    for (i = from; i < n; i++) {
        const char *p;
        if (dbp__buf_adds(&sql, "LISTEN \"")) goto nomem;
        for (p = names[i]; *p; p++)
            if (dbp__buf_add(&sql, p, 1) || (*p == '"' && dbp__buf_add(&sql, p, 1))) goto nomem;
        if (dbp__buf_adds(&sql, "\"; ")) goto nomem;
    }
    ok = PQsendQuery(pg->pg, sql.data);
    dbp__buf_free(&sql);
    if (!ok) return DBP_ECONNECT;
    pg->listen_from = from;
    pg->listen_to = n;
    dbp__pg_started(c, DBP__PP_LISTEN);
    return DBP_OK;
nomem:
    dbp__buf_free(&sql);
    return DBP_ENOMEM;
}

/* Hands every notification libpq has parsed to the subscription. */
static void dbp__pg_sub_read(dbp_conn *c)
{
    PGnotify *n;
    while (c->be && c->state != DBP__CS_DEAD && (n = PQnotifies(DBP__PG(c)->pg)) != NULL) {
        int go_on = dbp__sub_notified(c, n->relname, n->extra ? n->extra : "");
        PQfreemem(n);
        if (!go_on) return;
    }
    if (c->be && c->state != DBP__CS_DEAD && (DBP__PG(c)->lost || PQstatus(DBP__PG(c)->pg) == CONNECTION_BAD))
        dbp__pg_broken(c, 0);
}

static void dbp__pg_listen_done(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    int from = pg->listen_from, to = pg->listen_to, failed = pg->failed;
    pg->phase = DBP__PG_NONE;
    pg->purpose = 0;
    pg->failed = 0;
    c->events = POLLIN; /* notifications come whenever */
    if (failed) dbp__warn(c->pool, "LISTEN failed: %s", pg->err.message);
    else dbp__sub_listened(c, from, to);
    if (!c->be || c->state == DBP__CS_DEAD) return;
    pg = DBP__PG(c);
    if (pg->listen_more >= 0 && c->sub) {
        int more = pg->listen_more;
        pg->listen_more = -1;
        if (dbp__sub_send(c->sub, more) != DBP_OK) {
            dbp_error e;
            dbp__err_set(&e, DBP_ECONNECT, "LISTEN could not be sent");
            dbp__conn_failed(c, &e, 0);
            return;
        }
        if (!c->be || DBP__PG(c)->phase != DBP__PG_NONE) return;
    }
    dbp__pg_sub_read(c);
}

/* Before each poll: a COPY in progress sends what was put since. */
static void dbp__pg_hub_flush(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    if (pg && pg->phase == DBP__PG_COPY) dbp__pg_copy_push(c);
}

static void dbp__pg_conn_io(dbp_conn *c, int revents)
{
    dbp__pg *pg = DBP__PG(c);
    dbp_error e;
    if (!pg) return;
    if (revents == DBP__EV_TIMER) {
        if (c->state == DBP__CS_CONNECTING || c->state == DBP__CS_INIT) {
            dbp__err_set(&e, DBP_ECONNECT, "could not connect to %s within %.1f s (connect_timeout)%s",
                         c->pool->describe, c->pool->s.connect_timeout / 1000.0,
                         pg->phase == DBP__PG_LOOKUP ? "; the host name lookup did not finish" : "");
            dbp__conn_failed(c, &e, 1);
        } else if (c->flags & DBP__CF_KILLING) {
            dbp__err_set(&e, DBP_ETIMEOUT, "the statement did not stop within %.1f s of pg_cancel_backend; connection closed",
                         (double)(dbp__ms_now() - pg->kill_started_ms) / 1000.0);
            dbp__conn_failed(c, &e, 0);
        } else if (c->state == DBP__CS_VALIDATING) {
            dbp__err_set(&e, DBP_ETIMEOUT, "validation ping got no answer");
            dbp__conn_failed(c, &e, 0);
        }
        return;
    }
    switch (pg->phase) {
    case DBP__PG_LOOKUP: dbp__pg_helper_done(c); return;
    case DBP__PG_CONNECT: dbp__pg_connect_poll(c); return;
    case DBP__PG_SEND:
        if ((revents & (POLLIN | POLLHUP | POLLERR)) && !PQconsumeInput(pg->pg)) { dbp__pg_broken(c, !pg->partial); return; }
        dbp__pg_flush(c);
        return;
    case DBP__PG_COPY:
        /* the server speaks during COPY only to fail it: read, the end shows the error */
        if ((revents & (POLLIN | POLLHUP | POLLERR)) && !PQconsumeInput(pg->pg)) { dbp__pg_broken(c, 0); return; }
        dbp__pg_copy_push(c);
        return;
    case DBP__PG_NONE:
        if (c->sub && (revents & (POLLIN | POLLHUP | POLLERR))) {
            if (!PQconsumeInput(pg->pg)) { dbp__pg_broken(c, 0); return; }
            dbp__pg_sub_read(c);
        }
        return;
    case DBP__PG_READ:
        if (revents & POLLOUT) {
            /* the end of a refused COPY still going out */
            int r = PQflush(pg->pg);
            if (r < 0) { dbp__pg_broken(c, 0); return; }
            c->events = r > 0 ? POLLIN | POLLOUT : POLLIN;
        }
        if ((revents & (POLLIN | POLLHUP | POLLERR)) && !PQconsumeInput(pg->pg)) { dbp__pg_broken(c, 0); return; }
        dbp__pg_drain(c);
        return;
    default:
        return;
    }
}

/* An idle connection: whatever arrived is read; a FATAL message (the
   backend was terminated) or EOF means the session is gone. */
static int dbp__pg_idle_dead(dbp_conn *c, int revents)
{
    dbp__pg *pg = DBP__PG(c);
    PGnotify *n;
    if (revents & (POLLERR | POLLHUP | POLLNVAL)) return 1;
    if (!pg || !pg->pg) return 1;
    if (!PQconsumeInput(pg->pg)) return 1;
    /* PQnotifies parses what came: an error outside a statement reaches the notice receiver */
    while ((n = PQnotifies(pg->pg)) != NULL) PQfreemem(n);
    return pg->lost || PQstatus(pg->pg) == CONNECTION_BAD;
}

static void dbp__pg_kill_done(dbp_op *kop)
{
    dbp_conn *c = kop->target;
    dbp__pg *pg;
    if (!c || c->state == DBP__CS_DEAD || !c->be) return;
    pg = DBP__PG(c);
    if (pg->kill_op != kop) return;
    pg->kill_op = NULL;
    if (pg->phase == DBP__PG_KILLWAIT) {
        pg->phase = DBP__PG_NONE;
        c->flags &= ~DBP__CF_KILLING;
        dbp__timer_clear(c->pool->hub, &c->timer);
        dbp__conn_idle(c);
    }
}

/* A statement ran past its deadline: reject it now, cancel it on the
   server from another connection, keep this one if it comes back clean. */
static void dbp__pg_op_timeout(dbp_conn *c, dbp_op *op)
{
    dbp__pg *pg = DBP__PG(c);
    double secs = op->t_start ? (double)(dbp__now_us() - op->t_start) / 1e6 : 0;
    if (!pg || pg->op != op) return;
    dbp__conn_unlink_op(c, op);
    pg->op = NULL;
    pg->purpose = DBP__PP_DISCARD;
    if (pg->phase == DBP__PG_COPY) {
        /* waiting for data or for the socket, not for the server: end the COPY with an error */
        dbp__op_fail(op, DBP_ETIMEOUT, 1, "COPY ran past its deadline (%.3f s) before its data was all sent; nothing was stored",
                     secs);
        dbp__pg_copy_push(c);
        return;
    }
    if (pg->phase == DBP__PG_PAUSED) {
        /* the consumer is slow, not the server: the rest is read and dropped */
        op->flags |= DBP__OF_CANCEL;
        dbp__op_fail(op, DBP_ETIMEOUT, 1, "stream ran past its deadline (%.3f s) while paused for its reader; "
                     "the rest of the result is discarded", secs);
        pg->phase = DBP__PG_READ;
        c->events = POLLIN;
        dbp__pg_drain(c);
        return;
    }
    dbp__op_fail(op, DBP_ETIMEOUT, (op->flags & DBP__OF_SENT) != 0,
                 "%s ran past its deadline (%.3f s); cancelled on the server (pg_cancel_backend)",
                 op->type == DBP__OP_PING ? "ping" : "query", secs);
    dbp__conn_kill_query(c, dbp__pg_kill_done, &pg->kill_op, &pg->kill_started_ms);
}

static void dbp__pg_validate(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    dbp__timer_set(c->pool->hub, &c->timer, dbp__ms_now() + c->pool->s.connect_timeout);
    if (dbp__pg_send(c, "", NULL, 0, 0) != 1) {
        dbp_error e;
        dbp__err_set(&e, DBP_ECONNECT, "validation failed: %s", PQerrorMessage(pg->pg));
        dbp__pg_oneline(e.message);
        dbp__conn_failed(c, &e, 0);
        return;
    }
    dbp__pg_started(c, DBP__PP_VALIDATE);
}

/* Graceful close: PQfinish sends Terminate (a few bytes, never waits). */
static void dbp__pg_quit(dbp_conn *c)
{
    dbp__conn_closed(c); /* (the abort it calls finishes the connection) */
}

static void dbp__pg_release(dbp_conn *c)
{
    dbp__pg *pg = DBP__PG(c);
    PGTransactionStatusType ts = pg && pg->pg ? PQtransactionStatus(pg->pg) : PQTRANS_IDLE;
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
        /* a transaction left open (or failed: state E) never reaches the next holder */
        pg->nsteps = 0;
        dbp__pg_step_add(c, DBP__PGS_ROLLBACK, 0);
        c->state = DBP__CS_BUSY;
        dbp__pg_steps_start(c, DBP__PGA_RELEASE);
        return;
    }
    dbp__conn_unpin(c);
    dbp__conn_idle(c);
}

static unsigned dbp__pg_session(const dbp_conn *c)
{
    const dbp__pg *pg = DBP__CAST(const dbp__pg *, c->be);
    PGTransactionStatusType ts = pg && pg->pg ? PQtransactionStatus(pg->pg) : PQTRANS_IDLE;
    return ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR ? DBP_SESSION_TRANSACTION : 0;
}

/* The stream's caller let it go: read the rest off the wire and drop it. */
static void dbp__pg_stream_cancel(dbp_op *op)
{
    dbp_conn *c = op->conn;
    dbp__pg *pg;
    if (!c || !c->be) return;
    pg = DBP__PG(c);
    if (pg->op != op || pg->phase != DBP__PG_PAUSED) return;
    pg->purpose = DBP__PP_DISCARD;
    pg->phase = DBP__PG_READ;
    c->events = POLLIN;
    dbp__pg_drain(c);
}

static void dbp__pg_stream_resume(dbp_op *op)
{
    dbp_conn *c = op->conn;
    dbp__pg *pg;
    if (!c || !c->be) return;
    pg = DBP__PG(c);
    if (pg->phase != DBP__PG_PAUSED) return;
    op->stream->paused = 0;
    pg->phase = DBP__PG_READ;
    c->events = POLLIN;
    dbp__pg_drain(c);
}

/* ---- COPY FROM STDIN: the public side ---- */

static dbp__copy *dbp__copy_of(dbp_op *op)
{
    return op && op->type == DBP__OP_COPY ? op->copy : NULL;
}

/* What a put says: the op's error once settled badly, DBP_PENDING when full. */
static int dbp__copy_level(dbp_op *op)
{
    if (op->state == DBP_OP_REJECTED) return op->err.rc;
    return op->copy->buf.len - op->copy->buf.off > DBP_COPY_BUFFER ? DBP_PENDING : DBP_OK;
}

DBPDEF dbp_op *dbp_pool_copy_in(dbp_pool *p, const char *sql, const dbp_op_options *o)
{
    dbp_op *op;
    if (!p) return NULL;
    op = dbp__op_new(p->hub, p, DBP__OP_COPY);
    if (!op) return NULL;
    if (o) {
        if (o->timeout_ms > 0) op->deadline = dbp__ms_now() + o->timeout_ms;
    }
    if (!(p->bk->flags & DBP__BKF_COPY)) { dbp__op_fail(op, DBP_EUSAGE, 0, "copy_in() needs a PostgreSQL pool"); return op; }
    if (!sql) { dbp__op_fail(op, DBP_EUSAGE, 0, "sql is NULL"); return op; }
    op->sql = dbp__strdup(sql);
    op->sql_len = strlen(sql);
    op->copy = DBP__ALLOC(dbp__copy, 1);
    if (!op->sql || !op->copy) { dbp__op_fail(op, DBP_ENOMEM, 0, "out of memory"); return op; }
    return dbp__pool_submit(p, op);
}

/* One value in COPY's text format. */
static int dbp__copy_value(dbp__buf *b, const dbp_value *v)
{
    static const char hex[] = "0123456789abcdef";
    char num[40];
    size_t i;
    switch (v->type) {
    case DBP_NULL: return dbp__buf_add(b, "\\N", 2);
    case DBP_BOOL: return dbp__buf_add(b, v->v.b ? "t" : "f", 1);
    case DBP_INT: snprintf(num, sizeof num, "%lld", v->v.i); return dbp__buf_adds(b, num);
    case DBP_UINT: snprintf(num, sizeof num, "%llu", v->v.u); return dbp__buf_adds(b, num);
    case DBP_DOUBLE: {
        int prec;
        for (prec = 15; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, v->v.d);
            if (strtod(num, NULL) == v->v.d) break;
        }
        return dbp__buf_adds(b, num);
    }
    case DBP_BLOB:
        /* bytea's hex input, its backslash escaped for COPY */
        if (v->v.s.len > ((size_t)-1 - 8) / 2 || dbp__buf_reserve(b, v->v.s.len * 2 + 3)) return DBP_ENOMEM;
        b->data[b->len++] = '\\';
        b->data[b->len++] = '\\';
        b->data[b->len++] = 'x';
        for (i = 0; i < v->v.s.len; i++) {
            unsigned char ch = (unsigned char)v->v.s.data[i];
            b->data[b->len++] = hex[ch >> 4];
            b->data[b->len++] = hex[ch & 15];
        }
        return DBP_OK;
    default: /* text */
        if (v->v.s.len > ((size_t)-1 - 8) / 2 || dbp__buf_reserve(b, v->v.s.len * 2 + 1)) return DBP_ENOMEM;
        for (i = 0; i < v->v.s.len; i++) {
            char ch = v->v.s.data[i], e = 0;
            switch (ch) {
            case '\\': e = '\\'; break;
            case '\t': e = 't'; break;
            case '\n': e = 'n'; break;
            case '\r': e = 'r'; break;
            default: break;
            }
            if (e) { b->data[b->len++] = '\\'; b->data[b->len++] = e; } else b->data[b->len++] = ch;
        }
        return DBP_OK;
    }
}

DBPDEF int dbp_op_copy_row(dbp_op *op, const dbp_value *values, size_t n)
{
    dbp__copy *cp = dbp__copy_of(op);
    size_t i, mark;
    if (!cp) return op && op->state == DBP_OP_REJECTED ? op->err.rc : DBP_EUSAGE;
    if (dbp__op_settled(op)) return op->state == DBP_OP_REJECTED ? op->err.rc : DBP_EUSAGE;
    if (cp->end || (n && !values) || n == 0) return DBP_EUSAGE;
    for (i = 0; i < n; i++) {
        if (values[i].type == DBP_DOUBLE && (isnan(values[i].v.d) || isinf(values[i].v.d))) return DBP_EPARAM;
        if (values[i].type == DBP_TEXT && values[i].v.s.len && memchr(values[i].v.s.data, '\0', values[i].v.s.len))
            return DBP_EPARAM;
        if ((values[i].type == DBP_TEXT || values[i].type == DBP_BLOB) && !values[i].v.s.data && values[i].v.s.len)
            return DBP_EPARAM;
    }
    mark = cp->buf.len;
    for (i = 0; i < n; i++) {
        if ((i && dbp__buf_add(&cp->buf, "\t", 1)) || dbp__copy_value(&cp->buf, &values[i])) {
            cp->buf.len = mark; /* (never half a row) */
            return DBP_ENOMEM;
        }
    }
    if (dbp__buf_add(&cp->buf, "\n", 1)) { cp->buf.len = mark; return DBP_ENOMEM; }
    cp->rows++;
    return dbp__copy_level(op);
}

DBPDEF int dbp_op_copy_data(dbp_op *op, const void *data, size_t len)
{
    dbp__copy *cp = dbp__copy_of(op);
    if (!cp || cp->end) return op && op->state == DBP_OP_REJECTED ? op->err.rc : DBP_EUSAGE;
    if (dbp__op_settled(op)) return op->state == DBP_OP_REJECTED ? op->err.rc : DBP_EUSAGE;
    if (len && dbp__buf_add(&cp->buf, data, len)) return DBP_ENOMEM;
    return dbp__copy_level(op);
}

DBPDEF int dbp_op_copy_end(dbp_op *op, const char *error)
{
    dbp__copy *cp = dbp__copy_of(op);
    if (!cp || cp->end) return DBP_EUSAGE;
    cp->end = 1;
    if (error) {
        cp->abort_msg = dbp__strdup(error);
        if (!cp->abort_msg) cp->abort_msg = dbp__strdup("aborted");
    }
    return op->state == DBP_OP_REJECTED ? op->err.rc : DBP_OK;
}

DBPDEF int dbp_op_copy_wait(dbp_op *op, int timeout_ms)
{
    long long end = timeout_ms >= 0 ? dbp__ms_now() + timeout_ms : 0;
    dbp__copy *cp = dbp__copy_of(op);
    if (!cp || !op->hub) return DBP_EUSAGE;
    for (;;) {
        int left = -1;
        if (op->conn && op->conn->be && DBP__PG(op->conn)->op == op && DBP__PG(op->conn)->phase == DBP__PG_COPY)
            dbp__pg_copy_push(op->conn);
        if (dbp__op_settled(op) || cp->buf.len - cp->buf.off <= DBP_COPY_BUFFER / 2) return DBP_OK;
        if (timeout_ms >= 0) {
            long long l = end - dbp__ms_now();
            if (l <= 0) return DBP_PENDING;
            left = (int)l;
        }
        if (dbp_hub_step(op->hub, left) < 0) return DBP_EUSAGE;
    }
}

DBPDEF unsigned long long dbp_op_copy_rows(const dbp_op *op)
{
    return op && op->type == DBP__OP_COPY && op->copy ? op->copy->rows : 0;
}

/* libpq's GSS encryption attempt costs a round trip per connect on Debian:
   off unless the URL asks for it. */
static int dbp__pg_settings(dbp__settings *s, dbp_error *err)
{
    if (!s->gssencmode && !(s->gssencmode = dbp__strdup("disable"))) return dbp__err_set(err, DBP_ENOMEM, "out of memory");
    return DBP_OK;
}

static const dbp__backend dbp__pgsql_backend = {
    "postgres", "postgres postgresql", 5432, DBP__FOR_PGSQL, DBP__BKF_SQL | DBP__BKF_PUBSUB | DBP__BKF_LISTEN | DBP__BKF_COPY,
    "UTF8", dbp__pg_settings, NULL,
    dbp__pg_open, dbp__pg_conn_io, dbp__pg_op_start, dbp__pg_op_timeout, dbp__pg_validate,
    dbp__pg_quit, dbp__pg_abort, dbp__pg_hub_flush, dbp__pg_idle_dead, dbp__pg_release, dbp__pg_session,
    dbp__pg_stream_cancel, dbp__pg_stream_resume, 0, dbp__pg_check_params, NULL
};
#else
DBPDEF dbp_op *dbp_pool_copy_in(dbp_pool *p, const char *sql, const dbp_op_options *o)
{
    dbp_op *op;
    DBP__UNUSED(sql); DBP__UNUSED(o);
    if (!p) return NULL;
    op = dbp__op_new(p->hub, p, DBP__OP_COPY);
    if (op) dbp__op_fail(op, DBP_EUNSUPPORTED, 0, "built without PostgreSQL (DBPOOL_NO_PGSQL)");
    return op;
}
DBPDEF int dbp_op_copy_row(dbp_op *op, const dbp_value *values, size_t n)
{ DBP__UNUSED(op); DBP__UNUSED(values); DBP__UNUSED(n); return DBP_EUNSUPPORTED; }
DBPDEF int dbp_op_copy_data(dbp_op *op, const void *data, size_t len)
{ DBP__UNUSED(op); DBP__UNUSED(data); DBP__UNUSED(len); return DBP_EUNSUPPORTED; }
DBPDEF int dbp_op_copy_end(dbp_op *op, const char *error) { DBP__UNUSED(op); DBP__UNUSED(error); return DBP_EUNSUPPORTED; }
DBPDEF int dbp_op_copy_wait(dbp_op *op, int timeout_ms) { DBP__UNUSED(op); DBP__UNUSED(timeout_ms); return DBP_EUNSUPPORTED; }
DBPDEF unsigned long long dbp_op_copy_rows(const dbp_op *op) { DBP__UNUSED(op); return 0; }
#endif /* DBPOOL_NO_PGSQL */


/* ==== SECTION: Redis replies ==== */

/* A reply as allocated: its element array grows as elements arrive, so an
   array header announcing 2^31 elements costs nothing until they come. */
typedef struct dbp__reply { dbp_reply pub; size_t cap; } dbp__reply;

DBPDEF void dbp_reply_free(dbp_reply *r)
{
    size_t i, n;
    if (!r) return;
    if (r->element) {
        n = DBP__CAST(dbp__reply *, (void *)r)->cap;
        if (n > r->elements) n = r->elements;
        for (i = 0; i < n; i++) dbp_reply_free(r->element[i]);
        DBP_FREE(r->element);
    }
    DBP_FREE(r);
}

/* Formats a command as RESP straight into a buffer: binary-safe, one copy,
   every allocation through DBP_MALLOC. (hiredis' redisFormatCommandArgv would
   do the same through its own allocator and an extra copy.) */
/* Writes "<c><n>\r\n" at p; returns the end. (printf was a tenth of a GET's cost.) */
static char *dbp__resp_head(char *p, char c, size_t n)
{
    char digits[24];
    int k = 0;
    *p++ = c;
    do { digits[k++] = (char)('0' + n % 10); n /= 10; } while (n);
    while (k) *p++ = digits[--k];
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* Writes a bulk string ("$<n>\r\n<data>\r\n") at w; returns the end. */
static char *dbp__resp_bulk_at(char *w, const char *data, size_t n)
{
    w = dbp__resp_head(w, '$', n);
    if (n) memcpy(w, data, n);
    w += n;
    *w++ = '\r';
    *w++ = '\n';
    return w;
}

#ifndef DBPOOL_NO_REDIS
/* The RESP writer, one piece at a time: an array header ... */
static int dbp__resp_array(dbp__buf *out, size_t n)
{
    if (dbp__buf_reserve(out, 24)) return DBP_ENOMEM;
    out->len = (size_t)(dbp__resp_head(out->data + out->len, '*', n) - out->data);
    return DBP_OK;
}

/* ... and each of its bulk strings. */
static int dbp__resp_bulk(dbp__buf *out, const char *data, size_t n)
{
    if (n > (size_t)-1 - 26 || dbp__buf_reserve(out, n + 26)) return DBP_ENOMEM;
    out->len = (size_t)(dbp__resp_bulk_at(out->data + out->len, data, n) - out->data);
    return DBP_OK;
}
#endif

/* A whole command in one reservation (the hot path of every call). */
static int dbp__resp_format(dbp__buf *out, int argc, const char *const *argv, const size_t *lens)
{
    int i;
    size_t total = 24;
    char *w;
    if (argc < 0) return DBP_EUSAGE;
    for (i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        if (n > (size_t)-1 - total - 26) return DBP_ENOMEM;
        total += n + 26;            /* '$', up to 20 digits, two CRLFs */
    }
    if (dbp__buf_reserve(out, total)) return DBP_ENOMEM;
    w = dbp__resp_head(out->data + out->len, '*', (size_t)argc);
    for (i = 0; i < argc; i++) w = dbp__resp_bulk_at(w, argv[i], lens ? lens[i] : strlen(argv[i]));
    *w = '\0';
    out->len = (size_t)(w - out->data);
    return DBP_OK;
}


#ifndef DBPOOL_NO_REDIS
/* ==== SECTION: Redis backend ==== */

/* hiredis builds our reply tree directly, through these. */
static dbp_reply *dbp__reply_new(const redisReadTask *task, int type, size_t strlen_)
{
    dbp__reply *x;
    dbp_reply *r;
    if (strlen_ > (size_t)-1 - sizeof(dbp__reply) - 1) return NULL;
    x = DBP__CAST(dbp__reply *, dbp__calloc(1, sizeof(dbp__reply) + strlen_ + 1));
    if (!x) return NULL;
    r = &x->pub;
    r->type = (dbp_reply_type)type;
    r->str = DBP__CAST(char *, (void *)(x + 1));
    if (task->parent) {
        dbp__reply *px = DBP__CAST(dbp__reply *, task->parent->obj);
        dbp_reply *parent = &px->pub;
        size_t idx = (size_t)task->idx;
        if (idx >= parent->elements) { DBP_FREE(x); return NULL; }
        if (idx >= px->cap) {
            size_t cap = px->cap ? px->cap * 2 : 16, k;
            dbp_reply **el;
            if (cap > parent->elements) cap = parent->elements;
            if (cap <= idx) cap = idx + 1;
            el = DBP__CAST(dbp_reply **, DBP_REALLOC(parent->element, cap * sizeof *el));
            if (!el) { DBP_FREE(x); return NULL; }
            for (k = px->cap; k < cap; k++) el[k] = NULL;
            parent->element = el;
            px->cap = cap;
        }
        parent->element[idx] = r;
    }
    return r;
}
static void *dbp__rd_string(const redisReadTask *task, char *str, size_t len)
{
    dbp_reply *r = dbp__reply_new(task, task->type, len);
    if (!r) return NULL;
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}
static void *dbp__rd_array(const redisReadTask *task, int n)
{
    dbp_reply *r = dbp__reply_new(task, DBP_REPLY_ARRAY, 0);
    if (!r) return NULL;
    r->elements = n > 0 ? (size_t)n : 0; /* the slots come with the elements */
    return r;
}
static void *dbp__rd_integer(const redisReadTask *task, long long v)
{
    dbp_reply *r = dbp__reply_new(task, DBP_REPLY_INTEGER, 0);
    if (r) r->integer = v;
    return r;
}
static void *dbp__rd_nil(const redisReadTask *task)
{
    return dbp__reply_new(task, DBP_REPLY_NIL, 0);
}
static void dbp__rd_free(void *p) { dbp_reply_free(DBP__CAST(dbp_reply *, p)); }

static redisReplyObjectFunctions dbp__rd_fns = {
    dbp__rd_string, dbp__rd_array, dbp__rd_integer, dbp__rd_nil, dbp__rd_free
};

/* Internal replies a connection expects before (or instead of) user ops. */
enum { DBP__RI_AUTH = 1, DBP__RI_SELECT, DBP__RI_SETNAME, DBP__RI_READONLY, DBP__RI_INFO,
       DBP__RI_CFG_TIMEOUT, DBP__RI_CFG_MAXCLIENTS, DBP__RI_PING, DBP__RI_VALIDATE, DBP__RI_QUIT,
       DBP__RI_SUBSCRIBE, DBP__RI_DISCARD, DBP__RI_UNWATCH, DBP__RI_CLIENT_ID };
enum { DBP__RP_CONNECT = 1, DBP__RP_READY, DBP__RP_QUIT, DBP__RP_RESOLVE /* a helper thread resolves the host */ };
/* session state a pinned connection may leave behind */
enum { DBP__RS_MULTI = 1, DBP__RS_WATCH = 2, DBP__RS_DB = 4 };

#define DBP__RD_MAX_INTERNAL 16

typedef struct dbp__rd {
    redisReader *reader;
    dbp__buf out;
    unsigned long long written, appended;
    int phase;
    int internal[DBP__RD_MAX_INTERNAL];
    int ninternal, ihead;
    unsigned dirty;
    int connect_fatal;
    dbp__job *job;                  /* the host's lookup, kept for its other addresses until connected */
    int addri;                      /* the lookup's address being tried */
} dbp__rd;

#define DBP__RD(c) DBP__CAST(dbp__rd *, (c)->be)

static void dbp__rd_fail(dbp_conn *c, int rc, const char *fmt, ...)
{
    dbp_error e;
    va_list ap;
    int connecting = c->state == DBP__CS_CONNECTING || c->state == DBP__CS_INIT;
    dbp__err_clear(&e);
    e.rc = rc;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    if (c->state == DBP__CS_CLOSING) { dbp__conn_closed(c); return; }
    if (DBP__RD(c) && DBP__RD(c)->connect_fatal) c->flags |= DBP__CF_FATAL;
    dbp__conn_failed(c, &e, connecting);
}

static int dbp__rd_internal_push(dbp_conn *c, int kind, int argc, const char *const *argv, const size_t *lens)
{
    dbp__rd *rd = DBP__RD(c);
    size_t before = dbp__buf_unread(&rd->out);
    if (rd->ninternal >= DBP__RD_MAX_INTERNAL) return DBP_EUSAGE;
    if (dbp__resp_format(&rd->out, argc, argv, lens)) return DBP_ENOMEM;
    rd->appended += dbp__buf_unread(&rd->out) - before;
    rd->internal[(rd->ihead + rd->ninternal) % DBP__RD_MAX_INTERNAL] = kind;
    rd->ninternal++;
    c->events |= POLLOUT;
    return DBP_OK;
}

/* The commands that make a fresh socket a usable connection. */
static int dbp__rd_handshake(dbp_conn *c)
{
    dbp_pool *p = c->pool;
    const dbp__settings *s = &p->s;
    int rc = DBP_OK;
    if (s->password) {
        const char *argv[3];
        int n = 0;
        argv[n++] = "AUTH";
        if (s->user) argv[n++] = s->user;
        argv[n++] = s->password;
        rc |= dbp__rd_internal_push(c, DBP__RI_AUTH, n, argv, NULL);
    }
    if (s->redis_db && !(c->flags & DBP__CF_SUB)) {
        char db[16];
        const char *argv[2];
        snprintf(db, sizeof db, "%d", s->redis_db);
        argv[0] = "SELECT"; argv[1] = db;
        rc |= dbp__rd_internal_push(c, DBP__RI_SELECT, 2, argv, NULL);
    }
    if (s->name) {
        const char *argv[3];
        argv[0] = "CLIENT"; argv[1] = "SETNAME"; argv[2] = s->name;
        rc |= dbp__rd_internal_push(c, DBP__RI_SETNAME, 3, argv, NULL);
    }
    if (c->flags & DBP__CF_REPLICA) {
        const char *argv[1];
        argv[0] = "READONLY";
        rc |= dbp__rd_internal_push(c, DBP__RI_READONLY, 1, argv, NULL);
    }
    if (!p->limits_read && !(c->flags & DBP__CF_SUB)) {
        const char *a1[2], *a2[3], *a3[3];
        a1[0] = "INFO"; a1[1] = "server";
        a2[0] = "CONFIG"; a2[1] = "GET"; a2[2] = "timeout";
        a3[0] = "CONFIG"; a3[1] = "GET"; a3[2] = "maxclients";
        rc |= dbp__rd_internal_push(c, DBP__RI_INFO, 2, a1, NULL);
        rc |= dbp__rd_internal_push(c, DBP__RI_CFG_TIMEOUT, 3, a2, NULL);
        rc |= dbp__rd_internal_push(c, DBP__RI_CFG_MAXCLIENTS, 3, a3, NULL);
        p->limits_read = 1;
    }
    {   /* the connection's id (dbp_conn_server_id, CLIENT KILL ID); its round
           trip also proves the credentials when there was no AUTH */
        const char *argv[2];
        argv[0] = "CLIENT"; argv[1] = "ID";
        rc |= dbp__rd_internal_push(c, DBP__RI_CLIENT_ID, 2, argv, NULL);
    }
    return rc;
}

static void dbp__rd_set_socket_options(int fd, int keepalive_ms, int tcp)
{
    int on = 1;
    if (!tcp) return;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    dbp__socket_keepalive(fd, keepalive_ms);
}

/* Parses a numeric host (IP literal) and port: no lookup, never blocks.
   Host names go to a helper thread instead (dbp__lookup_start). */
static int dbp__resolve_numeric(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len, dbp_error *err)
{
    struct addrinfo hints, *res = NULL;
    char ps[16];
    int rc;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(ps, sizeof ps, "%d", port);
    rc = getaddrinfo(host, ps, &hints, &res);
    if (rc || !res || res->ai_addrlen > sizeof *ss) {
        if (res) freeaddrinfo(res);
        return dbp__err_set(err, DBP_ECONNECT, "cannot use address '%.100s': %s", host, rc ? gai_strerror(rc) : "too long");
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return DBP_OK;
}

/* Starts a non-blocking connect to one address; host and port only name it in errors. */
static int dbp__sock_connect(const struct sockaddr_storage *ss, socklen_t len, int keepalive_ms, const char *host,
                             int port, int *out_fd, dbp_error *err)
{
    int fd, tcp = ss->ss_family != AF_UNIX, rc;
    fd = socket(ss->ss_family, SOCK_STREAM, 0);
    if (fd < 0) return dbp__err_set(err, DBP_ECONNECT, "socket(): %s", strerror(errno));
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        rc = errno;
        close(fd);
        return dbp__err_set(err, DBP_ECONNECT, "fcntl(): %s", strerror(rc));
    }
    dbp__rd_set_socket_options(fd, keepalive_ms, tcp);
    if (connect(fd, DBP__CAST(const struct sockaddr *, (const void *)ss), len) < 0 && errno != EINPROGRESS) {
        rc = errno;
        close(fd);
        return dbp__err_set(err, DBP_ECONNECT, "could not connect to %.100s:%d: %s", host ? host : "", port, strerror(rc));
    }
    *out_fd = fd;
    return DBP_OK;
}

/* Starts a non-blocking TCP connect to an IP literal, or a unix one to a path. */
static int dbp__tcp_connect(const char *host, int port, int keepalive_ms, int *out_fd, dbp_error *err)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int rc;
    memset(&ss, 0, sizeof ss);
    if (host && host[0] == '/') {
        struct sockaddr_un *un = DBP__CAST(struct sockaddr_un *, (void *)&ss);
        if (strlen(host) >= sizeof un->sun_path) return dbp__err_set(err, DBP_EURL, "unix socket path too long");
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, host);
        len = (socklen_t)sizeof *un;
    } else if ((rc = dbp__resolve_numeric(host ? host : "127.0.0.1", port, &ss, &len, err)) != DBP_OK) {
        return rc;
    }
    return dbp__sock_connect(&ss, len, keepalive_ms, host, port, out_fd, err);
}

/* Connects to the lookup's addresses from number i on, until one connect
   starts; then waits for it like any connect. */
static int dbp__rd_connect_from(dbp_conn *c, int i)
{
    dbp__rd *rd = DBP__RD(c);
    const dbp__job *j = rd->job;
    dbp_pool *p = c->pool;
    int fd = -1;
    dbp__err_set(&c->err, DBP_ECONNECT, "host '%.100s' has no usable address", j->host);
    for (; i < j->naddr; i++) {
        if (dbp__sock_connect(&j->addr[i], j->addrlen[i], p->s.keepalive, j->host, p->s.port, &fd, &c->err) == DBP_OK) {
            rd->addri = i;
            rd->phase = DBP__RP_CONNECT;
            c->fd = fd;
            c->events = POLLOUT;
            return DBP_OK;
        }
    }
    return c->err.rc;
}

/* The lookup finished: connect to its first address that takes a connect. */
static void dbp__rd_resolved(dbp_conn *c)
{
    dbp__rd *rd = DBP__RD(c);
    dbp_error e;
    if (!dbp__job_done(rd->job)) return;
    dbp__err_clear(&e);
    c->fd = -1; /* (the job's end of its socket pair, closed with the job) */
    c->events = 0;
    if (dbp__lookup_result(rd->job, &e) != DBP_OK || dbp__rd_connect_from(c, 0) != DBP_OK) {
        if (e.rc == DBP_OK) e = c->err;
        dbp__conn_failed(c, &e, 1);
    }
}

static int dbp__rd_open(dbp_conn *c)
{
    dbp_pool *p = c->pool;
    dbp__rd *rd = DBP__ALLOC(dbp__rd, 1);
    const char *host = p->s.host ? p->s.host : "127.0.0.1";
    int fd = -1;
    if (!rd) return dbp__err_set(&c->err, DBP_ENOMEM, "out of memory");
    c->be = rd;
    rd->reader = redisReaderCreateWithFunctions(&dbp__rd_fns);
    if (!rd->reader) return dbp__err_set(&c->err, DBP_ENOMEM, "out of memory (redis reader)");
    if (p->s.readonly && !(c->flags & DBP__CF_SUB)) c->flags |= DBP__CF_REPLICA;
    c->state = DBP__CS_CONNECTING;
    if (dbp__rd_handshake(c) != DBP_OK) return dbp__err_set(&c->err, DBP_ENOMEM, "out of memory");
    if (!dbp__host_is_literal(host)) {
        /* a name: looked up on a helper thread, never by the hub */
        rd->job = dbp__lookup_start(host, p->s.port, &c->err);
        if (!rd->job) return c->err.rc;
        rd->phase = DBP__RP_RESOLVE;
        c->fd = rd->job->rfd;
        c->events = POLLIN;
        return DBP_OK;
    }
    if (dbp__tcp_connect(host, p->s.port, p->s.keepalive, &fd, &c->err) != DBP_OK)
        return c->err.rc;
    c->fd = fd;
    rd->phase = DBP__RP_CONNECT;
    c->events = POLLOUT;
    return DBP_OK;
}

static void dbp__rd_abort(dbp_conn *c)
{
    dbp__rd *rd = DBP__RD(c);
    dbp__link *l;
    if (!rd) return;
    if (rd->job) {
        /* a lookup still under way is abandoned: its helper cleans up after itself */
        if (c->fd == rd->job->rfd) c->fd = -1;
        dbp__job_release(rd->job);
        rd->job = NULL;
    }
    /* a command written in full may have run; one cut off mid-write cannot have */
    for (l = c->ops.next; l != &c->ops; l = l->next) {
        dbp_op *op = DBP__CONTAINER(l, dbp_op, link);
        if (op->out_end && op->out_end <= rd->written) op->flags |= DBP__OF_SENT;
        else op->flags &= ~DBP__OF_SENT;
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    if (rd->reader) redisReaderFree(rd->reader);
    dbp__buf_free(&rd->out);
    DBP_FREE(rd);
    c->be = NULL;
    c->events = 0;
}

/* Writes what is queued; keeps POLLOUT while something is left. */
static int dbp__rd_write(dbp_conn *c)
{
    dbp__rd *rd = DBP__RD(c);
    int guard = 0;
    if (rd->out.off < rd->out.len && rd->ninternal == 0 && !(c->flags & DBP__CF_SUB) &&
        (dbp__list_empty(&c->ops) || DBP__CONTAINER(c->ops.next, dbp_op, link)->out_end > rd->written) &&
        c->state != DBP__CS_INIT && dbp__idle_socket_dead(c, 0)) {
        /* every command written so far was answered, yet the socket is
           readable: the server closed it; what is queued was never sent */
        dbp__rd_fail(c, DBP_ECONNECT, "the server closed connection %d before the next command was written", c->id);
        return -1;
    }
    while (rd->out.off < rd->out.len && guard++ < 64) {
        ssize_t n = send(c->fd, rd->out.data + rd->out.off, rd->out.len - rd->out.off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            dbp__rd_fail(c, DBP_ECONNECT, "write failed: %s", strerror(errno));
            return -1;
        }
        rd->out.off += (size_t)n;
        rd->written += (unsigned long long)n;
    }
    if (rd->out.off == rd->out.len) {
        rd->out.off = rd->out.len = 0;
        c->events &= (short)~POLLOUT;
    } else {
        c->events |= POLLOUT;
    }
    return 0;
}

static void dbp__rd_flush(dbp_conn *c)
{
    dbp__rd *rd = DBP__RD(c);
    if (!rd || rd->phase != DBP__RP_READY || c->fd < 0) return;
    if (rd->out.off < rd->out.len) dbp__rd_write(c);
}

static void dbp__sub_push(dbp_conn *c, dbp_reply *r);
static void dbp__sub_ready(dbp_conn *c);

static long long dbp__info_field(const char *info, const char *key, char *val, size_t n)
{
    const char *p = strstr(info, key);
    size_t i = 0;
    if (!p) return -1;
    p += strlen(key);
    while (p[i] && p[i] != '\r' && p[i] != '\n' && i + 1 < n) { val[i] = p[i]; i++; }
    val[i] = '\0';
    return 0;
}

/* An internal reply arrived. Returns -1 when the connection was failed. */
static int dbp__rd_internal_reply(dbp_conn *c, int kind, dbp_reply *r)
{
    dbp_pool *p = c->pool;
    int err = r->type == DBP_REPLY_ERROR;
    switch (kind) {
    case DBP__RI_AUTH:
        if (err) {
            DBP__RD(c)->connect_fatal = 1;
            dbp__rd_fail(c, DBP_EAUTH, "authentication failed: %.200s", r->str);
            return -1;
        }
        return 0;
    case DBP__RI_SELECT: case DBP__RI_PING: case DBP__RI_INFO: case DBP__RI_SETNAME: case DBP__RI_READONLY:
    case DBP__RI_CLIENT_ID:
        if (err && (strncmp(r->str, "NOAUTH", 6) == 0 || strncmp(r->str, "WRONGPASS", 9) == 0)) {
            DBP__RD(c)->connect_fatal = 1;
            dbp__rd_fail(c, DBP_EAUTH, "the server requires authentication: %.200s", r->str);
            return -1;
        }
        if (err && kind == DBP__RI_SELECT) {
            DBP__RD(c)->connect_fatal = 1;
            dbp__rd_fail(c, DBP_ECONNECT, "SELECT %d failed: %.200s", p->s.redis_db, r->str);
            return -1;
        }
        if (err && kind == DBP__RI_READONLY) {
            dbp__rd_fail(c, DBP_ECONNECT, "READONLY failed: %.200s", r->str);
            return -1;
        }
        /* (an error otherwise, e.g. an ACL without CLIENT: the id stays unknown) */
        if (kind == DBP__RI_CLIENT_ID && r->type == DBP_REPLY_INTEGER && r->integer > 0)
            c->server_id = (unsigned long long)r->integer;
        if (kind == DBP__RI_INFO && r->type == DBP_REPLY_STRING) {
            char v[64];
            if (dbp__info_field(r->str, "redis_version:", v, sizeof v) == 0)
                snprintf(p->version, sizeof p->version, "%s", v);
        }
        return 0;
    case DBP__RI_CFG_TIMEOUT: case DBP__RI_CFG_MAXCLIENTS:
        /* CONFIG may be forbidden by ACLs: then the limits stay unknown */
        if (r->type == DBP_REPLY_ARRAY && r->elements == 2 && r->element[1] &&
            r->element[1]->type == DBP_REPLY_STRING) {
            long long v = atoll(r->element[1]->str);
            if (kind == DBP__RI_CFG_TIMEOUT) dbp__pool_limit(p, DBP__LIMIT_IDLE, v, "timeout");
            else dbp__pool_limit(p, DBP__LIMIT_CONNS, v, "maxclients");
        }
        return 0;
    case DBP__RI_VALIDATE:
        if (err) { dbp__rd_fail(c, DBP_ECONNECT, "validation ping failed: %.200s", r->str); return -1; }
        dbp__timer_clear(p->hub, &c->timer);
        dbp__conn_validated(c);
        return 0;
    case DBP__RI_QUIT:
        dbp__conn_closed(c);
        return -1;
    case DBP__RI_DISCARD: case DBP__RI_UNWATCH:
        return 0;
    default:
        return 0;
    }
}

/* A reply for the op at the head of the pipeline. */
static void dbp__rd_op_reply(dbp_conn *c, dbp_op *op, dbp_reply *r)
{
    dbp__rd *rd = DBP__RD(c);
    if (op->flags & DBP__OF_ZOMBIE) {
        dbp__conn_unlink_op(c, op);
        op->flags &= ~DBP__OF_ZOMBIE;
        dbp_reply_free(r);
        dbp__op_maybe_free(op);
        /* the late reply came back: the connection is in step again */
        if (!(c->nops) || !(DBP__CONTAINER(c->ops.next, dbp_op, link)->flags & DBP__OF_ZOMBIE)) {
            dbp__link *l;
            int zombies = 0;
            for (l = c->ops.next; l != &c->ops; l = l->next)
                if (DBP__CONTAINER(l, dbp_op, link)->flags & DBP__OF_ZOMBIE) zombies++;
            if (!zombies) { c->flags &= ~DBP__CF_SUSPECT; dbp__timer_clear(c->pool->hub, &c->timer); }
        }
        return;
    }
    dbp__conn_unlink_op(c, op);
    op->flags |= DBP__OF_SENT;
    if (op->pin) {
        /* session state a pinned connection may carry back to the pool */
        if (dbp__cmd_eq(op, "MULTI") && r->type != DBP_REPLY_ERROR) rd->dirty |= DBP__RS_MULTI;
        else if (dbp__cmd_eq(op, "EXEC") || dbp__cmd_eq(op, "DISCARD")) rd->dirty &= ~(unsigned)(DBP__RS_MULTI | DBP__RS_WATCH);
        else if (dbp__cmd_eq(op, "WATCH") && r->type != DBP_REPLY_ERROR) rd->dirty |= DBP__RS_WATCH;
        else if (dbp__cmd_eq(op, "UNWATCH")) rd->dirty &= ~(unsigned)DBP__RS_WATCH;
        else if (dbp__cmd_eq(op, "SELECT") && r->type != DBP_REPLY_ERROR) rd->dirty |= DBP__RS_DB;
    }
    if (r->type == DBP_REPLY_ERROR) {
        op->err.code = 0;
        op->err.sqlstate[0] = '\0';
        op->err.sent = 1;
        snprintf(op->err.message, sizeof op->err.message, "%s", r->str);
        dbp_reply_free(r);
        dbp__op_settle(op, DBP_EREDIS);
    } else {
        op->reply = r;
        dbp__op_settle(op, DBP_OK);
    }
}

/* Reads what arrived and hands every complete reply to its owner. */
static void dbp__rd_read(dbp_conn *c)
{
    char buf[65536];
    int guard;
    for (guard = 0; guard < 64; guard++) {
        dbp__rd *rd = DBP__RD(c);
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0) { dbp__rd_fail(c, DBP_ECONNECT, "the server closed the connection"); return; }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            dbp__rd_fail(c, DBP_ECONNECT, "read failed: %s", strerror(errno));
            return;
        }
        if (redisReaderFeed(rd->reader, buf, (size_t)n) != REDIS_OK) {
            dbp__rd_fail(c, DBP_EPROTOCOL, "protocol error: %s", rd->reader->errstr);
            return;
        }
        for (;;) {
            void *obj = NULL;
            dbp_reply *r;
            rd = DBP__RD(c);
            if (!rd || c->state == DBP__CS_DEAD) return;
            if (redisReaderGetReply(rd->reader, &obj) != REDIS_OK) {
                if (rd->reader->err == REDIS_ERR_OOM)
                    dbp__rd_fail(c, DBP_ENOMEM, "out of memory reading a reply");
                else
                    dbp__rd_fail(c, DBP_EPROTOCOL, "protocol error: %s", rd->reader->errstr);
                return;
            }
            if (!obj) break;
            r = DBP__CAST(dbp_reply *, obj);
            if (rd->ninternal > 0) {
                int kind = rd->internal[rd->ihead];
                rd->ihead = (rd->ihead + 1) % DBP__RD_MAX_INTERNAL;
                rd->ninternal--;
                if (kind == DBP__RI_SUBSCRIBE) {
                    dbp__sub_push(c, r);
                    continue;
                }
                if (dbp__rd_internal_reply(c, kind, r) < 0) { dbp_reply_free(r); return; }
                dbp_reply_free(r);
                rd = DBP__RD(c);
                if (rd->ninternal == 0 && c->state == DBP__CS_INIT) {
                    dbp__timer_clear(c->pool->hub, &c->timer);
                    dbp__conn_ready(c);
                    if (c->state == DBP__CS_DEAD) return;
                }
                continue;
            }
            if (c->flags & DBP__CF_SUB) { dbp__sub_push(c, r); continue; }
            if (dbp__list_empty(&c->ops)) {
                dbp_reply_free(r);
                dbp__rd_fail(c, DBP_EPROTOCOL, "protocol error: a reply nobody asked for");
                return;
            }
            {
                dbp_op *op = DBP__CONTAINER(c->ops.next, dbp_op, link);
                if ((op->flags & DBP__OF_ASKING) && !(op->flags & DBP__OF_ASKED)) {
                    /* the +OK of the ASKING sent in front of this command */
                    op->flags |= DBP__OF_ASKED;
                    dbp_reply_free(r);
                    continue;
                }
                dbp__rd_op_reply(c, op, r);
            }
            if (c->state == DBP__CS_DEAD) return;
            if (c->nops == 0 && c->state == DBP__CS_BUSY) {
                dbp__conn_idle(c);
                if (c->state == DBP__CS_DEAD) return;
            }
        }
    }
}

/* Replies freed pipeline slots: queued ops may go out on this connection. */
static void dbp__rd_refill(dbp_conn *c)
{
    dbp_pool *p = c->pool;
    if (c->state == DBP__CS_DEAD) return;
    if (c->flags & DBP__CF_PINNED) { if (!dbp__list_empty(&c->pinq)) dbp__pinned_next(c); return; }
    if (!dbp__list_empty(&p->queue) && c->nops < p->s.pipeline) dbp__pool_dispatch(p);
}

static void dbp__rd_conn_io(dbp_conn *c, int revents)
{
    dbp__rd *rd = DBP__RD(c);
    if (!rd) return;
    if (revents == DBP__EV_TIMER) {
        if (c->state == DBP__CS_CONNECTING || c->state == DBP__CS_INIT)
            dbp__rd_fail(c, DBP_ECONNECT, "could not connect to %s:%d within %.1f s (connect_timeout)%s",
                         c->pool->s.host ? c->pool->s.host : "127.0.0.1", c->pool->s.port,
                         c->pool->s.connect_timeout / 1000.0,
                         rd->phase == DBP__RP_RESOLVE ? "; the host name lookup did not finish" : "");
        else if (c->state == DBP__CS_VALIDATING)
            dbp__rd_fail(c, DBP_ETIMEOUT, "validation ping got no answer");
        else if (c->flags & DBP__CF_SUSPECT)
            dbp__rd_fail(c, DBP_ETIMEOUT, "no reply from the server for a command that timed out; connection closed");
        return;
    }
    if (rd->phase == DBP__RP_RESOLVE) {
        dbp__rd_resolved(c);
        return;
    }
    if (rd->phase == DBP__RP_CONNECT) {
        int err = 0;
        socklen_t len = sizeof err;
        if (!(revents & (POLLOUT | POLLERR | POLLHUP))) return;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err && rd->job && rd->addri + 1 < rd->job->naddr) {
            /* the name has another address: try it, within the same connect deadline */
            close(c->fd);
            c->fd = -1;
            if (dbp__rd_connect_from(c, rd->addri + 1) == DBP_OK) return;
            dbp__rd_fail(c, DBP_ECONNECT, "%s", c->err.message);
            return;
        }
        if (rd->job) { dbp__job_release(rd->job); rd->job = NULL; }
        if (err) {
            dbp__rd_fail(c, DBP_ECONNECT, "could not connect to %s:%d: %s",
                         c->pool->s.host ? c->pool->s.host : "127.0.0.1", c->pool->s.port, strerror(err));
            return;
        }
        rd->phase = DBP__RP_READY;
        c->state = DBP__CS_INIT;
        c->events = POLLIN;
        if (dbp__rd_write(c) < 0) return;
        return;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        if (c->state == DBP__CS_IDLE && !(c->flags & DBP__CF_SUB) && rd->ninternal == 0 && dbp__list_empty(&c->ops)) {
            /* nothing is owed to an idle connection: data or EOF means it is gone */
            if (dbp__idle_socket_dead(c, revents)) {
                dbp__rd_fail(c, DBP_ECONNECT, "the server closed idle connection %d", c->id);
            }
            return;
        }
        dbp__rd_read(c);
        if (c->state == DBP__CS_DEAD || !c->be) return;
        dbp__rd_refill(c);
        if (c->state == DBP__CS_DEAD || !c->be) return;
    }
    if ((revents & POLLOUT) && c->state != DBP__CS_DEAD) dbp__rd_write(c);
    if (c->state != DBP__CS_DEAD) c->events |= POLLIN;
}

static void dbp__rd_op_start(dbp_conn *c, dbp_op *op)
{
    dbp__rd *rd = DBP__RD(c);
    size_t before = dbp__buf_unread(&rd->out);
    if (op->flags & DBP__OF_ASKING) {
        op->flags &= ~DBP__OF_ASKED;
        if (dbp__buf_add(&rd->out, "*1\r\n$6\r\nASKING\r\n", 16)) goto oom;
    }
    if (op->type == DBP__OP_PING) {
        if (dbp__buf_add(&rd->out, "*1\r\n$4\r\nPING\r\n", 14)) goto oom;
    } else if (dbp__buf_add(&rd->out, op->req, op->req_len)) {
        goto oom;
    }
    rd->appended += dbp__buf_unread(&rd->out) - before;
    op->out_end = rd->appended;
    /* written together with the others submitted before the hub runs */
    c->events |= POLLOUT | POLLIN;
    return;
oom:
    rd->out.len = rd->out.off + before; /* (the ASKING, if it went in) */
    rd->out.data[rd->out.len] = '\0';
    dbp__conn_unlink_op(c, op);
    dbp__op_fail(op, DBP_ENOMEM, 0, "out of memory queueing the command");
    if (c->nops == 0) dbp__conn_idle(c);
}

/* A command ran past its deadline: rejected now; its reply, when it comes,
   is dropped. A connection that stays silent is closed. */
static void dbp__rd_op_timeout(dbp_conn *c, dbp_op *op)
{
    dbp__rd *rd = DBP__RD(c);
    long long grace = op->query_timeout > 1000 ? op->query_timeout : 1000;
    /* queued is as good as sent: the connection goes on flushing, so a
       command not yet written in full when its deadline passed may still
       reach the server and run */
    int sent = rd && op->out_end;
    op->flags |= DBP__OF_ZOMBIE;
    dbp__op_fail(op, DBP_ETIMEOUT, sent, "command %s got no reply within its deadline (%.3f s)", op->cmd,
                 op->t_start ? (double)(dbp__now_us() - op->t_start) / 1e6 : 0.0);
    c->flags |= DBP__CF_SUSPECT;
    dbp__timer_min(c->pool->hub, &c->timer, dbp__ms_now() + grace);
}

static void dbp__rd_validate(dbp_conn *c)
{
    static const char *const argv[] = { "PING" };
    if (dbp__rd_internal_push(c, DBP__RI_VALIDATE, 1, argv, NULL) != DBP_OK) {
        dbp__rd_fail(c, DBP_ENOMEM, "out of memory");
        return;
    }
    dbp__timer_set(c->pool->hub, &c->timer, dbp__ms_now() + c->pool->s.connect_timeout);
}

static void dbp__rd_quit(dbp_conn *c)
{
    static const char *const argv[] = { "QUIT" };
    dbp__rd *rd = DBP__RD(c);
    if (!rd || rd->phase != DBP__RP_READY || dbp__rd_internal_push(c, DBP__RI_QUIT, 1, argv, NULL) != DBP_OK) {
        dbp__conn_closed(c);
        return;
    }
    dbp__rd_write(c);
}

static void dbp__rd_release(dbp_conn *c)
{
    dbp__rd *rd = DBP__RD(c);
    dbp_pool *p = c->pool;
    dbp__conn_unpin(c);
    if (rd && rd->dirty) {
        /* MULTI, WATCH or another database left behind: start afresh */
        rd->dirty = 0;
        dbp__conn_close(c, DBP__CLOSE_ERROR);
        dbp__pool_dispatch(p);
        dbp__pool_check_closed(p);
        return;
    }
    dbp__conn_idle(c);
}

static unsigned dbp__rd_session(const dbp_conn *c)
{
    const dbp__rd *rd = DBP__CAST(const dbp__rd *, c->be);
    if (!rd) return 0;
    return ((rd->dirty & DBP__RS_MULTI) ? DBP_SESSION_TRANSACTION : 0) | (rd->dirty ? DBP_SESSION_CHANGED : 0);
}

/* The database is a number; a user needs a password (AUTH user password). */
static int dbp__rd_settings(dbp__settings *s, dbp_error *err)
{
    if (s->database) {
        int db;
        if (dbp__parse_count(s->database, 0, &db))
            return dbp__err_set(err, DBP_EURL, "malformed URL: the Redis database must be a number, got '%.20s'", s->database);
        s->redis_db = db;
    }
    if (s->user && !s->password)
        return dbp__err_set(err, DBP_EURL, "malformed URL: a Redis user needs a password (redis://user:password@host)");
    return DBP_OK;
}

static void dbp__rd_describe(const dbp__settings *s, char *buf, size_t size)
{
    char db[16];
    snprintf(db, sizeof db, "%d", s->redis_db);
    dbp__describe_host(s, db, buf, size);
}

static const dbp__backend dbp__redis_backend = {
    "redis", "redis", 6379, DBP__FOR_REDIS, DBP__BKF_COMMANDS | DBP__BKF_PUBSUB | DBP__BKF_PATTERNS, NULL, dbp__rd_settings, dbp__rd_describe,
    dbp__rd_open, dbp__rd_conn_io, dbp__rd_op_start, dbp__rd_op_timeout, dbp__rd_validate,
    dbp__rd_quit, dbp__rd_abort, dbp__rd_flush, dbp__idle_socket_dead, dbp__rd_release, dbp__rd_session,
    NULL, NULL, 1, NULL, NULL
};

#endif /* DBPOOL_NO_REDIS (the Redis backend) */


#if !defined(DBPOOL_NO_REDIS) || !defined(DBPOOL_NO_PGSQL)
/* ==== SECTION: pub/sub ==== */

/* Redis SUBSCRIBE/PSUBSCRIBE, PostgreSQL LISTEN: one dedicated connection
   per subscription, resubscribed after a reconnect. */

struct dbp_sub {
    dbp__link link;             /* pool->subs */
    dbp_pool *pool;
    dbp_conn *conn;
    char **names;
    size_t *lens;
    int *pattern;
    int n, cap;
    dbp_message_fn fn;
    void *ud;
    int reconnects, fail_streak;
    int ended;                  /* the pool closed under it, or dbp_sub_free */
    int in_cb, free_later;
    int ever_ready;
    long long down_since_us;
    dbp__timer timer;           /* reconnect backoff */
};

static void dbp__sub_deliver(dbp_sub *s, dbp_msg_type type, const char *ch, size_t chn, const char *pat,
                             size_t patn, const char *pl, size_t pln)
{
    dbp_message m;
    if (!s->fn || s->ended) return;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.channel = ch; m.channel_len = chn;
    m.pattern = pat; m.pattern_len = patn;
    m.payload = pl; m.payload_len = pln;
    s->in_cb++;
    s->fn(s, &m, s->ud);
    s->in_cb--;
}

static void dbp__sub_free(dbp_sub *s);

/* Ends a subscription closed from its own callback, once that returned.
   Every function that delivers calls it last (s is gone after it). */
static void dbp__sub_reap(dbp_sub *s)
{
    dbp_conn *sc;
    if (!s->free_later || s->in_cb) return;
    sc = s->conn;
    s->conn = NULL;
    if (sc) { sc->sub = NULL; dbp__conn_close(sc, DBP__CLOSE_POOL); }
    dbp__sub_free(s);
}

static void dbp__sub_free(dbp_sub *s)
{
    int i;
    if (s->pool) { dbp__timers_release(s->pool->hub, 1); dbp__timer_clear(s->pool->hub, &s->timer); }
    dbp__list_remove(&s->link);
    for (i = 0; i < s->n; i++) DBP_FREE(s->names[i]);
    DBP_FREE(s->names); DBP_FREE(s->lens); DBP_FREE(s->pattern);
    DBP_FREE(s);
}

/* Queues (P)SUBSCRIBE for names [from, s->n) on the subscription's connection. */
static int dbp__sub_send(dbp_sub *s, int from)
{
    dbp_conn *c = s->conn;
#ifndef DBPOOL_NO_REDIS
    dbp__rd *rd;
    int k;
#endif
    if (!c || !c->be || c->state == DBP__CS_CONNECTING || c->state == DBP__CS_INIT) return DBP_OK;
#ifndef DBPOOL_NO_PGSQL
    if (c->pool->bk->flags & DBP__BKF_LISTEN) return dbp__pg_listen(c, (const char *const *)s->names, from, s->n);
#endif
#ifndef DBPOOL_NO_REDIS
    rd = DBP__RD(c);
    for (k = 0; k < 2; k++) {
        int i, cnt = 0;
        size_t before = dbp__buf_unread(&rd->out);
        for (i = from; i < s->n; i++) if (s->pattern[i] == k) cnt++;
        if (!cnt) continue;
        if (dbp__resp_array(&rd->out, (size_t)cnt + 1) ||
            dbp__resp_bulk(&rd->out, k ? "PSUBSCRIBE" : "SUBSCRIBE", k ? 10 : 9))
            return DBP_ENOMEM;
        for (i = from; i < s->n; i++)
            if (s->pattern[i] == k && dbp__resp_bulk(&rd->out, s->names[i], s->lens[i])) return DBP_ENOMEM;
        rd->appended += dbp__buf_unread(&rd->out) - before;
    }
    c->events |= POLLOUT | POLLIN;
#endif
    return DBP_OK;
}

static void dbp__sub_connect(dbp_sub *s);

static void dbp__sub_timer_fire(dbp__timer *t)
{
    dbp_sub *s = DBP__CONTAINER(t, dbp_sub, timer);
    if (!s->ended && !s->conn) dbp__sub_connect(s);
}

static void dbp__sub_connect(dbp_sub *s)
{
    dbp_pool *p = s->pool;
    dbp_conn *c = dbp__conn_new(p, DBP__CF_SUB);
    if (!c) { dbp__timer_set(p->hub, &s->timer, dbp__ms_now() + p->s.backoff_max); return; }
    c->sub = s;
    s->conn = c;
    dbp__list_push(&p->conns, &c->link);
    p->nconnecting++;
    dbp__timer_set(p->hub, &c->timer, dbp__ms_now() + p->s.connect_timeout);
    if (p->bk->conn_open(c) != DBP_OK) {
        dbp_error e = c->err;
        dbp__conn_failed(c, &e, 1);
    }
}

/* The subscription's connection is ready: subscribe to everything again. */
static void dbp__sub_ready(dbp_conn *c)
{
    dbp_sub *s = c->sub;
    if (!s) return;
    s->fail_streak = 0;
    c->events = POLLIN;
    if (dbp__sub_send(s, 0) != DBP_OK) {
        dbp_error e;
        dbp__err_set(&e, DBP_ENOMEM, "out of memory subscribing");
        dbp__conn_failed(c, &e, 0);
        return;
    }
#ifndef DBPOOL_NO_REDIS
    if (!(c->pool->bk->flags & DBP__BKF_LISTEN)) dbp__rd_write(c);
#endif
    if (s->ever_ready) {
        char msg[160];
        double gap = (double)(dbp__now_us() - s->down_since_us) / 1e6;
        s->reconnects++;
        snprintf(msg, sizeof msg, "subscription restored after %.3f s; messages published in between were not received", gap);
        dbp__emit(s->pool, DBP_EVENT_ERROR, msg, NULL, (long long)(gap * 1e6), c);
        s->ever_ready = 1;
        dbp__sub_deliver(s, DBP_MSG_RESUBSCRIBED, NULL, 0, NULL, 0, msg, strlen(msg));
        dbp__sub_reap(s);
        return;
    }
    s->ever_ready = 1;
}

/* The subscription's connection died: reconnect with backoff. */
static void dbp__sub_lost(dbp_conn *c, const dbp_error *e)
{
    dbp_sub *s = c->sub;
    dbp_pool *p;
    if (!s) return;
    p = s->pool;
    c->sub = NULL;
    if (s->conn == c) s->conn = NULL;
    if (s->ended) return;
    if (s->ever_ready && s->fail_streak == 0) {
        char msg[DBP_ERRMSG_MAX + 64];
        s->down_since_us = dbp__now_us();
        snprintf(msg, sizeof msg, "subscription connection lost (%s); reconnecting", e->message);
        dbp__emit(p, DBP_EVENT_ERROR, msg, e, 0, NULL);
    }
    s->fail_streak++;
    if (e->rc == DBP_EAUTH && !s->ever_ready) {
        /* (delivered before it is marked ended: deliver skips ended ones) */
        dbp__sub_deliver(s, DBP_MSG_ERROR, NULL, 0, NULL, 0, e->message, strlen(e->message));
        s->ended = 1;
        dbp__sub_reap(s);
        return;
    }
#ifndef DBPOOL_NO_REDIS
    if (p->parent && p->parent->bk->router->any) {
        /* a node went away: messages are broadcast, so any other node will do */
        dbp_pool *np = p->parent->bk->router->any(p->parent, p);
        if (np) {
            dbp__timer_clear(p->hub, &s->timer);
            dbp__list_remove(&s->link);
            dbp__list_push(&np->subs, &s->link);
            s->pool = np;
            p = np;
        }
    }
#endif
    dbp__timer_set(p->hub, &s->timer, dbp__ms_now() + dbp__backoff_ms(p, s->fail_streak, 0));
}

#ifndef DBPOOL_NO_PGSQL
/* PostgreSQL: LISTEN confirmed for names [from, to); a NOTIFY arrived. */
static void dbp__sub_listened(dbp_conn *c, int from, int to)
{
    dbp_sub *s = c->sub;
    int i;
    if (!s) return;
    for (i = from; i < to && i < s->n && !s->ended; i++)
        dbp__sub_deliver(s, DBP_MSG_SUBSCRIBED, s->names[i], s->lens[i], NULL, 0, NULL, 0);
    dbp__sub_reap(s);
}
static int dbp__sub_notified(dbp_conn *c, const char *ch, const char *payload)
{
    dbp_sub *s = c->sub;
    if (!s) return 0;
    dbp__sub_deliver(s, DBP_MSG_MESSAGE, ch, strlen(ch), NULL, 0, payload, strlen(payload));
    if (s->free_later && !s->in_cb) { dbp__sub_reap(s); return 0; }
    return c->sub == s && c->be != NULL;
}
#endif

#ifndef DBPOOL_NO_REDIS
/* A push on a subscription connection. */
static void dbp__sub_push(dbp_conn *c, dbp_reply *r)
{
    dbp_sub *s = c->sub;
    dbp_reply **e;
    if (!s || r->type != DBP_REPLY_ARRAY || r->elements < 3) { dbp_reply_free(r); return; }
    e = r->element;
    if (e[0]->type != DBP_REPLY_STRING) { dbp_reply_free(r); return; }
    if (strcmp(e[0]->str, "message") == 0 && r->elements == 3)
        dbp__sub_deliver(s, DBP_MSG_MESSAGE, e[1]->str, e[1]->len, NULL, 0, e[2]->str, e[2]->len);
    else if (strcmp(e[0]->str, "pmessage") == 0 && r->elements == 4)
        dbp__sub_deliver(s, DBP_MSG_PMESSAGE, e[2]->str, e[2]->len, e[1]->str, e[1]->len, e[3]->str, e[3]->len);
    else if (strcmp(e[0]->str, "subscribe") == 0 || strcmp(e[0]->str, "psubscribe") == 0)
        dbp__sub_deliver(s, DBP_MSG_SUBSCRIBED, e[1]->str, e[1]->len, NULL, 0, NULL, 0);
    dbp_reply_free(r);
    dbp__sub_reap(s);
}
#endif

/* The pool is closing: subscriptions end with it. */
static void dbp__sub_pool_closing(dbp_pool *p)
{
    while (!dbp__list_empty(&p->subs)) {
        dbp_sub *s = DBP__CONTAINER(p->subs.next, dbp_sub, link);
        dbp_conn *c = s->conn;
        s->ended = 1;
        dbp__list_remove(&s->link);
        dbp__timer_clear(p->hub, &s->timer);
        s->conn = NULL;
        if (c) {
            c->sub = NULL;
            if (c->state == DBP__CS_IDLE) dbp__conn_close(c, DBP__CLOSE_POOL);
            else { if (p->bk->abort) p->bk->abort(c); dbp__conn_bury(c, DBP__CLOSE_POOL); }
        }
    }
}

static int dbp__sub_add_names(dbp_sub *s, int pattern, int n, const char *const *names)
{
    int i;
    if (n < 0 || (n > 0 && !names)) return DBP_EUSAGE;
    if (s->n + n > s->cap) {
        int cap = s->cap ? s->cap : 8;
        char **nn; size_t *nl; int *np;
        while (cap < s->n + n) cap *= 2;
        nn = DBP__CAST(char **, DBP_REALLOC(s->names, (size_t)cap * sizeof *nn));
        if (!nn) return DBP_ENOMEM;
        s->names = nn;
        nl = DBP__CAST(size_t *, DBP_REALLOC(s->lens, (size_t)cap * sizeof *nl));
        if (!nl) return DBP_ENOMEM;
        s->lens = nl;
        np = DBP__CAST(int *, DBP_REALLOC(s->pattern, (size_t)cap * sizeof *np));
        if (!np) return DBP_ENOMEM;
        s->pattern = np;
        s->cap = cap;
    }
    for (i = 0; i < n; i++) {
        if (!names[i]) return DBP_EUSAGE;
        s->names[s->n] = dbp__strdup(names[i]);
        if (!s->names[s->n]) return DBP_ENOMEM;
        s->lens[s->n] = strlen(names[i]);
        s->pattern[s->n] = pattern;
        s->n++;
    }
    return DBP_OK;
}

DBPDEF dbp_sub *dbp_pool_subscribe(dbp_pool *p, int nchannels, const char *const *channels, int npatterns,
                                   const char *const *patterns, dbp_message_fn fn, void *ud, dbp_error *err)
{
    dbp_sub *s;
    int rc;
    dbp__err_clear(err);
    if (!p) { dbp__err_set(err, DBP_EUSAGE, "no pool"); return NULL; }
    if (!(p->bk->flags & DBP__BKF_PUBSUB)) { dbp__err_set(err, DBP_EUSAGE, "subscribe needs a Redis or PostgreSQL pool"); return NULL; }
    if (!(p->bk->flags & DBP__BKF_PATTERNS) && npatterns > 0) {
        dbp__err_set(err, DBP_EUSAGE, "%s has no patterns (LISTEN takes exact names): subscribe to channels", p->bk->name);
        return NULL;
    }
    if (p->state != DBP__PS_OPEN) { dbp__err_set(err, DBP_ECLOSED, "pool is closing or closed"); return NULL; }
    if (nchannels + npatterns <= 0) { dbp__err_set(err, DBP_EUSAGE, "subscribe to at least one channel or pattern"); return NULL; }
#ifndef DBPOOL_NO_REDIS
    if (p->bk->router) {
        /* classic pub/sub is broadcast to every node: any node will do */
        dbp_pool *node = p->bk->router->any ? p->bk->router->any(p, NULL) : NULL;
        if (!node) { dbp__err_set(err, DBP_ECONNECT, "no %s node known yet", p->bk->name); return NULL; }
        p = node;
    }
#endif
    s = DBP__ALLOC(dbp_sub, 1);
    if (!s || dbp__timers_reserve(p->hub, 1) != DBP_OK) { DBP_FREE(s); dbp__err_set(err, DBP_ENOMEM, "out of memory"); return NULL; }
    s->pool = p;
    s->fn = fn;
    s->ud = ud;
    dbp__timer_init(&s->timer, dbp__sub_timer_fire);
    dbp__list_push(&p->subs, &s->link);
    if ((rc = dbp__sub_add_names(s, 0, nchannels, channels)) != DBP_OK ||
        (rc = dbp__sub_add_names(s, 1, npatterns, patterns)) != DBP_OK) {
        dbp__sub_free(s);
        dbp__err_set(err, rc, rc == DBP_ENOMEM ? "out of memory" : "a channel name is NULL");
        return NULL;
    }
    dbp__sub_connect(s);
    return s;
}

DBPDEF int dbp_sub_add(dbp_sub *s, int patterns, int n, const char *const *names)
{
    int from, rc;
    if (!s || s->ended) return DBP_EUSAGE;
    if (patterns && !(s->pool->bk->flags & DBP__BKF_PATTERNS)) return DBP_EUSAGE;
    from = s->n;
    if ((rc = dbp__sub_add_names(s, patterns ? 1 : 0, n, names)) != DBP_OK) return rc;
    return dbp__sub_send(s, from);
}

DBPDEF int dbp_sub_reconnects(const dbp_sub *s) { return s ? s->reconnects : 0; }

DBPDEF void dbp_sub_free(dbp_sub *s)
{
    dbp_conn *c;
    if (!s) return;
    s->ended = 1;
    s->fn = NULL;
    if (s->in_cb) { s->free_later = 1; return; }
    c = s->conn;
    s->conn = NULL;
    if (c && c->state != DBP__CS_DEAD) {
        c->sub = NULL;
        if (c->state == DBP__CS_IDLE) dbp__conn_close(c, DBP__CLOSE_POOL);
        else { if (c->pool->bk->abort) c->pool->bk->abort(c); dbp__conn_bury(c, DBP__CLOSE_POOL); }
        dbp__pool_check_closed(c->pool);
    }
    dbp__sub_free(s);
}
#else
static void dbp__sub_pool_closing(dbp_pool *p) { DBP__UNUSED(p); }
static void dbp__sub_ready(dbp_conn *c) { DBP__UNUSED(c); }
static void dbp__sub_lost(dbp_conn *c, const dbp_error *e) { DBP__UNUSED(c); DBP__UNUSED(e); }
DBPDEF dbp_sub *dbp_pool_subscribe(dbp_pool *p, int nchannels, const char *const *channels, int npatterns,
                                   const char *const *patterns, dbp_message_fn fn, void *ud, dbp_error *err)
{
    DBP__UNUSED(p); DBP__UNUSED(nchannels); DBP__UNUSED(channels); DBP__UNUSED(npatterns);
    DBP__UNUSED(patterns); DBP__UNUSED(fn); DBP__UNUSED(ud);
    dbp__err_set(err, DBP_EUNSUPPORTED, "built without Redis and PostgreSQL");
    return NULL;
}
DBPDEF int dbp_sub_add(dbp_sub *s, int patterns, int n, const char *const *names)
{ DBP__UNUSED(s); DBP__UNUSED(patterns); DBP__UNUSED(n); DBP__UNUSED(names); return DBP_EUNSUPPORTED; }
DBPDEF int dbp_sub_reconnects(const dbp_sub *s) { DBP__UNUSED(s); return 0; }
DBPDEF void dbp_sub_free(dbp_sub *s) { DBP__UNUSED(s); }
#endif /* pub/sub */


/* ==== SECTION: Redis commands ==== */

/* Upper-cases the command name into op->cmd. */
static void dbp__cmd_name(dbp_op *op, const char *name, size_t n)
{
    size_t i;
    if (n >= sizeof op->cmd) n = sizeof op->cmd - 1;
    for (i = 0; i < n; i++) op->cmd[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
    op->cmd[n] = '\0';
}

static int dbp__cmd_is(const dbp_op *op, const char *const *list)
{
    /* the first letter rules out nearly every name at the cost of a compare */
    for (; *list; list++) if (op->cmd[0] == (*list)[0] && strcmp(op->cmd, *list) == 0) return 1;
    return 0;
}

static int dbp__ieq(const char *a, size_t n, const char *b)
{
    size_t i;
    if (strlen(b) != n) return 0;
    for (i = 0; i < n; i++) {
        char x = a[i] >= 'a' && a[i] <= 'z' ? (char)(a[i] - 32) : a[i];
        if (x != b[i]) return 0;
    }
    return 1;
}

/* Seconds a blocking command may block (-1: not blocking, 0: forever). */
static double dbp__blocking_seconds(const dbp_op *op, int argc, const char *const *argv, const size_t *lens)
{
    static const char *const last_arg[] = { "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BZPOPMIN", "BZPOPMAX", NULL };
    static const char *const first_arg[] = { "BLMPOP", "BZMPOP", NULL };
    char tmp[32];
    int i;
    if (dbp__cmd_is(op, last_arg) && argc >= 2) {
        size_t n = lens[argc - 1] < sizeof tmp - 1 ? lens[argc - 1] : sizeof tmp - 1;
        memcpy(tmp, argv[argc - 1], n); tmp[n] = '\0';
        return atof(tmp);
    }
    if (dbp__cmd_is(op, first_arg) && argc >= 2) {
        size_t n = lens[1] < sizeof tmp - 1 ? lens[1] : sizeof tmp - 1;
        memcpy(tmp, argv[1], n); tmp[n] = '\0';
        return atof(tmp);
    }
    if ((dbp__cmd_eq(op, "XREAD") || dbp__cmd_eq(op, "XREADGROUP"))) {
        for (i = 1; i + 1 < argc; i++)
            if (dbp__ieq(argv[i], lens[i], "BLOCK")) {
                size_t n = lens[i + 1] < sizeof tmp - 1 ? lens[i + 1] : sizeof tmp - 1;
                memcpy(tmp, argv[i + 1], n); tmp[n] = '\0';
                return atof(tmp) / 1000.0;
            }
        return -1;
    }
    if ((dbp__cmd_eq(op, "WAIT") || dbp__cmd_eq(op, "WAITAOF")) && argc >= 3) {
        size_t n = lens[argc - 1] < sizeof tmp - 1 ? lens[argc - 1] : sizeof tmp - 1;
        memcpy(tmp, argv[argc - 1], n); tmp[n] = '\0';
        return atof(tmp) / 1000.0;
    }
    return -1;
}

/* Builds a Redis command op; refuses what cannot run on a shared connection. */
static dbp_op *dbp__call_make(dbp_hub *hub, dbp_pool *p, int pinned, int argc, const char *const *argv,
                              const size_t *argvlen, const dbp_op_options *o, size_t *lens_buf_fallback)
{
    static const char *const need_pin[] = { "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", NULL };
    static const char *const never[] = { "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
                                         "SUNSUBSCRIBE", "MONITOR", "QUIT", "RESET", "HELLO", "SYNC", "PSYNC", NULL };
    dbp_op *op = dbp__op_new(hub, p, DBP__OP_CALL);
    dbp__buf b;
    const size_t *lens = argvlen;
    int i;
    double block;
    DBP__UNUSED(lens_buf_fallback);
    if (!op) return NULL;
    if (o) {
        if (o->timeout_ms > 0) op->deadline = dbp__ms_now() + o->timeout_ms;
        if (o->idempotent) op->flags |= DBP__OF_IDEMPOTENT;
    }
    if (!(p->bk->flags & DBP__BKF_COMMANDS)) { dbp__op_fail(op, DBP_EUSAGE, 0, "call() needs a Redis pool; use query() for SQL"); return op; }
    if (argc <= 0 || !argv) { dbp__op_fail(op, DBP_EUSAGE, 0, "a command needs at least its name"); return op; }
    for (i = 0; i < argc; i++)
        if (!argv[i]) { dbp__op_fail(op, DBP_EUSAGE, 0, "argument %d is NULL", i + 1); return op; }
    if (!lens) {
        size_t *l = DBP__ALLOC(size_t, (size_t)argc);
        if (!l) { dbp__op_fail(op, DBP_ENOMEM, 0, "out of memory"); return op; }
        for (i = 0; i < argc; i++) l[i] = strlen(argv[i]);
        lens = l;
    }
    dbp__cmd_name(op, argv[0], lens[0]);
    if (dbp__cmd_is(op, never)) {
        dbp__op_fail(op, DBP_EUSAGE, 0, "%s cannot run on a pooled connection%s", op->cmd,
                     strstr(op->cmd, "SUBSCRIBE") ? "; use subscribe()" : "");
        goto out;
    }
    if (dbp__cmd_eq(op, "CLIENT") && argc >= 2 && dbp__ieq(argv[1], lens[1], "REPLY")) {
        dbp__op_fail(op, DBP_EUSAGE, 0, "CLIENT REPLY would break the pipeline and is refused");
        goto out;
    }
    if (!pinned && dbp__cmd_is(op, need_pin)) {
        dbp__op_fail(op, DBP_EUSAGE, 0, "%s needs one connection for the whole session: use a pinned connection (acquire() or transaction())", op->cmd);
        goto out;
    }
    block = dbp__blocking_seconds(op, argc, argv, lens);
    if (block >= 0 && !pinned) {
        op->flags |= DBP__OF_BLOCKING;
        /* the deadline is the block time plus the query timeout (or a second:
           the server answers exactly at the block time); forever means none */
        op->query_timeout = block == 0 ? -1 : (int)(block * 1000.0) + (p->s.query_timeout > 0 ? p->s.query_timeout : 1000);
    }
    memset(&b, 0, sizeof b);
    if (dbp__resp_format(&b, argc, argv, lens)) {
        dbp__buf_free(&b);
        dbp__op_fail(op, DBP_ENOMEM, 0, "out of memory");
        goto out;
    }
    op->req = b.data;
    op->req_len = b.len;
    if (p->bk->router && p->bk->router->prepare(p, op, argc, argv, lens) != DBP_OK) goto out;
out:
    if (lens != argvlen) DBP_FREE(DBP__CAST(void *, (void *)lens));
    return op;
}


/* ==== SECTION: Redis Cluster ==== */

DBPDEF unsigned dbp_key_slot(const char *key, size_t len)
{
    size_t s, e;
    unsigned crc = 0;
    size_t i;
    /* hash only the part inside the first {...}, when it is not empty */
    for (s = 0; s < len && key[s] != '{'; s++) ;
    if (s < len) {
        for (e = s + 1; e < len && key[e] != '}'; e++) ;
        if (e < len && e != s + 1) { key += s + 1; len = e - s - 1; }
    }
    for (i = 0; i < len; i++) {
        int b;
        crc ^= (unsigned)(unsigned char)key[i] << 8;
        for (b = 0; b < 8; b++) crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc & 16383;
}

#ifndef DBPOOL_NO_REDIS
/* The map is read again this often while the pool is open, besides after redirects and failures. */
#define DBP__CLUSTER_REFRESH_MS 5000

/* A node of the cluster: a pool of its own under the cluster pool. */
typedef struct dbp__cnode {
    dbp_pool *pool;
    char host[64];
    int port;
    int primary;          /* role in the latest map */
    int primary_of;       /* replicas: their primary's index */
    int nslots, nranges;
    int in_map;
    int seed;
} dbp__cnode;

typedef struct dbp__cluster {
    dbp__cnode *nodes;
    int nnodes, cap;
    short slots[16384];   /* primary node of each slot, -1 when unassigned */
    int have_map;
    dbp_op *refresh_op;   /* the one CLUSTER SLOTS under way (single flight) */
    long long last_refresh_ms;
    int refresh_pending;  /* wanted while rate-limited */
    int refresh_from;     /* rotates over the nodes */
    int refresh_failures;
    int rr;               /* round robin: keyless commands, replicas */
    int running;          /* routed ops whose node op is under way */
    dbp_error last_err;
    dbp__timer rtimer;
    dbp_pool *pool;       /* the cluster pool */
} dbp__cluster;

#define DBP__CL(p) DBP__CAST(dbp__cluster *, (p)->rt)

static const char *dbp__cluster_last_error(const dbp_pool *p)
{
    return DBP__CL(p)->last_err.message;
}

/* Routed ops (and a map refresh) still under way on the nodes. */
static int dbp__cluster_running(const dbp_pool *p)
{
    return DBP__CL(p)->running + (DBP__CL(p)->refresh_op ? 1 : 0);
}

/* A routed op let go of its node op before that settled. */
static void dbp__cluster_unlinked(dbp_pool *p)
{
    if (DBP__CL(p)->running > 0) DBP__CL(p)->running--;
}

/* A deep copy of settings for a node pool at host:port. */
static int dbp__settings_for_node(dbp__settings *dst, const dbp__settings *src, const char *host, int port, int readonly)
{
    memset(dst, 0, sizeof *dst);
    *dst = *src;
    dst->bk = &dbp__redis_backend;
    dst->host = dbp__strdup(host);
    dst->port = port;
    dst->user = dbp__strdup(src->user);
    dst->password = dbp__strdup(src->password);
    dst->name = dbp__strdup(src->name);
    dst->database = NULL; dst->socket = NULL; dst->charset = NULL;
    dst->ssl_ca = dst->ssl_cert = dst->ssl_key = NULL;
    dst->nseeds = 0; dst->seed_hosts = NULL; dst->seed_ports = NULL;
    dst->init = NULL; dst->ninit = 0;
    dst->redis_db = 0;
    dst->readonly = readonly;
    if (!dst->host || (src->user && !dst->user) || (src->password && !dst->password) || (src->name && !dst->name)) {
        dbp__settings_free(dst);
        return DBP_ENOMEM;
    }
    return DBP_OK;
}

static void dbp__cluster_rtimer_fire(dbp__timer *t);
static void dbp__cluster_dispatch(dbp_pool *p);
static void dbp__cluster_free(dbp_pool *p);
static void dbp__cluster_refresh(dbp_pool *p, int exclude);

/* Finds the node host:port, or adds it with a pool of its own. -1 on OOM. */
static int dbp__cluster_node(dbp_pool *p, const char *host_in, int port, int readonly)
{
    dbp__cluster *cl = DBP__CL(p);
    dbp__settings s;
    dbp_error e;
    dbp_pool *np;
    int i;
    /* a copy: the caller's name may live in cl->nodes, which the realloc
       below can move (a cluster map that gives a node as "" or "?" makes the
       caller pass the name of the node it asked) */
    char host[sizeof cl->nodes[0].host];
    if (strlen(host_in) >= sizeof host) return -1;
    memcpy(host, host_in, strlen(host_in) + 1);
    for (i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].port == port && strcmp(cl->nodes[i].host, host) == 0) {
            dbp__cnode *n = &cl->nodes[i];
            if (n->pool && n->pool->s.readonly != readonly && n->pool->state == DBP__PS_OPEN) {
                /* its role changed (failover): connections get READONLY, or not, from now on */
                dbp__link *l;
                n->pool->s.readonly = readonly;
                for (l = n->pool->conns.next; l != &n->pool->conns; l = l->next) {
                    dbp_conn *c = DBP__CONTAINER(l, dbp_conn, link);
                    if (!(c->flags & DBP__CF_SUB)) c->flags |= DBP__CF_RETIRING;
                    if (c->state == DBP__CS_IDLE && !(c->flags & DBP__CF_SUB)) { dbp__conn_close(c, DBP__CLOSE_LIFETIME); break; }
                }
            }
            return i;
        }
    if (strlen(host) >= sizeof cl->nodes[0].host) return -1;
    if (cl->nnodes == cl->cap) {
        int cap = cl->cap ? cl->cap * 2 : 8;
        dbp__cnode *nn = DBP__CAST(dbp__cnode *, DBP_REALLOC(cl->nodes, (size_t)cap * sizeof *nn));
        if (!nn) return -1;
        cl->nodes = nn;
        cl->cap = cap;
    }
    if (dbp__settings_for_node(&s, &p->s, host, port, readonly) != DBP_OK) return -1;
    np = dbp__pool_make(p->hub, &s, &e);
    if (!np) return -1;
    np->parent = p;
    np->fail_fast = 1;
    i = cl->nnodes++;
    memset(&cl->nodes[i], 0, sizeof cl->nodes[i]);
    cl->nodes[i].pool = np;
    snprintf(cl->nodes[i].host, sizeof cl->nodes[i].host, "%s", host);
    cl->nodes[i].port = port;
    cl->nodes[i].primary_of = -1;
    return i;
}

static int dbp__cluster_open(dbp_pool *p, dbp_error *err)
{
    dbp__cluster *cl = DBP__ALLOC(dbp__cluster, 1);
    int i;
    if (!cl || dbp__timers_reserve(p->hub, 1) != DBP_OK) { DBP_FREE(cl); return dbp__err_set(err, DBP_ENOMEM, "out of memory"); }
    p->rt = cl;
    cl->pool = p;
    for (i = 0; i < 16384; i++) cl->slots[i] = -1;
    dbp__timer_init(&cl->rtimer, dbp__cluster_rtimer_fire);
    for (i = 0; i < p->s.nseeds; i++) {
        int k = dbp__cluster_node(p, p->s.seed_hosts[i], p->s.seed_ports[i], 0);
        if (k < 0) { dbp__cluster_free(p); return dbp__err_set(err, DBP_ENOMEM, "out of memory"); }
        cl->nodes[k].seed = 1;
    }
    dbp__err_set(&cl->last_err, DBP_ECONNECT, "the cluster map was not read yet");
    dbp__cluster_refresh(p, -1);
    return DBP_OK;
}

static void dbp__cluster_free(dbp_pool *p)
{
    dbp__cluster *cl = DBP__CL(p);
    int i;
    if (!cl) return;
    dbp__timers_release(p->hub, 1);
    dbp__timer_clear(p->hub, &cl->rtimer);
    if (cl->refresh_op) cl->refresh_op->owner = NULL;
    for (i = 0; i < cl->nnodes; i++) if (cl->nodes[i].pool) dbp__pool_destroy(cl->nodes[i].pool);
    DBP_FREE(cl->nodes);
    DBP_FREE(cl);
    p->rt = NULL;
}

static int dbp__cluster_busy(const dbp_pool *p)
{
    dbp__cluster *cl = DBP__CL(p);
    int i;
    if (!cl) return 0;
    if (cl->running > 0 || cl->refresh_op) return 1;
    for (i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].pool && cl->nodes[i].pool->state != DBP__PS_CLOSED) return 1;
    return 0;
}

/* The cluster pool has no more work: its node pools close. */
static void dbp__cluster_close_nodes(dbp_pool *p, int timeout_ms)
{
    dbp__cluster *cl = DBP__CL(p);
    int i;
    for (i = 0; i < cl->nnodes; i++) {
        dbp_pool *np = cl->nodes[i].pool;
        if (np && np->state != DBP__PS_CLOSED) dbp__pool_begin_close(np, timeout_ms);
    }
}

/* ---- keys and slots ---- */

enum { DBP__K_RO = 1,       /* read-only: may go to a replica */
       DBP__K_EVAL = 2,     /* keys after numkeys at argv[2] */
       DBP__K_NUMKEYS1 = 4, /* numkeys at argv[1], keys follow */
       DBP__K_NUMKEYS2 = 8, /* numkeys at argv[2], keys follow (after a first key or a timeout) */
       DBP__K_STREAMS = 16, /* keys after STREAMS, half of the rest */
       DBP__K_KEYLESS = 32 };

typedef struct dbp__keyspec { const char *name; signed char first, last, step; unsigned char flags; } dbp__keyspec;

/* first/last/step as COMMAND INFO gives them (last < 0 counts from the end). */
static const dbp__keyspec dbp__keyspecs[] = {
    { "APPEND", 1, 1, 1, 0 }, { "BITCOUNT", 1, 1, 1, 1 }, { "BITOP", 2, -1, 1, 0 }, { "BITPOS", 1, 1, 1, 1 },
    { "BLMOVE", 1, 2, 1, 0 }, { "BLMPOP", 0, 0, 0, 8 }, { "BLPOP", 1, -2, 1, 0 }, { "BRPOP", 1, -2, 1, 0 },
    { "BRPOPLPUSH", 1, 2, 1, 0 }, { "BZMPOP", 0, 0, 0, 8 }, { "BZPOPMAX", 1, -2, 1, 0 }, { "BZPOPMIN", 1, -2, 1, 0 },
    { "COPY", 1, 2, 1, 0 }, { "DBSIZE", 0, 0, 0, 32 }, { "DECR", 1, 1, 1, 0 }, { "DECRBY", 1, 1, 1, 0 },
    { "DEL", 1, -1, 1, 0 }, { "DUMP", 1, 1, 1, 1 }, { "ECHO", 0, 0, 0, 32 }, { "EVAL", 0, 0, 0, 2 },
    { "EVALSHA", 0, 0, 0, 2 }, { "EVALSHA_RO", 0, 0, 0, 3 }, { "EVAL_RO", 0, 0, 0, 3 }, { "EXISTS", 1, -1, 1, 1 },
    { "EXPIRE", 1, 1, 1, 0 }, { "EXPIREAT", 1, 1, 1, 0 }, { "EXPIRETIME", 1, 1, 1, 1 }, { "FCALL", 0, 0, 0, 2 },
    { "FCALL_RO", 0, 0, 0, 3 }, { "GEOADD", 1, 1, 1, 0 }, { "GEODIST", 1, 1, 1, 1 }, { "GEOHASH", 1, 1, 1, 1 },
    { "GEOPOS", 1, 1, 1, 1 }, { "GEOSEARCH", 1, 1, 1, 1 }, { "GET", 1, 1, 1, 1 }, { "GETBIT", 1, 1, 1, 1 },
    { "GETDEL", 1, 1, 1, 0 }, { "GETEX", 1, 1, 1, 0 }, { "GETRANGE", 1, 1, 1, 1 }, { "GETSET", 1, 1, 1, 0 },
    { "HDEL", 1, 1, 1, 0 }, { "HEXISTS", 1, 1, 1, 1 }, { "HGET", 1, 1, 1, 1 }, { "HGETALL", 1, 1, 1, 1 },
    { "HINCRBY", 1, 1, 1, 0 }, { "HINCRBYFLOAT", 1, 1, 1, 0 }, { "HKEYS", 1, 1, 1, 1 }, { "HLEN", 1, 1, 1, 1 },
    { "HMGET", 1, 1, 1, 1 }, { "HMSET", 1, 1, 1, 0 }, { "HRANDFIELD", 1, 1, 1, 1 }, { "HSCAN", 1, 1, 1, 1 },
    { "HSET", 1, 1, 1, 0 }, { "HSETNX", 1, 1, 1, 0 }, { "HSTRLEN", 1, 1, 1, 1 }, { "HVALS", 1, 1, 1, 1 },
    { "INCR", 1, 1, 1, 0 }, { "INCRBY", 1, 1, 1, 0 }, { "INCRBYFLOAT", 1, 1, 1, 0 }, { "INFO", 0, 0, 0, 32 },
    { "LINDEX", 1, 1, 1, 1 }, { "LINSERT", 1, 1, 1, 0 }, { "LLEN", 1, 1, 1, 1 }, { "LMOVE", 1, 2, 1, 0 },
    { "LMPOP", 0, 0, 0, 4 }, { "LPOP", 1, 1, 1, 0 }, { "LPOS", 1, 1, 1, 1 }, { "LPUSH", 1, 1, 1, 0 },
    { "LPUSHX", 1, 1, 1, 0 }, { "LRANGE", 1, 1, 1, 1 }, { "LREM", 1, 1, 1, 0 }, { "LSET", 1, 1, 1, 0 },
    { "LTRIM", 1, 1, 1, 0 }, { "MGET", 1, -1, 1, 1 }, { "MSET", 1, -1, 2, 0 }, { "MSETNX", 1, -1, 2, 0 },
    { "PERSIST", 1, 1, 1, 0 }, { "PEXPIRE", 1, 1, 1, 0 }, { "PEXPIREAT", 1, 1, 1, 0 }, { "PFADD", 1, 1, 1, 0 },
    { "PFCOUNT", 1, -1, 1, 1 }, { "PFMERGE", 1, -1, 1, 0 }, { "PING", 0, 0, 0, 32 }, { "PSETEX", 1, 1, 1, 0 },
    { "PTTL", 1, 1, 1, 1 }, { "PUBLISH", 0, 0, 0, 32 }, { "RANDOMKEY", 0, 0, 0, 32 }, { "RENAME", 1, 2, 1, 0 },
    { "RENAMENX", 1, 2, 1, 0 }, { "RPOP", 1, 1, 1, 0 }, { "RPOPLPUSH", 1, 2, 1, 0 }, { "RPUSH", 1, 1, 1, 0 },
    { "RPUSHX", 1, 1, 1, 0 }, { "SADD", 1, 1, 1, 0 }, { "SCARD", 1, 1, 1, 1 }, { "SDIFF", 1, -1, 1, 1 },
    { "SDIFFSTORE", 1, -1, 1, 0 }, { "SET", 1, 1, 1, 0 }, { "SETBIT", 1, 1, 1, 0 }, { "SETEX", 1, 1, 1, 0 },
    { "SETNX", 1, 1, 1, 0 }, { "SETRANGE", 1, 1, 1, 0 }, { "SINTER", 1, -1, 1, 1 }, { "SINTERCARD", 0, 0, 0, 5 },
    { "SINTERSTORE", 1, -1, 1, 0 }, { "SISMEMBER", 1, 1, 1, 1 }, { "SMEMBERS", 1, 1, 1, 1 },
    { "SMISMEMBER", 1, 1, 1, 1 }, { "SMOVE", 1, 2, 1, 0 }, { "SORT", 1, 1, 1, 0 }, { "SORT_RO", 1, 1, 1, 1 },
    { "SPOP", 1, 1, 1, 0 }, { "SRANDMEMBER", 1, 1, 1, 1 }, { "SREM", 1, 1, 1, 0 }, { "SSCAN", 1, 1, 1, 1 },
    { "STRLEN", 1, 1, 1, 1 }, { "SUNION", 1, -1, 1, 1 }, { "SUNIONSTORE", 1, -1, 1, 0 }, { "TIME", 0, 0, 0, 32 },
    { "TOUCH", 1, -1, 1, 1 }, { "TTL", 1, 1, 1, 1 }, { "TYPE", 1, 1, 1, 1 }, { "UNLINK", 1, -1, 1, 0 },
    { "XACK", 1, 1, 1, 0 }, { "XADD", 1, 1, 1, 0 }, { "XAUTOCLAIM", 1, 1, 1, 0 }, { "XCLAIM", 1, 1, 1, 0 },
    { "XDEL", 1, 1, 1, 0 }, { "XLEN", 1, 1, 1, 1 }, { "XPENDING", 1, 1, 1, 1 }, { "XRANGE", 1, 1, 1, 1 },
    { "XREAD", 0, 0, 0, 17 }, { "XREADGROUP", 0, 0, 0, 16 }, { "XREVRANGE", 1, 1, 1, 1 }, { "XTRIM", 1, 1, 1, 0 },
    { "ZADD", 1, 1, 1, 0 }, { "ZCARD", 1, 1, 1, 1 }, { "ZCOUNT", 1, 1, 1, 1 }, { "ZDIFF", 0, 0, 0, 5 },
    { "ZDIFFSTORE", 1, 1, 1, 8 }, { "ZINCRBY", 1, 1, 1, 0 }, { "ZINTER", 0, 0, 0, 5 }, { "ZINTERCARD", 0, 0, 0, 5 },
    { "ZINTERSTORE", 1, 1, 1, 8 }, { "ZLEXCOUNT", 1, 1, 1, 1 }, { "ZMPOP", 0, 0, 0, 4 }, { "ZMSCORE", 1, 1, 1, 1 },
    { "ZPOPMAX", 1, 1, 1, 0 }, { "ZPOPMIN", 1, 1, 1, 0 }, { "ZRANDMEMBER", 1, 1, 1, 1 }, { "ZRANGE", 1, 1, 1, 1 },
    { "ZRANGEBYLEX", 1, 1, 1, 1 }, { "ZRANGEBYSCORE", 1, 1, 1, 1 }, { "ZRANGESTORE", 1, 2, 1, 0 },
    { "ZRANK", 1, 1, 1, 1 }, { "ZREM", 1, 1, 1, 0 }, { "ZREMRANGEBYLEX", 1, 1, 1, 0 },
    { "ZREMRANGEBYRANK", 1, 1, 1, 0 }, { "ZREMRANGEBYSCORE", 1, 1, 1, 0 }, { "ZREVRANGE", 1, 1, 1, 1 },
    { "ZREVRANGEBYLEX", 1, 1, 1, 1 }, { "ZREVRANGEBYSCORE", 1, 1, 1, 1 }, { "ZREVRANK", 1, 1, 1, 1 },
    { "ZSCAN", 1, 1, 1, 1 }, { "ZSCORE", 1, 1, 1, 1 }, { "ZUNION", 0, 0, 0, 5 }, { "ZUNIONSTORE", 1, 1, 1, 8 }
};

static const dbp__keyspec *dbp__keyspec_find(const char *cmd)
{
    size_t lo = 0, hi = sizeof dbp__keyspecs / sizeof dbp__keyspecs[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(cmd, dbp__keyspecs[mid].name);
        if (c == 0) return &dbp__keyspecs[mid];
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    return NULL;
}

static long dbp__argl(const char *s, size_t n)
{
    char tmp[24];
    if (n >= sizeof tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return strtol(tmp, NULL, 10);
}

/* Collects the slots of the keys; -1 when there are none, -2 when unknown
   (ask the server), -3 on keys in different slots (a usage error, set). */
static int dbp__cluster_route(dbp_pool *p, dbp_op *op, int argc, const char *const *argv, const size_t *lens)
{
    const dbp__keyspec *ks = dbp__keyspec_find(op->cmd);
    int first = 0, last = -1, step = 1, i, slot = -1, other = -1;
    DBP__UNUSED(p);
    op->slot = -2;
    if (!ks) return DBP_OK; /* COMMAND GETKEYS will tell */
    if (ks->flags & DBP__K_RO) op->flags |= DBP__OF_READONLY;
    if (ks->flags & DBP__K_KEYLESS) { op->slot = -1; return DBP_OK; }
    if (ks->flags & DBP__K_EVAL) {
        long nk = argc > 2 ? dbp__argl(argv[2], lens[2]) : -1;
        if (nk < 0 || 3 + nk > argc) return DBP_OK;
        if (nk == 0) { op->slot = -1; return DBP_OK; }
        first = 3; last = 2 + (int)nk;
    } else if (ks->flags & (DBP__K_NUMKEYS1 | DBP__K_NUMKEYS2)) {
        int at = (ks->flags & DBP__K_NUMKEYS1) ? 1 : 2;
        long nk = argc > at ? dbp__argl(argv[at], lens[at]) : -1;
        if (nk <= 0 || at + 1 + nk > argc) return DBP_OK;
        first = at + 1; last = at + (int)nk;
        if (ks->first == 1 && (ks->flags & DBP__K_NUMKEYS2)) {
            /* a destination key first (ZUNIONSTORE dest numkeys k...) */
            slot = (int)dbp_key_slot(argv[1], lens[1]);
        }
    } else if (ks->flags & DBP__K_STREAMS) {
        int s = -1, n;
        for (i = 1; i < argc; i++) if (dbp__ieq(argv[i], lens[i], "STREAMS")) { s = i; break; }
        if (s < 0 || (argc - s - 1) % 2 || argc - s - 1 == 0) return DBP_OK;
        n = (argc - s - 1) / 2;
        first = s + 1; last = s + n;
    } else {
        first = ks->first;
        last = ks->last < 0 ? argc + ks->last : ks->last;
        step = ks->step;
    }
    if (first < 1 || first >= argc) { op->slot = -1; return DBP_OK; }
    if (last >= argc) last = argc - 1;
    for (i = first; i <= last; i += step) {
        int sl = (int)dbp_key_slot(argv[i], lens[i]);
        if (slot < 0) slot = sl;
        else if (sl != slot) { other = sl; break; }
    }
    if (other >= 0) {
        dbp__op_fail(op, DBP_ECROSSSLOT, 0, "%s: its keys hash to different cluster slots (%d and %d); use {hash tags} to keep them together",
                     op->cmd, slot, other);
        return DBP_ECROSSSLOT;
    }
    op->slot = slot;
    return DBP_OK;
}

/* ---- routing ---- */

static void dbp__cluster_child_done(dbp_op *child);

/* Picks the node for an op: its slot's primary, or a replica for reads when asked. */
static int dbp__cluster_pick(dbp_pool *p, const dbp_op *op)
{
    dbp__cluster *cl = DBP__CL(p);
    int prim, i;
    if (op->slot < 0) {
        /* keyless: any primary, in turn */
        for (i = 0; i < cl->nnodes; i++) {
            int k = (cl->rr++ & 0x7fffffff) % cl->nnodes;
            if (cl->nodes[k].primary && cl->nodes[k].in_map) return k;
        }
        for (i = 0; i < cl->nnodes; i++) if (cl->nodes[i].pool && cl->nodes[i].pool->state == DBP__PS_OPEN) return i;
        return -1;
    }
    prim = cl->slots[op->slot];
    if (prim < 0) return -1;
    if ((op->flags & DBP__OF_READONLY) && p->s.read_from != DBP__READ_PRIMARY) {
        int cand[16], n = 0;
        for (i = 0; i < cl->nnodes && n < 16; i++)
            if (cl->nodes[i].in_map && !cl->nodes[i].primary && cl->nodes[i].primary_of == prim) cand[n++] = i;
        if (n) return cand[(cl->rr++ & 0x7fffffff) % n];
    }
    return prim;
}

/* Sends a routed op to a node: a child op on the node's pool carries it. */
static void dbp__cluster_send(dbp_pool *p, dbp_op *top, int node, int asking)
{
    dbp__cluster *cl = DBP__CL(p);
    dbp_pool *np = cl->nodes[node].pool;
    dbp_op *child = dbp__op_new(p->hub, np, DBP__OP_CALL);
    if (!child) { dbp__op_fail(top, DBP_ENOMEM, 0, "out of memory routing the command"); return; }
    child->flags = (top->flags & (DBP__OF_IDEMPOTENT | DBP__OF_BLOCKING)) | (asking ? DBP__OF_ASKING : 0);
    child->req = top->req;           /* borrowed: the top op owns it */
    child->req_len = top->req_len;
    child->flags |= DBP__OF_BORROWED;
    memcpy(child->cmd, top->cmd, sizeof child->cmd);
    child->slot = top->slot;
    child->deadline = top->deadline ? top->deadline : top->acquire_deadline;
    child->query_timeout = top->query_timeout;
    child->done = dbp__cluster_child_done;
    child->peer = top;
    top->peer = child;
    top->state = DBP_OP_RUNNING;
    if (!top->t_start) top->t_start = dbp__now_us();
    dbp__timer_clear(p->hub, &top->timer);
    cl->running++;
    if (np->state != DBP__PS_OPEN) {
        dbp__op_fail(child, DBP_ECLOSED, 0, "node %s:%d left the cluster map", cl->nodes[node].host, cl->nodes[node].port);
        return;
    }
    dbp__pool_submit(np, child);
    if (!dbp__op_settled(child) && child->acquire_deadline && child->deadline && child->deadline < child->acquire_deadline)
        child->acquire_deadline = child->deadline;
}

/* Routes what waits in the cluster pool's queue. */
static void dbp__cluster_dispatch(dbp_pool *p)
{
    dbp__cluster *cl = DBP__CL(p);
    dbp__link *l, *next;
    if (!cl || !cl->have_map) return;
    for (l = p->queue.next; l != &p->queue; l = next) {
        dbp_op *op = DBP__CONTAINER(l, dbp_op, link);
        int node;
        next = l->next;
        if (op->slot == -2) {
            /* unknown key positions: ask a node (COMMAND GETKEYS), then route */
            if (op->peer) continue;
            node = dbp__cluster_pick(p, op);
            if (node < 0) continue;
            {
                dbp_pool *np = cl->nodes[node].pool;
                dbp_op *ask = dbp__op_new(p->hub, np, DBP__OP_CALL);
                dbp__buf b;
                const char *rest;
                long argc;
                if (!ask) continue;
                memset(&b, 0, sizeof b);
                argc = strtol(op->req + 1, NULL, 10);
                rest = strstr(op->req, "\r\n") + 2;
                /* COMMAND GETKEYS, then the command's own arguments as they were written */
                if (dbp__resp_array(&b, (size_t)argc + 2) || dbp__resp_bulk(&b, "COMMAND", 7) ||
                    dbp__resp_bulk(&b, "GETKEYS", 7) || dbp__buf_add(&b, rest, op->req_len - (size_t)(rest - op->req))) {
                    dbp__buf_free(&b);
                    ask->flags &= ~DBP__OF_CALLER;
                    dbp__op_fail(ask, DBP_ENOMEM, 0, "out of memory");
                    continue;
                }
                ask->req = b.data;
                ask->req_len = b.len;
                ask->flags &= ~DBP__OF_CALLER;
                snprintf(ask->cmd, sizeof ask->cmd, "COMMAND");
                ask->done = dbp__cluster_child_done;
                ask->peer = op;
                ask->flags |= DBP__OF_GETKEYS;
                op->peer = ask;
                cl->running++;
                dbp__pool_submit(np, ask);
            }
            continue;
        }
        node = dbp__cluster_pick(p, op);
        if (node < 0) {
            if (!cl->refresh_op) dbp__cluster_refresh(p, -1);
            continue;
        }
        dbp__unqueue_op(p, op);
        dbp__cluster_send(p, op, node, 0);
    }
}

/* Parses "MOVED 3999 127.0.0.1:6381" / "ASK ..." into slot, host, port. */
static int dbp__parse_redirect(const char *msg, int *slot, char *host, size_t hn, int *port, const char *def_host)
{
    const char *p = strchr(msg, ' '), *colon;
    char *end;
    long s;
    size_t n;
    if (!p) return -1;
    s = strtol(p + 1, &end, 10);
    if (end == p + 1 || *end != ' ' || s < 0 || s > 16383) return -1;
    colon = strrchr(end + 1, ':');
    if (!colon) return -1;
    n = (size_t)(colon - (end + 1));
    if (n == 0) { snprintf(host, hn, "%s", def_host); }
    else {
        if (n >= hn) return -1;
        memcpy(host, end + 1, n);
        host[n] = '\0';
    }
    *port = (int)strtol(colon + 1, NULL, 10);
    if (*port <= 0 || *port > 65535) return -1;
    *slot = (int)s;
    return 0;
}

/* Tries a routed op again after a short, growing delay (never past its deadline). */
static void dbp__cluster_retry_later(dbp_pool *p, dbp_op *top, const dbp_error *why)
{
    long long now = dbp__ms_now(), end = top->deadline ? top->deadline : top->acquire_deadline, delay;
    int k;
    DBP__CL(p)->last_err = *why;
    if (now >= end) {
        dbp__op_fail(top, why->rc == DBP_EREDIS ? DBP_EREDIS : DBP_ETIMEOUT, 0,
                     "no cluster node could take the command before its deadline; last error: %s", why->message);
        return;
    }
    top->retries++;
    for (delay = 50, k = 1; k < top->retries && delay < 1000; k++) delay *= 2;
    if (delay > 1000) delay = 1000;
    if (now + delay > end) delay = end - now;
    top->state = DBP_OP_RUNNING;
    dbp__timer_set(p->hub, &top->timer, now + delay);
}

/* A node op came back: hand its outcome to the routed op, or redirect. */
static void dbp__cluster_child_done(dbp_op *child)
{
    dbp_op *top = child->peer;
    dbp_pool *p;
    dbp__cluster *cl;
    const dbp_error *e = &child->err;
    int from_node = -1, i;
    if (!top) return;
    p = top->pool;
    cl = DBP__CL(p);
    cl->running--;
    top->peer = NULL;
    child->peer = NULL;
    for (i = 0; cl && i < cl->nnodes; i++) if (cl->nodes[i].pool == child->pool) from_node = i;
    if (dbp__op_settled(top)) { dbp__pool_check_closed(p); return; }
    if (child->flags & DBP__OF_GETKEYS) {
        /* COMMAND GETKEYS answered: route by those keys */
        const dbp_reply *r = child->reply;
        if (child->state == DBP_OP_FULFILLED && r && r->type == DBP_REPLY_ARRAY) {
            int slot = -1;
            size_t k;
            for (k = 0; k < r->elements; k++) {
                int sl = (int)dbp_key_slot(r->element[k]->str, r->element[k]->len);
                if (slot >= 0 && sl != slot) {
                    dbp__unqueue_op(p, top);
                    dbp__op_fail(top, DBP_ECROSSSLOT, 0, "%s: its keys hash to different cluster slots (%d and %d)", top->cmd, slot, sl);
                    dbp__pool_check_closed(p);
                    return;
                }
                slot = sl;
            }
            top->slot = r->elements ? slot : -1;
        } else if (child->state == DBP_OP_REJECTED && e->rc == DBP_EREDIS) {
            top->slot = -1; /* "The command has no key arguments" (or unknown: the node will say) */
        } else {
            dbp__unqueue_op(p, top);
            dbp__cluster_retry_later(p, top, e);
            return;
        }
        dbp__cluster_dispatch(p);
        dbp__pool_check_closed(p);
        return;
    }
    if (child->state == DBP_OP_FULFILLED) {
        top->reply = child->reply;
        child->reply = NULL;
        top->flags |= DBP__OF_SENT;
        dbp__op_settle(top, DBP_OK);
        dbp__pool_check_closed(p);
        return;
    }
    if (e->rc == DBP_EREDIS) {
        const char *m = e->message;
        char host[64];
        int slot, port;
        if ((strncmp(m, "MOVED ", 6) == 0 || strncmp(m, "ASK ", 4) == 0) &&
            dbp__parse_redirect(m, &slot, host, sizeof host, &port, from_node >= 0 ? cl->nodes[from_node].host : "127.0.0.1") == 0) {
            int ask = m[0] == 'A', node;
            if (++top->redirects > p->s.max_redirects) {
                dbp__op_fail(top, DBP_EREDIRECT, 1, "too many cluster redirections (%d, max_redirects): the last was %s",
                             top->redirects - 1, m);
                dbp__pool_check_closed(p);
                return;
            }
            node = dbp__cluster_node(p, host, port, 0);
            if (node < 0) { dbp__op_fail(top, DBP_ENOMEM, 0, "out of memory"); return; }
            if (!ask) {
                /* the slot has moved (and others with it, usually): patch, then refresh */
                cl->slots[slot] = (short)node;
                cl->nodes[node].primary = 1;
                cl->nodes[node].in_map = 1;
                dbp__cluster_refresh(p, -1);
            }
            dbp__cluster_send(p, top, node, ask);
            return;
        }
        if (strncmp(m, "TRYAGAIN", 8) == 0) { dbp__cluster_retry_later(p, top, e); return; }
        if (strncmp(m, "CLUSTERDOWN", 11) == 0 || strncmp(m, "LOADING", 7) == 0 || strncmp(m, "MASTERDOWN", 10) == 0 ||
            strncmp(m, "READONLY", 8) == 0) {
            dbp__cluster_refresh(p, from_node);
            dbp__cluster_retry_later(p, top, e);
            return;
        }
        dbp__op_fail_err(top, e, DBP_EREDIS, 1);
        dbp__pool_check_closed(p);
        return;
    }
    if (!e->sent && (e->rc == DBP_ECONNECT || e->rc == DBP_EACQUIRE_TIMEOUT || e->rc == DBP_ECLOSED)) {
        /* the node is unreachable (or left the map): the map may have changed */
        if (p->state == DBP__PS_OPEN || e->rc != DBP_ECLOSED) {
            dbp__cluster_refresh(p, from_node);
            dbp__cluster_retry_later(p, top, e);
            return;
        }
    }
    dbp__op_fail_err(top, e, e->rc, e->sent);
    dbp__pool_check_closed(p);
}

/* ---- the map ---- */

static void dbp__cluster_slots_done(dbp_op *op);

static void dbp__cluster_refresh(dbp_pool *p, int exclude)
{
    dbp__cluster *cl = DBP__CL(p);
    long long now = dbp__ms_now();
    int i, node = -1;
    static const char req[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
    dbp_op *op;
    if (!cl || cl->refresh_op || p->state == DBP__PS_CLOSED) return;
    if (cl->last_refresh_ms && now - cl->last_refresh_ms < 100) {
        /* rate-limited: at most ten a second */
        cl->refresh_pending = 1;
        dbp__timer_min(p->hub, &cl->rtimer, cl->last_refresh_ms + 100);
        return;
    }
    for (i = 0; i < cl->nnodes; i++) {
        int k = (cl->refresh_from++ & 0x7fffffff) % cl->nnodes;
        dbp__cnode *n = &cl->nodes[k];
        if (k == exclude || !n->pool || n->pool->state != DBP__PS_OPEN) continue;
        if (!n->in_map && !n->seed && cl->have_map) continue;
        node = k;
        break;
    }
    if (node < 0) node = exclude >= 0 && cl->nodes[exclude].pool && cl->nodes[exclude].pool->state == DBP__PS_OPEN ? exclude : -1;
    if (node < 0) return;
    op = dbp__op_new(p->hub, cl->nodes[node].pool, DBP__OP_CALL);
    if (!op) return;
    op->flags &= ~DBP__OF_CALLER;
    op->req = DBP__CAST(char *, (void *)req);
    op->req_len = sizeof req - 1;
    op->flags |= DBP__OF_BORROWED;
    snprintf(op->cmd, sizeof op->cmd, "CLUSTER");
    op->done = dbp__cluster_slots_done;
    op->owner = p;
    op->deadline = now + p->s.connect_timeout + 1000;
    cl->refresh_op = op;
    cl->last_refresh_ms = now;
    cl->refresh_pending = 0;
    dbp__pool_submit(cl->nodes[node].pool, op);
}

static void dbp__cluster_rtimer_fire(dbp__timer *t)
{
    dbp__cluster *cl = DBP__CONTAINER(t, dbp__cluster, rtimer);
    /* asked for while rate-limited, never read yet, or simply due: replicas
       that rejoin (and anything no redirect tells about) show up this way */
    if (cl->pool->state != DBP__PS_OPEN) return;
    if (cl->refresh_pending || !cl->have_map || dbp__ms_now() - cl->last_refresh_ms >= DBP__CLUSTER_REFRESH_MS)
        dbp__cluster_refresh(cl->pool, -1);
}

/* One slot range of a CLUSTER SLOTS reply: its primary, then its replicas. */
#define DBP__MAP_NODES 8
typedef struct dbp__map_range {
    int lo, hi;
    int nnodes;                       /* node[0] is the primary */
    struct { char host[64]; int port; } node[DBP__MAP_NODES];
} dbp__map_range;

/* Copies a node entry ([host, port, id...]) of a range; 0 on success. A node
   given as "" or "?" is the one that was asked (the spec's "same host"). */
static int dbp__map_node(const dbp_reply *nd, const char *asked_host, char *host, size_t hn, int *port)
{
    const char *h;
    if (!nd || nd->type != DBP_REPLY_ARRAY || nd->elements < 2 || !nd->element[0] || !nd->element[1] ||
        nd->element[0]->type != DBP_REPLY_STRING || nd->element[1]->type != DBP_REPLY_INTEGER)
        return -1;
    h = nd->element[0]->str;
    if (!h[0] || strcmp(h, "?") == 0) h = asked_host;
    if (strlen(h) >= hn || nd->element[1]->integer <= 0 || nd->element[1]->integer > 65535) return -1;
    memcpy(host, h, strlen(h) + 1);
    *port = (int)nd->element[1]->integer;
    return 0;
}

/* Parses a CLUSTER SLOTS reply (pure: no I/O, no pool, so it is unit-tested
   and fuzzed alone). Writes at most max ranges to out and returns how many;
   -1 when the reply is not an array of ranges at all. A malformed range (bad
   bounds, no valid primary) is skipped, a malformed replica is left out. */
static int dbp__cluster_map_parse(const dbp_reply *r, const char *asked_host, dbp__map_range *out, int max)
{
    int n = 0;
    size_t k, j;
    if (!r || r->type != DBP_REPLY_ARRAY) return -1;
    for (k = 0; k < r->elements && n < max; k++) {
        const dbp_reply *ent = r->element[k];
        dbp__map_range *m = &out[n];
        if (!ent || ent->type != DBP_REPLY_ARRAY || ent->elements < 3 || !ent->element[0] || !ent->element[1] ||
            ent->element[0]->type != DBP_REPLY_INTEGER || ent->element[1]->type != DBP_REPLY_INTEGER)
            continue;
        m->lo = (int)(ent->element[0]->integer < 0 ? -1 : ent->element[0]->integer > 16383 ? 16384 : ent->element[0]->integer);
        m->hi = (int)(ent->element[1]->integer < 0 ? -1 : ent->element[1]->integer > 16383 ? 16384 : ent->element[1]->integer);
        if (m->lo < 0 || m->hi > 16383 || m->lo > m->hi) continue;
        m->nnodes = 0;
        for (j = 2; j < ent->elements && m->nnodes < DBP__MAP_NODES; j++) {
            if (dbp__map_node(ent->element[j], asked_host, m->node[m->nnodes].host, sizeof m->node[0].host,
                              &m->node[m->nnodes].port) == 0)
                m->nnodes++;
            else if (j == 2)
                break; /* no primary: the range is unusable */
        }
        if (m->nnodes > 0) n++;
    }
    return n;
}

/* Takes a parsed map: node pools for new nodes, roles, the slot table. */
static void dbp__cluster_map_apply(dbp_pool *p, const dbp__map_range *m, int n)
{
    dbp__cluster *cl = DBP__CL(p);
    int i, k, j;
    for (i = 0; i < cl->nnodes; i++) { cl->nodes[i].in_map = 0; cl->nodes[i].nslots = cl->nodes[i].nranges = 0; }
    for (i = 0; i < 16384; i++) cl->slots[i] = -1;
    for (k = 0; k < n; k++) {
        int prim = dbp__cluster_node(p, m[k].node[0].host, m[k].node[0].port, 0), s;
        if (prim < 0) continue;
        cl->nodes[prim].in_map = 1;
        cl->nodes[prim].primary = 1;
        cl->nodes[prim].primary_of = -1;
        cl->nodes[prim].nslots += m[k].hi - m[k].lo + 1;
        cl->nodes[prim].nranges++;
        for (s = m[k].lo; s <= m[k].hi; s++) cl->slots[s] = (short)prim;
        for (j = 1; j < m[k].nnodes; j++) {
            int idx = dbp__cluster_node(p, m[k].node[j].host, m[k].node[j].port, 1);
            if (idx < 0) continue;
            cl->nodes[idx].in_map = 1;
            cl->nodes[idx].primary = 0;
            cl->nodes[idx].primary_of = prim;
        }
    }
    cl->have_map = 1;
}

static void dbp__cluster_slots_done(dbp_op *op)
{
    dbp_pool *p = op->owner;
    dbp__cluster *cl;
    const dbp_reply *r = op->reply;
    int asked = -1, i;
    if (!p || !p->rt) return;
    cl = DBP__CL(p);
    if (cl->refresh_op == op) cl->refresh_op = NULL;
    for (i = 0; i < cl->nnodes; i++) if (cl->nodes[i].pool == op->pool) asked = i;
    if (op->state != DBP_OP_FULFILLED || !r || r->type != DBP_REPLY_ARRAY || r->elements == 0) {
        dbp_error e = op->err;
        if (op->state == DBP_OP_FULFILLED) dbp__err_set(&e, DBP_EPROTOCOL, "CLUSTER SLOTS gave no slots (is this a cluster?)");
        if (e.rc == DBP_EAUTH) {
            /* a wrong password is wrong on every node: fail what waits now */
            cl->last_err = e;
            dbp__pool_fail_queue(p, &e, DBP_EAUTH);
            p->fatal = 1;
            p->last_connect_err = e;
            p->next_connect_ms = dbp__ms_now() + p->s.backoff_max;
            dbp__pool_check_closed(p);
            return;
        }
        {
            char msg[DBP_ERRMSG_MAX];
            snprintf(msg, sizeof msg, "reading the cluster map from %s:%d failed: %.200s",
                     asked >= 0 ? cl->nodes[asked].host : "?", asked >= 0 ? cl->nodes[asked].port : 0, e.message);
            dbp__err_set(&cl->last_err, e.rc ? e.rc : DBP_ECONNECT, "%s", msg);
            p->last_connect_err = cl->last_err;
            p->fail_streak++;
        }
        if (++cl->refresh_failures < cl->nnodes * 2) {
            cl->last_refresh_ms = 0;
            dbp__cluster_refresh(p, asked);
        } else {
            /* every node failed: try again after a backoff, seeds included */
            cl->refresh_failures = 0;
            cl->refresh_pending = 1;
            dbp__timer_min(p->hub, &cl->rtimer, dbp__ms_now() + p->s.backoff_max);
        }
        dbp__pool_check_closed(p);
        return;
    }
    {
        char asked_host[sizeof cl->nodes[0].host];
        dbp__map_range *m = DBP__ALLOC(dbp__map_range, r->elements);
        int n;
        if (!m) { dbp__err_set(&cl->last_err, DBP_ENOMEM, "out of memory reading the cluster map"); dbp__pool_check_closed(p); return; }
        snprintf(asked_host, sizeof asked_host, "%s", asked >= 0 ? cl->nodes[asked].host : "127.0.0.1");
        n = dbp__cluster_map_parse(r, asked_host, m, (int)(r->elements > 16384 ? 16384 : r->elements));
        cl->refresh_failures = 0;
        p->fail_streak = 0;
        p->fatal = 0;
        dbp__cluster_map_apply(p, m, n);
        DBP_FREE(m);
    }
    if (cl->refresh_pending) dbp__timer_min(p->hub, &cl->rtimer, cl->last_refresh_ms + 100);
    else if (p->state == DBP__PS_OPEN) dbp__timer_set(p->hub, &cl->rtimer, cl->last_refresh_ms + DBP__CLUSTER_REFRESH_MS);
    dbp__cluster_dispatch(p);
    dbp__pool_check_closed(p);
}

/* A node pool for subscriptions: any node in the map, in turn. */
static dbp_pool *dbp__cluster_any_node(dbp_pool *p, dbp_pool *not_this)
{
    dbp__cluster *cl = DBP__CL(p);
    int i;
    if (!cl) return NULL;
    for (i = 0; i < cl->nnodes; i++) {
        int k = (cl->rr++ & 0x7fffffff) % cl->nnodes;
        dbp_pool *np = cl->nodes[k].pool;
        if (np && np != not_this && np->state == DBP__PS_OPEN && (cl->nodes[k].in_map || !cl->have_map)) return np;
    }
    return NULL;
}

static int dbp__cluster_nodes(const dbp_pool *p, dbp_node_info *out, int max)
{
    dbp__cluster *cl = DBP__CL(p);
    int i, n = 0;
    if (!cl) return 0;
    for (i = 0; i < cl->nnodes; i++) {
        const dbp__cnode *nd = &cl->nodes[i];
        if (!nd->in_map) continue;
        if (out && n < max) {
            memset(&out[n], 0, sizeof out[n]);
            snprintf(out[n].addr, sizeof out[n].addr, "%s:%d", nd->host, nd->port);
            out[n].primary = nd->primary;
            out[n].slots = nd->nslots;
            out[n].slot_ranges = nd->nranges;
            if (!nd->primary && nd->primary_of >= 0)
                snprintf(out[n].primary_addr, sizeof out[n].primary_addr, "%s:%d",
                         cl->nodes[nd->primary_of].host, cl->nodes[nd->primary_of].port);
            dbp_pool_stats(nd->pool, &out[n].stats);
        }
        n++;
    }
    return n;
}

static dbp_op *dbp__cluster_ping(dbp_pool *p, const dbp_op_options *o)
{
    /* no connection of its own: PING one of its primaries */
    static const char *const argv[] = { "PING" };
    return dbp_pool_call(p, 1, argv, NULL, o);
}

/* As for Redis, and the only database is 0. */
static int dbp__cluster_settings(dbp__settings *s, dbp_error *err)
{
    int rc = dbp__rd_settings(s, err);
    if (rc == DBP_OK && s->redis_db != 0) return dbp__err_set(err, DBP_EURL, "malformed URL: Redis Cluster has only database 0");
    return rc;
}

/* redis-cluster://user@seed1:port,seed2:port/ */
static void dbp__cluster_describe(const dbp__settings *s, char *buf, size_t size)
{
    int i, n = snprintf(buf, size, "%s://%s%s", s->bk->name, s->user ? s->user : "", s->user ? "@" : "");
    size_t off = n > 0 && (size_t)n < size ? (size_t)n : size - 1;
    for (i = 0; i < s->nseeds && off < size - 1; i++) {
        n = snprintf(buf + off, size - off, "%s%s:%d", i ? "," : "", s->seed_hosts[i], s->seed_ports[i]);
        if (n < 0) break;
        off += (size_t)n;
    }
    if (off < size - 1) snprintf(buf + off, size - off, "/");
}

static const dbp__router dbp__cluster_router = {
    dbp__cluster_open, dbp__cluster_free, dbp__cluster_route, dbp__cluster_dispatch, dbp__cluster_unlinked,
    dbp__cluster_running, dbp__cluster_busy, dbp__cluster_close_nodes, dbp__cluster_last_error,
    dbp__cluster_any_node, dbp__cluster_ping, dbp__cluster_nodes,
    "a Redis Cluster pool has no single connection to pin; use a node-specific key routing instead", NULL
};

/* A router over Redis pools: its pool has no connection of its own. */
static const dbp__backend dbp__cluster_backend = {
    "redis-cluster", "redis-cluster", 6379, DBP__FOR_CLUSTER,
    DBP__BKF_COMMANDS | DBP__BKF_PUBSUB | DBP__BKF_PATTERNS | DBP__BKF_SEEDS, NULL, dbp__cluster_settings, dbp__cluster_describe,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, &dbp__cluster_router
};
#endif /* DBPOOL_NO_REDIS */


/* ==== SECTION: backends table ==== */

static const dbp__backend *const *dbp__backends_all(void)
{
    static const dbp__backend *const all[] = {
#ifndef DBPOOL_NO_MYSQL
        &dbp__mysql_backend, &dbp__replicas_backend,
#endif
#ifndef DBPOOL_NO_PGSQL
        &dbp__pgsql_backend,
#endif
#ifndef DBPOOL_NO_REDIS
        &dbp__redis_backend, &dbp__cluster_backend,
#endif
        NULL
    };
    return all;
}

/* The nodes under a router pool (Redis Cluster, MySQL replicas); 0 for any other pool. */
DBPDEF int dbp_pool_nodes(const dbp_pool *p, dbp_node_info *out, int max)
{
    return p && p->bk->router && p->bk->router->nodes ? p->bk->router->nodes(p, out, max) : 0;
}


/* ==== SECTION: URLs ==== */

static int dbp__hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+n) into dst (NUL-terminated); -1 on a bad escape. */
static int dbp__pct_decode(const char *s, size_t n, char *dst, size_t *outn)
{
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= n) return -1;
            h = dbp__hexval((unsigned char)s[i + 1]);
            l = dbp__hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0) return -1;
            dst[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            dst[o++] = s[i];
        }
    }
    dst[o] = '\0';
    if (outn) *outn = o;
    return 0;
}

/* Where the password of a URL lies: [*start, *end). 0 when there is none.
   Redaction errs on the side of hiding: the userinfo ends at the last '@'
   anywhere, so a password with an unencoded '/', '?' or '@' stays hidden. */
static int dbp__url_password_span(const char *url, size_t *start, size_t *end)
{
    const char *p = strstr(url, "://"), *auth, *at = NULL, *q, *colon;
    if (!p) return 0;
    auth = p + 3;
    for (q = auth; *q; q++) if (*q == '@') at = q;
    if (!at) return 0;
    colon = (const char *)memchr(auth, ':', (size_t)(at - auth));
    if (!colon) return 0;
    *start = (size_t)(colon + 1 - url);
    *end = (size_t)(at - url);
    return 1;
}

DBPDEF size_t dbp_url_redact(const char *url, char *buf, size_t n)
{
    size_t s = 0, e = 0, len, want;
    dbp__buf b;
    memset(&b, 0, sizeof b);
    if (!url) url = "";
    len = strlen(url);
    if (dbp__url_password_span(url, &s, &e) && e > s) {
        if (dbp__buf_add(&b, url, s) || dbp__buf_adds(&b, "***") || dbp__buf_add(&b, url + e, len - e)) {
            dbp__buf_free(&b);
            if (n) buf[0] = '\0';
            return 0;
        }
    } else if (dbp__buf_add(&b, url, len)) {
        if (n) buf[0] = '\0';
        return 0;
    }
    want = b.len;
    if (n) {
        size_t c = want < n - 1 ? want : n - 1;
        memcpy(buf, b.data, c);
        buf[c] = '\0';
    }
    dbp__buf_free(&b);
    return want;
}

DBPDEF void dbp_url_free(dbp_url *u)
{
    if (!u) return;
    DBP_FREE(u->buf_);
    memset(u, 0, sizeof *u);
}

static int dbp__url_fail(dbp_url *u, dbp_error *err, const char *what)
{
    dbp_url_free(u);
    return dbp__err_set(err, DBP_EURL, "malformed URL: %s", what);
}

/* The parts of a URL, each decoded into the buffer at *w (advanced past what
   it wrote). Each returns NULL, or what is wrong for dbp__url_fail. */

static const char *dbp__url_scheme(const char *url, const char *sep, dbp_url *u, char **w)
{
    const char *q;
    if (sep == url) return "expected scheme://... (e.g. mysql://user@host/db)";
    for (q = url; q < sep; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
              *q == '+' || *q == '-' || *q == '.'))
            return "invalid character in scheme";
    u->scheme = *w;
    for (q = url; q < sep; q++) *(*w)++ = (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
    *(*w)++ = '\0';
    return NULL;
}

/* user[:password] between auth and at */
static const char *dbp__url_userinfo(const char *auth, const char *at, dbp_url *u, char **w)
{
    const char *colon = (const char *)memchr(auth, ':', (size_t)(at - auth));
    const char *uend = colon ? colon : at;
    size_t n;
    u->user = *w;
    if (dbp__pct_decode(auth, (size_t)(uend - auth), *w, &n)) return "bad percent-escape in the user name";
    *w += n + 1;
    if (n == 0) u->user = NULL;
    if (colon) {
        u->password = *w;
        if (dbp__pct_decode(colon + 1, (size_t)(at - colon - 1), *w, &n)) return "bad percent-escape in the password";
        *w += n + 1;
    }
    return NULL;
}

/* ":port" digits between ps and pe */
static const char *dbp__url_port(const char *ps, const char *pe, int *port)
{
    long v = 0;
    const char *q;
    if (ps == pe) return "empty port";
    for (q = ps; q < pe; q++) {
        if (*q < '0' || *q > '9') return "port is not a number";
        v = v * 10 + (*q - '0');
        if (v > 65535) return "port out of range (1-65535)";
    }
    if (v == 0) return "port out of range (1-65535)";
    *port = (int)v;
    return NULL;
}

/* host[:port][,host[:port]...] from q to auth_end; IPv6 in brackets */
static const char *dbp__url_hosts(const char *q, const char *auth_end, dbp_url *u, char **w)
{
    size_t i;
    while (q < auth_end || (q == auth_end && u->nhosts == 0)) {
        const char *hs = q, *he, *ps = NULL, *why;
        size_t n;
        if (u->nhosts >= DBP_URL_MAX_HOSTS) return "too many hosts";
        if (q < auth_end && *q == '[') {
            he = (const char *)memchr(q, ']', (size_t)(auth_end - q));
            if (!he) return "unterminated '[' in an IPv6 host";
            hs = q + 1;
            q = he + 1;
            if (q < auth_end && *q != ':' && *q != ',') return "unexpected text after ']'";
        } else {
            while (q < auth_end && *q != ':' && *q != ',') q++;
            he = q;
        }
        if (q < auth_end && *q == ':') {
            ps = ++q;
            while (q < auth_end && *q != ',') q++;
        }
        u->hosts[u->nhosts].host = *w;
        if (dbp__pct_decode(hs, (size_t)(he - hs), *w, &n)) return "bad percent-escape in a host";
        for (i = 0; i < n; i++)
            if ((*w)[i] == ' ' || (*w)[i] == '/' || (*w)[i] == '@' || (*w)[i] == '[' || (*w)[i] == ']')
                return "invalid character in a host name";
        *w += n + 1;
        if (ps && (why = dbp__url_port(ps, q, &u->hosts[u->nhosts].port)) != NULL) return why;
        u->nhosts++;
        if (q < auth_end && *q == ',') {
            q++;
            if (q == auth_end) return "empty host after ','";
            continue;
        }
        break;
    }
    if (u->nhosts > 1)
        for (i = 0; i < (size_t)u->nhosts; i++)
            if (!u->hosts[i].host[0]) return "empty host in a host list";
    return NULL;
}

/* "/database" between path and query */
static const char *dbp__url_path(const char *path, const char *query, dbp_url *u, char **w)
{
    size_t n;
    if (path == query) return NULL;
    if (*path != '/') return "unexpected text after the host";
    if (query - path <= 1) return NULL;
    u->database = *w;
    if (dbp__pct_decode(path + 1, (size_t)(query - path - 1), *w, &n)) return "bad percent-escape in the database name";
    if (memchr(*w, '/', n)) return "'/' in the database name";
    *w += n + 1;
    return NULL;
}

/* key=value&... from q (after the '?') to end */
static const char *dbp__url_query(const char *q, const char *end, dbp_url *u, char **w)
{
    while (q < end) {
        const char *ks = q, *ke, *vs, *ve;
        size_t n;
        while (q < end && *q != '&') q++;
        ve = q;
        if (ve == ks) { q++; continue; }
        ke = (const char *)memchr(ks, '=', (size_t)(ve - ks));
        if (!ke) { ke = ve; vs = ve; } else vs = ke + 1;
        if (ke == ks) return "option without a name in the query string";
        if (u->noptions >= DBP_URL_MAX_OPTIONS) return "too many options";
        u->options[u->noptions].key = *w;
        if (dbp__pct_decode(ks, (size_t)(ke - ks), *w, &n)) return "bad percent-escape in an option name";
        *w += n + 1;
        u->options[u->noptions].value = *w;
        if (dbp__pct_decode(vs, (size_t)(ve - vs), *w, &n)) return "bad percent-escape in an option value";
        *w += n + 1;
        u->noptions++;
        if (q < end) q++;
    }
    return NULL;
}

DBPDEF int dbp_url_parse(const char *url, dbp_url *u, dbp_error *err)
{
    const char *sep, *end, *auth, *auth_end, *at = NULL, *q, *query, *why;
    char *w;
    size_t len, i;
    dbp__err_clear(err);
    if (!u) return dbp__err_set(err, DBP_EUSAGE, "no output for the parsed URL");
    memset(u, 0, sizeof *u);
    if (!url) return dbp__url_fail(u, err, "no URL given");
    len = strlen(url);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c < 0x20 || c == 0x7f) return dbp__url_fail(u, err, "control character in URL");
        if (c == '#') return dbp__url_fail(u, err, "'#' is not allowed (percent-encode it as %23)");
    }
    /* Every decoded string is shorter than the URL: one buffer holds them all. */
    u->buf_ = DBP__CAST(char *, DBP_MALLOC(len * 2 + 16));
    if (!u->buf_) { dbp_url_free(u); return dbp__err_set(err, DBP_ENOMEM, "out of memory"); }
    w = u->buf_;
    sep = strstr(url, "://");
    if (!sep) return dbp__url_fail(u, err, "expected scheme://... (e.g. mysql://user@host/db)");
    if ((why = dbp__url_scheme(url, sep, u, &w)) != NULL) return dbp__url_fail(u, err, why);
    auth = sep + 3;
    end = url + len;
    /* The userinfo ends at the last '@' before the query string, so an
       unencoded '@' or '/' in a password still parses (a '?' must be %3F). */
    for (q = auth; q < end && *q != '?'; q++) if (*q == '@') at = q;
    q = at ? at + 1 : auth;
    while (q < end && *q != '/' && *q != '?') q++;
    auth_end = q;
    for (query = auth_end; query < end && *query != '?'; query++) ;
    if ((at && (why = dbp__url_userinfo(auth, at, u, &w)) != NULL) ||
        (why = dbp__url_hosts(at ? at + 1 : auth, auth_end, u, &w)) != NULL ||
        (why = dbp__url_path(auth_end, query, u, &w)) != NULL ||
        (query < end && (why = dbp__url_query(query + 1, end, u, &w)) != NULL))
        return dbp__url_fail(u, err, why);
    return DBP_OK;
}


#endif /* DBPOOL_IMPLEMENTATION_ONCE */
#endif /* DBPOOL_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the dbpool authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
------------------------------------------------------------------------------
*/
