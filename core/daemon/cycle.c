/*
 * cycle.c - generations of configuration, and reloading between them.
 *
 * Like an nginx cycle, a generation is built whole from the config file:
 * parse, validate every section and every module's options, load the
 * modules, bind new listen addresses.  Only when all of that succeeded does
 * it replace the running one; on any error the running generation is not
 * touched.  Then the instances are diffed by (module, instance name):
 * unchanged ones carry over, changed ones are replaced, removed ones drain,
 * new ones start.  Replacing an exclusive module (a consumer-group member,
 * an outbox claimer) drains the old instance before the successor starts;
 * any other successor starts first, so its routes take over at once.
 *
 * A reload asked for while one is in progress (instances still draining or
 * waiting to start) runs once after it: any number of SIGHUPs coalesce.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conf/conf.h"
#include "core.h"
#include "http/edge.h"
#include "http/http.h"
#include "log.h"
#include "notify.h"
#include "conf/section.h"
#include "trace/trace.h"

typedef struct {
    sl_dso *dso;
    char *instance;
    sl_optset opts;
    sl_listener **listeners;
    size_t nlisteners;
    sl_tls *tls;         /* of its own listeners, loaded when the generation is built */
    sl_access_log *alog; /* of its own listeners, opened then too */
} spec;

typedef struct {
    char *path;
    char *modules_dir;
    sl_optset sections[SL_MAX_SECTIONS];
    int present[SL_MAX_SECTIONS];
    sl_listener **listeners;
    size_t nlisteners;
    sl_tls *tls; /* of the [core] listeners */
    sl_access_log *alog;
    sl_tokens *tokens; /* from [core] tokens_file, or NULL */
    spec *specs;
    size_t nspecs;
} cycle;

static cycle *current;
static int reloading;
static int reload_again;
static int shutting_down;
static size_t pending; /* transitions of the current reload still under way */

static void cycle_free(cycle *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < SL_MAX_SECTIONS; i++)
        sl_optset_free(&c->sections[i]);
    for (size_t i = 0; i < c->nlisteners; i++)
        sl_listener_put(c->listeners[i]);
    free(c->listeners);
    sl_tls_put(c->tls);
    sl_access_log_put(c->alog);
    sl_tokens_free(c->tokens);
    for (size_t i = 0; i < c->nspecs; i++) {
        spec *s = &c->specs[i];
        if (s->dso != NULL)
            sl_dso_put(s->dso);
        free(s->instance);
        sl_optset_free(&s->opts);
        for (size_t j = 0; j < s->nlisteners; j++)
            sl_listener_put(s->listeners[j]);
        free(s->listeners);
        sl_tls_put(s->tls);
        sl_access_log_put(s->alog);
    }
    free(c->specs);
    free(c->modules_dir);
    free(c->path);
    free(c);
}

static size_t section_index(const char *name)
{
    for (size_t i = 0; sl_sections[i] != NULL; i++)
        if (strcmp(sl_sections[i]->name, name) == 0)
            return i;
    return SL_MAX_SECTIONS;
}

/* Errors from helpers that know no file position get the section's. */
static void relocate(sl_errors *to, sl_errors *from, const char *file, int line)
{
    for (size_t i = 0; i < from->n; i++)
        sl_errors_add(to, file, line, "%s", from->msgs[i]);
    sl_errors_free(from);
}

