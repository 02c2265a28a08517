/* jwt.c — HS256 JSON Web Tokens checked without I/O: canonical base64url, a constant-time HMAC
 * comparison, alg HS256 only, and exp/nbf/iat/aud/iss refused unless well formed and in range. */
#include "cardgw/jwt.h"
#include "cardgw/common.h"
#include "cardgw/proto.h"

#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

int gw_jwt_parse_unix_s(const char *s, size_t n, uint64_t *out)
{
    uint64_t v;
    if (n > 12 || gw_parse_u64(s, n, &v) != 0 || v > GW_JWT_TIME_MAX)
        return -EINVAL;
    *out = v;
    return 0;
}

/* A NumericDate claim: an integer, or an integer-valued finite real, in 0..GW_JWT_TIME_MAX. */
static int gw_jwt_time(const json_t *v, uint64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || (uint64_t)i > GW_JWT_TIME_MAX)
            return -EINVAL;
        *out = (uint64_t)i;
        return 0;
    }
    if (!json_is_real(v))
        return -EINVAL;
    double d = json_real_value(v);
    if (!isfinite(d) || d < 0 || d > (double)GW_JWT_TIME_MAX || d != floor(d))
        return -EINVAL;
    *out = (uint64_t)d;
    return 0;
}

/* A base64url part holding a JSON object (owned by the caller), or NULL. */
static json_t *gw_jwt_part(const char *s, size_t n)
{
    size_t cap = n / 4 * 3 + 3;
    uint8_t *buf = gw_malloc(cap);
    long len = gw_proto_base64_decode(s, n, buf, cap, 1);
    json_t *j =
        len < 0 ? NULL : json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* aud: a string or an array of strings (RFC 7519 4.1.3). 1 when it names want, 0 when it does
 * not, -EINVAL when it is neither form. */
static int gw_jwt_aud_has(const json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (!json_is_array(aud) || json_array_size(aud) == 0)
        return -EINVAL;
    int found = 0;
    size_t i;
    const json_t *x;
    json_array_foreach(aud, i, x)
    {
        if (!json_is_string(x))
            return -EINVAL;
        found |= strcmp(json_string_value(x), want) == 0;
    }
    return found;
}

#define GW_JWT_FAIL(reason)                                                                        \
    do {                                                                                           \
        *why = (reason);                                                                           \
        goto out;                                                                                  \
    } while (0)

/* The claims of a token whose signature and header are good: 0, -EKEYEXPIRED or -EINVAL. */
static int gw_jwt_claims(json_t *claims, const gw_jwt_opts_t *o, uint64_t now_ms, gw_jwt_t *out,
                         const char **why)
{
    static const char *const names[] = {"exp", "nbf", "iat"};
    uint64_t t[3] = {0, 0, 0};
    int have[3];
    const json_t *sub = json_object_get(claims, "sub");
    if (!json_is_string(sub) || json_string_length(sub) == 0 || json_string_length(sub) > 127) {
        *why = "sub missing, not a string or longer than 127 bytes";
        return -EINVAL;
    }
    for (int i = 0; i < 3; i++) {
        const json_t *v = json_object_get(claims, names[i]);
        have[i] = v != NULL;
        if (v && gw_jwt_time(v, &t[i]) != 0) {
            *why = i == 0   ? "exp not an integer NumericDate in range"
                   : i == 1 ? "nbf not an integer NumericDate in range"
                            : "iat not an integer NumericDate in range";
            return -EINVAL;
        }
    }
    const json_t *iss = json_object_get(claims, "iss");
    if (iss && !json_is_string(iss)) {
        *why = "iss not a string";
        return -EINVAL;
    }
    if (o->issuer && o->issuer[0] && (!iss || strcmp(json_string_value(iss), o->issuer) != 0)) {
        *why = iss ? "iss is not jwt_issuer" : "iss missing (jwt_issuer is set)";
        return -EINVAL;
    }
    const json_t *aud = json_object_get(claims, "aud");
    int want_aud = o->audience && o->audience[0];
    if (aud) {
        int has = gw_jwt_aud_has(aud, want_aud ? o->audience : "");
        if (has < 0) {
            *why = "aud not a string or a non-empty array of strings";
            return -EINVAL;
        }
        if (!want_aud) {
            *why = "aud present but jwt_audience is not set (RFC 7519 4.1.3)";
            return -EINVAL;
        }
        if (!has) {
            *why = "aud does not name jwt_audience";
            return -EINVAL;
        }
    } else if (want_aud) {
        *why = "aud missing (jwt_audience is set)";
        return -EINVAL;
    }
    if (have[1] && t[1] > o->leeway_s && (t[1] - o->leeway_s) * 1000 > now_ms) {
        *why = "not yet valid (nbf)";
        return -EINVAL;
    }
    if (have[0]) {
        uint64_t until_ms = (t[0] + o->leeway_s) * 1000;
        if (until_ms <= now_ms) {
            *why = "expired (exp)";
            return -EKEYEXPIRED;
        }
        out->expires_at_ms = until_ms;
    }
    out->sub = json_string_value(sub);
    return 0;
}

int gw_jwt_verify(const char *token, size_t n, const gw_jwt_opts_t *o, uint64_t now_ms,
                  gw_jwt_t *out, const char **why)
{
    const char *unused;
    json_t *hdr = NULL, *claims = NULL;
    int rc = -EINVAL;
    uint8_t sig[32], mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    if (!why)
        why = &unused;
    memset(out, 0, sizeof(*out));
    const char *d1 = memchr(token, '.', n);
    const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - token)) : NULL;
    const char *sp = d2 ? d2 + 1 : NULL;
    size_t sn = d2 ? n - (size_t)(sp - token) : 0;
    if (!d2 || memchr(sp, '.', sn))
        GW_JWT_FAIL("not three dot-separated parts");
    if (!o->secret || !o->secret[0])
        GW_JWT_FAIL("no jwt_secret configured");
    if (gw_proto_base64_decode(sp, sn, sig, sizeof(sig), 1) != (long)sizeof(sig))
        GW_JWT_FAIL("signature not 32 bytes of canonical base64url");
    if (!HMAC(EVP_sha256(), o->secret, (int)strlen(o->secret), (const uint8_t *)token,
              (size_t)(d2 - token), mac, &maclen) ||
        maclen != sizeof(sig) || CRYPTO_memcmp(mac, sig, sizeof(sig)) != 0)
        GW_JWT_FAIL("bad signature");
    hdr = gw_jwt_part(token, (size_t)(d1 - token));
    if (!hdr)
        GW_JWT_FAIL("header not a canonical base64url JSON object");
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (!alg || strcmp(alg, "HS256") != 0)
        GW_JWT_FAIL("alg not HS256");
    if (json_object_get(hdr, "crit"))
        GW_JWT_FAIL("crit header (no extension is understood)");
    claims = gw_jwt_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!claims)
        GW_JWT_FAIL("claims not a canonical base64url JSON object");
    rc = gw_jwt_claims(claims, o, now_ms, out, why);
    if (rc == 0) {
        out->claims = claims;
        claims = NULL;
        *why = "ok";
    }
out:
    json_decref(hdr);
    json_decref(claims);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

void gw_jwt_free(gw_jwt_t *t)
{
    json_decref(t->claims);
    memset(t, 0, sizeof(*t));
}
