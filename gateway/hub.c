/* hub.c — where subscribe is authorised and publications are relayed in order: channels and
 * subscriptions indexed both ways, one Redis SUBSCRIBE per channel per node, joining (and
 * recovering) at an exact position, gap filling from history, one shared frame per encoding. */
#include "hub_int.h"

#include "cardgw/log.h"
#include "cardgw/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "publish_lua.h" /* generated from scripts/publish.lua: gw_publish_lua */

#define GW_TICK_MS             250
#define GW_FILL_RETRY_FOR_MS   15000 /* fill reads are retried this long before giving up */
#define GW_VISIT_MS            5000  /* each channel is visited by the tick about this often */
#define GW_PRESENCE_REFRESH_MS 30000

/* ---- channel table ------------------------------------------------------------------------- */

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

static void gw_channel_drop_held(gw_channel_t *ch)
{
    for (gw_held_t *h = ch->held, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    ch->held = NULL;
    ch->held_tail = &ch->held;
}

/* The only place fill_retry changes: hub->nretry counts the channels that have it set. */
static void gw_channel_set_retry(gw_hub_t *hub, gw_channel_t *ch, int on)
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
    free(ch);
}

size_t gw_hub_key(char *out, size_t cap, const char *ch, size_t n, const char *suffix)
{
    int k = snprintf(out, cap, "cardgw:{%.*s}%s", (int)n, ch, suffix);
    return k < 0 ? 0 : GW_MIN((size_t)k, cap - 1);
}

uint32_t gw_hub_meta_ttl(const gw_namespace_t *ns)
{
    return (uint32_t)GW_MAX(ns->history_ttl_s * 2, GW_META_TTL_MIN_S);
}

static void gw_redis_subscribe(gw_hub_t *hub, gw_channel_t *ch)
{
    char key[GW_PROTO_MAX_CHANNEL + 16];
    size_t kn = gw_hub_key(key, sizeof(key), ch->name, ch->n, "");
    ch->rs = GW_RS_SUBSCRIBING;
    gw_broker_subscribe(hub->node->broker, key, kn);
}

/* A channel nobody here listens to any more: UNSUBSCRIBE (once Redis has confirmed the
 * SUBSCRIBE), and free it when Redis has confirmed that too and no read refers to it. Never a
 * SUBSCRIBE while an UNSUBSCRIBE is in flight: hiredis would drop the new subscription's
 * callback when the UNSUBSCRIBE reply arrives. */
