/* hub.c — where subscribe is authorised and publications fan out: channels and subscriptions
 * indexed both ways, one Redis SUBSCRIBE per channel per node, joining a channel at an exact
 * position, one shared frame per encoding per publication, and the one publish path. */
#include "cardgw/hub.h"
#include "cardgw/auth.h"
#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/node.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdlib.h>

#include "publish_lua.h" /* generated from scripts/publish.lua: gw_publish_lua */

#define GW_META_TTL_MIN_S (7 * 86400)

/* ---- types ----------------------------------------------------------------------------------- */

typedef enum { GW_RS_NONE = 0, GW_RS_SUBSCRIBING, GW_RS_SUBSCRIBED, GW_RS_UNSUBSCRIBING } gw_rs_t;

typedef enum {
    GW_SUB_AUTHORIZING = 0, /* waiting for the membership check */
    GW_SUB_WAITING,         /* linked to the channel, waiting for Redis to confirm SUBSCRIBE */
    GW_SUB_POSITIONING,     /* reading the channel position; live publications are buffered */
    GW_SUB_LIVE,
} gw_sub_state_t;

typedef struct gw_channel {
    struct gw_channel *next; /* hash chain */
    gw_list_t subs;          /* gw_sub_t.chan_link (linked once authorised) */
    uint32_t nsubs;
    gw_rs_t rs;
    const gw_namespace_t *ns;
    char epoch[GW_PROTO_MAX_EPOCH + 1];
    uint64_t last; /* highest offset relayed */
    size_t n;
    char name[]; /* NUL-terminated */
} gw_channel_t;

typedef struct {
    uint64_t offset;
    gw_frame_t *frame;
} gw_pending_pub_t;

typedef struct gw_sub {
    gw_conn_t *conn;
    gw_channel_t *ch;    /* NULL while authorising */
    char *name;          /* channel name, owned */
    gw_list_t conn_link; /* conn->subs */
    gw_list_t chan_link; /* ch->subs */
    gw_sub_state_t state;
    uint32_t cmd_id; /* the subscribe command still to answer */
    uint64_t pos;    /* last offset delivered */
    int op_pending;  /* an async Redis operation refers to this sub */
    int dead;        /* unsubscribed or closed while op_pending */
    gw_pending_pub_t *pend;
    uint32_t npend, cappend;
} gw_sub_t;

struct gw_hub {
    gw_node_t *node;
    gw_channel_t **buckets;
    size_t nbuckets, nchannels;
    char script_sha[41];
    uv_timer_t presence_timer;
};

/* ---- channel table ----------------------------------------------------------------------------
 */

static uint64_t gw_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static gw_channel_t *gw_channel_find(gw_hub_t *hub, const char *name, size_t n)
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

static gw_channel_t *gw_channel_get(gw_hub_t *hub, const char *name, size_t n,
                                    const gw_namespace_t *ns)
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
    gw_list_init(&ch->subs);
    size_t j = gw_hash(name, n) & (hub->nbuckets - 1);
    ch->next = hub->buckets[j];
    hub->buckets[j] = ch;
    hub->nchannels++;
    gw_metrics.channels = hub->nchannels;
    return ch;
}

static void gw_channel_free(gw_hub_t *hub, gw_channel_t *ch)
{
    gw_channel_t **pp = &hub->buckets[gw_hash(ch->name, ch->n) & (hub->nbuckets - 1)];
    while (*pp != ch)
        pp = &(*pp)->next;
    *pp = ch->next;
    hub->nchannels--;
    gw_metrics.channels = hub->nchannels;
    free(ch);
}

/* "cardgw:{<ch>}<suffix>" */
static size_t gw_key(char *out, size_t cap, const char *ch, size_t n, const char *suffix)
{
    int k = snprintf(out, cap, "cardgw:{%.*s}%s", (int)n, ch, suffix);
    return k < 0 ? 0 : GW_MIN((size_t)k, cap - 1);
}

static void gw_redis_subscribe(gw_hub_t *hub, gw_channel_t *ch)
{
    char key[GW_PROTO_MAX_CHANNEL + 16];
    size_t kn = gw_key(key, sizeof(key), ch->name, ch->n, "");
    ch->rs = GW_RS_SUBSCRIBING;
    gw_broker_subscribe(hub->node->broker, key, kn);
}

/* A channel nobody here listens to any more: UNSUBSCRIBE (once Redis has confirmed the
 * SUBSCRIBE), and free it when Redis has confirmed that too. Never a SUBSCRIBE while an
 * UNSUBSCRIBE is in flight: hiredis would drop the new subscription's callback. */
static void gw_channel_maybe_release(gw_hub_t *hub, gw_channel_t *ch)
{
    if (ch->nsubs)
        return;
    if (ch->rs == GW_RS_SUBSCRIBED) {
        char key[GW_PROTO_MAX_CHANNEL + 16];
        size_t kn = gw_key(key, sizeof(key), ch->name, ch->n, "");
        ch->rs = GW_RS_UNSUBSCRIBING;
        gw_broker_unsubscribe(hub->node->broker, key, kn);
    } else if (ch->rs == GW_RS_NONE) {
        gw_channel_free(hub, ch);
    }
}

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
    gw_sub_clear_pending(s);
    free(s->name);
    free(s);
}

