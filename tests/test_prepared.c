/* Prepared statements (`prepare` pool option, dbp_op_options.prepare)
   against a real MariaDB: every column type gives the same result as the
   text protocol, parameters of every kind, DML counts, errors, statements
   that cannot be prepared, the per-connection LRU cache, a reconnect, and
   the server's max_prepared_stmt_count. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"
#include "helpers.h"
#include <signal.h>

static const char *URL, *ROOT_URL;

static dbp_pool *open_pool(dbp_hub *h, const char *url, const char *opts)
{
    return open_pool_with(h, url, opts, NULL, NULL);
}

static const dbp_op_options PS = { 0, 0, 1, 0, 0 }, TEXT = { 0, 0, -1, 0, 0 };

/* Runs sql (text or prepared) and waits; the op is the caller's. */
static dbp_op *qv(dbp_pool *p, const char *sql, const dbp_value *v, size_t n, const dbp_op_options *o)
{
    dbp_op *op = dbp_pool_query(p, sql, v, n, o);
    if (dbp_op_wait(op, 20000) != DBP_OK) diag("'%s' failed: %s", sql, dbp_op_error(op)->message);
    return op;
}

static int run(dbp_pool *p, const char *sql)
{
    dbp_op *op = qv(p, sql, NULL, 0, &TEXT);
    int rc = dbp_op_rc(op);
    dbp_op_free(op);
    return rc;
}

/* A session status counter (Com_stmt_prepare, ...) read as text on p's connection. */
static long long status(dbp_pool *p, const char *name)
{
    char sql[128];
    long long v = -1;
    dbp_op *op;
    snprintf(sql, sizeof sql, "SHOW SESSION STATUS LIKE '%s'", name);
    op = qv(p, sql, NULL, 0, &TEXT);
    if (dbp_op_result(op) && dbp_op_result(op)->nrows == 1) v = atoll(dbp_result_cell(dbp_op_result(op), 0, 1)->data);
    dbp_op_free(op);
    return v;
}

/* Where two results differ (NULL when they are the same). types: compare
   the column types too (an expression over a parameter has the type the
   server gave it at prepare time, not the one of the value). */
static const char *result_diff_t(const dbp_result *a, const dbp_result *b, char *buf, size_t n, int types)
{
    size_t i, j;
    if (!a || !b) return "a result is missing";
    if (a->nrows != b->nrows || a->ncols != b->ncols) {
        snprintf(buf, n, "%lux%lu vs %lux%lu", (unsigned long)a->nrows, (unsigned long)a->ncols,
                 (unsigned long)b->nrows, (unsigned long)b->ncols);
        return buf;
    }
    for (j = 0; j < a->ncols; j++) {
        const dbp_field *x = &a->fields[j], *y = &b->fields[j];
        if (x->name_len != y->name_len || memcmp(x->name, y->name, x->name_len) != 0 ||
            (types && (x->type != y->type || (x->flags & UNSIGNED_FLAG) != (y->flags & UNSIGNED_FLAG)))) {
            snprintf(buf, n, "column %lu: %s type %d vs %s type %d", (unsigned long)j, x->name, x->type, y->name, y->type);
            return buf;
        }
    }
    for (i = 0; i < a->nrows; i++)
        for (j = 0; j < a->ncols; j++) {
            const dbp_cell *x = dbp_result_cell(a, i, j), *y = dbp_result_cell(b, i, j);
            if ((x->data == NULL) != (y->data == NULL) || x->len != y->len ||
                (x->data && memcmp(x->data, y->data, x->len) != 0)) {
                snprintf(buf, n, "row %lu column %s: '%.40s' (%lu) vs '%.40s' (%lu)", (unsigned long)i, a->fields[j].name,
                         x->data ? x->data : "NULL", (unsigned long)x->len, y->data ? y->data : "NULL", (unsigned long)y->len);
                return buf;
            }
        }
    if (a->affected_rows != b->affected_rows) {
        snprintf(buf, n, "affected_rows %llu vs %llu", a->affected_rows, b->affected_rows);
        return buf;
    }
    return NULL;
}

static const char *result_diff(const dbp_result *a, const dbp_result *b, char *buf, size_t n)
{
    return result_diff_t(a, b, buf, n, 1);
}

