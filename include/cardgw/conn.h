/* conn.h — one client WebSocket connection: frame reassembly, command dispatch, the bounded
 * send queue of shared pre-encoded frames, flood control and closing with a documented code. */
#ifndef CARDGW_CONN_H
#define CARDGW_CONN_H

#include <stdint.h>

#include "cardgw/common.h"
#include "cardgw/log.h"
#include "cardgw/proto.h"

struct lws;
struct gw_node;

/* A WebSocket message ready to go on the wire (server frame header + payload), shared by every
 * recipient and freed when the last reference goes. */
typedef struct gw_frame {
    uint32_t refs;
    uint32_t len;    /* header + payload */
    uint8_t *data;   /* start of the header; LWS_PRE bytes of headroom lie before it */
    uint8_t *mem;    /* allocation that holds data */
    uint64_t pub_us; /* a publication's publish time (unix us, Redis clock); 0: not one / unknown */
} gw_frame_t;

/* Takes ownership of buf's memory (buf is reset); buf must have been initialised with
 * GW_FRAME_HEADROOM. Returns a frame with one reference. */
#define GW_FRAME_HEADER_MAX 14                         /* largest server WebSocket frame header */
#define GW_FRAME_HEADROOM   (16 + GW_FRAME_HEADER_MAX) /* LWS_PRE (16 here, checked) + header */
gw_frame_t *gw_frame_from_buf(gw_buf_t *buf, int binary);
static inline gw_frame_t *gw_frame_ref(gw_frame_t *f)
{
    f->refs++;
    return f;
}
/* Drops one reference (NULL is fine); the last one frees the frame. */
void gw_frame_unref(gw_frame_t *f);

typedef enum { GW_CONN_NEW = 0, GW_CONN_AUTHING, GW_CONN_READY } gw_conn_state_t;

typedef struct gw_conn {
    struct gw_node *node;
    struct lws *wsi; /* NULL once closed */
    gw_list_t link;  /* node->conns */
    gw_list_t subs;  /* gw_sub_t.conn_link: channels this connection is subscribed to */
    uint32_t refs;   /* the open socket holds one; each pending async operation one */
    uint32_t nsubs;
    gw_enc_t enc;
    gw_conn_state_t state;
    uint16_t close_code; /* set: close once the queue is flushed (or now, see gw_conn_close) */
    uint32_t peer_ip;    /* IPv4 address its per-IP count is charged to (server.c releases it) */
    uint64_t id;
    char cid[24];           /* client id: <node instance>-<seq>, unique across nodes */
    const char *uid;        /* after connect: the admission table's copy, shared by the user's
                             * connections and released in gw_conn_release */
    uint64_t expires_at_ms; /* wall clock; 0 = the token does not expire */
    char *info;             /* owned: compact JSON text of the token's info, NULL if none */
    uint8_t refresh_sent;
    uint8_t ping_sent;
    uint8_t replaying;   /* running held commands: their errors do not count as the client's */
    uint32_t held_bytes; /* commands held behind pending subscribes (hub.c), bounded */
    gw_list_t rpcs;      /* gw_rpc_wait_t.conn_link: rpcs waiting for the backend (rpc_wait.c) */
    uint32_t nrpcs;      /* how many; at most max_pending_rpcs_per_connection */
    uint64_t created_ms, last_rx_ms; /* monotonic */
    /* receive: a message split over several lws callbacks is gathered here */
    gw_buf_t rx;
    /* send queue: ring of frame references */
    gw_frame_t **q;
    uint32_t qhead, qlen, qcap;
    size_t qbytes;
    gw_list_t flush_link; /* node->flushq: written at the end of this loop turn */
    /* the socket is full: the rest goes from lws's writable callback */
    uint8_t wait_writable;
    /* the client sent Close first: lws answers it, nothing more is written */
    uint8_t peer_closed;
    /* a TLS connection: frames go through lws (it encrypts), never straight to the socket */
    uint8_t tls;
    /* flood control */
    double tokens;
    uint64_t refill_ms;
    uint32_t errors;
    uint64_t errors_window_ms;
} gw_conn_t;

/* A connection for an upgraded WebSocket wsi (borrowed; lws owns it) speaking enc, linked into
 * node->conns with one reference (the socket's, dropped by gw_conn_on_closed). Never NULL. */
gw_conn_t *gw_conn_new(struct gw_node *node, struct lws *wsi, gw_enc_t enc);
/* A whole or partial message arrived. Returns 0, or -1 when lws must close the connection (the
 * close reason is already set). */
int gw_conn_on_receive(gw_conn_t *c, const uint8_t *in, size_t len, int binary, int final);
/* The socket can take data: writes the queued frames in one write. Returns -1 to close. */
int gw_conn_on_writable(gw_conn_t *c);
/* Called by the node once per loop turn (or flush_window_ms): every connection that got frames
 * since (they are on node->flushq, kept by this module) has them written, coalesced, straight to
 * the socket (see the comment in conn.c). */
