/* api.c — the server API beside the WebSocket endpoint: POST /api/v1/publish, broadcast,
 * disconnect and unsubscribe, GET /api/v1/position, info and online; JSON in and out, API keys. */
#include "cardgw/api.h"
#include "cardgw/api_body.h"
#include "cardgw/apikeys.h"
#include "cardgw/conn.h"
#include "cardgw/auth.h"
#include "cardgw/history.h"
#include "cardgw/hub.h"
#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/node.h"
#include "cardgw/online.h"
#include "cardgw/registry.h"
#include "cardgw/broker.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <stdlib.h>

typedef struct {
    gw_http_req_t *r;
    int outstanding; /* publishes not answered yet (broadcast) */
    json_t *results; /* broadcast: one entry per channel */
    size_t idx;
} gw_api_op_t;

typedef struct {
    gw_api_op_t *op;
    size_t idx;
} gw_api_slot_t;

/* ---- responses ------------------------------------------------------------------------------- */

/* Sends a JSON response (takes the reference to body) unless the client already went away, in
 * which case the request is freed here. */
static void gw_api_reply(gw_http_req_t *r, unsigned status, json_t *body)
{
    r->pending = 0;
    if (status >= 400)
        gw_metrics.api_errors++;
    if (r->started_us) { /* one response per request: timed once */
        gw_api_status_t st = status >= 500   ? GW_API_ST_5XX
                             : status >= 400 ? GW_API_ST_4XX
                                             : GW_API_ST_2XX;
        gw_hist_since(&gw_metrics.api_time[r->endpoint][st], r->started_us);
        r->started_us = 0;
    }
    if (!r->wsi) {
        json_decref(body);
        gw_http_req_free(r);
        return;
    }
    char *s = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    gw_buf_reset(&r->body);
    gw_buf_append_str(&r->body, s ? s : "{}");
    gw_buf_append(&r->body, "\n", 1);
    free(s);
    /* no response possible (headers too big for the buffer): close within a second rather
     * than leave the client waiting for http_timeout_ms (safe inside an lws callback, too) */
    if (gw_http_respond(r, status, "application/json") != 0 && r->wsi)
        lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, 1);
}

static void gw_api_error(gw_http_req_t *r, unsigned status, const char *msg)
{
    gw_api_reply(r, status, json_pack("{s:s}", "error", msg));
}

static unsigned gw_api_status_for(int err)
{
    switch (err) {
    case GW_ERR_UNAVAILABLE:
        return 503;
    case GW_ERR_UNKNOWN_NAMESPACE:
        return 404;
    default:
        return 400;
    }
}

static const char *gw_api_msg_for(int err)
{
    switch (err) {
    case GW_ERR_UNAVAILABLE:
        return "redis unavailable: nothing was published";
    case GW_ERR_UNKNOWN_NAMESPACE:
        return "unknown namespace";
    case GW_ERR_BAD_CHANNEL:
        return "bad channel name";
    default:
        return "bad request";
    }
}

/* ---- authentication -------------------------------------------------------------------------- */

/* The scope a request needs (0: none, an unknown path answered 404/405 after the key check). */
static unsigned gw_api_scope_for(const char *path)
{
    int kind = gw_api_body_kind_of(path);
    if (kind == GW_API_BODY_PUBLISH || kind == GW_API_BODY_BROADCAST)
        return GW_SCOPE_PUBLISH;
    if (kind == GW_API_BODY_DISCONNECT || kind == GW_API_BODY_UNSUBSCRIBE)
        return GW_SCOPE_DISCONNECT;
    if (kind == GW_API_BODY_ONLINE || strcmp(path, "/api/v1/position") == 0 ||
        strcmp(path, "/api/v1/info") == 0)
        return GW_SCOPE_READ;
    return 0;
}

/* 0 when the request's key (Authorization: apikey <key> or Bearer <key>) has scope, else the
 * status: 401 for a missing or unknown key, 403 for a key without the scope. */
