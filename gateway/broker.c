/* broker.c — hiredis 0.14 async contexts on the node's libuv loop: our own small libuv adapter
 * (hiredis's ignores poll errors), reconnect with backoff and jitter, batched (un)subscribes, and
 * a canary PUBLISH/receive round trip that decides readiness and detects a wedged connection. */
#include "cardgw/broker.h"
#include "cardgw/common.h"
#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/schema.h"

#include <errno.h>
#include <hiredis/async.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>

#define GW_SUB_BATCH 256 /* channels per SUBSCRIBE/UNSUBSCRIBE command */

typedef struct gw_redis_conn {
    gw_broker_t *b;
    const char *name; /* "pubsub" or "command" */
    int is_sub;
    redisAsyncContext *ac; /* NULL while down */
    int connected;
    int attempt;      /* failed attempts since the last success */
    uv_timer_t timer; /* connect timeout, then reconnect backoff */
    uint64_t connected_ms;
    uint64_t rx_ms; /* last reply or message received: a busy Redis is not a wedged one */
    int waiting;    /* redis-sentinel://: connects once the sentinels named the master */
} gw_redis_conn_t;

typedef struct {
    int subscribe;
    char *channel;
    size_t n;
} gw_sub_op_t;

struct gw_broker {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    gw_redis_addr_t addr;
    gw_broker_handlers_t h;
    gw_redis_conn_t sub, cmd;
    int stopping;

    /* batched (un)subscribes */
    gw_sub_op_t *ops;
    size_t nops, capops;
    uv_timer_t flush_timer;

    /* canary */
    uv_timer_t canary_timer;
    char probe_channel[160];
    int probe_subscribed;
    uint64_t canary_seq;
    uint64_t canary_rx_ms; /* when the last canary came back; 0 = not since (re)connect */
    int ready;
    gw_redis_t redis;      /* what the other modules use (redis.h) */
    char name[16];         /* "" for the main Redis, "shard<i>" for a shard */
    char tag[20];          /* "" or "shard<i> ": in front of log lines */
    gw_hist_t *rtt;        /* command round trips (in gw_metrics) */
    uint64_t *ready_gauge; /* its readiness (in gw_metrics) */
    int main;              /* the main Redis: its state is what the global gauges show */

    /* redis-sentinel://: the master's address is asked of the sentinels, in the order given,
     * before the connections connect, and asked again whenever one of them goes down or the
     * command connection finds a replica there (ROLE) */
    struct {
        redisAsyncContext *ac; /* the sentinel being asked (NULL: none) */
        uv_timer_t timer;      /* its connect and answer timeout */
        int next;              /* the sentinel to ask next (the last that answered) */
        int tried;             /* sentinels that failed in this round */
        int asking;
        gw_log_limit_t log;
    } sent;
    int master_known;
};

/* ---- libuv adapter for hiredis --------------------------------------------------------------- */

typedef struct {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t poll;
    int events;
} gw_redis_io_t;

