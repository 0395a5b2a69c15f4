/*
 * log.h - the daemon's log: one line per message on stderr.
 *
 * text: 2026-11-22T07:40:00.123Z info  [generator/second] message
 * json: {"ts":"...","level":"info","module":"generator/second","msg":"..."}
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdarg.h>
#include <sluice/sluice.h>

typedef enum { SL_LOG_TEXT, SL_LOG_JSON } sl_log_format;

void sl_log_configure(sl_log_level level, sl_log_format format);
/* Parses "error|warn|info|debug" and "text|json"; -1 when unknown. */
int sl_log_level_parse(const char *s);
int sl_log_format_parse(const char *s);

/* `who` names the source: "core", "kafka", a module instance label. */
void sl_log_core(sl_log_level level, const char *who, const char *fmt, ...) SL_PRINTF(3, 4);
void sl_log_v(sl_log_level level, const char *who, const char *fmt, va_list ap);

#endif
