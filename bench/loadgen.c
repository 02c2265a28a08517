/* loadgen.c — cardgw load generator: many WebSocket subscribers (cardgw, Nchan or Socket.IO) on
 * libuv with end-to-end latency, loss and duplicate counts, and fixed-rate publishers. */
#include "hist.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { T_CARDGW, T_NCHAN, T_SOCKETIO };
enum { ST_IDLE, ST_TCP, ST_HTTP, ST_AUTH, ST_SUB, ST_READY, ST_DEAD };

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uint32_t idx;  /* global user index: uid u<idx>, group g<idx % groups> */
    uint8_t state; /* ST_* */
    uint8_t subacks;
    uint16_t carry_len, carry_cap;
    uint64_t t_start;   /* µs, monotonic: TCP connect started */
    uint64_t expect[2]; /* cardgw: next offset per channel (0 user, 1 group); peers: last seq */
    uint8_t *carry;     /* a partial frame left from the previous read (allocated once) */
} conn_t;

static struct {
    /* options */
    const char *mode, *host, *path, *secret, *script, *api_key, *out_prefix;
    int target, port, conns, first, groups, nsrc, json, inflight, no_sub, redis_port;
    int http_conns, bytes, info;
    double duration, ready_timeout, rate, pub_duration, connect_rate;
    uint64_t t_begin; /* monotonic µs when connecting began (for --connect-rate) */
    long count;
    uint64_t seq_start;
    /* state */
    uv_loop_t *loop;
    conn_t *c;
    int next, active, ready, failed, closed, ready_printed;
    uint64_t t_first, t_last; /* realtime µs: first connect start, last ready */
    uint64_t rx, rx_total, dup, gap, errors, pings;
    char err_msg[160];
    hist_t lat, ttfr;
    uint8_t rbuf[65536];
    char req[512];
    int reqlen;
    uv_timer_t t_dur, t_ready, t_pace;
    uv_signal_t s_usr1, s_usr2, s_term, s_int;
} G = {
    .mode = "sub",
    .host = "127.0.0.1",
    .path = NULL,
    .secret = "bench-jwt-secret-of-at-least-32-bytes",
    .script = "scripts/publish.lua",
    .api_key = "bench-api-key-0123456789",
    .port = 18100,
    .conns = 100,
    .groups = 1,
    .nsrc = 8,
    .inflight = 256,
    .redis_port = 6379,
    .http_conns = 8,
    .bytes = 200,
    .duration = 60,
    .ready_timeout = 60,
    .rate = 100,
    .pub_duration = 5,
};

static uint64_t now_us(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void note_error(const char *what, const void *p, size_t n)
{
    G.errors++;
    if (!G.err_msg[0]) {
        size_t k = n < 100 ? n : 100;
        snprintf(G.err_msg, sizeof(G.err_msg), "%s: %.*s", what, (int)k, (const char *)p);
        for (char *q = G.err_msg; *q; q++)
            if (*q == '"' || *q == '\\' || (unsigned char)*q < 32 || (unsigned char)*q > 126)
                *q = '.';
    }
}

/* ---- JWT (HS256) ------------------------------------------------------------------------------
 */

static size_t b64url(char *out, const uint8_t *in, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
    }
    out[o] = 0;
    return o;
}

