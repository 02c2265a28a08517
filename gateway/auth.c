/* auth.c — where a connection is authenticated: the connect and refresh commands, opaque session
 * tokens in Redis (any node serves any user), HS256 JWTs checked without a Redis round trip. */
#include "cardgw/auth.h"
#include "cardgw/admission.h"
#include "cardgw/metrics.h"
#include "cardgw/schema.h"
#include "cardgw/hub.h"
#include "cardgw/jwt.h"
#include "cardgw/log.h"
#include "cardgw/node.h"
#include "cardgw/online.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>

/* ---- identities ------------------------------------------------------------------------------ */

int gw_auth_uid_valid(const char *uid, size_t n)
{
    if (n == 0 || n > 127)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = uid[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (ch != '\0' && strchr("_.@=+,;-", ch))))
            return 0;
    }
    return 1;
}

/* ---- HS256 JWT ------------------------------------------------------------------------------- */

/* Levels of v (a scalar is 1), counting no further than limit + 1. */
static int gw_json_depth(const json_t *v, int limit)
{
    int d = 0, k;
    if (limit < 0)
        return 1;
    if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x)
        {
            k = gw_json_depth(x, limit - 1); /* once: GW_MAX evaluates twice */
            d = GW_MAX(d, k);
        }
    } else if (json_is_object(v)) {
        const char *key;
        const json_t *x;
        json_object_foreach((json_t *)v, key, x)
        {
            k = gw_json_depth(x, limit - 1);
            d = GW_MAX(d, k);
        }
    }
    return d + 1;
}

/* The info of a token as compact JSON text in id->info: 0, or -E2BIG past GW_PROTO_MAX_INFO or
 * GW_AUTH_INFO_DEPTH (-EINVAL when jansson cannot write it); id->info_bad is set on failure. */
static int gw_auth_info_set(gw_identity_t *id, const json_t *v)
{
    if (gw_json_depth(v, GW_AUTH_INFO_DEPTH) > GW_AUTH_INFO_DEPTH) {
        id->info_bad = 1;
        return -E2BIG;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) {
        id->info_bad = 1;
        return -EINVAL;
    }
    size_t n = strlen(s);
    int rc = n > GW_PROTO_MAX_INFO ? -E2BIG : 0;
    if (rc == 0) {
        memcpy(id->info, s, n + 1);
        id->info_n = n;
    }
    id->info_bad = rc != 0;
    free(s);
    return rc;
}

gw_jwt_opts_t gw_auth_jwt_opts(const gw_config_t *cfg)
{
    return (gw_jwt_opts_t){cfg->jwt_secret, cfg->jwt_audience, cfg->jwt_issuer,
                           (uint32_t)cfg->jwt_leeway_s};
}

int gw_auth_jwt_verify(const char *token, size_t n, const gw_jwt_opts_t *o, uint64_t now_ms,
                       gw_identity_t *id, const char **why)
{
    gw_jwt_t t;
    const char *unused;
    if (!why)
        why = &unused;
    memset(id, 0, sizeof(*id));
    int rc = gw_jwt_verify(token, n, o, now_ms, &t, why);
    if (rc)
        return rc == -EKEYEXPIRED ? GW_ERR_TOKEN_EXPIRED : GW_ERR_UNAUTHORIZED;
    if (!gw_auth_uid_valid(t.sub, strlen(t.sub))) {
        *why = "sub is not a valid uid";
        gw_jwt_free(&t);
        return GW_ERR_UNAUTHORIZED;
    }
    json_t *info = json_object_get(t.claims, "info");
    if (info)
        gw_auth_info_set(id, info); /* a bad one: info_bad, refused at connect, not at refresh */
    snprintf(id->uid, sizeof(id->uid), "%s", t.sub);
    id->expires_at_ms = t.expires_at_ms;
    gw_jwt_free(&t);
    return 0;
}

static int gw_token_is_jwt(const gw_slice_t *t)
{
    const char *d = memchr(t->p, '.', t->n);
    return d && memchr(d + 1, '.', t->n - (size_t)(d + 1 - t->p)) != NULL;
}

/* ---- connect / refresh ----------------------------------------------------------------------- */

/* Every refused token is logged with its precise reason (the client only hears "invalid token"
 * or "token expired"): one line per GW_LOG_EVERY_MS for the process, as anyone may send them. */
static gw_log_limit_t gw_auth_refuse_log;

