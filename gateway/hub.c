/* hub.c — the node's channels: the table of channels with local subscribers, one Redis SUBSCRIBE
 * per channel per node, what Redis's pub/sub connection reports, node control messages. */
#include "hub_int.h"

#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/schema.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "publish_lua.h" /* generated from scripts/publish.lua: gw_publish_lua */

/* ---- channel table ------------------------------------------------------------------------- */

static uint64_t gw_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

gw_channel_t *gw_channel_find(gw_hub_t *hub, const char *name, size_t n)
{
    gw_channel_t *ch = hub->buckets[gw_hash(name, n) & (hub->nbuckets - 1)];
    for (; ch; ch = ch->next)
        if (ch->n == n && memcmp(ch->name, name, n) == 0)
            return ch;
    return NULL;
}

static void gw_table_grow(gw_hub_t *hub)
{
    size_t nb = hub->nbuckets * 2;
    gw_channel_t **b = gw_calloc(nb, sizeof(*b));
    for (size_t i = 0; i < hub->nbuckets; i++)
        for (gw_channel_t *ch = hub->buckets[i], *next; ch; ch = next) {
            next = ch->next;
            size_t j = gw_hash(ch->name, ch->n) & (nb - 1);
            ch->next = b[j];
            b[j] = ch;
        }
    free(hub->buckets);
    hub->buckets = b;
    hub->nbuckets = nb;
}

gw_channel_t *gw_channel_get(gw_hub_t *hub, const char *name, size_t n, const gw_namespace_t *ns)
{
    gw_channel_t *ch = gw_channel_find(hub, name, n);
    if (ch)
        return ch;
    if (hub->nchannels + 1 > hub->nbuckets)
        gw_table_grow(hub);
    ch = gw_calloc(1, sizeof(*ch) + n + 1);
    memcpy(ch->name, name, n);
    ch->n = n;
    ch->ns = ns;
    ch->nsi = (uint8_t)(ns - hub->cfg->namespaces);
    ch->shard = (uint16_t)gw_schema_shard(name, n, hub->nshards);
    ch->held_tail = &ch->held;
    ch->checked_ms = ch->presence_ms = gw_now_ms();
    gw_list_init(&ch->subs);
    size_t j = gw_hash(name, n) & (hub->nbuckets - 1);
    ch->next = hub->buckets[j];
    hub->buckets[j] = ch;
    hub->nchannels++;
    gw_metrics.channels = hub->nchannels;
    return ch;
}