/* A token for uid u<idx>; with --info B, an info claim (a card) of about B bytes of JSON. */
static size_t make_jwt(char *out, uint32_t idx)
{
    char pl[1200], pad[1100];
    int pn = G.info > 40 ? (G.info - 40 < 1000 ? G.info - 40 : 1000) : 0;
    memset(pad, 'x', (size_t)pn);
    pad[pn] = '\0';
    int n = G.info
                ? snprintf(
                      pl, sizeof(pl),
                      "{\"sub\":\"u%u\",\"exp\":%llu,\"info\":{\"name\":\"u%u\",\"title\":\"%s\"}}",
                      idx, (unsigned long long)(time(NULL) + 86400), idx, pad)
                : snprintf(pl, sizeof(pl), "{\"sub\":\"u%u\",\"exp\":%llu}", idx,
                           (unsigned long long)(time(NULL) + 86400));
    size_t o = (size_t)sprintf(out, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.");
    o += b64url(out + o, (const uint8_t *)pl, (size_t)n);
    uint8_t mac[32];
    unsigned ml = 0;
    HMAC(EVP_sha256(), G.secret, (int)strlen(G.secret), (const uint8_t *)out, o, mac, &ml);
    out[o++] = '.';
    o += b64url(out + o, mac, ml);
    return o;
}

/* ---- minimal msgpack reader (enough for replies and pushes) ------------------------------------
 */

typedef struct {
    const uint8_t *p, *e;
} mp_t;

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static int mp_need(mp_t *m, size_t n)
{
    return (size_t)(m->e - m->p) >= n ? 0 : -EINVAL;
}

/* Reads a string header; s and n get the bytes. */
static int mp_str(mp_t *m, const uint8_t **s, size_t *n)
{
    if (mp_need(m, 1))
        return -EINVAL;
    uint8_t b = *m->p++;
    size_t len;
    if ((b & 0xe0) == 0xa0)
        len = b & 31;
    else if (b == 0xd9 && !mp_need(m, 1))
        len = *m->p++;
    else if (b == 0xda && !mp_need(m, 2))
        len = be(m->p, 2), m->p += 2;
    else if (b == 0xdb && !mp_need(m, 4))
        len = be(m->p, 4), m->p += 4;
    else
        return -EINVAL;
    if (mp_need(m, len))
        return -EINVAL;
    *s = m->p;
    *n = len;
    m->p += len;
    return 0;
}

static int mp_uint(mp_t *m, uint64_t *v)
{
    if (mp_need(m, 1))
        return -EINVAL;
    uint8_t b = *m->p++;
    static const int w[] = {1, 2, 4, 8};
    if (b < 0x80) {
        *v = b;
        return 0;
    }
    if (b >= 0xcc && b <= 0xcf) {
        int n = w[b - 0xcc];
        if (mp_need(m, (size_t)n))
            return -EINVAL;
        *v = be(m->p, n);
        m->p += n;
        return 0;
    }
    return -EINVAL;
}

static int mp_map(mp_t *m, uint32_t *n)
{
    if (mp_need(m, 1))
        return -EINVAL;
    uint8_t b = *m->p++;
    if ((b & 0xf0) == 0x80)
        *n = b & 15;
    else if (b == 0xde && !mp_need(m, 2))
        *n = (uint32_t)be(m->p, 2), m->p += 2;
    else if (b == 0xdf && !mp_need(m, 4))
        *n = (uint32_t)be(m->p, 4), m->p += 4;
    else
        return -EINVAL;
    return 0;
}

static int mp_skip(mp_t *m, int depth)
{
    if (mp_need(m, 1) || depth > 32)
        return -EINVAL;
    uint8_t b = *m->p;
    size_t len = 0, items = 0;
    if (b < 0x80 || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        m->p++;
        return 0;
    }
    if ((b & 0xe0) == 0xa0 || (b >= 0xd9 && b <= 0xdb)) {
        const uint8_t *s;
        return mp_str(m, &s, &len);
    }
    m->p++;
    if ((b & 0xf0) == 0x80)
        items = 2u * (b & 15);
    else if ((b & 0xf0) == 0x90)
        items = b & 15;
    else if (b >= 0xc4 && b <= 0xc6) { /* bin */
        int n = 1 << (b - 0xc4);
        if (mp_need(m, (size_t)n))
            return -EINVAL;
        len = be(m->p, n);
        m->p += n;
    } else if (b >= 0xca && b <= 0xd3) { /* float, uint, int */
        static const int w[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
        len = (size_t)w[b - 0xca];
    } else if (b >= 0xd4 && b <= 0xd8) { /* fixext */
        len = 1 + ((size_t)1 << (b - 0xd4));
    } else if (b >= 0xc7 && b <= 0xc9) { /* ext */
        int n = 1 << (b - 0xc7);
        if (mp_need(m, (size_t)n + 1))
            return -EINVAL;
        len = be(m->p, n) + 1;
        m->p += n;
    } else if (b == 0xdc || b == 0xdd) {
        int n = b == 0xdc ? 2 : 4;
        if (mp_need(m, (size_t)n))
            return -EINVAL;
        items = be(m->p, n);
        m->p += n;
    } else if (b == 0xde || b == 0xdf) {
        int n = b == 0xde ? 2 : 4;
        if (mp_need(m, (size_t)n))
            return -EINVAL;
        items = 2 * be(m->p, n);
        m->p += n;
    } else {
        return -EINVAL;
    }
    if (mp_need(m, len))
        return -EINVAL;
    m->p += len;
    for (size_t i = 0; i < items; i++)
        if (mp_skip(m, depth + 1))
            return -EINVAL;
    return 0;
}

static int key_is(const uint8_t *k, size_t n, const char *s)
{
    return strlen(s) == n && memcmp(k, s, n) == 0;
}

/* What the subscriber needs from one server message (either encoding). */
typedef struct {
    uint64_t id, offset, t, s;
    int is_pub, is_result, is_error, chan; /* chan: 0 user, 1 group */
    const uint8_t *err;
    size_t errn;
} msg_t;

static int mp_data(mp_t *m, msg_t *o)
{
    uint32_t n;
    if (mp_map(m, &n))
        return mp_skip(m, 0);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *k;
        size_t kn;
        if (mp_str(m, &k, &kn))
            return -EINVAL;
        if (key_is(k, kn, "t") && !mp_uint(m, &o->t))
            continue;
        if (key_is(k, kn, "s") && !mp_uint(m, &o->s))
            continue;
        if (mp_skip(m, 1))
            return -EINVAL;
    }
    return 0;
}

static int parse_msgpack(const uint8_t *p, size_t n, msg_t *o)
{
    mp_t m = {p, p + n};
    uint32_t nk;
    if (mp_map(&m, &nk))
        return -EINVAL;
    for (uint32_t i = 0; i < nk; i++) {
        const uint8_t *k, *s;
        size_t kn, sn;
        if (mp_str(&m, &k, &kn))
            return -EINVAL;
        if (key_is(k, kn, "id")) {
            if (mp_uint(&m, &o->id))
                return -EINVAL;
        } else if (key_is(k, kn, "push")) {
            if (mp_str(&m, &s, &sn))
                return -EINVAL;
            o->is_pub = key_is(s, sn, "pub");
        } else if (key_is(k, kn, "channel")) {
            if (mp_str(&m, &s, &sn))
                return -EINVAL;
            o->chan = !(sn >= 5 && memcmp(s, "user:", 5) == 0);
        } else if (key_is(k, kn, "offset")) {
            if (mp_uint(&m, &o->offset))
                return -EINVAL;
        } else if (key_is(k, kn, "data")) {
            if (mp_data(&m, o))
                return -EINVAL;
        } else if (key_is(k, kn, "result")) {
            uint32_t rn;
            o->is_result = 1;
            if (mp_map(&m, &rn))
                return -EINVAL;
            for (uint32_t j = 0; j < rn; j++) {
                if (mp_str(&m, &k, &kn))
                    return -EINVAL;
                if (key_is(k, kn, "offset")) {
                    if (mp_uint(&m, &o->offset))
                        return -EINVAL;
                } else if (mp_skip(&m, 1)) {
                    return -EINVAL;
                }
            }
        } else if (key_is(k, kn, "error")) {
            o->is_error = 1;
            o->err = m.p;
            o->errn = (size_t)(m.e - m.p);
            if (mp_skip(&m, 0))
                return -EINVAL;
        } else if (mp_skip(&m, 0)) {
            return -EINVAL;
        }
    }
    return 0;
}

/* JSON: our own payloads and the node's replies only, found by key (no general parser). */
static int json_uint(const uint8_t *p, size_t n, const char *key, uint64_t *v)
{
    size_t kl = strlen(key);
    const uint8_t *q = memmem(p, n, key, kl);
    if (!q)
        return -ENOENT;
    q += kl;
    uint64_t x = 0;
    int any = 0;
    while (q < p + n && *q >= '0' && *q <= '9')
        x = x * 10 + (uint64_t)(*q++ - '0'), any = 1;
    if (!any)
        return -EINVAL;
    *v = x;
    return 0;
}

static int parse_json(const uint8_t *p, size_t n, msg_t *o)
{
    json_uint(p, n, "\"id\":", &o->id);
    json_uint(p, n, "\"offset\":", &o->offset);
    json_uint(p, n, "\"t\":", &o->t);
    json_uint(p, n, "\"s\":", &o->s);
    o->is_pub = memmem(p, n, "\"push\":\"pub\"", 12) != NULL;
    o->is_result = memmem(p, n, "\"result\":", 9) != NULL;
    o->is_error = memmem(p, n, "\"error\":", 8) != NULL;
    if (o->is_error)
        o->err = p, o->errn = n;
    o->chan = memmem(p, n, "\"channel\":\"user:", 16) == NULL;
    return 0;
}

/* ---- WebSocket client -------------------------------------------------------------------------
 */

typedef struct {
    uv_write_t w;
    uv_buf_t b;
    uint8_t data[];
} wreq_t;

static void on_written(uv_write_t *w, int status)
{
    free(w);
}

static void conn_fail(conn_t *c, const char *why);

/* Sends bytes: uv_try_write first; only an incomplete write copies (rare, off the hot path). */
static int conn_send(conn_t *c, const void *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == (int)n)
        return 0;
    if (r < 0 && r != UV_EAGAIN)
        return r;
    size_t done = r > 0 ? (size_t)r : 0;
    wreq_t *w = malloc(sizeof(*w) + n - done);
    if (!w)
        return -ENOMEM;
    memcpy(w->data, (const uint8_t *)p + done, n - done);
    w->b = uv_buf_init((char *)w->data, (unsigned)(n - done));
    r = uv_write(&w->w, (uv_stream_t *)&c->tcp, &w->b, 1, on_written);
    if (r)
        free(w);
    return r;
}

