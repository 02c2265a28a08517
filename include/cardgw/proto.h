/* proto.h — the cardgw v1 wire codec: decodes one client frame (msgpack or JSON) into a
 * validated command, and encodes every reply and push in either encoding. Spec:
 * protocol/PROTOCOL.md */
#ifndef CARDGW_PROTO_H
#define CARDGW_PROTO_H

#include "cardgw/common.h"

#include <stdint.h>

#define GW_PROTO_SUBPROTO_MSGPACK "cardgw.v1.msgpack"
#define GW_PROTO_SUBPROTO_JSON    "cardgw.v1.json"

/* Hard limits of the v1 protocol (the node may configure lower ones). */
#define GW_PROTO_MAX_CHANNEL 255  /* bytes in a channel name */
#define GW_PROTO_MAX_NS      32   /* bytes in a namespace */
#define GW_PROTO_MAX_TOKEN   8192 /* bytes in a token */
#define GW_PROTO_MAX_EPOCH   64   /* bytes in an epoch string */
#define GW_PROTO_MAX_METHOD  64   /* bytes in an rpc method name */
#define GW_PROTO_MAX_DEPTH   32   /* nesting depth of a whole frame, data included */
#define GW_PROTO_MAX_INFO    1024 /* bytes of a connection's info (JSON text, from its token) */

typedef enum { GW_ENC_MSGPACK = 0, GW_ENC_JSON = 1 } gw_enc_t;

typedef enum {
    GW_CMD_NONE = 0,
    GW_CMD_CONNECT,
    GW_CMD_SUBSCRIBE,
    GW_CMD_UNSUBSCRIBE,
    GW_CMD_PUBLISH,
    GW_CMD_PRESENCE,
    GW_CMD_HISTORY,
    GW_CMD_RPC,
    GW_CMD_PING,
    GW_CMD_REFRESH,
    GW_CMD_PRESENCE_USERS, /* presence by user: distinct uids with their connection counts */
    GW_CMD_PRESENCE_STATS, /* presence counts only */
} gw_cmd_kind_t;

/* Stable numeric error codes carried in error replies (PROTOCOL.md "Errors"). */
enum {
    GW_ERR_INTERNAL = 100,        /* retry later */
    GW_ERR_UNAUTHORIZED = 101,    /* bad or unknown token */
    GW_ERR_UNKNOWN_COMMAND = 102, /* cmd not known to this protocol version */
    GW_ERR_PERMISSION = 103,      /* not allowed (subscribe, publish, presence, history) */
    GW_ERR_BAD_REQUEST = 104,     /* a field is missing, of the wrong type or too long */
    GW_ERR_ALREADY_SUBSCRIBED = 105,
    GW_ERR_NOT_SUBSCRIBED = 106,
    GW_ERR_LIMIT = 107,         /* too many subscriptions */
    GW_ERR_NOT_CONNECTED = 108, /* a command before a successful connect */
    GW_ERR_ALREADY_CONNECTED = 109,
    GW_ERR_TOKEN_EXPIRED = 110,
    GW_ERR_UNAVAILABLE = 111, /* Redis is down: retry after a delay */
    GW_ERR_UNKNOWN_NAMESPACE = 112,
    GW_ERR_BAD_CHANNEL = 113, /* channel name does not follow the grammar */
    GW_ERR_METHOD_NOT_FOUND = 114,
    GW_ERR_TOO_MANY_REQUESTS = 115,
    GW_ERR_INSUFFICIENT_STATE =
        116,                  /* the node lost track of the channel: resubscribe with since */
    GW_ERR_USER_LIMIT = 117,  /* max_connections_per_user open for this uid on this node */
    GW_ERR_RPC_TIMEOUT = 118, /* no backend answer within rpc_timeout_ms (the call may still run) */
    GW_ERR_BACKEND = 119,     /* the backend refused the rpc: its message (and app_code) */
};

/* WebSocket close codes: 4000–4499 mean "reconnect" (after the advised delay),
 * 4500–4999 mean "do not reconnect without changing something". */
