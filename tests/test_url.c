/* Pure parts, no server: URL parsing and redaction, option resolution, the
   parameter binder, slot hashing. Table-driven, garbage included. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../dbpool.h"
#include "tap.h"

static void test_url_ok(void)
{
    static const struct {
        const char *url, *scheme, *user, *password, *database, *host;
        int port, nhosts, noptions;
    } t[] = {
        { "mysql://app:secret@127.0.0.1:3306/app", "mysql", "app", "secret", "app", "127.0.0.1", 3306, 1, 0 },
        { "mysql://user:p%40ss@127.0.0.1:3306/app?max=8&connect_timeout=5", "mysql", "user", "p@ss", "app", "127.0.0.1", 3306, 1, 2 },
        { "mysql://user@localhost/app?socket=/run/mysqld/mysqld.sock", "mysql", "user", NULL, "app", "localhost", 0, 1, 1 },
        { "redis://:password@127.0.0.1:6379/2", "redis", NULL, "password", "2", "127.0.0.1", 6379, 1, 0 },
        { "redis://user:password@127.0.0.1:6379/0", "redis", "user", "password", "0", "127.0.0.1", 6379, 1, 0 },
        { "redis-cluster://:pw@127.0.0.1:7001,127.0.0.1:7002/?read_from=replica", "redis-cluster", NULL, "pw", NULL, "127.0.0.1", 7001, 2, 1 },
        { "mysql://u:p@[::1]:3307/db", "mysql", "u", "p", "db", "::1", 3307, 1, 0 },
        { "mysql://u:p%3Aw%20x@[fe80::1%25eth0]/db", "mysql", "u", "p:w x", "db", "fe80::1%eth0", 0, 1, 0 },
        { "MySQL://h", "mysql", NULL, NULL, NULL, "h", 0, 1, 0 },
        { "mysql://u:pa@ss@host/db", "mysql", "u", "pa@ss", "db", "host", 0, 1, 0 },
        { "mysql://u:pa/ss@host/db", "mysql", "u", "pa/ss", "db", "host", 0, 1, 0 },
        { "mysql://u:pw@host/db?init=SET%20@a%3D1", "mysql", "u", "pw", "db", "host", 0, 1, 1 },
        { "mysql://u:@host/db", "mysql", "u", "", "db", "host", 0, 1, 0 },
        { "mysql://host/my%2Ddb?x=1&&y=", "mysql", NULL, NULL, "my-db", "host", 0, 1, 2 },
        { "redis://h:1/", "redis", NULL, NULL, NULL, "h", 1, 1, 0 },
    };
    size_t i;
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        dbp_url u;
        dbp_error e;
        int rc = dbp_url_parse(t[i].url, &u, &e);
        if (!ok(rc == DBP_OK, "parses %s", t[i].url)) { diag("  %s", e.message); continue; }
        ok(strcmp(u.scheme, t[i].scheme) == 0 &&
           (t[i].user ? u.user && strcmp(u.user, t[i].user) == 0 : !u.user) &&
           (t[i].password ? u.password && strcmp(u.password, t[i].password) == 0 : !u.password) &&
           (t[i].database ? u.database && strcmp(u.database, t[i].database) == 0 : !u.database) &&
           strcmp(u.hosts[0].host, t[i].host) == 0 && u.hosts[0].port == t[i].port &&
           u.nhosts == t[i].nhosts && u.noptions == t[i].noptions,
           "  parts of %s", t[i].url);
        dbp_url_free(&u);
    }
}

static void test_url_bad(void)
{
    static const struct { const char *url, *says; } t[] = {
        { "", "scheme://" },
        { "mysql:/host/db", "scheme://" },
        { "://host", "scheme://" },
        { "my sql://host", "invalid character in scheme" },
        { "mysql://u:secret@host:99999/db", "port out of range" },
        { "mysql://u:secret@host:0/db", "port out of range" },
        { "mysql://u:secret@host:12x/db", "port is not a number" },
        { "mysql://u:secret@host:/db", "empty port" },
        { "mysql://u:sec%zzret@host/db", "percent-escape in the password" },
        { "mysql://u:secret@host/db%", "percent-escape in the database" },
        { "mysql://u:secret@[::1/db", "unterminated '['" },
        { "mysql://u:secret@[::1]x/db", "after ']'" },
        { "mysql://u:secret@host/db#frag", "'#' is not allowed" },
        { "mysql://u:secret@host/a/b", "'/' in the database" },
        { "mysql://u:secret@host/db?=v", "without a name" },
        { "mysql://u:secret@ho st/db", "invalid character in a host" },
        { "mysql://u:secret@h1,/db", "empty host after ','" },
        { "mysql://u:sec\nret@host/db", "control character" },
    };
    size_t i;
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        dbp_url u;
        dbp_error e;
        int rc = dbp_url_parse(t[i].url, &u, &e);
        ok(rc == DBP_EURL && strstr(e.message, t[i].says) != NULL && !strstr(e.message, "secret"),
           "refuses '%s' saying '%s'", t[i].url[0] ? t[i].url : "(empty)", t[i].says);
        if (rc != DBP_EURL || !strstr(e.message, t[i].says)) diag("  said: %s", e.message);
    }
}

static void test_redact(void)
{
    static const struct { const char *in, *out; } t[] = {
        { "mysql://app:secret@127.0.0.1:3306/app", "mysql://app:***@127.0.0.1:3306/app" },
        { "mysql://app@127.0.0.1/app", "mysql://app@127.0.0.1/app" },
        { "redis://:pw@h:1/0", "redis://:***@h:1/0" },
        { "mysql://u:p@ss/w?rd@host/db", "mysql://u:***@host/db" },
        { "mysql://u:pw@host/db?init=SET%20@a%3D1", "mysql://u:***@a%3D1" },
        { "not a url", "not a url" },
        { "mysql://u:secret@", "mysql://u:***@" },
    };
    size_t i;
    char buf[128];
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        dbp_url_redact(t[i].in, buf, sizeof buf);
        is_str(buf, t[i].out, "redacts %s", t[i].out);
    }
    ok(dbp_url_redact("mysql://u:secret@h/db", buf, 8) == strlen("mysql://u:***@h/db") && strlen(buf) == 7,
       "redact truncates safely and says the length it wanted");
}

static void test_garbage(void)
{
    /* random bytes and truncations never crash and never echo a password */
    unsigned long long seed = 42;
    char url[200], secret_url[] = "mysql://root:Sup3rS3cret@127.0.0.1:3306/db?max=4";
    int i, crashes = 0, leaked = 0;
    for (i = 0; i < 20000; i++) {
        dbp_url u;
        dbp_error e;
        size_t n = (size_t)(dbp__rand(&seed) % (sizeof url - 1)), k;
        for (k = 0; k < n; k++) url[k] = (char)(dbp__rand(&seed) % 255 + 1);
        url[n] = '\0';
        if (dbp_url_parse(url, &u, &e) == DBP_OK) dbp_url_free(&u);
    }
    for (i = 0; i <= (int)strlen(secret_url); i++) {
        dbp_url u;
        dbp_error e;
        char cut[sizeof secret_url];
        memcpy(cut, secret_url, (size_t)i);
        cut[i] = '\0';
        if (dbp_url_parse(cut, &u, &e) == DBP_OK) dbp_url_free(&u);
        else if (strstr(e.message, "Sup3rS3cret")) leaked++;
    }
    ok(crashes == 0, "20000 random URLs parsed or refused without a crash");
    ok(leaked == 0, "no truncated URL's error shows the password");
}

