/* The core against a real MariaDB: concurrency, queue order and bounds,
   timeouts, graceful close, value round trips, injection, result sets,
   pinned connections, streaming, bad credentials, unreachable servers. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"
#include "helpers.h"
#include <signal.h>

static const char *URL, *PASSWORD;

static void hook(dbp_pool *p, const dbp_event *ev, void *ud)
{
    (void)p; (void)ud;
    keep(ev->message);
}

static dbp_pool *open_pool(dbp_hub *h, const char *url, const char *opts)
{
    return open_pool_with(h, url, opts, hook, keep);
}

static long long ms_between(long long a_us, long long b_us) { return (b_us - a_us) / 1000; }

static dbp_op *q(dbp_pool *p, const char *sql)
{
    return dbp_pool_query(p, sql, NULL, 0, NULL);
}

static int run(dbp_pool *p, const char *sql)
{
    dbp_op *op = q(p, sql);
    int rc = dbp_op_wait(op, 20000);
    if (rc != DBP_OK) { diag("'%s' failed: %s", sql, dbp_op_error(op)->message); keep(dbp_op_error(op)->message); }
    dbp_op_free(op);
    return rc;
}

static void test_concurrency(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=8");
    dbp_op *ops[8];
    long long last_start = 0, first_end = -1;
    int i, okc = 0;
    for (i = 0; i < 8; i++) ops[i] = q(p, "SELECT SLEEP(0.2)");
    for (i = 0; i < 8; i++) {
        long long s, st, e;
        if (dbp_op_wait(ops[i], 10000) == DBP_OK) okc++;
        dbp_op_times(ops[i], &s, &st, &e);
        if (st > last_start) last_start = st;
        if (first_end < 0 || e < first_end) first_end = e;
    }
    is_int(okc, 8, "8 x SELECT SLEEP(0.2) on max=8 all fulfilled");
    ok(last_start < first_end, "they overlap: the last started (%lld us) before the first ended (%lld us)",
       last_start - first_end + first_end % 1, first_end);
    {
        dbp_stats st;
        dbp_pool_stats(p, &st);
        is_int(st.total, 8, "eight connections were opened");
    }
    for (i = 0; i < 8; i++) dbp_op_free(ops[i]);
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_pool_free(p);
}

static int order[64], norder;
static void record(dbp_op *op, void *ud) { (void)op; order[norder++] = (int)(size_t)ud; }

static void test_fifo(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1");
    dbp_op *ops[20];
    int i, in_order = 1;
    norder = 0;
    for (i = 0; i < 20; i++) {
        dbp_value v = dbp_v_int(i);
        ops[i] = dbp_pool_query(p, "SELECT ?", &v, 1, NULL);
        dbp_op_on_settle(ops[i], record, (void *)(size_t)i);
    }
    dbp_hub_run(h, 10000);
    for (i = 0; i < 20; i++) if (order[i] != i) in_order = 0;
    ok(norder == 20 && in_order, "20 queued ops on max=1 run in submission order");
    for (i = 0; i < 20; i++) {
        const dbp_result *r = dbp_op_result(ops[i]);
        if (!r || atoi(dbp_result_cell(r, 0, 0)->data) != i) in_order = 0;
        dbp_op_free(ops[i]);
    }
    ok(in_order, "each got its own result");
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_pool_free(p);
}

static void test_max_waiting(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&max_waiting=2");
    dbp_op *a = q(p, "SELECT SLEEP(0.3)");
    dbp_op *b, *c, *d;
    int guard = 0;
    while (dbp_op_state(a) != DBP_OP_RUNNING && guard++ < 200) dbp_hub_step(h, 10); /* a holds the connection */
    b = q(p, "SELECT 1");
    c = q(p, "SELECT 2");
    d = q(p, "SELECT 3");
    ok(dbp_op_rc(d) == DBP_EQUEUE_FULL, "the op beyond max_waiting is refused at once: %s", dbp_op_error(d)->message);
    ok(dbp_rc_kind(dbp_op_rc(d)) == DBP_KIND_CONNECTION && dbp_op_error(d)->sent == 0, "  kind connection, not sent");
    ok(dbp_op_wait(a, 5000) == DBP_OK && dbp_op_wait(b, 5000) == DBP_OK && dbp_op_wait(c, 5000) == DBP_OK,
       "the ones within the bound all run");
    dbp_op_free(a); dbp_op_free(b); dbp_op_free(c); dbp_op_free(d);
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_pool_free(p);
}