static void gw_channel_maybe_release(gw_hub_t *hub, gw_channel_t *ch)
{
    if (ch->nsubs || ch->op_refs)
        return;
    if (ch->rs == GW_RS_SUBSCRIBED) {
        char key[GW_PROTO_MAX_CHANNEL + 16];
        size_t kn = gw_hub_key(key, sizeof(key), ch->name, ch->n, "");
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

static void gw_sub_fail(gw_hub_t *hub, gw_sub_t *s, int code, const char *msg)
{
    gw_conn_reply_error(s->conn, s->cmd_id, code, msg);
    gw_sub_release_held(hub, s);
    gw_sub_remove(hub, s);
}

/* Server-side unsubscribe (membership removed, insufficient state): an `unsub` push to a live
 * subscription, an error reply to one still being set up; then it is forgotten. */
static void gw_sub_kick(gw_hub_t *hub, gw_sub_t *s, int code, const char *reason)
{
    gw_conn_t *c = s->conn;
    if (s->state == GW_SUB_LIVE) {
        gw_buf_t b;
        gw_buf_init(&b, GW_FRAME_HEADROOM);
        gw_proto_enc_unsub(&b, c->enc, (gw_slice_t){s->name, strlen(s->name)}, code, reason);
        gw_conn_send_buf(c, &b);
        gw_sub_remove(hub, s);
    } else {
        gw_sub_fail(hub, s, code, reason);
    }
}

/* The node can no longer promise this channel's subscribers a gapless sequence: every
 * subscription (live or being set up) is told to resubscribe with `since`, which recovers from
 * history or answers recovered:false. */
static void gw_channel_insufficient(gw_hub_t *hub, gw_channel_t *ch, const char *why)
{
    gw_list_t *it, *tmp;
    gw_warn("hub", "%s: insufficient state (%s): %u subscriptions told to resubscribe", ch->name,
            why, ch->nsubs);
    ch->op_refs++; /* keep the channel while its subscribers go */
    gw_list_foreach_safe(it, tmp, &ch->subs)
    {
        gw_sub_kick(hub, gw_container_of(it, gw_sub_t, chan_link), GW_ERR_INSUFFICIENT_STATE,
                    "insufficient state: resubscribe with since");
    }
    ch->op_refs--;
}

/* ---- fan-out -----------------------------------------------------------------------------------
 */

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

/* Sends f to a live subscription if it is the next offset; returns -1 on a gap (the caller
 * kicks the subscription). */
static int gw_sub_deliver(gw_sub_t *s, uint64_t offset, gw_frame_t *f)
{
    if (offset <= s->pos)
        return 0; /* already delivered (joined at a later position) */
    if (offset != s->pos + 1)
        return -1;
    s->pos = offset;
    if (gw_conn_send(s->conn, f) == 0)
        gw_metrics.deliveries++;
    return 0;
}

/* One publication, in order, to every subscription of the channel: each encoding is encoded
 * once and the same frame is queued to every recipient. */
static void gw_channel_fanout(gw_hub_t *hub, gw_channel_t *ch, const gw_pub_t *pub)
{
    gw_frame_t *frames[2] = {NULL, NULL};
    gw_list_t *it, *tmp;
    gw_list_foreach_safe(it, tmp, &ch->subs)
    {
        gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
        gw_frame_t *f;
        if (s->state == GW_SUB_POSITIONING) {
            gw_sub_buffer(s, pub->offset, gw_pub_frame(frames, s->conn->enc, ch, pub));
        } else if (s->state == GW_SUB_LIVE) {
            f = gw_pub_frame(frames, s->conn->enc, ch, pub);
            if (gw_sub_deliver(s, pub->offset, f) != 0)
                gw_sub_kick(hub, s, GW_ERR_INSUFFICIENT_STATE,
                            "insufficient state: resubscribe with since");
        }
    }
    gw_frame_unref(frames[0]);
    gw_frame_unref(frames[1]);
}

/* ---- relay: order, gaps and fills -------------------------------------------------------------
 */

typedef struct {
    char kind; /* 'm' or 'j': a publication; 'J' / 'L': presence join / leave (no offset) */
    gw_slice_t epoch;
    gw_pub_t pub;
} gw_wire_pub_t;

/* Parses a relay frame "1\n<epoch>\n<offset>\n<fmt>\n<from>\n<data>" (scripts/publish.lua).
 * Returns 0 or -EINVAL; w points into p. */
static int gw_parse_wire(const char *p, size_t n, gw_wire_pub_t *w)
{
    const char *f[5], *end = p + n;
    size_t fl[5];
    char num[24], *e;
    for (int i = 0; i < 5; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return -EINVAL;
        f[i] = p;
        fl[i] = (size_t)(nl - p);
        p = nl + 1;
    }
    if (fl[0] != 1 || f[0][0] != '1' || fl[1] > GW_PROTO_MAX_EPOCH || fl[3] != 1 ||
        !strchr("mjJL", f[3][0]) || fl[2] == 0 || fl[2] >= sizeof(num))
        return -EINVAL;
    memcpy(num, f[2], fl[2]);
    num[fl[2]] = '\0';
    w->kind = f[3][0];
    w->pub.offset = strtoull(num, &e, 10);
    if (*e)
        return -EINVAL;
    w->epoch = (gw_slice_t){f[1], fl[1]};
    w->pub.from = (gw_slice_t){f[4], fl[4]};
    w->pub.data.fmt = w->kind == 'j' ? GW_DATA_JSON : GW_DATA_MSGPACK;
    w->pub.data.p = (const uint8_t *)p;
    w->pub.data.n = (size_t)(end - p);
    return 0;
}

static void gw_channel_fill(gw_hub_t *hub, gw_channel_t *ch);

static void gw_channel_hold(gw_channel_t *ch, const char *payload, size_t n)
{
    gw_held_t *h = gw_malloc(sizeof(*h) + n);
    h->next = NULL;
    h->n = n;
    memcpy(h->payload, payload, n);
    *ch->held_tail = h;
    ch->held_tail = &h->next;
}

/* The relay for one channel: publications are fanned out strictly in offset order. A duplicate
 * is dropped; a jump is held while the missing offsets are read from history. */
static void gw_channel_relay(gw_hub_t *hub, gw_channel_t *ch, const char *payload, size_t n)
{
    gw_wire_pub_t w;
    if (gw_parse_wire(payload, n, &w) != 0) {
        gw_warn("hub", "%s: dropped a malformed relay frame (%zu bytes)", ch->name, n);
        return;
    }
    if (w.kind == 'J' || w.kind == 'L') {
        gw_presence_fanout(ch, w.pub.from, (gw_slice_t){(const char *)w.pub.data.p, w.pub.data.n},
                           w.kind == 'L');
        return;
    }
    if (ch->filling) {
        gw_channel_hold(ch, payload, n);
        return;
    }
    if (!ch->synced) { /* nobody is live yet: subscriptions being set up buffer it */
        gw_channel_fanout(hub, ch, &w.pub);
        return;
    }
    if (w.epoch.n != strlen(ch->epoch) || memcmp(w.epoch.p, ch->epoch, w.epoch.n) != 0) {
        gw_channel_insufficient(hub, ch, "epoch changed");
        memcpy(ch->epoch, w.epoch.p, w.epoch.n);
        ch->epoch[w.epoch.n] = '\0';
        ch->last = w.pub.offset;
        gw_channel_maybe_release(hub, ch);
        return;
    }
    if (w.pub.offset <= ch->last)
        return; /* duplicate (already filled from history) */
    if (w.pub.offset > ch->last + 1) {
        gw_debug("hub", "%s: offset jumped from %" PRIu64 " to %" PRIu64 ": filling", ch->name,
                 ch->last, w.pub.offset);
        gw_channel_hold(ch, payload, n);
        gw_channel_fill(hub, ch);
        return;
    }
    ch->last = w.pub.offset;
    gw_channel_fanout(hub, ch, &w.pub);
}

/* Relays what was held during a fill, in arrival order (a new jump holds the rest again). */
static void gw_channel_release_held(gw_hub_t *hub, gw_channel_t *ch)
{
    gw_held_t *h = ch->held;
    ch->held = NULL;
    ch->held_tail = &ch->held;
    while (h) {
        gw_held_t *next = h->next;
        if (ch->filling) {
            h->next = NULL;
            *ch->held_tail = h;
            ch->held_tail = &h->next;
        } else {
            gw_channel_relay(hub, ch, h->payload, h->n);
            free(h);
        }
        h = next;
    }
}

typedef struct {
    gw_hub_t *hub;
    gw_channel_t *ch;
} gw_fill_op_t;

/* History after ch->last arrived: deliver what is contiguous; anything that cannot be proven
 * complete (another epoch, a top below what was relayed, trimmed history) is insufficient state. */
static void gw_on_fill(void *priv, const gw_history_t *h)
{
    gw_fill_op_t *op = priv;
    gw_hub_t *hub = op->hub;
    gw_channel_t *ch = op->ch;
    free(op);
    /* op_refs stays held until the end: kicks below must not free ch */
    if (!h && !ch->fill_fail_ms)
        ch->fill_fail_ms = gw_now_ms();
    if (!h && ch->nsubs && gw_now_ms() - ch->fill_fail_ms < GW_FILL_RETRY_FOR_MS) {
        /* Redis failed (restarting, loading): keep holding and retry from the tick */
        gw_channel_set_retry(hub, ch, 1);
        ch->op_refs--;
        return;
    }
    gw_channel_set_retry(hub, ch, 0);
    ch->filling = 0;
    ch->fill_fail_ms = 0;
    if (!h) {
        gw_channel_insufficient(hub, ch, "history unavailable");
        ch->synced = 0;
        gw_channel_drop_held(ch);
    } else if (ch->synced && strcmp(h->epoch, ch->epoch) != 0) {
        gw_channel_insufficient(hub, ch, "epoch changed");
        snprintf(ch->epoch, sizeof(ch->epoch), "%s", h->epoch);
        ch->last = h->top;
    } else if (h->top < ch->last) {
        gw_channel_insufficient(hub, ch, "offsets went back: history lost");
        ch->last = h->top;
    } else {
        snprintf(ch->epoch, sizeof(ch->epoch), "%s", h->epoch);
        for (size_t i = 0; i < h->npubs && ch->last < h->top; i++) {
            if (h->pubs[i].offset <= ch->last)
                continue;
            if (h->pubs[i].offset != ch->last + 1)
                break;
            ch->last = h->pubs[i].offset;
            gw_channel_fanout(hub, ch, &h->pubs[i]);
        }
        if (ch->last < h->top && h->npubs == GW_FILL_MAX &&
            h->pubs[h->npubs - 1].offset == ch->last) {
            ch->synced = 1;
            ch->op_refs--;
            gw_channel_fill(hub, ch); /* more than one read's worth missing: read on */
            return;
        }
        if (ch->last < h->top) {
            gw_channel_insufficient(hub, ch, "missed publications are no longer in history");
            ch->last = h->top;
        }
    }
    if (h)
        ch->synced = 1;
    gw_channel_release_held(hub, ch);
    ch->op_refs--;
    gw_channel_maybe_release(hub, ch);
}

/* Reads the channel's history after ch->last; relay frames arriving meanwhile are held. */
static void gw_channel_fill(gw_hub_t *hub, gw_channel_t *ch)
{
    if (ch->filling && !ch->fill_retry)
        return;
    gw_channel_set_retry(hub, ch, 0);
    gw_fill_op_t *op = gw_malloc(sizeof(*op));
    op->hub = hub;
    op->ch = ch;
    ch->filling = 1;
    ch->op_refs++;
    if (gw_history_read(hub->node->broker, ch->name, ch->n, GW_HIST_AFTER, ch->last, GW_FILL_MAX,
                        gw_hub_meta_ttl(ch->ns), gw_on_fill, op) != 0)
        gw_on_fill(op, NULL);
}

/* ---- joining at a position, recovering ----------------------------------------------------------
 */

/* Data bytes of publications (as stored; what a reply carries is about as large). */
static size_t gw_pubs_bytes(const gw_pub_t *p, size_t n)
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
    int recovered = s->has_since && gw_recovered(hub->node->cfg, s, h);
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
    s->pos = h->top;
    s->state = GW_SUB_LIVE;
    int gap = 0;
    for (uint32_t i = 0; i < s->npend && !gap; i++)
        gap = gw_sub_deliver(s, s->pend[i].offset, s->pend[i].frame) != 0;
    gw_sub_clear_pending(s);
    gw_sub_release_held(hub, s);
    if (gap) {
        gw_sub_kick(hub, s, GW_ERR_INSUFFICIENT_STATE,
                    "insufficient state: resubscribe with since");
        return;
    }
    if (ch->ns->presence)
        gw_presence_update(hub, s, 1, 1);
}

static void gw_sub_start_positioning(gw_hub_t *hub, gw_sub_t *s)
{
    gw_channel_t *ch = s->ch;
    s->state = GW_SUB_POSITIONING;
    s->op_pending = 1;
    int rc = s->has_since ? gw_history_read(hub->node->broker, ch->name, ch->n, GW_HIST_AFTER,
                                            s->since_offset,
                                            (uint32_t)hub->node->cfg->recovery_max_publications + 1,
                                            gw_hub_meta_ttl(ch->ns), gw_on_position, s)
                          : gw_history_read(hub->node->broker, ch->name, ch->n, GW_HIST_POSITION, 0,
                                            0, gw_hub_meta_ttl(ch->ns), gw_on_position, s);
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
    else if (ch->rs == GW_RS_NONE && gw_broker_connected(hub->node->broker))
        gw_redis_subscribe(hub, ch);
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
        gw_sub_attach(hub, s, gw_config_namespace(hub->node->cfg, s->name, nslen));
    }
}

