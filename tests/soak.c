/* Soak: SOAK_SECONDS (default 120) of MySQL and Redis traffic, both through
   fault proxies that switch to a random fault every second or two
   (blackhole, latency, resets, refused connects), then invariants: every
   op settled, every reply belongs to its op, every acknowledged write is
   present, the pools recover, no descriptor leaked.

   Replies are checked one by one, not only counted. Each SET writes a value
   that names its key and its op; at most one op is in flight per key, so
   every GET has exactly one right answer: the last acknowledged value of its
   key, or the value of a SET that was rejected after it was sent (such a SET
   may have run, or may still run late, so its value stays possible for
   good). A SET rejected as never sent must never show up. Every SELECT
   echoes a tag that names its op. A reply given to the wrong command fails
   the run, with the key, the op and the value seen.

   The fault sequence is a pure function of the seed (SOAK_SEED, printed as
   parsed; a failing run prints it again with every fault it applied), drawn
   from its own generator so that timing cannot shift it:
   `SOAK_SEED=N SOAK_SECONDS=S make soak` replays it. `make soak` picks a
   random seed; CI runs a fixed list of seeds, a short run each. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"
#include "proxy.h"
#include "helpers.h"

enum { INFLIGHT = 32, NKEYS = 512, MAXZOMBIES = 16, MAXFAULTS = 4096, MAXINSERTS = 1 << 22 };

/* One key's knowledge: the value of its last acknowledged SET (0: none yet),
   the SETs that were rejected after sending (they may have run), whether an
   op on it is in flight, and whether it is still checkable. */
typedef struct key_state {
    long long acked;
    long long zombie[MAXZOMBIES];
    int nzombies, busy, unknown;
} key_state;

/* kind: 0 insert, 1 select (echoes its tag), 2 set, 3 get */
typedef struct slot { dbp_op *op; int kind, key; long long id; } slot;

typedef struct fault_rec { long long at_ms; int mysql; char what[48]; } fault_rec;

static const char *MYSQL_URL, *REDIS_URL;
static int MY_SRV_PORT, RD_SRV_PORT;
static key_state keys[NKEYS + 1];
static unsigned char insert_acked[MAXINSERTS];
static fault_rec faults[MAXFAULTS];
static int nfaults;
static long long violations;

static void bail(const char *message) { printf("Bail out! %s\n", message); }

static dbp_pool *open_pool(dbp_hub *h, const char *url)
{
    return open_pool_with(h, url, NULL, NULL, bail);
}

/* splitmix64: turns any seed (0 included) into a good xorshift state. */
static unsigned long long stream(unsigned long long seed, unsigned long long which)
{
    unsigned long long z = seed + which * 0x9E3779B97F4A7C15ULL + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z ? z : 1;
}

static unsigned long long fault_rng, op_rng;
static unsigned frnd(void) { return dbp__rand(&fault_rng); }
static unsigned ornd(void) { return dbp__rand(&op_rng); }

/* The next fault: which proxy, what, and how long until the one after. */
static void next_fault(fault_rec *f, long long at_ms, int *gap_ms)
{
    f->at_ms = at_ms;
    f->mysql = (int)(frnd() % 2);
    switch (frnd() % 7) {
    case 0: snprintf(f->what, sizeof f->what, "blackhole"); break;
    case 1: snprintf(f->what, sizeof f->what, "latency %u", 50 + frnd() % 800); break;
    case 2: snprintf(f->what, sizeof f->what, "reset-all"); break;
    case 3: {
        unsigned n = 1000 + frnd() % 200000;
        snprintf(f->what, sizeof f->what, "reset-after %u %s", n, frnd() % 2 ? "down" : "up");
        break;
    }
    case 4: snprintf(f->what, sizeof f->what, "refuse"); break;
    default: snprintf(f->what, sizeof f->what, "pass");
    }
    *gap_ms = 500 + (int)(frnd() % 1500);
}

static void violation(const char *fmt, const char *a, long long b, long long c)
{
    violations++;
    if (violations <= 20) {
        char line[256];
        snprintf(line, sizeof line, fmt, a, b, c);
        diag("VIOLATION: %s", line);
    }
}

