/* auth.h — the connect and refresh commands: opaque session tokens looked up in Redis
 * (cardgw:session:<token>) and HS256 JWTs checked locally with jwt_secret. */
#ifndef CARDGW_AUTH_H
#define CARDGW_AUTH_H

#include <stdint.h>

#include "cardgw/config.h"
#include "cardgw/conn.h"
#include "cardgw/jwt.h"

/* Nesting levels a token's info may have: a presence reply puts it 5 levels deep, and a frame may
 * have GW_PROTO_MAX_DEPTH. */
#define GW_AUTH_INFO_DEPTH (GW_PROTO_MAX_DEPTH - 5)

typedef struct {
    char uid[128];
    uint64_t expires_at_ms; /* wall clock, 0 = no expiry */
    size_t info_n;          /* 0: the token carries no info */
    int info_bad; /* the token's info is too large, too deep or not JSON (refused at connect) */
    char info[GW_PROTO_MAX_INFO + 1]; /* compact JSON text: the JWT claim / session field */
} gw_identity_t;

/* Handles connect: replies, and on success moves the connection to READY. */
void gw_auth_connect(gw_conn_t *c, const gw_cmd_t *cmd);
/* Handles refresh: a new token for the same uid moves the expiry. */
void gw_auth_refresh(gw_conn_t *c, const gw_cmd_t *cmd);
/* Called by the node's sweep for a READY connection: sends the refresh push before the token
 * expires and closes the connection (4005) when it has expired. */
void gw_auth_tick(gw_conn_t *c, uint64_t wall_ms);

/* The JWT checks the configuration asks for (jwt_secret, jwt_audience, jwt_issuer, jwt_leeway_s;
 * the strings borrowed from cfg). */
gw_jwt_opts_t gw_auth_jwt_opts(const gw_config_t *cfg);
/* Verifies an HS256 JWT (jwt.h) whose sub must be a valid uid. Returns 0 and fills id, or
 * GW_ERR_UNAUTHORIZED / GW_ERR_TOKEN_EXPIRED with *why (may be NULL) the precise reason, a static
 * string for the log. now_ms is the wall clock; id->expires_at_ms is exp + leeway (0: no exp).
 * An `info` claim (any JSON value, at most GW_PROTO_MAX_INFO bytes as compact JSON and
 * GW_AUTH_INFO_DEPTH levels) fills id->info; otherwise id->info_bad is set. */
int gw_auth_jwt_verify(const char *token, size_t n, const gw_jwt_opts_t *o, uint64_t now_ms,
                       gw_identity_t *id, const char **why);
/* A uid usable in channel names and the wire format: [A-Za-z0-9_.@=+,;-]{1,127}. */
int gw_auth_uid_valid(const char *uid, size_t n);

#endif
