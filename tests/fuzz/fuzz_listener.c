/*
 * fuzz_listener.c - libFuzzer target for libevent's HTTP request parsing as
 * sluiced uses it: each input is the raw byte stream of one client
 * connection (any number of pipelined requests, however malformed), sent
 * over loopback TCP to a real listener of the core (http.c, http_conn.c)
 * with small limits (head 2 KiB, body 4 KiB, 4 connections, 2 s per
 * request) and routes of a fake-daemon instance that read parameters,
 * queries, headers and JSON bodies.  The client half-closes after its
 * bytes, so every connection must end.
 *
 * Beyond not crashing or leaking: the server closes each connection within
 * a bound (no hang), what it sends starts with a status line ("HTTP/";
 * evhttp answers in the request's version), and afterwards no connection
 * and no reply is left behind.
 *
 * libevent is the system's library, not built with the fuzzer's coverage
 * or ASan's instrumentation: the search is guided by the paths our code
 * takes, and inside libevent only what ASan intercepts (memcpy, strlen and
 * friends, malloc and free) is checked.
 *
 * Built by tests/integration/edge_fuzz.sh with clang from the core's
 * sources and tests/unit/fake_daemon.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cjson/cJSON.h>
#include <event2/event.h>
#include "daemon/core.h"
#include "daemon/log.h"
#include "http/http.h"
#include "http/http_int.h"
#include "fake_daemon.h"

static sl_listener *listener;
static struct sockaddr_in addr;

static void get_item(sl_req *req, void *arg)
{
    const char *q = sl_req_query(req, "q");
    const char *h = sl_req_header(req, "X-Test");
    cJSON *o = cJSON_CreateObject();

    (void)arg;
    cJSON_AddStringToObject(o, "id", sl_req_param(req, "id"));
    cJSON_AddStringToObject(o, "q", q != NULL ? q : "");
    cJSON_AddStringToObject(o, "h", h != NULL ? h : "");
    cJSON_AddStringToObject(o, "path", sl_req_path(req));
    sl_reply_json(req, 200, o);
}

static void post_item(sl_req *req, void *arg)
{
    cJSON *body = sl_req_json(req);

    (void)arg;
    if (body == NULL)
        return; /* answered 400 */
    sl_reply_json(req, 201, cJSON_Duplicate(body, 1));
}

static void delete_item(sl_req *req, void *arg)
{
    (void)arg;
    sl_reply_error(req, 409, "item %s is in use", sl_req_param(req, "id"));
}

static void start(void)
{
    sl_ctx *ctx;
    sl_errors errs = { 0 };
    char name[32];
    socklen_t len = sizeof(addr);
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    sl_http_settings hs = { .max_body = 4096, .max_header = 2048, .timeout = 2 };
    sl_listen_settings ls = { .anonymous = 1, .max_connections = 4 };

    signal(SIGPIPE, SIG_IGN);
    ctx = fake_daemon_start("# no section needs a port: %d\n", 0);
    if (ctx == NULL)
        abort();
    if (sl_route_scoped(ctx, SL_GET, "/items/{id}", SL_SCOPE_READ, 0, get_item, NULL) != 0 ||
        sl_route_scoped(ctx, SL_POST, "/items", SL_SCOPE_WRITE, 1024, post_item, NULL) != 0 ||
        sl_route_scoped(ctx, SL_DELETE, "/items/{id}", SL_SCOPE_WRITE, 0, delete_item, NULL) != 0)
        abort();
    /* A free loopback port, then the core's listener on it. */
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (probe < 0 || bind(probe, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        getsockname(probe, (struct sockaddr *)&addr, &len) != 0)
        abort();
    close(probe);
    snprintf(name, sizeof(name), "127.0.0.1:%d", ntohs(addr.sin_port));
    listener = sl_listener_get(name, &errs);
    if (listener == NULL || sl_listener_configure(listener, &ls) != 0)
        abort();
    sl_listeners_set_core(&listener, 1);
    sl_http_configure(&hs);
    /* Every refusal is logged at info: thousands a second. */
    sl_log_configure(SL_LOG_ERROR, SL_LOG_TEXT);
}

typedef struct {
    int fd;
    int closed;
    size_t got;
    char head[9];
} client;

static void readable(evutil_socket_t fd, short what, void *arg)
{
    client *c = arg;
    char buf[16384];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);

    (void)what;
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++, c->got++)
            if (c->got < sizeof(c->head))
                c->head[c->got] = buf[i];
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        c->closed = 1;
    }
}

static int no_connection(const void *arg)
{
    (void)arg;
    return listener->nconns == 0;
}

/* The client half-closes first, so each of its connections waits 60 s in
 * TIME_WAIT on its port: at ten thousand inputs a second, one source
 * address ran out of ephemeral ports (connect() failed, the target
 * aborted).  Each connection comes from the next of 65,000 addresses of
 * 127.0.0.0/8, every one with its own ports. */
static int bind_next_source(int fd)
{
    static uint32_t next;
    struct sockaddr_in src = { .sin_family = AF_INET };

    next = next % 65000 + 1;
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + next);
    return bind(fd, (struct sockaddr *)&src, sizeof(src));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    client c = { .fd = socket(AF_INET, SOCK_STREAM, 0) };
    struct event *ev;

    if (listener == NULL)
        start();
    if (c.fd < 0 || bind_next_source(c.fd) != 0 ||
        connect(c.fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        perror("fuzz_listener: a client connection");
        abort();
    }
    /* Loopback buffers hold any input libFuzzer makes here (-max_len);
     * a server that closed early makes the send fail, which is fine. */
    if (size > 0)
        (void)send(c.fd, data, size, MSG_NOSIGNAL);
    shutdown(c.fd, SHUT_WR);
    fcntl(c.fd, F_SETFL, O_NONBLOCK);
    ev = event_new(sl_base, c.fd, EV_READ | EV_PERSIST, readable, &c);
    if (ev == NULL || event_add(ev, NULL) != 0)
        abort();
    /* Every request has 2 s; a stream of pipelined ones is bounded by the
     * body and head limits times a few dozen requests at most. */
    if (fake_run_until(fake_flag, &c.closed, 60) != 0) {
        fprintf(stderr, "the server never closed the connection\n");
        abort();
    }
    event_free(ev);
    close(c.fd);
    if (c.got > 0 && memcmp(c.head, "HTTP/", c.got < 5 ? c.got : 5) != 0) {
        fprintf(stderr, "the answer does not start with a status line: %.*s\n",
                (int)(c.got < sizeof(c.head) ? c.got : sizeof(c.head)), c.head);
        abort();
    }
    if (fake_run_until(no_connection, NULL, 10) != 0 || sl_http_replies_in_flight() != 0) {
        fprintf(stderr, "a connection (%zu) or reply (%zu) outlived its client\n", listener->nconns,
                sl_http_replies_in_flight());
        abort();
    }
    return 0;
}
