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

/* Opening: where replicas come from, and what is refused. */
static void test_settings(dbp_hub *h)
{
    dbp_pool_config cfg;
    dbp_error e;
    dbp_pool *p;
    dbp_node_info n[4];
    char url[600], rurl[600];
    const char *list[2];
    snprintf(url, sizeof url, "redis://127.0.0.1:6379/0?replica=127.0.0.1:%s", REPLICA_PORT);
    dbp_pool_config_init(&cfg);
    cfg.url = url;
    ok(dbp_pool_open(h, &cfg, &e) == NULL && e.rc == DBP_EOPTION && strstr(e.message, "'replicas' does not apply"),
       "replica= on a Redis URL is refused: %s", e.message);
    snprintf(url, sizeof url, "%s?replica=", URL);
    cfg.url = url;
    ok(dbp_pool_open(h, &cfg, &e) == NULL && e.rc == DBP_EOPTION, "an empty replica= is refused: %s", e.message);
    snprintf(url, sizeof url, "%s?replica=127.0.0.1:notaport", URL);
    cfg.url = url;
    ok(dbp_pool_open(h, &cfg, &e) == NULL && e.rc == DBP_EOPTION && !strstr(e.message, PASSWORD),
       "a bad replica port is refused: %s", e.message);
    is_int(dbp_pool_config_set(&cfg, "replicas", "x", &e), DBP_EOPTION, "dbp_pool_config_set(\"replicas\") says it takes a list");
    /* the C list: a full URL (with its password) and host:port; min opens connections on every node */
    snprintf(rurl, sizeof rurl, "%s", REPLICA_URL);
    list[0] = rurl;
    list[1] = "127.0.0.1:1";
    cfg.url = URL;
    cfg.replicas = list;
    cfg.nreplicas = 2;
    cfg.min = 1;
    cfg.connect_timeout_ms = 1000;
    cfg.on_event = hook;
    p = dbp_pool_open(h, &cfg, &e);
    if (!ok(p != NULL, "cfg.replicas with a URL and a host:port opens")) { diag("%s", e.message); return; }
    is_int(dbp_pool_nodes(p, n, 4), 3, "three nodes");
    ok(strstr(n[1].addr, REPLICA_PORT) && strcmp(n[2].addr, "127.0.0.1:1") == 0, "addresses %s, %s", n[1].addr, n[2].addr);
    ok(wait_state(h, p, 1, "ok", 10000), "the first replica is usable");
    ok(wait_state(h, p, 2, "down", 10000), "the unreachable one is down");
    dbp_pool_nodes(p, n, 4);
    ok(n[0].stats.total >= 1 && n[1].stats.total >= 1, "min = 1 opened a connection on the primary and the replica");
    ok(strlen(n[2].last_error) > 0 && !strstr(n[2].last_error, PASSWORD), "the dead one says why: %s", n[2].last_error);
    is_int(where(p, "SELECT @@server_id", NULL), 2, "reads go to the usable replica, never the dead one");
    close_pool(p);
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
    run_sql(p, "DROP TABLE IF EXISTS rep_t");
    is_int(run_sql(p, "CREATE TABLE rep_t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64), sid INT)"), DBP_OK,
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
    ok(n[1].routed >= 4 && n[0].routed >= 4, "traffic counted per node (primary %llu, replica %llu)", n[0].routed, n[1].routed);
    ok(n[1].lag >= 0 && n[1].lag <= 2, "the replica's lag is known (%d s)", n[1].lag);
    close_pool(p);
}

static int count_rows(dbp_pool *p, const char *v, int *sid)
{
    dbp_value pv = dbp_v_text(v);
    dbp_op *op = dbp_pool_query(p, "SELECT COUNT(*), @@server_id FROM rep_t WHERE v = ?", &pv, 1, NULL);
    int n = -1;
    if (dbp_op_wait(op, 20000) == DBP_OK) {
        n = atoi(dbp_result_cell(dbp_op_result(op), 0, 0)->data);
        if (sid) *sid = atoi(dbp_result_cell(dbp_op_result(op), 0, 1)->data);
    } else {
        diag("count: %s", dbp_op_error(op)->message);
    }
    dbp_op_free(op);
    return n;
}

static int insert_v(dbp_pool *p, const char *v)
{
    dbp_value pv = dbp_v_text(v);
    dbp_op *op = dbp_pool_query(p, "INSERT INTO rep_t (v, sid) VALUES (?, @@server_id)", &pv, 1, NULL);
    int rc = dbp_op_wait(op, 20000);
    if (rc != DBP_OK) diag("insert: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    return rc;
}

static void test_read_your_writes(dbp_hub *h)
{
    dbp_pool *p = open_rep(h, "max_lag=0.5&read_your_writes=1&max=4");
    dbp_pool *rroot = open_pool_with(h, REPLICA_ROOT_URL, NULL, hook, keep);
    int i, stale = 0, on_replica = 0, on_primary = 0, sid = 0;
    char v[64];
    long long t0;
    if (!ok(p && rroot, "pools open")) return;
    ok(wait_state(h, p, 1, "ok", 10000), "the replica is usable");
    insert_v(p, "ryw-first");
    ok(DBP__RP(p)->nodes[0].pool->gtid[0] != '\0', "the write's GTID was captured by session tracking (%s)",
       DBP__RP(p)->nodes[0].pool->gtid);
    is_int(count_rows(p, "ryw-first", &sid), 1, "read back at once: found");
    is_int(sid, 2, "... on the replica (it had caught up)");
    /* the replica stops applying: the read must not be stale */
    is_int(run_sql(rroot, "STOP SLAVE SQL_THREAD"), DBP_OK, "STOP SLAVE SQL_THREAD on the replica");
    insert_v(p, "ryw-stopped");
    t0 = dbp__now_us();
    is_int(count_rows(p, "ryw-stopped", &sid), 1, "with replication stopped, the row written is still read back");
    is_int(sid, 1, "... from the primary (the replica did not catch up within max_lag; %lld ms)", (dbp__now_us() - t0) / 1000);
    is_int(run_sql(rroot, "START SLAVE SQL_THREAD"), DBP_OK, "START SLAVE SQL_THREAD");
    ok(wait_state(h, p, 1, "ok", 10000), "the replica is usable again");
    /* a thousand times: insert, then read it back at once, with the SQL
       thread stopped for a while in the middle */
    for (i = 0; i < 1000; i++) {
        int n;
        if (i == 400) run_sql(rroot, "STOP SLAVE SQL_THREAD");
        if (i == 440) {
            run_sql(rroot, "START SLAVE SQL_THREAD");
            wait_state(h, p, 1, "ok", 5000);
        }
        snprintf(v, sizeof v, "ryw-%d-%lld", i, (long long)dbp__now_us());
        if (insert_v(p, v) != DBP_OK) { stale++; continue; }
        n = count_rows(p, v, &sid);
        if (n != 1) stale++;
        else if (sid == 2) on_replica++;
        else on_primary++;
    }
    is_int(stale, 0, "1000 x insert-then-read: never a stale read (%d on the replica, %d on the primary)", on_replica, on_primary);
    {
        /* a stream after a write the replica may not have: on the primary */
        dbp_op *s;
        const dbp_cell *row;
        size_t nc;
        int got = -1;
        run_sql(rroot, "STOP SLAVE SQL_THREAD");
        insert_v(p, "ryw-stream");
        s = dbp_pool_query_stream(p, "SELECT COUNT(*), @@server_id FROM rep_t WHERE v = 'ryw-stream'", NULL, 0, NULL);
        while (dbp_op_fetch_wait(s, 5000) == DBP_OK && dbp_op_fetch(s, &row, &nc) == DBP_ROW)
            if (atoi(row[0].data) == 1) got = atoi(row[1].data);
        is_int(got, 1, "read_your_writes: a stream after a write the replica lacks runs on the primary and sees it");
        dbp_op_free(s);
        run_sql(rroot, "START SLAVE SQL_THREAD");
        wait_state(h, p, 1, "ok", 5000);
    }
    ok(on_replica > 500, "most reads still ran on the replica (%d)", on_replica);
    ok(on_primary > 0, "while it was stopped they ran on the primary (%d)", on_primary);
    {
        /* per query: a pool without the option, one read asking for it */
        dbp_pool *q = open_rep(h, "max_lag=0.5");
        dbp_op_options o;
        dbp_value pv = dbp_v_text("ryw-per-query");
        dbp_op *op;
        memset(&o, 0, sizeof o);
        o.read_your_writes = 1;
        wait_state(h, q, 1, "ok", 10000);
        run_sql(rroot, "STOP SLAVE SQL_THREAD");
        insert_v(q, "ryw-per-query");
        op = dbp_pool_query(q, "SELECT COUNT(*), @@server_id FROM rep_t WHERE v = ?", &pv, 1, &o);
        ok(dbp_op_wait(op, 10000) == DBP_OK && strcmp(dbp_result_cell(dbp_op_result(op), 0, 0)->data, "1") == 0,
           "read_your_writes per query: the row is read back");
        dbp_op_free(op);
        run_sql(rroot, "START SLAVE SQL_THREAD");
        close_pool(q);
    }
    close_pool(rroot);
    close_pool(p);
}

static void test_lag(dbp_hub *h)
{
    dbp_pool *p = open_rep(h, "max_lag=1&backoff_max=0.5");
    dbp_pool *rroot = open_pool_with(h, REPLICA_ROOT_URL, NULL, hook, keep);
    long long end;
    int lagging = 0;
    if (!ok(p && rroot, "pools open")) return;
    ok(wait_state(h, p, 1, "ok", 10000), "the replica is usable");
    is_int(where(p, "SELECT @@server_id", NULL), 2, "reads go to the replica");
    run_sql(rroot, "STOP SLAVE SQL_THREAD");
    ok(wait_state(h, p, 1, "stopped", 5000), "STOP SLAVE SQL_THREAD: the replica is seen stopped");
    is_int(where(p, "SELECT @@server_id", NULL), 1, "reads go to the primary while it is stopped");
    run_sql(rroot, "START SLAVE SQL_THREAD");
    ok(wait_state(h, p, 1, "ok", 5000), "START SLAVE SQL_THREAD: usable again");
    is_int(where(p, "SELECT @@server_id", NULL), 2, "reads go back to the replica");
    /* a delayed replica: behind by up to 3 s while writes keep coming */
    run_sql(rroot, "STOP SLAVE");
    run_sql(rroot, "CHANGE MASTER TO MASTER_DELAY = 3");
    run_sql(rroot, "START SLAVE");
    end = dbp__now_us() / 1000 + 10000;
    while (dbp__now_us() / 1000 < end) {
        insert_v(p, "lag");
        spin(h, 200);
        if (strcmp(node_state(p, 1), "lagging") == 0) { lagging = 1; break; }
    }
    ok(lagging, "MASTER_DELAY = 3 with max_lag = 1: the replica is seen lagging");
    is_int(where(p, "SELECT @@server_id", NULL), 1, "reads go to the primary while it lags");
    run_sql(rroot, "STOP SLAVE");
    run_sql(rroot, "CHANGE MASTER TO MASTER_DELAY = 0");
    run_sql(rroot, "START SLAVE");
    ok(wait_state(h, p, 1, "ok", 10000), "it catches up: usable again");
    is_int(where(p, "SELECT @@server_id", NULL), 2, "reads go back to the replica");
    close_pool(rroot);
    close_pool(p);
}

static int replica_script(const char *cmd)
{
    char line[1024];
    const char *repo = getenv("DBPOOL_REPO");
    snprintf(line, sizeof line, "%s/scripts/mariadb-replica.sh %s >/dev/null 2>&1", repo ? repo : ".", cmd);
    return system(line);
}

static void test_killed(dbp_hub *h)
{
    dbp_pool *p = open_rep(h, "max_lag=2&backoff_max=0.5&max=4&connect_timeout=1");
    dbp_op *ops[200];
    int i, failed = 0, on_primary = 0, on_replica = 0;
    if (!ok(p != NULL, "pool opens")) return;
    ok(wait_state(h, p, 1, "ok", 10000), "the replica is usable");
    for (i = 0; i < 200; i++) {
        ops[i] = dbp_pool_query(p, "SELECT @@server_id, SLEEP(0.01)", NULL, 0, NULL);
        if (i == 40) {
            spin(h, 50);
            is_int(replica_script("kill"), 0, "the replica is killed (SIGKILL) under read load");
        }
        if (i % 20 == 19) spin(h, 30);
    }
    for (i = 0; i < 200; i++) {
        if (dbp_op_wait(ops[i], 20000) != DBP_OK) { failed++; diag("read %d: %s", i, dbp_op_error(ops[i])->message); }
        else if (atoi(dbp_result_cell(dbp_op_result(ops[i]), 0, 0)->data) == 2) on_replica++;
        else on_primary++;
        dbp_op_free(ops[i]);
    }
    is_int(failed, 0, "no read failed (%d on the replica, %d on the primary)", on_replica, on_primary);
    ok(on_primary > 0, "reads moved to the primary");
    ok(wait_state(h, p, 1, "down", 5000), "the replica is seen down");
    is_int(where(p, "SELECT @@server_id", NULL), 1, "reads go to the primary");
    is_int(replica_script("start"), 0, "the replica is started again");
    ok(wait_state(h, p, 1, "ok", 15000), "it is used again once it is back (no restart of the pool)");
    is_int(where(p, "SELECT @@server_id", NULL), 2, "reads go to the replica again");
    close_pool(p);
}

static void test_read_only(dbp_hub *h)
{
    dbp_pool *p = open_rep(h, "max_lag=2");
    dbp_pool *root = open_pool_with(h, ROOT_URL, NULL, hook, keep);
    dbp_node_info n[2];
    unsigned long long routed;
    dbp_op *op;
    if (!ok(p && root, "pools open")) return;
    ok(wait_state(h, p, 1, "ok", 10000), "the replica is usable");
    dbp_pool_nodes(p, n, 2);
    routed = n[1].routed;
    read_only_events = 0;
    is_int(run_sql(root, "SET GLOBAL read_only = 1"), DBP_OK, "the primary is made read-only");
    op = dbp_pool_query(p, "INSERT INTO rep_t (v) VALUES ('ro')", NULL, 0, NULL);
    is_int(dbp_op_wait(op, 10000), DBP_ESQL, "a write is rejected: %s", dbp_op_error(op)->message);
    is_int(dbp_op_error(op)->code, 1290, "with the server's code 1290");
    is_int(dbp_rc_kind(dbp_op_error(op)->rc), DBP_KIND_SQL, "kind sql");
    dbp_op_free(op);
    is_str(node_state(p, 0), "read-only", "the primary's node says read-only");
    ok(read_only_events > 0, "the error hook was told");
    dbp_pool_nodes(p, n, 2);
    ok(n[1].routed == routed, "nothing was sent to the replica");
    is_int(run_sql(root, "SET GLOBAL read_only = 0"), DBP_OK, "read_only is turned off");
    ok(wait_state(h, p, 0, "ok", 5000), "the pool sees it (it re-reads @@read_only)");
    is_int(insert_v(p, "ro-after"), DBP_OK, "writes work again");
    close_pool(root);
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
    test_settings(h);
    test_routing(h);
    test_read_your_writes(h);
    test_lag(h);
    test_killed(h);
    test_read_only(h);
    dbp_hub_free(h, 5000);
    ok(!strstr(all_messages, PASSWORD), "no message contains a password (%lu bytes checked)", (unsigned long)strlen(all_messages));
    return done_testing();
}