/* Names carry the process id, so that two soaks on the same servers (a
   developer's and CI's) cannot write each other's keys and rows. */
static char TABLE[32];
static void key_name(char *out, size_t n, int key) { snprintf(out, n, "soak:%ld:%d", (long)getpid(), key); }
static const char *sqlf(const char *fmt)
{
    static char buf[8][128];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof buf[i], fmt, TABLE);
    return buf[i];
}
static void set_value(char *out, size_t n, int key, long long op) { snprintf(out, n, "k%d:op%lld", key, op); }

/* Is `r` a value the key may hold now? On success *which is the op it names
   (0 for nil). */
static int key_allows(const key_state *k, int key, const dbp_reply *r, long long *which)
{
    int i, kk;
    long long op;
    char tail;
    if (r->type == DBP_REPLY_NIL) { *which = 0; }
    else if (r->type != DBP_REPLY_STRING || sscanf(r->str, "k%d:op%lld%c", &kk, &op, &tail) != 2 || kk != key)
        return 0;
    else *which = op;
    if (*which == k->acked) return 1;
    for (i = 0; i < k->nzombies; i++)
        if (k->zombie[i] == *which) return 1;
    return 0;
}

static void key_add_zombie(key_state *k, long long op)
{
    if (k->nzombies == MAXZOMBIES) { k->unknown = 1; return; } /* too many maybes: stop checking it */
    k->zombie[k->nzombies++] = op;
}

typedef struct tally { long long fulfilled, rejected, by_kind[16], acked_ins, acked_set, gets_checked; } tally;

/* One settled op: check its reply against what its key or tag allows. */
static void settle(slot *s, long long index, tally *t)
{
    int rc = dbp_op_rc(s->op);
    key_state *k = s->kind >= 2 ? &keys[s->key] : NULL;
    char name[32];
    if (k) { k->busy = 0; key_name(name, sizeof name, s->key); }
    if (rc != DBP_OK) {
        t->rejected++;
        t->by_kind[dbp_rc_kind(rc)]++;
        if (s->kind == 2 && dbp_op_error(s->op)->sent) key_add_zombie(k, index);
        if (s->kind == 0 && dbp_op_error(s->op)->sent && s->id < MAXINSERTS) insert_acked[s->id] = 2; /* may be there */
        return;
    }
    t->fulfilled++;
    switch (s->kind) {
    case 0:
        t->acked_ins++;
        if (s->id < MAXINSERTS) insert_acked[s->id] = 1;
        break;
    case 1: {
        const dbp_result *r = dbp_op_result(s->op);
        const dbp_cell *c = r ? dbp_result_cell(r, 0, 0) : NULL;
        if (!c || !c->data || atoll(c->data) != index) violation("SELECT of op %s%lld got tag %lld", "", index, c && c->data ? atoll(c->data) : -1);
        break;
    }
    case 2: {
        const dbp_reply *r = dbp_op_reply(s->op);
        if (!r || r->type != DBP_REPLY_STATUS || strcmp(r->str, "OK") != 0)
            violation("SET %s (op %lld) got a reply that is not +OK (type %lld)", name, index, r ? (long long)r->type : -1);
        t->acked_set++;
        k->acked = index; /* its zombies stay: a SET rejected after send may still run late */
        break;
    }
    default: {
        const dbp_reply *r = dbp_op_reply(s->op);
        long long which = -1;
        t->gets_checked++;
        if (!k->unknown && (!r || !key_allows(k, s->key, r, &which)))
            violation("GET %s got a value no SET acknowledged or left in doubt (op %lld, value names op %lld)", name, index, which);
    }
    }
}