static void gw_presence_update(gw_hub_t *hub, gw_sub_t *s, int join, int announce);

/* Unlinks s from its connection and channel. If an async operation still refers to it, it is
 * marked dead and freed when that operation completes. */
static void gw_sub_remove(gw_hub_t *hub, gw_sub_t *s)
{
    gw_list_remove(&s->conn_link);
    s->conn->nsubs--;
    gw_metrics.subscriptions--;
    gw_channel_t *ch = s->ch;
    if (ch && s->state == GW_SUB_LIVE && ch->ns->presence)
        gw_presence_update(hub, s, 0, 1);
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

static gw_sub_t *gw_conn_find_sub(gw_conn_t *c, const char *name, size_t n)
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

static void gw_sub_reply_error(gw_sub_t *s, int code, const char *msg)
{
    gw_conn_reply_error(s->conn, s->cmd_id, code, msg);
}

/* ---- presence ------------------------------------------------------------------------------- */

/* Presence lives in Redis so every node sees it: a sorted set cardgw:{<ch>}:p of "<uid> <client>"
 * scored by expiry time (ms). Nodes refresh their members every GW_PRESENCE_REFRESH_MS; members of
 * a node that died expire. Join and leave travel on the channel as frames without an offset. */
#define GW_PRESENCE_TTL_MS     90000
#define GW_PRESENCE_REFRESH_MS 30000

static void gw_on_presence_write(void *priv, redisReply *r)
{
    (void)priv;
    if (r && r->type == REDIS_REPLY_ERROR)
        gw_warn("hub", "presence update failed: %s", r->str);
}

static void gw_presence_update(gw_hub_t *hub, gw_sub_t *s, int join, int announce)
{
    char key[GW_PROTO_MAX_CHANNEL + 16], member[256], score[24], frame[300];
    gw_channel_t *ch = s->ch;
    gw_conn_t *c = s->conn;
    int mn = snprintf(member, sizeof(member), "%s %s", c->uid, c->cid);
    size_t kn = gw_key(key, sizeof(key), ch->name, ch->n, ":p");
    if (join) {
        int sn = snprintf(score, sizeof(score), "%" PRIu64, gw_wall_ms() + GW_PRESENCE_TTL_MS);
        const char *argv[] = {"ZADD", key, score, member};
        size_t argvlen[] = {4, kn, (size_t)sn, (size_t)mn};
        gw_broker_command_argv(hub->node->broker, gw_on_presence_write, NULL, 4, argv, argvlen);
    } else {
        const char *argv[] = {"ZREM", key, member};
        size_t argvlen[] = {4, kn, (size_t)mn};
        gw_broker_command_argv(hub->node->broker, gw_on_presence_write, NULL, 3, argv, argvlen);
    }
    if (!announce)
        return;
    int fn = snprintf(frame, sizeof(frame), "1\n\n0\n%c\n%s\n%s", join ? 'J' : 'L', c->uid, c->cid);
    kn = gw_key(key, sizeof(key), ch->name, ch->n, "");
    const char *argv[] = {"PUBLISH", key, frame};
    size_t argvlen[] = {7, kn, (size_t)fn};
    gw_broker_command_argv(hub->node->broker, gw_on_presence_write, NULL, 3, argv, argvlen);
}

static void gw_presence_refresh(uv_timer_t *t)
{
    gw_hub_t *hub = t->data;
    for (size_t i = 0; i < hub->nbuckets; i++)
        for (gw_channel_t *ch = hub->buckets[i]; ch; ch = ch->next) {
            gw_list_t *it;
            if (!ch->ns->presence)
                continue;
            gw_list_foreach(it, &ch->subs)
            {
                gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
                if (s->state == GW_SUB_LIVE)
                    gw_presence_update(hub, s, 1, 0);
            }
        }
}

/* ---- joining at a position ------------------------------------------------------------------- */

/* HMGET meta e s answered: reply with the position, then deliver what was buffered past it. */
static void gw_on_position(void *priv, redisReply *r)
{
    gw_sub_t *s = priv;
    s->op_pending = 0;
    if (s->dead) {
        gw_sub_free(s);
        return;
    }
    gw_conn_t *c = s->conn;
    gw_hub_t *hub = c->node->hub;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        gw_sub_reply_error(s, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        gw_sub_remove(hub, s);
        return;
    }
    const char *epoch = r->element[0]->type == REDIS_REPLY_STRING ? r->element[0]->str : "";
    uint64_t top =
        r->element[1]->type == REDIS_REPLY_STRING ? strtoull(r->element[1]->str, NULL, 10) : 0;
    gw_channel_t *ch = s->ch;
    if (ch && !ch->epoch[0] && epoch[0])
        snprintf(ch->epoch, sizeof(ch->epoch), "%s", epoch);
    s->pos = top;
    gw_buf_t b;
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    gw_proto_enc_position_ok(&b, c->enc, s->cmd_id, (gw_slice_t){epoch, strlen(epoch)}, top, 0, 0,
                             NULL, 0);
    gw_conn_send_buf(c, &b);
    for (uint32_t i = 0; i < s->npend; i++)
        if (s->pend[i].offset > s->pos) {
            gw_conn_send(c, s->pend[i].frame);
            s->pos = s->pend[i].offset;
            gw_metrics.deliveries++;
        }
    gw_sub_clear_pending(s);
    s->state = GW_SUB_LIVE;
    if (ch && ch->ns->presence)
        gw_presence_update(hub, s, 1, 1);
}

static void gw_sub_start_positioning(gw_hub_t *hub, gw_sub_t *s)
{
    char key[GW_PROTO_MAX_CHANNEL + 16];
    size_t kn = gw_key(key, sizeof(key), s->ch->name, s->ch->n, ":m");
    const char *argv[] = {"HMGET", key, "e", "s"};
    size_t argvlen[] = {5, kn, 1, 1};
    s->state = GW_SUB_POSITIONING;
    s->op_pending = 1;
    if (gw_broker_command_argv(hub->node->broker, gw_on_position, s, 4, argv, argvlen) != 0)
        gw_on_position(s, NULL);
}

/* The subscription is authorised: link it to its channel and make sure Redis sends us the
 * channel before the position is read. */
static void gw_sub_attach(gw_hub_t *hub, gw_sub_t *s, const gw_namespace_t *ns)
{
    gw_channel_t *ch = gw_channel_get(hub, s->name, strlen(s->name), ns);
    s->ch = ch;
    gw_list_insert_tail(&ch->subs, &s->chan_link);
    ch->nsubs++;
    s->state = GW_SUB_WAITING;
    if (ch->rs == GW_RS_SUBSCRIBED)
        gw_sub_start_positioning(hub, s);
    else if (ch->rs == GW_RS_NONE && gw_broker_ready(hub->node->broker))
        gw_redis_subscribe(hub, ch);
    else if (ch->rs == GW_RS_NONE) {
        gw_sub_reply_error(s, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        gw_sub_remove(hub, s);
    }
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
        gw_sub_reply_error(s, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        gw_sub_remove(hub, s);
    } else if (r->integer != 1) {
        gw_sub_reply_error(s, GW_ERR_PERMISSION, "permission denied");
        gw_sub_remove(hub, s);
    } else {
        size_t nslen = (size_t)(strchr(s->name, ':') - s->name);
        gw_sub_attach(hub, s, gw_config_namespace(hub->node->cfg, s->name, nslen));
    }
}

void gw_hub_subscribe(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    const gw_config_t *cfg = hub->node->cfg;
    size_t nslen = 0;
    if (!gw_proto_channel_valid(cmd->channel.p, cmd->channel.n, &nslen)) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_BAD_CHANNEL, "bad channel name");
        return;
    }
    const gw_namespace_t *ns = gw_config_namespace(cfg, cmd->channel.p, nslen);
    if (!ns) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_UNKNOWN_NAMESPACE, "unknown namespace");
        return;
    }
    if (gw_conn_find_sub(c, cmd->channel.p, cmd->channel.n)) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_ALREADY_SUBSCRIBED, "already subscribed");
        return;
    }
    if (c->nsubs >= (uint32_t)cfg->max_subscriptions) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_LIMIT, "too many subscriptions");
        return;
    }
    const char *id = cmd->channel.p + nslen + 1;
    size_t idlen = cmd->channel.n - nslen - 1;
    if (ns->subscribe == GW_NS_SUB_OWNER &&
        (strlen(c->uid) != idlen || memcmp(c->uid, id, idlen))) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_PERMISSION, "permission denied");
        return;
    }
    if (!gw_broker_ready(hub->node->broker)) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        return;
    }
    gw_sub_t *s = gw_calloc(1, sizeof(*s));
    s->conn = c;
    s->name = gw_strndup(cmd->channel.p, cmd->channel.n);
    s->cmd_id = cmd->id;
    gw_list_init(&s->chan_link);
    gw_list_insert_tail(&c->subs, &s->conn_link);
    c->nsubs++;
    gw_metrics.subscriptions++;
    if (ns->subscribe != GW_NS_SUB_MEMBERS) {
        gw_sub_attach(hub, s, ns);
        return;
    }
    char key[GW_PROTO_MAX_CHANNEL + 32];
    int kn = snprintf(key, sizeof(key), "cardgw:%.*s:%.*s:members", (int)nslen, cmd->channel.p,
                      (int)idlen, id);
    const char *argv[] = {"SISMEMBER", key, c->uid};
    size_t argvlen[] = {9, (size_t)kn, strlen(c->uid)};
    s->op_pending = 1;
    if (gw_broker_command_argv(hub->node->broker, gw_on_membership, s, 3, argv, argvlen) != 0)
        gw_on_membership(s, NULL);
}

