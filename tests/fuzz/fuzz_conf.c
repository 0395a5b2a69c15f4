/*
 * fuzz_conf.c - libFuzzer target for the config file parser, option
 * validation (every option type, a prefix option, bounds, choices) and the
 * tokens_file parser: the input is parsed as a config file and as a tokens
 * file.  Beyond not crashing, an accepted config holds only what its
 * declarations allow, and a rejected one says why with file:line.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore -Icore/conf -Icore/http \
 *     -Icore/include tests/fuzz/fuzz_conf.c core/conf/conf.c core/conf/option.c \
 *     core/conf/errors.c core/http/tokens.c core/http/router.c -lcrypto -lm
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "conf.h"
#include "option.h"
#include "tokens.h"

/* One option of each type, like [core] and the connectors declare them. */
static const sl_option options[] = {
    { "listen", SL_OPT_LIST, "127.0.0.1:8080", "", 0, 0, NULL },
    { "tokens_file", SL_OPT_STRING, "", "", 0, 0, NULL },
    { "max_connections", SL_OPT_INT, "1024", "", 0, 1000000, NULL },
    { "rate_limit", SL_OPT_DOUBLE, "0", "", 0, 1e6, NULL },
    { "allow_anonymous", SL_OPT_BOOL, "no", "", 0, 0, NULL },
    { "log_level", SL_OPT_ENUM, "info", "", 0, 0, "error|warn|info|debug" },
    { "request_timeout", SL_OPT_DURATION, "30s", "", 0.1, 3600, NULL },
    { "required", SL_OPT_STRING, NULL, "", 0, 0, NULL },
    { "rdkafka.*", SL_OPT_STRING, NULL, "", 0, 0, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

static void check_errors(const sl_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        if (strncmp(errs->msgs[i], "fuzz.conf", 9) != 0 && strncmp(errs->msgs[i], "tokens", 6) != 0)
            abort(); /* every error names its file */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    sl_errors errs = { 0 };
    sl_conf *conf;
    sl_tokens *t;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    conf = sl_conf_parse_string("fuzz.conf", text, &errs);
    check_errors(&errs);
    if (conf != NULL) {
        const sl_option *tables[1] = { options };
        for (size_t i = 0; i < conf->n; i++) {
            sl_optset set = { 0 }, copy = { 0 };
            sl_errors verrs = { 0 };
            if (sl_options_validate(tables, 1, &conf->sections[i], "fuzz.conf", &set, &verrs) ==
                0) {
                const sl_optval *m = sl_optset_get(&set, "max_connections");
                const sl_optval *d = sl_optset_get(&set, "request_timeout");
                if (m->i < 0 || m->i > 1000000 || d->d < 0.1 || d->d > 3600 || verrs.n != 0)
                    abort();
                if (sl_optset_copy(&copy, &set) == 0 && !sl_optset_equal(&copy, &set))
                    abort();
                sl_optset_free(&copy);
            } else if (verrs.n == 0) {
                abort(); /* refused without saying why */
            }
            check_errors(&verrs);
            sl_optset_free(&set);
            sl_errors_free(&verrs);
        }
        sl_conf_free(conf);
    }
    sl_errors_free(&errs);
    t = sl_tokens_parse("tokens", text, size, &errs);
    if ((t == NULL) == (errs.n == 0))
        abort(); /* refused exactly when it says why */
    if (t != NULL && sl_tokens_count(t) == 0)
        abort();
    check_errors(&errs);
    sl_tokens_free(t);
    sl_errors_free(&errs);
    free(text);
    return 0;
}
