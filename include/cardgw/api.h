/* api.h — the server API on the node's HTTP port (/api/v1/...): publish, broadcast, disconnect,
 * authenticated with the configured api_key. */
#ifndef CARDGW_API_H
#define CARDGW_API_H

#include <stddef.h>

#include "cardgw/server.h"

struct gw_node;

/* A request for /api/... arrived (headers only). Returns 0 or -1 (hang up). */
int gw_api_begin(struct gw_node *node, gw_http_req_t *r, const char *path);
int gw_api_body(struct gw_node *node, gw_http_req_t *r, const void *in, size_t len);
int gw_api_body_done(struct gw_node *node, gw_http_req_t *r);
/* The HTTP connection closed. Returns 1 when a pending operation keeps r (and frees it when it
 * completes); 0 when the caller frees r now. */
int gw_api_detach(gw_http_req_t *r);

#endif