static void test_acquire_timeout(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&acquire_timeout=0.2");
    dbp_op *a = q(p, "SELECT SLEEP(1)");
    dbp_op *b = q(p, "SELECT 1");
    long long s, st, e;
    int rc = dbp_op_wait(b, 5000);
    dbp_op_times(b, &s, &st, &e);
    ok(rc == DBP_EACQUIRE_TIMEOUT, "an op that cannot get a connection fails with acquire timeout: %s",
       dbp_op_error(b)->message);
    ok(ms_between(s, e) >= 190 && ms_between(s, e) < 900, "  after about 0.2 s (%lld ms), not the 1 s the other holds",
       ms_between(s, e));
    ok(dbp_rc_kind(rc) == DBP_KIND_TIMEOUT && !dbp_op_error(b)->sent, "  kind timeout, not sent");
    is_int(dbp_op_wait(a, 5000), DBP_OK, "the running op is unaffected");
    dbp_op_free(a); dbp_op_free(b);
    {
        /* an op's own deadline covers the queue too */
        dbp_op_options o = { 150, 0, 0, 0, 0 };
        dbp_op *x = q(p, "SELECT SLEEP(1)");
        dbp_op *y = dbp_pool_query(p, "SELECT 1", NULL, 0, &o);
        rc = dbp_op_wait(y, 5000);
        ok(rc == DBP_ETIMEOUT && strstr(dbp_op_error(y)->message, "waiting for a connection"),
           "an op deadline expires in the queue: %s", dbp_op_error(y)->message);
        dbp_op_wait(x, 5000);
        dbp_op_free(x); dbp_op_free(y);
    }
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_pool_free(p);
}

static void test_seed_close(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    dbp_op *ops[5], *cl, *late;
    int i, fulfilled = 0;
    for (i = 0; i < 5; i++) {
        dbp_value v = dbp_v_int(i);
        ops[i] = dbp_pool_query(p, "SELECT SLEEP(0.05), ?", &v, 1, NULL);
    }
    cl = dbp_pool_close(p, -1);
    late = q(p, "SELECT 'late'");
    ok(dbp_op_rc(late) == DBP_ECLOSED && strstr(dbp_op_error(late)->message, "pool is closing"),
       "a submit during close is refused: %s", dbp_op_error(late)->message);
    is_int(dbp_op_wait(cl, 10000), DBP_OK, "close settles fulfilled");
    for (i = 0; i < 5; i++) {
        if (dbp_op_state(ops[i]) == DBP_OP_FULFILLED && atoi(dbp_result_cell(dbp_op_result(ops[i]), 0, 1)->data) == i) fulfilled++;
        dbp_op_free(ops[i]);
    }
    is_int(fulfilled, 5, "seed: 5 queries on a pool of 2, close right after submitting: all 5 fulfilled");
    {
        dbp_stats st;
        dbp_pool_stats(p, &st);
        ok(st.total == 0 && st.closed_close >= 1, "every connection was closed (total %d, closed by close %llu)",
           st.total, st.closed_close);
    }
    dbp_op_free(late);
    late = q(p, "SELECT 'later'");
    ok(dbp_op_rc(late) == DBP_ECLOSED && strstr(dbp_op_error(late)->message, "closed") &&
       dbp_rc_kind(DBP_ECLOSED) == DBP_KIND_CLOSED, "a late submit after close is rejected as closed");
    dbp_op_free(late);
    dbp_op_free(cl);
    dbp_pool_free(p);
}

