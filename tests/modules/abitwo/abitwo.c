/*
 * abitwo - a module built against the module ABI 2 descriptor, which ends
 * after init_schema() (check() came with ABI 3).  The layout below is ABI
 * 2's as it was published; the core must load the module without reading
 * past it (under ASan, this object's redzone would catch a read of the
 * missing check()) and run it with check() absent.
 */
#include <string.h>
#include <sluice/sluice.h>

typedef struct {
    int abi_version;
    const char *name;
    const char *description;
    const sl_option *options;
    unsigned flags;
    int (*start)(sl_ctx *ctx);
    void (*stop)(sl_ctx *ctx);
    int (*init_schema)(sl_ctx *ctx);
} abi2_module;

static void serve(sl_req *req, void *arg)
{
    const char *value = sl_opt_str(arg, "value");

    sl_reply(req, 200, "text/plain", value, strlen(value));
}

static int start(sl_ctx *ctx)
{
    if (sl_route(ctx, SL_GET, "/abitwo", serve, ctx) != 0)
        return sl_fail(ctx, "cannot register /abitwo");
    return 0;
}

static void stop(sl_ctx *ctx)
{
    sl_stopped(ctx);
}

static const sl_option options[] = { { "value", SL_OPT_STRING, "two", "what /abitwo answers", 0, 0,
                                       NULL },
                                     { NULL, 0, NULL, NULL, 0, 0, NULL } };

SL_API const abi2_module sluice_module = {
    .abi_version = 2,
    .name = "abitwo",
    .description = "a module built for module ABI 2",
    .options = options,
    .start = start,
    .stop = stop,
};
