/* test_jwt.c — JWT verification (jwt.c, auth.c): canonical base64url, the signature, alg, the
 * time claims (exp, nbf, iat with leeway; absurd values refused), aud and iss. */
#include "cardgw/auth.h"
#include "cardgw/jwt.h"
#include "b64url.h"
#include "testlib.h"

#include <errno.h>
#include <openssl/hmac.h>
#include <stdlib.h>

#define SECRET "0123456789abcdef0123456789abcdef"
#define HS     "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define NOW_S  1700000000ull
#define NOW    (NOW_S * 1000)

static void b64url(const uint8_t *in, size_t n, char *out)
{
    b64url_encode(in, n, out);
}

/* Signs "<h>.<c>" (already encoded) and appends ".<signature>". */
static void sign(char *out, const char *h, const char *c, const char *secret)
{
    uint8_t mac[32];
    unsigned ml;
    char s[64];
    sprintf(out, "%s.%s", h, c);
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const uint8_t *)out, strlen(out), mac, &ml);
    b64url(mac, 32, s);
    strcat(out, ".");
    strcat(out, s);
}

static void make_jwt(char *out, const char *header, const char *claims, const char *secret)
{
    char h[512], c[2048];
    b64url((const uint8_t *)header, strlen(header), h);
    b64url((const uint8_t *)claims, strlen(claims), c);
    sign(out, h, c, secret);
}

static gw_jwt_opts_t opts(const char *aud, const char *iss)
{
    return (gw_jwt_opts_t){SECRET, aud, iss, 30};
}

/* gw_auth_jwt_verify of claims signed with SECRET under o: 0, 101 or 110. */
static int verify_claims(const char *claims, const gw_jwt_opts_t *o, gw_identity_t *id)
{
    char t[4096];
    make_jwt(t, HS, claims, SECRET);
    return gw_auth_jwt_verify(t, strlen(t), o, NOW, id, NULL);
}

TEST(jwt_verify_basics)
{
    char t[1024];
    gw_identity_t id;
    gw_jwt_opts_t o = opts(NULL, NULL), other = {"another-secret-another-secret-32", 0, 0, 30};
    const char *why = NULL;
    make_jwt(t, HS, "{\"sub\":\"u1\",\"exp\":1700000100}", SECRET);
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), &o, NOW, &id, &why), 0);
    CHECK_STR(id.uid, "u1");
    CHECK(id.expires_at_ms == (1700000100ull + 30) * 1000); /* exp + leeway */
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), &other, NOW, &id, &why), GW_ERR_UNAUTHORIZED);
    CHECK_STR(why, "bad signature");
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), &o, NOW + 200000, &id, &why),
                 GW_ERR_TOKEN_EXPIRED);
    t[strlen(t) - 2] ^= 1; /* tampered signature */
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), &o, NOW, &id, NULL), GW_ERR_UNAUTHORIZED);
    make_jwt(t, "{\"alg\":\"none\"}", "{\"sub\":\"u1\"}", SECRET);
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), &o, NOW, &id, NULL), GW_ERR_UNAUTHORIZED);
    make_jwt(t, "{\"alg\":\"HS256\",\"crit\":[\"x\"]}", "{\"sub\":\"u1\"}", SECRET);
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), &o, NOW, &id, &why), GW_ERR_UNAUTHORIZED);
    CHECK(strstr(why, "crit") != NULL);
    make_jwt(t, HS, "{\"sub\":\"bad uid with spaces\"}", SECRET);
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), &o, NOW, &id, NULL), GW_ERR_UNAUTHORIZED);
    make_jwt(t, HS, "{\"sub\":\"u2\"}", SECRET);
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), &o, NOW, &id, NULL), 0);
    CHECK(id.expires_at_ms == 0);
    strcat(t, ".x"); /* four parts */
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), &o, NOW, &id, NULL), GW_ERR_UNAUTHORIZED);
    gw_jwt_opts_t none = {"", 0, 0, 0};
    make_jwt(t, HS, "{\"sub\":\"u2\"}", "");
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), &none, NOW, &id, NULL), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(gw_auth_jwt_verify("a.b", 3, &o, NOW, &id, NULL), GW_ERR_UNAUTHORIZED);
}

