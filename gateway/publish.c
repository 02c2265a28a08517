/* publish.c — the one publish path (scripts/publish.lua through EVALSHA) used by the server API,
 * client publishes and backends alike; node control messages; client publish and rpc commands. */
#include "hub_int.h"

#include "cardgw/log.h"

#include <inttypes.h>
#include <stdlib.h>

/* ---- command replies that outlive a Redis round trip --------------------------------------- */

gw_cmd_op_t *gw_cmd_op_new(gw_conn_t *c, uint32_t id)
{
    gw_cmd_op_t *op = gw_malloc(sizeof(*op));
    gw_conn_hold(c);
    op->c = c;
    op->id = id;
    op->arg = 0;
    return op;
}

gw_conn_t *gw_cmd_op_done(gw_cmd_op_t *op)
{
    gw_conn_t *c = op->c;
    int open = c->wsi != NULL;
    free(op);
    gw_conn_release(c);
    return open ? c : NULL;
}

/* ---- the publish path -------------------------------------------------------------------------
 */

typedef struct {
    gw_publish_cb cb;
    void *priv;
} gw_pub_op_t;

static void gw_on_publish(void *priv, redisReply *r)
{
    gw_pub_op_t *op = priv;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_STRING)
        op->cb(op->priv, GW_ERR_UNAVAILABLE, NULL, 0);
    else
        op->cb(op->priv, 0, r->element[1]->str, (uint64_t)r->element[0]->integer);
    free(op);
}

int gw_hub_publish(gw_hub_t *hub, const char *ch, size_t n, gw_data_t data, const char *from,
                   gw_publish_cb cb, void *priv)
{
    size_t nslen;
    char km[GW_PROTO_MAX_CHANNEL + 16], kx[GW_PROTO_MAX_CHANNEL + 16],
        kc[GW_PROTO_MAX_CHANNEL + 16];
    char size[16], ttl[16], mttl[16];
    if (!gw_proto_channel_valid(ch, n, &nslen))
        return GW_ERR_BAD_CHANNEL;
    const gw_namespace_t *ns = gw_config_namespace(hub->node->cfg, ch, nslen);
    if (!ns)
        return GW_ERR_UNKNOWN_NAMESPACE;
    int sn = snprintf(size, sizeof(size), "%d", ns->history_size);
    int tn = snprintf(ttl, sizeof(ttl), "%d", GW_MAX(ns->history_ttl_s, 1));
    int mn = snprintf(mttl, sizeof(mttl), "%u", gw_hub_meta_ttl(ns));
    const char *argv[] = {"3",
                          km,
                          kx,
                          kc,
                          (const char *)data.p,
                          data.fmt == GW_DATA_JSON ? "j" : "m",
                          from ? from : "",
                          size,
                          ttl,
                          mttl};
    size_t argvlen[] = {1,
                        gw_hub_key(km, sizeof(km), ch, n, ":m"),
                        gw_hub_key(kx, sizeof(kx), ch, n, ":x"),
                        gw_hub_key(kc, sizeof(kc), ch, n, ""),
                        data.n,
                        1,
                        from ? strlen(from) : 0,
                        (size_t)sn,
                        (size_t)tn,
                        (size_t)mn};
    gw_pub_op_t *op = gw_malloc(sizeof(*op));
    op->cb = cb;
    op->priv = priv;
    if (gw_broker_eval(hub->node->broker, &hub->publish_script, gw_on_publish, op,
                       (int)GW_ARRAY_SIZE(argv), argv, argvlen) != 0) {
        free(op);
        return GW_ERR_UNAVAILABLE;
    }
    return 0;
}

static void gw_on_control_reply(void *priv, redisReply *r)
{
    gw_pub_op_t *op = priv;
    if (!r || r->type != REDIS_REPLY_INTEGER)
        op->cb(op->priv, GW_ERR_UNAVAILABLE, NULL, 0);
    else
        op->cb(op->priv, 0, "", (uint64_t)r->integer);
    free(op);
}

int gw_hub_control(gw_hub_t *hub, const char *msg, size_t n, gw_publish_cb cb, void *priv)
{
    const char *argv[] = {"PUBLISH", GW_CTL_CHANNEL, msg};
    size_t argvlen[] = {7, strlen(GW_CTL_CHANNEL), n};
    gw_pub_op_t *op = gw_malloc(sizeof(*op));
    op->cb = cb;
    op->priv = priv;
    if (gw_broker_command_argv(hub->node->broker, gw_on_control_reply, op, 3, argv, argvlen) != 0) {
        free(op);
        return GW_ERR_UNAVAILABLE;
    }
    return 0;
}

