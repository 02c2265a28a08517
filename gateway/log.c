/* log.c — the logger: one line per event on stderr, as text or as one JSON object per line
 * (log_format), with optional fields, and the rate limit for lines a client could make repeat. */
#include "cardgw/log.h"
#include "cardgw/common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

gw_log_level_t gw_log_level = GW_LOG_INFO;
gw_log_format_t gw_log_format = GW_LOG_TEXT;
uint64_t gw_log_dropped;

static const char *const gw_level_names[] = {"error", "warn", "info", "debug"};
static const char *const gw_format_names[] = {"text", "json"};

int gw_log_parse_level(const char *s, gw_log_level_t *out)
{
    for (size_t i = 0; i < GW_ARRAY_SIZE(gw_level_names); i++)
        if (strcmp(s, gw_level_names[i]) == 0) {
            *out = (gw_log_level_t)i;
            return 0;
        }
    return -EINVAL;
}

const char *gw_log_level_name(gw_log_level_t l)
{
    return (unsigned)l < GW_ARRAY_SIZE(gw_level_names) ? gw_level_names[l] : "?";
}

int gw_log_parse_format(const char *s, gw_log_format_t *out)
{
    for (size_t i = 0; i < GW_ARRAY_SIZE(gw_format_names); i++)
        if (strcmp(s, gw_format_names[i]) == 0) {
            *out = (gw_log_format_t)i;
            return 0;
        }
    return -EINVAL;
}

const char *gw_log_format_name(gw_log_format_t f)
{
    return (unsigned)f < GW_ARRAY_SIZE(gw_format_names) ? gw_format_names[f] : "?";
}

/* ---- one line -------------------------------------------------------------------------------- */

#define GW_LOG_LINE_MAX 2048

/* A line being built on the stack; what does not fit is cut (the line stays one line). */
typedef struct {
    char s[GW_LOG_LINE_MAX];
    size_t n;
} gw_line_t;

static void gw_line_put(gw_line_t *b, const char *p, size_t n)
{
    size_t room = sizeof(b->s) - 1 - b->n;
    if (n > room)
        n = room;
    memcpy(b->s + b->n, p, n);
    b->n += n;
}

static void gw_line_printf(gw_line_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void gw_line_printf(gw_line_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, sizeof(b->s) - b->n, fmt, ap);
    va_end(ap);
    if (k > 0)
        b->n = GW_MIN(b->n + (size_t)k, sizeof(b->s) - 1);
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 when it is not one. */
static size_t gw_utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    uint32_t cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0)
        len = 2, cp = p[0] & 0x1f;
    else if ((p[0] & 0xf0) == 0xe0)
        len = 3, cp = p[0] & 0x0f;
    else if ((p[0] & 0xf8) == 0xf0)
        len = 4, cp = p[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* s as a JSON string (quotes included): control characters escaped, bytes that are not UTF-8
 * written as U+FFFD. */
static void gw_line_json_str(gw_line_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    gw_line_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char ch = p[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            gw_line_put(b, e, 2);
            i++;
        } else if (ch < 0x20) {
            gw_line_printf(b, "\\u%04x", ch);
            i++;
        } else {
            size_t k = gw_utf8_len(p + i, n - i);
            if (k)
                gw_line_put(b, (const char *)p + i, k);
            else
                gw_line_put(b, "\\ufffd", 6);
            i += k ? k : 1;
        }
    }
    gw_line_put(b, "\"", 1);
}

static void gw_log_vwrite(gw_log_level_t l, const char *mod, const gw_log_fields_t *f,
                          uint64_t dropped, uint64_t dropped_s, const char *fmt, va_list ap)
{
    char msg[1024];
    gw_line_t b;
    struct timespec ts;
    struct tm tm;
    char when[80];
    b.n = 0;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* one event, one line: fold any newline the message carried */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    const char *keys[] = {"client", "uid", "channel"};
    const char *vals[] = {f ? f->client : NULL, f ? f->uid : NULL, f ? f->channel : NULL};
    if (gw_log_format == GW_LOG_JSON) {
        gw_line_printf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"module\":", when,
                       gw_log_level_name(l));
        gw_line_json_str(&b, mod);
        gw_line_put(&b, ",\"msg\":", 7);
        gw_line_json_str(&b, msg);
        for (size_t i = 0; i < GW_ARRAY_SIZE(keys); i++)
            if (vals[i]) {
                gw_line_printf(&b, ",\"%s\":", keys[i]);
                gw_line_json_str(&b, vals[i]);
            }
        if (f && f->code)
            gw_line_printf(&b, ",\"code\":%d", f->code);
        if (dropped)
            gw_line_printf(&b, ",\"dropped\":%" PRIu64 ",\"dropped_s\":%" PRIu64, dropped,
                           dropped_s);
        /* the closing brace always fits: the line was cut one byte short of its end */
        if (b.n > sizeof(b.s) - 3) { /* cut inside a value: end the line as valid JSON */
            b.n = 0;
            gw_line_printf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"(line too long)\"",
                           when, gw_log_level_name(l));
        }
        gw_line_put(&b, "}", 1);
    } else {
        gw_line_printf(&b, "%s %-5s %-7s %s", when, gw_log_level_name(l), mod, msg);
        for (size_t i = 0; i < GW_ARRAY_SIZE(keys); i++)
            if (vals[i])
                gw_line_printf(&b, " %s=%s", keys[i], vals[i]);
        if (f && f->code)
            gw_line_printf(&b, " code=%d", f->code);
        if (dropped)
            gw_line_printf(&b, " (and %" PRIu64 " more like it in the last %" PRIu64 " s)", dropped,
                           dropped_s);
        for (size_t i = 0; i < b.n; i++) /* fields may carry newlines too */
            if (b.s[i] == '\n' || b.s[i] == '\r')
                b.s[i] = ' ';
    }
    b.s[b.n] = '\0';
    fprintf(stderr, "%s\n", b.s);
}

void gw_log_write(gw_log_level_t l, const char *mod, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_log_vwrite(l, mod, NULL, 0, 0, fmt, ap);
    va_end(ap);
}

void gw_log_writef(gw_log_level_t l, const char *mod, const gw_log_fields_t *fields,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_log_vwrite(l, mod, fields, 0, 0, fmt, ap);
    va_end(ap);
}

/* ---- rate-limited lines ---------------------------------------------------------------------- */

static void gw_log_vevery(gw_log_limit_t *lim, uint64_t every_ms, gw_log_level_t l, const char *mod,
                          const gw_log_fields_t *fields, const char *fmt, va_list ap)
{
    uint64_t now = gw_now_ms();
    if (l > gw_log_level)
        return;
    if (lim->logged && now - lim->last_ms < every_ms) {
        lim->suppressed++;
        gw_log_dropped++;
        return;
    }
    uint64_t dropped = lim->suppressed, since_s = (now - lim->last_ms) / 1000;
    lim->logged = 1;
    lim->last_ms = now;
    lim->suppressed = 0;
    gw_log_vwrite(l, mod, fields, dropped, since_s, fmt, ap);
}

void gw_log_every(gw_log_limit_t *lim, uint64_t every_ms, gw_log_level_t l, const char *mod,
                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_log_vevery(lim, every_ms, l, mod, NULL, fmt, ap);
    va_end(ap);
}

void gw_log_everyf(gw_log_limit_t *lim, uint64_t every_ms, gw_log_level_t l, const char *mod,
                   const gw_log_fields_t *fields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_log_vevery(lim, every_ms, l, mod, fields, fmt, ap);
    va_end(ap);
}
