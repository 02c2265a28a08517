/* hub_int.h — the hub's private types and the functions its files share: hub.c (channel table),
 * relay.c, subscription.c, history_cmd.c, presence.c, publish.c, rpc.c, hold.c. Nothing else. */
#ifndef CARDGW_HUB_INT_H
#define CARDGW_HUB_INT_H

#include "cardgw/history.h"
#include "cardgw/hub.h"
#include "cardgw/node.h"
#include "cardgw/redis.h"
#include "cardgw/rpc_wait.h"
#include "cardgw/schema.h"

#define GW_META_TTL_MIN_S (7 * 86400)
#define GW_FILL_MAX       1000 /* publications one gap fill reads */
#define GW_TICK_MS        250  /* the hub's periodic work (gw_relay_tick) */

typedef enum { GW_RS_NONE = 0, GW_RS_SUBSCRIBING, GW_RS_SUBSCRIBED, GW_RS_UNSUBSCRIBING } gw_rs_t;

typedef enum {
    GW_SUB_AUTHORIZING = 0, /* waiting for the membership check */
    GW_SUB_WAITING,         /* linked to the channel, waiting for Redis to confirm SUBSCRIBE */
    GW_SUB_POSITIONING,     /* reading position/history; live publications are buffered */
    GW_SUB_LIVE,
} gw_sub_state_t;

/* A relay frame copied aside while the channel fills a gap (Redis's reply is gone by then). */
typedef struct gw_held {
    struct gw_held *next;
    size_t n;
    char payload[];
} gw_held_t;

typedef struct gw_channel {
    struct gw_channel *next; /* hash chain */
    gw_list_t subs;          /* gw_sub_t.chan_link (linked once authorised) */
    uint32_t nsubs;
    uint32_t op_refs; /* reads in flight that refer to the channel */
    gw_rs_t rs;
    const gw_namespace_t *ns;
    uint16_t shard; /* index in hub->shards (gw_schema_shard of the name) */
    uint8_t nsi;    /* index of ns in cfg->namespaces (gw_metrics.ns) */
    char epoch[GW_PROTO_MAX_EPOCH + 1];
    uint64_t last;         /* highest offset relayed in order (valid when synced) */
    uint8_t synced;        /* epoch and last are known */
    uint8_t filling;       /* relay blocked: frames are held until the fill read completes */
    uint8_t fill_retry;    /* the last fill read failed: the tick retries it */
    uint64_t fill_fail_ms; /* when fill reads started failing (0: they are not) */
    uint64_t checked_ms;   /* last position check */
    uint64_t presence_ms;  /* last presence refresh */
    uint8_t suspect;       /* pub/sub was lost: fill as soon as Redis confirms the SUBSCRIBE */
    struct gw_presence_cache *pcache; /* presence.c: the last presence read, NULL before one */
    uint32_t presence_n;              /* presence.c: live presence connections when last counted */
    uint8_t presence_crowded; /* presence.c: presence_n > join_leave_max_members: no join/leave */
    gw_held_t *held, **held_tail;
    size_t n;
    char name[]; /* NUL-terminated */
} gw_channel_t;

typedef struct {
    uint64_t offset;
    gw_frame_t *frame;
} gw_pending_pub_t;

/* A command held back because an earlier command on its channel (a subscribe) is still pending
 * on the same connection: the message as received, run when that subscribe is answered. */
typedef struct gw_held_cmd {
    struct gw_held_cmd *next;
    size_t n;   /* message bytes */
    size_t chn; /* channel name length; the name follows the message */
    uint8_t msg[];
} gw_held_cmd_t;

/* Held commands of one connection, ready to run at the end of this loop turn (gw_hub_replay). */
typedef struct gw_replay {
    struct gw_replay *next;
    gw_conn_t *c; /* held */
    gw_held_cmd_t *cmds;
} gw_replay_t;

#define GW_HELD_MAX 16 /* commands held per pending subscribe; past it: error 115 */