void gw_channel_drop_held(gw_channel_t *ch)
{
    for (gw_held_t *h = ch->held, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    ch->held = NULL;
    ch->held_tail = &ch->held;
}

/* The only place fill_retry changes: hub->nretry counts the channels that have it set. */
void gw_channel_set_retry(gw_hub_t *hub, gw_channel_t *ch, int on)
{
    if (ch->fill_retry == on)
        return;
    ch->fill_retry = (uint8_t)on;
    if (on)
        hub->nretry++;
    else
        hub->nretry--;
}

static void gw_channel_free(gw_hub_t *hub, gw_channel_t *ch)
{
    gw_channel_t **pp = &hub->buckets[gw_hash(ch->name, ch->n) & (hub->nbuckets - 1)];
    while (*pp != ch)
        pp = &(*pp)->next;
    *pp = ch->next;
    hub->nchannels--;
    gw_channel_set_retry(hub, ch, 0);
    gw_metrics.channels = hub->nchannels;
    gw_channel_drop_held(ch);
    gw_presence_cache_free(ch->pcache);
    free(ch);
}

uint32_t gw_hub_meta_ttl(const gw_namespace_t *ns)
{
    return (uint32_t)GW_MAX(ns->history_ttl_s * 2, GW_META_TTL_MIN_S);
}

void gw_channel_subscribe(gw_hub_t *hub, gw_channel_t *ch)
{
    char key[GW_SCHEMA_KEY_MAX];
    size_t kn = gw_schema_channel_key(key, sizeof(key), ch->name, ch->n, GW_KEY_PUBSUB);
    ch->rs = GW_RS_SUBSCRIBING;
    gw_redis_subscribe(gw_channel_redis(hub, ch), key, kn, 1);
}

/* A channel nobody here listens to any more: UNSUBSCRIBE (once Redis has confirmed the
 * SUBSCRIBE), and free it when Redis has confirmed that too and no read refers to it. Never a
 * SUBSCRIBE while an UNSUBSCRIBE is in flight: hiredis would drop the new subscription's
 * callback when the UNSUBSCRIBE reply arrives. */
void gw_channel_maybe_release(gw_hub_t *hub, gw_channel_t *ch)
{
    if (ch->nsubs || ch->op_refs)
        return;
    if (ch->rs == GW_RS_SUBSCRIBED) {
        char key[GW_SCHEMA_KEY_MAX];
        size_t kn = gw_schema_channel_key(key, sizeof(key), ch->name, ch->n, GW_KEY_PUBSUB);
        ch->rs = GW_RS_UNSUBSCRIBING;
        gw_redis_subscribe(gw_channel_redis(hub, ch), key, kn, 0);
    } else if (ch->rs == GW_RS_NONE) {
        gw_channel_free(hub, ch);
    }
}

const gw_redis_t *gw_hub_channel_redis(const gw_hub_t *hub, const char *ch, size_t n)
{
    return hub->shards[gw_schema_shard(ch, n, hub->nshards)];
}

const gw_namespace_t *gw_hub_cmd_namespace(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    size_t nslen;
    const gw_namespace_t *ns = NULL;
    if (!gw_proto_channel_valid(cmd->channel.p, cmd->channel.n, &nslen))
        gw_conn_reply_error(c, cmd->id, GW_ERR_BAD_CHANNEL, "bad channel name");
    else if (!(ns = gw_config_namespace(hub->cfg, cmd->channel.p, nslen)))
        gw_conn_reply_error(c, cmd->id, GW_ERR_UNKNOWN_NAMESPACE, "unknown namespace");
    return ns;
}

const gw_namespace_t *gw_hub_cmd_subscribed(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd,
                                            gw_need_t need)
{
    const gw_namespace_t *ns = gw_hub_cmd_namespace(hub, c, cmd);
    if (!ns)
        return NULL;
    gw_sub_t *s = gw_hub_find_sub(c, cmd->channel.p, cmd->channel.n);
    int live = s && s->state == GW_SUB_LIVE;
    if (need == GW_NEED_SUBSCRIPTION && !live) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_PERMISSION, "subscribe first");
        return NULL;
    }
    if (!live || (need == GW_NEED_PUBLISH && !ns->publish) ||
        (need == GW_NEED_PRESENCE && !ns->presence)) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_PERMISSION, "permission denied");
        return NULL;
    }
    return ns;
}

/* ---- messages from Redis --------------------------------------------------------------------- */

static void gw_hub_kick_conn(gw_conn_t *c, void *ud)
{
    (void)ud;
    gw_conn_disconnect(c, GW_CLOSE_KICKED, "disconnected by server");
}

/* A control message from the server API of any node (gw_hub_control). */
static void gw_hub_on_control(gw_hub_t *hub, const char *p, size_t n)
{
    gw_control_t m;
    if (gw_schema_parse_control(p, n, &m) != 0)
        return;
    if (!m.unsubscribe) {
        gw_node_foreach_user_conn(hub->node, m.uid.p, m.uid.n, gw_hub_kick_conn, NULL);
        return;
    }
    gw_channel_t *ch = gw_channel_find(hub, m.channel.p, m.channel.n);
    if (!ch)
        return;
    gw_list_t *it, *tmp;
    ch->op_refs++; /* keep the channel while its subscribers are removed */
    gw_list_foreach_safe(it, tmp, &ch->subs)
    {
        gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
        if (strlen(s->conn->uid) == m.uid.n && memcmp(s->conn->uid, m.uid.p, m.uid.n) == 0)
            gw_sub_kick(hub, s, GW_ERR_PERMISSION, "removed from channel");
    }
    ch->op_refs--;
    gw_channel_maybe_release(hub, ch);
}

