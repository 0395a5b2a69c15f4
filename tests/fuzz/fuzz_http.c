/*
 * fuzz_http.c - libFuzzer target for what the core does with a request
 * before a module sees it: the URI and query parsing (libevent, as
 * sl_req_query uses it), route matching against every pattern the modules
 * register, and the edge checks (request id, Authorization, Content-Type,
 * Origin/Sec-Fetch-Site, Host, bearer lookup in a token table).  The
 * input is split at NUL bytes into the fields a request carries.  Beyond
 * not crashing, what a function accepts must satisfy its contract.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore -Icore/http -Icore/include \
 *     tests/fuzz/fuzz_http.c core/http/router.c core/http/edge.c core/trace/traceparent.c \
 *     core/http/tokens.c core/conf/errors.c core/daemon/redact.c -levent -lcrypto
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include "edge.h"
#include "router.h"
#include "tokens.h"

/* Every pattern the shipped modules register. */
static const char *const patterns[] = {
    "/metrics",
    "/healthz",
    "/readyz",
    "/",
    "/status.json",
    "/user",
    "/segment",
    "/segment/user",
    "/segment/user/{id}",
    "/segment/history/{id}",
    "/segment/reports/{name}",
    "/openapi.json",
    "/docs",
    "/docs/{file}",
    "/generator/config/speed",
    "/generator/status",
    "/generator/{inst}/status",
    "/aggregator/query/aggregates",
    "/aggregator/analytics",
    "/outbox/retry",
    "/outbox/status",
};

static const char tokens_text[] =
        "reader read read-token-0123456789abcdef\n"
        "ops admin,write sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8\n";

static sl_tokens *table(void)
{
    static sl_tokens *t;
    sl_errors errs = { 0 };

    if (t == NULL &&
        (t = sl_tokens_parse("fuzz", tokens_text, sizeof(tokens_text) - 1, &errs)) == NULL)
        abort();
    return t;
}

/* The next NUL-terminated field of the input, or "" past its end. */
static const char *field(char **p, const char *end)
{
    char *f = *p;

    if (f >= end)
        return "";
    *p += strlen(f) + 1;
    return f;
}

static void check_match(const char *path)
{
    for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
        sl_params params;
        int m = sl_route_match(patterns[i], path, &params);
        if (m < -1 || m > 1 || (m != 1 && params.n != 0))
            abort();
        for (size_t j = 0; m == 1 && j < params.n; j++)
            if (params.values[j][0] == '\0')
                abort(); /* a parameter matches one non-empty segment */
        if (m == 1)
            sl_params_free(&params);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *p = text, *end;
    const char *uri, *query, *auth, *ctype, *fetch_site, *origin, *host, *rid;
    struct evhttp_uri *u;
    struct evkeyvalq q;
    size_t len;
    unsigned scopes;
    const char *allowed[] = { "localhost", "example.com:8443" };

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    end = text + size;
    uri = field(&p, end);
    query = field(&p, end);
    auth = field(&p, end);
    ctype = field(&p, end);
    fetch_site = field(&p, end);
    origin = field(&p, end);
    host = field(&p, end);
    rid = field(&p, end);

    u = evhttp_uri_parse_with_flags(uri, EVHTTP_URI_NONCONFORMANT);
    if (u != NULL) {
        const char *path = evhttp_uri_get_path(u);
        check_match(path != NULL && path[0] != '\0' ? path : "/");
        evhttp_uri_free(u);
    }
    check_match(uri);
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(query, &q) == 0)
        evhttp_find_header(&q, "hours");
    evhttp_clear_headers(&q);
    if (sl_route_pattern_valid(uri)) {
        sl_params params;
        if (sl_route_match(uri, uri, &params) == 1)
            sl_params_free(&params);
    }

    const char *secret = sl_edge_bearer(auth, &len);
    if (secret != NULL) {
        if (len == 0 || secret < auth || secret + len > auth + strlen(auth))
            abort();
        const char *name = sl_tokens_find(table(), secret, len, &scopes);
        if (name != NULL && (scopes == 0 || (scopes & ~7u)))
            abort();
    }
    sl_edge_is_json(ctype);
    sl_edge_cross_site(fetch_site, origin, "http", host);
    sl_edge_host_allowed(host, allowed, 2);
    sl_edge_loopback(host);
    if (sl_edge_request_id_sane(rid)) {
        size_t n = strlen(rid);
        if (n == 0 || n > SL_REQUEST_ID_MAX ||
            strspn(rid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") != n)
            abort();
    }
    free(text);
    return 0;
}
