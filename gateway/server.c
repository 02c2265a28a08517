/* server.c — libwebsockets on the node's libuv loop (foreign loop): the vhost, subprotocol
 * negotiation at upgrade, the lws callback that feeds connections, and plain HTTP routes. */
#include "cardgw/server.h"
#include "cardgw/admission.h"
#include "cardgw/api.h"
#include "cardgw/apikeys.h"
#include "cardgw/broker.h"
#include "cardgw/conn.h"
#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/node.h"
#include "cardgw/proto.h"
#include "cardgw/origin.h"
#include "cardgw/static.h"
#include "cardgw/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

/* lws allocates one of these per connection for whichever protocol the wsi is bound to. */
typedef struct {
    gw_conn_t *conn;    /* WebSocket connections */
    gw_http_req_t *req; /* plain HTTP requests */
} gw_pss_t;

#define GW_HTTP_PROTOCOL_NAME "cardgw-http"

/* One accepted socket until it closes or becomes a WebSocket (lws opaque user data of its wsi):
 * the address its per-IP count is charged to, and the deadline of its plain-HTTP phase. At the
 * upgrade the address moves to the gw_conn_t and this record is freed; otherwise it is freed in
 * LWS_CALLBACK_WSI_DESTROY. */
typedef struct gw_peer {
    gw_list_t link; /* node->http_peers until upgraded or past its deadline, oldest first */
    struct lws *wsi;
    uint64_t accepted_ms;
    uint32_t ip; /* network order */
    int admin;   /* accepted on admin_port */
} gw_peer_t;

static void gw_server_peer_free(struct gw_node *node, gw_peer_t *peer);
static void gw_server_socket_closed(struct gw_node *node, uint32_t ip);

#define GW_ACCEPT_PAUSE_MS 250 /* after EMFILE/ENFILE: let descriptors come back */

/* ---- HTTP responses -------------------------------------------------------------------------- */

gw_http_req_t *gw_http_req_new(struct lws *wsi)
{
    gw_http_req_t *r = gw_calloc(1, sizeof(*r));
    r->wsi = wsi;
    gw_buf_init(&r->body, LWS_PRE);
    gw_buf_init(&r->reqbody, 0);
    return r;
}

void gw_http_req_free(gw_http_req_t *r)
{
    if (!r)
        return;
    gw_buf_free(&r->body);
    gw_buf_free(&r->reqbody);
    free(r);
}

/* Sends status, headers and r->body (written on the next writable callback), then closes the
 * connection: every response says `connection: close` (no keep-alive, see gw_lws_callback).
 * Returns 0, or -1 to hang up. */
int gw_http_respond(gw_http_req_t *r, unsigned status, const char *ctype)
{
    uint8_t hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
    if (!r->wsi || r->responded)
        return -1;
    size_t len = r->ext ? r->ext_n : r->body.len;
    if (lws_add_http_common_headers(r->wsi, status, ctype, (lws_filepos_t)len, &p, end) ||
        lws_add_http_header_by_token(r->wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end) ||
        lws_add_http_header_by_token(r->wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close",
                                     5, &p, end) ||
        lws_finalize_write_http_header(r->wsi, start, &p, end))
        return -1;
    r->responded = 1;
    lws_callback_on_writable(r->wsi);
    return 0;
}

int gw_http_respond_borrowed(gw_http_req_t *r, unsigned status, const char *ctype,
                             const unsigned char *p, size_t n)
{
    r->ext = p;
    r->ext_n = n;
    r->ext_off = 0;
    return gw_http_respond(r, status, ctype);
}

int gw_http_respond_text(gw_http_req_t *r, unsigned status, const char *text)
{
    gw_buf_reset(&r->body);
    gw_buf_append_str(&r->body, text);
    return gw_http_respond(r, status, "text/plain; charset=utf-8");
}

/* Writes the response body, then closes once lws holds nothing more to send. Never keeps the
 * connection alive: lws 4.1.6 spins forever in lws_service_do_ripe_rxflow when a kept-alive
 * connection has a pipelined request with a body waiting (README, platform lessons). */
#define GW_HTTP_CHUNK 16384