/* Whether the broker of `shard` (-1: the main Redis alone) is the main Redis's. */
static int gw_hub_is_main(const gw_hub_t *hub, int shard)
{
    return shard < 0 || (hub->main_is_shard && shard == 0);
}

/* The channel named by pub/sub channel rch if it lives on `shard`, else NULL. */
static gw_channel_t *gw_hub_channel_on(gw_hub_t *hub, int shard, const char *rch, size_t rn)
{
    const char *name;
    size_t nn;
    if (shard < 0 || gw_schema_channel_of(rch, rn, &name, &nn) != 0)
        return NULL;
    gw_channel_t *ch = gw_channel_find(hub, name, nn);
    return ch && ch->shard == (uint32_t)shard ? ch : NULL;
}

/* Whether pub/sub channel rch of `shard` is this node's rpc reply channel on the main Redis. */
static int gw_hub_is_reply(const gw_hub_t *hub, int shard, const char *rch, size_t rn)
{
    return gw_hub_is_main(hub, shard) && rn == hub->reply_n &&
           memcmp(rch, hub->reply_channel, rn) == 0;
}

void gw_hub_on_message(gw_hub_t *hub, int shard, const char *rch, size_t rn, const char *payload,
                       size_t n)
{
    if (gw_hub_is_reply(hub, shard, rch, rn)) {
        gw_hub_rpc_answer(hub, payload, n);
        return;
    }
    if (rn == strlen(GW_SCHEMA_CTL_CHANNEL) && memcmp(rch, GW_SCHEMA_CTL_CHANNEL, rn) == 0) {
        if (gw_hub_is_main(hub, shard))
            gw_hub_on_control(hub, payload, n);
        return;
    }
    gw_channel_t *ch = gw_hub_channel_on(hub, shard, rch, rn);
    if (!ch || ch->rs != GW_RS_SUBSCRIBED)
        return;
    gw_metrics.publications_in++;
    gw_channel_relay(hub, ch, payload, n);
}

void gw_hub_on_subscription(gw_hub_t *hub, int shard, const char *rch, size_t rn, int subscribed)
{
    if (gw_hub_is_reply(hub, shard, rch, rn)) {
        hub->reply_subscribed = subscribed;
        return;
    }
    gw_channel_t *ch = gw_hub_channel_on(hub, shard, rch, rn);
    if (!ch)
        return;
    if (subscribed && ch->rs == GW_RS_SUBSCRIBING) {
        ch->rs = GW_RS_SUBSCRIBED;
        if (ch->suspect && ch->synced) /* pub/sub was down: catch up from history */
            gw_channel_fill(hub, ch);
        ch->suspect = 0;
        gw_list_t *it, *tmp;
        gw_list_foreach_safe(it, tmp, &ch->subs)
        {
            gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
            if (s->state == GW_SUB_WAITING)
                gw_sub_start_positioning(hub, s);
        }
        gw_channel_maybe_release(hub, ch);
    } else if (!subscribed && ch->rs == GW_RS_UNSUBSCRIBING) {
        ch->rs = GW_RS_NONE;
        if (ch->nsubs)
            gw_channel_subscribe(hub, ch);
        else
            gw_channel_maybe_release(hub, ch);
    }
}

