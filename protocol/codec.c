/* codec.c — the v1 wire codec: decodes one client frame (msgpack or JSON) into a validated
 * gw_cmd_t and encodes every reply and push in either encoding. Spec: protocol/PROTOCOL.md */
#include "proto_int.h"

#include <errno.h>
#include <stdlib.h>

/* ---- names and grammar ---------------------------------------------------------------------- */

static const char *const gw_cmd_names[] = {
    [GW_CMD_NONE] = "none",           [GW_CMD_CONNECT] = "connect",
    [GW_CMD_SUBSCRIBE] = "subscribe", [GW_CMD_UNSUBSCRIBE] = "unsubscribe",
    [GW_CMD_PUBLISH] = "publish",     [GW_CMD_PRESENCE] = "presence",
    [GW_CMD_HISTORY] = "history",     [GW_CMD_RPC] = "rpc",
    [GW_CMD_PING] = "ping",           [GW_CMD_REFRESH] = "refresh",
};

const char *gw_cmd_name(gw_cmd_kind_t kind)
{
    return (unsigned)kind < GW_ARRAY_SIZE(gw_cmd_names) ? gw_cmd_names[kind] : "?";
}

static gw_cmd_kind_t gw_cmd_lookup(const char *s, size_t n)
{
    for (size_t k = GW_CMD_CONNECT; k < GW_ARRAY_SIZE(gw_cmd_names); k++)
        if (strlen(gw_cmd_names[k]) == n && memcmp(gw_cmd_names[k], s, n) == 0)
            return (gw_cmd_kind_t)k;
    return GW_CMD_NONE;
}

static int gw_proto_ns_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static int gw_proto_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("_.@=+,;-", c) != NULL);
}

int gw_proto_channel_valid(const char *ch, size_t n, size_t *ns_len)
{
    if (ch == NULL || n == 0 || n > GW_PROTO_MAX_CHANNEL)
        return 0;
    size_t i = 0;
    while (i < n && ch[i] != ':') {
        if (!gw_proto_ns_char(ch[i]))
            return 0;
        i++;
    }
    if (i == 0 || i > GW_PROTO_MAX_NS || i + 1 >= n)
        return 0; /* empty or long namespace, no ':' or an empty id */
    for (size_t j = i + 1; j < n; j++)
        if (!gw_proto_id_char(ch[j]))
            return 0;
    if (ns_len)
        *ns_len = i;
    return 1;
}

