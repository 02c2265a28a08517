/* metrics.c — renders gw_metrics (counters, gauges, histograms) and the process's own metrics as
 * Prometheus text (exposition format 0.0.4); the histograms' documented bucket bounds. */
#include "cardgw/metrics.h"
#include "cardgw/log.h"
#include "cardgw/proto.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#ifndef GW_COMMIT /* the Makefile passes git rev-parse --short HEAD */
#define GW_COMMIT "unknown"
#endif

/* ---- histogram bounds (README "Operating it" documents them) ------------------------------- */

const gw_hist_bounds_t gw_hist_redis = {14,
                                        {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
                                         100000, 250000, 500000, 1000000, 2500000}};
const gw_hist_bounds_t gw_hist_request = {15,
                                          {250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
                                           250000, 500000, 1000000, 2500000, 5000000, 10000000}};
const gw_hist_bounds_t gw_hist_lag = {
    12, {1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000, 1000000, 2000000, 5000000}};

#define GW_H(b)                                                                                    \
    {                                                                                              \
        .bounds = &(b)                                                                             \
    }
#define GW_H4(b) GW_H(b), GW_H(b), GW_H(b), GW_H(b)
#define GW_H_API(b)                                                                                \
    {                                                                                              \
        GW_H(b), GW_H(b), GW_H(b)                                                                  \
    }

gw_metrics_t gw_metrics = {
    .redis_rtt = {GW_H4(gw_hist_redis), GW_H4(gw_hist_redis), GW_H4(gw_hist_redis),
                  GW_H4(gw_hist_redis), GW_H(gw_hist_redis)},
    .connect_time = GW_H(gw_hist_request),
    .subscribe_time = GW_H(gw_hist_request),
    .api_time = {GW_H_API(gw_hist_request), GW_H_API(gw_hist_request), GW_H_API(gw_hist_request),
                 GW_H_API(gw_hist_request), GW_H_API(gw_hist_request), GW_H_API(gw_hist_request),
                 GW_H_API(gw_hist_request), GW_H_API(gw_hist_request)},
    .loop_lag = GW_H(gw_hist_lag),
    .delivery_latency = GW_H(gw_hist_request),
};
_Static_assert(GW_MAX_SHARDS + 1 == 17, "gw_metrics.redis_rtt initialiser: 4 x 4 + 1 entries");
_Static_assert(GW_API_EP__COUNT == 8 && GW_API_ST__COUNT == 3, "gw_metrics.api_time initialiser");

static const char *const gw_api_endpoint_names[GW_API_EP__COUNT] = {
    "publish", "broadcast", "disconnect", "unsubscribe", "position", "info", "online", "other",
};
static const char *const gw_api_status_names[GW_API_ST__COUNT] = {"2xx", "4xx", "5xx"};

gw_api_endpoint_t gw_api_endpoint_of(const char *path)
{
    if (strncmp(path, "/api/v1/", 8) == 0)
        for (int i = 0; i < GW_API_EP_OTHER; i++)
            if (strcmp(path + 8, gw_api_endpoint_names[i]) == 0)
                return (gw_api_endpoint_t)i;
    return GW_API_EP_OTHER;
}

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
static const char *const gw_rpc_refuse_names[GW_RPC_REFUSE__COUNT] = {"user_rate", "too_big"};

/* ---- histograms ---------------------------------------------------------------------------- */

static void gw_hist_header(gw_buf_t *out, const char *name, const char *help)
{
    gw_buf_appendf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
}

