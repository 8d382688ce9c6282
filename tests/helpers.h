/* helpers.h - what the C tests share around a pool: opening one from a URL
   and options, closing it gracefully, stepping the hub for a while.
   Include after dbpool.h and tap.h. */
#ifndef DBPOOL_TEST_HELPERS_H
#define DBPOOL_TEST_HELPERS_H

/* Every error and event message a test sees, kept to check that none shows
   a password (and that an expected one came). */
static char all_messages[65536];
static void keep(const char *msg) __attribute__((unused));
static void keep(const char *msg)
{
    if (strlen(all_messages) + strlen(msg) + 2 < sizeof all_messages) {
        strcat(all_messages, msg);
        strcat(all_messages, "\n");
    }
}

/* Opens url?opts (opts may be NULL or empty) with the test's event hook (or
   none). On failure: a diag, and the message to on_fail when given (a test
   that keeps every message to check none shows a password). */
static dbp_pool *open_pool_with(dbp_hub *h, const char *url, const char *opts, dbp_event_fn hook,
                                void (*on_fail)(const char *message)) __attribute__((unused));
static dbp_pool *open_pool_with(dbp_hub *h, const char *url, const char *opts, dbp_event_fn hook,
                                void (*on_fail)(const char *message))
{
    char full[1024];
    dbp_pool_config cfg;
    dbp_error e;
    dbp_pool *p;
    snprintf(full, sizeof full, "%s%s%s", url, opts && *opts ? "?" : "", opts ? opts : "");
    dbp_pool_config_init(&cfg);
    cfg.url = full;
    cfg.on_event = hook;
    p = dbp_pool_open(h, &cfg, &e);
    if (!p) {
        diag("open failed: %s", e.message);
        if (on_fail) on_fail(e.message);
    }
    return p;
}

/* Closes gracefully (5 s for what runs), waits for it, frees. */
static void close_pool(dbp_pool *p) __attribute__((unused));
static void close_pool(dbp_pool *p)
{
    dbp_op *op = dbp_pool_close(p, 5000);
    dbp_op_wait(op, 10000);
    dbp_op_free(op);
    dbp_pool_free(p);
}

/* Steps the hub for ms milliseconds, whether or not ops are pending. */
static void spin(dbp_hub *h, int ms) __attribute__((unused));
static void spin(dbp_hub *h, int ms)
{
    long long end = dbp__now_us() / 1000 + ms;
    while (dbp__now_us() / 1000 < end) dbp_hub_step(h, 10);
}

/* Runs one statement (MySQL), waits up to 20 s, frees the op; a failure
   is shown as a diag. Returns its rc. */
static int run_sql(dbp_pool *p, const char *sql) __attribute__((unused));
static int run_sql(dbp_pool *p, const char *sql)
{
    dbp_op *op = dbp_pool_query(p, sql, NULL, 0, NULL);
    int rc = dbp_op_wait(op, 20000);
    if (rc != DBP_OK) diag("'%s': %s", sql, dbp_op_error(op)->message);
    dbp_op_free(op);
    return rc;
}

/* Acquires a pinned connection (5 s); NULL, with a diag, when none came. */
static dbp_conn *acquire_conn(dbp_pool *p) __attribute__((unused));
static dbp_conn *acquire_conn(dbp_pool *p)
{
    dbp_op *op = dbp_pool_acquire(p, NULL);
    dbp_conn *c = NULL;
    if (dbp_op_wait(op, 5000) == DBP_OK) c = dbp_op_take_conn(op);
    else diag("acquire: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    return c;
}

/* Has the server end a pinned connection, from another pool of the same
   server: KILL (MySQL) or CLIENT KILL ID (Redis). Returns the kill's rc. */
static int server_kill(dbp_pool *admin, const dbp_conn *c, int mysql) __attribute__((unused));
static int server_kill(dbp_pool *admin, const dbp_conn *c, int mysql)
{
    char id[64];
    dbp_op *op;
    int rc;
    if (mysql) {
        snprintf(id, sizeof id, "KILL %llu", dbp_conn_server_id(c));
        op = dbp_pool_query(admin, id, NULL, 0, NULL);
    } else {
        const char *argv[4] = { "CLIENT", "KILL", "ID", id };
        snprintf(id, sizeof id, "%llu", dbp_conn_server_id(c));
        op = dbp_pool_call(admin, 4, argv, NULL, NULL);
    }
    rc = dbp_op_wait(op, 5000);
    if (rc != DBP_OK) diag("kill %llu: %s", dbp_conn_server_id(c), dbp_op_error(op)->message);
    dbp_op_free(op);
    return rc;
}

#endif
