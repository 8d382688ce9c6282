/* bench_zdb.c - the C pool peer: bench_mysql's point selects through libzdb's
   ConnectionPool (Debian libzdb-dev, installed by `scripts/deps.sh --bench`),
   driven the way libzdb is meant to be driven: it blocks, so one thread per
   connection, each borrowing a connection for every query and giving it back.

     bench_zdb [--only text,prepared] [-n N] [--pool P] [--threads T]

   Environment: DBPOOL_TEST_MYSQL_URL (required; scripts/with-servers.sh sets
   it), and bench_mysql's own knobs, so that one setting drives both in a
   run: BENCH_MYSQL_N (queries, 100000; 10000 with BENCH_QUICK=1),
   BENCH_MYSQL_ROWS (the rows bench_mysql filled, 100000), BENCH_MYSQL_POOL
   (8). BENCH_ZDB_N and BENCH_ZDB_POOL override those for this program
   alone; BENCH_ZDB_THREADS (default: the pool size); BENCH_MAX_SECONDS
   (per measured phase, 120); BENCH_ZDB_HOLD=1: each thread borrows its
   connection once per phase, not per query (the names end in _hold).
   --inflight is accepted, as by every C benchmark, and means nothing here:
   a blocking connection has one query in flight.

   Workload: bench_mysql's, SELECT id, k, c FROM bench_points WHERE id = ?,
   over the same ids (bench_rand from the same seed, modulo the same rows),
   each reply checked (one row, the id asked for). The table is bench_mysql's:
   it must be there with BENCH_MYSQL_ROWS rows (run bench_mysql first; this
   program does not fill it). Each phase is warmed up before it is timed.

   Phases (--only picks some): text = Connection_executeQuery() with the id
   formatted into the SQL; prepared = Connection_prepareStatement() with
   PreparedStatement_setInt() and PreparedStatement_executeQuery().

   What libzdb 3.1 does on MySQL, which the figures include (it is what its
   users get, and no setting changes it):
   - ConnectionPool_getConnection() pings each connection it hands out
     (mysql_ping: a round trip), holding the pool's mutex while it does, so
     the borrows of all the threads are serialised behind those pings;
   - Connection_executeQuery() is no text query: it prepares the formatted
     SQL, executes it with a read-only cursor and closes the statement;
   - every result, prepared or not, comes through that cursor, a fetch (a
     round trip) per ResultSet_next(), the one that finds no second row too;
   - a connection given back to the pool frees its prepared statements, so
     with a borrow per query the prepared phase prepares every query
     (BENCH_ZDB_HOLD=1 shows prepare-once, execute-many).
   The server's counters per query, borrow per query (both phases): a ping,
   a prepare, an execute, two fetches, a close; held: the ping gone, and
   for prepared the prepare and the close too. */
#define _POSIX_C_SOURCE 200809L
/* dbpool only for its URL parser, and because bench_common.h's pool helpers
   name its API. Its MySQL side stays in: the header leaves every backend out
   only with unused-function warnings, and libzdb links libmariadb anyway. */
#define DBPOOL_NO_PGSQL
#define DBPOOL_NO_REDIS
#define DBPOOL_IMPLEMENTATION
#include "dbpool.h"
#define BENCH_NAME "bench_zdb"
/* The pool window and ratio helpers are bench_mysql's, unused here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "bench_common.h"
#pragma GCC diagnostic pop

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <zdb.h>

#define TABLE "bench_points"
#define SELECT_SQL "SELECT id, k, c FROM " TABLE " WHERE id = ?"
#define SELECT_FMT "SELECT id, k, c FROM " TABLE " WHERE id = %u"
#define THREADS_AS_POOL LONG_MAX /* --threads not given: as many as --pool */
#define MAX_THREADS 1024

/* ==== the libzdb side ==== */

/* One measured (or warm-up) phase: ids[0..n) shared by the threads, each
   taking the next index; no new query starts after the deadline. */
typedef struct zdb_run {
    ConnectionPool_T pool;
    const unsigned *ids;
    long n;
    int prepared, hold;
    double deadline;
    long next;            /* __atomic: the next index to run */
    int capped;           /* __atomic: set when the deadline stopped a thread */
    int reported;         /* __atomic: errors printed so far (3 at most) */
} zdb_run;

typedef struct zdb_thread {
    zdb_run *run;
    pthread_t tid;
    long done, errors, misses;
} zdb_thread;