static void gw_io_on_poll(uv_poll_t *h, int status, int events)
{
    gw_redis_io_t *io = h->data;
    /* hiredis's adapter ignores status < 0, so a refused connect is never reported; we hand
     * errors to hiredis as readiness and let it find the socket error itself. */
    if (status < 0)
        events = UV_READABLE | UV_WRITABLE;
    if (io->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(io->ac);
    if (io->ac && (events & UV_READABLE))
        redisAsyncHandleRead(io->ac);
}

static void gw_io_update(gw_redis_io_t *io, int add, int ev)
{
    int nev = add ? (io->events | ev) : (io->events & ~ev);
    if (nev == io->events)
        return;
    io->events = nev;
    if (nev)
        uv_poll_start(&io->poll, nev, gw_io_on_poll);
    else
        uv_poll_stop(&io->poll);
}

static void gw_io_add_read(void *p)
{
    gw_io_update(p, 1, UV_READABLE);
}
static void gw_io_del_read(void *p)
{
    gw_io_update(p, 0, UV_READABLE);
}
static void gw_io_add_write(void *p)
{
    gw_io_update(p, 1, UV_WRITABLE);
}
static void gw_io_del_write(void *p)
{
    gw_io_update(p, 0, UV_WRITABLE);
}

static void gw_io_on_close(uv_handle_t *h)
{
    free(h->data);
}

/* hiredis calls this when it frees the context: the poll handle is libuv's until its close
 * callback runs, so it is freed there. */
static void gw_io_cleanup(void *p)
{
    gw_redis_io_t *io = p;
    io->ac = NULL;
    uv_poll_stop(&io->poll);
    uv_close((uv_handle_t *)&io->poll, gw_io_on_close);
}

static int gw_io_attach(uv_loop_t *loop, redisAsyncContext *ac)
{
    gw_redis_io_t *io = gw_calloc(1, sizeof(*io));
    if (uv_poll_init(loop, &io->poll, ac->c.fd) != 0) {
        free(io);
        return -EINVAL;
    }
    io->ac = ac;
    io->poll.data = io;
    ac->ev.addRead = gw_io_add_read;
    ac->ev.delRead = gw_io_del_read;
    ac->ev.addWrite = gw_io_add_write;
    ac->ev.delWrite = gw_io_del_write;
    ac->ev.cleanup = gw_io_cleanup;
    ac->ev.data = io;
    return 0;
}

/* ---- connection life cycle ------------------------------------------------------------------- */

static void gw_rconn_connect(gw_redis_conn_t *c);
static void gw_rconn_on_timer(uv_timer_t *t);
static void gw_flush_ops(uv_timer_t *t);
static void gw_broker_set_ready(gw_broker_t *b, int ready);
static void gw_on_sub_reply(redisAsyncContext *ac, void *r, void *priv);
static int gw_broker_command(void *ctx, gw_redis_reply_cb cb, void *priv, int argc,
                             const char **argv, const size_t *argvlen);
static int gw_broker_redis_connected(void *ctx);

static void gw_rconn_schedule_retry(gw_redis_conn_t *c)
{
    gw_broker_t *b = c->b;
    if (b->stopping)
        return;
    /* exponential backoff with jitter: a random delay in [d/2, d] */
    uint64_t d = (uint64_t)b->cfg->redis_backoff_min_ms << GW_MIN(c->attempt, 20);
    if (d > (uint64_t)b->cfg->redis_backoff_max_ms)
        d = (uint64_t)b->cfg->redis_backoff_max_ms;
    uint64_t delay = d / 2 + gw_random_u32() % (d / 2 + 1);
    c->attempt++;
    gw_debug("redis", "%s: reconnect in %" PRIu64 " ms (attempt %d)", c->name, delay, c->attempt);
    uv_timer_start(&c->timer, gw_rconn_on_timer, delay, 0);
}

static void gw_rconn_down(gw_redis_conn_t *c, const char *why)
{
    gw_broker_t *b = c->b;
    int was = c->connected;
    c->ac = NULL;
    c->connected = 0;
    b->master_known = 0; /* with sentinels: the master may have moved, ask again */
    if (c->is_sub) {
        if (b->main)
            gw_metrics.redis_connected_sub = 0;
        b->probe_subscribed = 0;
    } else if (b->main) {
        gw_metrics.redis_connected_cmd = 0;
    }
    if (!b->stopping)
        gw_log(was ? GW_LOG_WARN : GW_LOG_DEBUG, "redis", "%s%s connection to %s:%d down: %s",
               b->tag, c->name, b->addr.host, b->addr.port, why);
    gw_broker_set_ready(b, 0);
    if (c->is_sub && was && b->h.on_event)
        b->h.on_event(b->h.ud, GW_BROKER_SUB_DOWN);
    gw_rconn_schedule_retry(c);
}

static void gw_on_connect(const redisAsyncContext *ac, int status)
{
    gw_redis_conn_t *c = ac->data;
    if (c->ac != ac)
        return;
    if (status != REDIS_OK) {
        gw_rconn_down(c, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    gw_broker_t *b = c->b;
    uv_timer_stop(&c->timer);
    if (c->attempt > 0 || c->connected_ms)
        gw_metrics.redis_reconnects++;
    c->connected = 1;
    if (!b->addr.nsentinels || c->is_sub) /* with sentinels: once ROLE says master */
        c->attempt = 0;
    c->connected_ms = gw_now_ms();
    b->canary_rx_ms = 0;
    gw_info("redis", "%s%s connection to %s:%d up", b->tag, c->name, b->addr.host, b->addr.port);
    if (c->is_sub) {
        if (b->main)
            gw_metrics.redis_connected_sub = 1;
        redisAsyncCommand(c->ac, gw_on_sub_reply, b, "SUBSCRIBE %s", b->probe_channel);
        if (b->h.on_event)
            b->h.on_event(b->h.ud, GW_BROKER_SUB_UP);
    } else if (b->main) {
        gw_metrics.redis_connected_cmd = 1;
    }
}

static void gw_on_disconnect(const redisAsyncContext *ac, int status)
{
    gw_redis_conn_t *c = ac->data;
    if (c->ac != ac)
        return;
    gw_rconn_down(c, status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "error"));
}

static void gw_on_auth_reply(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    gw_redis_conn_t *c = priv;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        gw_err("redis", "%s: %s rejected: %.*s", c->name, c->is_sub ? "AUTH" : "AUTH/SELECT",
               (int)reply->len, reply->str);
        redisAsyncDisconnect(ac);
    }
}

/* ---- the master's address from Redis Sentinel ------------------------------------------------ */

static void gw_sentinel_try(gw_broker_t *b);

/* The answer is in (or every sentinel failed): the connections waiting for it go on. */
static void gw_sentinel_done(gw_broker_t *b, int found)
{
    gw_redis_conn_t *conns[] = {&b->sub, &b->cmd};
    uv_timer_stop(&b->sent.timer);
    b->sent.asking = 0;
    for (size_t i = 0; i < GW_ARRAY_SIZE(conns); i++) {
        if (!conns[i]->waiting)
            continue;
        conns[i]->waiting = 0;
        if (found)
            gw_rconn_connect(conns[i]);
        else
            gw_rconn_schedule_retry(conns[i]);
    }
}

/* The sentinel being asked failed (no connection, no answer, no such master): the next one. */
static void gw_sentinel_next(gw_broker_t *b, const char *why)
{
    int i = b->sent.next;
    gw_log_every(&b->sent.log, GW_LOG_EVERY_MS, GW_LOG_WARN, "redis", "sentinel %s:%d: %s",
                 b->addr.sentinels[i].host, b->addr.sentinels[i].port, why);
    b->sent.next = (i + 1) % b->addr.nsentinels;
    b->sent.tried++;
    gw_sentinel_try(b);
}

static void gw_sentinel_on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    gw_broker_t *b = priv;
    redisReply *reply = r;
    if (ac != b->sent.ac)
        return; /* an attempt given up already */
    b->sent.ac = NULL;
    redisAsyncDisconnect(ac);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING ||
        reply->element[0]->len >= sizeof(b->addr.host)) {
        gw_sentinel_next(b, reply && reply->type == REDIS_REPLY_NIL ? "does not know the master"
                                                                    : "no answer");
        return;
    }
    int port = atoi(reply->element[1]->str);
    if (strcmp(b->addr.host, reply->element[0]->str) != 0 || b->addr.port != port)
        gw_info("redis", "sentinel %s:%d: master %s is %s:%d", b->addr.sentinels[b->sent.next].host,
                b->addr.sentinels[b->sent.next].port, b->addr.master, reply->element[0]->str, port);
    memcpy(b->addr.host, reply->element[0]->str, reply->element[0]->len + 1);
    b->addr.port = port;
    b->master_known = 1;
    gw_sentinel_done(b, 1);
}

