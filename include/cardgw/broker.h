/* broker.h — the node's two Redis connections (pub/sub and commands) on the node's libuv loop:
 * reconnect with backoff and jitter, batched SUBSCRIBE/UNSUBSCRIBE, and a canary round trip. */
#ifndef CARDGW_BROKER_H
#define CARDGW_BROKER_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

#include "cardgw/config.h"
#include "cardgw/metrics.h"
#include "cardgw/redis.h"

typedef struct gw_broker gw_broker_t;

typedef enum {
    GW_BROKER_SUB_UP = 1, /* pub/sub connection (re)established: resubscribe everything */
    GW_BROKER_SUB_DOWN,   /* pub/sub connection lost: every channel may have a gap */
    GW_BROKER_READY,      /* canary round trip works */
    GW_BROKER_NOT_READY,
} gw_broker_event_t;

typedef struct {
    /* A message published on a subscribed channel. All pointers are borrowed for the call. */
    void (*on_message)(void *ud, const char *channel, size_t chlen, const char *payload,
                       size_t plen);
    /* Redis confirmed SUBSCRIBE (subscribed = 1) or UNSUBSCRIBE (0) of channel. */
    void (*on_subscription)(void *ud, const char *channel, size_t chlen, int subscribed);
    void (*on_event)(void *ud, gw_broker_event_t ev);
    void *ud;
} gw_broker_handlers_t;

/* Creates the broker for the Redis at url (redis:// or redis-sentinel://, copied); connects when
 * gw_broker_start is called. name is NULL for the main Redis (it drives the global
 * cardgw_redis_* gauges) or "shard<i>" (copied; prefixes its log lines). cfg and node_id are
 * borrowed and must outlive the broker; h is copied (its handlers fire from the loop, never from
 * inside a call into the broker). slot is its series in gw_metrics (0: the main Redis, 1 + i:
 * shard i): the round trip of every command answered on its command connection, its readiness.
 * Returns NULL with a message in err for a bad URL. */
gw_broker_t *gw_broker_new(uv_loop_t *loop, const gw_config_t *cfg, const char *url,
                           const char *name, const char *node_id, const gw_broker_handlers_t *h,
                           uint32_t slot, char *err, size_t errlen);
/* "" for the main Redis, else the name it was created with. */
const char *gw_broker_name(const gw_broker_t *b);
/* Connects both connections (and reconnects them with backoff from then on). */
void gw_broker_start(gw_broker_t *b);
/* Disconnects both connections (pending replies are called back with NULL) and closes every
 * handle; the loop must run afterwards until it has no more handles, then gw_broker_free releases
 * the rest. Safe to call twice. */
void gw_broker_stop(gw_broker_t *b);
/* Frees b (NULL is fine); after gw_broker_stop and the loop's last turn. */
void gw_broker_free(gw_broker_t *b);

/* The canary round trip works: publications reach this node (/readyz). */
int gw_broker_ready(const gw_broker_t *b);
/* Both connections are up (the relay may still be catching up: see gw_broker_ready). */
int gw_broker_connected(const gw_broker_t *b);

/* The interface every other module reaches Redis through (redis.h); valid as long as b. */
const gw_redis_t *gw_broker_redis(gw_broker_t *b);

#endif
