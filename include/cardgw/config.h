/* config.h — the node's configuration: built-in defaults, then the config file (key = value),
 * then CARDGW_* environment variables, then command-line flags. Every key is in config.example. */
#ifndef CARDGW_CONFIG_H
#define CARDGW_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "cardgw/log.h"

#define GW_MAX_NAMESPACES 16

typedef enum {
    GW_NS_SUB_PUBLIC = 0, /* anyone connected */
    GW_NS_SUB_MEMBERS,    /* SISMEMBER cardgw:group:<id>:members <uid> */
    GW_NS_SUB_OWNER,      /* only <ns>:<own uid> */
} gw_ns_sub_t;

typedef struct {
    char name[33];
    gw_ns_sub_t subscribe;
    int publish;       /* clients may publish */
    int presence;      /* presence on */
    int join_leave;    /* join/leave pushes (with presence; default on) */
    int history_size;  /* publications kept per channel (0 = no history) */
    int history_ttl_s; /* history lifetime after the last publication */
    int offline_size;  /* cap of the shard's offline stream fed when nobody listens (0 = off) */
    int subscribe_set; /* the subscribe rule was said (built in or in the file): required */
} gw_namespace_t;

typedef struct {
    char *listen_address;
    int port;
    char *ws_path;
    char *static_root; /* directory of static files served over HTTP; "" = none */

    char *tls_cert_file;      /* PEM certificate (chain); with tls_key_file: the port speaks TLS */
    char *tls_key_file;       /* PEM private key; "" with tls_cert_file "" = plain */
    char *allowed_origins;    /* WebSocket Origin allowlist (origin.h); "" = no check */
    int allow_missing_origin; /* with a list: an upgrade without Origin is let in */

    char *node_id;
    gw_log_level_t log_level;
    gw_log_format_t log_format; /* text lines or one JSON object per line */

    char *redis_url;
    char *redis_shards;   /* space-separated Redis URLs channels are spread over; "": redis_url */
    char *redis_password; /* AUTH password for URLs without one (gw_config_load_secrets) */
    char *redis_password_file;
    int redis_connect_timeout_ms;
    int redis_backoff_min_ms;
    int redis_backoff_max_ms;
    int redis_canary_interval_ms;
    int redis_command_timeout_ms;
    int redis_restart_keeps_writes; /* 1: a restarted (not promoted) Redis keeps epochs */
    int relay_timestamps;           /* 1: publications carry their publish time (frame v2) */

    int auth_timeout_ms;
    int max_frame_bytes;
    int max_send_queue_bytes;
    int max_subscriptions;
    int commands_per_second;
    int command_burst;
    int max_errors_per_minute;
    int ping_interval_s;
    int shutdown_timeout_ms;
    int drain_window_ms;
    int drain_unready_ms;
    int node_registry_interval_ms;
    int recovery_max_publications;
    int recovery_max_bytes;
    int position_check_interval_ms;
    int meta_read_ttl_s;        /* lifetime of a meta hash a read created (kept while subscribed) */
    int presence_ttl_ms;        /* a presence entry lives this long unless its node refreshes it */
    int presence_max_members;   /* connections in one presence reply; more: partial + total */
    int join_leave_max_members; /* more live presence connections: no join/leave pushes */
    int flush_window_ms;

    int max_connections;                  /* -1 = auto */
    int max_connections_per_ip;           /* -1 = auto, 0 = none */
    int max_new_connections_per_ip_per_s; /* 0 = none */
    int max_connections_per_user;         /* 0 = none */
    int http_timeout_ms;
    int loop_stall_timeout_ms; /* 0 = no watchdog */
    int debug_hooks;

    char *api_key;
    char *api_keys_file;     /* named keys with scopes (apikeys.h), re-read when it changes */
    int metrics_require_key; /* 1: /metrics needs a key with the metrics scope */
    char *admin_address;     /* admin_port's address ("" = 127.0.0.1) */
    int admin_port;          /* 0: the API and /metrics are served on port */
    int api_max_body_bytes;
    char *rpc_methods;       /* comma-separated allowlist; empty = any method */
    char *rpc_reply_methods; /* comma-separated methods that wait for the backend's answer;
                              * "*" = every method, empty = none (the entry id is the result) */
    int rpc_timeout_ms;      /* a waiting rpc gets error 118 after this long */
    int max_pending_rpcs_per_connection; /* waiting rpcs per connection; past it error 115 */
    int rpc_max_answer_bytes;            /* larger answers are dropped (and counted) */
    int max_rpcs_per_user_per_s;         /* per uid on this node, burst 2x; 0 = none (115) */
    int inbox_max_bytes;                 /* cardgw:inbox bound: MAXLEN from it (rpc.c) */
    char *jwt_secret;      /* also read from jwt_secret_file (gw_config_load_secrets) */
    char *jwt_secret_file; /* "": none */
    char *jwt_audience;    /* "": a token with aud is refused; else aud must name it */
    char *jwt_issuer;      /* "": iss not checked */
    int jwt_leeway_s;      /* clock skew allowed on exp and nbf */
    int token_refresh_before_s;

    int workers;

    int nnamespaces;
    gw_namespace_t namespaces[GW_MAX_NAMESPACES];

    /* where the file was read from (for messages); not a key */
    char *path;
} gw_config_t;

