/* Read replicas against real MariaDB replication (scripts/mariadb-replica.sh):
   the routing rule, per-query overrides, transactions on the primary, lag and
   stopped replication, read your writes, a replica killed under load and
   restarted, the primary made read-only. Where each statement ran is asked
   of the server (@@server_id: 1 is the primary, 2 the replica). */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"
#include "helpers.h"
#include <signal.h>

static const char *URL, *PASSWORD, *REPLICA_URL, *REPLICA_ROOT_URL, *ROOT_URL, *REPLICA_PORT;
static int read_only_events;

static void hook(dbp_pool *p, const dbp_event *ev, void *ud)
{
    (void)p; (void)ud;
    keep(ev->message);
    if (strstr(ev->message, "is read-only")) read_only_events++;
}

/* The primary's URL with the replica and options. */
static dbp_pool *open_rep(dbp_hub *h, const char *opts)
{
    char o[512];
    snprintf(o, sizeof o, "replica=127.0.0.1:%s%s%s", REPLICA_PORT, opts && *opts ? "&" : "", opts ? opts : "");
    return open_pool_with(h, URL, o, hook, keep);
}

/* The server_id a statement ran on (its first column), -1 on error. */
static int where(dbp_pool *p, const char *sql, const dbp_op_options *o)
{
    dbp_op *op = dbp_pool_query(p, sql, NULL, 0, o);
    int id = -1;
    if (dbp_op_wait(op, 20000) == DBP_OK && dbp_op_result(op) && dbp_op_result(op)->nrows)
        id = atoi(dbp_result_cell(dbp_op_result(op), 0, 0)->data);
    else
        diag("'%s': %s", sql, dbp_op_error(op)->message);
    dbp_op_free(op);
    return id;
}

/* The state of node k ("ok", "stopped", ...). */
static const char *node_state(dbp_pool *p, int k)
{
    static dbp_node_info n[4];
    if (dbp_pool_nodes(p, n, 4) <= k) return "?";
    return n[k].state;
}

/* Steps the hub until node k is in state, or ms pass. 1 when it is. */
static int wait_state(dbp_hub *h, dbp_pool *p, int k, const char *state, int ms)
{
    long long end = dbp__now_us() / 1000 + ms;
    while (strcmp(node_state(p, k), state) != 0) {
        if (dbp__now_us() / 1000 > end) return 0;
        dbp_hub_step(h, 20);
    }
    return 1;
}

static void test_is_read(void)
{
    static const struct { const char *sql; int read; } t[] = {
        { "SELECT 1", 1 }, { "  select * from t", 1 }, { "(SELECT 1) UNION (SELECT 2)", 1 },
        { "/* hint */ SELECT 1", 1 }, { "-- c\nSELECT 1", 1 }, { "# c\nSHOW TABLES", 1 },
        { "SHOW SLAVE STATUS", 1 }, { "DESCRIBE t", 1 }, { "desc t", 1 }, { "EXPLAIN SELECT 1", 1 },
        { "WITH a AS (SELECT 1) SELECT * FROM a", 1 }, { "SELECT 'for update' FROM t", 1 },
        { "SELECT `into` FROM t", 1 }, { "SELECT 1;", 1 }, { "SELECT 1 -- FOR UPDATE", 1 },
        { "SELECT * FROM t FOR UPDATE", 0 }, { "SELECT * FROM t for  share", 0 },
        { "SELECT * FROM t LOCK IN SHARE MODE", 0 }, { "SELECT 1 INTO @x", 0 },
        { "SELECT * INTO OUTFILE '/tmp/x' FROM t", 0 }, { "SELECT GET_LOCK('a', 1)", 0 },
        { "SELECT LAST_INSERT_ID()", 0 }, { "SELECT 1; DELETE FROM t", 0 },
        { "INSERT INTO t VALUES (1)", 0 }, { "UPDATE t SET a = 1", 0 }, { "DELETE FROM t", 0 },
        { "BEGIN", 0 }, { "SET @a = 1", 0 }, { "CALL p()", 0 }, { "", 0 }, { "   ", 0 },
        { "/* unterminated", 0 }, { "SELECT 'unterminated", 1 }, { "SELECT NEXTVAL(s)", 0 },
        { "/*!50000 SELECT */ 1", 1 }, { "REPLACE INTO t SELECT * FROM u", 0 }
    };
    size_t i;
    for (i = 0; i < sizeof t / sizeof t[0]; i++)
        is_int(dbp__sql_is_read(t[i].sql, strlen(t[i].sql)), t[i].read, "is_read(\"%s\")", t[i].sql);
}

