/*
 * clickhouse_answer.c - what a ClickHouse answer says beyond its status:
 * the exception code at the head of an error answer, the exception
 * ClickHouse appends to an answer it had already begun to stream, and the
 * first line of an error.
 *
 * Each reads a bounded part of the answer (its head or its tail), never
 * the whole of it: answers run to megabytes and are read on the loop.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "clickhouse_int.h"

/* An error answer starts with its exception; a proxy's page may carry the
 * words further down, which are not ClickHouse speaking. */
#define CODE_HEAD 64
/* An appended exception is one line of ClickHouse's message; a longer
 * last line is not one. */
#define EXCEPTION_TAIL 4096

static const char CODE[] = "Code: ";

int ch_exception_code(const char *body, size_t len)
{
    size_t head = len < CODE_HEAD + sizeof(CODE) - 1 ? len : CODE_HEAD + sizeof(CODE) - 1;
    const char *p = memmem(body, head, CODE, sizeof(CODE) - 1);

    return p != NULL ? atoi(p + sizeof(CODE) - 1) : 0;
}

/* "Code: N, e.displayText() = DB::Exception..." (18.x) or "Code: N.
 * DB::Exception..." (later releases) starting at `p`, within `end`. */
static int exception_at(const char *p, const char *end)
{
    static const char *const forms[] = { ", e.displayText() = DB::Exception", ". DB::Exception" };

    p += sizeof(CODE) - 1;
    if (p >= end || !isdigit((unsigned char)*p))
        return 0;
    while (p < end && isdigit((unsigned char)*p))
        p++;
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        size_t n = strlen(forms[i]);
        if ((size_t)(end - p) >= n && memcmp(p, forms[i], n) == 0)
            return 1;
    }
    return 0;
}

/*
 * Once the first rows are sent the status cannot change, so ClickHouse
 * writes the exception after them, as the answer's last line (18.x right
 * after the last row's closing brace).  A whole FORMAT JSON document's
 * last line is its own closing brace, and a row's text is quoted, so rows
 * that quote an exception are not taken for one.
 */
const char *ch_late_exception(const char *body, size_t len)
{
    const char *end = body + len, *line, *p;

    while (end > body && isspace((unsigned char)end[-1]))
        end--;
    line = end;
    while (line > body && line[-1] != '\n' && end - line < EXCEPTION_TAIL)
        line--;
    if (line > body && line[-1] != '\n')
        return NULL; /* a last line too long to be an exception */
    for (p = line; (p = memmem(p, (size_t)(end - p), CODE, sizeof(CODE) - 1)) != NULL; p++)
        if ((p == line || p[-1] == '}') && exception_at(p, end))
            return p;
    return NULL;
}

void ch_first_line(const char *body, size_t len, char *out, size_t outlen)
{
    size_t n = 0;

    while (n < len && body[n] != '\n' && body[n] != '\r')
        n++;
    while (n > 0 && isspace((unsigned char)body[n - 1]))
        n--;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, body, n);
    out[n] = '\0';
}
