/* codec.c — the v1 wire codec: decodes one client frame (msgpack or JSON) into a validated
 * gw_cmd_t and encodes every reply and push in either encoding. Spec: protocol/PROTOCOL.md */
#include "proto_int.h"

#include <errno.h>
#include <stdlib.h>

/* ---- names and grammar ---------------------------------------------------------------------- */

static const char *const gw_cmd_names[] = {
    [GW_CMD_NONE] = "none",
    [GW_CMD_CONNECT] = "connect",
    [GW_CMD_SUBSCRIBE] = "subscribe",
    [GW_CMD_UNSUBSCRIBE] = "unsubscribe",
    [GW_CMD_PUBLISH] = "publish",
    [GW_CMD_PRESENCE] = "presence",
    [GW_CMD_HISTORY] = "history",
    [GW_CMD_RPC] = "rpc",
    [GW_CMD_PING] = "ping",
    [GW_CMD_REFRESH] = "refresh",
    [GW_CMD_PRESENCE_USERS] = "presence_users",
    [GW_CMD_PRESENCE_STATS] = "presence_stats",
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

static gw_dec_status_t gw_proto_fail(gw_dec_err_t *err, gw_dec_status_t st, uint32_t id, int code,
                                     const char *msg)
{
    err->status = st;
    err->id = id;
    err->code = code;
    err->msg = msg;
    return st;
}

#define GW_MALFORMED(msg)     gw_proto_fail(err, GW_DEC_MALFORMED, 0, 0, (msg))
#define GW_INVALID(code, msg) gw_proto_fail(err, GW_DEC_INVALID, id, (code), (msg))

/* Checks a string field of min..max bytes without NUL; when !required, absent or null passes.
 * 0, or -1 after filling err with error 104 and msg. */
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
    case GW_CMD_PRESENCE_USERS:
    case GW_CMD_PRESENCE_STATS:
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
    const char *base = o->base ? (const char *)gw_buf_data(o) : empty; /* NULL + 0 is UB */
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
    out->since_epoch =
        (gw_slice_t){has_since ? base + epoch_off : empty, has_since ? e->epoch.n : 0};
    out->has_since = has_since;
    out->since_offset = has_since ? e->offset.u : 0;
    out->limit = (uint32_t)limit;
    out->data =
        (gw_data_t){GW_DATA_MSGPACK, has_data ? (const uint8_t *)base + data_off : NULL, data_n};
    err->status = GW_DEC_OK;
    err->id = id;
    err->code = 0;
    err->msg = "ok";
    return GW_DEC_OK;
}

/* ---- decoding: msgpack ---------------------------------------------------------------------- */

/* Reduces the (already validated) msgpack value at c to a gw_proto_val_t and skips it. */
static void gw_proto_mp_val(gw_proto_mp_cur_t *c, gw_proto_val_t *v)
{
    gw_proto_mp_cur_t start = *c;
    gw_proto_mp_item_t it;
    gw_proto_mp_next(&start, &it);
    v->t = it.type == GW_MP_NIL    ? V_NIL
           : it.type == GW_MP_UINT ? V_UINT
           : it.type == GW_MP_STR  ? V_STR
           : it.type == GW_MP_MAP  ? V_MAP
                                   : V_OTHER;
    v->u = it.u;
    v->s = (const char *)it.p;
    v->n = it.n;
    v->raw = c->p;
    gw_proto_mp_skip(c, 1);
    v->raw_n = (size_t)(c->p - v->raw);
}

/* Walks the validated map at p: the value of each string key found in names[0..nn) goes to
 * vals[]. Returns -1 when a known key appears twice. */
static int gw_proto_mp_fields(const uint8_t *p, size_t n, const char *const *names, int nn,
                              gw_proto_val_t *vals)
{
    gw_proto_mp_cur_t c = {p, p + n};
    gw_proto_mp_item_t m, k;
    gw_proto_mp_next(&c, &m);
    for (uint32_t i = 0; i < m.n; i++) {
        gw_proto_mp_cur_t key = c;
        gw_proto_mp_next(&key, &k);
        int idx = -1;
        for (int j = 0; k.type == GW_MP_STR && j < nn; j++)
            if (strlen(names[j]) == k.n && memcmp(names[j], k.p, k.n) == 0)
                idx = j;
        gw_proto_mp_skip(&c, 1); /* the key */
        if (idx < 0) {
            gw_proto_mp_skip(&c, 1); /* unknown field: ignored */
            continue;
        }
        if (vals[idx].t != V_ABSENT)
            return -1;
        gw_proto_mp_val(&c, &vals[idx]);
    }
    return 0;
}

