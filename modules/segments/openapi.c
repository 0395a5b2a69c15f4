/*
 * openapi.c - GET /openapi.json (openapi.json beside this file, compiled
 * in at build time) and GET /docs, Swagger UI rendering it.  The UI's
 * files come from the swagger-ui-dist package in docs_dir and are served
 * by the module itself, so the page loads no asset from elsewhere.  Only
 * the listed files are served: no name from the request reaches the
 * file system.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "seg.h"

extern const char seg_openapi_doc[];

static const char DOCS_HTML[] = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                                "<title>sluice segments API</title>"
                                "<link rel=\"stylesheet\" href=\"/docs/swagger-ui.css\"></head>\n"
                                "<body><div id=\"swagger-ui\"></div>"
                                "<script src=\"/docs/swagger-ui-bundle.js\"></script>"
                                "<script src=\"/docs/init.js\"></script></body></html>\n";

static const char INIT_JS[] =
        "window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui',"
        " deepLinking: true });\n";

static const struct {
    const char *name, *type;
} assets[] = {
    { "swagger-ui.css", "text/css" },
    { "swagger-ui-bundle.js", "application/javascript" },
    { "favicon-32x32.png", "image/png" },
};

static void serve_openapi(sl_req *req, void *arg)
{
    seg *s = arg;
    double t0 = sl_now();

    sl_reply(req, 200, "application/json", seg_openapi_doc, strlen(seg_openapi_doc));
    seg_count(s, SEG_R_OPENAPI, 200, t0);
}

static void serve_docs(sl_req *req, void *arg)
{
    seg *s = arg;
    double t0 = sl_now();

    if (s->docs_dir[0] == '\0') {
        sl_reply_error(req, 404, "docs_dir is not set: /docs is off");
        seg_count(s, SEG_R_DOCS, 404, t0);
        return;
    }
    sl_reply(req, 200, "text/html; charset=utf-8", DOCS_HTML, sizeof(DOCS_HTML) - 1);
    seg_count(s, SEG_R_DOCS, 200, t0);
}

/* Reads a whole file; NULL on any error. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < 64L * 1024 * 1024 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

static void serve_asset(sl_req *req, void *arg)
{
    seg *s = arg;
    double t0 = sl_now();
    const char *name = sl_req_param(req, "file");
    char path[4096];
    size_t len = 0;
    char *body;

    if (s->docs_dir[0] != '\0' && strcmp(name, "init.js") == 0) {
        sl_reply(req, 200, "application/javascript", INIT_JS, sizeof(INIT_JS) - 1);
        seg_count(s, SEG_R_DOCS, 200, t0);
        return;
    }
    for (size_t i = 0; s->docs_dir[0] != '\0' && i < sizeof(assets) / sizeof(assets[0]); i++) {
        if (strcmp(name, assets[i].name) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", s->docs_dir, assets[i].name);
        body = slurp(path, &len);
        if (body == NULL) {
            sl_reply_error(req, 404, "%s is missing from docs_dir", assets[i].name);
            seg_count(s, SEG_R_DOCS, 404, t0);
            return;
        }
        sl_reply_header(req, "Cache-Control", "max-age=3600");
        sl_reply(req, 200, assets[i].type, body, len);
        free(body);
        seg_count(s, SEG_R_DOCS, 200, t0);
        return;
    }
    sl_reply_error(req, 404, "no such file under /docs");
    seg_count(s, SEG_R_DOCS, 404, t0);
}

int seg_openapi_routes(seg *s)
{
    /* The API's description is public, like the paths it describes. */
    if (sl_route_scoped(s->ctx, SL_GET, "/openapi.json", SL_SCOPE_OPEN, 0, serve_openapi, s) != 0 ||
        sl_route_scoped(s->ctx, SL_GET, "/docs", SL_SCOPE_OPEN, 0, serve_docs, s) != 0 ||
        sl_route_scoped(s->ctx, SL_GET, "/docs/{file}", SL_SCOPE_OPEN, 0, serve_asset, s) != 0)
        return -1;
    return 0;
}