/* Takes references on the listeners of a `listen` list. */
static int bind_all(const sl_optval *listen, sl_listener ***out, size_t *nout, const char *file,
                    int line, sl_errors *errs)
{
    sl_errors local = { 0 };

    *out = NULL;
    *nout = 0;
    if (listen == NULL || listen->nlist == 0)
        return 0;
    *out = calloc(listen->nlist, sizeof(**out));
    if (*out == NULL) {
        sl_errors_add(errs, file, line, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < listen->nlist; i++) {
        sl_listener *l = sl_listener_get(listen->list[i], &local);
        if (l == NULL)
            continue;
        (*out)[(*nout)++] = l;
    }
    if (local.n > 0) {
        relocate(errs, &local, file, line);
        return -1;
    }
    return 0;
}

static char *resolve_dir(const char *conf_path, const char *dir)
{
    char buf[PATH_MAX];
    const char *slash;

    if (dir[0] == '/')
        return strdup(dir);
    slash = strrchr(conf_path, '/');
    if (slash == NULL)
        return strdup(dir);
    snprintf(buf, sizeof(buf), "%.*s/%s", (int)(slash - conf_path), conf_path, dir);
    return strdup(buf);
}

/* Syntax-checks listen addresses when not binding (sluiced -t). */
static void check_addrs(const sl_optval *listen, const char *file, int line, sl_errors *errs)
{
    for (size_t i = 0; listen != NULL && i < listen->nlist; i++) {
        const char *colon = strrchr(listen->list[i], ':');
        char *end;
        long port = colon != NULL ? strtol(colon + 1, &end, 10) : 0;
        if (colon == NULL || *end != '\0' || port < 1 || port > 65535)
            sl_errors_add(errs, file, line, "listen address '%s' is not host:port",
                          listen->list[i]);
    }
}

/* The line of option `key` in the file, else the section's. */
static int line_of(const sl_optset *opts, const char *key, int section_line)
{
    const sl_optval *v = sl_optset_get(opts, key);
    return v != NULL && v->line > 0 ? v->line : section_line;
}

/* Loads a certificate and key named relative to the config file's
 * directory, like every other path in it. */
static void load_tls(const char *cert, const char *key, const char *file, int line, sl_tls **tls,
                     sl_errors *errs)
{
    char *c = resolve_dir(file, cert), *k = resolve_dir(file, key);

    if (c == NULL || k == NULL)
        sl_errors_add(errs, file, line, "out of memory");
    else
        *tls = sl_tls_load(c, k, file, line, errs);
    free(c);
    free(k);
}

/* Opens an access log named relative to the config file's directory
 * ("off" and "stderr" are not paths). */
static void open_access_log(const char *where, const char *file, int line, sl_access_log **alog,
                            sl_errors *errs)
{
    int named = strcmp(where, "off") != 0 && strcmp(where, "stderr") != 0 && where[0] != '\0';
    char *path = named ? resolve_dir(file, where) : strdup(where);
    char err[512];

    if (path == NULL) {
        sl_errors_add(errs, file, line, "out of memory");
        return;
    }
    *alog = sl_access_log_open(path, err, sizeof(err));
    if (*alog == NULL && err[0] != '\0')
        sl_errors_add(errs, file, line, "access_log: %s", err);
    free(path);
}

/*
 * Checks the listener settings of a section (`opts`, [core] or a module's),
 * loads its TLS certificate into `*tls` and opens its access log into
 * `*alog`.  Secure by default: a listen
 * address off loopback needs credentials ([core] tokens_file) or an
 * explicit allow_anonymous, like Redis's protected mode.
 */
static int check_listen(const sl_optset *opts, int have_tokens, const char *file, int line,
                        const char *label, sl_tls **tls, sl_access_log **alog, sl_errors *errs)
{
    const sl_optval *listen = sl_optset_get(opts, "listen");
    const char *cert = sl_optset_get(opts, "tls_cert")->raw;
    const char *key = sl_optset_get(opts, "tls_key")->raw;
    size_t before = errs->n;

    for (size_t i = 0; listen != NULL && i < listen->nlist; i++) {
        const char *addr = listen->list[i], *colon = strrchr(addr, ':');
        char host[256];
        size_t n = colon != NULL ? (size_t)(colon - addr) : strlen(addr);
        if (n >= sizeof(host))
            continue; /* reported as a bad address */
        memcpy(host, addr, n);
        host[n] = '\0';
        if (n > 0 && !sl_edge_loopback(host) && !have_tokens &&
            !sl_optset_get(opts, "allow_anonymous")->i)
            sl_errors_add(errs, file, line_of(opts, "listen", line),
                          "%s listen %s is not on loopback and [core] tokens_file is not set: "
                          "anyone who reaches it could call every route; set tokens_file, or "
                          "allow_anonymous = yes if that is intended",
                          label, addr);
    }
    if ((cert[0] == '\0') != (key[0] == '\0'))
        sl_errors_add(errs, file, line_of(opts, cert[0] ? "tls_cert" : "tls_key", line),
                      "%s tls_cert and tls_key go together", label);
    else if (cert[0] != '\0')
        load_tls(cert, key, file, line_of(opts, "tls_cert", line), tls, errs);
    open_access_log(sl_optset_get(opts, "access_log")->raw, file, line_of(opts, "access_log", line),
                    alog, errs);
    return errs->n > before ? -1 : 0;
}

/* The options that configure a listener: two sections naming the same
 * address must agree on them. */
static const char *const listen_keys[] = { "allow_anonymous", "allowed_hosts", "max_connections",
                                           "tls_cert",        "tls_key",       "access_log" };

static int same_listen_settings(const sl_optset *a, const sl_optset *b)
{
    for (size_t i = 0; i < sizeof(listen_keys) / sizeof(listen_keys[0]); i++)
        if (strcmp(sl_optset_get(a, listen_keys[i])->raw, sl_optset_get(b, listen_keys[i])->raw) !=
            0)
            return 0;
    return 1;
}

static int lists_share(const sl_optval *a, const sl_optval *b, const char **which)
{
    for (size_t i = 0; a != NULL && i < a->nlist; i++)
        for (size_t j = 0; b != NULL && j < b->nlist; j++)
            if (strcmp(a->list[i], b->list[j]) == 0) {
                *which = a->list[i];
                return 1;
            }
    return 0;
}

/* A listener is one socket with one set of settings. */
static void check_shared_listeners(const cycle *c, const char *file, sl_errors *errs)
{
    const sl_optset *core = &c->sections[section_index("core")];
    const char *addr;

    for (size_t i = 0; i < c->nspecs; i++) {
        const sl_optset *a = &c->specs[i].opts;
        if (lists_share(sl_optset_get(a, "listen"), sl_optset_get(core, "listen"), &addr) &&
            !same_listen_settings(a, core))
            sl_errors_add(errs, file, line_of(a, "listen", 0),
                          "[module %s] listens on %s like [core] with other listener settings "
                          "(allow_anonymous, allowed_hosts, max_connections, tls_cert, tls_key, "
                          "access_log)",
                          c->specs[i].dso->mod->name, addr);
        for (size_t j = i + 1; j < c->nspecs; j++)
            if (lists_share(sl_optset_get(a, "listen"), sl_optset_get(&c->specs[j].opts, "listen"),
                            &addr) &&
                !same_listen_settings(a, &c->specs[j].opts))
                sl_errors_add(errs, file, line_of(&c->specs[j].opts, "listen", 0),
                              "[module %s] listens on %s like [module %s] with other listener "
                              "settings",
                              c->specs[j].dso->mod->name, addr, c->specs[i].dso->mod->name);
    }
}

/* Reads [core] tokens_file into c->tokens; its errors carry its own file
 * and line. */
static void load_tokens(cycle *c, const char *path, sl_errors *errs)
{
    const sl_optset *core = &c->sections[section_index("core")];
    const char *file = sl_optset_get(core, "tokens_file")->raw;
    char *full;

    if (file[0] == '\0')
        return;
    full = resolve_dir(path, file);
    if (full == NULL) {
        sl_errors_add(errs, path, 0, "out of memory");
        return;
    }
    c->tokens = sl_tokens_load(full, errs);
    free(full);
}

/*
 * Calls the module's check() on the validated options of `s`.  No
 * instance exists at this point, and none is made: sl_instance_check()
 * lends the module a transient context holding only these options, whose
 * errors land in `errs` with the file, the line of the offending key (or
 * of the section) and the section's label, like any bad option.
 */
static int check_module(const spec *s, const char *file, const sl_conf_section *sec,
                        sl_errors *errs)
{
    sl_check_site site = { errs, file, sec->line, NULL };
    char *label;
    int rc;

    if (s->dso->mod->check == NULL)
        return 0;
    label = sl_section_label(sec);
    if (label == NULL) {
        sl_errors_add(errs, file, sec->line, "out of memory");
        return -1;
    }
    site.section = label;
    rc = sl_instance_check(s->dso, s->instance, &s->opts, &site);
    free(label);
    return rc;
}

static int build_module(cycle *c, const sl_conf *conf, const sl_conf_section *sec, int bind,
                        sl_errors *errs)
{
    const sl_option *no_options = sl_module_common_options + 0;
    const sl_option *tables[2];
    sl_errors local = { 0 };
    spec *s = &c->specs[c->nspecs];
    char *label;
    int checked;

    if (sec->arg == NULL) {
        sl_errors_add(errs, conf->file, sec->line, "[module] needs a name: [module NAME]");
        return -1;
    }
    s->dso = sl_dso_get(c->modules_dir, sec->arg, &local);
    if (s->dso == NULL) {
        relocate(errs, &local, conf->file, sec->line);
        return -1;
    }
    s->instance = strdup(sec->instance != NULL ? sec->instance : "");
    c->nspecs++;
    if (s->instance == NULL) {
        sl_errors_add(errs, conf->file, sec->line, "out of memory");
        return -1;
    }
    tables[0] = s->dso->mod->options != NULL ? s->dso->mod->options : no_options;
    tables[1] = sl_module_common_options;
    if (sl_options_validate(tables, 2, sec, conf->file, &s->opts, errs) != 0)
        return -1;
    /* Syntax only start() would have refused, so that a bad value fails
     * -t, startup and a reload alike, before any instance is touched. */
    checked = check_module(s, conf->file, sec, errs);
    label = sl_section_label(sec);
    if (check_listen(&s->opts, c->tokens != NULL, conf->file, sec->line,
                     label != NULL ? label : "[module]", &s->tls, &s->alog, errs) != 0)
        checked = -1;
    free(label);
    if (bind)
        return bind_all(sl_optset_get(&s->opts, "listen"), &s->listeners, &s->nlisteners,
                        conf->file, sec->line, errs) != 0 ||
                               checked != 0
                       ? -1
                       : 0;
    check_addrs(sl_optset_get(&s->opts, "listen"), conf->file, sec->line, errs);
    return checked;
}

static void apply_log_settings(const sl_optset *core)
{
    sl_log_configure(sl_log_level_parse(sl_optset_get(core, "log_level")->raw),
                     sl_log_format_parse(sl_optset_get(core, "log_format")->raw));
}

/*
 * Builds a generation from `path`.  With `bind`, listen addresses are bound
 * (or shared with the running generation); without, only checked.  Returns
 * NULL after appending every error found to `errs`.
 */
static cycle *build(const char *path, int bind, sl_errors *errs)
{
    size_t before = errs->n;
    sl_conf *conf = sl_conf_parse_file(path, errs);
    cycle *c;
    size_t core_at = section_index("core");
    int core_line = 0;

    if (conf == NULL)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->path = strdup(path)) == NULL ||
        (conf->n > 0 && (c->specs = calloc(conf->n, sizeof(*c->specs))) == NULL)) {
        sl_errors_add(errs, path, 0, "out of memory");
        sl_conf_free(conf);
        cycle_free(c);
        return NULL;
    }
    /* Connector and core sections first: modules_dir must be known before
     * any module is loaded. */
    for (size_t i = 0; i < conf->n; i++) {
        const sl_conf_section *sec = &conf->sections[i];
        const sl_option *tables[1];
        size_t at;

        if (strcmp(sec->name, "module") == 0)
            continue;
        at = section_index(sec->name);
        if (at == SL_MAX_SECTIONS && sl_section_left_out(sec->name)) {
            sl_errors_add(errs, conf->file, sec->line,
                          "section [%s]: this sluiced is built without it (--disable-%s)",
                          sec->name, sec->name);
            continue;
        }
        if (at == SL_MAX_SECTIONS) {
            sl_errors_add(errs, conf->file, sec->line, "unknown section [%s]", sec->name);
            continue;
        }
        if (sec->arg != NULL) {
            sl_errors_add(errs, conf->file, sec->line, "section [%s] takes no name", sec->name);
            continue;
        }
        tables[0] = sl_sections[at]->options;
        if (sl_options_validate(tables, 1, sec, conf->file, &c->sections[at], errs) == 0) {
            c->present[at] = 1;
            if (sl_sections[at]->check != NULL)
                sl_sections[at]->check(&c->sections[at], conf->file, errs);
        }
        if (at == core_at)
            core_line = sec->line;
    }
    if (!c->present[core_at] && core_line == 0) {
        const sl_option *tables[1] = { sl_sections[core_at]->options };
        if (sl_options_validate(tables, 1, NULL, conf->file, &c->sections[core_at], errs) == 0)
            c->present[core_at] = 1;
    }
    /* Without a valid [core] there is no modules_dir to check modules in;
     * otherwise go on, so that one run reports every error. */
    if (!c->present[core_at])
        goto fail;
    if (current == NULL && bind)
        apply_log_settings(&c->sections[core_at]);

    load_tokens(c, path, errs);
    check_listen(&c->sections[core_at], c->tokens != NULL, conf->file, core_line, "[core]", &c->tls,
                 &c->alog, errs);
    c->modules_dir = resolve_dir(path, sl_optset_get(&c->sections[core_at], "modules_dir")->raw);
    if (c->modules_dir == NULL) {
        sl_errors_add(errs, path, 0, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < conf->n; i++)
        if (strcmp(conf->sections[i].name, "module") == 0)
            build_module(c, conf, &conf->sections[i], bind, errs);

    if (bind)
        bind_all(sl_optset_get(&c->sections[core_at], "listen"), &c->listeners, &c->nlisteners,
                 conf->file, core_line, errs);
    else
        check_addrs(sl_optset_get(&c->sections[core_at], "listen"), conf->file, core_line, errs);
    check_shared_listeners(c, conf->file, errs);
    if (errs->n > before)
        goto fail;
    sl_conf_free(conf);
    return c;

fail:
    sl_conf_free(conf);
    cycle_free(c);
    return NULL;
}