static int gw_http_on_writable(gw_http_req_t *r)
{
    if (!r->responded)
        return 0;
    if (r->ext && r->ext_off < r->ext_n) { /* a borrowed body: one chunk per writable turn */
        uint8_t buf[LWS_PRE + GW_HTTP_CHUNK];
        size_t k = GW_MIN((size_t)GW_HTTP_CHUNK, r->ext_n - r->ext_off);
        memcpy(buf + LWS_PRE, r->ext + r->ext_off, k);
        r->ext_off += k;
        int last = r->ext_off == r->ext_n;
        if (lws_write(r->wsi, buf + LWS_PRE, k, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
            (int)k)
            return -1;
        r->written = last;
        lws_callback_on_writable(r->wsi);
        return 0;
    }
    if (!r->written) {
        r->written = 1;
        if (r->body.len && lws_write(r->wsi, gw_buf_data(&r->body), r->body.len,
                                     LWS_WRITE_HTTP_FINAL) != (int)r->body.len)
            return -1;
    }
    if (lws_partial_buffered(r->wsi)) { /* lws sends the rest first, then asks again */
        lws_callback_on_writable(r->wsi);
        return 0;
    }
    return -1; /* response complete: close */
}

/* With admin_port set, the API and /metrics live there only, and that port serves nothing else
 * but the health checks. Returns 1 when path is not served on r's surface. */
static int gw_http_wrong_surface(gw_node_t *node, const gw_http_req_t *r, const char *path)
{
    int private = strcmp(path, "/metrics") == 0 || strncmp(path, "/api/", 5) == 0;
    if (!node->cfg->admin_port)
        return 0;
    if (r->admin)
        return !private && strcmp(path, "/healthz") != 0 && strcmp(path, "/readyz") != 0;
    return private;
}

static int gw_http_route(gw_node_t *node, gw_http_req_t *r, const char *path)
{
    gw_metrics.http_requests++;
    if (gw_http_wrong_surface(node, r, path))
        return gw_http_respond_text(r, 404, "not found\n");
    if (strcmp(path, "/healthz") == 0)
        return gw_http_respond_text(r, 200, "ok\n");
    if (strcmp(path, "/readyz") == 0) {
        if (node->stopping)
            return gw_http_respond_text(r, 503, "not ready: shutting down (draining)\n");
        /* the main Redis down: not ready; a shard down: still ready (its channels answer
         * 503 / 111, every other channel works), and the body says which */
        char why[160], text[200];
        if (!gw_broker_ready(node->broker))
            return gw_http_respond_text(r, 503, "not ready: redis relay down (main)\n");
        if (!gw_node_redis_ready(node, why, sizeof(why))) {
            snprintf(text, sizeof(text), "ready, degraded: redis relay down (%s)\n", why);
            return gw_http_respond_text(r, 200, text);
        }
        return gw_http_respond_text(r, 200, "ready\n");
    }
    if (strcmp(path, "/metrics") == 0) {
        if (node->cfg->metrics_require_key && gw_api_check_key(node, r, path, GW_SCOPE_METRICS))
            return 0; /* answered 401 or 403 */
        gw_buf_reset(&r->body);
        gw_metrics_render(&r->body, node->cfg);
        return gw_http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8");
    }
    if (strncmp(path, "/api/", 5) == 0)
        return gw_api_begin(node, r, path);
    const gw_static_file_t *f = gw_static_find(node->statics, path);
    if (f)
        return gw_http_respond_borrowed(r, 200, f->ctype, f->p, f->n);
    return gw_http_respond_text(r, 404, "not found\n");
}

/* Request framing the node refuses (RFC 9112 §6.3: ambiguous framing is how requests get
 * smuggled past a proxy): Transfer-Encoding (lws 4.1 does not decode chunked request bodies),
 * more than one Content-Length, or one that is not a plain decimal number. Returns why, or NULL
 * when the framing is fine. */
static const char *gw_http_framing_error(struct lws *wsi)
{
    char cl[32];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
        return "Transfer-Encoding is not accepted: send a Content-Length";
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    if (n <= 0)
        return NULL;
    if (lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, 1) > 0)
        return "more than one Content-Length";
    if (n >= (int)sizeof(cl) ||
        lws_hdr_copy_fragment(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH, 0) <= 0 ||
        strspn(cl, "0123456789") != strlen(cl))
        return "Content-Length is not a decimal number";
    return NULL;
}