static void test_close_deadline(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1");
    dbp_op *run1 = q(p, "SELECT SLEEP(3)"), *w1 = q(p, "SELECT 1"), *w2 = q(p, "SELECT 2"), *cl;
    long long t0;
    dbp_hub_run(h, 300); /* run1 is now on the server */
    t0 = dbp__now_us();
    cl = dbp_pool_close(p, 300);
    ok(dbp_op_wait(cl, 5000) == DBP_ECANCELLED, "close with a deadline reports what it cut: %s", dbp_op_error(cl)->message);
    ok(ms_between(t0, dbp__now_us()) < 1500, "  and returns at about the deadline (%lld ms)", ms_between(t0, dbp__now_us()));
    ok(dbp_op_rc(run1) == DBP_ECANCELLED && dbp_op_error(run1)->sent == 1 && strstr(dbp_op_error(run1)->message, "may or may not"),
       "the running op is cut off and says it may have run: %s", dbp_op_error(run1)->message);
    ok(dbp_op_rc(w1) == DBP_ECANCELLED && dbp_op_error(w1)->sent == 0 && dbp_op_rc(w2) == DBP_ECANCELLED &&
       strstr(dbp_op_error(w1)->message, "did not run"), "queued ops are rejected, not sent: %s", dbp_op_error(w1)->message);
    dbp_op_free(run1); dbp_op_free(w1); dbp_op_free(w2); dbp_op_free(cl);
    dbp_pool_free(p);
}

static void test_values(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    dbp_op *op;
    const dbp_result *r;
    dbp_value v[6];
    static const char bin[] = { 0, 1, 2, '\'', '\\', '"', 10, 13, 26, (char)0xff, 0, (char)0x80 };
    const char *utf8 = "\xc3\xa5\xc3\xa4\xc3\xb6 \xe2\x82\xac \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac";
    run(p, "DROP TABLE IF EXISTS t_values");
    run(p, "CREATE TABLE t_values (id INT PRIMARY KEY, b VARBINARY(64), t VARCHAR(64) CHARACTER SET utf8mb4, "
           "n VARCHAR(8), e VARCHAR(8), d DOUBLE, u BIGINT UNSIGNED)");
    v[0] = dbp_v_blob(bin, sizeof bin); v[1] = dbp_v_text(utf8); v[2] = dbp_v_null(); v[3] = dbp_v_text("");
    v[4] = dbp_v_double(0.1); v[5] = dbp_v_uint(18446744073709551615ULL);
    op = dbp_pool_query(p, "INSERT INTO t_values VALUES (1, ?, ?, ?, ?, ?, ?)", v, 6, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_OK && dbp_op_result(op)->affected_rows == 1, "insert with every kind of value");
    dbp_op_free(op);
    op = q(p, "SELECT b, t, n, e, d, u FROM t_values WHERE id = 1");
    dbp_op_wait(op, 5000);
    r = dbp_op_result(op);
    if (ok(r && r->nrows == 1 && r->ncols == 6, "selected back")) {
        ok(dbp_result_cell(r, 0, 0)->len == sizeof bin && memcmp(dbp_result_cell(r, 0, 0)->data, bin, sizeof bin) == 0,
           "binary with NUL, quotes, backslash, 0xff round-trips");
        is_str(dbp_result_cell(r, 0, 1)->data, utf8, "UTF-8 (4-byte emoji included) round-trips");
        ok(dbp_result_cell(r, 0, 2)->data == NULL, "SQL NULL is a NULL cell");
        ok(dbp_result_cell(r, 0, 3)->data != NULL && dbp_result_cell(r, 0, 3)->len == 0, "an empty string is not NULL");
        is_str(dbp_result_cell(r, 0, 4)->data, "0.1", "a double round-trips");
        is_str(dbp_result_cell(r, 0, 5)->data, "18446744073709551615", "BIGINT UNSIGNED max round-trips");
        is_str(r->fields[1].name, "t", "column names are there");
        ok(r->fields[0].charsetnr == 63 && r->fields[5].flags & UNSIGNED_FLAG, "column types and flags are there");
    }
    dbp_op_free(op);
    run(p, "DROP TABLE t_values");
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_pool_free(p);
}

/* The text protocol binds integers, NULL and booleans in place, at the
   placeholders the pool noted the last time it saw the same SQL: the same
   text again, and other text in the same buffer, bind where they should. */
