/*
 * log.h - the daemon's log: one line per message on stderr.
 *
 * text: 2026-11-22T07:40:00.123Z info  [generator/second] message
 * json: {"ts":"...","level":"info","module":"generator/second","msg":"..."}
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <sluice/sluice.h>

typedef enum { SL_LOG_TEXT, SL_LOG_JSON } sl_log_format;

void sl_log_configure(sl_log_level level, sl_log_format format);
/* Parses "error|warn|info|debug" and "text|json"; -1 when unknown. */
int sl_log_level_parse(const char *s);
int sl_log_format_parse(const char *s);

/* 1 when [core] log_format is json: the access log follows it. */
int sl_log_json(void);
/* Appends `s` to buf (holding `len` of `cap` bytes) as the inside of a
 * JSON string, cut to fit; returns the new length. */
size_t sl_log_json_escape(char *buf, size_t len, size_t cap, const char *s);
/* `wall` (seconds since the epoch) as 2026-11-22T07:40:00.123Z. */
void sl_log_time(double wall, char ts[32]);

/* `who` names the source: "core", "kafka", a module instance label. */
void sl_log_core(sl_log_level level, const char *who, const char *fmt, ...) SL_PRINTF(3, 4);
void sl_log_v(sl_log_level level, const char *who, const char *fmt, va_list ap);

#endif