void gw_hub_unsubscribe(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    gw_sub_t *s = gw_conn_find_sub(c, cmd->channel.p, cmd->channel.n);
    if (!s || s->state != GW_SUB_LIVE) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_NOT_SUBSCRIBED, "not subscribed");
        return;
    }
    gw_sub_remove(hub, s);
    gw_conn_reply_ok(c, cmd->id);
}

void gw_hub_conn_authenticated(gw_hub_t *hub, gw_conn_t *c)
{
    (void)hub;
    (void)c;
}

void gw_hub_conn_closed(gw_hub_t *hub, gw_conn_t *c)
{
    gw_list_t *it, *tmp;
    gw_list_foreach_safe(it, tmp, &c->subs)
    {
        gw_sub_remove(hub, gw_container_of(it, gw_sub_t, conn_link));
    }
}

/* Server-side unsubscribe of one connection (membership removed): push, then forget. */
static void gw_sub_kick(gw_hub_t *hub, gw_sub_t *s, const char *reason)
{
    gw_conn_t *c = s->conn;
    if (s->state == GW_SUB_LIVE) {
        gw_buf_t b;
        gw_buf_init(&b, GW_FRAME_HEADROOM);
        gw_proto_enc_unsub(&b, c->enc, (gw_slice_t){s->name, strlen(s->name)}, GW_ERR_PERMISSION,
                           reason);
        gw_conn_send_buf(c, &b);
    } else {
        gw_sub_reply_error(s, GW_ERR_PERMISSION, "permission denied");
    }
    gw_sub_remove(hub, s);
}

