/* conn.c — one client WebSocket connection: gathers messages, decodes and dispatches commands,
 * keeps the bounded send queue of shared frames and writes it coalesced, one write per turn. */
#include "cardgw/conn.h"
#include "cardgw/admission.h"
#include "cardgw/auth.h"
#include "cardgw/hub.h"
#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/node.h"
#include "cardgw/online.h"

#include <errno.h>
#include <inttypes.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <sys/socket.h>

_Static_assert(LWS_PRE + GW_FRAME_HEADER_MAX <= GW_FRAME_HEADROOM,
               "GW_FRAME_HEADROOM too small for LWS_PRE");

#define GW_COALESCE_MAX 65536 /* bytes gathered into one socket write */

/* ---- frames ---------------------------------------------------------------------------------- */

/* opcode: 0x1 text, 0x2 binary, 0x8 close */
static gw_frame_t *gw_frame_from_buf_op(gw_buf_t *buf, uint8_t opcode)
{
    size_t n = buf->len;
    uint8_t hdr[10];
    size_t h = 0;
    hdr[h++] = (uint8_t)(0x80 | opcode); /* FIN + opcode */
    if (n < 126) {
        hdr[h++] = (uint8_t)n;
    } else if (n <= 0xffff) {
        hdr[h++] = 126;
        hdr[h++] = (uint8_t)(n >> 8);
        hdr[h++] = (uint8_t)n;
    } else {
        hdr[h++] = 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (buf->base == NULL)
        gw_buf_reserve(buf, 1);
    gw_frame_t *f = gw_malloc(sizeof(*f));
    f->refs = 1;
    f->pub_us = 0;
    f->mem = buf->base;
    f->data = gw_buf_data(buf) - h;
    memcpy(f->data, hdr, h);
    f->len = (uint32_t)(n + h);
    buf->base = NULL;
    buf->len = buf->cap = 0;
    return f;
}

gw_frame_t *gw_frame_from_buf(gw_buf_t *buf, int binary)
{
    return gw_frame_from_buf_op(buf, binary ? 0x2 : 0x1);
}

void gw_frame_unref(gw_frame_t *f)
{
    if (f && --f->refs == 0) {
        free(f->mem);
        free(f);
    }
}

/* Every close code the node sends: the reason text of its Close frame and its metric label
 * (cardgw_connections_closed_total{reason}); PROTOCOL.md "close codes" is the same table. */
typedef struct {
    uint16_t code;
    gw_close_reason_t reason;
    const char *text;
} gw_close_code_t;

static const gw_close_code_t gw_close_codes[] = {
    {0, GW_CLOSE_R_CLIENT, "closed"}, /* the client closed or went away */
    {1001, GW_CLOSE_R_SHUTDOWN, "going away"},
    {GW_CLOSE_SHUTDOWN, GW_CLOSE_R_SHUTDOWN, "shutdown"},
    {GW_CLOSE_SLOW, GW_CLOSE_R_SLOW, "slow consumer, reconnect"},
    {GW_CLOSE_INSUFFICIENT, GW_CLOSE_R_INSUFFICIENT, "insufficient state"},
    {GW_CLOSE_AUTH_TIMEOUT, GW_CLOSE_R_AUTH_TIMEOUT, "auth timeout"},
    {GW_CLOSE_FLOOD, GW_CLOSE_R_FLOOD, "too many requests"},
    {GW_CLOSE_EXPIRED, GW_CLOSE_R_EXPIRED, "token expired"},
    {GW_CLOSE_TIMEOUT, GW_CLOSE_R_TIMEOUT, "no traffic, reconnect"},
    {GW_CLOSE_USER_LIMIT, GW_CLOSE_R_USER_LIMIT, "too many connections for this user"},
    {GW_CLOSE_MALFORMED, GW_CLOSE_R_MALFORMED, "malformed frame"},
    {GW_CLOSE_UNAUTHORIZED, GW_CLOSE_R_UNAUTHORIZED, "unauthorized"},
    {GW_CLOSE_TOO_BIG, GW_CLOSE_R_TOO_BIG, "frame too big"},
    {GW_CLOSE_WRONG_FRAME, GW_CLOSE_R_WRONG_FRAME, "wrong frame type for subprotocol"},
    {GW_CLOSE_KICKED, GW_CLOSE_R_KICKED, "disconnected by server"},
};

static const gw_close_code_t *gw_close_lookup(int code)
{
    static const gw_close_code_t other = {0, GW_CLOSE_R_OTHER, "closed"};
    for (size_t i = 0; i < GW_ARRAY_SIZE(gw_close_codes); i++)
        if (gw_close_codes[i].code == code)
            return &gw_close_codes[i];
    return &other;
}

/* ---- life cycle ------------------------------------------------------------------------------ */

gw_conn_t *gw_conn_new(gw_node_t *node, struct lws *wsi, gw_enc_t enc)
{
    gw_conn_t *c = gw_calloc(1, sizeof(*c));
    c->node = node;
    c->wsi = wsi;
    c->enc = enc;
    c->refs = 1;
    c->id = ++node->conn_seq;
    snprintf(c->cid, sizeof(c->cid), "%s-%" PRIx64, node->instance, c->id);
    gw_list_init(&c->subs);
    gw_list_init(&c->rpcs);
    gw_list_init(&c->flush_link);
    gw_list_insert_tail(&node->conns, &c->link);
    node->nconns++;
    gw_buf_init(&c->rx, 0);
    c->tokens = node->cfg->command_burst;
    c->refill_ms = gw_now_ms();
    gw_metrics.connections_open++;
    gw_metrics.connections_accepted++;
    c->created_ms = c->last_rx_ms = gw_now_ms();
    gw_conn_log(GW_LOG_DEBUG, "conn", c, 0, "open (%s)", enc == GW_ENC_JSON ? "json" : "msgpack");
    return c;
}

static void gw_conn_drop_queue(gw_conn_t *c)
{
    while (c->qlen) {
        gw_frame_unref(c->q[c->qhead]);
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
    }
    free(c->q);
    c->q = NULL;
    c->qhead = c->qcap = 0;
    c->qbytes = 0;
}

void gw_conn_on_closed(gw_conn_t *c)
{
    gw_metrics.connections_open--;
    gw_metrics.connections_closed[gw_close_lookup(c->close_code)->reason]++;
    gw_conn_log(GW_LOG_DEBUG, "conn", c, c->close_code, "closed");
    c->wsi = NULL;
    gw_hub_conn_closed(c->node->hub, c);
    if (c->uid) /* authenticated: gw_auth_succeed counted it up */
        gw_online_conn_down(c->node->online, c->uid);
    gw_conn_drop_queue(c);
    gw_buf_free(&c->rx);
    if (gw_list_linked(&c->flush_link))
        gw_list_remove(&c->flush_link);
    gw_list_remove(&c->link);
    c->node->nconns--;
    gw_node_t *node = c->node;
    gw_conn_release(c);
    gw_node_conn_gone(node);
}

void gw_conn_release(gw_conn_t *c)
{
    if (--c->refs)
        return;
    if (c->uid) /* pending operations may still read it until here */
        gw_admission_user_release(c->node->admission, c->uid);
    free(c->info);
    free(c);
}

/* ---- sending --------------------------------------------------------------------------------- */

static void gw_conn_enqueue(gw_conn_t *c, gw_frame_t *f)
{
    if (c->qlen == c->qcap) {
        uint32_t ncap = c->qcap ? c->qcap * 2 : 4;
        gw_frame_t **nq = gw_malloc(ncap * sizeof(*nq));
        for (uint32_t i = 0; i < c->qlen; i++)
            nq[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = nq;
        c->qhead = 0;
        c->qcap = ncap;
    }
    c->q[(c->qhead + c->qlen) % c->qcap] = gw_frame_ref(f);
    c->qlen++;
    c->qbytes += f->len;
    if (c->qlen == 1 && !c->wait_writable && !gw_list_linked(&c->flush_link)) {
        gw_list_insert_tail(&c->node->flushq, &c->flush_link);
        gw_node_flush_soon(c->node);
    }
}

/* The limit counts what waits behind the next frame to go out: one frame larger than the limit
 * (a big recovery reply) is not a slow consumer, a backlog behind it is. */
static int gw_conn_fits(const gw_conn_t *c, size_t len)
{
    size_t behind = c->qlen ? c->qbytes - c->q[c->qhead]->len : 0;
    return c->qlen == 0 || behind + len <= (size_t)c->node->cfg->max_send_queue_bytes;
}

int gw_conn_fits_buf(const gw_conn_t *c, const gw_buf_t *buf)
{
    return gw_conn_fits(c, buf->len + GW_FRAME_HEADER_MAX);
}

int gw_conn_send(gw_conn_t *c, gw_frame_t *f)
{
    if (!c->wsi || c->close_code || c->peer_closed)
        return -EPIPE;
    if (!gw_conn_fits(c, f->len)) {
        gw_log_everyf(&c->node->conn_log, GW_LOG_EVERY_MS, GW_LOG_INFO, "conn",
                      &(gw_log_fields_t){.client = c->cid, .uid = c->uid, .code = GW_CLOSE_SLOW},
                      "slow consumer: %zu bytes queued, closing", c->qbytes);
        gw_conn_close(c, GW_CLOSE_SLOW, 1);
        return -ENOBUFS;
    }
    gw_conn_enqueue(c, f);
    return 0;
}

int gw_conn_send_buf(gw_conn_t *c, gw_buf_t *buf)
{
    gw_frame_t *f = gw_frame_from_buf(buf, c->enc == GW_ENC_MSGPACK);
    int rc = gw_conn_send(c, f);
    gw_frame_unref(f);
    return rc;
}

static gw_frame_t *gw_conn_pop(gw_conn_t *c)
{
    gw_frame_t *f = c->q[c->qhead];
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    c->qbytes -= f->len;
    return f;
}

/* The node does the WebSocket closing handshake itself: it queues a Close frame behind what is
 * already queued (or alone, when now), ignores what the client still sends, and lets lws close
 * the socket when the client's Close comes back (or after GW_CLOSE_ACK_S). lws's own close on a
 * callback returning -1 sends no Close frame in several paths of 4.1 (clients saw 1006). */
#define GW_CLOSE_ACK_S 3

void gw_conn_close(gw_conn_t *c, int code, int now)
{
    if (!c->wsi || c->close_code || c->peer_closed)
        return; /* the first reason wins; a client's Close is answered by lws */
    const char *why = gw_close_lookup(code)->text;
    gw_conn_log(GW_LOG_DEBUG, "conn", c, code, "closing: %s", why);
    if (now) {
        gw_conn_drop_queue(c);
        /* a stalled reader may never take the Close frame: don't wait for it long */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, GW_CLOSE_ACK_S);
    }
    c->close_code = (uint16_t)code;
    gw_buf_t b;
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    uint8_t cc[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    gw_buf_append(&b, cc, 2);
    gw_buf_append(&b, why, GW_MIN(strlen(why), 120));
    gw_frame_t *f = gw_frame_from_buf_op(&b, 0x8);
    gw_conn_enqueue(c, f); /* not counted against max_send_queue_bytes */
    gw_frame_unref(f);
}

/* Sending. Frames queued during one loop turn are written at its end by gw_conn_flush, straight
 * to the socket and coalesced into one write: asking lws for a writable callback instead costs two
 * epoll_ctl calls per delivery (POLLOUT on, then off), which the fan-out profile showed. Only when
 * the socket is full (lws kept the unwritten rest: lws_partial_buffered) does the connection wait
 * for lws's writable callback, which writes the rest of the queue. */

/* Writes n bytes of complete WebSocket frames: straight to the socket while lws holds nothing
 * unsent for it (lws_write calls lws_callback_on_writable, two epoll_ctl per delivery, even when
 * everything went out); what the socket does not take is handed to lws, which keeps it and
 * writes it first when the socket drains. Frames are never split between the two. p has LWS_PRE
 * bytes of headroom (lws does not write into it for RAW). Returns 0 or -1 (peer gone). */
static int gw_conn_send_raw(gw_conn_t *c, uint8_t *p, size_t n)
{
    if (c->tls) /* lws encrypts, writes what the socket takes and keeps the rest */
        return lws_write(c->wsi, p, n, LWS_WRITE_RAW) < (int)n ? -1 : 0;
    if (!lws_partial_buffered(c->wsi)) {
        ssize_t w = send(lws_get_socket_fd(c->wsi), p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w == (ssize_t)n)
            return 0;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        }
    }
    gw_metrics.writes_partial++;
    return lws_write(c->wsi, p, n, LWS_WRITE_RAW) < (int)n ? -1 : 0;
}

/* cardgw_delivery_latency_seconds: one publication frame in GW_LATENCY_SAMPLE is timed from its
 * publish time (the Redis clock, relay frame version 2) to the write that carries it; the wall
 * clock is read at most once per write (*now_us: 0 until then). */
#define GW_LATENCY_SAMPLE 8
static void gw_conn_time_delivery(const gw_frame_t *f, uint64_t *now_us)
{
    static uint32_t tick;
    if (!f->pub_us || ++tick % GW_LATENCY_SAMPLE != 0)
        return;
    if (!*now_us)
        *now_us = gw_wall_us();
    gw_hist_observe(&gw_metrics.delivery_latency, *now_us > f->pub_us ? *now_us - f->pub_us : 0);
}

/* One write of what is queued: a single frame goes straight from its shared buffer; several are
 * gathered (pre-built WebSocket headers included, up to GW_COALESCE_MAX bytes) and written as raw
 * bytes. While lws still holds bytes a full socket did not take, waits for its writable callback
 * instead. Returns 0, or -1 when the peer is gone. */
static int gw_conn_write(gw_conn_t *c)
{
    static uint8_t scratch[LWS_PRE + GW_COALESCE_MAX];
    if (c->qlen == 0 || c->peer_closed)
        return 0;
    if (lws_partial_buffered(c->wsi)) {
        c->wait_writable = 1;
        lws_callback_on_writable(c->wsi);
        return 0;
    }
    int rc, want;
    uint32_t frames = 0;
    uint64_t now_us = 0;
    if (c->qlen == 1 || c->q[c->qhead]->len > GW_COALESCE_MAX / 2) {
        gw_frame_t *f = gw_conn_pop(c);
        gw_conn_time_delivery(f, &now_us);
        want = (int)f->len;
        rc = gw_conn_send_raw(c, f->data, f->len);
        gw_frame_unref(f);
        frames = 1;
    } else {
        size_t used = 0;
        while (c->qlen && used + c->q[c->qhead]->len <= GW_COALESCE_MAX) {
            gw_frame_t *f = gw_conn_pop(c);
            gw_conn_time_delivery(f, &now_us);
            memcpy(scratch + LWS_PRE + used, f->data, f->len);
            used += f->len;
            gw_frame_unref(f);
            frames++;
        }
        want = (int)used;
        rc = gw_conn_send_raw(c, scratch + LWS_PRE, used);
    }
    if (rc < 0)
        return -1;
    gw_metrics.writes_out++;
    gw_metrics.frames_out += frames;
    gw_metrics.bytes_out += (uint64_t)want;
    if (c->qlen || lws_partial_buffered(c->wsi)) {
        c->wait_writable = 1;
        lws_callback_on_writable(c->wsi);
    } else if (c->close_code) { /* our Close frame is out: wait for the client's */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, GW_CLOSE_ACK_S);
    }
    if (c->qlen == 0 && c->qcap > 16) { /* give back a queue grown by a burst */
        free(c->q);
        c->q = NULL;
        c->qhead = c->qcap = 0;
    }
    return 0;
}

