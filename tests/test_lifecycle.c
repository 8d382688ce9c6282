/* The pool's lifecycle against a real MariaDB: connections killed idle and
   busy, a session wait_timeout expiring idle connections, an account limit
   below the pool's demand, the server restarted under load, backoff against
   a closed port, query_timeout stopping the statement on the server,
   lifetime recycling under load, min kept warm, init statements, and the
   statistics. Open file descriptors are counted around every scenario. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"
#include "helpers.h"
#include <signal.h>

static const char *URL, *ROOT_URL, *LIMITED_URL;
static int nwarn;
static char last_warn[DBP_ERRMSG_MAX];

static void hook(dbp_pool *p, const dbp_event *ev, void *ud)
{
    (void)p; (void)ud;
    if (ev->type == DBP_EVENT_ERROR) { nwarn++; snprintf(last_warn, sizeof last_warn, "%s", ev->message); }
}

static dbp_pool *open_pool(dbp_hub *h, const char *url, const char *opts)
{
    return open_pool_with(h, url, opts, hook, NULL);
}

/* A one-value query: the first cell as a number (-1 on error). */
static long long scalar(dbp_pool *p, const char *sql)
{
    dbp_op *op = dbp_pool_query(p, sql, NULL, 0, NULL);
    long long v = -1;
    if (dbp_op_wait(op, 20000) == DBP_OK && dbp_op_result(op)->nrows && dbp_result_cell(dbp_op_result(op), 0, 0)->data)
        v = atoll(dbp_result_cell(dbp_op_result(op), 0, 0)->data);
    else if (dbp_op_rc(op) != DBP_OK) diag("'%s': %s", sql, dbp_op_error(op)->message);
    dbp_op_free(op);
    return v;
}

static void fds_check(dbp_hub *h, int before, const char *what)
{
    int n = count_fds(), i;
    for (i = 0; i < 100 && n > before; i++) { spin(h, 20); n = count_fds(); }
    ok(n <= before, "%s: no file descriptor leaked (%d -> %d)", what, before, n);
}

static void test_kill_idle_and_busy(dbp_hub *h, dbp_pool *admin)
{
    int fds = count_fds();
    dbp_pool *p = open_pool(h, URL, "max=1");
    long long id = scalar(p, "SELECT CONNECTION_ID()");
    char sql[64];
    dbp_op *busy;
    dbp_stats st;
    snprintf(sql, sizeof sql, "KILL %lld", id);
    run_sql(admin, sql);
    ok(scalar(p, "SELECT 7") == 7, "a connection killed while idle: the next op succeeds, no user code");
    dbp_pool_stats(p, &st);
    ok(st.created == 2 && st.rejected == 0, "  on a fresh connection (created %llu, rejected %llu)", st.created, st.rejected);
    id = scalar(p, "SELECT CONNECTION_ID()");
    busy = dbp_pool_query(p, "SELECT SLEEP(3)", NULL, 0, NULL);
    spin(h, 300);
    snprintf(sql, sizeof sql, "KILL %lld", id);
    run_sql(admin, sql);
    dbp_op_wait(busy, 10000);
    ok(dbp_op_rc(busy) == DBP_ELOST && dbp_op_error(busy)->sent && strstr(dbp_op_error(busy)->message, "may or may not"),
       "killed while running: the op is lost after send: %s", dbp_op_error(busy)->message);
    dbp_op_free(busy);
    ok(scalar(p, "SELECT 8") == 8, "  and the pool recovers");
    close_pool(p);
    fds_check(h, fds, "kills");
}

static void test_wait_timeout(dbp_hub *h)
{
    int fds = count_fds(), i, good = 0;
    dbp_pool *p = open_pool(h, URL, "max=2&init=SET%20SESSION%20wait_timeout%3D1&validate_after=0");
    dbp_stats st;
    ok(scalar(p, "SELECT @@wait_timeout") == 1, "init statement sets a session wait_timeout of 1 s");
    dbp_pool_stats(p, &st);
    is_int(st.server_wait_timeout, 1, "  and the pool read it");
    for (i = 0; i < 3; i++) {
        spin(h, 1600); /* longer than the server's wait_timeout */
        if (scalar(p, "SELECT 1") == 1) good++;
    }
    is_int(good, 3, "after idling past wait_timeout three times, the next ops succeed");
    dbp_pool_stats(p, &st);
    ok(st.rejected == 0 && st.lost == 0, "  nothing was lost (rejected %llu)", st.rejected);
    close_pool(p);
    fds_check(h, fds, "wait_timeout");
}