/* ---- relay from Redis ------------------------------------------------------------------------ */

typedef struct {
    char kind; /* 'm' or 'j': a publication; 'J' / 'L': presence join / leave (no offset) */
    gw_slice_t epoch;
    uint64_t offset;
    gw_pub_t pub;
} gw_wire_pub_t;

/* Parses "1\n<epoch>\n<offset>\n<fmt>\n<from>\n<data>". Returns 0 or -EINVAL. */
static int gw_parse_wire(const char *p, size_t n, gw_wire_pub_t *w)
{
    const char *f[5];
    size_t fl[5];
    const char *end = p + n;
    for (int i = 0; i < 5; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return -EINVAL;
        f[i] = p;
        fl[i] = (size_t)(nl - p);
        p = nl + 1;
    }
    if (fl[0] != 1 || f[0][0] != '1' || fl[1] > GW_PROTO_MAX_EPOCH || fl[3] != 1 ||
        !strchr("mjJL", f[3][0]))
        return -EINVAL;
    w->kind = f[3][0];
    char num[24];
    if (fl[2] == 0 || fl[2] >= sizeof(num))
        return -EINVAL;
    memcpy(num, f[2], fl[2]);
    num[fl[2]] = '\0';
    char *e;
    w->offset = strtoull(num, &e, 10);
    if (*e)
        return -EINVAL;
    w->epoch = (gw_slice_t){f[1], fl[1]};
    w->pub.offset = w->offset;
    w->pub.from = (gw_slice_t){f[4], fl[4]};
    w->pub.data.fmt = f[3][0] == 'j' ? GW_DATA_JSON : GW_DATA_MSGPACK;
    w->pub.data.p = (const uint8_t *)p;
    w->pub.data.n = (size_t)(end - p);
    return 0;
}

static gw_frame_t *gw_pub_frame(gw_frame_t **frames, gw_enc_t enc, gw_channel_t *ch,
                                const gw_pub_t *pub)
{
    if (!frames[enc]) {
        gw_buf_t b;
        gw_buf_init(&b, GW_FRAME_HEADROOM);
        gw_proto_enc_pub(&b, enc, (gw_slice_t){ch->name, ch->n}, pub);
        frames[enc] = gw_frame_from_buf(&b, enc == GW_ENC_MSGPACK);
    }
    return frames[enc];
}

static void gw_sub_buffer(gw_sub_t *s, uint64_t offset, gw_frame_t *f)
{
    if (s->npend == s->cappend) {
        s->cappend = s->cappend ? s->cappend * 2 : 8;
        s->pend = gw_realloc(s->pend, s->cappend * sizeof(*s->pend));
    }
    s->pend[s->npend++] = (gw_pending_pub_t){offset, gw_frame_ref(f)};
}

/* A join or leave from any node: every live subscriber but the one it is about gets a push. */
static void gw_hub_fanout_presence(gw_channel_t *ch, const gw_wire_pub_t *w)
{
    gw_frame_t *frames[2] = {NULL, NULL};
    gw_client_info_t info = {w->pub.from, {(const char *)w->pub.data.p, w->pub.data.n}};
    gw_list_t *it;
    if (!ch->ns->presence)
        return;
    gw_list_foreach(it, &ch->subs)
    {
        gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
        gw_conn_t *c = s->conn;
        if (s->state != GW_SUB_LIVE ||
            (strlen(c->cid) == info.client.n && memcmp(c->cid, info.client.p, info.client.n) == 0))
            continue;
        if (!frames[c->enc]) {
            gw_buf_t b;
            gw_buf_init(&b, GW_FRAME_HEADROOM);
            gw_proto_enc_join(&b, c->enc, (gw_slice_t){ch->name, ch->n}, &info, w->kind == 'L');
            frames[c->enc] = gw_frame_from_buf(&b, c->enc == GW_ENC_MSGPACK);
        }
        gw_conn_send(c, frames[c->enc]);
    }
    gw_frame_unref(frames[0]);
    gw_frame_unref(frames[1]);
}

