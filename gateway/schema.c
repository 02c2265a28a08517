/* schema.c — builds every Redis key and pub/sub channel name the node uses and parses the relay
 * frame and control messages; nothing else in the node spells "cardgw:" (scripts/ aside). */
#include "cardgw/schema.h"

#include <errno.h>
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

size_t gw_schema_online_key(char *out, size_t cap, const char *node_id)
{
    return gw_schema_len(snprintf(out, cap, "cardgw:online:%s", node_id), cap);
}

int gw_schema_parse_relay(const char *p, size_t n, gw_relay_frame_t *w)
{
    const char *f[5], *end = p + n;
    size_t fl[5];
    char num[24], *e;
    for (int i = 0; i < 5; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return -EINVAL;
        f[i] = p;
        fl[i] = (size_t)(nl - p);
        p = nl + 1;
    }
    if (fl[0] != 1 || f[0][0] != '1' || fl[1] > GW_PROTO_MAX_EPOCH || fl[3] != 1 ||
        !strchr("mjJL", f[3][0]) || fl[2] == 0 || fl[2] >= sizeof(num))
        return -EINVAL;
    memcpy(num, f[2], fl[2]);
    num[fl[2]] = '\0';
    w->kind = f[3][0];
    w->pub.offset = strtoull(num, &e, 10);
    if (*e)
        return -EINVAL;
    w->epoch = (gw_slice_t){f[1], fl[1]};
    w->pub.from = (gw_slice_t){f[4], fl[4]};
    w->pub.data.fmt = w->kind == 'j' ? GW_DATA_JSON : GW_DATA_MSGPACK;
    w->pub.data.p = (const uint8_t *)p;
    w->pub.data.n = (size_t)(end - p);
    return 0;
}

size_t gw_schema_presence_frame(char *out, size_t cap, int join, const char *uid, const char *cid)
{
    return gw_schema_len(snprintf(out, cap, "1\n\n0\n%c\n%s\n%s", join ? 'J' : 'L', uid, cid), cap);
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
