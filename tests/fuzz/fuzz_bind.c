/* fuzz_bind - the client-side parameter binder: dbp_sql_count_params(),
   dbp__check_params() and dbp_sql_bind().

   Input layout:
     byte 0..1      length L of the SQL text (little endian, clamped to what is left)
     L bytes        the SQL text (any bytes, NUL included)
     the rest       parameters, one after another: a tag byte (type = tag % 7)
                    and its payload: BOOL 1 byte, INT/UINT/DOUBLE 8 bytes,
                    TEXT/BLOB a length byte and that many bytes; when the
                    bytes run out the remaining parameters are NULL.

   Invariants checked (the ones that really hold):
   - the statement's placeholder count is what dbp__check_params accepts:
     exactly n parameters pass (when every double is finite), n-1 and n+1 are
     refused with DBP_EPARAM, a NaN or an infinity is refused with DBP_EPARAM
     and dbp_sql_bind() then returns NULL;
   - dbp_sql_bind() with n parameters succeeds and returns out_len bytes
     followed by a NUL;
   - with no placeholder the output is the statement, byte for byte;
   - the output has no placeholder left: a bound value never opens a string
     literal, a quoted identifier or a comment that it does not close (a TEXT
     value is quoted with its quotes and backslashes escaped, a BLOB is X'hex',
     numbers are digits), so re-scanning finds 0 `?` outside literals - what
     was a placeholder is now a value, and no `?` inside a value counts;
   - the output's length is the statement's, minus one byte per placeholder,
     plus the length of each value's text, computed here independently;
   - each value alone ("?") binds to text that reads back to the value: a
     TEXT literal unescapes (MySQL rules) to the original bytes, a BLOB's hex
     decodes to them, integers parse back, a double reads back exactly. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../../dbpool.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "fuzz_bind: check failed: %s: ", #cond); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); abort(); } } while (0)

#define MAX_PARAMS 2048

typedef struct reader { const uint8_t *p; size_t n; } reader;

static int take(reader *r, void *out, size_t n)
{
    if (r->n < n) return 0;
    memcpy(out, r->p, n);
    r->p += n; r->n -= n;
    return 1;
}

/* Decodes one parameter; NULL when the bytes ran out. */
static dbp_value next_param(reader *r)
{
    uint8_t tag, b, len;
    uint64_t u;
    double d;
    if (!take(r, &tag, 1)) return dbp_v_null();
    switch (tag % 7) {
    case DBP_BOOL: return take(r, &b, 1) ? dbp_v_bool(b & 1) : dbp_v_null();
    case DBP_INT: return take(r, &u, 8) ? dbp_v_int((long long)u) : dbp_v_null();
    case DBP_UINT: return take(r, &u, 8) ? dbp_v_uint((unsigned long long)u) : dbp_v_null();
    case DBP_DOUBLE:
        if (!take(r, &d, 8)) return dbp_v_null();
        if (isnan(d) || isinf(d)) d = (double)(tag >> 3); /* finite here; NaN is tried on its own */
        return dbp_v_double(d);
    case DBP_TEXT: case DBP_BLOB: {
        const char *s;
        if (!take(r, &len, 1)) return dbp_v_null();
        if (len > r->n) len = (uint8_t)r->n;
        s = (const char *)r->p;
        r->p += len; r->n -= len;
        return tag % 7 == DBP_TEXT ? dbp_v_textn(s, len) : dbp_v_blob(s, len);
    }
    default: return dbp_v_null();
    }
}

/* The text the binder must produce for a double: the shortest of %.15g,
   %.16g, %.17g that reads back as the same double, with "e0" added when
   there is no exponent (so the server reads a DOUBLE, not a DECIMAL). */
static void double_text(double v, char *num, size_t n)
{
    int prec;
    for (prec = 15; prec <= 17; prec++) {
        snprintf(num, n, "%.*g", prec, v);
        if (strtod(num, NULL) == v) break;
    }
    if (!strchr(num, 'e') && !strchr(num, 'E')) strcat(num, "e0");
}

