/* bench_mysql.c - point selects by primary key: dbpool (a pool of 8, many ops
   in flight, one thread) against one blocking libmariadb connection doing the
   same queries, in the same run.

     bench_mysql [--only blocking,pool,raw] [-n N] [--pool P] [--inflight K] [--rows R]

   Environment: DBPOOL_TEST_MYSQL_URL (required; scripts/with-servers.sh sets
   it), BENCH_MYSQL_N (queries, default 100000; 10000 with BENCH_QUICK=1),
   BENCH_MYSQL_ROWS (table rows, 100000), BENCH_MYSQL_POOL (8),
   BENCH_MYSQL_INFLIGHT (64), BENCH_MAX_SECONDS (per measured phase, 120),
   BENCH_MYSQL_RAW=0 (skip the raw reference loop), BENCH_DEBUG=1 (hub
   steps per run on stderr).

   Phases (--only picks some): blocking = one blocking connection; pool =
   dbpool's C API with a pool of P; raw = a reference loop over P
   connections with libmariadb's non-blocking API and poll(), no dbpool.

   Workload: SELECT id, k, c FROM bench_points WHERE id = ? with ids drawn
   from a fixed pseudo-random sequence (the same for both sides), each reply
   checked (one row, the id asked for). The table (InnoDB, sysbench-like
   rows) is created and filled with multi-row INSERTs when it is missing or
   has the wrong row count. Both sides are warmed up before they are timed.

   The pool side keeps K ops in flight: each op's settle callback submits
   the next query, the main loop only calls dbp_hub_step() and frees the
   settled ops (a callback must not free its own op). */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "dbpool.h"
#define BENCH_NAME "bench_mysql"
#include "bench_common.h"

#include <poll.h>
#include <mysql.h>

#define TABLE "bench_points"
#define CREATE_SQL                                         \
    "CREATE TABLE IF NOT EXISTS " TABLE " ("               \
    " id INT UNSIGNED NOT NULL PRIMARY KEY,"               \
    " k INT UNSIGNED NOT NULL DEFAULT 0,"                  \
    " c CHAR(120) NOT NULL DEFAULT '',"                    \
    " pad CHAR(60) NOT NULL DEFAULT '',"                   \
    " KEY k_1 (k)) ENGINE=InnoDB"
#define SELECT_SQL "SELECT id, k, c FROM " TABLE " WHERE id = ?"

/* ==== the blocking side, and the table setup ==== */

static MYSQL *blocking_connect(const char *url)
{
    dbp_url u;
    dbp_error e;
    MYSQL *m;
    unsigned port;
    if (dbp_url_parse(url, &u, &e) != DBP_OK) bench_die("bad DBPOOL_TEST_MYSQL_URL: %s", e.message);
    if (u.nhosts < 1) bench_die("no host in DBPOOL_TEST_MYSQL_URL");
    port = u.hosts[0].port ? (unsigned)u.hosts[0].port : 3306;
    m = mysql_init(NULL);
    if (!m) bench_die("mysql_init failed");
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (!mysql_real_connect(m, u.hosts[0].host, u.user, u.password, u.database, port, NULL, 0))
        bench_die("blocking connect: %s", mysql_error(m));
    dbp_url_free(&u);
    return m;
}

static void sql_do(MYSQL *m, const char *sql, size_t len)
{
    if (mysql_real_query(m, sql, (unsigned long)len)) bench_die("%s (in setup: %.60s...)", mysql_error(m), sql);
    {
        MYSQL_RES *r = mysql_store_result(m);
        if (r) mysql_free_result(r);
    }
}

static long long sql_count(MYSQL *m, const char *sql)
{
    MYSQL_RES *r;
    MYSQL_ROW row;
    long long v = -1;
    if (mysql_query(m, sql)) return -1;
    r = mysql_store_result(m);
    if (!r) return -1;
    row = mysql_fetch_row(r);
    if (row && row[0]) v = atoll(row[0]);
    mysql_free_result(r);
    return v;
}

/* 120 characters of filler derived from n, like sysbench's `c` column. */
static void filler(char *out, size_t len, unsigned long long n)
{
    size_t i;
    for (i = 0; i < len; i++) {
        n = n * 6364136223846793005ULL + 1442695040888963407ULL;
        out[i] = (char)('a' + (int)((n >> 33) % 26));
        if (i % 12 == 11) out[i] = '-';
    }
    out[len] = '\0';
}

