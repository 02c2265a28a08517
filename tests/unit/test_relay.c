/* test_relay.c — the relay and recovery state machine driven through the Redis seam (redis.h):
 * scripted Redis replies, in the order each test chooses, and the frames a connection is sent. */
#include "../../gateway/hub_int.h"
#include "cardgw/admission.h"
#include "cardgw/schema.h"
#include "testlib.h"

#include <inttypes.h>
#include <stdlib.h>

/* ---- a scripted Redis: every call is recorded; the test answers it (or not) ------------------ */

typedef struct {
    char kind; /* 'c' command, 'e' script, 's' SUBSCRIBE, 'u' UNSUBSCRIBE */
    int argc;
    char *argv[24]; /* copies; for 'e' the script's own (numkeys, keys, args) */
    gw_redis_reply_cb cb;
    void *priv;
} fake_call_t;

#define FAKE_MAX 64
static fake_call_t fake_calls[FAKE_MAX];
static int fake_ncalls, fake_up = 1;

static void fake_record(char kind, gw_redis_reply_cb cb, void *priv, int argc, const char **argv,
                        const size_t *argvlen)
{
    if (fake_ncalls == FAKE_MAX) {
        fprintf(stderr, "fake redis: too many pending calls\n");
        abort();
    }
    fake_call_t *k = &fake_calls[fake_ncalls++];
    memset(k, 0, sizeof(*k));
    k->kind = kind;
    k->cb = cb;
    k->priv = priv;
    k->argc = argc < 24 ? argc : 24;
    for (int i = 0; i < k->argc; i++)
        k->argv[i] = gw_strndup(argv[i], argvlen[i]);
}

static int fake_connected(void *ctx)
{
    return fake_up;
}
static int fake_command(void *ctx, gw_redis_reply_cb cb, void *priv, int argc, const char **argv,
                        const size_t *argvlen)
{
    if (!fake_up)
        return -ENOTCONN;
    fake_record('c', cb, priv, argc, argv, argvlen);
    return 0;
}
static int fake_eval(void *ctx, const gw_script_t *s, gw_redis_reply_cb cb, void *priv, int argc,
                     const char **argv, const size_t *argvlen)
{
    if (!fake_up)
        return -ENOTCONN;
    fake_record('e', cb, priv, argc, argv, argvlen);
    return 0;
}
static void fake_subscribe(void *ctx, const char *ch, size_t n, int on)
{
    const char *argv[] = {ch};
    fake_record(on ? 's' : 'u', NULL, NULL, 1, argv, &n);
}

static const gw_redis_t fake_redis = {NULL, fake_connected, fake_command, fake_eval,
                                      fake_subscribe};

/* Whether call i is of kind and, when name is not NULL, a command of that name. */
static int fake_match(int i, char kind, const char *name)
{
    return fake_calls[i].kind == kind && (!name || strcmp(fake_calls[i].argv[0], name) == 0);
}

/* Removes and returns (in *out) the oldest pending call of kind (and name, when not NULL); 0, or
 * -1 when there is none. */
static int fake_take_named(char kind, const char *name, fake_call_t *out)
{
    for (int i = 0; i < fake_ncalls; i++)
        if (fake_match(i, kind, name)) {
            *out = fake_calls[i];
            memmove(&fake_calls[i], &fake_calls[i + 1],
                    (size_t)(fake_ncalls - i - 1) * sizeof(*fake_calls));
            fake_ncalls--;
            return 0;
        }
    return -1;
}

static int fake_pending_named(char kind, const char *name)
{
    int n = 0;
    for (int i = 0; i < fake_ncalls; i++)
        n += fake_match(i, kind, name);
    return n;
}

static int fake_take(char kind, fake_call_t *out)
{
    return fake_take_named(kind, NULL, out);
}

static int fake_pending(char kind)
{
    return fake_pending_named(kind, NULL);
}

static void fake_call_free(fake_call_t *k)
{
    for (int i = 0; i < k->argc; i++)
        free(k->argv[i]);
    k->argc = 0;
}

/* ---- replies built as hiredis would hand them over ------------------------------------------- */

static redisReply *r_str(const char *s)
{
    redisReply *r = gw_calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_STRING;
    r->len = strlen(s);
    r->str = gw_strndup(s, r->len);
    return r;
}

static redisReply *r_arr(size_t n)
{
    redisReply *r = gw_calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = gw_calloc(n ? n : 1, sizeof(*r->element));
    return r;
}

