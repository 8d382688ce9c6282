/* bench_common.h - small helpers shared by the C benchmarks (bench_mysql.c,
   bench_redis.c): the clock, environment knobs and the output format that
   bench/run.sh parses.

   Output format (one line per figure, one per ratio; run.sh greps them):

     [group] name = 12345 q/s  (free text)
     [group] ratio a/b = 4.10  (target >= 4: met)

   Everything else a benchmark prints is free text for humans. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#endif
