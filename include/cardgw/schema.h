/* schema.h — the Redis schema in one place: every key and pub/sub channel name the node reads or
 * writes, and the relay frame carried on a channel's pub/sub. docs/redis-schema.md is its table. */
#ifndef CARDGW_SCHEMA_H
#define CARDGW_SCHEMA_H

#include <stddef.h>

#include "cardgw/proto.h"

#define GW_SCHEMA_CTL_CHANNEL "cardgw:ctl"   /* node control: disconnect / unsubscribe a user */
#define GW_SCHEMA_INBOX       "cardgw:inbox" /* stream of client rpc calls for the backend */
/* string: bytes of the inbox's entries as scripts/inbox.lua counts them */
#define GW_SCHEMA_INBOX_BYTES "cardgw:inbox:bytes"
#define GW_SCHEMA_NODES       "cardgw:nodes" /* hash: node id -> its entry (JSON), registry.c */
/* stream on each channel's Redis: publications nobody was subscribed to (publish.lua) */
#define GW_SCHEMA_OFFLINE "cardgw:offline"
#define GW_SCHEMA_SEEN    "cardgw:seen" /* hash: uid -> last connect or close (unix ms) */
/* Room for a channel, members or probe key (a valid channel name or node id plus decoration). */
#define GW_SCHEMA_KEY_MAX (GW_PROTO_MAX_CHANNEL + 32)
/* Room for a session key (a token of at most GW_PROTO_MAX_TOKEN bytes plus decoration). */
#define GW_SCHEMA_SESSION_KEY_MAX (GW_PROTO_MAX_TOKEN + 32)

/* The keys of one channel; all carry the hash tag {<channel>}, so they live together. */
typedef enum {
    GW_KEY_PUBSUB = 0, /* "cardgw:{<ch>}"   pub/sub channel the nodes subscribe to */
    GW_KEY_META,       /* "cardgw:{<ch>}:m" hash: e = epoch, s = top offset */
    GW_KEY_STREAM,     /* "cardgw:{<ch>}:x" history stream, entry ID = <offset>-0 */
    GW_KEY_PRESENCE,   /* "cardgw:{<ch>}:p" zset "<uid> <client>" scored by expiry (unix ms) */
} gw_channel_key_t;

/* Writes the key of channel ch[0..n) into out (cap bytes, NUL-terminated); returns its length
 * (truncated to cap - 1, which GW_SCHEMA_KEY_MAX never needs for a valid channel). */
size_t gw_schema_channel_key(char *out, size_t cap, const char *ch, size_t n, gw_channel_key_t k);
/* The channel named by a pub/sub channel "cardgw:{<ch>}": 0 with *ch / *n pointing into rch, or
 * -EINVAL when rch is not one. */
int gw_schema_channel_of(const char *rch, size_t rn, const char **ch, size_t *n);
/* The shard channel ch[0..n) lives on, of nshards (>= 1): Lamping and Veach's jump consistent
 * hash of the channel name's 64-bit FNV-1a hash. Adding a shard moves about 1/nshards of the
 * channels. docs/redis-schema.md has the same function in Python for backends. */
uint32_t gw_schema_shard(const char *ch, size_t n, uint32_t nshards);
/* "cardgw:session:<token>": hash uid, expires_at (unix s), info — written by the backend. */
size_t gw_schema_session_key(char *out, size_t cap, const char *token, size_t n);
/* "cardgw:<ns>:<id>:members": set of uids allowed in channel <ns>:<id> (namespaces with
 * subscribe = members) — written by the backend. */
size_t gw_schema_members_key(char *out, size_t cap, const char *ns, size_t nsn, const char *id,
                             size_t idn);
/* "cardgw:probe:<node_id>": the pub/sub channel of a node's canary round trip. */
size_t gw_schema_probe_channel(char *out, size_t cap, const char *node_id);
/* "cardgw:reply:<node_id>": the pub/sub channel (main Redis) a node receives rpc answers on; the
 * inbox entry of an rpc that waits names it in its field `reply`. */
size_t gw_schema_reply_channel(char *out, size_t cap, const char *node_id);

/* ---- rpc answers (docs/redis-schema.md, "rpc answers") ------------------------------------- */

/* The inbox entry's `req`: "<instance>-<seq>" (instance: the node process's random hex, seq a
 * decimal counter), unique across nodes and restarts. Writes it into out (NUL-terminated);
 * returns its length, or 0 when it does not fit cap. */
#define GW_SCHEMA_REQ_MAX 48
size_t gw_schema_rpc_req(char *out, size_t cap, const char *instance, uint64_t seq);
/* The seq of a req written by the process `instance` (borrowed); -EINVAL for any other string. */
int gw_schema_parse_rpc_req(gw_slice_t req, const char *instance, uint64_t *seq);

