/* tap.h - a few TAP helpers for the C tests (prove reads their output). */
#ifndef DBPOOL_TAP_H
#define DBPOOL_TAP_H
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

static int tap_n, tap_failed;

/* Line-buffered output: a test that aborts (a sanitizer's report) still shows
   every line it printed before, even through a pipe. */
static void tap_init(void) __attribute__((constructor));
static void tap_init(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

static void tap_vok(int cond, const char *fmt, va_list ap)
{
    tap_n++;
    if (!cond) tap_failed++;
    char desc[512], *p;
    printf("%sok %d - ", cond ? "" : "not ", tap_n);
    vsnprintf(desc, sizeof desc, fmt, ap);
    for (p = desc; *p; p++) if (*p == '\n' || *p == '\r') *p = ' ';
    printf("%s\n", desc);
    fflush(stdout);
}

static int ok(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vok(cond, fmt, ap);
    va_end(ap);
    return cond;
}

static void diag(const char *fmt, ...)
{
    va_list ap;
    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

#define is_int(got, want, ...) \
    (ok((long long)(got) == (long long)(want), __VA_ARGS__) ? 1 : \
     (diag("  got %lld, want %lld", (long long)(got), (long long)(want)), 0))

static int tap_str_eq(const char *got, const char *want) __attribute__((unused));
static int tap_str_eq(const char *got, const char *want)
{
    if (got && strcmp(got, want) == 0) return 1;
    diag("  got '%s', want '%s'", got ? got : "(null)", want);
    return 0;
}
#define is_str(got, want, ...) ok(tap_str_eq((got), (want)), __VA_ARGS__)

static int done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

/* An environment variable the test cannot run without: bail out loudly. */
static const char *need_env(const char *name) __attribute__((unused));
static const char *need_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        printf("Bail out! %s is not set (run the tests through scripts/test.sh)\n", name);
        exit(255);
    }
    return v;
}

/* Open file descriptors of this process, for leak checks. */
static int count_fds(void) __attribute__((unused));
static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL) if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory stream itself */
}
#endif
