/*
 * main.c - sluiced: command line, the loop and signals.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <hiredis/hiredis.h>
#include <cjson/cJSON.h>
#include "config.h"
#include "conf/conf.h"
#include "core.h"
#include "http/http.h"
#include "log.h"
#include "metrics/metrics.h"
#include "notify.h"
#include "conf/section.h"
#include "trace/trace.h"

struct event_base *sl_base;

/* --init-schema: a signal ends the run instead of draining modules. */
static int schema_mode;
static int interrupted;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluiced [-c FILE] [-t] [-V] [--init-schema] [--help-module NAME]\n"
            "  -c FILE              configuration file (default %s/sluice.conf)\n"
            "  -t                   check the configuration and exit: 0 when valid\n"
            "  --init-schema        apply the schema of every configured module\n"
            "                       (PostgreSQL, ClickHouse) and exit: 0 when done\n"
            "  -V                   print version and build information\n"
            "  --help-module NAME   print the options of a module or of a section\n"
            "                       (core, kafka, ...), as the reference documents them\n"
            "  --list-sections      print the names of the sections besides [module]\n",
            SL_SYSCONF_DIR);
}

static void version(void)
{
    printf("sluiced %s (module ABI %d, loads modules built for ABI %d to %d)\n", SL_VERSION,
           SL_ABI_VERSION, SL_ABI_OLDEST, SL_ABI_VERSION);
    printf("built with libevent %s, librdkafka %s, libpq %d, hiredis %d.%d.%d, %s, cJSON %s\n",
           event_get_version(), rd_kafka_version_str(), PQlibVersion(), HIREDIS_MAJOR,
           HIREDIS_MINOR, HIREDIS_PATCH, curl_version(), cJSON_Version());
    printf("modules directory %s\n", SL_MODULES_DIR);
}

static const char *const type_names[] = { "string", "int",      "double", "bool",
                                          "enum",   "duration", "list" };

static void print_options(const sl_option *opts)
{
    for (const sl_option *o = opts; o != NULL && o->name != NULL; o++) {
        size_t len = strlen(o->name);
        if (len >= 2 && strcmp(o->name + len - 2, ".*") == 0) {
            printf("  %s (any number of keys with this prefix)\n      %s\n", o->name, o->help);
            continue;
        }
        printf("  %s (%s", o->name, type_names[o->type]);
        if (o->def == NULL)
            printf(", required");
        else
            printf(", default \"%s\"", o->def);
        if (o->type == SL_OPT_ENUM)
            printf(", one of %s", o->choices);
        if (o->min < o->max)
            printf(", from %.15g to %.15g", o->min, o->max);
        printf(")\n      %s\n", o->help);
    }
}

/* The modules_dir a config names, or the built-in one. */
static char *modules_dir_of(const char *conf_path)
{
    char buf[PATH_MAX];
    sl_errors errs = { 0 };
    sl_conf *conf = conf_path != NULL ? sl_conf_parse_file(conf_path, &errs) : NULL;
    const sl_conf_section *core = conf != NULL ? sl_conf_find(conf, "core") : NULL;
    const char *dir = SL_MODULES_DIR, *slash;

    sl_errors_free(&errs);
    for (size_t i = 0; core != NULL && i < core->n; i++)
        if (strcmp(core->entries[i].key, "modules_dir") == 0)
            dir = core->entries[i].value;
    slash = conf_path != NULL ? strrchr(conf_path, '/') : NULL;
    if (dir[0] != '/' && slash != NULL)
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)(slash - conf_path), conf_path, dir);
    else
        snprintf(buf, sizeof(buf), "%s", dir);
    sl_conf_free(conf);
    return strdup(buf);
}

static int help_module(const char *name, const char *conf_path)
{
    const sl_section_schema *section = sl_section_find(name);
    sl_errors errs = { 0 };
    char *dir;
    sl_dso *dso;

    if (section != NULL) {
        printf("[%s] - %s\n", name, section->description);
        print_options(section->options);
        return 0;
    }
    dir = modules_dir_of(conf_path);
    dso = dir != NULL ? sl_dso_get(dir, name, &errs) : NULL;
    free(dir);
    if (dso == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "sluiced: %s\n", errs.msgs[i]);
        sl_errors_free(&errs);
        return 1;
    }
    printf("[module %s] - %s\n", name, dso->mod->description);
    print_options(dso->mod->options);
    print_options(sl_module_common_options);
    sl_dso_put(dso);
    sl_dso_cleanup();
    return 0;
}

