/*
 * section.h - the sections a config file may hold besides [module ...].
 *
 * [core] and one section per connector.  Each declares its options like a
 * module does, so that one validator checks everything, `-t` reports every
 * error with file:line, and the reference documentation can be generated.
 */
#ifndef SL_SCHEMA_H
#define SL_SCHEMA_H

#include <sluice/sluice.h>
#include "errors.h"
#include "option.h"

typedef struct {
    const char *name; /* the section name: "core", "kafka", ... */
    const char *description;
    const sl_option *options;
    unsigned uses_bit; /* SL_USES_* of instances that hold its handles */
    /*
     * Checks the validated options further, without side effects (e.g. that
     * every rdkafka.* property is one librdkafka accepts).  Called by `-t`
     * and on every reload before anything changes.  Returns 0, or -1 after
     * appending to `errs`.  May be NULL.
     */
    int (*check)(const sl_optset *opts, const char *file, sl_errors *errs);
    /*
     * Called before a generation holding this section (opts) becomes
     * current, with the options of the current one (NULL at start or when
     * the section is new).  Starts or adapts process-wide parts such as the
     * embedded Kafka broker.  Returns 0, or -1 after appending to `errs`;
     * the reload is then abandoned.  May be NULL.
     */
    int (*prepare)(const sl_optset *old, const sl_optset *opts, sl_errors *errs);
    /* Stops process-wide parts at exit, after every instance stopped.
     * May be NULL. */
    void (*shutdown)(void);
} sl_section_schema;

/* The most sections sl_sections[] may hold. */
#define SL_MAX_SECTIONS 16

/* NULL-terminated. */
extern const sl_section_schema *const sl_sections[];

const sl_section_schema *sl_section_find(const char *name);
/* 1 when `name` is a section this build left out (./configure
 * --disable-NAME), so that a config holding it is told why it is refused. */
int sl_section_left_out(const char *name);

/* Options every [module ...] section accepts besides the module's own. */
extern const sl_option sl_module_common_options[];

#endif