static void test_types(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1");
    static const char bin[] = { 0, 1, 2, '\'', '\\', '"', 10, 13, 26, (char)0xff, 0, (char)0x80 };
    const char *utf8 = "\xc3\xa5\xc3\xa4\xc3\xb6 \xe2\x82\xac \xf0\x9f\x98\x80";
    dbp_value v[24];
    dbp_op *a, *b;
    char buf[256];
    const char *d;
    int k = 0;
    run(p, "DROP TABLE IF EXISTS t_ps_types");
    ok(run(p, "CREATE TABLE t_ps_types (id INT PRIMARY KEY, ti TINYINT, si SMALLINT, mi MEDIUMINT, i INT, "
              "bi BIGINT, ub BIGINT UNSIGNED, ui INT UNSIGNED, f FLOAT, dbl DOUBLE, dec_ DECIMAL(20,6), "
              "dt DATE, tm TIME(3), dtm DATETIME(6), ts TIMESTAMP NULL, yr YEAR, ch CHAR(4), vc VARCHAR(64) "
              "CHARACTER SET utf8mb4, vb VARBINARY(64), bl BLOB, tx TEXT, bt BIT(8), en ENUM('a','b'), st SET('x','y'), "
              "js JSON)") == DBP_OK, "a table with every kind of column");
    /* a row through a prepared INSERT, with every kind of parameter */
    v[k++] = dbp_v_int(1); v[k++] = dbp_v_int(-128); v[k++] = dbp_v_int(-32768); v[k++] = dbp_v_int(8388607);
    v[k++] = dbp_v_int(-2147483647 - 1); v[k++] = dbp_v_int(-9223372036854775807LL - 1);
    v[k++] = dbp_v_uint(18446744073709551615ULL); v[k++] = dbp_v_uint(4294967295U);
    v[k++] = dbp_v_double(3.25); v[k++] = dbp_v_double(0.1); v[k++] = dbp_v_text("-12345678901234.123456");
    v[k++] = dbp_v_text("2024-02-29"); v[k++] = dbp_v_text("-838:59:59.999"); v[k++] = dbp_v_text("2024-12-31 23:59:59.123456");
    v[k++] = dbp_v_text("2020-01-01 00:00:01"); v[k++] = dbp_v_int(2155); v[k++] = dbp_v_text("ab");
    v[k++] = dbp_v_text(utf8); v[k++] = dbp_v_blob(bin, sizeof bin); v[k++] = dbp_v_blob(bin, sizeof bin);
    v[k++] = dbp_v_text("text"); v[k++] = dbp_v_bool(1); v[k++] = dbp_v_text("b");
    v[k++] = dbp_v_text("x,y");
    a = qv(p, "INSERT INTO t_ps_types (id, ti, si, mi, i, bi, ub, ui, f, dbl, dec_, dt, tm, dtm, ts, yr, ch, vc, vb, bl, tx, "
              "bt, en, st) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", v, (size_t)k, &PS);
    ok(dbp_op_rc(a) == DBP_OK && dbp_op_result(a)->affected_rows == 1, "a prepared INSERT with %d parameters of every kind", k);
    dbp_op_free(a);
    run(p, "INSERT INTO t_ps_types (id, js, f, dbl, tm) VALUES (2, '{\"a\": [1, 2.5, null]}', -1.5e-7, 1e300, '12:00:00')");
    run(p, "INSERT INTO t_ps_types (id) VALUES (3)"); /* NULLs everywhere */
    a = qv(p, "SELECT * FROM t_ps_types ORDER BY id", NULL, 0, &TEXT);
    b = qv(p, "SELECT * FROM t_ps_types ORDER BY id", NULL, 0, &PS);
    d = result_diff(dbp_op_result(a), dbp_op_result(b), buf, sizeof buf);
    ok(!d, "every column type: the prepared result is the text result (names, types, values, NULLs)%s%s", d ? ": " : "", d ? d : "");
    ok(dbp_op_result(b) && dbp_op_result(b)->nrows == 3 && dbp_op_result(b)->ncols == 25, "  3 rows of 25 columns");
    if (dbp_op_result(b) && dbp_op_result(b)->nrows == 3) {
        const dbp_result *r = dbp_op_result(b);
        ok(dbp_result_cell(r, 0, 18)->len == sizeof bin && memcmp(dbp_result_cell(r, 0, 18)->data, bin, sizeof bin) == 0,
           "  binary bytes with NUL round-trip as parameters and values");
        is_str(dbp_result_cell(r, 0, 6)->data, "18446744073709551615", "  BIGINT UNSIGNED max");
        ok(dbp_result_cell(r, 2, 1)->data == NULL && dbp_result_cell(r, 2, 24)->data == NULL, "  NULLs are NULL cells");
    }
    dbp_op_free(a);
    dbp_op_free(b);
    /* the same with parameters in the WHERE clause, and expressions */
    {
        dbp_value w[3];
        w[0] = dbp_v_int(1); w[1] = dbp_v_text("ab"); w[2] = dbp_v_null();
        a = qv(p, "SELECT id, vc, ? IS NULL AS n, ? + 1 AS x FROM t_ps_types WHERE id = ? AND ch = ?",
               (dbp_value[]){ dbp_v_null(), dbp_v_int(41), w[0], w[1] }, 4, &TEXT);
        b = qv(p, "SELECT id, vc, ? IS NULL AS n, ? + 1 AS x FROM t_ps_types WHERE id = ? AND ch = ?",
               (dbp_value[]){ dbp_v_null(), dbp_v_int(41), w[0], w[1] }, 4, &PS);
        d = result_diff_t(dbp_op_result(a), dbp_op_result(b), buf, sizeof buf, 0);
        ok(!d && dbp_op_result(b)->nrows == 1, "parameters in WHERE and in expressions: the values of text%s%s", d ? ": " : "", d ? d : "");
        dbp_op_free(a);
        dbp_op_free(b);
    }
    run(p, "DROP TABLE t_ps_types");
    close_pool(p);
}