static void test_settings(void)
{
    dbp_pool_config cfg;
    dbp__settings s;
    dbp_error e;
    int rc;

    dbp_pool_config_init(&cfg);
    cfg.url = "mysql://app:pw@db.example:3307/shop?max=8&connect_timeout=2.5&idle_timeout=250ms&init=SET%20time_zone%3D%27%2B00:00%27&init=SET%20x%3D1&ssl-mode=required";
    rc = dbp__settings_resolve(&cfg, &s, &e);
    if (ok(rc == DBP_OK, "resolves a full mysql URL")) {
        ok(s.max == 8 && s.connect_timeout == 2500 && s.idle_timeout == 250 && s.port == 3307,
           "  query-string options (durations in seconds, 'ms' suffix)");
        ok(s.ninit == 2 && strcmp(s.init[0], "SET time_zone='+00:00'") == 0, "  repeated init statements");
        ok(s.ssl_mode == DBP__SSL_REQUIRED, "  ssl-mode, case-insensitive");
        is_str(s.charset, "utf8mb4", "  charset defaults to utf8mb4");
        ok(s.acquire_timeout == 30000 && s.min == 0 && s.max_lifetime == 1800000, "  defaults");
        dbp__settings_free(&s);
    } else diag("  %s", e.message);

    cfg.max = 3;
    cfg.connect_timeout_ms = 700;
    rc = dbp__settings_resolve(&cfg, &s, &e);
    ok(rc == DBP_OK && s.max == 3 && s.connect_timeout == 700, "an explicit config field wins over the URL");
    if (rc == DBP_OK) dbp__settings_free(&s);

    {
        static const struct { const char *url; int rc; const char *says; } bad[] = {
            { "mysql://u:hunter2@h/db?nosuch=1", DBP_EOPTION, "unknown option 'nosuch'" },
            { "mysql://u:hunter2@h/db?max=0", DBP_EOPTION, "'max' must be an integer >= 1" },
            { "mysql://u:hunter2@h/db?max=abc", DBP_EOPTION, "got 'abc'" },
            { "mysql://u:hunter2@h/db?connect_timeout=-1", DBP_EOPTION, "'connect_timeout' must be a duration" },
            { "mysql://u:hunter2@h/db?min=5&max=2", DBP_EOPTION, "'min' (5) exceeds 'max' (2)" },
            { "mysql://u:hunter2@h/db?ssl-mode=sometimes", DBP_EOPTION, "ssl-mode" },
            { "mysql://u:hunter2@h/db?ssl-mode=VERIFY_CA", DBP_EOPTION, "needs ssl-ca" },
            { "redis://:hunter2@h/0?charset=utf8", DBP_EOPTION, "'charset' does not apply to redis" },
            { "redis://:hunter2@h/zero", DBP_EURL, "database must be a number" },
            { "rediss://:hunter2@h:6380/0", DBP_EUNSUPPORTED, "rediss://" },
            { "oracle://u:hunter2@h/db", DBP_EURL, "unknown scheme 'oracle'" },
            { "postgres://u:hunter2@h/db?sslmode=sometimes", DBP_EOPTION, "ssl-mode" },
            { "postgres://u:hunter2@h/db?sslmode=verify-full", DBP_EOPTION, "needs ssl-ca" },
            { "postgres://u:hunter2@h/db?read_from=replica", DBP_EOPTION, "'read_from' does not apply to postgres" },
            { "redis://:hunter2@h/0?gssencmode=prefer", DBP_EOPTION, "'gssencmode' does not apply to redis" },
            { "postgresql://u:hunter2@h1,h2/db", DBP_EURL, "several hosts" },
            { "mysql://u:hunter2@h1,h2/db", DBP_EURL, "several hosts" },
            { "redis-cluster://:hunter2@h:1/3", DBP_EURL, "only database 0" },
            { "redis://user@h/0", DBP_EURL, "needs a password" },
        };
        size_t i;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            dbp_pool_config_init(&cfg);
            cfg.url = bad[i].url;
            rc = dbp__settings_resolve(&cfg, &s, &e);
            ok(rc == bad[i].rc && strstr(e.message, bad[i].says) && !strstr(e.message, "hunter2"),
               "refuses %s: %s", bad[i].url, bad[i].says);
            if (rc == DBP_OK) dbp__settings_free(&s);
            else if (!strstr(e.message, bad[i].says) || rc != bad[i].rc) diag("  rc %s: %s", dbp_rc_name(rc), e.message);
        }
    }

    dbp_pool_config_init(&cfg);
    unsetenv("DATABASE_URL");
    rc = dbp__settings_resolve(&cfg, &s, &e);
    ok(rc == DBP_EURL && strstr(e.message, "DATABASE_URL is not set"), "no URL and no DATABASE_URL: a clear error");
    setenv("DATABASE_URL", "mysql://envuser:envpw@10.1.2.3:3399/envdb", 1);
    rc = dbp__settings_resolve(&cfg, &s, &e);
    ok(rc == DBP_OK && strcmp(s.user, "envuser") == 0 && s.port == 3399, "DATABASE_URL is the default");
    if (rc == DBP_OK) dbp__settings_free(&s);
    cfg.backend = "redis";
    setenv("REDIS_URL", "redis://:rpw@10.0.0.9:6390/4", 1);
    rc = dbp__settings_resolve(&cfg, &s, &e);
    ok(rc == DBP_OK && strcmp(s.bk->name, "redis") == 0 && s.redis_db == 4 && s.port == 6390, "REDIS_URL is the Redis default");
    if (rc == DBP_OK) dbp__settings_free(&s);

    dbp_pool_config_init(&cfg);
    ok(dbp_pool_config_set(&cfg, "max-waiting", "7", &e) == DBP_OK && cfg.max_waiting == 7,
       "config_set accepts '-' for '_'");
    ok(dbp_pool_config_set(&cfg, "query_timeout", "1.5", &e) == DBP_OK && cfg.query_timeout_ms == 1500,
       "config_set: seconds to milliseconds");
    ok(dbp_pool_config_set(&cfg, "bogus", "1", &e) == DBP_EOPTION, "config_set: unknown option refused");
}

