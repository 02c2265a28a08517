/* proto_int.h — internals shared by the protocol/ files only (not part of the public API):
 * the bounded msgpack cursor, the JSON text writer, UTF-8 and base64 helpers. */
#ifndef CARDGW_PROTO_INT_H
#define CARDGW_PROTO_INT_H

#include "cardgw/proto.h"

#include <jansson.h>
#include <msgpack.h>

/* ---- text helpers (json.c) ------------------------------------------------------------------ */

/* 1 when p[0..n) is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). */
int gw_proto_utf8_valid(const uint8_t *p, size_t n);
/* Appends s[0..n) with every byte that is not part of well-formed UTF-8 replaced by U+FFFD. */
void gw_proto_utf8_sanitize(gw_buf_t *out, const char *s, size_t n);
/* Appends s as a JSON string literal, escaped exactly like Python's json.dumps with
 * ensure_ascii=False; an invalid UTF-8 byte is written as U+FFFD. */
void gw_proto_json_str(gw_buf_t *out, const char *s, size_t n);
/* Appends d as Python's repr() writes it (shortest round-trip digits); NaN/Inf as null. */
void gw_proto_json_double(gw_buf_t *out, double d);
/* Appends the standard base64 (with padding) of p[0..n). */
void gw_proto_base64_enc(gw_buf_t *out, const uint8_t *p, size_t n);
/* 1 when the JSON text nests arrays/objects no deeper than max (a cheap guard run before the
 * parser builds a tree); strings are skipped, syntax is left to the parser. */
int gw_proto_json_nesting_ok(const uint8_t *p, size_t n, int max);
/* Depth of a parsed value in the msgpack data model: a container counts 1 plus its deepest
 * child, a {"$bin":..}/{"$ext":..} wrapper counts as a scalar (0). */
int gw_proto_json_model_depth(const json_t *v);
/* Packs a parsed JSON value as msgpack (the $bin/$ext rule applied). 0 or -EINVAL. */
int gw_proto_json_pack(const json_t *v, msgpack_packer *pk);

/* ---- msgpack (msgpack.c) -------------------------------------------------------------------- */

typedef enum {
    GW_MP_NIL,
    GW_MP_BOOL,
    GW_MP_UINT, /* any integer >= 0, whatever its encoding */
    GW_MP_INT,  /* a negative integer */
    GW_MP_FLOAT,
    GW_MP_STR,
    GW_MP_BIN,
    GW_MP_EXT,
    GW_MP_ARRAY,
    GW_MP_MAP,
} gw_proto_mp_type_t;

typedef struct {
    gw_proto_mp_type_t type;
    int f32;          /* FLOAT: encoded as float32 */
    uint64_t u;       /* UINT; BOOL (0/1) */
    int64_t i;        /* INT */
    double d;         /* FLOAT */
    const uint8_t *p; /* STR, BIN, EXT payload */
    uint32_t n;       /* STR, BIN, EXT payload length; ARRAY, MAP element/pair count */
    int8_t ext;       /* EXT type */
} gw_proto_mp_item_t;

/* A read position inside one frame: nothing is ever read at or past end. */
typedef struct {
    const uint8_t *p, *end;
} gw_proto_mp_cur_t;

/* Reads one value header. Scalars (str, bin, ext included) are consumed whole; for an array or
 * map only the header is consumed and the caller reads the n (2n) elements that follow. Every
 * declared length is checked against the bytes left, so a 4 GB claim fails here at once.
 * Does not check UTF-8. 0 or -EINVAL. */
int gw_proto_mp_next(gw_proto_mp_cur_t *c, gw_proto_mp_item_t *it);
/* Validates and skips one whole value whose containers start at nesting depth `depth` (1 for a
 * value at top level): structure, lengths, UTF-8 of every str, depth <= GW_PROTO_MAX_DEPTH,
 * map keys scalars (not arrays or maps).
 * Allocates nothing. 0 or -EINVAL. */
int gw_proto_mp_skip(gw_proto_mp_cur_t *c, int depth);
/* Sets up pk to append to out. */
void gw_proto_mp_packer(msgpack_packer *pk, gw_buf_t *out);
/* 1 when p[0..n) is exactly one valid msgpack value within GW_PROTO_MAX_DEPTH. */
int gw_proto_mp_valid(const uint8_t *p, size_t n);

#endif
