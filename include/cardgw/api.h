/* api.h — the server API on the node's HTTP port (/api/v1/...): publish, broadcast, disconnect,
 * authenticated with API keys and their scopes (api_key, api_keys_file). */
#ifndef CARDGW_API_H
#define CARDGW_API_H

#include <stddef.h>

#include "cardgw/server.h"

struct gw_node;

/* Loads the API keys (api_key, api_keys_file). Returns 0, or -EINVAL with node->errstr set. */
int gw_api_start(struct gw_node *node);
/* From the node's tick: re-reads api_keys_file when it changed (a bad file keeps the old keys and
 * logs one line). */
void gw_api_tick(struct gw_node *node);
/* Frees the keys (safe when gw_api_start failed or never ran). */
void gw_api_stop(struct gw_node *node);
/* Whether r (borrowed) presents an API key with every bit of scope (GW_SCOPE_*, apikeys.h): 0, or
 * -EACCES after answering 401 (no or unknown key) or 403 (a key without the scope). path
 * (borrowed) names the request in the debug log line that says which key was used. */
int gw_api_check_key(struct gw_node *node, gw_http_req_t *r, const char *path, unsigned scope);

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