/*
 * The loop.  evhttp enables and disables a connection's read and write
 * events several times per request; with the epoll changelist those
 * changes are folded into one epoll_ctl per descriptor per loop turn
 * instead of a system call each.
 */
static struct event_base *new_base(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;

    if (cfg == NULL)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    (void)arg;
    if (sig == SIGHUP) {
        sl_cycle_reload();
        return;
    }
    sl_log_core(SL_LOG_INFO, "core", "%s received", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    if (schema_mode) {
        interrupted = 1;
        event_base_loopexit(sl_base, NULL);
        return;
    }
    sl_cycle_shutdown();
}

/* Runs the loop until every module's init_schema() reported; 0 when all
 * of them applied their schema. */
static int init_schema(const char *conf_path)
{
    size_t pending;

    schema_mode = 1;
    if (sl_cycle_init_schema(conf_path, &pending) != 0) {
        sl_log_core(SL_LOG_ERROR, "core", "configuration %s is not valid; exiting", conf_path);
        return 1;
    }
    if (pending > 0)
        event_base_dispatch(sl_base);
    if (interrupted || sl_cycle_schema_failures() > 0) {
        sl_log_core(SL_LOG_ERROR, "core", "schema not applied completely");
        return 1;
    }
    sl_log_core(SL_LOG_INFO, "core", "schema of every module in place");
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = { { "help-module", required_argument, NULL, 'H' },
                                              { "list-sections", no_argument, NULL, 'L' },
                                              { "init-schema", no_argument, NULL, 'S' },
                                              { "help", no_argument, NULL, 'h' },
                                              { NULL, 0, NULL, 0 } };
    const char *conf_path = SL_SYSCONF_DIR "/sluice.conf";
    const char *help_name = NULL;
    int test_only = 0, schema_only = 0, opt, conf_given = 0, rc = 0;
    struct event *sig_hup = NULL, *sig_term = NULL, *sig_int = NULL;

    while ((opt = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            conf_path = optarg;
            conf_given = 1;
            break;
        case 't':
            test_only = 1;
            break;
        case 'V':
            version();
            return 0;
        case 'H':
            help_name = optarg;
            break;
        case 'S':
            schema_only = 1;
            break;
        case 'L':
            for (size_t i = 0; sl_sections[i] != NULL; i++)
                printf("%s\n", sl_sections[i]->name);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (help_name != NULL)
        return help_module(help_name, conf_given ? conf_path : NULL);
    if (test_only) {
        rc = sl_cycle_check(conf_path) == 0 ? 0 : 1;
        sl_dso_cleanup();
        return rc;
    }

    /* Before anything can start a thread that uses it. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "sluiced: curl_global_init failed\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sl_base = new_base();
    if (sl_base == NULL) {
        fprintf(stderr, "sluiced: cannot create the event loop\n");
        return 1;
    }
    sl_core_metrics_init();
    sl_http_metrics_init();
    if (sl_trace_metrics_init() != 0) {
        fprintf(stderr, "sluiced: out of memory\n");
        return 1;
    }
    sig_hup = evsignal_new(sl_base, SIGHUP, on_signal, NULL);
    sig_term = evsignal_new(sl_base, SIGTERM, on_signal, NULL);
    sig_int = evsignal_new(sl_base, SIGINT, on_signal, NULL);
    if (sig_hup == NULL || sig_term == NULL || sig_int == NULL || evsignal_add(sig_hup, NULL) ||
        evsignal_add(sig_term, NULL) || evsignal_add(sig_int, NULL)) {
        fprintf(stderr, "sluiced: cannot install signal handlers\n");
        rc = 1;
        goto out;
    }
    if (schema_only) {
        rc = init_schema(conf_path);
        goto out;
    }
    if (sl_cycle_init(conf_path) != 0) {
        sl_log_core(SL_LOG_ERROR, "core", "configuration %s is not valid; exiting", conf_path);
        rc = 1;
        goto out;
    }
    sl_log_core(SL_LOG_INFO, "core", "sluiced %s running with %s", SL_VERSION, conf_path);
    sl_notify("READY=1");
    event_base_dispatch(sl_base);
    sl_log_core(SL_LOG_INFO, "core", "exiting");

out:
    sl_cycle_free_all();
    sl_core_metrics_free();
    sl_http_metrics_free();
    if (sig_hup != NULL)
        event_free(sig_hup);
    if (sig_term != NULL)
        event_free(sig_term);
    if (sig_int != NULL)
        event_free(sig_int);
    event_base_free(sl_base);
    sl_dso_cleanup();
    curl_global_cleanup();
    return rc;
}
