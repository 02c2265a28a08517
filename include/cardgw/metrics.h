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
} gw_metrics_t;

extern gw_metrics_t gw_metrics;

/* Appends the Prometheus text exposition of every metric to out. */
void gw_metrics_render(gw_buf_t *out);

#endif
