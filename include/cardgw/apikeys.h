/* apikeys.h — the server API's keys: the single api_key (every scope) and the named, scoped keys
 * of api_keys_file, re-read when the file changes; a presented key is looked up in constant time.
 */
#ifndef CARDGW_APIKEYS_H
#define CARDGW_APIKEYS_H

#include <stddef.h>

/* What a key may do (a bit set). */
#define GW_SCOPE_PUBLISH    1u /* POST publish, broadcast */
#define GW_SCOPE_DISCONNECT 2u /* POST disconnect, unsubscribe */
#define GW_SCOPE_READ       4u /* GET position, info, online (and POST online) */
#define GW_SCOPE_METRICS    8u /* GET /metrics when metrics_require_key is on */
#define GW_SCOPE_ALL        15u

#define GW_APIKEY_MIN_LEN   16   /* a shorter key in api_keys_file makes the file invalid */
#define GW_APIKEY_MAX_LEN   256  /* longer: invalid (a presented one is simply unknown) */
#define GW_APIKEY_MAX_NAME  63   /* [A-Za-z0-9_.-] */
#define GW_APIKEYS_MAX      1024 /* keys per file */
#define GW_APIKEYS_MAX_FILE (1024 * 1024)

typedef struct gw_apikeys gw_apikeys_t;

/* A key set from api_key (borrowed; "" = none; named "api_key", every scope, any length) and the
 * file at path (borrowed; "" = none). Returns NULL with a message in err when the file cannot be
 * read or is invalid. Free with gw_apikeys_free. */
gw_apikeys_t *gw_apikeys_new(const char *api_key, const char *path, char *err, size_t errlen);
void gw_apikeys_free(gw_apikeys_t *ks);
/* Whether any key is configured (otherwise the server API is disabled). */
int gw_apikeys_enabled(const gw_apikeys_t *ks);
/* How many keys the set holds now (api_key included). */
size_t gw_apikeys_count(const gw_apikeys_t *ks);
/* Re-reads the file when its inode, size or modification time changed since the last attempt.
 * Returns 1 when new keys replaced the old ones, 0 when nothing changed (or there is no file),
 * -EINVAL/-errno when the changed file is unreadable or invalid: the old keys stay and err says
 * why (reported once per change of the file). */
int gw_apikeys_check(gw_apikeys_t *ks, char *err, size_t errlen);
/* Looks up the presented key given[0..n) (borrowed): compares the SHA-256 digest of what was
 * presented with every stored key's, in constant time and without stopping at a match. Returns 0
 * with its scopes and name (borrowed until the next gw_apikeys_check) or -ENOENT. */
int gw_apikeys_lookup(const gw_apikeys_t *ks, const char *given, size_t n, unsigned *scopes,
                      const char **name);
/* Replaces the file's keys of ks by those parsed from text[0..n) (borrowed): lines of
 * `<name> <key> <scope>[,<scope>...]`, scopes publish, disconnect, read, metrics or *; blank
 * lines and lines starting with '#' are skipped. Returns 0, or -EINVAL with the line and reason in
 * err (ks unchanged). */
int gw_apikeys_parse(gw_apikeys_t *ks, const char *text, size_t n, char *err, size_t errlen);
/* The scope names of scopes ("publish,read", "*"), into out. */
const char *gw_apikeys_scope_names(unsigned scopes, char *out, size_t cap);

#endif