static void print_errors(const sl_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        sl_log_core(SL_LOG_ERROR, "config", "%s", errs->msgs[i]);
}

int sl_cycle_check(const char *path)
{
    sl_errors errs = { 0 };
    cycle *c = build(path, 0, &errs);

    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "sluiced: %s\n", errs.msgs[i]);
    sl_errors_free(&errs);
    if (c == NULL) {
        fprintf(stderr, "sluiced: configuration file %s test failed\n", path);
        return -1;
    }
    cycle_free(c);
    fprintf(stderr, "sluiced: configuration file %s test is successful\n", path);
    return 0;
}

const sl_optset *sl_cycle_section(const char *name)
{
    size_t at = section_index(name);

    if (current == NULL || at == SL_MAX_SECTIONS || !current->present[at])
        return NULL;
    return &current->sections[at];
}

/* ------------------------------------------------------------- applying */

static void configure_listeners(sl_listener *const *ls, size_t n, const sl_optset *opts,
                                sl_tls *tls, sl_access_log *alog)
{
    const sl_optval *hosts = sl_optset_get(opts, "allowed_hosts");
    sl_listen_settings ls_set = {
        .anonymous = (int)sl_optset_get(opts, "allow_anonymous")->i,
        .max_connections = (size_t)sl_optset_get(opts, "max_connections")->i,
        .allowed_hosts = hosts->list,
        .nallowed_hosts = hosts->nlist,
        .tls = tls,
        .access_log = alog,
    };

    for (size_t i = 0; i < n; i++)
        if (sl_listener_configure(ls[i], &ls_set) != 0)
            sl_log_core(SL_LOG_ERROR, "core",
                        "out of memory configuring listener %s; it keeps "
                        "its previous settings",
                        sl_listener_addr(ls[i]));
}

