/* subscription.c — a subscription's life: authorised (namespace rule, membership set), attached to
 * its channel, positioned or recovered at an exact offset, live, unsubscribed or kicked. */
#include "hub_int.h"

#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/schema.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

/* ---- subscriptions --------------------------------------------------------------------------- */

static void gw_sub_clear_pending(gw_sub_t *s)
{
    for (uint32_t i = 0; i < s->npend; i++)
        gw_frame_unref(s->pend[i].frame);
    free(s->pend);
    s->pend = NULL;
    s->npend = s->cappend = 0;
}

static void gw_sub_free(gw_sub_t *s)
{
    gw_held_free(s->held);
    gw_sub_clear_pending(s);
    free(s->since_epoch);
    free(s->name);
    free(s);
}

/* Unlinks s from its connection and channel. If an asynchronous read still refers to it, it is
 * marked dead and freed when that read completes. */
static void gw_sub_remove(gw_hub_t *hub, gw_sub_t *s)
{
    gw_list_remove(&s->conn_link);
    s->conn->nsubs--;
    gw_metrics.subscriptions--;
    gw_metrics.ns[s->nsi].subscriptions--;
    gw_channel_t *ch = s->ch;
    if (ch && s->state == GW_SUB_LIVE && ch->ns->presence)
        gw_presence_update(hub, s, 0, ch->ns->join_leave);
    if (ch) {
        gw_list_remove(&s->chan_link);
        ch->nsubs--;
        s->ch = NULL;
        gw_channel_maybe_release(hub, ch);
    }
    if (s->op_pending)
        s->dead = 1;
    else
        gw_sub_free(s);
}

gw_sub_t *gw_hub_find_sub(gw_conn_t *c, const char *name, size_t n)
{
    gw_list_t *it;
    gw_list_foreach(it, &c->subs)
    {
        gw_sub_t *s = gw_container_of(it, gw_sub_t, conn_link);
        if (strlen(s->name) == n && memcmp(s->name, name, n) == 0)
            return s;
    }
    return NULL;
}

/* The subscribe's reply is queued: its time goes to cardgw_subscribe_duration_seconds (once). */
static void gw_sub_answered(gw_sub_t *s)
{
    if (s->started_us) {
        gw_hist_since(&gw_metrics.subscribe_time, s->started_us);
        s->started_us = 0;
    }
}

static void gw_sub_fail(gw_hub_t *hub, gw_sub_t *s, int code, const char *msg)
{
    gw_conn_reply_error(s->conn, s->cmd_id, code, msg);
    gw_sub_answered(s);
    gw_sub_release_held(hub, s);
    gw_sub_remove(hub, s);
}

/* Server-side unsubscribe (membership removed, insufficient state): an `unsub` push to a live
 * subscription, an error reply to one still being set up; then it is forgotten. */
void gw_sub_kick(gw_hub_t *hub, gw_sub_t *s, int code, const char *reason)
{
    gw_conn_t *c = s->conn;
    if (s->state == GW_SUB_LIVE) {
        GW_CONN_SEND(c, gw_proto_enc_unsub, (gw_slice_t){s->name, strlen(s->name)}, code, reason);
        gw_sub_remove(hub, s);
    } else {
        gw_sub_fail(hub, s, code, reason);
    }
}

/* The node can no longer promise this channel's subscribers a gapless sequence: every
 * subscription (live or being set up) is told to resubscribe with `since`, which recovers from
 * history or answers recovered:false. */
void gw_channel_insufficient(gw_hub_t *hub, gw_channel_t *ch, const char *why)
{
    gw_list_t *it, *tmp;
    gw_logf(GW_LOG_WARN, "hub", (&(gw_log_fields_t){.channel = ch->name}),
            "insufficient state (%s): %u subscriptions told to resubscribe", why, ch->nsubs);
    ch->op_refs++; /* keep the channel while its subscribers go */
    gw_list_foreach_safe(it, tmp, &ch->subs)
    {
        gw_sub_kick(hub, gw_container_of(it, gw_sub_t, chan_link), GW_ERR_INSUFFICIENT_STATE,
                    "insufficient state: resubscribe with since");
    }
    ch->op_refs--;
}

/* ---- joining at a position, recovering ------------------------------------------------------- */

/* Data bytes of publications (as stored; what a reply carries is about as large). */
size_t gw_pubs_bytes(const gw_pub_t *p, size_t n)
{
    size_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += p[i].data.n + p[i].from.n;
    return sum;
}

/* Whether h proves the client's position (since) and holds everything after it, within the
 * recovery bounds (recovery_max_publications, recovery_max_bytes). */