static void test_dml_and_errors(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&prepare=1");
    dbp_op *op;
    dbp_value v[2];
    const dbp_result *r;
    run(p, "DROP TABLE IF EXISTS t_ps_dml");
    run(p, "CREATE TABLE t_ps_dml (id INT AUTO_INCREMENT PRIMARY KEY, s VARCHAR(20) UNIQUE)");
    v[0] = dbp_v_text("one");
    op = qv(p, "INSERT INTO t_ps_dml (s) VALUES (?)", v, 1, NULL);
    r = dbp_op_result(op);
    ok(r && r->affected_rows == 1 && r->insert_id == 1 && r->ncols == 0, "prepared INSERT: affected_rows 1, insert_id 1, no columns");
    dbp_op_free(op);
    op = dbp_pool_query(p, "INSERT INTO t_ps_dml (s) VALUES (?)", v, 1, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_ESQL && dbp_op_error(op)->code == 1062 && strcmp(dbp_op_error(op)->sqlstate, "23000") == 0 &&
       dbp_op_error(op)->sent, "a duplicate key: DBP_ESQL 1062, SQLSTATE 23000, sent: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    v[0] = dbp_v_text("two");
    op = qv(p, "INSERT INTO t_ps_dml (s) VALUES (?)", v, 1, NULL);
    ok(dbp_op_rc(op) == DBP_OK && dbp_op_result(op)->insert_id == 3, "the connection goes on after it (insert_id %llu)",
       dbp_op_result(op) ? dbp_op_result(op)->insert_id : 0);
    dbp_op_free(op);
    op = qv(p, "UPDATE t_ps_dml SET s = CONCAT(s, '!') WHERE id > ?", (dbp_value[]){ dbp_v_int(0) }, 1, NULL);
    ok(dbp_op_rc(op) == DBP_OK && dbp_op_result(op)->affected_rows == 2, "prepared UPDATE: affected_rows 2");
    dbp_op_free(op);
    op = dbp_pool_query(p, "SELEKT 1", NULL, 0, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_ESQL && dbp_op_error(op)->code == 1064, "a syntax error: 1064 as with text");
    dbp_op_free(op);
    op = dbp_pool_query(p, "SELECT * FROM t_no_such_table WHERE id = ?", (dbp_value[]){ dbp_v_int(1) }, 1, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_ESQL && dbp_op_error(op)->code == 1146, "a missing table: 1146 as with text");
    dbp_op_free(op);
    op = qv(p, "SELECT 1 AS a; SELECT 2 AS b, 3 AS c", NULL, 0, NULL);
    r = dbp_op_result(op);
    ok(r && r->nrows == 1 && r->next && r->next->ncols == 2, "several statements: run as text, every result set");
    dbp_op_free(op);
    run(p, "DROP PROCEDURE IF EXISTS p_ps");
    run(p, "CREATE PROCEDURE p_ps(x INT) BEGIN SELECT x AS a; SELECT x + 1 AS b; END");
    op = qv(p, "CALL p_ps(?)", (dbp_value[]){ dbp_v_int(5) }, 1, NULL);
    r = dbp_op_result(op);
    ok(r && r->nrows == 1 && strcmp(dbp_result_cell(r, 0, 0)->data, "5") == 0 && r->next && r->next->nrows == 1,
       "CALL: run as text, both result sets");
    dbp_op_free(op);
    run(p, "DROP PROCEDURE p_ps");
    op = qv(p, "SELECT COUNT(*) FROM t_ps_dml", NULL, 0, NULL);
    ok(dbp_op_rc(op) == DBP_OK, "after all that the connection still serves");
    dbp_op_free(op);
    {
        dbp_stats st;
        dbp_pool_stats(p, &st);
        ok(st.created == 1, "  one connection all along (created %llu)", st.created);
    }
    ok(status(p, "Com_stmt_execute") >= 4, "the statements went through the binary protocol (Com_stmt_execute %lld)",
       status(p, "Com_stmt_execute"));
    run(p, "DROP TABLE t_ps_dml");
    close_pool(p);
}

/* The LRU: prepare_cache=2 and three statements taken in turn. */
static void test_cache(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&prepare=1&prepare_cache=2");
    const char *sql[3] = { "SELECT ? + 1 AS a", "SELECT ? + 2 AS a", "SELECT ? + 3 AS a" };
    long long prep0, close0, prep1, close1;
    int i, good = 0;
    run(p, "SELECT 1");
    prep0 = status(p, "Com_stmt_prepare");
    close0 = status(p, "Com_stmt_close");
    for (i = 0; i < 12; i++) {
        dbp_op *op = qv(p, sql[i % 3], (dbp_value[]){ dbp_v_int(i) }, 1, NULL);
        const dbp_result *r = dbp_op_result(op);
        if (r && r->nrows == 1 && atoi(dbp_result_cell(r, 0, 0)->data) == i + i % 3 + 1) good++;
        dbp_op_free(op);
    }
    is_int(good, 12, "12 queries over 3 statements with a cache of 2: every result right");
    prep1 = status(p, "Com_stmt_prepare");
    close1 = status(p, "Com_stmt_close");
    is_int(prep1 - prep0, 12, "  each was prepared again (LRU order, 12 prepares)");
    is_int(close1 - close0, 10, "  and the one evicted closed on the server (10 closes): at most 2 held");
    /* the cache holds the 3rd and the 2nd: the 1st evicts the 2nd, which evicts the 3rd; then both stay */
    for (i = 0; i < 8; i++) dbp_op_free(qv(p, sql[i % 2], (dbp_value[]){ dbp_v_int(i) }, 1, NULL));
    is_int(status(p, "Com_stmt_prepare") - prep1, 2, "two statements in turn fit the cache: 2 prepares for 8 queries");
    close_pool(p);
}

/* A connection killed by the server: the next query runs on a new one,
   where its statement is prepared again. */
static void test_reconnect(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&prepare=1&validate_after=0");
    dbp_pool *admin = open_pool(h, URL, "max=1");
    dbp_op *op;
    char kill[64];
    unsigned long long id = 0;
    op = qv(p, "SELECT CONNECTION_ID() AS id, ? AS x", (dbp_value[]){ dbp_v_int(1) }, 1, NULL);
    if (dbp_op_result(op)) id = strtoull(dbp_result_cell(dbp_op_result(op), 0, 0)->data, NULL, 10);
    dbp_op_free(op);
    snprintf(kill, sizeof kill, "KILL %llu", id);
    ok(id && run(admin, kill) == DBP_OK, "the pool's connection %llu killed on the server", id);
    spin(h, 200);
    op = dbp_pool_query(p, "SELECT CONNECTION_ID() AS id, ? AS x", (dbp_value[]){ dbp_v_int(2) }, 1, NULL);
    if (dbp_op_wait(op, 10000) != DBP_OK) {
        /* a dead connection the pool could not see in time: the op says so, the next one works */
        diag("first query after the kill: %s", dbp_op_error(op)->message);
        dbp_op_free(op);
        op = qv(p, "SELECT CONNECTION_ID() AS id, ? AS x", (dbp_value[]){ dbp_v_int(2) }, 1, NULL);
    }
    ok(dbp_op_result(op) && strtoull(dbp_result_cell(dbp_op_result(op), 0, 0)->data, NULL, 10) != id &&
       strcmp(dbp_result_cell(dbp_op_result(op), 0, 1)->data, "2") == 0,
       "after the kill the statement runs on a new connection, prepared again");
    dbp_op_free(op);
    ok(status(p, "Com_stmt_prepare") == 1, "  one prepare on the new connection");
    close_pool(admin);
    close_pool(p);
}

/* max_prepared_stmt_count reached: statements are given back, or the query runs as text. */
static void test_server_limit(dbp_hub *h)
{
    dbp_pool *root = open_pool(h, ROOT_URL, "max=1");
    dbp_pool *hog = open_pool(h, URL, "max=1&prepare=1");
    dbp_pool *p = open_pool(h, URL, "max=1&prepare=1");
    dbp_op *op;
    long long old = -1;
    int i, good = 0;
    op = qv(root, "SELECT @@GLOBAL.max_prepared_stmt_count", NULL, 0, &TEXT);
    if (dbp_op_result(op)) old = atoll(dbp_result_cell(dbp_op_result(op), 0, 0)->data);
    dbp_op_free(op);
    if (!ok(old >= 0 && run(root, "SET GLOBAL max_prepared_stmt_count = 3") == DBP_OK, "max_prepared_stmt_count set to 3 (was %lld)", old)) {
        close_pool(p); close_pool(hog); close_pool(root);
        return;
    }
    /* another session holds two of the three */
    dbp_op_free(qv(hog, "SELECT ? AS h1", (dbp_value[]){ dbp_v_int(1) }, 1, NULL));
    dbp_op_free(qv(hog, "SELECT ? AS h2", (dbp_value[]){ dbp_v_int(1) }, 1, NULL));
    for (i = 0; i < 10; i++) {
        char sql[64];
        const dbp_result *r;
        snprintf(sql, sizeof sql, "SELECT ? + %d AS a", i);
        op = qv(p, sql, (dbp_value[]){ dbp_v_int(100) }, 1, NULL);
        r = dbp_op_result(op);
        if (r && r->nrows == 1 && atoi(dbp_result_cell(r, 0, 0)->data) == 100 + i) good++;
        dbp_op_free(op);
    }
    is_int(good, 10, "10 statements where the server lets this session hold 1: every one answered");
    /* the hog cannot prepare any more: it runs as text */
    op = qv(hog, "SELECT ? AS h3", (dbp_value[]){ dbp_v_int(7) }, 1, NULL);
    ok(dbp_op_rc(op) == DBP_OK || dbp_op_rc(op) == DBP_ESQL, "a session at the limit still answers (%s)",
       dbp_op_rc(op) == DBP_OK ? "fulfilled" : dbp_op_error(op)->message);
    dbp_op_free(op);
    op = qv(hog, "SELECT ? + 1 AS h4", (dbp_value[]){ dbp_v_int(7) }, 1, NULL);
    ok(dbp_op_rc(op) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "8") == 0,
       "  by giving back one of its own statements");
    dbp_op_free(op);
    {
        char sql[80];
        snprintf(sql, sizeof sql, "SET GLOBAL max_prepared_stmt_count = %lld", old);
        ok(run(root, sql) == DBP_OK, "max_prepared_stmt_count restored to %lld", old);
    }
    close_pool(p);
    close_pool(hog);
    close_pool(root);
}