int gw_conn_on_writable(gw_conn_t *c)
{
    c->wait_writable = 0;
    return gw_conn_write(c);
}

static void gw_conn_flush(gw_conn_t *c)
{
    gw_list_remove(&c->flush_link);
    if (!c->wsi || c->wait_writable)
        return;
    if (gw_conn_write(c) < 0) /* the peer is gone: lws closes the socket on its next turn */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

void gw_conn_flush_queued(gw_node_t *node)
{
    while (!gw_list_empty(&node->flushq))
        gw_conn_flush(gw_container_of(node->flushq.next, gw_conn_t, flush_link));
}

/* ---- operations that outlive a Redis round trip ------------------------------------------- */

gw_cmd_op_t *gw_cmd_op_new(gw_conn_t *c, uint32_t id)
{
    gw_cmd_op_t *op = gw_malloc(sizeof(*op));
    gw_conn_hold(c);
    op->c = c;
    op->id = id;
    op->arg = 0;
    op->started_us = 0;
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

gw_conn_t *gw_cmd_op_finish(gw_cmd_op_t *op, int failed, uint32_t *id)
{
    *id = op->id;
    gw_conn_t *c = gw_cmd_op_done(op);
    if (c && failed) {
        gw_conn_reply_error(c, *id, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        c = NULL;
    }
    return c;
}

/* ---- replies --------------------------------------------------------------------------------- */

void gw_conn_disconnect(gw_conn_t *c, int code, const char *reason)
{
    GW_CONN_SEND(c, gw_proto_enc_disconnect, code, reason, 0, 0);
    gw_conn_close(c, code, 0);
}

void gw_conn_reply_ok(gw_conn_t *c, uint32_t id)
{
    GW_CONN_SEND(c, gw_proto_enc_ok, id);
}

void gw_conn_reply_error(gw_conn_t *c, uint32_t id, int code, const char *msg)
{
    gw_metrics.command_errors++;
    GW_CONN_SEND(c, gw_proto_enc_error, id, code, msg);
    /* the error budget is for what the client does wrong now: not for held commands answered
     * after their subscribe failed, nor for 115 (too many held or waiting), nor for what the
     * backend answered or failed to answer in time (119, 118), nor for Redis being unreachable
     * (111: a hiccup would otherwise close every client with more rpcs waiting than the budget) */
    if (c->replaying || code == GW_ERR_TOO_MANY_REQUESTS || code == GW_ERR_RPC_TIMEOUT ||
        code == GW_ERR_BACKEND || code == GW_ERR_UNAVAILABLE)
        return;
    uint64_t now = gw_now_ms();
    if (now - c->errors_window_ms > 60000) {
        c->errors_window_ms = now;
        c->errors = 0;
    }
    if (++c->errors > (uint32_t)c->node->cfg->max_errors_per_minute) {
        gw_log_everyf(&c->node->conn_log, GW_LOG_EVERY_MS, GW_LOG_INFO, "conn",
                      &(gw_log_fields_t){.client = c->cid, .uid = c->uid, .code = GW_CLOSE_FLOOD},
                      "more than %d errors in a minute, closing",
                      c->node->cfg->max_errors_per_minute);
        gw_conn_close(c, GW_CLOSE_FLOOD, 0);
    }
}

/* ---- receiving ------------------------------------------------------------------------------- */

/* Token bucket: commands_per_second sustained, command_burst at once. */
static int gw_conn_take_token(gw_conn_t *c)
{
    const gw_config_t *cfg = c->node->cfg;
    uint64_t now = gw_now_ms();
    c->tokens += (double)(now - c->refill_ms) * cfg->commands_per_second / 1000.0;
    if (c->tokens > cfg->command_burst)
        c->tokens = cfg->command_burst;
    c->refill_ms = now;
    if (c->tokens < 1.0)
        return 0;
    c->tokens -= 1.0;
    return 1;
}

static int gw_cmd_names_channel(gw_cmd_kind_t k)
{
    return k == GW_CMD_SUBSCRIBE || k == GW_CMD_UNSUBSCRIBE || k == GW_CMD_PUBLISH ||
           k == GW_CMD_PRESENCE || k == GW_CMD_HISTORY || k == GW_CMD_PRESENCE_USERS ||
           k == GW_CMD_PRESENCE_STATS;
}

static void gw_conn_dispatch(gw_conn_t *c, gw_cmd_t *cmd, const uint8_t *msg, size_t n)
{
    gw_hub_t *hub = c->node->hub;
    if (cmd->kind == GW_CMD_PING) {
        gw_conn_reply_ok(c, cmd->id);
        return;
    }
    if (cmd->kind == GW_CMD_CONNECT) {
        if (c->state != GW_CONN_NEW)
            gw_conn_reply_error(c, cmd->id, GW_ERR_ALREADY_CONNECTED, "already connected");
        else
            gw_auth_connect(c, cmd);
        return;
    }
    if (c->state != GW_CONN_READY) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_NOT_CONNECTED, "send connect first");
        return;
    }
    /* same-channel commands in the order sent */
    if (gw_cmd_names_channel(cmd->kind) && gw_hub_hold(hub, c, cmd, msg, n))
        return;
    switch (cmd->kind) {
    case GW_CMD_REFRESH:
        gw_auth_refresh(c, cmd);
        break;
    case GW_CMD_SUBSCRIBE:
        gw_hub_subscribe(hub, c, cmd);
        break;
    case GW_CMD_UNSUBSCRIBE:
        gw_hub_unsubscribe(hub, c, cmd);
        break;
    case GW_CMD_PUBLISH:
        gw_hub_client_publish(hub, c, cmd);
        break;
    case GW_CMD_PRESENCE:
    case GW_CMD_PRESENCE_USERS:
    case GW_CMD_PRESENCE_STATS:
        gw_hub_presence(hub, c, cmd);
        break;
    case GW_CMD_HISTORY:
        gw_hub_history(hub, c, cmd);
        break;
    case GW_CMD_RPC:
        gw_hub_rpc(hub, c, cmd);
        break;
    default:
        gw_conn_reply_error(c, cmd->id, GW_ERR_UNKNOWN_COMMAND, "unknown command");
        break;
    }
}

static int gw_conn_process(gw_conn_t *c, const uint8_t *p, size_t n)
{
    gw_cmd_t cmd;
    gw_dec_err_t e;
    gw_metrics.frames_in++;
    gw_metrics.bytes_in += n;
    if (!gw_conn_take_token(c)) {
        gw_conn_close(c, GW_CLOSE_FLOOD, 1);
        return 0;
    }
    switch (gw_proto_decode(c->enc, p, n, &cmd, &e)) {
    case GW_DEC_OK:
        gw_metrics.commands++; /* once, also for a command held and run later */
        gw_conn_dispatch(c, &cmd, p, n);
        gw_cmd_free(&cmd);
        return 0;
    case GW_DEC_MALFORMED:
        gw_conn_log(GW_LOG_DEBUG, "conn", c, GW_CLOSE_MALFORMED, "malformed frame: %s", e.msg);
        gw_conn_close(c, GW_CLOSE_MALFORMED, 1);
        return 0;
    default:
        gw_conn_reply_error(c, e.id, e.code, e.msg);
        return 0;
    }
}

void gw_conn_replay(gw_conn_t *c, const uint8_t *msg, size_t n)
{
    gw_cmd_t cmd;
    gw_dec_err_t e;
    if (!c->wsi || c->close_code || c->peer_closed)
        return;
    c->replaying = 1;
    if (gw_proto_decode(c->enc, msg, n, &cmd, &e) == GW_DEC_OK) /* it decoded the first time */
        gw_conn_dispatch(c, &cmd, msg, n);
    c->replaying = 0;
    gw_cmd_free(&cmd);
}

int gw_conn_on_receive(gw_conn_t *c, const uint8_t *in, size_t len, int binary, int final)
{
    gw_conn_on_pong(c); /* any traffic proves the peer alive */
    if (c->close_code)
        return 0; /* closing: ignore what is still in flight */
    if (c->rx.len == 0 && binary != (c->enc == GW_ENC_MSGPACK)) {
        gw_conn_close(c, GW_CLOSE_WRONG_FRAME, 1);
        return 0;
    }
    if (c->rx.len + len > (size_t)c->node->cfg->max_frame_bytes) {
        gw_buf_free(&c->rx);
        gw_conn_close(c, GW_CLOSE_TOO_BIG, 1);
        return 0;
    }
    if (final && c->rx.len == 0)
        return gw_conn_process(c, in, len);
    gw_buf_append(&c->rx, in, len);
    if (!final)
        return 0;
    int rc = gw_conn_process(c, gw_buf_data(&c->rx), c->rx.len);
    gw_buf_free(&c->rx);
    return rc;
}

/* The node's sweep, twice a second for every connection: the auth deadline, the token's
 * refresh and expiry, and liveness. A WebSocket ping goes to a connection silent for
 * ping_interval_s; one silent for three intervals is closed (4007). These used to be lws timers,
 * but lws keeps per-connection timers in a sorted list and re-sorts on every read and write
 * (O(connections) per delivery, half the node's CPU in the fan-out bench). */
void gw_conn_sweep(gw_conn_t *c, uint64_t now_ms, uint64_t wall_ms)
{
    const gw_config_t *cfg = c->node->cfg;
    if (c->close_code || !c->wsi)
        return;
    if (c->state != GW_CONN_READY) {
        if (now_ms - c->created_ms >= (uint64_t)cfg->auth_timeout_ms)
            gw_conn_close(c, GW_CLOSE_AUTH_TIMEOUT, 1);
        return;
    }
    gw_auth_tick(c, wall_ms);
    uint64_t silent = now_ms - c->last_rx_ms, iv = (uint64_t)cfg->ping_interval_s * 1000;
    if (silent >= 3 * iv) {
        gw_conn_close(c, GW_CLOSE_TIMEOUT, 1);
    } else if (silent >= iv && !c->ping_sent) {
        gw_node_t *node = c->node;
        if (!node->ping_frame) { /* one frame shared by every ping of the node */
            /* with a payload: lws 4.1 drops an empty pong before the protocol callback */
            gw_buf_t b;
            gw_buf_init(&b, GW_FRAME_HEADROOM);
            gw_buf_append(&b, "gw", 2);
            node->ping_frame = gw_frame_from_buf_op(&b, 0x9);
        }
        gw_conn_enqueue(c, node->ping_frame);
        c->ping_sent = 1;
    }
}

void gw_conn_on_peer_close(gw_conn_t *c)
{
    c->peer_closed = 1;
    gw_conn_drop_queue(c);
}

void gw_conn_on_pong(gw_conn_t *c)
{
    c->last_rx_ms = gw_now_ms();
    c->ping_sent = 0;
}