static void apply_core_settings(const cycle *c)
{
    const sl_optset *core = &c->sections[section_index("core")];
    sl_http_settings hs = {
        .max_body = (size_t)sl_optset_get(core, "max_body_size")->i,
        .max_header = (size_t)sl_optset_get(core, "max_header_size")->i,
        .timeout = sl_optset_get(core, "request_timeout")->d,
        .rate = sl_optset_get(core, "rate_limit")->d,
        .burst = sl_optset_get(core, "rate_burst")->d,
        .tokens = c->tokens,
    };

    apply_log_settings(core);
    sl_http_configure(&hs);
    sl_listeners_set_core(c->listeners, c->nlisteners);
    configure_listeners(c->listeners, c->nlisteners, core, c->tls, c->alog);
    for (size_t i = 0; i < c->nspecs; i++)
        configure_listeners(c->specs[i].listeners, c->specs[i].nlisteners, &c->specs[i].opts,
                            c->specs[i].tls, c->specs[i].alog);
    if (c->tokens != NULL)
        sl_log_core(SL_LOG_INFO, "core", "%zu bearer tokens loaded", sl_tokens_count(c->tokens));
    sl_trace_configure(sl_cycle_section("tracing"));
}

static double drain_timeout(void)
{
    return sl_optset_get(sl_cycle_section("core"), "drain_timeout")->d;
}

