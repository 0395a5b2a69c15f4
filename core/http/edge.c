/*
 * edge.c - request checks at the HTTP edge (see edge.h).
 *
 * Character classes are spelled out rather than taken from <ctype.h>, so
 * that the locale cannot change what is accepted.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include "trace/traceparent.h"
#include "edge.h"

static int is_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int sl_edge_request_id_sane(const char *id)
{
    size_t n = 0;

    if (id == NULL)
        return 0;
    for (; id[n] != '\0'; n++) {
        int c = (unsigned char)id[n];
        if (n == SL_REQUEST_ID_MAX ||
            !(is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return n > 0;
}

/* The 16 lower-case hex digits of `v`, most significant first, and a NUL. */
static void hex16(unsigned long long v, char *out)
{
    uint8_t bytes[8];

    for (int i = 7; i >= 0; i--) {
        bytes[i] = (uint8_t)v;
        v >>= 8;
    }
    sl_tp_hex(bytes, sizeof(bytes), out);
}

/* Written without snprintf(), which took ~1,500 instructions, on every
 * request. */
void sl_edge_request_id_make(unsigned long long prefix, unsigned long long n, char *out)
{
    hex16(prefix, out);
    out[16] = '-';
    hex16(n, out + 17);
    out[33] = '\0';
}

const char *sl_edge_bearer(const char *header, size_t *len)
{
    const char *p;
    size_t n = 0;

    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    p = header + 7;
    while (*p == ' ')
        p++;
    /* b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
    while (is_alnum((unsigned char)p[n]) || strchr("-._~+/", p[n]) != NULL) {
        if (p[n] == '\0')
            break;
        n++;
    }
    while (p[n] == '=')
        n++;
    if (n == 0)
        return NULL;
    for (size_t i = n; p[i] != '\0'; i++)
        if (p[i] != ' ')
            return NULL;
    *len = n;
    return p;
}

int sl_edge_is_json(const char *ct)
{
    size_t n;

    if (ct == NULL)
        return 0;
    while (*ct == ' ')
        ct++;
    n = strcspn(ct, "; ");
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return 1;
    /* application/<something>+json, e.g. application/merge-patch+json */
    return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
           strncasecmp(ct + n - 5, "+json", 5) == 0 && memchr(ct + 12, '/', n - 12) == NULL;
}

int sl_edge_cross_site(const char *sec_fetch_site, const char *origin, const char *scheme,
                       const char *host)
{
    size_t slen;

    if (sec_fetch_site != NULL && strcasecmp(sec_fetch_site, "cross-site") == 0)
        return 1;
    if (origin == NULL)
        return 0;
    if (host == NULL)
        return 1;
    slen = strlen(scheme);
    return !(strncasecmp(origin, scheme, slen) == 0 && strncmp(origin + slen, "://", 3) == 0 &&
             strcasecmp(origin + slen + 3, host) == 0);
}

int sl_edge_host_allowed(const char *host, const char *const *allowed, size_t n)
{
    size_t namelen;
    const char *colon;

    if (host == NULL)
        return 0;
    /* "[::1]:8080": the port follows the bracket. */
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        namelen = close != NULL ? (size_t)(close - host) + 1 : strlen(host);
    } else {
        colon = strchr(host, ':');
        namelen = colon != NULL ? (size_t)(colon - host) : strlen(host);
    }
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(allowed[i], host) == 0)
            return 1;
        if (strlen(allowed[i]) == namelen && strncasecmp(allowed[i], host, namelen) == 0)
            return 1;
    }
    return 0;
}

int sl_edge_loopback(const char *host)
{
    unsigned char a[16];
    char buf[64];
    size_t n = strlen(host);

    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET6, host, a) == 1) {
        static const unsigned char one[16] = { [15] = 1 };
        return memcmp(a, one, sizeof(one)) == 0;
    }
    return 0;
}