static void r_free(redisReply *r)
{
    if (!r)
        return;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        r_free(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

/* The history script's reply: {epoch, top, entries}; entries offsets[0..n) with data "<offset>". */
static redisReply *r_history(const char *epoch, uint64_t top, const uint64_t *offs, size_t n)
{
    char num[32];
    redisReply *r = r_arr(3);
    r->element[0] = r_str(epoch);
    snprintf(num, sizeof(num), "%" PRIu64, top);
    r->element[1] = r_str(num);
    r->element[2] = r_arr(n);
    for (size_t i = 0; i < n; i++) {
        redisReply *e = r_arr(2), *f = r_arr(4);
        snprintf(num, sizeof(num), "%" PRIu64 "-0", offs[i]);
        e->element[0] = r_str(num);
        snprintf(num, sizeof(num), "%" PRIu64, offs[i]);
        f->element[0] = r_str("d");
        f->element[1] = r_str(num);
        f->element[2] = r_str("f");
        f->element[3] = r_str("j");
        e->element[1] = f;
        r->element[2]->element[i] = e;
    }
    return r;
}

/* Answers the oldest pending script call (a history read) with r (freed here; NULL: failed).
 * Returns the call's mode ('p', 'a' or 't') and after-offset through *after, or 0 when none. */
static char answer_history(redisReply *r, uint64_t *after)
{
    fake_call_t k;
    if (fake_take('e', &k) != 0) {
        r_free(r);
        return 0;
    }
    char mode = k.argv[3][0];
    if (after)
        *after = strtoull(k.argv[4], NULL, 10);
    k.cb(k.priv, r);
    r_free(r);
    fake_call_free(&k);
    return mode;
}

/* ---- a node with nothing but a loop, its config, the hub and connections --------------------- */

#define CH    "room:r1"
#define CHKEY "cardgw:{room:r1}"

typedef struct {
    uv_loop_t loop;
    gw_config_t cfg;
    gw_node_t node;
    struct lws *fake_wsi; /* never dereferenced: nothing is flushed to a socket here */
} env_t;

static void env_init(env_t *e)
{
    char err[128];
    memset(e, 0, sizeof(*e));
    uv_loop_init(&e->loop);
    gw_config_defaults(&e->cfg);
    gw_config_set(&e->cfg, "namespace.room.history_size", "100", "test", err, sizeof(err));
    gw_config_set(&e->cfg, "namespace.room.subscribe", "public", "test", err, sizeof(err));
    e->node.loop = &e->loop;
    e->node.cfg = &e->cfg;
    gw_list_init(&e->node.conns);
    gw_list_init(&e->node.flushq);
    gw_list_init(&e->node.http_peers);
    uv_prepare_init(&e->loop, &e->node.flush_prepare);
    uv_timer_init(&e->loop, &e->node.flush_timer);
    e->node.flush_prepare.data = e->node.flush_timer.data = &e->node;
    e->node.admission = gw_admission_new(0, 0, 0);
    e->node.redis = &fake_redis;
    e->node.hub = gw_hub_new(&e->node, &fake_redis, NULL, 0);
    e->fake_wsi = (struct lws *)e; /* any non-NULL pointer: the connection is open */
    fake_ncalls = 0;
    fake_up = 1;
}

static gw_conn_t *env_conn(env_t *e, const char *uid)
{
    gw_conn_t *c = gw_conn_new(&e->node, e->fake_wsi, GW_ENC_JSON);
    c->state = GW_CONN_READY;
    c->uid = gw_admission_user_acquire(e->node.admission, uid);
    return c;
}

/* Takes the messages queued to c (JSON text, concatenated with '\n'); the queue is emptied. */
static void take_sent(gw_conn_t *c, char *out, size_t cap)
{
    size_t w = 0;
    out[0] = '\0';
    while (c->qlen) {
        gw_frame_t *f = c->q[c->qhead];
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
        c->qbytes -= f->len;
        uint8_t l7 = f->data[1] & 0x7f;
        size_t h = l7 < 126 ? 2 : l7 == 126 ? 4 : 10;
        int k = snprintf(out + w, cap - w, "%.*s\n", (int)(f->len - h), (const char *)f->data + h);
        w = GW_MIN(w + (size_t)(k > 0 ? k : 0), cap - 1);
        gw_frame_unref(f);
    }
    if (gw_list_linked(&c->flush_link))
        gw_list_remove(&c->flush_link);
}

static void env_close(env_t *e, gw_conn_t *c)
{
    char junk[8192];
    take_sent(c, junk, sizeof(junk));
    gw_conn_on_closed(c);
}

/* Stops everything the way the node does: pending Redis calls fail (as the broker's do when it
 * stops), the loop runs until every handle is closed, then everything is freed (LSan checks). */
static void env_free(env_t *e)
{
    gw_list_t *it, *tmp;
    gw_list_foreach_safe(it, tmp, &e->node.conns)
    {
        env_close(e, gw_container_of(it, gw_conn_t, link));
    }
    while (fake_ncalls) {
        fake_call_t k = fake_calls[0];
        memmove(&fake_calls[0], &fake_calls[1], (size_t)(fake_ncalls - 1) * sizeof(*fake_calls));
        fake_ncalls--;
        if (k.cb)
            k.cb(k.priv, NULL);
        fake_call_free(&k);
    }
    gw_hub_stop(e->node.hub);
    uv_close((uv_handle_t *)&e->node.flush_prepare, NULL);
    uv_close((uv_handle_t *)&e->node.flush_timer, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    gw_hub_free(e->node.hub);
    gw_admission_free(e->node.admission);
    CHECK_EQ_INT(uv_loop_close(&e->loop), 0);
    gw_config_free(&e->cfg);
}

static void subscribe(env_t *e, gw_conn_t *c, uint32_t id, const char *since_epoch,
                      uint64_t since_offset)
{
    gw_cmd_t cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.kind = GW_CMD_SUBSCRIBE;
    cmd.id = id;
    cmd.channel = (gw_slice_t){CH, strlen(CH)};
    if (since_epoch) {
        cmd.has_since = 1;
        cmd.since_epoch = (gw_slice_t){since_epoch, strlen(since_epoch)};
        cmd.since_offset = since_offset;
    }
    gw_hub_subscribe(e->node.hub, c, &cmd);
}

/* Redis confirms the channel's SUBSCRIBE (the oldest one pending). */
static void confirm_subscribe(env_t *e)
{
    fake_call_t k;
    CHECK_EQ_INT(fake_take('s', &k), 0);
    fake_call_free(&k);
    gw_hub_on_subscription(e->node.hub, 0, CHKEY, strlen(CHKEY), 1);
}

/* A publication relayed on the channel's pub/sub, data = its offset (JSON). */
static void relay(env_t *e, const char *epoch, uint64_t off)
{
    char p[128];
    int n = snprintf(p, sizeof(p), "1\n%s\n%" PRIu64 "\nj\n\n%" PRIu64, epoch, off, off);
    gw_hub_on_message(e->node.hub, 0, CHKEY, strlen(CHKEY), p, (size_t)n);
}

/* A subscription live at (epoch, top): subscribe, Redis confirms, the position is read. */
static gw_conn_t *live_conn(env_t *e, const char *epoch, uint64_t top)
{
    char sent[4096];
    gw_conn_t *c = env_conn(e, "u1");
    subscribe(e, c, 1, NULL, 0);
    confirm_subscribe(e);
    CHECK_EQ_INT(answer_history(r_history(epoch, top, NULL, 0), NULL), 'p');
    take_sent(c, sent, sizeof(sent));
    CHECK(strstr(sent, "\"id\":1,\"result\"") != NULL);
    return c;
}

static const char *pub_json(uint64_t off)
{
    static char s[128];
    snprintf(s, sizeof(s),
             "{\"push\":\"pub\",\"channel\":\"" CH "\",\"offset\":%" PRIu64 ",\"data\":%" PRIu64
             "}\n",
             off, off);
    return s;
}

/* Checks that what c was sent since the last look is exactly the publications first..last. */
static void check_sent_pubs(gw_conn_t *c, uint64_t first, uint64_t last)
{
    char sent[4096], want[4096] = "";
    take_sent(c, sent, sizeof(sent));
    for (uint64_t o = first; o <= last; o++)
        strcat(want, pub_json(o));
    CHECK_STR(sent, want);
}

/* Whether sent holds the `unsub` push that tells the client to resubscribe with since (116). */
static int kicked(const char *sent)
{
    return strstr(sent, "{\"push\":\"unsub\",\"channel\":\"" CH "\",\"code\":116,") != NULL;
}

/* ---- tests --------------------------------------------------------------------------------------
 */

TEST(in_order_publications_go_out_once_each)
{
    env_t e;
    env_init(&e);
    gw_conn_t *c = live_conn(&e, "E1", 5);
    relay(&e, "E1", 6);
    relay(&e, "E1", 6); /* a duplicate: dropped */
    relay(&e, "E1", 5); /* older than the position: dropped */
    relay(&e, "E1", 7);
    check_sent_pubs(c, 6, 7);
    CHECK_EQ_INT(fake_pending('e'), 0); /* no gap: no read */
    env_free(&e);
}

TEST(out_of_order_offsets_are_filled_from_history)
{
    env_t e;
    char sent[4096];
    uint64_t after = 0, fill[] = {7, 8};
    env_init(&e);
    gw_conn_t *c = live_conn(&e, "E1", 5);
    relay(&e, "E1", 6);
    relay(&e, "E1", 8); /* 7 is missing: 8 is held and history is read after 6 */
    relay(&e, "E1", 9); /* held behind the fill */
    relay(&e, "E1", 7); /* arrives late: held too */
    take_sent(c, sent, sizeof(sent));
    CHECK_STR(sent, pub_json(6));
    CHECK_EQ_INT(answer_history(r_history("E1", 8, fill, 2), &after), 'a');
    CHECK_EQ_INT(after, 6);
    check_sent_pubs(c, 7, 9); /* 7, 8 from history, 9 released; the late 7 and held 8 dropped */
    env_free(&e);
}

/* The same reply with the script's "cut" flag: its byte budget stopped the read. */
static redisReply *r_history_cut(const char *epoch, uint64_t top, const uint64_t *offs, size_t n)
{
    redisReply *r = r_history(epoch, top, offs, n), *cut = gw_calloc(1, sizeof(*cut));
    r->element = gw_realloc(r->element, 4 * sizeof(*r->element));
    r->elements = 4;
    cut->type = REDIS_REPLY_INTEGER;
    cut->integer = 1;
    r->element[3] = cut;
    return r;
}

TEST(fill_reads_within_the_byte_budget_and_reads_on_when_cut)
{
    env_t e;
    char sent[4096];
    uint64_t first[] = {7}, rest[] = {8, 9};
    env_init(&e);
    gw_conn_t *c = live_conn(&e, "E1", 5);
    relay(&e, "E1", 6);
    relay(&e, "E1", 9); /* 7 and 8 missing */
    take_sent(c, sent, sizeof(sent));
    CHECK_STR(sent, pub_json(6));
    fake_call_t k;
    CHECK_EQ_INT(fake_take('e', &k), 0);
    CHECK_EQ_INT(k.argv[3][0], 'a');
    /* the read carries the byte budget (recovery_max_bytes) for the script */
    char want[24];
    snprintf(want, sizeof(want), "%d", e.cfg.recovery_max_bytes);
    CHECK_STR(k.argv[7], want);
    redisReply *r = r_history_cut("E1", 9, first, 1);
    k.cb(k.priv, r); /* only 7 fitted: delivered, and the fill reads on after it */
    r_free(r);
    fake_call_free(&k);
    check_sent_pubs(c, 7, 7);
    uint64_t after = 0;
    CHECK_EQ_INT(answer_history(r_history("E1", 9, rest, 2), &after), 'a');
    CHECK_EQ_INT(after, 7);
    check_sent_pubs(c, 8, 9); /* from history (the held 9 is a duplicate): nobody kicked */
    env_free(&e);
}

TEST(failed_fill_is_retried_by_the_tick)
{
    env_t e;
    char sent[4096];
    uint64_t fill[] = {6, 7};
    env_init(&e);
    gw_conn_t *c = live_conn(&e, "E1", 5);
    relay(&e, "E1", 7);
    CHECK_EQ_INT(answer_history(NULL, NULL), 'a'); /* Redis failed (restarting) */
    take_sent(c, sent, sizeof(sent));
    CHECK_STR(sent, ""); /* nothing delivered, nobody kicked: the fill is retried */
    CHECK_EQ_INT(fake_pending('e'), 0);
    gw_relay_tick(&e.node.hub->tick_timer);
    CHECK_EQ_INT(fake_pending('e'), 1);
    CHECK_EQ_INT(answer_history(r_history("E1", 7, fill, 2), NULL), 'a');
    check_sent_pubs(c, 6, 7);
    env_free(&e);
}

TEST(epoch_change_during_fill_tells_subscribers_to_resubscribe)
{
    env_t e;
    char sent[4096];
    uint64_t fill[] = {1};
    env_init(&e);
    gw_conn_t *c = live_conn(&e, "E1", 5);
    relay(&e, "E1", 7);
    /* the store was lost meanwhile: another epoch, offsets restarted */
    CHECK_EQ_INT(answer_history(r_history("E2", 1, fill, 1), NULL), 'a');
    take_sent(c, sent, sizeof(sent));
    CHECK_STR(sent, "{\"push\":\"unsub\",\"channel\":\"" CH "\",\"code\":116,"
                    "\"reason\":\"insufficient state: resubscribe with since\"}\n");
    CHECK_EQ_INT(c->nsubs, 0);
    env_free(&e);
}

TEST(epoch_change_on_the_relay_tells_subscribers_to_resubscribe)
{
    env_t e;
    char sent[4096];
    env_init(&e);
    gw_conn_t *c = live_conn(&e, "E1", 5);
    relay(&e, "E9", 1);
    take_sent(c, sent, sizeof(sent));
    CHECK(kicked(sent));
    CHECK(strstr(sent, "\"push\":\"pub\"") == NULL);
    env_free(&e);
}

TEST(offsets_going_back_are_history_lost)
{
    env_t e;
    char sent[4096];
    env_init(&e);
    gw_conn_t *c = live_conn(&e, "E1", 5);
    relay(&e, "E1", 6);
    relay(&e, "E1", 9);
    /* a failover lost writes: the same epoch with a top below what was relayed */
    CHECK_EQ_INT(answer_history(r_history("E1", 4, NULL, 0), NULL), 'a');
    take_sent(c, sent, sizeof(sent));
    CHECK(strstr(sent, pub_json(6)) == sent);
    CHECK(kicked(sent));
    env_free(&e);
}

TEST(trimmed_history_is_insufficient_state_never_a_silent_gap)
{
    env_t e;
    char sent[4096];
    uint64_t fill[] = {8, 9}; /* 6 and 7 were trimmed away */
    env_init(&e);
    gw_conn_t *c = live_conn(&e, "E1", 5);
    relay(&e, "E1", 9);
    CHECK_EQ_INT(answer_history(r_history("E1", 9, fill, 2), NULL), 'a');
    take_sent(c, sent, sizeof(sent));
    CHECK(strstr(sent, "\"offset\":8") == NULL);
    CHECK(kicked(sent));
    env_free(&e);
}

TEST(recovery_returns_the_missed_publications_then_live_ones)
{
    env_t e;
    char sent[4096];
    uint64_t missed[] = {4, 5}, after = 0;
    env_init(&e);
    gw_conn_t *c = env_conn(&e, "u1");
    subscribe(&e, c, 3, "E1", 3);
    confirm_subscribe(&e);
    relay(&e, "E1", 6); /* published while positioning: buffered */
    CHECK_EQ_INT(answer_history(r_history("E1", 5, missed, 2), &after), 'a');
    CHECK_EQ_INT(after, 3);
    take_sent(c, sent, sizeof(sent));
    CHECK(strstr(sent,
                 "{\"id\":3,\"result\":{\"epoch\":\"E1\",\"offset\":5,\"recovered\":true,"
                 "\"publications\":[{\"offset\":4,\"data\":4},{\"offset\":5,\"data\":5}]}}\n") ==
          sent);
    CHECK(strstr(sent, pub_json(6)) != NULL);
    env_free(&e);
}

TEST(recovery_in_another_epoch_is_not_recovered)
{
    env_t e;
    char sent[4096];
    env_init(&e);
    gw_conn_t *c = env_conn(&e, "u1");
    uint64_t after_one[] = {2};
    subscribe(&e, c, 3, "OLD", 1);
    confirm_subscribe(&e);
    /* offsets that would line up, but in another epoch: a different sequence */
    CHECK_EQ_INT(answer_history(r_history("E1", 2, after_one, 1), NULL), 'a');
    take_sent(c, sent, sizeof(sent));
    CHECK_STR(sent, "{\"id\":3,\"result\":{\"epoch\":\"E1\",\"offset\":2,\"recovered\":false}}\n");
    env_free(&e);
}

TEST(gap_in_what_was_buffered_during_positioning_is_insufficient_state)
{
    env_t e;
    char sent[4096];
    env_init(&e);
    gw_conn_t *c = env_conn(&e, "u1");
    subscribe(&e, c, 1, NULL, 0);
    confirm_subscribe(&e);
    relay(&e, "E1", 8); /* the channel is not synced yet: buffered for the subscription */
    CHECK_EQ_INT(answer_history(r_history("E1", 5, NULL, 0), NULL), 'p'); /* 6, 7 never came */
    take_sent(c, sent, sizeof(sent));
    CHECK(strstr(sent, "{\"id\":1,\"result\":{\"epoch\":\"E1\",\"offset\":5}}\n") == sent);
    CHECK(kicked(sent));
    CHECK(strstr(sent, "\"offset\":8") == NULL);
    env_free(&e);
}

TEST(connection_closed_while_positioning_frees_everything_and_unsubscribes)
{
    env_t e;
    fake_call_t k;
    env_init(&e);
    gw_conn_t *c = env_conn(&e, "u1");
    subscribe(&e, c, 1, NULL, 0);
    confirm_subscribe(&e);
    env_close(&e, c); /* the position read is still pending; it does not need the channel */
    CHECK_EQ_INT(fake_take('u', &k), 0);
    fake_call_free(&k);
    gw_hub_on_subscription(e.node.hub, 0, CHKEY, strlen(CHKEY), 0);
    CHECK(gw_channel_find(e.node.hub, CH, strlen(CH)) == NULL);
    /* the read completes after channel and connection are gone: the subscription is freed */
    CHECK_EQ_INT(answer_history(r_history("E1", 5, NULL, 0), NULL), 'p');
    CHECK_EQ_INT(fake_ncalls, 0);
    env_free(&e);
}

TEST(channel_released_during_a_fill_is_freed_when_the_fill_completes)
{
    env_t e;
    fake_call_t k;
    uint64_t fill[] = {6, 7};
    env_init(&e);
    gw_conn_t *c = live_conn(&e, "E1", 5);
    relay(&e, "E1", 7);
    env_close(&e, c);                   /* last subscriber gone while the fill read is pending */
    CHECK_EQ_INT(fake_pending('u'), 0); /* the read still refers to the channel */
    CHECK_EQ_INT(answer_history(r_history("E1", 7, fill, 2), NULL), 'a');
    CHECK_EQ_INT(fake_take('u', &k), 0);
    fake_call_free(&k);
    gw_hub_on_subscription(e.node.hub, 0, CHKEY, strlen(CHKEY), 0);
    CHECK(gw_channel_find(e.node.hub, CH, strlen(CH)) == NULL);
    env_free(&e);
}

TEST(resubscribe_while_unsubscribe_is_in_flight_subscribes_again)
{
    env_t e;
    char sent[4096];
    fake_call_t k;
    env_init(&e);
    gw_conn_t *c = live_conn(&e, "E1", 5);
    env_close(&e, c);
    CHECK_EQ_INT(fake_take('u', &k), 0);
    fake_call_free(&k);
    gw_conn_t *d = env_conn(&e, "u2");
    subscribe(&e, d, 1, NULL, 0);
    CHECK_EQ_INT(fake_pending('s'), 0); /* never SUBSCRIBE while the UNSUBSCRIBE is in flight */
    gw_hub_on_subscription(e.node.hub, 0, CHKEY, strlen(CHKEY), 0);
    confirm_subscribe(&e);
    CHECK_EQ_INT(answer_history(r_history("E1", 5, NULL, 0), NULL), 'p');
    relay(&e, "E1", 6);
    take_sent(d, sent, sizeof(sent));
    CHECK(strstr(sent, pub_json(6)) != NULL);
    env_free(&e);
}

TEST(redis_down_answers_subscribe_with_unavailable)
{
    env_t e;
    char sent[4096];
    env_init(&e);
    gw_conn_t *c = env_conn(&e, "u1");
    fake_up = 0;
    subscribe(&e, c, 4, NULL, 0);
    take_sent(c, sent, sizeof(sent));
    CHECK(strstr(sent, "{\"id\":4,\"error\":{\"code\":111") == sent);
    CHECK_EQ_INT(c->nsubs, 0);
    env_free(&e);
}

TEST(pubsub_loss_fills_from_history_after_resubscribe)
{
    env_t e;
    uint64_t fill[] = {6, 7};
    env_init(&e);
    gw_conn_t *c = live_conn(&e, "E1", 5);
    gw_hub_on_event(e.node.hub, 0, GW_BROKER_SUB_DOWN);
    gw_hub_on_event(e.node.hub, 0,
                    GW_BROKER_SUB_UP); /* resubscribes the control channel and ours */
    fake_call_t k;
    while (fake_take('s', &k) == 0)
        fake_call_free(&k);
    gw_hub_on_subscription(e.node.hub, 0, CHKEY, strlen(CHKEY), 1);
    /* what was published while pub/sub was down is read from history */
    CHECK_EQ_INT(answer_history(r_history("E1", 7, fill, 2), NULL), 'a');
    check_sent_pubs(c, 6, 7);
    env_free(&e);
}

static void presence_cmd(env_t *e, gw_conn_t *c, uint32_t id)
{
    gw_cmd_t cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.kind = GW_CMD_PRESENCE_STATS;
    cmd.id = id;
    cmd.channel = (gw_slice_t){CH, strlen(CH)};
    gw_hub_presence(e->node.hub, c, &cmd);
}

/* Answers the oldest presence read with n members u0..u<n-1>. */
static void answer_presence(size_t n)
{
    fake_call_t k;
    CHECK_EQ_INT(fake_take_named('c', "ZRANGEBYSCORE", &k), 0);
    redisReply *r = r_arr(n);
    for (size_t i = 0; i < n; i++) {
        char m[64];
        snprintf(m, sizeof(m), "u%zu c-%zu", i, i);
        r->element[i] = r_str(m);
    }
    k.cb(k.priv, r);
    r_free(r);
    fake_call_free(&k);
}

TEST(presence_commands_share_a_read_and_never_miss_a_join_they_could_know_of)
{
    env_t e;
    char sent[4096];
    env_init(&e);
    char err[128];
    gw_config_set(&e.cfg, "namespace.room.presence", "true", "test", err, sizeof(err));
    gw_conn_t *c = live_conn(&e, "E1", 0);
    presence_cmd(&e, c, 10); /* read R1 starts */
    CHECK_EQ_INT(fake_pending_named('c', "ZRANGEBYSCORE"), 1);
    const char join[] = "1\n\n0\nJ\nu9\nc-9";
    gw_hub_on_message(e.node.hub, 0, CHKEY, strlen(CHKEY), join, sizeof(join) - 1);
    presence_cmd(&e, c, 11); /* after a join: R1 may lack it */
    gw_hub_on_message(e.node.hub, 0, CHKEY, strlen(CHKEY), join, sizeof(join) - 1);
    CHECK_EQ_INT(fake_pending_named('c', "ZRANGEBYSCORE"), 1); /* one read at a time */
    answer_presence(1);                                        /* R1: answers 10 only, R2 starts */
    take_sent(c, sent, sizeof(sent));
    CHECK(strstr(sent, "\"id\":10,\"result\":{\"connections\":1,") != NULL);
    CHECK(strstr(sent, "\"id\":11,") == NULL);
    CHECK_EQ_INT(fake_pending_named('c', "ZRANGEBYSCORE"), 1);
    answer_presence(3); /* R2 started after both joins: answers 11, no third read */
    take_sent(c, sent, sizeof(sent));
    CHECK(strstr(sent, "\"id\":11,\"result\":{\"connections\":3,") != NULL);
    CHECK_EQ_INT(fake_pending_named('c', "ZRANGEBYSCORE"), 0);
    presence_cmd(&e, c, 12); /* R2 is fresh: answered without a read */
    CHECK_EQ_INT(fake_pending_named('c', "ZRANGEBYSCORE"), 0);
    take_sent(c, sent, sizeof(sent));
    CHECK(strstr(sent, "\"id\":12,\"result\":{\"connections\":3,") != NULL);
    presence_cmd(&e, c, 13); /* still fresh; then a join, and the next read fails: 111 */
    gw_hub_on_message(e.node.hub, 0, CHKEY, strlen(CHKEY), join, sizeof(join) - 1);
    presence_cmd(&e, c, 14);
    fake_call_t k;
    CHECK_EQ_INT(fake_take_named('c', "ZRANGEBYSCORE", &k), 0);
    k.cb(k.priv, NULL);
    fake_call_free(&k);
    take_sent(c, sent, sizeof(sent));
    CHECK(strstr(sent, "\"id\":13,\"result\":{\"connections\":3,") != NULL);
    CHECK(strstr(sent, "\"id\":14,\"error\":{\"code\":111") != NULL);
    env_free(&e);
}

TEST(relay_frame_and_control_parsers)
{
    gw_relay_frame_t w;
    gw_control_t m;
    const char ok[] = "1\nE1\n42\nj\nu7\n{\"a\":1}";
    CHECK_EQ_INT(gw_schema_parse_relay(ok, strlen(ok), &w), 0);
    CHECK_EQ_INT(w.pub.offset, 42);
    CHECK_EQ_MEM(w.epoch.p, w.epoch.n, "E1", 2);
    CHECK_EQ_MEM(w.pub.from.p, w.pub.from.n, "u7", 2);
    CHECK_EQ_MEM(w.pub.data.p, w.pub.data.n, "{\"a\":1}", 7);
    CHECK_EQ_INT(gw_schema_parse_relay("1\nE1\n4x\nj\n\nd", 12, &w), -EINVAL);
    CHECK_EQ_INT(gw_schema_parse_relay("2\nE1\n4\nj\n\nd", 11, &w), -EINVAL);
    CHECK_EQ_INT(gw_schema_parse_relay("1\nE1\n4\nj\n", 9, &w), -EINVAL);
    CHECK_EQ_INT(w.time_us, 0);
    /* version 2: the publish time (unix us) first, then the same fields */
    const char v2[] = "2\n1764664800123456\nE1\n42\nm\n\n\x01";
    CHECK_EQ_INT(gw_schema_parse_relay(v2, strlen(v2), &w), 0);
    CHECK(w.time_us == 1764664800123456ull);
    CHECK_EQ_INT(w.pub.offset, 42);
    CHECK_EQ_INT(w.kind, 'm');
    CHECK_EQ_MEM(w.epoch.p, w.epoch.n, "E1", 2);
    CHECK_EQ_MEM(w.pub.data.p, w.pub.data.n, "\x01", 1);
    CHECK_EQ_INT(gw_schema_parse_relay(ok, strlen(ok), &w), 0);
    CHECK_EQ_INT(w.time_us, 0); /* version 1 leaves no time behind */
    const char *bad[] = {"2\n\nE1\n4\nj\n\nd",    "2\n-5\nE1\n4\nj\n\nd",
                         "2\n12 \nE1\n4\nj\n\nd", "2\n12345678901234567890\nE1\n4\nj\n\nd",
                         "1\nE1\n-1\nj\n\nd",     "1\nE1\n+4\nj\n\nd",
                         "1\nE1\n 4\nj\n\nd",     "1\nE1\n\nj\n\nd",
                         "3\nE1\n4\nj\n\nd",      "2\n1764664800123456"};
    for (size_t i = 0; i < GW_ARRAY_SIZE(bad); i++)
        CHECK_EQ_INT(gw_schema_parse_relay(bad[i], strlen(bad[i]), &w), -EINVAL);
    char msg[GW_SCHEMA_CONTROL_MAX];
    size_t n = gw_schema_control(msg, sizeof(msg), "u7", CH);
    CHECK_EQ_INT(gw_schema_parse_control(msg, n, &m), 0);
    CHECK_EQ_INT(m.unsubscribe, 1);
    CHECK_EQ_MEM(m.uid.p, m.uid.n, "u7", 2);
    CHECK_EQ_MEM(m.channel.p, m.channel.n, CH, strlen(CH));
    n = gw_schema_control(msg, sizeof(msg), "u7", NULL);
    CHECK_EQ_INT(gw_schema_parse_control(msg, n, &m), 0);
    CHECK_EQ_INT(m.unsubscribe, 0);
    CHECK_EQ_INT(gw_schema_parse_control("disconnect\nu7\n", 14, &m), 0); /* a shell's newline */
    CHECK_EQ_MEM(m.uid.p, m.uid.n, "u7", 2);
    CHECK_EQ_INT(gw_schema_parse_control("disconnect\nu7\0junk", 18, &m), 0);
    CHECK_EQ_MEM(m.uid.p, m.uid.n, "u7", 2);
    CHECK_EQ_INT(gw_schema_parse_control("disconnect\n", 11, &m), -EINVAL);
    CHECK_EQ_INT(gw_schema_parse_control("unsubscribe\nu7", 14, &m), -EINVAL);
    CHECK_EQ_INT(gw_schema_parse_control("reboot\nu7", 9, &m), -EINVAL);
    char key[GW_SCHEMA_KEY_MAX];
    CHECK_STR((gw_schema_channel_key(key, sizeof(key), CH, strlen(CH), GW_KEY_META), key),
              "cardgw:{room:r1}:m");
    CHECK_STR((gw_schema_members_key(key, sizeof(key), "group", 5, "g1", 2), key),
              "cardgw:group:g1:members");
    /* the shard rule, as docs/redis-schema.md computes it in Python */
    CHECK_EQ_INT(gw_schema_shard("group:g1", 8, 1), 0);
    CHECK_EQ_INT(gw_schema_shard("group:g1", 8, 2), 1);
    CHECK_EQ_INT(gw_schema_shard("group:g1", 8, 3), 2);
    CHECK_EQ_INT(gw_schema_shard("group:g1", 8, 16), 15);
    CHECK_EQ_INT(gw_schema_shard("group:g2", 8, 5), 2);
    CHECK_EQ_INT(gw_schema_shard("user:u42", 8, 16), 14);
    CHECK_EQ_INT(gw_schema_shard("public:a", 8, 5), 4);
    CHECK_EQ_INT(gw_schema_shard("public:b", 8, 3), 1);
}

int main(void)
{
    gw_log_level = GW_LOG_ERROR;
    RUN(in_order_publications_go_out_once_each);
    RUN(out_of_order_offsets_are_filled_from_history);
    RUN(fill_reads_within_the_byte_budget_and_reads_on_when_cut);
    RUN(failed_fill_is_retried_by_the_tick);
    RUN(epoch_change_during_fill_tells_subscribers_to_resubscribe);
    RUN(epoch_change_on_the_relay_tells_subscribers_to_resubscribe);
    RUN(offsets_going_back_are_history_lost);
    RUN(trimmed_history_is_insufficient_state_never_a_silent_gap);
    RUN(recovery_returns_the_missed_publications_then_live_ones);
    RUN(recovery_in_another_epoch_is_not_recovered);
    RUN(gap_in_what_was_buffered_during_positioning_is_insufficient_state);
    RUN(connection_closed_while_positioning_frees_everything_and_unsubscribes);
    RUN(channel_released_during_a_fill_is_freed_when_the_fill_completes);
    RUN(resubscribe_while_unsubscribe_is_in_flight_subscribes_again);
    RUN(redis_down_answers_subscribe_with_unavailable);
    RUN(pubsub_loss_fills_from_history_after_resubscribe);
    RUN(presence_commands_share_a_read_and_never_miss_a_join_they_could_know_of);
    RUN(relay_frame_and_control_parsers);
    return TL_DONE();
}