static void ensure_table(MYSQL *m, long rows)
{
    char q[160];
    long long have, maxid;
    double t0 = bench_now();
    sql_do(m, CREATE_SQL, strlen(CREATE_SQL));
    have = sql_count(m, "SELECT COUNT(*) FROM " TABLE);
    maxid = sql_count(m, "SELECT COALESCE(MAX(id), 0) FROM " TABLE);
    if (have != rows || maxid != rows) {
        /* one statement of 1000 rows at a time, one transaction */
        const long per = 1000;
        size_t cap = (size_t)per * 260 + 256, len;
        char *buf = (char *)malloc(cap);
        char c[121], pad[61];
        long id = 1;
        if (!buf) bench_die("out of memory");
        printf("bench_mysql: filling %s with %ld rows (had %lld)\n", TABLE, rows, have);
        fflush(stdout);
        sql_do(m, "TRUNCATE TABLE " TABLE, strlen("TRUNCATE TABLE " TABLE));
        sql_do(m, "BEGIN", 5);
        while (id <= rows) {
            long j;
            len = (size_t)snprintf(buf, cap, "INSERT INTO " TABLE " (id, k, c, pad) VALUES ");
            for (j = 0; j < per && id <= rows; j++, id++) {
                filler(c, 120, (unsigned long long)id);
                filler(pad, 60, (unsigned long long)id * 31u);
                len += (size_t)snprintf(buf + len, cap - len, "%s(%ld,%ld,'%s','%s')", j ? "," : "", id,
                                        (id * 7919L) % rows + 1, c, pad);
            }
            sql_do(m, buf, len);
        }
        sql_do(m, "COMMIT", 6);
        free(buf);
        printf("bench_mysql: filled in %.2f s\n", bench_now() - t0);
    }
    /* pull the whole table into the buffer pool before anything is timed */
    snprintf(q, sizeof q, "SELECT SUM(LENGTH(c)) FROM %s", TABLE);
    (void)sql_count(m, q);
}

/* Runs ids[0..n) through one blocking connection; returns the count done. */
static long run_blocking(MYSQL *m, const unsigned *ids, long n, double max_s, long *errors, int *capped)
{
    char sql[128];
    long i;
    double start = bench_now();
    *capped = 0;
    for (i = 0; i < n; i++) {
        MYSQL_RES *r;
        MYSQL_ROW row;
        int len;
        if ((i & 255) == 0 && bench_now() - start > max_s) { *capped = 1; break; }
        len = snprintf(sql, sizeof sql, "SELECT id, k, c FROM " TABLE " WHERE id = %u", ids[i]);
        if (mysql_real_query(m, sql, (unsigned long)len)) {
            if (++*errors <= 3) fprintf(stderr, "bench_mysql: blocking: %s\n", mysql_error(m));
            continue;
        }
        r = mysql_store_result(m);
        if (!r) { ++*errors; continue; }
        row = mysql_fetch_row(r);
        if (mysql_num_rows(r) != 1 || !row || !row[0] || strtoul(row[0], NULL, 10) != ids[i]) ++*errors;
        mysql_free_result(r);
    }
    return i;
}

/* ==== the reference: a raw non-blocking loop, no library ====
   P connections with MYSQL_OPT_NONBLOCK under one poll(), each running
   query -> store_result -> check -> next query. What dbpool's C API is
   compared to: on a quiet machine, dbpool / raw shows the library's own
   cost (1.0 = none). */

typedef struct raw_conn {
    MYSQL *m;
    int state;      /* 0 idle, 1 in real_query, 2 in store_result */
    int status;     /* MYSQL_WAIT_* wanted */
    unsigned id;
    int qerr;
    MYSQL_RES *res;
} raw_conn;

static int raw_events(int status)
{
    int ev = 0;
    if (status & MYSQL_WAIT_READ) ev |= POLLIN;
    if (status & MYSQL_WAIT_WRITE) ev |= POLLOUT;
    if (status & MYSQL_WAIT_EXCEPT) ev |= POLLPRI;
    return ev;
}

