/* admission.c — per-IP and per-user accounting: two chained hash tables that grow (IPv4 address
 * -> open sockets and a one-second rate window; uid -> open connections and an rpc token bucket).
 */
#include "cardgw/admission.h"
#include "cardgw/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define GW_ADM_MIN_BUCKETS 1024 /* power of two; tables double when entries pass 2 per bucket */

typedef struct gw_ip_entry {
    struct gw_ip_entry *next;
    uint32_t ip;
    uint32_t open;
    uint32_t window_s; /* the second window_count counts (monotonic seconds) */
    uint32_t window_count;
} gw_ip_entry_t;

typedef struct gw_user_entry {
    struct gw_user_entry *next;
    uint32_t hash;
    uint32_t open;
    uint32_t online;   /* connections up (authenticated, not closed): open counts until release */
    double rpc_tokens; /* max_rpcs_per_user_per_s bucket, shared by the user's connections */
    uint64_t rpc_ms;   /* its last refill (monotonic ms; 0: full, never taken from) */
    char uid[];        /* NUL-terminated; lent to the connections that hold a count */
} gw_user_entry_t;

/* A chained hash table of entries that start with a `next` pointer and whose hash is given by
 * a function: doubled when it holds more than two entries per bucket. */
typedef struct {
    void **buckets;
    size_t nbuckets, n;
} gw_table_t;

struct gw_admission {
    uint32_t max_per_ip, new_per_ip_per_s, max_per_user;
    gw_table_t ips, users;
    size_t users_online; /* users with online > 0 */
};

static const char *const gw_refuse_names[GW_REFUSE__COUNT] = {
    "ip_open", "ip_rate", "max_connections", "user", "fd_limit", "origin"};

const char *gw_refuse_reason_name(gw_refuse_reason_t r)
{
    return r < GW_REFUSE__COUNT ? gw_refuse_names[r] : "other";
}

/* ---- the table ------------------------------------------------------------------------------- */

static uint32_t gw_ip_hash(uint32_t ip)
{
    return ip * 2654435761u;
}

static uint32_t gw_uid_hash(const char *uid)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = uid; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

static void gw_table_init(gw_table_t *t)
{
    t->nbuckets = GW_ADM_MIN_BUCKETS;
    t->buckets = gw_calloc(t->nbuckets, sizeof(void *));
    t->n = 0;
}

/* The bucket of hash h (the upper bits of a multiplicative hash spread best). */
static void **gw_table_bucket(gw_table_t *t, uint32_t h)
{
    return &t->buckets[(h ^ (h >> 16)) & (t->nbuckets - 1)];
}

static uint32_t gw_entry_hash(const void *e, int users)
{
    return users ? ((const gw_user_entry_t *)e)->hash : gw_ip_hash(((const gw_ip_entry_t *)e)->ip);
}

/* Both entry types start with their `next` pointer. */
static void **gw_next(void *e)
{
    return (void **)e;
}

static void gw_table_grow(gw_table_t *t, int users)
{
    if (t->n <= 2 * t->nbuckets)
        return;
    gw_table_t nt = {gw_calloc(t->nbuckets * 2, sizeof(void *)), t->nbuckets * 2, t->n};
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (void *e = t->buckets[i], *nx; e; e = nx) {
            nx = *gw_next(e);
            void **b = gw_table_bucket(&nt, gw_entry_hash(e, users));
            *gw_next(e) = *b;
            *b = e;
        }
    }
    free(t->buckets);
    *t = nt;
}

static void gw_table_free(gw_table_t *t)
{
    for (size_t i = 0; i < t->nbuckets; i++)
        for (void *e = t->buckets[i], *nx; e; e = nx) {
            nx = *gw_next(e);
            free(e);
        }
    free(t->buckets);
}

gw_admission_t *gw_admission_new(uint32_t max_per_ip, uint32_t new_per_ip_per_s,
                                 uint32_t max_per_user)
{
    gw_admission_t *a = gw_calloc(1, sizeof(*a));
    a->max_per_ip = max_per_ip;
    a->new_per_ip_per_s = new_per_ip_per_s;
    a->max_per_user = max_per_user;
    gw_table_init(&a->ips);
    gw_table_init(&a->users);
    return a;
}

void gw_admission_free(gw_admission_t *a)
{
    if (!a)
        return;
    gw_table_free(&a->ips);
    gw_table_free(&a->users);
    free(a);
}

/* ---- per IP ---------------------------------------------------------------------------------- */

static gw_ip_entry_t **gw_ip_find(gw_admission_t *a, uint32_t ip)
{
    gw_ip_entry_t **pp = (gw_ip_entry_t **)gw_table_bucket(&a->ips, gw_ip_hash(ip));
    while (*pp && (*pp)->ip != ip)
        pp = &(*pp)->next;
    return pp;
}

