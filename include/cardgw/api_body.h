/* api_body.h — the server API's request bodies as pure functions (no node, no Redis, fuzzed):
 * JSON text in, the checked fields out (channels, data, uids), or the status and message to answer.
 */
#ifndef CARDGW_API_BODY_H
#define CARDGW_API_BODY_H

#include <jansson.h>
#include <stddef.h>

typedef enum {
    GW_API_BODY_PUBLISH = 0, /* {"channel": "ns:id", "data": ..} */
    GW_API_BODY_BROADCAST,   /* {"channels": ["ns:id", ..], "data": ..} (1 to 1000 channels) */
    GW_API_BODY_DISCONNECT,  /* {"uid": ..} */
    GW_API_BODY_UNSUBSCRIBE, /* {"uid": .., "channel": "ns:id"} */
    GW_API_BODY_ONLINE,      /* {"uids": [..]} (1 to 1000) */
} gw_api_body_kind_t;

#define GW_API_BODY_MAX_CHANNELS 1000
#define GW_API_BODY_MAX_UIDS     1000

typedef struct {
    /* the largest pub push (message bytes, either encoding) a subscriber can be sent; a publish
     * whose push would be larger is refused with 413. 0: no check */
    size_t max_push_bytes;
    int (*uid_valid)(const char *uid, size_t n); /* the uid grammar (gw_auth_uid_valid) */
} gw_api_body_limits_t;

/* A parsed body. Strings point into root (owned) or data (owned). */
typedef struct {
    unsigned status;       /* 0: valid; otherwise the HTTP status to answer: 400 or 413 */
    const char *error;     /* static reason when status != 0 */
    json_t *root;          /* the body */
    const char **channels; /* publish (1), broadcast: NULL for an entry not a string
                            * (answered per channel); publish: grammar checked */
    size_t nchannels;
    char *data; /* publish, broadcast: data as compact JSON text */
    size_t data_len;
    size_t push_bytes;   /* the largest pub push of data over the channels (encoded) */
    const char *uid;     /* disconnect, unsubscribe: grammar checked */
    const char *channel; /* unsubscribe: grammar checked */
    size_t ns_len;       /* unsubscribe: length of its namespace */
    const char **uids;   /* online: each grammar checked */
    size_t nuids;
} gw_api_body_t;

/* Parses and checks body[0..n) (borrowed) of a request of kind with lim (borrowed) into *out
 * (overwritten). Returns 0, or -EINVAL with out->status and out->error set. Either way release
 * with gw_api_body_free. Namespaces (configuration) are the caller's to check. */
int gw_api_body_parse(gw_api_body_kind_t kind, const void *body, size_t n,
                      const gw_api_body_limits_t *lim, gw_api_body_t *out);
/* GET /api/v1/online's uids: uids (a JSON array; takes the reference) checked like the body's. */
int gw_api_body_uids(json_t *uids, const gw_api_body_limits_t *lim, gw_api_body_t *out);
/* The kind of a POST path ("/api/v1/publish", ...) or -1. */
int gw_api_body_kind_of(const char *path);
void gw_api_body_free(gw_api_body_t *b);

#endif
