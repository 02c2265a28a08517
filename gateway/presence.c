/* presence.c — who is online in a channel, across nodes: a Redis sorted set per channel that
 * every node keeps fresh for its own subscribers, and join/leave pushes relayed on the channel. */
#include "hub_int.h"

#include "cardgw/log.h"
#include "cardgw/schema.h"

#include <inttypes.h>
#include <stdlib.h>

/* Members are "<uid> <client>[ <info>]" scored by their expiry time (ms, now + presence_ttl_ms);
 * a node refreshes its own every presence_ttl_ms / 3 (spread over channels by the hub's tick), so
 * the members of a node that died expire on their own. Join and leave travel on the channel as
 * relay frames without an offset (they are not publications and not in history). */

/* ---- counting: a crowded channel gets no join/leave pushes ----------------------------------- */

typedef struct {
    gw_hub_t *hub;
    gw_channel_t *ch;
} gw_presence_count_t;

static void gw_on_presence_count(void *priv, redisReply *r)
{
    gw_presence_count_t *pc = priv;
    gw_hub_t *hub = pc->hub;
    gw_channel_t *ch = pc->ch;
    free(pc);
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
        ch->presence_n = r->integer > UINT32_MAX ? UINT32_MAX : (uint32_t)r->integer;
        ch->presence_crowded = ch->presence_n > (uint32_t)hub->cfg->join_leave_max_members;
    }
    ch->op_refs--;
    gw_channel_maybe_release(hub, ch);
}

/* ZCOUNTs the channel's live presence connections (O(log n)) into ch->presence_n; a presence
 * read sends it just before its ZRANGEBYSCORE, whose reply comes after. */
static void gw_presence_count(gw_hub_t *hub, gw_channel_t *ch)
{
    char key[GW_SCHEMA_KEY_MAX], now[24];
    size_t kn = gw_schema_channel_key(key, sizeof(key), ch->name, ch->n, GW_KEY_PRESENCE);
    int nn = snprintf(now, sizeof(now), "%" PRIu64, gw_wall_ms());
    const char *argv[] = {"ZCOUNT", key, now, "+inf"};
    size_t argvlen[] = {6, kn, (size_t)nn, 4};
    gw_presence_count_t *pc = gw_malloc(sizeof(*pc));
    pc->hub = hub;
    pc->ch = ch;
    ch->op_refs++;
    if (gw_redis_command(gw_channel_redis(hub, ch), gw_on_presence_count, pc, 4, argv, argvlen) !=
        0) {
        ch->op_refs--;
        free(pc);
    }
}

static void gw_on_presence_write(void *priv, redisReply *r)
{
    (void)priv;
    if (r && r->type == REDIS_REPLY_ERROR)
        gw_warn("presence", "update failed: %s", r->str);
}

static void gw_presence_invalidate(gw_channel_t *ch);

/* Adds (with a new expiry) or removes s's connection in the channel's presence set. */
static void gw_presence_write(gw_hub_t *hub, gw_sub_t *s, int join)
{
    char key[GW_SCHEMA_KEY_MAX], member[GW_SCHEMA_PRESENCE_MAX], score[24];
    gw_channel_t *ch = s->ch;
    gw_conn_t *c = s->conn;
    const gw_redis_t *r = gw_channel_redis(hub, ch);
    size_t mn = gw_schema_presence_member(member, sizeof(member), c->uid, c->cid, c->info);
    size_t kn = gw_schema_channel_key(key, sizeof(key), ch->name, ch->n, GW_KEY_PRESENCE);
    if (join) {
        int sn = snprintf(score, sizeof(score), "%" PRIu64,
                          gw_wall_ms() + (uint64_t)hub->cfg->presence_ttl_ms);
        const char *argv[] = {"ZADD", key, score, member};
        size_t argvlen[] = {4, kn, (size_t)sn, mn};
        gw_redis_command(r, gw_on_presence_write, NULL, 4, argv, argvlen);
    } else {
        const char *argv[] = {"ZREM", key, member};
        size_t argvlen[] = {4, kn, mn};
        gw_redis_command(r, gw_on_presence_write, NULL, 3, argv, argvlen);
    }
}