enum {
    GW_CLOSE_SHUTDOWN = 4000,     /* node shutting down or draining: reconnect after jitter */
    GW_CLOSE_SLOW = 4001,         /* slow consumer: reconnect now and recover with since */
    GW_CLOSE_INSUFFICIENT = 4002, /* insufficient state: reconnect and recover */
    GW_CLOSE_AUTH_TIMEOUT = 4003, /* no connect command in time */
    GW_CLOSE_FLOOD = 4004,        /* too many commands or errors: reconnect with backoff */
    GW_CLOSE_EXPIRED = 4005,      /* token expired and not refreshed: reconnect, new token */
    GW_CLOSE_INTERNAL = 4006,     /* internal error: reconnect with backoff */
    GW_CLOSE_TIMEOUT = 4007,      /* no traffic for 3 ping intervals: reconnect */
    GW_CLOSE_USER_LIMIT = 4008,   /* too many connections for this user: reconnect with backoff */
    GW_CLOSE_MALFORMED = 4500,    /* a frame that cannot be decoded */
    GW_CLOSE_UNAUTHORIZED = 4501, /* bad token */
    GW_CLOSE_TOO_BIG = 4502,      /* frame larger than max_frame_bytes */
    GW_CLOSE_WRONG_FRAME = 4503,  /* binary frame on json, text frame on msgpack */
    GW_CLOSE_KICKED = 4504,       /* disconnected by the server API */
};

/* A byte range. Strings decoded from a frame are NUL-terminated (p[n] == '\0'). */
typedef struct {
    const char *p;
    size_t n;
} gw_slice_t;

/* Opaque publication data in one of the two forms the node stores it in. */
typedef enum { GW_DATA_MSGPACK = 0, GW_DATA_JSON = 1 } gw_data_fmt_t;
typedef struct {
    gw_data_fmt_t fmt;
    const uint8_t *p; /* one complete msgpack value, or one JSON text value */
    size_t n;
} gw_data_t;

/* A decoded client command. All slices point into memory owned by the command (or into the
 * frame it was decoded from, which must outlive it); release with gw_cmd_free(). */
typedef struct {
    gw_cmd_kind_t kind;
    uint32_t id;        /* >= 1 */
    gw_slice_t channel; /* subscribe, unsubscribe, publish, presence, history */
    gw_slice_t token;   /* connect, refresh */
    gw_slice_t client;  /* connect: optional client name/version, <= 64 bytes */
    gw_slice_t method;  /* rpc */
    gw_data_t data;     /* publish, rpc (required; fmt is always GW_DATA_MSGPACK after
                           decoding, so a JSON client's data is converted once here) */
    int has_since;      /* subscribe, history */
    gw_slice_t since_epoch;
    uint64_t since_offset;
    uint32_t limit;  /* history: 0 when absent */
    gw_buf_t owned_; /* private: storage the slices may point into */
} gw_cmd_t;

/* Decoder outcome. */
typedef enum {
    GW_DEC_OK = 0,
    GW_DEC_MALFORMED = -1, /* not a decodable frame (syntax, trailing bytes, depth, bad UTF-8 in
                              JSON or in msgpack strings, a known field repeated, a map or array
                              used as a map key, top level not a map, id missing or invalid):
                              close 4500 */
    GW_DEC_INVALID = -2,   /* id known, a field is wrong: reply error 104 (or 113 for a channel
                              that breaks the grammar) echoing id */
    GW_DEC_UNKNOWN = -3,   /* id known, cmd not known: reply error 102 echoing id */
} gw_dec_status_t;

typedef struct {
    gw_dec_status_t status;
    uint32_t id;     /* valid for INVALID and UNKNOWN */
    int code;        /* error code to reply with for INVALID and UNKNOWN */
    const char *msg; /* static, human-readable reason (never NULL after a failed decode) */
} gw_dec_err_t;

/* Decodes one whole client frame. On GW_DEC_OK fills *out (call gw_cmd_free after use);
 * otherwise fills *err and leaves nothing to free. Never reads past buf+len; allocates at most
 * a small constant multiple of len. */
gw_dec_status_t gw_proto_decode(gw_enc_t enc, const uint8_t *buf, size_t len, gw_cmd_t *out,
                                gw_dec_err_t *err);