static void test_user_limit(dbp_hub *h)
{
    enum { N = 200 };
    int fds = count_fds(), i, good = 0;
    dbp_pool *p = open_pool(h, LIMITED_URL, "max=10");
    dbp_op *ops[N];
    dbp_stats st;
    nwarn = 0;
    for (i = 0; i < N; i++) ops[i] = dbp_pool_query(p, "SELECT SLEEP(0.01)", NULL, 0, NULL);
    for (i = 0; i < N; i++) {
        if (dbp_op_wait(ops[i], 30000) == DBP_OK) good++;
        else diag("  %s", dbp_op_error(ops[i])->message);
        dbp_op_free(ops[i]);
    }
    is_int(good, N, "MAX_USER_CONNECTIONS 3 below max=10: 200 concurrent ops all succeed");
    dbp_pool_stats(p, &st);
    ok(st.max == 3 && st.server_max_user_connections == 3, "  the pool capped itself at 3 (max %d)", st.max);
    ok(nwarn >= 1 && strstr(last_warn, "max_user_connections"), "  and warned through the hook: %s", last_warn);
    ok(st.connect_failures == 0, "  without a single 'Too many connections' (%llu failures)", st.connect_failures);
    close_pool(p);
    fds_check(h, fds, "user limit");
}

static void test_restart(dbp_hub *h)
{
    enum { N = 40 };
    int fds = count_fds(), i, good = 0, failed = 0, hung = 0;
    dbp_pool *p = open_pool(h, URL, "max=4&acquire_timeout=30&backoff_min=0.05&backoff_max=0.5");
    dbp_op *ops[N];
    dbp_stats st;
    run_sql(p, "SELECT 1");
    if (system("scripts/mariadb.sh stop >/dev/null 2>&1") != 0) diag("mariadb.sh stop failed");
    for (i = 0; i < N; i++) {
<<<<<<< HEAD
        dbp_op_options o = { i % 2 ? 2000 : 30000, 1 };
        ops[i] = dbp_pool_query(p, "SELECT 1", NULL, 0, &o);
=======
        dbp_op_options o = { i % 2 ? 2000 : 30000, 1, 0 };
        ops[i] = dbp_pool_query(p, "SELECT 1", NULL, 0, &o);
>>>>>>> pg
        spin(h, 5);
    }
    spin(h, 300);
    if (system("scripts/mariadb.sh start >/dev/null 2>&1") != 0) diag("mariadb.sh start failed");
    for (i = 0; i < N; i++) {
        int rc = dbp_op_wait(ops[i], 40000);
        if (rc == DBP_OK) good++;
        else if (rc == DBP_PENDING) hung++;
        else {
            failed++;
            if (i % 2 == 0 || !(rc == DBP_ETIMEOUT && strstr(dbp_op_error(ops[i])->message, "last connect error")))
                diag("  op %d: %s", i, dbp_op_error(ops[i])->message);
        }
        dbp_op_free(ops[i]);
    }
    ok(hung == 0, "server stopped and restarted under load: no op hangs");
    ok(good >= N / 2 && good + failed == N, "  ops with a long deadline succeed after it returns (%d ok, %d failed at their deadline)", good, failed);
    ok(scalar(p, "SELECT 9") == 9, "  the pool recovered by itself");
    dbp_pool_stats(p, &st);
    ok(st.connect_failures >= 1, "  connect failures were counted (%llu)", st.connect_failures);
    close_pool(p);
    fds_check(h, fds, "restart");
}

static void test_backoff(dbp_hub *h)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), port, fds;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    char url[256];
    dbp_pool *p;
    dbp_op *op;
    dbp_stats st;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    close(fd); /* a closed port: every connect is refused at once */
    fds = count_fds();
    snprintf(url, sizeof url, "mysql://u:pw@127.0.0.1:%d/db", port);
    p = open_pool(h, url, "acquire_timeout=3&backoff_min=0.1&backoff_max=1");
    op = dbp_pool_query(p, "SELECT 1", NULL, 0, NULL);
    dbp_op_wait(op, 10000);
    dbp_pool_stats(p, &st);
    ok(st.connect_failures >= 3 && st.connect_failures <= 12,
       "backoff: %llu connect attempts against a closed port in 3 s (a tight loop would make thousands)", st.connect_failures);
    ok(dbp_op_rc(op) == DBP_EACQUIRE_TIMEOUT && strstr(dbp_op_error(op)->message, "Can't connect"),
       "  the op fails at its deadline with the last connect error: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    close_pool(p);
    fds_check(h, fds, "backoff");
}

