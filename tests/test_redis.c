/* The Redis backend against a real redis-server: auth, replies of every
   type, pipelining order, close with pending commands, CLIENT KILL of idle
   and busy connections, a server restart, pub/sub across a kill, blocking
   commands on their own connection, transactions on a pinned connection. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"
#include "helpers.h"
#include <signal.h>

static const char *URL, *ACL_URL, *PASSWORD;

static void hook(dbp_pool *p, const dbp_event *ev, void *ud)
{
    (void)p; (void)ud;
    if (ev->type != DBP_EVENT_ENQUEUE) keep(ev->message);
}

static dbp_pool *open_pool(dbp_hub *h, const char *url, const char *opts)
{
    return open_pool_with(h, url, opts, hook, keep);
}

/* Runs a command given as words, waits, returns the op (caller frees). */
static dbp_op *cmdv(dbp_pool *p, int argc, const char **argv)
{
    dbp_op *op = dbp_pool_call(p, argc, argv, NULL, NULL);
    dbp_op_wait(op, 10000);
    if (dbp_op_rc(op) != DBP_OK) keep(dbp_op_error(op)->message);
    return op;
}

/* Runs a command given as words (counted for you), waits, returns the op. */
#define CMD(p, ...) cmdv((p), (int)(sizeof((const char *[]){ __VA_ARGS__ }) / sizeof(const char *)), \
                         (const char *[]){ __VA_ARGS__ })

static long long reply_int(dbp_op *op)
{
    const dbp_reply *r = dbp_op_reply(op);
    return r && r->type == DBP_REPLY_INTEGER ? r->integer : -999;
}

static void test_auth(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    dbp_op *op = CMD(p, "PING");
    const dbp_reply *r = dbp_op_reply(op);
    ok(r && r->type == DBP_REPLY_STATUS && strcmp(r->str, "PONG") == 0, "password-protected server: PING -> +PONG");
    ok(strncmp(dbp_pool_server_version(p), "7.", 2) == 0, "the server version was read: %s", dbp_pool_server_version(p));
    dbp_op_free(op);
    dbp_op_free(dbp_pool_close(p, 2000));
    dbp_pool_free(p);

    p = open_pool(h, ACL_URL, "max=1");
    op = CMD(p, "ACL", "WHOAMI");
    r = dbp_op_reply(op);
    ok(r && r->type == DBP_REPLY_STRING && strcmp(r->str, "dbpool") == 0, "ACL user + password: WHOAMI -> dbpool");
    dbp_op_free(op);
    dbp_op_free(dbp_pool_close(p, 2000));
    dbp_pool_free(p);

    {
        char bad[256];
        long long s, st, e;
        snprintf(bad, sizeof bad, "redis://:Wr0ngRedisPw@127.0.0.1:%s/0", need_env("DBPOOL_TEST_REDIS_PORT"));
        p = open_pool(h, bad, "acquire_timeout=10");
        op = CMD(p, "PING");
        dbp_op_times(op, &s, &st, &e);
        ok(dbp_op_rc(op) == DBP_EAUTH && dbp_rc_kind(DBP_EAUTH) == DBP_KIND_AUTH, "a wrong password is an auth error: %s", dbp_op_error(op)->message);
        ok((e - s) / 1000 < 3000, "  at once (%lld ms), not at the acquire timeout", (e - s) / 1000);
        dbp_op_free(op);
        op = CMD(p, "PING");
        ok(dbp_op_rc(op) == DBP_EAUTH, "  the next command fails fast too");
        {
            dbp_stats stt;
            dbp_pool_stats(p, &stt);
            ok(stt.connect_failures <= 2, "  no reconnect loop (%llu attempts)", stt.connect_failures);
        }
        dbp_op_free(op);
        dbp_op_free(dbp_pool_close(p, 1000));
        dbp_pool_free(p);
        snprintf(bad, sizeof bad, "redis://127.0.0.1:%s/0", need_env("DBPOOL_TEST_REDIS_PORT"));
        p = open_pool(h, bad, "acquire_timeout=10");
        op = CMD(p, "GET", "x");
        ok(dbp_op_rc(op) == DBP_EAUTH && strstr(dbp_op_error(op)->message, "NOAUTH"),
           "no password against a protected server: %s", dbp_op_error(op)->message);
        dbp_op_free(op);
        dbp_op_free(dbp_pool_close(p, 1000));
        dbp_pool_free(p);
    }
}

