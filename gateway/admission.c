/* admission.c — per-IP and per-user connection accounting: two small chained hash tables (IPv4
 * address -> open sockets and a one-second rate window; uid -> open connections). */
#include "cardgw/admission.h"
#include "cardgw/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define GW_ADM_BUCKETS 4096 /* power of two */

typedef struct gw_ip_entry {
    struct gw_ip_entry *next;
    uint32_t ip;
    uint32_t open;
    uint64_t window_s; /* the second window_count counts */
    uint32_t window_count;
} gw_ip_entry_t;

typedef struct gw_user_entry {
    struct gw_user_entry *next;
    uint32_t open;
    char uid[]; /* NUL-terminated */
} gw_user_entry_t;

struct gw_admission {
    uint32_t max_per_ip, new_per_ip_per_s, max_per_user;
    gw_ip_entry_t *ips[GW_ADM_BUCKETS];
    gw_user_entry_t *users[GW_ADM_BUCKETS];
};

static const char *const gw_refuse_names[GW_REFUSE__COUNT] = {
    "ip_open", "ip_rate", "max_connections", "user", "fd_limit"};

const char *gw_refuse_reason_name(gw_refuse_reason_t r)
{
    return r < GW_REFUSE__COUNT ? gw_refuse_names[r] : "other";
}

gw_admission_t *gw_admission_new(uint32_t max_per_ip, uint32_t new_per_ip_per_s,
                                 uint32_t max_per_user)
{
    gw_admission_t *a = gw_calloc(1, sizeof(*a));
    a->max_per_ip = max_per_ip;
    a->new_per_ip_per_s = new_per_ip_per_s;
    a->max_per_user = max_per_user;
    return a;
}

void gw_admission_free(gw_admission_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < GW_ADM_BUCKETS; i++) {
        for (gw_ip_entry_t *e = a->ips[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
        for (gw_user_entry_t *e = a->users[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    }
    free(a);
}

/* ---- per IP ---------------------------------------------------------------------------------- */

static size_t gw_ip_bucket(uint32_t ip)
{
    return (size_t)((ip * 2654435761u) >> 20) & (GW_ADM_BUCKETS - 1);
}

static gw_ip_entry_t **gw_ip_find(gw_admission_t *a, uint32_t ip)
{
    gw_ip_entry_t **pp = &a->ips[gw_ip_bucket(ip)];
    while (*pp && (*pp)->ip != ip)
        pp = &(*pp)->next;
    return pp;
}

int gw_admission_ip_acquire(gw_admission_t *a, uint32_t ip, uint64_t now_ms,
                            gw_refuse_reason_t *reason)
{
    gw_ip_entry_t **pp = gw_ip_find(a, ip), *e = *pp;
    uint64_t sec = now_ms / 1000;
    if (!e) {
        e = *pp = gw_calloc(1, sizeof(*e));
        e->ip = ip;
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
    uint64_t sec = now_ms / 1000;
    for (size_t i = 0; i < GW_ADM_BUCKETS; i++) {
        gw_ip_entry_t **pp = &a->ips[i];
        while (*pp) {
            gw_ip_entry_t *e = *pp;
            if (e->open == 0 && e->window_s < sec) {
                *pp = e->next;
                free(e);
            } else {
                pp = &e->next;
            }
        }
    }
}

/* ---- per user -------------------------------------------------------------------------------- */

static gw_user_entry_t **gw_user_find(gw_admission_t *a, const char *uid)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = uid; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    gw_user_entry_t **pp = &a->users[h & (GW_ADM_BUCKETS - 1)];
    while (*pp && strcmp((*pp)->uid, uid) != 0)
        pp = &(*pp)->next;
    return pp;
}

int gw_admission_user_acquire(gw_admission_t *a, const char *uid)
{
    gw_user_entry_t **pp = gw_user_find(a, uid), *e = *pp;
    if (!e) {
        size_t n = strlen(uid);
        e = *pp = gw_calloc(1, sizeof(*e) + n + 1);
        memcpy(e->uid, uid, n + 1);
    }
    if (a->max_per_user && e->open >= a->max_per_user)
        return -EUSERS; /* an entry with open == 0 cannot be here: the cap is at least 1 */
    e->open++;
    return 0;
}

void gw_admission_user_release(gw_admission_t *a, const char *uid)
{
    gw_user_entry_t **pp = gw_user_find(a, uid), *e = *pp;
    if (!e)
        return;
    if (--e->open == 0) {
        *pp = e->next;
        free(e);
    }
}
