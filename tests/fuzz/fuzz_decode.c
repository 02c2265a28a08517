/* fuzz_decode.c — libFuzzer target for the v1 codec and the Redis-side parsers: decodes frames in
 * both encodings, re-encodes what decoded, checks the msgpack <-> JSON conversions are stable, and
 * parses relay frames, control messages and rpc answers (schema.c) as Redis delivers them (trap on
 * violation). */

/* Input: first byte % 11 picks the mode, the rest is the payload.
 *   0: a msgpack frame   1: a JSON frame   2: msgpack data   3: JSON data
 *   4: a relay frame (pub/sub payload)   5: a node control message
 *   6, 7: a backend's rpc answer on a node's reply channel (JSON or msgpack, found by content)
 *   8: a presence set member (its info reaches clients in join pushes and presence replies)
 *   9: a JWT (jwt.c): verified as given, and signed with the fuzz secret as <header>.<claims>
 *      so that the claim checks are reached; base64url decoding must be canonical
 *   10: a server API request body (api_body.c): the payload's first byte picks the request
 *      (% 5: publish, broadcast, disconnect, unsubscribe, online), the second the push limit
 *      (x 64 bytes; 0 = none), the rest is the body
 * Seeds in tests/fuzz/corpus start with 0 or 1 (one file per vector), 2/3 (data values), 4/5,
 * 6/7 (rpc answers: 6 JSON, 7 msgpack), 8, 9 (jwt_*) or 10 (api_*). */

#include "cardgw/api_body.h"
#include "cardgw/jwt.h"
#include "../unit/b64url.h"
#include "cardgw/proto.h"
#include "cardgw/schema.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static const uint8_t *bytes(const gw_buf_t *b)
{
    return b->base ? gw_buf_data(b) : (const uint8_t *)"";
}

static int same(const gw_buf_t *a, const gw_buf_t *b)
{
    return a->len == b->len && memcmp(bytes(a), bytes(b), a->len) == 0;
}

/* The writer must always produce one valid JSON document. */
static void assert_json_text(const gw_buf_t *b)
{
    json_error_t e;
    json_t *v = json_loadb((const char *)bytes(b), b->len,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &e);
    /* jansson cannot hold a NUL in an object key (a msgpack key may have one); all else parses */
    ASSERT(v != NULL || strstr(e.text, "NUL byte in object key") != NULL);
    json_decref(v);
}

/* A valid msgpack data value: its JSON form must exist, and when that JSON form converts back,
 * converting once more must give the same JSON text (the conversion is stable after one step). */
static void check_msgpack_data(const uint8_t *p, size_t n, int must_be_valid)
{
    gw_buf_t j, m, j2;
    gw_buf_init(&j, 0);
    gw_buf_init(&m, 0);
    gw_buf_init(&j2, 0);
    int rc = gw_data_msgpack_to_json(p, n, &j);
    ASSERT(rc == 0 || !must_be_valid);
    ASSERT(rc == 0 || j.len == 0); /* nothing appended on failure */
    if (rc == 0) {
        assert_json_text(&j);
        if (gw_data_json_to_msgpack(bytes(&j), j.len, &m) == 0) {
            ASSERT(gw_data_msgpack_to_json(bytes(&m), m.len, &j2) == 0);
            ASSERT(same(&j, &j2));
        }
    }
    gw_buf_free(&j);
    gw_buf_free(&m);
    gw_buf_free(&j2);
}

/* JSON data that converts: msgpack -> JSON -> msgpack gives the same msgpack bytes. */
static void check_json_data(const uint8_t *p, size_t n)
{
    gw_buf_t m, j, m2;
    gw_buf_init(&m, 0);
    gw_buf_init(&j, 0);
    gw_buf_init(&m2, 0);
    if (gw_data_json_to_msgpack(p, n, &m) == 0) {
        ASSERT(gw_data_msgpack_to_json(bytes(&m), m.len, &j) == 0);
        ASSERT(gw_data_json_to_msgpack(bytes(&j), j.len, &m2) == 0);
        ASSERT(same(&m, &m2));
    } else {
        ASSERT(m.len == 0);
    }
    gw_buf_free(&m);
    gw_buf_free(&j);
    gw_buf_free(&m2);
}

