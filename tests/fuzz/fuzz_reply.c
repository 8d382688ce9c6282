/* fuzz_reply - Redis replies as dbpool builds them (hiredis' reader with the
   header's own object functions, dbp__rd_fns) and commands as it formats
   them (dbp__resp_format).

   Input layout: byte 0 selects the mode (bit 0), the rest drives it.

   Mode 0, replies: bytes 1..4 seed the chunk sizes; the rest is a byte stream
   from the "server", fed in random-sized chunks (1..64 bytes) through
   redisReaderFeed / redisReaderGetReply until the stream ends or the reader
   reports an error. Checked: every reply is a well-formed tree (a known
   type; strings NUL-terminated at len; an array's element count matches its
   element array, every element present, arrays nested at most 7 deep
   as hiredis allows); the same stream fed in one piece gives the same replies; the same
   stream through hiredis' own reader (redisReaderCreate) gives the same
   replies and the same error/no-error outcome; every reply is freed with
   dbp_reply_free (LeakSanitizer sees what is not).

   Mode 1, commands: byte 1 is argc (0..63), then each argument is a length
   byte and that many bytes (arguments are binary: NUL, CR, LF, '$' and '*'
   included). Checked: dbp__resp_format gives exactly the bytes of hiredis'
   redisFormatCommandArgv, and reading them back gives one array of argc
   bulk strings equal to the arguments, with nothing left over.

   Huge array headers ("*2000000000\r\n"): dbpool's reader grows an array's
   slots as its elements arrive (bug B2 in tests/fuzz/README.md, fixed), so
   it is fed them; hiredis' own reader, the reference, would allocate every
   announced slot, so it is not asked about streams with a header above
   FUZZ_MAX_ELEMENTS (see has_huge_array). */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../../dbpool.h"
#include <hiredis/hiredis.h>

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "fuzz_reply: check failed: %s: ", #cond); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); abort(); } } while (0)

#ifndef FUZZ_MAX_ELEMENTS
#define FUZZ_MAX_ELEMENTS (1 << 16)
#endif
#define MAX_REPLIES 4096

/* hiredis 0.14 makes arrays at depth 0..7 (its read stack has 9 levels),
   so a leaf may sit at depth 8. */
static void check_tree(const dbp_reply *r, int depth)
{
    size_t i;
    CHECK(r != NULL, "missing reply at depth %d", depth);
    CHECK(depth <= 8 && (depth <= 7 || r->type != DBP_REPLY_ARRAY), "nested deeper than hiredis allows");
    switch (r->type) {
    case DBP_REPLY_STRING: case DBP_REPLY_STATUS: case DBP_REPLY_ERROR:
        CHECK(r->str != NULL && r->str[r->len] == '\0', "string not NUL-terminated at len %lu", (unsigned long)r->len);
        CHECK(r->elements == 0 && r->element == NULL, "a string with elements");
        break;
    case DBP_REPLY_ARRAY:
        CHECK(r->elements == 0 || r->element != NULL, "%lu elements, no element array", (unsigned long)r->elements);
        for (i = 0; i < r->elements; i++) check_tree(r->element[i], depth + 1);
        break;
    case DBP_REPLY_INTEGER: case DBP_REPLY_NIL:
        CHECK(r->elements == 0 && r->element == NULL && r->len == 0, "a scalar with contents");
        break;
    default:
        CHECK(0, "unknown reply type %d", (int)r->type);
    }
}

/* Same shape and contents as hiredis' own reply. */
static void check_same_as_hiredis(const dbp_reply *a, const redisReply *b)
{
    size_t i;
    CHECK((int)a->type == b->type, "type %d, hiredis %d", (int)a->type, b->type);
    switch (b->type) {
    case REDIS_REPLY_STRING: case REDIS_REPLY_STATUS: case REDIS_REPLY_ERROR:
        CHECK(a->len == b->len && memcmp(a->str, b->str, b->len) == 0, "string contents differ");
        break;
    case REDIS_REPLY_INTEGER:
        CHECK(a->integer == b->integer, "integer %lld, hiredis %lld", a->integer, b->integer);
        break;
    case REDIS_REPLY_ARRAY:
        CHECK(a->elements == b->elements, "%lu elements, hiredis %lu", (unsigned long)a->elements,
              (unsigned long)b->elements);
        for (i = 0; i < b->elements; i++) check_same_as_hiredis(a->element[i], b->element[i]);
        break;
    default: break;
    }
}

static int same_tree(const dbp_reply *a, const dbp_reply *b)
{
    size_t i;
    if (a->type != b->type || a->len != b->len || a->integer != b->integer || a->elements != b->elements) return 0;
    if (a->len && memcmp(a->str, b->str, a->len) != 0) return 0;
    for (i = 0; i < a->elements; i++) if (!same_tree(a->element[i], b->element[i])) return 0;
    return 1;
}

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13; *s ^= *s >> 17; *s ^= *s << 5;
    return *s;
}

/* Feeds data in chunks (chunk 0: all at once) and collects the replies.
   Returns 1 when the reader reported an error. */
static int read_all(const uint8_t *data, size_t size, uint32_t seed, dbp_reply **out, size_t *nout)
{
    redisReader *rd = redisReaderCreateWithFunctions(&dbp__rd_fns);
    size_t off = 0;
    int failed = 0;
    CHECK(rd != NULL, "no reader");
    *nout = 0;
    while (off < size && !failed) {
        size_t chunk = seed ? 1 + next_rand(&seed) % 64 : size;
        if (chunk > size - off) chunk = size - off;
        if (redisReaderFeed(rd, (const char *)data + off, chunk) != REDIS_OK) { failed = 1; break; }
        off += chunk;
        for (;;) {
            void *obj = NULL;
            if (redisReaderGetReply(rd, &obj) != REDIS_OK) { CHECK(obj == NULL, "reply with an error"); failed = 1; break; }
            if (!obj) break;
            check_tree((const dbp_reply *)obj, 0);
            if (*nout < MAX_REPLIES) out[(*nout)++] = (dbp_reply *)obj;
            else dbp_reply_free((dbp_reply *)obj);
        }
    }
    redisReaderFree(rd);
    return failed;
}