int main(void)
{
    const char *secs_s = getenv("SOAK_SECONDS"), *seed_s = getenv("SOAK_SEED");
    int secs = secs_s && *secs_s ? atoi(secs_s) : 120, fds0, i, pending = 0, gap = 0;
    unsigned long long seed = 88172645463325252ULL;
    slot slots[INFLIGHT];
    long long nops = 0, start, next_report, end, fault_at, insert_id = 0;
    tally t;
    char url[1024];
    proxy pm, pr;
    dbp_hub *h;
    dbp_pool *my, *rd, *mdirect, *rdirect;
    fault_rec pending_fault;
    memset(&t, 0, sizeof t);
    MYSQL_URL = need_env("DBPOOL_TEST_MYSQL_URL");
    REDIS_URL = need_env("DBPOOL_TEST_REDIS_URL");
    MY_SRV_PORT = atoi(need_env("DBPOOL_TEST_MYSQL_PORT"));
    RD_SRV_PORT = atoi(need_env("DBPOOL_TEST_REDIS_PORT"));
    if (seed_s && *seed_s) {
        char *endp;
        errno = 0;
        seed = strtoull(seed_s, &endp, 10);
        if (errno || *endp || *seed_s == '-') { printf("Bail out! SOAK_SEED must be a decimal number below 2^64\n"); return 255; }
    }
    printf("# seed %llu (SOAK_SEED), %d s (SOAK_SECONDS)\n", seed, secs);
    snprintf(TABLE, sizeof TABLE, "t_soak_%ld", (long)getpid());
    fault_rng = stream(seed, 1);
    op_rng = stream(seed, 2);
    fds0 = count_fds();
    if (proxy_start(&pm, MY_SRV_PORT) || proxy_start(&pr, RD_SRV_PORT)) { printf("Bail out! proxies\n"); return 255; }
    h = dbp_hub_open(NULL);
    mdirect = open_pool(h, MYSQL_URL);
    rdirect = open_pool(h, REDIS_URL);
    if (!mdirect || !rdirect) return 255;
    {   /* set-up, finished and checked before any load starts: nothing of it
           may race the writes it is meant to precede */
        const char *setup_sql[2];
        setup_sql[0] = sqlf("DROP TABLE IF EXISTS %s");
        setup_sql[1] = sqlf("CREATE TABLE %s (id BIGINT PRIMARY KEY)");
        const char *argv[NKEYS + 1];
        static char names[NKEYS + 1][32];
        dbp_op *a;
        for (i = 0; i < 2; i++) {
            a = dbp_pool_query(mdirect, setup_sql[i], NULL, 0, NULL);
            if (dbp_op_wait(a, 10000) != DBP_OK) { printf("Bail out! %s: %s\n", setup_sql[i], dbp_op_error(a)->message); return 255; }
            dbp_op_free(a);
        }
        argv[0] = "DEL";
        for (i = 1; i <= NKEYS; i++) { key_name(names[i], sizeof names[i], i); argv[i] = names[i]; }
        a = dbp_pool_call(rdirect, NKEYS + 1, argv, NULL, NULL);
        if (dbp_op_wait(a, 10000) != DBP_OK) { printf("Bail out! DEL soak:*: %s\n", dbp_op_error(a)->message); return 255; }
        dbp_op_free(a);
    }
    via(url, sizeof url, MYSQL_URL, MY_SRV_PORT, pm.listen_port,
        "max=6&connect_timeout=1&acquire_timeout=4&query_timeout=2&validate_after=0.5&backoff_max=0.5&keepalive=2");
    my = open_pool(h, url);
    via(url, sizeof url, REDIS_URL, RD_SRV_PORT, pr.listen_port,
        "max=3&connect_timeout=1&acquire_timeout=4&query_timeout=2&validate_after=0.5&backoff_max=0.5&keepalive=2");
    rd = open_pool(h, url);
    if (!my || !rd) return 255;
    for (i = 0; i < INFLIGHT; i++) slots[i].op = NULL;
    start = dbp__now_ms();
    next_report = start + 10000;
    end = start + secs * 1000LL;
    fault_at = 1000;
    next_fault(&pending_fault, fault_at, &gap);
    while (dbp__now_ms() < end) {
        long long now = dbp__now_ms();
        while (now - start >= fault_at && nfaults < MAXFAULTS) {
            proxy *px = pending_fault.mysql ? &pm : &pr;
            proxy_cmd(px, "pass");
            proxy_cmd(px, pending_fault.what);
            faults[nfaults++] = pending_fault;
            fault_at += gap;
            next_fault(&pending_fault, fault_at, &gap);
            if (now >= next_report) { /* where a crash happened, should one happen */
                diag("%lld s: %lld ops submitted; now %s on %s", (now - start) / 1000, nops, faults[nfaults - 1].what,
                     faults[nfaults - 1].mysql ? "MySQL" : "Redis");
                next_report = now + 10000;
            }
        }
        for (i = 0; i < INFLIGHT; i++) {
            slot *s = &slots[i];
            dbp_op_options o = { 5000, 0, 0, 0, 0 };
            if (s->op) {
                if (dbp_op_state(s->op) < DBP_OP_FULFILLED) continue;
                settle(s, s->id, &t);
                dbp_op_free(s->op);
                s->op = NULL;
            }
            s->id = ++nops; /* the op's name: its tag, its SET value (an insert's is its row id) */
            s->kind = (int)(ornd() % 4);
            if (s->kind >= 2) { /* a free key: at most one op in flight per key */
                int tries;
                for (tries = 0; tries < 8; tries++) {
                    s->key = 1 + (int)(ornd() % NKEYS);
                    if (!keys[s->key].busy) break;
                }
                if (keys[s->key].busy) s->kind = 1;
            }
            switch (s->kind) {
            case 0: {
                dbp_value v = dbp_v_int(++insert_id);
                s->op = dbp_pool_query(my, sqlf("INSERT INTO %s VALUES (?)"), &v, 1, &o);
                s->key = 0;
                s->id = insert_id;
                break;
            }
            case 1: {
                dbp_value v = dbp_v_int(s->id);
                o.idempotent = 1;
                s->op = dbp_pool_query(my, sqlf("SELECT ?, COUNT(*) FROM %s"), &v, 1, &o);
                break;
            }
            case 2: {
                char key[32], val[48];
                const char *argv[3];
                key_name(key, sizeof key, s->key);
                set_value(val, sizeof val, s->key, s->id);
                argv[0] = "SET"; argv[1] = key; argv[2] = val;
                s->op = dbp_pool_call(rd, 3, argv, NULL, &o);
                keys[s->key].busy = 1;
                break;
            }
            default: {
                char key[32];
                const char *argv[2];
                key_name(key, sizeof key, s->key);
                argv[0] = "GET"; argv[1] = key;
                o.idempotent = 1;
                s->op = dbp_pool_call(rd, 2, argv, NULL, &o);
                keys[s->key].busy = 1;
            }
            }
            if (!s->op) { printf("Bail out! submit failed\n"); return 255; }
        }
        dbp_hub_step(h, 20);
    }
    proxy_cmd(&pm, "pass");
    proxy_cmd(&pr, "pass");
    dbp_hub_run(h, 15000);
    for (i = 0; i < INFLIGHT; i++) {
        slot *s = &slots[i];
        if (!s->op) continue;
        if (dbp_op_state(s->op) < DBP_OP_FULFILLED) pending++;
        else settle(s, s->id, &t);
        dbp_op_free(s->op);
        s->op = NULL;
    }
    diag("%lld ops: %lld fulfilled, %lld rejected (connection %lld, timeout %lld, sql %lld, redis %lld, other %lld); %lld GETs checked",
         nops, t.fulfilled, t.rejected, t.by_kind[DBP_KIND_CONNECTION], t.by_kind[DBP_KIND_TIMEOUT], t.by_kind[DBP_KIND_SQL],
         t.by_kind[DBP_KIND_REDIS], t.by_kind[DBP_KIND_USAGE] + t.by_kind[DBP_KIND_CLOSED] + t.by_kind[DBP_KIND_AUTH],
         t.gets_checked);
    ok(nops > 1000, "soak ran %d s with %lld ops", secs, nops);
    is_int(pending, 0, "every op settled");
    ok(t.by_kind[DBP_KIND_SQL] == 0 && t.by_kind[DBP_KIND_REDIS] == 0 && t.by_kind[DBP_KIND_USAGE] == 0 && t.by_kind[DBP_KIND_AUTH] == 0,
       "faults gave only connection and timeout errors");
    {   /* every acknowledged write is there, with the value it was given */
        long long lost_ins = 0, lost_set = 0, id, unchecked = 0;
        unsigned char *have = DBP__CAST(unsigned char *, calloc((size_t)insert_id + 2, 1));
        const char *argv[NKEYS + 1];
        static char names[NKEYS + 1][32];
        dbp_op *q = dbp_pool_query(mdirect, sqlf("SELECT id FROM %s"), NULL, 0, NULL);
        if (dbp_op_wait(q, 20000) == DBP_OK) {
            const dbp_result *r = dbp_op_result(q);
            size_t row;
            for (row = 0; row < r->nrows; row++) {
                id = atoll(r->cells[row].data);
                if (id > 0 && id <= insert_id) have[id] = 1;
                else violation("row %s%lld is not an insert of this run (%lld)", "", id, insert_id);
            }
        } else lost_ins = insert_id;
        dbp_op_free(q);
        for (id = 1; id <= insert_id && id < MAXINSERTS; id++) {
            if (insert_acked[id] == 1 && !have[id]) { lost_ins++; violation("INSERT %s%lld acknowledged, row missing (%lld)", "", id, 0); }
            if (insert_acked[id] == 0 && have[id]) violation("INSERT %s%lld rejected as never sent, yet its row exists (%lld)", "", id, 0);
        }
        free(have);
        argv[0] = "MGET";
        for (i = 1; i <= NKEYS; i++) { key_name(names[i], sizeof names[i], i); argv[i] = names[i]; }
        q = dbp_pool_call(rdirect, NKEYS + 1, argv, NULL, NULL);
        if (dbp_op_wait(q, 20000) != DBP_OK) lost_set = NKEYS;
        else
            for (i = 1; i <= NKEYS; i++) {
                const dbp_reply *e = dbp_op_reply(q)->element[i - 1];
                long long which = -1;
                if (keys[i].unknown) { unchecked++; continue; }
                if (key_allows(&keys[i], i, e, &which)) continue;
                if (which == 0) { lost_set++; violation("SET %s acknowledged (op %lld), key missing (%lld)", names[i], keys[i].acked, 0); }
                else violation("%s holds the value of op %lld; its last acknowledged SET was op %lld", names[i], which, keys[i].acked);
            }
        dbp_op_free(q);
        diag("acknowledged: %lld inserts, %lld SETs; lost: %lld, %lld; %lld keys left unchecked (too many SETs in doubt)",
             t.acked_ins, t.acked_set, lost_ins, lost_set, unchecked);
        ok(lost_ins == 0 && lost_set == 0 && t.acked_ins > 0 && t.acked_set > 0, "every acknowledged write is present (%lld + %lld)",
           t.acked_ins, t.acked_set);
        is_int((int)violations, 0, "every reply belongs to its op; no write reported unsent ran");
    }
    {
        dbp_op *a = dbp_pool_query(my, "SELECT 1", NULL, 0, NULL), *b = dbp_pool_call(rd, 1, (const char *const[]){ "PING" }, NULL, NULL);
        ok(dbp_op_wait(a, 10000) == DBP_OK && dbp_op_wait(b, 10000) == DBP_OK, "both pools recovered");
        dbp_op_free(a); dbp_op_free(b);
    }
    {
        dbp_op *a = dbp_pool_query(mdirect, sqlf("DROP TABLE %s"), NULL, 0, NULL);
        dbp_op_wait(a, 5000);
        dbp_op_free(a);
    }
    dbp_hub_free(h, 10000);
    proxy_stop(&pm);
    proxy_stop(&pr);
    is_int(count_fds(), fds0, "no file descriptor leaked");
    if (tap_failed) {
        diag("replay: SOAK_SEED=%llu SOAK_SECONDS=%d make soak", seed, secs);
        diag("the %d faults applied (ms from the start, proxy, fault):", nfaults);
        for (i = 0; i < nfaults; i++) diag("  %6lld %-5s %s", faults[i].at_ms, faults[i].mysql ? "MySQL" : "Redis", faults[i].what);
    }
    return done_testing();
}
