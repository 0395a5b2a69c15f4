/*
 * tokens.c - the bearer-token table (format in tokens.h).
 *
 * Secrets are kept only as SHA-256 digests: a presented token is hashed
 * once and its digest compared with every entry using CRYPTO_memcmp, and
 * the loop never stops early, so the time does not depend on the secrets.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include "router.h"
#include "tokens.h"

#define NAME_MAX_LEN 64
#define SECRET_MIN 16
#define SECRET_MAX 256
#define FILE_MAX (1024 * 1024)

typedef struct {
    char *name;
    unsigned scopes;
    unsigned char digest[SHA256_DIGEST_LENGTH];
} token;

struct sl_tokens {
    token *v;
    size_t n;
};

static int is_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static int is_b64token_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-._~+/=", c) != NULL);
}

static int parse_scopes(const char *s, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bit;
    } known[] = { { "read", SL_TOKEN_READ },
                  { "write", SL_TOKEN_WRITE },
                  { "admin", SL_TOKEN_ADMIN } };

    *out = 0;
    while (*s != '\0') {
        size_t n = strcspn(s, ",");
        size_t i;
        for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            if (strlen(known[i].name) == n && strncmp(s, known[i].name, n) == 0)
                break;
        if (i == sizeof(known) / sizeof(known[0]))
            return -1;
        *out |= known[i].bit;
        s += n;
        if (*s == ',')
            s++;
    }
    return *out != 0 ? 0 : -1;
}

static int parse_secret(const char *s, unsigned char *digest)
{
    size_t n = strlen(s);

    if (strncmp(s, "sha256:", 7) == 0) {
        if (n != 7 + 2 * SHA256_DIGEST_LENGTH)
            return -1;
        for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
            int hi = sl_hex_digit(s[7 + 2 * i]), lo = sl_hex_digit(s[8 + 2 * i]);
            if (hi < 0 || lo < 0)
                return -1;
            digest[i] = (unsigned char)(hi * 16 + lo);
        }
        return 0;
    }
    if (n < SECRET_MIN || n > SECRET_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!is_b64token_char((unsigned char)s[i]))
            return -1;
    SHA256((const unsigned char *)s, n, digest);
    return 0;
}

/* Splits a line at blanks into at most `max` fields; returns how many. */
static size_t split(char *line, char **fields, size_t max)
{
    size_t n = 0;
    char *p = line;

    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            return n;
        if (n == max)
            return max + 1;
        fields[n++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t')
            p++;
        if (*p != '\0')
            *p++ = '\0';
    }
}

static int add_line(sl_tokens *t, char *line, const char *file, int lineno, sl_errors *errs)
{
    char *f[3];
    size_t nf = split(line, f, 3);
    token *tk;

    if (nf == 0 || f[0][0] == '#')
        return 0;
    if (nf != 3) {
        sl_errors_add(errs, file, lineno, "expected three fields: NAME SCOPES SECRET");
        return -1;
    }
    for (size_t i = 0; f[0][i] != '\0'; i++) {
        if (!is_name_char((unsigned char)f[0][i]) || i == NAME_MAX_LEN) {
            sl_errors_add(errs, file, lineno,
                          "token name must be 1 to %d characters of [A-Za-z0-9_.-]", NAME_MAX_LEN);
            return -1;
        }
    }
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->v[i].name, f[0]) == 0) {
            sl_errors_add(errs, file, lineno, "token name '%s' is used twice", f[0]);
            return -1;
        }
    }
    tk = &t->v[t->n];
    if (parse_scopes(f[1], &tk->scopes) != 0) {
        sl_errors_add(errs, file, lineno,
                      "scopes must be a comma-separated list of read, write, admin");
        return -1;
    }
    /* The secret is never quoted back: an error message is not a place for it. */
    if (parse_secret(f[2], tk->digest) != 0) {
        sl_errors_add(errs, file, lineno,
                      "the secret of token '%s' must be sha256:<64 hex digits> or %d to %d "
                      "characters of [A-Za-z0-9-._~+/=]",
                      f[0], SECRET_MIN, SECRET_MAX);
        return -1;
    }
    if ((tk->name = strdup(f[0])) == NULL) {
        sl_errors_add(errs, file, lineno, "out of memory");
        return -1;
    }
    t->n++;
    return 0;
}

sl_tokens *sl_tokens_parse(const char *file, const char *text, size_t len, sl_errors *errs)
{
    sl_tokens *t = calloc(1, sizeof(*t));
    size_t lines = 1, before = errs->n;
    int lineno = 0;

    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    if (t == NULL || (t->v = calloc(lines, sizeof(*t->v))) == NULL) {
        sl_errors_add(errs, file, 0, "out of memory");
        sl_tokens_free(t);
        return NULL;
    }
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t n = nl != NULL ? (size_t)(nl - (text + at)) : len - at;
        char *line;

        lineno++;
        if (memchr(text + at, '\0', n) != NULL) {
            sl_errors_add(errs, file, lineno, "NUL byte in line");
            at += n + 1;
            continue;
        }
        if ((line = strndup(text + at, n)) == NULL) {
            sl_errors_add(errs, file, lineno, "out of memory");
            break;
        }
        if (n > 0 && line[n - 1] == '\r')
            line[n - 1] = '\0';
        add_line(t, line, file, lineno, errs);
        OPENSSL_cleanse(line, n);
        free(line);
        at += n + 1;
    }
    if (errs->n == before && t->n == 0)
        sl_errors_add(errs, file, 0,
                      "holds no token: an empty tokens_file would lock every "
                      "route that needs a scope");
    if (errs->n > before) {
        sl_tokens_free(t);
        return NULL;
    }
    return t;
}

sl_tokens *sl_tokens_load(const char *path, sl_errors *errs)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;
    sl_tokens *t;

    if (f == NULL) {
        sl_errors_add(errs, path, 0, "cannot read tokens file: %s", strerror(errno));
        return NULL;
    }
    buf = malloc(FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        sl_errors_add(errs, path, 0, "out of memory");
        return NULL;
    }
    n = fread(buf, 1, FILE_MAX + 1, f);
    if (ferror(f) || n > FILE_MAX) {
        sl_errors_add(errs, path, 0,
                      ferror(f) ? "cannot read tokens file" : "tokens file over 1 MiB");
        t = NULL;
    } else {
        t = sl_tokens_parse(path, buf, n, errs);
    }
    OPENSSL_cleanse(buf, n < FILE_MAX ? n : FILE_MAX);
    free(buf);
    fclose(f);
    return t;
}

void sl_tokens_free(sl_tokens *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].name);
    free(t->v);
    free(t);
}

size_t sl_tokens_count(const sl_tokens *t)
{
    return t != NULL ? t->n : 0;
}

const char *sl_tokens_find(const sl_tokens *t, const char *secret, size_t len, unsigned *scopes)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    const token *found = NULL;

    if (t == NULL)
        return NULL;
    SHA256((const unsigned char *)secret, len, digest);
    for (size_t i = 0; i < t->n; i++)
        if (CRYPTO_memcmp(digest, t->v[i].digest, sizeof(digest)) == 0)
            found = &t->v[i];
    if (found == NULL)
        return NULL;
    *scopes = found->scopes;
    return found->name;
}