/* ---- upgrade checks -------------------------------------------------------------------------- */

/* lws_return_http_status answers an upgrade request with an HTTP/1.0 status line, which strict
 * WebSocket clients (Python websockets) refuse to parse: write a plain HTTP/1.1 answer. */
static int gw_upgrade_refuse(struct lws *wsi, int status, const char *reason, const char *msg)
{
    char buf[LWS_PRE + 512];
    int n = snprintf(buf + LWS_PRE, sizeof(buf) - LWS_PRE,
                     "HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                     "content-length: %zu\r\nconnection: close\r\n\r\n%s\n",
                     status, reason, strlen(msg) + 1, msg);
    lws_write(wsi, (unsigned char *)buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_HEADERS);
    return 1;
}

/* allowed_origins is set: whether the upgrade's Origin is in it. Without an Origin (not a browser:
 * a native app, a mini-program, a server) allow_missing_origin decides; one Origin header only. */
static int gw_server_origin_ok(gw_node_t *node, struct lws *wsi)
{
    char origin[256], shown[96];
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN);
    if (n <= 0)
        return node->cfg->allow_missing_origin;
    int ok = n < (int)sizeof(origin) && lws_hdr_fragment_length(wsi, WSI_TOKEN_ORIGIN, 1) <= 0 &&
             lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) == n &&
             gw_origin_allowed(node->cfg->allowed_origins, origin, (size_t)n);
    if (!ok) {
        gw_origin_printable(origin, n > 0 && n < (int)sizeof(origin) ? (size_t)n : 0, shown,
                            sizeof(shown));
        gw_log_every(&node->refuse_log, GW_LOG_EVERY_MS, GW_LOG_WARN, "server",
                     "refusing upgrades: Origin '%s' not in allowed_origins", shown);
    }
    return ok;
}

/* Accepts the upgrade only on ws_path with one of our subprotocols offered before anything lws
 * would otherwise pick; anything else gets a plain HTTP error instead of a silent close. */
static int gw_confirm_upgrade(gw_node_t *node, struct lws *wsi)
{
    char uri[512], protos[512], cl[32];
    const char *bad = gw_http_framing_error(wsi);
    if (bad)
        return gw_upgrade_refuse(wsi, 400, "Bad Request", bad);
    /* an upgrade request has no body: bytes after its headers would be read as WebSocket frames */
    if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 && strcmp(cl, "0"))
        return gw_upgrade_refuse(wsi, 400, "Bad Request", "an upgrade request carries no body");
    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0 ||
        strcmp(uri, node->cfg->ws_path) != 0) {
        return gw_upgrade_refuse(wsi, 404, "Not Found", "no WebSocket endpoint at this path");
    }
    if (node->cfg->allowed_origins[0] && !gw_server_origin_ok(node, wsi)) {
        gw_metrics.refused[GW_REFUSE_ORIGIN]++;
        return gw_upgrade_refuse(wsi, 403, "Forbidden", "origin not allowed (allowed_origins)");
    }
    if (node->draining) {
        return gw_upgrade_refuse(wsi, 503, "Service Unavailable", "node is shutting down");
    }
    if (node->max_connections && node->nconns >= node->max_connections) {
        gw_metrics.refused[GW_REFUSE_MAX_CONNECTIONS]++;
        gw_log_every(&node->refuse_log, GW_LOG_EVERY_MS, GW_LOG_WARN, "server",
                     "refusing upgrades: max_connections (%u) reached", node->max_connections);
        return gw_upgrade_refuse(wsi, 503, "Service Unavailable", "node is at max_connections");
    }
    int n = lws_hdr_copy(wsi, protos, sizeof(protos), WSI_TOKEN_PROTOCOL);
    if (n > 0) {
        char *save = NULL;
        for (char *tok = strtok_r(protos, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
            if (!strcmp(tok, GW_PROTO_SUBPROTO_MSGPACK) || !strcmp(tok, GW_PROTO_SUBPROTO_JSON))
                return 0;
            if (!strcmp(tok, GW_HTTP_PROTOCOL_NAME))
                break;
        }
    }
    return gw_upgrade_refuse(wsi, 400, "Bad Request",
                             "offer WebSocket subprotocol " GW_PROTO_SUBPROTO_MSGPACK
                             " or " GW_PROTO_SUBPROTO_JSON);
}