/* Frees what a decoded command owns (the command struct is the caller's). */
void gw_cmd_free(gw_cmd_t *cmd);
/* The command's wire name ("subscribe", ...; static), for logs. */
const char *gw_cmd_name(gw_cmd_kind_t kind);

/* Channel grammar: "<ns>:<id>", ns [a-z0-9_-]{1,32}, id [A-Za-z0-9_.@=+,;-]{1,...}, whole name at
 * most GW_PROTO_MAX_CHANNEL bytes. Returns 1 when valid; *ns_len gets the namespace length. */
int gw_proto_channel_valid(const char *ch, size_t n, size_t *ns_len);

/* Decodes canonical base64 into out: url = 0, the standard alphabet padded with '=' to a multiple
 * of 4 ($bin / $ext); url = 1, base64url without padding (JWTs). Either way n % 4 != 1 (unpadded)
 * and the unused trailing bits are zero, so one byte string has one encoding. Returns the decoded
 * length, or -EINVAL (bad encoding) / -E2BIG (more than cap bytes). */
long gw_proto_base64_decode(const char *s, size_t n, uint8_t *out, size_t cap, int url);

/* ---- data conversion ------------------------------------------------------------------------
 * Both append to out and return 0, or -EINVAL when the input is not one valid value within
 * GW_PROTO_MAX_DEPTH (and, for JSON, valid UTF-8). JSON rule for msgpack values JSON cannot hold:
 * bin -> {"$bin":"<base64>"}, ext -> {"$ext":[type,"<base64>"]}, non-string map keys -> their
 * JSON text as the key, NaN/Infinity -> null. The reverse conversion maps a map whose only key
 * is "$bin" (string value) or "$ext" back to bin/ext, so msgpack -> JSON -> msgpack round-trips. */
int gw_data_json_to_msgpack(const uint8_t *json, size_t len, gw_buf_t *out);
int gw_data_msgpack_to_json(const uint8_t *mp, size_t len, gw_buf_t *out);

/* One field of a msgpack map looked up by gw_data_map_fields: key is the caller's (borrowed,
 * NUL-terminated); p[0..n) is set to the field's value, pointing into the map (NULL: absent). */
typedef struct {
    const char *key;
    const uint8_t *p;
    size_t n;
} gw_data_field_t;
/* p[0..n) must be exactly one valid msgpack value (as data is validated: structure, lengths,
 * UTF-8, depth <= GW_PROTO_MAX_DEPTH, scalar map keys) and a map. Sets each of f[0..nf) to the
 * value of its str key; other keys are ignored. Returns 0, or -EINVAL (not one valid map, or one
 * of the keys present twice). Allocates nothing. */
int gw_data_map_fields(const uint8_t *p, size_t n, gw_data_field_t *f, size_t nf);
/* p[0..n) is exactly one msgpack str of valid UTF-8: 0 with *s pointing into p (not
 * NUL-terminated), else -EINVAL (also for p NULL). */
int gw_data_as_str(const uint8_t *p, size_t n, gw_slice_t *s);
/* p[0..n) is exactly one msgpack integer in the int64 range: 0 with *v, else -EINVAL. */
int gw_data_as_int(const uint8_t *p, size_t n, int64_t *v);

/* ---- encoders -------------------------------------------------------------------------------
 * Each appends one complete message in `enc` to out (nothing else: no WebSocket header).
 * Strings passed in are borrowed. gw_data_t values are converted when their form differs from
 * the encoding (an invalid data value is encoded as null, never dropped silently). */

typedef struct {
    uint64_t offset;
    gw_data_t data;
    gw_slice_t from; /* publisher uid when a client published; n == 0 when absent */
} gw_pub_t;

typedef struct {
    gw_slice_t uid;
    gw_slice_t client; /* connection id */
    gw_data_t info;    /* the connection's info from its token ("conn_info"); n == 0: none */
} gw_client_info_t;

typedef struct {
    gw_slice_t uid;
    uint32_t connections; /* this user's connections in the channel */
    gw_data_t info;       /* info of one of them; n == 0: none */
} gw_user_info_t;