static void check_slice(gw_slice_t s)
{
    ASSERT(s.p != NULL && s.p[s.n] == '\0');
}

static void check_command(const gw_cmd_t *c)
{
    ASSERT(c->id >= 1);
    ASSERT(strcmp(gw_cmd_name(c->kind), "?") != 0 && c->kind != GW_CMD_NONE);
    check_slice(c->channel);
    check_slice(c->token);
    check_slice(c->client);
    check_slice(c->method);
    check_slice(c->since_epoch);
    ASSERT(c->data.fmt == GW_DATA_MSGPACK);
    switch (c->kind) {
    case GW_CMD_SUBSCRIBE:
    case GW_CMD_UNSUBSCRIBE:
    case GW_CMD_PUBLISH:
    case GW_CMD_PRESENCE:
    case GW_CMD_PRESENCE_USERS:
    case GW_CMD_PRESENCE_STATS:
    case GW_CMD_HISTORY:
        ASSERT(gw_proto_channel_valid(c->channel.p, c->channel.n, NULL));
        break;
    case GW_CMD_CONNECT:
    case GW_CMD_REFRESH:
        ASSERT(c->token.n >= 1 && c->token.n <= GW_PROTO_MAX_TOKEN);
        break;
    default:
        break;
    }
    ASSERT(c->since_epoch.n <= GW_PROTO_MAX_EPOCH);
    ASSERT((c->data.p != NULL) == (c->kind == GW_CMD_PUBLISH || c->kind == GW_CMD_RPC));
}

static void reencode(const gw_cmd_t *c)
{
    gw_pub_t pub = {c->since_offset, c->data, c->token};
    gw_slice_t ch = c->channel;
    for (int enc = 0; enc < 2; enc++) {
        gw_buf_t b;
        gw_buf_init(&b, 16);
        gw_proto_enc_pub(&b, (gw_enc_t)enc, ch, &pub);
        ASSERT(b.len > 0);
        if (enc == GW_ENC_JSON)
            assert_json_text(&b);
        else /* the push nests data one level deeper than the frame did: still within limits */
            check_msgpack_data(bytes(&b), b.len, 1);
        gw_buf_reset(&b);
        gw_proto_enc_position_ok(&b, (gw_enc_t)enc, c->id, c->since_epoch, c->limit, 1, 1, &pub, 1);
        gw_proto_enc_error(&b, (gw_enc_t)enc, c->id, GW_ERR_BAD_REQUEST, c->method.p);
        gw_proto_enc_rpc_ok(&b, (gw_enc_t)enc, c->id, c->data);
        gw_buf_free(&b);
    }
}

static int inside(const void *p, size_t len, const uint8_t *buf, size_t n)
{
    if (!p) /* an absent optional field */
        return len == 0;
    return (const uint8_t *)p >= buf && (const uint8_t *)p + len <= buf + n;
}

/* A relay frame that parses points only into the payload, with a known kind. */
static void check_relay(const uint8_t *p, size_t n)
{
    gw_relay_frame_t w;
    if (gw_schema_parse_relay((const char *)p, n, &w) != 0)
        return;
    ASSERT(strchr("mjJL", w.kind) != NULL && w.kind != 0);
    ASSERT(inside(w.epoch.p, w.epoch.n, p, n) && w.epoch.n <= GW_PROTO_MAX_EPOCH);
    ASSERT(inside(w.pub.from.p, w.pub.from.n, p, n) && !memchr(w.pub.from.p, '\n', w.pub.from.n));
    ASSERT(inside(w.pub.data.p, w.pub.data.n, p, n));
    if (w.kind == 'J' || w.kind == 'L') {
        ASSERT(inside(w.info.p, w.info.n, p, n) && !memchr(w.pub.data.p, '\n', w.pub.data.n));
        gw_client_info_t who = {w.pub.from,
                                {(const char *)w.pub.data.p, w.pub.data.n},
                                {GW_DATA_JSON, (const uint8_t *)w.info.p, w.info.n}};
        for (int enc = 0; enc < 2; enc++) { /* info is untrusted JSON text: never a crash */
            gw_buf_t b;
            gw_buf_init(&b, 0);
            gw_proto_enc_join(&b, (gw_enc_t)enc, who.uid, &who, w.kind == 'L');
            ASSERT(b.len > 0);
            gw_buf_free(&b);
        }
    } else {
        ASSERT(w.info.n == 0);
    }
}

