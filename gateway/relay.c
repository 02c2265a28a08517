/* relay.c — publications from Redis to subscribers strictly in offset order: one shared frame per
 * encoding, gaps filled from history, idle channels checked against Redis, the hub's tick. */
#include "hub_int.h"

#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/schema.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#define GW_FILL_RETRY_FOR_MS 15000 /* fill reads are retried this long before giving up */
#define GW_VISIT_MS          5000  /* each channel is visited by the tick about this often */

/* ---- fan-out --------------------------------------------------------------------------------- */

static gw_frame_t *gw_pub_frame(gw_frame_t **frames, gw_enc_t enc, gw_channel_t *ch,
                                const gw_pub_t *pub, uint64_t time_us)
{
    if (!frames[enc]) {
        gw_buf_t b;
        gw_buf_init(&b, GW_FRAME_HEADROOM);
        gw_proto_enc_pub(&b, enc, (gw_slice_t){ch->name, ch->n}, pub);
        frames[enc] = gw_frame_from_buf(&b, enc == GW_ENC_MSGPACK);
        frames[enc]->pub_us = time_us;
    }
    return frames[enc];
}

/* Keeps a reference to f for a subscription being positioned (delivered after its reply). */
static void gw_sub_buffer(gw_sub_t *s, uint64_t offset, gw_frame_t *f)
{
    if (s->npend == s->cappend) {
        s->cappend = s->cappend ? s->cappend * 2 : 8;
        s->pend = gw_realloc(s->pend, s->cappend * sizeof(*s->pend));
    }
    s->pend[s->npend++] = (gw_pending_pub_t){offset, gw_frame_ref(f)};
}

/* Sends f to a live subscription if it is the next offset; returns 1 when it was queued, 0 when
 * not (a duplicate, or the connection is closing), -1 on a gap (the caller kicks the
 * subscription). Deliveries are counted by the caller, once per publication. */
int gw_sub_deliver(gw_sub_t *s, uint64_t offset, gw_frame_t *f)
{
    if (offset <= s->pos)
        return 0; /* already delivered (joined at a later position) */
    if (offset != s->pos + 1)
        return -1;
    s->pos = offset;
    return gw_conn_send(s->conn, f) == 0;
}

void gw_channel_count_deliveries(const gw_channel_t *ch, uint64_t n)
{
    gw_metrics.deliveries += n;
    gw_metrics.ns[ch->nsi].deliveries += n;
}

/* One publication, in order, to every subscription of the channel: each encoding is encoded
 * once and the same frame is queued to every recipient. time_us: its publish time (relay frame
 * version 2; 0 when unknown: version 1, or read from history), kept in the frame for the
 * delivery-latency histogram (gw_conn_write). */
static void gw_channel_fanout(gw_hub_t *hub, gw_channel_t *ch, const gw_pub_t *pub,
                              uint64_t time_us)
{
    gw_frame_t *frames[2] = {NULL, NULL};
    gw_list_t *it, *tmp;
    uint64_t sent = 0;
    gw_metrics.ns[ch->nsi].publications++;
    gw_list_foreach_safe(it, tmp, &ch->subs)
    {
        gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
        gw_frame_t *f;
        if (s->state == GW_SUB_POSITIONING) {
            gw_sub_buffer(s, pub->offset, gw_pub_frame(frames, s->conn->enc, ch, pub, time_us));
        } else if (s->state == GW_SUB_LIVE) {
            f = gw_pub_frame(frames, s->conn->enc, ch, pub, time_us);
            int r = gw_sub_deliver(s, pub->offset, f);
            if (r < 0)
                gw_sub_kick(hub, s, GW_ERR_INSUFFICIENT_STATE,
                            "insufficient state: resubscribe with since");
            else
                sent += (uint64_t)r;
        }
    }
    gw_channel_count_deliveries(ch, sent);
    gw_frame_unref(frames[0]);
    gw_frame_unref(frames[1]);
}

