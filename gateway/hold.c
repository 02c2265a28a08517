/* hold.c — commands that name one channel take effect in the order a connection sent them: a
 * command behind a pending subscribe of its channel is held, then run after that reply. */
#include "hub_int.h"

#include "cardgw/conn.h"

#include <stdlib.h>
#include <string.h>

void gw_held_free(gw_held_cmd_t *h)
{
    for (gw_held_cmd_t *nx; h; h = nx) {
        nx = h->next;
        free(h);
    }
}

/* ---- commands on one channel in the order sent ------------------------------------------------
 * A command naming a channel whose subscribe is still pending on the same connection (membership
 * check, Redis SUBSCRIBE, position read) waits for that subscribe's reply, then runs as if it had
 * arrived just after it (PROTOCOL.md "Order"). It is kept as received and decoded again then. */

/* The held commands of s (if any) run at the end of this loop turn, after the subscribe's
 * reply was queued. Call before s may be freed. */
void gw_sub_release_held(gw_hub_t *hub, gw_sub_t *s)
{
    if (!s->held)
        return;
    gw_replay_t *r = gw_malloc(sizeof(*r));
    r->next = NULL;
    r->c = s->conn;
    r->cmds = s->held;
    gw_conn_hold(r->c);
    s->held = NULL;
    s->nheld = 0;
    *hub->replay_tail = r;
    hub->replay_tail = &r->next;
    gw_node_flush_soon(hub->node);
}

static gw_held_cmd_t **gw_held_tail(gw_held_cmd_t **head)
{
    while (*head)
        head = &(*head)->next;
    return head;
}

/* The end of c's replay record that holds a command for channel ch, or NULL. */
static gw_held_cmd_t **gw_replay_tail_for(gw_hub_t *hub, gw_conn_t *c, const char *ch, size_t n)
{
    for (gw_replay_t *r = hub->replay; r; r = r->next) {
        if (r->c != c)
            continue;
        for (gw_held_cmd_t *h = r->cmds; h; h = h->next)
            if (h->chn == n && memcmp(h->msg + h->n, ch, n) == 0)
                return gw_held_tail(&r->cmds);
    }
    return NULL;
}

int gw_hub_hold(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd, const uint8_t *msg, size_t n)
{
    const char *ch = cmd->channel.p;
    size_t chn = cmd->channel.n;
    uint8_t *count = NULL;
    /* behind commands of this channel that are about to run, or behind its pending subscribe */
    gw_held_cmd_t **tail = gw_replay_tail_for(hub, c, ch, chn);
    if (!tail) {
        gw_sub_t *s = chn ? gw_hub_find_sub(c, ch, chn) : NULL;
        if (!s || s->state == GW_SUB_LIVE)
            return 0;
        if (s->nheld >= GW_HELD_MAX)
            goto too_many;
        tail = gw_held_tail(&s->held);
        count = &s->nheld;
    }
    /* bytes held per connection: at most what its send queue may hold */
    if (c->held_bytes + n > (size_t)hub->cfg->max_send_queue_bytes)
        goto too_many;
    c->held_bytes += (uint32_t)n;
    gw_held_cmd_t *h = gw_malloc(sizeof(*h) + n + chn);
    h->next = NULL;
    h->n = n;
    h->chn = chn;
    memcpy(h->msg, msg, n);
    memcpy(h->msg + n, ch, chn);
    *tail = h;
    if (count)
        (*count)++;
    return 1;
too_many:
    gw_conn_reply_error(c, cmd->id, GW_ERR_TOO_MANY_REQUESTS,
                        "too many commands waiting for this channel's subscribe");
    return 1;
}

void gw_hub_replay(gw_hub_t *hub)
{
    while (hub->replay) {
        gw_replay_t *r = hub->replay;
        hub->replay = r->next;
        if (!hub->replay)
            hub->replay_tail = &hub->replay;
        for (gw_held_cmd_t *h = r->cmds, *nx; h; h = nx) {
            nx = h->next;
            r->c->held_bytes -= (uint32_t)GW_MIN(h->n, r->c->held_bytes);
            gw_conn_replay(r->c, h->msg, h->n); /* may hold it again behind a new subscribe */
            free(h);
        }
        gw_conn_release(r->c);
        free(r);
    }
}