/* postgres:// and postgresql://: libpq's option names, percent-decoding,
   the pool's own options, defaults. */
static void test_pg_settings(void)
{
    dbp_pool_config cfg;
    dbp__settings s;
    dbp_error e;
    int rc;

    dbp_pool_config_init(&cfg);
    cfg.url = "postgres://app:p%40ss%3Aw0rd%201@db.example:6543/shop%2Dx?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem"
              "&application_name=migrate%20job&connect_timeout=2.5&max=4&init=SET%20TIME%20ZONE%20%27UTC%27";
    rc = dbp__settings_resolve(&cfg, &s, &e);
    if (ok(rc == DBP_OK, "resolves a full postgres URL")) {
        ok(strcmp(s.bk->name, "postgres") == 0 && s.port == 6543 && strcmp(s.host, "db.example") == 0, "  backend, host, port");
        is_str(s.password, "p@ss:w0rd 1", "  password percent-decoded ('@', ':', space)");
        is_str(s.database, "shop-x", "  database percent-decoded");
        ok(s.ssl_mode == DBP__SSL_VERIFY_IDENTITY && strcmp(s.ssl_ca, "/tmp/ca.pem") == 0, "  sslmode=verify-full, sslrootcert");
        is_str(s.name, "migrate job", "  application_name is the client name");
        ok(s.connect_timeout == 2500 && s.max == 4, "  the pool's own options");
        ok(s.ninit == 1 && strcmp(s.init[0], "SET TIME ZONE 'UTC'") == 0, "  init statements");
        is_str(s.gssencmode, "disable", "  gssencmode=disable unless asked");
        is_str(s.charset, "UTF8", "  client_encoding UTF8 by default");
        dbp__settings_free(&s);
    } else diag("  %s", e.message);

    cfg.url = "postgresql://u@[::1]/d?gssencmode=prefer&sslmode=require";
    rc = dbp__settings_resolve(&cfg, &s, &e);
    ok(rc == DBP_OK && strcmp(s.bk->name, "postgres") == 0 && s.port == 5432 && strcmp(s.host, "::1") == 0 &&
       strcmp(s.gssencmode, "prefer") == 0 && s.ssl_mode == DBP__SSL_REQUIRED,
       "postgresql:// too: default port 5432, IPv6, gssencmode and sslmode as asked");
    if (rc == DBP_OK) dbp__settings_free(&s);
    else diag("  %s", e.message);

    {
        static const struct { const char *mode; int want; } modes[] = {
            { "disable", DBP__SSL_DISABLED }, { "allow", DBP__SSL_PREFERRED }, { "prefer", DBP__SSL_PREFERRED },
            { "require", DBP__SSL_REQUIRED }, { "REQUIRED", DBP__SSL_REQUIRED },
        };
        size_t i;
        for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
            char url[128];
            snprintf(url, sizeof url, "postgres://u@h/d?sslmode=%s", modes[i].mode);
            dbp_pool_config_init(&cfg);
            cfg.url = url;
            rc = dbp__settings_resolve(&cfg, &s, &e);
            ok(rc == DBP_OK && s.ssl_mode == modes[i].want, "sslmode=%s", modes[i].mode);
            if (rc == DBP_OK) dbp__settings_free(&s);
        }
    }

    dbp_pool_config_init(&cfg);
    setenv("DATABASE_URL", "postgres://envuser:envpw@10.1.2.3/envdb", 1);
    rc = dbp__settings_resolve(&cfg, &s, &e);
    ok(rc == DBP_OK && strcmp(s.bk->name, "postgres") == 0 && strcmp(s.user, "envuser") == 0 && s.port == 5432,
       "a postgres:// DATABASE_URL is the default");
    if (rc == DBP_OK) dbp__settings_free(&s);
    unsetenv("DATABASE_URL");
    cfg.backend = "postgres";
    cfg.host = "127.0.0.1";
    rc = dbp__settings_resolve(&cfg, &s, &e);
    ok(rc == DBP_OK && strcmp(s.bk->name, "postgres") == 0 && s.port == 5432, "backend \"postgres\" without a URL");
    if (rc == DBP_OK) dbp__settings_free(&s);
}

