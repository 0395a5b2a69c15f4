/*
 * tokens.h - bearer tokens and their scopes, read from [core] tokens_file.
 *
 * One token per line, fields separated by blanks:
 *
 *   # name   scopes            secret
 *   ci       read,write        sha256:4f1c...   (64 hex digits)
 *   ops      read,write,admin  s3cret-at-least-16-chars
 *
 * The name ([A-Za-z0-9_.-], at most 64) is what logs show; scopes are a
 * comma-separated subset of read, write, admin, each granted on its own
 * (admin does not imply write); the secret is either the SHA-256 of the
 * token, "sha256:" and 64 hex digits, or the token itself (16 to 256
 * characters of RFC 6750's b64token).  Only the digest is kept in memory.
 * Blank lines and lines starting with '#' are ignored; names must be
 * unique.  A table is immutable once loaded, so a reload builds a new one
 * and the running one serves until the switch.
 */
#ifndef SL_TOKENS_H
#define SL_TOKENS_H

#include <stddef.h>
#include "conf/errors.h"

/* Scope bits a token grants; a route requires one (sluice.h SL_SCOPE_*). */
#define SL_TOKEN_READ 0x1
#define SL_TOKEN_WRITE 0x2
#define SL_TOKEN_ADMIN 0x4

typedef struct sl_tokens sl_tokens;

/* Parses `text` (the contents of `file`, used in messages).  Returns the
 * table, or NULL after appending every error, with file:line, to `errs`. */
sl_tokens *sl_tokens_parse(const char *file, const char *text, size_t len, sl_errors *errs);
/* Reads and parses `path`; NULL after appending the reason to `errs`. */
sl_tokens *sl_tokens_load(const char *path, sl_errors *errs);
void sl_tokens_free(sl_tokens *t);
size_t sl_tokens_count(const sl_tokens *t);

/* The token whose secret is the `len` bytes at `secret`: its name and
 * scope bits, or NULL.  Compares against every token in constant time, so
 * that neither which token matched nor how much of it did shows in the
 * time taken. */
const char *sl_tokens_find(const sl_tokens *t, const char *secret, size_t len, unsigned *scopes);

#endif
