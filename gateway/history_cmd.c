/* history_cmd.c — the client's history command: a subscriber reads the retained publications of
 * a channel (the newest, or those after an offset) within the recovery byte bound. */
#include "hub_int.h"

#include <stdlib.h>

static void gw_on_history_cmd(void *priv, const gw_history_t *h)
{
    uint32_t id, op_after = ((gw_cmd_op_t *)priv)->arg;
    gw_conn_t *c = gw_cmd_op_finish(priv, !h, &id);
    if (!c || !h)
        return;
    /* at most recovery_max_bytes of data: with since the oldest that fit (ask again from the
     * last offset returned), without it the newest that fit */
    size_t max = (size_t)c->node->cfg->recovery_max_bytes, first = 0, n = h->npubs, sum = 0;
    if (op_after) {
        for (n = 0; n < h->npubs && (sum += gw_pubs_bytes(&h->pubs[n], 1)) <= max; n++)
            ;
    } else {
        for (first = h->npubs; first > 0 && (sum += gw_pubs_bytes(&h->pubs[first - 1], 1)) <= max;
             first--)
            ;
        n = h->npubs - first;
    }
    if (n == 0 && h->npubs > 0) { /* one publication alone over the bound: still one */
        n = 1;
        first = op_after ? 0 : h->npubs - 1;
    }
    gw_buf_t b;
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    for (;;) { /* and a reply the send queue takes now (halved until it does) */
        gw_proto_enc_history_ok(&b, c->enc, id, (gw_slice_t){h->epoch, strlen(h->epoch)}, h->top,
                                h->pubs + first, n, h->cut || n < h->npubs);
        if (n <= 1 || gw_conn_fits_buf(c, &b))
            break;
        size_t keep = n / 2;
        if (!op_after)
            first += n - keep;
        n = keep;
        gw_buf_reset(&b);
    }
    gw_conn_send_buf(c, &b);
}

/* history: the retained publications (the newest `limit`, or those after `since`), for
 * subscribers of the channel (the same permission as subscribing). */
void gw_hub_history(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    const gw_namespace_t *ns = gw_hub_cmd_subscribed(hub, c, cmd, GW_NEED_SUBSCRIPTION);
    if (!ns)
        return;
    uint32_t limit = (uint32_t)ns->history_size;
    if (cmd->limit && cmd->limit < limit)
        limit = cmd->limit;
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    op->arg = cmd->has_since;
    /* the byte bound is applied by the script: no more than that leaves Redis */
    if (gw_history_read_max(gw_hub_channel_redis(hub, cmd->channel.p, cmd->channel.n),
                            cmd->channel.p, cmd->channel.n,
                            cmd->has_since ? GW_HIST_AFTER : GW_HIST_TAIL, cmd->since_offset,
                            limit ? limit : 1, (uint32_t)hub->cfg->meta_read_ttl_s,
                            (size_t)hub->cfg->recovery_max_bytes, gw_on_history_cmd, op) != 0)
        gw_on_history_cmd(op, NULL);
}