/* The running instances, as a malloc'd array: stopping one must not
 * disturb the walk. */
static sl_ctx **running_instances(size_t *n)
{
    size_t count = 0;
    sl_ctx **all;

    for (sl_ctx *c = sl_instances; c != NULL; c = c->next)
        count += c->state == SL_INST_RUNNING;
    all = calloc(count + 1, sizeof(*all));
    *n = 0;
    if (all == NULL)
        return NULL;
    for (sl_ctx *c = sl_instances; c != NULL; c = c->next)
        if (c->state == SL_INST_RUNNING)
            all[(*n)++] = c;
    return all;
}

#define FLUSH_CHECK_SECONDS 0.01
#define FLUSH_LIMIT_SECONDS 2.0

static struct event *flush_timer;
static double flush_deadline;

/* The last answers may still sit in socket buffers when the last module
 * stops: leave the loop once they are written, or after a bound. */
static void leave_when_flushed(evutil_socket_t fd, short what, void *arg)
{
    struct timeval tv = { 0, (suseconds_t)(FLUSH_CHECK_SECONDS * 1e6) };
    (void)fd;
    (void)what;
    (void)arg;
    if (sl_http_replies_in_flight() == 0 || sl_now() >= flush_deadline) {
        event_base_loopbreak(sl_base);
        return;
    }
    evtimer_add(flush_timer, &tv);
}