/* {"id":id,"result":{}} — also the reply to ping, unsubscribe and refresh. */
void gw_proto_enc_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id);
/* {"id":id,"error":{"code":code,"message":msg}} */
void gw_proto_enc_error(gw_buf_t *out, gw_enc_t enc, uint32_t id, int code, const char *msg);
/* {"id":id,"error":{"code":code,"message":msg,"app_code":app_code}} — an error that carries the
 * backend's own code (error 119). */
void gw_proto_enc_error_app(gw_buf_t *out, gw_enc_t enc, uint32_t id, int code, const char *msg,
                            int64_t app_code);
/* {"id":id,"result":{"client":..,"uid":..,"node":..,"ping":secs[,"expires_in":secs]}}
 * expires_in is omitted when expires_in_s == 0. */
void gw_proto_enc_connect_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, gw_slice_t client,
                             gw_slice_t uid, gw_slice_t node, uint32_t ping_s,
                             uint32_t expires_in_s);
/* {"id":id,"result":{"epoch":..,"offset":..,"recovered":bool,"publications":[pub...]}}
 * "recovered" is present only when has_recovered; "publications" only when npubs > 0.
 * Each publication is {"offset":..,"data":..[,"from":..]}. Also used for history replies. */
void gw_proto_enc_position_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, gw_slice_t epoch,
                              uint64_t offset, int has_recovered, int recovered,
                              const gw_pub_t *pubs, size_t npubs);
/* The history reply: as gw_proto_enc_position_ok without recovered, and "more": true at the end
 * when more publications were in range than the reply carries (a byte bound cut it). */
void gw_proto_enc_history_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, gw_slice_t epoch,
                             uint64_t offset, const gw_pub_t *pubs, size_t npubs, int more);
/* {"id":id,"result":{"epoch":..,"offset":..}} */
void gw_proto_enc_publish_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, gw_slice_t epoch,
                             uint64_t offset);
/* {"id":id,"result":{"clients":[{"uid":..,"client":..[,"conn_info":..]}...][,"partial":true,
 * "total":total]}}: total > 0 says the list was cut at presence_max_members of total. */
void gw_proto_enc_presence_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id,
                              const gw_client_info_t *clients, size_t n, uint64_t total);
/* {"id":id,"result":{"users":[{"uid":..,"connections":..[,"conn_info":..]}...][,"partial":true,
 * "total":total]}}: as gw_proto_enc_presence_ok (total counts connections). */
void gw_proto_enc_presence_users_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id,
                                    const gw_user_info_t *users, size_t n, uint64_t total);
/* {"id":id,"result":{"connections":..,"users":..[,"partial":true]}}: partial when users was
 * counted among the first presence_max_members connections only. */
void gw_proto_enc_presence_stats_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, uint64_t connections,
                                    uint64_t users, int partial);
/* {"id":id,"result":{"data":..}} */
void gw_proto_enc_rpc_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, gw_data_t data);

/* Pushes (no id). */
/* {"push":"pub","channel":..,"offset":..,"data":..[,"from":..]} */
void gw_proto_enc_pub(gw_buf_t *out, gw_enc_t enc, gw_slice_t channel, const gw_pub_t *pub);
/* {"push":"join"|"leave","channel":..,"info":{"uid":..,"client":..[,"conn_info":..]}} */
void gw_proto_enc_join(gw_buf_t *out, gw_enc_t enc, gw_slice_t channel,
                       const gw_client_info_t *info, int leave);
/* {"push":"unsub","channel":..,"code":..,"reason":..} */
void gw_proto_enc_unsub(gw_buf_t *out, gw_enc_t enc, gw_slice_t channel, int code,
                        const char *reason);
/* {"push":"disconnect","code":..,"reason":..,"reconnect":bool,"delay_ms":..} */
void gw_proto_enc_disconnect(gw_buf_t *out, gw_enc_t enc, int code, const char *reason,
                             int reconnect, uint32_t delay_ms);
/* {"push":"refresh","expires_in":secs} — the token expires soon: send a refresh command. */
void gw_proto_enc_refresh(gw_buf_t *out, gw_enc_t enc, uint32_t expires_in_s);

#endif
