/* json.c — the JSON side of the codec: UTF-8 checks, the compact JSON text writer (strings and
 * Python-repr floats), base64, and JSON data -> msgpack conversion with the $bin/$ext rule. */
#include "proto_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at p[0..n) (n >= 1), or 0 when it is not one. */
static size_t gw_proto_utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t b = p[0];
    if (b < 0x80)
        return 1;
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (b >= 0xc2 && b <= 0xdf) {
        len = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
        len = 3;
        if (b == 0xe0)
            lo = 0xa0; /* no overlongs */
        else if (b == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4;
        if (b == 0xf0)
            lo = 0x90; /* no overlongs */
        else if (b == 0xf4)
            hi = 0x8f; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

int gw_proto_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = gw_proto_utf8_seq(p + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

void gw_proto_utf8_sanitize(gw_buf_t *out, const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t run = 0, i = 0;
    while (i < n) {
        size_t k = p[i] < 0x80 ? 1 : gw_proto_utf8_seq(p + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        gw_buf_append(out, p + run, i - run);
        gw_buf_append(out, "\xef\xbf\xbd", 3);
        run = ++i;
    }
    gw_buf_append(out, p + run, n - run);
}

/* ---- JSON text writer ----------------------------------------------------------------------- */

void gw_proto_json_str(gw_buf_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s;
    gw_buf_append(out, "\"", 1);
    size_t run = 0; /* start of bytes not yet copied */
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        if (b >= 0x20 && b != '"' && b != '\\' && b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0x80) {
            size_t k = gw_proto_utf8_seq(p + i, n - i);
            if (k) {
                i += k;
                continue;
            }
        }
        gw_buf_append(out, p + run, i - run);
        char esc[8];
        const char *e = esc;
        size_t en = 2;
        switch (b) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        case '\b':
            e = "\\b";
            break;
        case '\f':
            e = "\\f";
            break;
        default:
            if (b >= 0x80) { /* invalid UTF-8 byte: U+FFFD */
                e = "\xef\xbf\xbd";
                en = 3;
            } else {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[b >> 4];
                esc[5] = hex[b & 15];
                en = 6;
            }
        }
        gw_buf_append(out, e, en);
        run = ++i;
    }
    gw_buf_append(out, p + run, n - run);
    gw_buf_append(out, "\"", 1);
}

/* Python's float repr: the shortest digit string that reads back as the same double, written in
 * positional notation when the decimal exponent is in [-4, 16) and with an exponent otherwise
 * (at least two exponent digits, explicit sign). Integral values keep a ".0". */
void gw_proto_json_double(gw_buf_t *out, double d)
{
    if (!isfinite(d)) {
        gw_buf_append_str(out, "null");
        return;
    }
    /* Fewest significant digits (1..17) that read back as d. Round-tripping is monotonic in the
     * digit count (the correctly rounded p+1 digits are at least as close as the p digits), so
     * binary search: 4-5 conversions instead of up to 17. 17 digits always round-trip. */
    char e[40];
    int lo = 1, hi = 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        snprintf(e, sizeof(e), "%.*e", mid - 1, d);
        if (strtod(e, NULL) == d)
            hi = mid;
        else
            lo = mid + 1;
    }
    snprintf(e, sizeof(e), "%.*e", lo - 1, d);
    /* e is "[-]D[.DDD]e(+|-)XX" */
    char dig[24] = {0};
    size_t nd = 0;
    const char *q = e;
    int neg = *q == '-';
    if (neg)
        q++;
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9' && nd < sizeof(dig))
            dig[nd++] = *q;
    int exp = *q == 'e' ? atoi(q + 1) : 0;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    int decpt = exp + 1; /* value = 0.DIGITS * 10^decpt */
    char s[64];
    size_t k = 0;
    if (neg)
        s[k++] = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            s[k++] = '0';
            s[k++] = '.';
            for (int z = 0; z < -decpt; z++)
                s[k++] = '0';
            memcpy(s + k, dig, nd);
            k += nd;
        } else if ((size_t)decpt < nd) {
            memcpy(s + k, dig, (size_t)decpt);
            k += (size_t)decpt;
            s[k++] = '.';
            memcpy(s + k, dig + decpt, nd - (size_t)decpt);
            k += nd - (size_t)decpt;
        } else {
            memcpy(s + k, dig, nd);
            k += nd;
            for (size_t z = nd; z < (size_t)decpt; z++)
                s[k++] = '0';
            s[k++] = '.';
            s[k++] = '0';
        }
        gw_buf_append(out, s, k);
    } else {
        s[k++] = dig[0];
        if (nd > 1) {
            s[k++] = '.';
            memcpy(s + k, dig + 1, nd - 1);
            k += nd - 1;
        }
        gw_buf_append(out, s, k);
        gw_buf_appendf(out, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

/* ---- base64 --------------------------------------------------------------------------------- */

static const char gw_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void gw_proto_base64_enc(gw_buf_t *out, const uint8_t *p, size_t n)
{
    char *o = (char *)gw_buf_reserve(out, (n + 2) / 3 * 4);
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        o[k++] = gw_b64[(v >> 18) & 63];
        o[k++] = gw_b64[(v >> 12) & 63];
        o[k++] = i + 1 < n ? gw_b64[(v >> 6) & 63] : '=';
        o[k++] = i + 2 < n ? gw_b64[v & 63] : '=';
    }
    out->len += k;
}

static int gw_proto_b64_val(uint8_t c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

long gw_proto_base64_decode(const char *s, size_t n, uint8_t *out, size_t cap, int url)
{
    if (!url) { /* padded to a multiple of 4 with at most two '=' */
        if (n % 4)
            return -EINVAL;
        for (int k = 0; k < 2 && n && s[n - 1] == '='; k++)
            n--;
    }
    if (n % 4 == 1) /* 6 bits: not even one byte */
        return -EINVAL;
    if (n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0) > cap)
        return -E2BIG;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = gw_proto_b64_val((uint8_t)s[i], url);
        if (v < 0) /* also '=' inside, the other alphabet's two, whitespace and NUL */
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* unused trailing bits set: a second spelling of the same bytes */
        return -EINVAL;
    return (long)o;
}

/* ---- JSON -> msgpack ------------------------------------------------------------------------ */

int gw_proto_json_nesting_ok(const uint8_t *p, size_t n, int max)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return 0;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 1;
}