/* Whether the stream holds an array header above FUZZ_MAX_ELEMENTS (any
   '*' followed by digits counts: over-cautious, never misses one). hiredis'
   own reader, the reference, allocates every announced slot up front, so it
   is not asked about those; dbpool's reader grows its slots as elements
   arrive and is fuzzed with them. */
static int has_huge_array(const uint8_t *p, size_t n)
{
    size_t i, j;
    for (i = 0; i + 1 < n; i++) {
        long long v = 0;
        if (p[i] != '*') continue;
        for (j = i + 1; j < n && p[j] >= '0' && p[j] <= '9'; j++) {
            v = v * 10 + (p[j] - '0');
            if (v > FUZZ_MAX_ELEMENTS) return 1;
        }
    }
    return 0;
}

static void fuzz_replies(const uint8_t *data, size_t size)
{
    static dbp_reply *a[MAX_REPLIES], *b[MAX_REPLIES];
    size_t na, nb, i, nh = 0;
    uint32_t seed = 0;
    int fa, fb, fh = 0;
    if (size >= 4) { memcpy(&seed, data, 4); data += 4; size -= 4; }
    if (!seed) seed = 1;
    fa = read_all(data, size, seed, a, &na);
    fb = read_all(data, size, 0, b, &nb);
    CHECK(fa == fb, "chunked: error %d, one piece: error %d", fa, fb);
    CHECK(na == nb, "chunked: %lu replies, one piece: %lu", (unsigned long)na, (unsigned long)nb);
    for (i = 0; i < na; i++) CHECK(same_tree(a[i], b[i]), "reply %lu differs between chunked and one piece", (unsigned long)i);

    /* hiredis' own reader, as the reference (not for huge headers: see above) */
    if (!has_huge_array(data, size)) {
        redisReader *rd = redisReaderCreate();
        CHECK(rd != NULL, "no reader");
        if (redisReaderFeed(rd, (const char *)data, size) != REDIS_OK) fh = 1;
        while (!fh) {
            void *obj = NULL;
            if (redisReaderGetReply(rd, &obj) != REDIS_OK) { fh = 1; break; }
            if (!obj) break;
            if (nh < na) check_same_as_hiredis(a[nh], (const redisReply *)obj);
            nh++;
            freeReplyObject(obj);
        }
        redisReaderFree(rd);
    }
    if (na < MAX_REPLIES && !has_huge_array(data, size)) {
        CHECK(fh == fb, "error %d, hiredis' own reader: error %d", fb, fh);
        CHECK(nh == na, "%lu replies, hiredis' own reader: %lu", (unsigned long)na, (unsigned long)nh);
    }
    for (i = 0; i < na; i++) dbp_reply_free(a[i]);
    for (i = 0; i < nb; i++) dbp_reply_free(b[i]);
}

static void fuzz_format(const uint8_t *data, size_t size)
{
    const char *argv[64];
    size_t lens[64];
    char *ref = NULL;
    int argc, i, ref_len;
    dbp__buf out;
    if (size < 1) return;
    argc = data[0] % 64;
    data++; size--;
    for (i = 0; i < argc; i++) {
        size_t n = size ? data[0] : 0;
        if (size) { data++; size--; }
        if (n > size) n = size;
        argv[i] = (const char *)data;
        lens[i] = n;
        data += n; size -= n;
    }
    memset(&out, 0, sizeof out);
    CHECK(dbp__resp_format(&out, argc, argv, lens) == DBP_OK, "format failed");
    ref_len = redisFormatCommandArgv(&ref, argc, argv, lens);
    CHECK(ref_len >= 0 && ref != NULL, "hiredis could not format");
    CHECK((size_t)ref_len == out.len && memcmp(ref, out.data, out.len) == 0,
          "%lu bytes, hiredis %d, or different bytes", (unsigned long)out.len, ref_len);
    redisFreeCommand(ref);
    {
        redisReader *rd = redisReaderCreateWithFunctions(&dbp__rd_fns);
        void *obj = NULL;
        const dbp_reply *r;
        CHECK(rd && redisReaderFeed(rd, out.data, out.len) == REDIS_OK, "feed");
        CHECK(redisReaderGetReply(rd, &obj) == REDIS_OK && obj != NULL, "no reply read back: %s", rd->errstr);
        r = (const dbp_reply *)obj;
        check_tree(r, 0);
        CHECK(r->type == DBP_REPLY_ARRAY && r->elements == (size_t)argc, "not an array of %d", argc);
        for (i = 0; i < argc; i++)
            CHECK(r->element[i]->type == DBP_REPLY_STRING && r->element[i]->len == lens[i] &&
                  (lens[i] == 0 || memcmp(r->element[i]->str, argv[i], lens[i]) == 0), "argument %d differs", i);
        dbp_reply_free((dbp_reply *)obj);
        obj = NULL;
        CHECK(redisReaderGetReply(rd, &obj) == REDIS_OK && obj == NULL, "bytes left over after the command");
        redisReaderFree(rd);
    }
    dbp__buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1) fuzz_format(data + 1, size - 1);
    else fuzz_replies(data + 1, size - 1);
    return 0;
}
