/* config.c — parses and validates the node's configuration: one table lists every key with its
 * type, default and bounds; the file, the environment and the flags all go through gw_config_set.
 */
#include "cardgw/config.h"
#include "cardgw/common.h"
#include "cardgw/apikeys.h"
#include "cardgw/jwt.h"
#include "cardgw/origin.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { K_INT, K_STR, K_LOGLEVEL, K_LOGFORMAT } gw_key_type_t;

typedef struct {
    const char *name;
    gw_key_type_t type;
    size_t off;
    const char *def;
    long min, max;
    int secret;
} gw_key_t;

#define KI(n, d, lo, hi)                                                                           \
    {                                                                                              \
#n, K_INT, offsetof(gw_config_t, n), d, lo, hi, 0                                          \
    }
#define KS(n, d)                                                                                   \
    {                                                                                              \
#n, K_STR, offsetof(gw_config_t, n), d, 0, 0, 0                                            \
    }
#define KSECRET(n, d)                                                                              \
    {                                                                                              \
#n, K_STR, offsetof(gw_config_t, n), d, 0, 0, 1                                            \
    }

/* Keep in the same order and with the same defaults as config.example. */
static const gw_key_t gw_keys[] = {
    KS(listen_address, "127.0.0.1"),
    KI(port, "8080", 0, 65535),
    KS(ws_path, "/ws"),
    KS(static_root, ""),
    KS(tls_cert_file, ""),
    KS(tls_key_file, ""),
    KS(allowed_origins, ""),
    KI(allow_missing_origin, "1", 0, 1),
    KS(node_id, ""),
    {"log_level", K_LOGLEVEL, offsetof(gw_config_t, log_level), "info", 0, 0, 0},
    {"log_format", K_LOGFORMAT, offsetof(gw_config_t, log_format), "text", 0, 0, 0},
    KSECRET(redis_url, "redis://127.0.0.1:6379/0"),
    KSECRET(redis_shards, ""),
    KSECRET(redis_password, ""),
    KS(redis_password_file, ""),
    KI(redis_connect_timeout_ms, "2000", 10, 600000),
    KI(redis_backoff_min_ms, "100", 1, 600000),
    KI(redis_backoff_max_ms, "5000", 1, 600000),
    KI(redis_canary_interval_ms, "1000", 50, 600000),
    KI(redis_command_timeout_ms, "5000", 10, 600000),
    KI(redis_restart_keeps_writes, "0", 0, 1),
    KI(relay_timestamps, "1", 0, 1),
    KI(auth_timeout_ms, "5000", 100, 600000),
    KI(max_frame_bytes, "65536", 64, 16 * 1024 * 1024),
    KI(max_send_queue_bytes, "1048576", 1024, 1024 * 1024 * 1024),
    KI(max_subscriptions, "128", 1, 100000),
    KI(commands_per_second, "100", 1, 1000000),
    KI(command_burst, "200", 1, 1000000),
    KI(max_errors_per_minute, "20", 1, 1000000),
    KI(ping_interval_s, "25", 1, 3600),
    KI(shutdown_timeout_ms, "10000", 0, 600000),
    KI(drain_window_ms, "5000", 0, 600000),
    KI(drain_unready_ms, "3000", 0, 600000),
    KI(node_registry_interval_ms, "5000", 100, 600000),
    KI(max_connections, "auto", -1, 10000000),
    KI(max_connections_per_ip, "auto", -1, 10000000),
    KI(max_new_connections_per_ip_per_s, "100", 0, 10000000),
    KI(max_connections_per_user, "50", 0, 10000000),
    KI(http_timeout_ms, "10000", 100, 600000),
    KI(loop_stall_timeout_ms, "10000", 0, 600000),
    KI(debug_hooks, "0", 0, 1),
    KI(recovery_max_publications, "300", 1, 100000),
    KI(recovery_max_bytes, "1048576", 1024, 64 * 1024 * 1024),
    KI(position_check_interval_ms, "30000", 100, 3600000),
    KI(meta_read_ttl_s, "120", 1, 604800),
    KI(presence_ttl_ms, "90000", 1000, 3600000),
    KI(presence_max_members, "1000", 1, 1000000),
    KI(join_leave_max_members, "1000", 0, 10000000),
    KI(flush_window_ms, "0", 0, 100),
    KSECRET(api_key, ""),
    KS(api_keys_file, ""),
    KI(metrics_require_key, "0", 0, 1),
    KS(admin_address, ""),
    KI(admin_port, "0", 0, 65535),
    KS(rpc_methods, ""),
    KS(rpc_reply_methods, ""),
    KI(rpc_timeout_ms, "5000", 100, 600000),
    KI(max_pending_rpcs_per_connection, "32", 1, 100000),
    KI(max_rpcs_per_user_per_s, "20", 0, 1000000),
    KI(inbox_max_bytes, "268435456", 65536, INT_MAX),
    KI(rpc_max_answer_bytes, "1048576", 1024, 64 * 1024 * 1024),
    KI(api_max_body_bytes, "1048576", 1024, 64 * 1024 * 1024),
    KSECRET(jwt_secret, ""),
    KS(jwt_secret_file, ""),
    KS(jwt_audience, ""),
    KS(jwt_issuer, ""),
    KI(jwt_leeway_s, "30", 0, 600),
    KI(token_refresh_before_s, "60", 0, 86400),
    KI(workers, "1", 1, 64),
};

