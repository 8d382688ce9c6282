/* repro_array_alloc - an array header is trusted before any element arrives.
   12 bytes from the server, "*200000000\r\n", make dbp__rd_array allocate
   (dbp__calloc: malloc + memset, so every page is touched) 1.6 GB for the
   element pointers; "*2147483647\r\n" asks for 16 GB.

     cc -std=c99 -g -I. tests/fuzz/crashes/fuzz_reply/repro_array_alloc.c -o build/repro_array_alloc \
        $(pkg-config --cflags --libs libmariadb hiredis) -lm && build/repro_array_alloc

   Exits 1 while the bug is there (resident memory grew by more than 64 MB
   for 12 bytes of input), 0 once the element array grows with the elements
   that actually arrive.
   REPRO-CASES: - */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../../../../dbpool.h"
#include <sys/resource.h>

static long rss_mb(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss / 1024;
}

int main(void)
{
    static const char header[] = "*200000000\r\n";
    redisReader *r = redisReaderCreateWithFunctions(&dbp__rd_fns);
    void *obj = NULL;
    long before = rss_mb(), after;
    redisReaderFeed(r, header, sizeof header - 1);
    redisReaderGetReply(r, &obj); /* incomplete: no reply yet, but the array exists */
    after = rss_mb();
    printf("%lu bytes of input: peak resident memory %ld MB -> %ld MB\n", (unsigned long)(sizeof header - 1), before, after);
    redisReaderFree(r);
    return after - before > 64 ? 1 : 0;
}
