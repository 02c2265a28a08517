/* registry.c — the cluster view: each node refreshes one field of the GW_SCHEMA_NODES hash (its
 * counts as JSON, with an expiry) and reads the whole hash for GET /api/v1/info. */
#include "cardgw/registry.h"
#include "cardgw/broker.h"
#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/node.h"
#include "cardgw/schema.h"

#include <errno.h>
#include <stdlib.h>

#define GW_REGISTRY_PURGE_MS 60000 /* entries expired this long ago are deleted by readers */

struct gw_registry {
    gw_node_t *node;
    uv_timer_t timer;
    uint64_t started_at; /* wall ms */
    int left;
};

static void gw_registry_on_write(void *priv, redisReply *r)
{
    (void)priv;
    if (r && r->type == REDIS_REPLY_ERROR)
        gw_warn("registry", "node entry not written: %s", r->str);
}

/* Writes this node's entry: state "up" (or "draining"), live until expires_at (wall ms). */
static void gw_registry_write(gw_registry_t *reg, const char *state, uint64_t expires_at)
{
    gw_node_t *node = reg->node;
    char why[160];
    int all_ready = gw_node_redis_ready(node, why, sizeof(why));
    json_t *e = json_pack(
        "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:I,s:s}", "id", node->node_id, "version",
        GW_VERSION, "state", state, "started_at", (json_int_t)reg->started_at, "seen_at",
        (json_int_t)gw_wall_ms(), "expires_at", (json_int_t)expires_at, "connections",
        (json_int_t)gw_metrics.connections_open, "channels", (json_int_t)gw_metrics.channels,
        "subscriptions", (json_int_t)gw_metrics.subscriptions, "redis_ready",
        node->broker && gw_broker_ready(node->broker), "shards", (json_int_t)node->nshards,
        "redis_down", all_ready ? "" : why);
    char *s = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(e);
    if (!s)
        return; /* out of memory in jansson: the next tick tries again */
    const char *argv[] = {"HSET", GW_SCHEMA_NODES, node->node_id, s};
    size_t argvlen[] = {4, strlen(GW_SCHEMA_NODES), strlen(node->node_id), strlen(s)};
    gw_redis_command(node->redis, gw_registry_on_write, NULL, 4, argv, argvlen);
    free(s);
}

static void gw_registry_tick(uv_timer_t *t)
{
    gw_registry_t *reg = t->data;
    uint64_t iv = (uint64_t)reg->node->cfg->node_registry_interval_ms;
    gw_registry_write(reg, "up", gw_wall_ms() + iv * GW_REGISTRY_TTL_FACTOR);
}

gw_registry_t *gw_registry_new(gw_node_t *node)
{
    gw_registry_t *reg = gw_calloc(1, sizeof(*reg));
    uint64_t iv = (uint64_t)node->cfg->node_registry_interval_ms;
    reg->node = node;
    reg->started_at = gw_wall_ms();
    uv_timer_init(node->loop, &reg->timer);
    reg->timer.data = reg;
    /* the first write soon after start (Redis is being connected), then every interval */
    uv_timer_start(&reg->timer, gw_registry_tick, GW_MIN(iv, 200), iv);
    return reg;
}

void gw_registry_leave(gw_registry_t *reg)
{
    if (!reg || reg->left)
        return;
    reg->left = 1;
    uv_timer_stop(&reg->timer);
    gw_registry_write(reg, "draining",
                      gw_wall_ms() + (uint64_t)reg->node->cfg->shutdown_timeout_ms);
}

static void gw_registry_on_close(uv_handle_t *h)
{
    free(h->data);
}

void gw_registry_free(gw_registry_t *reg)
{
    if (reg)
        uv_close((uv_handle_t *)&reg->timer, gw_registry_on_close);
}

/* ---- reading the cluster view -----------------------------------------------------------------
 */

typedef struct {
    const gw_node_t *node;
    gw_registry_list_cb cb;
    void *priv;
} gw_list_op_t;

static int gw_registry_by_id(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "id"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "id"));
    return strcmp(x ? x : "", y ? y : "");
}

static void gw_registry_on_list(void *priv, redisReply *r)
{
    gw_list_op_t *op = priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        op->cb(op->priv, -EIO, NULL);
        free(op);
        return;
    }
    uint64_t now = gw_wall_ms();
    size_t n = 0;
    json_t **live = gw_calloc(r->elements / 2 + 1, sizeof(*live));
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        json_t *e = json_loadb(v->str, v->len, 0, NULL);
        json_int_t exp = json_integer_value(json_object_get(e, "expires_at"));
        if (e && json_is_object(e) && (uint64_t)exp > now) {
            live[n++] = e;
            continue;
        }
        json_decref(e);
        if ((uint64_t)exp + GW_REGISTRY_PURGE_MS < now) { /* long gone (or not ours): forget it */
            const char *argv[] = {"HDEL", GW_SCHEMA_NODES, k->str};
            size_t argvlen[] = {4, strlen(GW_SCHEMA_NODES), k->len};
            gw_redis_command(op->node->redis, gw_registry_on_write, NULL, 3, argv, argvlen);
        }
    }
    qsort(live, n, sizeof(*live), gw_registry_by_id);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, live[i]);
    free(live);
    op->cb(op->priv, 0, arr);
    json_decref(arr);
    free(op);
}

int gw_registry_list(const gw_node_t *node, gw_registry_list_cb cb, void *priv)
{
    const char *argv[] = {"HGETALL", GW_SCHEMA_NODES};
    size_t argvlen[] = {7, strlen(GW_SCHEMA_NODES)};
    gw_list_op_t *op = gw_malloc(sizeof(*op));
    op->node = node;
    op->cb = cb;
    op->priv = priv;
    if (gw_redis_command(node->redis, gw_registry_on_list, op, 2, argv, argvlen) != 0) {
        free(op);
        return -ENOTCONN;
    }
    return 0;
}