/* Advances one connection as far as it goes without blocking. */
static void raw_advance(raw_conn *c, int status_in, const unsigned *ids, long n, long *next, long *done,
                        long *errors, int stop)
{
    int st = status_in;
    for (;;) {
        if (c->state == 0) {
            char sql[128];
            int len;
            if (stop || *next >= n) return;
            c->id = ids[(*next)++];
            len = snprintf(sql, sizeof sql, "SELECT id, k, c FROM " TABLE " WHERE id = %u", c->id);
            c->status = mysql_real_query_start(&c->qerr, c->m, sql, (unsigned long)len);
            c->state = 1;
        } else if (c->state == 1) {
            c->status = mysql_real_query_cont(&c->qerr, c->m, st);
        } else {
            c->status = mysql_store_result_cont(&c->res, c->m, st);
        }
        if (c->status) return; /* would block: poll for c->status */
        if (c->state == 1) {
            if (c->qerr) {
                if (++*errors <= 3) fprintf(stderr, "bench_mysql: raw: %s\n", mysql_error(c->m));
                (*done)++;
                c->state = 0;
                continue;
            }
            c->state = 2;
            c->status = mysql_store_result_start(&c->res, c->m);
            if (c->status) return;
        }
        /* state 2, finished */
        {
            MYSQL_ROW row = c->res ? mysql_fetch_row(c->res) : NULL;
            if (!c->res || mysql_num_rows(c->res) != 1 || !row || !row[0] || strtoul(row[0], NULL, 10) != c->id)
                ++*errors;
            if (c->res) mysql_free_result(c->res);
            c->res = NULL;
        }
        (*done)++;
        c->state = 0;
        st = 0;
    }
}

static long run_raw(const char *url, int nconn, const unsigned *ids, long n, double max_s, long *errors, int *capped)
{
    raw_conn *cs = (raw_conn *)calloc((size_t)nconn, sizeof *cs);
    struct pollfd *pfd = (struct pollfd *)calloc((size_t)nconn, sizeof *pfd);
    long next = 0, done = 0;
    int i, stop = 0;
    double start;
    if (!cs || !pfd) bench_die("out of memory");
    for (i = 0; i < nconn; i++) {
        cs[i].m = blocking_connect(url); /* blocking connect, then non-blocking queries */
        mysql_options(cs[i].m, MYSQL_OPT_NONBLOCK, 0);
    }
    start = bench_now();
    *capped = 0;
    for (i = 0; i < nconn; i++) raw_advance(&cs[i], 0, ids, n, &next, &done, errors, stop);
    for (;;) {
        int np = 0, rc;
        double el = bench_now() - start;
        if (el > max_s && !stop) { stop = 1; *capped = 1; }
        if (el > max_s + 30) bench_die("raw: ops still pending 30 s after the time limit");
        for (i = 0; i < nconn; i++) {
            pfd[i].fd = cs[i].state ? (int)mysql_get_socket(cs[i].m) : -1;
            pfd[i].events = (short)(cs[i].state ? raw_events(cs[i].status) : 0);
            pfd[i].revents = 0;
            if (cs[i].state) np++;
        }
        if (!np) break;
        rc = poll(pfd, (nfds_t)nconn, 1000);
        if (rc < 0) bench_die("poll failed");
        for (i = 0; i < nconn; i++) {
            int st = 0;
            if (!cs[i].state) continue;
            if (rc == 0) st = MYSQL_WAIT_TIMEOUT;
            else if (!pfd[i].revents) continue;
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) st |= MYSQL_WAIT_READ;
            if (pfd[i].revents & POLLOUT) st |= MYSQL_WAIT_WRITE;
            if (pfd[i].revents & POLLPRI) st |= MYSQL_WAIT_EXCEPT;
            raw_advance(&cs[i], st, ids, n, &next, &done, errors, stop);
        }
    }
    for (i = 0; i < nconn; i++) mysql_close(cs[i].m);
    free(cs);
    free(pfd);
    return done;
}

/* ==== the pool side ==== */

/* Op i selects ids[i]; it is right when it returns that one row. */
typedef struct pool_ctx { dbp_pool *pool; const unsigned *ids; } pool_ctx;

static dbp_op *pool_submit(void *ctx, long i)
{
    pool_ctx *c = (pool_ctx *)ctx;
    dbp_value v = dbp_v_uint(c->ids[i]);
    return dbp_pool_query(c->pool, SELECT_SQL, &v, 1, NULL);
}

static int pool_check(void *ctx, const dbp_op *op, long i)
{
    const dbp_result *res = dbp_op_result(op);
    const dbp_cell *cell = res ? dbp_result_cell(res, 0, 0) : NULL;
    return res && res->nrows == 1 && cell && cell->data &&
           strtoul(cell->data, NULL, 10) == ((pool_ctx *)ctx)->ids[i];
}

