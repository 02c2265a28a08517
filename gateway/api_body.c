/* api_body.c — checks the server API's JSON bodies without a node or Redis (the fuzzer's mode 10):
 * the fields each request needs, channel and uid grammar, data that every subscriber can be sent.
 */
#include "cardgw/api_body.h"
#include "cardgw/common.h"
#include "cardgw/proto.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int gw_api_body_fail(gw_api_body_t *out, unsigned status, const char *msg)
{
    out->status = status;
    out->error = msg;
    return -EINVAL;
}

static int gw_api_body_channel_ok(const char *ch, size_t *ns_len)
{
    return ch && gw_proto_channel_valid(ch, strlen(ch), ns_len);
}

/* Bytes of a pub push beside its data and channel: {"push":"pub","channel":"","offset":<20
 * digits>,"data":} and its msgpack form are under this. */
#define GW_API_PUSH_OVERHEAD 128

/* At least the size of the pub push of data on the longest channel with the largest offset, in
 * either encoding: what a subscriber would be sent. The msgpack push is encoded (data is msgpack
 * already: a copy); the JSON push is bounded by 2 x the JSON text (the node's writer uses the same
 * escapes as jansson's and floats no longer than its, about 1x) and encoded only when that bound
 * would not pass limit (0: none), as converting msgpack back to JSON costs ~100 ns a byte. */
static size_t gw_api_body_push_bytes(const gw_api_body_t *b, const uint8_t *mp, size_t mpn,
                                     size_t limit)
{
    size_t longest = 0;
    for (size_t i = 0; i < b->nchannels; i++)
        if (b->channels[i])
            longest = GW_MAX(longest, strlen(b->channels[i]));
    longest = GW_MIN(longest, (size_t)GW_PROTO_MAX_CHANNEL);
    char ch[GW_PROTO_MAX_CHANNEL];
    memset(ch, 'x', sizeof(ch));
    gw_pub_t pub = {UINT64_MAX, {GW_DATA_MSGPACK, mp, mpn}, {NULL, 0}};
    size_t json_bound = 2 * b->data_len + GW_API_PUSH_OVERHEAD + longest, most;
    gw_buf_t f;
    gw_buf_init(&f, 0);
    gw_proto_enc_pub(&f, GW_ENC_MSGPACK, (gw_slice_t){ch, longest}, &pub);
    most = f.len;
    if (limit && json_bound > limit) {
        gw_buf_reset(&f);
        gw_proto_enc_pub(&f, GW_ENC_JSON, (gw_slice_t){ch, longest}, &pub);
        most = GW_MAX(most, f.len);
    } else {
        most = GW_MAX(most, json_bound);
    }
    gw_buf_free(&f);
    return most;
}

static int gw_api_body_publish(gw_api_body_t *out, int broadcast, const gw_api_body_limits_t *lim)
{
    json_t *data = json_object_get(out->root, "data");
    json_t *chans = json_object_get(out->root, broadcast ? "channels" : "channel");
    if (!data || (broadcast ? !json_is_array(chans) || json_array_size(chans) == 0 ||
                                  json_array_size(chans) > GW_API_BODY_MAX_CHANNELS
                            : !json_is_string(chans)))
        return gw_api_body_fail(out, 400,
                                broadcast ? "want {\"channels\": [..], \"data\": ..} (1 to 1000)"
                                          : "want {\"channel\": \"ns:id\", \"data\": ..}");
    out->nchannels = broadcast ? json_array_size(chans) : 1;
    out->channels = gw_calloc(out->nchannels, sizeof(*out->channels));
    for (size_t i = 0; i < out->nchannels; i++)
        out->channels[i] = json_string_value(broadcast ? json_array_get(chans, i) : chans);
    if (!broadcast && !gw_api_body_channel_ok(out->channels[0], NULL))
        return gw_api_body_fail(out, 400, "bad channel name");
    out->data = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (!out->data)
        abort(); /* only out of memory: allocation failure is fatal */
    out->data_len = strlen(out->data);
    /* what msgpack subscribers get: data that does not convert would reach them as null */
    gw_buf_t mp;
    gw_buf_init(&mp, 0);
    if (gw_data_json_to_msgpack((const uint8_t *)out->data, out->data_len, &mp) != 0) {
        gw_buf_free(&mp);
        return gw_api_body_fail(out, 400, "data nests deeper than 32 levels");
    }
    out->push_bytes = gw_api_body_push_bytes(out, gw_buf_data(&mp), mp.len, lim->max_push_bytes);
    gw_buf_free(&mp);
    if (lim->max_push_bytes && out->push_bytes > lim->max_push_bytes)
        return gw_api_body_fail(out, 413,
                                "data too large: its message would exceed max_send_queue_bytes, "
                                "more than a subscriber can be sent");
    return 0;
}