/* Builds one masked client frame into out (room for n + 14 bytes). */
static size_t ws_frame(uint8_t *out, int opcode, const void *p, size_t n)
{
    static uint32_t rnd = 2463534242u;
    size_t o = 0;
    out[o++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        out[o++] = (uint8_t)(0x80 | n);
    } else {
        out[o++] = 0x80 | 126;
        out[o++] = (uint8_t)(n >> 8);
        out[o++] = (uint8_t)n;
    }
    rnd ^= rnd << 13, rnd ^= rnd >> 17, rnd ^= rnd << 5;
    uint8_t mk[4] = {(uint8_t)rnd, (uint8_t)(rnd >> 8), (uint8_t)(rnd >> 16), (uint8_t)(rnd >> 24)};
    memcpy(out + o, mk, 4);
    o += 4;
    for (size_t i = 0; i < n; i++)
        out[o + i] = ((const uint8_t *)p)[i] ^ mk[i & 3];
    return o + n;
}

static int ws_send(conn_t *c, int opcode, const void *p, size_t n)
{
    uint8_t f[1200];
    if (n + 14 > sizeof(f))
        return -E2BIG;
    return conn_send(c, f, ws_frame(f, opcode, p, n));
}

/* ---- per-target protocol ----------------------------------------------------------------------
 */

static void conn_done_setup(conn_t *c)
{
    c->state = ST_READY;
    G.ready++;
    G.t_last = now_us(CLOCK_REALTIME);
}

static void maybe_start_more(void);

static void record_pub(conn_t *c, int ch, uint64_t seq, uint64_t t, int exact)
{
    uint64_t now = now_us(CLOCK_REALTIME);
    hist_add(&G.lat, now > t ? now - t : 0);
    G.rx++;
    G.rx_total++;
    uint64_t *e = &c->expect[ch];
    if (exact) { /* cardgw offsets: consecutive per channel */
        if (seq == *e) {
            (*e)++;
        } else if (seq > *e) {
            G.gap += seq - *e;
            *e = seq + 1;
        } else {
            G.dup++;
        }
    } else { /* peers: a publisher sequence, increasing */
        if (seq && seq <= *e)
            G.dup++;
        else
            *e = seq;
    }
}

static void cardgw_send_cmd(conn_t *c, uint32_t id, const char *cmd, const char *key,
                            const char *val, size_t vlen)
{
    uint8_t m[2400];
    size_t n;
    if (G.json) {
        n = (size_t)snprintf((char *)m, sizeof(m), "{\"id\":%u,\"cmd\":\"%s\",\"%s\":\"%.*s\"}", id,
                             cmd, key, (int)vlen, val);
    } else {
        size_t cl = strlen(cmd), kl = strlen(key);
        n = 0;
        m[n++] = 0x83;
        m[n++] = 0xa2, m[n++] = 'i', m[n++] = 'd';
        m[n++] = (uint8_t)id; /* ids < 128 */
        m[n++] = 0xa3, memcpy(m + n, "cmd", 3), n += 3;
        m[n++] = (uint8_t)(0xa0 | cl), memcpy(m + n, cmd, cl), n += cl;
        m[n++] = (uint8_t)(0xa0 | kl), memcpy(m + n, key, kl), n += kl;
        if (vlen < 32) {
            m[n++] = (uint8_t)(0xa0 | vlen);
        } else if (vlen < 256) {
            m[n++] = 0xd9, m[n++] = (uint8_t)vlen;
        } else {
            m[n++] = 0xda, m[n++] = (uint8_t)(vlen >> 8), m[n++] = (uint8_t)vlen;
        }
        memcpy(m + n, val, vlen);
        n += vlen;
    }
    if (ws_send(c, G.json ? 1 : 2, m, n))
        conn_fail(c, "send");
}

static void cardgw_open(conn_t *c)
{
    char tok[2048];
    size_t n = make_jwt(tok, c->idx);
    c->state = ST_AUTH;
    cardgw_send_cmd(c, 1, "connect", "token", tok, n);
}

