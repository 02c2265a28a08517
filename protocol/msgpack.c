/* msgpack.c — the msgpack side of the codec: a bounded, allocation-free cursor reader that
 * validates untrusted frames, the packer glue onto gw_buf_t, and msgpack data -> JSON text. */

/* Why not msgpack_unpack(): msgpack-c's unpacker allocates arrays and maps by their *declared*
 * element count before it knows the frame holds them, so a 5-byte "array32 of 4G" asks for tens
 * of GB. This reader checks every declared length against the bytes actually left (an element
 * takes at least one byte), limits nesting, validates UTF-8 and allocates nothing; decoding work
 * is linear in the frame length. msgpack-c is used only to *write* (its packer picks the smallest
 * encodings, str8 included, exactly like Python's msgpack.packb). */

#include "proto_int.h"

#include <errno.h>

/* ---- reading -------------------------------------------------------------------------------- */

static uint64_t gw_proto_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Takes n bytes from c into *p when they are there. */
static int gw_proto_mp_take(gw_proto_mp_cur_t *c, uint64_t n, const uint8_t **p)
{
    if (n > (uint64_t)(c->end - c->p))
        return -EINVAL;
    *p = c->p;
    c->p += n;
    return 0;
}

/* Reads a big-endian length of `w` bytes. */
static int gw_proto_mp_len(gw_proto_mp_cur_t *c, int w, uint64_t *n)
{
    const uint8_t *p;
    if (gw_proto_mp_take(c, (uint64_t)w, &p) < 0)
        return -EINVAL;
    *n = gw_proto_be(p, w);
    return 0;
}

static int gw_proto_mp_payload(gw_proto_mp_cur_t *c, gw_proto_mp_item_t *it,
                               gw_proto_mp_type_t type, uint64_t n)
{
    it->type = type;
    it->n = (uint32_t)n;
    return gw_proto_mp_take(c, n, &it->p);
}

static int gw_proto_mp_container(gw_proto_mp_cur_t *c, gw_proto_mp_item_t *it,
                                 gw_proto_mp_type_t type, uint64_t n)
{
    it->type = type;
    it->n = (uint32_t)n;
    /* every element (key and value for maps) is at least one byte */
    uint64_t need = type == GW_MP_MAP ? 2 * n : n;
    return need > (uint64_t)(c->end - c->p) ? -EINVAL : 0;
}

static int gw_proto_mp_signed(gw_proto_mp_item_t *it, int64_t v)
{
    if (v >= 0) {
        it->type = GW_MP_UINT;
        it->u = (uint64_t)v;
    } else {
        it->type = GW_MP_INT;
        it->i = v;
    }
    return 0;
}

int gw_proto_mp_next(gw_proto_mp_cur_t *c, gw_proto_mp_item_t *it)
{
    const uint8_t *p;
    uint64_t n;
    if (c->p >= c->end)
        return -EINVAL;
    uint8_t b = *c->p++;
    it->f32 = 0;
    if (b <= 0x7f) {
        it->type = GW_MP_UINT;
        it->u = b;
        return 0;
    }
    if (b >= 0xe0)
        return gw_proto_mp_signed(it, (int8_t)b);
    if (b <= 0x8f)
        return gw_proto_mp_container(c, it, GW_MP_MAP, b & 0x0f);
    if (b <= 0x9f)
        return gw_proto_mp_container(c, it, GW_MP_ARRAY, b & 0x0f);
    if (b <= 0xbf)
        return gw_proto_mp_payload(c, it, GW_MP_STR, b & 0x1f);
    switch (b) {
    case 0xc0:
        it->type = GW_MP_NIL;
        return 0;
    case 0xc2:
    case 0xc3:
        it->type = GW_MP_BOOL;
        it->u = b & 1;
        return 0;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        if (gw_proto_mp_len(c, 1 << (b - 0xc4), &n) < 0)
            return -EINVAL;
        return gw_proto_mp_payload(c, it, GW_MP_BIN, n);
    case 0xc7:
    case 0xc8:
    case 0xc9:
        if (gw_proto_mp_len(c, 1 << (b - 0xc7), &n) < 0 || gw_proto_mp_take(c, 1, &p) < 0)
            return -EINVAL;
        it->ext = (int8_t)p[0];
        return gw_proto_mp_payload(c, it, GW_MP_EXT, n);
    case 0xca:
    case 0xcb:
        if (gw_proto_mp_take(c, b == 0xca ? 4 : 8, &p) < 0)
            return -EINVAL;
        it->type = GW_MP_FLOAT;
        if (b == 0xca) {
            uint32_t u32 = (uint32_t)gw_proto_be(p, 4);
            float f;
            memcpy(&f, &u32, 4);
            it->d = f;
            it->f32 = 1;
        } else {
            uint64_t u64 = gw_proto_be(p, 8);
            memcpy(&it->d, &u64, 8);
        }
        return 0;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        if (gw_proto_mp_len(c, 1 << (b - 0xcc), &n) < 0)
            return -EINVAL;
        it->type = GW_MP_UINT;
        it->u = n;
        return 0;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        int w = 1 << (b - 0xd0);
        if (gw_proto_mp_len(c, w, &n) < 0)
            return -EINVAL;
        /* sign-extend the w-byte two's complement value */
        int64_t v =
            w == 8 ? (int64_t)n : (int64_t)(n ^ (1ull << (8 * w - 1))) - (1ll << (8 * w - 1));
        return gw_proto_mp_signed(it, v);
    }
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        if (gw_proto_mp_take(c, 1, &p) < 0)
            return -EINVAL;
        it->ext = (int8_t)p[0];
        return gw_proto_mp_payload(c, it, GW_MP_EXT, 1u << (b - 0xd4));
    case 0xd9:
    case 0xda:
    case 0xdb:
        if (gw_proto_mp_len(c, 1 << (b - 0xd9), &n) < 0)
            return -EINVAL;
        return gw_proto_mp_payload(c, it, GW_MP_STR, n);
    case 0xdc:
    case 0xdd:
        if (gw_proto_mp_len(c, b == 0xdc ? 2 : 4, &n) < 0)
            return -EINVAL;
        return gw_proto_mp_container(c, it, GW_MP_ARRAY, n);
    case 0xde:
    case 0xdf:
        if (gw_proto_mp_len(c, b == 0xde ? 2 : 4, &n) < 0)
            return -EINVAL;
        return gw_proto_mp_container(c, it, GW_MP_MAP, n);
    default: /* 0xc1: never used */
        return -EINVAL;
    }
}