static void test_replies(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    const char *argv[3] = { "SET", "t:bin", NULL };
    size_t lens[3] = { 3, 5, 7 };
    dbp_op *op;
    const dbp_reply *r;
    argv[2] = "a\0b\r\nc";
    op = dbp_pool_call(p, 3, argv, lens, NULL);
    dbp_op_wait(op, 5000);
    r = dbp_op_reply(op);
    ok(r && r->type == DBP_REPLY_STATUS && strcmp(r->str, "OK") == 0, "status reply (+OK)");
    dbp_op_free(op);
    op = CMD(p, "GET", "t:bin");
    r = dbp_op_reply(op);
    ok(r && r->type == DBP_REPLY_STRING && r->len == 7 && memcmp(r->str, "a\0b\r\nc", 7) == 0,
       "binary bulk reply with NUL and CRLF round-trips");
    dbp_op_free(op);
    op = CMD(p, "GET", "t:nosuchkey");
    r = dbp_op_reply(op);
    ok(r && r->type == DBP_REPLY_NIL, "nil reply");
    dbp_op_free(op);
    op = CMD(p, "DEL", "t:n");
    dbp_op_free(op);
    op = CMD(p, "INCRBY", "t:n", "-5");
    is_int(reply_int(op), -5, "integer reply (negative)");
    dbp_op_free(op);
    op = CMD(p, "EVAL", "return {1, {2, {3, {4, 'deep'}}}, 'x', redis.status_reply('ST'), redis.error_reply('INNER')}", "0");
    r = dbp_op_reply(op);
    ok(r && r->type == DBP_REPLY_ARRAY && r->elements == 5 && r->element[0]->integer == 1 &&
       r->element[1]->element[1]->element[1]->element[1]->type == DBP_REPLY_STRING &&
       strcmp(r->element[1]->element[1]->element[1]->element[1]->str, "deep") == 0 &&
       r->element[3]->type == DBP_REPLY_STATUS && r->element[4]->type == DBP_REPLY_ERROR &&
       strstr(r->element[4]->str, "INNER") != NULL,
       "nested arrays four deep, with a status and an error inside");
    {
        dbp_reply *taken = dbp_op_take_reply(op);
        ok(taken && dbp_op_reply(op) == NULL, "a reply tree can be taken and freed with one call");
        dbp_reply_free(taken);
    }
    dbp_op_free(op);
    op = CMD(p, "NOSUCHCOMMAND");
    ok(dbp_op_rc(op) == DBP_EREDIS && strstr(dbp_op_error(op)->message, "unknown command") && dbp_op_error(op)->sent,
       "an error reply rejects the op with kind redis: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    op = CMD(p, "PING");
    ok(dbp_op_rc(op) == DBP_OK, "the connection is fine after an error reply");
    dbp_op_free(op);
    op = CMD(p, "SUBSCRIBE", "x");
    ok(dbp_op_rc(op) == DBP_EUSAGE && strstr(dbp_op_error(op)->message, "subscribe()"), "SUBSCRIBE via call is refused: %s", dbp_op_error(op)->message);
    dbp_op_free(op);
    op = CMD(p, "MULTI");
    ok(dbp_op_rc(op) == DBP_EUSAGE && strstr(dbp_op_error(op)->message, "pinned"), "MULTI on a pool is refused");
    dbp_op_free(op);
    dbp_op_free(dbp_pool_close(p, 2000));
    dbp_pool_free(p);
}

static void test_pipeline(dbp_hub *h)
{
    enum { N = 100000 };
    dbp_pool *p = open_pool(h, URL, "max=4");
    static dbp_op *ops[N];
    char buf[32];
    const char *argv[2];
    int i, good = 0;
    long long t0 = dbp__now_us();
    for (i = 0; i < N; i++) {
        snprintf(buf, sizeof buf, "%d", i);
        argv[0] = "ECHO"; argv[1] = buf;
        ops[i] = dbp_pool_call(p, 2, argv, NULL, NULL);
    }
    dbp_hub_run(h, 60000);
    for (i = 0; i < N; i++) {
        const dbp_reply *r = dbp_op_reply(ops[i]);
        snprintf(buf, sizeof buf, "%d", i);
        if (r && strcmp(r->str, buf) == 0) good++;
        dbp_op_free(ops[i]);
    }
    is_int(good, N, "100k pipelined commands: every reply matches its command (%.2f s)", (dbp__now_us() - t0) / 1e6);
    {
        dbp_stats st;
        dbp_pool_stats(p, &st);
        ok(st.total <= 4 && st.created <= 4, "  on at most 4 connections (created %llu)", st.created);
    }
    dbp_op_free(dbp_pool_close(p, 5000));
    dbp_pool_free(p);
}

static void test_close_pending(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    dbp_op *ops[500], *cl, *late;
    int i, good = 0;
    for (i = 0; i < 500; i++) {
        char b[16];
        const char *argv[3] = { "SET", "t:close", b };
        snprintf(b, sizeof b, "%d", i);
        ops[i] = dbp_pool_call(p, 3, argv, NULL, NULL);
    }
    cl = dbp_pool_close(p, -1);
    late = CMD(p, "PING");
    ok(dbp_op_rc(late) == DBP_ECLOSED, "a command during close is refused as closed");
    dbp_op_free(late);
    ok(dbp_op_wait(cl, 10000) == DBP_OK, "close with 500 pending commands settles");
    for (i = 0; i < 500; i++) { if (dbp_op_rc(ops[i]) == DBP_OK) good++; dbp_op_free(ops[i]); }
    is_int(good, 500, "every pending command ran before the sockets closed");
    dbp_op_free(cl);
    dbp_pool_free(p);
    p = open_pool(h, URL, "max=1");
    late = CMD(p, "GET", "t:close");
    ok(dbp_op_reply(late) && strcmp(dbp_op_reply(late)->str, "499") == 0, "the last write is there");
    dbp_op_free(late);
    dbp_op_free(dbp_pool_close(p, 2000));
    dbp_pool_free(p);
}

static void test_client_kill(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1&validate_after=0");
    dbp_pool *admin = open_pool(h, URL, "max=1");
    dbp_op *op = CMD(p, "CLIENT", "ID"), *k, *busy;
    char id[32];
    dbp_stats st;
    snprintf(id, sizeof id, "%lld", reply_int(op));
    dbp_op_free(op);
    k = CMD(admin, "CLIENT", "KILL", "ID", id);
    ok(reply_int(k) == 1, "CLIENT KILL of the idle connection");
    dbp_op_free(k);
    spin(h, 200);
    dbp_pool_stats(p, &st);
    ok(st.total == 0 && st.closed_dead + st.closed_error >= 1, "the idle socket's death was seen at once (total %d)", st.total);
    op = CMD(p, "PING");
    ok(dbp_op_rc(op) == DBP_OK, "the next command succeeds on a fresh connection, no user code");
    dbp_op_free(op);
    {
        /* Redis runs one command at a time: a busy connection is one blocked in BLPOP */
        const char *argv[3] = { "BLPOP", "t:never", "3" };
        dbp_op_free(CMD(admin, "DEL", "t:never"));
        busy = dbp_pool_call(p, 3, argv, NULL, NULL);
    }
    dbp_hub_run(h, 200);
    k = CMD(admin, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
    ok(reply_int(k) >= 1, "CLIENT KILL of the busy connections (%lld)", reply_int(k));
    dbp_op_free(k);
    dbp_op_wait(busy, 5000);
    ok(dbp_op_rc(busy) == DBP_ELOST && dbp_op_error(busy)->sent == 1 && strstr(dbp_op_error(busy)->message, "may or may not"),
       "a command on a killed busy connection is lost after send: %s", dbp_op_error(busy)->message);
    dbp_op_free(busy);
    op = CMD(p, "PING");
    ok(dbp_op_rc(op) == DBP_OK, "the pool recovers");
    dbp_op_free(op);
    {
        /* an idempotent command is retried once */
        dbp_op_options o = { 0, 1, 0, 0, 0 };
        const char *argv[3] = { "BLPOP", "t:never", "1" };
        busy = dbp_pool_call(p, 3, argv, NULL, &o);
        dbp_hub_run(h, 200);
        k = CMD(admin, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
        dbp_op_free(k);
        ok(dbp_op_wait(busy, 5000) == DBP_OK, "an op marked idempotent is retried once after the kill");
        dbp_op_free(busy);
        dbp_pool_stats(p, &st);
        ok(st.retried >= 1 && st.lost >= 1, "stats count the retry and the loss (retried %llu, lost %llu)", st.retried, st.lost);
    }
    dbp_op_free(dbp_pool_close(p, 2000)); dbp_pool_free(p);
    dbp_op_free(dbp_pool_close(admin, 2000)); dbp_pool_free(admin);
}

static int got_msgs, got_resub;
static char last_msg[64];
static void on_msg(dbp_sub *s, const dbp_message *m, void *ud)
{
    (void)s; (void)ud;
    if (m->type == DBP_MSG_MESSAGE || m->type == DBP_MSG_PMESSAGE) {
        got_msgs++;
        snprintf(last_msg, sizeof last_msg, "%.*s", (int)m->payload_len, m->payload);
    }
    if (m->type == DBP_MSG_RESUBSCRIBED) got_resub++;
}

static void test_pubsub(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2&backoff_min=0.05&backoff_max=0.2");
    const char *chans[] = { "t:chan" }, *pats[] = { "t:pat:*" };
    dbp_error e;
    dbp_sub *s = dbp_pool_subscribe(p, 1, chans, 1, pats, on_msg, NULL, &e);
    dbp_op *op;
    int i;
    ok(s != NULL, "subscribe to a channel and a pattern");
    spin(h, 300);
    op = CMD(p, "PUBLISH", "t:chan", "one"); dbp_op_free(op);
    op = CMD(p, "PUBLISH", "t:pat:x", "two"); dbp_op_free(op);
    for (i = 0; i < 50 && got_msgs < 2; i++) dbp_hub_step(h, 20);
    ok(got_msgs == 2 && strcmp(last_msg, "two") == 0, "messages on the channel and the pattern arrive");
    op = CMD(p, "CLIENT", "KILL", "TYPE", "pubsub");
    ok(reply_int(op) >= 1, "CLIENT KILL TYPE pubsub");
    dbp_op_free(op);
    for (i = 0; i < 100 && !got_resub; i++) dbp_hub_step(h, 20);
    ok(got_resub == 1 && dbp_sub_reconnects(s) == 1, "it reconnected and resubscribed, and said so");
    ok(strstr(all_messages, "subscription restored") != NULL, "the gap was reported through the error hook");
    op = CMD(p, "PUBLISH", "t:chan", "after"); dbp_op_free(op);
    for (i = 0; i < 50 && strcmp(last_msg, "after") != 0; i++) dbp_hub_step(h, 20);
    ok(strcmp(last_msg, "after") == 0, "a message published after the reconnect is received");
    dbp_sub_free(s);
    spin(h, 200);
    op = CMD(p, "PUBLISH", "t:chan", "nobody");
    ok(reply_int(op) == 0, "after close nobody is subscribed");
    dbp_op_free(op);
    dbp_op_free(dbp_pool_close(p, 2000));
    dbp_pool_free(p);
}

static void test_blocking(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=1");
    dbp_op *blk, *get;
    const char *argv[3] = { "BLPOP", "t:emptylist", "1" };
    long long s1, st1, e1, s2, st2, e2;
    dbp_op_free(CMD(p, "DEL", "t:emptylist"));
    blk = dbp_pool_call(p, 3, argv, NULL, NULL);
    get = CMD(p, "GET", "t:bin");
    dbp_op_times(get, &s2, &st2, &e2);
    ok(dbp_op_rc(get) == DBP_OK && dbp_op_state(blk) == DBP_OP_RUNNING,
       "a GET on max=1 completes while BLPOP blocks on a connection of its own");
    dbp_op_wait(blk, 5000);
    dbp_op_times(blk, &s1, &st1, &e1);
    ok(dbp_op_rc(blk) == DBP_OK && dbp_op_reply(blk)->type == DBP_REPLY_NIL && e1 > e2,
       "BLPOP times out after its 1 s with nil, after the GET (%lld ms)", (e1 - s1) / 1000);
    dbp_op_free(blk); dbp_op_free(get);
    dbp_op_free(dbp_pool_close(p, 2000));
    dbp_pool_free(p);
}

static void test_pinned(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2");
    dbp_op *a = dbp_pool_acquire(p, NULL), *op, *ex;
    dbp_conn *c;
    const char *multi[] = { "MULTI" }, *incr[] = { "INCR", "t:tx" }, *exec[] = { "EXEC" };
    dbp_op_wait(a, 5000);
    c = dbp_op_take_conn(a);
    dbp_op_free(a);
    dbp_op_free(CMD(p, "DEL", "t:tx"));
    dbp_op_free(dbp_conn_call(c, 1, multi, NULL, NULL));
    dbp_op_free(dbp_conn_call(c, 2, incr, NULL, NULL));
    op = dbp_conn_call(c, 2, incr, NULL, NULL);
    ex = dbp_conn_call(c, 1, exec, NULL, NULL);
    dbp_op_wait(ex, 5000);
    ok(dbp_op_reply(op) && strcmp(dbp_op_reply(op)->str, "QUEUED") == 0, "MULTI on a pinned connection queues");
    ok(dbp_op_reply(ex) && dbp_op_reply(ex)->elements == 2 && dbp_op_reply(ex)->element[1]->integer == 2, "EXEC returns both results");
    dbp_op_free(op); dbp_op_free(ex);
    dbp_op_free(dbp_conn_call(c, 1, multi, NULL, NULL));
    dbp_conn_release(c); /* left in MULTI: discarded, never handed out dirty */
    op = CMD(p, "GET", "t:tx");
    ok(dbp_op_reply(op) && strcmp(dbp_op_reply(op)->str, "2") == 0, "a connection released inside MULTI is not reused dirty");
    dbp_op_free(op);
    dbp_op_free(dbp_pool_close(p, 2000));
    dbp_pool_free(p);
}

static void test_restart(dbp_hub *h)
{
    dbp_pool *p = open_pool(h, URL, "max=2&acquire_timeout=20&backoff_min=0.05&backoff_max=0.5");
    dbp_op *op = CMD(p, "SET", "t:restart", "1"), *during[20];
    int i, good = 0, failed_in_time = 0;
    dbp_op_free(op);
    if (system("scripts/redis.sh kill >/dev/null 2>&1") != 0) diag("redis.sh kill failed");
    /* the hub sees the idle connection's end first (else, should the FIN
       come after the first GET is written, all twenty pipelined GETs are
       lost after send on it: right, but not what this test is about) */
    op = dbp_hub_sleep(h, 200);
    dbp_op_wait(op, -1);
    dbp_op_free(op);
    for (i = 0; i < 20; i++) {
        const char *argv[2] = { "GET", "t:restart" };
        dbp_op_options o = { 15000, 0, 0, 0, 0 };
        during[i] = dbp_pool_call(p, 2, argv, NULL, &o);
    }
    dbp_hub_run(h, 500);
    if (system("scripts/redis.sh start >/dev/null 2>&1") != 0) diag("redis.sh start failed");
    for (i = 0; i < 20; i++) {
        int rc = dbp_op_wait(during[i], 20000);
        if (rc == DBP_OK) good++;
        else if (rc != DBP_PENDING) failed_in_time++;
        if (rc != DBP_OK) diag("  op %d: %s", i, dbp_op_error(during[i])->message);
        dbp_op_free(during[i]);
    }
    ok(good + failed_in_time == 20 && good >= 1, "commands sent while the server was down all settle (%d ok, %d failed in time)",
       good, failed_in_time);
    op = CMD(p, "PING");
    ok(dbp_op_rc(op) == DBP_OK, "the pool recovered by itself after the restart");
    dbp_op_free(op);
    dbp_op_free(dbp_pool_close(p, 2000));
    dbp_pool_free(p);
}

int main(void)
{
    dbp_hub *h;
    int fds0;
    signal(SIGPIPE, SIG_DFL);
    URL = need_env("DBPOOL_TEST_REDIS_URL");
    ACL_URL = need_env("DBPOOL_TEST_REDIS_ACL_URL");
    PASSWORD = need_env("DBPOOL_TEST_REDIS_PASSWORD");
    fds0 = count_fds();
    h = dbp_hub_open(NULL);
    test_auth(h);
    test_replies(h);
    test_pipeline(h);
    test_close_pending(h);
    test_client_kill(h);
    test_pubsub(h);
    test_blocking(h);
    test_pinned(h);
    test_restart(h);
    dbp_hub_free(h, 5000);
    is_int(count_fds(), fds0, "no file descriptor leaked");
    ok(!strstr(all_messages, PASSWORD) && !strstr(all_messages, "Wr0ngRedisPw"), "no message contains a password");
    return done_testing();
}
