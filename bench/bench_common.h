/* bench_common.h - small helpers shared by the C benchmarks (bench_mysql.c,
   bench_redis.c): the clock, environment knobs, the command line, the output
   format that bench/run.sh parses, and the window of ops in flight that
   drives the pool (include after dbpool.h, with BENCH_NAME defined: the
   program's name in its messages).

   Output format (one line per figure, one per ratio; run.sh greps them):

     [group] name = 12345 q/s  (free text)
     [group] ratio a/b = 4.10  (target >= 4: met)

   Everything else a benchmark prints is free text for humans. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef BENCH_NAME
#error "define BENCH_NAME (the program's name in messages) before including bench_common.h"
#endif

static void bench_die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, BENCH_NAME ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A positive integer from the environment, or def when unset or unusable. */
static long bench_env_long(const char *name, long def)
{
    const char *s = getenv(name);
    char *end;
    long v;
    if (!s || !*s) return def;
    v = strtol(s, &end, 10);
    if (*end || v <= 0) {
        fprintf(stderr, "bench: ignoring %s=%s (not a positive integer)\n", name, s);
        return def;
    }
    return v;
}

/* The number of operations: `var` if set, else `quick` under BENCH_QUICK=1,
   else `full`. */
static long bench_count(const char *var, long full, long quick)
{
    const char *q = getenv("BENCH_QUICK");
    long def = (q && *q && strcmp(q, "0") != 0) ? quick : full;
    return bench_env_long(var, def);
}

/* Seconds one measured phase may take before it stops submitting (the rate
   is then computed over what completed, and the line says so). */
static double bench_max_seconds(void)
{
    return (double)bench_env_long("BENCH_MAX_SECONDS", 120);
}

/* ==== the command line (both benchmarks) ====

     [--only PHASE,...] [-n N] [--pool P] [--inflight K] [SIZE_FLAG SIZE]

   SIZE_FLAG is the benchmark's own (--rows R for MySQL, --keys KEYS for
   Redis). The defaults come from <PREFIX>_N, _<SIZE>, _POOL and _INFLIGHT
   in the environment (BENCH_MYSQL_ROWS, ...), else from the arguments. */
typedef struct bench_args {
    const char *phases;   /* every phase, comma-separated: the default --only */
    const char *only;
    long n, size;
    int pool, inflight;
} bench_args;

static void bench_args_init(bench_args *a, const char *prefix, const char *size_name, const char *phases,
                            long n_full, long n_quick, long size, long pool, long inflight)
{
    char var[64];
    a->phases = a->only = phases;
    snprintf(var, sizeof var, "%s_N", prefix);
    a->n = bench_count(var, n_full, n_quick);
    snprintf(var, sizeof var, "%s_%s", prefix, size_name);
    a->size = bench_env_long(var, size);
    snprintf(var, sizeof var, "%s_POOL", prefix);
    a->pool = (int)bench_env_long(var, pool);
    snprintf(var, sizeof var, "%s_INFLIGHT", prefix);
    a->inflight = (int)bench_env_long(var, inflight);
}

static unsigned bench_phases(const char *only, const char *phases);

/* Parses the command line into *a; returns the phases --only asked for (bit
   i: the i-th of a->phases). A mistake prints the usage line and exits 2. */
static unsigned bench_parse_args(int argc, char **argv, const char *size_flag, const char *size_meta, bench_args *a)
{
    int i;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--only") && i + 1 < argc) a->only = argv[++i];
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) a->n = atol(argv[++i]);
        else if (!strcmp(argv[i], "--pool") && i + 1 < argc) a->pool = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--inflight") && i + 1 < argc) a->inflight = atoi(argv[++i]);
        else if (!strcmp(argv[i], size_flag) && i + 1 < argc) a->size = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--only %s] [-n N] [--pool P] [--inflight K] [%s %s]\n", argv[0], a->phases,
                    size_flag, size_meta);
            exit(2);
        }
    }
    if (a->n <= 0 || a->size <= 0 || a->pool <= 0 || a->inflight <= 0) bench_die("counts must be positive");
    return bench_phases(a->only, a->phases);
}

/* Which of `phases` (comma-separated, at most 8) the --only list names:
   bit i set for the i-th. A name not among them is fatal. */
