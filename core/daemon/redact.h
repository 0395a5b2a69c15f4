/*
 * redact.h - passwords taken out of text before it is shown: log lines,
 * config errors, /readyz and /status.json reasons, metric label values.
 */
#ifndef SL_REDACT_H
#define SL_REDACT_H

#include <stddef.h>

/*
 * Copies `in` into `out` (always NUL-terminated, cut at outlen - 1) with
 * every password it may carry replaced by "***": the password of a URL's
 * user information (scheme://user:PASSWORD@host), and the value of a key
 * whose name ends in "password" followed by '=' (libpq's password=...,
 * ...&password=... in a query string, sasl.password = ...), quoted or not.
 * Returns 1 when something was replaced.
 */
int sl_redact(const char *in, char *out, size_t outlen);

#endif
