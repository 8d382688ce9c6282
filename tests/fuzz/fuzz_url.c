/* fuzz_url - dbp_url_parse(), dbp_url_redact() and the settings resolution
   (dbp__settings_resolve, which also runs every option of the query string
   through dbp_pool_config_set) on arbitrary bytes.

   Invariants checked:
   - parse: a parsed URL is well formed (a lower-case scheme, 1..64 hosts
     without ' ', '/', '@', '[' or ']', ports 0..65535, named options), and
     the password it returns is the percent-decoding of the password span the
     parser documents (userinfo up to the last '@' before the query string,
     password after its first ':');
   - redact: every buffer size gives the same wanted length and a
     NUL-terminated prefix of the full redaction; the redaction does not
     depend on the password's bytes (replacing them changes nothing), and it
     never contains a password of 3 or more characters unless that text also
     appears in the URL outside the password (then it is not the password
     that shows: "mysql://abc:abc@h" may well print "abc");
   - resolve: it either succeeds with the parsed password, or fails with a
     bounded message that never shows the password: where the message holds
     the password's text, the same URL with a different password must give
     a message that holds it too (so it came from elsewhere).

   Hangs count as failures: run.sh passes -timeout so that a loop in, say,
   the password scrubber is reported with its input.

   A password of one to three '*' once made dbp__err_scrub() loop forever
   (tests/fuzz/crashes/fuzz_url/); such passwords are fuzzed like any other. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../../dbpool.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "fuzz_url: check failed: %s: ", #cond); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); abort(); } } while (0)

/* Case-insensitive search of a NUL-terminated needle in [h, h+n). */
static const char *find_ci(const char *h, size_t n, const char *needle)
{
    size_t m = strlen(needle), i, j;
    if (!m || m > n) return NULL;
    for (i = 0; i + m <= n; i++) {
        for (j = 0; j < m; j++)
            if (tolower((unsigned char)h[i + j]) != tolower((unsigned char)needle[j])) break;
        if (j == m) return h + i;
    }
    return NULL;
}

/* The raw password span [*s, *e) as the parser documents it; 0 if none. */
static int raw_password_span(const char *url, size_t len, size_t *s, size_t *e)
{
    const char *p = strstr(url, "://"), *auth, *end = url + len, *q, *at = NULL, *colon;
    if (!p) return 0;
    auth = p + 3;
    for (q = auth; q < end && *q != '?'; q++) if (*q == '@') at = q;
    if (!at) return 0;
    colon = (const char *)memchr(auth, ':', (size_t)(at - auth));
    if (!colon) return 0;
    *s = (size_t)(colon + 1 - url);
    *e = (size_t)(at - url);
    return 1;
}

