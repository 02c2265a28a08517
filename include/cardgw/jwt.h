/* jwt.h — HS256 JSON Web Tokens (RFC 7519) checked without I/O: strict base64url, the signature,
 * the header and the registered claims exp, nbf, iat, aud, iss. Pure, so the fuzzer drives it. */
#ifndef CARDGW_JWT_H
#define CARDGW_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The largest NumericDate accepted (9999-12-31T23:59:59Z); larger, negative, fractional or
 * non-finite times are refused. */
#define GW_JWT_TIME_MAX 253402300799ull
/* Shortest jwt_secret the configuration accepts (HS256 wants a key of at least its output). */
#define GW_JWT_SECRET_MIN 32

typedef struct {
    const char *secret;   /* HS256 key (borrowed); "" refuses every token */
    const char *audience; /* NULL or "": a token with an aud claim is refused; else aud must name
                           * it (a string, or an array of strings holding it) */
    const char *issuer;   /* NULL or "": iss not checked; else iss must equal it */
    uint32_t leeway_s;    /* clock skew allowed on exp and nbf, in the token's favour */
} gw_jwt_opts_t;

typedef struct {
    json_t *claims;         /* owned (gw_jwt_free): the claims object */
    const char *sub;        /* inside claims: 1..127 bytes, no NUL (the caller checks its form) */
    uint64_t expires_at_ms; /* (exp + leeway) in ms of the wall clock; 0 = no exp claim */
} gw_jwt_t;

/* Verifies token[0..n) (borrowed). Returns 0 and fills *out (free with gw_jwt_free), -EKEYEXPIRED
 * when the token is well formed and signed but expired, or -EINVAL (malformed, bad signature,
 * wrong alg, bad claim, not yet valid, wrong audience or issuer); *why (may be NULL) is set to a
 * static string naming the precise reason (for the log, never for the client). now_ms: wall
 * clock. On failure *out is zeroed. */
int gw_jwt_verify(const char *token, size_t n, const gw_jwt_opts_t *o, uint64_t now_ms,
                  gw_jwt_t *out, const char **why);
void gw_jwt_free(gw_jwt_t *t);

/* Parses a unix time in seconds written as decimal digits (no sign, space or fraction) of at most
 * GW_JWT_TIME_MAX, as the session field expires_at holds it. 0 or -EINVAL. */
int gw_jwt_parse_unix_s(const char *s, size_t n, uint64_t *out);

#endif