static void zdb_report(zdb_run *r, const char *what, const char *msg)
{
    if (__atomic_fetch_add(&r->reported, 1, __ATOMIC_RELAXED) < 3)
        fprintf(stderr, BENCH_NAME ": %s: %s\n", what, msg);
}

/* A connection from the pool. libzdb does not wait for one: with more
   threads than connections, NULL means all are out, so retry (a miss). */
static Connection_T zdb_borrow(zdb_thread *t)
{
    Connection_T con;
    double since = 0;
    while (!(con = ConnectionPool_getConnection(t->run->pool))) {
        t->misses++;
        if (since == 0) since = bench_now();
        else if (bench_now() - since > 10) bench_die("no connection from the pool for 10 s (the server down?)");
        sched_yield();
    }
    return con;
}

/* Right when the result has exactly one row and it is the id asked for
   (libzdb tells "one row" only by a second ResultSet_next(), a round trip). */
static int zdb_check(ResultSet_T rs, unsigned id)
{
    long long got;
    if (!ResultSet_next(rs)) return 0;
    got = ResultSet_getLLong(rs, 1);
    return got == (long long)id && !ResultSet_next(rs);
}

static void *zdb_worker(void *arg)
{
    zdb_thread *t = (zdb_thread *)arg;
    zdb_run *r = t->run;
    /* volatile: set between setjmp and a longjmp that TRY may take */
    Connection_T volatile con = NULL;
    PreparedStatement_T volatile ps = NULL;
    for (;;) {
        volatile int ok = 0;
        unsigned id;
        long i;
        if ((t->done & 63) == 0 && bench_now() > r->deadline) {
            __atomic_store_n(&r->capped, 1, __ATOMIC_RELAXED);
            break;
        }
        i = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
        if (i >= r->n) break;
        id = r->ids[i];
        if (!con) con = zdb_borrow(t);
        TRY
            ResultSet_T rs;
            if (r->prepared) {
                if (!ps) ps = Connection_prepareStatement(con, SELECT_SQL);
                PreparedStatement_setInt(ps, 1, (int)id);
                rs = PreparedStatement_executeQuery(ps);
            } else {
                rs = Connection_executeQuery(con, SELECT_FMT, id);
            }
            ok = zdb_check(rs, id);
            if (!ok) zdb_report(r, "wrong result", "not exactly one row with the id asked for");
        CATCH(SQLException)
            zdb_report(r, "SQLException", Exception_frame.message);
        ELSE
            zdb_report(r, Exception_frame.exception->name, Exception_frame.message);
        END_TRY;
        t->done++;
        if (!ok) t->errors++;
        /* give it back (its statement goes with it), and after any error
           in any case, so that the next borrow's ping vets it */
        if (!r->hold || !ok) {
            Connection_close(con);
            con = NULL;
            ps = NULL;
        }
    }
    if (con) Connection_close(con);
    return NULL;
}

/* Runs ids[0..n) on `threads` threads; returns the count done, adds the
   failed or wrong ones to *errors and the empty borrows to *misses. */
static long zdb_phase(ConnectionPool_T pool, int threads, int prepared, int hold, const unsigned *ids, long n,
                      double max_s, long *errors, long *misses, int *capped)
{
    zdb_run r;
    zdb_thread *ts = (zdb_thread *)calloc((size_t)threads, sizeof *ts);
    long done = 0;
    int i, rc;
    if (!ts) bench_die("out of memory");
    memset(&r, 0, sizeof r);
    r.pool = pool;
    r.ids = ids;
    r.n = n;
    r.prepared = prepared;
    r.hold = hold;
    r.deadline = bench_now() + max_s;
    for (i = 0; i < threads; i++) {
        ts[i].run = &r;
        if ((rc = pthread_create(&ts[i].tid, NULL, zdb_worker, &ts[i])) != 0)
            bench_die("pthread_create: %s", strerror(rc));
    }
    for (i = 0; i < threads; i++) {
        pthread_join(ts[i].tid, NULL);
        done += ts[i].done;
        *errors += ts[i].errors;
        *misses += ts[i].misses;
    }
    *capped = r.capped;
    free(ts);
    return done;
}

/* ==== setup ==== */

/* Appends s to out[len..cap), percent-encoding all but the unreserved
   characters when `encode`; returns the new length. */
