/* The PostgreSQL backend against a real PostgreSQL 15 (scripts/postgres.sh):
   the seed scenario, concurrency, values both ways, injection, $n checks,
   results and errors, credentials, terminated backends (idle and busy),
   query_timeout cancelling on the server, TLS verify-full, pinned
   connections and transactions, streaming, notices, limits. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"
#include "helpers.h"
#include "proxy.h"
#include <signal.h>

static const char *URL, *PASSWORD, *CA, *OTHER_CA;
static int PG_PORT;
static int notices;
static char last_notice[256];

static void hook(dbp_pool *p, const dbp_event *ev, void *ud)
{
    (void)p; (void)ud;
    keep(ev->message);
    if (ev->type == DBP_EVENT_NOTICE) {
        notices++;
        snprintf(last_notice, sizeof last_notice, "%s", ev->message);
    }
}

static dbp_pool *open_pool(dbp_hub *h, const char *url, const char *opts)
{
    return open_pool_with(h, url, opts, hook, keep);
}

static long long ms_between(long long a_us, long long b_us) { return (b_us - a_us) / 1000; }

static dbp_op *q(dbp_pool *p, const char *sql) { return dbp_pool_query(p, sql, NULL, 0, NULL); }

static int run(dbp_pool *p, const char *sql)
{
    dbp_op *op = q(p, sql);
    int rc = dbp_op_wait(op, 20000);
    if (rc != DBP_OK) { diag("'%s' failed: %s", sql, dbp_op_error(op)->message); keep(dbp_op_error(op)->message); }
    dbp_op_free(op);
    return rc;
}

/* The first cell of a one-value query, as a number (-1 on failure). */
static long long scalar(dbp_pool *p, const char *sql)
{
    dbp_op *op = q(p, sql);
    long long v = -1;
    if (dbp_op_wait(op, 20000) == DBP_OK && dbp_op_result(op) && dbp_op_result(op)->nrows &&
        dbp_result_cell(dbp_op_result(op), 0, 0)->data)
        v = atoll(dbp_result_cell(dbp_op_result(op), 0, 0)->data);
    else diag("'%s': %s", sql, dbp_op_error(op)->message);
    dbp_op_free(op);
    return v;
}

/* Steps the hub until n connections are idle (a pool opened with min=n):
   timing tests then measure queries, not connects (slow under Valgrind). */
static void warm(dbp_hub *h, dbp_pool *p, int n)
{
    dbp_stats st;
    long long end = dbp__now_us() / 1000 + 30000;
    do {
        dbp_hub_step(h, 20);
        dbp_pool_stats(p, &st);
    } while (st.idle < n && dbp__now_us() / 1000 < end);
}

static void test_seed_close(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    dbp_op *ops[5], *cl, *late;
    int i, fulfilled = 0;
    for (i = 0; i < 5; i++) {
        dbp_value v = dbp_v_int(i);
        ops[i] = dbp_pool_query(p, "SELECT pg_sleep(0.05), $1::int AS i", &v, 1, NULL);
    }
    cl = dbp_pool_close(p, -1);
    late = q(p, "SELECT 'late'");
    ok(dbp_op_rc(late) == DBP_ECLOSED && strstr(dbp_op_error(late)->message, "pool is closing"),
       "a submit during close is refused: %s", dbp_op_error(late)->message);
    dbp_op_wait(cl, 60000); /* (TLS and SCRAM logins under Valgrind take seconds) */
    is_int(dbp_op_rc(cl), DBP_OK, "close settles fulfilled");
    for (i = 0; i < 5; i++) {
        if (dbp_op_state(ops[i]) == DBP_OP_FULFILLED && atoi(dbp_result_cell(dbp_op_result(ops[i]), 0, 1)->data) == i) fulfilled++;
        else diag("op %d: %s", i, dbp_op_error(ops[i])->message);
        dbp_op_free(ops[i]);
    }
    is_int(fulfilled, 5, "seed: 5 queries on a pool of 2, close right after submitting: all 5 fulfilled");
    {
        dbp_stats st;
        dbp_pool_stats(p, &st);
        ok(st.total == 0 && st.created == 2 && st.closed_close >= 1, "two connections were used and every one closed (total %d, created %llu)",
           st.total, st.created);
    }
    dbp_op_free(late);
    late = q(p, "SELECT 'later'");
    ok(dbp_op_rc(late) == DBP_ECLOSED && dbp_rc_kind(dbp_op_rc(late)) == DBP_KIND_CLOSED, "a late submit after close is rejected as closed");
    dbp_op_free(late);
    dbp_op_free(cl);
    dbp_pool_free(p);
}

static void test_concurrency(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=8&min=8&validate_after=0");
    dbp_op *ops[8];
    long long last_start = 0, first_end = -1, t0;
    int i, okc = 0;
    warm(h, p, 8);
    t0 = dbp__now_us();
    for (i = 0; i < 8; i++) ops[i] = q(p, "SELECT pg_sleep(0.5)");
    for (i = 0; i < 8; i++) {
        long long s, st, e;
        if (dbp_op_wait(ops[i], 10000) == DBP_OK) okc++;
        dbp_op_times(ops[i], &s, &st, &e);
        if (st > last_start) last_start = st;
        if (first_end < 0 || e < first_end) first_end = e;
    }
    is_int(okc, 8, "8 x pg_sleep(0.5) on max=8 all fulfilled");
    ok(last_start < first_end, "they overlap on the server: the last started before the first ended");
    ok(ms_between(t0, dbp__now_us()) < 2500, "  all eight in %lld ms, not 8 x 500", ms_between(t0, dbp__now_us()));
    {
        dbp_stats st;
        dbp_pool_stats(p, &st);
        is_int(st.total, 8, "eight connections were opened");
        ok(st.server_max_connections == 200, "the server's max_connections was read (%lld)", st.server_max_connections);
    }
    for (i = 0; i < 8; i++) dbp_op_free(ops[i]);
    close_pool(p);
}

