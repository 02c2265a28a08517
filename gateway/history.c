/* history.c — one Lua script reads a channel's epoch, top offset and retained publications
 * atomically (creating the epoch when missing, so every position a client gets is concrete). */
#include "cardgw/history.h"
#include "cardgw/common.h"
#include "cardgw/schema.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "history_lua.h" /* generated from scripts/history.lua: gw_history_lua */
#include "keep_lua.h"    /* generated from scripts/keep.lua: gw_keep_lua */

typedef struct {
    gw_history_cb cb;
    void *priv;
} gw_hist_op_t;

static gw_script_t gw_history_script;

/* Fills p from one stream entry [id, [field, value, ...]]; returns 0 or -EINVAL. */
static int gw_history_entry(const redisReply *e, gw_pub_t *p)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
        return -EINVAL;
    memset(p, 0, sizeof(*p));
    p->offset = strtoull(e->element[0]->str, NULL, 10);
    const redisReply *f = e->element[1];
    for (size_t j = 0; j + 1 < f->elements; j += 2) {
        const redisReply *k = f->element[j], *v = f->element[j + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (!strcmp(k->str, "d")) {
            p->data.p = (const uint8_t *)v->str;
            p->data.n = v->len;
        } else if (!strcmp(k->str, "f")) {
            p->data.fmt = v->str[0] == 'j' ? GW_DATA_JSON : GW_DATA_MSGPACK;
        } else if (!strcmp(k->str, "u")) {
            p->from = (gw_slice_t){v->str, v->len};
        }
    }
    return p->data.p && p->offset ? 0 : -EINVAL;
}

static void gw_on_history(void *priv, redisReply *r)
{
    gw_hist_op_t *op = priv;
    gw_history_t h;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[2]->type != REDIS_REPLY_ARRAY) {
        op->cb(op->priv, NULL);
        free(op);
        return;
    }
    const redisReply *entries = r->element[2];
    h.epoch = r->element[0]->str;
    h.top = strtoull(r->element[1]->str, NULL, 10);
    h.pubs = gw_calloc(entries->elements ? entries->elements : 1, sizeof(*h.pubs));
    h.npubs = 0;
    h.cut = r->elements > 3 && r->element[3]->type == REDIS_REPLY_INTEGER && r->element[3]->integer;
    for (size_t i = 0; i < entries->elements; i++)
        if (gw_history_entry(entries->element[i], &h.pubs[h.npubs]) == 0)
            h.npubs++;
    op->cb(op->priv, &h);
    free(h.pubs);
    free(op);
}

int gw_history_read(const gw_redis_t *r, const char *ch, size_t n, gw_hist_mode_t mode,
                    uint64_t after, uint32_t count, uint32_t meta_ttl_s, gw_history_cb cb,
                    void *priv)
{
    return gw_history_read_max(r, ch, n, mode, after, count, meta_ttl_s, 0, cb, priv);
}

int gw_history_read_max(const gw_redis_t *r, const char *ch, size_t n, gw_hist_mode_t mode,
                        uint64_t after, uint32_t count, uint32_t meta_ttl_s, size_t max_bytes,
                        gw_history_cb cb, void *priv)
{
    char km[GW_SCHEMA_KEY_MAX], kx[GW_SCHEMA_KEY_MAX], a[24], c[16], t[16], mb[24];
    size_t kmn = gw_schema_channel_key(km, sizeof(km), ch, n, GW_KEY_META);
    size_t kxn = gw_schema_channel_key(kx, sizeof(kx), ch, n, GW_KEY_STREAM);
    int an = snprintf(a, sizeof(a), "%" PRIu64, after);
    int cn = snprintf(c, sizeof(c), "%u", count ? count : 1);
    int tn = snprintf(t, sizeof(t), "%u", meta_ttl_s ? meta_ttl_s : 1);
    const char *m = mode == GW_HIST_AFTER ? "a" : mode == GW_HIST_TAIL ? "t" : "p";
    int mbn = snprintf(mb, sizeof(mb), "%zu", max_bytes);
    const char *argv[] = {"2", km, kx, m, a, c, t, mb};
    size_t argvlen[] = {1, kmn, kxn, 1, (size_t)an, (size_t)cn, (size_t)tn, (size_t)mbn};
    gw_hist_op_t *op = gw_malloc(sizeof(*op));
    op->cb = cb;
    op->priv = priv;
    if (!gw_history_script.src)
        gw_script_init(&gw_history_script, gw_history_lua);
    if (gw_redis_eval(r, &gw_history_script, gw_on_history, op, 8, argv, argvlen) != 0) {
        free(op);
        return -ENOTCONN;
    }
    return 0;
}

/* ---- the position alone ---------------------------------------------------------------------- */

typedef struct {
    gw_position_cb cb;
    void *priv;
} gw_pos_op_t;

static void gw_on_position_reply(void *priv, redisReply *r)
{
    gw_pos_op_t *op = priv;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        op->cb(op->priv, -EIO, NULL, 0);
    } else {
        const redisReply *e = r->element[0], *s = r->element[1];
        op->cb(op->priv, 0, e->type == REDIS_REPLY_STRING ? e->str : "",
               s->type == REDIS_REPLY_STRING ? strtoull(s->str, NULL, 10) : 0);
    }
    free(op);
}

static gw_script_t gw_keep_script;

static void gw_on_keep(void *priv, redisReply *r)
{
    (void)priv; /* nothing waits for it: an error leaves the lifetime as it was */
    (void)r;
}

int gw_history_position(const gw_redis_t *r, const char *ch, size_t n, gw_position_cb cb,
                        void *priv)
{
    return gw_history_position_keep(r, ch, n, 0, cb, priv);
}

int gw_history_position_keep(const gw_redis_t *r, const char *ch, size_t n, uint32_t keep_ttl_s,
                             gw_position_cb cb, void *priv)
{
    char key[GW_SCHEMA_KEY_MAX], t[16];
    const char *argv[] = {"HMGET", key, "e", "s"};
    size_t argvlen[] = {5, gw_schema_channel_key(key, sizeof(key), ch, n, GW_KEY_META), 1, 1};
    if (keep_ttl_s) { /* scripts/keep.lua, pipelined before the read; nothing waits for it */
        int tn = snprintf(t, sizeof(t), "%u", keep_ttl_s);
        const char *ev[] = {"1", key, t};
        size_t evlen[] = {1, argvlen[1], (size_t)tn};
        if (!gw_keep_script.src)
            gw_script_init(&gw_keep_script, gw_keep_lua);
        if (gw_redis_eval(r, &gw_keep_script, gw_on_keep, NULL, 3, ev, evlen) != 0)
            return -ENOTCONN;
    }
    gw_pos_op_t *op = gw_malloc(sizeof(*op));
    op->cb = cb;
    op->priv = priv;
    if (gw_redis_command(r, gw_on_position_reply, op, 4, argv, argvlen) != 0) {
        free(op);
        return -ENOTCONN;
    }
    return 0;
}
