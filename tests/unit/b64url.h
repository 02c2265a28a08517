/* b64url.h — a base64url encoder (no padding) for the tests that build JWTs: written apart from
 * gateway/jwt.c's decoder on purpose, so that the two check each other. */
#ifndef CARDGW_TEST_B64URL_H
#define CARDGW_TEST_B64URL_H

#include <stddef.h>
#include <stdint.h>

/* Writes the encoding of in[0..n) to out (room for 4 * n / 3 + 4 bytes), NUL-terminated; returns
 * its length. */
static inline size_t b64url_encode(const uint8_t *in, size_t n, char *out)
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
    return o;
}

#endif
