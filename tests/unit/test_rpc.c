/* test_rpc.c — the Redis-side pieces of rpc answers: the request id, the reply channel name, the
 * answer a backend PUBLISHes (JSON or msgpack, well formed or hostile) and map field lookup. */
#include "cardgw/proto.h"
#include "cardgw/schema.h"
#include "testlib.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>

/* Parses a C string answer; returns the parser's result. */
static int parse(const char *s, gw_buf_t *scratch, gw_rpc_answer_t *a)
{
    return gw_schema_parse_rpc_answer(s, strlen(s), scratch, a);
}

TEST(req_ids_round_trip_and_reject_others)
{
    char req[GW_SCHEMA_REQ_MAX + 1];
    uint64_t seq = 0;
    size_t n = gw_schema_rpc_req(req, sizeof(req), "a1b2c3d4", 18446744073709551615ull);
    CHECK_STR(req, "a1b2c3d4-18446744073709551615");
    CHECK_EQ_INT(n, strlen(req));
    CHECK_EQ_INT(gw_schema_parse_rpc_req((gw_slice_t){req, n}, "a1b2c3d4", &seq), 0);
    CHECK(seq == 18446744073709551615ull);
    CHECK_EQ_INT(gw_schema_parse_rpc_req((gw_slice_t){"a1b2c3d4-7", 10}, "a1b2c3d4", &seq), 0);
    CHECK(seq == 7);
    static const char *const bad[] = {
        "",
        "a1b2c3d4",
        "a1b2c3d4-",
        "ffffffff-7",
        "a1b2c3d4-7x",
        "a1b2c3d4+7",
        "a1b2c3d4--7",
        "a1b2c3d4- 7",
        "a1b2c3d4-18446744073709551616",
        "a1b2c3d-7",
    };
    for (size_t i = 0; i < GW_ARRAY_SIZE(bad); i++)
        CHECK_EQ_INT(
            gw_schema_parse_rpc_req((gw_slice_t){bad[i], strlen(bad[i])}, "a1b2c3d4", &seq),
            -EINVAL);
    CHECK_EQ_INT(gw_schema_rpc_req(req, 8, "a1b2c3d4", 1), 0); /* does not fit */
    char ch[GW_SCHEMA_KEY_MAX];
    CHECK_EQ_INT(gw_schema_reply_channel(ch, sizeof(ch), "node-1"), 19);
    CHECK_STR(ch, "cardgw:reply:node-1");
}

TEST(json_answers)
{
    gw_buf_t s;
    gw_rpc_answer_t a;
    gw_buf_init(&s, 0);
    CHECK_EQ_INT(parse(" \n{\"req\":\"ab-1\",\"result\":{\"x\":[1,true]},\"extra\":0}", &s, &a), 0);
    CHECK_EQ_MEM(a.req.p, a.req.n, "ab-1", 4);
    CHECK(!a.is_error && a.result.fmt == GW_DATA_MSGPACK);
    static const uint8_t want[] = {0x81, 0xa1, 'x', 0x92, 0x01, 0xc3};
    CHECK_EQ_MEM(a.result.p, a.result.n, want, sizeof(want));
    CHECK_EQ_INT(parse("{\"req\":\"ab-1\",\"result\":null}", &s, &a), 0);
    CHECK_EQ_MEM(a.result.p, a.result.n, "\xc0", 1);
    CHECK_EQ_INT(
        parse("{\"req\":\"ab-2\",\"error\":{\"code\":-409,\"message\":\"taken\"}}", &s, &a), 0);
    CHECK(a.is_error && a.has_code && a.code == -409);
    CHECK_STR(a.message, "taken");
    CHECK_EQ_INT(parse("{\"req\":\"ab-2\",\"error\":{}}", &s, &a), 0);
    CHECK(a.is_error && !a.has_code && a.message[0] == '\0');
    /* a NUL ends the message (it becomes a C string) */
    CHECK_EQ_INT(parse("{\"req\":\"r\",\"error\":{\"message\":\"a\\u0000b\"}}", &s, &a), 0);
    CHECK_STR(a.message, "a");
    gw_buf_free(&s);
}