static unsigned bench_phases(const char *only, const char *phases)
{
    char list[256], names[256], *tok, *name, *all[8];
    unsigned mask = 0;
    int n = 0, i;
    if (strlen(only) >= sizeof list || strlen(phases) >= sizeof names) bench_die("--only: list too long");
    strcpy(names, phases);
    for (name = strtok(names, ","); name && n < 8; name = strtok(NULL, ",")) all[n++] = name;
    strcpy(list, only);
    for (tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        for (i = 0; i < n && strcmp(tok, all[i]) != 0; i++) {}
        if (i == n) {
            fprintf(stderr, BENCH_NAME ": --only takes a comma-separated list of ");
            for (i = 0; i < n; i++) fprintf(stderr, "%s%s", i ? ", " : "", all[i]);
            fputc('\n', stderr);
            exit(1);
        }
        mask |= 1u << i;
    }
    return mask;
}

/* xorshift64*: the same id sequence in every phase and every run. */
static unsigned long long bench_rand(unsigned long long *s)
{
    unsigned long long x = *s;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

static void bench_print_rate(const char *group, const char *name, long count, double secs,
                             const char *unit, int capped, const char *extra)
{
    double rate = secs > 0 ? (double)count / secs : 0.0;
    printf("[%s] %s = %.0f %s  (%ld in %.2f s%s%s%s)\n", group, name, rate, unit, count, secs,
           capped ? "; STOPPED AT BENCH_MAX_SECONDS" : "", extra && *extra ? "; " : "",
           extra ? extra : "");
    fflush(stdout);
}

/* target <= 0: no target. */
static void bench_print_ratio(const char *group, const char *name, double ratio, double target)
{
    if (target > 0)
        printf("[%s] ratio %s = %.2f  (target >= %g: %s)\n", group, name, ratio, target,
               ratio >= target ? "met" : "NOT met");
    else
        printf("[%s] ratio %s = %.2f\n", group, name, ratio);
    fflush(stdout);
}

/* A hub of its own and a pool of `max` connections to url (pipeline > 0:
   that per-connection bound, else the pool's default); fatal on error. */
static dbp_pool *bench_pool_open(const char *url, int max, int pipeline)
{
    dbp_error e;
    dbp_pool_config cfg;
    dbp_pool *pool;
    dbp_hub *hub = dbp_hub_open(&e);
    if (!hub) bench_die("dbp_hub_open: %s", e.message);
    dbp_pool_config_init(&cfg);
    cfg.url = url;
    cfg.max = max;
    if (pipeline > 0) cfg.pipeline = pipeline;
    {
        /* BENCH_MYSQL_PREPARE=1: MySQL queries as server-side prepared statements, 0: as text */
        const char *ps = getenv("BENCH_MYSQL_PREPARE");
        if (ps && (!strcmp(ps, "1") || !strcmp(ps, "0"))) cfg.prepare = ps[0] - '0';
    }
    pool = dbp_pool_open(hub, &cfg, &e);
    if (!pool) bench_die("dbp_pool_open: %s", e.message);
    return pool;
}

/* Closes what bench_pool_open opened. */
static void bench_pool_close(dbp_pool *pool)
{
    dbp_hub *hub = dbp_pool_hub(pool);
    dbp_op_free(dbp_pool_close(pool, 5000));
    dbp_hub_free(hub, 10000);
}

/* ==== the window of ops in flight (both benchmarks' dbpool side) ==== */

/* Keeps `inflight` ops in flight through the pool's hub until n were
   submitted (or max_s passed): a slot is refilled from its op's settle
   callback, so the next op goes out in the same step, and settled ops are
   freed after the step (never inside a callback). The benchmark says how
   to submit op i and whether a settled op i is right. */
typedef dbp_op *(*bench_submit_fn)(void *ctx, long i);
typedef int (*bench_check_fn)(void *ctx, const dbp_op *op, long i);

typedef struct bench_window bench_window;
typedef struct bench_slot { bench_window *w; dbp_op *op; long i; } bench_slot;
struct bench_window {
    bench_submit_fn submit;
    bench_check_fn check;
    void *ctx;
    const char *name;
    long n, next, done, errors, submitted, steps, empty_steps;
    int stop;
    bench_slot *slots;
    dbp_op **garbage;
    int ngarbage, capgarbage;
    int *idle;            /* slots waiting for the main loop to refill them */
    int nidle;
};

static void bench_on_settle(dbp_op *op, void *ud);

static int bench_fill(bench_window *w, bench_slot *s)
{
    if (w->stop || w->next >= w->n) return 0;
    s->i = w->next++;
    s->op = w->submit(w->ctx, s->i);
    if (!s->op) { fprintf(stderr, "%s: out of memory submitting\n", w->name); exit(1); }
    w->submitted++;
    dbp_op_on_settle(s->op, bench_on_settle, s);
    return 1;
}

static void bench_on_settle(dbp_op *op, void *ud)
{
    bench_slot *s = (bench_slot *)ud;
    bench_window *w = s->w;
    if (dbp_op_rc(op) != DBP_OK) {
        if (++w->errors <= 3) fprintf(stderr, "%s: pool: %s\n", w->name, dbp_op_error(op)->message);
    } else if (!w->check(w->ctx, op, s->i)) {
        w->errors++;
    }
    w->done++;
    /* More ops than slots can settle in one step (an op submitted from a
       callback may settle before the step ends), so the list grows. */
    if (w->ngarbage == w->capgarbage) {
        dbp_op **g = (dbp_op **)realloc(w->garbage, (size_t)w->capgarbage * 2 * sizeof *g);
        if (!g) { fprintf(stderr, "%s: out of memory\n", w->name); exit(1); }
        w->garbage = g;
        w->capgarbage *= 2;
    }
    w->garbage[w->ngarbage++] = op;
    s->op = NULL;
    if (!bench_fill(w, s)) w->idle[w->nidle++] = (int)(s - w->slots);
}

static void bench_collect(bench_window *w)
{
    int i, n = w->nidle;
    for (i = 0; i < w->ngarbage; i++) dbp_op_free(w->garbage[i]);
    w->ngarbage = 0;
    w->nidle = 0;
    for (i = 0; i < n; i++)
        if (!bench_fill(w, &w->slots[w->idle[i]])) w->idle[w->nidle++] = w->idle[i];
}

/* Runs ops 0..n-1; returns how many were done, adds the wrong or failed ones
   to *errors. */
static long bench_run_window(dbp_pool *pool, int inflight, long n, double max_s, bench_submit_fn submit,
                             bench_check_fn check, void *ctx, const char *name, long *errors, int *capped)
{
    bench_window w;
    int i;
    double start = bench_now();
    memset(&w, 0, sizeof w);
    w.submit = submit;
    w.check = check;
    w.ctx = ctx;
    w.name = name;
    w.n = n;
    w.slots = (bench_slot *)calloc((size_t)inflight, sizeof *w.slots);
    w.capgarbage = inflight * 4;
    w.garbage = (dbp_op **)calloc((size_t)w.capgarbage, sizeof *w.garbage);
    w.idle = (int *)calloc((size_t)inflight, sizeof *w.idle);
    if (!w.slots || !w.garbage || !w.idle) { fprintf(stderr, "%s: out of memory\n", name); exit(1); }
    for (i = 0; i < inflight; i++) {
        w.slots[i].w = &w;
        if (!bench_fill(&w, &w.slots[i])) w.idle[w.nidle++] = i;
    }
    *capped = 0;
    while (w.done < w.submitted) {
        int rc;
        double el = bench_now() - start;
        if (el > max_s && !w.stop) { w.stop = 1; *capped = 1; }
        if (el > max_s + 30) {
            fprintf(stderr, "%s: %ld ops still pending 30 s after the time limit; giving up\n", name,
                    w.submitted - w.done);
            exit(1);
        }
        rc = dbp_hub_step(dbp_pool_hub(pool), 1000);
        w.steps++;
        if (rc == 0) w.empty_steps++;
        if (rc < 0) { fprintf(stderr, "%s: dbp_hub_step: %s\n", name, dbp_rc_name(rc)); exit(1); }
        bench_collect(&w);
    }
    bench_collect(&w);
    free(w.slots);
    free(w.garbage);
    free(w.idle);
    *errors += w.errors;
    if (getenv("BENCH_DEBUG"))
        fprintf(stderr, "%s: %ld ops, %ld hub steps, %ld of them settled nothing\n", name, w.done, w.steps,
                w.empty_steps);
    return w.done;
}

#endif
