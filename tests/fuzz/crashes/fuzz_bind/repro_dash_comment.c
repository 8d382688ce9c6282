/* repro_dash_comment - the placeholder scanner and the server disagree on
   where a "-- " comment starts. MariaDB's lexer starts one at "--" followed
   by any space or control character (my_isspace || my_iscntrl: \v, \f,
   \x01, ...); dbp__scan_placeholders only at "--" followed by ' ', '\t',
   '\n', '\r' or the end. Checked against MariaDB 10.11: "SELECT 1 --\v2"
   returns 1 (a comment), "SELECT 1 --2" returns 3.

   So in "SELECT ? --\v ?" dbpool binds two values and the server sees one
   placeholder's worth of SQL followed by a comment holding the second value:
   the value is silently dropped (no injection: values are escaped anyway).

     cc -std=c99 -I. tests/fuzz/crashes/fuzz_bind/repro_dash_comment.c -o build/repro_dash_comment \
        $(pkg-config --cflags --libs libmariadb hiredis) -lm && build/repro_dash_comment

   Exits 1 while the scanner counts placeholders inside such comments.
   REPRO-CASES: - */
#define _POSIX_C_SOURCE 200809L
#define DBPOOL_IMPLEMENTATION
#include "../../../../dbpool.h"

int main(void)
{
    static const struct { const char *sql; size_t want; } cases[] = {
        { "SELECT ? --\v ?", 1 }, { "SELECT ? --\f ?", 1 }, { "SELECT ? --\x01 ?", 1 },
        { "SELECT ? --\x7f ?", 1 }, { "SELECT ? -- ?", 1 }, { "SELECT ? --?", 2 }
    };
    size_t i;
    int bad = 0;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t got = dbp_sql_count_params(cases[i].sql, strlen(cases[i].sql));
        printf("case %lu: %lu placeholder(s), the server sees %lu%s\n", (unsigned long)i, (unsigned long)got,
               (unsigned long)cases[i].want, got == cases[i].want ? "" : "  <- differs");
        if (got != cases[i].want) bad++;
    }
    printf("%d case(s) where dbpool and the server disagree\n", bad);
    return bad ? 1 : 0;
}