static int gw_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int gw_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const gw_key_t *gw_key_find(const char *name)
{
    for (size_t i = 0; i < GW_ARRAY_SIZE(gw_keys); i++)
        if (strcmp(gw_keys[i].name, name) == 0)
            return &gw_keys[i];
    return NULL;
}

static int gw_parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return -EINVAL;
    *out = v;
    return 0;
}

static int gw_parse_bool(const char *s, int *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on") || !strcmp(s, "1"))
        *out = 1;
    else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off") || !strcmp(s, "0"))
        *out = 0;
    else
        return -EINVAL;
    return 0;
}

/* ---- namespaces: namespace.<name>.<field> = value -------------------------------------------- */

static gw_namespace_t *gw_ns_get(gw_config_t *cfg, const char *name, size_t n, int create)
{
    for (int i = 0; i < cfg->nnamespaces; i++)
        if (strlen(cfg->namespaces[i].name) == n && memcmp(cfg->namespaces[i].name, name, n) == 0)
            return &cfg->namespaces[i];
    if (!create || cfg->nnamespaces == GW_MAX_NAMESPACES)
        return NULL;
    gw_namespace_t *ns = &cfg->namespaces[cfg->nnamespaces++];
    memset(ns, 0, sizeof(*ns));
    memcpy(ns->name, name, n);
    ns->subscribe = GW_NS_SUB_OWNER; /* the narrowest; gw_config_validate wants it said anyway */
    ns->join_leave = 1;
    ns->history_size = 100;
    ns->history_ttl_s = 600;
    return ns;
}