static unsigned gw_api_key_status(gw_node_t *node, gw_http_req_t *r, unsigned scope)
{
    char h[1024]; /* room for a long legacy api_key; longer headers are unknown keys (401) */
    unsigned scopes;
    const char *name;
    if (lws_hdr_copy(r->wsi, h, sizeof(h), WSI_TOKEN_HTTP_AUTHORIZATION) <= 0)
        return 401;
    const char *given = NULL;
    if (strncmp(h, "apikey ", 7) == 0 || strncmp(h, "Bearer ", 7) == 0)
        given = h + 7;
    int rc = given ? gw_apikeys_lookup(node->apikeys, given, strlen(given), &scopes, &name) : -1;
    OPENSSL_cleanse(h, sizeof(h));
    if (rc != 0)
        return 401;
    gw_debug("api", "%s %s: key '%s'%s", r->is_post ? "POST" : "GET", r->path, name,
             (scopes & scope) == scope ? "" : " lacks the scope: 403");
    return (scopes & scope) == scope ? 0 : 403;
}

int gw_api_check_key(gw_node_t *node, gw_http_req_t *r, const char *path, unsigned scope)
{
    if (!r->path[0])
        snprintf(r->path, sizeof(r->path), "%s", path);
    unsigned st = gw_apikeys_enabled(node->apikeys) ? gw_api_key_status(node, r, scope) : 401;
    if (st == 401)
        gw_api_error(r, 401, "missing or wrong API key (Authorization: apikey <key>)");
    else if (st == 403)
        gw_api_error(r, 403, "this API key lacks the scope for this request");
    return st ? -EACCES : 0;
}

int gw_api_start(gw_node_t *node)
{
    char err[256];
    node->apikeys = gw_apikeys_new(node->cfg->api_key, node->cfg->api_keys_file, err, sizeof(err));
    if (!node->apikeys) {
        snprintf(node->errstr, sizeof(node->errstr), "%s", err);
        return -EINVAL;
    }
    if (node->cfg->api_keys_file[0])
        gw_info("api", "%zu API keys (api_key and %s)", gw_apikeys_count(node->apikeys),
                node->cfg->api_keys_file);
    return 0;
}

void gw_api_tick(gw_node_t *node)
{
    char err[300];
    int rc = gw_apikeys_check(node->apikeys, err, sizeof(err));
    if (rc == 1)
        gw_info("api", "api_keys_file re-read: %zu API keys now", gw_apikeys_count(node->apikeys));
    else if (rc < 0) /* once per change of the file */
        gw_warn("api", "%s: keeping the %zu keys in use", err, gw_apikeys_count(node->apikeys));
}

void gw_api_stop(gw_node_t *node)
{
    gw_apikeys_free(node->apikeys);
    node->apikeys = NULL;
}

/* ---- publish and broadcast ------------------------------------------------------------------- */

static void gw_api_op_finish(gw_api_op_t *op)
{
    if (--op->outstanding > 0)
        return;
    json_t *res = op->results;
    gw_http_req_t *r = op->r;
    free(op);
    if (json_array_size(res) == 1 && strcmp(r->path, "/api/v1/publish") == 0) {
        json_t *one = json_incref(json_array_get(res, 0));
        json_decref(res);
        json_t *e = json_object_get(one, "error");
        unsigned st = e ? (unsigned)json_integer_value(json_object_get(one, "status")) : 200;
        json_object_del(one, "status");
        gw_api_reply(r, st, one);
        return;
    }
    gw_api_reply(r, 200, json_pack("{s:o}", "results", res));
}

static void gw_api_on_published(void *priv, int err, const char *epoch, uint64_t offset)
{
    gw_api_slot_t *slot = priv;
    gw_api_op_t *op = slot->op;
    json_t *entry = err ? json_pack("{s:s,s:i}", "error", gw_api_msg_for(err), "status",
                                    (int)gw_api_status_for(err))
                        : json_pack("{s:I,s:s}", "offset", (json_int_t)offset, "epoch", epoch);
    json_array_set_new(op->results, slot->idx, entry);
    free(slot);
    gw_api_op_finish(op);
}