static void test_query_timeout(dbp_hub *h, dbp_pool *admin)
{
    int fds = count_fds();
    dbp_pool *p = open_pool(h, URL, "max=1&query_timeout=0.5");
    dbp_op *op;
    long long s, st, e, id;
    dbp_stats stt;
    char sql[160];
    id = scalar(p, "SELECT CONNECTION_ID()");
    op = dbp_pool_query(p, "SELECT SLEEP(10)", NULL, 0, NULL);
    dbp_op_wait(op, 15000);
    dbp_op_times(op, &s, &st, &e);
    ok(dbp_op_rc(op) == DBP_ETIMEOUT && dbp_rc_kind(DBP_ETIMEOUT) == DBP_KIND_TIMEOUT,
       "SELECT SLEEP(10) with query_timeout 0.5 s is rejected with kind timeout: %s", dbp_op_error(op)->message);
    ok((e - st) / 1000 >= 450 && (e - st) / 1000 < 1500, "  in about the timeout (%lld ms)", (e - st) / 1000);
    dbp_op_free(op);
    spin(h, 500);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %lld AND INFO LIKE 'SELECT SLEEP(10)%%'", id);
    is_int(scalar(admin, sql), 0, "  and the statement is gone from SHOW PROCESSLIST (KILL QUERY)");
    ok(scalar(p, "SELECT CONNECTION_ID()") == id, "  the same connection is reused, clean");
    ok(scalar(p, "SELECT 5") == 5, "  and runs the next statements");
    dbp_pool_stats(p, &stt);
    ok(stt.timeouts == 1 && stt.created <= 2 && stt.total == 1,
       "  stats: 1 timeout; the side connection for KILL QUERY closed again (created %llu, total %d)", stt.created, stt.total);
    {
<<<<<<< HEAD
        dbp_op_options o = { 300, 0 };
        op = dbp_pool_query(p, "SELECT SLEEP(5)", NULL, 0, &o);
=======
        dbp_op_options o = { 300, 0, 0 };
        op = dbp_pool_query(p, "SELECT SLEEP(5)", NULL, 0, &o);
>>>>>>> pg
        dbp_op_wait(op, 10000);
        dbp_op_times(op, &s, &st, &e);
        ok(dbp_op_rc(op) == DBP_ETIMEOUT && (e - s) / 1000 < 1000, "an op's own deadline stops a running query too (%lld ms)", (e - s) / 1000);
        dbp_op_free(op);
    }
    close_pool(p);
    fds_check(h, fds, "query timeout");
}

static void test_lifetime(dbp_hub *h)
{
    int fds = count_fds(), i, good = 0, n = 0;
    dbp_pool *p = open_pool(h, URL, "max=3&max_lifetime=1&connect_timeout=0.5");
    dbp_stats st;
    long long end = dbp__now_us() / 1000 + 3500;
    while (dbp__now_us() / 1000 < end && n < 100000) {
        dbp_op *ops[3];
        for (i = 0; i < 3; i++) ops[i] = dbp_pool_query(p, "SELECT SLEEP(0.02)", NULL, 0, NULL);
        for (i = 0; i < 3; i++) { if (dbp_op_wait(ops[i], 10000) == DBP_OK) good++; dbp_op_free(ops[i]); n++; }
    }
    dbp_pool_stats(p, &st);
    is_int(good, n, "max_lifetime 1 s under 3.5 s of load: every one of %d ops succeeded", n);
    ok(st.closed_lifetime >= 3 && st.created >= 6, "  connections were recycled (closed for lifetime %llu, created %llu)",
       st.closed_lifetime, st.created);
    ok(st.wait_p99_us < 500000, "  and no caller waited for a connect (p99 wait %.1f ms)", st.wait_p99_us / 1000.0);
    close_pool(p);
    fds_check(h, fds, "lifetime");
}

static void test_min_and_idle(dbp_hub *h, dbp_pool *admin)
{
    int fds = count_fds();
    dbp_pool *p = open_pool(h, URL, "min=2&max=4&idle_timeout=0.3");
    dbp_stats st;
    dbp_op *ops[4];
    int i;
    spin(h, 500);
    dbp_pool_stats(p, &st);
    ok(st.total == 2 && st.idle == 2, "min=2: two connections kept warm with no op at all (total %d)", st.total);
    for (i = 0; i < 4; i++) ops[i] = dbp_pool_query(p, "SELECT SLEEP(0.1)", NULL, 0, NULL);
    for (i = 0; i < 4; i++) { dbp_op_wait(ops[i], 5000); dbp_op_free(ops[i]); }
    dbp_pool_stats(p, &st);
    is_int(st.total, 4, "load grows the pool to max");
    spin(h, 800);
    dbp_pool_stats(p, &st);
    ok(st.total == 2 && st.closed_idle >= 2, "idle_timeout closes the idle ones beyond min (total %d, closed idle %llu)",
       st.total, st.closed_idle);
    {
        /* kill one of the warm ones: it is replaced */
        long long id = scalar(p, "SELECT CONNECTION_ID()");
        char sql[64];
        snprintf(sql, sizeof sql, "KILL %lld", id);
        run_sql(admin, sql);
        spin(h, 500);
        dbp_pool_stats(p, &st);
        ok(st.total == 2 && st.idle == 2, "a warm connection killed by the server is replaced (total %d)", st.total);
    }
    close_pool(p);
    fds_check(h, fds, "min/idle");
}