static gw_dec_status_t gw_proto_decode_mp(const uint8_t *buf, size_t len, gw_cmd_t *out,
                                          gw_dec_err_t *err)
{
    gw_proto_mp_cur_t c = {buf, buf + len};
    if (gw_proto_mp_skip(&c, 1) < 0)
        return GW_MALFORMED("invalid msgpack (truncated, bad length, bad UTF-8 or too deep)");
    if (c.p != c.end)
        return GW_MALFORMED("trailing bytes after the msgpack value");
    if ((buf[0] & 0xf0) != 0x80 && buf[0] != 0xde && buf[0] != 0xdf)
        return GW_MALFORMED("frame is not a map");

    gw_proto_env_t e;
    memset(&e, 0, sizeof(e));
    if (gw_proto_mp_fields(buf, len, gw_proto_fields, F_COUNT, e.f) < 0)
        return GW_MALFORMED("duplicate field");
    if (e.f[F_SINCE].t == V_MAP) {
        static const char *const since_names[] = {"epoch", "offset"};
        gw_proto_val_t sv[2];
        memset(sv, 0, sizeof(sv));
        if (gw_proto_mp_fields(e.f[F_SINCE].raw, e.f[F_SINCE].raw_n, since_names, 2, sv) < 0)
            return GW_MALFORMED("duplicate field in since");
        e.epoch = sv[0];
        e.offset = sv[1];
    }
    return gw_proto_finish(&e, out, err);
}

/* ---- decoding: JSON ------------------------------------------------------------------------- */

static void gw_proto_json_val(const json_t *j, gw_proto_val_t *v)
{
    memset(v, 0, sizeof(*v));
    if (j == NULL)
        return;
    switch (json_typeof(j)) {
    case JSON_NULL:
        v->t = V_NIL;
        break;
    case JSON_INTEGER:
        v->t = json_integer_value(j) >= 0 ? V_UINT : V_OTHER;
        v->u = (uint64_t)json_integer_value(j);
        break;
    case JSON_STRING:
        v->t = V_STR;
        v->s = json_string_value(j);
        v->n = json_string_length(j);
        break;
    case JSON_OBJECT:
        v->t = V_MAP;
        break;
    default:
        v->t = V_OTHER;
    }
}

/* jansson builds a tree (a few dozen bytes per value, so memory stays a constant multiple of
 * the frame); the bracket pre-scan stops nesting bombs before it recurses. */
static gw_dec_status_t gw_proto_decode_json(const uint8_t *buf, size_t len, gw_cmd_t *out,
                                            gw_dec_err_t *err)
{
    if (!gw_proto_json_nesting_ok(buf, len, GW_PROTO_MAX_DEPTH + 2))
        return GW_MALFORMED("nesting too deep");
    json_error_t jerr;
    json_t *root =
        json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (root == NULL)
        return GW_MALFORMED("invalid JSON (syntax, UTF-8, duplicate key or integer range)");
    gw_dec_status_t st;
    if (!json_is_object(root)) {
        st = GW_MALFORMED("frame is not an object");
    } else if (gw_proto_json_model_depth(root) > GW_PROTO_MAX_DEPTH) {
        st = GW_MALFORMED("nesting too deep");
    } else {
        gw_proto_env_t e;
        memset(&e, 0, sizeof(e));
        for (int i = 0; i < F_COUNT; i++)
            gw_proto_json_val(json_object_get(root, gw_proto_fields[i]), &e.f[i]);
        json_t *since = json_object_get(root, "since");
        if (json_is_object(since)) {
            gw_proto_json_val(json_object_get(since, "epoch"), &e.epoch);
            gw_proto_json_val(json_object_get(since, "offset"), &e.offset);
        }
        e.jdata = json_object_get(root, "data");
        st = gw_proto_finish(&e, out, err);
    }
    json_decref(root);
    return st;
}

/* ---- decoding: entry points ----------------------------------------------------------------- */