static void test_text_binds(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&prepare=0");
    dbp_op *op;
    const dbp_result *r;
    dbp_value v[5];
    char sql[64];
    int round;
    v[0] = dbp_v_int(-9223372036854775807LL - 1); v[1] = dbp_v_uint(18446744073709551615ULL);
    v[2] = dbp_v_null(); v[3] = dbp_v_bool(1); v[4] = dbp_v_bool(0);
    for (round = 0; round < 2; round++) {
        strcpy(sql, "SELECT ?, ?, ? IS NULL, ?, ?");
        op = dbp_pool_query(p, sql, v, 5, NULL);
        dbp_op_wait(op, 5000);
        r = dbp_op_result(op);
        if (ok(r && r->nrows == 1 && r->ncols == 5, "text binds, round %d", round + 1)) {
            is_str(dbp_result_cell(r, 0, 0)->data, "-9223372036854775808", "  BIGINT min");
            is_str(dbp_result_cell(r, 0, 1)->data, "18446744073709551615", "  BIGINT UNSIGNED max");
            is_str(dbp_result_cell(r, 0, 2)->data, "1", "  NULL");
            is_str(dbp_result_cell(r, 0, 3)->data, "1", "  TRUE");
            is_str(dbp_result_cell(r, 0, 4)->data, "0", "  FALSE");
        }
        dbp_op_free(op);
        /* the same buffer, the same length, the placeholders elsewhere */
        strcpy(sql, "SELECT 7, ?, '?', 'abcdefgh'");
        op = dbp_pool_query(p, sql, v + 1, 1, NULL);
        dbp_op_wait(op, 5000);
        r = dbp_op_result(op);
        ok(r && r->ncols == 4 && strcmp(dbp_result_cell(r, 0, 0)->data, "7") == 0 &&
           strcmp(dbp_result_cell(r, 0, 1)->data, "18446744073709551615") == 0 &&
           strcmp(dbp_result_cell(r, 0, 2)->data, "?") == 0, "  other SQL in the same buffer binds at its own placeholder");
        dbp_op_free(op);
        op = dbp_pool_query(p, sql, v, 2, NULL);
        ok(dbp_op_wait(op, 5000) == DBP_EPARAM, "  and its count is checked against its own placeholders");
        dbp_op_free(op);
    }
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_pool_free(p);
}

static void test_injection(dbp_hub *h)
{
    static const char *const corpus[] = {
        "'; DROP TABLE t_inj; --", "\" OR \"1\"=\"1", "' OR '1'='1", "\\'; SELECT 1; --", "1; DELETE FROM t_inj",
        "?", "'?'", "-- ?", "/* ? */", "\\", "\\\\'", "%_", "\x1a", "' UNION SELECT password FROM mysql.user --",
        "a\0b", "`; DROP TABLE t_inj`", "\xbf\x27 OR 1=1 --", "\xc0\x27", "'\n' OR 1=1",
    };
    dbp_pool *p = open_pool(h, URL, "max=4");
    size_t i, same = 0, n = sizeof corpus / sizeof corpus[0];
    dbp_op *op;
    run(p, "DROP TABLE IF EXISTS t_inj");
    run(p, "CREATE TABLE t_inj (id INT PRIMARY KEY, s VARBINARY(200))");
    for (i = 0; i < n; i++) {
        size_t len = i == 14 ? 3 : strlen(corpus[i]);
        dbp_value v[2];
        v[0] = dbp_v_int((long long)i);
        v[1] = dbp_v_textn(corpus[i], len);
        op = dbp_pool_query(p, "INSERT INTO t_inj VALUES (?, ?)", v, 2, NULL);
        dbp_op_wait(op, 5000);
        dbp_op_free(op);
    }
    op = q(p, "SELECT id, s FROM t_inj ORDER BY id");
    if (dbp_op_wait(op, 5000) == DBP_OK) {
        const dbp_result *r = dbp_op_result(op);
        for (i = 0; i < r->nrows; i++) {
            size_t id = (size_t)atoi(dbp_result_cell(r, i, 0)->data);
            size_t len = id == 14 ? 3 : strlen(corpus[id]);
            const dbp_cell *c = dbp_result_cell(r, i, 1);
            if (c->len == len && memcmp(c->data, corpus[id], len) == 0) same++;
        }
    }
    dbp_op_free(op);
    is_int(same, n, "%lu injection attempts through parameters are stored literally", (unsigned long)n);
    run(p, "DROP TABLE t_inj");
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_pool_free(p);
}