static void cardgw_message(conn_t *c, const uint8_t *p, size_t n)
{
    msg_t m;
    memset(&m, 0, sizeof(m));
    if ((G.json ? parse_json(p, n, &m) : parse_msgpack(p, n, &m)) != 0) {
        note_error("undecodable", p, n);
        return;
    }
    if (m.is_pub) {
        record_pub(c, m.chan, m.offset, m.t, 1);
        return;
    }
    if (m.is_error) {
        note_error("error reply", m.err, m.errn);
        if (c->state < ST_READY)
            conn_fail(c, "error reply");
        return;
    }
    if (!m.is_result)
        return; /* join/leave and other pushes */
    if (m.id == 1 && c->state == ST_AUTH) {
        hist_add(&G.ttfr, now_us(CLOCK_MONOTONIC) - c->t_start);
        if (G.no_sub) {
            conn_done_setup(c);
            maybe_start_more();
            return;
        }
        char ch[64];
        c->state = ST_SUB;
        int k = snprintf(ch, sizeof(ch), "user:u%u", c->idx);
        cardgw_send_cmd(c, 2, "subscribe", "channel", ch, (size_t)k);
        k = snprintf(ch, sizeof(ch), "group:g%u", c->idx % (unsigned)G.groups);
        cardgw_send_cmd(c, 3, "subscribe", "channel", ch, (size_t)k);
    } else if ((m.id == 2 || m.id == 3) && c->state == ST_SUB) {
        c->expect[m.id - 2] = m.offset + 1;
        if (++c->subacks == 2) {
            conn_done_setup(c);
            maybe_start_more();
        }
    }
}

static void socketio_message(conn_t *c, const uint8_t *p, size_t n)
{
    if (n >= 1 && p[0] == '2') { /* engine.io ping */
        G.pings++;
        if (ws_send(c, 1, "3", 1))
            conn_fail(c, "send");
        return;
    }
    if (n >= 2 && p[0] == '4' && p[1] == '2') {
        msg_t m;
        memset(&m, 0, sizeof(m));
        parse_json(p, n, &m);
        record_pub(c, memmem(p, n, "\"c\":\"u\"", 7) ? 0 : 1, m.s, m.t, 0);
        return;
    }
    if (n >= 1 && p[0] == '0' && c->state == ST_AUTH) { /* engine.io open: join namespace "/" */
        char a[96];
        int k = snprintf(a, sizeof(a), "40{\"uid\":\"u%u\",\"g\":\"g%u\"}", c->idx,
                         c->idx % (unsigned)G.groups);
        if (ws_send(c, 1, a, (size_t)k))
            conn_fail(c, "send");
        return;
    }
    if (n >= 2 && p[0] == '4' && p[1] == '0' && c->state == ST_AUTH) {
        hist_add(&G.ttfr, now_us(CLOCK_MONOTONIC) - c->t_start);
        conn_done_setup(c);
        maybe_start_more();
        return;
    }
    if (n >= 2 && p[0] == '4' && p[1] == '4')
        note_error("socket.io connect_error", p, n);
}

static void nchan_message(conn_t *c, const uint8_t *p, size_t n)
{
    msg_t m;
    memset(&m, 0, sizeof(m));
    parse_json(p, n, &m);
    record_pub(c, memmem(p, n, "\"c\":\"u\"", 7) ? 0 : 1, m.s, m.t, 0);
}

static void on_ws_open(conn_t *c)
{
    if (G.target == T_CARDGW) {
        cardgw_open(c);
    } else if (G.target == T_SOCKETIO) {
        c->state = ST_AUTH; /* waits for the engine.io open packet */
    } else {
        hist_add(&G.ttfr, now_us(CLOCK_MONOTONIC) - c->t_start);
        conn_done_setup(c);
        maybe_start_more();
    }
}

static void on_ws_message(conn_t *c, const uint8_t *p, size_t n)
{
    if (G.target == T_CARDGW)
        cardgw_message(c, p, n);
    else if (G.target == T_SOCKETIO)
        socketio_message(c, p, n);
    else
        nchan_message(c, p, n);
}

