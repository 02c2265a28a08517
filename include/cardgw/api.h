/* api.h — the server API on the node's HTTP port (/api/v1/...): publish, broadcast, disconnect,
 * authenticated with the configured api_key. */
#ifndef CARDGW_API_H
#define CARDGW_API_H

#include <stddef.h>

#include "cardgw/server.h"

struct gw_node;

/* The server API's request cycle, driven by server.c for one HTTP request r (borrowed). Each
 * returns 0, or -1 when lws must hang up. A request answered early (401, 404, 413, ...) ignores
 * the rest; one that needs Redis sets r->pending and answers from the reply (503 when Redis is
 * down: nothing was done).
 * Headers of a request for /api/... arrived (path borrowed): authorise, route GETs. */
int gw_api_begin(struct gw_node *node, gw_http_req_t *r, const char *path);
/* A piece of the request body (borrowed; copied up to api_max_body_bytes, else 413). */
int gw_api_body(struct gw_node *node, gw_http_req_t *r, const void *in, size_t len);
/* The whole body arrived: parse it and run the POST. */
int gw_api_body_done(struct gw_node *node, gw_http_req_t *r);
/* The HTTP connection closed. Returns 1 when a pending operation keeps r (and frees it when it
 * completes); 0 when the caller frees r now. */
int gw_api_detach(gw_http_req_t *r);

#endif