/* A presence set member that parses splits into slices inside it; replies encode in both. */
static void check_member(const uint8_t *p, size_t n)
{
    gw_client_info_t ci;
    if (gw_schema_parse_presence_member((const char *)p, n, &ci) != 0)
        return;
    ASSERT(inside(ci.uid.p, ci.uid.n, p, n) && !memchr(ci.uid.p, ' ', ci.uid.n));
    ASSERT(inside(ci.client.p, ci.client.n, p, n) && !memchr(ci.client.p, ' ', ci.client.n));
    ASSERT(inside((const char *)ci.info.p, ci.info.n, p, n));
    gw_user_info_t u = {ci.uid, 2, ci.info};
    for (int enc = 0; enc < 2; enc++) {
        gw_buf_t b;
        gw_buf_init(&b, 0);
        gw_proto_enc_presence_ok(&b, (gw_enc_t)enc, 1, &ci, 1, 0);
        gw_proto_enc_presence_users_ok(&b, (gw_enc_t)enc, 1, &u, 1, 0);
        ASSERT(b.len > 0);
        gw_buf_free(&b);
    }
}

/* A control message that parses names a non-empty uid without a newline, inside the message. */
static void check_control(const uint8_t *p, size_t n)
{
    gw_control_t m;
    if (gw_schema_parse_control((const char *)p, n, &m) != 0)
        return;
    ASSERT(n < GW_SCHEMA_CONTROL_MAX && m.uid.n > 0 && inside(m.uid.p, m.uid.n, p, n));
    ASSERT(!memchr(m.uid.p, '\n', m.uid.n) && !memchr(m.uid.p, 0, m.uid.n));
    ASSERT(!m.unsubscribe || (m.channel.n > 0 && inside(m.channel.p, m.channel.n, p, n)));
}

/* An rpc answer that parses: req is a short string inside the message or its msgpack form, the
 * result one valid value that every encoder turns into a valid reply, the message a C string of
 * at most GW_SCHEMA_ANSWER_MESSAGE_MAX bytes. */
static void check_rpc_answer(const uint8_t *p, size_t n)
{
    gw_buf_t scratch, b;
    gw_rpc_answer_t a;
    gw_buf_init(&scratch, 0);
    if (gw_schema_parse_rpc_answer((const char *)p, n, &scratch, &a) == 0) {
        ASSERT(a.req.n <= GW_SCHEMA_REQ_MAX);
        ASSERT(inside(a.req.p, a.req.n, p, n) ||
               inside(a.req.p, a.req.n, bytes(&scratch), scratch.len));
        ASSERT(strlen(a.message) <= GW_SCHEMA_ANSWER_MESSAGE_MAX);
        for (int enc = 0; enc < 2; enc++) {
            gw_buf_init(&b, 16);
            if (a.is_error) {
                ASSERT(a.result.p == NULL);
                gw_proto_enc_error_app(&b, (gw_enc_t)enc, 1, GW_ERR_BACKEND, a.message, a.code);
            } else {
                ASSERT(a.result.fmt == GW_DATA_MSGPACK && a.result.n > 0);
                ASSERT(inside(a.result.p, a.result.n, p, n) ||
                       inside(a.result.p, a.result.n, bytes(&scratch), scratch.len));
                gw_proto_enc_rpc_ok(&b, (gw_enc_t)enc, 1, a.result);
            }
            if (enc == GW_ENC_JSON)
                assert_json_text(&b);
            else
                check_msgpack_data(bytes(&b), b.len, 1);
            gw_buf_free(&b);
        }
        if (!a.is_error)
            check_msgpack_data(a.result.p, a.result.n, 1);
    }
    gw_buf_free(&scratch);
}

#define FUZZ_NOW_MS 1700000000000ull

/* One verification: a success has a sub of 1..127 bytes without NUL, a claims object and an
 * expiry after now; a failure has a reason and leaves nothing to free. */