void gw_presence_update(gw_hub_t *hub, gw_sub_t *s, int join, int announce)
{
    char key[GW_SCHEMA_KEY_MAX], frame[GW_SCHEMA_PRESENCE_MAX + 16];
    gw_channel_t *ch = s->ch;
    gw_conn_t *c = s->conn;
    const gw_redis_t *r = gw_channel_redis(hub, ch);
    gw_presence_write(hub, s, join);
    gw_presence_invalidate(ch); /* a read after this one is queued behind the write */
    if (join && ch->ns->join_leave)
        gw_presence_count(hub, ch);        /* a crowd that grew stops join/leave here first */
    if (!announce || ch->presence_crowded) /* nobody would push it: not even sent */
        return;
    size_t fn = gw_schema_presence_frame(frame, sizeof(frame), join, c->uid, c->cid, c->info);
    size_t kn = gw_schema_channel_key(key, sizeof(key), ch->name, ch->n, GW_KEY_PUBSUB);
    const char *argv[] = {"PUBLISH", key, frame};
    size_t argvlen[] = {7, kn, fn};
    gw_redis_command(r, gw_on_presence_write, NULL, 3, argv, argvlen);
}

void gw_presence_refresh(gw_hub_t *hub, gw_channel_t *ch)
{
    gw_list_t *it;
    gw_list_foreach(it, &ch->subs)
    {
        gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
        if (s->state == GW_SUB_LIVE)
            gw_presence_write(hub, s, 1);
    }
    if (ch->ns->join_leave && ch->nsubs)
        gw_presence_count(hub, ch); /* a crowd that shrank gets join/leave again */
}

void gw_presence_fanout(gw_channel_t *ch, const gw_client_info_t *who, int leave)
{
    gw_frame_t *frames[2] = {NULL, NULL};
    gw_slice_t client = who->client;
    gw_list_t *it;
    gw_presence_invalidate(ch);
    /* past join_leave_max_members every join would reach thousands: presence is read instead */
    if (!ch->ns->presence || !ch->ns->join_leave || ch->presence_crowded)
        return;
    gw_list_foreach(it, &ch->subs)
    {
        gw_sub_t *s = gw_container_of(it, gw_sub_t, chan_link);
        gw_conn_t *c = s->conn;
        if (s->state != GW_SUB_LIVE ||
            (strlen(c->cid) == client.n && memcmp(c->cid, client.p, client.n) == 0))
            continue;
        if (!frames[c->enc]) {
            gw_buf_t b;
            gw_buf_init(&b, GW_FRAME_HEADROOM);
            gw_proto_enc_join(&b, c->enc, (gw_slice_t){ch->name, ch->n}, who, leave);
            frames[c->enc] = gw_frame_from_buf(&b, c->enc == GW_ENC_MSGPACK);
        }
        gw_conn_send(c, frames[c->enc]);
    }
    gw_frame_unref(frames[0]);
    gw_frame_unref(frames[1]);
}

/* ---- the presence commands ------------------------------------------------------------------ */

/* The presence commands of one channel share one Redis read: while it is in flight later
 * commands wait for it, and its result answers every command for GW_PRESENCE_CACHE_MS (a client
 * asking presence of a 10,000-member group 100 times a second costs Redis one read per second,
 * not 100; bench/RESULTS.md "presence"). A join or leave of the channel (relayed, or made here)
 * invalidates it, so a reply never misses a change whose push the client already got. */
#define GW_PRESENCE_CACHE_MS 1000

typedef struct gw_presence_wait {
    struct gw_presence_wait *next;
    gw_cmd_op_t *op; /* op->arg: the command kind */
    uint32_t gen;    /* the channel's presence generation when the command came */
} gw_presence_wait_t;

typedef struct gw_presence_cache {
    uint64_t read_ms; /* when the cached members were read; 0: nothing valid cached */
    uint32_t gen;     /* bumped by every join or leave seen for the channel */
    uint32_t read_gen;
    int reading;
    gw_presence_wait_t *waiters, **tail;
    gw_buf_t members; /* each member NUL-terminated, back to back (presence_max_members) */
    size_t count;
    uint64_t total; /* live members counted just before the read (ZCOUNT) */
} gw_presence_cache_t;