/* A backend's answer to an rpc, PUBLISHed on the node's reply channel: one JSON object (text
 * starting with '{', after optional whitespace) or one msgpack map, with the str keys
 *   req     string: the inbox entry's req (required)
 *   result  any value: the rpc's result                       } exactly one of the two
 *   error   map: message (string, optional), code (integer, optional)   }
 * Other keys are ignored. */
/* Bytes of an error message kept (a longer one is cut at a character boundary). */
#define GW_SCHEMA_ANSWER_MESSAGE_MAX 1024
typedef struct {
    gw_slice_t req;                                 /* not NUL-terminated */
    int is_error;                                   /* error: message and app code; else result */
    gw_data_t result;                               /* msgpack */
    char message[GW_SCHEMA_ANSWER_MESSAGE_MAX + 1]; /* error: NUL-terminated, "" when absent */
    int has_code;
    int64_t code; /* error: the backend's own code when has_code */
} gw_rpc_answer_t;
/* Parses p[0..n) (untrusted: any bytes). A JSON answer is converted to msgpack into scratch
 * (initialised by the caller, freed by it after use): a's slices point into p or scratch.
 * Returns 0 or -EINVAL (not one valid JSON object / msgpack map within GW_PROTO_MAX_DEPTH, req
 * missing, not a string or longer than GW_SCHEMA_REQ_MAX, neither or both of result and error,
 * an error that is not a map, a message that is not a string, a code that is not an integer). */
int gw_schema_parse_rpc_answer(const char *p, size_t n, gw_buf_t *scratch, gw_rpc_answer_t *a);

/* "cardgw:online:<node_id>": hash uid -> the user's authenticated connections on that node
 * (online.c); expires with the node's registry entry unless refreshed. */
size_t gw_schema_online_key(char *out, size_t cap, const char *node_id);

/* A relay frame: "1\n<epoch>\n<offset>\n<kind>\n<from>\n<data>" as scripts/publish.lua PUBLISHes
 * it (kind m: msgpack data, j: JSON data), or a presence change
 * "1\n\n0\n<J|L>\n<uid>\n<client>[\n<info>]" (no epoch, no offset, not in history; info is the
 * connection's JSON text from its token). Version 2 of either puts the publish time first:
 * "2\n<unix time in microseconds>\n<epoch>\n..." (publish.lua with relay_timestamps). */
typedef struct {
    char kind;        /* 'm' or 'j': a publication; 'J' / 'L': presence join / leave */
    uint64_t time_us; /* version 2: the Redis clock at the publication; 0: version 1 */
    gw_slice_t epoch; /* publications only */
    gw_pub_t pub;     /* presence: from = uid, data = client id */
    gw_slice_t info;  /* presence: the connection's info (JSON text); n == 0: none */
} gw_relay_frame_t;
/* Parses p[0..n); returns 0 (w points into p) or -EINVAL. */
int gw_schema_parse_relay(const char *p, size_t n, gw_relay_frame_t *w);
/* Room for a presence frame or presence set member: uid, client id and info. */
#define GW_SCHEMA_PRESENCE_MAX (GW_PROTO_MAX_INFO + 256)
/* Writes a presence relay frame into out; returns its length (truncated to cap - 1). info may be
 * NULL (no info). */
size_t gw_schema_presence_frame(char *out, size_t cap, int join, const char *uid, const char *cid,
                                const char *info);
/* Writes the presence set member "<uid> <client>[ <info>]"; returns its length (as above). */
size_t gw_schema_presence_member(char *out, size_t cap, const char *uid, const char *cid,
                                 const char *info);
/* Splits a presence set member; 0, or -EINVAL when it has no space. Slices point into p. */
int gw_schema_parse_presence_member(const char *p, size_t n, gw_client_info_t *ci);

/* A node control message on GW_SCHEMA_CTL_CHANNEL: "disconnect\n<uid>" (close every connection of
 * the user) or "unsubscribe\n<uid>\n<channel>" (remove the user's subscriptions to it). */
typedef struct {
    int unsubscribe;
    gw_slice_t uid;
    gw_slice_t channel; /* unsubscribe only */
} gw_control_t;
#define GW_SCHEMA_CONTROL_MAX 512 /* a node acts on control messages shorter than this */
/* Writes the message for uid (and channel; NULL: disconnect) into out; returns its length, or 0
 * when it does not fit cap. */
size_t gw_schema_control(char *out, size_t cap, const char *uid, const char *channel);
/* Parses p[0..n); returns 0 (m points into p) or -EINVAL. */
int gw_schema_parse_control(const char *p, size_t n, gw_control_t *m);

#endif