/* $1..$n as PostgreSQL's lexer sees them. */
static void test_pg_params(void)
{
#ifndef DBPOOL_NO_PGSQL
    static const struct { const char *sql; size_t n; } counts[] = {
        { "SELECT $1", 1 }, { "SELECT $1, $2, $1", 2 }, { "SELECT $3", 3 }, { "SELECT '$1'", 0 },
        { "SELECT \"$1\"", 0 }, { "SELECT $$ $1 $$, $1", 1 }, { "SELECT $tag$ $2 $tag$ || $1", 1 },
        { "SELECT 1 -- $4\n, $1", 1 }, { "SELECT /* $2 /* $3 */ $4 */ $1", 1 }, { "SELECT a$1 FROM t", 0 },
        { "SELECT E'it\\'s $2', $1", 1 }, { "SELECT 'it''s $2', $1", 1 }, { "SELECT data ? 'k' FROM t WHERE id = $1", 1 },
        { "SELECT ?", 0 }, { "SELECT $10", 10 }, { "SELECT '$1", 0 }, { "SELECT $$ unterminated $1", 0 }, { "", 0 },
        { "SELECT $1::int8, $2::text", 2 },
    };
    size_t i;
    dbp_value v[2];
    dbp_error e;
    for (i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        size_t n = dbp__pg_count_params(counts[i].sql, strlen(counts[i].sql));
        ok(n == counts[i].n, "$n count of [%s] is %lu", counts[i].sql, (unsigned long)counts[i].n);
        if (n != counts[i].n) diag("  got %lu", (unsigned long)n);
    }
    v[0] = dbp_v_int(1);
    v[1] = dbp_v_textn("a\0b", 3);
    ok(dbp__pg_check_params("SELECT $1", 9, v, 1, &e) == DBP_OK, "check: one $1, one value");
    ok(dbp__pg_check_params("SELECT $1, $2", 13, v, 1, &e) == DBP_EPARAM && strstr(e.message, "uses $1..$2 but 1 parameter was given"),
       "check: $n count mismatch refused (%s)", e.message);
    ok(dbp__pg_check_params("SELECT 1", 8, v, 1, &e) == DBP_EPARAM && strstr(e.message, "no $n placeholder"),
       "check: values for a statement without placeholders refused");
    ok(dbp__pg_check_params("SELECT $1, $2", 13, v, 2, &e) == DBP_EPARAM && strstr(e.message, "NUL byte"),
       "check: text with a NUL byte refused (bytea is a blob)");
    v[1] = dbp_v_blob("a\0b", 3);
    ok(dbp__pg_check_params("SELECT $1, $2", 13, v, 2, &e) == DBP_OK, "check: a blob with a NUL byte is fine");
    v[1] = dbp_v_double(NAN);
    ok(dbp__pg_check_params("SELECT $1, $2", 13, v, 2, &e) == DBP_EPARAM && strstr(e.message, "NaN"), "check: NaN refused");
    {
        char out[16];
        size_t n = dbp__pg_unbytea("\\x610062ff", 10, out);
        ok(n == 4 && memcmp(out, "a\0b\xff", 4) == 0, "bytea hex form decoded");
        n = dbp__pg_unbytea("a\\000\\\\b", 8, out);
        ok(n == 4 && memcmp(out, "a\0\\b", 4) == 0, "bytea escape form decoded");
    }
#endif
}