TEST(long_messages_are_cut_at_a_character)
{
    gw_buf_t s;
    gw_rpc_answer_t a;
    gw_buf_init(&s, 0);
    /* 1023 ASCII bytes then "é" (2 bytes): the cut at 1024 would split it */
    size_t cap = 2000;
    char *j = malloc(cap);
    int k = snprintf(j, cap, "{\"req\":\"r\",\"error\":{\"message\":\"");
    memset(j + k, 'm', 1023);
    k += 1023;
    k += snprintf(j + k, cap - (size_t)k, "\xc3\xa9tail\"}}");
    CHECK_EQ_INT(gw_schema_parse_rpc_answer(j, (size_t)k, &s, &a), 0);
    CHECK_EQ_INT(strlen(a.message), 1023);
    free(j);
    gw_buf_free(&s);
}

TEST(msgpack_answers)
{
    gw_buf_t s, m;
    gw_rpc_answer_t a;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    gw_buf_init(&s, 0);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_int(&pk, 7); /* a non-str key: ignored */
    msgpack_pack_int(&pk, 7);
    msgpack_pack_str_with_body(&pk, "result", 6);
    msgpack_pack_bin_with_body(&pk, "\x00\xff", 2);
    msgpack_pack_str_with_body(&pk, "req", 3);
    msgpack_pack_str_with_body(&pk, "q-9", 3);
    CHECK_EQ_INT(gw_schema_parse_rpc_answer(sb.data, sb.size, &s, &a), 0);
    CHECK_EQ_MEM(a.req.p, a.req.n, "q-9", 3);
    CHECK_EQ_MEM(a.result.p, a.result.n, "\xc4\x02\x00\xff", 4);
    CHECK(s.len == 0); /* msgpack needs no conversion */
    /* the same key twice */
    gw_buf_init(&m, 0);
    gw_buf_append(&m, "\x83\xa3req\xa1x\xa6result\x01\xa3req\xa1y", 19);
    CHECK_EQ_INT(gw_schema_parse_rpc_answer((const char *)gw_buf_data(&m), m.len, &s, &a), -EINVAL);
    gw_buf_free(&m);
    msgpack_sbuffer_destroy(&sb);
    gw_buf_free(&s);
}

TEST(malformed_answers)
{
    gw_buf_t s;
    gw_rpc_answer_t a;
    gw_buf_init(&s, 0);
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "[1]",
        "\"req\"",
        "{\"result\":1}",
        "{\"req\":\"x\"}",
        "{\"req\":5,\"result\":1}",
        "{\"req\":\"x\",\"result\":1,\"error\":{}}",
        "{\"req\":\"x\",\"error\":\"no\"}",
        "{\"req\":\"x\",\"error\":{\"code\":1.5}}",
        "{\"req\":\"x\",\"error\":{\"code\":\"409\"}}",
        "{\"req\":\"x\",\"error\":{\"message\":[]}}",
        "{\"req\":\"x\",\"req\":\"x\",\"result\":1}",
        "{\"req\":\"x\",\"result\":1} trailing",
        "{\"req\":\"0123456789012345678901234567890123456789012345678\",\"result\":1}",
        "\x81\xa3req",                           /* truncated msgpack */
        "\x82\xa3req\xa1x\xa6result\xc1",        /* reserved byte */
        "\x92\x01\x02",                          /* not a map */
        "\xdf\xff\xff\xff\xff",                  /* map32 of 4G pairs */
        "\x82\xa3req\xa2\xff\xfe\xa6result\x01", /* req not UTF-8 */
        "\x82\xa3req\xa1x\xa6result\x01\x01",    /* trailing byte */
    };
    for (size_t i = 0; i < GW_ARRAY_SIZE(bad); i++) {
        int rc = parse(bad[i], &s, &a);
        if (rc != -EINVAL)
            fprintf(stderr, "  accepted bad[%zu]\n", i);
        CHECK_EQ_INT(rc, -EINVAL);
    }
    /* nesting deeper than the protocol allows */
    char deep[200];
    int k = snprintf(deep, sizeof(deep), "{\"req\":\"x\",\"result\":");
    for (int i = 0; i < 40; i++)
        deep[k++] = '[';
    for (int i = 0; i < 40; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    CHECK_EQ_INT(gw_schema_parse_rpc_answer(deep, (size_t)k, &s, &a), -EINVAL);
    gw_buf_free(&s);
}

