/*
 * pg_stmt.c - the bookkeeping of prepared statements (sluice_pg.h): the
 * statements a handle knows, and for each connection the set of those it
 * has prepared in its current session.  Pure: nothing here talks to the
 * server (pg_conn.c does), so it is unit tested.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pg_int.h"

#define NAME_MAX_LEN 50 /* "sl_" + this fits PostgreSQL's 63-byte names */

int pg_stmt_name_ok(const char *name)
{
    size_t n = 0;

    if (name == NULL)
        return 0;
    for (; name[n] != '\0'; n++) {
        char c = name[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return n >= 1 && n <= NAME_MAX_LEN;
}

sl_pg_stmt *pg_stmt_find(sl_pg_stmt *list, const char *name)
{
    for (sl_pg_stmt *st = list; st != NULL; st = st->next)
        if (strcmp(st->name + 3, name) == 0)
            return st;
    return NULL;
}

sl_pg_stmt *pg_stmt_new(const sl_pg *pg, int index, const char *name, const char *sql)
{
    sl_pg_stmt *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return NULL;
    st->sql = strdup(sql);
    if (st->sql == NULL) {
        free(st);
        return NULL;
    }
    st->pg = pg;
    st->index = index;
    snprintf(st->name, sizeof(st->name), "sl_%s", name);
    return st;
}

void pg_stmt_free(sl_pg_stmt *st)
{
    if (st != NULL) {
        free(st->sql);
        free(st->span_attrs.json);
    }
    free(st);
}

int pg_set_reserve(pg_set *s, size_t n)
{
    unsigned char *has;

    if (n <= s->n)
        return 0;
    has = realloc(s->has, n);
    if (has == NULL)
        return -1;
    memset(has + s->n, 0, n - s->n);
    s->has = has;
    s->n = n;
    return 0;
}

int pg_set_has(const pg_set *s, int i)
{
    return i >= 0 && (size_t)i < s->n && s->has[i];
}

void pg_set_add(pg_set *s, int i)
{
    if (i >= 0 && (size_t)i < s->n)
        s->has[i] = 1;
}

void pg_set_clear(pg_set *s)
{
    if (s->n > 0)
        memset(s->has, 0, s->n);
}

void pg_set_free(pg_set *s)
{
    free(s->has);
    s->has = NULL;
    s->n = 0;
}