/* A prepared statement past its deadline is stopped with KILL QUERY, and
   its connection (and its statement) serve the next query. */
static void test_timeout(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&prepare=1");
    dbp_op_options o = { 200, 0, 0, 0, 0 };
    dbp_op *op;
    long long t0 = dbp__now_us();
    op = dbp_pool_query(p, "SELECT SLEEP(?) AS s", (dbp_value[]){ dbp_v_int(5) }, 1, &o);
    ok(dbp_op_wait(op, 10000) == DBP_ETIMEOUT && (dbp__now_us() - t0) < 3000000,
       "a prepared SLEEP(5) with a 0.2 s deadline: DBP_ETIMEOUT, well before 5 s (%s)", dbp_op_error(op)->message);
    dbp_op_free(op);
    op = qv(p, "SELECT SLEEP(?) AS s", (dbp_value[]){ dbp_v_int(0) }, 1, NULL);
    ok(dbp_op_rc(op) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "0") == 0,
       "  the same statement then runs on the connection (%s)", dbp_op_rc(op) ? dbp_op_error(op)->message : "ok");
    dbp_op_free(op);
    close_pool(p);
}

/* A pinned connection: prepared statements inside a transaction, rolled back. */
static void test_pinned(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&prepare=1");
    dbp_op *acq = dbp_pool_acquire(p, NULL), *op;
    dbp_conn *c;
    dbp_op_wait(acq, 10000);
    c = dbp_op_take_conn(acq);
    dbp_op_free(acq);
    if (!ok(c != NULL, "a pinned connection")) { close_pool(p); return; }
    dbp_op_free(dbp_conn_query(c, "DROP TABLE IF EXISTS t_ps_pin", NULL, 0, NULL));
    op = dbp_conn_query(c, "CREATE TABLE t_ps_pin (id INT PRIMARY KEY) ENGINE=InnoDB", NULL, 0, NULL);
    dbp_op_wait(op, 5000);
    dbp_op_free(op);
    dbp_op_free(dbp_conn_query(c, "BEGIN", NULL, 0, NULL));
    op = dbp_conn_query(c, "INSERT INTO t_ps_pin VALUES (?)", (dbp_value[]){ dbp_v_int(7) }, 1, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_OK && dbp_op_result(op)->affected_rows == 1, "a prepared INSERT in a transaction");
    dbp_op_free(op);
    op = dbp_conn_query(c, "SELECT COUNT(*) FROM t_ps_pin WHERE id = ?", (dbp_value[]){ dbp_v_int(7) }, 1, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "1") == 0,
       "  seen inside it");
    dbp_op_free(op);
    op = dbp_conn_query(c, "ROLLBACK", NULL, 0, NULL);
    dbp_op_wait(op, 5000);
    dbp_op_free(op);
    dbp_conn_release(c);
    op = qv(p, "SELECT COUNT(*) FROM t_ps_pin WHERE id = ?", (dbp_value[]){ dbp_v_int(7) }, 1, NULL);
    ok(dbp_op_result(op) && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "0") == 0, "  and gone after ROLLBACK");
    dbp_op_free(op);
    run(p, "DROP TABLE t_ps_pin");
    close_pool(p);
}