static int gw_ns_set(gw_config_t *cfg, const char *key, const char *val, const char *where,
                     char *err, size_t errlen)
{
    const char *name = key + strlen("namespace.");
    const char *dot = strchr(name, '.');
    size_t n = dot ? (size_t)(dot - name) : 0;
    if (!dot || n == 0 || n > 32)
        return gw_fail(err, errlen, "%s: bad key '%s' (want namespace.<name>.<field>)", where, key);
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) ||
              name[i] == '_' || name[i] == '-'))
            return gw_fail(err, errlen, "%s: key '%s': namespace names are [a-z0-9_-]", where, key);
    gw_namespace_t *ns = gw_ns_get(cfg, name, n, 1);
    if (!ns)
        return gw_fail(err, errlen, "%s: key '%s': more than %d namespaces", where, key,
                       GW_MAX_NAMESPACES);
    const char *field = dot + 1;
    long v;
    if (!strcmp(field, "subscribe")) {
        ns->subscribe_set = 1;
        if (!strcmp(val, "public"))
            ns->subscribe = GW_NS_SUB_PUBLIC;
        else if (!strcmp(val, "members"))
            ns->subscribe = GW_NS_SUB_MEMBERS;
        else if (!strcmp(val, "owner"))
            ns->subscribe = GW_NS_SUB_OWNER;
        else
            return gw_fail(err, errlen, "%s: key '%s': not public, members or owner", where, key);
    } else if (!strcmp(field, "publish") || !strcmp(field, "presence") ||
               !strcmp(field, "join_leave")) {
        int b;
        if (gw_parse_bool(val, &b))
            return gw_fail(err, errlen, "%s: key '%s': not true or false", where, key);
        *(field[0] == 'j' ? &ns->join_leave : field[1] == 'u' ? &ns->publish : &ns->presence) = b;
    } else if (!strcmp(field, "history_size") || !strcmp(field, "history_ttl_s") ||
               !strcmp(field, "offline_size")) {
        if (gw_parse_long(val, &v) || v < 0 || v > 1000000)
            return gw_fail(err, errlen, "%s: key '%s': not an integer in 0..1000000", where, key);
        *(field[0] == 'o'   ? &ns->offline_size
          : field[8] == 's' ? &ns->history_size
                            : &ns->history_ttl_s) = (int)v;
    } else {
        return gw_fail(err, errlen, "%s: unknown key '%s'", where, key);
    }
    return 0;
}

/* ---- keys ------------------------------------------------------------------------------------ */

int gw_config_set(gw_config_t *cfg, const char *key, const char *val, const char *where, char *err,
                  size_t errlen)
{
    if (strncmp(key, "namespace.", 10) == 0)
        return gw_ns_set(cfg, key, val, where, err, errlen);
    const gw_key_t *k = gw_key_find(key);
    if (!k)
        return gw_fail(err, errlen, "%s: unknown key '%s'", where,
                       strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789_.-") == strlen(key)
                           ? key
                           : "(not shown: not a key name)");
    void *field = (char *)cfg + k->off;
    long v;
    switch (k->type) {
    case K_INT:
        if (k->min == -1 && strcmp(val, "auto") == 0) /* keys that may be "auto" store -1 */
            v = -1;
        else if (gw_parse_long(val, &v) || v < GW_MAX(k->min, 0) || v > k->max)
            return gw_fail(err, errlen, "%s: key '%s': not %san integer in %ld..%ld", where, key,
                           k->min == -1 ? "auto or " : "", GW_MAX(k->min, 0), k->max);
        *(int *)field = (int)v;
        break;
    case K_STR:
        free(*(char **)field);
        *(char **)field = gw_strdup(val);
        break;
    case K_LOGLEVEL:
        if (gw_log_parse_level(val, (gw_log_level_t *)field))
            return gw_fail(err, errlen, "%s: key '%s': not one of error, warn, info, debug", where,
                           key);
        break;
    case K_LOGFORMAT:
        if (gw_log_parse_format(val, (gw_log_format_t *)field))
            return gw_fail(err, errlen, "%s: key '%s': not one of text, json", where, key);
        break;
    }
    return 0;
}

void gw_config_defaults(gw_config_t *cfg)
{
    char err[256];
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < GW_ARRAY_SIZE(gw_keys); i++)
        if (gw_config_set(cfg, gw_keys[i].name, gw_keys[i].def, "default", err, sizeof(err)))
            abort(); /* a bad built-in default is a programming error */
    gw_namespace_t *ns = gw_ns_get(cfg, "group", 5, 1);
    ns->subscribe = GW_NS_SUB_MEMBERS;
    ns->subscribe_set = 1;
    ns->presence = 1;
    ns = gw_ns_get(cfg, "user", 4, 1);
    ns->subscribe = GW_NS_SUB_OWNER;
    ns->subscribe_set = 1;
    ns->offline_size = 100000;
}

