/* common.h — small things every cardgw module uses: fatal allocation wrappers (h2o style),
 * container_of, an intrusive doubly-linked list and a growable byte buffer with headroom. */
#ifndef CARDGW_COMMON_H
#define CARDGW_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GW_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define GW_MIN(a, b)     ((a) < (b) ? (a) : (b))
#define GW_MAX(a, b)     ((a) > (b) ? (a) : (b))

#define gw_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define GW_VERSION "0.1.0"

/* ---- allocation: failure is fatal and names the caller's file and line ----------------------- */

/* Call them through the macros below; none returns NULL. */
void *gw__malloc(size_t n, const char *file, int line);
void *gw__calloc(size_t n, size_t sz, const char *file, int line);
void *gw__realloc(void *p, size_t n, const char *file, int line);
char *gw__strndup(const char *s, size_t n, const char *file, int line);
#define gw_malloc(n)     gw__malloc((n), __FILE__, __LINE__)
#define gw_calloc(n, sz) gw__calloc((n), (sz), __FILE__, __LINE__)
#define gw_realloc(p, n) gw__realloc((p), (n), __FILE__, __LINE__)
#define gw_strndup(s, n) gw__strndup((s), (n), __FILE__, __LINE__)
#define gw_strdup(s)     gw__strndup((s), strlen(s), __FILE__, __LINE__)

/* ---- intrusive list (circular, with a sentinel head) ----------------------------------------- */

typedef struct gw_list {
    struct gw_list *prev, *next;
} gw_list_t;

static inline void gw_list_init(gw_list_t *h)
{
    h->prev = h->next = h;
}
static inline int gw_list_empty(const gw_list_t *h)
{
    return h->next == h;
}
/* A node that was initialised and then unlinked reads as "not linked". */
static inline int gw_list_linked(const gw_list_t *n)
{
    return n->next != n;
}
static inline void gw_list_insert_tail(gw_list_t *h, gw_list_t *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}
static inline void gw_list_remove(gw_list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}
#define gw_list_foreach(it, head) for ((it) = (head)->next; (it) != (head); (it) = (it)->next)
/* Safe against removal of `it` inside the loop body. */
#define gw_list_foreach_safe(it, tmp, head)                                                        \
    for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); (it) = (tmp), (tmp) = (it)->next)

/* ---- growable byte buffer -------------------------------------------------------------------- */

/* `head` bytes of headroom are reserved in front of the data (for LWS_PRE or a WebSocket
 * frame header written later); data lives at base + head, len bytes long. */
typedef struct gw_buf {
    uint8_t *base;
    size_t head;
    size_t len;
    size_t cap; /* bytes usable after the headroom */
} gw_buf_t;

/* An empty buffer that keeps headroom bytes free in front of its data (allocates lazily). */
void gw_buf_init(gw_buf_t *b, size_t headroom);
/* Frees the memory; the buffer is empty and may be used again. */
void gw_buf_free(gw_buf_t *b);
/* Empties the buffer, keeping its memory and headroom. */
void gw_buf_reset(gw_buf_t *b);
/* Makes room for n more bytes and returns where they go (len is not advanced). */
uint8_t *gw_buf_reserve(gw_buf_t *b, size_t n);
/* Append copies of bytes, a C string, or formatted text; they grow the buffer as needed. */
void gw_buf_append(gw_buf_t *b, const void *p, size_t n);
void gw_buf_append_str(gw_buf_t *b, const char *s);
void gw_buf_appendf(gw_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* NULL for a buffer that never held anything (NULL + head is undefined behaviour). */
static inline uint8_t *gw_buf_data(const gw_buf_t *b)
{
    return b->base ? b->base + b->head : NULL;
}

/* ---- time ------------------------------------------------------------------------------------ */

uint64_t gw_now_ms(void);  /* monotonic milliseconds */
uint64_t gw_now_us(void);  /* monotonic microseconds (durations) */
uint64_t gw_wall_ms(void); /* wall clock milliseconds since the epoch */
uint64_t gw_wall_us(void); /* wall clock microseconds since the epoch */
/* p[0..n) as a decimal number of 1 to 19 digits and nothing else (no sign, space or fraction):
 * 0 with *v set, or -EINVAL. */
int gw_parse_u64(const char *p, size_t n, uint64_t *v);
uint32_t gw_random_u32(void);                 /* non-cryptographic, seeded from /dev/urandom */
void gw_random_hex(char *out, size_t nbytes); /* nbytes random bytes as 2*nbytes hex + NUL */

#endif
