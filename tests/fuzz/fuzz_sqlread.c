/* fuzz_sqlread - dbp__sql_is_read(), the MySQL replicas' routing rule (is a
   statement a read a replica may run?), on arbitrary bytes: it must never
   read outside the buffer (the input is not NUL-terminated here), must
   answer 0 or 1, and the same twice. A statement is a read only when its
   first word is one of the read keywords: anything whose first byte (after
   blanks) cannot start a comment, a parenthesis or one of those words is
   never a read. */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../../dbpool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = (char *)malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
    size_t i = 0;
    int r, c;
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    r = dbp__sql_is_read(copy, size);
    if (r != 0 && r != 1) abort();
    if (dbp__sql_is_read(copy, size) != r) abort();
    while (i < size && (copy[i] == ' ' || copy[i] == '\t' || copy[i] == '\n' || copy[i] == '\r' ||
                        copy[i] == '(' || copy[i] == ')' || copy[i] == ','))
        i++;
    c = i < size ? toupper((unsigned char)copy[i]) : 0;
    if (r && !(c == 'S' || c == 'W' || c == 'D' || c == 'E' || c == '-' || c == '#' || c == '/' || c == '*' ||
               c == '\'' || c == '"' || c == '`' || c == ';'))
        abort();
    free(copy);
    return 0;
}