/* Consumes whole frames from p; returns the bytes consumed (the rest is an incomplete frame). */
static size_t ws_parse(conn_t *c, uint8_t *p, size_t n)
{
    size_t o = 0;
    if (c->state == ST_HTTP) {
        uint8_t *e = memmem(p, n, "\r\n\r\n", 4);
        if (!e)
            return 0;
        if (n < 12 || memcmp(p + 9, "101", 3) != 0) {
            note_error("upgrade refused", p, n);
            conn_fail(c, "upgrade");
            return n;
        }
        o = (size_t)(e - p) + 4;
        on_ws_open(c);
    }
    while (o + 2 <= n && c->state != ST_DEAD) {
        uint8_t b0 = p[o], b1 = p[o + 1];
        size_t h = 2, len = b1 & 127;
        if (len == 126) {
            if (o + 4 > n)
                break;
            len = (size_t)be(p + o + 2, 2);
            h = 4;
        } else if (len == 127) {
            if (o + 10 > n)
                break;
            len = (size_t)be(p + o + 2, 8);
            h = 10;
        }
        if (b1 & 0x80)
            h += 4; /* servers do not mask; tolerate it anyway */
        if (len > 1u << 20) {
            conn_fail(c, "frame too big");
            return n;
        }
        if (o + h + len > n)
            break;
        uint8_t *pl = p + o + h;
        int op = b0 & 15;
        if (op == 1 || op == 2) {
            on_ws_message(c, pl, len);
        } else if (op == 9) {
            if (ws_send(c, 10, pl, len))
                conn_fail(c, "send");
        } else if (op == 8) {
            note_error("close frame", len > 2 ? pl + 2 : pl, len > 2 ? len - 2 : 0);
            conn_fail(c, "closed by server");
            return n;
        }
        o += h + len;
    }
    return o;
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    *b = uv_buf_init((char *)G.rbuf, sizeof(G.rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nr, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (nr < 0) {
        conn_fail(c, uv_strerror((int)nr));
        return;
    }
    if (nr == 0)
        return;
    uint8_t *p = G.rbuf;
    size_t n = (size_t)nr;
    if (c->carry_len) { /* append to the partial frame kept from the last read */
        size_t need = c->carry_len + n;
        if (need > c->carry_cap) {
            size_t cap = need < 4096 ? 4096 : need;
            if (cap > 65535) {
                conn_fail(c, "carry overflow");
                return;
            }
            uint8_t *q = realloc(c->carry, cap);
            if (!q) {
                conn_fail(c, "oom");
                return;
            }
            c->carry = q;
            c->carry_cap = (uint16_t)cap;
        }
        memcpy(c->carry + c->carry_len, p, n);
        p = c->carry;
        n = need;
    }
    size_t used = ws_parse(c, p, n);
    if (c->state == ST_DEAD)
        return;
    size_t left = n - used;
    if (left && p != c->carry) {
        if (left > c->carry_cap) {
            size_t cap = left < 4096 ? 4096 : left;
            uint8_t *q = cap <= 65535 ? realloc(c->carry, cap) : NULL;
            if (!q) {
                conn_fail(c, "carry overflow");
                return;
            }
            c->carry = q;
            c->carry_cap = (uint16_t)cap;
        }
        memcpy(c->carry, p + used, left);
    } else if (left) {
        memmove(c->carry, c->carry + used, left);
    }
    c->carry_len = (uint16_t)left;
}

static void on_connected(uv_connect_t *cr, int status)
{
    conn_t *c = cr->data;
    if (c->state == ST_DEAD)
        return;
    if (status) {
        conn_fail(c, uv_strerror(status));
        return;
    }
    c->state = ST_HTTP;
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c;
    char req[512];
    const char *q = G.req;
    int n = G.reqlen;
    if (G.target == T_NCHAN) { /* Nchan takes the channel ids from the URL */
        n = snprintf(req, sizeof(req), "GET /sub/user_u%u/group_g%u%s", c->idx,
                     c->idx % (unsigned)G.groups, strchr(G.req, ' ') + 1 + strlen(G.path));
        q = req;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) || conn_send(c, q, (size_t)n))
        conn_fail(c, "start");
}

static void print_stats(const char *ev);

static void check_ready(void)
{
    if (G.ready_printed || G.ready + G.failed < G.conns)
        return;
    G.ready_printed = 1;
    uv_timer_stop(&G.t_ready);
    print_stats("ready");
}

static void conn_fail(conn_t *c, const char *why)
{
    if (c->state == ST_DEAD)
        return;
    if (c->state == ST_READY) {
        G.closed++;
        G.ready--;
    } else {
        G.failed++;
        G.active--;
        if (!G.err_msg[0])
            snprintf(G.err_msg, sizeof(G.err_msg), "setup failed: %s", why);
    }
    c->state = ST_DEAD;
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, NULL);
    maybe_start_more();
}

static int conn_start(conn_t *c)
{
    struct sockaddr_in src, dst;
    memset(&src, 0, sizeof(src));
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000002u + (c->idx % (unsigned)G.nsrc));
    uv_ip4_addr(G.host, G.port, &dst);
    c->t_start = now_us(CLOCK_MONOTONIC);
    if (!G.t_first)
        G.t_first = now_us(CLOCK_REALTIME);
    c->state = ST_TCP;
    int r = uv_tcp_init_ex(G.loop, &c->tcp, AF_INET);
    if (r)
        return r;
    c->tcp.data = c;
    c->creq.data = c;
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    r = uv_tcp_bind(&c->tcp, (struct sockaddr *)&src, 0);
    if (!r)
        r = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&dst, on_connected);
    return r;
}

static void maybe_start_more(void)
{
    /* in flight = started and not yet ready or failed; --connect-rate paces the starts */
    int limit = G.conns;
    if (G.connect_rate > 0) {
        double allowed = (double)(now_us(CLOCK_MONOTONIC) - G.t_begin) * G.connect_rate / 1e6 + 1;
        if (allowed < limit)
            limit = (int)allowed;
    }
    while (G.next < limit && (G.next - G.ready - G.failed - G.closed) < G.inflight) {
        conn_t *c = &G.c[G.next++];
        G.active++;
        int r = conn_start(c);
        if (r) {
            if (c->state == ST_TCP && !uv_is_closing((uv_handle_t *)&c->tcp))
                uv_close((uv_handle_t *)&c->tcp, NULL);
            c->state = ST_DEAD;
            G.failed++;
            if (!G.err_msg[0])
                snprintf(G.err_msg, sizeof(G.err_msg), "connect: %s", uv_strerror(r));
        }
    }
    check_ready();
}

/* ---- reporting --------------------------------------------------------------------------------
 */

static long self_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void print_stats(const char *ev)
{
    FILE *f = stdout;
    fprintf(f,
            "{\"ev\":\"%s\",\"pid\":%d,\"conns\":%d,\"ready\":%d,\"failed\":%d,\"closed\":%d,"
            "\"t_first\":%llu,\"t_last\":%llu,\"now\":%llu,\"rx\":%llu,\"rx_total\":%llu,"
            "\"dup\":%llu,\"gap\":%llu,\"errors\":%llu,\"pings\":%llu,\"maxrss_kb\":%ld,"
            "\"err\":\"%s\",\"lat\":",
            ev, (int)getpid(), G.conns, G.ready, G.failed, G.closed, (unsigned long long)G.t_first,
            (unsigned long long)G.t_last, (unsigned long long)now_us(CLOCK_REALTIME),
            (unsigned long long)G.rx, (unsigned long long)G.rx_total, (unsigned long long)G.dup,
            (unsigned long long)G.gap, (unsigned long long)G.errors, (unsigned long long)G.pings,
            self_rss_kb(), G.err_msg);
    hist_print(f, &G.lat);
    fputs(",\"ttfr\":", f);
    hist_print(f, &G.ttfr);
    fputs("}\n", f);
    fflush(f);
}

