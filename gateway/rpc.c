/* rpc.c — the client's rpc command: a call to the backend appended to the inbox stream
 * (cardgw:inbox, read by the backend with a consumer group), methods limited by rpc_methods. */
#include "hub_int.h"

#include "cardgw/schema.h"

#include <stdlib.h>

/* ---- rpc ------------------------------------------------------------------------------------- */

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

/* rpc: appended to the backend's inbox stream (consumed with a consumer group); the reply is the
 * entry id. Answers, if any, come back as publications on the user's channel. */
/* Whether method (NUL-terminated) is in the comma-separated allowlist (empty: every method). */
static int gw_rpc_allowed(const char *list, const char *method, size_t n)
{
    size_t len = strlen(list);
    if (len == 0)
        return 1;
    for (size_t i = 0; i <= len;) {
        size_t j = i, a = i, b;
        while (j < len && list[j] != ',')
            j++;
        for (b = j; a < b && (list[a] == ' ' || list[a] == '\t');)
            a++;
        while (b > a && (list[b - 1] == ' ' || list[b - 1] == '\t'))
            b--;
        if (b - a == n && memcmp(list + a, method, n) == 0)
            return 1;
        i = j + 1;
    }
    return 0;
}

void gw_hub_rpc(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    if (!gw_rpc_allowed(hub->cfg->rpc_methods, cmd->method.p, cmd->method.n)) {
        gw_conn_reply_error(c, cmd->id, GW_ERR_METHOD_NOT_FOUND, "method not found");
        return;
    }
    const char *argv[] = {"XADD",    GW_SCHEMA_INBOX,
                          "MAXLEN",  "~",
                          "1000000", "*",
                          "uid",     c->uid,
                          "client",  c->cid,
                          "node",    hub->node->node_id,
                          "method",  cmd->method.p,
                          "data",    (const char *)cmd->data.p};
    size_t argvlen[GW_ARRAY_SIZE(argv)];
    for (size_t i = 0; i < GW_ARRAY_SIZE(argv) - 1; i++)
        argvlen[i] = strlen(argv[i]);
    argvlen[GW_ARRAY_SIZE(argv) - 1] = cmd->data.n;
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    if (gw_redis_command(hub->redis, gw_on_rpc, op, (int)GW_ARRAY_SIZE(argv), argv, argvlen) != 0)
        gw_on_rpc(op, NULL);
}