static char *gw_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int gw_config_load_file(gw_config_t *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -ENOENT;
    }
    char line[4096], where[512];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            rc = gw_fail(err, errlen, "%s: line longer than %zu bytes", where, sizeof(line) - 2);
            break;
        }
        char *s = gw_trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = gw_fail(err, errlen,
                         "%s: expected 'key = value' (the line is not shown: it may "
                         "hold a secret)",
                         where);
            break;
        }
        *eq = '\0';
        char *key = gw_trim(s), *val = gw_trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = '\0';
            val++;
        }
        if ((rc = gw_config_set(cfg, key, val, where, err, errlen)) != 0)
            break;
    }
    fclose(f);
    if (rc == 0) {
        free(cfg->path);
        cfg->path = gw_strdup(path);
    }
    return rc;
}

/* CARDGW_REDIS_URL -> redis_url; CARDGW_NAMESPACE_GROUP_PUBLISH is not supported (namespace
 * names may hold '_'): namespaces come from the file. */
int gw_config_load_env(gw_config_t *cfg, char *err, size_t errlen)
{
    char env[128], where[160];
    for (size_t i = 0; i < GW_ARRAY_SIZE(gw_keys); i++) {
        size_t j = 0;
        j += (size_t)snprintf(env, sizeof(env), "CARDGW_");
        for (const char *p = gw_keys[i].name; *p && j + 1 < sizeof(env); p++)
            env[j++] = (char)toupper((unsigned char)*p);
        env[j] = '\0';
        const char *v = getenv(env);
        if (!v)
            continue;
        snprintf(where, sizeof(where), "environment %s", env);
        int rc = gw_config_set(cfg, gw_keys[i].name, v, where, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

int gw_config_shard_urls(const gw_config_t *cfg, char out[][GW_URL_MAX])
{
    gw_redis_addr_t a;
    int n = 0;
    for (const char *p = cfg->redis_shards ? cfg->redis_shards : ""; *p;) {
        size_t skip = strspn(p, " \t"), len;
        p += skip;
        if (!*p)
            break;
        len = strcspn(p, " \t");
        if (n == GW_MAX_SHARDS || len >= GW_URL_MAX)
            return -EINVAL;
        memcpy(out[n], p, len);
        out[n][len] = '\0';
        if (gw_config_parse_redis_url(out[n], &a) != 0)
            return -EINVAL;
        n++;
        p += len;
    }
    return n;
}

/* ---- secrets and rules that must be said --------------------------------------------------- */

/* Reads the one-line secret in path (a trailing newline dropped) into *out for key. */
static int gw_read_secret_file(const char *key, const char *path, char **out, char *err,
                               size_t errlen)
{
    char buf[GW_SECRET_MAX + 4]; /* the secret, "\r\n", one byte to tell a longer file, NUL */
    FILE *f = fopen(path, "r");
    if (!f)
        return gw_fail(err, errlen, "key '%s': cannot read %s: %s", key, path, strerror(errno));
    size_t n = fread(buf, 1, sizeof(buf) - 1, f); /* room for the NUL */
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return gw_fail(err, errlen, "key '%s': cannot read %s", key, path);
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    int rc = 0;
    if (n == 0 || n > GW_SECRET_MAX || memchr(buf, '\n', n) || memchr(buf, '\0', n))
        rc = gw_fail(err, errlen, "key '%s': %s must hold one line of 1..%d bytes (no NUL)", key,
                     path, GW_SECRET_MAX);
    buf[n] = '\0';
    if (rc == 0) {
        free(*out);
        *out = gw_strdup(buf);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

int gw_config_load_secrets(gw_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->jwt_secret_file[0] && cfg->jwt_secret[0])
        return gw_fail(err, errlen, "keys 'jwt_secret' and 'jwt_secret_file' are both set");
    if (cfg->redis_password_file[0] && cfg->redis_password[0])
        return gw_fail(err, errlen, "keys 'redis_password' and 'redis_password_file' are both set");
    int rc = 0;
    if (cfg->jwt_secret_file[0])
        rc = gw_read_secret_file("jwt_secret_file", cfg->jwt_secret_file, &cfg->jwt_secret, err,
                                 errlen);
    if (rc == 0 && cfg->redis_password_file[0])
        rc = gw_read_secret_file("redis_password_file", cfg->redis_password_file,
                                 &cfg->redis_password, err, errlen);
    return rc;
}

static int gw_config_validate_secrets(const gw_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->jwt_secret[0] && strlen(cfg->jwt_secret) < GW_JWT_SECRET_MIN)
        return gw_fail(err, errlen,
                       "key 'jwt_secret': shorter than %d bytes (use a random one, e.g. "
                       "`openssl rand -base64 48`)",
                       GW_JWT_SECRET_MIN);
    if (cfg->api_key[0] && strlen(cfg->api_key) < GW_APIKEY_MIN_LEN)
        return gw_fail(err, errlen,
                       "key 'api_key': shorter than %d bytes (use a random one, e.g. `openssl "
                       "rand -hex 32`)",
                       GW_APIKEY_MIN_LEN);
    if (strlen(cfg->redis_password) >= sizeof(((gw_redis_addr_t *)0)->password))
        return gw_fail(err, errlen, "key 'redis_password': longer than 255 bytes");
    if (cfg->redis_password[0]) {
        char(*urls)[GW_URL_MAX] = gw_malloc((GW_MAX_SHARDS + 1) * GW_URL_MAX);
        int n = gw_config_shard_urls(cfg, urls), clash = 0;
        gw_redis_addr_t a;
        snprintf(urls[GW_MAX(n, 0)], GW_URL_MAX, "%s", cfg->redis_url);
        for (int i = 0; i <= GW_MAX(n, 0); i++)
            clash |= gw_config_parse_redis_url(urls[i], &a) == 0 && a.password[0];
        free(urls);
        if (clash)
            return gw_fail(err, errlen,
                           "key 'redis_password' is set and a Redis URL carries a password too");
    }
    for (int i = 0; i < cfg->nnamespaces; i++)
        if (!cfg->namespaces[i].subscribe_set)
            return gw_fail(err, errlen,
                           "key 'namespace.%s.subscribe' is missing: every namespace says who may "
                           "subscribe (public, members or owner)",
                           cfg->namespaces[i].name);
    return 0;
}

int gw_config_validate(const gw_config_t *cfg, char *err, size_t errlen)
{
    char(*shards)[GW_URL_MAX] = gw_malloc(GW_MAX_SHARDS * GW_URL_MAX);
    int nshards = gw_config_shard_urls(cfg, shards);
    free(shards);
    if (nshards < 0)
        return gw_fail(err, errlen,
                       "key 'redis_shards': at most %d space-separated redis:// or "
                       "redis-sentinel:// URLs",
                       GW_MAX_SHARDS);
    gw_redis_addr_t a;
    if (cfg->ws_path[0] != '/')
        return gw_fail(err, errlen, "key 'ws_path': '%s' must start with '/'", cfg->ws_path);
    if (gw_config_parse_redis_url(cfg->redis_url, &a))
        return gw_fail(err, errlen,
                       "key 'redis_url': not a redis://[:password@]host:port[/db] or "
                       "redis-sentinel://[:password@]host:port,.../master[/db] URL");
    if (cfg->redis_backoff_min_ms > cfg->redis_backoff_max_ms)
        return gw_fail(err, errlen,
                       "key 'redis_backoff_min_ms' is larger than redis_backoff_max_ms");
    if (cfg->drain_window_ms > cfg->shutdown_timeout_ms)
        return gw_fail(err, errlen, "key 'drain_window_ms' is larger than shutdown_timeout_ms");
    if ((int64_t)cfg->drain_unready_ms + cfg->drain_window_ms > cfg->shutdown_timeout_ms)
        return gw_fail(err, errlen,
                       "keys 'drain_unready_ms' + 'drain_window_ms' exceed shutdown_timeout_ms");
    if (cfg->loop_stall_timeout_ms > 0 && cfg->loop_stall_timeout_ms < 1000)
        return gw_fail(err, errlen, "key 'loop_stall_timeout_ms' must be 0 (off) or >= 1000");
    if (cfg->metrics_require_key && !cfg->api_key[0] && !cfg->api_keys_file[0])
        return gw_fail(err, errlen, "key 'metrics_require_key' needs api_key or api_keys_file");
    if (cfg->admin_port && cfg->admin_port == cfg->port)
        return gw_fail(err, errlen, "key 'admin_port' is the same as port");
    if ((int64_t)cfg->meta_read_ttl_s * 1000 < 2 * (int64_t)cfg->position_check_interval_ms)
        return gw_fail(err, errlen,
                       "key 'meta_read_ttl_s' is below twice position_check_interval_ms");
    if ((int64_t)cfg->inbox_max_bytes < 4 * (int64_t)cfg->max_frame_bytes)
        return gw_fail(err, errlen,
                       "key 'inbox_max_bytes' is below 4 x max_frame_bytes (one large call would "
                       "trim the whole backlog)");
    if (cfg->command_burst < cfg->commands_per_second / 10)
        return gw_fail(err, errlen, "key 'command_burst' is below commands_per_second / 10");
    if (!cfg->tls_cert_file[0] != !cfg->tls_key_file[0])
        return gw_fail(err, errlen, "keys 'tls_cert_file' and 'tls_key_file': set both or neither");
    if (gw_origin_check_list(cfg->allowed_origins, err, errlen) != 0)
        return -EINVAL;
    return gw_config_validate_secrets(cfg, err, errlen);
}

void gw_config_print(const gw_config_t *cfg, FILE *f)
{
    fprintf(f, "# effective cardgw configuration%s%s\n", cfg->path ? " from " : "",
            cfg->path ? cfg->path : "");
    for (size_t i = 0; i < GW_ARRAY_SIZE(gw_keys); i++) {
        const gw_key_t *k = &gw_keys[i];
        const void *field = (const char *)cfg + k->off;
        switch (k->type) {
        case K_INT:
            if (k->min == -1 && *(const int *)field == -1)
                fprintf(f, "%s = auto\n", k->name);
            else
                fprintf(f, "%s = %d\n", k->name, *(const int *)field);
            break;
        case K_STR: {
            const char *s = *(char *const *)field;
            if (k->secret && s[0] && strcmp(k->name, "redis_url") != 0)
                s = "(set)";
            else if (k->secret && strchr(s, '@'))
                s = "(set, has a password)";
            fprintf(f, "%s = %s\n", k->name, s);
            break;
        }
        case K_LOGLEVEL:
            fprintf(f, "%s = %s\n", k->name, gw_log_level_name(*(const gw_log_level_t *)field));
            break;
        case K_LOGFORMAT:
            fprintf(f, "%s = %s\n", k->name, gw_log_format_name(*(const gw_log_format_t *)field));
            break;
        }
    }
    static const char *const sub[] = {"public", "members", "owner"};
    for (int i = 0; i < cfg->nnamespaces; i++) {
        const gw_namespace_t *ns = &cfg->namespaces[i];
        fprintf(f, "namespace.%s.subscribe = %s\n", ns->name, sub[ns->subscribe]);
        fprintf(f, "namespace.%s.publish = %s\n", ns->name, ns->publish ? "true" : "false");
        fprintf(f, "namespace.%s.presence = %s\n", ns->name, ns->presence ? "true" : "false");
        fprintf(f, "namespace.%s.join_leave = %s\n", ns->name, ns->join_leave ? "true" : "false");
        fprintf(f, "namespace.%s.history_size = %d\n", ns->name, ns->history_size);
        fprintf(f, "namespace.%s.history_ttl_s = %d\n", ns->name, ns->history_ttl_s);
        fprintf(f, "namespace.%s.offline_size = %d\n", ns->name, ns->offline_size);
    }
}

void gw_config_free(gw_config_t *cfg)
{
    for (size_t i = 0; i < GW_ARRAY_SIZE(gw_keys); i++)
        if (gw_keys[i].type == K_STR) {
            char **p = (char **)((char *)cfg + gw_keys[i].off);
            free(*p);
            *p = NULL;
        }
    free(cfg->path);
    cfg->path = NULL;
}

const gw_namespace_t *gw_config_namespace(const gw_config_t *cfg, const char *name, size_t n)
{
    return gw_ns_get((gw_config_t *)cfg, name, n, 0);
}

int gw_config_offline_cap(const gw_config_t *cfg)
{
    int cap = 0;
    for (int i = 0; i < cfg->nnamespaces; i++)
        cap = GW_MAX(cap, cfg->namespaces[i].offline_size);
    return cap;
}

/* host[:port] at p[0..n) into host (cap bytes) and *port (dflt when absent). 0 or -EINVAL. */
static int gw_parse_hostport(const char *p, size_t n, char *host, size_t cap, int dflt, int *port)
{
    const char *colon = memchr(p, ':', n);
    size_t hl = colon ? (size_t)(colon - p) : n;
    if (hl == 0 || hl >= cap)
        return -EINVAL;
    memcpy(host, p, hl);
    host[hl] = '\0';
    *port = dflt;
    if (colon) {
        char num[8], *end;
        size_t nl = n - hl - 1;
        if (nl == 0 || nl >= sizeof(num))
            return -EINVAL;
        memcpy(num, colon + 1, nl);
        num[nl] = '\0';
        long v = strtol(num, &end, 10);
        if (*end || v < 1 || v > 65535)
            return -EINVAL;
        *port = (int)v;
    }
    return 0;
}

/* "<digits>" at p (to the end) into *db. 0 or -EINVAL. */
static int gw_parse_db(const char *p, int *db)
{
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || *end || v < 0 || v > 65535)
        return -EINVAL;
    *db = (int)v;
    return 0;
}

int gw_config_parse_redis_url(const char *url, gw_redis_addr_t *out)
{
    memset(out, 0, sizeof(*out));
    int sentinel = strncmp(url, "redis-sentinel://", 17) == 0;
    if (!sentinel && strncmp(url, "redis://", 8) != 0)
        return -EINVAL;
    const char *p = url + (sentinel ? 17 : 8);
    const char *at = strrchr(p, '@'); /* the last: a password may hold '@', a host may not */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p; /* no colon: all of it is a password */
        size_t n = (size_t)(at - pw), un = colon ? (size_t)(colon - p) : 0;
        if (n >= sizeof(out->password) || un >= sizeof(out->user))
            return -EINVAL;
        memcpy(out->user, p, un);
        memcpy(out->password, pw, n);
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *hend = slash ? slash : p + strlen(p);
    if (!sentinel) {
        if (gw_parse_hostport(p, (size_t)(hend - p), out->host, sizeof(out->host), 6379,
                              &out->port) != 0)
            return -EINVAL;
        return slash && slash[1] ? gw_parse_db(slash + 1, &out->db) : 0;
    }
    while (p < hend) { /* host[:port],host[:port]... */
        const char *comma = memchr(p, ',', (size_t)(hend - p));
        const char *e = comma ? comma : hend;
        if (out->nsentinels == GW_MAX_SENTINELS ||
            gw_parse_hostport(p, (size_t)(e - p), out->sentinels[out->nsentinels].host,
                              sizeof(out->sentinels[0].host), 26379,
                              &out->sentinels[out->nsentinels].port) != 0)
            return -EINVAL;
        out->nsentinels++;
        if (comma && comma + 1 == hend)
            return -EINVAL; /* a trailing comma */
        p = comma ? comma + 1 : hend;
    }
    if (!out->nsentinels || !slash || !slash[1])
        return -EINVAL;
    const char *name = slash + 1, *dbs = strchr(name, '/');
    size_t nl = dbs ? (size_t)(dbs - name) : strlen(name);
    if (nl == 0 || nl >= sizeof(out->master))
        return -EINVAL;
    memcpy(out->master, name, nl);
    return dbs && dbs[1] ? gw_parse_db(dbs + 1, &out->db) : 0;
}