TEST(b64url_is_canonical)
{
    uint8_t out[16];
    CHECK_EQ_INT(gw_proto_base64_decode("QUJD", 4, out, sizeof(out), 1), 3);
    CHECK_EQ_MEM(out, 3, "ABC", 3);
    CHECK_EQ_INT(gw_proto_base64_decode("QQ", 2, out, sizeof(out), 1), 1);
    CHECK_EQ_INT(out[0], 'A');
    CHECK_EQ_INT(gw_proto_base64_decode("QUI", 3, out, sizeof(out), 1), 2);
    CHECK_EQ_INT(gw_proto_base64_decode("", 0, out, sizeof(out), 1), 0);
    CHECK_EQ_INT(gw_proto_base64_decode("QR", 2, out, sizeof(out), 1),
                 -EINVAL); /* bits left over */
    CHECK_EQ_INT(gw_proto_base64_decode("QUJ", 3, out, sizeof(out), 1), -EINVAL);   /* same */
    CHECK_EQ_INT(gw_proto_base64_decode("QQ==", 4, out, sizeof(out), 1), -EINVAL);  /* padding */
    CHECK_EQ_INT(gw_proto_base64_decode("QUJDQ", 5, out, sizeof(out), 1), -EINVAL); /* n % 4 == 1 */
    CHECK_EQ_INT(gw_proto_base64_decode("QU+D", 4, out, sizeof(out), 1),
                 -EINVAL); /* base64, not url */
    CHECK_EQ_INT(gw_proto_base64_decode("QU/D", 4, out, sizeof(out), 1), -EINVAL);
    CHECK_EQ_INT(gw_proto_base64_decode("QU D", 4, out, sizeof(out), 1), -EINVAL);
    CHECK_EQ_INT(gw_proto_base64_decode("QU\0D", 4, out, sizeof(out), 1), -EINVAL);
    CHECK_EQ_INT(gw_proto_base64_decode("QUJDQUJD", 8, out, 5, 1), -E2BIG);
    CHECK_EQ_INT(gw_proto_base64_decode("QUJDQUJD", 8, out, 6, 1), 6);
    /* the same decoder, standard alphabet with padding ($bin / $ext in JSON) */
    CHECK_EQ_INT(gw_proto_base64_decode("QQ==", 4, out, sizeof(out), 0), 1);
    CHECK_EQ_INT(gw_proto_base64_decode("QUI=", 4, out, sizeof(out), 0), 2);
    CHECK_EQ_INT(gw_proto_base64_decode("QU+/", 4, out, sizeof(out), 0), 3);
    CHECK_EQ_INT(gw_proto_base64_decode("QR==", 4, out, sizeof(out), 0), -EINVAL); /* bits */
    CHECK_EQ_INT(gw_proto_base64_decode("Q===", 4, out, sizeof(out), 0), -EINVAL);
    CHECK_EQ_INT(gw_proto_base64_decode("QQ=A", 4, out, sizeof(out), 0), -EINVAL);
    CHECK_EQ_INT(gw_proto_base64_decode("QUI", 3, out, sizeof(out), 0), -EINVAL); /* unpadded */
    CHECK_EQ_INT(gw_proto_base64_decode("QU-_", 4, out, sizeof(out), 0), -EINVAL);
}

