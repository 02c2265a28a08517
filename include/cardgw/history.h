/* history.h — reading a channel's position and retained publications from Redis in one atomic
 * script: used to join a channel at an exact position, recover after a reconnect, fill gaps in the
 * relay, check idle channels, and answer the history command. */
#ifndef CARDGW_HISTORY_H
#define CARDGW_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "cardgw/proto.h"
#include "cardgw/redis.h"

typedef enum {
    GW_HIST_POSITION = 0, /* only the position */
    GW_HIST_AFTER,        /* publications with offset > after, oldest first */
    GW_HIST_TAIL,         /* the newest `count` publications, oldest first */
} gw_hist_mode_t;

/* What the script found; every pointer is borrowed from the Redis reply for the callback. */
typedef struct {
    const char *epoch; /* never empty: the script creates the epoch when the channel has none */
    uint64_t top;      /* highest offset published in this epoch (0: none yet) */
    gw_pub_t *pubs;
    size_t npubs;
    int cut; /* the read's byte budget stopped it: more publications were in range */
} gw_history_t;

/* h is NULL when Redis failed or is unavailable. */
typedef void (*gw_history_cb)(void *priv, const gw_history_t *h);

/* Reads channel ch[0..n) (borrowed) with scripts/history.lua. meta_ttl_s is applied when the
 * epoch is created here (and a meta hash with less time left is extended to it). Returns 0 (cb is
 * called exactly once, later) or -ENOTCONN (cb is not called). */
int gw_history_read(const gw_redis_t *r, const char *ch, size_t n, gw_hist_mode_t mode,
                    uint64_t after, uint32_t count, uint32_t meta_ttl_s, gw_history_cb cb,
                    void *priv);
/* The same within max_bytes of publication data (gw_pubs_bytes: data + publisher; 0 = no bound):
 * the script stops reading at the first publication that would pass it, so neither Redis nor
 * the node handles more (at least one publication is returned; h->cut says it stopped). Mode
 * GW_HIST_AFTER gives the oldest that fit, GW_HIST_TAIL the newest. */
int gw_history_read_max(const gw_redis_t *r, const char *ch, size_t n, gw_hist_mode_t mode,
                        uint64_t after, uint32_t count, uint32_t meta_ttl_s, size_t max_bytes,
                        gw_history_cb cb, void *priv);

/* The channel's position as stored, without creating an epoch: err is 0 with epoch ("" when the
 * channel has none; borrowed for the call) and top (0 when none), or -EIO when Redis failed. */
typedef void (*gw_position_cb)(void *priv, int err, const char *epoch, uint64_t top);
/* HMGET of the channel's meta hash. Returns 0 (cb is called exactly once, later) or -ENOTCONN
 * (cb is not called). */
int gw_history_position(const gw_redis_t *r, const char *ch, size_t n, gw_position_cb cb,
                        void *priv);
/* The same for a channel this node serves: keep_ttl_s > 0 also extends a meta hash with less time
 * left to keep_ttl_s (scripts/keep.lua, as EXPIRE GT: a hash a read created lives while someone is
 * subscribed; a publish's longer lifetime is never cut; a missing hash is not created). */
int gw_history_position_keep(const gw_redis_t *r, const char *ch, size_t n, uint32_t keep_ttl_s,
                             gw_position_cb cb, void *priv);

#endif