typedef struct gw_sub {
    gw_conn_t *conn;
    gw_channel_t *ch;    /* NULL while authorising */
    char *name;          /* channel name, owned */
    gw_list_t conn_link; /* conn->subs */
    gw_list_t chan_link; /* ch->subs */
    gw_sub_state_t state;
    uint32_t cmd_id; /* the subscribe command still to answer */
    uint64_t pos;    /* last offset delivered */
    uint8_t op_pending;
    uint8_t dead; /* unsubscribed or closed while op_pending: freed when the op completes */
    uint8_t has_since;
    uint8_t nheld;       /* commands in held */
    uint8_t nsi;         /* its namespace's index in cfg->namespaces (gw_metrics.ns) */
    uint64_t started_us; /* the subscribe's arrival while its reply is due (0 once timed) */
    char *since_epoch;   /* owned, only while a subscribe with since is positioned */
    uint64_t since_offset;
    gw_held_cmd_t *held; /* commands on this channel sent behind the pending subscribe */
    gw_pending_pub_t *pend;
    uint32_t npend, cappend;
} gw_sub_t;

/* Lifetimes across Redis round trips, one idiom (redis' protectClient): the object counts what
 * refers to it and is freed by whoever drops the last reference — a connection by c->refs
 * (gw_conn_hold / gw_conn_release, gw_cmd_op_t), a channel by op_refs (+ nsubs, then
 * gw_channel_maybe_release), a subscription by op_pending (then `dead`: freed when the read
 * completes). */

struct gw_hub {
    gw_node_t *node;         /* borrowed: asked for a user's connections, its id */
    const gw_config_t *cfg;  /* borrowed, read only */
    const gw_redis_t *redis; /* borrowed, the main Redis: members, sessions, inbox, control */
    const gw_redis_t *shards[GW_MAX_SHARDS]; /* borrowed: where channels live (schema.h) */
    uint32_t nshards;
    int main_is_shard;          /* no redis_shards: the main Redis is shard 0 (one broker) */
    gw_script_t publish_script; /* scripts/publish.lua */
    int offline_cap;            /* gw_config_offline_cap, computed once */
    gw_channel_t **buckets;
    size_t nbuckets, nchannels;
    uv_timer_t tick_timer;              /* presence refresh and position checks, spread over time */
    size_t cursor;                      /* next bucket the tick visits */
    uint32_t nretry;                    /* channels whose fill read failed and is retried */
    gw_replay_t *replay, **replay_tail; /* held commands whose subscribe was answered */
    gw_rpc_waits_t *rpc_waits;          /* rpcs waiting for the backend's answer, owned */
    char reply_channel[GW_SCHEMA_KEY_MAX]; /* where answers arrive (main Redis pub/sub) */
    size_t reply_n;
    int reply_subscribed;      /* Redis confirmed the SUBSCRIBE of reply_channel */
    gw_log_limit_t answer_log; /* malformed answers: a line an outsider could make repeat */
};

/* The Redis a channel's keys and pub/sub live on. */
static inline const gw_redis_t *gw_channel_redis(const gw_hub_t *hub, const gw_channel_t *ch)
{
    return hub->shards[ch->shard];
}

/* ---- hub.c: the channel table -------------------------------------------------------------- */
gw_channel_t *gw_channel_find(gw_hub_t *hub, const char *name, size_t n);
/* The channel (created, unsubscribed from Redis, when it is new); never NULL. */
gw_channel_t *gw_channel_get(gw_hub_t *hub, const char *name, size_t n, const gw_namespace_t *ns);
/* SUBSCRIBEs the channel on Redis (rs becomes GW_RS_SUBSCRIBING). */
void gw_channel_subscribe(gw_hub_t *hub, gw_channel_t *ch);
/* A channel nobody here listens to and no read refers to is unsubscribed, then freed. */
void gw_channel_maybe_release(gw_hub_t *hub, gw_channel_t *ch);
/* Frees the relay frames held during a fill. */
void gw_channel_drop_held(gw_channel_t *ch);
/* Sets ch->fill_retry, keeping hub->nretry in step (the only place it changes). */
void gw_channel_set_retry(gw_hub_t *hub, gw_channel_t *ch, int on);
/* Lifetime of a channel's meta hash: longer than its history. */
uint32_t gw_hub_meta_ttl(const gw_namespace_t *ns);
gw_sub_t *gw_hub_find_sub(gw_conn_t *c, const char *name, size_t n);
/* Looks up the namespace of a command's channel; replies with the error and returns NULL. */
const gw_namespace_t *gw_hub_cmd_namespace(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd);
/* What a command on a channel needs besides a live subscription of c to it. */
typedef enum { GW_NEED_SUBSCRIPTION = 0, GW_NEED_PUBLISH, GW_NEED_PRESENCE } gw_need_t;
/* The namespace of cmd's channel when c is subscribed (live) and the namespace allows what the
 * command needs; otherwise NULL after the error reply (113, 112, or 103 "subscribe first" /
 * "permission denied"). */
