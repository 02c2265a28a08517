/* node.c — assembles a node (hub, broker, lws server on one libuv loop), and stops it
 * gracefully: stop listening, close every connection with 1001, free everything. */
#include "cardgw/static.h"
#include "cardgw/node.h"
#include "cardgw/admission.h"
#include "cardgw/api.h"
#include "cardgw/conn.h"
#include "cardgw/hub.h"
#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/online.h"
#include "cardgw/registry.h"
#include "cardgw/server.h"
#include "cardgw/watchdog.h"

#include <errno.h>
#include <inttypes.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#define GW_SWEEP_MS 500
#define GW_LAG_MS   100
static void gw_node_sweep(uv_timer_t *t);

/* Event-loop lag: a one-shot timer armed for GW_LAG_MS after the loop's time; how much later
 * than that it runs (uv_hrtime, the clock libuv's loop time is read from) is what every callback
 * waiting behind the loop's current work waits too (cardgw_loop_lag_seconds). */
static void gw_node_lag_arm(gw_node_t *node);
static void gw_node_lag_tick(uv_timer_t *t)
{
    gw_node_t *node = t->data;
    uint64_t now = uv_hrtime() / 1000;
    gw_hist_observe(&gw_metrics.loop_lag, now > node->lag_due_us ? now - node->lag_due_us : 0);
    gw_node_lag_arm(node);
}

static void gw_node_lag_arm(gw_node_t *node)
{
    node->lag_due_us = (uv_now(node->loop) + GW_LAG_MS) * 1000;
    uv_timer_start(&node->lag_timer, gw_node_lag_tick, GW_LAG_MS, 0);
}

static void gw_node_on_signal(uv_signal_t *h, int signum)
{
    gw_node_t *node = h->data;
    if (node->stopping) {
        gw_warn("node", "second signal %d: stopping now", signum);
        uv_stop(node->loop);
        return;
    }
    gw_info("node", "signal %d: shutting down", signum);
    gw_node_stop(node);
}

/* SIGHUP: reload what can change without a restart (gw_node_reload). */
static void gw_node_on_reload_signal(uv_signal_t *h, int signum)
{
    gw_info("node", "signal %d: reloading", signum);
    gw_node_reload(h->data);
}

int gw_node_reload(gw_node_t *node)
{
    int rc = 0, r;
    if (node->stopping)
        return 0;
    /* one line per reloadable part; each logs what it did or why it kept the old state */
    if ((r = gw_server_reload(node)) != 0 && !rc)
        rc = r;
    return rc;
}

/* debug_hooks only: SIGUSR2 blocks the loop for good, as a library bug would (watchdog test). */
static void gw_node_on_stall_signal(uv_signal_t *h, int signum)
{
    gw_warn("node", "debug hook: signal %d stalls the event loop on purpose", signum);
    for (;;)
        sleep(1);
}

/* Resolves the "auto" caps against the open-file limit: the node keeps 128 descriptors for
 * Redis, logs and HTTP, and no single address may hold more than a tenth of them. */
static void gw_node_limits(gw_node_t *node)
{
    const gw_config_t *cfg = node->cfg;
    struct rlimit rl;
    uint64_t fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                       ? (uint64_t)rl.rlim_cur
                       : 1048576;
    node->fd_limit = (uint32_t)GW_MIN(fds, UINT32_MAX);
    gw_metrics.fd_limit = node->fd_limit;
    node->max_connections = cfg->max_connections >= 0 ? (uint32_t)cfg->max_connections
                            : node->fd_limit > 256    ? node->fd_limit - 128
                                                      : node->fd_limit / 2;
    node->max_per_ip = cfg->max_connections_per_ip >= 0 ? (uint32_t)cfg->max_connections_per_ip
                                                        : GW_MAX(node->fd_limit / 10, 16);
    node->admission =
        gw_admission_new(node->max_per_ip, (uint32_t)cfg->max_new_connections_per_ip_per_s,
                         (uint32_t)cfg->max_connections_per_user);
    gw_info("node",
            "limits: open files %u, max_connections %u, per IP %u open and %d new per s, per user "
            "%d (0 = none)",
            node->fd_limit, node->max_connections, node->max_per_ip,
            cfg->max_new_connections_per_ip_per_s, cfg->max_connections_per_user);
}