gw_dec_status_t gw_proto_decode(gw_enc_t enc, const uint8_t *buf, size_t len, gw_cmd_t *out,
                                gw_dec_err_t *err)
{
    memset(out, 0, sizeof(*out));
    gw_buf_init(&out->owned_, 0);
    gw_dec_status_t st;
    if (len == 0)
        st = GW_MALFORMED("empty frame");
    else if (enc == GW_ENC_JSON)
        st = gw_proto_decode_json(buf, len, out, err);
    else
        st = gw_proto_decode_mp(buf, len, out, err);
    if (st != GW_DEC_OK)
        gw_cmd_free(out);
    return st;
}

void gw_cmd_free(gw_cmd_t *cmd)
{
    gw_buf_free(&cmd->owned_);
    memset(cmd, 0, sizeof(*cmd));
    gw_buf_init(&cmd->owned_, 0);
}

/* ---- encoding: a writer that emits msgpack or compact JSON ---------------------------------- */

/* Encoders describe a message once (map of n keys, key, value, ...) and the writer produces
 * either encoding. JSON separators are tracked per nesting level. */
typedef struct {
    gw_buf_t *out;
    gw_enc_t enc;
    msgpack_packer pk;
    int lvl;
    int after_key;    /* JSON: the next value follows a key (no comma) */
    uint8_t comma[8]; /* JSON: the next element at this level needs a comma */
} gw_proto_w_t;

static void gw_w_init(gw_proto_w_t *w, gw_buf_t *out, gw_enc_t enc)
{
    memset(w, 0, sizeof(*w));
    w->out = out;
    w->enc = enc;
    gw_proto_mp_packer(&w->pk, out);
}

/* JSON: writes the separator a value needs. */
static void gw_w_sep(gw_proto_w_t *w)
{
    if (w->after_key)
        w->after_key = 0;
    else if (w->comma[w->lvl])
        gw_buf_append(w->out, ",", 1);
    w->comma[w->lvl] = 1;
}

static void gw_w_open(gw_proto_w_t *w, size_t n, int map)
{
    if (w->enc == GW_ENC_MSGPACK) {
        if (map)
            msgpack_pack_map(&w->pk, n);
        else
            msgpack_pack_array(&w->pk, n);
        return;
    }
    gw_w_sep(w);
    gw_buf_append(w->out, map ? "{" : "[", 1);
    w->comma[++w->lvl] = 0;
}

static void gw_w_close(gw_proto_w_t *w, int map)
{
    if (w->enc == GW_ENC_JSON) {
        gw_buf_append(w->out, map ? "}" : "]", 1);
        w->lvl--;
    }
}

/* A string, borrowed; invalid UTF-8 is replaced by U+FFFD so no client chokes on it. */
static void gw_w_str(gw_proto_w_t *w, const char *s, size_t n)
{
    if (s == NULL) {
        s = "";
        n = 0;
    }
    if (w->enc == GW_ENC_JSON) {
        gw_w_sep(w);
        gw_proto_json_str(w->out, s, n);
        return;
    }
    if (gw_proto_utf8_valid((const uint8_t *)s, n)) {
        msgpack_pack_str(&w->pk, n);
        msgpack_pack_str_body(&w->pk, s, n);
        return;
    }
    gw_buf_t clean;
    gw_buf_init(&clean, 0);
    gw_proto_utf8_sanitize(&clean, s, n);
    msgpack_pack_str(&w->pk, clean.len);
    msgpack_pack_str_body(&w->pk, gw_buf_data(&clean), clean.len);
    gw_buf_free(&clean);
}

static void gw_w_key(gw_proto_w_t *w, const char *k)
{
    gw_w_str(w, k, strlen(k));
    if (w->enc == GW_ENC_JSON) {
        gw_buf_append(w->out, ":", 1);
        w->after_key = 1;
    }
}

static void gw_w_uint(gw_proto_w_t *w, uint64_t u)
{
    if (w->enc == GW_ENC_MSGPACK) {
        msgpack_pack_uint64(&w->pk, u);
        return;
    }
    gw_w_sep(w);
    gw_buf_appendf(w->out, "%llu", (unsigned long long)u);
}

static void gw_w_int(gw_proto_w_t *w, int64_t i)
{
    if (w->enc == GW_ENC_MSGPACK) {
        msgpack_pack_int64(&w->pk, i);
        return;
    }
    gw_w_sep(w);
    gw_buf_appendf(w->out, "%lld", (long long)i);
}