static size_t url_put(char *out, size_t cap, size_t len, const char *s, int encode)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int plain = !encode || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~';
        if (len + 4 > cap) bench_die("DBPOOL_TEST_MYSQL_URL too long");
        if (plain) out[len++] = (char)ch;
        else { out[len++] = '%'; out[len++] = hex[ch >> 4]; out[len++] = hex[ch & 15]; }
    }
    out[len] = '\0';
    return len;
}

/* libzdb's URL for the server in DBPOOL_TEST_MYSQL_URL: the same host, port
   and database, the user and password as query parameters (escaped: the
   test password has '@', ':' and ' '), bench_mysql's character set. Fatal
   when url does not parse; never shows the password. */
static URL_T zdb_url(const char *url)
{
    dbp_url u;
    dbp_error e;
    char buf[1024], port[16];
    size_t len = 0;
    URL_T zu;
    if (dbp_url_parse(url, &u, &e) != DBP_OK) bench_die("bad DBPOOL_TEST_MYSQL_URL: %s", e.message);
    if (u.nhosts < 1 || !u.user || !u.database)
        bench_die("DBPOOL_TEST_MYSQL_URL needs a user, a host and a database");
    snprintf(port, sizeof port, "%d", u.hosts[0].port ? u.hosts[0].port : 3306);
    len = url_put(buf, sizeof buf, len, "mysql://", 0);
    len = url_put(buf, sizeof buf, len, u.hosts[0].host, 0);
    len = url_put(buf, sizeof buf, len, ":", 0);
    len = url_put(buf, sizeof buf, len, port, 0);
    len = url_put(buf, sizeof buf, len, "/", 0);
    len = url_put(buf, sizeof buf, len, u.database, 1);
    len = url_put(buf, sizeof buf, len, "?charset=utf8mb4&user=", 0);
    len = url_put(buf, sizeof buf, len, u.user, 1);
    len = url_put(buf, sizeof buf, len, "&password=", 0);
    (void)url_put(buf, sizeof buf, len, u.password ? u.password : "", 1);
    dbp_url_free(&u);
    zu = URL_new(buf);
    memset(buf, 0, sizeof buf);
    if (!zu) bench_die("libzdb cannot parse the URL made from DBPOOL_TEST_MYSQL_URL");
    return zu;
}

/* An uncaught libzdb exception ends up here instead of in abort(). */
static void zdb_abort(const char *error)
{
    fprintf(stderr, BENCH_NAME ": libzdb: %s\n", error);
    exit(1);
}

/* A pool of `size` connections, all opened now (no reaper). Fatal on error. */
static ConnectionPool_T zdb_pool_open(URL_T url, int size)
{
    ConnectionPool_T pool = ConnectionPool_new(url);
    ConnectionPool_setAbortHandler(pool, zdb_abort);
    ConnectionPool_setInitialConnections(pool, size);
    ConnectionPool_setMaxConnections(pool, size);
    TRY
        ConnectionPool_start(pool);
    CATCH(SQLException)
        bench_die("ConnectionPool_start: %s", Exception_frame.message);
    END_TRY;
    return pool;
}

/* bench_mysql's table, with its rows: ids 1..rows. Fatal otherwise, saying
   what to do. Then reads it whole, as bench_mysql does, so that nothing
   timed waits for the disk. */
static void zdb_check_table(ConnectionPool_T pool, long rows)
{
    Connection_T con = ConnectionPool_getConnection(pool);
    volatile long long have = -1, maxid = -1;
    if (!con) bench_die("no connection from the pool");
    TRY
        ResultSet_T rs = Connection_executeQuery(con, "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM " TABLE);
        if (ResultSet_next(rs)) {
            have = ResultSet_getLLong(rs, 1);
            maxid = ResultSet_getLLong(rs, 2);
        }
        rs = Connection_executeQuery(con, "SELECT SUM(LENGTH(c)) FROM " TABLE);
        while (ResultSet_next(rs)) {}
    CATCH(SQLException)
        bench_die("%s: %s (run bench_mysql first: it creates and fills the table)", TABLE, Exception_frame.message);
    END_TRY;
    Connection_close(con);
    if (have != rows || maxid != rows)
        bench_die("%s has %lld rows (ids up to %lld), not %ld: run bench_mysql first with the same "
                  "BENCH_MYSQL_ROWS (it fills the table)", TABLE, have, maxid, rows);
}