const gw_namespace_t *gw_hub_cmd_namespace(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    size_t nslen;
    const gw_namespace_t *ns = NULL;
    if (!gw_proto_channel_valid(cmd->channel.p, cmd->channel.n, &nslen))
        gw_conn_reply_error(c, cmd->id, GW_ERR_BAD_CHANNEL, "bad channel name");
    else if (!(ns = gw_config_namespace(hub->node->cfg, cmd->channel.p, nslen)))
        gw_conn_reply_error(c, cmd->id, GW_ERR_UNKNOWN_NAMESPACE, "unknown namespace");
    return ns;
}

void gw_hub_subscribe(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    const gw_config_t *cfg = hub->node->cfg;
    const gw_namespace_t *ns = gw_hub_cmd_namespace(hub, c, cmd);
    if (!ns)
        return;
    size_t nslen = strlen(ns->name);
    const char *id = cmd->channel.p + nslen + 1;
    size_t idlen = cmd->channel.n - nslen - 1;
    if (gw_hub_find_sub(c, cmd->channel.p, cmd->channel.n)) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_ALREADY_SUBSCRIBED, "already subscribed");
        return;
    }
    if (c->nsubs >= (uint32_t)cfg->max_subscriptions) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_LIMIT, "too many subscriptions");
        return;
    }
    if (ns->subscribe == GW_NS_SUB_OWNER &&
        (strlen(c->uid) != idlen || memcmp(c->uid, id, idlen))) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_PERMISSION, "permission denied");
        return;
    }
    if (!gw_broker_connected(hub->node->broker)) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        return;
    }
    gw_sub_t *s = gw_calloc(1, sizeof(*s));
    s->conn = c;
    s->name = gw_strndup(cmd->channel.p, cmd->channel.n);
    s->cmd_id = cmd->id;
    if (cmd->has_since) {
        s->has_since = 1;
        s->since_epoch = gw_strndup(cmd->since_epoch.p, cmd->since_epoch.n);
        s->since_offset = cmd->since_offset;
    }
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
}