static void finish_shutdown_if_idle(void)
{
    for (sl_ctx *c = sl_instances; c != NULL; c = c->next)
        if (c->state == SL_INST_STOPPING || c->state == SL_INST_RUNNING)
            return;
    if (flush_timer != NULL)
        return;
    sl_log_core(SL_LOG_INFO, "core", "every module stopped");
    flush_deadline = sl_now() + FLUSH_LIMIT_SECONDS;
    flush_timer = evtimer_new(sl_base, leave_when_flushed, NULL);
    if (flush_timer == NULL)
        event_base_loopbreak(sl_base);
    else
        leave_when_flushed(-1, 0, NULL);
}

static size_t running_count(void)
{
    size_t n = 0;
    for (sl_ctx *c = sl_instances; c != NULL; c = c->next)
        n += c->state == SL_INST_RUNNING;
    return n;
}

static void transition_done(void)
{
    sl_core_metrics_instances(running_count());
    if (shutting_down) {
        finish_shutdown_if_idle();
        return;
    }
    if (pending > 0 && --pending > 0)
        return;
    if (!reloading)
        return;
    reloading = 0;
    sl_log_core(SL_LOG_INFO, "core", "reload complete: %zu instances running", running_count());
    sl_notify("READY=1");
    if (reload_again && !shutting_down) {
        reload_again = 0;
        sl_cycle_reload();
    }
}

/* Creates and starts an instance of `s`; NULL when it failed to start. */
static sl_ctx *start_spec(spec *s)
{
    sl_optset opts = { 0 };
    sl_ctx *ctx;

    if (sl_optset_copy(&opts, &s->opts) != 0)
        return NULL;
    ctx = sl_instance_new(s->dso, s->instance, &opts, s->listeners, s->nlisteners);
    sl_optset_free(&opts);
    if (ctx == NULL) {
        sl_log_core(SL_LOG_ERROR, "core", "out of memory starting module %s", s->dso->mod->name);
        return NULL;
    }
    if (sl_instance_start(ctx) != 0) {
        sl_core_metrics_start_failed(ctx->mod->name);
        sl_instance_free(ctx);
        return NULL;
    }
    return ctx;
}

static void free_stopped(sl_ctx *ctx, void *arg)
{
    (void)arg;
    sl_instance_free(ctx);
    transition_done();
}

/* An exclusive module's old instance has drained: start its successor. */
typedef struct {
    spec copy; /* the successor's spec, owned here: the generation may go */
} deferred_start;

static void start_successor(sl_ctx *old, void *arg)
{
    deferred_start *d = arg;

    sl_instance_free(old);
    if (!shutting_down)
        start_spec(&d->copy);
    sl_dso_put(d->copy.dso);
    free(d->copy.instance);
    sl_optset_free(&d->copy.opts);
    for (size_t i = 0; i < d->copy.nlisteners; i++)
        sl_listener_put(d->copy.listeners[i]);
    free(d->copy.listeners);
    free(d);
    transition_done();
}

static void replace_exclusive(sl_ctx *old, spec *s)
{
    deferred_start *d = calloc(1, sizeof(*d));

    if (d == NULL || (d->copy.instance = strdup(s->instance)) == NULL ||
        sl_optset_copy(&d->copy.opts, &s->opts) != 0 ||
        (s->nlisteners &&
         (d->copy.listeners = calloc(s->nlisteners, sizeof(sl_listener *))) == NULL)) {
        sl_log_core(SL_LOG_ERROR, old->label, "out of memory replacing it; keeping it running");
        if (d != NULL) {
            free(d->copy.instance);
            sl_optset_free(&d->copy.opts);
            free(d);
        }
        return;
    }
    d->copy.dso = s->dso;
    sl_dso_ref(s->dso);
    for (size_t i = 0; i < s->nlisteners; i++) {
        d->copy.listeners[i] = s->listeners[i];
        sl_listener_ref(s->listeners[i]);
    }
    d->copy.nlisteners = s->nlisteners;
    pending++;
    sl_instance_stop(old, drain_timeout(), start_successor, d);
}

