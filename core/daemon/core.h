/*
 * core.h - what the core's files share with each other; not for modules.
 */
#ifndef SL_CORE_H
#define SL_CORE_H

#include "config.h"
#include <sys/types.h>
#include <time.h>
#include <event2/event.h>
#include <sluice/sluice.h>
#include "conf/errors.h"
#include "conf/option.h"
#include "http/http.h"

#define SL_VERSION PACKAGE_VERSION

typedef struct sl_listener sl_listener;
typedef struct sl_dso sl_dso;

/* ------------------------------------------------------------ the loop */

/* The one event base of the process, created by main(). */
extern struct event_base *sl_base;

/* -------------------------------------------------------------- shared
 * objects: one per module file version.  An instance holds a reference;
 * the object is dlclose()d when the last reference goes. */

struct sl_dso {
    sl_dso *next;
    char *path; /* the file in modules_dir */
    dev_t dev;  /* identity of the file when it was loaded */
    ino_t ino;
    struct timespec mtime;
    void *handle;
    const sl_module *mod; /* &desc */
    sl_module desc;       /* the module's descriptor, hooks its ABI lacks NULL */
    int refs;
};

/* Finds `name`.so in `dir` and returns a reference to it: the loaded image
 * if the file on disk is the one already loaded (same device, inode and
 * mtime), else a fresh load from a private copy, so that a rebuilt module
 * really runs its new code.  Checks the ABI version and the name.  Returns
 * NULL after appending the reason to `errs`. */
sl_dso *sl_dso_get(const char *dir, const char *name, sl_errors *errs);
void sl_dso_ref(sl_dso *dso);
/* Drops a reference; the last one closes the image. */
void sl_dso_put(sl_dso *dso);
/* Removes the private directory of module copies; at exit. */
void sl_dso_cleanup(void);

/* ------------------------------------------------------------ instances */

typedef enum { SL_INST_NEW, SL_INST_RUNNING, SL_INST_STOPPING, SL_INST_STOPPED } sl_inst_state;

struct sl_resource {
    sl_resource *prev;
    sl_resource *next;
    sl_ctx *owner;
    const char *kind;
    void *obj;
    sl_release_fn release;
    sl_ready_fn ready;
};

/* Connectors an instance uses, so that a changed [kafka] replaces the
 * instances that hold Kafka handles and no others. */
#define SL_USES_KAFKA 0x1
#define SL_USES_POSTGRES 0x2
#define SL_USES_REDIS 0x4
#define SL_USES_CLICKHOUSE 0x8

typedef void (*sl_stopped_fn)(sl_ctx *ctx, void *arg);

/* Where a module's check() reports: the config file, the line and label of
 * the instance's section ("[module aggregator]"), and the error list of
 * the generation being built. */
typedef struct {
    sl_errors *errs;
    const char *file;
    int line;
    const char *section;
} sl_check_site;

struct sl_ctx {
    sl_ctx *next; /* in the list of live instances */
    sl_dso *dso;
    const sl_module *mod;
    char *instance; /* "" for the default instance */
    char *label;    /* "name" or "name/instance", for logs */
    sl_optset opts;
    sl_listener **listeners; /* its own `listen`, or none: [core] listen */
    size_t nlisteners;
    unsigned uses;
    void *data;
    int ready;
    int schema_only;   /* run by --init-schema: init_schema(), never start() */
    int schema_failed; /* ... and it reported an error */
    char ready_why[256];
    char fail_reason[512];
    sl_inst_state state;
    sl_resource *resources;
    size_t nresources;
    struct event *drain_timer;
    sl_stopped_fn on_stopped;
    void *on_stopped_arg;
    const sl_check_site *check; /* set only on the transient context of
                                   check(): see sl_instance_check() */
};

/* The list of instances not yet freed, newest first. */
extern sl_ctx *sl_instances;

/* Creates an instance of `dso` (taking a reference) with validated options
 * (moved from `opts`) and listeners (references taken). */