typedef struct {
    gw_hub_t *hub;
    gw_channel_t *ch;
} gw_presence_read_t;

static gw_presence_cache_t *gw_presence_cache(gw_channel_t *ch)
{
    if (!ch->pcache) {
        ch->pcache = gw_calloc(1, sizeof(*ch->pcache));
        ch->pcache->tail = &ch->pcache->waiters;
        gw_buf_init(&ch->pcache->members, 0);
    }
    return ch->pcache;
}

void gw_presence_cache_free(gw_presence_cache_t *pc)
{
    if (!pc)
        return;
    gw_buf_free(&pc->members);
    free(pc);
}

void gw_presence_cache_trim(gw_channel_t *ch, uint64_t now_ms)
{
    gw_presence_cache_t *pc = ch->pcache;
    if (pc && !pc->reading && (!pc->read_ms || now_ms - pc->read_ms >= GW_PRESENCE_CACHE_MS)) {
        gw_presence_cache_free(pc);
        ch->pcache = NULL;
    }
}

/* A join or leave of ch: what is cached may lack it. */
static void gw_presence_invalidate(gw_channel_t *ch)
{
    if (ch->pcache) {
        ch->pcache->gen++;
        ch->pcache->read_ms = 0;
    }
}

static int gw_cmp_uid(const void *a, const void *b)
{
    const gw_client_info_t *x = a, *y = b;
    size_t n = GW_MIN(x->uid.n, y->uid.n);
    int d = memcmp(x->uid.p, y->uid.p, n);
    return d ? d : (x->uid.n > y->uid.n) - (x->uid.n < y->uid.n);
}

/* Groups ci[0..n) (sorted by uid) into users[]; returns how many. */
static size_t gw_presence_by_user(const gw_client_info_t *ci, size_t n, gw_user_info_t *users)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k && gw_cmp_uid(&ci[i], &ci[i - 1]) == 0) {
            users[k - 1].connections++;
            if (!users[k - 1].info.n)
                users[k - 1].info = ci[i].info;
            continue;
        }
        users[k++] = (gw_user_info_t){ci[i].uid, 1, ci[i].info};
    }
    return k;
}

/* Answers one presence command from the cached members. */
static void gw_presence_answer(const gw_presence_cache_t *pc, gw_cmd_op_t *op)
{
    uint32_t id;
    gw_cmd_kind_t kind = (gw_cmd_kind_t)op->arg;
    gw_conn_t *c = gw_cmd_op_finish(op, 0, &id);
    if (!c)
        return;
    gw_client_info_t *ci = gw_calloc(pc->count ? pc->count : 1, sizeof(*ci));
    size_t k = 0;
    const char *m = (const char *)gw_buf_data(&pc->members), *end = m + pc->members.len;
    for (; m && m < end; m += strlen(m) + 1)
        if (gw_schema_parse_presence_member(m, strlen(m), &ci[k]) == 0)
            k++;
    /* the read stopped at presence_max_members: say so, with the count of them all */
    uint64_t total =
        pc->count >= (size_t)c->node->cfg->presence_max_members && pc->total > k ? pc->total : 0;
    if (kind == GW_CMD_PRESENCE) {
        GW_CONN_SEND(c, gw_proto_enc_presence_ok, id, ci, k, total);
    } else {
        qsort(ci, k, sizeof(*ci), gw_cmp_uid);
        gw_user_info_t *users = gw_calloc(k ? k : 1, sizeof(*users));
        size_t nu = gw_presence_by_user(ci, k, users);
        if (kind == GW_CMD_PRESENCE_USERS)
            GW_CONN_SEND(c, gw_proto_enc_presence_users_ok, id, users, nu, total);
        else
            GW_CONN_SEND(c, gw_proto_enc_presence_stats_ok, id, total ? total : k, nu, total > 0);
        free(users);
    }
    free(ci);
}

static void gw_presence_read(gw_hub_t *hub, gw_channel_t *ch);