static int listeners_equal(const sl_ctx *ctx, const spec *s)
{
    if (ctx->nlisteners != s->nlisteners)
        return 0;
    for (size_t i = 0; i < s->nlisteners; i++)
        if (ctx->listeners[i] != s->listeners[i])
            return 0;
    return 1;
}

/* Which connector sections differ between two generations. */
static unsigned changed_connectors(const cycle *old, const cycle *next)
{
    unsigned bits = 0;

    for (size_t i = 0; sl_sections[i] != NULL; i++) {
        int differ = old->present[i] != next->present[i] ||
                     (next->present[i] && !sl_optset_equal(&old->sections[i], &next->sections[i]));
        if (differ)
            bits |= sl_sections[i]->uses_bit;
    }
    return bits;
}

static int prepare_sections(const cycle *old, cycle *next, sl_errors *errs)
{
    for (size_t i = 0; sl_sections[i] != NULL; i++) {
        const sl_optset *before = old != NULL && old->present[i] ? &old->sections[i] : NULL;
        if (next->present[i] && sl_sections[i]->prepare != NULL &&
            sl_sections[i]->prepare(before, &next->sections[i], errs) != 0)
            return -1;
    }
    return 0;
}

/* Makes `next` the running generation and moves the instances to it. */
static void switch_to(cycle *next)
{
    cycle *old = current;
    unsigned changed = old != NULL ? changed_connectors(old, next) : 0;
    size_t nlive;
    sl_ctx **live = running_instances(&nlive);
    int *matched = calloc(next->nspecs + 1, sizeof(*matched));

    current = next;
    apply_core_settings(next);
    if (matched == NULL || live == NULL) {
        /* Nothing was touched yet: the instances run on, under new core
         * settings, which is the least surprising half-way point. */
        sl_log_core(SL_LOG_ERROR, "core", "out of memory applying the new configuration");
        free(matched);
        free(live);
        cycle_free(old);
        return;
    }
    pending++; /* held until every transition below has been started */
    for (size_t i = 0; i < nlive; i++) {
        sl_ctx *ctx = live[i];
        spec *s = NULL;
        for (size_t j = 0; j < next->nspecs; j++) {
            if (!matched[j] && strcmp(next->specs[j].dso->mod->name, ctx->mod->name) == 0 &&
                strcmp(next->specs[j].instance, ctx->instance) == 0) {
                s = &next->specs[j];
                matched[j] = 1;
                break;
            }
        }
        if (s == NULL) {
            sl_log_core(SL_LOG_INFO, ctx->label, "removed from the configuration");
            pending++;
            sl_instance_stop(ctx, drain_timeout(), free_stopped, NULL);
        } else if (s->dso == ctx->dso && sl_optset_equal(&s->opts, &ctx->opts) &&
                   listeners_equal(ctx, s) && (ctx->uses & changed) == 0) {
            continue;
        } else if (ctx->mod->flags & SL_MODULE_EXCLUSIVE ||
                   s->dso->mod->flags & SL_MODULE_EXCLUSIVE) {
            sl_log_core(SL_LOG_INFO, ctx->label, "changed; draining before its successor starts");
            replace_exclusive(ctx, s);
        } else {
            sl_log_core(SL_LOG_INFO, ctx->label, "changed; starting its successor");
            if (start_spec(s) == NULL) {
                sl_log_core(SL_LOG_ERROR, ctx->label, "successor failed; keeping this one");
                continue;
            }
            pending++;
            sl_instance_stop(ctx, drain_timeout(), free_stopped, NULL);
        }
    }
    for (size_t j = 0; j < next->nspecs; j++)
        if (!matched[j])
            start_spec(&next->specs[j]);
    free(matched);
    free(live);
    cycle_free(old);
    transition_done();
}

int sl_cycle_init(const char *path)
{
    sl_errors errs = { 0 };
    cycle *c = build(path, 1, &errs);

    if (c == NULL || prepare_sections(NULL, c, &errs) != 0) {
        print_errors(&errs);
        sl_errors_free(&errs);
        cycle_free(c);
        return -1;
    }
    sl_errors_free(&errs);
    reloading = 0;
    switch_to(c);
    sl_core_metrics_reload(1);
    return 0;
}

