/*
 * metrics_text.c - the Prometheus text exposition of the metrics registry.
 *
 * Conventions of the exposition: labels render in declared order, then
 * instance_name (only for a named instance), then le; a family without help
 * text gets no "# HELP" line; a family without labels (histograms too) gets
 * its series at registration so it is exposed as 0 from the start.  A family
 * has at most SL_METRIC_MAX_LABELS label names.
 *
 * Numbers are formatted with printf and parsed back with strtod, so this
 * relies on the C numeric locale; the daemon never changes LC_NUMERIC.
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "metrics.h"
#include "metrics_int.h"
#include "daemon/redact.h"

typedef struct {
    char *p;
    size_t len;
    size_t cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    char *p;
    size_t cap;

    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        cap = b->cap > 0 ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Escapes backslash and newline, and the double quote for label values. */
static void sb_escaped(sbuf *b, const char *s, int quote)
{
    const char *run = s, *esc;

    for (; *s != '\0'; s++) {
        esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && quote)
            esc = "\\\"";
        if (esc != NULL) {
            sb_put(b, run, (size_t)(s - run));
            sb_puts(b, esc);
            run = s + 1;
        }
    }
    sb_put(b, run, (size_t)(s - run));
}

/*
 * Formats a sample value the way Prometheus reads it back exactly:
 * integral values as plain integers (while doubles hold them exactly),
 * others with the fewest digits that round-trip.
 */
static void format_value(char *out, size_t len, double v)
{
    int prec;

    if (isnan(v)) {
        snprintf(out, len, "NaN");
    } else if (isinf(v)) {
        snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        snprintf(out, len, "0"); /* also for -0 */
    } else if (v == floor(v) && fabs(v) <= 9007199254740992.0) {
        snprintf(out, len, "%.0f", v);
    } else {
        for (prec = 15; prec < 17; prec++) {
            snprintf(out, len, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                return;
        }
        snprintf(out, len, "%.17g", v);
    }
}

static void sb_value(sbuf *b, double v)
{
    char num[64];

    format_value(num, sizeof(num), v);
    sb_puts(b, num);
}

/* Label values are bounded sets by convention, but one that quotes a url
 * or a dsn must not expose its password. */
static void sb_label(sbuf *b, int *first, const char *name, const char *value)
{
    char *shown = NULL;
    size_t cap;

    sb_puts(b, *first ? "{" : ",");
    *first = 0;
    sb_puts(b, name);
    sb_puts(b, "=\"");
    if (strstr(value, "://") != NULL || strcasestr(value, "password") != NULL) {
        cap = strlen(value) * 3 + 1; /* "***" for a one-character password */
        shown = malloc(cap);
        if (shown == NULL)
            value = "";
        else
            sl_redact(value, shown, cap);
    }
    sb_escaped(b, shown != NULL ? shown : value, 1);
    free(shown);
    sb_puts(b, "\"");
}

/* `name{labels...,instance_name="..",le=".."} `; braces only when needed. */
static void sb_series_name(sbuf *b, const sl_family *f, const sl_series *s, const char *suffix,
                           const char *le)
{
    const char *instance = s->key, *p = s->key;
    int first = 1;
    size_t i;

    sb_puts(b, f->name);
    sb_puts(b, suffix);
    for (i = 0; i < f->nlabels; i++) {
        p += strlen(p) + 1;
        sb_label(b, &first, f->labels[i], p);
    }
    if (*instance != '\0')
        sb_label(b, &first, SL_INSTANCE_LABEL, instance);
    if (le != NULL)
        sb_label(b, &first, "le", le);
    if (!first)
        sb_puts(b, "}");
    sb_puts(b, " ");
}

static void sb_count(sbuf *b, uint64_t n)
{
    char num[32];

    snprintf(num, sizeof(num), "%" PRIu64, n);
    sb_puts(b, num);
}

static void render_family(sbuf *b, const sl_family *f)
{
    const sl_series *s;
    char le[64];
    uint64_t cum;
    size_t i;

    /* An empty help would give "# HELP name " with nothing to say. */
    if (f->help[0] != '\0') {
        sb_puts(b, "# HELP ");
        sb_puts(b, f->name);
        sb_puts(b, " ");
        sb_escaped(b, f->help, 0);
        sb_puts(b, "\n");
    }
    sb_puts(b, "# TYPE ");
    sb_puts(b, f->name);
    sb_puts(b, " ");
    sb_puts(b, type_name(f->type));
    sb_puts(b, "\n");

    for (s = f->first; s != NULL; s = s->next) {
        if (s->hidden || s->retired)
            continue;
        if (f->type != SL_METRIC_HISTOGRAM) {
            sb_series_name(b, f, s, "", NULL);
            sb_value(b, s->value);
            sb_puts(b, "\n");
            continue;
        }
        cum = 0;
        for (i = 0; i < f->nbounds; i++) {
            cum += s->buckets[i];
            format_value(le, sizeof(le), f->bounds[i]);
            sb_series_name(b, f, s, "_bucket", le);
            sb_count(b, cum);
            sb_puts(b, "\n");
        }
        sb_series_name(b, f, s, "_bucket", "+Inf");
        sb_count(b, s->count);
        sb_puts(b, "\n");
        sb_series_name(b, f, s, "_sum", NULL);
        sb_value(b, s->value);
        sb_puts(b, "\n");
        sb_series_name(b, f, s, "_count", NULL);
        sb_count(b, s->count);
        sb_puts(b, "\n");
    }
}

char *sl_metrics_render(size_t *len)
{
    sbuf b = { NULL, 0, 0, 0 };
    const sl_family *f;

    sb_put(&b, "", 0); /* an empty registry still gets a string */
    for (f = metrics_families(); f != NULL; f = f->next)
        render_family(&b, f);
    if (b.oom) {
        free(b.p);
        sl_log_core(SL_LOG_ERROR, "metrics", "out of memory rendering metrics");
        return NULL;
    }
    if (len != NULL)
        *len = b.len;
    return b.p;
}