/* A connect or refresh with a bad token: the error, then the connection closes once it is out
 * (4005 for an expired token, 4501 otherwise; PROTOCOL.md "refresh"). msg NULL: the default; why
 * (NULL: msg) is the precise reason, logged rate-limited. */
static void gw_auth_fail(gw_conn_t *c, uint32_t id, int code, const char *msg, const char *why)
{
    if (!msg)
        msg = code == GW_ERR_TOKEN_EXPIRED ? "token expired" : "invalid token";
    gw_log_everyf(&gw_auth_refuse_log, GW_LOG_EVERY_MS, GW_LOG_INFO, "auth",
                  (&(gw_log_fields_t){.client = c->cid}), "token refused (error %d): %s", code,
                  why ? why : msg);
    gw_conn_reply_error(c, id, code, msg);
    gw_conn_close(c, code == GW_ERR_TOKEN_EXPIRED ? GW_CLOSE_EXPIRED : GW_CLOSE_UNAUTHORIZED, 0);
}

static void gw_auth_succeed(gw_conn_t *c, uint32_t id, const gw_identity_t *ident, int refresh)
{
    gw_node_t *node = c->node;
    if (refresh) {
        if (strcmp(ident->uid, c->uid) != 0) {
            gw_auth_fail(c, id, GW_ERR_UNAUTHORIZED, "token is for another user", NULL);
            return;
        }
        c->expires_at_ms = ident->expires_at_ms;
        c->refresh_sent = 0;
        gw_conn_reply_ok(c, id);
        return;
    }
    if (ident->info_bad) { /* checked at connect only: a refresh does not change the info */
        gw_auth_fail(c, id, GW_ERR_UNAUTHORIZED,
                     "token info: not JSON, over 1024 bytes or too deep", NULL);
        return;
    }
    const char *uid = gw_admission_user_acquire(node->admission, ident->uid);
    if (!uid) {
        gw_metrics.refused[GW_REFUSE_USER]++;
        gw_conn_reply_error(c, id, GW_ERR_USER_LIMIT, "too many connections for this user");
        gw_conn_close(c, GW_CLOSE_USER_LIMIT, 0);
        return;
    }
    c->uid = uid;      /* shared per user; gw_conn_release gives the count back */
    if (ident->info_n) /* kept from connect: a refresh does not change it */
        c->info = gw_strndup(ident->info, ident->info_n);
    c->expires_at_ms = ident->expires_at_ms;
    c->state = GW_CONN_READY;
    gw_online_conn_up(node->online, c->uid); /* gw_conn_on_closed counts it down */
    uint64_t now = gw_wall_ms();
    uint32_t expires_in =
        c->expires_at_ms ? (uint32_t)((c->expires_at_ms > now ? c->expires_at_ms - now : 0) / 1000)
                         : 0;
    GW_CONN_SEND(c, gw_proto_enc_connect_ok, id, (gw_slice_t){c->cid, strlen(c->cid)},
                 (gw_slice_t){c->uid, strlen(c->uid)},
                 (gw_slice_t){node->node_id, strlen(node->node_id)},
                 (uint32_t)node->cfg->ping_interval_s, expires_in);
    gw_conn_log(GW_LOG_DEBUG, "auth", c, 0, "connected");
}

/* HGETALL of the session key (schema.h) answered (r NULL: failed): uid (required), expires_at
 * (unix seconds), info. Answers command id on c (open). */
static void gw_auth_session_answer(gw_conn_t *c, uint32_t id, int refresh, const redisReply *r)
{
    gw_identity_t ident;
    const char *uid = NULL;
    size_t uidlen = 0;
    json_t *info = NULL;
    int info_field = 0;
    uint64_t exp = 0;
    int exp_bad = 0;
    if (c->state == GW_CONN_AUTHING)
        c->state = GW_CONN_NEW;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        gw_conn_reply_error(c, id, GW_ERR_UNAVAILABLE, "session store unavailable, retry");
        return;
    }
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "uid") == 0) {
            uid = v->str;
            uidlen = v->len;
        } else if (strcmp(k->str, "expires_at") == 0) {
            exp_bad = gw_jwt_parse_unix_s(v->str, v->len, &exp) != 0;
        } else if (strcmp(k->str, "info") == 0 && !info_field) {
            info_field = 1;
            info = json_loadb(v->str, v->len, JSON_DECODE_ANY, NULL);
        }
    }
    memset(&ident, 0, sizeof(ident));
    if (info)
        gw_auth_info_set(&ident, info); /* a bad one: info_bad, refused at connect */
    else if (info_field)
        ident.info_bad = 1; /* not JSON */
    json_decref(info);
    if (!uid || !gw_auth_uid_valid(uid, uidlen) || exp_bad) {
        gw_auth_fail(c, id, GW_ERR_UNAUTHORIZED, NULL,
                     exp_bad ? "session: expires_at is not decimal unix seconds in range"
                             : "session: unknown, or uid missing or invalid");
        return;
    }
    if (exp > 0 && exp * 1000 <= gw_wall_ms()) {
        gw_auth_fail(c, id, GW_ERR_TOKEN_EXPIRED, NULL, "session: expired (expires_at)");
        return;
    }
    memcpy(ident.uid, uid, uidlen);
    ident.expires_at_ms = exp * 1000; /* 0: no expiry */
    gw_auth_succeed(c, id, &ident, refresh);
}

