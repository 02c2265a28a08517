/* online.c — online status per user across nodes and devices: this node's uid -> connection
 * count (kept in the admission table's per-user entries), mirrored into its own Redis hash (set,
 * not increment: every write is the truth). */
#include "cardgw/online.h"
#include "cardgw/admission.h"
#include "cardgw/log.h"
#include "cardgw/node.h"
#include "cardgw/registry.h"
#include "cardgw/schema.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define GW_ONLINE_CHUNK      512 /* uid/count pairs per HSET of a rewrite */
#define GW_ONLINE_FIRST_TICK 200 /* ms after start: the first refresh (or the first rewrite) */

struct gw_online {
    gw_node_t *node;
    uv_timer_t timer;
    char key[GW_SCHEMA_KEY_MAX]; /* cardgw:online:<node id> */
    size_t keylen;
    char ttl[24]; /* the hash's lifetime in ms, as PEXPIRE takes it */
    int dirty;    /* a write failed or the hash was not found as written: rewrite it whole */
    int left;     /* leaving or stopped: nothing more is written */
    gw_online_left_cb left_cb;
    void *left_priv;
    gw_log_limit_t log;
};

/* ---- writing this node's hash ---------------------------------------------------------------- */

static void gw_online_failed(gw_online_t *o, const char *why)
{
    o->dirty = 1;
    if (why && !o->left)
        gw_log_every(&o->log, GW_LOG_EVERY_MS, GW_LOG_WARN, "online", "write failed: %s", why);
}

static void gw_online_on_write(void *priv, redisReply *r)
{
    if (!r || r->type == REDIS_REPLY_ERROR)
        gw_online_failed(priv, r ? r->str : NULL);
}

static void gw_online_on_exec(void *priv, redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        gw_online_failed(priv, r && r->type == REDIS_REPLY_ERROR ? r->str : NULL);
        return;
    }
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_ERROR)
            gw_online_failed(priv, r->element[i]->str);
}

static int gw_online_cmd(gw_online_t *o, gw_redis_reply_cb cb, void *priv, int argc,
                         const char **argv, const size_t *argvlen)
{
    return gw_redis_command(o->node->redis, cb, priv, argc, argv, argvlen);
}

/* The user's count on this node (0: the field goes), the hash's lifetime, and last_seen. Three
 * commands in one pipelined write, no round trip waited for. */
static void gw_online_write_user(gw_online_t *o, const char *uid, uint32_t count)
{
    char cnt[16], now[24];
    if (o->left)
        return;
    size_t un = strlen(uid);
    int cn = snprintf(cnt, sizeof(cnt), "%" PRIu32, count);
    int nn = snprintf(now, sizeof(now), "%" PRIu64, gw_wall_ms());
    const char *set[] = {count ? "HSET" : "HDEL", o->key, uid, cnt};
    size_t setlen[] = {4, o->keylen, un, (size_t)cn};
    const char *exp[] = {"PEXPIRE", o->key, o->ttl};
    size_t explen[] = {7, o->keylen, strlen(o->ttl)};
    const char *seen[] = {"HSET", GW_SCHEMA_SEEN, uid, now};
    size_t seenlen[] = {4, strlen(GW_SCHEMA_SEEN), un, (size_t)nn};
    if (gw_online_cmd(o, gw_online_on_write, o, count ? 4 : 3, set, setlen) != 0 ||
        gw_online_cmd(o, gw_online_on_write, o, 3, exp, explen) != 0 ||
        gw_online_cmd(o, gw_online_on_write, o, 4, seen, seenlen) != 0)
        gw_online_failed(o, NULL); /* Redis is down: the rewrite after it is back repairs */
}

/* A rewrite in progress: HSETs of up to GW_ONLINE_CHUNK uid/value pairs. */
typedef struct {
    gw_online_t *o;
    gw_redis_reply_cb cb;
    const char **argv;
    size_t *argvlen;
    char (*nums)[24];
    char now[24];
    int argc, nn, seen;
} gw_online_batch_t;

static int gw_online_batch_send(gw_online_batch_t *b)
{
    int rc = gw_online_cmd(b->o, b->cb, b->o, b->argc, b->argv, b->argvlen);
    b->argc = 2;
    return rc;
}

