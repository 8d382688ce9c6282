/* Lifetime soak: SOAK_SECONDS (default 600) of the things a long-lived
   program does that once leaked or crashed, against real MariaDB and Redis:
   fire-and-forget ops, streams abandoned after a row, pools opened and
   dropped with work in flight, pinned connections the server kills under
   their holder, subscriptions closed from their own callbacks. Every
   SOAK_REPORT seconds (60) it drains, then prints RSS and the hub's live
   objects (dbp_hub_stats); they must stay flat: the same live objects at
   every report, and RSS at the last report within SOAK_RSS_SLACK_KB (4096)
   of the second (the first is taken while the allocator and the server
   libraries still warm up: their caches grow for a while, then stop).
   `make soak` runs it for ten minutes; CI runs a short version. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"
#include "helpers.h"

enum { MAXREPORTS = 256 };

static const char *MY, *RD;
static long long subs_closed, pins_killed, pools_dropped, streams_broken, fired;

static long rss_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static void close_on_subscribed(dbp_sub *sub, const dbp_message *m, void *ud)
{
    (void)ud;
    if (m->type == DBP_MSG_SUBSCRIBED) { subs_closed++; dbp_sub_free(sub); }
}

static void fire_and_forget(dbp_pool *my, dbp_pool *rd, int round)
{
    int i;
    for (i = 0; i < 10; i++) {
        char key[32], val[32];
        dbp_value v = dbp_v_int(round * 10 + i);
        const char *set[3] = { "SET", key, val };
        snprintf(key, sizeof key, "ls:%d", i);
        snprintf(val, sizeof val, "%d", round);
        dbp_op_free(dbp_pool_query(my, "SELECT ?", &v, 1, NULL));
        dbp_op_free(dbp_pool_call(rd, 3, set, NULL, NULL));
        fired += 2;
    }
}

static void broken_stream(dbp_pool *my)
{
    dbp_op *op = dbp_pool_query_stream(my, "SELECT seq, REPEAT('s', 200) FROM seq_1_to_3000", NULL, 0, NULL);
    const dbp_cell *row;
    size_t n;
    if (dbp_op_fetch_wait(op, 5000) == DBP_OK) dbp_op_fetch(op, &row, &n);
    dbp_op_free(op);
    streams_broken++;
}

static void pool_dropped(dbp_hub *h, int round)
{
    dbp_pool *p = open_pool_with(h, round % 2 ? RD : MY, "max=2", NULL, NULL);
    int j;
    if (!p) return;
    for (j = 0; j < 5; j++) {
        if (round % 2) dbp_op_free(dbp_pool_call(p, 1, (const char *const[]){ "PING" }, NULL, NULL));
        else dbp_op_free(dbp_pool_query(p, "SELECT SLEEP(0.005)", NULL, 0, NULL));
    }
    dbp_pool_free(p);
    pools_dropped++;
}

/* Acquire, have the server kill it, use it once more, let go. */
static void pinned_killed(dbp_hub *h, dbp_pool *p, dbp_pool *admin, int mysql)
{
    dbp_op *op = dbp_pool_acquire(p, NULL);
    dbp_conn *c = NULL;
    (void)h;
    if (dbp_op_wait(op, 5000) == DBP_OK) c = dbp_op_take_conn(op);
    dbp_op_free(op);
    if (!c) return;
    server_kill(admin, c, mysql);
    op = mysql ? dbp_conn_query(c, "SELECT 1", NULL, 0, NULL) : dbp_conn_call(c, 1, (const char *const[]){ "PING" }, NULL, NULL);
    dbp_op_wait(op, 5000);
    dbp_op_free(op);
    if (pins_killed % 2) dbp_conn_release(c); else dbp_conn_discard(c);
    pins_killed++;
}