static void gw_auth_on_session(void *priv, redisReply *r)
{
    gw_cmd_op_t *op = priv;
    uint32_t id = op->id;
    int refresh = (int)op->arg;
    uint64_t started = op->started_us;
    gw_conn_t *c = gw_cmd_op_done(op);
    if (!c)
        return;
    gw_auth_session_answer(c, id, refresh, r);
    if (!refresh)
        gw_hist_since(&gw_metrics.connect_time, started);
}

/* Checks the token of a connect (refresh 0; started_us: when it arrived) or refresh. A connect
 * answered now is timed here, one answered by Redis in gw_auth_on_session. */
static void gw_auth_check(gw_conn_t *c, const gw_cmd_t *cmd, int refresh, uint64_t started_us)
{
    gw_node_t *node = c->node;
    if (gw_token_is_jwt(&cmd->token)) {
        gw_identity_t ident;
        gw_jwt_opts_t o = gw_auth_jwt_opts(node->cfg);
        const char *why = NULL;
        int rc = gw_auth_jwt_verify(cmd->token.p, cmd->token.n, &o, gw_wall_ms(), &ident, &why);
        if (rc)
            gw_auth_fail(c, cmd->id, rc, NULL, why);
        else
            gw_auth_succeed(c, cmd->id, &ident, refresh);
        if (!refresh)
            gw_hist_since(&gw_metrics.connect_time, started_us);
        return;
    }
    char key[GW_SCHEMA_SESSION_KEY_MAX];
    const char *argv[] = {"HGETALL", key};
    size_t argvlen[] = {7, gw_schema_session_key(key, sizeof(key), cmd->token.p, cmd->token.n)};
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    op->arg = (uint32_t)refresh;
    op->started_us = started_us;
    if (gw_redis_command(node->redis, gw_auth_on_session, op, 2, argv, argvlen) != 0) {
        gw_cmd_op_done(op);
        gw_conn_reply_error(c, cmd->id, GW_ERR_UNAVAILABLE, "session store unavailable, retry");
        if (!refresh)
            gw_hist_since(&gw_metrics.connect_time, started_us);
        return;
    }
    if (!refresh)
        c->state = GW_CONN_AUTHING;
}

void gw_auth_connect(gw_conn_t *c, const gw_cmd_t *cmd)
{
    uint64_t started = gw_now_us();
    if (c->state == GW_CONN_AUTHING) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_ALREADY_CONNECTED, "connect already in progress");
        gw_hist_since(&gw_metrics.connect_time, started);
        return;
    }
    gw_auth_check(c, cmd, 0, started);
}

void gw_auth_refresh(gw_conn_t *c, const gw_cmd_t *cmd)
{
    gw_auth_check(c, cmd, 1, 0);
}

void gw_auth_tick(gw_conn_t *c, uint64_t wall_ms)
{
    if (c->expires_at_ms == 0)
        return;
    if (wall_ms >= c->expires_at_ms) {
        gw_conn_close(c, GW_CLOSE_EXPIRED, 0);
        return;
    }
    uint64_t before = (uint64_t)c->node->cfg->token_refresh_before_s * 1000;
    if (!c->refresh_sent && wall_ms + before >= c->expires_at_ms) {
        GW_CONN_SEND(c, gw_proto_enc_refresh,
                     (uint32_t)((c->expires_at_ms - wall_ms + 999) / 1000));
        c->refresh_sent = 1;
    }
}
