/* broker.h — the node's two Redis connections (pub/sub and commands) on the node's libuv loop:
 * reconnect with backoff and jitter, batched SUBSCRIBE/UNSUBSCRIBE, and a canary round trip. */
#ifndef CARDGW_BROKER_H
#define CARDGW_BROKER_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

#include "cardgw/config.h"

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

/* reply is borrowed (NULL when the command failed: Redis down, disconnected, or shutdown). */
typedef void (*gw_broker_reply_cb)(void *priv, redisReply *reply);

/* Creates the broker; connects when gw_broker_start is called. cfg and node_id are borrowed and
 * must outlive the broker. Returns NULL with a message in err for a bad redis_url. */
gw_broker_t *gw_broker_new(uv_loop_t *loop, const gw_config_t *cfg, const char *node_id,
                           const gw_broker_handlers_t *h, char *err, size_t errlen);
void gw_broker_start(gw_broker_t *b);
/* Disconnects both connections and closes every handle; the loop must run afterwards until it
 * has no more handles, then gw_broker_free releases the rest. */
void gw_broker_stop(gw_broker_t *b);
void gw_broker_free(gw_broker_t *b);

int gw_broker_ready(const gw_broker_t *b);
int gw_broker_cmd_connected(const gw_broker_t *b);
/* Both connections are up (the relay may still be catching up: see gw_broker_ready). */
int gw_broker_connected(const gw_broker_t *b);

/* Sends a command on the command connection. Returns 0 (cb will be called exactly once, with
 * NULL on failure) or -ENOTCONN (cb is not called). argv strings are copied. */
int gw_broker_command_argv(gw_broker_t *b, gw_broker_reply_cb cb, void *priv, int argc,
                           const char **argv, const size_t *argvlen);

/* A Lua script run with EVALSHA; Redis's script cache is volatile (restart, failover, SCRIPT
 * FLUSH), so on NOSCRIPT (nothing ran) it is sent again with EVAL, which caches it again. */
typedef struct {
    const char *src;
    char sha[41];
} gw_script_t;
void gw_script_init(gw_script_t *s, const char *src);
/* argv: numkeys, the keys, then the arguments (copied). cb as for gw_broker_command_argv. */
int gw_broker_eval(gw_broker_t *b, const gw_script_t *s, gw_broker_reply_cb cb, void *priv,
                   int argc, const char **argv, const size_t *argvlen);

/* Queues a SUBSCRIBE/UNSUBSCRIBE; queued requests are sent in batches on the next loop turn,
 * in order. Requests made while the pub/sub connection is down are dropped: the owner
 * resubscribes on GW_BROKER_SUB_UP. */
void gw_broker_subscribe(gw_broker_t *b, const char *channel, size_t n);
void gw_broker_unsubscribe(gw_broker_t *b, const char *channel, size_t n);

#endif