static void gw_hub_fanout(gw_hub_t *hub, gw_channel_t *ch, const gw_wire_pub_t *w)
{
    gw_frame_t *frames[2] = {NULL, NULL};
    gw_list_t *it;
    (void)hub;
    if (w->epoch.n &&
        (w->epoch.n != strlen(ch->epoch) || memcmp(ch->epoch, w->epoch.p, w->epoch.n))) {
        if (ch->epoch[0])
            gw_warn("hub", "%s: epoch changed from %s to %.*s", ch->name, ch->epoch,
                    (int)w->epoch.n, w->epoch.p);
        memcpy(ch->epoch, w->epoch.p, w->epoch.n);
        ch->epoch[w->epoch.n] = '\0';
    }
    if (ch->last && w->offset > ch->last + 1)
        gw_warn("hub", "%s: offset jumped from %" PRIu64 " to %" PRIu64, ch->name, ch->last,
                w->offset);
    if (w->offset > ch->last || w->offset == 1)
        ch->last = w->offset;
    gw_list_foreach(it, &ch->subs)
    {
        gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
        if (s->state == GW_SUB_POSITIONING) {
            gw_sub_buffer(s, w->offset, gw_pub_frame(frames, s->conn->enc, ch, &w->pub));
        } else if (s->state == GW_SUB_LIVE && (w->offset > s->pos || w->offset == 1)) {
            s->pos = w->offset;
            if (gw_conn_send(s->conn, gw_pub_frame(frames, s->conn->enc, ch, &w->pub)) == 0)
                gw_metrics.deliveries++;
        }
    }
    gw_frame_unref(frames[0]);
    gw_frame_unref(frames[1]);
}

static void gw_hub_on_control(gw_hub_t *hub, const char *p, size_t n)
{
    char msg[512];
    if (n >= sizeof(msg))
        return;
    memcpy(msg, p, n);
    msg[n] = '\0';
    char *uid = strchr(msg, '\n');
    if (!uid)
        return;
    *uid++ = '\0';
    char *arg = strchr(uid, '\n');
    if (arg)
        *arg++ = '\0';
    gw_list_t *it, *tmp;
    if (strcmp(msg, "disconnect") == 0) {
        gw_list_foreach(it, &hub->node->conns)
        {
            gw_conn_t *c = gw_container_of(it, gw_conn_t, link);
            if (c->uid && strcmp(c->uid, uid) == 0) {
                gw_buf_t b;
                gw_buf_init(&b, GW_FRAME_HEADROOM);
                gw_proto_enc_disconnect(&b, c->enc, GW_CLOSE_KICKED, "disconnected by server", 0,
                                        0);
                gw_conn_send_buf(c, &b);
                gw_conn_close(c, GW_CLOSE_KICKED, 0);
            }
        }
    } else if (strcmp(msg, "unsubscribe") == 0 && arg) {
        gw_channel_t *ch = gw_channel_find(hub, arg, strlen(arg));
        if (!ch)
            return;
        ch->nsubs++; /* keep the channel while its subscribers are removed */
        gw_list_foreach_safe(it, tmp, &ch->subs)
        {
            gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
            if (strcmp(s->conn->uid, uid) == 0)
                gw_sub_kick(hub, s, "removed from channel");
        }
        ch->nsubs--;
        gw_channel_maybe_release(hub, ch);
    }
}

void gw_hub_on_message(void *ud, const char *rch, size_t rn, const char *payload, size_t n)
{
    gw_hub_t *hub = ud;
    if (rn == strlen(GW_CTL_CHANNEL) && memcmp(rch, GW_CTL_CHANNEL, rn) == 0) {
        gw_hub_on_control(hub, payload, n);
        return;
    }
    if (rn < 9 || memcmp(rch, "cardgw:{", 8) != 0 || rch[rn - 1] != '}')
        return;
    gw_channel_t *ch = gw_channel_find(hub, rch + 8, rn - 9);
    gw_wire_pub_t w;
    if (!ch)
        return;
    gw_metrics.publications_in++;
    if (gw_parse_wire(payload, n, &w) != 0) {
        gw_warn("hub", "%s: dropped a malformed relay frame (%zu bytes)", ch->name, n);
        return;
    }
    if (w.kind == 'J' || w.kind == 'L')
        gw_hub_fanout_presence(ch, &w);
    else
        gw_hub_fanout(hub, ch, &w);
}

void gw_hub_on_subscription(void *ud, const char *rch, size_t rn, int subscribed)
{
    gw_hub_t *hub = ud;
    if (rn < 9 || memcmp(rch, "cardgw:{", 8) != 0)
        return;
    gw_channel_t *ch = gw_channel_find(hub, rch + 8, rn - 9);
    if (!ch)
        return;
    if (subscribed && ch->rs == GW_RS_SUBSCRIBING) {
        ch->rs = GW_RS_SUBSCRIBED;
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
            gw_redis_subscribe(hub, ch);
        else
            gw_channel_free(hub, ch);
    }
}

void gw_hub_on_event(void *ud, gw_broker_event_t ev)
{
    gw_hub_t *hub = ud;
    gw_broker_t *br = hub->node->broker;
    if (ev == GW_BROKER_SUB_UP) {
        gw_broker_subscribe(br, GW_CTL_CHANNEL, strlen(GW_CTL_CHANNEL));
        for (size_t i = 0; i < hub->nbuckets; i++)
            for (gw_channel_t *ch = hub->buckets[i]; ch; ch = ch->next)
                if (ch->nsubs)
                    gw_redis_subscribe(hub, ch);
    } else if (ev == GW_BROKER_SUB_DOWN) {
        /* every Redis subscription is gone; empty channels can go now */
        for (size_t i = 0; i < hub->nbuckets; i++)
            for (gw_channel_t *ch = hub->buckets[i], *next; ch; ch = next) {
                next = ch->next;
                ch->rs = GW_RS_NONE;
                gw_channel_maybe_release(hub, ch);
            }
    }
}

