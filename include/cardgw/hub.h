/* hub.h — the node-local hub: channels and subscriptions indexed both ways, subscribe
 * authorisation, one Redis SUBSCRIBE per channel per node, the ordered relay of shared frames, and
 * the one publish path (scripts/publish.lua) used by the API, client publishes and backends. */
#ifndef CARDGW_HUB_H
#define CARDGW_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "cardgw/broker.h"
#include "cardgw/conn.h"
#include "cardgw/redis.h"

struct gw_node;
typedef struct gw_hub gw_hub_t;

/* Creates the hub on node's loop (it starts its periodic timer there). node (its config, its
 * connections by user), redis (the main Redis: members, inbox, control) and shards[0..nshards)
 * (where channels live; nshards 0: on redis) are borrowed and must outlive the hub; every Redis
 * call of the hub goes through them. Never NULL. */
gw_hub_t *gw_hub_new(struct gw_node *node, const gw_redis_t *redis, const gw_redis_t *const *shards,
                     uint32_t nshards);
/* The Redis channel ch[0..n) lives on (one of the shards, by gw_schema_shard). */
const gw_redis_t *gw_hub_channel_redis(const gw_hub_t *hub, const char *ch, size_t n);
/* Closes the hub's timer (the loop must run afterwards); then gw_hub_free frees the rest, once
 * every connection is closed. NULL is fine for both. */
void gw_hub_stop(gw_hub_t *hub);
void gw_hub_free(gw_hub_t *hub);

/* What the pub/sub connection of shard `shard` reports (-1: of the main Redis when it is not a
 * shard; every pointer is borrowed for the call): a message on a subscribed channel (a relay frame,
 * or a control message from the main Redis), a confirmed SUBSCRIBE (subscribed = 1) or
 * UNSUBSCRIBE (0), the connection going up or down (only that shard's channels are affected). */
void gw_hub_on_message(gw_hub_t *hub, int shard, const char *ch, size_t chlen, const char *payload,
                       size_t n);
void gw_hub_on_subscription(gw_hub_t *hub, int shard, const char *ch, size_t chlen, int subscribed);
void gw_hub_on_event(gw_hub_t *hub, int shard, gw_broker_event_t ev);

/* Channel commands (subscribe, unsubscribe, publish, presence, history) on one connection take
 * effect in the order sent: while a subscribe of cmd's channel is pending on c, cmd (msg[0..n),
 * as received; copied) is held and run after that subscribe's reply. Returns 1 when cmd was held
 * (or refused with error 115: too many held), 0 when it should run now. */
int gw_hub_hold(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd, const uint8_t *msg, size_t n);
/* Runs the held commands whose subscribe was answered; the node calls it before it flushes. */
void gw_hub_replay(gw_hub_t *hub);
/* Drops every subscription of c (its socket closed); reads still pending finish without it. */
void gw_hub_conn_closed(gw_hub_t *hub, gw_conn_t *c);

/* Client commands (the connection is READY; cmd is borrowed for the call). Each replies exactly
 * once, now or when Redis answers (the connection is held meanwhile). */
void gw_hub_subscribe(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd);
void gw_hub_unsubscribe(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd);
void gw_hub_client_publish(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd);
/* presence, presence_users and presence_stats (cmd->kind): one read of the presence set. */
void gw_hub_presence(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd);
void gw_hub_history(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd);
void gw_hub_rpc(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd);

/* The one publish path. data is borrowed (copied before return); from may be NULL. cb gets
 * 0 with the assigned (epoch, offset), or a GW_ERR_* code. Returns 0 or GW_ERR_* (then cb is
 * not called): GW_ERR_UNKNOWN_NAMESPACE, GW_ERR_BAD_CHANNEL, GW_ERR_UNAVAILABLE. */
typedef void (*gw_publish_cb)(void *priv, int err, const char *epoch, uint64_t offset);
int gw_hub_publish(gw_hub_t *hub, const char *ch, size_t n, gw_data_t data, const char *from,
                   gw_publish_cb cb, void *priv);
/* Tells every node to disconnect user uid (channel NULL) or to remove the user's subscriptions
 * to channel (GW_SCHEMA_CTL_CHANNEL; uid and channel borrowed, valid). Returns 0 or
 * GW_ERR_UNAVAILABLE / GW_ERR_BAD_REQUEST; cb as above, offset = nodes that received it. */
int gw_hub_control(gw_hub_t *hub, const char *uid, const char *channel, gw_publish_cb cb,
                   void *priv);

#endif