static void gw_w_bool(gw_proto_w_t *w, int b)
{
    if (w->enc == GW_ENC_MSGPACK) {
        if (b)
            msgpack_pack_true(&w->pk);
        else
            msgpack_pack_false(&w->pk);
        return;
    }
    gw_w_sep(w);
    gw_buf_append_str(w->out, b ? "true" : "false");
}

/* Opaque data, converted when its form differs from the encoding; an invalid value becomes
 * null. JSON-form data is normalised through msgpack, so the JSON text sent is canonical. */
static void gw_w_data(gw_proto_w_t *w, gw_data_t d)
{
    int ok = 0;
    if (w->enc == GW_ENC_MSGPACK) {
        if (d.fmt == GW_DATA_MSGPACK) {
            ok = d.p && gw_proto_mp_valid(d.p, d.n);
            if (ok)
                gw_buf_append(w->out, d.p, d.n);
        } else {
            ok = d.p && gw_data_json_to_msgpack(d.p, d.n, w->out) == 0;
        }
        if (!ok)
            msgpack_pack_nil(&w->pk);
        return;
    }
    gw_w_sep(w);
    if (d.p && d.fmt == GW_DATA_MSGPACK) {
        ok = gw_data_msgpack_to_json(d.p, d.n, w->out) == 0;
    } else if (d.p) {
        gw_buf_t mp;
        gw_buf_init(&mp, 0);
        ok = gw_data_json_to_msgpack(d.p, d.n, &mp) == 0 &&
             gw_data_msgpack_to_json(gw_buf_data(&mp), mp.len, w->out) == 0;
        gw_buf_free(&mp);
    }
    if (!ok)
        gw_buf_append_str(w->out, "null");
}

static void gw_w_slice(gw_proto_w_t *w, gw_slice_t s)
{
    gw_w_str(w, s.p, s.n);
}

static void gw_w_cstr(gw_proto_w_t *w, const char *s)
{
    gw_w_str(w, s, s ? strlen(s) : 0);
}

/* {"id":id,"result": — the caller writes the result map and closes both maps. */
static void gw_w_reply(gw_proto_w_t *w, uint32_t id, const char *what)
{
    gw_w_open(w, 2, 1);
    gw_w_key(w, "id");
    gw_w_uint(w, id);
    gw_w_key(w, what);
}

/* ---- encoding: replies ---------------------------------------------------------------------- */

void gw_proto_enc_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_reply(&w, id, "result");
    gw_w_open(&w, 0, 1);
    gw_w_close(&w, 1);
    gw_w_close(&w, 1);
}

void gw_proto_enc_error(gw_buf_t *out, gw_enc_t enc, uint32_t id, int code, const char *msg)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_reply(&w, id, "error");
    gw_w_open(&w, 2, 1);
    gw_w_key(&w, "code");
    gw_w_int(&w, code);
    gw_w_key(&w, "message");
    gw_w_cstr(&w, msg);
    gw_w_close(&w, 1);
    gw_w_close(&w, 1);
}

void gw_proto_enc_error_app(gw_buf_t *out, gw_enc_t enc, uint32_t id, int code, const char *msg,
                            int64_t app_code)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_reply(&w, id, "error");
    gw_w_open(&w, 3, 1);
    gw_w_key(&w, "code");
    gw_w_int(&w, code);
    gw_w_key(&w, "message");
    gw_w_cstr(&w, msg);
    gw_w_key(&w, "app_code");
    gw_w_int(&w, app_code);
    gw_w_close(&w, 1);
    gw_w_close(&w, 1);
}

void gw_proto_enc_connect_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, gw_slice_t client,
                             gw_slice_t uid, gw_slice_t node, uint32_t ping_s,
                             uint32_t expires_in_s)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_reply(&w, id, "result");
    gw_w_open(&w, expires_in_s ? 5 : 4, 1);
    gw_w_key(&w, "client");
    gw_w_slice(&w, client);
    gw_w_key(&w, "uid");
    gw_w_slice(&w, uid);
    gw_w_key(&w, "node");
    gw_w_slice(&w, node);
    gw_w_key(&w, "ping");
    gw_w_uint(&w, ping_s);
    if (expires_in_s) {
        gw_w_key(&w, "expires_in");
        gw_w_uint(&w, expires_in_s);
    }
    gw_w_close(&w, 1);
    gw_w_close(&w, 1);
}