static void test_values(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    dbp_op *op;
    const dbp_result *r;
    dbp_value v[12];
    static const char bin[] = { 0, 1, 2, '\'', '\\', '"', 10, 13, 26, (char)0xff, 0, (char)0x80 };
    const char *utf8 = "\xc3\xa5\xc3\xa4\xc3\xb6 \xe2\x82\xac \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac";
    const char *num40 = "1234567890123456789012345678901234567890.0123456789";
    run(p, "DROP TABLE IF EXISTS t_values");
    run(p, "CREATE TABLE t_values (id int PRIMARY KEY, s2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric(60,10), "
           "b bool, y bytea, t text, z text, d date, j jsonb, u uuid)");
    v[0] = dbp_v_int(-32768); v[1] = dbp_v_int(2147483647); v[2] = dbp_v_int(-9223372036854775807LL - 1);
    v[3] = dbp_v_double(1.5); v[4] = dbp_v_double(0.1); v[5] = dbp_v_text(num40); v[6] = dbp_v_bool(1);
    v[7] = dbp_v_blob(bin, sizeof bin); v[8] = dbp_v_text(utf8); v[9] = dbp_v_null(); v[10] = dbp_v_text("2024-02-29");
    v[11] = dbp_v_text("{\"k\": [1, 2]}");
    op = dbp_pool_query(p, "INSERT INTO t_values VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
                      "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')", v, 12, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_OK && dbp_op_result(op)->affected_rows == 1,
       "insert with every kind of value ($1..$12): %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    op = q(p, "SELECT s2, i4, i8, f4, f8, n, b, y, t, z, d, j, u, false AS no FROM t_values WHERE id = 1");
    dbp_op_wait(op, 5000);
    r = dbp_op_result(op);
    if (ok(r && r->nrows == 1 && r->ncols == 14, "selected back")) {
        static const dbp_type want[] = { DBP_INT, DBP_INT, DBP_INT, DBP_DOUBLE, DBP_DOUBLE, DBP_TEXT, DBP_BOOL,
                                         DBP_BLOB, DBP_TEXT, DBP_TEXT, DBP_TEXT, DBP_TEXT, DBP_TEXT, DBP_BOOL };
        size_t i, types_ok = 0;
        is_str(dbp_result_cell(r, 0, 0)->data, "-32768", "int2");
        is_str(dbp_result_cell(r, 0, 1)->data, "2147483647", "int4");
        is_str(dbp_result_cell(r, 0, 2)->data, "-9223372036854775808", "int8 minimum");
        is_str(dbp_result_cell(r, 0, 3)->data, "1.5", "float4");
        is_str(dbp_result_cell(r, 0, 4)->data, "0.1", "float8 round-trips");
        is_str(dbp_result_cell(r, 0, 5)->data, num40, "a numeric with 40 digits before the point stays exact text");
        is_str(dbp_result_cell(r, 0, 6)->data, "t", "bool true as 't'");
        ok(dbp_result_cell(r, 0, 7)->len == sizeof bin && memcmp(dbp_result_cell(r, 0, 7)->data, bin, sizeof bin) == 0,
           "bytea with NUL, quotes, backslash, 0xff round-trips (sent binary, read decoded)");
        is_str(dbp_result_cell(r, 0, 8)->data, utf8, "UTF-8 (4-byte emoji included) round-trips");
        ok(dbp_result_cell(r, 0, 9)->data == NULL, "SQL NULL is a NULL cell");
        is_str(dbp_result_cell(r, 0, 10)->data, "2024-02-29", "a date as the server's text");
        is_str(dbp_result_cell(r, 0, 11)->data, "{\"k\": [1, 2]}", "jsonb as text");
        is_str(dbp_result_cell(r, 0, 12)->data, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid as text");
        is_str(dbp_result_cell(r, 0, 13)->data, "f", "bool false as 'f'");
        for (i = 0; i < 14; i++) if (r->fields[i].vtype == want[i]) types_ok++;
        is_int(types_ok, 14, "vtype of each column: int2/4/8 int, float number, numeric text, bool, bytea blob");
        ok(r->fields[2].type == 20 && r->fields[7].type == 17 && r->fields[7].charsetnr == 63, "type is the OID; bytea is binary");
        is_str(r->fields[0].name, "s2", "column names are there");
    }
    dbp_op_free(op);
    {
        /* booleans and empty strings as parameters, typed by the server */
        dbp_value w[3];
        w[0] = dbp_v_bool(0); w[1] = dbp_v_text(""); w[2] = dbp_v_uint(18446744073709551615ULL);
        op = dbp_pool_query(p, "SELECT $1::bool AS b, $2::text AS e, $3::numeric AS u", w, 3, NULL);
        dbp_op_wait(op, 5000);
        r = dbp_op_result(op);
        ok(r && strcmp(dbp_result_cell(r, 0, 0)->data, "f") == 0 && dbp_result_cell(r, 0, 1)->data &&
           dbp_result_cell(r, 0, 1)->len == 0 && strcmp(dbp_result_cell(r, 0, 2)->data, "18446744073709551615") == 0,
           "false, an empty string (not NULL) and 2^64-1 as parameters");
        dbp_op_free(op);
    }
    run(p, "DROP TABLE t_values");
    close_pool(p);
}

static void test_injection(dbp_hub *h)
{
    static const char *const corpus[] = {
        "'; DROP TABLE t_inj; --", "\" OR \"1\"=\"1", "' OR '1'='1", "\\'; SELECT 1; --", "1; DELETE FROM t_inj",
        "?", "'?'", "-- ?", "/* ? */", "\\", "\\\\'", "%_", "\x1a", "' UNION SELECT passwd FROM pg_shadow --",
        "$1", "$$; DROP TABLE t_inj; $$", "E'\\x27'", "\xbf\x27 OR 1=1 --", "'\n' OR 1=1", "$tag$ x $tag$",
    };
    dbp_pool *p = open_pool(h, URL, "max=4");
    size_t i, same = 0, n = sizeof corpus / sizeof corpus[0];
    dbp_op *op;
    run(p, "DROP TABLE IF EXISTS t_inj");
    run(p, "CREATE TABLE t_inj (id int PRIMARY KEY, s bytea)");
    for (i = 0; i < n; i++) {
        dbp_value v[2];
        v[0] = dbp_v_int((long long)i);
        /* bytea: bytes that are not valid UTF-8 (0xbf 0x27) are stored as sent */
        v[1] = dbp_v_blob(corpus[i], strlen(corpus[i]));
        op = dbp_pool_query(p, "INSERT INTO t_inj VALUES ($1, $2)", v, 2, NULL);
        if (dbp_op_wait(op, 5000) != DBP_OK) diag("insert %lu: %s", (unsigned long)i, dbp_op_error(op)->message);
        dbp_op_free(op);
    }
    op = q(p, "SELECT id, s FROM t_inj ORDER BY id");
    if (dbp_op_wait(op, 5000) == DBP_OK) {
        const dbp_result *r = dbp_op_result(op);
        for (i = 0; i < r->nrows; i++) {
            size_t id = (size_t)atoi(dbp_result_cell(r, i, 0)->data);
            const dbp_cell *c = dbp_result_cell(r, i, 1);
            if (id < n && c->len == strlen(corpus[id]) && memcmp(c->data, corpus[id], c->len) == 0) same++;
        }
    }
    dbp_op_free(op);
    is_int(same, n, "%lu injection attempts through parameters are stored verbatim", (unsigned long)n);
    {
        /* the same as text, where valid UTF-8 */
        dbp_value v[1];
        v[0] = dbp_v_text("'; DROP TABLE t_inj; --");
        op = dbp_pool_query(p, "SELECT $1::text = '''; DROP TABLE t_inj; --' AS same, count(*) FROM t_inj", v, 1, NULL);
        ok(dbp_op_wait(op, 5000) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "t") == 0 &&
           atoi(dbp_result_cell(dbp_op_result(op), 0, 1)->data) == (int)n, "a text parameter is a value, never SQL");
        dbp_op_free(op);
    }
    run(p, "DROP TABLE t_inj");
    close_pool(p);
}

static void test_param_checks(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1");
    dbp_value v[2];
    dbp_op *op;
    dbp_stats st;
    v[0] = dbp_v_int(1); v[1] = dbp_v_int(2);
    op = dbp_pool_query(p, "SELECT $1, $2", v, 1, NULL);
    ok(dbp_op_rc(op) == DBP_EPARAM && dbp_op_error(op)->sent == 0 && dbp_rc_kind(DBP_EPARAM) == DBP_KIND_USAGE,
       "$n count mismatch rejected at once, kind usage, not sent: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    op = dbp_pool_query(p, "SELECT 1", v, 2, NULL);
    ok(dbp_op_rc(op) == DBP_EPARAM, "values for a statement without $n rejected: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    v[0] = dbp_v_textn("a\0b", 3);
    op = dbp_pool_query(p, "SELECT $1", v, 1, NULL);
    ok(dbp_op_rc(op) == DBP_EPARAM && strstr(dbp_op_error(op)->message, "NUL"), "text with a NUL byte rejected: %s",
       dbp_op_error(op)->message);
    dbp_op_free(op);
    dbp_pool_stats(p, &st);
    is_int((int)st.created, 0, "nothing was sent: no connection was even opened");
    v[0] = dbp_v_int(7);
    op = dbp_pool_query(p, "SELECT '{\"a\":1}'::jsonb ? 'a' AS has, $1::int AS x", v, 1, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "t") == 0,
       "`?` is PostgreSQL's own (jsonb operator), not a placeholder");
    dbp_op_free(op);
    close_pool(p);
}

static void test_results_and_errors(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1");
    dbp_op *op;
    const dbp_result *r;
    run(p, "DROP TABLE IF EXISTS t_multi");
    run(p, "CREATE TABLE t_multi (a int PRIMARY KEY)");
    op = q(p, "SELECT 1 AS a; INSERT INTO t_multi VALUES (1),(2),(3); SELECT 2 AS b, 3 AS c");
    ok(dbp_op_wait(op, 5000) == DBP_OK, "a multi-statement simple query");
    r = dbp_op_result(op);
    ok(r && r->nrows == 1 && strcmp(r->fields[0].name, "a") == 0, "  first set: SELECT 1 AS a");
    ok(r && r->next && r->next->ncols == 0 && r->next->affected_rows == 3 && strcmp(r->next->info, "INSERT 0 3") == 0,
       "  second set: 3 rows inserted (affected_rows from the command tag)");
    ok(r && r->next && r->next->next && r->next->next->ncols == 2 && !r->next->next->next, "  third set: two columns, and no more");
    dbp_op_free(op);
    op = q(p, "UPDATE t_multi SET a = a + 10 WHERE a >= 2");
    ok(dbp_op_wait(op, 5000) == DBP_OK && dbp_op_result(op)->affected_rows == 2 && dbp_op_result(op)->insert_id == 0,
       "UPDATE: affected_rows 2, no insert_id");
    dbp_op_free(op);
    op = q(p, "SELECT 1; SELECT * FROM no_such_table; SELECT 3");
    ok(dbp_op_wait(op, 5000) == DBP_ESQL && strcmp(dbp_op_error(op)->sqlstate, "42P01") == 0 &&
       dbp_rc_kind(dbp_op_rc(op)) == DBP_KIND_SQL && dbp_op_error(op)->sent,
       "a failing later statement rejects the op, kind sql, SQLSTATE 42P01: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    op = q(p, "INSERT INTO t_multi VALUES (1)");
    dbp_op_wait(op, 5000);
    ok(dbp_op_rc(op) == DBP_ESQL && strcmp(dbp_op_error(op)->sqlstate, "23505") == 0 &&
       strstr(dbp_op_error_detail(op), "already exists"), "unique violation: 23505 with DETAIL '%s'", dbp_op_error_detail(op));
    dbp_op_free(op);
    op = q(p, "SELECT no_such_function(1)");
    dbp_op_wait(op, 5000);
    ok(dbp_op_rc(op) == DBP_ESQL && strcmp(dbp_op_error(op)->sqlstate, "42883") == 0 && *dbp_op_error_hint(op),
       "unknown function: 42883 with HINT '%s'", dbp_op_error_hint(op));
    dbp_op_free(op);
    ok(run(p, "SELECT 1") == DBP_OK, "the connection is fine after server errors");
    {
        dbp_stats st;
        dbp_pool_stats(p, &st);
        ok(st.created == 1, "  and was kept (created %llu)", st.created);
    }
    notices = 0;
    ok(run(p, "DO $$BEGIN RAISE NOTICE 'hello %', 42; END$$") == DBP_OK && notices == 1 &&
       strcmp(last_notice, "NOTICE: hello 42") == 0, "a notice goes to the hook: '%s'", last_notice);
    op = dbp_pool_ping(p, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_OK && strncmp(dbp_pool_server_version(p), "15", 2) == 0,
       "ping; the server version is %s", dbp_pool_server_version(p));
    dbp_op_free(op);
    op = q(p, "COPY t_multi FROM STDIN");
    ok(dbp_op_wait(op, 5000) == DBP_ESQL && strstr(dbp_op_error(op)->message, "load()"),
       "COPY FROM STDIN through query() is refused by ending the copy: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    op = q(p, "COPY t_multi TO STDOUT");
    ok(dbp_op_wait(op, 5000) != DBP_OK, "COPY TO STDOUT through query() is refused: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    ok(run(p, "SELECT 1") == DBP_OK, "the connection is fine after refused COPYs");
    run(p, "DROP TABLE t_multi");
    close_pool(p);
}

static void test_init(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&init=SET%20TIME%20ZONE%20%27Asia%2FTokyo%27&application_name=dbpool%20init");
    dbp_op *op = q(p, "SELECT current_setting('TimeZone'), current_setting('application_name')");
    ok(dbp_op_wait(op, 5000) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "Asia/Tokyo") == 0 &&
       strcmp(dbp_result_cell(dbp_op_result(op), 0, 1)->data, "dbpool init") == 0,
       "init statements ran before the first op; application_name set");
    dbp_op_free(op);
    close_pool(p);
    p = open_pool(h, URL, "max=1&init=SET%20nonsense%20TO%201&acquire_timeout=5");
    op = q(p, "SELECT 1");
    ok(dbp_op_wait(op, 8000) == DBP_ECONNECT && strstr(dbp_op_error(op)->message, "init statement 1 failed"),
       "a failing init statement fails the op at once: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    close_pool(p);
}

static void test_bad_credentials(dbp_hub *h)
{
    char url[512];
    dbp_pool *p;
    dbp_op *op;
    long long s, st, e;
    const char *at = strchr(URL, '@');
    snprintf(url, sizeof url, "postgres://dbpool:Wr0ngPassw0rd@%s", at + 1);
    p = open_pool(h, url, "acquire_timeout=10");
    op = q(p, "SELECT 1");
    ok(dbp_op_wait(op, 15000) == DBP_EAUTH && dbp_rc_kind(DBP_EAUTH) == DBP_KIND_AUTH,
       "a wrong password is an auth error: %s", dbp_op_error(op)->message);
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
    snprintf(url, sizeof url, "%s", URL);
    {
        char *slash = strrchr(url, '/');
        if (slash) snprintf(slash, sizeof url - (size_t)(slash - url), "/no_such_db");
    }
    p = open_pool(h, url, "acquire_timeout=10");
    op = q(p, "SELECT 1");
    ok(dbp_op_wait(op, 15000) == DBP_ECONNECT && strstr(dbp_op_error(op)->message, "does not exist") &&
       ms_between(op->t_submit, op->t_settle) < 3000, "an unknown database fails at once: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    close_pool(p);
}

/* The backend pids of a pool's connections, by running n overlapping ops. */
static int pids_of(dbp_pool *p, int n, long long *pids)
{
    dbp_op *ops[8];
    int i, got = 0;
    for (i = 0; i < n; i++) ops[i] = q(p, "SELECT pg_backend_pid(), pg_sleep(0.1)");
    for (i = 0; i < n; i++) {
        if (dbp_op_wait(ops[i], 5000) == DBP_OK) pids[got++] = atoll(dbp_result_cell(dbp_op_result(ops[i]), 0, 0)->data);
        dbp_op_free(ops[i]);
    }
    return got;
}

static void test_terminate_idle(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2&min=2&validate_after=0");
    dbp_pool *admin = open_pool(h, URL, "max=1");
    long long pids[2] = { 0, 0 };
    char sql[128];
    dbp_op *ops[4];
    int i, fulfilled = 0;
    dbp_stats st;
    warm(h, p, 2);
    i = pids_of(p, 2, pids);
    ok(i == 2 && pids[0] != pids[1], "two idle connections (pids %lld, %lld)", pids[0], pids[1]);
    for (i = 0; i < 2; i++) {
        snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%lld)", pids[i]);
        run(admin, sql);
    }
    spin(h, 300); /* (the backends exit asynchronously) */
    for (i = 0; i < 4; i++) ops[i] = q(p, "SELECT 1");
    for (i = 0; i < 4; i++) {
        if (dbp_op_wait(ops[i], 5000) == DBP_OK) fulfilled++;
        else diag("op %d: %s", i, dbp_op_error(ops[i])->message);
        dbp_op_free(ops[i]);
    }
    is_int(fulfilled, 4, "after pg_terminate_backend of both idle connections the next ops all succeed");
    dbp_pool_stats(p, &st);
    ok(st.created >= 3 && st.lost == 0, "  on new connections (created %llu), nothing lost", st.created);
    close_pool(admin);
    close_pool(p);
}

static void test_terminate_busy(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&application_name=busy_victim");
    dbp_pool *admin = open_pool(h, URL, "max=1");
    dbp_op *op = q(p, "SELECT pg_sleep(5)"), *next;
    long long killed;
    int guard = 0;
    do {
        spin(h, 50);
        killed = scalar(admin, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE application_name = 'busy_victim' AND query LIKE 'SELECT pg_sleep(5)%'");
    } while (killed == 0 && guard++ < 60);
    is_int((int)killed, 1, "the busy backend was terminated");
    ok(dbp_op_wait(op, 5000) == DBP_ELOST && dbp_op_error(op)->sent == 1 &&
       dbp_rc_kind(DBP_ELOST) == DBP_KIND_CONNECTION && strstr(dbp_op_error(op)->message, "may or may not"),
       "the busy op is rejected as lost after send: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    next = q(p, "SELECT 2");
    ok(dbp_op_wait(next, 5000) == DBP_OK, "the pool carries on with a new connection");
    dbp_op_free(next);
    close_pool(admin);
    close_pool(p);
}

static void test_query_timeout(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&query_timeout=0.5&application_name=qt_victim");
    dbp_pool *admin = open_pool(h, URL, "max=1");
    dbp_op *op = q(p, "SELECT pg_sleep(10)");
    long long s, st, e, still = -1;
    int rc = dbp_op_wait(op, 15000), guard = 0;
    dbp_op_times(op, &s, &st, &e);
    ok(rc == DBP_ETIMEOUT && dbp_op_error(op)->sent && strstr(dbp_op_error(op)->message, "pg_cancel_backend"),
       "pg_sleep(10) past query_timeout=0.5 is rejected: %s", dbp_op_error(op)->message);
    ok(ms_between(st, e) >= 450 && ms_between(st, e) < 1500, "  in about the timeout (%lld ms)", ms_between(st, e));
    dbp_op_free(op);
    do {
        if (guard) spin(h, 50);
        still = scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'qt_victim' "
                              "AND state = 'active' AND query LIKE 'SELECT pg_sleep(10)%'");
    } while (still != 0 && guard++ < 40);
    ok(still == 0, "pg_stat_activity shows the query gone from the server (after %d checks)", guard + 1);
    op = q(p, "SELECT 7");
    ok(dbp_op_wait(op, 5000) == DBP_OK, "the pool runs the next op");
    dbp_op_free(op);
    {
        dbp_stats stt;
        dbp_pool_stats(p, &stt);
        ok(stt.timeouts == 1 && stt.closed_error == 0, "  the cancelled connection was kept (timeouts %llu, closed by error %llu)",
           stt.timeouts, stt.closed_error);
    }
    close_pool(admin);
    close_pool(p);
}

static void test_tls(dbp_hub *h)
{
    char opts[600];
    dbp_pool *p;
    dbp_op *op;
    snprintf(opts, sizeof opts, "max=1&sslmode=verify-full&sslrootcert=%s", CA);
    p = open_pool(h, URL, opts);
    op = q(p, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    dbp_op_wait(op, 5000);
    ok(dbp_op_rc(op) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "t") == 0,
       "sslmode=verify-full with the test CA: TLS (%s)", dbp_op_rc(op) == DBP_OK ? dbp_result_cell(dbp_op_result(op), 0, 1)->data : dbp_op_error(op)->message);
    dbp_op_free(op);
    close_pool(p);
    snprintf(opts, sizeof opts, "max=1&sslmode=verify-full&sslrootcert=%s&acquire_timeout=10", OTHER_CA);
    p = open_pool(h, URL, opts);
    op = q(p, "SELECT 1");
    ok(dbp_op_wait(op, 15000) == DBP_ECONNECT && strstr(dbp_op_error(op)->message, "certificate") &&
       ms_between(op->t_submit, op->t_settle) < 3000, "a wrong CA is refused at once: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    close_pool(p);
    p = open_pool(h, URL, "max=1&sslmode=disable");
    op = q(p, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    ok(dbp_op_wait(op, 5000) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "f") == 0,
       "sslmode=disable: no TLS");
    dbp_op_free(op);
    close_pool(p);
}

/* A unix socket (socket=DIR) and a host name (looked up on the helper
   thread, handed to libpq as hostaddr, the name kept for verify-full). */
static void test_socket_and_name(dbp_hub *h)
{
    char url[700];
    const char *dir = need_env("DBPOOL_TEST_PG_SOCKET_DIR");
    dbp_pool *p;
    dbp_op *op;
    /* (the port names the socket file: .s.PGSQL.<port>) */
    snprintf(url, sizeof url, "postgres://dbpool@:%d/dbpool_test?socket=%s", PG_PORT, dir);
    p = open_pool(h, url, NULL);
    op = q(p, "SELECT inet_server_addr() IS NULL AS unix_socket");
    ok(dbp_op_wait(op, 5000) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "t") == 0,
       "socket=DIR connects over the unix socket: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    close_pool(p);
    {
        /* the test URL with "localhost" for its host */
        const char *at = strchr(URL, '@'), *colon = at ? strchr(at, ':') : NULL;
        char opts[600];
        snprintf(url, sizeof url, "%.*slocalhost%s", (int)(at - URL + 1), URL, colon);
        snprintf(opts, sizeof opts, "sslmode=verify-full&sslrootcert=%s", CA);
        p = open_pool(h, url, opts);
        op = q(p, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
        dbp_op_wait(op, 10000);
        ok(dbp_op_rc(op) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "t") == 0,
           "a host name (localhost) is looked up off the hub and verify-full checks the certificate against it: %s",
           dbp_op_error(op)->message);
        dbp_op_free(op);
        close_pool(p);
    }
}

static void test_pinned(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    dbp_op *op;
    dbp_conn *c;
    run(p, "DROP TABLE IF EXISTS t_tx");
    run(p, "CREATE TABLE t_tx (a int PRIMARY KEY)");
    c = acquire_conn(p);
    ok(c != NULL, "acquire a pinned connection");
    if (!c) return;
    op = dbp_conn_query(c, "BEGIN", NULL, 0, NULL); dbp_op_wait(op, 5000); dbp_op_free(op);
    op = dbp_conn_query(c, "INSERT INTO t_tx VALUES (1)", NULL, 0, NULL); dbp_op_wait(op, 5000); dbp_op_free(op);
    ok(dbp_conn_session(c) & DBP_SESSION_TRANSACTION, "the session says a transaction is open");
    is_int((int)scalar(p, "SELECT count(*) FROM t_tx"), 0, "another connection does not see the open transaction");
    dbp_conn_release(c); /* released inside the transaction: rolled back */
    is_int((int)scalar(p, "SELECT count(*) FROM t_tx"), 0, "releasing inside a transaction rolls it back");
    c = acquire_conn(p);
    if (!c) return;
    op = dbp_conn_query(c, "BEGIN", NULL, 0, NULL); dbp_op_free(op);
    op = dbp_conn_query(c, "INSERT INTO t_tx VALUES (2)", NULL, 0, NULL); dbp_op_free(op);
    op = dbp_conn_query(c, "INSERT INTO t_tx VALUES (2)", NULL, 0, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_ESQL, "a failing statement inside the transaction (state E)");
    dbp_op_free(op);
    op = dbp_conn_query(c, "SELECT 1", NULL, 0, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_ESQL && strcmp(dbp_op_error(op)->sqlstate, "25P02") == 0,
       "  the aborted transaction refuses more: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    dbp_conn_release(c);
    c = acquire_conn(p);
    if (c) {
        op = dbp_conn_query(c, "SELECT 1", NULL, 0, NULL);
        ok(dbp_op_wait(op, 5000) == DBP_OK && !(dbp_conn_session(c) & DBP_SESSION_TRANSACTION),
           "a connection released in state E was rolled back before it came back");
        dbp_op_free(op);
        op = dbp_conn_query(c, "BEGIN", NULL, 0, NULL); dbp_op_free(op);
        op = dbp_conn_query(c, "INSERT INTO t_tx VALUES (3)", NULL, 0, NULL); dbp_op_free(op);
        op = dbp_conn_query(c, "COMMIT", NULL, 0, NULL);
        ok(dbp_op_wait(op, 5000) == DBP_OK, "ops on a pinned connection run in order (BEGIN, INSERT, COMMIT)");
        dbp_op_free(op);
        dbp_conn_release(c);
    }
    is_int((int)scalar(p, "SELECT count(*) FROM t_tx"), 1, "only the committed row is there");
    run(p, "DROP TABLE t_tx");
    close_pool(p);
}

static void test_stream(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1");
    dbp_op *op = dbp_pool_query_stream(p, "SELECT g, repeat('x', 100), g::int8 * 2 FROM generate_series(1, 5000) g", NULL, 0, NULL);
    long long sum = 0, rows = 0;
    int rc;
    size_t nf = 0;
    for (;;) {
        const dbp_cell *row;
        size_t nc;
        rc = dbp_op_fetch(op, &row, &nc);
        if (rc == DBP_PENDING) { if (dbp_op_fetch_wait(op, 5000) != DBP_OK) break; continue; }
        if (rc != DBP_ROW) break;
        sum += atoll(row[0].data);
        rows++;
    }
    ok(rc == 0 && rows == 5000 && sum == 5000LL * 5001 / 2, "a streamed result (single-row mode) delivers every row once (%lld rows)", rows);
    ok(dbp_op_state(op) == DBP_OP_FULFILLED && dbp_op_fields(op, &nf) && nf == 3, "  fulfilled at the end, with its 3 columns");
    dbp_op_free(op);
    ok(run(p, "SELECT 1") == DBP_OK, "the connection is reused after the stream");
    op = dbp_pool_query_stream(p, "SELECT g FROM generate_series(1, 200000) g", NULL, 0, NULL);
    dbp_op_fetch_wait(op, 5000);
    dbp_op_free(op); /* abandoned after the first batch */
    ok(run(p, "SELECT 2") == DBP_OK, "an abandoned stream is drained and the connection reused");
    op = dbp_pool_query_stream(p, "SELECT 1/0", NULL, 0, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_ESQL && strcmp(dbp_op_error(op)->sqlstate, "22012") == 0,
       "a stream that fails is rejected with the server's error");
    dbp_op_free(op);
    close_pool(p);
}

static int n_subscribed, n_resubscribed;
static char got[16][64];
static int ngot;
static void on_msg(dbp_sub *sub, const dbp_message *m, void *ud)
{
    (void)sub; (void)ud;
    if (m->type == DBP_MSG_SUBSCRIBED) n_subscribed++;
    else if (m->type == DBP_MSG_RESUBSCRIBED) { n_resubscribed++; keep(m->payload); }
    else if (m->type == DBP_MSG_MESSAGE && ngot < 16)
        snprintf(got[ngot++], sizeof got[0], "%.*s=%.*s", (int)m->channel_len, m->channel, (int)m->payload_len, m->payload);
}

static int wait_for(dbp_hub *h, int *counter, int want, int ms)
{
    long long end = dbp__now_us() / 1000 + ms;
    while (*counter < want && dbp__now_us() / 1000 < end) dbp_hub_step(h, 20);
    return *counter >= want;
}

static void test_listen(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&application_name=listener&backoff_max=0.2");
    dbp_pool *admin = open_pool(h, URL, "max=1");
    const char *chans[] = { "jobs", "Mixed \"Case\"" };
    const char *more[] = { "later" };
    const char *pats[] = { "j*" };
    dbp_error e;
    dbp_sub *sub;
    n_subscribed = n_resubscribed = ngot = 0;
    ok(dbp_pool_subscribe(p, 0, NULL, 1, pats, on_msg, NULL, &e) == NULL && e.rc == DBP_EUSAGE,
       "patterns are refused on PostgreSQL: %s", e.message);
    sub = dbp_pool_subscribe(p, 2, chans, 0, NULL, on_msg, NULL, &e);
    ok(sub != NULL, "subscribe (LISTEN) on a PostgreSQL pool");
    if (!sub) { diag("%s", e.message); return; }
    wait_for(h, &n_subscribed, 2, 5000);
    ok(n_subscribed == 2, "both channels confirmed (%d)", n_subscribed);
    run(admin, "SELECT pg_notify('jobs', 'one')");
    run(admin, "NOTIFY \"Mixed \"\"Case\"\"\", 'two'");
    ok(wait_for(h, &ngot, 2, 5000) && strcmp(got[0], "jobs=one") == 0 && strcmp(got[1], "Mixed \"Case\"=two") == 0,
       "notifications arrive with channel and payload (%s, %s)", got[0], got[1]);
    is_int((int)scalar(admin, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'listener'"), 1,
           "the listening backend is terminated");
    wait_for(h, &n_resubscribed, 1, 10000);
    ok(n_resubscribed == 1 && dbp_sub_reconnects(sub) == 1,
       "the subscription reconnects and says so (reconnects %d)", dbp_sub_reconnects(sub));
    ok(wait_for(h, &n_subscribed, 4, 5000), "  and listens again to both channels");
    run(admin, "SELECT pg_notify('jobs', 'three')");
    ok(wait_for(h, &ngot, 3, 5000) && strcmp(got[2], "jobs=three") == 0, "notifications after the reconnect arrive (%s)", got[2]);
    ok(dbp_sub_add(sub, 0, 1, more) == DBP_OK && wait_for(h, &n_subscribed, 5, 5000), "a channel added later is listened to");
    run(admin, "SELECT pg_notify('later', 'four')");
    ok(wait_for(h, &ngot, 4, 5000) && strcmp(got[3], "later=four") == 0, "  and its notifications arrive (%s)", got[3]);
    dbp_sub_free(sub);
    spin(h, 100);
    is_int((int)scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'listener'"), 0,
           "closing the subscription closes its connection");
    close_pool(admin);
    close_pool(p);
}

static void test_prepared(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&prepare=true&prepare_cache=2&application_name=prep");
    dbp_pool *admin = open_pool(h, URL, "max=1");
    static const char *const sqls[] = { "SELECT $1::int + 1 AS v", "SELECT $1::int + 2 AS v", "SELECT $1::int + 3 AS v" };
    int i, good = 0;
    dbp_op *op;
    for (i = 0; i < 30; i++) {
        dbp_value v = dbp_v_int(i * 10);
        op = dbp_pool_query(p, sqls[i % 3], &v, 1, NULL);
        if (dbp_op_wait(op, 5000) == DBP_OK && atoi(dbp_result_cell(dbp_op_result(op), 0, 0)->data) == i * 10 + i % 3 + 1) good++;
        else diag("op %d: %s", i, dbp_op_error(op)->message);
        dbp_op_free(op);
    }
    is_int(good, 30, "prepare=true: three statements in turn through a cache of two, every result right");
    is_int((int)scalar(p, "SELECT count(*) FROM pg_prepared_statements"), 2,
           "  the connection holds at most prepare_cache statements (the least used is deallocated)");
    {
        dbp_value v = dbp_v_int(1);
        op = dbp_pool_query(p, "SELEC $1", &v, 1, NULL);
        ok(dbp_op_wait(op, 5000) == DBP_ESQL && strcmp(dbp_op_error(op)->sqlstate, "42601") == 0 && !dbp_op_error(op)->sent,
           "a statement that cannot be prepared is rejected, not sent to run: %s", dbp_op_error(op)->message);
        dbp_op_free(op);
    }
    {
        dbp_op_options o;
        dbp_value v = dbp_v_int(5);
        memset(&o, 0, sizeof o);
        o.prepare = -1;
        op = dbp_pool_query(p, "SELECT $1::int * 7 AS v", &v, 1, &o);
        ok(dbp_op_wait(op, 5000) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "35") == 0,
           "prepare = -1 on one op: not prepared");
        dbp_op_free(op);
        is_int((int)scalar(p, "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%* 7%'"), 0, "  and not cached");
    }
    run(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'prep'");
    spin(h, 300);
    good = 0;
    for (i = 0; i < 6; i++) {
        dbp_value v = dbp_v_int(i);
        op = dbp_pool_query(p, sqls[i % 3], &v, 1, NULL);
        if (dbp_op_wait(op, 5000) == DBP_OK && atoi(dbp_result_cell(dbp_op_result(op), 0, 0)->data) == i + i % 3 + 1) good++;
        else diag("op %d: %s", i, dbp_op_error(op)->message);
        dbp_op_free(op);
    }
    is_int(good, 6, "after the connection was terminated, statements are prepared again on the new one");
    {
        dbp_value v = dbp_v_int(3);
        dbp_op_options o;
        memset(&o, 0, sizeof o);
        o.prepare = 1;
        op = dbp_pool_query_stream(p, "SELECT g FROM generate_series(1, $1::int) g", &v, 1, &o);
        i = 0;
        while (dbp_op_fetch_wait(op, 5000) == DBP_OK) {
            const dbp_cell *row;
            int rc = dbp_op_fetch(op, &row, NULL);
            if (rc == DBP_ROW) i++;
            else if (rc != DBP_PENDING) break;
        }
        ok(dbp_op_rc(op) == DBP_OK && i == 3, "a prepared statement streams too (%d rows)", i);
        dbp_op_free(op);
    }
    close_pool(admin);
    close_pool(p);
}

/* ---- faults a network makes, through tests/faultproxy (as test_faults.c does for MySQL and Redis) ---- */

static long long elapsed_ms(const dbp_op *op)
{
    long long s0, st, e;
    dbp_op_times(op, &s0, &st, &e);
    return e ? (e - s0) / 1000 : -1;
}

static dbp_pool *through_proxy(dbp_hub *h, proxy *px, const char *opts)
{
    char url[1024];
    if (proxy_start(px, PG_PORT) != 0) { diag("proxy did not start"); return NULL; }
    /* plain TCP: the proxy cuts and delays bytes, TLS would only hide them */
    via(url, sizeof url, URL, PG_PORT, px->listen_port, opts);
    return open_pool(h, url, NULL);
}

static void test_faults(dbp_hub *h)
{
    proxy px;
    dbp_pool *p;
    dbp_op *op;
    int fds = count_fds(), n, i;
    dbp_op_options idem = { 10000, 1, 0, 0, 0 };

    /* an idle connection blackholed: the validation before reuse fails, so the op is never sent
       and is rejected at its acquire deadline; a new connection cannot log in meanwhile */
    p = through_proxy(h, &px, "max=2&connect_timeout=0.5&acquire_timeout=3&validate_after=0.2&backoff_max=0.3&sslmode=disable");
    if (!p) return;
    ok(run(p, "SELECT 1") == DBP_OK, "pg: a query through the proxy");
    proxy_cmd(&px, "blackhole");
    spin(h, 300); /* idle past validate_after */
    op = q(p, "SELECT 2");
    dbp_op_wait(op, 10000);
    ok(dbp_op_rc(op) == DBP_EACQUIRE_TIMEOUT && !dbp_op_error(op)->sent && elapsed_ms(op) >= 2900 && elapsed_ms(op) < 4500,
       "pg blackhole of an idle connection: the validation fails, the op never sent, rejected at its acquire deadline (%lld ms): %s",
       elapsed_ms(op), dbp_op_error(op)->message);
    dbp_op_free(op);
    proxy_cmd(&px, "pass");
    op = q(p, "SELECT 3");
    ok(dbp_op_wait(op, 8000) == DBP_OK, "  the pool recovers when the network does");
    dbp_op_free(op);
    close_pool(p);
    proxy_stop(&px);

    /* a busy connection blackholed: query_timeout rejects it; the cancel cannot get through either.
       (connect_timeout=5: a SCRAM login under Valgrind takes a good part of a second) */
    p = through_proxy(h, &px, "max=1&connect_timeout=5&query_timeout=1&backoff_max=0.3&sslmode=disable");
    if (!p) return;
    ok(run(p, "SELECT 1") == DBP_OK, "pg: a query through the proxy");
    op = q(p, "SELECT pg_sleep(0.3), 1");
    spin(h, 50);
    proxy_cmd(&px, "blackhole");
    dbp_op_wait(op, 10000);
    ok(dbp_op_rc(op) == DBP_ETIMEOUT && dbp_op_error(op)->sent && elapsed_ms(op) < 1800,
       "pg blackhole of a busy connection: rejected at query_timeout, sent, in %lld ms: %s", elapsed_ms(op), dbp_op_error(op)->message);
    dbp_op_free(op);
    spin(h, 4500); /* the cancel cannot reach the server: the grace period (6 s here) closes the connection */
    proxy_cmd(&px, "pass");
    ok(run(p, "SELECT 2") == DBP_OK, "  the pool recovers when the network does");
    close_pool(p);
    proxy_stop(&px);

    /* a reset in the middle of a large result */
    p = through_proxy(h, &px, "max=2&sslmode=disable");
    if (!p) return;
    run(p, "SELECT 1");
    proxy_cmd(&px, "reset-after 300000 down");
    op = dbp_pool_query(p, "SELECT repeat('x', 1000000) AS big", NULL, 0, &idem);
    dbp_op_wait(op, 12000);
    {
        dbp_stats st;
        dbp_pool_stats(p, &st);
        ok(dbp_op_rc(op) == DBP_ELOST && dbp_op_error(op)->sent && st.retried >= 1,
           "pg reset in the middle of a 1 MB result: an idempotent op is retried once, cut again, reported lost (retried %llu): %s",
           st.retried, dbp_op_error(op)->message);
    }
    dbp_op_free(op);
    proxy_cmd(&px, "reset-after off");
    op = q(p, "SELECT repeat('z', 1000000) AS big");
    ok(dbp_op_wait(op, 12000) == DBP_OK && dbp_op_result(op)->cells[0].len == 1000000, "  the pool recovers: the 1 MB result arrives whole");
    dbp_op_free(op);
    close_pool(p);
    proxy_stop(&px);

    /* latency beyond query_timeout */
    p = through_proxy(h, &px, "max=1&query_timeout=0.5&connect_timeout=5&sslmode=disable");
    if (!p) return;
    run(p, "SELECT 1");
    proxy_cmd(&px, "latency 1500");
    op = q(p, "SELECT 5");
    dbp_op_wait(op, 10000);
    ok(dbp_op_rc(op) == DBP_ETIMEOUT && dbp_op_error(op)->sent && elapsed_ms(op) >= 450 && elapsed_ms(op) < 1500,
       "pg latency spike beyond query_timeout: rejected with kind timeout in %lld ms", elapsed_ms(op));
    dbp_op_free(op);
    proxy_cmd(&px, "latency 0");
    spin(h, 3500); /* (the delayed bytes and the cancel drain) */
    op = q(p, "SELECT 6");
    ok(dbp_op_wait(op, 8000) == DBP_OK, "  the pool recovers once the latency is gone: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    close_pool(p);
    proxy_stop(&px);

    n = count_fds();
    for (i = 0; i < 100 && n > fds; i++) { spin(h, 20); n = count_fds(); }
    ok(n <= fds, "pg faults: no file descriptor leaked (%d -> %d)", fds, n);
}

/* Resident memory of this process in kB (VmRSS). */
static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
    fclose(f);
    return kb;
}

static void test_copy(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    dbp_op *op;
    long i, rows = 200000;
    long rss0 = 0, rss_max = 0;
    int rc = DBP_OK, pending = 0;
    run(p, "DROP TABLE IF EXISTS t_copy");
    run(p, "CREATE TABLE t_copy (id int8 PRIMARY KEY, name text, score float8, ok bool, blob bytea, note text)");
    op = dbp_pool_copy_in(p, "COPY t_copy (id, name, score, ok, blob, note) FROM STDIN", NULL);
    for (i = 1; i <= rows && (rc == DBP_OK || rc == DBP_PENDING); i++) {
        dbp_value v[6];
        char name[64];
        snprintf(name, sizeof name, "row\t%ld\n\\ \xc3\xa9", i);
        v[0] = dbp_v_int(i);
        v[1] = dbp_v_text(name);
        v[2] = dbp_v_double((double)i / 4);
        v[3] = dbp_v_bool(i % 2);
        v[4] = dbp_v_blob("\0\x01\xff", 3);
        v[5] = i % 10 ? dbp_v_text("x") : dbp_v_null();
        rc = dbp_op_copy_row(op, v, 6);
        if (rc == DBP_PENDING) { pending++; rc = dbp_op_copy_wait(op, 10000); }
        if (i == 20000) rss0 = rss_kb();
        if (i > 20000 && i % 1000 == 0) { long r = rss_kb(); if (r > rss_max) rss_max = r; }
    }
    ok(rc == DBP_OK, "200000 rows put into a COPY FROM STDIN");
    dbp_op_copy_end(op, NULL);
    dbp_op_wait(op, 60000);
    ok(dbp_op_rc(op) == DBP_OK && dbp_op_result(op) && dbp_op_result(op)->affected_rows == (unsigned long long)rows,
       "  the COPY stored them all (affected_rows %llu): %s", dbp_op_result(op) ? dbp_op_result(op)->affected_rows : 0ULL,
       dbp_op_error(op)->message);
    ok(pending > 0, "  the buffer filled and drained as the socket took it (%d waits)", pending);
    {
        /* AddressSanitizer keeps freed memory in quarantine: RSS says nothing there */
        const char *pre = getenv("LD_PRELOAD");
        int checked = 1;
#if defined(__SANITIZE_ADDRESS__)
        checked = 0;
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
        checked = 0;
#  endif
#endif
        if (pre && strstr(pre, "asan")) checked = 0;
        if (checked)
            ok(rss_max - rss0 < 8192, "  memory stayed flat while loading (RSS %ld kB after 20000 rows, at most %ld kB after)", rss0, rss_max);
        else
            printf("ok %d # skip under AddressSanitizer (quarantine): RSS %ld kB after 20000 rows, at most %ld kB after\n",
                   ++tap_n, rss0, rss_max);
    }
    is_int((int)dbp_op_copy_rows(op), (int)rows, "  rows counted");
    dbp_op_free(op);
    is_int((int)scalar(p, "SELECT count(*) FROM t_copy WHERE name = 'row' || chr(9) || id || chr(10) || '\\ ' || U&'\\00e9' "
                          "AND score = id / 4.0 AND ok = (id % 2 = 1) AND blob = '\\x0001ff'::bytea "
                          "AND (note IS NULL) = (id % 10 = 0)"), (int)rows,
           "every value arrived as put (tabs, newlines, backslashes, UTF-8, bytea with NUL, NULL)");
    op = dbp_pool_copy_in(p, "COPY t_copy (id, name) FROM STDIN", NULL);
    {
        dbp_value v[2];
        v[0] = dbp_v_int(rows + 1); v[1] = dbp_v_text("aborted");
        dbp_op_copy_row(op, v, 2);
    }
    dbp_op_copy_end(op, "changed my mind");
    ok(dbp_op_wait(op, 5000) == DBP_ESQL && strstr(dbp_op_error(op)->message, "changed my mind"),
       "a COPY ended with an error stores nothing: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    op = dbp_pool_copy_in(p, "COPY t_copy (id, name) FROM STDIN", NULL);
    {
        static const char data[] = "999999999\tfine\nnot-a-number\tbad\n";
        dbp_op_copy_data(op, data, sizeof data - 1);
    }
    dbp_op_copy_end(op, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_ESQL && strcmp(dbp_op_error(op)->sqlstate, "22P02") == 0,
       "a bad row fails the whole COPY with the server's error: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    is_int((int)scalar(p, "SELECT count(*) FROM t_copy"), (int)rows, "  nothing of the failed COPYs was stored");
    ok(run(p, "SELECT 1") == DBP_OK, "the connections are fine after failed COPYs");
    run(p, "DROP TABLE t_copy");
    close_pool(p);
}

/* The server restarted (fast shutdown) under a stream of inserts: every
   insert that was acknowledged is there afterwards; the others were rejected
   saying whether they may have run; the pool recovers by itself. */
#define RESTART_OPS 20000
static void test_restart_under_load(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=4&backoff_max=0.2&acquire_timeout=20");
    static dbp_op *ops[RESTART_OPS];
    static char seen[RESTART_OPS];
    int next = 0, pending = 0, fulfilled = 0, lost = 0, other = 0, missing = 0, after_restart = 0, i;
    long long t0, restarted_at = 0;
    char started_before[64] = "", started_after[64] = "";
    run(p, "DROP TABLE IF EXISTS t_restart");
    run(p, "CREATE TABLE t_restart (id int PRIMARY KEY)");
    is_int((int)scalar(p, "SELECT count(*) FROM t_restart"), 0, "restart test: empty table");
    {
        dbp_op *op = q(p, "SELECT pg_postmaster_start_time()::text");
        if (dbp_op_wait(op, 5000) == DBP_OK) snprintf(started_before, sizeof started_before, "%s", dbp_result_cell(dbp_op_result(op), 0, 0)->data);
        dbp_op_free(op);
    }
    t0 = dbp__now_us();
    while (next < RESTART_OPS && ms_between(t0, dbp__now_us()) < 6000) {
        /* paced (2 per ms), so that inserts run before, during and after the restart */
        while (pending < 40 && next < RESTART_OPS && next < ms_between(t0, dbp__now_us()) * 2) {
            dbp_value v = dbp_v_int(next);
            ops[next++] = dbp_pool_query(p, "INSERT INTO t_restart VALUES ($1)", &v, 1, NULL);
            pending++;
        }
        dbp_hub_step(h, 5);
        pending = 0;
        for (i = 0; i < next; i++) if (dbp_op_state(ops[i]) < DBP_OP_FULFILLED) pending++;
        if (!restarted_at && ms_between(t0, dbp__now_us()) > 1000) {
            restarted_at = dbp__now_us();
            if (system("(scripts/postgres.sh restart >/dev/null 2>&1 &)") != 0) diag("restart failed to start");
        }
        if (pending == 0 && next >= 2000 && restarted_at && ms_between(restarted_at, dbp__now_us()) > 3000) break;
    }
    dbp_hub_run(h, 20000);
    for (i = 0; i < next; i++) {
        long long s, st, e;
        dbp_op_times(ops[i], &s, &st, &e);
        if (dbp_op_rc(ops[i]) == DBP_OK) { fulfilled++; if (s > restarted_at + 1000000) after_restart++; }
        else if (dbp_op_rc(ops[i]) == DBP_ELOST) lost++;
        else other++;
    }
    {
        dbp_op *op = q(p, "SELECT id FROM t_restart");
        if (dbp_op_wait(op, 20000) == DBP_OK) {
            const dbp_result *r = dbp_op_result(op);
            size_t k;
            memset(seen, 0, sizeof seen);
            for (k = 0; k < r->nrows; k++) {
                int id = atoi(dbp_result_cell(r, k, 0)->data);
                if (id >= 0 && id < RESTART_OPS) seen[id] = 1;
            }
            for (i = 0; i < next; i++) if (dbp_op_rc(ops[i]) == DBP_OK && !seen[i]) missing++;
        } else {
            missing = -1;
            diag("select after restart: %s", dbp_op_error(op)->message);
        }
        dbp_op_free(op);
    }
    {
        dbp_op *op = q(p, "SELECT pg_postmaster_start_time()::text");
        if (dbp_op_wait(op, 5000) == DBP_OK) snprintf(started_after, sizeof started_after, "%s", dbp_result_cell(dbp_op_result(op), 0, 0)->data);
        dbp_op_free(op);
    }
    ok(*started_before && *started_after && strcmp(started_before, started_after) != 0,
       "the server was restarted during the run (started %s, then %s)", started_before, started_after);
    diag("restart under load: %d inserts, %d acknowledged (%d submitted after the restart), %d lost after send, %d other",
         next, fulfilled, after_restart, lost, other);
    is_int(missing, 0, "server restarted under insert load: no acknowledged insert is missing");
    ok(after_restart > 0, "  the pool recovered by itself (%d inserts acknowledged after the restart)", after_restart);
    for (i = 0; i < next; i++) {
        if (dbp_op_rc(ops[i]) != DBP_OK && dbp_op_rc(ops[i]) != DBP_ELOST && dbp_rc_kind(dbp_op_rc(ops[i])) != DBP_KIND_CONNECTION)
            diag("  op %d: %s", i, dbp_op_error(ops[i])->message);
        dbp_op_free(ops[i]);
    }
    run(p, "DROP TABLE t_restart");
    close_pool(p);
}

int main(void)
{
    dbp_hub *h;
    int fds0, fds1;
    dbp_hub_counts hc;
    signal(SIGPIPE, SIG_DFL); /* a dead socket must never raise SIGPIPE */
    URL = need_env("DBPOOL_TEST_PG_URL");
    PASSWORD = need_env("DBPOOL_TEST_PG_PASSWORD");
    CA = need_env("DBPOOL_TEST_PG_CA");
    OTHER_CA = need_env("DBPOOL_TEST_PG_OTHER_CA");
    PG_PORT = atoi(need_env("DBPOOL_TEST_PG_PORT"));
    fds0 = count_fds();
    h = dbp_hub_open(NULL);
    test_seed_close(h);
    test_concurrency(h);
    test_values(h);
    test_injection(h);
    test_param_checks(h);
    test_results_and_errors(h);
    test_init(h);
    test_bad_credentials(h);
    test_terminate_idle(h);
    test_terminate_busy(h);
    test_query_timeout(h);
    test_tls(h);
    test_socket_and_name(h);
    test_pinned(h);
    test_stream(h);
    test_copy(h);
    test_listen(h);
    test_prepared(h);
    test_faults(h);
    test_restart_under_load(h);
    spin(h, 200);
    dbp_hub_stats(h, &hc);
    ok(hc.ops == 0 && hc.conns == 0 && hc.pools == 0, "nothing left alive in the hub (ops %d, conns %d, pools %d)",
       hc.ops, hc.conns, hc.pools);
    dbp_hub_free(h, 5000);
    fds1 = count_fds();
    is_int(fds1, fds0, "no file descriptor leaked (%d before, %d after)", fds0, fds1);
    ok(!strstr(all_messages, PASSWORD) && !strstr(all_messages, "Wr0ngPassw0rd"),
       "no error or event message contains a password (%lu bytes checked)", (unsigned long)strlen(all_messages));
    return done_testing();
}