/* Length of a value's SQL text, from the documented rendering. */
static size_t value_len(const dbp_value *v)
{
    char num[64];
    size_t i, n = 0;
    switch (v->type) {
    case DBP_NULL: return 4;
    case DBP_BOOL: return v->v.b ? 4 : 5;
    case DBP_INT: return (size_t)snprintf(num, sizeof num, "%lld", v->v.i);
    case DBP_UINT: return (size_t)snprintf(num, sizeof num, "%llu", v->v.u);
    case DBP_DOUBLE: double_text(v->v.d, num, sizeof num); return strlen(num);
    case DBP_TEXT:
        for (i = 0; i < v->v.s.len; i++) {
            char c = v->v.s.data[i];
            n += c == '\0' || c == '\n' || c == '\r' || c == '\\' || c == '\'' || c == '"' || c == '\032' ? 2 : 1;
        }
        return n + 2;
    case DBP_BLOB: return 3 + 2 * v->v.s.len;
    default: return 0;
    }
}

static int hexv(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One value bound alone must read back as itself. */
static void check_round_trip(const dbp_value *v)
{
    dbp_error err;
    size_t n = 0, i, o;
    char *out = dbp_sql_bind("?", 1, v, 1, &n, &err);
    CHECK(out != NULL, "binding one value failed: %s", err.message);
    CHECK(n == value_len(v), "value of type %d: %lu bytes, want %lu", (int)v->type, (unsigned long)n,
          (unsigned long)value_len(v));
    switch (v->type) {
    case DBP_NULL: CHECK(strcmp(out, "NULL") == 0, "NULL as '%s'", out); break;
    case DBP_BOOL: CHECK(strcmp(out, v->v.b ? "TRUE" : "FALSE") == 0, "bool as '%s'", out); break;
    case DBP_INT: CHECK(strtoll(out, NULL, 10) == v->v.i, "int %lld as '%s'", v->v.i, out); break;
    case DBP_UINT: CHECK(strtoull(out, NULL, 10) == v->v.u, "uint %llu as '%s'", v->v.u, out); break;
    case DBP_DOUBLE: {
        char *end;
        double back = strtod(out, &end);
        CHECK(*end == '\0' && back == v->v.d, "double %.17g as '%s'", v->v.d, out);
        CHECK(strchr(out, 'e') || strchr(out, 'E'), "double without an exponent: '%s'", out);
        break;
    }
    case DBP_TEXT: {
        /* 'body' where body unescapes, MySQL rules, to the original bytes */
        CHECK(n >= 2 && out[0] == '\'' && out[n - 1] == '\'', "TEXT not quoted: %s", out);
        for (i = 1, o = 0; i < n - 1; i++, o++) {
            char c = out[i];
            CHECK(c != '\'' && c != '\0', "unescaped quote or NUL inside a TEXT literal at %lu", (unsigned long)i);
            if (c == '\\') {
                CHECK(i + 1 < n - 1, "TEXT literal ends in a lone backslash");
                switch (out[++i]) {
                case '0': c = '\0'; break;
                case 'n': c = '\n'; break;
                case 'r': c = '\r'; break;
                case 'Z': c = '\032'; break;
                case '\\': case '\'': case '"': c = out[i]; break;
                default: CHECK(0, "unexpected escape \\%c", out[i]);
                }
            }
            CHECK(o < v->v.s.len && c == v->v.s.data[o], "TEXT byte %lu differs", (unsigned long)o);
        }
        CHECK(o == v->v.s.len, "TEXT has %lu bytes back, want %lu", (unsigned long)o, (unsigned long)v->v.s.len);
        break;
    }
    case DBP_BLOB:
        CHECK(n == 3 + 2 * v->v.s.len && out[0] == 'X' && out[1] == '\'' && out[n - 1] == '\'', "BLOB shape");
        for (i = 0; i < v->v.s.len; i++) {
            int h = hexv((unsigned char)out[2 + 2 * i]), l = hexv((unsigned char)out[3 + 2 * i]);
            CHECK(h >= 0 && l >= 0 && (unsigned char)(h * 16 + l) == (unsigned char)v->v.s.data[i],
                  "BLOB byte %lu", (unsigned long)i);
        }
        break;
    default: break;
    }
    CHECK(dbp_sql_count_params(out, n) == 0, "a value alone leaves a placeholder: %s", out);
    dbp_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = { data, size };
    uint8_t lb[2] = { 0, 0 };
    size_t sql_len, n, i, want_len, out_len = 0;
    char *sql, *out;
    dbp_value *params;
    dbp_error err;

    take(&r, lb, 2);
    sql_len = (size_t)lb[0] | (size_t)lb[1] << 8;
    if (sql_len > r.n) sql_len = r.n;
    /* an exact-size heap copy without a NUL: ASan sees any read past it */
    sql = (char *)malloc(sql_len ? sql_len : 1);
    if (!sql) return 0;
    if (sql_len) memcpy(sql, r.p, sql_len);
    r.p += sql_len; r.n -= sql_len;

    n = dbp_sql_count_params(sql, sql_len);
    CHECK(n <= sql_len, "%lu placeholders in %lu bytes", (unsigned long)n, (unsigned long)sql_len);
    if (n > MAX_PARAMS) { free(sql); return 0; }
    params = (dbp_value *)calloc(n + 1, sizeof *params);
    if (!params) { free(sql); return 0; }
    for (i = 0; i < n + 1; i++) params[i] = next_param(&r);

    /* the count is what the checker accepts, and nothing else */
    CHECK(dbp__check_params(sql, sql_len, params, n, &err) == DBP_OK, "n = %lu refused: %s", (unsigned long)n,
          err.message);
    CHECK(dbp__check_params(sql, sql_len, params, n + 1, &err) == DBP_EPARAM, "n + 1 accepted");
    if (n > 0) CHECK(dbp__check_params(sql, sql_len, params, n - 1, &err) == DBP_EPARAM, "n - 1 accepted");
    if (n > 0) {
        dbp_value keep = params[n - 1];
        params[n - 1] = dbp_v_double(NAN);
        CHECK(dbp__check_params(sql, sql_len, params, n, &err) == DBP_EPARAM, "NaN accepted");
        CHECK(dbp_sql_bind(sql, sql_len, params, n, NULL, &err) == NULL && err.rc == DBP_EPARAM,
              "NaN bound");
        params[n - 1] = dbp_v_double(-INFINITY);
        CHECK(dbp__check_params(sql, sql_len, params, n, &err) == DBP_EPARAM, "-inf accepted");
        params[n - 1] = keep;
    }
    CHECK(dbp_sql_bind(sql, sql_len, params, n + 1, NULL, &err) == NULL && err.rc == DBP_EPARAM,
          "n + 1 parameters bound");

    out = dbp_sql_bind(sql, sql_len, params, n, &out_len, &err);
    CHECK(out != NULL, "binding %lu parameters failed: %s", (unsigned long)n, err.message);
    CHECK(out[out_len] == '\0', "output not NUL-terminated");
    want_len = sql_len - n;
    for (i = 0; i < n; i++) want_len += value_len(&params[i]);
    CHECK(out_len == want_len, "output of %lu bytes, want %lu", (unsigned long)out_len, (unsigned long)want_len);
    if (n == 0) CHECK(memcmp(out, sql, sql_len) == 0, "a statement without placeholders was changed");
    CHECK(dbp_sql_count_params(out, out_len) == 0, "%lu placeholder(s) left after binding %lu",
          (unsigned long)dbp_sql_count_params(out, out_len), (unsigned long)n);
    dbp_free(out);

    for (i = 0; i < n && i < 16; i++) check_round_trip(&params[i]);
    free(params);
    free(sql);
    return 0;
}