sl_ctx *sl_instance_new(sl_dso *dso, const char *instance, sl_optset *opts,
                        sl_listener *const *listeners, size_t nlisteners);
/* Calls the module's start(); on failure logs the reason, releases what
 * the instance registered and returns -1. */
int sl_instance_start(sl_ctx *ctx);
/* Starts draining; `done` runs once the instance has stopped and released
 * everything, at the latest `timeout` seconds from now. */
void sl_instance_stop(sl_ctx *ctx, double timeout, sl_stopped_fn done, void *arg);
/* Calls the module's init_schema() (which it must have); `done` runs once
 * the module called sl_schema_done(), or `timeout` seconds from now, with
 * the instance released and ctx->schema_failed set when it failed (the
 * reason in ctx->fail_reason).  Returns -1, with nothing pending, when
 * init_schema() itself failed. */
int sl_instance_init_schema(sl_ctx *ctx, double timeout, sl_stopped_fn done, void *arg);
/*
 * Runs the module's check() (if it has one) on the options of an instance
 * that does not exist yet.  Instances are created only when a generation
 * is switched in, and a real one would join sl_instances (/readyz, the
 * reload diff), take listener references and outlive a failed build; so
 * the check gets a transient context instead: the module and instance
 * name, `opts` borrowed read-only, never linked anywhere, refusing every
 * acquisition (sl_ctx_refuse), gone when check() returns.  Every error
 * goes to `site`.  Returns 0, or -1 when the instance is not valid.
 */
int sl_instance_check(sl_dso *dso, const char *instance, const sl_optset *opts,
                      const sl_check_site *site);
/* 1, after reporting a module bug, when `ctx` is a check() context, which
 * may acquire nothing (`what`: "a timer", "a route", ...); else 0.  Every
 * API function that acquires something on behalf of an instance asks
 * first. */
int sl_ctx_refuse(sl_ctx *ctx, const char *what);
/* Frees a stopped (or never started) instance and drops its dso. */
void sl_instance_free(sl_ctx *ctx);
/* 1 when the instance and every connector it holds are ready; else 0 with
 * the reason in `why`. */
int sl_instance_ready(sl_ctx *ctx, char *why, size_t whylen);
void sl_ctx_uses(sl_ctx *ctx, unsigned connectors);

/* ------------------------------------------------------------- metrics */

/* Registers the core's own metrics; called once at start. */
void sl_core_metrics_init(void);
void sl_core_metrics_free(void);
void sl_core_metrics_reload(int ok);
void sl_core_metrics_instances(size_t running);
void sl_core_metrics_start_failed(const char *module);

/* -------------------------------------------------------------- reload */

/* Reads the config at `path`, builds and starts the first generation.
 * Returns 0, or -1 after printing every error. */
int sl_cycle_init(const char *path);
/* Asks for a reload; coalesced with one in progress. */
void sl_cycle_reload(void);
/* Drains every instance, then breaks the loop. */
void sl_cycle_shutdown(void);
/* Checks a config without touching the running process: parse, validate
 * every section and module (loading the modules).  Prints every error. */
int sl_cycle_check(const char *path);
/* `sluiced --init-schema`: builds the generation of `path` without
 * listeners, prepares its connectors and calls init_schema() of every
 * module instance that has one.  Returns -1 when the configuration is not
 * valid; else 0 with `pending` set to the instances still applying, after
 * which the loop is to run until they are done (it exits by itself). */
int sl_cycle_init_schema(const char *path, size_t *pending);
/* Instances whose schema could not be applied, so far. */
size_t sl_cycle_schema_failures(void);
/* The validated options of a section of the current generation ([core],
 * [kafka], ...), or NULL when the section is absent. */
const sl_optset *sl_cycle_section(const char *name);
/* Releases what the last generation held; at exit. */
void sl_cycle_free_all(void);

#endif
