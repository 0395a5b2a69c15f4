/*
 * parse.h - the segments API's input checks and pure helpers: slugs, ids,
 * ttl, percent, the POST /segment/user body, history periods, signed
 * report names and the rollout bucket.  No I/O, so they are unit-tested
 * and fuzzed on their own.  Every check returns 0, or -1 with `why` saying
 * what is allowed (it becomes the 4xx answer's "error").
 */
#ifndef SEG_PARSE_H
#define SEG_PARSE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cJSON cJSON;

#define SEG_SLUG_MAX 64
#define SEG_LIST_MAX 100
/* ttl: one second to ten years */
#define SEG_TTL_MAX 315360000LL
/* ids fit a JSON number exactly (2^53 - 1) and a bigint */
#define SEG_ID_MAX 9007199254740991LL
/* rollout buckets: percent with two decimals */
#define SEG_BUCKETS 10000

int seg_slug_check(const char *s, char *why, size_t whylen);

/* A user id from a path segment: decimal digits only, 1..SEG_ID_MAX. */
int seg_parse_id_text(const char *s, long long *out, char *why, size_t whylen);
/* A user id from JSON: an integral number 1..SEG_ID_MAX. */
int seg_parse_id_json(const cJSON *v, const char *field, long long *out, char *why, size_t whylen);

/* Rejects any member of `obj` whose name is not in the NULL-terminated
 * `allowed`, so a misspelt field is an error rather than ignored. */
int seg_check_fields(const cJSON *obj, const char *const *allowed, char *why, size_t whylen);

/* POST /segment: {"slug": S, "user_percent": P (optional, 0..100, at
 * most two decimals)}.  *percent is -1 when absent. */
int seg_parse_segment(const cJSON *body, char slug[SEG_SLUG_MAX + 1], double *percent, char *why,
                      size_t whylen);
/* PATCH /segment/{slug}: {"user_percent": P or null, "description": D or
 * null}, at least one of them.  A field given (set_*) is changed; null
 * ends the rollout (percent -1) or clears the description
 * (has_description 0).  A description is at most SEG_DESC_MAX bytes of
 * text without control characters. */
#define SEG_DESC_MAX 500
typedef struct {
    int set_percent;
    double percent;
    int set_description;
    int has_description;
    char description[SEG_DESC_MAX + 1];
} seg_patch;
int seg_parse_patch(const cJSON *body, seg_patch *out, char *why, size_t whylen);

/* DELETE /segment: {"slug": S}. */
int seg_parse_slug_body(const cJSON *body, char slug[SEG_SLUG_MAX + 1], char *why, size_t whylen);

/* POST /segment/user. */
typedef struct {
    long long user_id;
    char add[SEG_LIST_MAX][SEG_SLUG_MAX + 1];
    size_t nadd;
    char del[SEG_LIST_MAX][SEG_SLUG_MAX + 1];
    size_t ndel;
    long long ttl; /* seconds; 0: no expiry */
} seg_change;
/* Slugs come out sorted (a fixed lock order for concurrent requests). */
int seg_parse_change(const cJSON *body, seg_change *out, char *why, size_t whylen);

/* A PostgreSQL text[] literal of slugs ("{A,B}"); slugs are [A-Z0-9_] so
 * no quoting is needed.  Returns the length, or -1 when it does not fit. */
int seg_slug_array(char (*slugs)[SEG_SLUG_MAX + 1], size_t n, char *out, size_t outlen);

/* ?year=&month=: year 2000..9999, month 1..12. */
int seg_parse_period(const char *year, const char *month, int *y, int *m, char *why, size_t whylen);

/*
 * Report names: "<user>-<yyyy>-<mm>-<32 hex>.csv", the hex being the first
 * 16 bytes of HMAC-SHA256(secret, "<user>:<yyyy>:<mm>").  Nothing is read
 * from disk, so a name is either exactly one we issued or refused.
 */
#define SEG_REPORT_NAME_MAX 64
void seg_report_name(const char *secret, long long user, int y, int m,
                     char out[SEG_REPORT_NAME_MAX]);
int seg_parse_report_name(const char *secret, const char *name, long long *user, int *y, int *m,
                          char *why, size_t whylen);

/* The sticky rollout bucket of a user for a segment, 0..SEG_BUCKETS-1:
 * the first four bytes of SHA-256("<user>:<slug>") big-endian, modulo
 * SEG_BUCKETS.  The migration defines segments_bucket() in SQL the same
 * way; a user is in a segment of percent p when bucket < round(p * 100). */
int seg_bucket(long long user, const char *slug);

#endif