/* "3.1" out of ConnectionPool_version()'s "libzdb/3.1 Copyright ...". */
static void zdb_version(char *out, size_t n)
{
    const char *v = ConnectionPool_version(), *s = v ? strchr(v, '/') : NULL;
    size_t len = s ? strcspn(s + 1, " ") : 0;
    if (!s || !len || len >= n) { snprintf(out, n, "?"); return; }
    memcpy(out, s + 1, len);
    out[len] = '\0';
}

/* ==== main ==== */

int main(int argc, char **argv)
{
    static const char *const phase_names[2] = { "text", "prepared" };
    const char *url = getenv("DBPOOL_TEST_MYSQL_URL");
    const char *hold_env = getenv("BENCH_ZDB_HOLD");
    bench_args a;
    unsigned phases;
    double max_s = bench_max_seconds();
    unsigned long long seed = 0x5eed5eedULL;
    unsigned *ids;
    long i, n, rows, warm, errors = 0;
    int p, threads, hold = hold_env && !strcmp(hold_env, "1");
    char version[32];
    URL_T zurl;
    ConnectionPool_T pool;

    /* bench_mysql's N and pool unless this program's own are set */
    n = bench_count("BENCH_MYSQL_N", 100000, 10000);
    bench_args_init(&a, "BENCH_ZDB", "THREADS", "text,prepared", n, n, THREADS_AS_POOL,
                    bench_env_long("BENCH_MYSQL_POOL", 8), 1);
    phases = bench_parse_args(argc, argv, "--threads", "T", &a);
    n = a.n;
    threads = a.size == THREADS_AS_POOL ? a.pool : a.size > MAX_THREADS ? -1 : (int)a.size;
    if (threads < 0) bench_die("--threads: at most %d", MAX_THREADS);
    rows = bench_env_long("BENCH_MYSQL_ROWS", 100000);
    if (rows > INT_MAX) bench_die("BENCH_MYSQL_ROWS too large (ids go through PreparedStatement_setInt)");
    if (!url || !*url) bench_die("DBPOOL_TEST_MYSQL_URL is not set (run under scripts/with-servers.sh)");

    /* bench_mysql's ids: the same seed, the same draw, the same warm-up count */
    ids = (unsigned *)malloc((size_t)n * sizeof *ids);
    if (!ids) bench_die("out of memory");
    for (i = 0; i < n; i++) ids[i] = (unsigned)((bench_rand(&seed) >> 11) % (unsigned long long)rows) + 1;
    warm = n / 20 < 500 ? (n < 500 ? n : 500) : (n / 20 > 5000 ? 5000 : n / 20);

    Exception_init();
    zdb_version(version, sizeof version);
    zurl = zdb_url(url);
    pool = zdb_pool_open(zurl, a.pool);
    zdb_check_table(pool, rows);
    printf(BENCH_NAME ": %ld point selects by primary key on %ld rows (%s), libzdb %s, pool of %d, "
           "%d threads, %s\n", n, rows, SELECT_SQL, version, a.pool, threads,
           hold ? "a connection held per thread" : "a borrow per query");
    fflush(stdout);

    for (p = 0; p < 2; p++) {
        char name[48], extra[160];
        long werr = 0, wmiss = 0, err = 0, misses = 0, done;
        int wc, capped;
        double t0, secs;
        if (!(phases & (1u << p))) continue;
        (void)zdb_phase(pool, threads, p, hold, ids, warm, max_s, &werr, &wmiss, &wc);
        if (werr) bench_die("the %s warm-up queries failed", phase_names[p]);
        t0 = bench_now();
        done = zdb_phase(pool, threads, p, hold, ids, n, max_s, &err, &misses, &capped);
        secs = bench_now() - t0;
        snprintf(name, sizeof name, "zdb_%s_pool%d%s", phase_names[p], a.pool, hold ? "_hold" : "");
        if (misses)
            snprintf(extra, sizeof extra, "libzdb %s ConnectionPool, %d threads, %s; %ld borrows found none free",
                     version, threads, phase_names[p], misses);
        else
            snprintf(extra, sizeof extra, "libzdb %s ConnectionPool, %d threads, %s", version, threads, phase_names[p]);
        bench_print_rate("zdb", name, done, secs, "q/s", capped, extra);
        errors += err;
    }

    ConnectionPool_free(&pool);
    URL_free(&zurl);
    free(ids);
    if (errors) {
        fprintf(stderr, BENCH_NAME ": %ld queries failed or returned a wrong row\n", errors);
        return 1;
    }
    return 0;
}