static void gw_sentinel_on_connect(const redisAsyncContext *ac, int status)
{
    gw_broker_t *b = ac->data;
    if (ac == b->sent.ac && status != REDIS_OK) {
        b->sent.ac = NULL; /* hiredis frees it */
        gw_sentinel_next(b, ac->errstr[0] ? ac->errstr : "connect failed");
    }
}

static void gw_sentinel_on_disconnect(const redisAsyncContext *ac, int status)
{
    gw_broker_t *b = ac->data;
    if (ac == b->sent.ac) { /* before it answered */
        b->sent.ac = NULL;
        gw_sentinel_next(b, "closed the connection");
    }
}

static void gw_sentinel_on_timeout(uv_timer_t *t)
{
    gw_broker_t *b = t->data;
    redisAsyncContext *ac = b->sent.ac;
    if (!ac || b->stopping)
        return;
    b->sent.ac = NULL; /* callbacks run by the free below see it is not the current one */
    redisAsyncFree(ac);
    gw_sentinel_next(b, "timeout");
}

/* Asks sentinel b->sent.next for the master's address; past the last one, the connections retry
 * after their backoff and the next round starts again from the first. */
static void gw_sentinel_try(gw_broker_t *b)
{
    if (b->stopping)
        return;
    if (b->sent.tried >= b->addr.nsentinels) { /* every one failed this round */
        b->sent.tried = 0;
        gw_sentinel_done(b, 0);
        return;
    }
    const char *host = b->addr.sentinels[b->sent.next].host;
    redisAsyncContext *ac = redisAsyncConnect(host, b->addr.sentinels[b->sent.next].port);
    if (!ac || ac->err || gw_io_attach(b->loop, ac) != 0) {
        if (ac)
            redisAsyncFree(ac);
        gw_sentinel_next(b, "connect failed");
        return;
    }
    ac->data = b;
    b->sent.ac = ac;
    redisAsyncSetConnectCallback(ac, gw_sentinel_on_connect);
    redisAsyncSetDisconnectCallback(ac, gw_sentinel_on_disconnect);
    redisAsyncCommand(ac, gw_sentinel_on_reply, b, "SENTINEL get-master-addr-by-name %s",
                      b->addr.master);
    uv_timer_start(&b->sent.timer, gw_sentinel_on_timeout,
                   (uint64_t)b->cfg->redis_connect_timeout_ms, 0);
}

