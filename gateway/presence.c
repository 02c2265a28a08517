/* presence.c — who is online in a channel, across nodes: a Redis sorted set per channel that
 * every node keeps fresh for its own subscribers, and join/leave pushes relayed on the channel. */
#include "hub_int.h"

#include "cardgw/log.h"
#include "cardgw/schema.h"

#include <inttypes.h>
#include <stdlib.h>

/* Members are "<uid> <client>" scored by their expiry time (ms); a node refreshes its own every
 * 30 s (GW_PRESENCE_REFRESH_MS, spread over channels by the hub's tick), so the members of a node
 * that died expire on their own. Join and leave travel on the channel as relay frames without an
 * offset (they are not publications and not in history). */
#define GW_PRESENCE_TTL_MS 90000

static void gw_on_presence_write(void *priv, redisReply *r)
{
    (void)priv;
    if (r && r->type == REDIS_REPLY_ERROR)
        gw_warn("presence", "update failed: %s", r->str);
}

void gw_presence_update(gw_hub_t *hub, gw_sub_t *s, int join, int announce)
{
    char key[GW_SCHEMA_KEY_MAX], member[256], score[24], frame[300];
    gw_channel_t *ch = s->ch;
    gw_conn_t *c = s->conn;
    const gw_redis_t *r = gw_channel_redis(hub, ch);
    int mn = snprintf(member, sizeof(member), "%s %s", c->uid, c->cid);
    size_t kn = gw_schema_channel_key(key, sizeof(key), ch->name, ch->n, GW_KEY_PRESENCE);
    if (join) {
        int sn = snprintf(score, sizeof(score), "%" PRIu64, gw_wall_ms() + GW_PRESENCE_TTL_MS);
        const char *argv[] = {"ZADD", key, score, member};
        size_t argvlen[] = {4, kn, (size_t)sn, (size_t)mn};
        gw_redis_command(r, gw_on_presence_write, NULL, 4, argv, argvlen);
    } else {
        const char *argv[] = {"ZREM", key, member};
        size_t argvlen[] = {4, kn, (size_t)mn};
        gw_redis_command(r, gw_on_presence_write, NULL, 3, argv, argvlen);
    }
    if (!announce)
        return;
    size_t fn = gw_schema_presence_frame(frame, sizeof(frame), join, c->uid, c->cid);
    kn = gw_schema_channel_key(key, sizeof(key), ch->name, ch->n, GW_KEY_PUBSUB);
    const char *argv[] = {"PUBLISH", key, frame};
    size_t argvlen[] = {7, kn, fn};
    gw_redis_command(r, gw_on_presence_write, NULL, 3, argv, argvlen);
}

void gw_presence_refresh(gw_hub_t *hub, gw_channel_t *ch)
{
    gw_list_t *it;
    gw_list_foreach(it, &ch->subs)
    {
        gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
        if (s->state == GW_SUB_LIVE)
            gw_presence_update(hub, s, 1, 0);
    }
}

/* A join or leave from any node: every live subscriber but the one it is about gets a push. */
void gw_presence_fanout(gw_channel_t *ch, gw_slice_t uid, gw_slice_t client, int leave)
{
    gw_frame_t *frames[2] = {NULL, NULL};
    gw_client_info_t info = {uid, client};
    gw_list_t *it;
    if (!ch->ns->presence)
        return;
    gw_list_foreach(it, &ch->subs)
    {
        gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
        gw_conn_t *c = s->conn;
        if (s->state != GW_SUB_LIVE ||
            (strlen(c->cid) == client.n && memcmp(c->cid, client.p, client.n) == 0))
            continue;
        if (!frames[c->enc]) {
            gw_buf_t b;
            gw_buf_init(&b, GW_FRAME_HEADROOM);
            gw_proto_enc_join(&b, c->enc, (gw_slice_t){ch->name, ch->n}, &info, leave);
            frames[c->enc] = gw_frame_from_buf(&b, c->enc == GW_ENC_MSGPACK);
        }
        gw_conn_send(c, frames[c->enc]);
    }
    gw_frame_unref(frames[0]);
    gw_frame_unref(frames[1]);
}

/* ---- the presence command ------------------------------------------------------------------- */

static void gw_on_presence(void *priv, redisReply *r)
{
    uint32_t id;
    int ok = r && r->type == REDIS_REPLY_ARRAY;
    gw_conn_t *c = gw_cmd_op_finish(priv, !ok, &id);
    if (!c || !ok)
        return;
    gw_client_info_t *ci = gw_calloc(r->elements ? r->elements : 1, sizeof(*ci));
    size_t k = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *m = r->element[i];
        const char *sp = m->type == REDIS_REPLY_STRING ? memchr(m->str, ' ', m->len) : NULL;
        if (!sp)
            continue;
        ci[k].uid = (gw_slice_t){m->str, (size_t)(sp - m->str)};
        ci[k].client = (gw_slice_t){sp + 1, m->len - (size_t)(sp + 1 - m->str)};
        k++;
    }
    GW_CONN_SEND(c, gw_proto_enc_presence_ok, id, ci, k);
    free(ci);
}

void gw_hub_presence(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    if (!gw_hub_cmd_subscribed(hub, c, cmd, GW_NEED_PRESENCE))
        return;
    char kp[GW_SCHEMA_KEY_MAX], now[24];
    size_t kpn =
        gw_schema_channel_key(kp, sizeof(kp), cmd->channel.p, cmd->channel.n, GW_KEY_PRESENCE);
    int nn = snprintf(now, sizeof(now), "%" PRIu64, gw_wall_ms());
    const char *argv[] = {"ZRANGEBYSCORE", kp, now, "+inf"};
    size_t argvlen[] = {13, kpn, (size_t)nn, 4};
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    if (gw_redis_command(gw_hub_channel_redis(hub, cmd->channel.p, cmd->channel.n), gw_on_presence,
                         op, 4, argv, argvlen) != 0)
        gw_on_presence(op, NULL);
}
