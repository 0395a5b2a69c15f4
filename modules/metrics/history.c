/*
 * history.c - rings of per-family sums, filled from the text exposition.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "history.h"

int history_init(history *h, size_t cap)
{
    memset(h, 0, sizeof(*h));
    h->cap = cap < 2 ? 2 : cap;
    h->mono = calloc(h->cap, sizeof(double));
    h->wall = calloc(h->cap, sizeof(double));
    h->fams = calloc(HIST_MAX_FAMILIES, sizeof(hist_family));
    if (h->mono == NULL || h->wall == NULL || h->fams == NULL) {
        history_free(h);
        return -1;
    }
    return 0;
}

void history_free(history *h)
{
    for (size_t i = 0; h->fams != NULL && i < h->nfams; i++) {
        free(h->fams[i].name);
        free(h->fams[i].values);
    }
    free(h->fams);
    free(h->mono);
    free(h->wall);
    memset(h, 0, sizeof(*h));
}

/* The family named by `name` (`len` bytes), created with an all-NaN ring;
 * NULL when the table is full or out of memory. */
static hist_family *family(history *h, const char *name, size_t len, int kind)
{
    hist_family *f;

    for (size_t i = 0; i < h->nfams; i++) {
        f = &h->fams[i];
        if (strlen(f->name) == len && memcmp(f->name, name, len) == 0) {
            f->kind = kind;
            return f;
        }
    }
    if (h->nfams == HIST_MAX_FAMILIES)
        return NULL;
    f = &h->fams[h->nfams];
    f->name = strndup(name, len);
    f->values = malloc(h->cap * sizeof(double));
    if (f->name == NULL || f->values == NULL) {
        free(f->name);
        free(f->values);
        f->name = NULL;
        f->values = NULL;
        return NULL;
    }
    for (size_t i = 0; i < h->cap; i++)
        f->values[i] = NAN;
    f->kind = kind;
    h->nfams++;
    return f;
}

/* Past "{...}" at `p` (label values may hold '}' and escaped quotes). */
static const char *skip_labels(const char *p, const char *end)
{
    int quoted = 0;

    for (p++; p < end; p++) {
        if (quoted && *p == '\\')
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (!quoted && *p == '}')
            return p + 1;
    }
    return end;
}

int history_sample(history *h, const char *text, size_t len, double mono, double wall)
{
    const char *p = text, *end = text + len;
    hist_family *cur = NULL; /* the family of the last # TYPE line we keep */
    size_t slot = h->head;
    int rc = 0;

    for (size_t i = 0; i < h->nfams; i++)
        h->fams[i].values[slot] = NAN;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *name_end;
        if (eol == NULL)
            eol = end;
        if (strncmp(p, "# TYPE ", 7) == 0) {
            const char *n = p + 7, *sp = memchr(n, ' ', (size_t)(eol - n));
            cur = NULL;
            if (sp != NULL) {
                size_t klen = (size_t)(eol - sp - 1);
                int kind = -1;
                if (klen == 7 && memcmp(sp + 1, "counter", 7) == 0)
                    kind = HIST_COUNTER;
                else if (klen == 5 && memcmp(sp + 1, "gauge", 5) == 0)
                    kind = HIST_GAUGE;
                if (kind >= 0) {
                    cur = family(h, n, (size_t)(sp - n), kind);
                    if (cur == NULL)
                        rc = -1;
                    else if (isnan(cur->values[slot]))
                        cur->values[slot] = 0; /* present, maybe without series yet */
                }
            }
        } else if (p[0] != '#' && cur != NULL) {
            name_end = p;
            while (name_end < eol && *name_end != '{' && *name_end != ' ')
                name_end++;
            /* Only the family's own series: a counter's _created or a
             * summary's parts would not match the name. */
            if ((size_t)(name_end - p) == strlen(cur->name) &&
                memcmp(p, cur->name, (size_t)(name_end - p)) == 0) {
                const char *v =
                        name_end < eol && *name_end == '{' ? skip_labels(name_end, eol) : name_end;
                char *stop;
                double d = strtod(v, &stop);
                if (stop != v && !isnan(d))
                    cur->values[slot] += d;
            }
        }
        p = eol + 1;
    }
    h->mono[slot] = mono;
    h->wall[slot] = wall;
    h->head = (h->head + 1) % h->cap;
    if (h->count < h->cap)
        h->count++;
    return rc;
}

/* JSON number, or null for NaN and infinities (JSON has neither). */
static cJSON *number(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

int history_json(const history *h, cJSON *out)
{
    cJSON *t = cJSON_AddArrayToObject(out, "t");
    cJSON *series = cJSON_AddArrayToObject(out, "series");
    size_t first = (h->head + h->cap - h->count) % h->cap;

    if (t == NULL || series == NULL)
        return -1;
    for (size_t k = 0; k < h->count; k++)
        cJSON_AddItemToArray(t, cJSON_CreateNumber(h->wall[(first + k) % h->cap]));
    for (size_t i = 0; i < h->nfams; i++) {
        const hist_family *f = &h->fams[i];
        cJSON *s = cJSON_CreateObject(), *vals;
        if (s == NULL)
            return -1;
        cJSON_AddItemToArray(series, s);
        cJSON_AddStringToObject(s, "name", f->name);
        cJSON_AddStringToObject(s, "kind", f->kind == HIST_COUNTER ? "rate" : "gauge");
        vals = cJSON_AddArrayToObject(s, "values");
        if (vals == NULL)
            return -1;
        for (size_t k = 0; k < h->count; k++) {
            size_t at = (first + k) % h->cap, prev = (at + h->cap - 1) % h->cap;
            double v = f->values[at];
            if (f->kind == HIST_COUNTER) {
                /* A rate needs the sample before; a counter that went
                 * down was reset (its instance replaced): no rate there. */
                double dt = h->mono[at] - h->mono[prev];
                v = k == 0 || dt <= 0 || v < f->values[prev] ? NAN : (v - f->values[prev]) / dt;
            }
            cJSON_AddItemToArray(vals, number(v));
        }
    }
    return 0;
}