void sl_cycle_reload(void)
{
    sl_errors errs = { 0 };
    cycle *next;
    double started = sl_now();

    if (shutting_down)
        return;
    if (reloading) {
        reload_again = 1;
        return;
    }
    sl_notify("RELOADING=1");
    sl_log_core(SL_LOG_INFO, "core", "reloading %s", current->path);
    next = build(current->path, 1, &errs);
    if (next == NULL || prepare_sections(current, next, &errs) != 0) {
        print_errors(&errs);
        sl_log_core(SL_LOG_ERROR, "core", "reload failed; the running configuration stays");
        sl_errors_free(&errs);
        cycle_free(next);
        sl_core_metrics_reload(0);
        sl_notify("READY=1");
        return;
    }
    sl_errors_free(&errs);
    reloading = 1;
    switch_to(next);
    sl_core_metrics_reload(1);
    sl_log_core(SL_LOG_DEBUG, "core", "new configuration applied in %.1f ms",
                (sl_now() - started) * 1000);
}

/* ---------------------------------------------------------- --init-schema */

/* Long enough for an index build on a large table; the step runs once, by
 * hand or from a deployment job, not on the serving path. */
#define SCHEMA_TIMEOUT 600.0

static size_t schema_pending;
static size_t schema_failures;

static void schema_finished(sl_ctx *ctx, void *arg)
{
    (void)arg;
    if (ctx->schema_failed) {
        sl_log_core(SL_LOG_ERROR, ctx->label, "schema not applied: %s", ctx->fail_reason);
        schema_failures++;
    } else {
        sl_log_core(SL_LOG_INFO, ctx->label, "schema in place");
    }
    sl_instance_free(ctx);
    if (--schema_pending == 0)
        event_base_loopexit(sl_base, NULL);
}

int sl_cycle_init_schema(const char *path, size_t *pending_out)
{
    sl_errors errs = { 0 };
    cycle *c = build(path, 0, &errs);

    *pending_out = 0;
    if (c == NULL || prepare_sections(NULL, c, &errs) != 0) {
        print_errors(&errs);
        sl_errors_free(&errs);
        cycle_free(c);
        return -1;
    }
    sl_errors_free(&errs);
    current = c; /* the connectors read their sections from it */
    apply_log_settings(sl_cycle_section("core"));
    for (size_t i = 0; i < c->nspecs; i++) {
        spec *s = &c->specs[i];
        sl_optset opts = { 0 };
        sl_ctx *ctx;

        if (s->dso->mod->init_schema == NULL)
            continue;
        if (sl_optset_copy(&opts, &s->opts) != 0 ||
            (ctx = sl_instance_new(s->dso, s->instance, &opts, NULL, 0)) == NULL) {
            sl_optset_free(&opts);
            sl_log_core(SL_LOG_ERROR, "core", "out of memory applying %s's schema",
                        s->dso->mod->name);
            schema_failures++;
            continue;
        }
        sl_optset_free(&opts);
        schema_pending++;
        if (sl_instance_init_schema(ctx, SCHEMA_TIMEOUT, schema_finished, NULL) != 0) {
            schema_pending--;
            schema_failures++;
            sl_instance_free(ctx);
        }
    }
    *pending_out = schema_pending;
    return 0;
}

size_t sl_cycle_schema_failures(void)
{
    return schema_failures;
}

/* ------------------------------------------------------------- shutdown */

static void shutdown_step(sl_ctx *ctx, void *arg)
{
    (void)arg;
    sl_instance_free(ctx);
    finish_shutdown_if_idle();
}

void sl_cycle_shutdown(void)
{
    size_t nlive;
    sl_ctx **live;

    if (shutting_down)
        return;
    shutting_down = 1;
    sl_notify("STOPPING=1");
    live = running_instances(&nlive);
    sl_log_core(SL_LOG_INFO, "core", "shutting down: draining %zu instances", nlive);
    for (size_t i = 0; live != NULL && i < nlive; i++)
        sl_instance_stop(live[i], drain_timeout(), shutdown_step, NULL);
    free(live);
    /* Also covers instances a reload is still draining: they end through
     * their own callbacks, which check again. */
    finish_shutdown_if_idle();
}

void sl_cycle_free_all(void)
{
    if (flush_timer != NULL)
        event_free(flush_timer);
    flush_timer = NULL;
    while (sl_instances != NULL) {
        sl_ctx *c = sl_instances;
        c->state = SL_INST_STOPPED;
        sl_instance_free(c);
    }
    cycle_free(current);
    current = NULL;
    for (size_t i = 0; sl_sections[i] != NULL; i++)
        if (sl_sections[i]->shutdown != NULL)
            sl_sections[i]->shutdown();
}