int gw_admission_ip_acquire(gw_admission_t *a, uint32_t ip, uint64_t now_ms,
                            gw_refuse_reason_t *reason)
{
    gw_ip_entry_t **pp = gw_ip_find(a, ip), *e = *pp;
    uint32_t sec = (uint32_t)(now_ms / 1000);
    if (!e) {
        e = *pp = gw_calloc(1, sizeof(*e));
        e->ip = ip;
        e->window_s = sec;
        a->ips.n++;
        gw_table_grow(&a->ips, 0);
    }
    if (e->window_s != sec) {
        e->window_s = sec;
        e->window_count = 0;
    }
    if (a->max_per_ip && e->open >= a->max_per_ip) {
        *reason = GW_REFUSE_IP_OPEN;
        return -EMFILE;
    }
    if (a->new_per_ip_per_s && e->window_count >= a->new_per_ip_per_s) {
        *reason = GW_REFUSE_IP_RATE;
        return -EAGAIN;
    }
    e->window_count++;
    e->open++;
    return 0;
}

void gw_admission_ip_release(gw_admission_t *a, uint32_t ip)
{
    gw_ip_entry_t *e = *gw_ip_find(a, ip);
    if (e && e->open > 0)
        e->open--; /* the entry goes at the next sweep once its rate window passed */
}

uint32_t gw_admission_ip_open(const gw_admission_t *a, uint32_t ip)
{
    gw_ip_entry_t *e = *gw_ip_find((gw_admission_t *)a, ip);
    return e ? e->open : 0;
}

void gw_admission_sweep(gw_admission_t *a, uint64_t now_ms)
{
    uint32_t sec = (uint32_t)(now_ms / 1000);
    for (size_t i = 0; i < a->ips.nbuckets; i++) {
        gw_ip_entry_t **pp = (gw_ip_entry_t **)&a->ips.buckets[i];
        while (*pp) {
            gw_ip_entry_t *e = *pp;
            if (e->open == 0 && e->window_s != sec) {
                *pp = e->next;
                free(e);
                a->ips.n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

/* ---- per user -------------------------------------------------------------------------------- */

static gw_user_entry_t **gw_user_find(gw_admission_t *a, const char *uid, uint32_t h)
{
    gw_user_entry_t **pp = (gw_user_entry_t **)gw_table_bucket(&a->users, h);
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->uid, uid) != 0))
        pp = &(*pp)->next;
    return pp;
}

const char *gw_admission_user_acquire(gw_admission_t *a, const char *uid)
{
    uint32_t h = gw_uid_hash(uid);
    gw_user_entry_t **pp = gw_user_find(a, uid, h), *e = *pp;
    if (e && a->max_per_user && e->open >= a->max_per_user)
        return NULL;
    if (!e) {
        size_t n = strlen(uid);
        e = *pp = gw_malloc(sizeof(*e) + n + 1);
        e->next = NULL;
        e->hash = h;
        e->open = 0;
        e->online = 0;
        e->rpc_tokens = 0;
        e->rpc_ms = 0;
        memcpy(e->uid, uid, n + 1);
        a->users.n++;
        gw_table_grow(&a->users, 1);
    }
    e->open++;
    return e->uid;
}

void gw_admission_user_release(gw_admission_t *a, const char *uid)
{
    gw_user_entry_t **pp = gw_user_find(a, uid, gw_uid_hash(uid)), *e = *pp;
    if (!e)
        return;
    if (--e->open == 0) {
        if (e->online) /* released before closed: a bug elsewhere, but the count stays true */
            a->users_online--;
        *pp = e->next;
        free(e); /* uid may be e->uid itself: not read after this */
        a->users.n--;
    }
}

int gw_admission_user_online(gw_admission_t *a, const char *uid, int up, uint32_t *count)
{
    gw_user_entry_t *e = *gw_user_find(a, uid, gw_uid_hash(uid));
    if (!e || (!up && !e->online))
        return -ENOENT;
    if (up && e->online++ == 0)
        a->users_online++;
    else if (!up && --e->online == 0)
        a->users_online--;
    *count = e->online;
    return 0;
}

size_t gw_admission_users_online(const gw_admission_t *a)
{
    return a->users_online;
}

int gw_admission_foreach_online(const gw_admission_t *a, gw_admission_user_cb cb, void *priv)
{
    int rc = 0;
    for (size_t i = 0; i < a->users.nbuckets && rc == 0; i++)
        for (const gw_user_entry_t *e = a->users.buckets[i]; e && rc == 0; e = e->next)
            if (e->online)
                rc = cb(priv, e->uid, e->online);
    return rc;
}

int gw_admission_user_rpc_take(gw_admission_t *a, const char *uid, uint64_t now_ms, uint32_t per_s)
{
    gw_user_entry_t *e = *gw_user_find(a, uid, gw_uid_hash(uid));
    if (!per_s || !e)
        return 0;
    double burst = 2.0 * per_s;
    if (!e->rpc_ms) {
        e->rpc_tokens = burst;
    } else if (now_ms > e->rpc_ms) {
        e->rpc_tokens += (double)(now_ms - e->rpc_ms) * per_s / 1000.0;
        if (e->rpc_tokens > burst)
            e->rpc_tokens = burst;
    }
    e->rpc_ms = now_ms ? now_ms : 1;
    if (e->rpc_tokens < 1.0)
        return -EAGAIN;
    e->rpc_tokens -= 1.0;
    return 0;
}
