/* common.c — fatal allocation wrappers, the byte buffer, clocks and randomness: the few helpers
 * every other module leans on (the logger is in log.c). */
#include "cardgw/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

/* ---- allocation ------------------------------------------------------------------------------ */

static void gw_oom(size_t n, const char *file, int line)
{
    fprintf(stderr, "fatal: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    abort();
}

void *gw__malloc(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        gw_oom(n, file, line);
    return p;
}

void *gw__calloc(size_t n, size_t sz, const char *file, int line)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (p == NULL)
        gw_oom(n * sz, file, line);
    return p;
}

void *gw__realloc(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        gw_oom(n, file, line);
    return q;
}

char *gw__strndup(const char *s, size_t n, const char *file, int line)
{
    char *p = gw__malloc(n + 1, file, line);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- byte buffer ----------------------------------------------------------------------------- */

void gw_buf_init(gw_buf_t *b, size_t headroom)
{
    b->base = NULL;
    b->head = headroom;
    b->len = 0;
    b->cap = 0;
}

void gw_buf_free(gw_buf_t *b)
{
    free(b->base);
    b->base = NULL;
    b->len = b->cap = 0;
}

void gw_buf_reset(gw_buf_t *b)
{
    b->len = 0;
}

uint8_t *gw_buf_reserve(gw_buf_t *b, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        b->base = gw_realloc(b->base, b->head + cap);
        b->cap = cap;
    }
    return b->base + b->head + b->len;
}

void gw_buf_append(gw_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(gw_buf_reserve(b, n), p, n);
    b->len += n;
}

void gw_buf_append_str(gw_buf_t *b, const char *s)
{
    gw_buf_append(b, s, strlen(s));
}

void gw_buf_appendf(gw_buf_t *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        gw_buf_append(b, tmp, (size_t)n);
        return;
    }
    char *dst = (char *)gw_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(dst, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---- time and randomness --------------------------------------------------------------------- */

uint64_t gw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t gw_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t gw_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int gw_parse_u64(const char *p, size_t n, uint64_t *v)
{
    if (n == 0 || n > 19) /* 19 digits cannot overflow 64 bits */
        return -EINVAL;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -EINVAL;
        x = x * 10 + (uint64_t)(p[i] - '0');
    }
    *v = x;
    return 0;
}

uint64_t gw_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t gw_rng_state;

uint32_t gw_random_u32(void)
{
    if (gw_rng_state == 0) {
        if (getrandom(&gw_rng_state, sizeof(gw_rng_state), 0) != sizeof(gw_rng_state))
            gw_rng_state = gw_wall_ms();
        gw_rng_state |= 1;
    }
    /* xorshift64* */
    gw_rng_state ^= gw_rng_state >> 12;
    gw_rng_state ^= gw_rng_state << 25;
    gw_rng_state ^= gw_rng_state >> 27;
    return (uint32_t)((gw_rng_state * 2685821657736338717ull) >> 32);
}

void gw_random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[64];
    if (nbytes > sizeof(raw))
        nbytes = sizeof(raw);
    if (getrandom(raw, nbytes, 0) != (ssize_t)nbytes)
        for (size_t i = 0; i < nbytes; i++)
            raw[i] = (uint8_t)gw_random_u32();
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
}
