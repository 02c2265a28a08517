/* node.h — one gateway node: the libuv loop, the configuration, the lws context, the Redis
 * broker, the hub of channels and every open connection; start and graceful stop. */
#ifndef CARDGW_NODE_H
#define CARDGW_NODE_H

#include <uv.h>

#include "cardgw/broker.h"
#include "cardgw/common.h"
#include "cardgw/config.h"
#include "cardgw/log.h"

struct lws_context;
struct lws_vhost;
struct gw_hub;
struct gw_frame;
struct gw_conn;
struct gw_registry;
struct gw_online;
struct gw_admission;
struct gw_watchdog;
struct gw_apikeys;

typedef struct gw_node {
    uv_loop_t *loop;
    const gw_config_t *cfg; /* borrowed, read only for every module */
    int port;               /* the port listened on (cfg->port, or the one bound for 0) */
    char node_id[96];
    char instance[9]; /* random per process: makes client ids unique across nodes */
    struct lws_context *lws;
    struct lws_vhost *vhost;
    void *tls_ctx;           /* the vhost's SSL_CTX (lws owns it) when TLS is on, else NULL */
    uv_prepare_t *tls_check; /* TLS on: services what OpenSSL read ahead (server.c) */
    uv_idle_t *tls_idle;
    uv_timer_t *tls_backoff; /* running: forced service paused (a connection made no progress) */
    int tls_spins;           /* forced services in a row without the loop blocking */
    int listen_fd;           /* -1 when not listening */
    uv_poll_t *listen_poll;  /* accepts, hands sockets to lws */
    uv_timer_t accept_timer; /* resumes accepting after a pause for want of descriptors */
    gw_list_t http_peers;    /* accepted sockets not (yet) WebSockets, oldest first (server.c) */
    struct gw_admission *admission; /* per-IP and per-user caps */
    uint32_t fd_limit;              /* RLIMIT_NOFILE at start */
    uint32_t max_connections;       /* effective caps (config "auto" resolved; 0 = none) */
    uint32_t max_per_ip;
    gw_log_limit_t accept_log, refuse_log; /* lines an attacker could make repeat */
    gw_log_limit_t conn_log;               /* slow-consumer and flood closes (conn.c) */
    struct gw_watchdog *watchdog;
    struct gw_registry *registry; /* this node's entry in the cluster view */
    struct gw_online *online;     /* its users' connection counts, mirrored into Redis */
    struct gw_static *statics;    /* static_root's files, NULL when off */
    struct gw_apikeys *apikeys;   /* the server API's keys (api.c) */
    int admin_fd;                 /* admin_port's listening socket, -1 when none (server.c) */
    int admin_port;               /* the port it is bound to */
    uv_poll_t *admin_poll;
    uv_signal_t sigusr2; /* debug_hooks: stalls the loop on purpose (watchdog test) */
    uint32_t sweeps;
    gw_broker_t *broker;     /* the main Redis (redis_url) */
    const gw_redis_t *redis; /* the main broker's: sessions, members, inbox, control, nodes */
    gw_broker_t *shard_brokers[GW_MAX_SHARDS]; /* redis_shards: where channels live */
    uint32_t nshards;                          /* 0: channels live on the main Redis */
    struct gw_broker_slot {                    /* what a broker's handlers are called with */
        struct gw_node *node;
        int shard; /* -1: the main Redis alone */
    } slots[GW_MAX_SHARDS + 1];
    struct gw_hub *hub;
    gw_list_t conns;  /* every open WebSocket connection (gw_conn_t.link) */
    gw_list_t flushq; /* connections with frames queued this loop turn (gw_conn_t.flush_link) */
    uv_prepare_t flush_prepare; /* writes them before the loop blocks again */
    uv_timer_t flush_timer;     /* or after flush_window_ms, when that is set */
    uint64_t nconns;
    uint64_t conn_seq;
    uv_signal_t sigint, sigterm;
    uv_signal_t sighup;          /* reload (gw_node_reload) */
    uv_timer_t stop_timer;       /* shutdown deadline */
    uv_timer_t unready_timer;    /* drain_unready_ms: /readyz 503 before the drain starts */
    uv_timer_t drain_timer;      /* closes connections in batches over drain_window_ms */
    uv_timer_t sweep_timer;      /* auth deadlines, token expiry, pings (gw_conn_sweep) */
    uv_timer_t lag_timer;        /* every 100 ms: how late it fires is the loop's lag */
    uint64_t lag_due_us;         /* when it should fire next (uv_hrtime, microseconds) */
    struct gw_frame *ping_frame; /* the WebSocket ping every connection gets, built once */
    uint64_t drain_per_tick;
    int stopping;  /* a stop was asked for: /readyz answers 503 from here */
    int draining;  /* then: not listening, connections told to reconnect elsewhere and closed */
    int finishing; /* then: every connection closed, the online hash is being deleted */
    int exit_code;
    char errstr[256];
} gw_node_t;

/* Creates the lws context on loop, listens, and connects to Redis. Returns 0, or -errno with
 * node->errstr set (nothing left to free but what gw_node_destroy frees). */
int gw_node_start(gw_node_t *node, uv_loop_t *loop, const gw_config_t *cfg);
/* Starts a graceful stop: /readyz answers 503 at once while the node still accepts and serves
 * for drain_unready_ms (a load balancer checking /readyz stops routing new clients here); then
 * the drain: stop listening, send every client a `disconnect` push with reconnect advice and a
 * random delay within drain_window_ms, close the connections (1001) in batches spread over that
 * window, and stop the loop when all are closed and the node's online hash is deleted (online.h),
 * or when shutdown_timeout_ms (counted from the call) has passed. Safe to call more than once. */
void gw_node_stop(gw_node_t *node);
/* Reloads what can change while connections stay open (SIGHUP calls it; add new reloadable parts
 * here): the TLS certificate and key (gw_server_reload). Each part keeps its old state when its
 * new one is bad. Nothing while stopping. Returns 0, or the first part's -errno. */
int gw_node_reload(gw_node_t *node);
/* A connection was put on node->flushq: make sure it is written before the loop blocks. */
void gw_node_flush_soon(gw_node_t *node);
/* Whether every Redis (main and shards) relays (canary round trip). Otherwise 0, with the names
 * of those that do not ("main", "shard<i>", comma-separated) in why. */
int gw_node_redis_ready(const gw_node_t *node, char *why, size_t cap);
/* Calls fn(c, ud) for every open connection of user uid[0..n) on this node; fn may close c. */
void gw_node_foreach_user_conn(gw_node_t *node, const char *uid, size_t n,
                               void (*fn)(struct gw_conn *c, void *ud), void *ud);
/* A connection left node->conns (conn.c): a stopping node stops its loop after the last one
 * (once Redis has deleted its online hash). */
void gw_node_conn_gone(gw_node_t *node);
/* After uv_run has returned: frees everything and runs the loop until no handle is left. Returns
 * how many handles some module had left open (closed here and logged; 0 unless there is a bug). */
int gw_node_destroy(gw_node_t *node);

#endif