/* rpc method names: [A-Za-z0-9_.:-]{1,64} */
static int gw_proto_method_valid(const char *s, size_t n)
{
    if (n == 0 || n > GW_PROTO_MAX_METHOD)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

/* ---- decoding: the envelope, independent of the encoding ------------------------------------ */

/* The top-level fields the decoder knows; anything else is ignored (forward compatibility). */
enum { F_ID, F_CMD, F_CHANNEL, F_TOKEN, F_CLIENT, F_METHOD, F_LIMIT, F_SINCE, F_DATA, F_COUNT };
static const char *const gw_proto_fields[F_COUNT] = {
    "id", "cmd", "channel", "token", "client", "method", "limit", "since", "data",
};

typedef enum { V_ABSENT = 0, V_NIL, V_UINT, V_STR, V_MAP, V_OTHER } gw_proto_vtype_t;

/* One field value, reduced to what validation needs. */
typedef struct {
    gw_proto_vtype_t t;
    uint64_t u;    /* V_UINT */
    const char *s; /* V_STR (not NUL-terminated) */
    size_t n;
    const uint8_t *raw; /* msgpack: the whole encoded value */
    size_t raw_n;
} gw_proto_val_t;

typedef struct {
    gw_proto_val_t f[F_COUNT];
    gw_proto_val_t epoch, offset; /* inside since, when since is a map */
    const json_t *jdata;          /* JSON: the parsed data value (msgpack: f[F_DATA].raw) */
} gw_proto_env_t;

static int gw_proto_field(const char *k, size_t n)
{
    for (int i = 0; i < F_COUNT; i++)
        if (strlen(gw_proto_fields[i]) == n && memcmp(gw_proto_fields[i], k, n) == 0)
            return i;
    return -1;
}

static gw_dec_status_t gw_proto_fail(gw_dec_err_t *err, gw_dec_status_t st, uint32_t id, int code,
                                     const char *msg)
{
    err->status = st;
    err->id = id;
    err->code = code;
    err->msg = msg;
    return st;
}

#define GW_MALFORMED(msg) gw_proto_fail(err, GW_DEC_MALFORMED, 0, 0, (msg))
#define GW_INVALID(code, msg) gw_proto_fail(err, GW_DEC_INVALID, id, (code), (msg))

/* A string field: absent (and null when optional) is allowed when !required. Fills *s with a
 * copy request. 0, or -1 after filling err. */
static int gw_proto_want_str(const gw_proto_val_t *v, int required, size_t min, size_t max,
                             uint32_t id, const char *msg, gw_dec_err_t *err)
{
    if (!required && (v->t == V_ABSENT || v->t == V_NIL))
        return 0;
    if (v->t != V_STR || v->n < min || v->n > max || memchr(v->s, '\0', v->n) != NULL) {
        GW_INVALID(GW_ERR_BAD_REQUEST, msg);
        return -1;
    }
    return 0;
}

static int gw_proto_want_channel(const gw_proto_val_t *v, uint32_t id, gw_dec_err_t *err)
{
    if (v->t != V_STR) {
        GW_INVALID(GW_ERR_BAD_REQUEST, "channel must be a string");
        return -1;
    }
    if (!gw_proto_channel_valid(v->s, v->n, NULL)) {
        GW_INVALID(GW_ERR_BAD_CHANNEL, "invalid channel name");
        return -1;
    }
    return 0;
}

/* Appends a NUL-terminated copy of a string value to owned and returns its offset. */
static size_t gw_proto_keep(gw_buf_t *owned, const gw_proto_val_t *v)
{
    size_t off = owned->len;
    if (v->t == V_STR)
        gw_buf_append(owned, v->s, v->n);
    gw_buf_append(owned, "", 1);
    return off;
}

/* Validates the envelope and fills *out. The data value is copied (msgpack) or converted (JSON)
 * into out->owned_ first, then every string the command keeps. */
static gw_dec_status_t gw_proto_finish(const gw_proto_env_t *e, gw_cmd_t *out, gw_dec_err_t *err)
{
    const gw_proto_val_t *f = e->f;
    if (f[F_ID].t != V_UINT || f[F_ID].u < 1 || f[F_ID].u > UINT32_MAX)
        return GW_MALFORMED("id missing or not an integer in 1..4294967295");
    uint32_t id = (uint32_t)f[F_ID].u;
    if (f[F_CMD].t != V_STR)
        return GW_INVALID(GW_ERR_BAD_REQUEST, "cmd must be a string");
    gw_cmd_kind_t kind = gw_cmd_lookup(f[F_CMD].s, f[F_CMD].n);
    if (kind == GW_CMD_NONE)
        return gw_proto_fail(err, GW_DEC_UNKNOWN, id, GW_ERR_UNKNOWN_COMMAND, "unknown command");

    int keep[F_COUNT] = {0}; /* string fields this command keeps */
    int has_since = 0, has_data = 0;
    uint64_t limit = 0;
    switch (kind) {
    case GW_CMD_CONNECT:
    case GW_CMD_REFRESH:
        if (gw_proto_want_str(&f[F_TOKEN], 1, 1, GW_PROTO_MAX_TOKEN, id,
                              "token must be a string of 1..8192 bytes", err) < 0)
            return err->status;
        keep[F_TOKEN] = 1;
        if (kind == GW_CMD_CONNECT) {
            if (gw_proto_want_str(&f[F_CLIENT], 0, 0, 64, id,
                                  "client must be a string of at most 64 bytes", err) < 0)
                return err->status;
            keep[F_CLIENT] = 1;
        }
        break;
    case GW_CMD_HISTORY:
        if (f[F_LIMIT].t != V_ABSENT && f[F_LIMIT].t != V_NIL &&
            (f[F_LIMIT].t != V_UINT || f[F_LIMIT].u > UINT32_MAX))
            return GW_INVALID(GW_ERR_BAD_REQUEST, "limit must be an integer in 0..4294967295");
        limit = f[F_LIMIT].t == V_UINT ? f[F_LIMIT].u : 0;
        /* fall through */
    case GW_CMD_SUBSCRIBE:
        if (f[F_SINCE].t != V_ABSENT && f[F_SINCE].t != V_NIL) {
            if (f[F_SINCE].t != V_MAP || e->offset.t != V_UINT)
                return GW_INVALID(GW_ERR_BAD_REQUEST,
                                  "since must be {epoch: string, offset: integer >= 0}");
            if (gw_proto_want_str(&e->epoch, 1, 0, GW_PROTO_MAX_EPOCH, id,
                                  "since.epoch must be a string of at most 64 bytes", err) < 0)
                return err->status;
            has_since = 1;
        }
        /* fall through */
    case GW_CMD_UNSUBSCRIBE:
    case GW_CMD_PRESENCE:
        if (gw_proto_want_channel(&f[F_CHANNEL], id, err) < 0)
            return err->status;
        keep[F_CHANNEL] = 1;
        break;
    case GW_CMD_PUBLISH:
        if (gw_proto_want_channel(&f[F_CHANNEL], id, err) < 0)
            return err->status;
        keep[F_CHANNEL] = 1;
        has_data = 1;
        break;
    case GW_CMD_RPC:
        if (f[F_METHOD].t != V_STR || !gw_proto_method_valid(f[F_METHOD].s, f[F_METHOD].n))
            return GW_INVALID(GW_ERR_BAD_REQUEST, "method must match [A-Za-z0-9_.:-]{1,64}");
        keep[F_METHOD] = 1;
        has_data = 1;
        break;
    case GW_CMD_PING:
    case GW_CMD_NONE:
        break;
    }
    if (has_data && f[F_DATA].t == V_ABSENT)
        return GW_INVALID(GW_ERR_BAD_REQUEST, "data is required");

    /* Everything is valid: copy. Offsets first, pointers once owned_ stops growing. */
    gw_buf_t *o = &out->owned_;
    size_t data_off = 0, data_n = 0;
    if (has_data) {
        if (e->jdata) {
            msgpack_packer pk;
            gw_proto_mp_packer(&pk, o);
            if (gw_proto_json_pack(e->jdata, &pk) < 0) {
                gw_buf_free(o);
                return GW_INVALID(GW_ERR_BAD_REQUEST, "data: malformed $bin or $ext value");
            }
        } else {
            gw_buf_append(o, f[F_DATA].raw, f[F_DATA].raw_n);
        }
        data_n = o->len;
    }
    size_t off[F_COUNT] = {0}, epoch_off = 0;
    for (int i = 0; i < F_COUNT; i++)
        if (keep[i])
            off[i] = gw_proto_keep(o, &f[i]);
    if (has_since)
        epoch_off = gw_proto_keep(o, &e->epoch);

    static const char empty[] = "";
    const char *base = (const char *)gw_buf_data(o);
    gw_slice_t *slot[F_COUNT] = {NULL};
    slot[F_CHANNEL] = &out->channel;
    slot[F_TOKEN] = &out->token;
    slot[F_CLIENT] = &out->client;
    slot[F_METHOD] = &out->method;
    out->kind = kind;
    out->id = id;
    for (int i = 0; i < F_COUNT; i++)
        if (slot[i]) {
            int set = keep[i] && f[i].t == V_STR;
            *slot[i] = (gw_slice_t){set ? base + off[i] : empty, set ? f[i].n : 0};
        }
    out->since_epoch = (gw_slice_t){has_since ? base + epoch_off : empty, has_since ? e->epoch.n : 0};
    out->has_since = has_since;
    out->since_offset = has_since ? e->offset.u : 0;
    out->limit = (uint32_t)limit;
    out->data = (gw_data_t){GW_DATA_MSGPACK, has_data ? (const uint8_t *)base + data_off : NULL,
                            data_n};
    err->status = GW_DEC_OK;
    err->id = id;
    err->code = 0;
    err->msg = "ok";
    return GW_DEC_OK;
}