/* The same signature bytes spelt another way (unused bits set, padding) must not pass. */
TEST(noncanonical_signature_and_padding_refused)
{
    char t[1024], u[1024], h[128], c[256];
    gw_identity_t id;
    gw_jwt_opts_t o = opts(NULL, NULL);
    const char *why = NULL;
    make_jwt(t, HS, "{\"sub\":\"u1\"}", SECRET);
    CHECK_EQ_INT(gw_auth_jwt_verify(t, strlen(t), &o, NOW, &id, NULL), 0);
    /* 32 bytes = 43 characters, the last carrying 2 unused bits: set one */
    strcpy(u, t);
    char *last = u + strlen(u) - 1;
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    *last = al[(strchr(al, *last) - al) | 1];
    CHECK(strcmp(u, t) != 0);
    CHECK_EQ_INT(gw_auth_jwt_verify(u, strlen(u), &o, NOW, &id, &why), GW_ERR_UNAUTHORIZED);
    CHECK(strstr(why, "canonical") != NULL);
    strcpy(u, t);
    strcat(u, "="); /* padded signature */
    CHECK_EQ_INT(gw_auth_jwt_verify(u, strlen(u), &o, NOW, &id, NULL), GW_ERR_UNAUTHORIZED);
    /* a padded claims part, correctly signed: still refused ({"sub":"u1"} is 12 bytes: pad it
     * by taking 11 bytes + "==") */
    b64url((const uint8_t *)HS, strlen(HS), h);
    b64url((const uint8_t *)"{\"sub\":\"u\"}", 11, c);
    CHECK(strlen(c) % 4 == 3);
    strcat(c, "=");
    sign(u, h, c, SECRET);
    CHECK_EQ_INT(gw_auth_jwt_verify(u, strlen(u), &o, NOW, &id, &why), GW_ERR_UNAUTHORIZED);
    CHECK(strstr(why, "claims") != NULL);
    c[strlen(c) - 1] = '\0'; /* the same without the pad: accepted */
    sign(u, h, c, SECRET);
    CHECK_EQ_INT(gw_auth_jwt_verify(u, strlen(u), &o, NOW, &id, NULL), 0);
    /* a character outside the alphabet in the header */
    strcpy(h + 4, "+AAA");
    sign(u, h, c, SECRET);
    CHECK_EQ_INT(gw_auth_jwt_verify(u, strlen(u), &o, NOW, &id, NULL), GW_ERR_UNAUTHORIZED);
}

TEST(time_claims_must_be_sane)
{
    gw_identity_t id;
    gw_jwt_opts_t o = opts(NULL, NULL);
    /* exp 1e300 was "never expires" through an out-of-range double -> uint64 conversion */
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":1e300}", &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":1e19}", &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":253402300800}", &o, &id),
                 GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":1700000100.5}", &o, &id),
                 GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":-1}", &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":\"1700000100\"}", &o, &id),
                 GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":null}", &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":1e400}", &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"iat\":1e300}", &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"nbf\":-5}", &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"nbf\":true}", &o, &id), GW_ERR_UNAUTHORIZED);
    /* integer-valued reals and the largest time are fine */
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":1700000100.0}", &o, &id), 0);
    CHECK(id.expires_at_ms == 1700000130000ull);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":253402300799,\"iat\":1699999999}", &o, &id),
                 0);
    CHECK(id.expires_at_ms == (253402300799ull + 30) * 1000);
    /* the leeway: exp 20 s ago and nbf 20 s ahead pass, 40 s do not */
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":1699999980}", &o, &id), 0);
    CHECK(id.expires_at_ms == 1700000010000ull);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":1699999960}", &o, &id),
                 GW_ERR_TOKEN_EXPIRED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"nbf\":1700000020}", &o, &id), 0);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"nbf\":1700000040}", &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"nbf\":1699990000}", &o, &id), 0);
    o.leeway_s = 0;
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"nbf\":1700000001}", &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"exp\":1700000000}", &o, &id),
                 GW_ERR_TOKEN_EXPIRED);
    /* not yet valid and expired: not yet valid (not a "get a new token" answer) */
    CHECK_EQ_INT(verify_claims("{\"sub\":\"u\",\"nbf\":1700000100,\"exp\":1}", &o, &id),
                 GW_ERR_UNAUTHORIZED);
}