/* ---- relay: order, gaps and fills ------------------------------------------------------------ */

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
void gw_channel_relay(gw_hub_t *hub, gw_channel_t *ch, const char *payload, size_t n)
{
    gw_relay_frame_t w;
    if (gw_schema_parse_relay(payload, n, &w) != 0) {
        gw_logf(GW_LOG_WARN, "hub", (&(gw_log_fields_t){.channel = ch->name}),
                "dropped a malformed relay frame (%zu bytes)", n);
        return;
    }
    if (w.kind == 'J' || w.kind == 'L') {
        gw_client_info_t who = {w.pub.from,
                                (gw_slice_t){(const char *)w.pub.data.p, w.pub.data.n},
                                {GW_DATA_JSON, (const uint8_t *)w.info.p, w.info.n}};
        gw_presence_fanout(ch, &who, w.kind == 'L');
        return;
    }
    if (ch->filling) {
        gw_channel_hold(ch, payload, n);
        return;
    }
    if (!ch->synced) { /* nobody is live yet: subscriptions being set up buffer it */
        gw_channel_fanout(hub, ch, &w.pub, w.time_us);
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
    gw_channel_fanout(hub, ch, &w.pub, w.time_us);
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
            gw_channel_fanout(hub, ch, &h->pubs[i], 0);
        }
        if (ch->last < h->top && (h->npubs == GW_FILL_MAX || h->cut) && h->npubs &&
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

/* Reads the channel's history after ch->last, at most GW_FILL_MAX publications and
 * recovery_max_bytes of data a read (the script stops there: a gap of large publications costs
 * Redis and the node one bounded read at a time, and what was read is queued to subscribers
 * before the next); relay frames arriving meanwhile are held. */
void gw_channel_fill(gw_hub_t *hub, gw_channel_t *ch)
{
    if (ch->filling && !ch->fill_retry)
        return;
    gw_channel_set_retry(hub, ch, 0);
    gw_fill_op_t *op = gw_malloc(sizeof(*op));
    op->hub = hub;
    op->ch = ch;
    ch->filling = 1;
    ch->op_refs++;
    if (gw_history_read_max(gw_channel_redis(hub, ch), ch->name, ch->n, GW_HIST_AFTER, ch->last,
                            GW_FILL_MAX, (uint32_t)hub->cfg->meta_read_ttl_s,
                            (size_t)hub->cfg->recovery_max_bytes, gw_on_fill, op) != 0)
        gw_on_fill(op, NULL);
}

/* ---- periodic work --------------------------------------------------------------------------- */

typedef struct {
    gw_hub_t *hub;
    gw_channel_t *ch;
} gw_check_op_t;

/* The position check answered: any difference from what was relayed (a publication pub/sub lost,
 * another epoch, offsets that went back) runs a fill, which repairs or signals. */
static void gw_on_check(void *priv, int err, const char *epoch, uint64_t top)
{
    gw_check_op_t *op = priv;
    gw_hub_t *hub = op->hub;
    gw_channel_t *ch = op->ch;
    free(op);
    ch->op_refs--;
    if (!err && !ch->filling && ch->synced && (strcmp(epoch, ch->epoch) != 0 || top != ch->last)) {
        gw_debug("hub", "%s: position check: Redis has %s/%" PRIu64 ", relayed %s/%" PRIu64,
                 ch->name, epoch, top, ch->epoch, ch->last);
        gw_channel_fill(hub, ch);
    }
    gw_channel_maybe_release(hub, ch);
}

static void gw_channel_check(gw_hub_t *hub, gw_channel_t *ch)
{
    gw_check_op_t *op = gw_malloc(sizeof(*op));
    op->hub = hub;
    op->ch = ch;
    ch->op_refs++;
    if (gw_history_position_keep(gw_channel_redis(hub, ch), ch->name, ch->n,
                                 (uint32_t)hub->cfg->meta_read_ttl_s, gw_on_check, op) != 0) {
        ch->op_refs--;
        free(op);
    }
}

/* Every tick visits a slice of the channel table, so that each channel is visited about every
 * GW_VISIT_MS: presence is refreshed every presence_ttl_ms / 3, and the position compared with
 * Redis every position_check_interval_ms (a cheap HMGET; a fill only on a difference). Spreading
 * the work keeps Redis from a burst of one command per channel (seen at 38k connections). */
static void gw_hub_visit(gw_hub_t *hub, gw_channel_t *ch, uint64_t now)
{
    int redis_up = gw_redis_connected(gw_channel_redis(hub, ch));
    const gw_config_t *cfg = hub->cfg;
    gw_presence_cache_trim(ch, now);
    if (ch->ns->presence && now - ch->presence_ms >= (uint64_t)cfg->presence_ttl_ms / 3) {
        ch->presence_ms = now;
        gw_presence_refresh(hub, ch);
    }
    if (redis_up && ch->synced && ch->nsubs && ch->rs == GW_RS_SUBSCRIBED && !ch->filling &&
        now - ch->checked_ms >= (uint64_t)cfg->position_check_interval_ms) {
        ch->checked_ms = now;
        gw_channel_check(hub, ch);
    }
}

void gw_relay_tick(uv_timer_t *t)
{
    gw_hub_t *hub = t->data;
    uint64_t now = gw_now_ms();
    uint64_t visit = GW_MIN((uint64_t)GW_VISIT_MS, (uint64_t)hub->cfg->position_check_interval_ms);
    visit = GW_MIN(visit, (uint64_t)hub->cfg->presence_ttl_ms / 3);
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
            gw_hub_visit(hub, ch, now);
        }
    }
}
