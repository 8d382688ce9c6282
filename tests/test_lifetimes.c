/* Lifetimes: the header's promises about who frees what, held to account
   against real MariaDB and Redis servers, with dbp_hub_stats() counting what
   is left. Each scenario names the bug it guards against; each failed on
   the header of 1fddf2d (a heap-use-after-free under ASan and Valgrind, or
   objects left behind that these counts show, or a hang).

   - a pinned connection the server kills stays a valid handle: ok() false,
     ops on it rejected with kind connection, release frees it;
   - an op freed while pending frees itself when it settles (plain ops and a
     stream abandoned after its first row);
   - a pool freed while work is in flight is reaped once that work settled;
   - an acquire that first validates an idle connection gets it (it was run
     as an op: on Redis it sat in the pipeline and took another's reply);
   - dbp_op_error(NULL) is an error, not a crash; a stream's columns can be
     read from C. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"
#include "helpers.h"

static const char *MY_URL, *RD_URL;

static dbp_pool *open_pool(dbp_hub *h, const char *url, const char *opts)
{
    return open_pool_with(h, url, opts, NULL, NULL);
}

static void counts(dbp_hub *h, dbp_hub_counts *c)
{
    dbp_hub_run(h, 5000);
    dbp_hub_stats(h, c);
}

/* The server kills a pinned connection: the holder's handle stays valid. */
static void pinned_killed(dbp_hub *h, int mysql)
{
    const char *name = mysql ? "mysql" : "redis";
    dbp_pool *p = open_pool(h, mysql ? MY_URL : RD_URL, "max=2"), *direct = open_pool(h, mysql ? MY_URL : RD_URL, NULL);
    dbp_conn *c = acquire_conn(p);
    dbp_op *op;
    dbp_hub_counts k;
    int i, rc;
    if (!c || !direct) { ok(0, "%s: pinned connection for the kill test", name); return; }
    ok(dbp_conn_ok(c) && dbp_conn_server_id(c) > 0, "%s: a pinned connection (server id %llu)", name, dbp_conn_server_id(c));
    server_kill(direct, c, mysql);
    /* the holder finds out: its next op fails (or the hub saw the EOF first) */
    for (i = 0; i < 50 && dbp_conn_ok(c); i++) spin(h, 20);
    if (mysql) op = dbp_conn_query(c, "SELECT 1", NULL, 0, NULL);
    else { const char *ping[1] = { "PING" }; op = dbp_conn_call(c, 1, ping, NULL, NULL); }
    rc = dbp_op_wait(op, 5000);
    ok(rc != DBP_OK && dbp_rc_kind(rc) == DBP_KIND_CONNECTION, "%s: an op on the killed pinned connection is rejected with kind connection: %s",
       name, dbp_op_error(op)->message);
    dbp_op_free(op);
    spin(h, 50); /* a few steps: the dead connection must not be freed under its holder */
    ok(!dbp_conn_ok(c), "%s: ok() says the pinned connection is dead", name);
    dbp_hub_stats(h, &k);
    is_int(k.conns_dead_held, 1, "%s: the dead connection is kept for its holder", name);
    if (mysql) op = dbp_conn_query(c, "SELECT 2", NULL, 0, NULL);
    else { const char *ping[1] = { "PING" }; op = dbp_conn_call(c, 1, ping, NULL, NULL); }
    rc = dbp_op_wait(op, 1000);
    ok(rc != DBP_OK && dbp_rc_kind(rc) == DBP_KIND_CONNECTION && !dbp_op_error(op)->sent,
       "%s: later ops on it are rejected at once, never sent: %s", name, dbp_op_error(op)->message);
    dbp_op_free(op);
    ok(dbp_conn_error(c)->rc != DBP_OK, "%s: dbp_conn_error says why it died: %s", name, dbp_conn_error(c)->message);
    dbp_conn_release(c);
    dbp_hub_stats(h, &k);
    is_int(k.conns_dead_held, 0, "%s: release frees it", name);
    op = mysql ? dbp_pool_query(p, "SELECT 1", NULL, 0, NULL) : dbp_pool_call(p, 1, (const char *const[]){ "PING" }, NULL, NULL);
    ok(dbp_op_wait(op, 5000) == DBP_OK, "%s: the pool goes on", name);
    dbp_op_free(op);
    close_pool(p);
    close_pool(direct);
}

/* The same, but the holder discards it, and the pool is freed while the
   dead handle is still held: the pool waits for it. */