/* What a broker reports goes to the hub (created after the brokers, which it uses). */
static void gw_node_on_message(void *ud, const char *ch, size_t chlen, const char *p, size_t n)
{
    struct gw_broker_slot *slot = ud;
    if (slot->node->hub)
        gw_hub_on_message(slot->node->hub, slot->shard, ch, chlen, p, n);
}

static void gw_node_on_subscription(void *ud, const char *ch, size_t chlen, int subscribed)
{
    struct gw_broker_slot *slot = ud;
    if (slot->node->hub)
        gw_hub_on_subscription(slot->node->hub, slot->shard, ch, chlen, subscribed);
}

static void gw_node_on_event(void *ud, gw_broker_event_t ev)
{
    struct gw_broker_slot *slot = ud;
    /* the main Redis relays again after a (re)connect: it may have lost this node's users */
    if (ev == GW_BROKER_READY && slot == &slot->node->slots[0] && slot->node->online)
        gw_online_redis_ready(slot->node->online);
    if (slot->node->hub)
        gw_hub_on_event(slot->node->hub, slot->shard, ev);
}

int gw_node_redis_ready(const gw_node_t *node, char *why, size_t cap)
{
    size_t w = 0;
    why[0] = '\0';
    for (uint32_t i = 0; i <= node->nshards; i++) {
        const gw_broker_t *b = i ? node->shard_brokers[i - 1] : node->broker;
        if (b && gw_broker_ready(b))
            continue;
        int k = snprintf(why + w, cap - w, "%s%s", w ? ", " : "",
                         i ? gw_broker_name(node->shard_brokers[i - 1]) : "main");
        w = k < 0 ? w : GW_MIN(w + (size_t)k, cap - 1);
    }
    return why[0] == '\0';
}

/* The main broker, then one per redis_shards URL, then the hub that uses them. */
static int gw_node_brokers(gw_node_t *node, uv_loop_t *loop, const gw_config_t *cfg)
{
    char err[256], name[16];
    char(*urls)[GW_URL_MAX] = gw_malloc(GW_MAX_SHARDS * GW_URL_MAX);
    const gw_redis_t *shards[GW_MAX_SHARDS];
    int n = gw_config_shard_urls(cfg, urls);
    node->nshards = n > 0 ? (uint32_t)n : 0;
    gw_metrics.nshards = node->nshards;
    node->slots[0] = (struct gw_broker_slot){node, n > 0 ? -1 : 0};
    gw_broker_handlers_t h = {gw_node_on_message, gw_node_on_subscription, gw_node_on_event,
                              &node->slots[0]};
    node->broker =
        gw_broker_new(loop, cfg, cfg->redis_url, NULL, node->node_id, &h, 0, err, sizeof(err));
    for (uint32_t i = 0; node->broker && i < node->nshards; i++) {
        node->slots[i + 1] = (struct gw_broker_slot){node, (int)i};
        h.ud = &node->slots[i + 1];
        snprintf(name, sizeof(name), "shard%u", i);
        node->shard_brokers[i] =
            gw_broker_new(loop, cfg, urls[i], name, node->node_id, &h, i + 1, err, sizeof(err));
        if (!node->shard_brokers[i])
            break;
        shards[i] = gw_broker_redis(node->shard_brokers[i]);
    }
    free(urls);
    if (!node->broker || (node->nshards && !node->shard_brokers[node->nshards - 1])) {
        snprintf(node->errstr, sizeof(node->errstr), "%s", err);
        return -EINVAL;
    }
    node->redis = gw_broker_redis(node->broker);
    node->hub = gw_hub_new(node, node->redis, shards, node->nshards);
    if (node->nshards)
        gw_info("node", "channels spread over %u Redis shards (redis_shards)", node->nshards);
    return 0;
}

static void gw_node_on_deadline(uv_timer_t *t)
{
    gw_node_t *node = t->data;
    gw_warn("node", "shutdown deadline: %" PRIu64 " connections still open", node->nconns);
    uv_stop(node->loop);
}