static void gw_on_presence(void *priv, redisReply *r)
{
    gw_presence_read_t *rd = priv;
    gw_hub_t *hub = rd->hub;
    gw_channel_t *ch = rd->ch;
    gw_presence_cache_t *pc = ch->pcache;
    free(rd);
    int ok = r && r->type == REDIS_REPLY_ARRAY;
    pc->reading = 0;
    pc->total = ch->presence_n; /* the ZCOUNT sent just before this read was answered first */
    if (ok) {                   /* copied: the reply is gone when this returns */
        gw_buf_reset(&pc->members);
        pc->count = 0;
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING &&
                !memchr(r->element[i]->str, '\0', r->element[i]->len)) {
                gw_buf_append(&pc->members, r->element[i]->str, r->element[i]->len);
                gw_buf_append(&pc->members, "", 1);
                pc->count++;
            }
        pc->read_ms = pc->gen == pc->read_gen ? gw_now_ms() : 0;
    }
    /* answered: the commands whose generation the read started at or after (it saw every change
     * they could know of); those that came after a later invalidation wait for the next read */
    gw_presence_wait_t *w = pc->waiters, *keep = NULL, **ktail = &keep;
    pc->waiters = NULL;
    pc->tail = &pc->waiters;
    while (w) {
        gw_presence_wait_t *next = w->next;
        if (!ok) {
            uint32_t id;
            gw_cmd_op_finish(w->op, 1, &id); /* 111 */
            free(w);
        } else if ((int32_t)(pc->read_gen - w->gen) >= 0) {
            gw_presence_answer(pc, w->op);
            free(w);
        } else {
            w->next = NULL;
            *ktail = w;
            ktail = &w->next;
        }
        w = next;
    }
    if (keep) {
        pc->waiters = keep;
        pc->tail = ktail;
        gw_presence_read(hub, ch);
    }
    ch->op_refs--;
    gw_channel_maybe_release(hub, ch);
}

/* Starts the channel's presence read (its waiters are answered when it returns). */
static void gw_presence_read(gw_hub_t *hub, gw_channel_t *ch)
{
    gw_presence_cache_t *pc = ch->pcache;
    char kp[GW_SCHEMA_KEY_MAX], now[24];
    size_t kpn = gw_schema_channel_key(kp, sizeof(kp), ch->name, ch->n, GW_KEY_PRESENCE);
    char lim[16];
    int nn = snprintf(now, sizeof(now), "%" PRIu64, gw_wall_ms());
    int ln = snprintf(lim, sizeof(lim), "%d", hub->cfg->presence_max_members);
    /* at most presence_max_members of them, and how many there are (for `total`) */
    const char *argv[] = {"ZRANGEBYSCORE", kp, now, "+inf", "LIMIT", "0", lim};
    size_t argvlen[] = {13, kpn, (size_t)nn, 4, 5, 1, (size_t)ln};
    gw_presence_read_t *rd = gw_malloc(sizeof(*rd));
    rd->hub = hub;
    rd->ch = ch;
    pc->reading = 1;
    pc->read_gen = pc->gen;
    gw_presence_count(hub, ch);
    ch->op_refs++;
    if (gw_redis_command(gw_channel_redis(hub, ch), gw_on_presence, rd, 7, argv, argvlen) != 0)
        gw_on_presence(rd, NULL);
}

void gw_hub_presence(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd)
{
    if (!gw_hub_cmd_subscribed(hub, c, cmd, GW_NEED_PRESENCE))
        return;
    gw_channel_t *ch = gw_channel_find(hub, cmd->channel.p, cmd->channel.n);
    gw_cmd_op_t *op = gw_cmd_op_new(c, cmd->id);
    op->arg = (uint32_t)cmd->kind;
    if (!ch) { /* cannot happen: the connection is subscribed */
        uint32_t id;
        gw_cmd_op_finish(op, 1, &id);
        return;
    }
    gw_presence_cache_t *pc = gw_presence_cache(ch);
    if (!pc->reading && pc->read_ms && gw_now_ms() - pc->read_ms < GW_PRESENCE_CACHE_MS) {
        gw_presence_answer(pc, op);
        return;
    }
    gw_presence_wait_t *w = gw_malloc(sizeof(*w));
    w->next = NULL;
    w->op = op;
    w->gen = pc->gen;
    *pc->tail = w;
    pc->tail = &w->next;
    if (!pc->reading)
        gw_presence_read(hub, ch);
}
