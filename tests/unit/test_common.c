/* test_common.c — the intrusive list, the byte buffer, shared WebSocket frames (header
 * encoding for every length class) and JWT verification. */
#include "cardgw/auth.h"
#include "cardgw/common.h"
#include "cardgw/conn.h"
#include "testlib.h"

#include <openssl/hmac.h>
#include <stdlib.h>

typedef struct {
    int v;
    gw_list_t link;
} item_t;

TEST(list_insert_remove_iterate)
{
    gw_list_t head, *it, *tmp;
    item_t items[4];
    gw_list_init(&head);
    CHECK(gw_list_empty(&head));
    for (int i = 0; i < 4; i++) {
        items[i].v = i;
        gw_list_insert_tail(&head, &items[i].link);
    }
    int sum = 0, n = 0;
    gw_list_foreach_safe(it, tmp, &head)
    {
        item_t *x = gw_container_of(it, item_t, link);
        CHECK_EQ_INT(x->v, n);
        sum += x->v;
        n++;
        if (x->v % 2)
            gw_list_remove(it);
    }
    CHECK_EQ_INT(sum, 6);
    n = 0;
    gw_list_foreach(it, &head) n++;
    CHECK_EQ_INT(n, 2);
    CHECK(!gw_list_linked(&items[1].link));
    CHECK(gw_list_linked(&items[0].link));
}

TEST(buf_grows_and_keeps_headroom)
{
    gw_buf_t b;
    gw_buf_init(&b, 30);
    for (int i = 0; i < 1000; i++)
        gw_buf_appendf(&b, "%d,", i);
    CHECK(b.len > 2000);
    CHECK(memcmp(gw_buf_data(&b), "0,1,2,", 6) == 0);
    CHECK(gw_buf_data(&b) - b.base == 30);
    gw_buf_free(&b);
}

static void check_frame(size_t n, int binary, const uint8_t *hdr, size_t hn)
{
    gw_buf_t b;
    gw_buf_init(&b, GW_FRAME_HEADROOM);
    uint8_t *p = gw_buf_reserve(&b, n ? n : 1);
    memset(p, 'x', n);
    b.len = n;
    gw_frame_t *f = gw_frame_from_buf(&b, binary);
    CHECK(b.base == NULL); /* ownership moved */
    CHECK_EQ_INT(f->len, n + hn);
    CHECK_EQ_MEM(f->data, hn, hdr, hn);
    CHECK(n == 0 || f->data[hn] == 'x');
    gw_frame_ref(f);
    gw_frame_unref(f);
    gw_frame_unref(f);
}

TEST(frame_headers)
{
    check_frame(0, 1, (const uint8_t *)"\x82\x00", 2);
    check_frame(125, 0, (const uint8_t *)"\x81\x7d", 2);
    check_frame(126, 1, (const uint8_t *)"\x82\x7e\x00\x7e", 4);
    check_frame(65535, 1, (const uint8_t *)"\x82\x7e\xff\xff", 4);
    check_frame(65536, 0, (const uint8_t *)"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
}

static void b64url(const uint8_t *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = t[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = t[v & 63];
    }
    out[o] = '\0';
}

static void make_jwt(char *out, const char *header, const char *claims, const char *secret)
{
    char h[256], c[256], s[64];
    uint8_t mac[32];
    unsigned ml;
    b64url((const uint8_t *)header, strlen(header), h);
    b64url((const uint8_t *)claims, strlen(claims), c);
    sprintf(out, "%s.%s", h, c);
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const uint8_t *)out, strlen(out), mac, &ml);
    b64url(mac, 32, s);
    strcat(out, ".");
    strcat(out, s);
}

TEST(jwt_verify)
{
    char t[1024];
    gw_identity_t id;
    const char *hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    uint64_t now = 1700000000000ull;
    make_jwt(t, hs, "{\"sub\":\"u1\",\"exp\":1700000100}", "k");
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), "k", now, &id), 0);
    CHECK_STR(id.uid, "u1");
    CHECK(id.expires_at_ms == 1700000100000ull);
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), "other", now, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), "k", now + 200000, &id), GW_ERR_TOKEN_EXPIRED);
    t[strlen(t) - 2] ^= 1; /* tampered signature */
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), "k", now, &id), GW_ERR_UNAUTHORIZED);
    make_jwt(t, "{\"alg\":\"none\"}", "{\"sub\":\"u1\"}", "k");
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), "k", now, &id), GW_ERR_UNAUTHORIZED);
    make_jwt(t, hs, "{\"sub\":\"bad uid with spaces\"}", "k");
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), "k", now, &id), GW_ERR_UNAUTHORIZED);
    make_jwt(t, hs, "{\"sub\":\"u2\"}", "k");
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), "k", now, &id), 0);
    CHECK(id.expires_at_ms == 0);
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), "", now, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(gw_auth_jwt_verify("a.b", 3, "k", now, &id), GW_ERR_UNAUTHORIZED);
}

int main(void)
{
    RUN(list_insert_remove_iterate);
    RUN(buf_grows_and_keeps_headroom);
    RUN(frame_headers);
    RUN(jwt_verify);
    return TL_DONE();
}
