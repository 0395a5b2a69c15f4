/*
 * tls.c - server TLS contexts (see tls.h), on OpenSSL.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "tls.h"

/* The first error OpenSSL queued, for a message; the queue is cleared so
 * that the next failure does not report this one. */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();

    ERR_clear_error();
    if (e == 0)
        return "unknown error";
    ERR_error_string_n(e, buf, len);
    return buf;
}

sl_tls *sl_tls_load(const char *cert, const char *key, const char *file, int line, sl_errors *errs)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char why[256];

    if (ctx == NULL) {
        sl_errors_add(errs, file, line, "cannot create a TLS context: %s",
                      ssl_reason(why, sizeof(why)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        sl_errors_add(errs, file, line, "tls_cert %s: %s", cert, ssl_reason(why, sizeof(why)));
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        sl_errors_add(errs, file, line, "tls_key %s: %s", key, ssl_reason(why, sizeof(why)));
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        sl_errors_add(errs, file, line, "tls_key %s does not match tls_cert %s", key, cert);
        ERR_clear_error();
    } else {
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

void sl_tls_ref(sl_tls *t)
{
    SSL_CTX_up_ref(t);
}

void sl_tls_put(sl_tls *t)
{
    if (t != NULL)
        SSL_CTX_free(t);
}
