/* schema.c — builds every Redis key and pub/sub channel name the node uses and parses the relay
 * frame and control messages; nothing else in the node spells "cardgw:" (scripts/ aside). */
#include "cardgw/schema.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t gw_schema_len(int k, size_t cap)
{
    return k < 0 ? 0 : GW_MIN((size_t)k, cap - 1);
}

size_t gw_schema_channel_key(char *out, size_t cap, const char *ch, size_t n, gw_channel_key_t k)
{
    static const char *const suffix[] = {"", ":m", ":x", ":p"};
    return gw_schema_len(snprintf(out, cap, "cardgw:{%.*s}%s", (int)n, ch, suffix[k]), cap);
}

int gw_schema_channel_of(const char *rch, size_t rn, const char **ch, size_t *n)
{
    if (rn < 9 || memcmp(rch, "cardgw:{", 8) != 0 || rch[rn - 1] != '}')
        return -EINVAL;
    *ch = rch + 8;
    *n = rn - 9;
    return 0;
}

uint32_t gw_schema_shard(const char *ch, size_t n, uint32_t nshards)
{
    uint64_t key = 14695981039346656037ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++)
        key = (key ^ (uint8_t)ch[i]) * 1099511628211ull;
    int64_t b = -1, j = 0; /* jump consistent hash */
    while (j < (int64_t)nshards) {
        b = j;
        key = key * 2862933555777941757ull + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1ll << 31) / (double)((key >> 33) + 1)));
    }
    return (uint32_t)(b < 0 ? 0 : b);
}

size_t gw_schema_session_key(char *out, size_t cap, const char *token, size_t n)
{
    return gw_schema_len(snprintf(out, cap, "cardgw:session:%.*s", (int)n, token), cap);
}

size_t gw_schema_members_key(char *out, size_t cap, const char *ns, size_t nsn, const char *id,
                             size_t idn)
{
    return gw_schema_len(snprintf(out, cap, "cardgw:%.*s:%.*s:members", (int)nsn, ns, (int)idn, id),
                         cap);
}

size_t gw_schema_probe_channel(char *out, size_t cap, const char *node_id)
{
    return gw_schema_len(snprintf(out, cap, "cardgw:probe:%s", node_id), cap);
}

size_t gw_schema_reply_channel(char *out, size_t cap, const char *node_id)
{
    return gw_schema_len(snprintf(out, cap, "cardgw:reply:%s", node_id), cap);
}

size_t gw_schema_rpc_req(char *out, size_t cap, const char *instance, uint64_t seq)
{
    int k = snprintf(out, cap, "%s-%" PRIu64, instance, seq);
    return k < 0 || (size_t)k >= cap ? 0 : (size_t)k;
}