/* The per-query choice against the pool's. */
static void test_choice(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&prepare=false");
    long long e0, e1;
    run(p, "SELECT 1");
    e0 = status(p, "Com_stmt_execute");
    dbp_op_free(qv(p, "SELECT ? AS a", (dbp_value[]){ dbp_v_int(1) }, 1, NULL));
    e1 = status(p, "Com_stmt_execute");
    is_int(e1 - e0, 0, "a pool with prepare=false runs text");
    dbp_op_free(qv(p, "SELECT ? AS a", (dbp_value[]){ dbp_v_int(1) }, 1, &PS));
    is_int(status(p, "Com_stmt_execute") - e1, 1, "  and { prepare = 1 } on one query runs it prepared");
    close_pool(p);
    p = open_pool(h, URL, "max=1&prepare=1");
    run(p, "SELECT 1");
    e0 = status(p, "Com_stmt_execute");
    dbp_op_free(qv(p, "SELECT ? AS a", (dbp_value[]){ dbp_v_int(1) }, 1, &TEXT));
    is_int(status(p, "Com_stmt_execute") - e0, 0, "a prepare=1 pool runs a { prepare = -1 } query as text");
    close_pool(p);
    p = open_pool(h, URL, "max=1");
    run(p, "SELECT 1");
    e0 = status(p, "Com_stmt_execute");
    dbp_op_free(qv(p, "SELECT ? AS a", (dbp_value[]){ dbp_v_int(1) }, 1, NULL));
    e1 = status(p, "Com_stmt_execute");
    dbp_op_free(qv(p, "SELECT 2 AS a", NULL, 0, NULL));
    ok(e1 - e0 == 1 && status(p, "Com_stmt_execute") == e1, "by default a statement with parameters is prepared, one without runs as text");
    close_pool(p);
}

int main(void)
{
    dbp_hub *h;
    int fds0, fds1;
    signal(SIGPIPE, SIG_DFL);
    URL = need_env("DBPOOL_TEST_MYSQL_URL");
    ROOT_URL = need_env("DBPOOL_TEST_MYSQL_ROOT_URL");
    fds0 = count_fds();
    h = dbp_hub_open(NULL);
    test_types(h);
    test_dml_and_errors(h);
    test_cache(h);
    test_reconnect(h);
    test_server_limit(h);
    test_timeout(h);
    test_pinned(h);
    test_choice(h);
    {
        dbp_hub_counts k;
        dbp_hub_stats(h, &k);
        is_int(k.ops, 0, "no op left alive");
    }
    dbp_hub_free(h, 5000);
    fds1 = count_fds();
    is_int(fds1, fds0, "no file descriptor leaked (%d before, %d after)", fds0, fds1);
    return done_testing();
}