static void pinned_killed_pool_freed(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, RD_URL, "max=1"), *direct = open_pool(h, RD_URL, NULL);
    dbp_conn *c = acquire_conn(p);
    dbp_hub_counts k0, k;
    dbp_op *op;
    dbp_hub_stats(h, &k0);
    if (!c) { ok(0, "acquire"); return; }
    server_kill(direct, c, 0);
    op = dbp_conn_call(c, 1, (const char *const[]){ "PING" }, NULL, NULL);
    dbp_op_wait(op, 5000);
    dbp_op_free(op);
    dbp_op_free(dbp_pool_close(p, 1000));
    dbp_pool_free(p);
    spin(h, 100);
    dbp_hub_stats(h, &k);
    ok(k.pools == k0.pools && k.conns_dead_held == 1 && !dbp_conn_ok(c),
       "a pool freed while a dead pinned connection is held stays until it is let go (pools %d, held %d)", k.pools, k.conns_dead_held);
    dbp_conn_discard(c);
    spin(h, 50);
    dbp_hub_stats(h, &k);
    ok(k.pools == k0.pools - 1 && k.conns_dead_held == 0, "  discard frees the connection, then the pool (pools %d -> %d)", k0.pools, k.pools);
    close_pool(direct);
}

/* Fire-and-forget: ops freed before they settle free themselves. */
static void ops_freed_pending(dbp_hub *h)
{
    dbp_pool *my = open_pool(h, MY_URL, "max=4"), *rd = open_pool(h, RD_URL, "max=2");
    dbp_hub_counts k0, k;
    int i;
    counts(h, &k0);
    for (i = 0; i < 100; i++) {
        dbp_value v = dbp_v_int(i);
        const char *argv[2] = { "ECHO", "x" };
        dbp_op_free(dbp_pool_query(my, "SELECT ?", &v, 1, NULL));
        dbp_op_free(dbp_pool_call(rd, 2, argv, NULL, NULL));
    }
    dbp_hub_stats(h, &k);
    ok(k.ops_released >= 100, "200 ops freed while pending are alive while they run (%d)", k.ops_released);
    counts(h, &k);
    ok(k.ops == k0.ops && k.ops_released == 0 && k.pending == 0,
       "  and gone once they settled: %d op records left (%d before)", k.ops, k0.ops);
    close_pool(my);
    close_pool(rd);
}

/* A stream abandoned after its first row: the op and its batch go. */
static void stream_abandoned(dbp_hub *h)
{
    dbp_pool *my = open_pool(h, MY_URL, "max=2");
    dbp_hub_counts k0, k;
    int i, rows = 0;
    counts(h, &k0);
    for (i = 0; i < 50; i++) {
        dbp_op *op = dbp_pool_query_stream(my, "SELECT seq, REPEAT('x', 100) FROM seq_1_to_20000", NULL, 0, NULL);
        const dbp_cell *row;
        size_t n;
        if (dbp_op_fetch_wait(op, 5000) == DBP_OK && dbp_op_fetch(op, &row, &n) == DBP_ROW) rows++;
        if (i == 0) {
            size_t nf = 0;
            const dbp_field *f = dbp_op_fields(op, &nf);
            ok(f && nf == 2 && strcmp(f[0].name, "seq") == 0, "a stream's columns are readable from C (%zu: %s)", nf,
               f ? f[0].name : "none");
        }
        dbp_op_free(op);
    }
    counts(h, &k);
    ok(rows == 50 && k.ops == k0.ops && k.pending == 0,
       "50 streams abandoned after their first row: no op left (%d -> %d), the pool goes on", k0.ops, k.ops);
    ok(run_sql(my, "SELECT 1") == DBP_OK, "  the pool still answers");
    close_pool(my);
}

/* dbp_pool_free with work in flight: the pool is reaped once it closed. */
static void pool_freed_busy(dbp_hub *h)
{
    dbp_hub_counts k0, k;
    int i, j;
    counts(h, &k0);
    for (i = 0; i < 20; i++) {
        dbp_pool *p = open_pool(h, i % 2 ? RD_URL : MY_URL, "max=2");
        for (j = 0; j < 5; j++) {
            if (i % 2) dbp_op_free(dbp_pool_call(p, 1, (const char *const[]){ "PING" }, NULL, NULL));
            else dbp_op_free(dbp_pool_query(p, "SELECT SLEEP(0.02)", NULL, 0, NULL));
        }
        dbp_pool_free(p);
    }
    dbp_hub_stats(h, &k);
    ok(k.pools_released > 0, "20 pools freed with work in flight are still closing (%d)", k.pools_released);
    counts(h, &k);
    spin(h, 100);
    dbp_hub_stats(h, &k);
    ok(k.pools == k0.pools && k.pools_released == 0 && k.conns == k0.conns && k.ops == k0.ops,
       "  and reaped once their work settled: pools %d -> %d, connections %d -> %d", k0.pools, k.pools, k0.conns, k.conns);
}