static int gw_online_batch_add(void *priv, const char *uid, uint32_t count)
{
    gw_online_batch_t *b = priv;
    char *num = b->nums[(b->argc - 2) / 2];
    b->argv[b->argc] = uid;
    b->argvlen[b->argc++] = strlen(uid);
    b->argv[b->argc] = b->seen ? b->now : num;
    b->argvlen[b->argc++] =
        b->seen ? (size_t)b->nn : (size_t)snprintf(num, sizeof(*b->nums), "%" PRIu32, count);
    return b->argc == 2 + 2 * GW_ONLINE_CHUNK ? gw_online_batch_send(b) : 0;
}

/* Sends the users online in HSETs of up to GW_ONLINE_CHUNK pairs (key = the hash, value = the
 * count; or GW_SCHEMA_SEEN with value = now when seen is set). Returns 0 or -ENOTCONN. */
static int gw_online_send_table(gw_online_t *o, int seen, gw_redis_reply_cb cb)
{
    gw_online_batch_t b = {.o = o,
                           .cb = cb,
                           .argv = gw_malloc((2 + 2 * GW_ONLINE_CHUNK) * sizeof(*b.argv)),
                           .argvlen = gw_malloc((2 + 2 * GW_ONLINE_CHUNK) * sizeof(*b.argvlen)),
                           .nums = gw_malloc(GW_ONLINE_CHUNK * sizeof(*b.nums))};
    b.nn = snprintf(b.now, sizeof(b.now), "%" PRIu64, gw_wall_ms());
    b.seen = seen;
    b.argc = 2;
    b.argv[0] = "HSET";
    b.argvlen[0] = 4;
    b.argv[1] = seen ? GW_SCHEMA_SEEN : o->key;
    b.argvlen[1] = seen ? strlen(GW_SCHEMA_SEEN) : o->keylen;
    int rc = gw_admission_foreach_online(o->node->admission, gw_online_batch_add, &b);
    if (rc == 0 && b.argc > 2)
        rc = gw_online_batch_send(&b);
    free(b.argv);
    free(b.argvlen);
    free(b.nums);
    return rc;
}

/* Replaces the node's hash by the table in one transaction (nobody reads a half-written one). */
static void gw_online_rewrite(gw_online_t *o)
{
    const char *del[] = {"DEL", o->key};
    size_t dellen[] = {3, o->keylen};
    if (o->left)
        return;
    o->dirty = 0;
    size_t nusers = gw_admission_users_online(o->node->admission);
    if (nusers == 0) {
        if (gw_online_cmd(o, gw_online_on_write, o, 2, del, dellen) != 0)
            gw_online_failed(o, NULL);
        return;
    }
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    size_t multilen[] = {5}, execlen[] = {4};
    const char *exp[] = {"PEXPIRE", o->key, o->ttl};
    size_t explen[] = {7, o->keylen, strlen(o->ttl)};
    if (gw_online_cmd(o, gw_online_on_write, o, 1, multi, multilen) != 0) {
        gw_online_failed(o, NULL);
        return;
    }
    /* the connection cannot go down between these calls (that happens in callbacks only), so
     * once MULTI went every command follows it and EXEC closes the transaction */
    gw_online_cmd(o, gw_online_on_write, o, 2, del, dellen);
    gw_online_send_table(o, 0, gw_online_on_write);
    gw_online_cmd(o, gw_online_on_write, o, 3, exp, explen);
    gw_online_cmd(o, gw_online_on_exec, o, 1, exec, execlen);
    gw_debug("online", "%s rewritten: %zu users", o->key, nusers);
}

typedef struct {
    gw_online_t *o;
    size_t expect; /* users in the table when HLEN was sent */
} gw_online_check_t;

/* HLEN answered: every write before it was applied, so it must count the table's users. */
static void gw_online_on_hlen(void *priv, redisReply *r)
{
    gw_online_check_t *ck = priv;
    gw_online_t *o = ck->o;
    size_t expect = ck->expect;
    free(ck);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        gw_online_failed(o, r && r->type == REDIS_REPLY_ERROR ? r->str : NULL);
        return;
    }
    if ((uint64_t)r->integer != expect && !o->left) {
        gw_info("online", "%s holds %lld users, this node %zu: rewriting it", o->key, r->integer,
                expect);
        gw_online_rewrite(o);
    }
}

/* Every node_registry_interval_ms: the hash lives on (PEXPIRE), and HLEN checks it is still
 * there as written (Redis restarted empty, flushed, failed over); a failed write rewrites it. */
