/*
 * access_log.h - the access log of a listener ([core] or a module's
 * `access_log = off|stderr|PATH`): one line per request answered on it,
 * in text or JSON as [core] log_format says.
 *
 * A log is opened when a generation is built (so a path that cannot be
 * written fails `sluiced -t` and keeps a reload from happening) and handed
 * to the listeners when the generation is switched in; every SIGHUP opens
 * the path again, which is what logrotate needs.  Requests hold their own
 * reference, so one answered after a reload still writes to the file it
 * was accepted under.  Each line is one write(2) with O_APPEND: lines of
 * several processes sharing a file never interleave mid-line.
 */
#ifndef SL_ACCESS_LOG_H
#define SL_ACCESS_LOG_H

#include <stddef.h>

typedef struct sl_access_log sl_access_log;

/* One answered request; strings NULL or "" when unknown. */
typedef struct {
    double ts;          /* wall clock seconds when it arrived */
    const char *client; /* peer address */
    const char *method;
    const char *path; /* without the query: it may hold secrets */
    int status;
    size_t bytes;       /* of the answer's body */
    double duration;    /* seconds from arrival to the answer */
    const char *module; /* instance label, "core" for the edge's answers */
    const char *route;  /* the route's pattern, "unmatched" */
    const char *request_id;
    const char *trace_id; /* 32 hex digits, or "" without a trace */
    const char *token;    /* the caller's token name; NULL when auth is off */
} sl_access_entry;

/*
 * Opens `where`: "stderr", or a file path (already resolved), created
 * when missing and appended to.  "off" (or "") is no log: NULL with
 * err[0] == '\0'.  Else NULL with the reason in `err`.
 */
sl_access_log *sl_access_log_open(const char *where, char *err, size_t errlen);
/* Reference counting; sl_access_log_put(NULL) does nothing. */
void sl_access_log_ref(sl_access_log *l);
void sl_access_log_put(sl_access_log *l);

/* Formats one line, newline included; returns its length (cut to fit
 * `cap`, which must be at least 2).  Pure: unit-tested. */
size_t sl_access_format(const sl_access_entry *e, int json, char *buf, size_t cap);

/* Writes the entry's line to `l` (NULL: nothing). */
void sl_access_log_write(sl_access_log *l, const sl_access_entry *e);

#endif