static void on_signal(uv_signal_t *s, int sig)
{
    if (sig == SIGUSR2) { /* progress only: counts, nothing reset */
        printf("{\"ev\":\"peek\",\"rx_total\":%llu,\"ready\":%d,\"closed\":%d}\n",
               (unsigned long long)G.rx_total, G.ready, G.closed);
        fflush(stdout);
        return;
    }
    if (sig == SIGUSR1) { /* end of a load step: report it and start the next one */
        print_stats("step");
        memset(&G.lat, 0, sizeof(G.lat));
        G.rx = 0;
        return;
    }
    print_stats("final");
    exit(0);
}

static void on_duration(uv_timer_t *t)
{
    print_stats("final");
    exit(0);
}

static void on_ready_timeout(uv_timer_t *t)
{
    if (!G.ready_printed) {
        G.ready_printed = 1;
        print_stats("ready");
    }
}

static void on_pace(uv_timer_t *t)
{
    maybe_start_more();
    if (G.next >= G.conns)
        uv_timer_stop(t);
}

static int run_sub(void)
{
    G.loop = uv_default_loop();
    G.c = calloc((size_t)G.conns, sizeof(conn_t));
    if (!G.c)
        return -ENOMEM;
    for (int i = 0; i < G.conns; i++)
        G.c[i].idx = (uint32_t)(G.first + i);
    if (!G.path)
        G.path = G.target == T_SOCKETIO ? "/socket.io/?EIO=4&transport=websocket" : "/ws";
    G.reqlen =
        snprintf(G.req, sizeof(G.req),
                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                 G.path, G.host, G.port, G.target == T_CARDGW ? "Sec-WebSocket-Protocol: " : "",
                 G.target == T_CARDGW ? (G.json ? "cardgw.v1.json" : "cardgw.v1.msgpack") : "",
                 G.target == T_CARDGW ? "\r\n" : "");
    uv_timer_init(G.loop, &G.t_dur);
    uv_timer_init(G.loop, &G.t_ready);
    uv_timer_start(&G.t_dur, on_duration, (uint64_t)(G.duration * 1000), 0);
    uv_timer_start(&G.t_ready, on_ready_timeout, (uint64_t)(G.ready_timeout * 1000), 0);
    uv_signal_init(G.loop, &G.s_usr1);
    uv_signal_init(G.loop, &G.s_usr2);
    uv_signal_init(G.loop, &G.s_term);
    uv_signal_init(G.loop, &G.s_int);
    uv_signal_start(&G.s_usr1, on_signal, SIGUSR1);
    uv_signal_start(&G.s_usr2, on_signal, SIGUSR2);
    uv_signal_start(&G.s_term, on_signal, SIGTERM);
    uv_signal_start(&G.s_int, on_signal, SIGINT);
    G.t_begin = now_us(CLOCK_MONOTONIC);
    if (G.connect_rate > 0) {
        uv_timer_init(G.loop, &G.t_pace);
        uv_timer_start(&G.t_pace, on_pace, 1, 1);
    }
    maybe_start_more();
    return uv_run(G.loop, UV_RUN_DEFAULT) < 0 ? -EIO : 0;
}

/* ---- publishers -------------------------------------------------------------------------------
 */

/* Payload of `bytes` bytes: {"t":<realtime µs>,"s":<seq>,"pad":"xxx"} as msgpack or JSON. */
static size_t make_payload(uint8_t *out, int msgpack, uint64_t seq, int bytes)
{
    uint64_t t = now_us(CLOCK_REALTIME);
    if (msgpack) {
        size_t n = 0, pad = bytes > 31 ? (size_t)bytes - 31 : 0;
        out[n++] = 0x83;
        out[n++] = 0xa1, out[n++] = 't', out[n++] = 0xcf;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(t >> (8 * i));
        out[n++] = 0xa1, out[n++] = 's', out[n++] = 0xcf;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(seq >> (8 * i));
        out[n++] = 0xa3, memcpy(out + n, "pad", 3), n += 3;
        out[n++] = 0xd9, out[n++] = (uint8_t)pad;
        memset(out + n, 'x', pad);
        return n + pad;
    }
    int n = sprintf((char *)out, "{\"t\":%llu,\"s\":%llu,\"pad\":\"", (unsigned long long)t,
                    (unsigned long long)seq);
    int pad = bytes - n - 2;
    if (pad < 0)
        pad = 0;
    memset(out + n, 'x', (size_t)pad);
    memcpy(out + n + pad, "\"}", 2);
    return (size_t)(n + pad + 2);
}

static int read_file(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    *out = buf;
    return 0;
}

static void print_pub(const char *kind, long sent, long errors, uint64_t t0, uint64_t t1,
                      hist_t *ack)
{
    printf("{\"ev\":\"pub\",\"kind\":\"%s\",\"published\":%ld,\"errors\":%ld,\"seq_start\":%llu,"
           "\"elapsed_us\":%llu,\"err\":\"%s\",\"ack\":",
           kind, sent, errors, (unsigned long long)G.seq_start, (unsigned long long)(t1 - t0),
           G.err_msg);
    hist_print(stdout, ack);
    puts("}");
    fflush(stdout);
}

/* Publications due by now at the fixed rate, bounded by count. */
static long pub_due(uint64_t t0, uint64_t now, long total)
{
    long due = (long)((double)(now - t0) * G.rate / 1e6) + 1;
    return due < total ? due : total;
}

