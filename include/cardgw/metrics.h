/* metrics.h — the node's counters, gauges and histograms, rendered as Prometheus text at /metrics
 * with the process's own metrics. One process, one thread: plain integers, no atomics. */
#ifndef CARDGW_METRICS_H
#define CARDGW_METRICS_H

#include <stdint.h>

#include "cardgw/admission.h"
#include "cardgw/common.h"
#include "cardgw/config.h"

/* Why a connection closed (a label of cardgw_connections_closed_total). */
typedef enum {
    GW_CLOSE_R_CLIENT = 0,   /* the client closed or went away */
    GW_CLOSE_R_SHUTDOWN,     /* node shutdown or drain */
    GW_CLOSE_R_SLOW,         /* send queue over max_send_queue_bytes */
    GW_CLOSE_R_AUTH_TIMEOUT, /* no connect in time */
    GW_CLOSE_R_UNAUTHORIZED, /* bad token */
    GW_CLOSE_R_MALFORMED,    /* undecodable frame */
    GW_CLOSE_R_TOO_BIG,      /* frame over max_frame_bytes */
    GW_CLOSE_R_WRONG_FRAME,  /* frame type does not match the subprotocol */
    GW_CLOSE_R_FLOOD,        /* too many commands or errors */
    GW_CLOSE_R_KICKED,       /* server API disconnect */
    GW_CLOSE_R_EXPIRED,      /* token expired */
    GW_CLOSE_R_INSUFFICIENT, /* insufficient state */
    GW_CLOSE_R_TIMEOUT,      /* no traffic from the client */
    GW_CLOSE_R_USER_LIMIT,   /* max_connections_per_user */
    GW_CLOSE_R_OTHER,
    GW_CLOSE_R__COUNT
} gw_close_reason_t;

/* How an rpc that waited for the backend's answer ended (cardgw_rpc_waits_total{outcome}). */
typedef enum {
    GW_RPC_OUT_RESULT = 0,  /* the backend's result went to the client */
    GW_RPC_OUT_ERROR,       /* the backend's error went to the client (119) */
    GW_RPC_OUT_TIMEOUT,     /* no answer within rpc_timeout_ms (118) */
    GW_RPC_OUT_UNAVAILABLE, /* Redis failed or its pub/sub connection dropped (111) */
    GW_RPC_OUT_CLOSED,      /* the client's connection closed first */
    GW_RPC_OUT__COUNT
} gw_rpc_outcome_t;

/* Why a message on the node's reply channel was dropped (cardgw_rpc_answers_dropped_total). */
typedef enum {
    GW_RPC_DROP_CLOSED = 0, /* the client's connection closed while it waited */
    GW_RPC_DROP_UNKNOWN,    /* no such waiting rpc: answered already, timed out, or not ours */
    GW_RPC_DROP_MALFORMED,  /* not an answer (docs/redis-schema.md) */
    GW_RPC_DROP_TOO_BIG,    /* larger than rpc_max_answer_bytes */
    GW_RPC_DROP__COUNT
} gw_rpc_drop_t;

/* Why a client's rpc was refused before reaching the inbox (cardgw_rpc_refused_total). */
typedef enum {
    GW_RPC_REFUSE_USER_RATE = 0, /* over max_rpcs_per_user_per_s (115) */
    GW_RPC_REFUSE_TOO_BIG,       /* data over max_frame_bytes once converted to msgpack (104) */
    GW_RPC_REFUSE__COUNT
} gw_rpc_refuse_t;

/* ---- histograms ------------------------------------------------------------------------------ */

/* Fixed, ascending bucket bounds in microseconds (rendered as seconds: le="0.001"). */
#define GW_HIST_MAX_BOUNDS 16
typedef struct {
    uint32_t n;
    uint64_t le_us[GW_HIST_MAX_BOUNDS];
} gw_hist_bounds_t;

/* The documented bucket sets (README, metrics): Redis round trips 100 us .. 2.5 s; requests
 * (connect, subscribe, API) 250 us .. 10 s; event-loop lag 1 ms .. 5 s. Static, never freed. */
extern const gw_hist_bounds_t gw_hist_redis, gw_hist_request, gw_hist_lag;

/* A Prometheus histogram: a count per bucket (the last one: above every bound), the sum and the
 * number of observations. bounds is borrowed (one of the static sets above). Observing is a scan
 * of at most 16 bounds and three adds: no allocation, no clock read. */
typedef struct {
    const gw_hist_bounds_t *bounds;
    uint64_t counts[GW_HIST_MAX_BOUNDS + 1];
    uint64_t count;
    uint64_t sum_us;
} gw_hist_t;