/* {"offset":..,"data":..[,"from":..]} */
static void gw_w_pub_fields(gw_proto_w_t *w, const gw_pub_t *pub)
{
    gw_w_key(w, "offset");
    gw_w_uint(w, pub->offset);
    gw_w_key(w, "data");
    gw_w_data(w, pub->data);
    if (pub->from.n) {
        gw_w_key(w, "from");
        gw_w_slice(w, pub->from);
    }
}

/* The position result, with "more": true after the publications when more is set. */
static void gw_enc_position(gw_buf_t *out, gw_enc_t enc, uint32_t id, gw_slice_t epoch,
                            uint64_t offset, int has_recovered, int recovered, const gw_pub_t *pubs,
                            size_t npubs, int more)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_reply(&w, id, "result");
    gw_w_open(&w, 2 + (has_recovered ? 1 : 0) + (npubs ? 1 : 0) + (more ? 1 : 0), 1);
    gw_w_key(&w, "epoch");
    gw_w_slice(&w, epoch);
    gw_w_key(&w, "offset");
    gw_w_uint(&w, offset);
    if (has_recovered) {
        gw_w_key(&w, "recovered");
        gw_w_bool(&w, recovered);
    }
    if (npubs) {
        gw_w_key(&w, "publications");
        gw_w_open(&w, npubs, 0);
        for (size_t i = 0; i < npubs; i++) {
            gw_w_open(&w, pubs[i].from.n ? 3 : 2, 1);
            gw_w_pub_fields(&w, &pubs[i]);
            gw_w_close(&w, 1);
        }
        gw_w_close(&w, 0);
    }
    if (more) {
        gw_w_key(&w, "more");
        gw_w_bool(&w, 1);
    }
    gw_w_close(&w, 1);
    gw_w_close(&w, 1);
}

void gw_proto_enc_position_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, gw_slice_t epoch,
                              uint64_t offset, int has_recovered, int recovered,
                              const gw_pub_t *pubs, size_t npubs)
{
    gw_enc_position(out, enc, id, epoch, offset, has_recovered, recovered, pubs, npubs, 0);
}

void gw_proto_enc_history_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, gw_slice_t epoch,
                             uint64_t offset, const gw_pub_t *pubs, size_t npubs, int more)
{
    gw_enc_position(out, enc, id, epoch, offset, 0, 0, pubs, npubs, more);
}

void gw_proto_enc_publish_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, gw_slice_t epoch,
                             uint64_t offset)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_reply(&w, id, "result");
    gw_w_open(&w, 2, 1);
    gw_w_key(&w, "epoch");
    gw_w_slice(&w, epoch);
    gw_w_key(&w, "offset");
    gw_w_uint(&w, offset);
    gw_w_close(&w, 1);
    gw_w_close(&w, 1);
}

/* {"uid":..,"client":..[,"conn_info":..]} */
static void gw_w_info(gw_proto_w_t *w, const gw_client_info_t *ci)
{
    gw_w_open(w, ci->info.n ? 3 : 2, 1);
    gw_w_key(w, "uid");
    gw_w_slice(w, ci->uid);
    gw_w_key(w, "client");
    gw_w_slice(w, ci->client);
    if (ci->info.n) {
        gw_w_key(w, "conn_info");
        gw_w_data(w, ci->info);
    }
    gw_w_close(w, 1);
}

/* A presence reply cut at presence_max_members ends with "partial": true, "total": connections. */
static void gw_w_partial(gw_proto_w_t *w, uint64_t total)
{
    if (!total)
        return;
    gw_w_key(w, "partial");
    gw_w_bool(w, 1);
    gw_w_key(w, "total");
    gw_w_uint(w, total);
}

void gw_proto_enc_presence_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id,
                              const gw_client_info_t *clients, size_t n, uint64_t total)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_reply(&w, id, "result");
    gw_w_open(&w, total ? 3 : 1, 1);
    gw_w_key(&w, "clients");
    gw_w_open(&w, n, 0);
    for (size_t i = 0; i < n; i++)
        gw_w_info(&w, &clients[i]);
    gw_w_close(&w, 0);
    gw_w_partial(&w, total);
    gw_w_close(&w, 1);
    gw_w_close(&w, 1);
}