/* ---- TLS ------------------------------------------------------------------------------------- */

/* lws created the vhost's SSL_CTX (and loaded the files): TLS 1.2+, and the context is kept for
 * gw_server_reload. Returns 0, or 1 to fail the vhost's creation. */
static int gw_server_tls_ready(gw_node_t *node, void *ssl_ctx)
{
    char what[512];
    if (!gw_tls_on(node->cfg) || !ssl_ctx)
        return 0;
    gw_tls_ctx_init(ssl_ctx);
    if (gw_tls_reload(ssl_ctx, node->cfg, what, sizeof(what), &gw_metrics.tls_cert_expires_s) !=
        0) {
        snprintf(node->errstr, sizeof(node->errstr), "%.200s", what);
        return 1;
    }
    node->tls_ctx = ssl_ctx;
    gw_info("server", "TLS on (TLS 1.2+): certificate %s", what);
    return 0;
}

/* lws 4.1.6 on a foreign libuv loop stops its idle handler after one forced service even when a
 * TLS connection still holds bytes OpenSSL decrypted ahead (fixed in lws 4.3.3, its PR #3008): no
 * socket event comes for them, so a request body or WebSocket frames over TLS stalled until the
 * client sent more. With TLS on, the node checks before each poll and, while lws says some
 * connection needs forced service, keeps the loop from blocking and services it.
 * lws also says so for a connection with unparsed bytes it will not take yet (an HTTP request
 * followed by more bytes while its response is still being written to a client that does not
 * read): servicing that makes no progress, and an unbounded idle would spin a core for as long as
 * the client likes. So after GW_TLS_SPIN_MAX forced services in a row the node lets the loop
 * block again for GW_TLS_BACKOFF_MS: decrypted bytes still wait at most that long, a stuck
 * connection costs a few services per backoff (until http_timeout_ms or the client goes). */
#define GW_TLS_SPIN_MAX   16
#define GW_TLS_BACKOFF_MS 5

static int gw_server_tls_due(gw_node_t *node)
{
    return node->lws && !uv_is_active((uv_handle_t *)node->tls_backoff) &&
           lws_service_adjust_timeout(node->lws, 1, 0) == 0;
}

static void gw_server_tls_resume(uv_timer_t *t)
{
    (void)t; /* the loop turns: the prepare below looks again */
}

static void gw_server_tls_idle(uv_idle_t *h)
{
    gw_node_t *node = h->data;
    if (!gw_server_tls_due(node)) {
        uv_idle_stop(h);
        node->tls_spins = 0;
    } else if (++node->tls_spins > GW_TLS_SPIN_MAX) {
        uv_idle_stop(h);
        node->tls_spins = 0;
        uv_timer_start(node->tls_backoff, gw_server_tls_resume, GW_TLS_BACKOFF_MS, 0);
    } else {
        _lws_plat_service_forced_tsi(node->lws, 0);
    }
}

static void gw_server_tls_check(uv_prepare_t *p)
{
    gw_node_t *node = p->data;
    if (gw_server_tls_due(node))
        uv_idle_start(node->tls_idle, gw_server_tls_idle);
}

static void gw_server_tls_pump_start(gw_node_t *node)
{
    node->tls_check = gw_calloc(1, sizeof(*node->tls_check));
    node->tls_idle = gw_calloc(1, sizeof(*node->tls_idle));
    node->tls_backoff = gw_calloc(1, sizeof(*node->tls_backoff));
    uv_prepare_init(node->loop, node->tls_check);
    uv_idle_init(node->loop, node->tls_idle);
    uv_timer_init(node->loop, node->tls_backoff);
    node->tls_check->data = node->tls_idle->data = node->tls_backoff->data = node;
    uv_prepare_start(node->tls_check, gw_server_tls_check);
}