/* ---- the publish path ------------------------------------------------------------------------ */

typedef struct {
    gw_hub_t *hub;
    gw_publish_cb cb;
    void *priv;
    int retried;
    int argc;
    char *argv[12];
    size_t argvlen[12];
} gw_pub_op_t;

static void gw_pub_op_free(gw_pub_op_t *op)
{
    for (int i = 0; i < op->argc; i++)
        free(op->argv[i]);
    free(op);
}

static void gw_on_publish(void *priv, redisReply *r)
{
    gw_pub_op_t *op = priv;
    if (r && r->type == REDIS_REPLY_ERROR && !op->retried && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* the script cache is volatile (restart, failover, SCRIPT FLUSH): nothing ran, so send
         * the script itself, which also caches it again */
        op->retried = 1;
        free(op->argv[0]);
        free(op->argv[1]);
        op->argv[0] = gw_strdup("EVAL");
        op->argvlen[0] = 4;
        op->argv[1] = gw_strdup(gw_publish_lua);
        op->argvlen[1] = strlen(gw_publish_lua);
        if (gw_broker_command_argv(op->hub->node->broker, gw_on_publish, op, op->argc,
                                   (const char **)op->argv, op->argvlen) == 0)
            return;
        r = NULL;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_STRING) {
        if (r && r->type == REDIS_REPLY_ERROR)
            gw_warn("hub", "publish script failed: %s", r->str);
        op->cb(op->priv, GW_ERR_UNAVAILABLE, NULL, 0);
    } else {
        op->cb(op->priv, 0, r->element[1]->str, (uint64_t)r->element[0]->integer);
    }
    gw_pub_op_free(op);
}

static void gw_pub_arg(gw_pub_op_t *op, const void *p, size_t n)
{
    op->argv[op->argc] = gw_strndup(p, n);
    op->argvlen[op->argc++] = n;
}

