/*
 * tls.h - server certificates of TLS listeners.
 *
 * A context is loaded from PEM files when a generation is built (so a bad
 * certificate or key fails `sluiced -t` and keeps a reload from
 * happening) and handed to the listeners when the generation is switched
 * in.  Connections hold their own reference on the context they were
 * accepted with, so a certificate rotated by SIGHUP serves new connections
 * while open ones finish on the old one.
 */
#ifndef SL_TLS_H
#define SL_TLS_H

#include "conf/errors.h"

typedef struct ssl_ctx_st sl_tls;

/* Loads the certificate chain `cert` and the private key `key` and checks
 * that they belong together.  NULL after appending why to `errs`, at
 * `file`:`line` (the config key that named them). */
sl_tls *sl_tls_load(const char *cert, const char *key, const char *file, int line, sl_errors *errs);
/* Reference counting; sl_tls_put(NULL) does nothing. */
void sl_tls_ref(sl_tls *t);
void sl_tls_put(sl_tls *t);

#endif