static void gw_server_handle_free(uv_handle_t *h)
{
    free(h);
}

void gw_server_close(gw_node_t *node)
{
    if (node->tls_check) {
        uv_close((uv_handle_t *)node->tls_check, gw_server_handle_free);
        uv_close((uv_handle_t *)node->tls_idle, gw_server_handle_free);
        uv_close((uv_handle_t *)node->tls_backoff, gw_server_handle_free);
        node->tls_check = NULL;
        node->tls_idle = NULL;
        node->tls_backoff = NULL;
    }
}

int gw_server_reload(gw_node_t *node)
{
    char what[512];
    if (!node->tls_ctx)
        return 0;
    if (gw_tls_reload(node->tls_ctx, node->cfg, what, sizeof(what),
                      &gw_metrics.tls_cert_expires_s) != 0) {
        gw_metrics.tls_reload_failures++;
        gw_warn("server", "TLS reload failed, keeping the old certificate: %s", what);
        return -EINVAL;
    }
    gw_info("server", "TLS reloaded: new handshakes get certificate %s", what);
    return 0;
}

/* ---- the lws callback ------------------------------------------------------------------------ */

/* Whether wsi was accepted on admin_port (its peer record says so until it is destroyed). */
static int gw_server_on_admin(struct lws *wsi)
{
    const gw_peer_t *peer = lws_get_opaque_user_data(wsi);
    return peer && peer->admin;
}