/* The command connection's ROLE: a replica (the sentinels' answer was stale, or a failover
 * demoted it) is left, and the sentinels asked again. */
static void gw_on_role_reply(redisAsyncContext *ac, void *r, void *priv)
{
    gw_redis_conn_t *c = priv;
    redisReply *reply = r;
    if (ac != c->ac || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    gw_broker_t *b = c->b;
    if (strcmp(reply->element[0]->str, "master") == 0) {
        c->attempt = 0; /* only now is this a good connection */
        return;
    }
    gw_log_every(&b->sent.log, GW_LOG_EVERY_MS, GW_LOG_WARN, "redis",
                 "%s:%d is a %s, not master %s: asking another sentinel", b->addr.host,
                 b->addr.port, reply->element[0]->str, b->addr.master);
    b->master_known = 0;
    b->sent.next = (b->sent.next + 1) % b->addr.nsentinels; /* that one's answer was stale */
    redisAsyncDisconnect(ac);
}

static void gw_rconn_connect(gw_redis_conn_t *c)
{
    gw_broker_t *b = c->b;
    if (b->addr.nsentinels && !b->master_known) {
        c->waiting = 1;
        if (!b->sent.asking) {
            b->sent.asking = 1;
            b->sent.tried = 0;
            gw_sentinel_try(b);
        }
        return;
    }
    redisAsyncContext *ac = redisAsyncConnect(b->addr.host, b->addr.port);
    if (ac == NULL || ac->err) {
        gw_debug("redis", "%s: connect: %s", c->name, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        b->master_known = 0; /* with sentinels: the address may be stale, ask again */
        gw_rconn_schedule_retry(c);
        return;
    }
    if (gw_io_attach(b->loop, ac) != 0) {
        redisAsyncFree(ac);
        b->master_known = 0;
        gw_rconn_schedule_retry(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    redisAsyncSetConnectCallback(ac, gw_on_connect);
    redisAsyncSetDisconnectCallback(ac, gw_on_disconnect);
    /* queued now, written as soon as the socket connects */
    if (b->addr.user[0]) /* a Redis 6 ACL user (hiredis 0.14 has no helper: a plain command) */
        redisAsyncCommand(ac, gw_on_auth_reply, c, "AUTH %s %s", b->addr.user, b->addr.password);
    else if (b->addr.password[0])
        redisAsyncCommand(ac, gw_on_auth_reply, c, "AUTH %s", b->addr.password);
    if (!c->is_sub && b->addr.db)
        redisAsyncCommand(ac, gw_on_auth_reply, c, "SELECT %d", b->addr.db);
    if (!c->is_sub && b->addr.nsentinels)
        redisAsyncCommand(ac, gw_on_role_reply, c, "ROLE");
    uv_timer_start(&c->timer, gw_rconn_on_timer, (uint64_t)b->cfg->redis_connect_timeout_ms, 0);
}

/* One timer per connection: while connecting it is the connect timeout; while down, the
 * backoff before the next attempt. */
static void gw_rconn_on_timer(uv_timer_t *t)
{
    gw_redis_conn_t *c = t->data;
    if (c->b->stopping)
        return;
    if (c->ac && !c->connected) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL; /* callbacks run by the free below must not use it */
        redisAsyncFree(ac);
        gw_rconn_down(c, "connect timeout");
        return;
    }
    if (!c->ac)
        gw_rconn_connect(c);
}

/* Drops a connection that looks up but does not answer; hiredis fails its pending callbacks. */
static void gw_rconn_force_reconnect(gw_redis_conn_t *c)
{
    if (c->ac && c->connected)
        redisAsyncDisconnect(c->ac);
}

/* ---- pub/sub --------------------------------------------------------------------------------- */

static void gw_on_sub_reply(redisAsyncContext *ac, void *r, void *priv)
{
    gw_broker_t *b = priv;
    redisReply *reply = r;
    if (reply)
        b->sub.rx_ms = gw_now_ms();
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
        return;
    redisReply *kind = reply->element[0], *ch = reply->element[1], *arg = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING)
        return;
    int is_probe =
        ch->len == strlen(b->probe_channel) && memcmp(ch->str, b->probe_channel, ch->len) == 0;
    if (strcmp(kind->str, "message") == 0 && arg->type == REDIS_REPLY_STRING) {
        if (is_probe) {
            b->canary_rx_ms = gw_now_ms();
            gw_broker_set_ready(b, b->cmd.connected && b->sub.connected);
        } else if (b->h.on_message) {
            b->h.on_message(b->h.ud, ch->str, ch->len, arg->str, arg->len);
        }
    } else if (strcmp(kind->str, "subscribe") == 0 || strcmp(kind->str, "unsubscribe") == 0) {
        int sub = kind->str[0] == 's';
        if (is_probe)
            b->probe_subscribed = sub;
        else if (b->h.on_subscription)
            b->h.on_subscription(b->h.ud, ch->str, ch->len, sub);
    }
}

static void gw_queue_op(gw_broker_t *b, int subscribe, const char *ch, size_t n)
{
    if (!b->sub.connected || b->stopping)
        return;
    if (b->nops == b->capops) {
        b->capops = b->capops ? b->capops * 2 : 64;
        b->ops = gw_realloc(b->ops, b->capops * sizeof(*b->ops));
    }
    b->ops[b->nops++] = (gw_sub_op_t){subscribe, gw_strndup(ch, n), n};
    if (!uv_is_active((uv_handle_t *)&b->flush_timer))
        uv_timer_start(&b->flush_timer, gw_flush_ops, 0, 0);
}

static void gw_broker_subscribe(void *ctx, const char *channel, size_t n, int on)
{
    gw_queue_op(ctx, on, channel, n);
}

static void gw_clear_ops(gw_broker_t *b)
{
    for (size_t i = 0; i < b->nops; i++)
        free(b->ops[i].channel);
    b->nops = 0;
}

/* Sends the queued requests: each run of the same kind becomes commands of up to GW_SUB_BATCH
 * channels, all pipelined in one write. */
static void gw_flush_ops(uv_timer_t *t)
{
    gw_broker_t *b = t->data;
    const char *argv[GW_SUB_BATCH + 1];
    size_t argvlen[GW_SUB_BATCH + 1];
    size_t i = 0;
    while (b->sub.connected && i < b->nops) {
        int sub = b->ops[i].subscribe;
        int argc = 0;
        argv[argc] = sub ? "SUBSCRIBE" : "UNSUBSCRIBE";
        argvlen[argc++] = strlen(argv[0]);
        while (i < b->nops && b->ops[i].subscribe == sub && argc <= GW_SUB_BATCH) {
            argv[argc] = b->ops[i].channel;
            argvlen[argc++] = b->ops[i].n;
            i++;
        }
        redisAsyncCommandArgv(b->sub.ac, gw_on_sub_reply, b, argc, argv, argvlen);
    }
    gw_clear_ops(b);
}

/* ---- canary and readiness -------------------------------------------------------------------- */

static void gw_broker_set_ready(gw_broker_t *b, int ready)
{
    if (b->ready == ready)
        return;
    b->ready = ready;
    *b->ready_gauge = (uint64_t)ready;
    if (b->main)
        gw_metrics.redis_ready = (uint64_t)ready;
    gw_log(ready ? GW_LOG_INFO : GW_LOG_WARN, "redis", "%srelay %s", b->tag,
           ready ? "ready" : "not ready");
    if (b->h.on_event)
        b->h.on_event(b->h.ud, ready ? GW_BROKER_READY : GW_BROKER_NOT_READY);
}

static void gw_on_canary_reply(void *priv, redisReply *reply)
{
    (void)priv;
    (void)reply; /* the answer that matters arrives on the pub/sub connection */
}

static void gw_canary_tick(uv_timer_t *t)
{
    gw_broker_t *b = t->data;
    uint64_t now = gw_now_ms(), iv = (uint64_t)b->cfg->redis_canary_interval_ms;
    if (!b->sub.connected || !b->cmd.connected)
        return;
    /* readiness lapses when the canary has not come back for three intervals */
    if (b->ready && now - b->canary_rx_ms > 3 * iv)
        gw_broker_set_ready(b, 0);
    /* wedged: a connection that received nothing at all (the canary is sent every interval,
     * so a live one always gets something) for the command timeout */
    uint64_t to = (uint64_t)b->cfg->redis_command_timeout_ms;
    gw_redis_conn_t *conns[2] = {&b->sub, &b->cmd};
    for (int i = 0; i < 2; i++) {
        gw_redis_conn_t *c = conns[i];
        uint64_t since = GW_MAX(c->rx_ms, c->connected_ms);
        if (now - since > to) {
            gw_warn("redis", "%s connection silent for %" PRIu64 " ms: reconnecting", c->name,
                    now - since);
            gw_rconn_force_reconnect(c);
            return;
        }
    }
    if (!b->probe_subscribed)
        return;
    char seq[32];
    snprintf(seq, sizeof(seq), "%" PRIu64, ++b->canary_seq);
    const char *argv[] = {"PUBLISH", b->probe_channel, seq};
    size_t argvlen[] = {7, strlen(b->probe_channel), strlen(seq)};
    gw_broker_command(b, gw_on_canary_reply, NULL, 3, argv, argvlen);
}

/* ---- commands -------------------------------------------------------------------------------- */

typedef struct {
    gw_redis_reply_cb cb;
    void *priv;
    uint64_t sent_us; /* for the round-trip histogram */
} gw_cmd_ctx_t;

static void gw_on_cmd_reply(redisAsyncContext *ac, void *r, void *priv)
{
    gw_cmd_ctx_t *x = priv;
    gw_redis_conn_t *c = ac->data;
    if (r && c) {
        c->rx_ms = gw_now_ms();
        gw_hist_since(c->b->rtt, x->sent_us);
    }
    x->cb(x->priv, r);
    free(x);
}

static int gw_broker_command(void *ctx, gw_redis_reply_cb cb, void *priv, int argc,
                             const char **argv, const size_t *argvlen)
{
    gw_broker_t *b = ctx;
    if (!b->cmd.connected || b->stopping)
        return -ENOTCONN;
    gw_cmd_ctx_t *x = gw_malloc(sizeof(*x));
    x->cb = cb;
    x->priv = priv;
    x->sent_us = gw_now_us();
    if (redisAsyncCommandArgv(b->cmd.ac, gw_on_cmd_reply, x, argc, argv, argvlen) != REDIS_OK) {
        free(x);
        return -ENOTCONN;
    }
    return 0;
}

/* ---- scripts --------------------------------------------------------------------------------- */

void gw_script_init(gw_script_t *s, const char *src)
{
    uint8_t md[SHA_DIGEST_LENGTH];
    s->src = src;
    SHA1((const uint8_t *)src, strlen(src), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
}

typedef struct {
    gw_broker_t *b;
    const gw_script_t *script;
    gw_redis_reply_cb cb;
    void *priv;
    int retried;
    int argc;
    char **argv; /* [0] EVALSHA/EVAL, [1] sha/source, then the caller's */
    size_t *argvlen;
} gw_eval_op_t;

static void gw_eval_op_free(gw_eval_op_t *op)
{
    for (int i = 2; i < op->argc; i++)
        free(op->argv[i]);
    free(op->argv);
    free(op->argvlen);
    free(op);
}

static void gw_on_eval_reply(void *priv, redisReply *r)
{
    gw_eval_op_t *op = priv;
    if (r && r->type == REDIS_REPLY_ERROR && !op->retried && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        op->retried = 1;
        op->argv[0] = "EVAL";
        op->argvlen[0] = 4;
        op->argv[1] = (char *)op->script->src;
        op->argvlen[1] = strlen(op->script->src);
        if (gw_broker_command(op->b, gw_on_eval_reply, op, op->argc, (const char **)op->argv,
                              op->argvlen) == 0)
            return;
        r = NULL;
    }
    if (r && r->type == REDIS_REPLY_ERROR)
        gw_warn("redis", "script %.8s failed: %s", op->script->sha, r->str);
    op->cb(op->priv, r);
    gw_eval_op_free(op);
}

static int gw_broker_eval(void *ctx, const gw_script_t *s, gw_redis_reply_cb cb, void *priv,
                          int argc, const char **argv, const size_t *argvlen)
{
    gw_broker_t *b = ctx;
    gw_eval_op_t *op = gw_calloc(1, sizeof(*op));
    op->b = b;
    op->script = s;
    op->cb = cb;
    op->priv = priv;
    op->argc = argc + 2;
    op->argv = gw_malloc((size_t)op->argc * sizeof(*op->argv));
    op->argvlen = gw_malloc((size_t)op->argc * sizeof(*op->argvlen));
    op->argv[0] = "EVALSHA";
    op->argvlen[0] = 7;
    op->argv[1] = (char *)s->sha;
    op->argvlen[1] = 40;
    for (int i = 0; i < argc; i++) {
        op->argv[i + 2] = gw_strndup(argv[i], argvlen[i]);
        op->argvlen[i + 2] = argvlen[i];
    }
    if (gw_broker_command(b, gw_on_eval_reply, op, op->argc, (const char **)op->argv,
                          op->argvlen) != 0) {
        gw_eval_op_free(op);
        return -ENOTCONN;
    }
    return 0;
}

/* ---- construction and teardown --------------------------------------------------------------- */

static void gw_rconn_init(gw_broker_t *b, gw_redis_conn_t *c, int is_sub)
{
    c->b = b;
    c->is_sub = is_sub;
    c->name = is_sub ? "pubsub" : "command";
    uv_timer_init(b->loop, &c->timer);
    c->timer.data = c;
}

gw_broker_t *gw_broker_new(uv_loop_t *loop, const gw_config_t *cfg, const char *url,
                           const char *name, const char *node_id, const gw_broker_handlers_t *h,
                           uint32_t slot, char *err, size_t errlen)
{
    gw_broker_t *b = gw_calloc(1, sizeof(*b));
    if (gw_config_parse_redis_url(url, &b->addr) != 0) {
        snprintf(err, errlen, "bad Redis URL (not shown: it may hold a password)");
        goto fail;
    }
    if (!b->addr.password[0] && cfg->redis_password && cfg->redis_password[0])
        snprintf(b->addr.password, sizeof(b->addr.password), "%s", cfg->redis_password);
    snprintf(b->name, sizeof(b->name), "%s", name ? name : "");
    snprintf(b->tag, sizeof(b->tag), "%s%s", b->name, name ? " " : "");
    b->main = name == NULL;
    slot = GW_MIN(slot, GW_MAX_SHARDS);
    b->rtt = &gw_metrics.redis_rtt[slot];
    b->ready_gauge = &gw_metrics.redis_slot_ready[slot];
    b->loop = loop;
    b->cfg = cfg;
    b->h = *h;
    b->redis = (gw_redis_t){.ctx = b,
                            .connected = gw_broker_redis_connected,
                            .command = gw_broker_command,
                            .eval = gw_broker_eval,
                            .subscribe = gw_broker_subscribe};
    gw_schema_probe_channel(b->probe_channel, sizeof(b->probe_channel), node_id);
    gw_rconn_init(b, &b->sub, 1);
    gw_rconn_init(b, &b->cmd, 0);
    uv_timer_init(loop, &b->flush_timer);
    b->flush_timer.data = b;
    uv_timer_init(loop, &b->canary_timer);
    b->canary_timer.data = b;
    uv_timer_init(loop, &b->sent.timer);
    b->sent.timer.data = b;
    return b;
fail:
    free(b);
    return NULL;
}

void gw_broker_start(gw_broker_t *b)
{
    uint64_t iv = (uint64_t)b->cfg->redis_canary_interval_ms;
    gw_rconn_connect(&b->sub);
    gw_rconn_connect(&b->cmd);
    uv_timer_start(&b->canary_timer, gw_canary_tick, iv, iv);
}

static void gw_rconn_stop(gw_redis_conn_t *c)
{
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, NULL);
    if (c->ac) {
        /* Not inside a hiredis callback (the node stops after uv_run returns), so freeing is
         * allowed; pending callbacks run with NULL. A graceful disconnect would wait forever
         * on a wedged server. */
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->connected = 0;
        redisAsyncFree(ac);
    }
}

void gw_broker_stop(gw_broker_t *b)
{
    if (b->stopping)
        return;
    b->stopping = 1;
    gw_clear_ops(b);
    uv_close((uv_handle_t *)&b->flush_timer, NULL);
    uv_close((uv_handle_t *)&b->canary_timer, NULL);
    uv_close((uv_handle_t *)&b->sent.timer, NULL);
    if (b->sent.ac) {
        redisAsyncContext *ac = b->sent.ac;
        b->sent.ac = NULL;
        redisAsyncFree(ac);
    }
    gw_rconn_stop(&b->sub);
    gw_rconn_stop(&b->cmd);
}

void gw_broker_free(gw_broker_t *b)
{
    if (!b)
        return;
    gw_clear_ops(b);
    free(b->ops);
    free(b);
}

const char *gw_broker_name(const gw_broker_t *b)
{
    return b->name;
}

int gw_broker_ready(const gw_broker_t *b)
{
    return b->ready;
}

int gw_broker_connected(const gw_broker_t *b)
{
    return b->sub.connected && b->cmd.connected && !b->stopping;
}

static int gw_broker_redis_connected(void *ctx)
{
    return gw_broker_connected(ctx);
}

const gw_redis_t *gw_broker_redis(gw_broker_t *b)
{
    return &b->redis;
}