static void test_routing(dbp_hub *h)
{
    dbp_pool *p = open_rep(h, "max_lag=2&max=4");
    dbp_op_options on;
    dbp_node_info n[4];
    dbp_op *op;
    char d[200];
    if (!ok(p != NULL, "a pool with a replica opens")) return;
    dbp_pool_describe(p, d, sizeof d);
    ok(strstr(d, "+1 replica") && !strstr(d, PASSWORD), "described as %s", d);
    is_str(dbp_pool_backend(p), "mysql", "its backend is mysql");
    ok(wait_state(h, p, 1, "ok", 10000), "the replica is found usable (its status read in the background)");
    is_int(where(p, "SELECT @@server_id", NULL), 2, "a SELECT runs on the replica");
    {
        dbp_op *s = dbp_pool_query(p, "SHOW VARIABLES LIKE 'server_id'", NULL, 0, NULL);
        dbp_op_wait(s, 10000);
        ok(dbp_op_result(s) && dbp_op_result(s)->nrows == 1 && strcmp(dbp_result_cell(dbp_op_result(s), 0, 1)->data, "2") == 0,
           "SHOW VARIABLES runs on the replica");
        dbp_op_free(s);
    }
    is_int(where(p, "SELECT @@server_id FOR UPDATE", NULL), 1, "SELECT ... FOR UPDATE runs on the primary");
    is_int(where(p, "SELECT @@server_id LOCK IN SHARE MODE", NULL), 1, "SELECT ... LOCK IN SHARE MODE runs on the primary");
    memset(&on, 0, sizeof on);
    on.on = DBP_ON_PRIMARY;
    is_int(where(p, "SELECT @@server_id", &on), 1, "on = primary: a SELECT runs on the primary");
    on.on = DBP_ON_REPLICA;
    is_int(where(p, "SELECT @@server_id", &on), 2, "on = replica: a SELECT runs on the replica");
    op = dbp_pool_query(p, "INSERT INTO rep_t (v) VALUES ('x')", NULL, 0, &on);
    ok(dbp_op_wait(op, 5000) == DBP_EUSAGE && strstr(dbp_op_error(op)->message, "only a read"),
       "on = replica for a write is a usage error, nothing sent: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    is_int(run_sql(p, "CREATE TABLE IF NOT EXISTS rep_t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64), sid INT)"), DBP_OK,
           "DDL runs (on the primary: the replica is read-only)");
    is_int(run_sql(p, "INSERT INTO rep_t (v, sid) VALUES ('w', @@server_id)"), DBP_OK, "an INSERT runs");
    on.on = DBP_ON_PRIMARY;
    is_int(where(p, "SELECT sid FROM rep_t WHERE v = 'w' ORDER BY id DESC LIMIT 1", &on), 1,
           "the INSERT ran on the primary (the row says server_id 1)");
    {
        /* a transaction: acquire pins on the primary */
        dbp_conn *c = acquire_conn(p);
        dbp_op *a;
        ok(c != NULL, "acquire() gives a connection");
        if (c) {
            a = dbp_conn_query(c, "SELECT @@server_id", NULL, 0, NULL);
            ok(dbp_op_wait(a, 5000) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(a), 0, 0)->data, "1") == 0,
               "a pinned connection (a transaction) is on the primary");
            dbp_op_free(a);
            dbp_conn_release(c);
        }
    }
    {
        /* reads spread over nothing but the one replica; a stream runs there too */
        dbp_op *s = dbp_pool_query_stream(p, "SELECT @@server_id", NULL, 0, NULL);
        const dbp_cell *row;
        size_t nc;
        int got = -1;
        while (dbp_op_fetch_wait(s, 5000) == DBP_OK) {
            int rc = dbp_op_fetch(s, &row, &nc);
            if (rc == DBP_ROW) got = atoi(row[0].data);
            else break;
        }
        is_int(got, 2, "a streamed SELECT runs on the replica");
        dbp_op_free(s);
    }
    is_int(dbp_pool_nodes(p, n, 4), 2, "two nodes");
    ok(n[0].primary && !n[1].primary && strcmp(n[1].primary_addr, n[0].addr) == 0, "the primary first, then the replica (%s of %s)",
       n[1].addr, n[1].primary_addr);
    ok(n[1].routed >= 5 && n[0].routed >= 4, "traffic counted per node (primary %llu, replica %llu)", n[0].routed, n[1].routed);
    ok(n[1].lag >= 0 && n[1].lag <= 2, "the replica's lag is known (%d s)", n[1].lag);
    close_pool(p);
}

int main(void)
{
    dbp_hub *h;
    signal(SIGPIPE, SIG_DFL);
    URL = need_env("DBPOOL_TEST_MYSQL_URL");
    ROOT_URL = need_env("DBPOOL_TEST_MYSQL_ROOT_URL");
    PASSWORD = need_env("DBPOOL_TEST_MYSQL_PASSWORD");
    REPLICA_URL = need_env("DBPOOL_TEST_MYSQL_REPLICA_URL");
    REPLICA_ROOT_URL = need_env("DBPOOL_TEST_MYSQL_REPLICA_ROOT_URL");
    REPLICA_PORT = need_env("DBPOOL_TEST_MYSQL_REPLICA_PORT");
    test_is_read();
    h = dbp_hub_open(NULL);
    test_routing(h);
    dbp_hub_free(h, 5000);
    ok(!strstr(all_messages, PASSWORD), "no message contains a password (%lu bytes checked)", (unsigned long)strlen(all_messages));
    return done_testing();
}
