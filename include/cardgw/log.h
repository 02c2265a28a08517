/* log.h — one line per event on stderr: time, level, module, message.
 * The level is set once at start from the configuration (log_level). */
#ifndef CARDGW_LOG_H
#define CARDGW_LOG_H

#include <stdint.h>

typedef enum { GW_LOG_ERROR = 0, GW_LOG_WARN, GW_LOG_INFO, GW_LOG_DEBUG } gw_log_level_t;

extern gw_log_level_t gw_log_level;

/* Parses "error", "warn", "info", "debug"; returns 0 or -EINVAL. */
int gw_log_parse_level(const char *s, gw_log_level_t *out);
const char *gw_log_level_name(gw_log_level_t l);
void gw_log_write(gw_log_level_t l, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Rate limit for a log line an attacker could make repeat: at most one line per interval, the
 * next one saying how many were left out. Zero-initialise. */
typedef struct {
    uint64_t last_ms;
    uint64_t suppressed;
    int logged;
} gw_log_limit_t;
#define GW_LOG_EVERY_MS 10000 /* how often a line an attacker could make repeat is written */

/* Logs at most one line per every_ms for lim (a line an attacker could make repeat); the next one
 * says how many were suppressed meanwhile. */
void gw_log_every(gw_log_limit_t *lim, uint64_t every_ms, gw_log_level_t l, const char *mod,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define gw_log(l, mod, ...)                                                                        \
    do {                                                                                           \
        if ((l) <= gw_log_level)                                                                   \
            gw_log_write((l), (mod), __VA_ARGS__);                                                 \
    } while (0)
#define gw_err(mod, ...)   gw_log(GW_LOG_ERROR, mod, __VA_ARGS__)
#define gw_warn(mod, ...)  gw_log(GW_LOG_WARN, mod, __VA_ARGS__)
#define gw_info(mod, ...)  gw_log(GW_LOG_INFO, mod, __VA_ARGS__)
#define gw_debug(mod, ...) gw_log(GW_LOG_DEBUG, mod, __VA_ARGS__)

#endif
