/*
 * names.c - the names the relay builds or accepts, pure functions (unit
 * tested): the identifiers that may be spliced into SQL, and a row's topic.
 */
#include <string.h>
#include "outbox.h"

/* A plain identifier: [A-Za-z_][A-Za-z0-9_]*, at most 63 bytes (what
 * PostgreSQL keeps of a name), so that quoting it cannot go wrong. */
int ob_ident_ok(const char *s)
{
    size_t n = 0;

    if (s == NULL || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return n <= 63;
}

static void append_clean(char *out, size_t outlen, size_t *len, const char *v)
{
    for (; *v != '\0' && *len + 1 < outlen; v++) {
        char c = *v;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        out[(*len)++] = ok ? c : '_';
    }
}

/* The topic for a row: `tmpl` with ${aggregate_type} and ${event_type}
 * replaced by the row's values, characters Kafka does not allow in a topic
 * name turned into '_'. */
void ob_topic_of(const char *tmpl, const char *aggregate_type, const char *event_type, char *out,
                 size_t outlen)
{
    size_t len = 0;

    for (const char *p = tmpl; *p != '\0' && len + 1 < outlen;) {
        if (strncmp(p, "${aggregate_type}", 17) == 0) {
            append_clean(out, outlen, &len, aggregate_type);
            p += 17;
        } else if (strncmp(p, "${event_type}", 13) == 0) {
            append_clean(out, outlen, &len, event_type);
            p += 13;
        } else {
            out[len++] = *p++;
        }
    }
    out[len] = '\0';
}
