/* server.h — the libwebsockets side of a node: context and vhost on the node's loop, the
 * upgrade checks, and the small HTTP response helpers the routes and the server API use. */
#ifndef CARDGW_SERVER_H
#define CARDGW_SERVER_H

#include "cardgw/common.h"

struct lws;
struct gw_node;

/* One plain HTTP request on the node's port. */
typedef struct gw_http_req {
    struct lws *wsi;  /* NULL once the client went away */
    gw_buf_t body;    /* response body (LWS_PRE headroom) */
    gw_buf_t reqbody; /* request body, for POST */
    char path[128];
    int is_post;
    int responded;            /* status and headers are out (at most one response per connection) */
    int refused;              /* answered 400 at the headers: the body is not read into reqbody */
    int written;              /* the body is handed to lws; the connection closes once it is sent */
    int pending;              /* an asynchronous operation still refers to this request */
    const unsigned char *ext; /* a body not owned (a static file): sent from there in chunks */
    size_t ext_n, ext_off;
    int admin;           /* arrived on admin_port: the private surface (API, /metrics) */
    int endpoint;        /* server API: its gw_api_endpoint_t (metrics.h) */
    uint64_t started_us; /* server API: when its headers arrived (gw_now_us), 0 once timed */
} gw_http_req_t;

/* Opens the listening socket (node->port gets the bound port) and admin_port's when set
 * (node->admin_port), creates the lws context and
 * vhost on the node's loop and starts accepting. Returns 0, or -errno with node->errstr set
 * (what was created is freed by gw_node_destroy). */
int gw_server_start(struct gw_node *node);
/* Reload (SIGHUP, via gw_node_reload): with TLS on, reads tls_cert_file and tls_key_file again
 * and, when both are good, new handshakes use them (connections keep theirs); otherwise logs why
 * and keeps the old pair. Returns 0 or -EINVAL (the old certificate stays). */
int gw_server_reload(struct gw_node *node);
/* After the loop ran for the last time (gw_node_destroy): closes the server's own loop handles. */
void gw_server_close(struct gw_node *node);
/* Stops accepting (closes the listening sockets and their poll handles); open connections stay.
 * Safe to call more than once. */
void gw_server_stop_listening(struct gw_node *node);
/* From the node's sweep: closes plain-HTTP sockets older than http_timeout_ms (request and
 * response not done in time). */
void gw_server_sweep(struct gw_node *node, uint64_t now_ms);

/* A request of wsi (borrowed; the request is owned by the HTTP connection, see gw_api_detach).
 * Never NULL. */
gw_http_req_t *gw_http_req_new(struct lws *wsi);
/* Frees r and its buffers (NULL is fine). */
void gw_http_req_free(gw_http_req_t *r);
/* Like gw_http_respond with p[0..n) as the body, borrowed until the request is freed (it must
 * outlive it: static files do), written a chunk at a time: memory per request stays small
 * however slowly the client reads. */
int gw_http_respond_borrowed(gw_http_req_t *r, unsigned status, const char *ctype,
                             const unsigned char *p, size_t n);
/* Sends status, content type and r->body (at most one response per request; the connection
 * closes once it is out). Returns 0 or -1 (hang up). */
int gw_http_respond(gw_http_req_t *r, unsigned status, const char *ctype);
/* gw_http_respond with text (copied) as a text/plain body. */
int gw_http_respond_text(gw_http_req_t *r, unsigned status, const char *text);

#endif
