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

/* Both digits of a byte at once: every span exports two or three ids and
 * every traced request answers one, so this runs several times a request. */
static const char hex_pairs[513] =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
        "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
        "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
        "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

/* The hex of `n` bytes, `n` a multiple of four (ids are 16 and 8 bytes),
 * four a step: with one a step, the loop's own counting and branching
 * cost more than the lookups and stores. */
static inline void hex_quads(const uint8_t *id, size_t n, char *out)
{
    for (size_t i = 0; i < n; i += 4) {
        memcpy(out + 2 * i, hex_pairs + 2 * (size_t)id[i], 2);
        memcpy(out + 2 * i + 2, hex_pairs + 2 * (size_t)id[i + 1], 2);
        memcpy(out + 2 * i + 4, hex_pairs + 2 * (size_t)id[i + 2], 2);
        memcpy(out + 2 * i + 6, hex_pairs + 2 * (size_t)id[i + 3], 2);
    }
}

void sl_tp_hex(const uint8_t *id, size_t n, char *out)
{
    size_t quads = n - n % 4;

    hex_quads(id, quads, out);
    for (size_t i = quads; i < n; i++)
        memcpy(out + 2 * i, hex_pairs + 2 * (size_t)id[i], 2);
    out[2 * n] = '\0';
}

void sl_tp_format(const sl_tp *tp, char *buf)
{
    memcpy(buf, "00-", 3);
    hex_quads(tp->trace_id, 16, buf + 3);
    buf[35] = '-';
    hex_quads(tp->span_id, 8, buf + 36);
    buf[52] = '-';
    memcpy(buf + 53, hex_pairs + 2 * (size_t)tp->flags, 2);
    buf[55] = '\0';
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