void gw_proto_enc_presence_users_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id,
                                    const gw_user_info_t *users, size_t n, uint64_t total)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_reply(&w, id, "result");
    gw_w_open(&w, total ? 3 : 1, 1);
    gw_w_key(&w, "users");
    gw_w_open(&w, n, 0);
    for (size_t i = 0; i < n; i++) {
        gw_w_open(&w, users[i].info.n ? 3 : 2, 1);
        gw_w_key(&w, "uid");
        gw_w_slice(&w, users[i].uid);
        gw_w_key(&w, "connections");
        gw_w_uint(&w, users[i].connections);
        if (users[i].info.n) {
            gw_w_key(&w, "conn_info");
            gw_w_data(&w, users[i].info);
        }
        gw_w_close(&w, 1);
    }
    gw_w_close(&w, 0);
    gw_w_partial(&w, total);
    gw_w_close(&w, 1);
    gw_w_close(&w, 1);
}

void gw_proto_enc_presence_stats_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, uint64_t connections,
                                    uint64_t users, int partial)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_reply(&w, id, "result");
    gw_w_open(&w, partial ? 3 : 2, 1);
    gw_w_key(&w, "connections");
    gw_w_uint(&w, connections);
    gw_w_key(&w, "users");
    gw_w_uint(&w, users);
    if (partial) {
        gw_w_key(&w, "partial");
        gw_w_bool(&w, 1);
    }
    gw_w_close(&w, 1);
    gw_w_close(&w, 1);
}

void gw_proto_enc_rpc_ok(gw_buf_t *out, gw_enc_t enc, uint32_t id, gw_data_t data)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_reply(&w, id, "result");
    gw_w_open(&w, 1, 1);
    gw_w_key(&w, "data");
    gw_w_data(&w, data);
    gw_w_close(&w, 1);
    gw_w_close(&w, 1);
}

/* ---- encoding: pushes ----------------------------------------------------------------------- */

/* {"push":kind,"channel":ch — n counts every key of the push. */
static void gw_w_push(gw_proto_w_t *w, size_t n, const char *kind, const gw_slice_t *channel)
{
    gw_w_open(w, n, 1);
    gw_w_key(w, "push");
    gw_w_cstr(w, kind);
    if (channel) {
        gw_w_key(w, "channel");
        gw_w_slice(w, *channel);
    }
}

void gw_proto_enc_pub(gw_buf_t *out, gw_enc_t enc, gw_slice_t channel, const gw_pub_t *pub)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_push(&w, pub->from.n ? 5 : 4, "pub", &channel);
    gw_w_pub_fields(&w, pub);
    gw_w_close(&w, 1);
}

void gw_proto_enc_join(gw_buf_t *out, gw_enc_t enc, gw_slice_t channel,
                       const gw_client_info_t *info, int leave)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_push(&w, 3, leave ? "leave" : "join", &channel);
    gw_w_key(&w, "info");
    gw_w_info(&w, info);
    gw_w_close(&w, 1);
}

void gw_proto_enc_unsub(gw_buf_t *out, gw_enc_t enc, gw_slice_t channel, int code,
                        const char *reason)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_push(&w, 4, "unsub", &channel);
    gw_w_key(&w, "code");
    gw_w_int(&w, code);
    gw_w_key(&w, "reason");
    gw_w_cstr(&w, reason);
    gw_w_close(&w, 1);
}

void gw_proto_enc_disconnect(gw_buf_t *out, gw_enc_t enc, int code, const char *reason,
                             int reconnect, uint32_t delay_ms)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_push(&w, 5, "disconnect", NULL);
    gw_w_key(&w, "code");
    gw_w_int(&w, code);
    gw_w_key(&w, "reason");
    gw_w_cstr(&w, reason);
    gw_w_key(&w, "reconnect");
    gw_w_bool(&w, reconnect);
    gw_w_key(&w, "delay_ms");
    gw_w_uint(&w, delay_ms);
    gw_w_close(&w, 1);
}

void gw_proto_enc_refresh(gw_buf_t *out, gw_enc_t enc, uint32_t expires_in_s)
{
    gw_proto_w_t w;
    gw_w_init(&w, out, enc);
    gw_w_push(&w, 2, "refresh", NULL);
    gw_w_key(&w, "expires_in");
    gw_w_uint(&w, expires_in_s);
    gw_w_close(&w, 1);
}