static void test_multi_results(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1");
    dbp_op *op;
    const dbp_result *r;
    run(p, "DROP TABLE IF EXISTS t_multi");
    run(p, "CREATE TABLE t_multi (a INT)");
    op = q(p, "SELECT 1 AS a; INSERT INTO t_multi VALUES (1),(2),(3); SELECT 2 AS b, 3 AS c");
    ok(dbp_op_wait(op, 5000) == DBP_OK, "a multi-statement query");
    r = dbp_op_result(op);
    ok(r && r->nrows == 1 && strcmp(r->fields[0].name, "a") == 0, "  first set: SELECT 1 AS a");
    ok(r && r->next && r->next->ncols == 0 && r->next->affected_rows == 3, "  second set: 3 rows inserted");
    ok(r && r->next && r->next->next && r->next->next->ncols == 2 && !r->next->next->next, "  third set: two columns, and no more");
    dbp_op_free(op);
    op = q(p, "SELECT 1; SELECT * FROM no_such_table; SELECT 3");
    ok(dbp_op_wait(op, 5000) == DBP_ESQL && dbp_op_error(op)->code == 1146 && strcmp(dbp_op_error(op)->sqlstate, "42S02") == 0,
       "a failing later statement rejects the op with its code and SQLSTATE: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    ok(run(p, "SELECT 1") == DBP_OK, "the connection is fine after a server error");
    {
        dbp_stats st;
        dbp_pool_stats(p, &st);
        ok(st.created == 1, "  and was kept (created %llu)", st.created);
    }
    run(p, "DROP TABLE t_multi");
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_pool_free(p);
}

static void test_pinned(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    dbp_op *a, *op;
    dbp_conn *c = NULL;
    run(p, "DROP TABLE IF EXISTS t_tx");
    run(p, "CREATE TABLE t_tx (a INT) ENGINE=InnoDB");
    a = dbp_pool_acquire(p, NULL);
    ok(dbp_op_wait(a, 5000) == DBP_OK && (c = dbp_op_take_conn(a)) != NULL, "acquire a pinned connection");
    dbp_op_free(a);
    if (!c) return;
    op = dbp_conn_query(c, "BEGIN", NULL, 0, NULL); dbp_op_wait(op, 5000); dbp_op_free(op);
    op = dbp_conn_query(c, "INSERT INTO t_tx VALUES (1)", NULL, 0, NULL); dbp_op_wait(op, 5000); dbp_op_free(op);
    op = q(p, "SELECT COUNT(*) FROM t_tx");
    dbp_op_wait(op, 5000);
    is_str(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "0", "another connection does not see the open transaction");
    dbp_op_free(op);
    dbp_conn_release(c); /* released inside the transaction: rolled back */
    op = q(p, "SELECT COUNT(*) FROM t_tx");
    dbp_op_wait(op, 5000);
    is_str(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "0", "releasing inside a transaction rolls it back");
    dbp_op_free(op);
    a = dbp_pool_acquire(p, NULL);
    dbp_op_wait(a, 5000);
    c = dbp_op_take_conn(a);
    dbp_op_free(a);
    op = dbp_conn_query(c, "BEGIN", NULL, 0, NULL); dbp_op_free(op);
    op = dbp_conn_query(c, "INSERT INTO t_tx VALUES (2)", NULL, 0, NULL); dbp_op_free(op);
    op = dbp_conn_query(c, "COMMIT", NULL, 0, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_OK, "ops on a pinned connection run in order (BEGIN, INSERT, COMMIT)");
    dbp_op_free(op);
    dbp_conn_release(c);
    op = q(p, "SELECT COUNT(*) FROM t_tx");
    dbp_op_wait(op, 5000);
    is_str(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "1", "the committed row is visible");
    dbp_op_free(op);
    op = dbp_conn_query(c, "SELECT 1", NULL, 0, NULL);
    ok(op && dbp_op_rc(op) < 0, "a released connection refuses new ops");
    dbp_op_free(op);
    run(p, "DROP TABLE t_tx");
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_pool_free(p);
}

static void test_stream(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1");
    dbp_op *op = dbp_pool_query_stream(p, "SELECT seq, REPEAT('x', 100) FROM seq_1_to_5000", NULL, 0, NULL);
    long long sum = 0, rows = 0;
    int rc;
    for (;;) {
        const dbp_cell *row;
        size_t nc;
        rc = dbp_op_fetch(op, &row, &nc);
        if (rc == DBP_PENDING) { if (dbp_op_fetch_wait(op, 5000) != DBP_OK) break; continue; }
        if (rc != DBP_ROW) break;
        sum += atoll(row[0].data);
        rows++;
    }
    ok(rc == 0 && rows == 5000 && sum == 5000LL * 5001 / 2, "a streamed result delivers every row once (%lld rows)", rows);
    ok(dbp_op_state(op) == DBP_OP_FULFILLED, "  and the op is fulfilled at the end");
    dbp_op_free(op);
    ok(run(p, "SELECT 1") == DBP_OK, "the connection is reused after the stream");
    op = dbp_pool_query_stream(p, "SELECT seq FROM seq_1_to_100000", NULL, 0, NULL);
    dbp_op_fetch_wait(op, 5000);
    dbp_op_free(op); /* abandoned after the first batch */
    ok(run(p, "SELECT 2") == DBP_OK, "an abandoned stream is drained and the connection reused");
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_pool_free(p);
}

static void test_bad_credentials(dbp_hub *h)
{
    char url[512];
    dbp_pool *p;
    dbp_op *op;
    long long s, st, e;
    const char *at = strchr(URL, '@');
    snprintf(url, sizeof url, "mysql://dbpool:Wr0ngPassw0rd@%s", at + 1);
    p = open_pool(h, url, "acquire_timeout=10");
    op = q(p, "SELECT 1");
    ok(dbp_op_wait(op, 15000) == DBP_EAUTH, "a wrong password is an auth error: %s", dbp_op_error(op)->message);
    keep(dbp_op_error(op)->message);
    dbp_op_times(op, &s, &st, &e);
    ok(ms_between(s, e) < 3000, "  reported at once, not at the acquire timeout (%lld ms)", ms_between(s, e));
    ok(!strstr(dbp_op_error(op)->message, "Wr0ngPassw0rd"), "  the message has no password");
    dbp_op_free(op);
    op = q(p, "SELECT 1");
    ok(dbp_op_wait(op, 15000) == DBP_EAUTH, "the next op fails fast too (no reconnect loop)");
    {
        dbp_stats stt;
        dbp_pool_stats(p, &stt);
        ok(stt.connect_failures <= 2, "  connect attempts: %llu", stt.connect_failures);
    }
    dbp_op_free(op);
    dbp_op_free(dbp_pool_close(p, 1000));
    dbp_pool_free(p);
}

static void test_unreachable(dbp_hub *h)
{
    /* A loopback listener that never speaks: TCP connects, the greeting never comes. */
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    char url[256];
    dbp_pool *p;
    dbp_op *op;
    long long s, st, e;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    listen(fd, 16);
    getsockname(fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    snprintf(url, sizeof url, "mysql://u:SilentPw@127.0.0.1:%d/db", port);
    p = open_pool(h, url, "connect_timeout=0.5&acquire_timeout=1.2");
    op = q(p, "SELECT 1");
    dbp_op_wait(op, 10000);
    dbp_op_times(op, &s, &st, &e);
    ok(dbp_op_rc(op) == DBP_EACQUIRE_TIMEOUT && strstr(dbp_op_error(op)->message, "connect_timeout"),
       "a server that never answers: the op fails at its acquire timeout with the connect error: %s", dbp_op_error(op)->message);
    ok(ms_between(s, e) >= 1100 && ms_between(s, e) < 3000, "  in about 1.2 s (%lld ms)", ms_between(s, e));
    {
        dbp_stats stt;
        dbp_pool_stats(p, &stt);
        ok(stt.connect_failures >= 2, "  the 0.5 s connect timeout was honoured (%llu attempts)", stt.connect_failures);
    }
    keep(dbp_op_error(op)->message);
    dbp_op_free(op);
    dbp_op_free(dbp_pool_close(p, 1000));
    dbp_pool_free(p);
    close(fd);

    /* a closed port: refused at once, retried with backoff until the deadline */
    snprintf(url, sizeof url, "mysql://u:SilentPw@127.0.0.1:%d/db", port);
    p = open_pool(h, url, "acquire_timeout=0.6");
    op = q(p, "SELECT 1");
    dbp_op_wait(op, 10000);
    ok(dbp_op_rc(op) == DBP_EACQUIRE_TIMEOUT && strstr(dbp_op_error(op)->message, "last connect error"),
       "a dead server: %s", dbp_op_error(op)->message);
    keep(dbp_op_error(op)->message);
    dbp_op_free(op);
    dbp_op_free(dbp_pool_close(p, 1000));
    dbp_pool_free(p);
}

/* A program with its own loop: it asks the hub for its fds and deadline,
   polls them itself, and hands the events back. */
static void test_external_loop(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=4");
    dbp_op *ops[4];
    struct pollfd fds[64];
    int i, rounds = 0, done = 0;
    for (i = 0; i < 4; i++) ops[i] = q(p, "SELECT SLEEP(0.05)");
    while (done < 4 && rounds < 10000) {
        int timeout = -1, n = dbp_hub_fds(h, fds, 64, &timeout);
        if (n < 0 || n > 64) break;
        if (poll(fds, (nfds_t)n, timeout < 0 || timeout > 100 ? 100 : timeout) < 0) break;
        dbp_hub_process(h, fds, n);
        for (done = 0, i = 0; i < 4; i++) if (dbp_op_state(ops[i]) >= DBP_OP_FULFILLED) done++;
        rounds++;
    }
    ok(done == 4 && dbp_op_rc(ops[0]) == DBP_OK && dbp_op_rc(ops[3]) == DBP_OK,
       "the caller's own poll loop (dbp_hub_fds + dbp_hub_process) drives 4 queries to completion in %d rounds", rounds);
    for (i = 0; i < 4; i++) dbp_op_free(ops[i]);
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_hub_run(h, 5000);
    dbp_pool_free(p);
}

static void test_usage(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1");
    dbp_value v = dbp_v_double(NAN);
    dbp_op *op = dbp_pool_query(p, "SELECT ?", &v, 1, NULL);
    dbp_stats st;
    ok(dbp_op_rc(op) == DBP_EPARAM && dbp_op_error(op)->sent == 0, "NaN is refused before anything is sent");
    dbp_op_free(op);
    op = dbp_pool_query(p, "SELECT ?, ?", &v, 1, NULL);
    ok(dbp_op_rc(op) == DBP_EPARAM && strstr(dbp_op_error(op)->message, "2 placeholders"), "a count mismatch too");
    dbp_op_free(op);
    dbp_pool_stats(p, &st);
    is_int(st.total, 0, "  no connection was even opened");
    op = dbp_pool_call(p, 1, (const char *const[]){ "PING" }, NULL, NULL);
    ok(dbp_op_rc(op) == DBP_EUSAGE, "call() on a MySQL pool is a usage error");
    dbp_op_free(op);
    dbp_op_free(dbp_pool_close(p, 1000));
    dbp_pool_free(p);
}

int main(void)
{
    dbp_hub *h;
    int fds0, fds1;
    signal(SIGPIPE, SIG_DFL); /* a dead socket must never raise SIGPIPE */
    URL = need_env("DBPOOL_TEST_MYSQL_URL");
    PASSWORD = need_env("DBPOOL_TEST_MYSQL_PASSWORD");
    fds0 = count_fds();
    h = dbp_hub_open(NULL);
    test_concurrency(h);
    test_fifo(h);
    test_max_waiting(h);
    test_acquire_timeout(h);
    test_seed_close(h);
    test_close_deadline(h);
    test_values(h);
    test_text_binds(h);
    test_injection(h);
    test_multi_results(h);
    test_pinned(h);
    test_stream(h);
    test_bad_credentials(h);
    test_unreachable(h);
    test_usage(h);
    test_external_loop(h);
    dbp_hub_free(h, 5000);
    fds1 = count_fds();
    is_int(fds1, fds0, "no file descriptor leaked (%d before, %d after)", fds0, fds1);
    ok(!strstr(all_messages, PASSWORD) && !strstr(all_messages, "Wr0ngPassw0rd") && !strstr(all_messages, "SilentPw"),
       "no error or event message contains a password (%lu bytes checked)", (unsigned long)strlen(all_messages));
    return done_testing();
}