static void check_jwt_once(const char *tok, size_t n, const gw_jwt_opts_t *o)
{
    gw_jwt_t t;
    const char *why = NULL;
    int rc = gw_jwt_verify(tok, n, o, FUZZ_NOW_MS, &t, &why);
    ASSERT(why != NULL);
    if (rc == 0) {
        ASSERT(json_is_object(t.claims) && t.sub != NULL);
        size_t sl = strlen(t.sub);
        ASSERT(sl >= 1 && sl <= 127);
        ASSERT(sl == json_string_length(json_object_get(t.claims, "sub")));
        ASSERT(t.expires_at_ms == 0 || t.expires_at_ms > FUZZ_NOW_MS);
        ASSERT(t.expires_at_ms <= (GW_JWT_TIME_MAX + o->leeway_s) * 1000);
        gw_jwt_free(&t);
    } else {
        ASSERT(rc == -EINVAL || rc == -EKEYEXPIRED);
        ASSERT(t.claims == NULL && t.sub == NULL);
    }
}

static void check_jwt(const uint8_t *p, size_t n)
{
    static const gw_jwt_opts_t plain = {"fuzz-secret-fuzz-secret-fuzz-sec", NULL, NULL, 30};
    static const gw_jwt_opts_t strict = {"fuzz-secret-fuzz-secret-fuzz-sec", "cardgw", "iss", 0};
    const char *s = (const char *)p;
    /* decoding is canonical: what decodes re-encodes to the same text */
    uint8_t *dec = malloc(n / 4 * 3 + 3);
    long dl = gw_proto_base64_decode(s, n, dec, n / 4 * 3 + 3, 1);
    if (dl >= 0) {
        char *enc = malloc(n + 4);
        ASSERT(b64url_encode(dec, (size_t)dl, enc) == n && memcmp(enc, s, n) == 0);
        free(enc);
    }
    free(dec);
    uint64_t v;
    if (gw_jwt_parse_unix_s(s, n, &v) == 0)
        ASSERT(v <= GW_JWT_TIME_MAX && n >= 1 && n <= 12);
    check_jwt_once(s, n, &plain);
    /* the input as <header>.<claims> with a good signature appended */
    uint8_t mac[32];
    unsigned ml = 0;
    char *tok = malloc(n + 64);
    memcpy(tok, p, n);
    HMAC(EVP_sha256(), plain.secret, (int)strlen(plain.secret), p, n, mac, &ml);
    tok[n] = '.';
    size_t tn = n + 1 + b64url_encode(mac, sizeof(mac), tok + n + 1);
    check_jwt_once(tok, tn, &plain);
    check_jwt_once(tok, tn, &strict);
    free(tok);
}

/* The uid grammar of gw_auth_uid_valid (auth.c needs a node: not linked here). */
static int uid_ok(const char *uid, size_t n)
{
    if (n == 0 || n > 127)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((uid[i] >= 'a' && uid[i] <= 'z') || (uid[i] >= 'A' && uid[i] <= 'Z') ||
              (uid[i] >= '0' && uid[i] <= '9') || (uid[i] && strchr("_.@=+,;-", uid[i]))))
            return 0;
    return 1;
}

/* A body that parses has every field its request needs, checked; data converts, and the push of
 * each channel is no larger than push_bytes, which is within the limit. */