/* body: a checked publish or broadcast (borrowed). */
static void gw_api_publish(gw_node_t *node, gw_http_req_t *r, const gw_api_body_t *body)
{
    size_t n = body->nchannels;
    gw_api_op_t *op = gw_calloc(1, sizeof(*op));
    op->r = r;
    op->results = json_array();
    op->outstanding = 1; /* held until every publish is issued */
    r->pending = 1;
    for (size_t i = 0; i < n; i++)
        json_array_append_new(op->results, json_null());
    for (size_t i = 0; i < n; i++) {
        const char *ch = body->channels[i];
        int err = GW_ERR_BAD_CHANNEL;
        gw_api_slot_t *slot = gw_malloc(sizeof(*slot));
        *slot = (gw_api_slot_t){op, i};
        op->outstanding++;
        if (ch)
            err = gw_hub_publish(
                node->hub, ch, strlen(ch),
                (gw_data_t){GW_DATA_JSON, (const uint8_t *)body->data, body->data_len}, NULL,
                gw_api_on_published, slot);
        if (err)
            gw_api_on_published(slot, err, NULL, 0);
    }
    gw_api_op_finish(op);
}

/* ---- disconnect, unsubscribe (control messages to every node) -------------------------------- */

static void gw_api_on_control(void *priv, int err, const char *epoch, uint64_t nodes)
{
    gw_http_req_t *r = priv;
    (void)epoch;
    if (err == GW_ERR_BAD_REQUEST)
        gw_api_error(r, 400, "uid and channel too long together");
    else if (err)
        gw_api_error(r, 503, "redis unavailable: nothing was sent");
    else
        gw_api_reply(r, 200, json_pack("{s:I}", "nodes", (json_int_t)nodes));
}

/* body: a checked disconnect or unsubscribe (borrowed). */
static void gw_api_control(gw_node_t *node, gw_http_req_t *r, const gw_api_body_t *body)
{
    if (body->channel && !gw_config_namespace(node->cfg, body->channel, body->ns_len)) {
        gw_api_error(r, 404, gw_api_msg_for(GW_ERR_UNKNOWN_NAMESPACE));
        return;
    }
    r->pending = 1;
    int rc = gw_hub_control(node->hub, body->uid, body->channel, gw_api_on_control, r);
    if (rc != 0)
        gw_api_on_control(r, rc, NULL, 0);
}

/* ---- position -------------------------------------------------------------------------------- */

static void gw_api_on_position(void *priv, int err, const char *epoch, uint64_t top)
{
    gw_http_req_t *r = priv;
    if (err)
        gw_api_error(r, 503, "redis unavailable");
    else
        gw_api_reply(r, 200, json_pack("{s:s,s:I}", "epoch", epoch, "offset", (json_int_t)top));
}

static void gw_api_position(gw_node_t *node, gw_http_req_t *r)
{
    char arg[GW_PROTO_MAX_CHANNEL + 16];
    size_t nslen;
    /* lws copies "channel=<value>" into arg and returns where the value starts */
    const char *ch = lws_get_urlarg_by_name(r->wsi, "channel=", arg, sizeof(arg));
    if (!ch || !gw_proto_channel_valid(ch, strlen(ch), &nslen)) {
        gw_api_error(r, 400, "want ?channel=ns:id");
        return;
    }
    if (!gw_config_namespace(node->cfg, ch, nslen)) {
        gw_api_error(r, 404, gw_api_msg_for(GW_ERR_UNKNOWN_NAMESPACE));
        return;
    }
    r->pending = 1;
    if (gw_history_position(gw_hub_channel_redis(node->hub, ch, strlen(ch)), ch, strlen(ch),
                            gw_api_on_position, r) != 0)
        gw_api_on_position(r, -ENOTCONN, NULL, 0);
}