static int gw_recovered(const gw_config_t *cfg, const gw_sub_t *s, const gw_history_t *h)
{
    /* an offset ahead of the top in the same epoch is a position this channel never had */
    if (strcmp(s->since_epoch, h->epoch) != 0 || s->since_offset > h->top)
        return 0;
    uint64_t want = h->top - s->since_offset;
    if (want == 0)
        return 1;
    if (want > (uint64_t)cfg->recovery_max_publications || h->npubs != want ||
        gw_pubs_bytes(h->pubs, h->npubs) > (size_t)cfg->recovery_max_bytes)
        return 0; /* too much to resend: the client reloads its snapshot instead */
    for (size_t i = 0; i < h->npubs; i++)
        if (h->pubs[i].offset != s->since_offset + 1 + i)
            return 0;
    return 1;
}

/* The position (and, with since, the missed publications) arrived: reply, then deliver what was
 * buffered past it, in order; the subscription is live from here, in the same loop turn. */
static void gw_on_position(void *priv, const gw_history_t *h)
{
    gw_sub_t *s = priv;
    s->op_pending = 0;
    if (s->dead) {
        gw_sub_free(s);
        return;
    }
    gw_conn_t *c = s->conn;
    gw_hub_t *hub = c->node->hub;
    gw_channel_t *ch = s->ch;
    if (!h) {
        gw_sub_fail(hub, s, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        return;
    }
    if (!ch->synced && !ch->filling) {
        snprintf(ch->epoch, sizeof(ch->epoch), "%s", h->epoch);
        ch->last = h->top;
        ch->synced = 1;
    }
    int recovered = s->has_since && gw_recovered(hub->cfg, s, h);
    gw_buf_t b;
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    gw_proto_enc_position_ok(&b, c->enc, s->cmd_id, (gw_slice_t){h->epoch, strlen(h->epoch)},
                             h->top, s->has_since, recovered, recovered ? h->pubs : NULL,
                             recovered ? h->npubs : 0);
    if (recovered && !gw_conn_fits_buf(c, &b)) {
        /* recovery is never the reason a connection closes: with replies already queued the
         * backlog does not fit the send queue, so the client reloads its snapshot instead */
        gw_buf_reset(&b);
        recovered = 0;
        gw_proto_enc_position_ok(&b, c->enc, s->cmd_id, (gw_slice_t){h->epoch, strlen(h->epoch)},
                                 h->top, 1, 0, NULL, 0);
    }
    gw_conn_send_buf(c, &b);
    gw_sub_answered(s);
    s->pos = h->top;
    s->state = GW_SUB_LIVE;
    int gap = 0;
    uint64_t sent = 0;
    for (uint32_t i = 0; i < s->npend && !gap; i++) {
        int r = gw_sub_deliver(s, s->pend[i].offset, s->pend[i].frame);
        gap = r < 0;
        sent += r > 0;
    }
    gw_channel_count_deliveries(ch, sent);
    gw_sub_clear_pending(s);
    gw_sub_release_held(hub, s);
    if (gap) {
        gw_sub_kick(hub, s, GW_ERR_INSUFFICIENT_STATE,
                    "insufficient state: resubscribe with since");
        return;
    }
    if (ch->ns->presence)
        gw_presence_update(hub, s, 1, ch->ns->join_leave);
}

void gw_sub_start_positioning(gw_hub_t *hub, gw_sub_t *s)
{
    gw_channel_t *ch = s->ch;
    s->state = GW_SUB_POSITIONING;
    s->op_pending = 1;
    int rc = s->has_since
                 /* no more than recovery_max_bytes leaves Redis: past it recovered is false */
                 ? gw_history_read_max(gw_channel_redis(hub, ch), ch->name, ch->n, GW_HIST_AFTER,
                                       s->since_offset,
                                       (uint32_t)hub->cfg->recovery_max_publications + 1,
                                       (uint32_t)hub->cfg->meta_read_ttl_s,
                                       (size_t)hub->cfg->recovery_max_bytes, gw_on_position, s)
                 : gw_history_read(gw_channel_redis(hub, ch), ch->name, ch->n, GW_HIST_POSITION, 0,
                                   0, (uint32_t)hub->cfg->meta_read_ttl_s, gw_on_position, s);
    if (rc != 0)
        gw_on_position(s, NULL);
}

/* The subscription is authorised: link it to its channel and make sure Redis sends us the
 * channel before the position is read (so nothing published after the read can be missed). */
static void gw_sub_attach(gw_hub_t *hub, gw_sub_t *s, const gw_namespace_t *ns)
{
    gw_channel_t *ch = gw_channel_get(hub, s->name, strlen(s->name), ns);
    s->ch = ch;
    gw_list_insert_tail(&ch->subs, &s->chan_link);
    ch->nsubs++;
    s->state = GW_SUB_WAITING;
    if (ch->rs == GW_RS_SUBSCRIBED)
        gw_sub_start_positioning(hub, s);
    else if (ch->rs == GW_RS_NONE && gw_redis_connected(gw_channel_redis(hub, ch)))
        gw_channel_subscribe(hub, ch);
    else if (ch->rs == GW_RS_NONE)
        gw_sub_fail(hub, s, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
    /* SUBSCRIBING: positioning starts on Redis's confirmation; UNSUBSCRIBING: a SUBSCRIBE is
     * sent once the UNSUBSCRIBE is confirmed */
}

static void gw_on_membership(void *priv, redisReply *r)
{
    gw_sub_t *s = priv;
    s->op_pending = 0;
    if (s->dead) {
        gw_sub_free(s);
        return;
    }
    gw_hub_t *hub = s->conn->node->hub;
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        gw_sub_fail(hub, s, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
    } else if (r->integer != 1) {
        gw_sub_fail(hub, s, GW_ERR_PERMISSION, "permission denied");
    } else {
        size_t nslen = (size_t)(strchr(s->name, ':') - s->name);
        gw_sub_attach(hub, s, gw_config_namespace(hub->cfg, s->name, nslen));
    }
}

/* Starts a subscribe that arrived at started_us. Returns 1 when a subscription now answers it (and
 * times it), 0 when it was answered here. */
static int gw_sub_begin(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd, uint64_t started_us)
{
    const gw_config_t *cfg = hub->cfg;
    const gw_namespace_t *ns = gw_hub_cmd_namespace(hub, c, cmd);
    if (!ns)
        return 0;
    size_t nslen = strlen(ns->name);
    const char *id = cmd->channel.p + nslen + 1;
    size_t idlen = cmd->channel.n - nslen - 1;
    if (gw_hub_find_sub(c, cmd->channel.p, cmd->channel.n)) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_ALREADY_SUBSCRIBED, "already subscribed");
        return 0;
    }
    if (c->nsubs >= (uint32_t)cfg->max_subscriptions) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_LIMIT, "too many subscriptions");
        return 0;
    }
    if (ns->subscribe == GW_NS_SUB_OWNER &&
        (strlen(c->uid) != idlen || memcmp(c->uid, id, idlen))) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_PERMISSION, "permission denied");
        return 0;
    }
    if (!gw_redis_connected(hub->redis) ||
        !gw_redis_connected(gw_hub_channel_redis(hub, cmd->channel.p, cmd->channel.n))) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        return 0;
    }
    gw_sub_t *s = gw_calloc(1, sizeof(*s));
    s->conn = c;
    s->name = gw_strndup(cmd->channel.p, cmd->channel.n);
    s->cmd_id = cmd->id;
    s->nsi = (uint8_t)(ns - cfg->namespaces);
    s->started_us = started_us ? started_us : 1;
    if (cmd->has_since) {
        s->has_since = 1;
        s->since_epoch = gw_strndup(cmd->since_epoch.p, cmd->since_epoch.n);
        s->since_offset = cmd->since_offset;
    }
    gw_list_init(&s->chan_link);
    gw_list_insert_tail(&c->subs, &s->conn_link);
    c->nsubs++;
    gw_metrics.subscriptions++;
    gw_metrics.ns[s->nsi].subscriptions++;
    if (ns->subscribe != GW_NS_SUB_MEMBERS) {
        gw_sub_attach(hub, s, ns);
        return 1;
    }
    char key[GW_SCHEMA_KEY_MAX];
    size_t kn = gw_schema_members_key(key, sizeof(key), cmd->channel.p, nslen, id, idlen);
    const char *argv[] = {"SISMEMBER", key, c->uid};
    size_t argvlen[] = {9, kn, strlen(c->uid)};
    s->op_pending = 1;
    if (gw_redis_command(hub->redis, gw_on_membership, s, 3, argv, argvlen) != 0)
        gw_on_membership(s, NULL);
    return 1;
}

void gw_hub_subscribe(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    uint64_t started = gw_now_us();
    if (!gw_sub_begin(hub, c, cmd, started))
        gw_hist_since(&gw_metrics.subscribe_time, started);
}

void gw_hub_unsubscribe(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    gw_sub_t *s = gw_hub_find_sub(c, cmd->channel.p, cmd->channel.n);
    if (!s || s->state != GW_SUB_LIVE) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_NOT_SUBSCRIBED, "not subscribed");
        return;
    }
    gw_sub_remove(hub, s);
    gw_conn_reply_ok(c, cmd->id);
}

void gw_hub_conn_closed(gw_hub_t *hub, gw_conn_t *c)
{
    gw_list_t *it, *tmp;
    gw_list_foreach_safe(it, tmp, &c->subs)
    {
        gw_sub_remove(hub, gw_container_of(it, gw_sub_t, conn_link));
    }
    gw_rpc_waits_conn_closed(hub->rpc_waits, c);
}
