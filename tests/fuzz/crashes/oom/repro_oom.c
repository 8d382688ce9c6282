/* repro_oom - minimal reproducers for the out-of-memory bugs that
   tests/test_oom.c found in dbpool.h. Each case fails exactly one
   allocation, picked by its size at a known moment, and exits 0 when
   dbpool behaves, 1 (or dies) when the bug is there.

     cc -std=c99 -g -I. tests/fuzz/crashes/oom/repro_oom.c -o build/repro_oom \
        $(pkg-config --cflags --libs libmariadb hiredis) -lm
     build/repro_oom b3|b4|b5|b6        (b3, b4, b5 need DBPOOL_TEST_MYSQL_URL)

   b3  dbp__my_make_result() fails on its fields array: the MYSQL_RES is
       freed twice (double free, the process aborts).
   b4  the connection struct cannot be allocated: the queued op waits
       forever (acquire_timeout=0), or until its acquire_timeout otherwise.
   b5  a streamed query fails to start (its dbp__stream cannot be
       allocated): the connection goes back to the pool with the unread
       result, and the next query fails with "Commands out of sync".
   b6  the first growth of the timer heap fails: the op's deadline is never
       armed; against a closed port, acquire_timeout=0.5 never fires.

   REPRO-CASES: b3:mysql b4:mysql b5:mysql b6 */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

static size_t fail_size;   /* fail the next allocation of exactly this size (0: none) */
static int failed;

static void *repro_malloc(size_t n)
{
    if (fail_size && n == fail_size) { fail_size = 0; failed = 1; return NULL; }
    return malloc(n);
}
static void *repro_realloc(void *p, size_t n)
{
    if (fail_size && n == fail_size) { fail_size = 0; failed = 1; return NULL; }
    return realloc(p, n);
}
#define DBP_MALLOC(n) repro_malloc(n)
#define DBP_REALLOC(p, n) repro_realloc((p), (n))
#define DBP_FREE(p) free(p)
#define DBPOOL_IMPLEMENTATION
#include "../../../../dbpool.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static dbp_pool *open_pool(dbp_hub *h, const char *url, const char *opts)
{
    char full[1024];
    dbp_pool_config cfg;
    dbp_error err;
    dbp_pool *p;
    snprintf(full, sizeof full, "%s?%s", url, opts);
    dbp_pool_config_init(&cfg);
    cfg.url = full;
    p = dbp_pool_open(h, &cfg, &err);
    if (!p) { fprintf(stderr, "open: %s\n", err.message); exit(2); }
    return p;
}

static const char *mysql_url(void)
{
    const char *u = getenv("DBPOOL_TEST_MYSQL_URL");
    if (!u || !*u) { fprintf(stderr, "DBPOOL_TEST_MYSQL_URL is not set\n"); exit(2); }
    return u;
}

static int closed_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static int b3(void)
{
    dbp_hub *h = dbp_hub_open(NULL);
    dbp_pool *p = open_pool(h, mysql_url(), "max=1");
    dbp_op *op;
    int rc;
    fail_size = 5 * sizeof(dbp_field);          /* r->fields of a 5-column result */
    op = dbp_pool_query(p, "SELECT 1, 2, 3, 4, 5", NULL, 0, NULL);
    rc = dbp_op_wait(op, 10000);                /* aborts here with the bug: double free */
    printf("b3: the query settled with %s (%s), allocation failed: %d\n", dbp_rc_name(rc),
           dbp_op_error(op)->message, failed);
    dbp_op_free(op);
    dbp_hub_free(h, 5000);
    return rc == DBP_ENOMEM ? 0 : 1;
}

static int b4(void)
{
    dbp_hub *h = dbp_hub_open(NULL);
    dbp_pool *p = open_pool(h, mysql_url(), "max=1&acquire_timeout=0");
    dbp_op *op;
    int rc;
    fail_size = sizeof(dbp_conn);
    op = dbp_pool_query(p, "SELECT 1", NULL, 0, NULL);
    rc = dbp_op_wait(op, 5000);
    printf("b4: after 5 s the op is %s (%s), allocation failed: %d\n", dbp_rc_name(rc),
           rc == DBP_PENDING ? "still queued, and nothing will ever open a connection for it" : dbp_op_error(op)->message,
           failed);
    dbp_op_free(op);
    dbp_hub_free(h, 1000);
    return rc == DBP_PENDING ? 1 : 0;
}

static int b5(void)
{
    dbp_hub *h = dbp_hub_open(NULL);
    dbp_pool *p = open_pool(h, mysql_url(), "max=1");
    dbp_op *op, *next;
    int rc;
    /* warm the connection first, so the failure hits the stream's own state */
    op = dbp_pool_query(p, "SELECT 1", NULL, 0, NULL);
    dbp_op_wait(op, 10000);
    dbp_op_free(op);
    fail_size = sizeof(dbp__stream);
    /* a small result: libmariadb reads it whole into its own buffer, so the
       socket is not readable and the pool sees nothing wrong with it */
    op = dbp_pool_query_stream(p, "SELECT 1 UNION ALL SELECT 2", NULL, 0, NULL);
    next = dbp_pool_query(p, "SELECT 'next'", NULL, 0, NULL);
    dbp_op_wait(op, 10000);
    rc = dbp_op_wait(next, 10000);
    printf("b5: the stream: %s (%s); the next query: %s (%s)\n", dbp_rc_name(dbp_op_rc(op)),
           dbp_op_error(op)->message, dbp_rc_name(rc), rc ? dbp_op_error(next)->message : "fine");
    dbp_op_free(op);
    dbp_op_free(next);
    dbp_hub_free(h, 5000);
    return rc == DBP_OK ? 0 : 1;
}

static int b6(void)
{
    char url[128];
    dbp_hub *h = dbp_hub_open(NULL);
    dbp_pool *p;
    dbp_op *op;
    int rc;
    snprintf(url, sizeof url, "mysql://nobody:pw@127.0.0.1:%d/none", closed_port());
    p = open_pool(h, url, "acquire_timeout=0.5&backoff_min=0.1&backoff_max=0.2");
    fail_size = 64 * sizeof(void *);            /* the first timer heap: 64 pointers */
    op = dbp_pool_query(p, "SELECT 1", NULL, 0, NULL);
    rc = dbp_op_wait(op, 5000);
    printf("b6: 5 s after a query with acquire_timeout=0.5 to a closed port, the op is %s, allocation failed: %d\n",
           dbp_rc_name(rc), failed);
    dbp_op_free(op);
    dbp_hub_free(h, 1000);
    return rc == DBP_PENDING ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (strcmp(c, "b3") == 0) return b3();
    if (strcmp(c, "b4") == 0) return b4();
    if (strcmp(c, "b5") == 0) return b5();
    if (strcmp(c, "b6") == 0) return b6();
    fprintf(stderr, "usage: %s b3|b4|b5|b6\n", argv[0]);
    return 2;
}