/* 1 when the value at c starts with an array or map header. Map keys must be scalars: JSON
 * writes a non-string key as a string holding the key's JSON text, so a container key nested in
 * a container key would double its escaping per level (a few hundred bytes -> gigabytes). */
static int gw_proto_mp_container_at(const gw_proto_mp_cur_t *c)
{
    if (c->p >= c->end)
        return 0;
    uint8_t b = *c->p;
    return (b >= 0x80 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf);
}

int gw_proto_mp_skip(gw_proto_mp_cur_t *c, int depth)
{
    gw_proto_mp_item_t it;
    if (gw_proto_mp_next(c, &it) < 0)
        return -EINVAL;
    if (it.type == GW_MP_STR)
        return gw_proto_utf8_valid(it.p, it.n) ? 0 : -EINVAL;
    if (it.type != GW_MP_ARRAY && it.type != GW_MP_MAP)
        return 0;
    if (depth > GW_PROTO_MAX_DEPTH)
        return -EINVAL;
    uint64_t n = it.type == GW_MP_MAP ? 2 * (uint64_t)it.n : it.n;
    for (uint64_t i = 0; i < n; i++) {
        if (it.type == GW_MP_MAP && i % 2 == 0 && gw_proto_mp_container_at(c))
            return -EINVAL; /* a map key that is an array or a map */
        if (gw_proto_mp_skip(c, depth + 1) < 0)
            return -EINVAL;
    }
    return 0;
}

int gw_proto_mp_valid(const uint8_t *p, size_t n)
{
    gw_proto_mp_cur_t c = {p, p + n};
    return n > 0 && gw_proto_mp_skip(&c, 1) == 0 && c.p == c.end;
}

/* ---- writing -------------------------------------------------------------------------------- */

static int gw_proto_mp_write(void *data, const char *buf, size_t len)
{
    gw_buf_append(data, buf, len);
    return 0;
}

void gw_proto_mp_packer(msgpack_packer *pk, gw_buf_t *out)
{
    msgpack_packer_init(pk, out, gw_proto_mp_write);
}

/* ---- msgpack -> JSON ------------------------------------------------------------------------ */

/* Writes one value at nesting depth `depth` as JSON text. 0 or -EINVAL (out then holds a
 * partial value: the caller rolls back). */
