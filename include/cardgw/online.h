/* online.h — who is online, across nodes and devices: each node mirrors its count of authenticated
 * connections per user into a hash of its own in the main Redis (docs/redis-schema.md). */
#ifndef CARDGW_ONLINE_H
#define CARDGW_ONLINE_H

#include <stddef.h>
#include <stdint.h>

struct gw_node;
typedef struct gw_online gw_online_t;

/* Most uids one gw_online_query answers (GET/POST /api/v1/online answer 400 past it). */
#define GW_ONLINE_MAX_QUERY 1000

/* Starts mirroring this node's table into its hash (gw_schema_online_key) on the main Redis,
 * refreshed every node_registry_interval_ms (node and its Redis interface are borrowed and must
 * outlive the module). The node's hash is rewritten whole once Redis answers first, so a node
 * restarted with a fixed node_id starts clean. Never NULL. */
gw_online_t *gw_online_new(struct gw_node *node);
/* A connection authenticated as uid (borrowed, NUL-terminated) / one that was authenticated
 * closed: the user's count on this node goes up / down, and Redis is told without waiting (a
 * failure is repaired by the next refresh). Call down exactly once per up. NULL o: nothing (a
 * node assembled without the module, as in unit tests). */
void gw_online_conn_up(gw_online_t *o, const char *uid);
void gw_online_conn_down(gw_online_t *o, const char *uid);
/* The main Redis relays again (the broker's READY event, after a (re)connect): the node's hash
 * is rewritten whole, since Redis may have lost it. */
void gw_online_redis_ready(gw_online_t *o);
/* The node stops serving (every connection is closed): its hash is deleted, the last_seen of
 * users still counted is set, and nothing more is written. cb(priv) runs once, from a reply,
 * when Redis has done all of this node's online writes (0 returned); -ENOTCONN: Redis is down,
 * cb is not called. gw_online_free before the reply cancels cb. */
typedef void (*gw_online_left_cb)(void *priv);
int gw_online_leave(gw_online_t *o, gw_online_left_cb cb, void *priv);
/* The node is being destroyed: nothing more is written, a pending leave's cb is cancelled, and
 * the timer is closed (the loop must run afterwards). Replies still pending may arrive until the
 * broker is stopped, and conn_up / conn_down may still be called: o stays valid until
 * gw_online_free (after the loop's last turn and gw_broker_stop). NULL is fine for both. */
void gw_online_stop(gw_online_t *o);
void gw_online_free(gw_online_t *o);

/* One user's status across the live nodes (those in GW_SCHEMA_NODES, not expired). */
typedef struct {
    uint64_t connections; /* authenticated connections, all nodes */
    int64_t last_seen;    /* unix ms of the last connect or close; -1: never seen */
} gw_online_status_t;
/* Reads the status of uids[0..n) (each borrowed for the call, valid per gw_auth_uid_valid;
 * 1 <= n <= GW_ONLINE_MAX_QUERY): cb gets 0 and st[0..n) in the same order (borrowed for the
 * call), or -EIO when Redis failed (st NULL). Returns 0 (cb is called exactly once, later) or
 * -ENOTCONN / -EINVAL (cb is not called). */
typedef void (*gw_online_query_cb)(void *priv, int err, const gw_online_status_t *st, size_t n);
int gw_online_query(gw_online_t *o, const char *const *uids, size_t n, gw_online_query_cb cb,
                    void *priv);

#endif
