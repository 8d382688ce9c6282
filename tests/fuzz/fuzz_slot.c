/* fuzz_slot - dbp_key_slot() against a reference written from the Redis
   Cluster specification (https://redis.io/docs/reference/cluster-spec/):

     HASH_SLOT = CRC16(key) mod 16384, CRC16 = XMODEM (poly 0x1021, init 0,
     no reflection, no final xor); when the key contains a '{', a '}' after
     it, and at least one character between the first '{' and the first '}'
     after it, only those characters are hashed.

   The reference CRC is computed one message bit at a time (the plainest
   form of the definition), unlike the header's byte-wise loop. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../../dbpool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned ref_crc16(const unsigned char *p, size_t n)
{
    unsigned crc = 0;
    size_t i;
    int b;
    for (i = 0; i < n; i++) {
        for (b = 7; b >= 0; b--) {
            unsigned in = (p[i] >> b) & 1u;
            unsigned top = (crc >> 15) & 1u;
            crc = (crc << 1) & 0xffffu;
            if (top ^ in) crc ^= 0x1021u;
        }
    }
    return crc;
}

static unsigned ref_slot(const unsigned char *key, size_t n)
{
    const unsigned char *open = memchr(key, '{', n);
    if (open) {
        size_t rest = n - (size_t)(open + 1 - key);
        const unsigned char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) return ref_crc16(open + 1, (size_t)(close - open - 1)) % 16384u;
    }
    return ref_crc16(key, n) % 16384u;
}

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "fuzz_slot: check failed: %s: ", #cond); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); abort(); } } while (0)

/* Known answers, so the reference itself is checked before it judges. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const struct { const char *key; unsigned slot; } known[] = {
        { "foo", 12182 }, { "bar", 5061 }, { "somekey", 11058 }, { "hello", 866 },
        { "foo{hash_tag}", 2515 }, { "{hash_tag}bar", 2515 }, { "hash_tag", 2515 },
        { "{user1000}.following", 3443 }, { "{user1000}.followers", 3443 }
    };
    size_t i;
    (void)argc; (void)argv;
    CHECK(ref_crc16((const unsigned char *)"123456789", 9) == 0x31C3, "CRC16-XMODEM check value");
    for (i = 0; i < sizeof known / sizeof known[0]; i++) {
        unsigned want = known[i].slot, n = (unsigned)strlen(known[i].key);
        CHECK(ref_slot((const unsigned char *)known[i].key, n) == want, "reference slot of '%s'", known[i].key);
        CHECK(dbp_key_slot(known[i].key, n) == want, "dbp_key_slot('%s') = %u, want %u", known[i].key,
              dbp_key_slot(known[i].key, n), want);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size heap copy, so ASan sees any read past the key */
    char *key = (char *)malloc(size ? size : 1);
    unsigned got, want;
    if (!key) return 0;
    if (size) memcpy(key, data, size);
    got = dbp_key_slot(key, size);
    want = ref_slot((const unsigned char *)key, size);
    CHECK(got < 16384, "slot %u out of range", got);
    CHECK(got == want, "dbp_key_slot = %u, reference = %u (key of %lu bytes)", got, want, (unsigned long)size);
    /* every key with a non-empty tag lands where the bare tag does */
    {
        const char *o = (const char *)memchr(key, '{', size);
        if (o) {
            const char *c = (const char *)memchr(o + 1, '}', size - (size_t)(o + 1 - key));
            if (c && c > o + 1) CHECK(got == dbp_key_slot(o + 1, (size_t)(c - o - 1)), "tag rule");
        }
    }
    free(key);
    return 0;
}