/* ---- history command
 * ------------------------------------------------------------------------------ */

static void gw_on_history_cmd(void *priv, const gw_history_t *h)
{
    gw_cmd_op_t *op = priv;
    uint32_t id = op->id, op_after = op->arg;
    gw_conn_t *c = gw_cmd_op_done(op);
    if (!c)
        return;
    if (!h) {
        gw_conn_reply_error(c, id, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        return;
    }
    /* at most recovery_max_bytes of data: with since the oldest that fit (ask again from the
     * last offset returned), without it the newest that fit */
    size_t max = (size_t)c->node->cfg->recovery_max_bytes, first = 0, n = h->npubs, sum = 0;
    if (op_after) {
        for (n = 0; n < h->npubs && (sum += gw_pubs_bytes(&h->pubs[n], 1)) <= max; n++)
            ;
    } else {
        for (first = h->npubs; first > 0 && (sum += gw_pubs_bytes(&h->pubs[first - 1], 1)) <= max;
             first--)
            ;
        n = h->npubs - first;
    }
    if (n == 0 && h->npubs > 0) { /* one publication alone over the bound: still one */
        n = 1;
        first = op_after ? 0 : h->npubs - 1;
    }
    gw_buf_t b;
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    for (;;) { /* and a reply the send queue takes now (halved until it does) */
        gw_proto_enc_position_ok(&b, c->enc, id, (gw_slice_t){h->epoch, strlen(h->epoch)}, h->top,
                                 0, 0, h->pubs + first, n);
        if (n <= 1 || gw_conn_fits_buf(c, &b))
            break;
        size_t keep = n / 2;
        if (!op_after)
            first += n - keep;
        n = keep;
        gw_buf_reset(&b);
    }
    gw_conn_send_buf(c, &b);
}

/* history: the retained publications (the newest `limit`, or those after `since`), for
 * subscribers of the channel (the same permission as subscribing). */
void gw_hub_history(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    const gw_namespace_t *ns = gw_hub_cmd_namespace(hub, c, cmd);
    if (!ns)
        return;
    gw_sub_t *s = gw_hub_find_sub(c, cmd->channel.p, cmd->channel.n);
    if (!s || s->state != GW_SUB_LIVE) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_PERMISSION, "subscribe first");
        return;
    }
    uint32_t limit = (uint32_t)ns->history_size;
    if (cmd->limit && cmd->limit < limit)
        limit = cmd->limit;
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    op->arg = cmd->has_since;
    if (gw_history_read(hub->node->broker, cmd->channel.p, cmd->channel.n,
                        cmd->has_since ? GW_HIST_AFTER : GW_HIST_TAIL, cmd->since_offset,
                        limit ? limit : 1, gw_hub_meta_ttl(ns), gw_on_history_cmd, op) != 0)
        gw_on_history_cmd(op, NULL);
}

