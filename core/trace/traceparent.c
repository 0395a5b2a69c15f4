/*
 * traceparent.c - W3C Trace Context headers; see traceparent.h.
 */
#include <string.h>
#include "traceparent.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is invalid in traceparent */
}

/* Reads 2n lower-case hex digits into n bytes. */
static int unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int sl_tp_id_zero(const uint8_t *id, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (id[i] != 0)
            return 0;
    return 1;
}

int sl_tp_parse(const char *s, sl_tp *out)
{
    uint8_t version;
    size_t len;

    if (s == NULL)
        return -1;
    len = strlen(s);
    if (len < SL_TP_LEN || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return -1;
    if (unhex(s, &version, 1) != 0 || version == 0xff)
        return -1;
    /* Version 00 is exactly 55 bytes; a later version may append fields
     * after a dash and is read by the fields it shares with 00. */
    if (version == 0 ? len != SL_TP_LEN : len > SL_TP_LEN && s[SL_TP_LEN] != '-')
        return -1;
    if (unhex(s + 3, out->trace_id, 16) != 0 || unhex(s + 36, out->span_id, 8) != 0 ||
        unhex(s + 53, &out->flags, 1) != 0)
        return -1;
    if (sl_tp_id_zero(out->trace_id, 16) || sl_tp_id_zero(out->span_id, 8))
        return -1;
    return 0;
}

void sl_tp_hex(const uint8_t *id, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

void sl_tp_format(const sl_tp *tp, char *buf)
{
    memcpy(buf, "00-", 3);
    sl_tp_hex(tp->trace_id, 16, buf + 3);
    buf[35] = '-';
    sl_tp_hex(tp->span_id, 8, buf + 36);
    buf[52] = '-';
    sl_tp_hex(&tp->flags, 1, buf + 53);
}

static int key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' ||
           c == '/' || c == '@';
}

/* Printable ASCII except ',' and '='; spaces only inside (checked by the
 * caller trimming the member). */
static int value_char(char c)
{
    return c >= 0x20 && c <= 0x7e && c != ',' && c != '=';
}

/* One list member, [b, e) with optional surrounding blanks. */
static int member_valid(const char *b, const char *e)
{
    const char *eq;

    while (b < e && (*b == ' ' || *b == '\t'))
        b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    if (b == e)
        return 1; /* empty members are allowed and ignored */
    eq = memchr(b, '=', (size_t)(e - b));
    if (eq == NULL || eq == b || eq - b > 256 || eq + 1 == e || e - eq - 1 > 256)
        return 0;
    if (!(*b >= 'a' && *b <= 'z') && !(*b >= '0' && *b <= '9'))
        return 0;
    for (const char *p = b; p < eq; p++)
        if (!key_char(*p))
            return 0;
    for (const char *p = eq + 1; p < e; p++)
        if (!value_char(*p))
            return 0;
    return e[-1] != ' ';
}

int sl_tracestate_valid(const char *s)
{
    size_t members = 0;
    const char *b = s;

    if (s == NULL || strlen(s) > SL_TRACESTATE_MAX)
        return 0;
    for (;;) {
        const char *e = strchr(b, ',');
        if (e == NULL)
            e = b + strlen(b);
        if (!member_valid(b, e) || ++members > 32)
            return 0;
        if (*e == '\0')
            return 1;
        b = e + 1;
    }
}
