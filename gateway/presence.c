/* presence.c — who is online in a channel, across nodes: a Redis sorted set per channel that
 * every node keeps fresh for its own subscribers, and join/leave pushes relayed on the channel. */
#include "hub_int.h"

#include "cardgw/log.h"
#include "cardgw/schema.h"

#include <inttypes.h>
#include <stdlib.h>

/* Members are "<uid> <client>[ <info>]" scored by their expiry time (ms, now + presence_ttl_ms);
 * a node refreshes its own every presence_ttl_ms / 3 (spread over channels by the hub's tick), so
 * the members of a node that died expire on their own. Join and leave travel on the channel as
 * relay frames without an offset (they are not publications and not in history). */

static void gw_on_presence_write(void *priv, redisReply *r)
{
    (void)priv;
    if (r && r->type == REDIS_REPLY_ERROR)
        gw_warn("presence", "update failed: %s", r->str);
}

void gw_presence_update(gw_hub_t *hub, gw_sub_t *s, int join, int announce)
{
    char key[GW_SCHEMA_KEY_MAX], member[GW_SCHEMA_PRESENCE_MAX], score[24];
    char frame[GW_SCHEMA_PRESENCE_MAX + 16];
    gw_channel_t *ch = s->ch;
    gw_conn_t *c = s->conn;
    const gw_redis_t *r = gw_channel_redis(hub, ch);
    size_t mn = gw_schema_presence_member(member, sizeof(member), c->uid, c->cid, c->info);
    size_t kn = gw_schema_channel_key(key, sizeof(key), ch->name, ch->n, GW_KEY_PRESENCE);
    if (join) {
        int sn = snprintf(score, sizeof(score), "%" PRIu64,
                          gw_wall_ms() + (uint64_t)hub->cfg->presence_ttl_ms);
        const char *argv[] = {"ZADD", key, score, member};
        size_t argvlen[] = {4, kn, (size_t)sn, mn};
        gw_redis_command(r, gw_on_presence_write, NULL, 4, argv, argvlen);
    } else {
        const char *argv[] = {"ZREM", key, member};
        size_t argvlen[] = {4, kn, mn};
        gw_redis_command(r, gw_on_presence_write, NULL, 3, argv, argvlen);
    }
    if (!announce)
        return;
    size_t fn = gw_schema_presence_frame(frame, sizeof(frame), join, c->uid, c->cid, c->info);
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

void gw_presence_fanout(gw_channel_t *ch, const gw_client_info_t *who, int leave)
{
    gw_frame_t *frames[2] = {NULL, NULL};
    gw_slice_t client = who->client;
    gw_list_t *it;
    if (!ch->ns->presence || !ch->ns->join_leave)
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
            gw_proto_enc_join(&b, c->enc, (gw_slice_t){ch->name, ch->n}, who, leave);
            frames[c->enc] = gw_frame_from_buf(&b, c->enc == GW_ENC_MSGPACK);
        }
        gw_conn_send(c, frames[c->enc]);
    }
    gw_frame_unref(frames[0]);
    gw_frame_unref(frames[1]);
}

/* ---- the presence commands ------------------------------------------------------------------ */

static int gw_cmp_uid(const void *a, const void *b)
{
    const gw_client_info_t *x = a, *y = b;
    size_t n = GW_MIN(x->uid.n, y->uid.n);
    int d = memcmp(x->uid.p, y->uid.p, n);
    return d ? d : (x->uid.n > y->uid.n) - (x->uid.n < y->uid.n);
}

/* Groups ci[0..n) (sorted by uid) into users[]; returns how many. */
static size_t gw_presence_by_user(const gw_client_info_t *ci, size_t n, gw_user_info_t *users)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k && gw_cmp_uid(&ci[i], &ci[i - 1]) == 0) {
            users[k - 1].connections++;
            if (!users[k - 1].info.n)
                users[k - 1].info = ci[i].info;
            continue;
        }
        users[k++] = (gw_user_info_t){ci[i].uid, 1, ci[i].info};
    }
    return k;
}

static void gw_on_presence(void *priv, redisReply *r)
{
    uint32_t id;
    int ok = r && r->type == REDIS_REPLY_ARRAY;
    gw_cmd_op_t *op = priv;
    gw_cmd_kind_t kind = (gw_cmd_kind_t)op->arg;
    gw_conn_t *c = gw_cmd_op_finish(priv, !ok, &id);
    if (!c || !ok)
        return;
    gw_client_info_t *ci = gw_calloc(r->elements ? r->elements : 1, sizeof(*ci));
    size_t k = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *m = r->element[i];
        if (m->type == REDIS_REPLY_STRING &&
            gw_schema_parse_presence_member(m->str, m->len, &ci[k]) == 0)
            k++;
    }
    if (kind == GW_CMD_PRESENCE) {
        GW_CONN_SEND(c, gw_proto_enc_presence_ok, id, ci, k);
    } else {
        qsort(ci, k, sizeof(*ci), gw_cmp_uid);
        gw_user_info_t *users = gw_calloc(k ? k : 1, sizeof(*users));
        size_t nu = gw_presence_by_user(ci, k, users);
        if (kind == GW_CMD_PRESENCE_USERS)
            GW_CONN_SEND(c, gw_proto_enc_presence_users_ok, id, users, nu);
        else
            GW_CONN_SEND(c, gw_proto_enc_presence_stats_ok, id, k, nu);
        free(users);
    }
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
    op->arg = (uint32_t)cmd->kind;
    if (gw_redis_command(gw_hub_channel_redis(hub, cmd->channel.p, cmd->channel.n), gw_on_presence,
                         op, 4, argv, argvlen) != 0)
        gw_on_presence(op, NULL);
}
