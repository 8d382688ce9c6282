/* bench_redis.c - GETs through dbpool's C API (dbp_pool_call, a pool of 4,
   automatic pipelining: many commands in flight, written together) against
   `redis-benchmark -c 8 -P 32 -t get`, in the same run.

     bench_redis [--only pool,redis-benchmark] [-n N] [--pool P] [--inflight K] [--keys KEYS]

   Environment: DBPOOL_TEST_REDIS_URL, DBPOOL_TEST_REDIS_PASSWORD,
   DBPOOL_TEST_REDIS_PORT (scripts/servers.sh env); BENCH_REDIS_N (GETs,
   300000; 30000 with BENCH_QUICK=1), BENCH_REDIS_POOL (4),
   BENCH_REDIS_INFLIGHT (2000), BENCH_REDIS_KEYS (10000),
   BENCH_REDIS_BENCHMARK (the redis-benchmark binary, default from PATH),
   BENCH_MAX_SECONDS (per measured phase, 120).

   Workload: GET of keys bench:k:<i> (i from a fixed pseudo-random sequence
   over KEYS keys, each holding the 3-byte value "xxx", redis-benchmark's
   default size); every reply checked. redis-benchmark GETs its own key
   "key:__rand_int__" (without -r the placeholder stays literal), which the
   setup also sets to "xxx", so both sides read a 3-byte value.

   The pool side keeps K ops in flight: a settle callback submits the next
   GET, so the replies read in one step are followed by as many commands,
   which the hub writes together before its next poll(). */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "dbpool.h"
#define BENCH_NAME "bench_redis"
#include "bench_common.h"

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* ==== setup ==== */

/* SET every key to "xxx", pipelined (the same pool the bench uses). */
static void ensure_keys(dbp_pool *pool, long nkeys)
{
    long i, base;
    const long batch = 1000;
    char key[48];
    for (base = 0; base <= nkeys; base += batch) {
        dbp_op *ops[1000];
        long n = 0;
        for (i = base; i < base + batch && i <= nkeys; i++) {
            const char *argv[3];
            if (i == nkeys) argv[1] = "key:__rand_int__"; /* redis-benchmark's key */
            else { snprintf(key, sizeof key, "bench:k:%ld", i); argv[1] = key; }
            argv[0] = "SET";
            argv[2] = "xxx";
            ops[n] = dbp_pool_call(pool, 3, argv, NULL, NULL);
            if (!ops[n]) bench_die("out of memory");
            n++;
        }
        for (i = 0; i < n; i++) {
            if (dbp_op_wait(ops[i], 30000) != DBP_OK) bench_die("setup SET failed: %s", dbp_op_error(ops[i])->message);
            dbp_op_free(ops[i]);
        }
    }
}

/* ==== the pool side ==== */

/* Op i is a GET of keys[i]; it is right when it returns the 3-byte value. */
typedef struct pool_ctx { dbp_pool *pool; char **keys; size_t *keylens; } pool_ctx;

static dbp_op *pool_submit(void *ctx, long i)
{
    pool_ctx *c = (pool_ctx *)ctx;
    const char *argv[2];
    size_t lens[2];
    argv[0] = "GET";
    lens[0] = 3;
    argv[1] = c->keys[i];
    lens[1] = c->keylens[i];
    return dbp_pool_call(c->pool, 2, argv, lens, NULL);
}

static int pool_check(void *ctx, const dbp_op *op, long i)
{
    const dbp_reply *rep = dbp_op_reply(op);
    (void)ctx; (void)i;
    return rep && rep->type == DBP_REPLY_STRING && rep->len == 3 && memcmp(rep->str, "xxx", 3) == 0;
}

static long run_pool(dbp_pool *pool, char **keys, size_t *keylens, long n, int inflight, double max_s,
                     long *errors, int *capped)
{
    pool_ctx c;
    c.pool = pool;
    c.keys = keys;
    c.keylens = keylens;
    return bench_run_window(pool, inflight, n, max_s, pool_submit, pool_check, &c, "bench_redis", errors, capped);
}

/* ==== redis-benchmark ==== */

/* Runs redis-benchmark (argv, no shell: the password needs no quoting) and
   returns its GET requests/s from --csv output, or -1. */
static double run_redis_benchmark(const char *bin, const char *port, const char *password, long n, double max_s)
{
    char ns[32], buf[8192];
    const char *argv[24];
    int fds[2], status, k = 0;
    size_t len = 0;
    ssize_t got;
    pid_t pid;
    double rate = -1, start = bench_now();
    char *line;
    snprintf(ns, sizeof ns, "%ld", n);
    argv[k++] = bin;
    argv[k++] = "-h"; argv[k++] = "127.0.0.1";
    argv[k++] = "-p"; argv[k++] = port;
    if (password && *password) {
        argv[k++] = "-a"; argv[k++] = password;
    }
    argv[k++] = "-c"; argv[k++] = "8";
    argv[k++] = "-P"; argv[k++] = "32";
    argv[k++] = "-t"; argv[k++] = "get";
    argv[k++] = "-n"; argv[k++] = ns;
    argv[k++] = "--csv";
    argv[k] = NULL;
    if (pipe(fds)) bench_die("pipe failed");
    fflush(stdout);
    pid = fork();
    if (pid < 0) bench_die("fork failed");
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execvp(bin, (char *const *)argv);
        fprintf(stderr, "cannot run %s\n", bin);
        _exit(127);
    }
    close(fds[1]);
    for (;;) {
        struct pollfd pfd;
        pfd.fd = fds[0];
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (bench_now() - start > max_s) {
            /* a benchmark that outlives the time limit is stopped */
            fprintf(stderr, "bench_redis: redis-benchmark ran past BENCH_MAX_SECONDS; stopped\n");
            kill(pid, SIGTERM);
            break;
        }
        if (poll(&pfd, 1, 1000) <= 0) continue;
        got = read(fds[0], buf + len, sizeof buf - 1 - len);
        if (got <= 0) break;
        len += (size_t)got;
        if (len == sizeof buf - 1) len = 0; /* keep the tail: the CSV line comes last */
    }
    buf[len] = '\0';
    close(fds[0]);
    waitpid(pid, &status, 0);
    for (line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "\"GET\",\"", 7)) rate = atof(line + 7);
    }
    if (rate < 0) fprintf(stderr, "bench_redis: could not read redis-benchmark's output:\n%s\n", buf);
    return rate;
}