int gw_schema_parse_rpc_req(gw_slice_t req, const char *instance, uint64_t *seq)
{
    size_t il = strlen(instance), dn = req.n - il - 1;
    if (req.n <= il + 1 || memcmp(req.p, instance, il) != 0 || req.p[il] != '-' || dn > 20)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = il + 1; i < req.n; i++) {
        unsigned d = (unsigned)(req.p[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *seq = v;
    return 0;
}

/* Copies the message, cut to GW_SCHEMA_ANSWER_MESSAGE_MAX bytes at a character boundary and at a
 * NUL (it becomes a C string). s is valid UTF-8. */
static void gw_schema_message(char *out, gw_slice_t s)
{
    size_t n = strnlen(s.p, GW_MIN(s.n, (size_t)GW_SCHEMA_ANSWER_MESSAGE_MAX));
    if (n < s.n)
        while (n > 0 && ((uint8_t)s.p[n] & 0xc0) == 0x80) /* not inside a character */
            n--;
    memcpy(out, s.p, n);
    out[n] = '\0';
}

int gw_schema_parse_rpc_answer(const char *p, size_t n, gw_buf_t *scratch, gw_rpc_answer_t *a)
{
    memset(a, 0, sizeof(*a));
    size_t ws = 0;
    while (ws < n && (p[ws] == ' ' || p[ws] == '\t' || p[ws] == '\r' || p[ws] == '\n'))
        ws++;
    const uint8_t *m = (const uint8_t *)p;
    size_t mn = n;
    if (ws < n && p[ws] == '{') { /* JSON text: as msgpack, with the data conversion rules */
        gw_buf_reset(scratch);
        if (gw_data_json_to_msgpack((const uint8_t *)p, n, scratch) != 0)
            return -EINVAL;
        m = gw_buf_data(scratch);
        mn = scratch->len;
    }
    gw_data_field_t f[] = {{"req", NULL, 0}, {"result", NULL, 0}, {"error", NULL, 0}};
    if (gw_data_map_fields(m, mn, f, GW_ARRAY_SIZE(f)) != 0 ||
        gw_data_as_str(f[0].p, f[0].n, &a->req) != 0 || a->req.n > GW_SCHEMA_REQ_MAX ||
        !f[1].p == !f[2].p)
        return -EINVAL;
    if (f[1].p) {
        a->result = (gw_data_t){GW_DATA_MSGPACK, f[1].p, f[1].n};
        return 0;
    }
    gw_data_field_t e[] = {{"message", NULL, 0}, {"code", NULL, 0}};
    gw_slice_t msg = {"", 0};
    if (gw_data_map_fields(f[2].p, f[2].n, e, GW_ARRAY_SIZE(e)) != 0 ||
        (e[0].p && gw_data_as_str(e[0].p, e[0].n, &msg) != 0) ||
        (e[1].p && gw_data_as_int(e[1].p, e[1].n, &a->code) != 0))
        return -EINVAL;
    a->is_error = 1;
    a->has_code = e[1].p != NULL;
    gw_schema_message(a->message, msg);
    return 0;
}

size_t gw_schema_online_key(char *out, size_t cap, const char *node_id)
{
    return gw_schema_len(snprintf(out, cap, "cardgw:online:%s", node_id), cap);
}

int gw_schema_parse_relay(const char *p, size_t n, gw_relay_frame_t *w)
{
    const char *f[4], *end = p + n;
    size_t fl[4];
    w->time_us = 0;
    if (n >= 2 && p[0] == '2' && p[1] == '\n') { /* version 2: the publish time comes first */
        const char *nl = memchr(p + 2, '\n', n - 2);
        if (!nl || gw_parse_u64(p + 2, (size_t)(nl - p - 2), &w->time_us) != 0)
            return -EINVAL;
        p = nl + 1;
    } else if (n >= 2 && p[0] == '1' && p[1] == '\n') {
        p += 2;
    } else {
        return -EINVAL;
    }
    for (int i = 0; i < 4; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return -EINVAL;
        f[i] = p;
        fl[i] = (size_t)(nl - p);
        p = nl + 1;
    }
    if (fl[0] > GW_PROTO_MAX_EPOCH || fl[2] != 1 || !f[2][0] || !strchr("mjJL", f[2][0]) ||
        gw_parse_u64(f[1], fl[1], &w->pub.offset) != 0)
        return -EINVAL;
    w->kind = f[2][0];
    w->epoch = (gw_slice_t){f[0], fl[0]};
    w->pub.from = (gw_slice_t){f[3], fl[3]};
    w->pub.data.fmt = w->kind == 'j' ? GW_DATA_JSON : GW_DATA_MSGPACK;
    w->pub.data.p = (const uint8_t *)p;
    w->pub.data.n = (size_t)(end - p);
    w->info = (gw_slice_t){NULL, 0};
    if (w->kind == 'J' || w->kind == 'L') { /* the client id ends at an optional "\n<info>" */
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl) {
            w->pub.data.n = (size_t)(nl - p);
            w->info = (gw_slice_t){nl + 1, (size_t)(end - nl - 1)};
        }
    }
    return 0;
}

size_t gw_schema_presence_frame(char *out, size_t cap, int join, const char *uid, const char *cid,
                                const char *info)
{
    return gw_schema_len(snprintf(out, cap, "1\n\n0\n%c\n%s\n%s%s%s", join ? 'J' : 'L', uid, cid,
                                  info ? "\n" : "", info ? info : ""),
                         cap);
}

size_t gw_schema_presence_member(char *out, size_t cap, const char *uid, const char *cid,
                                 const char *info)
{
    return gw_schema_len(
        snprintf(out, cap, "%s %s%s%s", uid, cid, info ? " " : "", info ? info : ""), cap);
}

int gw_schema_parse_presence_member(const char *p, size_t n, gw_client_info_t *ci)
{
    const char *sp = memchr(p, ' ', n), *end = p + n;
    if (!sp)
        return -EINVAL;
    const char *sp2 = memchr(sp + 1, ' ', (size_t)(end - sp - 1));
    ci->uid = (gw_slice_t){p, (size_t)(sp - p)};
    ci->client = (gw_slice_t){sp + 1, (size_t)((sp2 ? sp2 : end) - sp - 1)};
    ci->info = (gw_data_t){GW_DATA_JSON, sp2 ? (const uint8_t *)sp2 + 1 : NULL,
                           sp2 ? (size_t)(end - sp2 - 1) : 0};
    return 0;
}

size_t gw_schema_control(char *out, size_t cap, const char *uid, const char *channel)
{
    int k = channel ? snprintf(out, cap, "unsubscribe\n%s\n%s", uid, channel)
                    : snprintf(out, cap, "disconnect\n%s", uid);
    return k < 0 || (size_t)k >= cap ? 0 : (size_t)k;
}

/* Fields are separated by '\n'; the message ends at its first NUL. The uid ends at the next '\n'
 * (what follows it is ignored for disconnect), the channel runs to the end. */
int gw_schema_parse_control(const char *p, size_t n, gw_control_t *m)
{
    if (n >= GW_SCHEMA_CONTROL_MAX)
        return -EINVAL;
    n = strnlen(p, n);
    const char *end = p + n, *nl = memchr(p, '\n', n);
    if (!nl)
        return -EINVAL;
    size_t verb = (size_t)(nl - p);
    memset(m, 0, sizeof(*m));
    m->uid.p = nl + 1;
    const char *nl2 = memchr(m->uid.p, '\n', (size_t)(end - m->uid.p));
    m->uid.n = (size_t)((nl2 ? nl2 : end) - m->uid.p);
    if (verb == 10 && memcmp(p, "disconnect", 10) == 0)
        return m->uid.n ? 0 : -EINVAL;
    if (verb != 11 || memcmp(p, "unsubscribe", 11) != 0 || !nl2)
        return -EINVAL;
    m->unsubscribe = 1;
    m->channel = (gw_slice_t){nl2 + 1, (size_t)(end - nl2 - 1)};
    return m->uid.n && m->channel.n ? 0 : -EINVAL;
}
