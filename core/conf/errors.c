/*
 * errors.c - a list of human-readable error messages.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "daemon/redact.h"

/* Losing an error would hide a problem from the operator, and a process
 * that cannot allocate a few bytes for a message cannot do much else. */
static void oom(void)
{
    fputs("sluiced: out of memory while recording an error\n", stderr);
    abort();
}

/* `s` without passwords (sluiced -t prints these, and a config error may
 * quote a dsn or url): a fresh string, `s` freed.  "***" is at most three
 * times as long as the shortest value it replaces. */
static char *redacted(char *s)
{
    size_t cap = strlen(s) * 3 + 1;
    char *r = malloc(cap);

    if (r == NULL)
        oom();
    sl_redact(s, r, cap);
    free(s);
    return r;
}

/* Formats the message into a fresh string; the place comes first. */
static char *format(const char *file, int line, const char *fmt, va_list ap)
{
    char prefix[64];
    va_list ap2;
    size_t plen, mlen;
    char *s;
    int n;

    /* The place is written separately so that an arbitrary file name
     * never goes through a format string. */
    if (line > 0)
        snprintf(prefix, sizeof prefix, file ? ":%d: " : "line %d: ", line);
    else
        strcpy(prefix, file ? ": " : "");
    plen = (file ? strlen(file) : 0) + strlen(prefix);

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0; /* an encoding error: keep at least the place */
    mlen = (size_t)n;

    s = malloc(plen + mlen + 1);
    if (s == NULL)
        oom();
    s[0] = '\0';
    if (file)
        strcpy(s, file);
    strcat(s, prefix);
    if (n > 0)
        vsnprintf(s + plen, mlen + 1, fmt, ap);
    else
        s[plen] = '\0';
    return redacted(s);
}

void sl_errors_add(sl_errors *errs, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = format(file, line, fmt, ap);
    va_end(ap);

    if (errs->n == errs->cap) {
        size_t cap = errs->cap ? errs->cap * 2 : 8;
        char **msgs = realloc(errs->msgs, cap * sizeof *msgs);

        if (msgs == NULL)
            oom();
        errs->msgs = msgs;
        errs->cap = cap;
    }
    errs->msgs[errs->n++] = msg;
}

/* Frees every message and leaves the list empty and reusable. */
void sl_errors_free(sl_errors *errs)
{
    size_t i;

    for (i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
    errs->cap = 0;
}