void gw_hub_on_event(gw_hub_t *hub, int shard, gw_broker_event_t ev)
{
    if (ev == GW_BROKER_SUB_UP) {
        if (gw_hub_is_main(hub, shard))
            gw_redis_subscribe(hub->redis, GW_SCHEMA_CTL_CHANNEL, strlen(GW_SCHEMA_CTL_CHANNEL), 1);
        if (gw_hub_is_main(hub, shard) && hub->cfg->rpc_reply_methods[0])
            gw_redis_subscribe(hub->redis, hub->reply_channel, hub->reply_n, 1);
        for (size_t i = 0; i < hub->nbuckets && shard >= 0; i++)
            for (gw_channel_t *ch = hub->buckets[i]; ch; ch = ch->next)
                if (ch->nsubs && ch->shard == (uint32_t)shard)
                    gw_channel_subscribe(hub, ch);
    } else if (ev == GW_BROKER_SUB_DOWN) {
        if (gw_hub_is_main(hub, shard)) { /* answers published from now on are lost */
            hub->reply_subscribed = 0;
            gw_rpc_waits_fail_all(hub->rpc_waits);
        }
        /* every Redis subscription of this shard is gone and anything published meanwhile was
         * not relayed: each of its channels catches up from history once subscribed again */
        for (size_t i = 0; i < hub->nbuckets && shard >= 0; i++)
            for (gw_channel_t *ch = hub->buckets[i], *next; ch; ch = next) {
                next = ch->next;
                if (ch->shard != (uint32_t)shard)
                    continue;
                ch->rs = GW_RS_NONE;
                ch->suspect = 1;
                gw_channel_maybe_release(hub, ch);
            }
    }
}

/* ---- construction ------------------------------------------------------------------------- */

gw_hub_t *gw_hub_new(gw_node_t *node, const gw_redis_t *redis, const gw_redis_t *const *shards,
                     uint32_t nshards)
{
    gw_hub_t *hub = gw_calloc(1, sizeof(*hub));
    hub->node = node;
    hub->cfg = node->cfg;
    hub->offline_cap = gw_config_offline_cap(node->cfg);
    hub->redis = redis;
    hub->main_is_shard = nshards == 0;
    hub->nshards = nshards ? GW_MIN(nshards, GW_MAX_SHARDS) : 1;
    for (uint32_t i = 0; i < hub->nshards; i++)
        hub->shards[i] = nshards ? shards[i] : redis;
    hub->nbuckets = 64;
    hub->buckets = gw_calloc(hub->nbuckets, sizeof(*hub->buckets));
    hub->replay_tail = &hub->replay;
    /* at start, not on the first publish: hashing it is the process's first use of libcrypto */
    gw_script_init(&hub->publish_script, gw_publish_lua);
    hub->reply_n =
        gw_schema_reply_channel(hub->reply_channel, sizeof(hub->reply_channel), node->node_id);
    hub->rpc_waits = gw_rpc_waits_new(node->loop, (uint32_t)hub->cfg->rpc_timeout_ms,
                                      (uint32_t)hub->cfg->max_pending_rpcs_per_connection);
    uv_timer_init(node->loop, &hub->tick_timer);
    hub->tick_timer.data = hub;
    uv_timer_start(&hub->tick_timer, gw_relay_tick, GW_TICK_MS, GW_TICK_MS);
    return hub;
}

void gw_hub_stop(gw_hub_t *hub)
{
    if (!hub)
        return;
    uv_close((uv_handle_t *)&hub->tick_timer, NULL);
    gw_rpc_waits_stop(hub->rpc_waits);
}

void gw_hub_free(gw_hub_t *hub)
{
    if (!hub)
        return;
    gw_hub_replay(hub); /* every connection is closed by now: this only frees */
    gw_rpc_waits_free(hub->rpc_waits);
    for (size_t i = 0; i < hub->nbuckets; i++)
        for (gw_channel_t *ch = hub->buckets[i], *next; ch; ch = next) {
            next = ch->next;
            gw_channel_drop_held(ch);
            gw_presence_cache_free(ch->pcache);
            free(ch);
        }
    free(hub->buckets);
    free(hub);
}