static void test_init_failure(dbp_hub *h)
{
    int fds = count_fds();
    dbp_pool *p = open_pool(h, URL, "init=SET%20time_zone%3D%27%2B00:00%27&init=SET%20no_such_variable%3D1");
    dbp_op *op = dbp_pool_query(p, "SELECT 1", NULL, 0, NULL);
    long long s, st, e;
    dbp_op_wait(op, 10000);
    dbp_op_times(op, &s, &st, &e);
    ok(dbp_op_rc(op) == DBP_ECONNECT && strstr(dbp_op_error(op)->message, "init statement 2 failed") &&
       strstr(dbp_op_error(op)->message, "no_such_variable"), "a failing init statement fails the connection clearly: %s",
       dbp_op_error(op)->message);
    ok((e - s) / 1000 < 2000, "  and the op at once, not at its acquire timeout (%lld ms)", (e - s) / 1000);
    dbp_op_free(op);
    close_pool(p);
    p = open_pool(h, URL, "init=SET%20time_zone%3D%27%2B00:00%27");
    ok(scalar(p, "SELECT TIMESTAMPDIFF(HOUR, UTC_TIMESTAMP(), NOW())") == 0, "a good init statement ran before first use (UTC session)");
    close_pool(p);
    fds_check(h, fds, "init");
}

static void test_stats(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    dbp_stats st;
    int i;
    dbp_op *ops[10];
    for (i = 0; i < 10; i++) ops[i] = dbp_pool_query(p, i == 9 ? "SELECT nope" : "SELECT SLEEP(0.05)", NULL, 0, NULL);
    for (i = 0; i < 10; i++) { dbp_op_wait(ops[i], 5000); dbp_op_free(ops[i]); }
    dbp_pool_stats(p, &st);
    ok(st.ops == 10 && st.fulfilled == 9 && st.rejected == 1 && st.errors == 0,
       "stats count ops, fulfilled and rejected (a SQL error is not a pool error)");
    ok(st.total == 2 && st.idle == 2 && st.busy == 0 && st.waiting == 0 && st.created == 2, "stats: total/idle/busy/waiting/created");
    ok(st.run_p50_us >= 40000 && st.run_p50_us < 200000 && st.run_p99_us >= st.run_p50_us && st.run_max_us >= st.run_p99_us,
       "run latency percentiles (p50 %.1f ms, p99 %.1f ms)", st.run_p50_us / 1000.0, st.run_p99_us / 1000.0);
    ok(st.wait_p99_us >= 150000, "queue wait percentiles see the ops that waited (p99 %.1f ms)", st.wait_p99_us / 1000.0);
    close_pool(p);
}

int main(void)
{
    dbp_hub *h;
    dbp_pool *admin;
    int fds0, fds_base = count_fds();
    signal(SIGPIPE, SIG_DFL);
    URL = need_env("DBPOOL_TEST_MYSQL_URL");
    ROOT_URL = need_env("DBPOOL_TEST_MYSQL_ROOT_URL");
    LIMITED_URL = need_env("DBPOOL_TEST_MYSQL_LIMITED_URL");
    h = dbp_hub_open(NULL);
    admin = open_pool(h, ROOT_URL, "max=1");
    scalar(admin, "SELECT 1"); /* its one connection is open before any counting */
    fds0 = count_fds();
    test_kill_idle_and_busy(h, admin);
    test_wait_timeout(h);
    test_user_limit(h);
    test_backoff(h);
    test_query_timeout(h, admin);
    test_lifetime(h);
    test_min_and_idle(h, admin);
    test_init_failure(h);
    test_stats(h);
    test_restart(h);
    close_pool(admin);
    dbp_hub_free(h, 5000);
    (void)fds0;
    is_int(count_fds(), fds_base, "no file descriptor leaked overall");
    return done_testing();
}