static void test_pool_describe(void)
{
    dbp_hub *h = dbp_hub_open(NULL);
    dbp_pool_config cfg;
    dbp_error e;
    dbp_pool *p;
    char buf[200];
    dbp_pool_config_init(&cfg);
    cfg.url = "mysql://app:TopSecret@127.0.0.1:1/shop";
    p = dbp_pool_open(h, &cfg, &e);
    ok(p != NULL, "a pool opens without connecting");
    dbp_pool_describe(p, buf, sizeof buf);
    is_str(buf, "mysql://app@127.0.0.1:1/shop", "describe has no password");
    dbp_pool_free(p);
    cfg.url = "postgres://app:TopSecret@127.0.0.1:1/shop";
    p = dbp_pool_open(h, &cfg, &e);
    dbp_pool_describe(p, buf, sizeof buf);
    is_str(buf, "postgres://app@127.0.0.1:1/shop", "postgres: describe has no password");
    is_str(dbp_pool_backend(p), "postgres", "postgres: backend name");
    cfg.url = "mysql://app:TopSecret@127.0.0.1:1/shop?max=x";
    ok(dbp_pool_open(h, &cfg, &e) == NULL && !strstr(e.message, "TopSecret"), "open error has no password");
    dbp_pool_free(p);
    dbp_hub_free(h, 1000);
}