/* ---- messages from Redis
 * ----------------------------------------------------------------------------- */

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
        ch->op_refs++; /* keep the channel while its subscribers are removed */
        gw_list_foreach_safe(it, tmp, &ch->subs)
        {
            gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
            if (strcmp(s->conn->uid, uid) == 0)
                gw_sub_kick(hub, s, GW_ERR_PERMISSION, "removed from channel");
        }
        ch->op_refs--;
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
    if (!ch || ch->rs != GW_RS_SUBSCRIBED)
        return;
    gw_metrics.publications_in++;
    gw_channel_relay(hub, ch, payload, n);
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
            gw_redis_subscribe(hub, ch);
        else
            gw_channel_maybe_release(hub, ch);
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
        /* every Redis subscription is gone and anything published meanwhile was not relayed:
         * each channel catches up from history once it is subscribed again */
        for (size_t i = 0; i < hub->nbuckets; i++)
            for (gw_channel_t *ch = hub->buckets[i], *next; ch; ch = next) {
                next = ch->next;
                ch->rs = GW_RS_NONE;
                ch->suspect = 1;
                gw_channel_maybe_release(hub, ch);
            }
    }
}

/* ---- periodic work ----------------------------------------------------------------------------
 */

typedef struct {
    gw_hub_t *hub;
    gw_channel_t *ch;
} gw_check_op_t;

