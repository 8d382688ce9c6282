/* The Redis Cluster map parser (dbp__cluster_map_parse), alone: no server.
   CLUSTER SLOTS replies as the server writes them (RESP text, read by the
   header's own reader), then malformed, truncated and hostile ones: every
   range kept is in bounds and has a primary, a "" or "?" host is the node
   that was asked, nothing crashes. Table-driven. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"

/* One reply from RESP text; NULL when the text is not one whole reply. */
static dbp_reply *reply_of(const char *resp)
{
    redisReader *rd = redisReaderCreateWithFunctions(&dbp__rd_fns);
    void *obj = NULL;
    if (!rd) return NULL;
    if (redisReaderFeed(rd, resp, strlen(resp)) != REDIS_OK || redisReaderGetReply(rd, &obj) != REDIS_OK) obj = NULL;
    redisReaderFree(rd);
    return DBP__CAST(dbp_reply *, obj);
}


static const struct {
    const char *name, *resp;
    int want;               /* ranges kept, -1 not an array */
    const char *first;      /* "lo-hi host:port nreplicas" of the first range kept, or NULL */
} cases[] = {
    { "three primaries, one replica each",
      "*3\r\n"
      "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$2\r\nid\r\n"
      "*4\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n127.0.0.1\r\n:7002\r\n$2\r\nid\r\n*3\r\n$9\r\n127.0.0.1\r\n:7005\r\n$2\r\nid\r\n"
      "*4\r\n:10923\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nid\r\n*3\r\n$9\r\n127.0.0.1\r\n:7006\r\n$2\r\nid\r\n",
      3, "0-5460 127.0.0.1:7001 1" },
    { "an empty host is the node asked",
      "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$0\r\n\r\n:7001\r\n", 1, "0-16383 asked.example:7001 0" },
    { "a '?' host is the node asked",
      "*1\r\n*3\r\n:0\r\n:100\r\n*2\r\n$1\r\n?\r\n:7002\r\n", 1, "0-100 asked.example:7002 0" },
    { "not an array", "+OK\r\n", -1, NULL },
    { "an empty map", "*0\r\n", 0, NULL },
    { "a range past 16383 is skipped",
      "*2\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n*3\r\n:5\r\n:6\r\n*2\r\n$1\r\nh\r\n:2\r\n", 1, "5-6 h:2 0" },
    { "a negative or reversed range is skipped",
      "*2\r\n*3\r\n:-1\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n*3\r\n:9\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n", 0, NULL },
    { "bounds that are not integers",
      "*1\r\n*3\r\n$1\r\n0\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n", 0, NULL },
    { "a range without nodes", "*1\r\n*2\r\n:0\r\n:5\r\n", 0, NULL },
    { "a primary with a bad port drops its range",
      "*1\r\n*4\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:70000\r\n*2\r\n$1\r\nh\r\n:2\r\n", 0, NULL },
    { "a replica with a bad entry is left out",
      "*1\r\n*5\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n:42\r\n*2\r\n$1\r\nr\r\n:3\r\n", 1, "0-5 h:1 1" },
    { "a host name too long is refused",
      "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$70\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n:1\r\n", 0, NULL },
    { "entries that are not arrays", "*3\r\n:1\r\n$3\r\nabc\r\n$-1\r\n", 0, NULL },
    { "a port given as a string",
      "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n$4\r\n7001\r\n", 0, NULL },
};

int main(void)
{
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dbp_reply *r = reply_of(cases[i].resp);
        dbp__map_range m[8];
        int n = -2, good;
        char first[160] = "";
        if (r || cases[i].want == -1) n = dbp__cluster_map_parse(r, "asked.example", m, 8);
        if (n > 0) snprintf(first, sizeof first, "%d-%d %s:%d %d", m[0].lo, m[0].hi, m[0].node[0].host, m[0].node[0].port, m[0].nnodes - 1);
        good = n == cases[i].want && (!cases[i].first || strcmp(first, cases[i].first) == 0);
        if (!r && cases[i].want != -1) diag("  (the RESP text of this case did not parse)");
        ok(good, "%s: %d ranges%s%s", cases[i].name, n, n > 0 ? ", first " : "", first);
        dbp_reply_free(r);
    }
    {   /* more ranges than room: stops at max */
        dbp_reply *r = reply_of(cases[0].resp);
        dbp__map_range m[2];
        is_int(dbp__cluster_map_parse(r, "x", m, 2), 2, "a map larger than the room given stops at the room");
        dbp_reply_free(r);
    }
    is_int(dbp__cluster_map_parse(NULL, "x", NULL, 0), -1, "no reply: -1");
    return done_testing();
}