static int run_pub_redis(void)
{
    char *lua;
    if (read_file(G.script, &lua))
        return -ENOENT;
    redisContext *rc = redisConnect(G.host, G.redis_port);
    if (!rc || rc->err)
        return -ECONNREFUSED;
    redisReply *r = redisCommand(rc, "SCRIPT LOAD %s", lua);
    if (!r || r->type != REDIS_REPLY_STRING)
        return -EIO;
    char sha[41];
    snprintf(sha, sizeof(sha), "%s", r->str);
    freeReplyObject(r);
    long total = G.count > 0 ? G.count : (long)(G.rate * G.pub_duration);
    long sent = 0, acked = 0, errors = 0;
    uint64_t t0 = now_us(CLOCK_MONOTONIC),
             deadline = t0 + (uint64_t)(G.pub_duration * 3e6) + 5000000;
    hist_t *ack = calloc(1, sizeof(hist_t));
    uint8_t data[2048];
    while (acked < total && now_us(CLOCK_MONOTONIC) < deadline) {
        long due = pub_due(t0, now_us(CLOCK_MONOTONIC), total), batch = 0;
        uint64_t tb = now_us(CLOCK_MONOTONIC);
        for (; sent < due; sent++, batch++) {
            char ch[64], k1[96], k2[96], k3[96];
            uint64_t seq = G.seq_start + (uint64_t)sent + 1;
            snprintf(ch, sizeof(ch), "group:g%ld", sent % G.groups);
            snprintf(k1, sizeof(k1), "cardgw:{%s}:m", ch);
            snprintf(k2, sizeof(k2), "cardgw:{%s}:x", ch);
            snprintf(k3, sizeof(k3), "cardgw:{%s}", ch);
            size_t dn = make_payload(data, 1, seq, G.bytes);
            /* as the node calls it: no offline stream (ARGV[8] 0), relay timestamps on (ARGV[9]) */
            redisAppendCommand(rc, "EVALSHA %s 3 %s %s %s %b m %s 100 600 604800 0 0 1", sha, k1,
                               k2, k3, data, dn, "");
        }
        for (; batch > 0; batch--, acked++) {
            if (redisGetReply(rc, (void **)&r) != REDIS_OK) {
                note_error("redis", rc->errstr, strlen(rc->errstr));
                return -EIO;
            }
            if (r->type != REDIS_REPLY_ARRAY) {
                errors++;
                if (r->type == REDIS_REPLY_ERROR)
                    note_error("evalsha", r->str, r->len);
            }
            freeReplyObject(r);
        }
        hist_add(ack, now_us(CLOCK_MONOTONIC) - tb);
        if (sent < total) {
            uint64_t next = t0 + (uint64_t)((double)sent * 1e6 / G.rate),
                     now = now_us(CLOCK_MONOTONIC);
            if (next > now)
                usleep((useconds_t)(next - now));
        }
    }
    print_pub("redis", acked, errors, t0, now_us(CLOCK_MONOTONIC), ack);
    redisFree(rc);
    return 0;
}

/* HTTP publisher: http_conns keep-alive connections, one request in flight on each. */
typedef struct {
    int fd, busy;
    size_t rlen;
    uint64_t t_sent;
    char rbuf[4096];
} hconn_t;