/* Microseconds as seconds, exactly (no float rounding in bucket bounds or sums). */
static void gw_us_str(char *out, size_t cap, uint64_t us)
{
    int n = snprintf(out, cap, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
    while (n > 2 && out[n - 1] == '0' && out[n - 2] != '.') /* 0.001000 -> 0.001 */
        out[--n] = '\0';
}

/* One series of a histogram: labels is "" or `a="x",b="y"` (no braces). */
static void gw_hist_series(gw_buf_t *out, const char *name, const char *labels, const gw_hist_t *h)
{
    char le[32];
    const char *sep = labels[0] ? "," : "";
    uint64_t cum = 0;
    for (uint32_t i = 0; i < h->bounds->n; i++) {
        cum += h->counts[i];
        gw_us_str(le, sizeof(le), h->bounds->le_us[i]);
        gw_buf_appendf(out, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, labels, sep, le, cum);
    }
    gw_buf_appendf(out, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, h->count);
    gw_us_str(le, sizeof(le), h->sum_us);
    if (labels[0]) {
        gw_buf_appendf(out, "%s_sum{%s} %s\n", name, labels, le);
        gw_buf_appendf(out, "%s_count{%s} %" PRIu64 "\n", name, labels, h->count);
    } else {
        gw_buf_appendf(out, "%s_sum %s\n%s_count %" PRIu64 "\n", name, le, name, h->count);
    }
}

/* A histogram without labels: its HELP/TYPE header and its one series. */
static void gw_hist_one(gw_buf_t *out, const char *name, const char *help, const gw_hist_t *h)
{
    gw_hist_header(out, name, help);
    gw_hist_series(out, name, "", h);
}

static void gw_render_histograms(gw_buf_t *out, const gw_metrics_t *m)
{
    char labels[96];
    if (m->nshards) {
        gw_buf_append_str(out, "# HELP cardgw_redis_shard_ready 1 while the pub/sub round trip "
                               "through a redis_shards Redis works.\n"
                               "# TYPE cardgw_redis_shard_ready gauge\n");
        for (uint32_t i = 0; i < m->nshards && i < GW_MAX_SHARDS; i++)
            gw_buf_appendf(out, "cardgw_redis_shard_ready{shard=\"shard%u\"} %" PRIu64 "\n", i,
                           m->redis_slot_ready[i + 1]);
    }
    gw_hist_header(out, "cardgw_redis_command_duration_seconds",
                   "Redis command round trips (sent to reply), by connection: conn=\"main\" the "
                   "main Redis, conn=\"shard\" with shard=\"shard<i>\" each of redis_shards.");
    gw_hist_series(out, "cardgw_redis_command_duration_seconds", "conn=\"main\"", &m->redis_rtt[0]);
    for (uint32_t i = 0; i < m->nshards && i < GW_MAX_SHARDS; i++) {
        snprintf(labels, sizeof(labels), "conn=\"shard\",shard=\"shard%u\"", i);
        gw_hist_series(out, "cardgw_redis_command_duration_seconds", labels, &m->redis_rtt[i + 1]);
    }
    gw_hist_one(out, "cardgw_connect_duration_seconds",
                "Time to answer connect: command received to reply queued (session lookup "
                "included).",
                &m->connect_time);
    gw_hist_one(out, "cardgw_subscribe_duration_seconds",
                "Time to answer subscribe: command run to reply queued (membership check, "
                "position and recovery included).",
                &m->subscribe_time);
    gw_hist_header(out, "cardgw_api_request_duration_seconds",
                   "Server API requests: headers received to response queued, by endpoint and "
                   "status class (series appear with their first request).");
    for (int e = 0; e < GW_API_EP__COUNT; e++)
        for (int st = 0; st < GW_API_ST__COUNT; st++) {
            if (!m->api_time[e][st].count)
                continue;
            snprintf(labels, sizeof(labels), "endpoint=\"%s\",status=\"%s\"",
                     gw_api_endpoint_names[e], gw_api_status_names[st]);
            gw_hist_series(out, "cardgw_api_request_duration_seconds", labels, &m->api_time[e][st]);
        }
    gw_hist_one(out, "cardgw_loop_lag_seconds",
                "How late a 100 ms event-loop timer fires (event-loop lag).", &m->loop_lag);
    gw_hist_one(out, "cardgw_delivery_latency_seconds",
                "Publication delivery latency: its publish time (the Redis clock in the relay "
                "frame) to the socket write that carries it, one delivery in 8 sampled.",
                &m->delivery_latency);
}

/* ---- per namespace ------------------------------------------------------------------------- */

static void gw_render_namespaces(gw_buf_t *out, const gw_metrics_t *m, const gw_config_t *cfg)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"cardgw_namespace_publications_total", "counter",
         "Publications relayed to this node's subscribers, by namespace."},
        {"cardgw_namespace_deliveries_total", "counter",
         "Publication frames queued to connections, by namespace."},
        {"cardgw_namespace_subscriptions", "gauge", "Subscriptions, by namespace."},
    };
    int n = GW_MIN(cfg ? cfg->nnamespaces : 0, GW_MAX_NAMESPACES);
    for (size_t f = 0; f < GW_ARRAY_SIZE(fam); f++) {
        gw_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name,
                       fam[f].type);
        for (int i = 0; i < n; i++) {
            const gw_ns_metrics_t *x = &m->ns[i];
            uint64_t v = f == 0 ? x->publications : f == 1 ? x->deliveries : x->subscriptions;
            gw_buf_appendf(out, "%s{namespace=\"%s\"} %" PRIu64 "\n", fam[f].name,
                           cfg->namespaces[i].name, v);
        }
    }
}

/* ---- the process (/proc/self), as Prometheus client libraries name it ---------------------- */

/* Reads a small /proc file into buf (NUL-terminated); returns its length or -1. */
static long gw_read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (long)n;
}

