/*
 * conf.c - the config file parser (the syntax is described in conf.h).
 *
 * The whole input is held in memory and each line is copied into a buffer
 * that grows as needed, so no line is ever truncated.  Parsing carries on
 * after an error so that one run reports every problem in the file; the
 * result is only handed out when there was none.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

typedef struct {
    char *p;
    size_t len;
    size_t cap;
} strbuf;

typedef struct {
    const char *file;
    sl_errors *errs;
    sl_conf *conf;
    size_t sections_cap;
    sl_conf_section *cur; /* the section receiving keys, or NULL */
    size_t cur_cap;       /* capacity of cur->entries */
    int skipping;         /* after a bad or duplicate header: check keys, store nothing */
    int line;
    int oom;
    strbuf val; /* the value being built, reused for every line */
} parser;

/* ------------------------------------------------------------- helpers */

/* The parser's own character classes, so that the locale cannot change
 * what a valid key is. */
static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_name_char(int c)
{
    return is_alpha(c) || is_digit(c) || c == '_' || c == '-';
}

static int is_key_char(int c)
{
    return is_name_char(c) || c == '.';
}

static int is_var_char(int c)
{
    return is_alpha(c) || is_digit(c) || c == '_';
}

static int is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static char *skip_blank(char *p)
{
    while (is_blank(*p))
        p++;
    return p;
}

static void rtrim(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && is_blank(s[n - 1]))
        s[--n] = '\0';
}

/* Appends n bytes and keeps the buffer NUL-terminated.  Returns 0 or -1. */
static int sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        char *p;

        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->p, cap);
        if (p == NULL)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int sb_adds(strbuf *b, const char *s)
{
    return sb_add(b, s, strlen(s));
}

