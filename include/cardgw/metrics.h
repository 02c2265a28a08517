/* metrics.h — the node's counters and gauges, rendered as Prometheus text at /metrics.
 * One process, one thread: plain integers, no atomics. */
#ifndef CARDGW_METRICS_H
#define CARDGW_METRICS_H

#include <stdint.h>

#include "cardgw/admission.h"
#include "cardgw/common.h"

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

typedef struct {
    uint64_t connections_open;
    uint64_t connections_accepted;
    uint64_t connections_closed[GW_CLOSE_R__COUNT];
    uint64_t http_requests;
    uint64_t sockets_open, sockets_accepted; /* every accepted TCP socket, HTTP or WebSocket */
    uint64_t refused[GW_REFUSE__COUNT];      /* connections refused, by reason */
    uint64_t http_timeouts;                  /* plain-HTTP sockets closed at http_timeout_ms */
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
    uint64_t rpc_pending;                     /* rpcs waiting for the backend's answer */
    uint64_t rpc_waits[GW_RPC_OUT__COUNT];    /* waiting rpcs ended, by outcome */
    uint64_t rpc_dropped[GW_RPC_DROP__COUNT]; /* reply-channel messages dropped, by reason */
} gw_metrics_t;

extern gw_metrics_t gw_metrics;

/* Appends the Prometheus text exposition of every metric to out. */
void gw_metrics_render(gw_buf_t *out);

#endif