static void gw_online_tick(uv_timer_t *t)
{
    gw_online_t *o = t->data;
    if (o->dirty) {
        gw_online_rewrite(o);
        return;
    }
    const char *exp[] = {"PEXPIRE", o->key, o->ttl}, *hlen[] = {"HLEN", o->key};
    size_t explen[] = {7, o->keylen, strlen(o->ttl)}, hlenlen[] = {4, o->keylen};
    gw_online_check_t *ck = gw_malloc(sizeof(*ck));
    *ck = (gw_online_check_t){o, gw_admission_users_online(o->node->admission)};
    if (gw_online_cmd(o, gw_online_on_write, o, 3, exp, explen) != 0 ||
        gw_online_cmd(o, gw_online_on_hlen, ck, 2, hlen, hlenlen) != 0) {
        free(ck);
        gw_online_failed(o, NULL);
    }
}

/* ---- life cycle ------------------------------------------------------------------------------ */

gw_online_t *gw_online_new(gw_node_t *node)
{
    gw_online_t *o = gw_calloc(1, sizeof(*o));
    uint64_t iv = (uint64_t)node->cfg->node_registry_interval_ms;
    o->node = node;
    o->keylen = gw_schema_online_key(o->key, sizeof(o->key), node->node_id);
    snprintf(o->ttl, sizeof(o->ttl), "%" PRIu64, iv * GW_REGISTRY_TTL_FACTOR);
    o->dirty = 1; /* a node restarted with the same node_id may find its old hash */
    uv_timer_init(node->loop, &o->timer);
    o->timer.data = o;
    uv_timer_start(&o->timer, gw_online_tick, GW_MIN(iv, GW_ONLINE_FIRST_TICK), iv);
    return o;
}

void gw_online_conn_up(gw_online_t *o, const char *uid)
{
    uint32_t count;
    if (o && gw_admission_user_online(o->node->admission, uid, 1, &count) == 0)
        gw_online_write_user(o, uid, count);
}

void gw_online_conn_down(gw_online_t *o, const char *uid)
{
    uint32_t count; /* -ENOENT: not counted (a bug elsewhere), never a negative count */
    if (o && gw_admission_user_online(o->node->admission, uid, 0, &count) == 0)
        gw_online_write_user(o, uid, count);
}

void gw_online_redis_ready(gw_online_t *o)
{
    gw_online_rewrite(o);
}

static void gw_online_on_left(void *priv, redisReply *r)
{
    gw_online_t *o = priv;
    gw_online_left_cb cb = o->left_cb;
    (void)r;
    o->left_cb = NULL;
    if (cb)
        cb(o->left_priv);
}

int gw_online_leave(gw_online_t *o, gw_online_left_cb cb, void *priv)
{
    const char *del[] = {"DEL", o->key};
    size_t dellen[] = {3, o->keylen};
    if (o->left)
        return -ENOTCONN;
    o->left = 1;
    uv_timer_stop(&o->timer);
    /* users still counted go offline now: they were last seen now (best effort) */
    gw_online_send_table(o, 1, gw_online_on_write);
    /* replies come in order: when DEL's comes, every earlier write was done */
    if (gw_online_cmd(o, gw_online_on_left, o, 2, del, dellen) != 0)
        return -ENOTCONN;
    o->left_cb = cb;
    o->left_priv = priv;
    return 0;
}

void gw_online_stop(gw_online_t *o)
{
    if (!o)
        return;
    o->left = 1;
    o->left_cb = NULL;
    uv_close((uv_handle_t *)&o->timer, NULL);
}

void gw_online_free(gw_online_t *o)
{
    if (!o)
        return;
    free(o);
}

/* ---- reading: GET /api/v1/online ------------------------------------------------------------- */

typedef struct {
    gw_online_t *o;
    char **uids;
    size_t n;
    gw_online_status_t *st;
    int outstanding; /* HMGETs not answered yet (+1 while they are being sent) */
    int failed;
    gw_online_query_cb cb;
    void *priv;
} gw_online_q_t;

static void gw_online_q_finish(gw_online_q_t *q)
{
    if (--q->outstanding > 0)
        return;
    q->cb(q->priv, q->failed ? -EIO : 0, q->failed ? NULL : q->st, q->n);
    for (size_t i = 0; i < q->n; i++)
        free(q->uids[i]);
    free(q->uids);
    free(q->st);
    free(q);
}