/* The position check's HMGET answered: any difference from what was relayed (a publication
 * pub/sub lost, another epoch, offsets that went back) runs a fill, which repairs or signals. */
static void gw_on_check(void *priv, redisReply *r)
{
    gw_check_op_t *op = priv;
    gw_hub_t *hub = op->hub;
    gw_channel_t *ch = op->ch;
    free(op);
    ch->op_refs--;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && !ch->filling && ch->synced) {
        const char *e = r->element[0]->type == REDIS_REPLY_STRING ? r->element[0]->str : "";
        uint64_t s =
            r->element[1]->type == REDIS_REPLY_STRING ? strtoull(r->element[1]->str, NULL, 10) : 0;
        if (strcmp(e, ch->epoch) != 0 || s != ch->last) {
            gw_debug("hub", "%s: position check: Redis has %s/%" PRIu64 ", relayed %s/%" PRIu64,
                     ch->name, e, s, ch->epoch, ch->last);
            gw_channel_fill(hub, ch);
        }
    }
    gw_channel_maybe_release(hub, ch);
}

static void gw_channel_check(gw_hub_t *hub, gw_channel_t *ch)
{
    char key[GW_PROTO_MAX_CHANNEL + 16];
    size_t kn = gw_hub_key(key, sizeof(key), ch->name, ch->n, ":m");
    const char *argv[] = {"HMGET", key, "e", "s"};
    size_t argvlen[] = {5, kn, 1, 1};
    gw_check_op_t *op = gw_malloc(sizeof(*op));
    op->hub = hub;
    op->ch = ch;
    ch->op_refs++;
    if (gw_broker_command_argv(hub->node->broker, gw_on_check, op, 4, argv, argvlen) != 0) {
        ch->op_refs--;
        free(op);
    }
}