int gw_hub_publish(gw_hub_t *hub, const char *ch, size_t n, gw_data_t data, const char *from,
                   gw_publish_cb cb, void *priv)
{
    size_t nslen;
    char key[GW_PROTO_MAX_CHANNEL + 16], num[3][24];
    if (!gw_proto_channel_valid(ch, n, &nslen))
        return GW_ERR_BAD_CHANNEL;
    const gw_namespace_t *ns = gw_config_namespace(hub->node->cfg, ch, nslen);
    if (!ns)
        return GW_ERR_UNKNOWN_NAMESPACE;
    if (!gw_broker_cmd_connected(hub->node->broker))
        return GW_ERR_UNAVAILABLE;
    gw_pub_op_t *op = gw_calloc(1, sizeof(*op));
    op->hub = hub;
    op->cb = cb;
    op->priv = priv;
    gw_pub_arg(op, "EVALSHA", 7);
    gw_pub_arg(op, hub->script_sha, 40);
    gw_pub_arg(op, "3", 1);
    gw_pub_arg(op, key, gw_key(key, sizeof(key), ch, n, ":m"));
    gw_pub_arg(op, key, gw_key(key, sizeof(key), ch, n, ":x"));
    gw_pub_arg(op, key, gw_key(key, sizeof(key), ch, n, ""));
    gw_pub_arg(op, data.p, data.n);
    gw_pub_arg(op, data.fmt == GW_DATA_JSON ? "j" : "m", 1);
    gw_pub_arg(op, from ? from : "", from ? strlen(from) : 0);
    int k0 = snprintf(num[0], sizeof(num[0]), "%d", ns->history_size);
    int k1 = snprintf(num[1], sizeof(num[1]), "%d", GW_MAX(ns->history_ttl_s, 1));
    int k2 =
        snprintf(num[2], sizeof(num[2]), "%d", GW_MAX(ns->history_ttl_s * 2, GW_META_TTL_MIN_S));
    gw_pub_arg(op, num[0], (size_t)k0);
    gw_pub_arg(op, num[1], (size_t)k1);
    gw_pub_arg(op, num[2], (size_t)k2);
    if (gw_broker_command_argv(hub->node->broker, gw_on_publish, op, op->argc,
                               (const char **)op->argv, op->argvlen) != 0) {
        gw_pub_op_free(op);
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
    gw_pub_op_free(op);
}

int gw_hub_control(gw_hub_t *hub, const char *msg, size_t n, gw_publish_cb cb, void *priv)
{
    gw_pub_op_t *op = gw_calloc(1, sizeof(*op));
    op->hub = hub;
    op->cb = cb;
    op->priv = priv;
    op->retried = 1;
    gw_pub_arg(op, "PUBLISH", 7);
    gw_pub_arg(op, GW_CTL_CHANNEL, strlen(GW_CTL_CHANNEL));
    gw_pub_arg(op, msg, n);
    if (gw_broker_command_argv(hub->node->broker, gw_on_control_reply, op, op->argc,
                               (const char **)op->argv, op->argvlen) != 0) {
        gw_pub_op_free(op);
        return GW_ERR_UNAVAILABLE;
    }
    return 0;
}

/* ---- client commands: publish, history, presence, rpc ---------------------------------------- */

typedef struct {
    gw_conn_t *c; /* held */
    uint32_t id;
} gw_cmd_op_t;

static gw_cmd_op_t *gw_cmd_op_new(gw_conn_t *c, uint32_t id)
{
    gw_cmd_op_t *op = gw_malloc(sizeof(*op));
    gw_conn_hold(c);
    op->c = c;
    op->id = id;
    return op;
}

/* Releases op; returns the connection when it is still open (borrowed), else NULL. */
static gw_conn_t *gw_cmd_op_done(gw_cmd_op_t *op)
{
    gw_conn_t *c = op->c;
    free(op);
    int open = c->wsi != NULL;
    gw_conn_release(c);
    return open ? c : NULL;
}

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

/* Looks up the namespace of a command's channel and checks the grammar; replies and returns
 * NULL on failure. */
static const gw_namespace_t *gw_cmd_namespace(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    size_t nslen;
    const gw_namespace_t *ns = NULL;
    if (!gw_proto_channel_valid(cmd->channel.p, cmd->channel.n, &nslen))
        gw_conn_reply_error(c, cmd->id, GW_ERR_BAD_CHANNEL, "bad channel name");
    else if (!(ns = gw_config_namespace(hub->node->cfg, cmd->channel.p, nslen)))
        gw_conn_reply_error(c, cmd->id, GW_ERR_UNKNOWN_NAMESPACE, "unknown namespace");
    return ns;
}

void gw_hub_client_publish(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    const gw_namespace_t *ns = gw_cmd_namespace(hub, c, cmd);
    if (!ns)
        return;
    gw_sub_t *s = gw_conn_find_sub(c, cmd->channel.p, cmd->channel.n);
    /* publishing needs the namespace's permission and, so that membership rules hold for
     * writers too, a live subscription to the channel */
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

/* The reply to history: [meta [e s], stream entries]. */
static void gw_on_history(void *priv, redisReply *r)
{
    gw_cmd_op_t *op = priv;
    uint32_t id = op->id;
    gw_conn_t *c = gw_cmd_op_done(op);
    if (!c)
        return;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2) {
        gw_conn_reply_error(c, id, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        return;
    }
    redisReply *meta = r->element[0], *entries = r->element[1];
    const char *epoch = meta->element[0]->type == REDIS_REPLY_STRING ? meta->element[0]->str : "";
    uint64_t top = meta->element[1]->type == REDIS_REPLY_STRING
                       ? strtoull(meta->element[1]->str, NULL, 10)
                       : 0;
    size_t n = entries->type == REDIS_REPLY_ARRAY ? entries->elements : 0;
    gw_pub_t *pubs = gw_calloc(n ? n : 1, sizeof(*pubs));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        gw_pub_t *p = &pubs[k];
        p->offset = strtoull(e->element[0]->str, NULL, 10);
        redisReply *f = e->element[1];
        for (size_t j = 0; j + 1 < f->elements; j += 2) {
            const char *name = f->element[j]->str;
            redisReply *v = f->element[j + 1];
            if (!strcmp(name, "d")) {
                p->data.p = (const uint8_t *)v->str;
                p->data.n = v->len;
            } else if (!strcmp(name, "f")) {
                p->data.fmt = v->str[0] == 'j' ? GW_DATA_JSON : GW_DATA_MSGPACK;
            } else if (!strcmp(name, "u")) {
                p->from = (gw_slice_t){v->str, v->len};
            }
        }
        if (p->data.p)
            k++;
    }
    gw_buf_t b;
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    gw_proto_enc_position_ok(&b, c->enc, id, (gw_slice_t){epoch, strlen(epoch)}, top, 0, 0, pubs,
                             k);
    free(pubs);
    gw_conn_send_buf(c, &b);
}

/* Reads the meta hash and the stream in one script so both describe the same moment. */
static const char gw_history_lua[] =
    "local m = redis.call('HMGET', KEYS[1], 'e', 's')\n"
    "local r\n"
    "if ARGV[1] == '' then r = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[2])\n"
    "  local o = {} for i = #r, 1, -1 do o[#o + 1] = r[i] end r = o\n"
    "else r = redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2]) end\n"
    "return {m, r}\n";

void gw_hub_history(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    const gw_namespace_t *ns = gw_cmd_namespace(hub, c, cmd);
    if (!ns)
        return;
    gw_sub_t *s = gw_conn_find_sub(c, cmd->channel.p, cmd->channel.n);
    if (!s || s->state != GW_SUB_LIVE) { /* history is for subscribers: same permission */
        gw_conn_reply_error(c, cmd->id, GW_ERR_PERMISSION, "subscribe first");
        return;
    }
    char km[GW_PROTO_MAX_CHANNEL + 16], kx[GW_PROTO_MAX_CHANNEL + 16], from[32], count[16];
    size_t kmn = gw_key(km, sizeof(km), cmd->channel.p, cmd->channel.n, ":m");
    size_t kxn = gw_key(kx, sizeof(kx), cmd->channel.p, cmd->channel.n, ":x");
    uint32_t limit = cmd->limit && cmd->limit < (uint32_t)ns->history_size
                         ? cmd->limit
                         : (uint32_t)ns->history_size;
    int fn = cmd->has_since ? snprintf(from, sizeof(from), "(%" PRIu64 "-0", cmd->since_offset) : 0;
    int cn = snprintf(count, sizeof(count), "%u", limit ? limit : 1);
    const char *argv[] = {"EVAL", gw_history_lua, "2", km, kx, from, count};
    size_t argvlen[] = {4, strlen(gw_history_lua), 1, kmn, kxn, (size_t)fn, (size_t)cn};
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    if (gw_broker_command_argv(hub->node->broker, gw_on_history, op, 7, argv, argvlen) != 0)
        gw_on_history(op, NULL);
}

static void gw_on_presence(void *priv, redisReply *r)
{
    gw_cmd_op_t *op = priv;
    uint32_t id = op->id;
    gw_conn_t *c = gw_cmd_op_done(op);
    if (!c)
        return;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        gw_conn_reply_error(c, id, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        return;
    }
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
    gw_buf_t b;
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    gw_proto_enc_presence_ok(&b, c->enc, id, ci, k);
    free(ci);
    gw_conn_send_buf(c, &b);
}

void gw_hub_presence(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    const gw_namespace_t *ns = gw_cmd_namespace(hub, c, cmd);
    if (!ns)
        return;
    gw_sub_t *s = gw_conn_find_sub(c, cmd->channel.p, cmd->channel.n);
    if (!ns->presence || !s || s->state != GW_SUB_LIVE) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_PERMISSION, "permission denied");
        return;
    }
    char kp[GW_PROTO_MAX_CHANNEL + 16], now[24];
    size_t kpn = gw_key(kp, sizeof(kp), cmd->channel.p, cmd->channel.n, ":p");
    int nn = snprintf(now, sizeof(now), "%" PRIu64, gw_wall_ms());
    const char *argv[] = {"ZRANGEBYSCORE", kp, now, "+inf"};
    size_t argvlen[] = {13, kpn, (size_t)nn, 4};
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    if (gw_broker_command_argv(hub->node->broker, gw_on_presence, op, 4, argv, argvlen) != 0)
        gw_on_presence(op, NULL);
}

