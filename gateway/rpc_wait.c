/* rpc_wait.c — the table of rpc calls waiting for the backend's answer: a hash by sequence
 * number, a list in deadline order (one timeout for all: insertion order is deadline order). */
#include "cardgw/rpc_wait.h"
#include "cardgw/metrics.h"

#include <errno.h>
#include <stdlib.h>

#define GW_RPC_BUCKETS_MIN 64

typedef struct gw_rpc_wait {
    struct gw_rpc_wait *hnext; /* hash chain */
    gw_list_t order;           /* w->order: oldest (earliest deadline) first */
    gw_list_t conn_link;       /* c->rpcs while c is open */
    gw_conn_t *c;              /* borrowed while open; NULL once it closed */
    uint64_t seq;
    uint64_t deadline_ms;
    uint32_t id; /* the rpc command to answer */
} gw_rpc_wait_t;

struct gw_rpc_waits {
    uv_timer_t timer; /* due at the oldest entry's deadline */
    uint32_t timeout_ms, max_per_conn;
    uint64_t seq;
    gw_list_t order;
    gw_rpc_wait_t **buckets;
    size_t nbuckets, n;
};

static void gw_rpc_rehash(gw_rpc_waits_t *w, size_t nb)
{
    gw_rpc_wait_t **b = gw_calloc(nb, sizeof(*b));
    for (size_t i = 0; i < w->nbuckets; i++)
        for (gw_rpc_wait_t *e = w->buckets[i], *next; e; e = next) {
            next = e->hnext;
            e->hnext = b[e->seq & (nb - 1)];
            b[e->seq & (nb - 1)] = e;
        }
    free(w->buckets);
    w->buckets = b;
    w->nbuckets = nb;
}

static gw_rpc_wait_t **gw_rpc_slot(gw_rpc_waits_t *w, uint64_t seq)
{
    gw_rpc_wait_t **pp = &w->buckets[seq & (w->nbuckets - 1)];
    while (*pp && (*pp)->seq != seq)
        pp = &(*pp)->hnext;
    return pp;
}

/* Unlinks and frees e. */
static void gw_rpc_remove(gw_rpc_waits_t *w, gw_rpc_wait_t *e)
{
    gw_rpc_wait_t **pp = gw_rpc_slot(w, e->seq);
    *pp = e->hnext;
    gw_list_remove(&e->order);
    if (e->c) {
        gw_list_remove(&e->conn_link);
        e->c->nrpcs--;
        gw_metrics.rpc_pending--;
    }
    free(e);
    w->n--;
    if (w->nbuckets > GW_RPC_BUCKETS_MIN && w->n < w->nbuckets / 8)
        gw_rpc_rehash(w, w->nbuckets / 2);
}

static void gw_rpc_on_timer(uv_timer_t *t);

static void gw_rpc_schedule(gw_rpc_waits_t *w, uint64_t now)
{
    if (gw_list_empty(&w->order))
        return;
    gw_rpc_wait_t *e = gw_container_of(w->order.next, gw_rpc_wait_t, order);
    uv_timer_start(&w->timer, gw_rpc_on_timer, e->deadline_ms > now ? e->deadline_ms - now : 0, 0);
}

static void gw_rpc_on_timer(uv_timer_t *t)
{
    gw_rpc_waits_t *w = t->data;
    uint64_t now = gw_now_ms();
    while (!gw_list_empty(&w->order)) {
        gw_rpc_wait_t *e = gw_container_of(w->order.next, gw_rpc_wait_t, order);
        if (e->deadline_ms > now)
            break;
        gw_conn_t *c = e->c;
        uint32_t id = e->id;
        gw_rpc_remove(w, e);
        if (c) {
            gw_metrics.rpc_waits[GW_RPC_OUT_TIMEOUT]++;
            gw_conn_reply_error(c, id, GW_ERR_RPC_TIMEOUT,
                                "rpc timed out: no answer from the backend");
        }
    }
    gw_rpc_schedule(w, now);
}

gw_rpc_waits_t *gw_rpc_waits_new(uv_loop_t *loop, uint32_t timeout_ms, uint32_t max_per_conn)
{
    gw_rpc_waits_t *w = gw_calloc(1, sizeof(*w));
    w->timeout_ms = timeout_ms;
    w->max_per_conn = max_per_conn;
    gw_list_init(&w->order);
    w->nbuckets = GW_RPC_BUCKETS_MIN;
    w->buckets = gw_calloc(w->nbuckets, sizeof(*w->buckets));
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    return w;
}

void gw_rpc_waits_stop(gw_rpc_waits_t *w)
{
    if (w)
        uv_close((uv_handle_t *)&w->timer, NULL);
}