/* ---- info: the cluster view ------------------------------------------------------------------ */

typedef struct {
    gw_http_req_t *r;
    gw_node_t *node;
} gw_api_info_op_t;

static void gw_api_on_info(void *priv, int err, json_t *nodes)
{
    gw_api_info_op_t *op = priv;
    gw_http_req_t *r = op->r;
    gw_node_t *node = op->node;
    free(op);
    if (err) {
        gw_api_error(r, 503, "redis unavailable");
        return;
    }
    json_t *shards = json_array();
    for (uint32_t i = 0; i < node->nshards; i++)
        json_array_append_new(shards,
                              json_pack("{s:s,s:b}", "name", gw_broker_name(node->shard_brokers[i]),
                                        "ready", gw_broker_ready(node->shard_brokers[i])));
    gw_api_reply(r, 200,
                 json_pack("{s:s,s:O,s:{s:b,s:o}}", "node", node->node_id, "nodes", nodes, "redis",
                           "ready", node->broker && gw_broker_ready(node->broker), "shards",
                           shards));
}

/* ---- online: users' status across nodes ------------------------------------------------------ */

typedef struct {
    gw_http_req_t *r;
    json_t *uids; /* the request's, in order */
} gw_api_online_op_t;

static void gw_api_on_online(void *priv, int err, const gw_online_status_t *st, size_t n)
{
    gw_api_online_op_t *op = priv;
    gw_http_req_t *r = op->r;
    json_t *uids = op->uids;
    free(op);
    if (err) {
        json_decref(uids);
        gw_api_error(r, 503, "redis unavailable");
        return;
    }
    json_t *users = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            users, json_pack("{s:O,s:b,s:I,s:o}", "uid", json_array_get(uids, i), "online",
                             st[i].connections > 0, "connections", (json_int_t)st[i].connections,
                             "last_seen",
                             st[i].last_seen >= 0 ? json_integer(st[i].last_seen) : json_null()));
    json_decref(uids);
    gw_api_reply(r, 200, json_pack("{s:o}", "users", users));
}

static const gw_api_body_limits_t *gw_api_limits(gw_node_t *node)
{
    static gw_api_body_limits_t lim;
    /* a pub push larger than this closes a subscriber with anything queued as a slow consumer
     * (gw_conn_send): no subscriber can be relied on to get it */
    lim.max_push_bytes = (size_t)node->cfg->max_send_queue_bytes - GW_FRAME_HEADER_MAX;
    lim.uid_valid = gw_auth_uid_valid;
    return &lim;
}

/* body: checked uids (borrowed; its root is kept until the answer). */
static void gw_api_online(gw_node_t *node, gw_http_req_t *r, gw_api_body_t *body)
{
    gw_api_online_op_t *op = gw_malloc(sizeof(*op));
    op->r = r;
    op->uids =
        json_incref(json_is_array(body->root) ? body->root : json_object_get(body->root, "uids"));
    r->pending = 1;
    int rc = gw_online_query(node->online, body->uids, body->nuids, gw_api_on_online, op);
    if (rc != 0)
        gw_api_on_online(op, rc, NULL, 0);
}

/* GET /api/v1/online?uid=a&uid=b: lws has split the query string into its arguments (at '&' and
 * ';') and decoded them; other arguments are ignored unless too long to be a uid argument. */
