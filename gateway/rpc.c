/* rpc.c — the client's rpc command: a call to the backend appended to the inbox stream
 * (cardgw:inbox, read by the backend with a consumer group), methods limited by rpc_methods;
 * methods in rpc_reply_methods wait for the backend's answer on the node's reply channel. */
#include "hub_int.h"

#include "cardgw/admission.h"

#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/schema.h"

#include "inbox_lua.h" /* generated from scripts/inbox.lua: gw_inbox_lua */

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

/* ---- fire and forget: the result is the inbox entry id --------------------------------------- */

static void gw_on_rpc(void *priv, redisReply *r)
{
    uint32_t id;
    const redisReply *ok = r && r->type == REDIS_REPLY_STRING && r->len <= 255 ? r : NULL;
    gw_conn_t *c = gw_cmd_op_finish(priv, !ok, &id);
    if (!c || !ok)
        return;
    r = (redisReply *)ok;
    /* the result is the inbox entry id, as a msgpack str */
    uint8_t mp[2 + 255];
    size_t h = 0;
    if (r->len < 32) {
        mp[h++] = (uint8_t)(0xa0 | r->len);
    } else {
        mp[h++] = 0xd9;
        mp[h++] = (uint8_t)r->len;
    }
    memcpy(mp + h, r->str, r->len);
    GW_CONN_SEND(c, gw_proto_enc_rpc_ok, id, (gw_data_t){GW_DATA_MSGPACK, mp, h + r->len});
}

/* Whether method[0..n) is in the comma-separated list (blanks around names ignored); "*" in the
 * list matches every method. An empty list matches every method when empty_all, none otherwise. */
static int gw_rpc_listed(const char *list, const char *method, size_t n, int empty_all)
{
    size_t len = strlen(list);
    if (strspn(list, " \t,") == len)
        return empty_all;
    for (size_t i = 0; i <= len;) {
        size_t j = i, a = i, b;
        while (j < len && list[j] != ',')
            j++;
        for (b = j; a < b && (list[a] == ' ' || list[a] == '\t');)
            a++;
        while (b > a && (list[b - 1] == ' ' || list[b - 1] == '\t'))
            b--;
        if ((b - a == n && memcmp(list + a, method, n) == 0) || (b - a == 1 && list[a] == '*'))
            return 1;
        i = j + 1;
    }
    return 0;
}

/* Entries the inbox keeps at most, whatever their size; inbox_max_bytes bounds the bytes
 * (scripts/inbox.lua). */
#define GW_INBOX_MAXLEN "1000000"

static gw_script_t gw_inbox_script;

/* Appends the call to the inbox with scripts/inbox.lua, which first trims the oldest entries so
 * that the stream stays within GW_INBOX_MAXLEN entries and inbox_max_bytes of calls; with req
 * (NUL-terminated, borrowed) the entry also names the node's reply channel and the request id the
 * answer must carry. cb(priv, reply) gets the new entry's id (NULL when Redis is unreachable,
 * also when the command could not be sent). */
static void gw_rpc_xadd(gw_hub_t *hub, const gw_conn_t *c, const gw_cmd_t *cmd, const char *req,
                        gw_redis_reply_cb cb, void *priv)
{
    char maxbytes[24];
    snprintf(maxbytes, sizeof(maxbytes), "%d", hub->cfg->inbox_max_bytes);
    const char *argv[20] = {"2",
                            GW_SCHEMA_INBOX,
                            GW_SCHEMA_INBOX_BYTES,
                            GW_INBOX_MAXLEN,
                            maxbytes,
                            "uid",
                            c->uid,
                            "client",
                            c->cid,
                            "node",
                            hub->node->node_id};
    size_t argvlen[20];
    int n = 11;
    argv[n++] = "method";
    argv[n++] = cmd->method.p;
    if (req) {
        argv[n++] = "reply";
        argv[n++] = hub->reply_channel;
        argv[n++] = "req";
        argv[n++] = req;
    }
    argv[n++] = "data";
    for (int i = 0; i < n; i++)
        argvlen[i] = strlen(argv[i]);
    argv[n] = (const char *)cmd->data.p;
    argvlen[n++] = cmd->data.n;
    if (!gw_inbox_script.src)
        gw_script_init(&gw_inbox_script, gw_inbox_lua);
    if (gw_redis_eval(hub->redis, &gw_inbox_script, cb, priv, n, argv, argvlen) != 0)
        cb(priv, NULL);
}

/* ---- waiting for the backend's answer -------------------------------------------------------- */

/* The XADD of a waiting call: only its sequence number, the call may be over by the reply. */
typedef struct {
    gw_hub_t *hub;
    uint64_t seq;
} gw_rpc_xadd_t;