int main(void)
{
    int secs = env_int("SOAK_SECONDS", 600), every = env_int("SOAK_REPORT", 60), slack = env_int("SOAK_RSS_SLACK_KB", 4096);
    long rss[MAXREPORTS];
    dbp_hub_counts k[MAXREPORTS];
    int nrep = 0, round = 0, i, flat = 1;
    long long start, next_report, end;
    dbp_hub *h;
    dbp_pool *my, *rd, *mya, *rda;
    MY = need_env("DBPOOL_TEST_MYSQL_URL");
    RD = need_env("DBPOOL_TEST_REDIS_URL");
    if (secs < 2 * every) every = secs / 4 > 0 ? secs / 4 : 1; /* a short run still reports a series */
    h = dbp_hub_open(NULL);
    my = open_pool_with(h, MY, "max=4", NULL, NULL);
    rd = open_pool_with(h, RD, "max=2", NULL, NULL);
    mya = open_pool_with(h, MY, "max=1", NULL, NULL);
    rda = open_pool_with(h, RD, "max=1", NULL, NULL);
    if (!my || !rd || !mya || !rda) { printf("Bail out! pools\n"); return 255; }
    start = dbp__now_us() / 1000;
    next_report = start + (every < secs ? every : secs) * 1000LL;
    end = start + secs * 1000LL;
    diag("%d s, a report every %d s: RSS and live objects after draining", secs, every);
    for (;;) {
        long long now = dbp__now_us() / 1000;
        if (now >= next_report || now >= end) {
            dbp_hub_run(h, 10000);   /* drain: what was fired settles and frees itself */
            spin(h, 50);
            if (nrep < MAXREPORTS) {
                dbp_hub_stats(h, &k[nrep]);
                rss[nrep] = rss_kb();
                diag("t=%4lld s  rss %6ld KB  ops %d (released %d)  pools %d (released %d)  conns %d (dead held %d)  | "
                     "fired %lld, streams broken %lld, pools dropped %lld, pins killed %lld, subs closed %lld",
                     (now - start) / 1000, rss[nrep], k[nrep].ops, k[nrep].ops_released, k[nrep].pools, k[nrep].pools_released,
                     k[nrep].conns, k[nrep].conns_dead_held, fired, streams_broken, pools_dropped, pins_killed, subs_closed);
                nrep++;
            }
            if (now >= end) break;
            next_report = now + every * 1000LL;
        }
        /* fire-and-forget with the backpressure any real loop has: without
           it the queue, and with it the allocator's high-water mark, would
           grow with how far submitting outruns the servers */
        if (dbp_hub_pending(h) < 200) {
            fire_and_forget(my, rd, round);
            pool_dropped(h, round);
        }
        broken_stream(my);
        if (round % 20 == 0) {
            const char *chan[1] = { "ls:chan" };
            pinned_killed(h, round % 40 ? rd : my, round % 40 ? rda : mya, round % 40 == 0);
            if (!dbp_pool_subscribe(rd, 1, chan, 0, NULL, close_on_subscribed, NULL, NULL)) diag("subscribe failed");
        }
        dbp_hub_step(h, 5);
        round++;
    }
    for (i = 1; i < nrep; i++)
        if (k[i].ops != k[0].ops || k[i].pools != k[0].pools || k[i].conns_dead_held != 0 || k[i].pools_released != 0 ||
            k[i].ops_released != 0)
            flat = 0;
    ok(nrep >= 2 && pins_killed > 0 && subs_closed > 0 && pools_dropped > 0 && streams_broken > 0,
       "%d reports; %lld ops fired and forgotten, %lld streams broken, %lld pools dropped busy, %lld pinned connections killed, %lld subscriptions closed from their callback",
       nrep, fired, streams_broken, pools_dropped, pins_killed, subs_closed);
    ok(flat, "the live objects stay flat from report to report (ops %d, pools %d at the first)", k[0].ops, k[0].pools);
    {
        int base = nrep >= 3 ? 1 : 0;
        ok(nrep >= 2 && rss[nrep - 1] - rss[base] <= slack, "RSS stays flat: %ld KB at report %d, %ld KB at the last (slack %d KB)",
           rss[base], base + 1, rss[nrep - 1], slack);
    }
    close_pool(my); close_pool(rd); close_pool(mya); close_pool(rda);
    dbp_hub_run(h, 5000);
    {
        dbp_hub_counts z;
        dbp_hub_stats(h, &z);
        ok(z.ops == 0 && z.pools == 0 && z.conns == 0 && z.conns_dead_held == 0, "at the end nothing is alive (ops %d, pools %d, conns %d)",
           z.ops, z.pools, z.conns);
    }
    dbp_hub_free(h, 5000);
    return done_testing();
}