/* A number Redis holds as a string (written by nodes, or garbage): -1 when it is not one. */
static int64_t gw_online_number(const redisReply *e)
{
    if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > 20)
        return -1;
    char buf[24], *end;
    memcpy(buf, e->str, e->len);
    buf[e->len] = '\0';
    long long v = strtoll(buf, &end, 10);
    return *end || v < 0 ? -1 : (int64_t)v;
}

/* One live node's HMGET: its counts add up. */
static void gw_online_on_counts(void *priv, redisReply *r)
{
    gw_online_q_t *q = priv;
    if (!r)
        q->failed = 1;
    else if (r->type == REDIS_REPLY_ARRAY && r->elements == q->n)
        for (size_t i = 0; i < q->n; i++) {
            int64_t v = gw_online_number(r->element[i]);
            if (v > 0)
                q->st[i].connections += (uint64_t)v;
        }
    /* anything else (a key of another type): that node counts nobody */
    gw_online_q_finish(q);
}

static void gw_online_on_seen(void *priv, redisReply *r)
{
    gw_online_q_t *q = priv;
    if (!r)
        q->failed = 1;
    else if (r->type == REDIS_REPLY_ARRAY && r->elements == q->n)
        for (size_t i = 0; i < q->n; i++)
            q->st[i].last_seen = gw_online_number(r->element[i]);
    gw_online_q_finish(q);
}

static int gw_online_hmget(gw_online_q_t *q, const char *key, gw_redis_reply_cb cb)
{
    const char **argv = gw_malloc((q->n + 2) * sizeof(*argv));
    size_t *argvlen = gw_malloc((q->n + 2) * sizeof(*argvlen));
    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[1] = key;
    argvlen[1] = strlen(key);
    for (size_t i = 0; i < q->n; i++) {
        argv[i + 2] = q->uids[i];
        argvlen[i + 2] = strlen(q->uids[i]);
    }
    int rc = gw_online_cmd(q->o, cb, q, (int)q->n + 2, argv, argvlen);
    free(argv);
    free(argvlen);
    if (rc == 0)
        q->outstanding++;
    else
        q->failed = 1;
    return rc;
}

static int gw_online_same_id(const json_t *entry, const char *id)
{
    const char *other = json_string_value(json_object_get(entry, "id"));
    return other && strcmp(other, id) == 0;
}

/* The live nodes are known: each one's hash and last_seen, pipelined. */
static void gw_online_on_nodes(void *priv, int err, json_t *nodes)
{
    gw_online_q_t *q = priv;
    char key[GW_SCHEMA_KEY_MAX];
    if (err)
        q->failed = 1;
    for (size_t i = 0; !q->failed && i < json_array_size(nodes); i++) {
        const char *id = json_string_value(json_object_get(json_array_get(nodes, i), "id"));
        if (!id || strlen(id) >= sizeof(((gw_node_t *)0)->node_id))
            continue; /* not an entry a node wrote */
        size_t j = 0; /* two entries naming one id (garbage in cardgw:nodes): counted once */
        while (j < i && !gw_online_same_id(json_array_get(nodes, j), id))
            j++;
        if (j < i)
            continue;
        gw_schema_online_key(key, sizeof(key), id);
        gw_online_hmget(q, key, gw_online_on_counts);
    }
    if (!q->failed)
        gw_online_hmget(q, GW_SCHEMA_SEEN, gw_online_on_seen);
    gw_online_q_finish(q);
}

int gw_online_query(gw_online_t *o, const char *const *uids, size_t n, gw_online_query_cb cb,
                    void *priv)
{
    if (n == 0 || n > GW_ONLINE_MAX_QUERY)
        return -EINVAL;
    gw_online_q_t *q = gw_calloc(1, sizeof(*q));
    q->o = o;
    q->n = n;
    q->uids = gw_malloc(n * sizeof(*q->uids));
    q->st = gw_calloc(n, sizeof(*q->st));
    for (size_t i = 0; i < n; i++) {
        q->uids[i] = gw_strdup(uids[i]);
        q->st[i].last_seen = -1;
    }
    q->outstanding = 1;
    q->cb = cb;
    q->priv = priv;
    if (gw_registry_list(o->node, gw_online_on_nodes, q) != 0) {
        for (size_t i = 0; i < n; i++)
            free(q->uids[i]);
        free(q->uids);
        free(q->st);
        free(q);
        return -ENOTCONN;
    }
    return 0;
}
