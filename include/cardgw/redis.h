/* redis.h — the one interface through which the node's modules reach Redis: a small table of
 * functions the broker implements (broker.c) and unit tests replace with scripted replies. */
#ifndef CARDGW_REDIS_H
#define CARDGW_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>

/* A command's reply: reply is borrowed for the call (copy what you keep) and NULL when the command
 * failed (Redis down, disconnected while waiting, or the node is stopping). */
typedef void (*gw_redis_reply_cb)(void *priv, redisReply *reply);

/* A Lua script run with EVALSHA; Redis's script cache is volatile (restart, failover, SCRIPT
 * FLUSH), so on NOSCRIPT (nothing ran) it is sent again with EVAL, which caches it again. */
typedef struct {
    const char *src; /* borrowed, static */
    char sha[41];
} gw_script_t;
/* Computes the script's SHA1; src must outlive s. */
void gw_script_init(gw_script_t *s, const char *src);

typedef struct gw_redis {
    void *ctx; /* the implementation's (the broker) */
    /* Both Redis connections are up (publications may still be catching up). */
    int (*connected)(void *ctx);
    /* Sends a command on the command connection; argv strings are copied. Returns 0 (cb is
     * called exactly once, later, never from inside this call) or -ENOTCONN (cb is not called). */
    int (*command)(void *ctx, gw_redis_reply_cb cb, void *priv, int argc, const char **argv,
                   const size_t *argvlen);
    /* Runs script s (borrowed, must outlive the call's reply); argv: numkeys, keys, arguments
     * (copied). Returns and calls back as command. */
    int (*eval)(void *ctx, const gw_script_t *s, gw_redis_reply_cb cb, void *priv, int argc,
                const char **argv, const size_t *argvlen);
    /* Queues SUBSCRIBE (on = 1) or UNSUBSCRIBE (0) of a pub/sub channel (copied). The answer
     * arrives through the owner's on_subscription handler; a request made while the pub/sub
     * connection is down is dropped (the owner resubscribes on GW_BROKER_SUB_UP). */
    void (*subscribe)(void *ctx, const char *channel, size_t n, int on);
} gw_redis_t;

/* Calls through the table (r borrowed): the same contracts as its fields. */
static inline int gw_redis_connected(const gw_redis_t *r)
{
    return r->connected(r->ctx);
}
static inline int gw_redis_command(const gw_redis_t *r, gw_redis_reply_cb cb, void *priv, int argc,
                                   const char **argv, const size_t *argvlen)
{
    return r->command(r->ctx, cb, priv, argc, argv, argvlen);
}
static inline int gw_redis_eval(const gw_redis_t *r, const gw_script_t *s, gw_redis_reply_cb cb,
                                void *priv, int argc, const char **argv, const size_t *argvlen)
{
    return r->eval(r->ctx, s, cb, priv, argc, argv, argvlen);
}
static inline void gw_redis_subscribe(const gw_redis_t *r, const char *channel, size_t n, int on)
{
    r->subscribe(r->ctx, channel, n, on);
}

#endif
