/*
 * access_log.c - a listener's access log; see access_log.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "daemon/log.h"
#include "access_log.h"

struct sl_access_log {
    int fd;
    int own; /* close fd when the last reference goes */
    int refs;
};

sl_access_log *sl_access_log_open(const char *where, char *err, size_t errlen)
{
    sl_access_log *l;
    int fd = STDERR_FILENO;

    err[0] = '\0';
    if (where[0] == '\0' || strcmp(where, "off") == 0)
        return NULL;
    if (strcmp(where, "stderr") != 0) {
        fd = open(where, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            snprintf(err, errlen, "cannot open %s: %s", where, strerror(errno));
            return NULL;
        }
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        if (fd != STDERR_FILENO)
            close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->fd = fd;
    l->own = fd != STDERR_FILENO;
    l->refs = 1;
    return l;
}

void sl_access_log_ref(sl_access_log *l)
{
    if (l != NULL)
        l->refs++;
}

void sl_access_log_put(sl_access_log *l)
{
    if (l == NULL || --l->refs > 0)
        return;
    if (l->own)
        close(l->fd);
    free(l);
}

static const char *or_dash(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : "-";
}

/* Appends `s` for a text line: bytes that would break the line or its
 * fields (blanks, quotes, controls, non-ASCII) as \xNN, so that a path
 * sent by anyone cannot forge a line or a field. */
static size_t text_escape(char *buf, size_t len, size_t cap, const char *s)
{
    for (; *s != '\0' && len + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            len += (size_t)snprintf(buf + len, cap - len, "\\x%02x", c);
        else
            buf[len++] = (char)c;
    }
    return len;
}

static size_t put(char *buf, size_t len, size_t cap, const char *fmt, ...) SL_PRINTF(4, 5);
static size_t put(char *buf, size_t len, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (len >= cap)
        return len;
    va_start(ap, fmt);
    n = vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
    return n < 0 ? len : len + (size_t)n < cap ? len + (size_t)n : cap - 1;
}

/* ,"name":"value" with the value escaped. */
static size_t json_field(char *buf, size_t len, size_t cap, const char *name, const char *v)
{
    len = put(buf, len, cap, ",\"%s\":\"", name);
    len = sl_log_json_escape(buf, len, cap, v);
    return put(buf, len, cap, "\"");
}

size_t sl_access_format(const sl_access_entry *e, int json, char *buf, size_t cap)
{
    char ts[32];
    size_t len = 0;

    sl_log_time(e->ts, ts);
    if (json) {
        len = put(buf, len, cap, "{\"ts\":\"%s\"", ts);
        len = json_field(buf, len, cap, "client", or_dash(e->client));
        len = json_field(buf, len, cap, "method", or_dash(e->method));
        len = json_field(buf, len, cap, "path", or_dash(e->path));
        len = put(buf, len, cap, ",\"status\":%d,\"bytes\":%zu,\"duration_s\":%.6f", e->status,
                  e->bytes, e->duration);
        len = json_field(buf, len, cap, "module", or_dash(e->module));
        len = json_field(buf, len, cap, "route", or_dash(e->route));
        len = json_field(buf, len, cap, "request_id", or_dash(e->request_id));
        if (e->trace_id != NULL && e->trace_id[0] != '\0')
            len = json_field(buf, len, cap, "trace_id", e->trace_id);
        if (e->token != NULL)
            len = json_field(buf, len, cap, "token", or_dash(e->token));
        len = put(buf, len, cap, "}");
    } else {
        len = put(buf, len, cap, "%s %s ", ts, or_dash(e->client));
        len = text_escape(buf, len, cap, or_dash(e->method));
        len = put(buf, len, cap, " ");
        len = text_escape(buf, len, cap, or_dash(e->path));
        len = put(buf, len, cap, " %d %zu %.6f module=", e->status, e->bytes, e->duration);
        len = text_escape(buf, len, cap, or_dash(e->module));
        len = put(buf, len, cap, " route=");
        len = text_escape(buf, len, cap, or_dash(e->route));
        len = put(buf, len, cap, " request_id=");
        len = text_escape(buf, len, cap, or_dash(e->request_id));
        len = put(buf, len, cap, " trace_id=%s", or_dash(e->trace_id));
        if (e->token != NULL) {
            len = put(buf, len, cap, " token=");
            len = text_escape(buf, len, cap, or_dash(e->token));
        }
    }
    if (len >= cap - 1)
        len = cap - 2;
    buf[len++] = '\n';
    buf[len] = '\0';
    return len;
}

void sl_access_log_write(sl_access_log *l, const sl_access_entry *e)
{
    char line[4096];
    size_t len;

    if (l == NULL)
        return;
    len = sl_access_format(e, sl_log_json(), line, sizeof(line));
    /* A full disk has nowhere to be reported but the log it fills. */
    if (write(l->fd, line, len) < 0)
        return;
}