void gw_conn_flush_queued(struct gw_node *node);
/* Whether a message whose encoding is in buf (not yet a frame) can be queued now without closing
 * the connection as a slow consumer (see gw_conn_send). */
int gw_conn_fits_buf(const gw_conn_t *c, const gw_buf_t *buf);
/* Decodes and runs a command message again (one the hub held back, see gw_hub_hold); nothing
 * when the connection is closing. Flood control counted it when it arrived. */
void gw_conn_replay(gw_conn_t *c, const uint8_t *msg, size_t n);
/* The node's periodic sweep (auth deadline, token expiry, pings, dead peers). */
void gw_conn_sweep(gw_conn_t *c, uint64_t now_ms, uint64_t wall_ms);
/* The client sent a Close frame first: drop what is queued and write nothing more. */
void gw_conn_on_peer_close(gw_conn_t *c);
/* A pong (or any frame) arrived. */
void gw_conn_on_pong(gw_conn_t *c);
/* The socket is gone: drops subscriptions and queued frames, releases the socket's reference. */
void gw_conn_on_closed(gw_conn_t *c);

/* Queues a frame (takes a new reference). Past max_send_queue_bytes the connection is closed as
 * a slow consumer and the frame is not queued. Returns 0 or -ENOBUFS / -EPIPE (closed). */
int gw_conn_send(gw_conn_t *c, gw_frame_t *f);
/* Encodes and queues a one-off message built by the caller into buf (takes its memory). */
int gw_conn_send_buf(gw_conn_t *c, gw_buf_t *buf);
/* Closes with code (a GW_CLOSE_* or 1001): queues a Close frame behind what is queued (when now
 * is 0) or instead of it (now = 1), and ignores what the client sends from then on. */
void gw_conn_close(gw_conn_t *c, int code, int now);

/* Encodes one message for c with encoder (a gw_proto_enc_* function: its buffer and encoding come
 * first, then the given arguments) and queues it: the one way a one-off message is sent. Evaluates
 * to gw_conn_send_buf's result. */
#define GW_CONN_SEND(c, encoder, ...)                                                              \
    ({                                                                                             \
        gw_conn_t *gw_c_ = (c);                                                                    \
        gw_buf_t gw_b_;                                                                            \
        gw_buf_init(&gw_b_, GW_FRAME_HEADROOM);                                                    \
        encoder(&gw_b_, gw_c_->enc, __VA_ARGS__);                                                  \
        gw_conn_send_buf(gw_c_, &gw_b_);                                                           \
    })

/* Logs a line about connection c (borrowed): its client id and, once connected, its uid go in the
 * line's fields (log.h); code (0: none) is a close code. */
#define gw_conn_log(l, mod, c, code_, ...)                                                         \
    gw_logf((l), (mod),                                                                            \
            (&(gw_log_fields_t){.client = (c)->cid, .uid = (c)->uid, .code = (code_)}),            \
            __VA_ARGS__)

/* Sends a `disconnect` push (code, reason; no reconnect advice) and closes with code behind it. */
void gw_conn_disconnect(gw_conn_t *c, int code, const char *reason);

/* Replies to command id. Errors count towards max_errors_per_minute, except 115 and the
 * backend's 118 / 119 (not the client's doing). */
void gw_conn_reply_ok(gw_conn_t *c, uint32_t id);
void gw_conn_reply_error(gw_conn_t *c, uint32_t id, int code, const char *msg);

/* A command answered after an asynchronous operation (a Redis round trip): holds a reference to
 * the connection until gw_cmd_op_done. The one way a command's callback finds its connection. */
typedef struct {
    gw_conn_t *c;        /* held */
    uint32_t id;         /* the command to answer */
    uint32_t arg;        /* the command's own use (history: with since; auth: a refresh) */
    uint64_t started_us; /* the command's own use (auth: when connect arrived, gw_now_us) */
} gw_cmd_op_t;
/* Holds c; never NULL. */
gw_cmd_op_t *gw_cmd_op_new(gw_conn_t *c, uint32_t id);
/* Frees op and drops its reference; returns the connection if it is still open (borrowed for the
 * rest of the callback), else NULL: the reply has nobody to go to. */
gw_conn_t *gw_cmd_op_done(gw_cmd_op_t *op);
/* Ends op when Redis answered: *id gets the command id, and the connection (borrowed) is returned
 * when the reply is to be built now; NULL when the connection is gone, or when failed is set
 * (then error 111 "redis unavailable, retry" was sent). */
gw_conn_t *gw_cmd_op_finish(gw_cmd_op_t *op, int failed, uint32_t *id);

/* References (redis' protectClient): the open socket holds one, each pending operation one; the
 * connection is freed with the last. */
static inline void gw_conn_hold(gw_conn_t *c)
{
    c->refs++;
}
/* Drops a reference taken with gw_conn_hold; the last one frees c (and gives its uid count back
 * to admission). After gw_conn_on_closed, c->wsi is NULL: the connection is gone, the memory is
 * not until every holder released it. */
void gw_conn_release(gw_conn_t *c);

#endif