static void gw_on_rpc(void *priv, redisReply *r)
{
    gw_cmd_op_t *op = priv;
    uint32_t id = op->id;
    gw_conn_t *c = gw_cmd_op_done(op);
    if (!c)
        return;
    if (!r || r->type != REDIS_REPLY_STRING) {
        gw_conn_reply_error(c, id, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        return;
    }
    /* the result is the inbox entry id, as a msgpack str */
    gw_buf_t mp, b;
    gw_buf_init(&mp, 0);
    uint8_t hdr[2] = {0xd9, (uint8_t)r->len};
    if (r->len < 32) {
        hdr[0] = (uint8_t)(0xa0 | r->len);
        gw_buf_append(&mp, hdr, 1);
    } else {
        gw_buf_append(&mp, hdr, 2);
    }
    gw_buf_append(&mp, r->str, r->len);
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    gw_proto_enc_rpc_ok(&b, c->enc, id, (gw_data_t){GW_DATA_MSGPACK, gw_buf_data(&mp), mp.len});
    gw_buf_free(&mp);
    gw_conn_send_buf(c, &b);
}

/* rpc: appended to the backend's inbox stream (consumed with a consumer group); the reply is
 * the entry id. Answers, if any, come back as publications on the user's channel. */
void gw_hub_rpc(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    const char *argv[] = {"XADD",    "cardgw:inbox",
                          "MAXLEN",  "~",
                          "1000000", "*",
                          "uid",     c->uid,
                          "client",  c->cid,
                          "node",    hub->node->node_id,
                          "method",  cmd->method.p,
                          "data",    (const char *)cmd->data.p};
    size_t argvlen[GW_ARRAY_SIZE(argv)];
    for (size_t i = 0; i < GW_ARRAY_SIZE(argv); i++)
        argvlen[i] = strlen(argv[i]);
    argvlen[GW_ARRAY_SIZE(argv) - 1] = cmd->data.n;
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    if (gw_broker_command_argv(hub->node->broker, gw_on_rpc, op, (int)GW_ARRAY_SIZE(argv), argv,
                               argvlen) != 0)
        gw_on_rpc(op, NULL);
}

/* ---- construction ---------------------------------------------------------------------------- */

gw_hub_t *gw_hub_new(gw_node_t *node)
{
    gw_hub_t *hub = gw_calloc(1, sizeof(*hub));
    uint8_t md[SHA_DIGEST_LENGTH];
    hub->node = node;
    hub->nbuckets = 64;
    hub->buckets = gw_calloc(hub->nbuckets, sizeof(*hub->buckets));
    uv_timer_init(node->loop, &hub->presence_timer);
    hub->presence_timer.data = hub;
    uv_timer_start(&hub->presence_timer, gw_presence_refresh, GW_PRESENCE_REFRESH_MS,
                   GW_PRESENCE_REFRESH_MS);
    SHA1((const uint8_t *)gw_publish_lua, strlen(gw_publish_lua), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(hub->script_sha + 2 * i, 3, "%02x", md[i]);
    return hub;
}

void gw_hub_stop(gw_hub_t *hub)
{
    if (hub)
        uv_close((uv_handle_t *)&hub->presence_timer, NULL);
}

void gw_hub_free(gw_hub_t *hub)
{
    if (!hub)
        return;
    for (size_t i = 0; i < hub->nbuckets; i++)
        for (gw_channel_t *ch = hub->buckets[i], *next; ch; ch = next) {
            next = ch->next;
            free(ch);
        }
    free(hub->buckets);
    free(hub);
}