/* ---- client publish
 * ------------------------------------------------------------------------------ */

static void gw_on_client_published(void *priv, int err, const char *epoch, uint64_t offset)
{
    gw_cmd_op_t *op = priv;
    uint32_t id = op->id;
    gw_conn_t *c = gw_cmd_op_done(op);
    if (!c)
        return;
    if (err) {
        gw_conn_reply_error(c, id, err, "redis unavailable, retry");
        return;
    }
    gw_buf_t b;
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    gw_proto_enc_publish_ok(&b, c->enc, id, (gw_slice_t){epoch, strlen(epoch)}, offset);
    gw_conn_send_buf(c, &b);
}

/* Publishing needs the namespace's permission and, so that membership rules hold for writers
 * too, a live subscription to the channel. */
void gw_hub_client_publish(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    const gw_namespace_t *ns = gw_hub_cmd_namespace(hub, c, cmd);
    if (!ns)
        return;
    gw_sub_t *s = gw_hub_find_sub(c, cmd->channel.p, cmd->channel.n);
    if (!ns->publish || !s || s->state != GW_SUB_LIVE) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_PERMISSION, "permission denied");
        return;
    }
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    int rc = gw_hub_publish(hub, cmd->channel.p, cmd->channel.n, cmd->data, c->uid,
                            gw_on_client_published, op);
    if (rc) {
        gw_cmd_op_done(op);
        gw_conn_reply_error(c, cmd->id, rc, "redis unavailable, retry");
    }
}

/* ---- rpc
 * --------------------------------------------------------------------------------------------- */

static void gw_on_rpc(void *priv, redisReply *r)
{
    gw_cmd_op_t *op = priv;
    uint32_t id = op->id;
    gw_conn_t *c = gw_cmd_op_done(op);
    if (!c)
        return;
    if (!r || r->type != REDIS_REPLY_STRING || r->len > 255) {
        gw_conn_reply_error(c, id, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        return;
    }
    /* the result is the inbox entry id, as a msgpack str */
    uint8_t mp[2 + 255];
    size_t h = 0;
    if (r->len < 32) {
        mp[h++] = (uint8_t)(0xa0 | r->len);
    } else {
        mp[h++] = 0xd9;
        mp[h++] = (uint8_t)r->len;
    }
    memcpy(mp + h, r->str, r->len);
    gw_buf_t b;
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    gw_proto_enc_rpc_ok(&b, c->enc, id, (gw_data_t){GW_DATA_MSGPACK, mp, h + r->len});
    gw_conn_send_buf(c, &b);
}

/* rpc: appended to the backend's inbox stream (consumed with a consumer group); the reply is the
 * entry id. Answers, if any, come back as publications on the user's channel. */
/* Whether method (NUL-terminated) is in the comma-separated allowlist (empty: every method). */
static int gw_rpc_allowed(const char *list, const char *method, size_t n)
{
    size_t len = strlen(list);
    if (len == 0)
        return 1;
    for (size_t i = 0; i <= len;) {
        size_t j = i, a = i, b;
        while (j < len && list[j] != ',')
            j++;
        for (b = j; a < b && (list[a] == ' ' || list[a] == '\t');)
            a++;
        while (b > a && (list[b - 1] == ' ' || list[b - 1] == '\t'))
            b--;
        if (b - a == n && memcmp(list + a, method, n) == 0)
            return 1;
        i = j + 1;
    }
    return 0;
}

void gw_hub_rpc(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    if (!gw_rpc_allowed(hub->node->cfg->rpc_methods, cmd->method.p, cmd->method.n)) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_METHOD_NOT_FOUND, "method not found");
        return;
    }
    const char *argv[] = {"XADD",    "cardgw:inbox",
                          "MAXLEN",  "~",
                          "1000000", "*",
                          "uid",     c->uid,
                          "client",  c->cid,
                          "node",    hub->node->node_id,
                          "method",  cmd->method.p,
                          "data",    (const char *)cmd->data.p};
    size_t argvlen[GW_ARRAY_SIZE(argv)];
    for (size_t i = 0; i < GW_ARRAY_SIZE(argv) - 1; i++)
        argvlen[i] = strlen(argv[i]);
    argvlen[GW_ARRAY_SIZE(argv) - 1] = cmd->data.n;
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    if (gw_broker_command_argv(hub->node->broker, gw_on_rpc, op, (int)GW_ARRAY_SIZE(argv), argv,
                               argvlen) != 0)
        gw_on_rpc(op, NULL);
}