/* Adds one observation of us microseconds to h. */
static inline void gw_hist_observe(gw_hist_t *h, uint64_t us)
{
    uint32_t i = 0;
    while (i < h->bounds->n && us > h->bounds->le_us[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum_us += us;
}
/* Adds the time since start_us (gw_now_us) to h. */
static inline void gw_hist_since(gw_hist_t *h, uint64_t start_us)
{
    uint64_t now = gw_now_us();
    gw_hist_observe(h, now > start_us ? now - start_us : 0);
}

/* Server API endpoints and status classes (labels of cardgw_api_request_duration_seconds). */
typedef enum {
    GW_API_EP_PUBLISH = 0,
    GW_API_EP_BROADCAST,
    GW_API_EP_DISCONNECT,
    GW_API_EP_UNSUBSCRIBE,
    GW_API_EP_POSITION,
    GW_API_EP_INFO,
    GW_API_EP_ONLINE,
    GW_API_EP_OTHER, /* unknown paths, the API disabled */
    GW_API_EP__COUNT
} gw_api_endpoint_t;
typedef enum { GW_API_ST_2XX = 0, GW_API_ST_4XX, GW_API_ST_5XX, GW_API_ST__COUNT } gw_api_status_t;
/* The endpoint named by a request path (borrowed; /api/v1/<name>). */
gw_api_endpoint_t gw_api_endpoint_of(const char *path);

/* Per configured namespace (index in cfg->namespaces): labels come from the configuration only. */
typedef struct {
    uint64_t publications;  /* publications relayed to the node's subscribers (once each) */
    uint64_t deliveries;    /* publication frames queued to connections */
    uint64_t subscriptions; /* gauge: subscriptions (being set up or live) */
} gw_ns_metrics_t;

typedef struct {
    uint64_t connections_open;
    uint64_t connections_accepted;
    uint64_t connections_closed[GW_CLOSE_R__COUNT];
    uint64_t http_requests;
    uint64_t sockets_open, sockets_accepted; /* every accepted TCP socket, HTTP or WebSocket */
    uint64_t refused[GW_REFUSE__COUNT];      /* connections refused, by reason */
    uint64_t http_timeouts;                  /* plain-HTTP sockets closed at http_timeout_ms */
    uint64_t tls_reload_failures;            /* reloads that kept the old certificate */
    uint64_t tls_cert_expires_s;             /* notAfter of the certificate served; 0: no TLS */
    uint64_t fd_limit;                       /* RLIMIT_NOFILE */
    uint64_t worker_restarts;                /* times the supervisor restarted this worker's slot */
    int worker_last_exit; /* exit code of the process this one replaced (0: none) */
    uint64_t frames_in, bytes_in;
    uint64_t frames_out, bytes_out, writes_out, writes_partial;
    uint64_t commands, command_errors;
    uint64_t redis_connected_sub, redis_connected_cmd;
    uint64_t redis_reconnects;
    uint64_t redis_ready;
    uint64_t channels, subscriptions;
    uint64_t publications_in, deliveries;
    uint64_t api_requests, api_errors;
    uint64_t rpc_pending;                       /* rpcs waiting for the backend's answer */
    uint64_t rpc_waits[GW_RPC_OUT__COUNT];      /* waiting rpcs ended, by outcome */
    uint64_t rpc_dropped[GW_RPC_DROP__COUNT];   /* reply-channel messages dropped, by reason */
    uint64_t rpc_refused[GW_RPC_REFUSE__COUNT]; /* client rpcs refused, by reason */
    /* histograms (bounds set by the static initialiser in metrics.c) */
    gw_hist_t redis_rtt[GW_MAX_SHARDS + 1]; /* command round trips: [0] main, [1 + i] shard i */
    uint64_t redis_slot_ready[GW_MAX_SHARDS + 1]; /* relay ready, same index */
    uint32_t nshards;                             /* shards whose series are rendered */
    gw_hist_t connect_time;                       /* connect received .. its reply queued */
    gw_hist_t subscribe_time;                     /* subscribe received .. its reply queued */
    gw_hist_t api_time[GW_API_EP__COUNT][GW_API_ST__COUNT]; /* request .. response */
    gw_hist_t loop_lag;                                     /* how late the 100 ms timer fires */
    gw_hist_t delivery_latency; /* publish time (Redis clock) .. socket write, sampled 1 in 8 */
    gw_ns_metrics_t ns[GW_MAX_NAMESPACES];
} gw_metrics_t;

extern gw_metrics_t gw_metrics;

/* Appends the Prometheus text exposition of every metric to out: the node's, the process's
 * (process_*, read from /proc/self now) and cardgw_build_info. cfg (borrowed) names the
 * namespaces of the per-namespace series. */
void gw_metrics_render(gw_buf_t *out, const gw_config_t *cfg);

#endif