/* ==== main ==== */

int main(int argc, char **argv)
{
    const char *url = getenv("DBPOOL_TEST_REDIS_URL");
    const char *password = getenv("DBPOOL_TEST_REDIS_PASSWORD");
    const char *port = getenv("DBPOOL_TEST_REDIS_PORT");
    const char *rb_bin = getenv("BENCH_REDIS_BENCHMARK") ? getenv("BENCH_REDIS_BENCHMARK") : "redis-benchmark";
    bench_args a;
    long n, nkeys;
    unsigned phases;
    int pipeline = (int)bench_env_long("BENCH_REDIS_PIPELINE", -1); /* -1: the pool's default */
    double max_s = bench_max_seconds(), rate_p = 0, rate_rb = 0;
    int want_pool = 0, want_rb = 0, rb_failed = 0;
    unsigned long long seed = 0x5eed5eedULL;
    char **keys, *keybuf, name_p[32];
    size_t *keylens;
    long i, errors = 0;

    bench_args_init(&a, "BENCH_REDIS", "KEYS", "pool,redis-benchmark", 300000, 30000, 10000, 4, 2000);
    phases = bench_parse_args(argc, argv, "--keys", "KEYS", &a);
    n = a.n;
    nkeys = a.size;
    want_pool = (phases & 1) != 0;
    want_rb = (phases & 2) != 0;
    if (!url || !*url || !port) bench_die("DBPOOL_TEST_REDIS_URL/_PORT are not set (run under scripts/with-servers.sh)");

    /* the keys of every GET, made before anything is timed */
    keys = (char **)malloc((size_t)n * sizeof *keys);
    keylens = (size_t *)malloc((size_t)n * sizeof *keylens);
    keybuf = (char *)malloc((size_t)n * 24);
    if (!keys || !keylens || !keybuf) bench_die("out of memory");
    for (i = 0; i < n; i++) {
        unsigned long long k = (bench_rand(&seed) >> 11) % (unsigned long long)nkeys;
        keys[i] = keybuf + (size_t)i * 24;
        keylens[i] = (size_t)snprintf(keys[i], 24, "bench:k:%llu", k);
    }

    if (want_pool) {
        dbp_pool *pool = bench_pool_open(url, a.pool, pipeline);
        dbp_stats st;
        double t0, secs;
        long done, werr = 0, warm = n / 20 < 1000 ? (n < 1000 ? n : 1000) : (n / 20 > 20000 ? 20000 : n / 20);
        int capped, wc;
        char extra[200];
        ensure_keys(pool, nkeys);
        printf("bench_redis: %ld GETs over %ld keys of 3 bytes\n", n, nkeys);
        (void)run_pool(pool, keys, keylens, warm, a.inflight, max_s, &werr, &wc);
        if (werr) bench_die("the warm-up GETs failed");
        t0 = bench_now();
        done = run_pool(pool, keys, keylens, n, a.inflight, max_s, &errors, &capped);
        secs = bench_now() - t0;
        dbp_pool_stats(pool, &st);
        snprintf(name_p, sizeof name_p, "c_pool%d", a.pool);
        snprintf(extra, sizeof extra, "dbpool C API dbp_pool_call, %d in flight, automatic pipelining; %d connections",
                 a.inflight, st.total);
        bench_print_rate("redis", name_p, done, secs, "GET/s", capped, extra);
        rate_p = secs > 0 ? (double)done / secs : 0;
        bench_pool_close(pool);
    }

    if (want_rb) {
        char extra[64];
        rate_rb = run_redis_benchmark(rb_bin, port, password, n, max_s);
        if (rate_rb > 0) {
            snprintf(extra, sizeof extra, "redis-benchmark -c 8 -P 32 -t get -n %ld", n);
            printf("[redis] redis_benchmark_c8_P32 = %.0f GET/s  (%s)\n", rate_rb, extra);
            fflush(stdout);
        } else {
            rb_failed = 1;
        }
    }

    if (rate_p > 0 && rate_rb > 0) {
        char rn[64];
        snprintf(rn, sizeof rn, "%s/redis_benchmark_c8_P32", name_p);
        bench_print_ratio("redis", rn, rate_p / rate_rb, 0.5);
    }
    free(keys);
    free(keylens);
    free(keybuf);
    if (errors) fprintf(stderr, "bench_redis: %ld GETs failed or returned a wrong value\n", errors);
    if (rb_failed) fprintf(stderr, "bench_redis: redis-benchmark failed\n");
    if (errors || rb_failed) return 1;
    return 0;
}