TEST(audience_and_issuer)
{
    gw_identity_t id;
    gw_jwt_opts_t o = opts("cardgw", "https://login.example");
    const char *iss = "\"iss\":\"https://login.example\"";
    char c[512];
#define CLAIMS(extra) (snprintf(c, sizeof(c), "{\"sub\":\"u\",%s%s}", iss, extra), c)
    CHECK_EQ_INT(verify_claims(CLAIMS(",\"aud\":\"cardgw\""), &o, &id), 0);
    CHECK_EQ_INT(verify_claims(CLAIMS(",\"aud\":[\"other\",\"cardgw\"]"), &o, &id), 0);
    CHECK_EQ_INT(verify_claims(CLAIMS(",\"aud\":[\"other\"]"), &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims(CLAIMS(",\"aud\":\"cardgw2\""), &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims(CLAIMS(""), &o, &id), GW_ERR_UNAUTHORIZED); /* no aud */
    CHECK_EQ_INT(verify_claims(CLAIMS(",\"aud\":[]"), &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims(CLAIMS(",\"aud\":[\"cardgw\",1]"), &o, &id), GW_ERR_UNAUTHORIZED);
    CHECK_EQ_INT(verify_claims(CLAIMS(",\"aud\":{\"cardgw\":1}"), &o, &id), GW_ERR_UNAUTHORIZED);
    iss = "\"iss\":\"https://evil.example\"";
    CHECK_EQ_INT(verify_claims(CLAIMS(",\"aud\":\"cardgw\""), &o, &id), GW_ERR_UNAUTHORIZED);
    iss = "\"iss\":7";
    CHECK_EQ_INT(verify_claims(CLAIMS(",\"aud\":\"cardgw\""), &o, &id), GW_ERR_UNAUTHORIZED);
    iss = "\"x\":0";
    CHECK_EQ_INT(verify_claims(CLAIMS(",\"aud\":\"cardgw\""), &o, &id), GW_ERR_UNAUTHORIZED);
    /* not configured: iss is not checked; a token addressed to an audience is refused (RFC 7519
     * 4.1.3: a recipient that does not identify itself with aud must reject it) */
    o = opts(NULL, NULL);
    iss = "\"iss\":\"anyone\"";
    CHECK_EQ_INT(verify_claims(CLAIMS(""), &o, &id), 0);
    CHECK_EQ_INT(verify_claims(CLAIMS(",\"aud\":\"cardgw\""), &o, &id), GW_ERR_UNAUTHORIZED);
#undef CLAIMS
}

TEST(session_expires_at_parse)
{
    uint64_t v = 7;
    CHECK_EQ_INT(gw_jwt_parse_unix_s("1700000000", 10, &v), 0);
    CHECK(v == 1700000000ull);
    CHECK_EQ_INT(gw_jwt_parse_unix_s("0", 1, &v), 0);
    CHECK(v == 0);
    CHECK_EQ_INT(gw_jwt_parse_unix_s("253402300799", 12, &v), 0);
    CHECK_EQ_INT(gw_jwt_parse_unix_s("253402300800", 12, &v), -EINVAL);
    CHECK_EQ_INT(gw_jwt_parse_unix_s("1e300", 5, &v), -EINVAL);
    CHECK_EQ_INT(gw_jwt_parse_unix_s("-1", 2, &v), -EINVAL);
    CHECK_EQ_INT(gw_jwt_parse_unix_s("1.5", 3, &v), -EINVAL);
    CHECK_EQ_INT(gw_jwt_parse_unix_s("", 0, &v), -EINVAL);
    CHECK_EQ_INT(gw_jwt_parse_unix_s(" 1", 2, &v), -EINVAL);
    CHECK_EQ_INT(gw_jwt_parse_unix_s("nan", 3, &v), -EINVAL);
    CHECK_EQ_INT(gw_jwt_parse_unix_s("99999999999999999999", 20, &v), -EINVAL);
}

int main(void)
{
    RUN(jwt_verify_basics);
    RUN(b64url_is_canonical);
    RUN(noncanonical_signature_and_padding_refused);
    RUN(time_claims_must_be_sane);
    RUN(audience_and_issuer);
    RUN(session_expires_at_parse);
    return TL_DONE();
}