/* Fills cfg with the built-in defaults. */
void gw_config_defaults(gw_config_t *cfg);
/* Reads a config file over cfg. Returns 0, or -EINVAL/-ENOENT with a message naming the file,
 * line and key written to err (size errlen). */
int gw_config_load_file(gw_config_t *cfg, const char *path, char *err, size_t errlen);
/* Applies CARDGW_<KEY> environment variables (upper-case key, dots as underscores). */
int gw_config_load_env(gw_config_t *cfg, char *err, size_t errlen);
/* Sets one key from a string (used by the file, the environment and flags); `where` names the
 * source in error messages. */
int gw_config_set(gw_config_t *cfg, const char *key, const char *val, const char *where, char *err,
                  size_t errlen);
/* Longest secret read from a *_file key. */
#define GW_SECRET_MAX 4096
/* Reads jwt_secret_file into jwt_secret and redis_password_file into redis_password (one line,
 * trailing newline dropped); after the file, environment and flags, before gw_config_validate.
 * Returns 0 or -EINVAL naming the key and path (never the content): setting both a secret and its
 * file, an unreadable or empty file. */
int gw_config_load_secrets(gw_config_t *cfg, char *err, size_t errlen);
/* Cross-key checks after everything is loaded (also: jwt_secret of at least GW_JWT_SECRET_MIN
 * bytes, every namespace with an explicit subscribe rule). */
int gw_config_validate(const gw_config_t *cfg, char *err, size_t errlen);
/* Prints the effective configuration as a loadable config file (secrets masked). */
void gw_config_print(const gw_config_t *cfg, FILE *f);
/* Frees the strings a load allocated (cfg itself is the caller's). */
void gw_config_free(gw_config_t *cfg);
/* Borrowed pointer to the namespace called name[0..n), or NULL. */
const gw_namespace_t *gw_config_namespace(const gw_config_t *cfg, const char *name, size_t n);
/* The cap of the offline stream cardgw:offline: the largest offline_size of any namespace (one
 * stream per Redis is shared by every namespace: each XADD trims it to this, never to less). */
int gw_config_offline_cap(const gw_config_t *cfg);

#define GW_MAX_SENTINELS 8

/* A parsed redis://[:password@]host[:port][/db] URL, or
 * redis-sentinel://[:password@]host[:port][,host[:port]...]/<master name>[/db]: the master's
 * address is then asked of the sentinels (default port 26379) and host/port are filled later. */
typedef struct {
    char host[256];
    int port;
    int db;
    char user[128];     /* redis://user:password@...: AUTH user password (Redis 6 ACL) */
    char password[256]; /* the data nodes' (AUTH); the sentinels are asked without one */
    int nsentinels;     /* 0: host/port is the Redis to use */
    struct {
        char host[64];
        int port;
    } sentinels[GW_MAX_SENTINELS];
    char master[64]; /* the name the sentinels monitor */
} gw_redis_addr_t;
/* Parses url (borrowed) into *out. Returns 0 or -EINVAL (bad scheme, port, db, master name, more
 * than GW_MAX_SENTINELS sentinels, or too long). */
int gw_config_parse_redis_url(const char *url, gw_redis_addr_t *out);

#define GW_MAX_SHARDS 16
#define GW_URL_MAX    512
/* The URLs of redis_shards, copied into out (at most GW_MAX_SHARDS). Returns how many (0: the
 * channels live on redis_url), or -EINVAL when one does not parse or there are too many. */
int gw_config_shard_urls(const gw_config_t *cfg, char out[][GW_URL_MAX]);

#endif