static int gw_proto_mp_json(gw_proto_mp_cur_t *c, int depth, gw_buf_t *out)
{
    gw_proto_mp_item_t it;
    if (gw_proto_mp_next(c, &it) < 0)
        return -EINVAL;
    switch (it.type) {
    case GW_MP_NIL:
        gw_buf_append_str(out, "null");
        return 0;
    case GW_MP_BOOL:
        gw_buf_append_str(out, it.u ? "true" : "false");
        return 0;
    case GW_MP_UINT:
        gw_buf_appendf(out, "%llu", (unsigned long long)it.u);
        return 0;
    case GW_MP_INT:
        gw_buf_appendf(out, "%lld", (long long)it.i);
        return 0;
    case GW_MP_FLOAT:
        gw_proto_json_double(out, it.d);
        return 0;
    case GW_MP_STR:
        if (!gw_proto_utf8_valid(it.p, it.n))
            return -EINVAL;
        gw_proto_json_str(out, (const char *)it.p, it.n);
        return 0;
    case GW_MP_BIN:
        gw_buf_append_str(out, "{\"$bin\":\"");
        gw_proto_base64_enc(out, it.p, it.n);
        gw_buf_append_str(out, "\"}");
        return 0;
    case GW_MP_EXT:
        gw_buf_appendf(out, "{\"$ext\":[%d,\"", it.ext);
        gw_proto_base64_enc(out, it.p, it.n);
        gw_buf_append_str(out, "\"]}");
        return 0;
    case GW_MP_ARRAY:
        if (depth > GW_PROTO_MAX_DEPTH)
            return -EINVAL;
        gw_buf_append(out, "[", 1);
        for (uint32_t i = 0; i < it.n; i++) {
            if (i)
                gw_buf_append(out, ",", 1);
            if (gw_proto_mp_json(c, depth + 1, out) < 0)
                return -EINVAL;
        }
        gw_buf_append(out, "]", 1);
        return 0;
    case GW_MP_MAP:
        if (depth > GW_PROTO_MAX_DEPTH)
            return -EINVAL;
        gw_buf_append(out, "{", 1);
        for (uint32_t i = 0; i < it.n; i++) {
            if (i)
                gw_buf_append(out, ",", 1);
            gw_proto_mp_cur_t k = *c;
            gw_proto_mp_item_t kit;
            if (gw_proto_mp_next(&k, &kit) < 0 || kit.type == GW_MP_ARRAY || kit.type == GW_MP_MAP)
                return -EINVAL;
            if (kit.type == GW_MP_STR) {
                if (gw_proto_mp_json(c, depth + 1, out) < 0)
                    return -EINVAL;
            } else { /* a scalar non-string key: its JSON text becomes the key */
                gw_buf_t kb;
                gw_buf_init(&kb, 0);
                int rc = gw_proto_mp_json(c, depth + 1, &kb);
                if (rc == 0)
                    gw_proto_json_str(out, (const char *)gw_buf_data(&kb), kb.len);
                gw_buf_free(&kb);
                if (rc < 0)
                    return -EINVAL;
            }
            gw_buf_append(out, ":", 1);
            if (gw_proto_mp_json(c, depth + 1, out) < 0)
                return -EINVAL;
        }
        gw_buf_append(out, "}", 1);
        return 0;
    }
    return -EINVAL;
}

int gw_data_msgpack_to_json(const uint8_t *mp, size_t len, gw_buf_t *out)
{
    gw_proto_mp_cur_t c = {mp, mp + len};
    size_t saved = out->len;
    if (gw_proto_mp_json(&c, 1, out) < 0 || c.p != c.end) {
        out->len = saved;
        return -EINVAL;
    }
    return 0;
}

/* ---- reading a map's fields (Redis-side messages, schema.c) -------------------------------- */

int gw_data_map_fields(const uint8_t *p, size_t n, gw_data_field_t *f, size_t nf)
{
    for (size_t k = 0; k < nf; k++) {
        f[k].p = NULL;
        f[k].n = 0;
    }
    if (!gw_proto_mp_valid(p, n))
        return -EINVAL;
    gw_proto_mp_cur_t c = {p, p + n};
    gw_proto_mp_item_t it, key;
    if (gw_proto_mp_next(&c, &it) < 0 || it.type != GW_MP_MAP)
        return -EINVAL;
    for (uint32_t i = 0; i < it.n; i++) {
        if (gw_proto_mp_next(&c, &key) < 0) /* a scalar (checked above): consumed whole */
            return -EINVAL;
        const uint8_t *v = c.p;
        if (gw_proto_mp_skip(&c, 2) < 0)
            return -EINVAL;
        if (key.type != GW_MP_STR)
            continue;
        for (size_t k = 0; k < nf; k++) {
            if (strlen(f[k].key) != key.n || memcmp(f[k].key, key.p, key.n) != 0)
                continue;
            if (f[k].p) /* the same key twice: which one counts would be a guess */
                return -EINVAL;
            f[k].p = v;
            f[k].n = (size_t)(c.p - v);
        }
    }
    return 0;
}

int gw_data_as_str(const uint8_t *p, size_t n, gw_slice_t *s)
{
    if (!p)
        return -EINVAL;
    gw_proto_mp_cur_t c = {p, p + n};
    gw_proto_mp_item_t it;
    if (gw_proto_mp_next(&c, &it) < 0 || it.type != GW_MP_STR || c.p != c.end ||
        !gw_proto_utf8_valid(it.p, it.n))
        return -EINVAL;
    *s = (gw_slice_t){(const char *)it.p, it.n};
    return 0;
}

int gw_data_as_int(const uint8_t *p, size_t n, int64_t *v)
{
    if (!p)
        return -EINVAL;
    gw_proto_mp_cur_t c = {p, p + n};
    gw_proto_mp_item_t it;
    if (gw_proto_mp_next(&c, &it) < 0 || c.p != c.end)
        return -EINVAL;
    if (it.type == GW_MP_INT)
        *v = it.i;
    else if (it.type == GW_MP_UINT && it.u <= INT64_MAX)
        *v = (int64_t)it.u;
    else
        return -EINVAL;
    return 0;
}