static void check_api_body(const uint8_t *p, size_t n)
{
    if (n < 2)
        return;
    gw_api_body_kind_t kind = (gw_api_body_kind_t)(p[0] % 5);
    gw_api_body_limits_t lim = {(size_t)p[1] * 64, uid_ok};
    gw_api_body_t b;
    int rc = gw_api_body_parse(kind, p + 2, n - 2, &lim, &b);
    if (rc != 0) {
        ASSERT(b.error != NULL && (b.status == 400 || b.status == 413));
        ASSERT(b.status != 413 || (lim.max_push_bytes && b.push_bytes > lim.max_push_bytes));
        gw_api_body_free(&b);
        return;
    }
    ASSERT(b.status == 0 && b.error == NULL && json_is_object(b.root));
    switch (kind) {
    case GW_API_BODY_PUBLISH:
    case GW_API_BODY_BROADCAST: {
        ASSERT(b.nchannels >= 1 && b.nchannels <= GW_API_BODY_MAX_CHANNELS);
        ASSERT(kind == GW_API_BODY_BROADCAST ||
               (b.nchannels == 1 && b.channels[0] &&
                gw_proto_channel_valid(b.channels[0], strlen(b.channels[0]), NULL)));
        ASSERT(b.data && strlen(b.data) == b.data_len);
        ASSERT(!lim.max_push_bytes || b.push_bytes <= lim.max_push_bytes);
        gw_data_t d = {GW_DATA_JSON, (const uint8_t *)b.data, b.data_len};
        for (size_t i = 0; i < b.nchannels; i++) {
            const char *ch = b.channels[i];
            if (!ch || !gw_proto_channel_valid(ch, strlen(ch), NULL))
                continue;
            gw_pub_t pub = {UINT64_MAX, d, {NULL, 0}};
            for (int enc = 0; enc < 2; enc++) {
                gw_buf_t f;
                gw_buf_init(&f, 0);
                gw_proto_enc_pub(&f, (gw_enc_t)enc, (gw_slice_t){ch, strlen(ch)}, &pub);
                ASSERT(f.len > 0 && f.len <= b.push_bytes);
                if (enc == GW_ENC_JSON)
                    assert_json_text(&f);
                else
                    check_msgpack_data(bytes(&f), f.len, 1);
                gw_buf_free(&f);
            }
        }
        check_json_data((const uint8_t *)b.data, b.data_len);
        break;
    }
    case GW_API_BODY_DISCONNECT:
    case GW_API_BODY_UNSUBSCRIBE:
        ASSERT(b.uid && uid_ok(b.uid, strlen(b.uid)));
        ASSERT((kind == GW_API_BODY_UNSUBSCRIBE) == (b.channel != NULL));
        if (b.channel) {
            size_t ns = 0;
            ASSERT(gw_proto_channel_valid(b.channel, strlen(b.channel), &ns) && ns == b.ns_len);
        }
        break;
    case GW_API_BODY_ONLINE:
        ASSERT(b.nuids >= 1 && b.nuids <= GW_API_BODY_MAX_UIDS);
        for (size_t i = 0; i < b.nuids; i++)
            ASSERT(b.uids[i] && uid_ok(b.uids[i], strlen(b.uids[i])));
        break;
    }
    gw_api_body_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 11;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    /* copy to an exact-size heap block so ASan catches any read past the frame */
    uint8_t *frame = malloc(n ? n : 1);
    memcpy(frame, p, n);
    if (mode < 2) {
        gw_cmd_t c;
        gw_dec_err_t e;
        gw_dec_status_t st = gw_proto_decode(mode ? GW_ENC_JSON : GW_ENC_MSGPACK, frame, n, &c, &e);
        if (st == GW_DEC_OK) {
            check_command(&c);
            if (c.data.p)
                check_msgpack_data(c.data.p, c.data.n, 1);
            reencode(&c);
            gw_cmd_free(&c);
        } else {
            ASSERT(e.msg != NULL && e.status == st);
            ASSERT(st == GW_DEC_MALFORMED || e.id >= 1);
            ASSERT(st != GW_DEC_UNKNOWN || e.code == GW_ERR_UNKNOWN_COMMAND);
            ASSERT(st != GW_DEC_INVALID || e.code == GW_ERR_BAD_REQUEST ||
                   e.code == GW_ERR_BAD_CHANNEL);
            ASSERT(c.owned_.base == NULL);
        }
    } else if (mode == 2) {
        check_msgpack_data(frame, n, 0);
    } else if (mode == 3) {
        check_json_data(frame, n);
    } else if (mode == 4) {
        check_relay(frame, n);
    } else if (mode == 8) {
        check_member(frame, n);
    } else if (mode == 9) {
        check_jwt(frame, n);
    } else if (mode == 10) {
        check_api_body(frame, n);
    } else if (mode == 5) {
        check_control(frame, n);
    } else {
        check_rpc_answer(frame, n);
    }
    free(frame);
    return 0;
}