static int gw_api_body_control(gw_api_body_t *out, int unsubscribe, const gw_api_body_limits_t *lim)
{
    out->uid = json_string_value(json_object_get(out->root, "uid"));
    out->channel = json_string_value(json_object_get(out->root, "channel"));
    if (!out->uid || !lim->uid_valid(out->uid, strlen(out->uid)) ||
        (unsubscribe && !gw_api_body_channel_ok(out->channel, &out->ns_len)))
        return gw_api_body_fail(
            out, 400, unsubscribe ? "want {\"uid\": .., \"channel\": ..}" : "want {\"uid\": ..}");
    if (!unsubscribe)
        out->channel = NULL;
    return 0;
}

/* uids borrowed (from out->root). */
static int gw_api_body_check_uids(json_t *uids, const gw_api_body_limits_t *lim, gw_api_body_t *out)
{
    size_t n = json_array_size(uids);
    if (n == 0 || n > GW_API_BODY_MAX_UIDS)
        return gw_api_body_fail(out, 400, "want 1 to 1000 uids: ?uid=a&uid=b or {\"uids\": [..]}");
    out->uids = gw_malloc(n * sizeof(*out->uids));
    for (size_t i = 0; i < n; i++) {
        const char *u = json_string_value(json_array_get(uids, i));
        if (!u || !lim->uid_valid(u, strlen(u)))
            return gw_api_body_fail(out, 400, "bad uid");
        out->uids[i] = u;
    }
    out->nuids = n;
    return 0;
}

int gw_api_body_uids(json_t *uids, const gw_api_body_limits_t *lim, gw_api_body_t *out)
{
    memset(out, 0, sizeof(*out));
    out->root = uids;
    return gw_api_body_check_uids(uids, lim, out);
}

int gw_api_body_parse(gw_api_body_kind_t kind, const void *body, size_t n,
                      const gw_api_body_limits_t *lim, gw_api_body_t *out)
{
    json_error_t jerr;
    memset(out, 0, sizeof(*out));
    out->root = json_loadb(body, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!out->root || !json_is_object(out->root))
        return gw_api_body_fail(out, 400, "body is not a JSON object");
    switch (kind) {
    case GW_API_BODY_PUBLISH:
    case GW_API_BODY_BROADCAST:
        return gw_api_body_publish(out, kind == GW_API_BODY_BROADCAST, lim);
    case GW_API_BODY_DISCONNECT:
    case GW_API_BODY_UNSUBSCRIBE:
        return gw_api_body_control(out, kind == GW_API_BODY_UNSUBSCRIBE, lim);
    case GW_API_BODY_ONLINE:
        return gw_api_body_check_uids(json_object_get(out->root, "uids"), lim, out);
    }
    return gw_api_body_fail(out, 404, "no such API");
}

int gw_api_body_kind_of(const char *path)
{
    static const char *const names[] = {"publish", "broadcast", "disconnect", "unsubscribe",
                                        "online"};
    if (strncmp(path, "/api/v1/", 8) == 0)
        for (size_t i = 0; i < GW_ARRAY_SIZE(names); i++)
            if (strcmp(path + 8, names[i]) == 0)
                return (int)i;
    return -1;
}

void gw_api_body_free(gw_api_body_t *b)
{
    json_decref(b->root);
    free(b->channels);
    free(b->data);
    free(b->uids);
    memset(b, 0, sizeof(*b));
}