/* Boot time (unix s, /proc/stat btime), read once. */
static uint64_t gw_boot_time(void)
{
    static uint64_t btime;
    if (!btime) {
        static char buf[16384]; /* /proc/stat: a few lines per core */
        if (gw_read_small("/proc/stat", buf, sizeof(buf)) > 0) {
            const char *p = strstr(buf, "\nbtime ");
            if (p)
                btime = strtoull(p + 7, NULL, 10);
        }
    }
    return btime;
}

static void gw_render_process(gw_buf_t *out)
{
    char buf[1024];
    double ticks = (double)sysconf(_SC_CLK_TCK), page = (double)sysconf(_SC_PAGESIZE);
    /* /proc/self/stat: fields after the command name (in parentheses, may hold spaces) */
    if (gw_read_small("/proc/self/stat", buf, sizeof(buf)) > 0 && ticks > 0) {
        const char *paren = strrchr(buf, ')');
        const char *p = paren ? paren + 1 : buf;
        unsigned long long v[25] = {0}; /* v[k]: field k of proc(5), from field 3 on */
        for (int k = 3; *p && k < 25; k++) {
            while (*p == ' ')
                p++;
            if (*p >= '0' && *p <= '9')
                v[k] = strtoull(p, NULL, 10);
            while (*p && *p != ' ') /* the field (field 3 is the state letter) */
                p++;
        }
        gw_buf_appendf(out,
                       "# HELP process_cpu_seconds_total User and system CPU time spent, seconds.\n"
                       "# TYPE process_cpu_seconds_total counter\n"
                       "process_cpu_seconds_total %.2f\n",
                       (double)(v[14] + v[15]) / ticks);
        gw_buf_appendf(out,
                       "# HELP process_start_time_seconds Start time of the process since the "
                       "unix epoch, seconds.\n"
                       "# TYPE process_start_time_seconds gauge\n"
                       "process_start_time_seconds %.2f\n",
                       (double)gw_boot_time() + (double)v[22] / ticks);
        gw_buf_appendf(out,
                       "# HELP process_virtual_memory_bytes Virtual memory size, bytes.\n"
                       "# TYPE process_virtual_memory_bytes gauge\n"
                       "process_virtual_memory_bytes %llu\n",
                       v[23]);
        gw_buf_appendf(out,
                       "# HELP process_resident_memory_bytes Resident memory size, bytes.\n"
                       "# TYPE process_resident_memory_bytes gauge\n"
                       "process_resident_memory_bytes %.0f\n",
                       (double)v[24] * page);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        uint64_t n = 0;
        const struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        gw_buf_appendf(out,
                       "# HELP process_open_fds Open file descriptors.\n"
                       "# TYPE process_open_fds gauge\n"
                       "process_open_fds %" PRIu64 "\n",
                       n ? n - 1 : 0); /* not the one reading the directory */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        gw_buf_appendf(out,
                       "# HELP process_max_fds Maximum number of open file descriptors.\n"
                       "# TYPE process_max_fds gauge\n"
                       "process_max_fds %.0f\n",
                       rl.rlim_cur == RLIM_INFINITY ? 1048576.0 : (double)rl.rlim_cur);
    gw_buf_appendf(out,
                   "# HELP cardgw_build_info The running build: version and git commit (always "
                   "1).\n"
                   "# TYPE cardgw_build_info gauge\n"
                   "cardgw_build_info{version=\"%s\",commit=\"%s\"} 1\n",
                   GW_VERSION, GW_COMMIT);
}

void gw_metrics_render(gw_buf_t *out, const gw_config_t *cfg)
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
    gw_metric(out, "cardgw_tls_reload_failures_total", "counter",
              "TLS reloads (SIGHUP) that kept the old certificate: a file was missing or bad.",
              m->tls_reload_failures);
    gw_metric(out, "cardgw_tls_certificate_expiry_timestamp_seconds", "gauge",
              "When the certificate new TLS handshakes get expires (Unix time; 0: no TLS).",
              m->tls_cert_expires_s);
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
    gw_metric_by_reason(out, "cardgw_rpc_refused_total",
                        "Client rpc calls refused before the inbox: user_rate (over "
                        "max_rpcs_per_user_per_s), too_big (data over max_frame_bytes as msgpack).",
                        gw_rpc_refuse_names, m->rpc_refused, GW_RPC_REFUSE__COUNT);
    gw_metric(out, "cardgw_log_lines_dropped_total", "counter",
              "Log lines left out by rate limits (each limited line says how many).",
              gw_log_dropped);
    gw_render_namespaces(out, m, cfg);
    gw_render_histograms(out, m);
    gw_render_process(out);
}