static void gw_api_online_get(gw_node_t *node, gw_http_req_t *r)
{
    char arg[160]; /* "uid=" and a uid of at most 127 bytes */
    json_t *uids = json_array();
    for (int i = 0; json_array_size(uids) <= GW_ONLINE_MAX_QUERY; i++) {
        int len = lws_hdr_fragment_length(r->wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (len <= 0)
            break;
        /* too long for a uid (lws copies no part of it): 400, never silently left out */
        if (len >= (int)sizeof(arg) ||
            lws_hdr_copy_fragment(r->wsi, arg, sizeof(arg), WSI_TOKEN_HTTP_URI_ARGS, i) < 0) {
            json_array_append_new(uids, json_null());
            break;
        }
        if (strncmp(arg, "uid=", 4) == 0)
            json_array_append_new(uids, json_string_nocheck(arg + 4));
    }
    gw_api_body_t body;
    if (gw_api_body_uids(uids, gw_api_limits(node), &body) != 0)
        gw_api_error(r, body.status, body.error);
    else
        gw_api_online(node, r, &body);
    gw_api_body_free(&body);
}

/* ---- entry points ---------------------------------------------------------------------------- */

int gw_api_begin(gw_node_t *node, gw_http_req_t *r, const char *path)
{
    gw_metrics.api_requests++;
    r->started_us = gw_now_us();
    r->endpoint = (int)gw_api_endpoint_of(path);
    snprintf(r->path, sizeof(r->path), "%s", path);
    if (!gw_apikeys_enabled(node->apikeys)) {
        gw_api_error(r, 404, "server API disabled (set api_key or api_keys_file)");
        return 0;
    }
    if (gw_api_check_key(node, r, path, gw_api_scope_for(path)) != 0)
        return 0;
    if (strcmp(path, "/api/v1/position") == 0 && !r->is_post) {
        gw_api_position(node, r);
        return 0;
    }
    if (strcmp(path, "/api/v1/info") == 0 && !r->is_post) {
        gw_api_info_op_t *op = gw_malloc(sizeof(*op));
        op->r = r;
        op->node = node;
        r->pending = 1;
        if (gw_registry_list(node, gw_api_on_info, op) != 0)
            gw_api_on_info(op, -ENOTCONN, NULL);
        return 0;
    }
    if (strcmp(path, "/api/v1/online") == 0 && !r->is_post) {
        gw_api_online_get(node, r);
        return 0;
    }
    if (!r->is_post) {
        gw_api_error(r, strncmp(path, "/api/v1/", 8) == 0 ? 405 : 404, "not found or not GET");
        return 0;
    }
    char cl[24];
    if (lws_hdr_copy(r->wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
        strtoull(cl, NULL, 10) > (unsigned long long)node->cfg->api_max_body_bytes) {
        gw_api_error(r, 413, "request body larger than api_max_body_bytes");
        return 0; /* answered before the body is read */
    }
    return 0; /* the body follows */
}

int gw_api_body(gw_node_t *node, gw_http_req_t *r, const void *in, size_t len)
{
    if (r->responded || r->pending)
        return 0; /* answered already (413, 401, ...): the rest of the body is not kept */
    if (r->reqbody.len + len > (size_t)node->cfg->api_max_body_bytes) {
        gw_api_error(r, 413, "request body larger than api_max_body_bytes");
        return 0;
    }
    gw_buf_append(&r->reqbody, in, len);
    return 0;
}

int gw_api_body_done(gw_node_t *node, gw_http_req_t *r)
{
    if (r->responded || r->pending)
        return 0; /* already answered at the headers (bad key, ...) */
    int kind = gw_api_body_kind_of(r->path);
    gw_api_body_t body;
    if (kind < 0) {
        gw_api_error(r, 404, "no such API");
        return 0;
    }
    if (gw_api_body_parse((gw_api_body_kind_t)kind, gw_buf_data(&r->reqbody), r->reqbody.len,
                          gw_api_limits(node), &body) != 0)
        gw_api_error(r, body.status, body.error);
    else if (kind == GW_API_BODY_PUBLISH || kind == GW_API_BODY_BROADCAST)
        gw_api_publish(node, r, &body);
    else if (kind == GW_API_BODY_ONLINE)
        gw_api_online(node, r, &body);
    else
        gw_api_control(node, r, &body);
    gw_api_body_free(&body);
    return 0;
}

int gw_api_detach(gw_http_req_t *r)
{
    return r->pending;
}