static int gw_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    gw_node_t *node = ctx ? lws_context_user(ctx) : NULL;
    gw_pss_t *pss = user;

    switch (reason) {
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS: /* user: the vhost's SSL_CTX */
        return node ? gw_server_tls_ready(node, user) : 0;
    /* WebSocket */
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        if (gw_server_on_admin(wsi))
            return gw_upgrade_refuse(wsi, 404, "Not Found", "no WebSocket on the admin port");
        return gw_confirm_upgrade(node, wsi);
    case LWS_CALLBACK_ESTABLISHED: {
        const struct lws_protocols *p = lws_get_protocol(wsi);
        gw_peer_t *peer = lws_get_opaque_user_data(wsi);
        gw_enc_t enc = strcmp(p->name, GW_PROTO_SUBPROTO_JSON) == 0 ? GW_ENC_JSON : GW_ENC_MSGPACK;
        if (strcmp(p->name, GW_HTTP_PROTOCOL_NAME) == 0)
            return -1;
        pss->conn = gw_conn_new(node, wsi, enc);
        pss->conn->tls = lws_is_ssl(wsi) != 0; /* its frames go through lws (gw_conn_send_raw) */
        if (peer) { /* a WebSocket now: the HTTP deadline is over, and the connection carries
                     * the address (no per-socket record kept for idle connections) */
            pss->conn->peer_ip = peer->ip;
            lws_set_opaque_user_data(wsi, NULL);
            if (gw_list_linked(&peer->link))
                gw_list_remove(&peer->link);
            free(peer);
        }
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        if (!pss->conn)
            return -1;
        return gw_conn_on_receive(pss->conn, in, len, lws_frame_is_binary(wsi),
                                  lws_is_final_fragment(wsi) &&
                                      lws_remaining_packet_payload(wsi) == 0);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* the answer to our Close frame: close the socket without echoing a second one */
        if (pss && pss->conn && pss->conn->close_code)
            return 1;
        /* the client closes first: lws echoes its Close; no frame of ours may follow it */
        if (pss && pss->conn)
            gw_conn_on_peer_close(pss->conn);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pss->conn ? gw_conn_on_writable(pss->conn) : -1;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (pss && pss->conn)
            gw_conn_on_pong(pss->conn);
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (pss->conn) {
            gw_server_socket_closed(node, pss->conn->peer_ip);
            gw_conn_on_closed(pss->conn);
            pss->conn = NULL;
        }
        return 0;

    /* plain HTTP */
    case LWS_CALLBACK_HTTP: {
        if (!pss->req)
            pss->req = gw_http_req_new(wsi);
        pss->req->admin = gw_server_on_admin(wsi);
        pss->req->is_post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
        const char *bad = gw_http_framing_error(wsi);
        if (bad) {
            gw_metrics.http_requests++;
            gw_buf_reset(&pss->req->body);
            gw_buf_appendf(&pss->req->body, "%s\n", bad);
            pss->req->refused = 1; /* a body that follows is ignored */
            return gw_http_respond(pss->req, 400, "text/plain; charset=utf-8") ? -1 : 0;
        }
        return gw_http_route(node, pss->req, in ? (const char *)in : "/") ? -1 : 0;
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (pss->req && pss->req->refused)
            return 0;
        return pss->req ? gw_api_body(node, pss->req, in, len) : -1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (pss->req && pss->req->refused)
            return 0;
        return pss->req ? gw_api_body_done(node, pss->req) : -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return pss->req ? gw_http_on_writable(pss->req) : -1;
    case LWS_CALLBACK_WSI_DESTROY: {
        gw_peer_t *peer = lws_get_opaque_user_data(wsi);
        if (peer) {
            lws_set_opaque_user_data(wsi, NULL);
            gw_server_peer_free(node, peer);
        }
        break;
    }
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss && pss->req) {
            pss->req->wsi = NULL;
            if (!gw_api_detach(pss->req))
                gw_http_req_free(pss->req);
            pss->req = NULL;
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- listening socket ------------------------------------------------------------------------ */

/* The node owns its listening socket and hands accepted sockets to lws: Debian's lws build has one
 * service thread, and lws 4.1 sets SO_REUSEPORT only with several, so --workers could not share
 * the port otherwise. */
static int gw_listen_open(gw_node_t *node, const char *key, const char *addr, int port, int *fd_out,
                          int *bound)
{
    struct sockaddr_in sa;
    int one = 1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        snprintf(node->errstr, sizeof(node->errstr), "%s '%s' is not an IPv4 address", key, addr);
        return -EINVAL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (node->cfg->workers > 1)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0)
        goto fail;
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *bound = ntohs(sa.sin_port); /* the one bound when port is 0 */
    *fd_out = fd;
    return 0;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    snprintf(node->errstr, sizeof(node->errstr), "cannot listen on %s:%d: %s", addr, port,
             strerror(e));
    return -e;
}

/* An accepted socket is gone: its address's count and the open-socket gauge drop. */
static void gw_server_socket_closed(gw_node_t *node, uint32_t ip)
{
    gw_admission_ip_release(node->admission, ip);
    gw_metrics.sockets_open--;
}

static void gw_server_peer_free(gw_node_t *node, gw_peer_t *peer)
{
    if (gw_list_linked(&peer->link))
        gw_list_remove(&peer->link);
    gw_server_socket_closed(node, peer->ip);
    free(peer);
}

static void gw_listen_on_readable(uv_poll_t *h, int status, int events);

static void gw_listen_resume(uv_timer_t *t)
{
    gw_node_t *node = t->data;
    if (node->listen_poll)
        uv_poll_start(node->listen_poll, UV_READABLE, gw_listen_on_readable);
    if (node->admin_poll)
        uv_poll_start(node->admin_poll, UV_READABLE, gw_listen_on_readable);
}

/* accept failed for want of descriptors (or kernel memory): stop polling the listening socket
 * for a moment instead of spinning on a readable socket that cannot be accepted. */
static void gw_listen_pause(gw_node_t *node, int err)
{
    gw_metrics.refused[GW_REFUSE_FD_LIMIT]++;
    gw_log_every(&node->accept_log, GW_LOG_EVERY_MS, GW_LOG_WARN, "server",
                 "accept: %s (open-file limit %u): pausing accepts for %d ms", strerror(err),
                 node->fd_limit, GW_ACCEPT_PAUSE_MS);
    uv_poll_stop(node->listen_poll);
    if (node->admin_poll)
        uv_poll_stop(node->admin_poll);
    uv_timer_start(&node->accept_timer, gw_listen_resume, GW_ACCEPT_PAUSE_MS, 0);
}

/* Hands an accepted socket to lws: as HTTP, with TLS first when the vhost has it. */
static struct lws *gw_server_adopt(gw_node_t *node, int fd)
{
    lws_sock_file_fd_type d = {.sockfd = fd};
    return lws_adopt_descriptor_vhost(
        node->vhost, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | LWS_ADOPT_ALLOW_SSL, d, NULL, NULL);
}

static void gw_listen_on_readable(uv_poll_t *h, int status, int events)
{
    gw_node_t *node = h->data;
    int admin = h == node->admin_poll;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < 64; i++) { /* bounded: other work gets its turn */
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        int fd = accept4(admin ? node->admin_fd : node->listen_fd, (struct sockaddr *)&sa, &sl,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
                gw_listen_pause(node, e);
            else if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR && e != ECONNABORTED)
                gw_log_every(&node->accept_log, GW_LOG_EVERY_MS, GW_LOG_WARN, "server",
                             "accept: %s", strerror(e));
            if (e == ECONNABORTED || e == EINTR)
                continue;
            return;
        }
        gw_refuse_reason_t why;
        uint32_t ip = sa.sin_family == AF_INET ? sa.sin_addr.s_addr : 0;
        if (gw_admission_ip_acquire(node->admission, ip, gw_now_ms(), &why) != 0) {
            /* refused before a byte is read: no HTTP answer (README, "Limits") */
            char addr[INET_ADDRSTRLEN] = "?";
            inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof(addr));
            gw_metrics.refused[why]++;
            gw_log_every(&node->refuse_log, GW_LOG_EVERY_MS, GW_LOG_WARN, "server",
                         "refusing connections from %s: %s (%u open)", addr,
                         gw_refuse_reason_name(why), gw_admission_ip_open(node->admission, ip));
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct lws *wsi = gw_server_adopt(node, fd); /* closes fd on failure */
        if (!wsi) {
            gw_admission_ip_release(node->admission, ip);
            gw_log_every(&node->accept_log, GW_LOG_EVERY_MS, GW_LOG_WARN, "server",
                         "lws could not adopt a connection");
            continue;
        }
        gw_peer_t *peer = gw_calloc(1, sizeof(*peer));
        peer->wsi = wsi;
        peer->ip = ip;
        peer->admin = admin;
        peer->accepted_ms = gw_now_ms();
        gw_list_insert_tail(&node->http_peers, &peer->link);
        lws_set_opaque_user_data(wsi, peer);
        gw_metrics.sockets_open++;
        gw_metrics.sockets_accepted++;
    }
}