/* The figure's name says BENCH_MYSQL_PREPARE when it is set. */
static const char *ps_suffix(void)
{
    const char *ps = getenv("BENCH_MYSQL_PREPARE");
    return !ps ? "" : !strcmp(ps, "1") ? "_ps" : !strcmp(ps, "0") ? "_text" : "";
}

/* --only insert: a 10-parameter INSERT (text against prepared, BENCH_MYSQL_PREPARE=1) */
#define INSERT_SQL "INSERT INTO bench_ins (a, b, c, d, e, f, g, h, i, j) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

static dbp_op *insert_submit(void *ctx, long i)
{
    pool_ctx *c = (pool_ctx *)ctx;
    static const char blob[8] = { 0, 1, 2, 3, (char)0xfe, (char)0xff, '\'', '\\' };
    dbp_value v[10];
    v[0] = dbp_v_int(i);
    v[1] = dbp_v_uint(c->ids[i]);
    v[2] = dbp_v_double((double)i * 0.25);
    v[3] = dbp_v_text("some text of a row");
    v[4] = dbp_v_text("it's quoted");
    v[5] = dbp_v_text("2026-11-30 12:34:56");
    v[6] = dbp_v_bool((int)(i & 1));
    v[7] = dbp_v_null();
    v[8] = dbp_v_blob(blob, sizeof blob);
    v[9] = dbp_v_int(-i);
    return dbp_pool_query(c->pool, INSERT_SQL, v, 10, NULL);
}

static int insert_check(void *ctx, const dbp_op *op, long i)
{
    const dbp_result *res = dbp_op_result(op);
    (void)ctx; (void)i;
    return res && res->affected_rows == 1;
}

static void ensure_insert_table(MYSQL *m)
{
    if (mysql_query(m, "DROP TABLE IF EXISTS bench_ins") ||
        mysql_query(m, "CREATE TABLE bench_ins (id INT AUTO_INCREMENT PRIMARY KEY, a BIGINT, b BIGINT UNSIGNED, c DOUBLE, "
                       "d VARCHAR(64), e VARCHAR(64), f DATETIME, g TINYINT, h INT NULL, i VARBINARY(16), j BIGINT)"))
        bench_die("creating bench_ins: %s", mysql_error(m));
}

/* Runs ids[0..n) through the pool with `inflight` ops in flight; returns
   the count done. */
static long run_pool(dbp_pool *pool, const unsigned *ids, long n, int inflight, double max_s,
                     long *errors, int *capped)
{
    pool_ctx c;
    c.pool = pool;
    c.ids = ids;
    return bench_run_window(pool, inflight, n, max_s, pool_submit, pool_check, &c, "bench_mysql", errors, capped);
}

/* ==== main ==== */