static void test_binder(void)
{
    static const struct { const char *sql; size_t n; } counts[] = {
        { "SELECT ?", 1 }, { "SELECT '?'", 0 }, { "SELECT \"?\"", 0 }, { "SELECT `?`", 0 },
        { "SELECT ? -- ?\n, ?", 2 }, { "SELECT ? # ?\n", 1 }, { "SELECT /* ? */ ?", 1 },
        { "SELECT 'it''s ?', ?", 1 }, { "SELECT 'a\\'?', ?", 1 }, { "SELECT ?--?", 2 },
        { "SELECT '?", 0 }, { "SELECT /* ?", 0 }, { "", 0 }, { "??", 2 },
    };
    size_t i, len;
    dbp_error e;
    char *out;
    dbp_value v[9];
    for (i = 0; i < sizeof counts / sizeof counts[0]; i++)
        is_int(dbp_sql_count_params(counts[i].sql, strlen(counts[i].sql)), counts[i].n, "placeholders in %s", counts[i].sql);

    v[0] = dbp_v_null(); v[1] = dbp_v_bool(1); v[2] = dbp_v_int(-42); v[3] = dbp_v_uint(18446744073709551615ULL);
    v[4] = dbp_v_double(0.1); v[5] = dbp_v_text("it's \"q\" \\ \n"); v[6] = dbp_v_blob("\0\xff", 2);
    v[7] = dbp_v_double(1e300); v[8] = dbp_v_textn("a\0b", 3);
    out = dbp_sql_bind("VALUES (?,?,?,?,?,?,?,?,?)", strlen("VALUES (?,?,?,?,?,?,?,?,?)"), v, 9, &len, &e);
    is_str(out, "VALUES (NULL,TRUE,-42,18446744073709551615,0.1e0,'it\\'s \\\"q\\\" \\\\ \\n',X'00FF',1e+300,'a\\0b')",
           "binds every type");
    dbp_free(out);
    out = dbp_sql_bind("SELECT '?', ?", strlen("SELECT '?', ?"), v, 1, &len, &e);
    is_str(out, "SELECT '?', NULL", "a quoted ? is left alone");
    dbp_free(out);
    {
        /* integers are written two digits at a time: every length, both ends */
        static const struct { long long i; const char *s; } ints[] = {
            { 0, "0" }, { 7, "7" }, { 10, "10" }, { 99, "99" }, { 100, "100" }, { 101, "101" },
            { 999, "999" }, { 1000, "1000" }, { 12345, "12345" }, { -1, "-1" }, { -10, "-10" },
            { -100, "-100" }, { 9223372036854775807LL, "9223372036854775807" },
            { -9223372036854775807LL - 1, "-9223372036854775808" }
        };
        static const struct { unsigned long long u; const char *s; } uints[] = {
            { 0, "0" }, { 9, "9" }, { 10, "10" }, { 1000000, "1000000" }, { 18446744073709551615ULL, "18446744073709551615" }
        };
        for (i = 0; i < sizeof ints / sizeof ints[0]; i++) {
            dbp_value x = dbp_v_int(ints[i].i);
            out = dbp_sql_bind("?", 1, &x, 1, &len, &e);
            is_str(out, ints[i].s, "integer %s", ints[i].s);
            dbp_free(out);
        }
        for (i = 0; i < sizeof uints / sizeof uints[0]; i++) {
            dbp_value x = dbp_v_uint(uints[i].u);
            out = dbp_sql_bind("?", 1, &x, 1, &len, &e);
            is_str(out, uints[i].s, "unsigned %s", uints[i].s);
            dbp_free(out);
        }
    }
    v[0] = dbp_v_double(NAN);
    ok(dbp_sql_bind("SELECT ?", 8, v, 1, &len, &e) == NULL && e.rc == DBP_EPARAM && strstr(e.message, "NaN"),
       "NaN refused: %s", e.message);
    v[0] = dbp_v_double(-INFINITY);
    ok(dbp_sql_bind("SELECT ?", 8, v, 1, &len, &e) == NULL && strstr(e.message, "infinite"), "infinity refused");
    ok(dbp_sql_bind("SELECT ?, ?", 11, v, 1, &len, &e) == NULL && e.rc == DBP_EPARAM &&
       strstr(e.message, "2 placeholders but 1 parameter was given"), "count mismatch: %s", e.message);
    ok(dbp_sql_bind("SELECT 1", 8, v, 1, &len, &e) == NULL && strstr(e.message, "0 placeholders"),
       "extra parameter refused");
    {
        /* an injection attempt stays inside its literal */
        dbp_value inj = dbp_v_text("x'); DROP TABLE t; --");
        out = dbp_sql_bind("SELECT ?", 8, &inj, 1, &len, &e);
        is_str(out, "SELECT 'x\\'); DROP TABLE t; --'", "injection stays quoted");
        dbp_free(out);
    }
    {
        /* garbage SQL with random placeholders: the binder never crashes or miscounts */
        unsigned long long seed = 7;
        int k, bad = 0;
        char sql[64];
        dbp_value vals[64];
        for (k = 0; k < 64; k++) vals[k] = dbp_v_int(k);
        for (k = 0; k < 20000; k++) {
            static const char alphabet[] = "?'\"`#-/*\\\n ab";
            size_t n = dbp__rand(&seed) % (sizeof sql - 1), j, want;
            char *b;
            for (j = 0; j < n; j++) sql[j] = alphabet[dbp__rand(&seed) % (sizeof alphabet - 1)];
            sql[n] = '\0';
            want = dbp_sql_count_params(sql, n);
            b = dbp_sql_bind(sql, n, vals, want, &len, &e);
            if (!b) bad++;
            dbp_free(b);
        }
        ok(bad == 0, "20000 random statements bind with their own placeholder count");
    }
}

static void test_slots(void)
{
    static const struct { const char *key; unsigned slot; } t[] = {
        { "123456789", 0x31C3 & 16383 },
        { "foo", 12182 }, { "bar", 5061 }, { "a", 15495 }, { "z", 8157 },
        { "{user1000}.following", 3443 }, { "{user1000}.followers", 3443 },
        { "foo{}{bar}", 8363 }, { "foo{{bar}}zap", 4015 }, { "foo{bar}{zap}", 5061 }, { "", 0 },
    };
    size_t i;
    for (i = 0; i < sizeof t / sizeof t[0]; i++)
        is_int(dbp_key_slot(t[i].key, strlen(t[i].key)), t[i].slot, "slot of '%s'", t[i].key);
}

int main(void)
{
    test_url_ok();
    test_url_bad();
    test_redact();
    test_garbage();
    test_settings();
    test_pg_settings();
    test_pg_params();
    test_pool_describe();
    test_binder();
    test_slots();
    return done_testing();
}