/* The single key of a one-key object, or NULL. */
static const char *gw_proto_json_only_key(const json_t *v, json_t **val)
{
    if (json_object_size(v) != 1)
        return NULL;
    void *it = json_object_iter((json_t *)v);
    *val = json_object_iter_value(it);
    return json_object_iter_key(it);
}

static int gw_proto_json_is_wrapper(const json_t *v)
{
    json_t *val;
    const char *k = gw_proto_json_only_key(v, &val);
    return k && (strcmp(k, "$bin") == 0 || strcmp(k, "$ext") == 0);
}

int gw_proto_json_model_depth(const json_t *v)
{
    int max = 0;
    size_t i;
    const char *k;
    json_t *c;
    if (json_is_array(v)) {
        json_array_foreach(v, i, c)
        {
            int d = gw_proto_json_model_depth(c);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    if (json_is_object(v) && !gw_proto_json_is_wrapper(v)) {
        json_object_foreach((json_t *)v, k, c)
        {
            int d = gw_proto_json_model_depth(c);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    return 0;
}

/* Packs a base64 string as bin (ext < 0x100 unused) or as ext of type `type`. */
static int gw_proto_json_pack_b64(const json_t *s, int is_ext, int type, msgpack_packer *pk)
{
    if (!json_is_string(s))
        return -EINVAL;
    size_t n = json_string_length(s);
    uint8_t small[48];
    uint8_t *o = n / 4 * 3 <= sizeof(small) ? small : gw_malloc(n / 4 * 3);
    long k = gw_proto_base64_decode(json_string_value(s), n, o, n / 4 * 3, 0);
    if (k >= 0) {
        if (is_ext) {
            msgpack_pack_ext(pk, (size_t)k, (int8_t)type);
            msgpack_pack_ext_body(pk, o, (size_t)k);
        } else {
            msgpack_pack_bin(pk, (size_t)k);
            msgpack_pack_bin_body(pk, o, (size_t)k);
        }
    }
    if (o != small)
        free(o);
    return k < 0 ? -EINVAL : 0;
}

int gw_proto_json_pack(const json_t *v, msgpack_packer *pk)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        msgpack_pack_nil(pk);
        return 0;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        return 0;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        return 0;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(v));
        return 0;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        return 0;
    case JSON_STRING:
        msgpack_pack_str(pk, json_string_length(v));
        msgpack_pack_str_body(pk, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_ARRAY: {
        size_t i;
        json_t *c;
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, c)
        {
            if (gw_proto_json_pack(c, pk) < 0)
                return -EINVAL;
        }
        return 0;
    }
    case JSON_OBJECT: {
        json_t *val;
        const char *k = gw_proto_json_only_key(v, &val);
        if (k && strcmp(k, "$bin") == 0)
            return gw_proto_json_pack_b64(val, 0, 0, pk);
        if (k && strcmp(k, "$ext") == 0) {
            json_t *t = json_array_get(val, 0);
            if (json_array_size(val) != 2 || !json_is_integer(t) || json_integer_value(t) < -128 ||
                json_integer_value(t) > 127)
                return -EINVAL;
            return gw_proto_json_pack_b64(json_array_get(val, 1), 1, (int)json_integer_value(t),
                                          pk);
        }
        size_t kn;
        json_t *c;
        msgpack_pack_map(pk, json_object_size(v));
        json_object_keylen_foreach((json_t *)v, k, kn, c)
        {
            msgpack_pack_str(pk, kn);
            msgpack_pack_str_body(pk, k, kn);
            if (gw_proto_json_pack(c, pk) < 0)
                return -EINVAL;
        }
        return 0;
    }
    }
    return -EINVAL;
}

/* JSON data may nest two levels deeper than the model depth: {"$ext":[..]} is two JSON levels
 * for one scalar. The exact limit is checked on the tree (gw_proto_json_model_depth). */
int gw_data_json_to_msgpack(const uint8_t *json, size_t len, gw_buf_t *out)
{
    if (!gw_proto_json_nesting_ok(json, len, GW_PROTO_MAX_DEPTH + 2))
        return -EINVAL;
    json_error_t jerr;
    json_t *v = json_loadb((const char *)json, len,
                           JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (v == NULL)
        return -EINVAL;
    size_t saved = out->len;
    int rc = -EINVAL;
    if (gw_proto_json_model_depth(v) <= GW_PROTO_MAX_DEPTH) {
        msgpack_packer pk;
        gw_proto_mp_packer(&pk, out);
        rc = gw_proto_json_pack(v, &pk);
    }
    json_decref(v);
    if (rc < 0)
        out->len = saved;
    return rc;
}