const gw_namespace_t *gw_hub_cmd_subscribed(gw_hub_t *hub, gw_conn_t *c, const gw_cmd_t *cmd,
                                            gw_need_t need);

/* ---- relay.c: publications in order ------------------------------------------------------------
 */
/* One relay frame (payload[0..n), borrowed) arrived on the channel's pub/sub. */
void gw_channel_relay(gw_hub_t *hub, gw_channel_t *ch, const char *payload, size_t n);
/* Reads the history after ch->last; relay frames arriving meanwhile are held. */
void gw_channel_fill(gw_hub_t *hub, gw_channel_t *ch);
/* The hub's periodic work (timer data = hub): retries failed fills, refreshes presence, checks
 * idle channels' positions; each channel is visited about every 5 s (or
 * position_check_interval_ms when that is shorter). */
void gw_relay_tick(uv_timer_t *t);
/* Queues frame f (borrowed) of offset to a live subscription if it is the next one; returns 1 when
 * queued, 0 when not (a duplicate, a closing connection), or
 * -1 on a gap (the caller kicks the subscription). Deliveries are counted by the caller. */
int gw_sub_deliver(gw_sub_t *s, uint64_t offset, gw_frame_t *f);
/* Adds n deliveries of ch to the metrics (global and its namespace's). */
void gw_channel_count_deliveries(const gw_channel_t *ch, uint64_t n);

/* ---- subscription.c -----------------------------------------------------------------------------
 */
/* Reads the position (and with since the missed publications) of a subscription whose channel
 * Redis confirmed; live publications are buffered until the reply. */
void gw_sub_start_positioning(gw_hub_t *hub, gw_sub_t *s);
/* Server-side unsubscribe: an `unsub` push to a live subscription, an error reply to one being set
 * up; s is freed (or marked dead while a read refers to it). */
void gw_sub_kick(gw_hub_t *hub, gw_sub_t *s, int code, const char *reason);
/* Every subscription of ch is told to resubscribe with since (error / unsub 116). */
void gw_channel_insufficient(gw_hub_t *hub, gw_channel_t *ch, const char *why);
/* Data bytes of publications (as stored; what a reply carries is about as large). */
size_t gw_pubs_bytes(const gw_pub_t *p, size_t n);

/* hold.c: commands held behind a pending subscribe (gw_hub_hold, gw_hub_replay in hub.h) */
/* Queues s's held commands to run at the end of this loop turn, after the subscribe's reply was
 * queued; call before s may be freed. */
void gw_sub_release_held(gw_hub_t *hub, gw_sub_t *s);
/* Frees a list of held commands without running them (the connection is gone). */
void gw_held_free(gw_held_cmd_t *h);

/* rpc.c: a message on the node's reply channel (p[0..n) borrowed, untrusted): the backend's
 * answer to a waiting rpc, or dropped and counted. */
void gw_hub_rpc_answer(gw_hub_t *hub, const char *p, size_t n);

/* presence.c */
/* Adds (join) or removes s's connection in the channel's presence set, and with announce sends the
 * join/leave relay frame every node fans out. */
void gw_presence_update(gw_hub_t *hub, gw_sub_t *s, int join, int announce);
/* Re-adds every live subscriber of ch with a new expiry (the hub's tick calls it). */
void gw_presence_refresh(gw_hub_t *hub, gw_channel_t *ch);
/* A join or leave relayed from any node: pushed to every live subscriber of ch but the connection
 * it is about. who is borrowed. */
void gw_presence_fanout(gw_channel_t *ch, const gw_client_info_t *who, int leave);
/* Frees ch's presence read cache (gw_channel_free; no read is in flight then). */
void gw_presence_cache_free(struct gw_presence_cache *pc);
/* From the tick: frees ch's presence read once it is too old to answer from (a big group's
 * member list is not kept for the channel's lifetime). */
void gw_presence_cache_trim(gw_channel_t *ch, uint64_t now_ms);

#endif
