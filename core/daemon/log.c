/*
 * log.c - one line per message on stderr, in text or JSON.
 *
 * stderr is unbuffered, so each message is formatted into one buffer and
 * written with a single write(2): lines from a daemon under systemd or in a
 * test never interleave mid-line.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "log.h"
#include "redact.h"
#include "trace/trace.h"

static sl_log_level max_level = SL_LOG_INFO;
static sl_log_format log_format = SL_LOG_TEXT;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void sl_log_configure(sl_log_level level, sl_log_format format)
{
    max_level = level;
    log_format = format;
}

int sl_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

int sl_log_format_parse(const char *s)
{
    if (strcmp(s, "text") == 0)
        return SL_LOG_TEXT;
    if (strcmp(s, "json") == 0)
        return SL_LOG_JSON;
    return -1;
}

int sl_log_json(void)
{
    return log_format == SL_LOG_JSON;
}

size_t sl_log_json_escape(char *buf, size_t len, size_t cap, const char *s)
{
    for (; *s && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c < 0x20) {
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
        } else {
            buf[len++] = (char)c;
        }
    }
    return len;
}

void sl_log_time(double wall, char ts[32])
{
    time_t sec = (time_t)wall;
    struct tm tm;
    size_t len;

    gmtime_r(&sec, &tm);
    len = strftime(ts, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + len, 32 - len, ".%03dZ", (int)((wall - (double)sec) * 1000) % 1000);
}

void sl_log_v(sl_log_level level, const char *who, const char *fmt, va_list ap)
{
    char raw[4096], msg[4096], line[8192], ts[32], trace_id[33] = "";
    const char *request_id = sl_trace_cur.request_id;
    struct timespec now;
    size_t len;

    /* A request that asked for X-Log-Level: debug logs everything, for its
     * own lines only: the slot is set only while its work runs. */
    if (level > max_level && !sl_trace_cur.log_debug)
        return;
    if (sl_trace_cur.traced)
        sl_tp_hex(sl_trace_cur.tp.trace_id, 16, trace_id);
    clock_gettime(CLOCK_REALTIME, &now);
    sl_log_time((double)now.tv_sec + (double)now.tv_nsec / 1e9, ts);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    /* Whatever a message quotes (a url, a dsn, a library's text), no
     * password reaches the log. */
    sl_redact(raw, msg, sizeof(msg));
    sl_trace_log_event(level_names[level], who, msg);

    if (log_format == SL_LOG_JSON) {
        len = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"",
                               ts, level_names[level]);
        len = sl_log_json_escape(line, len, sizeof(line), who);
        len += (size_t)snprintf(line + len, sizeof(line) - len, "\",\"msg\":\"");
        len = sl_log_json_escape(line, len, sizeof(line), msg);
        if (request_id[0] != '\0') {
            len += (size_t)snprintf(line + len, sizeof(line) - len, "\",\"request_id\":\"");
            len = sl_log_json_escape(line, len, sizeof(line), request_id);
        }
        if (trace_id[0] != '\0')
            len += (size_t)snprintf(line + len, sizeof(line) - len, "\",\"trace_id\":\"%s",
                                    trace_id);
        len += (size_t)snprintf(line + len, sizeof(line) - len, "\"}\n");
    } else {
        len = (size_t)snprintf(line, sizeof(line), "%s %-5s [%s] %s%s%s%s%s\n", ts,
                               level_names[level], who, msg,
                               request_id[0] != '\0' ? " request_id=" : "", request_id,
                               trace_id[0] != '\0' ? " trace_id=" : "", trace_id);
    }
    if (len >= sizeof(line)) {
        len = sizeof(line) - 1;
        line[len - 1] = '\n';
    }
    /* A failed write to stderr has nowhere to be reported. */
    if (write(STDERR_FILENO, line, len) < 0)
        return;
}

void sl_log_core(sl_log_level level, const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_log_v(level, who, fmt, ap);
    va_end(ap);
}
