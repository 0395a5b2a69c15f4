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

/* Appends `s` to buf as the inside of a JSON string; returns the new length. */
static size_t json_escape(char *buf, size_t len, size_t cap, const char *s)
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

void sl_log_v(sl_log_level level, const char *who, const char *fmt, va_list ap)
{
    char raw[4096], msg[4096], line[8192], ts[32];
    struct timespec now;
    struct tm tm;
    size_t len;

    if (level > max_level)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    len = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + len, sizeof(ts) - len, ".%03ldZ", now.tv_nsec / 1000000);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    /* Whatever a message quotes (a url, a dsn, a library's text), no
     * password reaches the log. */
    sl_redact(raw, msg, sizeof(msg));

    if (log_format == SL_LOG_JSON) {
        len = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"",
                               ts, level_names[level]);
        len = json_escape(line, len, sizeof(line), who);
        len += (size_t)snprintf(line + len, sizeof(line) - len, "\",\"msg\":\"");
        len = json_escape(line, len, sizeof(line), msg);
        len += (size_t)snprintf(line + len, sizeof(line) - len, "\"}\n");
    } else {
        len = (size_t)snprintf(line, sizeof(line), "%s %-5s [%s] %s\n", ts, level_names[level],
                               who, msg);
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