static void gw_on_rpc_wait_xadd(void *priv, redisReply *r)
{
    gw_rpc_xadd_t *x = priv;
    if (!r || r->type != REDIS_REPLY_STRING) /* not in the inbox: nobody will answer */
        gw_rpc_wait_unavailable(x->hub->rpc_waits, x->seq);
    free(x);
}

static void gw_rpc_wait(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    /* an answer can reach this node only while its reply channel is subscribed */
    if (!hub->reply_subscribed || !gw_redis_connected(hub->redis)) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_UNAVAILABLE, "redis unavailable, retry");
        return;
    }
    uint64_t seq = gw_rpc_wait_add(hub->rpc_waits, c, cmd->id);
    if (!seq) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_TOO_MANY_REQUESTS,
                            "too many rpcs waiting for an answer");
        return;
    }
    char req[GW_SCHEMA_REQ_MAX + 1];
    gw_schema_rpc_req(req, sizeof(req), hub->node->instance, seq);
    gw_rpc_xadd_t *x = gw_malloc(sizeof(*x));
    *x = (gw_rpc_xadd_t){hub, seq};
    gw_rpc_xadd(hub, c, cmd, req, gw_on_rpc_wait_xadd, x);
}

void gw_hub_rpc(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    if (!gw_rpc_listed(hub->cfg->rpc_methods, cmd->method.p, cmd->method.n, 1)) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_METHOD_NOT_FOUND, "method not found");
        return;
    }
    if (cmd->data.n > (size_t)hub->cfg->max_frame_bytes) { /* JSON floats grow as msgpack */
        gw_metrics.rpc_refused[GW_RPC_REFUSE_TOO_BIG]++;
        gw_conn_reply_error(c, cmd->id, GW_ERR_BAD_REQUEST,
                            "rpc data over max_frame_bytes as msgpack");
        return;
    }
    /* one user's connections share one rate: max_connections_per_user does not multiply it */
    if (gw_admission_user_rpc_take(hub->node->admission, c->uid, gw_now_ms(),
                                   (uint32_t)hub->cfg->max_rpcs_per_user_per_s) != 0) {
        gw_metrics.rpc_refused[GW_RPC_REFUSE_USER_RATE]++;
        gw_conn_reply_error(c, cmd->id, GW_ERR_TOO_MANY_REQUESTS,
                            "rpc rate of this user exceeded (max_rpcs_per_user_per_s)");
        return;
    }
    if (gw_rpc_listed(hub->cfg->rpc_reply_methods, cmd->method.p, cmd->method.n, 0)) {
        gw_rpc_wait(hub, c, cmd);
        return;
    }
    /* fire and forget: the reply is the entry id; answers, if any, come back as publications */
    gw_rpc_xadd(hub, c, cmd, NULL, gw_on_rpc, gw_cmd_op_new(c, cmd->id));
}

/* ---- answers on the reply channel ------------------------------------------------------------ */

static void gw_rpc_drop(gw_hub_t *hub, gw_rpc_drop_t why, const char *what, size_t n)
{
    gw_metrics.rpc_dropped[why]++;
    if (why == GW_RPC_DROP_MALFORMED || why == GW_RPC_DROP_TOO_BIG)
        gw_log_every(&hub->answer_log, GW_LOG_EVERY_MS, GW_LOG_WARN, "rpc",
                     "dropped a message on %s: %s (%zu bytes)", hub->reply_channel, what, n);
}

void gw_hub_rpc_answer(gw_hub_t *hub, const char *p, size_t n)
{
    if (n > (size_t)hub->cfg->rpc_max_answer_bytes) {
        gw_rpc_drop(hub, GW_RPC_DROP_TOO_BIG, "larger than rpc_max_answer_bytes", n);
        return;
    }
    gw_buf_t scratch;
    gw_rpc_answer_t an, *a = &an;
    uint64_t seq;
    gw_buf_init(&scratch, 0);
    int rc = -EINVAL;
    if (gw_schema_parse_rpc_answer(p, n, &scratch, a) != 0)
        gw_rpc_drop(hub, GW_RPC_DROP_MALFORMED, "not an rpc answer", n);
    else if (gw_schema_parse_rpc_req(a->req, hub->node->instance, &seq) != 0)
        rc = -ENOENT; /* another process's request (a node restarted under the same id) */
    else if (a->is_error)
        rc = gw_rpc_wait_backend_error(hub->rpc_waits, seq, a->message, a->has_code, a->code);
    else
        rc = gw_rpc_wait_result(hub->rpc_waits, seq, a->result);
    if (rc == -ENOENT)
        gw_rpc_drop(hub, GW_RPC_DROP_UNKNOWN, "", n);
    else if (rc == -EPIPE)
        gw_rpc_drop(hub, GW_RPC_DROP_CLOSED, "", n);
    gw_buf_free(&scratch);
}
