/* publish.c — the one publish path (scripts/publish.lua through EVALSHA) used by the server API,
 * client publishes and backends alike; node control messages; the client's publish command. */
#include "hub_int.h"

#include "cardgw/log.h"
#include "cardgw/schema.h"

#include <inttypes.h>
#include <stdlib.h>

/* ---- the publish path ------------------------------------------------------------------------ */

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
    char km[GW_SCHEMA_KEY_MAX], kx[GW_SCHEMA_KEY_MAX], kc[GW_SCHEMA_KEY_MAX];
    char size[16], ttl[16], mttl[16], ocap[16];
    if (!gw_proto_channel_valid(ch, n, &nslen))
        return GW_ERR_BAD_CHANNEL;
    const gw_namespace_t *ns = gw_config_namespace(hub->cfg, ch, nslen);
    if (!ns)
        return GW_ERR_UNKNOWN_NAMESPACE;
    int sn = snprintf(size, sizeof(size), "%d", ns->history_size);
    int tn = snprintf(ttl, sizeof(ttl), "%d", GW_MAX(ns->history_ttl_s, 1));
    int mn = snprintf(mttl, sizeof(mttl), "%u", gw_hub_meta_ttl(ns));
    int on = snprintf(ocap, sizeof(ocap), "%d", ns->offline_size > 0 ? hub->offline_cap : 0);
    const char *argv[] = {"4",
                          km,
                          kx,
                          kc,
                          GW_SCHEMA_OFFLINE,
                          (const char *)data.p,
                          data.fmt == GW_DATA_JSON ? "j" : "m",
                          from ? from : "",
                          size,
                          ttl,
                          mttl,
                          hub->cfg->redis_restart_keeps_writes ? "1" : "0",
                          ocap,
                          hub->cfg->relay_timestamps ? "1" : "0"};
    size_t argvlen[] = {1,
                        gw_schema_channel_key(km, sizeof(km), ch, n, GW_KEY_META),
                        gw_schema_channel_key(kx, sizeof(kx), ch, n, GW_KEY_STREAM),
                        gw_schema_channel_key(kc, sizeof(kc), ch, n, GW_KEY_PUBSUB),
                        strlen(GW_SCHEMA_OFFLINE),
                        data.n,
                        1,
                        from ? strlen(from) : 0,
                        (size_t)sn,
                        (size_t)tn,
                        (size_t)mn,
                        1,
                        (size_t)on,
                        1};
    gw_pub_op_t *op = gw_malloc(sizeof(*op));
    op->cb = cb;
    op->priv = priv;
    if (gw_redis_eval(gw_hub_channel_redis(hub, ch, n), &hub->publish_script, gw_on_publish, op,
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

int gw_hub_control(gw_hub_t *hub, const char *uid, const char *channel, gw_publish_cb cb,
                   void *priv)
{
    char msg[GW_SCHEMA_CONTROL_MAX];
    size_t n = gw_schema_control(msg, sizeof(msg), uid, channel);
    if (n == 0)
        return GW_ERR_BAD_REQUEST;
    const char *argv[] = {"PUBLISH", GW_SCHEMA_CTL_CHANNEL, msg};
    size_t argvlen[] = {7, strlen(GW_SCHEMA_CTL_CHANNEL), n};
    gw_pub_op_t *op = gw_malloc(sizeof(*op));
    op->cb = cb;
    op->priv = priv;
    if (gw_redis_command(hub->redis, gw_on_control_reply, op, 3, argv, argvlen) != 0) {
        free(op);
        return GW_ERR_UNAVAILABLE;
    }
    return 0;
}

/* ---- client publish -------------------------------------------------------------------------- */

static void gw_on_client_published(void *priv, int err, const char *epoch, uint64_t offset)
{
    uint32_t id;
    gw_conn_t *c = gw_cmd_op_finish(priv, err != 0, &id); /* err: GW_ERR_UNAVAILABLE */
    if (!c)
        return;
    GW_CONN_SEND(c, gw_proto_enc_publish_ok, id, (gw_slice_t){epoch, strlen(epoch)}, offset);
}

/* Publishing needs the namespace's permission and, so that membership rules hold for writers
 * too, a live subscription to the channel. */
void gw_hub_client_publish(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    if (!gw_hub_cmd_subscribed(hub, c, cmd, GW_NEED_PUBLISH))
        return;
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    int rc = gw_hub_publish(hub, cmd->channel.p, cmd->channel.n, cmd->data, c->uid,
                            gw_on_client_published, op);
    if (rc) {
        gw_cmd_op_done(op);
        gw_conn_reply_error(c, cmd->id, rc, "redis unavailable, retry");
    }
}