/* Appends to the value buffer, recording an allocation failure. */
static int val_add(parser *ps, const char *s, size_t n)
{
    if (sb_add(&ps->val, s, n) < 0) {
        ps->oom = 1;
        return -1;
    }
    return 0;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* "[name arg \"instance\"]" for messages; NULL when out of memory.  The
 * caller frees it. */
static char *section_label(const sl_conf_section *sec)
{
    strbuf b = { 0 };
    int rc = sb_adds(&b, "[");

    rc |= sb_adds(&b, sec->name);
    if (sec->arg) {
        rc |= sb_adds(&b, " ");
        rc |= sb_adds(&b, sec->arg);
    }
    if (sec->instance && sec->instance[0]) {
        rc |= sb_adds(&b, " \"");
        rc |= sb_adds(&b, sec->instance);
        rc |= sb_adds(&b, "\"");
    }
    rc |= sb_adds(&b, "]");
    if (rc != 0) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static void section_free(sl_conf_section *sec)
{
    size_t i;

    for (i = 0; i < sec->n; i++) {
        free(sec->entries[i].key);
        free(sec->entries[i].value);
    }
    free(sec->entries);
    free(sec->name);
    free(sec->arg);
    free(sec->instance);
}

/* ---------------------------------------------------------------- values */

/*
 * Expands the reference "${NAME}" at `p` into the value buffer and returns
 * the position after it, or NULL after reporting an error.  The line is
 * our own copy, so the name is NUL-terminated in place for getenv().
 */
static char *expand_var(parser *ps, char *p)
{
    char *name = p + 2, *q = name, *env, saved;

    while (is_var_char(*q))
        q++;
    if (*q != '}' || q == name || is_digit(*name)) {
        char *close = strchr(name, '}');

        if (close == NULL)
            sl_errors_add(ps->errs, ps->file, ps->line, "unterminated '${' in value");
        else
            sl_errors_add(ps->errs, ps->file, ps->line,
                          "invalid variable reference '%.*s' (expected ${NAME}, NAME made "
                          "of letters, digits and '_')",
                          (int)(close - p + 1), p);
        return NULL;
    }
    saved = *q;
    *q = '\0';
    env = getenv(name);
    if (env == NULL) {
        sl_errors_add(ps->errs, ps->file, ps->line, "environment variable '%s' is not set", name);
        *q = saved;
        return NULL;
    }
    *q = saved;
    /* The expansion is taken literally: it is not scanned for quotes,
     * comments or further references. */
    if (val_add(ps, env, strlen(env)) < 0)
        return NULL;
    return q + 1;
}

/*
 * Reads a double-quoted string whose opening quote is just before `p` into
 * the value buffer, handling escapes and, when `expand` is set, ${NAME}.
 * Returns the position after the closing quote, or NULL after reporting an
 * error.  `what` names the construct in messages.
 */
static char *read_quoted(parser *ps, char *p, int expand, const char *what)
{
    for (;;) {
        const char *rep;

        switch (*p) {
        case '\0':
            sl_errors_add(ps->errs, ps->file, ps->line, "unterminated quote in %s", what);
            return NULL;
        case '"':
            return p + 1;
        case '\\':
            switch (p[1]) {
            case '"':
                rep = "\"";
                break;
            case '\\':
                rep = "\\";
                break;
            case 'n':
                rep = "\n";
                break;
            case 't':
                rep = "\t";
                break;
            case '$':
                rep = "$";
                break;
            case '\0':
                sl_errors_add(ps->errs, ps->file, ps->line, "unterminated quote in %s", what);
                return NULL;
            default:
                sl_errors_add(ps->errs, ps->file, ps->line,
                              "unknown escape '\\%c' in %s (use \\\" \\\\ \\n \\t or \\$)", p[1],
                              what);
                return NULL;
            }
            if (val_add(ps, rep, 1) < 0)
                return NULL;
            p += 2;
            break;
        default:
            if (expand && p[0] == '$' && p[1] == '{') {
                p = expand_var(ps, p);
                if (p == NULL)
                    return NULL;
                break;
            }
            if (val_add(ps, p, 1) < 0)
                return NULL;
            p++;
            break;
        }
    }
}

/*
 * Parses the value that starts at `v` (blanks after '=' already skipped)
 * into the value buffer.  Returns 0, or -1 after reporting an error.
 */
static int read_value(parser *ps, char *v)
{
    char *p, *end;

    ps->val.len = 0;
    if (val_add(ps, "", 0) < 0)
        return -1;

    if (*v == '"') {
        p = read_quoted(ps, v + 1, 1, "value");
        if (p == NULL)
            return -1;
        p = skip_blank(p);
        if (*p != '\0' && *p != '#' && *p != ';') {
            rtrim(p);
            sl_errors_add(ps->errs, ps->file, ps->line, "unexpected text '%s' after closing quote",
                          p);
            return -1;
        }
        return 0;
    }

    /* A comment starts only after a blank, so "a#b" and "x;y" stay values.
     * v[-1] is always part of the line: at least "k=" precedes v. */
    for (end = v; *end; end++)
        if ((*end == '#' || *end == ';') && is_blank(end[-1]))
            break;
    *end = '\0';
    rtrim(v);

    for (p = v; *p;) {
        if (p[0] == '$' && p[1] == '{') {
            p = expand_var(ps, p);
            if (p == NULL)
                return -1;
        } else {
            size_t n = strcspn(p + 1, "$") + 1;

            if (val_add(ps, p, n) < 0)
                return -1;
            p += n;
        }
    }
    return 0;
}

/* ------------------------------------------------------------- sections */

static void bad_header(parser *ps, char *line, const char *why)
{
    rtrim(line);
    sl_errors_add(ps->errs, ps->file, ps->line, "invalid section header '%s': %s", line, why);
    ps->cur = NULL;
    ps->skipping = 1;
}

/* Adds `sec` unless it duplicates an earlier section.  Takes ownership of
 * its strings either way. */
static void add_section(parser *ps, sl_conf_section *sec)
{
    sl_conf *conf = ps->conf;
    size_t i;

    for (i = 0; i < conf->n; i++) {
        const sl_conf_section *o = &conf->sections[i];

        if (strcmp(o->name, sec->name) == 0 && strcmp(o->instance, sec->instance) == 0 &&
            ((o->arg == NULL && sec->arg == NULL) ||
             (o->arg && sec->arg && strcmp(o->arg, sec->arg) == 0))) {
            char *label = section_label(sec);

            if (label == NULL)
                ps->oom = 1;
            else
                sl_errors_add(ps->errs, ps->file, ps->line,
                              "duplicate section %s (first defined at line %d)", label, o->line);
            free(label);
            section_free(sec);
            ps->cur = NULL;
            ps->skipping = 1;
            return;
        }
    }

    if (conf->n == ps->sections_cap) {
        size_t cap = ps->sections_cap ? ps->sections_cap * 2 : 8;
        sl_conf_section *s = realloc(conf->sections, cap * sizeof *s);

        if (s == NULL) {
            section_free(sec);
            ps->oom = 1;
            return;
        }
        conf->sections = s;
        ps->sections_cap = cap;
    }
    conf->sections[conf->n] = *sec;
    ps->cur = &conf->sections[conf->n++];
    ps->cur_cap = 0;
    ps->skipping = 0;
}

/* `s` is the line from its '['. */
static void parse_header(parser *ps, char *s)
{
    sl_conf_section sec = { 0 };
    char *p, *name, *name_end, *arg = NULL, *arg_end = NULL;
    char why[64];

    p = skip_blank(s + 1);
    name = p;
    while (is_name_char(*p))
        p++;
    name_end = p;
    if (name == name_end) {
        bad_header(ps, s, "expected a section name made of letters, digits, '_' and '-'");
        return;
    }
    p = skip_blank(p);
    if (is_name_char(*p)) {
        arg = p;
        while (is_name_char(*p))
            p++;
        arg_end = p;
        p = skip_blank(p);
    }

    ps->val.len = 0;
    if (*p == '"') {
        if (arg == NULL) {
            bad_header(ps, s,
                       "an instance name must follow a name, as in [module name \"instance\"]");
            return;
        }
        /* No ${} here: an instance name is part of the config's identity. */
        p = read_quoted(ps, p + 1, 0, "section header");
        if (p == NULL) {
            ps->cur = NULL;
            ps->skipping = 1;
            return;
        }
        p = skip_blank(p);
    }

    if (*p != ']') {
        if (*p == '\0')
            bad_header(ps, s, "missing ']'");
        else {
            snprintf(why, sizeof why, "unexpected character '%c'", *p);
            bad_header(ps, s, why);
        }
        return;
    }
    p = skip_blank(p + 1);
    if (*p != '\0' && *p != '#' && *p != ';') {
        bad_header(ps, s, "unexpected text after ']'");
        return;
    }

    sec.line = ps->line;
    sec.name = dup_n(name, (size_t)(name_end - name));
    sec.arg = arg ? dup_n(arg, (size_t)(arg_end - arg)) : NULL;
    sec.instance = dup_n(ps->val.p ? ps->val.p : "", ps->val.len);
    if (sec.name == NULL || (arg && sec.arg == NULL) || sec.instance == NULL) {
        section_free(&sec);
        ps->oom = 1;
        return;
    }
    add_section(ps, &sec);
}

/* ----------------------------------------------------------------- keys */

/* `s` is the line from its first non-blank character. */
static void parse_entry(parser *ps, char *s)
{
    sl_conf_section *sec;
    sl_conf_entry *e;
    char *p = s, *key_end, *eq;
    size_t i;

    while (is_key_char(*p))
        p++;
    key_end = p;
    p = skip_blank(p);
    if (*p != '=' || key_end == s) {
        eq = strchr(s, '=');
        if (eq == NULL) {
            rtrim(s);
            sl_errors_add(ps->errs, ps->file, ps->line,
                          "syntax error: expected '[section]' or 'key = value', got '%s'", s);
            return;
        }
        while (eq > s && is_blank(eq[-1]))
            eq--;
        if (eq == s)
            sl_errors_add(ps->errs, ps->file, ps->line, "missing key before '='");
        else
            sl_errors_add(ps->errs, ps->file, ps->line,
                          "invalid key '%.*s' (keys are made of letters, digits, '_', '.' "
                          "and '-')",
                          (int)(eq - s), s);
        return;
    }
    p++;
    *key_end = '\0';

    if (ps->cur == NULL && !ps->skipping) {
        sl_errors_add(ps->errs, ps->file, ps->line, "key '%s' outside of any section", s);
        return;
    }
    if (read_value(ps, skip_blank(p)) < 0 || ps->skipping)
        return;

    sec = ps->cur;
    for (i = 0; i < sec->n; i++) {
        if (strcmp(sec->entries[i].key, s) == 0) {
            char *label = section_label(sec);

            if (label == NULL) {
                ps->oom = 1;
                return;
            }
            sl_errors_add(ps->errs, ps->file, ps->line,
                          "duplicate key '%s' in %s (first set at line %d)", s, label,
                          sec->entries[i].line);
            free(label);
            return;
        }
    }

    if (sec->n == ps->cur_cap) {
        size_t cap = ps->cur_cap ? ps->cur_cap * 2 : 8;

        e = realloc(sec->entries, cap * sizeof *e);
        if (e == NULL) {
            ps->oom = 1;
            return;
        }
        sec->entries = e;
        ps->cur_cap = cap;
    }
    e = &sec->entries[sec->n];
    e->key = dup_n(s, strlen(s));
    e->value = dup_n(ps->val.p, ps->val.len);
    e->line = ps->line;
    if (e->key == NULL || e->value == NULL) {
        free(e->key);
        free(e->value);
        ps->oom = 1;
        return;
    }
    sec->n++;
}

static void parse_line(parser *ps, char *line)
{
    char *s = skip_blank(line);

    if (*s == '\0' || *s == '#' || *s == ';')
        return;
    if (*s == '[')
        parse_header(ps, s);
    else
        parse_entry(ps, s);
}

/* ---------------------------------------------------------------- parse */

/* Parses `len` bytes of `text`, which may contain NUL bytes (reported). */
static sl_conf *parse(const char *file, const char *text, size_t len, sl_errors *errs)
{
    parser ps = { 0 };
    strbuf line = { 0 };
    size_t n0 = errs->n, pos = 0;

    ps.file = file;
    ps.errs = errs;
    ps.conf = calloc(1, sizeof *ps.conf);
    if (ps.conf == NULL || (file && (ps.conf->file = dup_n(file, strlen(file))) == NULL)) {
        free(ps.conf);
        sl_errors_add(errs, file, 0, "out of memory");
        return NULL;
    }

    /* Editors on some systems start a UTF-8 file with a byte order mark. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        pos = 3;

    while (pos < len && !ps.oom) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - start) : len - pos;

        pos += n + (nl != NULL);
        ps.line++;
        if (n > 0 && start[n - 1] == '\r')
            n--;
        if (memchr(start, '\0', n) != NULL) {
            sl_errors_add(errs, file, ps.line, "line contains a NUL byte");
            continue;
        }
        line.len = 0;
        if (sb_add(&line, start, n) < 0) {
            ps.oom = 1;
            break;
        }
        parse_line(&ps, line.p);
    }
    free(line.p);
    free(ps.val.p);

    if (ps.oom)
        sl_errors_add(errs, file, ps.line, "out of memory");
    if (errs->n > n0) {
        sl_conf_free(ps.conf);
        return NULL;
    }
    return ps.conf;
}

sl_conf *sl_conf_parse_string(const char *file, const char *text, sl_errors *errs)
{
    return parse(file, text, strlen(text), errs);
}

sl_conf *sl_conf_parse_file(const char *path, sl_errors *errs)
{
    strbuf b = { 0 };
    sl_conf *conf;
    char chunk[8192];
    size_t n;
    FILE *f;

    f = fopen(path, "rb");
    if (f == NULL) {
        sl_errors_add(errs, path, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (sb_add(&b, chunk, n) < 0) {
            sl_errors_add(errs, path, 0, "out of memory reading the file");
            free(b.p);
            fclose(f);
            return NULL;
        }
    }
    if (ferror(f)) {
        /* fread() leaves errno from the failed read(), e.g. EISDIR. */
        int err = errno;

        sl_errors_add(errs, path, 0, "cannot read: %s", strerror(err));
        free(b.p);
        fclose(f);
        return NULL;
    }
    fclose(f);

    conf = parse(path, b.p ? b.p : "", b.len, errs);
    free(b.p);
    return conf;
}

void sl_conf_free(sl_conf *conf)
{
    size_t i;

    if (conf == NULL)
        return;
    for (i = 0; i < conf->n; i++)
        section_free(&conf->sections[i]);
    free(conf->sections);
    free(conf->file);
    free(conf);
}

const sl_conf_section *sl_conf_find(const sl_conf *conf, const char *name)
{
    size_t i;

    if (conf == NULL)
        return NULL;
    for (i = 0; i < conf->n; i++)
        if (conf->sections[i].arg == NULL && strcmp(conf->sections[i].name, name) == 0)
            return &conf->sections[i];
    return NULL;
}