/* An acquire that validates an idle connection first gets that connection. */
static void acquire_after_validation(dbp_hub *h, int mysql)
{
    const char *name = mysql ? "mysql" : "redis";
    dbp_pool *p = open_pool(h, mysql ? MY_URL : RD_URL, "max=1&validate_after=0.05");
    dbp_op *acq, *other;
    dbp_conn *c = NULL;
    const char *echo[2] = { "ECHO", "pinned" }, *echo2[2] = { "ECHO", "other" };
    ok(!mysql || run_sql(p, "SELECT 1") == DBP_OK, "%s: a connection opened", name);
    if (!mysql) { dbp_op *o = dbp_pool_call(p, 1, (const char *const[]){ "PING" }, NULL, NULL); dbp_op_wait(o, 3000); dbp_op_free(o); }
    spin(h, 150); /* idle past validate_after: the next taker validates it */
    acq = dbp_pool_acquire(p, NULL);
    other = mysql ? dbp_pool_query(p, "SELECT 'other'", NULL, 0, NULL) : dbp_pool_call(p, 2, echo2, NULL, NULL);
    ok(dbp_op_wait(acq, 3000) == DBP_OK && (c = dbp_op_take_conn(acq)) != NULL,
       "%s: an acquire that validated the idle connection first settles with it", name);
    if (c) {
        dbp_op *q = mysql ? dbp_conn_query(c, "SELECT 'pinned'", NULL, 0, NULL) : dbp_conn_call(c, 2, echo, NULL, NULL);
        dbp_op_wait(q, 3000);
        if (mysql) is_str(dbp_op_result(q) && dbp_op_result(q)->nrows ? dbp_op_result(q)->cells[0].data : NULL, "pinned",
                          "%s: the pinned connection answers its own query", name);
        else is_str(dbp_op_reply(q) ? dbp_op_reply(q)->str : NULL, "pinned", "%s: the pinned connection answers its own command", name);
        dbp_op_free(q);
        dbp_conn_release(c);
    }
    dbp_op_wait(other, 5000);
    if (mysql) is_str(dbp_op_result(other) && dbp_op_result(other)->nrows ? dbp_op_result(other)->cells[0].data : NULL, "other",
                      "%s: the op queued behind it gets its own result", name);
    else is_str(dbp_op_reply(other) ? dbp_op_reply(other)->str : NULL, "other", "%s: the command queued behind it gets its own reply", name);
    dbp_op_free(acq);
    dbp_op_free(other);
    close_pool(p);
}

/* dbp_sub_free from the callbacks that report a resubscription or an
   error: the subscription ends there and then. On 1fddf2d such a close was
   completed only by the next message's delivery (for RESUBSCRIBED the
   SUBSCRIBE confirmations that follow it happen to do that, so the first
   scenario passes there too), and the ERROR of a subscription whose
   credentials are refused was never delivered at all: the second fails. */
static int resubscribed, sub_errors;
static void close_on_resubscribe(dbp_sub *sub, const dbp_message *m, void *ud)
{
    (void)ud;
    if (m->type == DBP_MSG_RESUBSCRIBED) { resubscribed++; dbp_sub_free(sub); }
}
static void close_on_error(dbp_sub *sub, const dbp_message *m, void *ud)
{
    (void)ud;
    if (m->type == DBP_MSG_ERROR) { sub_errors++; dbp_sub_free(sub); }
}

static void sub_error_closed_from_callback(dbp_hub *h)
{
    char url[1024];
    const char *at = strchr(RD_URL, '@');
    dbp_pool *p;
    dbp_sub *sub;
    const char *chan[1] = { "lt:chan" };
    dbp_hub_counts k;
    int i;
    snprintf(url, sizeof url, "redis://:wrong-password%s", at ? at : "@127.0.0.1:1/0");
    p = open_pool(h, url, "backoff_min=0.02&backoff_max=0.05");
    sub = p ? dbp_pool_subscribe(p, 1, chan, 0, NULL, close_on_error, NULL, NULL) : NULL;
    if (!sub) { ok(0, "subscribe"); return; }
    for (i = 0; i < 100 && !sub_errors; i++) spin(h, 20);
    spin(h, 100);
    dbp_hub_stats(h, &k);
    ok(sub_errors == 1 && k.conns == 0,
       "a subscription refused for its credentials reports ERROR once, and dbp_sub_free from that callback ends it (%d errors, %d connections)",
       sub_errors, k.conns);
    close_pool(p);
}

