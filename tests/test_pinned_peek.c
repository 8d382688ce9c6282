/* The peek before the first write covers pinned connections too.

   A pool checks an idle connection's socket for EOF before it writes an op
   on it (dbp__conn_dead_before_write), so an op on a connection the server
   had already closed is known unsent. A pinned connection (dbp_pool_acquire:
   transactions, the REPL's session, migrate) did not get that check: a
   statement sent on one the server closed a moment before was reported
   "lost after send; it may or may not have run" (sent=1), so a caller such
   as the REPL could not know that running it again is safe.

   Here the pinned connection is killed from a pool on a second hub (so that
   nothing polls the victim's socket and sees the EOF early), 200 ms pass
   without its hub stepping, then an op is submitted on it: it must be
   rejected with kind connection and sent == 0. On the header of 3ef2592
   (before the peek covered pinned connections) the MySQL case FAILS: the
   query was written and then lost (DBP_ELOST, sent=1). (Redis already
   peeked when it flushed its output buffer, so its case passed there too;
   it is kept as the guard for the same rule.)

   Also: a live pinned connection is not mistaken for a dead one (queries
   one after another, a Redis pipeline of many commands at once), and the
   pool goes on after the dead one is released. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"
#include "helpers.h"
#include <time.h>

static const char *MY_URL, *RD_URL;

/* One op on the pinned connection: "SELECT 1" or PING. */
static dbp_op *one_op(dbp_conn *c, int mysql)
{
    static const char *const ping[1] = { "PING" };
    return mysql ? dbp_conn_query(c, "SELECT 1", NULL, 0, NULL) : dbp_conn_call(c, 1, ping, NULL, NULL);
}

static void sleep_ms(int ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

static void killed_then_used(dbp_hub *h, dbp_hub *side, int mysql)
{
    const char *name = mysql ? "mysql" : "redis";
    const char *url = mysql ? MY_URL : RD_URL;
    dbp_pool *p = open_pool_with(h, url, "max=2", NULL, NULL);
    dbp_pool *killer = open_pool_with(side, url, NULL, NULL, NULL);
    dbp_conn *c = p ? acquire_conn(p) : NULL;
    dbp_op *op;
    int i, rc, good = 1;
    if (!c || !killer) { ok(0, "%s: a pinned connection and a killer pool", name); return; }

    /* a live pinned connection: every op runs (the peek finds nothing) */
    for (i = 0; i < 20; i++) {
        op = one_op(c, mysql);
        if (dbp_op_wait(op, 5000) != DBP_OK) { good = 0; diag("%s", dbp_op_error(op)->message); }
        dbp_op_free(op);
    }
    ok(good && dbp_conn_ok(c), "%s: 20 ops one after another on a live pinned connection all run", name);
    if (!mysql) {
        dbp_op *many[50];
        good = 1;
        for (i = 0; i < 50; i++) many[i] = one_op(c, 0);
        for (i = 0; i < 50; i++) {
            if (dbp_op_wait(many[i], 5000) != DBP_OK) good = 0;
            dbp_op_free(many[i]);
        }
        ok(good && dbp_conn_ok(c), "redis: 50 commands pipelined at once on a live pinned connection all run");
    }

    ok(server_kill(killer, c, mysql) == DBP_OK, "%s: the pinned connection (server id %llu) killed from another hub", name,
       dbp_conn_server_id(c));
    sleep_ms(200); /* the server has closed it; its hub has not stepped */
    ok(dbp_conn_ok(c), "%s: its holder has not noticed yet (nothing polled it)", name);

    op = one_op(c, mysql);
    rc = dbp_op_wait(op, 5000);
    ok(rc != DBP_OK && dbp_rc_kind(rc) == DBP_KIND_CONNECTION,
       "%s: an op submitted on it is rejected with kind connection (%s)", name, dbp_rc_name(rc));
    ok(rc != DBP_OK && dbp_op_error(op)->sent == 0,
       "%s: ... and known NOT sent (sent=%d): %s", name, dbp_op_error(op)->sent, dbp_op_error(op)->message);
    dbp_op_free(op);
    ok(!dbp_conn_ok(c), "%s: ok() now says the pinned connection is dead", name);

    /* later ops: rejected at once, never sent */
    op = one_op(c, mysql);
    rc = dbp_op_wait(op, 1000);
    ok(rc != DBP_OK && dbp_op_error(op)->sent == 0, "%s: the next op is rejected unsent too", name);
    dbp_op_free(op);

    dbp_conn_release(c);
    c = acquire_conn(p);
    ok(c && dbp_conn_ok(c), "%s: a new pinned connection from the same pool", name);
    if (c) {
        op = one_op(c, mysql);
        ok(dbp_op_wait(op, 5000) == DBP_OK, "%s: and it runs the op", name);
        dbp_op_free(op);
        dbp_conn_release(c);
    }
    close_pool(p);
    close_pool(killer);
}

/* Several ops submitted at once on a pinned connection the server closed:
   all of them rejected unsent (the peek fails the connection before the
   first is written; the others were queued behind it). */
static void killed_then_batch(dbp_hub *h, dbp_hub *side, int mysql)
{
    const char *name = mysql ? "mysql" : "redis";
    const char *url = mysql ? MY_URL : RD_URL;
    dbp_pool *p = open_pool_with(h, url, "max=2", NULL, NULL);
    dbp_pool *killer = open_pool_with(side, url, NULL, NULL, NULL);
    dbp_conn *c = p ? acquire_conn(p) : NULL;
    dbp_op *ops[5];
    int i, unsent = 0;
    if (!c || !killer) { ok(0, "%s: a pinned connection and a killer pool", name); return; }
    server_kill(killer, c, mysql);
    sleep_ms(200);
    for (i = 0; i < 5; i++) ops[i] = one_op(c, mysql);
    for (i = 0; i < 5; i++) {
        if (dbp_op_wait(ops[i], 5000) != DBP_OK && !dbp_op_error(ops[i])->sent) unsent++;
        dbp_op_free(ops[i]);
    }
    is_int(unsent, 5, "%s: 5 ops submitted at once on it are all rejected unsent", name);
    dbp_conn_discard(c);
    close_pool(p);
    close_pool(killer);
}

int main(void)
{
    dbp_hub *h, *side;
    dbp_hub_counts k;
    MY_URL = need_env("DBPOOL_TEST_MYSQL_URL");
    RD_URL = need_env("DBPOOL_TEST_REDIS_URL");
    h = dbp_hub_open(NULL);
    side = dbp_hub_open(NULL);
    killed_then_used(h, side, 1);
    killed_then_used(h, side, 0);
    killed_then_batch(h, side, 1);
    killed_then_batch(h, side, 0);
    dbp_hub_run(h, 2000);
    dbp_hub_stats(h, &k);
    ok(k.ops == 0 && k.pools == 0 && k.conns == 0 && k.conns_dead_held == 0,
       "at the end nothing is alive: ops %d, pools %d, connections %d, held %d", k.ops, k.pools, k.conns, k.conns_dead_held);
    dbp_hub_free(side, 5000);
    dbp_hub_free(h, 5000);
    return done_testing();
}
