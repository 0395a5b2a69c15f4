/*
 * conf.h - the config file parser.
 *
 * The syntax is git-config-like INI:
 *
 *   # comment            ; comment
 *   [core]
 *   listen = 127.0.0.1:8080, 127.0.0.1:8081
 *   [module generator]
 *   [module generator "second"]
 *   password = ${PGPASSWORD}
 *
 * Section names and args are [A-Za-z0-9_-]+; the instance is a quoted
 * string (escapes as below, no ${}).  Keys are [A-Za-z0-9_.-]+ and are
 * case-sensitive.  Values run to the end of the line and are trimmed; a
 * value in double quotes keeps its spaces and understands \" \\ \n \t, and
 * \$ for a literal '$' ("\${X}" is not expanded); only a comment may follow
 * the closing quote.  An unquoted value ends at " #" or " ;" (a comment
 * after whitespace).  ${NAME} expands to the environment variable NAME; an
 * unset variable is an error; the expansion is taken literally.  CRLF line
 * endings and a UTF-8 byte order mark are accepted.  The parser knows
 * nothing of which sections or keys exist: that is checked against the
 * declared options (option.h).
 */
#ifndef SL_CONF_H
#define SL_CONF_H

#include <stddef.h>
#include "errors.h"

typedef struct {
    char *key;
    char *value;
    int line;
} sl_conf_entry;

typedef struct {
    char *name;     /* "core", "kafka", "module", ... */
    char *arg;      /* "generator" in [module generator], else NULL */
    char *instance; /* "second" in [module generator "second"], else "" */
    int line;
    sl_conf_entry *entries;
    size_t n;
} sl_conf_section;

typedef struct {
    char *file; /* as given, used in error messages */
    sl_conf_section *sections;
    size_t n;
} sl_conf;

/*
 * Parses a file or a string.  Returns the parsed config, or NULL when any
 * error was found (every error is appended to `errs`).  Syntax errors,
 * duplicate sections (same name, arg and instance) and duplicate keys
 * within one section are errors.  The caller owns the result.
 */
sl_conf *sl_conf_parse_file(const char *path, sl_errors *errs);
sl_conf *sl_conf_parse_string(const char *file, const char *text, sl_errors *errs);
void sl_conf_free(sl_conf *conf);

/* The first section named `name` (with no arg), or NULL. */
const sl_conf_section *sl_conf_find(const sl_conf *conf, const char *name);

#endif
