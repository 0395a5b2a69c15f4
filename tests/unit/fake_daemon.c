/*
 * fake_daemon.c - see fake_daemon.h.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include <curl/curl.h>
#include <event2/event.h>
#include "daemon/core.h"
#include "fake_daemon.h"

struct event_base *sl_base;

static int fake_start(sl_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static void fake_stop(sl_ctx *ctx)
{
    sl_stopped(ctx);
}

static const sl_option no_options[] = { { NULL, 0, NULL, NULL, 0, 0, NULL } };

static const sl_module fake_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "fake",
    .description = "the owner of the handles a unit test creates",
    .options = no_options,
    .start = fake_start,
    .stop = fake_stop,
};

/* Never loaded from a file: the extra reference keeps the core from ever
 * dlclose()ing it. */
static sl_dso fake_dso = { .path = "fake", .mod = &fake_module, .refs = 1 };
static sl_ctx *instance;
static int fds[8];
static size_t nfds;
static char conf_path[64];

static int bound_port(int do_listen)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || nfds == sizeof(fds) / sizeof(fds[0]))
        abort();
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || (do_listen && listen(fd, 16) != 0) ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        abort();
    fds[nfds++] = fd;
    return ntohs(sa.sin_port);
}

int fake_refused_port(void)
{
    return bound_port(0);
}

int fake_silent_port(void)
{
    return bound_port(1);
}

sl_ctx *fake_daemon_start(const char *sections, int port)
{
    const sl_option *const tables[] = { no_options };
    sl_errors errs = { 0 };
    sl_optset opts;
    FILE *f;
    int fd;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return NULL;
    sl_base = event_base_new();
    if (sl_base == NULL)
        return NULL;
    sl_core_metrics_init();
    sl_http_metrics_init();
    snprintf(conf_path, sizeof(conf_path), "/tmp/sluice-unit.XXXXXX");
    fd = mkstemp(conf_path);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
        return NULL;
    fputs("[core]\nlisten =\n", f);
    fprintf(f, sections, port);
    fclose(f);
    if (sl_cycle_init(conf_path) != 0)
        return NULL;
    if (sl_options_validate(tables, 1, NULL, NULL, &opts, &errs) != 0) {
        sl_errors_free(&errs);
        return NULL;
    }
    instance = sl_instance_new(&fake_dso, "", &opts, NULL, 0);
    if (instance == NULL || sl_instance_start(instance) != 0)
        return NULL;
    return instance;
}

static void stopped(sl_ctx *ctx, void *arg)
{
    (void)ctx;
    *(int *)arg = 1;
}

int fake_daemon_stop(void **state)
{
    int done = 0;

    (void)state;
    if (instance != NULL) {
        sl_instance_stop(instance, 5, stopped, &done);
        fake_run_until(fake_flag, &done, 10);
        sl_instance_free(instance);
        instance = NULL;
    }
    sl_cycle_free_all();
    sl_core_metrics_free();
    sl_http_metrics_free();
    event_base_free(sl_base);
    sl_base = NULL;
    curl_global_cleanup();
    unlink(conf_path);
    while (nfds > 0)
        close(fds[--nfds]);
    return 0;
}

static void on_limit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

int fake_flag(const void *arg)
{
    return *(const int *)arg != 0;
}

int fake_run_until(int (*done)(const void *arg), const void *arg, double limit)
{
    struct timeval tv = { (time_t)limit, (suseconds_t)((limit - (double)(time_t)limit) * 1e6) };
    int expired = 0;
    struct event *bound = evtimer_new(sl_base, on_limit, &expired);

    if (bound == NULL || evtimer_add(bound, &tv) != 0)
        abort();
    while (!done(arg) && !expired)
        event_base_loop(sl_base, EVLOOP_ONCE);
    event_free(bound);
    return done(arg) ? 0 : -1;
}