int gw_node_start(gw_node_t *node, uv_loop_t *loop, const gw_config_t *cfg)
{
    memset(node, 0, sizeof(*node));
    node->loop = loop;
    node->cfg = cfg;
    gw_list_init(&node->conns);
    node->listen_fd = node->admin_fd = -1;
    gw_random_hex(node->instance, 4);
    if (cfg->node_id[0]) {
        snprintf(node->node_id, sizeof(node->node_id), "%s", cfg->node_id);
    } else {
        char host[64] = "node", rnd[9];
        gethostname(host, sizeof(host) - 1);
        gw_random_hex(rnd, 4);
        snprintf(node->node_id, sizeof(node->node_id), "%s-%d-%s", host, (int)getpid(), rnd);
    }
    uv_signal_init(loop, &node->sigint);
    uv_signal_init(loop, &node->sigterm);
    uv_timer_init(loop, &node->stop_timer);
    uv_timer_init(loop, &node->drain_timer);
    uv_timer_init(loop, &node->unready_timer);
    node->unready_timer.data = node;
    gw_list_init(&node->flushq);
    uv_prepare_init(loop, &node->flush_prepare);
    uv_timer_init(loop, &node->flush_timer);
    node->flush_prepare.data = node->flush_timer.data = node;
    uv_timer_init(loop, &node->sweep_timer);
    node->sweep_timer.data = node;
    uv_timer_start(&node->sweep_timer, gw_node_sweep, GW_SWEEP_MS, GW_SWEEP_MS);
    uv_timer_init(loop, &node->lag_timer);
    node->lag_timer.data = node;
    node->sigint.data = node->sigterm.data = node->stop_timer.data = node->drain_timer.data = node;
    uv_signal_start(&node->sigint, gw_node_on_signal, SIGINT);
    uv_signal_start(&node->sigterm, gw_node_on_signal, SIGTERM);
    uv_signal_init(loop, &node->sighup);
    node->sighup.data = node;
    uv_signal_start(&node->sighup, gw_node_on_reload_signal, SIGHUP);
    uv_signal_init(loop, &node->sigusr2);
    if (cfg->debug_hooks)
        uv_signal_start(&node->sigusr2, gw_node_on_stall_signal, SIGUSR2);
    uv_timer_init(loop, &node->accept_timer);
    node->accept_timer.data = node;
    gw_list_init(&node->http_peers);
    gw_node_limits(node);

    if (cfg->static_root[0]) {
        size_t bytes;
        node->statics = gw_static_load(cfg->static_root, node->errstr, sizeof(node->errstr));
        if (!node->statics)
            return -EINVAL;
        size_t n = gw_static_count(node->statics, &bytes);
        gw_info("node", "serving %zu static files (%zu bytes) from %s", n, bytes, cfg->static_root);
    }
    int rc = gw_node_brokers(node, loop, cfg);
    if (rc)
        return rc;
    /* online first: a node restarted with a fixed node_id clears its old users before its
     * registry entry makes that hash count again (both first write 200 ms from now) */
    node->online = gw_online_new(node);
    node->registry = gw_registry_new(node);
    if ((rc = gw_api_start(node)) != 0)
        return rc;
    rc = gw_server_start(node);
    if (rc)
        return rc;
    gw_broker_start(node->broker);
    for (uint32_t i = 0; i < node->nshards; i++)
        gw_broker_start(node->shard_brokers[i]);
    /* armed last: the loop runs right after this returns */
    node->watchdog = gw_watchdog_start(loop, (uint32_t)cfg->loop_stall_timeout_ms);
    uv_update_time(loop); /* what start took is not the loop's lag */
    gw_node_lag_arm(node);
    return 0;
}

#define GW_DRAIN_TICK_MS 50

/* Runs before the loop polls again (or flush_window_ms after the first frame was queued): every
 * connection that got frames since (from Redis messages, replies, timers) is written now, all its
 * frames in one write. */
static void gw_node_flush(gw_node_t *node)
{
    gw_hub_replay(node->hub); /* held commands whose subscribe was answered this turn */
    gw_conn_flush_queued(node);
}

static void gw_node_on_prepare(uv_prepare_t *p)
{
    gw_node_flush(p->data);
    uv_prepare_stop(p);
}

static void gw_node_on_flush_timer(uv_timer_t *t)
{
    gw_node_flush(t->data);
}