static int hconn_open(hconn_t *h)
{
    struct sockaddr_in a;
    uv_ip4_addr(G.host, G.port, &a);
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (h->fd < 0 || connect(h->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        return -errno;
    int one = 1;
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(h->fd, F_SETFL, O_NONBLOCK);
    h->busy = 0;
    h->rlen = 0;
    return 0;
}

/* 1 when a whole response sits in rbuf (then consumed), 0 when more is needed. */
static int http_response_done(hconn_t *h, int *ok)
{
    char *e = memmem(h->rbuf, h->rlen, "\r\n\r\n", 4);
    if (!e)
        return 0;
    size_t hl = (size_t)(e - h->rbuf) + 4, cl = 0;
    char *q = memmem(h->rbuf, hl, "ontent-Length:", 14);
    if (!q)
        q = memmem(h->rbuf, hl, "ontent-length:", 14);
    if (q)
        cl = strtoul(q + 14, NULL, 10);
    if (h->rlen < hl + cl)
        return 0;
    *ok = h->rlen > 12 && h->rbuf[9] == '2';
    if (!*ok)
        note_error("http", h->rbuf, h->rlen);
    memmove(h->rbuf, h->rbuf + hl + cl, h->rlen - hl - cl);
    h->rlen -= hl + cl;
    return 1;
}

static int http_send_pub(hconn_t *h, long i)
{
    char req[2048], body[1024];
    uint8_t data[1024];
    long g = i % G.groups;
    uint64_t seq = G.seq_start + (uint64_t)i + 1;
    size_t dn = make_payload(data, 0, seq, G.bytes);
    int bl, rl;
    if (G.target == T_CARDGW) {
        bl = snprintf(body, sizeof(body), "{\"channel\":\"group:g%ld\",\"data\":%.*s}", g, (int)dn,
                      data);
        rl = snprintf(req, sizeof(req),
                      "POST /api/v1/publish HTTP/1.1\r\nHost: %s\r\nAuthorization: apikey %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                      G.host, G.api_key, bl, body);
    } else if (G.target == T_NCHAN) {
        rl = snprintf(req, sizeof(req),
                      "POST /pub/group_g%ld HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                      "application/json\r\nAccept: text/json\r\nContent-Length: %zu\r\n\r\n%.*s",
                      g, G.host, dn, (int)dn, data);
    } else {
        rl = snprintf(req, sizeof(req),
                      "POST /publish?ch=group:g%ld HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                      "application/json\r\nContent-Length: %zu\r\n\r\n%.*s",
                      g, G.host, dn, (int)dn, data);
    }
    h->t_sent = now_us(CLOCK_MONOTONIC);
    if (write(h->fd, req, (size_t)rl) != rl) /* small request on an idle socket */
        return -EIO;
    h->busy = 1;
    return 0;
}

static int run_pub_http(void)
{
    int nc = G.http_conns;
    hconn_t *hc = calloc((size_t)nc, sizeof(*hc));
    struct pollfd *pf = calloc((size_t)nc, sizeof(*pf));
    hist_t *ack = calloc(1, sizeof(hist_t));
    for (int i = 0; i < nc; i++)
        if (hconn_open(&hc[i]))
            return -ECONNREFUSED;
    long total = G.count > 0 ? G.count : (long)(G.rate * G.pub_duration);
    long sent = 0, done = 0, errors = 0;
    uint64_t t0 = now_us(CLOCK_MONOTONIC),
             deadline = t0 + (uint64_t)(G.pub_duration * 3e6) + 5000000;
    while (done < total && now_us(CLOCK_MONOTONIC) < deadline) {
        long due = pub_due(t0, now_us(CLOCK_MONOTONIC), total);
        for (int i = 0; i < nc && sent < due; i++)
            if (!hc[i].busy) {
                if (http_send_pub(&hc[i], sent)) {
                    errors++;
                    close(hc[i].fd);
                    if (hconn_open(&hc[i]))
                        return -ECONNREFUSED;
                }
                sent++;
            }
        for (int i = 0; i < nc; i++)
            pf[i] = (struct pollfd){.fd = hc[i].fd, .events = POLLIN};
        int wait_ms = 1;
        if (poll(pf, (nfds_t)nc, wait_ms) < 0 && errno != EINTR)
            return -errno;
        for (int i = 0; i < nc; i++) {
            if (!(pf[i].revents & (POLLIN | POLLERR | POLLHUP)))
                continue;
            hconn_t *h = &hc[i];
            ssize_t r = read(h->fd, h->rbuf + h->rlen, sizeof(h->rbuf) - h->rlen);
            if (r <= 0) {
                if (h->busy)
                    errors++, done++;
                close(h->fd);
                if (hconn_open(h))
                    return -ECONNREFUSED;
                continue;
            }
            h->rlen += (size_t)r;
            int ok;
            while (h->busy && http_response_done(h, &ok)) {
                h->busy = 0;
                done++;
                if (!ok)
                    errors++;
                hist_add(ack, now_us(CLOCK_MONOTONIC) - h->t_sent);
            }
        }
    }
    print_pub("http", done, errors, t0, now_us(CLOCK_MONOTONIC), ack);
    for (int i = 0; i < nc; i++)
        close(hc[i].fd);
    return 0;
}

/* ---- main -------------------------------------------------------------------------------------
 */

static void usage(void)
{
    fputs("usage: loadgen --mode sub|pub-redis|pub-http [options]\n"
          " common: --target cardgw|nchan|socketio --host A --port P --groups G\n"
          " sub:    --conns N --first K --src N --inflight N --json --no-subscribe --path P\n"
          "         --connect-rate R (new connections per second; default: as fast as possible)\n"
          "         --info B (tokens carry an info claim of about B bytes: presence cards)\n"
          "         --secret S --duration S --ready-timeout S   (SIGUSR1: step, SIGUSR2: peek)\n"
          " pub:    --rate R --count N --pub-duration S --bytes B --seq-start K\n"
          "         --redis-port P --script FILE (pub-redis) --http-conns N --api-key K\n"
          "Prints JSON lines: ready/step/final (sub), pub (publishers).\n",
          stderr);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"mode", 1, 0, 'm'},          {"target", 1, 0, 'T'},
                                         {"host", 1, 0, 'h'},          {"port", 1, 0, 'p'},
                                         {"path", 1, 0, 'P'},          {"conns", 1, 0, 'n'},
                                         {"first", 1, 0, 'f'},         {"groups", 1, 0, 'g'},
                                         {"src", 1, 0, 's'},           {"json", 0, 0, 'j'},
                                         {"inflight", 1, 0, 'i'},      {"no-subscribe", 0, 0, 'N'},
                                         {"secret", 1, 0, 'S'},        {"duration", 1, 0, 'd'},
                                         {"ready-timeout", 1, 0, 'R'}, {"rate", 1, 0, 'r'},
                                         {"count", 1, 0, 'c'},         {"pub-duration", 1, 0, 'D'},
                                         {"bytes", 1, 0, 'b'},         {"seq-start", 1, 0, 'q'},
                                         {"redis-port", 1, 0, 'e'},    {"script", 1, 0, 'l'},
                                         {"http-conns", 1, 0, 'H'},    {"api-key", 1, 0, 'k'},
                                         {"connect-rate", 1, 0, 'C'},  {"info", 1, 0, 'I'},
                                         {"help", 0, 0, '?'},          {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm':
            G.mode = optarg;
            break;
        case 'T':
            G.target = !strcmp(optarg, "nchan")      ? T_NCHAN
                       : !strcmp(optarg, "socketio") ? T_SOCKETIO
                                                     : T_CARDGW;
            break;
        case 'h':
            G.host = optarg;
            break;
        case 'p':
            G.port = atoi(optarg);
            break;
        case 'P':
            G.path = optarg;
            break;
        case 'n':
            G.conns = atoi(optarg);
            break;
        case 'f':
            G.first = atoi(optarg);
            break;
        case 'g':
            G.groups = atoi(optarg);
            break;
        case 's':
            G.nsrc = atoi(optarg);
            break;
        case 'j':
            G.json = 1;
            break;
        case 'i':
            G.inflight = atoi(optarg);
            break;
        case 'N':
            G.no_sub = 1;
            break;
        case 'S':
            G.secret = optarg;
            break;
        case 'd':
            G.duration = atof(optarg);
            break;
        case 'R':
            G.ready_timeout = atof(optarg);
            break;
        case 'r':
            G.rate = atof(optarg);
            break;
        case 'c':
            G.count = atol(optarg);
            break;
        case 'D':
            G.pub_duration = atof(optarg);
            break;
        case 'b':
            G.bytes = atoi(optarg);
            break;
        case 'q':
            G.seq_start = strtoull(optarg, NULL, 10);
            break;
        case 'e':
            G.redis_port = atoi(optarg);
            break;
        case 'l':
            G.script = optarg;
            break;
        case 'H':
            G.http_conns = atoi(optarg);
            break;
        case 'k':
            G.api_key = optarg;
            break;
        case 'C':
            G.connect_rate = atof(optarg);
            break;
        case 'I':
            G.info = atoi(optarg);
            break;
        default:
            usage();
            return 2;
        }
    }
    if (G.groups < 1 || G.conns < 1 || G.nsrc < 1 || G.rate <= 0 || G.bytes < 40 || G.bytes > 900) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int r;
    if (!strcmp(G.mode, "sub"))
        r = run_sub();
    else if (!strcmp(G.mode, "pub-redis"))
        r = run_pub_redis();
    else if (!strcmp(G.mode, "pub-http"))
        r = run_pub_http();
    else
        r = -EINVAL;
    if (r)
        fprintf(stderr, "loadgen: %s: %s %s\n", G.mode, strerror(-r), G.err_msg);
    return r ? 1 : 0;
}
