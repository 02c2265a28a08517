/* log.h — one line per event on stderr: time, level, module, message and optional fields (client
 * id, uid, channel, close code), as text or one JSON object per line (log_format). */
#ifndef CARDGW_LOG_H
#define CARDGW_LOG_H

#include <stdint.h>

typedef enum { GW_LOG_ERROR = 0, GW_LOG_WARN, GW_LOG_INFO, GW_LOG_DEBUG } gw_log_level_t;
typedef enum { GW_LOG_TEXT = 0, GW_LOG_JSON } gw_log_format_t;

/* Both set once at start from the configuration (log_level, log_format). */
extern gw_log_level_t gw_log_level;
extern gw_log_format_t gw_log_format;
/* Lines the rate limits below left out since start (cardgw_log_lines_dropped_total). */
extern uint64_t gw_log_dropped;

/* Parses "error", "warn", "info", "debug"; returns 0 or -EINVAL. */
int gw_log_parse_level(const char *s, gw_log_level_t *out);
/* A static name for l ("?" when out of range). */
const char *gw_log_level_name(gw_log_level_t l);
/* Parses "text" or "json"; returns 0 or -EINVAL. */
int gw_log_parse_format(const char *s, gw_log_format_t *out);
/* A static name for f. */
const char *gw_log_format_name(gw_log_format_t f);

/* What a line is about, written as fields (JSON keys; `key=value` after a text line's message).
 * Every member is borrowed for the call; NULL (or code 0) leaves the field out. */
typedef struct {
    const char *client;  /* a connection's client id */
    const char *uid;     /* its user, once known */
    const char *channel; /* a channel name */
    int code;            /* a close code */
} gw_log_fields_t;

/* Writes one line (fields may be NULL); use the macros below, which skip disabled levels. */
void gw_log_write(gw_log_level_t l, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void gw_log_writef(gw_log_level_t l, const char *mod, const gw_log_fields_t *fields,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Rate limit for a log line an attacker could make repeat: at most one line per interval, the
 * next one saying how many were left out. Zero-initialise; owned by whoever logs through it. */
typedef struct {
    uint64_t last_ms;
    uint64_t suppressed;
    int logged;
} gw_log_limit_t;
#define GW_LOG_EVERY_MS 10000 /* how often a line an attacker could make repeat is written */

/* Logs at most one line per every_ms for lim (a line an attacker could make repeat); the next one
 * says how many were suppressed meanwhile (text: "(and N more like it in the last S s)"; JSON:
 * fields "dropped" and "dropped_s"). Each suppressed line also counts in gw_log_dropped. */
void gw_log_every(gw_log_limit_t *lim, uint64_t every_ms, gw_log_level_t l, const char *mod,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same with fields (may be NULL). */
void gw_log_everyf(gw_log_limit_t *lim, uint64_t every_ms, gw_log_level_t l, const char *mod,
                   const gw_log_fields_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#define gw_log(l, mod, ...)                                                                        \
    do {                                                                                           \
        if ((l) <= gw_log_level)                                                                   \
            gw_log_write((l), (mod), __VA_ARGS__);                                                 \
    } while (0)
/* A line with fields (a gw_log_fields_t initialiser's members: .client = .., .uid = ..). */
#define gw_logf(l, mod, fields, ...)                                                               \
    do {                                                                                           \
        if ((l) <= gw_log_level)                                                                   \
            gw_log_writef((l), (mod), (fields), __VA_ARGS__);                                      \
    } while (0)
#define gw_err(mod, ...)   gw_log(GW_LOG_ERROR, mod, __VA_ARGS__)
#define gw_warn(mod, ...)  gw_log(GW_LOG_WARN, mod, __VA_ARGS__)
#define gw_info(mod, ...)  gw_log(GW_LOG_INFO, mod, __VA_ARGS__)
#define gw_debug(mod, ...) gw_log(GW_LOG_DEBUG, mod, __VA_ARGS__)

#endif