static void sub_closed_from_callback(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, RD_URL, "backoff_min=0.02&backoff_max=0.05"), *direct = open_pool(h, RD_URL, NULL);
    const char *chan[1] = { "lt:chan" };
    dbp_sub *sub = dbp_pool_subscribe(p, 1, chan, 0, NULL, close_on_resubscribe, NULL, NULL);
    dbp_hub_counts k0, k;
    dbp_op *op;
    int i;
    if (!sub) { ok(0, "subscribe"); return; }
    op = dbp_pool_call(direct, 1, (const char *const[]){ "PING" }, NULL, NULL); /* its connection, counted before */
    dbp_op_wait(op, 3000);
    dbp_op_free(op);
    spin(h, 200);
    dbp_hub_stats(h, &k0);
    op = dbp_pool_call(direct, 4, (const char *const[]){ "CLIENT", "KILL", "TYPE", "pubsub" }, NULL, NULL);
    dbp_op_wait(op, 3000);
    dbp_op_free(op);
    for (i = 0; i < 100 && !resubscribed; i++) spin(h, 20);
    spin(h, 100);
    dbp_hub_stats(h, &k);
    ok(resubscribed == 1 && k.conns == k0.conns - 1,
       "dbp_sub_free from the RESUBSCRIBED callback ends the subscription: its connection closes (%d -> %d)", k0.conns, k.conns);
    close_pool(p);
    close_pool(direct);
}

/* A stream paused for its reader runs past its deadline: the error says what
   happened (on 1fddf2d it claimed a KILL QUERY that was never sent). */
static void paused_stream_timeout(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, MY_URL, "max=1");
<<<<<<< HEAD
    dbp_op_options o = { 300, 0 };
    dbp_op *op = dbp_pool_query_stream(p, "SELECT seq, REPEAT('y', 500) FROM seq_1_to_200000", NULL, 0, &o);
=======
    dbp_op_options o = { 300, 0, 0 };
    dbp_op *op = dbp_pool_query_stream(p, "SELECT seq, REPEAT('y', 500) FROM seq_1_to_200000", NULL, 0, &o);
>>>>>>> pg
    int rc;
    spin(h, 600); /* nobody reads: the batch fills, the stream pauses, the deadline passes */
    rc = dbp_op_rc(op);
    ok(rc == DBP_ETIMEOUT && !strstr(dbp_op_error(op)->message, "KILL") && strstr(dbp_op_error(op)->message, "paused"),
       "a stream paused for its reader times out saying so: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    ok(run_sql(p, "SELECT 1") == DBP_OK, "  the connection goes on");
    close_pool(p);
}

int main(void)
{
    dbp_hub *h;
    dbp_hub_counts k;
    const dbp_error *e;
    MY_URL = need_env("DBPOOL_TEST_MYSQL_URL");
    RD_URL = need_env("DBPOOL_TEST_REDIS_URL");
    e = dbp_op_error(NULL);
    ok(e && e->rc == DBP_ENOMEM && strstr(e->message, "out of memory"), "dbp_op_error(NULL): an out-of-memory error, not a crash (%s)",
       e ? e->message : "NULL");
    h = dbp_hub_open(NULL);
    pinned_killed(h, 1);
    pinned_killed(h, 0);
    pinned_killed_pool_freed(h);
    ops_freed_pending(h);
    stream_abandoned(h);
    pool_freed_busy(h);
    acquire_after_validation(h, 1);
    acquire_after_validation(h, 0);
    sub_closed_from_callback(h);
    sub_error_closed_from_callback(h);
    paused_stream_timeout(h);
    counts(h, &k);
    ok(k.ops == 0 && k.pools == 0 && k.conns == 0 && k.conns_dead_held == 0 && k.pending == 0,
       "at the end nothing is alive: ops %d, pools %d, connections %d, held %d", k.ops, k.pools, k.conns, k.conns_dead_held);
    dbp_hub_free(h, 5000);
    return done_testing();
}
