/* metrics.c — renders gw_metrics as Prometheus text (exposition format 0.0.4) and maps close
 * codes to the reason label of cardgw_connections_closed_total. */
#include "cardgw/metrics.h"
#include "cardgw/proto.h"

#include <inttypes.h>

gw_metrics_t gw_metrics;

static const char *const gw_reason_names[GW_CLOSE_R__COUNT] = {
    "client",  "shutdown",    "slow_consumer", "auth_timeout", "unauthorized", "malformed",
    "too_big", "wrong_frame", "flood",         "kicked",       "expired",      "insufficient_state",
    "timeout", "user_limit",  "other",
};

static void gw_metric(gw_buf_t *out, const char *name, const char *type, const char *help,
                      uint64_t v)
{
    gw_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type,
                   name, v);
}

/* A counter with one series per value of one label. */
static void gw_metric_by_label(gw_buf_t *out, const char *name, const char *help, const char *label,
                               const char *const *values, const uint64_t *v, int n)
{
    gw_buf_appendf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (int i = 0; i < n; i++)
        gw_buf_appendf(out, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, values[i], v[i]);
}

/* A counter with one series per reason label. */
static void gw_metric_by_reason(gw_buf_t *out, const char *name, const char *help,
                                const char *const *reasons, const uint64_t *v, int n)
{
    gw_metric_by_label(out, name, help, "reason", reasons, v, n);
}

static const char *const gw_rpc_outcome_names[GW_RPC_OUT__COUNT] = {
    "result", "error", "timeout", "unavailable", "closed",
};
static const char *const gw_rpc_drop_names[GW_RPC_DROP__COUNT] = {
    "closed",
    "unknown",
    "malformed",
    "too_big",
};

void gw_metrics_render(gw_buf_t *out)
{
    const gw_metrics_t *m = &gw_metrics;
    gw_metric(out, "cardgw_connections_open", "gauge", "Open WebSocket connections.",
              m->connections_open);
    gw_metric(out, "cardgw_connections_accepted_total", "counter",
              "WebSocket connections accepted.", m->connections_accepted);
    gw_metric_by_reason(out, "cardgw_connections_closed_total",
                        "WebSocket connections closed, by reason.", gw_reason_names,
                        m->connections_closed, GW_CLOSE_R__COUNT);
    gw_metric(out, "cardgw_sockets_open", "gauge",
              "Accepted TCP sockets open (plain HTTP and WebSocket).", m->sockets_open);
    gw_metric(out, "cardgw_sockets_accepted_total", "counter", "TCP sockets accepted.",
              m->sockets_accepted);
    const char *refused[GW_REFUSE__COUNT];
    for (int i = 0; i < GW_REFUSE__COUNT; i++)
        refused[i] = gw_refuse_reason_name((gw_refuse_reason_t)i);
    gw_metric_by_reason(out, "cardgw_connections_refused_total",
                        "Connections refused, by reason (README, Limits).", refused, m->refused,
                        GW_REFUSE__COUNT);
    gw_metric(out, "cardgw_http_timeouts_total", "counter",
              "Plain-HTTP sockets closed at http_timeout_ms.", m->http_timeouts);
    gw_metric(out, "cardgw_open_files_limit", "gauge", "The process's open-file limit.",
              m->fd_limit);
    gw_metric(out, "cardgw_worker_restarts_total", "counter",
              "Times the supervisor restarted this worker slot before this process.",
              m->worker_restarts);
    gw_metric(out, "cardgw_worker_replaced_exit_code", "gauge",
              "Exit code of the worker this process replaced (0: first start; 3: loop stalled).",
              (uint64_t)m->worker_last_exit);
    gw_metric(out, "cardgw_frames_in_total", "counter", "WebSocket messages received.",
              m->frames_in);
    gw_metric(out, "cardgw_bytes_in_total", "counter", "WebSocket payload bytes received.",
              m->bytes_in);
    gw_metric(out, "cardgw_frames_out_total", "counter", "WebSocket messages sent.", m->frames_out);
    gw_metric(out, "cardgw_bytes_out_total", "counter", "WebSocket bytes sent (with headers).",
              m->bytes_out);
    gw_metric(out, "cardgw_socket_writes_total", "counter",
              "Socket writes issued (several messages may share one).", m->writes_out);
    gw_metric(out, "cardgw_socket_full_total", "counter",
              "Writes the socket did not take whole (the rest waits for it to drain).",
              m->writes_partial);
    gw_metric(out, "cardgw_commands_total", "counter", "Client commands handled.", m->commands);
    gw_metric(out, "cardgw_command_errors_total", "counter",
              "Client commands answered with an error.", m->command_errors);
    gw_metric(out, "cardgw_http_requests_total", "counter", "Plain HTTP requests served.",
              m->http_requests);
    gw_buf_append_str(out, "# HELP cardgw_redis_connected Redis connection up (1) or down (0).\n"
                           "# TYPE cardgw_redis_connected gauge\n");
    gw_buf_appendf(out, "cardgw_redis_connected{conn=\"pubsub\"} %" PRIu64 "\n",
                   m->redis_connected_sub);
    gw_buf_appendf(out, "cardgw_redis_connected{conn=\"command\"} %" PRIu64 "\n",
                   m->redis_connected_cmd);
    gw_metric(out, "cardgw_redis_reconnects_total", "counter", "Redis reconnections.",
              m->redis_reconnects);
    gw_metric(out, "cardgw_redis_ready", "gauge",
              "1 while the pub/sub round trip through Redis works.", m->redis_ready);
    gw_metric(out, "cardgw_channels", "gauge", "Channels with local subscribers.", m->channels);
    gw_metric(out, "cardgw_subscriptions", "gauge", "Connection-channel subscriptions.",
              m->subscriptions);
    gw_metric(out, "cardgw_publications_received_total", "counter",
              "Publications received from Redis.", m->publications_in);
    gw_metric(out, "cardgw_deliveries_total", "counter", "Publications queued to connections.",
              m->deliveries);
    gw_metric(out, "cardgw_api_requests_total", "counter", "Server API requests.", m->api_requests);
    gw_metric(out, "cardgw_api_errors_total", "counter", "Server API requests that failed.",
              m->api_errors);
    gw_metric(out, "cardgw_rpc_pending", "gauge",
              "rpc calls waiting for the backend's answer (rpc_reply_methods).", m->rpc_pending);
    gw_metric_by_label(out, "cardgw_rpc_waits_total",
                       "rpc calls that waited for the backend's answer, by how they ended.",
                       "outcome", gw_rpc_outcome_names, m->rpc_waits, GW_RPC_OUT__COUNT);
    gw_metric_by_reason(out, "cardgw_rpc_answers_dropped_total",
                        "Messages on the node's rpc reply channel dropped, by reason.",
                        gw_rpc_drop_names, m->rpc_dropped, GW_RPC_DROP__COUNT);
}
