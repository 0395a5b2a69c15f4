/*
 * errors.h - a list of human-readable error messages.
 *
 * Config checking reports every problem it finds, not only the first, so
 * the parser and validators append to one of these lists.  Messages have the
 * form "FILE:LINE: what is wrong".
 */
#ifndef SL_ERRORS_H
#define SL_ERRORS_H

#include <stddef.h>
#include <sluice/sluice.h>

typedef struct {
    char **msgs;
    size_t n;
    size_t cap;
} sl_errors;

/* Appends "file:line: message"; `file` may be NULL and `line` 0 when the
 * error has no place, giving "file: message", "line N: message" or just
 * "message".  Allocation failures abort: an error list that loses errors
 * would be worse. */
void sl_errors_add(sl_errors *errs, const char *file, int line, const char *fmt, ...)
        SL_PRINTF(4, 5);
/* Frees the messages; the list is left empty and may be reused. */
void sl_errors_free(sl_errors *errs);

#endif
