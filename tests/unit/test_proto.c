/* test_proto.c — unit tests of the v1 wire codec: every shared vector (tests/vectors/vectors.json,
 * or $CARDGW_VECTORS) in both encodings, data conversion round trips and every malformed class. */
#include "cardgw/proto.h"
#include "testlib.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

static json_t *vectors;

/* ---- helpers -------------------------------------------------------------------------------- */

/* Decodes a hex string into a malloc'd buffer (caller frees); *n gets its length. */
static uint8_t *unhex(const char *h, size_t *n)
{
    size_t len = strlen(h) / 2;
    uint8_t *p = gw_malloc(len);
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        p[i] = (uint8_t)v;
    }
    *n = len;
    return p;
}

/* The bytes of a buffer; never NULL (gw_buf_data of a buffer never grown is NULL + head). */
static const uint8_t *bp(const gw_buf_t *b)
{
    return b->base ? gw_buf_data(b) : (const uint8_t *)"";
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long long jint(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static int slice_is(gw_slice_t s, const char *lit)
{
    return s.p && s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0 && s.p[s.n] == '\0';
}

/* The frame of a vector in one encoding (malloc'd); NULL when the vector has none. */
static uint8_t *frame_of(const json_t *v, gw_enc_t enc, size_t *n)
{
    if (enc == GW_ENC_MSGPACK) {
        const char *h = json_string_value(json_object_get(v, "msgpack"));
        return h ? unhex(h, n) : NULL;
    }
    const char *t = json_string_value(json_object_get(v, "json"));
    if (t) {
        *n = json_string_length(json_object_get(v, "json"));
        return (uint8_t *)gw_strndup(t, *n);
    }
    const char *h = json_string_value(json_object_get(v, "json_hex"));
    return h ? unhex(h, n) : NULL;
}

static const char *enc_name(gw_enc_t enc)
{
    return enc == GW_ENC_JSON ? "json" : "msgpack";
}

/* Nesting bombs: `depth` arrays around 1 inside a publish envelope. */
static size_t bomb(gw_enc_t enc, int depth, uint8_t *buf)
{
    size_t k = 0;
    if (enc == GW_ENC_MSGPACK) {
        static const uint8_t head[] = "\x84\xa2id\x01\xa3"
                                      "cmd\xa7publish\xa7"
                                      "channel\xa3"
                                      "a:b\xa4"
                                      "data";
        memcpy(buf, head, sizeof(head) - 1);
        k = sizeof(head) - 1;
        for (int i = 0; i < depth; i++)
            buf[k++] = 0x91;
        buf[k++] = 0x01;
        return k;
    }
    k = (size_t)sprintf((char *)buf, "{\"id\":1,\"cmd\":\"publish\",\"channel\":\"a:b\",\"data\":");
    for (int i = 0; i < depth; i++)
        buf[k++] = '[';
    buf[k++] = '1';
    for (int i = 0; i < depth; i++)
        buf[k++] = ']';
    buf[k++] = '}';
    return k;
}

/* ---- commands ------------------------------------------------------------------------------- */

/* Field checks of check_command: each returns 1 when the field is as expected, else prints the
 * vector, the field and both values and returns 0. */
static int field_str(const char *where, const char *field, gw_slice_t got, const char *want)
{
    if (slice_is(got, want))
        return 1;
    if (!got.p)
        fprintf(stderr, "    %s: %s is NULL, expected \"%s\"\n", where, field, want);
    else
        fprintf(stderr, "    %s: %s is \"%.*s\" (%zu bytes%s), expected \"%s\"\n", where, field,
                (int)got.n, got.p, got.n, got.p[got.n] ? ", not NUL-terminated" : "", want);
    return 0;
}

static int field_int(const char *where, const char *field, unsigned long long got,
                     unsigned long long want)
{
    if (got == want)
        return 1;
    fprintf(stderr, "    %s: %s is %llu, expected %llu\n", where, field, got, want);
    return 0;
}

static void print_hex(const char *label, const uint8_t *p, size_t n)
{
    fprintf(stderr, "      %s (%zu bytes):", label, n);
    for (size_t i = 0; p && i < n && i < 64; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, "%s\n", n > 64 ? " ..." : "");
}

static int field_data(const char *where, const gw_data_t *got, const char *want_hex)
{
    size_t dn = 0;
    uint8_t *d = want_hex ? unhex(want_hex, &dn) : NULL;
    int ok = want_hex ? got->p != NULL && got->n == dn && memcmp(got->p, d, dn) == 0
                      : got->p == NULL && got->n == 0;
    if (!ok) {
        fprintf(stderr, "    %s: data differs\n", where);
        print_hex("is      ", got->p, got->n);
        if (want_hex)
            print_hex("expected", d, dn);
        else
            fprintf(stderr, "      expected none\n");
    }
    free(d);
    return ok;
}

static void check_command(const json_t *v, gw_enc_t enc)
{
    const json_t *x = json_object_get(v, "expect");
    char where[256];
    snprintf(where, sizeof(where), "%s/%s", jstr(v, "name"), enc_name(enc));
    size_t n;
    uint8_t *f = frame_of(v, enc, &n);
    gw_cmd_t c;
    gw_dec_err_t e;
    int st = gw_proto_decode(enc, f, n, &c, &e);
    CHECK_EQ_INT(st, GW_DEC_OK);
    if (st != GW_DEC_OK) {
        fprintf(stderr, "    %s: %s\n", where, e.msg);
        free(f);
        return;
    }
    int ok = 1;
    const char *cmd = gw_cmd_name(c.kind);
    if (strcmp(cmd, jstr(x, "cmd")) != 0) {
        fprintf(stderr, "    %s: cmd is %s, expected %s\n", where, cmd, jstr(x, "cmd"));
        ok = 0;
    }
    ok &= field_int(where, "id", c.id, (uint32_t)jint(x, "id"));
    ok &= field_str(where, "channel", c.channel, jstr(x, "channel"));
    ok &= field_str(where, "token", c.token, jstr(x, "token"));
    ok &= field_str(where, "client", c.client, jstr(x, "client"));
    ok &= field_str(where, "method", c.method, jstr(x, "method"));
    ok &= field_int(where, "limit", c.limit, (uint32_t)jint(x, "limit"));
    const json_t *since = json_object_get(x, "since");
    ok &= field_int(where, "has_since", c.has_since != 0, since != NULL);
    ok &= field_str(where, "since.epoch", c.since_epoch, jstr(since, "epoch"));
    ok &= field_int(where, "since.offset", c.since_offset, (uint64_t)jint(since, "offset"));
    ok &= field_int(where, "data.fmt", c.data.fmt, GW_DATA_MSGPACK);
    ok &= field_data(where, &c.data, json_string_value(json_object_get(x, "data")));
    CHECK(ok);
    gw_cmd_free(&c);
    free(f);
}

TEST(test_command_vectors)
{
    size_t i, count = 0;
    json_t *v;
    json_array_foreach(vectors, i, v)
    {
        if (strcmp(jstr(v, "kind"), "command") != 0)
            continue;
        check_command(v, GW_ENC_MSGPACK);
        check_command(v, GW_ENC_JSON);
        count++;
    }
    CHECK(count >= 9);
}

TEST(test_invalid_vectors)
{
    size_t i, count = 0;
    json_t *v;
    json_array_foreach(vectors, i, v)
    {
        if (strcmp(jstr(v, "kind"), "invalid") != 0)
            continue;
        gw_enc_t enc = strcmp(jstr(v, "encoding"), "json") == 0 ? GW_ENC_JSON : GW_ENC_MSGPACK;
        const char *st_name = jstr(v, "status");
        int want = strcmp(st_name, "malformed") == 0 ? GW_DEC_MALFORMED
                   : strcmp(st_name, "invalid") == 0 ? GW_DEC_INVALID
                                                     : GW_DEC_UNKNOWN;
        size_t n;
        uint8_t *f = frame_of(v, enc, &n);
        gw_cmd_t c;
        gw_dec_err_t e;
        int st = gw_proto_decode(enc, f ? f : (const uint8_t *)"", n, &c, &e);
        int ok = st == want && e.msg != NULL && e.status == st;
        if (want != GW_DEC_MALFORMED)
            ok &= e.code == jint(v, "code") && e.id == (uint32_t)jint(v, "id");
        if (!ok)
            fprintf(stderr, "    %s: status %d code %d id %u (%s)\n", jstr(v, "name"), st, e.code,
                    e.id, e.msg ? e.msg : "-");
        CHECK(ok);
        CHECK(c.owned_.base == NULL); /* nothing left to free */
        if (st == GW_DEC_OK)
            gw_cmd_free(&c);
        free(f);
        count++;
    }
    CHECK(count >= 50);
}

/* ---- replies and pushes --------------------------------------------------------------------- */

/* Data argument of an encoder vector: msgpack bytes, or (as_json) the JSON text they convert to.
 * The bytes live in *keep until the caller frees it. */
static gw_data_t data_arg(const json_t *hex, int as_json, gw_buf_t *keep)
{
    size_t n;
    uint8_t *p = unhex(json_string_value(hex), &n);
    gw_buf_reset(keep);
    if (as_json) {
        int rc = gw_data_msgpack_to_json(p, n, keep);
        CHECK_EQ_INT(rc, 0);
    } else {
        gw_buf_append(keep, p, n);
    }
    free(p);
    return (gw_data_t){as_json ? GW_DATA_JSON : GW_DATA_MSGPACK, gw_buf_data(keep), keep->len};
}

/* The optional conn_info of a client or user (msgpack hex), as data_arg gives it; n == 0 when
 * absent. */
static gw_data_t info_arg(const json_t *o, int as_json, gw_buf_t *keep)
{
    const json_t *h = json_object_get(o, "conn_info");
    return h ? data_arg(h, as_json, keep) : (gw_data_t){GW_DATA_JSON, NULL, 0};
}

static gw_slice_t sl(const json_t *o, const char *k)
{
    const char *s = jstr(o, k);
    return (gw_slice_t){s, strlen(s)};
}

/* Calls the encoder a vector names. 0, or -1 for an unknown encoder. */
static int encode(const json_t *v, gw_enc_t enc, int data_as_json, gw_buf_t *out)
{
    const char *e = jstr(v, "encoder");
    const json_t *a = json_object_get(v, "args");
    uint32_t id = (uint32_t)jint(a, "id");
    gw_buf_t keep[8];
    for (size_t i = 0; i < GW_ARRAY_SIZE(keep); i++)
        gw_buf_init(&keep[i], 0);
    int rc = 0;
    if (strcmp(e, "ok") == 0) {
        gw_proto_enc_ok(out, enc, id);
    } else if (strcmp(e, "error") == 0) {
        gw_proto_enc_error(out, enc, id, (int)jint(a, "code"), jstr(a, "message"));
    } else if (strcmp(e, "error_app") == 0) {
        gw_proto_enc_error_app(out, enc, id, (int)jint(a, "code"), jstr(a, "message"),
                               jint(a, "app_code"));
    } else if (strcmp(e, "connect_ok") == 0) {
        gw_proto_enc_connect_ok(out, enc, id, sl(a, "client"), sl(a, "uid"), sl(a, "node"),
                                (uint32_t)jint(a, "ping"), (uint32_t)jint(a, "expires_in"));
    } else if (strcmp(e, "position_ok") == 0) {
        const json_t *ps = json_object_get(a, "publications"), *p;
        gw_pub_t pubs[8];
        size_t np = 0, i;
        json_array_foreach(ps, i, p)
        {
            if (np == GW_ARRAY_SIZE(pubs))
                break;
            pubs[np].offset = (uint64_t)jint(p, "offset");
            pubs[np].data = data_arg(json_object_get(p, "data"), data_as_json, &keep[np]);
            pubs[np].from = sl(p, "from");
            np++;
        }
        const json_t *rec = json_object_get(a, "recovered");
        if (json_is_true(json_object_get(a, "more"))) /* a history reply cut by its byte bound */
            gw_proto_enc_history_ok(out, enc, id, sl(a, "epoch"), (uint64_t)jint(a, "offset"), pubs,
                                    np, 1);
        else
            gw_proto_enc_position_ok(out, enc, id, sl(a, "epoch"), (uint64_t)jint(a, "offset"),
                                     !json_is_null(rec), json_is_true(rec), pubs, np);
    } else if (strcmp(e, "publish_ok") == 0) {
        gw_proto_enc_publish_ok(out, enc, id, sl(a, "epoch"), (uint64_t)jint(a, "offset"));
    } else if (strcmp(e, "presence_ok") == 0) {
        const json_t *cs = json_object_get(a, "clients"), *c;
        gw_client_info_t ci[8];
        size_t n = 0, i;
        json_array_foreach(cs, i, c)
        {
            if (n == GW_ARRAY_SIZE(ci))
                break;
            ci[n].uid = sl(c, "uid");
            ci[n].client = sl(c, "client");
            ci[n].info = info_arg(c, data_as_json, &keep[n]);
            n++;
        }
        gw_proto_enc_presence_ok(out, enc, id, ci, n, (uint64_t)jint(a, "total"));
    } else if (strcmp(e, "presence_users_ok") == 0) {
        const json_t *us = json_object_get(a, "users"), *u;
        gw_user_info_t ui[8];
        size_t n = 0, i;
        json_array_foreach(us, i, u)
        {
            if (n == GW_ARRAY_SIZE(ui))
                break;
            ui[n].uid = sl(u, "uid");
            ui[n].connections = (uint32_t)jint(u, "connections");
            ui[n].info = info_arg(u, data_as_json, &keep[n]);
            n++;
        }
        gw_proto_enc_presence_users_ok(out, enc, id, ui, n, (uint64_t)jint(a, "total"));
    } else if (strcmp(e, "presence_stats_ok") == 0) {
        gw_proto_enc_presence_stats_ok(out, enc, id, (uint64_t)jint(a, "connections"),
                                       (uint64_t)jint(a, "users"),
                                       json_is_true(json_object_get(a, "partial")));
    } else if (strcmp(e, "rpc_ok") == 0) {
        gw_proto_enc_rpc_ok(out, enc, id, data_arg(json_object_get(a, "data"), data_as_json, keep));
    } else if (strcmp(e, "pub") == 0) {
        gw_pub_t pub = {(uint64_t)jint(a, "offset"),
                        data_arg(json_object_get(a, "data"), data_as_json, keep), sl(a, "from")};
        gw_proto_enc_pub(out, enc, sl(a, "channel"), &pub);
    } else if (strcmp(e, "join") == 0) {
        gw_client_info_t ci = {sl(a, "uid"), sl(a, "client"), info_arg(a, data_as_json, keep)};
        gw_proto_enc_join(out, enc, sl(a, "channel"), &ci,
                          json_is_true(json_object_get(a, "leave")));
    } else if (strcmp(e, "unsub") == 0) {
        gw_proto_enc_unsub(out, enc, sl(a, "channel"), (int)jint(a, "code"), jstr(a, "reason"));
    } else if (strcmp(e, "disconnect") == 0) {
        gw_proto_enc_disconnect(out, enc, (int)jint(a, "code"), jstr(a, "reason"),
                                json_is_true(json_object_get(a, "reconnect")),
                                (uint32_t)jint(a, "delay_ms"));
    } else if (strcmp(e, "refresh") == 0) {
        gw_proto_enc_refresh(out, enc, (uint32_t)jint(a, "expires_in"));
    } else {
        rc = -1;
    }
    for (size_t i = 0; i < GW_ARRAY_SIZE(keep); i++)
        gw_buf_free(&keep[i]);
    return rc;
}

static void check_encoded(const json_t *v, gw_enc_t enc, int data_as_json)
{
    gw_buf_t out;
    gw_buf_init(&out, 16); /* headroom must not matter */
    CHECK_EQ_INT(encode(v, enc, data_as_json, &out), 0);
    size_t n;
    uint8_t *want = frame_of(v, enc, &n);
    if (out.len != n || memcmp(bp(&out), want, n) != 0) {
        fprintf(stderr, "    %s/%s%s: got %.*s\n", jstr(v, "name"), enc_name(enc),
                data_as_json ? " (json data)" : "", enc == GW_ENC_JSON ? (int)out.len : 0,
                (const char *)bp(&out));
        CHECK(0);
    }
    free(want);
    gw_buf_free(&out);
}

TEST(test_reply_and_push_vectors)
{
    size_t i, count = 0;
    json_t *v;
    json_array_foreach(vectors, i, v)
    {
        const char *k = jstr(v, "kind");
        if (strcmp(k, "reply") != 0 && strcmp(k, "push") != 0)
            continue;
        int rt = !json_is_false(json_object_get(v, "roundtrip"));
        for (int enc = 0; enc < 2; enc++) {
            check_encoded(v, (gw_enc_t)enc, 0);
            if (rt) /* the same data handed over in JSON form gives the same bytes */
                check_encoded(v, (gw_enc_t)enc, 1);
        }
        count++;
    }
    CHECK(count >= 12);
}

/* ---- data conversion ------------------------------------------------------------------------ */

/* msgpack -> JSON -> msgpack must give back the same bytes. */
static int roundtrip(const uint8_t *mp, size_t n)
{
    gw_buf_t j, m;
    gw_buf_init(&j, 0);
    gw_buf_init(&m, 0);
    int ok = gw_data_msgpack_to_json(mp, n, &j) == 0 &&
             gw_data_json_to_msgpack(bp(&j), j.len, &m) == 0 && m.len == n &&
             memcmp(bp(&m), mp, n) == 0;
    gw_buf_free(&j);
    gw_buf_free(&m);
    return ok;
}

static void roundtrip_hex(const json_t *hex, int expect_ok, const char *name)
{
    size_t n;
    uint8_t *p = unhex(json_string_value(hex), &n);
    int ok = roundtrip(p, n);
    if (ok != expect_ok)
        fprintf(stderr, "    %s: round trip %s\n", name, ok ? "unexpectedly held" : "failed");
    CHECK_EQ_INT(ok, expect_ok);
    free(p);
}

TEST(test_data_roundtrip_vectors)
{
    size_t i, j, count = 0;
    json_t *v, *p;
    json_array_foreach(vectors, i, v)
    {
        int rt = !json_is_false(json_object_get(v, "roundtrip"));
        const json_t *d = json_object_get(json_object_get(v, "expect"), "data");
        if (d)
            roundtrip_hex(d, 1, jstr(v, "name")), count++;
        const json_t *a = json_object_get(v, "args");
        if ((d = json_object_get(a, "data")))
            roundtrip_hex(d, rt, jstr(v, "name")), count++;
        json_array_foreach(json_object_get(a, "publications"), j, p)
        {
            roundtrip_hex(json_object_get(p, "data"), 1, jstr(v, "name"));
            count++;
        }
    }
    CHECK(count >= 10);
}

static void mp_to_json_is(const char *mp_hex, const char *want)
{
    size_t n;
    uint8_t *p = unhex(mp_hex, &n);
    gw_buf_t j;
    gw_buf_init(&j, 0);
    int rc = gw_data_msgpack_to_json(p, n, &j);
    if (want == NULL) {
        CHECK_EQ_INT(rc, -EINVAL);
        CHECK_EQ_INT(j.len, 0);
    } else {
        CHECK_EQ_INT(rc, 0);
        if (j.len != strlen(want) || memcmp(bp(&j), want, j.len) != 0) {
            fprintf(stderr, "    %s -> %.*s, want %s\n", mp_hex, (int)j.len, (const char *)bp(&j),
                    want);
            CHECK(0);
        }
    }
    gw_buf_free(&j);
    free(p);
}

static void json_to_mp_is(const char *json, const char *want_hex)
{
    gw_buf_t m, h;
    gw_buf_init(&m, 0);
    gw_buf_init(&h, 0);
    int rc = gw_data_json_to_msgpack((const uint8_t *)json, strlen(json), &m);
    for (size_t i = 0; i < m.len; i++)
        gw_buf_appendf(&h, "%02x", bp(&m)[i]);
    gw_buf_append(&h, "", 1);
    if (want_hex == NULL) {
        if (rc != -EINVAL || m.len != 0)
            fprintf(stderr, "    %s: accepted as %s\n", json, (const char *)bp(&h));
        CHECK(rc == -EINVAL && m.len == 0);
    } else {
        if (rc != 0 || strcmp((const char *)bp(&h), want_hex) != 0)
            fprintf(stderr, "    %s -> rc %d %s, want %s\n", json, rc, (const char *)bp(&h),
                    want_hex);
        CHECK(rc == 0 && strcmp((const char *)bp(&h), want_hex) == 0);
    }
    gw_buf_free(&m);
    gw_buf_free(&h);
}

TEST(test_float_format)
{
    static const struct {
        double d;
        const char *repr; /* Python 3 repr() */
    } t[] = {
        {0.1, "0.1"},
        {1.0 / 3, "0.3333333333333333"},
        {1e22, "1e+22"},
        {1e-7, "1e-07"},
        {5e-324, "5e-324"},
        {2.5e-05, "2.5e-05"},
        {1.2345678901234568e+20, "1.2345678901234568e+20"},
        {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},
        {9007199254740993.0, "9007199254740992.0"},
        {-1.5, "-1.5"},
        {9223372036854775808.0, "9.223372036854776e+18"},
        {0.30000000000000004, "0.30000000000000004"},
        {1e-4, "0.0001"},
        {123.456, "123.456"},
        {-1e-300, "-1e-300"},
        {2.2250738585072014e-308, "2.2250738585072014e-308"},
        {1e23, "1e+23"},
        {4.35, "4.35"},
        {5e-05, "5e-05"},
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {100.0, "100.0"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {NAN, "null"},
        {INFINITY, "null"},
        {-INFINITY, "null"},
    };
    for (size_t i = 0; i < GW_ARRAY_SIZE(t); i++) {
        uint8_t mp[9] = {0xcb};
        uint64_t u;
        memcpy(&u, &t[i].d, 8);
        for (int b = 0; b < 8; b++)
            mp[1 + b] = (uint8_t)(u >> (56 - 8 * b));
        char hex[19];
        for (int b = 0; b < 9; b++)
            sprintf(hex + 2 * b, "%02x", mp[b]);
        mp_to_json_is(hex, t[i].repr);
    }
    mp_to_json_is("ca3dcccccd", "0.10000000149011612"); /* float32 0.1 */
    mp_to_json_is("ca7fc00000", "null");                /* float32 NaN */
    /* JSON numbers: integers stay integers, anything with . or e is a float64 */
    json_to_mp_is("1", "01");
    json_to_mp_is("1.0", "cb3ff0000000000000");
    json_to_mp_is("1e2", "cb4059000000000000");
    json_to_mp_is("-0", "00");
    json_to_mp_is("-9223372036854775808", "d38000000000000000");
    json_to_mp_is("9223372036854775807", "cf7fffffffffffffff");
    json_to_mp_is("9223372036854775808", NULL); /* beyond int64: jansson cannot hold it */
    json_to_mp_is("1e400", NULL);
}

TEST(test_data_conversion_rules)
{
    /* bin and ext */
    mp_to_json_is("c40300fffe", "{\"$bin\":\"AP/+\"}");
    mp_to_json_is("c400", "{\"$bin\":\"\"}");
    mp_to_json_is("d40100", "{\"$ext\":[1,\"AA==\"]}"); /* the PROTOCOL.md examples */
    mp_to_json_is("cfffffffffffffffff", "18446744073709551615");
    mp_to_json_is("d38000000000000000", "-9223372036854775808");
    mp_to_json_is("cb3ff8000000000000", "1.5");
    mp_to_json_is("8101a36f6e65", "{\"1\":\"one\"}");
    mp_to_json_is("d4ff01", "{\"$ext\":[-1,\"AQ==\"]}");
    mp_to_json_is("c70205abcd", "{\"$ext\":[5,\"q80=\"]}"); /* ext8 for 2 bytes: non-canonical */
    mp_to_json_is("d505abcd", "{\"$ext\":[5,\"q80=\"]}");
    json_to_mp_is("{\"$bin\":\"AP/+\"}", "c40300fffe");
    json_to_mp_is("{\"$bin\":\"\"}", "c400");
    json_to_mp_is("{\"$ext\":[-1,\"AQ==\"]}", "d4ff01");
    json_to_mp_is("{\"$ext\":[5,\"q80=\"]}", "d505abcd");
    json_to_mp_is("{\"$ext\":[5,\"YWJj\"]}", "c70305616263");
    /* a $bin/$ext object is only special alone and well-formed; otherwise it is an error */
    json_to_mp_is("{\"$bin\":\"AP/+\",\"x\":1}", "82a42462696ea441502f2ba17801");
    json_to_mp_is("{\"$bin\":5}", NULL);
    json_to_mp_is("{\"$bin\":\"AP/\"}", NULL);  /* unpadded */
    json_to_mp_is("{\"$bin\":\"AP/=\"}", NULL); /* unused bits set */
    json_to_mp_is("{\"$bin\":\"A===\"}", NULL);
    json_to_mp_is("{\"$bin\":\"AP/+\\n\"}", NULL);
    json_to_mp_is("{\"$ext\":[5,\"q80=\",1]}", NULL);
    json_to_mp_is("{\"$ext\":[128,\"\"]}", NULL);
    json_to_mp_is("{\"$ext\":[-129,\"\"]}", NULL);
    json_to_mp_is("{\"$ext\":[1.0,\"\"]}", NULL);
    json_to_mp_is("{\"$ext\":[-128,\"\"]}", "c70080");
    /* non-string keys become their JSON text */
    mp_to_json_is(
        "8501a36f6e65c002c303cb3ff800000000000004c4016b05",
        "{\"1\":\"one\",\"null\":2,\"true\":3,\"1.5\":4,\"{\\\"$bin\\\":\\\"aw==\\\"}\":5}");
    mp_to_json_is("81920102a178", NULL); /* keys must be scalars */
    mp_to_json_is("81810102a178", NULL);
    /* scalars, whitespace, NUL inside strings */
    json_to_mp_is(" \"hi\" ", "a26869");
    json_to_mp_is("[ null , true,false ]", "93c0c3c2");
    json_to_mp_is("\"a\\u0000b\"", "a3610062");
    mp_to_json_is("a3610062", "\"a\\u0000b\"");
    json_to_mp_is("{\"a\\u0000\":1}", NULL); /* jansson: no NUL in keys */
    json_to_mp_is("", NULL);
    json_to_mp_is("1 2", NULL);
    json_to_mp_is("{\"a\":1,\"a\":1}", NULL);
    json_to_mp_is("\"\xff\"", NULL);
    json_to_mp_is("NaN", NULL);
    /* msgpack input must be exactly one valid value */
    mp_to_json_is("", NULL);
    mp_to_json_is("0101", NULL);
    mp_to_json_is("92", NULL);
    mp_to_json_is("c1", NULL);
    mp_to_json_is("dbffffffff", NULL);
    mp_to_json_is("c6ffffffff", NULL);
    mp_to_json_is("ddffffffff", NULL);
    /* escapes exactly like json.dumps(ensure_ascii=False) */
    mp_to_json_is("a8225c0a0d09080c01", "\"\\\"\\\\\\n\\r\\t\\b\\f\\u0001\"");
    mp_to_json_is("a57f2fe282a8", "\"\x7f/\xe2\x82\xa8\"");
}

TEST(test_utf8_validation)
{
    static const char *bad[] = {
        "a180",           /* lone continuation byte */
        "a2c0af",         /* overlong '/' */
        "a3e080af",       /* overlong, 3 bytes */
        "a4f08080af",     /* overlong, 4 bytes */
        "a3eda080",       /* surrogate U+D800 */
        "a3edbfbf",       /* surrogate U+DFFF */
        "a4f4908080",     /* above U+10FFFF */
        "a1f5",           /* never-used lead byte */
        "a2e282",         /* truncated sequence */
        "a1ff",           /* 0xff */
        "9101a2c3a9a1fe", /* bad byte deep inside */
        "81a2c328a178",   /* bad key */
    };
    for (size_t i = 0; i < GW_ARRAY_SIZE(bad); i++)
        mp_to_json_is(bad[i], NULL);
    mp_to_json_is("a4f09f9880", "\"\xf0\x9f\x98\x80\"");
    mp_to_json_is("a3efbfbf", "\"\xef\xbf\xbf\"");
    mp_to_json_is("a4f48fbfbf", "\"\xf4\x8f\xbf\xbf\"");
    /* JSON frames: jansson validates; \u escapes of lone surrogates are refused */
    json_to_mp_is("\"\xed\xa0\x80\"", NULL);
    json_to_mp_is("\"\\udc00\"", NULL);
    json_to_mp_is("\"\\ud83d\\ude00\"", "a4f09f9880");
}

TEST(test_depth_limits)
{
    uint8_t buf[4200];
    gw_cmd_t c;
    gw_dec_err_t e;
    for (int enc = 0; enc < 2; enc++) {
        /* the envelope is depth 1, so data may nest 31 containers */
        size_t n = bomb((gw_enc_t)enc, 31, buf);
        CHECK_EQ_INT(gw_proto_decode((gw_enc_t)enc, buf, n, &c, &e), GW_DEC_OK);
        gw_cmd_free(&c);
        n = bomb((gw_enc_t)enc, 32, buf);
        CHECK_EQ_INT(gw_proto_decode((gw_enc_t)enc, buf, n, &c, &e), GW_DEC_MALFORMED);
        n = bomb((gw_enc_t)enc, 1000, buf);
        CHECK_EQ_INT(gw_proto_decode((gw_enc_t)enc, buf, n, &c, &e), GW_DEC_MALFORMED);
        CHECK(e.msg != NULL);
    }
    /* a data value alone: 32 levels fine, 33 not; the JSON form of a msgpack value at the limit
     * (two JSON levels more for an $ext wrapper) still converts back */
    uint8_t mp[64];
    for (int d = 32; d <= 33; d++) {
        for (int i = 0; i < d; i++)
            mp[i] = 0x91;
        memcpy(mp + d, "\xd4\x01\x00", 3);
        gw_buf_t j;
        gw_buf_init(&j, 0);
        int rc = gw_data_msgpack_to_json(mp, (size_t)d + 3, &j);
        CHECK_EQ_INT(rc, d == 32 ? 0 : -EINVAL);
        if (rc == 0)
            CHECK(roundtrip(mp, (size_t)d + 3));
        gw_buf_free(&j);
    }
    /* a JSON bomb is refused before the parser recurses */
    char js[6100];
    size_t k = 0;
    for (int i = 0; i < 1000; i++) {
        memcpy(js + k, "{\"a\":", 5);
        k += 5;
    }
    js[k++] = '1';
    memset(js + k, '}', 1000);
    k += 1000;
    gw_buf_t m;
    gw_buf_init(&m, 0);
    CHECK_EQ_INT(gw_data_json_to_msgpack((const uint8_t *)js, k, &m), -EINVAL);
    memset(js, '[', 1000);
    memset(js + 1000, ']', 1000);
    CHECK_EQ_INT(gw_data_json_to_msgpack((const uint8_t *)js, 2000, &m), -EINVAL);
    /* brackets inside strings do not count */
    k = (size_t)sprintf(js, "[\"");
    memset(js + k, '[', 100);
    k += 100;
    k += (size_t)sprintf(js + k, "\\\"[\"]");
    CHECK_EQ_INT(gw_data_json_to_msgpack((const uint8_t *)js, k, &m), 0);
    gw_buf_free(&m);
}

TEST(test_container_keys_refused)
{
    /* Maps used as keys inside keys: JSON would escape each level again (exponential output).
     * Found by the fuzzer; must fail at once, as data and inside a frame. */
    uint8_t buf[64];
    size_t k = 0;
    for (int i = 0; i < 30; i++)
        buf[k++] = 0x81; /* {key: ...} whose key is the next map */
    buf[k++] = 0xa1;
    buf[k++] = 'x';
    for (int i = 0; i < 30; i++)
        buf[k++] = 0x01; /* each map's value */
    gw_buf_t j;
    gw_buf_init(&j, 0);
    CHECK_EQ_INT(gw_data_msgpack_to_json(buf, k, &j), -EINVAL);
    CHECK_EQ_INT(j.len, 0);
    gw_buf_free(&j);
    uint8_t frame[128];
    static const uint8_t head[] = "\x84\xa2id\x01\xa3"
                                  "cmd\xa7publish\xa7"
                                  "channel\xa3"
                                  "a:b\xa4"
                                  "data";
    memcpy(frame, head, sizeof(head) - 1);
    memcpy(frame + sizeof(head) - 1, buf, k);
    gw_cmd_t c;
    gw_dec_err_t e;
    CHECK_EQ_INT(gw_proto_decode(GW_ENC_MSGPACK, frame, sizeof(head) - 1 + k, &c, &e),
                 GW_DEC_MALFORMED);
}

TEST(test_huge_declared_lengths)
{
    /* Each frame claims ~4 GB; decoding must fail at once without allocating it (ASan would
     * abort on an allocation that size). */
    static const char *frames[] = {
        "ddffffffff01",
        "dfffffffff",
        "82a2696401a3636d64dbfffffff070696e67",
        "81a464617461c6ffffffff",
        "81a464617461c9ffffffff01",
        "dcffff",
        "deffff01",
        "81a464617461dbffffffff",
        "8fa26964",
    };
    for (size_t i = 0; i < GW_ARRAY_SIZE(frames); i++) {
        size_t n;
        uint8_t *f = unhex(frames[i], &n);
        gw_cmd_t c;
        gw_dec_err_t e;
        CHECK_EQ_INT(gw_proto_decode(GW_ENC_MSGPACK, f, n, &c, &e), GW_DEC_MALFORMED);
        gw_buf_t j;
        gw_buf_init(&j, 0);
        CHECK_EQ_INT(gw_data_msgpack_to_json(f, n, &j), -EINVAL);
        gw_buf_free(&j);
        free(f);
    }
}

TEST(test_every_truncation_fails)
{
    /* every strict prefix of every valid msgpack command is malformed, never a crash */
    size_t i, count = 0;
    json_t *v;
    json_array_foreach(vectors, i, v)
    {
        if (strcmp(jstr(v, "kind"), "command") != 0)
            continue;
        size_t n;
        uint8_t *f = frame_of(v, GW_ENC_MSGPACK, &n);
        for (size_t k = 0; k < n; k++) {
            uint8_t *cut = gw_malloc(k); /* exact size so ASan sees any over-read */
            memcpy(cut, f, k);
            gw_cmd_t c;
            gw_dec_err_t e;
            int st = gw_proto_decode(GW_ENC_MSGPACK, cut, k, &c, &e);
            if (st != GW_DEC_MALFORMED) {
                fprintf(stderr, "    %s cut at %zu: %d\n", jstr(v, "name"), k, st);
                CHECK(0);
            }
            free(cut);
            count++;
        }
        free(f);
    }
    CHECK(count > 100);
}

TEST(test_decoded_strings_are_owned)
{
    size_t n;
    uint8_t *f = unhex("84a26964"
                       "05a3636d64a7636f6e6e656374a5746f6b656ea3616263a6636c69656e74a178",
                       &n);
    gw_cmd_t c;
    gw_dec_err_t e;
    CHECK_EQ_INT(gw_proto_decode(GW_ENC_MSGPACK, f, n, &c, &e), GW_DEC_OK);
    memset(f, 0, n); /* the command must not depend on the frame */
    free(f);
    CHECK_EQ_INT(c.kind, GW_CMD_CONNECT);
    CHECK_EQ_INT(c.id, 5);
    CHECK(slice_is(c.token, "abc"));
    CHECK(slice_is(c.client, "x"));
    CHECK(slice_is(c.channel, "") && slice_is(c.method, "") && slice_is(c.since_epoch, ""));
    gw_cmd_free(&c);
    gw_cmd_free(&c); /* idempotent */
}

TEST(test_channel_grammar)
{
    size_t ns = 0;
    CHECK(gw_proto_channel_valid("group:g42", 9, &ns) && ns == 5);
    CHECK(gw_proto_channel_valid("a-b_9:A.b@c=d+e,f;g-h_", 22, &ns) && ns == 5);
    CHECK(!gw_proto_channel_valid("group:g42", 0, &ns));
    CHECK(!gw_proto_channel_valid(NULL, 0, &ns));
    CHECK(!gw_proto_channel_valid("group", 5, &ns));
    CHECK(!gw_proto_channel_valid(":x", 2, &ns));
    CHECK(!gw_proto_channel_valid("g:", 2, &ns));
    CHECK(!gw_proto_channel_valid("G:x", 3, &ns));
    CHECK(!gw_proto_channel_valid("g:x y", 5, &ns));
    CHECK(!gw_proto_channel_valid("g:x:y", 5, &ns));
    CHECK(!gw_proto_channel_valid("g:x\0y", 5, &ns));
    CHECK(!gw_proto_channel_valid("g.h:x", 5, &ns));
    char ch[300];
    memset(ch, 'n', 32);
    ch[32] = ':';
    memset(ch + 33, 'x', sizeof(ch) - 33);
    CHECK(gw_proto_channel_valid(ch, 255, &ns) && ns == 32);
    CHECK(!gw_proto_channel_valid(ch, 256, &ns));
    ch[0] = ':'; /* 33-byte namespace */
    memset(ch, 'n', 33);
    ch[33] = ':';
    CHECK(!gw_proto_channel_valid(ch, 40, &ns));
}

TEST(test_encoder_edge_cases)
{
    gw_buf_t b;
    gw_buf_init(&b, 0);
    /* invalid data is sent as null, never dropped */
    gw_pub_t pub = {7, {GW_DATA_MSGPACK, (const uint8_t *)"\x92\x01", 2}, {"", 0}};
    gw_proto_enc_pub(&b, GW_ENC_JSON, (gw_slice_t){"a:b", 3}, &pub);
    gw_buf_append(&b, "", 1);
    CHECK_STR((const char *)bp(&b),
              "{\"push\":\"pub\",\"channel\":\"a:b\",\"offset\":7,\"data\":null}");
    gw_buf_reset(&b);
    gw_proto_enc_pub(&b, GW_ENC_MSGPACK, (gw_slice_t){"a:b", 3}, &pub);
    CHECK_EQ_MEM(bp(&b), b.len,
                 "\x84\xa4push\xa3pub\xa7"
                 "channel\xa3"
                 "a:b\xa6offset\x07\xa4"
                 "data\xc0",
                 36);
    gw_buf_reset(&b);
    pub.data = (gw_data_t){GW_DATA_JSON, (const uint8_t *)"{\"a\": [1, 2.50]} ", 17};
    gw_proto_enc_pub(&b, GW_ENC_JSON, (gw_slice_t){"a:b", 3}, &pub);
    gw_buf_append(&b, "", 1);
    CHECK_STR((const char *)bp(&b),
              "{\"push\":\"pub\",\"channel\":\"a:b\",\"offset\":7,\"data\":{\"a\":[1,2.5]}}");
    gw_buf_reset(&b);
    pub.data = (gw_data_t){GW_DATA_JSON, (const uint8_t *)"{bad", 4};
    gw_proto_enc_pub(&b, GW_ENC_MSGPACK, (gw_slice_t){"a:b", 3}, &pub);
    CHECK(b.len > 0 && bp(&b)[b.len - 1] == 0xc0);
    gw_buf_reset(&b);
    pub.data = (gw_data_t){GW_DATA_MSGPACK, NULL, 0};
    gw_proto_enc_pub(&b, GW_ENC_JSON, (gw_slice_t){"a:b", 3}, &pub);
    gw_buf_append(&b, "", 1);
    CHECK(strstr((const char *)bp(&b), "\"data\":null}") != NULL);
    gw_buf_reset(&b);
    /* invalid UTF-8 in a string handed to an encoder becomes U+FFFD in both encodings */
    gw_proto_enc_error(&b, GW_ENC_JSON, 1, 100, "bad \xff byte");
    gw_buf_append(&b, "", 1);
    CHECK_STR((const char *)bp(&b),
              "{\"id\":1,\"error\":{\"code\":100,\"message\":\"bad \xef\xbf\xbd byte\"}}");
    gw_buf_reset(&b);
    gw_proto_enc_error(&b, GW_ENC_MSGPACK, 1, 100, "\xc3");
    CHECK_EQ_MEM(bp(&b), b.len,
                 "\x82\xa2id\x01\xa5"
                 "error\x82\xa4"
                 "code\x64\xa7message\xa3\xef\xbf\xbd",
                 30);
    gw_buf_reset(&b);
    /* NULL message */
    gw_proto_enc_error(&b, GW_ENC_JSON, 1, 100, NULL);
    gw_buf_append(&b, "", 1);
    CHECK_STR((const char *)bp(&b), "{\"id\":1,\"error\":{\"code\":100,\"message\":\"\"}}");
    gw_buf_reset(&b);
    /* encoders append: two messages in one buffer, headroom kept */
    gw_buf_t h;
    gw_buf_init(&h, 10);
    gw_proto_enc_ok(&h, GW_ENC_JSON, 1);
    gw_proto_enc_ok(&h, GW_ENC_JSON, 2);
    gw_buf_append(&h, "", 1);
    CHECK_STR((const char *)bp(&h), "{\"id\":1,\"result\":{}}{\"id\":2,\"result\":{}}");
    CHECK_EQ_INT(h.head, 10);
    gw_buf_free(&h);
    gw_buf_free(&b);
}

TEST(test_cmd_names)
{
    CHECK_STR(gw_cmd_name(GW_CMD_CONNECT), "connect");
    CHECK_STR(gw_cmd_name(GW_CMD_REFRESH), "refresh");
    CHECK_STR(gw_cmd_name(GW_CMD_PING), "ping");
    CHECK_STR(gw_cmd_name((gw_cmd_kind_t)99), "?");
}

int main(void)
{
    const char *path = getenv("CARDGW_VECTORS");
    if (path == NULL)
        path = "tests/vectors/vectors.json";
    json_error_t jerr;
    vectors = json_load_file(path, 0, &jerr);
    if (!json_is_array(vectors)) {
        fprintf(stderr, "cannot read vectors %s: %s (line %d)\n", path, jerr.text, jerr.line);
        printf("unit: 0 passed, 1 failed\n");
        return 1;
    }
    RUN(test_command_vectors);
    RUN(test_invalid_vectors);
    RUN(test_reply_and_push_vectors);
    RUN(test_data_roundtrip_vectors);
    RUN(test_float_format);
    RUN(test_data_conversion_rules);
    RUN(test_utf8_validation);
    RUN(test_depth_limits);
    RUN(test_container_keys_refused);
    RUN(test_huge_declared_lengths);
    RUN(test_every_truncation_fails);
    RUN(test_decoded_strings_are_owned);
    RUN(test_channel_grammar);
    RUN(test_encoder_edge_cases);
    RUN(test_cmd_names);
    json_decref(vectors);
    return TL_DONE();
}