static int hexv(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+n) into out (NUL-terminated); -1 on a bad escape. */
static int pct_decode(const char *s, size_t n, char *out)
{
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n) return -1;
            if (hexv((unsigned char)s[i + 1]) < 0 || hexv((unsigned char)s[i + 2]) < 0) return -1;
            out[o++] = (char)(hexv((unsigned char)s[i + 1]) * 16 + hexv((unsigned char)s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return 0;
}

/* Whether the password text legitimately shows elsewhere: in the URL
   outside the raw password span, or in a decoded component. */
static int password_elsewhere(const char *url, size_t len, size_t s, size_t e, const dbp_url *u, const char *pw)
{
    int i;
    if (find_ci(url, s, pw) || find_ci(url + e, len - e, pw)) return 1;
    if (u->user && find_ci(u->user, strlen(u->user), pw)) return 1;
    if (u->database && find_ci(u->database, strlen(u->database), pw)) return 1;
    for (i = 0; i < u->nhosts; i++)
        if (find_ci(u->hosts[i].host, strlen(u->hosts[i].host), pw)) return 1;
    for (i = 0; i < u->noptions; i++)
        if (find_ci(u->options[i].key, strlen(u->options[i].key), pw) ||
            find_ci(u->options[i].value, strlen(u->options[i].value), pw)) return 1;
    /* a password with a '*' may be spelled by the text around the
       redaction's own "***" ("//:*" in "2://:***@"); the check that the
       redaction does not depend on the password's bytes still covers it */
    if (strchr(pw, '*')) return 1;
    return 0;
}

static void check_parsed(const dbp_url *u)
{
    int i;
    const char *c;
    CHECK(u->scheme && u->scheme[0], "empty scheme");
    for (c = u->scheme; *c; c++)
        CHECK((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '+' || *c == '-' || *c == '.',
              "scheme character 0x%02x", (unsigned char)*c);
    CHECK(u->nhosts >= 1 && u->nhosts <= DBP_URL_MAX_HOSTS, "nhosts %d", u->nhosts);
    CHECK(u->noptions >= 0 && u->noptions <= DBP_URL_MAX_OPTIONS, "noptions %d", u->noptions);
    for (i = 0; i < u->nhosts; i++) {
        CHECK(u->hosts[i].host != NULL, "host %d is NULL", i);
        CHECK(strpbrk(u->hosts[i].host, " /@[]") == NULL, "host '%s' has a forbidden character", u->hosts[i].host);
        CHECK(u->hosts[i].port >= 0 && u->hosts[i].port <= 65535, "port %d", u->hosts[i].port);
        if (u->nhosts > 1) CHECK(u->hosts[i].host[0] != '\0', "empty host in a list");
    }
    for (i = 0; i < u->noptions; i++) {
        CHECK(u->options[i].key && u->options[i].value, "option %d has NULL parts", i);
    }
    if (u->database) CHECK(strchr(u->database, '/') == NULL, "'/' in database");
}

static void check_redact(const char *url, size_t len, const dbp_url *u, int parsed)
{
    static const size_t sizes[] = { 1, 2, 3, 8, 17, 64 };
    size_t want, i, ps = 0, pe = 0;
    char *full, canary[4] = { 'x', 'y', 'z', 0 };
    want = dbp_url_redact(url, canary, 0);
    CHECK(memcmp(canary, "xyz", 4) == 0, "n = 0 wrote into the buffer");
    full = (char *)malloc(want + 1);
    if (!full) return;
    CHECK(dbp_url_redact(url, full, want + 1) == want, "wanted length changed");
    CHECK(strlen(full) == want, "full redaction has length %lu, returned %lu", (unsigned long)strlen(full),
          (unsigned long)want);
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        char *b = (char *)malloc(n);
        if (!b) break;
        CHECK(dbp_url_redact(url, b, n) == want, "wanted length differs for n = %lu", (unsigned long)n);
        CHECK(memchr(b, '\0', n) != NULL, "not NUL-terminated for n = %lu", (unsigned long)n);
        CHECK(strlen(b) == (want < n - 1 ? want : n - 1), "truncated length for n = %lu", (unsigned long)n);
        CHECK(strncmp(b, full, strlen(b)) == 0, "truncated output is not a prefix for n = %lu", (unsigned long)n);
        free(b);
    }
    if (parsed && u->password && raw_password_span(url, len, &ps, &pe)) {
        const char *pw = u->password;
        /* the redaction does not depend on the password's bytes */
        if (pe > ps) {
            char *alt = (char *)malloc(len + 1), *alt_out;
            size_t k, alt_want;
            if (alt) {
                memcpy(alt, url, len + 1);
                for (k = ps; k < pe; k++) alt[k] = alt[k] == 'A' ? 'B' : 'A';
                alt_want = dbp_url_redact(alt, NULL, 0);
                alt_out = (char *)malloc(alt_want + 1);
                if (alt_out) {
                    dbp_url_redact(alt, alt_out, alt_want + 1);
                    CHECK(alt_want == want && strcmp(alt_out, full) == 0,
                          "the redaction depends on the password bytes: '%s' vs '%s'", full, alt_out);
                    free(alt_out);
                }
                free(alt);
            }
        }
        if (strlen(pw) >= 3 && !password_elsewhere(url, len, ps, pe, u, pw))
            CHECK(find_ci(full, want, pw) == NULL, "the redacted URL '%s' shows the password", full);
    }
    free(full);
}

/* Runs the resolution; returns its rc and leaves the message in msg. */
static int resolve(const char *url, char *msg, size_t n, const char *want_password)
{
    dbp_pool_config cfg;
    dbp__settings s;
    dbp_error err;
    int rc;
    dbp_pool_config_init(&cfg);
    cfg.url = url;
    memset(&err, 0x5a, sizeof err);
    rc = dbp__settings_resolve(&cfg, &s, &err);
    msg[0] = '\0';
    if (rc == DBP_OK) {
        if (want_password) CHECK(s.password && strcmp(s.password, want_password) == 0, "resolved password differs");
        else CHECK(s.password == NULL, "a password appeared from nowhere");
        CHECK(s.max >= 1 && s.min >= 0 && s.min <= s.max, "sizing max=%d min=%d", s.max, s.min);
        CHECK(s.connect_timeout >= 1 && s.backoff_min >= 1 && s.backoff_max >= s.backoff_min, "timeouts");
        CHECK(s.bk != NULL && s.bk->name != NULL, "no backend");
        CHECK(s.nreplicas == 0 || (s.bk->flags & DBP__BKF_REPLICAS), "replicas on a backend without a router for them");
        dbp__settings_free(&s);
        return rc;
    }
    CHECK(rc < 0 && err.rc == rc, "rc %d, err.rc %d", rc, err.rc);
    CHECK(memchr(err.message, '\0', sizeof err.message) != NULL, "error message not NUL-terminated");
    snprintf(msg, n, "%s", err.message);
    return rc;
}

/* The error message never shows the password: where the message of the URL
   contains the password's text, the same URL with another password of the
   same length (letters only, so nothing else changes) must show that text
   too - then it comes from elsewhere (a host, an option, the message's own
   words: "luster://" is in "redis-cluster://"), not from the password. */
static void check_resolve(const char *url, size_t len, const dbp_url *u, int parsed)
{
    char msg[DBP_ERRMSG_MAX], alt_msg[DBP_ERRMSG_MAX];
    size_t ps = 0, pe = 0;
    int rc;
    rc = resolve(url, msg, sizeof msg, parsed ? u->password : NULL);
    if (rc == DBP_OK) CHECK(parsed, "resolve accepted a URL the parser refused");
    if (rc == DBP_OK || !parsed || !u->password || strlen(u->password) < 3) return;
    if (!find_ci(msg, strlen(msg), u->password)) return;
    if (!raw_password_span(url, len, &ps, &pe)) return;
    {
        size_t plen = strlen(u->password), k;
        char *alt = (char *)malloc(len + plen + 1), *alt_pw = (char *)malloc(plen + 1);
        CHECK(alt && alt_pw, "out of memory");
        for (k = 0; k < plen; k++) alt_pw[k] = u->password[k] == 'A' || u->password[k] == 'a' ? 'B' : 'A';
        alt_pw[plen] = '\0';
        memcpy(alt, url, ps);
        memcpy(alt + ps, alt_pw, plen);
        memcpy(alt + ps + plen, url + pe, len - pe + 1);
        resolve(alt, alt_msg, sizeof alt_msg, alt_pw);
        CHECK(find_ci(alt_msg, strlen(alt_msg), u->password) != NULL,
              "the error message '%s' shows the password (with another password: '%s')", msg, alt_msg);
        free(alt);
        free(alt_pw);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url;
    dbp_url u;
    dbp_error err;
    int rc, parsed;
    if (size > 4096) return 0;
    url = (char *)malloc(size + 1);
    if (!url) return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    size = strlen(url); /* the API takes C strings */

    rc = dbp_url_parse(url, &u, &err);
    parsed = rc == DBP_OK;
    if (parsed) {
        size_t ps, pe;
        check_parsed(&u);
        if (u.password) {
            char *dec = (char *)malloc(size + 1);
            CHECK(raw_password_span(url, size, &ps, &pe), "a password without the documented span");
            if (dec) {
                CHECK(pct_decode(url + ps, pe - ps, dec) == 0 && strcmp(dec, u.password) == 0,
                      "the parsed password is not the decoded span");
                free(dec);
            }
        }
    } else {
        CHECK(rc == DBP_EURL && err.rc == DBP_EURL, "parse failed with rc %d", rc);
        CHECK(u.buf_ == NULL && u.password == NULL, "a failed parse left data behind");
    }
    check_redact(url, size, &u, parsed);
    check_resolve(url, size, &u, parsed);
    dbp_url_free(&u);
    free(url);
    return 0;
}