/* Every tick visits a slice of the channel table, so that each channel is visited about every
 * GW_VISIT_MS: presence is refreshed every GW_PRESENCE_REFRESH_MS, and the position compared with
 * Redis every position_check_interval_ms (a cheap HMGET; a fill only on a difference). Spreading
 * the work keeps Redis from a burst of one command per channel (seen at 38k connections). */
static void gw_hub_visit(gw_hub_t *hub, gw_channel_t *ch, uint64_t now, int redis_up)
{
    const gw_config_t *cfg = hub->node->cfg;
    if (ch->ns->presence && now - ch->presence_ms >= GW_PRESENCE_REFRESH_MS) {
        ch->presence_ms = now;
        gw_presence_refresh(hub, ch);
    }
    if (redis_up && ch->synced && ch->nsubs && ch->rs == GW_RS_SUBSCRIBED && !ch->filling &&
        now - ch->checked_ms >= (uint64_t)cfg->position_check_interval_ms) {
        ch->checked_ms = now;
        gw_channel_check(hub, ch);
    }
}

static void gw_hub_tick(uv_timer_t *t)
{
    gw_hub_t *hub = t->data;
    uint64_t now = gw_now_ms();
    int redis_up = gw_broker_connected(hub->node->broker);
    uint64_t visit =
        GW_MIN((uint64_t)GW_VISIT_MS, (uint64_t)hub->node->cfg->position_check_interval_ms);
    size_t slice = (size_t)((hub->nbuckets * GW_TICK_MS + visit - 1) / visit);
    if (hub->nretry) /* failed fills are retried every tick */
        for (size_t i = 0; i < hub->nbuckets; i++)
            for (gw_channel_t *ch = hub->buckets[i], *next; ch; ch = next) {
                next = ch->next;
                if (ch->fill_retry)
                    gw_channel_fill(hub, ch);
            }
    for (size_t k = 0; k < slice && k < hub->nbuckets; k++) {
        hub->cursor = (hub->cursor + 1) % hub->nbuckets;
        for (gw_channel_t *ch = hub->buckets[hub->cursor], *next; ch; ch = next) {
            next = ch->next;
            gw_hub_visit(hub, ch, now, redis_up);
        }
    }
}

/* ---- construction
 * ------------------------------------------------------------------------------------- */

gw_hub_t *gw_hub_new(gw_node_t *node)
{
    gw_hub_t *hub = gw_calloc(1, sizeof(*hub));
    hub->node = node;
    hub->nbuckets = 64;
    hub->buckets = gw_calloc(hub->nbuckets, sizeof(*hub->buckets));
    hub->replay_tail = &hub->replay;
    gw_script_init(&hub->publish_script, gw_publish_lua);
    uv_timer_init(node->loop, &hub->tick_timer);
    hub->tick_timer.data = hub;
    uv_timer_start(&hub->tick_timer, gw_hub_tick, GW_TICK_MS, GW_TICK_MS);
    return hub;
}

void gw_hub_stop(gw_hub_t *hub)
{
    if (hub)
        uv_close((uv_handle_t *)&hub->tick_timer, NULL);
}

void gw_hub_free(gw_hub_t *hub)
{
    if (!hub)
        return;
    gw_hub_replay(hub); /* every connection is closed by now: this only frees */
    for (size_t i = 0; i < hub->nbuckets; i++)
        for (gw_channel_t *ch = hub->buckets[i], *next; ch; ch = next) {
            next = ch->next;
            gw_channel_drop_held(ch);
            free(ch);
        }
    free(hub->buckets);
    free(hub);
}