void gw_server_sweep(gw_node_t *node, uint64_t now_ms)
{
    uint64_t limit = (uint64_t)node->cfg->http_timeout_ms;
    while (!gw_list_empty(&node->http_peers)) {
        gw_peer_t *peer = gw_container_of(node->http_peers.next, gw_peer_t, link);
        if (now_ms - peer->accepted_ms < limit)
            break;
        /* a request (headers and body) or its answer not done in time: slowloris, trickled
         * bodies, a client that never reads. Closed now, or after lws gave what it still holds
         * a few seconds to drain (LWS_TO_KILL_ASYNC does not close in lws 4.1.6); its close
         * callbacks free the peer. */
        gw_list_remove(&peer->link);
        gw_metrics.http_timeouts++;
        lws_set_timeout(peer->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
}

static void gw_listen_on_close(uv_handle_t *h)
{
    free(h);
}

static uv_poll_t *gw_listen_poll(gw_node_t *node, int fd)
{
    uv_poll_t *p = gw_calloc(1, sizeof(*p));
    uv_poll_init(node->loop, p, fd);
    p->data = node;
    uv_poll_start(p, UV_READABLE, gw_listen_on_readable);
    return p;
}

/* admin_port: the private surface (server API, /metrics), accepted like the public port (per-IP
 * caps, the HTTP deadline); its peers are marked so the router and the upgrade check know. */
static int gw_admin_listen(gw_node_t *node)
{
    if (!node->cfg->admin_port)
        return 0;
    const char *addr = node->cfg->admin_address[0] ? node->cfg->admin_address : "127.0.0.1";
    int rc = gw_listen_open(node, "admin_address", addr, node->cfg->admin_port, &node->admin_fd,
                            &node->admin_port);
    if (rc)
        return rc;
    node->admin_poll = gw_listen_poll(node, node->admin_fd);
    gw_info("server", "server API and /metrics on http://%s:%d only (admin_port)", addr,
            node->admin_port);
    return 0;
}

/* ---- context --------------------------------------------------------------------------------- */

static struct lws_protocols gw_protocols[] = {
    {GW_HTTP_PROTOCOL_NAME, gw_lws_callback, sizeof(gw_pss_t), 0, 0, NULL, 0},
    /* rx_buffer_size is allocated per connection by lws: kept small (it must hold a 125-byte
     * control frame), bigger messages arrive in several callbacks and are gathered by the
     * connection. 1024 here cost ~900 bytes of RSS per idle connection. */
    {GW_PROTO_SUBPROTO_MSGPACK, gw_lws_callback, sizeof(gw_pss_t), 128, 1, NULL, 0},
    {GW_PROTO_SUBPROTO_JSON, gw_lws_callback, sizeof(gw_pss_t), 128, 2, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static void gw_lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    gw_log(level == LLL_ERR ? GW_LOG_WARN : GW_LOG_DEBUG, "lws", "%.*s", (int)n, line);
}

int gw_server_start(gw_node_t *node)
{
    struct lws_context_creation_info info;
    void *foreign_loops[1] = {node->loop};
    static lws_retry_bo_t retry;

    lws_set_log_level(gw_log_level >= GW_LOG_DEBUG ? (LLL_ERR | LLL_WARN | LLL_NOTICE) : LLL_ERR,
                      gw_lws_log);
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (gw_tls_on(node->cfg))
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.foreign_loops = foreign_loops;
    info.pcontext = &node->lws;
    info.user = node;
    node->lws = lws_create_context(&info);
    if (!node->lws) {
        snprintf(node->errstr, sizeof(node->errstr),
                 "cannot create the lws context (is libwebsockets-evlib-uv installed?)");
        return -EINVAL;
    }

    /* no lws validity timers (pings, hang-ups): lws re-sorts them on every read and write;
     * the node's sweep does that work instead (gw_conn_sweep) */
    retry.secs_since_valid_ping = 0;
    retry.secs_since_valid_hangup = 0;

    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = gw_protocols;
    info.vhost_name = "cardgw";
    info.retry_and_idle_policy = &retry;
    if (gw_tls_on(node->cfg))
        gw_tls_vhost_info(node->cfg, &info);
    node->vhost = lws_create_vhost(node->lws, &info);
    if (!node->vhost) {
        if (!node->errstr[0])
            snprintf(node->errstr, sizeof(node->errstr), "cannot create the lws vhost");
        return -EINVAL;
    }
    if (gw_tls_on(node->cfg) && !node->tls_ctx) {
        snprintf(node->errstr, sizeof(node->errstr), "lws set up no TLS context for the vhost");
        return -EINVAL;
    }
    if (node->tls_ctx)
        gw_server_tls_pump_start(node);
    const char *addr = node->cfg->listen_address[0] ? node->cfg->listen_address : "0.0.0.0";
    int rc = gw_listen_open(node, "listen_address", addr, node->cfg->port, &node->listen_fd,
                            &node->port);
    if (rc)
        return rc;
    node->listen_poll = gw_listen_poll(node, node->listen_fd);
    return gw_admin_listen(node);
}

void gw_server_stop_listening(gw_node_t *node)
{
    if (node->listen_poll) {
        uv_timer_stop(&node->accept_timer);
        uv_close((uv_handle_t *)node->listen_poll, gw_listen_on_close);
        node->listen_poll = NULL;
    }
    if (node->listen_fd > 0) {
        close(node->listen_fd);
        node->listen_fd = -1;
    }
    if (node->admin_poll) {
        uv_close((uv_handle_t *)node->admin_poll, gw_listen_on_close);
        node->admin_poll = NULL;
    }
    if (node->admin_fd >= 0) {
        close(node->admin_fd);
        node->admin_fd = -1;
    }
}