void gw_node_flush_soon(gw_node_t *node)
{
    int window = node->cfg->flush_window_ms;
    if (window > 0 && !node->draining) {
        if (!uv_is_active((uv_handle_t *)&node->flush_timer))
            uv_timer_start(&node->flush_timer, gw_node_on_flush_timer, (uint64_t)window, 0);
    } else if (!uv_is_active((uv_handle_t *)&node->flush_prepare)) {
        uv_prepare_start(&node->flush_prepare, gw_node_on_prepare);
    }
}

void gw_node_foreach_user_conn(gw_node_t *node, const char *uid, size_t n,
                               void (*fn)(gw_conn_t *c, void *ud), void *ud)
{
    gw_list_t *it, *tmp;
    gw_list_foreach_safe(it, tmp, &node->conns)
    {
        gw_conn_t *c = gw_container_of(it, gw_conn_t, link);
        if (c->uid && strlen(c->uid) == n && memcmp(c->uid, uid, n) == 0)
            fn(c, ud);
    }
}

static void gw_node_on_left(void *priv)
{
    gw_node_t *node = priv;
    uv_stop(node->loop);
}

/* Every connection of a draining node is closed: its users' entry goes from Redis (so they are
 * offline now, not when it would expire), then the loop stops. */
static void gw_node_finish(gw_node_t *node)
{
    if (node->finishing)
        return;
    node->finishing = 1;
    if (gw_online_leave(node->online, gw_node_on_left, node) != 0)
        uv_stop(node->loop); /* Redis is down: the entry expires on its own */
}

void gw_node_conn_gone(gw_node_t *node)
{
    if (node->draining && node->nconns == 0)
        gw_node_finish(node);
}

static void gw_node_sweep(uv_timer_t *t)
{
    gw_node_t *node = t->data;
    uint64_t now = gw_now_ms(), wall = gw_wall_ms();
    gw_list_t *it, *tmp;
    gw_list_foreach_safe(it, tmp, &node->conns)
    {
        gw_conn_sweep(gw_container_of(it, gw_conn_t, link), now, wall);
    }
    gw_server_sweep(node, now);
    if (++node->sweeps % 20 == 0) /* every 10 s */
        gw_admission_sweep(node->admission, now);
    if (node->sweeps % 2 == 0) /* every second: a rotated api_keys_file */
        gw_api_tick(node);
}

/* Closes the next batch of connections; the list shrinks as their close callbacks run. */
static void gw_node_drain_tick(uv_timer_t *t)
{
    gw_node_t *node = t->data;
    uint64_t n = 0;
    gw_list_t *it;
    gw_list_foreach(it, &node->conns)
    {
        gw_conn_t *c = gw_container_of(it, gw_conn_t, link);
        if (c->close_code)
            continue;
        gw_conn_close(c, 1001, 0);
        if (++n == node->drain_per_tick)
            return;
    }
    uv_timer_stop(t);
}

/* Phase 2 of a stop: stop listening and close every connection with reconnect advice. */
static void gw_node_drain(gw_node_t *node)
{
    node->draining = 1;
    gw_server_stop_listening(node);
    if (node->nconns == 0) {
        gw_node_finish(node);
        return;
    }
    uint32_t window = (uint32_t)node->cfg->drain_window_ms;
    gw_list_t *it;
    gw_list_foreach(it, &node->conns)
    {
        gw_conn_t *c = gw_container_of(it, gw_conn_t, link);
        GW_CONN_SEND(c, gw_proto_enc_disconnect, GW_CLOSE_SHUTDOWN, "node shutting down", 1,
                     window ? gw_random_u32() % window : 0);
    }
    uint64_t ticks = window / GW_DRAIN_TICK_MS + 1;
    node->drain_per_tick = (node->nconns + ticks - 1) / ticks;
    gw_info("node", "draining %" PRIu64 " connections over %u ms", node->nconns, window);
    uv_timer_start(&node->drain_timer, gw_node_drain_tick, 0, GW_DRAIN_TICK_MS);
}

static void gw_node_on_unready_done(uv_timer_t *t)
{
    gw_node_drain(t->data);
}