void gw_rpc_waits_free(gw_rpc_waits_t *w)
{
    if (!w)
        return;
    while (!gw_list_empty(&w->order))
        gw_rpc_remove(w, gw_container_of(w->order.next, gw_rpc_wait_t, order));
    free(w->buckets);
    free(w);
}

uint64_t gw_rpc_wait_add(gw_rpc_waits_t *w, gw_conn_t *c, uint32_t id)
{
    if (c->nrpcs >= w->max_per_conn)
        return 0;
    if (w->n + 1 > w->nbuckets)
        gw_rpc_rehash(w, w->nbuckets * 2);
    gw_rpc_wait_t *e = gw_calloc(1, sizeof(*e));
    uint64_t now = gw_now_ms();
    e->seq = ++w->seq;
    e->id = id;
    e->c = c;
    e->deadline_ms = now + w->timeout_ms;
    gw_list_insert_tail(&c->rpcs, &e->conn_link);
    c->nrpcs++;
    gw_metrics.rpc_pending++;
    int first = gw_list_empty(&w->order);
    gw_list_insert_tail(&w->order, &e->order); /* one timeout for all: deadline order */
    gw_rpc_wait_t **pp = &w->buckets[e->seq & (w->nbuckets - 1)];
    e->hnext = *pp;
    *pp = e;
    w->n++;
    if (first)
        gw_rpc_schedule(w, now);
    return e->seq;
}

/* Removes the entry of seq; *c gets its connection (NULL: closed) and *id its command id.
 * Returns 0, -EPIPE (closed) or -ENOENT. */
static int gw_rpc_take(gw_rpc_waits_t *w, uint64_t seq, gw_conn_t **c, uint32_t *id)
{
    gw_rpc_wait_t *e = *gw_rpc_slot(w, seq);
    if (!e)
        return -ENOENT;
    *c = e->c;
    *id = e->id;
    gw_rpc_remove(w, e);
    return *c ? 0 : -EPIPE;
}

int gw_rpc_wait_result(gw_rpc_waits_t *w, uint64_t seq, gw_data_t data)
{
    gw_conn_t *c;
    uint32_t id;
    int rc = gw_rpc_take(w, seq, &c, &id);
    if (rc == 0) {
        gw_metrics.rpc_waits[GW_RPC_OUT_RESULT]++;
        GW_CONN_SEND(c, gw_proto_enc_rpc_ok, id, data);
    }
    return rc;
}

int gw_rpc_wait_backend_error(gw_rpc_waits_t *w, uint64_t seq, const char *message,
                              int has_app_code, int64_t app_code)
{
    gw_conn_t *c;
    uint32_t id;
    int rc = gw_rpc_take(w, seq, &c, &id);
    if (rc != 0)
        return rc;
    gw_metrics.rpc_waits[GW_RPC_OUT_ERROR]++;
    const char *msg = message[0] ? message : "backend error";
    if (has_app_code) {
        gw_metrics.command_errors++; /* as gw_conn_reply_error; not the client's error budget */
        GW_CONN_SEND(c, gw_proto_enc_error_app, id, GW_ERR_BACKEND, msg, app_code);
    } else {
        gw_conn_reply_error(c, id, GW_ERR_BACKEND, msg);
    }
    return 0;
}

int gw_rpc_wait_unavailable(gw_rpc_waits_t *w, uint64_t seq)
{
    gw_conn_t *c;
    uint32_t id;
    int rc = gw_rpc_take(w, seq, &c, &id);
    if (rc == 0) {
        gw_metrics.rpc_waits[GW_RPC_OUT_UNAVAILABLE]++;
        gw_conn_reply_error(c, id, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
    }
    return rc;
}

void gw_rpc_waits_fail_all(gw_rpc_waits_t *w)
{
    /* a closed connection's entry is removed too (nobody to tell) */
    while (!gw_list_empty(&w->order))
        gw_rpc_wait_unavailable(w, gw_container_of(w->order.next, gw_rpc_wait_t, order)->seq);
}

void gw_rpc_waits_conn_closed(gw_rpc_waits_t *w, gw_conn_t *c)
{
    (void)w;
    gw_list_t *it, *tmp;
    gw_list_foreach_safe(it, tmp, &c->rpcs)
    {
        gw_rpc_wait_t *e = gw_container_of(it, gw_rpc_wait_t, conn_link);
        gw_list_remove(&e->conn_link);
        e->c = NULL;
        gw_metrics.rpc_pending--;
        gw_metrics.rpc_waits[GW_RPC_OUT_CLOSED]++;
    }
    c->nrpcs = 0;
}