TEST(map_fields_and_scalars)
{
    gw_data_field_t f[] = {{"a", NULL, 0}, {"b", NULL, 0}};
    CHECK_EQ_INT(gw_data_map_fields((const uint8_t *)"\x82\xa1"
                                                     "a\x05\xa1z\x06",
                                    7, f, 2),
                 0);
    CHECK(f[0].p && f[0].n == 1 && f[0].p[0] == 5 && f[1].p == NULL);
    CHECK_EQ_INT(gw_data_map_fields((const uint8_t *)"\x90", 1, f, 2), -EINVAL);
    int64_t v;
    gw_slice_t sl;
    CHECK_EQ_INT(gw_data_as_int((const uint8_t *)"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, &v), 0);
    CHECK(v == INT64_MIN);
    CHECK_EQ_INT(gw_data_as_int((const uint8_t *)"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, &v),
                 -EINVAL);
    CHECK_EQ_INT(gw_data_as_int((const uint8_t *)"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 9, &v),
                 -EINVAL);
    CHECK_EQ_INT(gw_data_as_int(NULL, 0, &v), -EINVAL);
    CHECK_EQ_INT(gw_data_as_str((const uint8_t *)"\xa2hi", 3, &sl), 0);
    CHECK_EQ_MEM(sl.p, sl.n, "hi", 2);
    CHECK_EQ_INT(gw_data_as_str((const uint8_t *)"\xc4\x02hi", 4, &sl), -EINVAL);
}

TEST(error_with_app_code_encodes)
{
    gw_buf_t b;
    gw_buf_init(&b, 0);
    gw_proto_enc_error_app(&b, GW_ENC_JSON, 7, GW_ERR_BACKEND, "card \"taken\"", -409);
    const char *want = "{\"id\":7,\"error\":{\"code\":119,\"message\":\"card \\\"taken\\\"\","
                       "\"app_code\":-409}}";
    CHECK_EQ_MEM(gw_buf_data(&b), b.len, want, strlen(want));
    gw_buf_reset(&b);
    gw_proto_enc_error_app(&b, GW_ENC_MSGPACK, 7, GW_ERR_BACKEND, "x", 409);
    static const uint8_t mp[] = {0x82, 0xa2, 'i',  'd', 0x07, 0xa5, 'e',  'r',  'r',  'o',
                                 'r',  0x83, 0xa4, 'c', 'o',  'd',  'e',  0x77, 0xa7, 'm',
                                 'e',  's',  's',  'a', 'g',  'e',  0xa1, 'x',  0xa8, 'a',
                                 'p',  'p',  '_',  'c', 'o',  'd',  'e',  0xcd, 0x01, 0x99};
    CHECK_EQ_MEM(gw_buf_data(&b), b.len, mp, sizeof(mp));
    gw_buf_free(&b);
}

int main(void)
{
    RUN(req_ids_round_trip_and_reject_others);
    RUN(json_answers);
    RUN(long_messages_are_cut_at_a_character);
    RUN(msgpack_answers);
    RUN(malformed_answers);
    RUN(map_fields_and_scalars);
    RUN(error_with_app_code_encodes);
    return TL_DONE();
}
