/* bench_pgsql.c - point selects by primary key on PostgreSQL: dbpool's C API
   (a pool of P, K ops in flight, one thread) on pgbench's own table, to be
   compared with `pgbench -S` in the same run (bench/pgbench.sh runs both).

     bench_pgsql [-n N] [--pool P] [--inflight K] [--prepare]

   Environment: DBPOOL_TEST_PG_URL (required; scripts/with-servers.sh sets
   it; bench/pgbench.sh adds sslmode=disable, as it gives pgbench).

   Workload: pgbench -S's statement, SELECT abalance FROM pgbench_accounts
   WHERE aid = $1, with aid uniform over the table's rows (pgbench -i makes
   them: 100000 per scale unit), each reply checked (one row). Sent with
   PQsendQueryParams: the extended protocol with an unnamed statement, a
   parse per query, which is what pgbench -M extended does; -M simple
   splices the value into the text, -M prepared parses once. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "dbpool.h"

static long long rows_n = 100000;
static unsigned long long rng = 88172645463325252ULL;
static long long done, failed, target;
static dbp_pool *pool;
static dbp_op **settled_ops;
static size_t nsettled, capsettled;

static long long next_aid(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (long long)(rng % (unsigned long long)rows_n) + 1;
}

static void submit(void);

static void on_settle(dbp_op *op, void *ud)
{
    (void)ud;
    if (dbp_op_rc(op) == DBP_OK && dbp_op_result(op) && dbp_op_result(op)->nrows == 1) done++;
    else { failed++; if (failed < 5) fprintf(stderr, "bench_pgsql: %s\n", dbp_op_error(op)->message); }
    if (nsettled == capsettled) {
        capsettled = capsettled ? capsettled * 2 : 256;
        settled_ops = (dbp_op **)realloc(settled_ops, capsettled * sizeof *settled_ops);
    }
    settled_ops[nsettled++] = op; /* (a callback must not free its own op) */
    if (done + failed + 0 < target) submit();
}

static long long submitted;
static void submit(void)
{
    dbp_value v;
    dbp_op *op;
    if (submitted >= target) return;
    submitted++;
    v = dbp_v_int(next_aid());
    op = dbp_pool_query(pool, "SELECT abalance FROM pgbench_accounts WHERE aid = $1", &v, 1, NULL);
    dbp_op_on_settle(op, on_settle, NULL);
}

static double run_phase(dbp_hub *h, long long n, int inflight)
{
    long long t0;
    int i;
    target = n;
    submitted = done = failed = 0;
    t0 = dbp_clock_us();
    for (i = 0; i < inflight; i++) submit();
    while (done + failed < n) {
        size_t k;
        dbp_hub_step(h, 100);
        for (k = 0; k < nsettled; k++) dbp_op_free(settled_ops[k]);
        nsettled = 0;
    }
    return (double)(dbp_clock_us() - t0) / 1e6;
}

int main(int argc, char **argv)
{
    const char *url = getenv("DBPOOL_TEST_PG_URL");
    long long n = 200000;
    int pool_size = 8, inflight = 64, prepare = 0, i;
    char full[1024];
    dbp_pool_config cfg;
    dbp_error e;
    dbp_hub *h;
    dbp_op *op;
    double secs;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) n = atoll(argv[++i]);
        else if (strcmp(argv[i], "--pool") == 0 && i + 1 < argc) pool_size = atoi(argv[++i]);
        else if (strcmp(argv[i], "--inflight") == 0 && i + 1 < argc) inflight = atoi(argv[++i]);
        else if (strcmp(argv[i], "--prepare") == 0) prepare = 1;
        else { fprintf(stderr, "usage: bench_pgsql [-n N] [--pool P] [--inflight K] [--prepare]\n"); return 2; }
    }
    if (!url) { fprintf(stderr, "bench_pgsql: DBPOOL_TEST_PG_URL is not set\n"); return 2; }
    snprintf(full, sizeof full, "%s%smax=%d&min=%d%s", url, strchr(url, '?') ? "&" : "?", pool_size, pool_size,
             prepare ? "&prepare=true" : "");
    h = dbp_hub_open(NULL);
    dbp_pool_config_init(&cfg);
    cfg.url = full;
    pool = dbp_pool_open(h, &cfg, &e);
    if (!pool) { fprintf(stderr, "bench_pgsql: %s\n", e.message); return 1; }
    op = dbp_pool_query(pool, "SELECT count(*) FROM pgbench_accounts", NULL, 0, NULL);
    if (dbp_op_wait(op, 30000) != DBP_OK) {
        fprintf(stderr, "bench_pgsql: no pgbench table (run pgbench -i first): %s\n", dbp_op_error(op)->message);
        return 1;
    }
    rows_n = atoll(dbp_result_cell(dbp_op_result(op), 0, 0)->data);
    dbp_op_free(op);
    run_phase(h, n / 10 > 1000 ? n / 10 : 1000, inflight); /* warm-up: connections open, caches hot */
    secs = run_phase(h, n, inflight);
    printf("[pg] c_pool%d_%s = %.0f q/s  (%lld in %.2f s; dbpool C API, %d in flight, %s; %lld failed)\n", pool_size,
           prepare ? "ps" : "text", (double)done / secs, done, secs, inflight,
           prepare ? "prepare=true" : "text (extended, unnamed)", failed);
    dbp_op_free(dbp_pool_close(pool, 5000));
    dbp_pool_free(pool);
    dbp_hub_free(h, 5000);
    free(settled_ops);
    return failed ? 1 : 0;
}