int main(int argc, char **argv)
{
    const char *url = getenv("DBPOOL_TEST_MYSQL_URL");
    bench_args a;
    long n, rows;
    unsigned phases;
    double max_s = bench_max_seconds();
    unsigned long long seed = 0x5eed5eedULL;
    unsigned *ids;
    long i, warm, done_b = 0, done_p = 0, err_b = 0, err_p = 0;
    double secs_b = 0, secs_p = 0, t0;
    int capped_b = 0, capped_p = 0, capped_r = 0;
    int want_blocking = 0, want_pool = 0, want_raw = 0;
    long done_r = 0, err_r = 0;
    double secs_r = 0;
    char name_p[32], extra[160];
    MYSQL *m;

    bench_args_init(&a, "BENCH_MYSQL", "ROWS", "blocking,pool,raw,insert", 100000, 10000, 100000, 8, 64);
    phases = bench_parse_args(argc, argv, "--rows", "R", &a);
    if (a.only == a.phases) phases &= ~8u;    /* the INSERT phase only when asked for */
    n = a.n;
    rows = a.size;
    want_blocking = (phases & 1) != 0;
    want_pool = (phases & 2) != 0;
    want_raw = (phases & 4) != 0;
    {
        const char *raw_env = getenv("BENCH_MYSQL_RAW");
        if (raw_env && !strcmp(raw_env, "0")) want_raw = 0;
    }
    if (!url || !*url) bench_die("DBPOOL_TEST_MYSQL_URL is not set (run under scripts/with-servers.sh)");
    if (rows > 4000000000L) bench_die("--rows too large");

    ids = (unsigned *)malloc((size_t)n * sizeof *ids);
    if (!ids) bench_die("out of memory");
    for (i = 0; i < n; i++) ids[i] = (unsigned)((bench_rand(&seed) >> 11) % (unsigned long long)rows) + 1;
    warm = n / 20 < 500 ? (n < 500 ? n : 500) : (n / 20 > 5000 ? 5000 : n / 20);

    m = blocking_connect(url);
    ensure_table(m, rows);
    if (phases & 8) ensure_insert_table(m);
    printf("bench_mysql: %ld point selects by primary key on %ld rows (%s)\n", n, rows, SELECT_SQL);

    if (want_blocking) {
        long werr = 0;
        int wc;
        (void)run_blocking(m, ids, warm, max_s, &werr, &wc);
        t0 = bench_now();
        done_b = run_blocking(m, ids, n, max_s, &err_b, &capped_b);
        secs_b = bench_now() - t0;
        bench_print_rate("mysql", "blocking_1conn", done_b, secs_b, "q/s", capped_b,
                         "libmariadb mysql_real_query + mysql_store_result");
    }
    mysql_close(m);

    if (want_pool) {
        dbp_pool *pool = bench_pool_open(url, a.pool, 0);
        dbp_stats st;
        long werr = 0;
        int wc;
        /* opens every connection and warms the pool's code paths */
        (void)run_pool(pool, ids, warm, a.inflight, max_s, &werr, &wc);
        if (werr) bench_die("the warm-up queries failed");
        t0 = bench_now();
        done_p = run_pool(pool, ids, n, a.inflight, max_s, &err_p, &capped_p);
        secs_p = bench_now() - t0;
        dbp_pool_stats(pool, &st);
        snprintf(name_p, sizeof name_p, "c_pool%d%s", a.pool, ps_suffix());
        snprintf(extra, sizeof extra, "dbpool C API, %d in flight; run p50 %lld us, p99 %lld us; %d connections",
                 a.inflight, st.run_p50_us, st.run_p99_us, st.total);
        bench_print_rate("mysql", name_p, done_p, secs_p, "q/s", capped_p, extra);
        bench_pool_close(pool);
    }

    if (phases & 8) {
        dbp_pool *pool = bench_pool_open(url, a.pool, 0);
        pool_ctx c;
        long werr = 0, done_i, err_i = 0;
        int wc, capped_i = 0;
        double secs_i;
        char name_i[40];
        c.pool = pool;
        c.ids = ids;
        (void)bench_run_window(pool, a.inflight, warm, max_s, insert_submit, insert_check, &c, "bench_mysql", &werr, &wc);
        if (werr) bench_die("the warm-up inserts failed");
        t0 = bench_now();
        done_i = bench_run_window(pool, a.inflight, n, max_s, insert_submit, insert_check, &c, "bench_mysql", &err_i, &capped_i);
        secs_i = bench_now() - t0;
        snprintf(name_i, sizeof name_i, "c_insert10_pool%d%s", a.pool,
                 ps_suffix());
        bench_print_rate("mysql", name_i, done_i, secs_i, "q/s", capped_i, "INSERT of 10 parameters, dbpool C API");
        bench_pool_close(pool);
        err_p += err_i;
    }

    if (want_raw) {
        char name_r[32];
        long werr = 0;
        int wc;
        (void)run_raw(url, a.pool, ids, warm, max_s, &werr, &wc);
        t0 = bench_now();
        done_r = run_raw(url, a.pool, ids, n, max_s, &err_r, &capped_r);
        secs_r = bench_now() - t0;
        snprintf(name_r, sizeof name_r, "raw_nonblock%d", a.pool);
        bench_print_rate("mysql", name_r, done_r, secs_r, "q/s", capped_r,
                         "reference: libmariadb non-blocking API under one poll(), no dbpool");
    }

    if (secs_p > 0 && done_p > 0) {
        char rn[64];
        double rate_p = (double)done_p / secs_p;
        if (secs_b > 0 && done_b > 0) {
            snprintf(rn, sizeof rn, "%s/blocking_1conn", name_p);
            bench_print_ratio("mysql", rn, rate_p / ((double)done_b / secs_b), 4.0);
        }
        if (secs_r > 0 && done_r > 0) {
            snprintf(rn, sizeof rn, "%s/raw_nonblock%d", name_p, a.pool);
            bench_print_ratio("mysql", rn, rate_p / ((double)done_r / secs_r), 0);
        }
    }
    free(ids);
    if (err_b || err_p || err_r) {
        fprintf(stderr, "bench_mysql: %ld blocking, %ld pool and %ld raw queries failed or returned a wrong row\n",
                err_b, err_p, err_r);
        return 1;
    }
    return 0;
}