void gw_node_stop(gw_node_t *node)
{
    if (node->stopping)
        return;
    node->stopping = 1;
    gw_registry_leave(node->registry);
    uv_timer_start(&node->stop_timer, gw_node_on_deadline, (uint64_t)node->cfg->shutdown_timeout_ms,
                   0);
    int unready = node->cfg->drain_unready_ms;
    if (unready <= 0) {
        gw_node_drain(node);
        return;
    }
    gw_info("node", "/readyz answers 503 for %d ms before the drain (drain_unready_ms)", unready);
    uv_timer_start(&node->unready_timer, gw_node_on_unready_done, (uint64_t)unready, 0);
}

/* Runs the close callbacks due now, without waiting for timers: between its two destroys lws
 * 4.1 can keep a timer armed whose callback, once fired, reads the half-destroyed context (a
 * SEGV seen when the shutdown deadline passed with connections open). */
static void gw_node_run_closes(uv_loop_t *loop)
{
    for (int i = 0; i < 1000 && uv_run(loop, UV_RUN_NOWAIT) != 0; i++)
        ;
}

/* A handle still open after every module closed its own is a bug: say which, and close it. */
static void gw_node_close_leftover(uv_handle_t *h, void *arg)
{
    if (uv_is_closing(h))
        return;
    (*(int *)arg)++;
    gw_warn("node", "a %s handle was left open at shutdown: closing it",
            uv_handle_type_name(h->type));
    uv_close(h, NULL);
}

int gw_node_destroy(gw_node_t *node)
{
    int leftovers = 0;
    gw_watchdog_stop(node->watchdog); /* what follows only closes handles */
    node->watchdog = NULL;
    gw_server_stop_listening(node);
    gw_server_close(node);
    gw_hub_stop(node->hub);
    gw_registry_free(node->registry);
    node->registry = NULL;
    gw_online_stop(node->online);
    if (node->broker)
        gw_broker_stop(node->broker);
    for (uint32_t i = 0; i < node->nshards; i++)
        if (node->shard_brokers[i])
            gw_broker_stop(node->shard_brokers[i]);
    if (node->lws)
        lws_context_destroy(node->lws);
    uv_close((uv_handle_t *)&node->sigint, NULL);
    uv_close((uv_handle_t *)&node->sigterm, NULL);
    uv_close((uv_handle_t *)&node->sighup, NULL);
    uv_close((uv_handle_t *)&node->stop_timer, NULL);
    uv_close((uv_handle_t *)&node->drain_timer, NULL);
    uv_close((uv_handle_t *)&node->unready_timer, NULL);
    uv_close((uv_handle_t *)&node->sweep_timer, NULL);
    uv_close((uv_handle_t *)&node->lag_timer, NULL);
    uv_close((uv_handle_t *)&node->flush_prepare, NULL);
    uv_close((uv_handle_t *)&node->flush_timer, NULL);
    uv_close((uv_handle_t *)&node->accept_timer, NULL);
    uv_close((uv_handle_t *)&node->sigusr2, NULL);
    gw_node_run_closes(node->loop);
    /* lws on a foreign loop finishes destroying the context only after its handles closed:
     * a second destroy frees what is left (PLATFORM-NOTES) */
    if (node->lws) {
        lws_context_destroy(node->lws);
        gw_node_run_closes(node->loop);
    }
    /* libuv's teardown: close what is left, then run until no handle remains (only close
     * callbacks are due by then: the node starts no other requests) */
    uv_walk(node->loop, gw_node_close_leftover, &leftovers);
    uv_run(node->loop, UV_RUN_DEFAULT);
    gw_hub_free(node->hub); /* before the broker: the hub borrows its Redis interface */
    node->hub = NULL;
    gw_online_free(node->online); /* no connection left to count, no reply left to come */
    node->online = NULL;
    gw_static_free(node->statics);
    node->statics = NULL;
    gw_api_stop(node);
    gw_broker_free(node->broker);
    node->broker = NULL;
    for (uint32_t i = 0; i < node->nshards; i++) {
        gw_broker_free(node->shard_brokers[i]);
        node->shard_brokers[i] = NULL;
    }
    node->redis = NULL;
    gw_admission_free(node->admission); /* every socket is closed: no peer refers to it */
    node->admission = NULL;
    gw_frame_unref(node->ping_frame); /* queues that still held it were dropped on close */
    node->ping_frame = NULL;
    return leftovers;
}
