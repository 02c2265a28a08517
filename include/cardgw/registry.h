/* registry.h — where nodes make themselves known: each node keeps an entry in the main Redis
 * (GW_SCHEMA_NODES) with its counts and an expiry, so any node can list the live ones. */
#ifndef CARDGW_REGISTRY_H
#define CARDGW_REGISTRY_H

#include <jansson.h>
#include <stdint.h>

struct gw_node;
typedef struct gw_registry gw_registry_t;

/* An entry lives this many refresh intervals (node_registry_interval_ms) past its last write: a
 * node killed without a drain drops out of the view within that. */
#define GW_REGISTRY_TTL_FACTOR 3

/* Starts refreshing this node's entry every node_registry_interval_ms on the node's loop (node
 * and its Redis interface are borrowed and must outlive the registry). Never NULL. */
gw_registry_t *gw_registry_new(struct gw_node *node);
/* The node is stopping: its entry says "draining" and expires when the node must be gone
 * (shutdown_timeout_ms); no refresh after this. */
void gw_registry_leave(gw_registry_t *reg);
/* Closes the timer (the loop must run afterwards), then frees the rest. NULL is fine. */
void gw_registry_free(gw_registry_t *reg);

/* The live nodes' entries: cb gets 0 and a JSON array (borrowed for the call) of objects
 * {id, version, state, started_at, seen_at, expires_at, connections, channels, subscriptions,
 * redis_ready, shards, redis_down (the Redis it cannot reach: "main", "shard1", ...)} ordered by
 * id, or -EIO when Redis failed. Entries expired for over a minute are
 * deleted on the way. Returns 0 (cb is called exactly once, later) or -ENOTCONN. */
typedef void (*gw_registry_list_cb)(void *priv, int err, json_t *nodes);
int gw_registry_list(const struct gw_node *node, gw_registry_list_cb cb, void *priv);

#endif
