/* apikeys.c — the server API's key set: api_key and the named keys of api_keys_file with their
 * scopes, the file re-read when it changes (a bad file keeps the old keys), constant-time lookup.
 */
#include "cardgw/apikeys.h"
#include "cardgw/common.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char name[GW_APIKEY_MAX_NAME + 1];
    unsigned char digest[SHA256_DIGEST_LENGTH]; /* SHA-256 of the key: never the key itself */
    unsigned scopes;
} gw_apikey_t;

/* What identifies one version of the file (a rewrite changes at least one of these). */
typedef struct {
    int exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} gw_file_id_t;

struct gw_apikeys {
    gw_apikey_t legacy; /* api_key */
    int has_legacy;
    char *path; /* NULL: no file */
    gw_apikey_t *keys;
    size_t n;
    gw_file_id_t seen; /* the version last read (good or bad) */
};

static const struct {
    const char *name;
    unsigned bit;
} gw_scopes[] = {{"publish", GW_SCOPE_PUBLISH},
                 {"disconnect", GW_SCOPE_DISCONNECT},
                 {"read", GW_SCOPE_READ},
                 {"metrics", GW_SCOPE_METRICS},
                 {"*", GW_SCOPE_ALL}};

static void gw_apikey_digest(const char *key, size_t n, unsigned char *out)
{
    SHA256((const unsigned char *)key, n, out);
}

static int gw_apikeys_fail(char *err, size_t errlen, int line, const char *why)
{
    snprintf(err, errlen, "line %d: %s", line, why);
    return -EINVAL;
}

/* One scope list "a,b,c" (s[0..n)) into *out. 0 or -EINVAL. */
static int gw_apikeys_scopes(const char *s, size_t n, unsigned *out)
{
    *out = 0;
    for (size_t i = 0; i < n;) {
        size_t len = 0;
        while (i + len < n && s[i + len] != ',')
            len++;
        unsigned bit = 0;
        for (size_t k = 0; k < GW_ARRAY_SIZE(gw_scopes); k++)
            if (strlen(gw_scopes[k].name) == len && memcmp(gw_scopes[k].name, s + i, len) == 0)
                bit = gw_scopes[k].bit;
        if (!bit)
            return -EINVAL;
        *out |= bit;
        i += len + 1;
        if (i == n && s[n - 1] == ',')
            return -EINVAL; /* a trailing comma */
    }
    return *out ? 0 : -EINVAL;
}

static int gw_apikeys_name_valid(const char *s, size_t n)
{
    if (n == 0 || n > GW_APIKEY_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

/* The next run of non-blank bytes of line[*i..n): its start and length (0 at the end). */
static size_t gw_apikeys_token(const char *line, size_t n, size_t *i, const char **tok)
{
    while (*i < n && (line[*i] == ' ' || line[*i] == '\t'))
        (*i)++;
    *tok = line + *i;
    size_t start = *i;
    while (*i < n && line[*i] != ' ' && line[*i] != '\t')
        (*i)++;
    return *i - start;
}

/* One non-comment line into *k. 0 or -EINVAL with err set. */
static int gw_apikeys_line(const char *line, size_t n, int lineno, gw_apikey_t *k, char *err,
                           size_t errlen)
{
    const char *name, *key, *scopes, *extra;
    size_t i = 0;
    size_t nn = gw_apikeys_token(line, n, &i, &name);
    size_t kn = gw_apikeys_token(line, n, &i, &key);
    size_t sn = gw_apikeys_token(line, n, &i, &scopes);
    if (!nn || !kn || !sn || gw_apikeys_token(line, n, &i, &extra))
        return gw_apikeys_fail(err, errlen, lineno, "want '<name> <key> <scope>[,<scope>...]'");
    if (!gw_apikeys_name_valid(name, nn))
        return gw_apikeys_fail(err, errlen, lineno, "a key name is 1 to 63 of [A-Za-z0-9_.-]");
    if (kn < GW_APIKEY_MIN_LEN || kn > GW_APIKEY_MAX_LEN)
        return gw_apikeys_fail(err, errlen, lineno, "a key is 16 to 256 bytes long");
    for (size_t j = 0; j < kn; j++)
        if ((unsigned char)key[j] <= 0x20 || (unsigned char)key[j] == 0x7f)
            return gw_apikeys_fail(err, errlen, lineno, "a key is printable without spaces");
    if (gw_apikeys_scopes(scopes, sn, &k->scopes) != 0)
        return gw_apikeys_fail(err, errlen, lineno,
                               "scopes are a comma-separated list of publish, disconnect, read, "
                               "metrics or *");
    memcpy(k->name, name, nn);
    k->name[nn] = '\0';
    gw_apikey_digest(key, kn, k->digest);
    return 0;
}

int gw_apikeys_parse(gw_apikeys_t *ks, const char *text, size_t n, char *err, size_t errlen)
{
    gw_apikey_t *keys = NULL;
    size_t nkeys = 0, cap = 0;
    int lineno = 0, rc = 0;
    for (size_t off = 0; off < n && rc == 0;) {
        const char *nl = memchr(text + off, '\n', n - off);
        size_t len = nl ? (size_t)(nl - (text + off)) : n - off;
        const char *line = text + off;
        off += len + (nl ? 1 : 0);
        lineno++;
        if (len && line[len - 1] == '\r')
            len--;
        if (memchr(line, '\0', len)) {
            rc = gw_apikeys_fail(err, errlen, lineno, "a NUL byte");
            break;
        }
        size_t i = 0;
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i == len || line[i] == '#')
            continue;
        if (nkeys == GW_APIKEYS_MAX) {
            rc = gw_apikeys_fail(err, errlen, lineno, "more than 1024 keys");
            break;
        }
        if (nkeys == cap) {
            cap = cap ? cap * 2 : 8;
            keys = gw_realloc(keys, cap * sizeof(*keys));
        }
        gw_apikey_t *k = &keys[nkeys];
        memset(k, 0, sizeof(*k));
        if ((rc = gw_apikeys_line(line + i, len - i, lineno, k, err, errlen)) != 0)
            break;
        for (size_t j = 0; j < nkeys && rc == 0; j++) {
            if (strcmp(keys[j].name, k->name) == 0)
                rc = gw_apikeys_fail(err, errlen, lineno, "a key name used twice");
            else if (memcmp(keys[j].digest, k->digest, sizeof(k->digest)) == 0)
                rc = gw_apikeys_fail(err, errlen, lineno, "a key used twice");
        }
        if (rc == 0 && ks->has_legacy &&
            memcmp(ks->legacy.digest, k->digest, sizeof(k->digest)) == 0)
            rc = gw_apikeys_fail(err, errlen, lineno, "the same key as api_key");
        nkeys++;
    }
    if (rc != 0) {
        free(keys);
        return rc;
    }
    free(ks->keys);
    ks->keys = keys;
    ks->n = nkeys;
    return 0;
}

static gw_file_id_t gw_apikeys_id_of(const struct stat *st)
{
    return (gw_file_id_t){1, st->st_dev, st->st_ino, st->st_size, st->st_mtim};
}

static int gw_apikeys_same(const gw_file_id_t *a, const gw_file_id_t *b)
{
    return a->exists == b->exists &&
           (!a->exists ||
            (a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
             a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec));
}

/* Reads and parses the file; ks->seen becomes the version read (or "missing"). */
static int gw_apikeys_load(gw_apikeys_t *ks, char *err, size_t errlen)
{
    char why[200];
    struct stat st;
    int fd = open(ks->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        ks->seen = (gw_file_id_t){0};
        snprintf(err, errlen, "api_keys_file %s: %s", ks->path, strerror(e));
        return -e;
    }
    ks->seen = gw_apikeys_id_of(&st);
    if (!S_ISREG(st.st_mode) || st.st_size > GW_APIKEYS_MAX_FILE) {
        close(fd);
        snprintf(err, errlen, "api_keys_file %s: not a regular file of at most %d bytes", ks->path,
                 GW_APIKEYS_MAX_FILE);
        return -EINVAL;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *text = gw_malloc(cap);
    for (;;) {
        ssize_t r = read(fd, text + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == cap) { /* grew since fstat: read what is there now, up to the cap */
            if (cap > GW_APIKEYS_MAX_FILE)
                break;
            cap *= 2;
            text = gw_realloc(text, cap);
        }
    }
    close(fd);
    int rc =
        len > GW_APIKEYS_MAX_FILE ? -EINVAL : gw_apikeys_parse(ks, text, len, why, sizeof(why));
    OPENSSL_cleanse(text, cap);
    free(text);
    if (rc != 0)
        snprintf(err, errlen, "api_keys_file %s: %s", ks->path,
                 len > GW_APIKEYS_MAX_FILE ? "larger than 1 MiB" : why);
    return rc;
}

gw_apikeys_t *gw_apikeys_new(const char *api_key, const char *path, char *err, size_t errlen)
{
    gw_apikeys_t *ks = gw_calloc(1, sizeof(*ks));
    if (api_key && api_key[0]) {
        ks->has_legacy = 1;
        snprintf(ks->legacy.name, sizeof(ks->legacy.name), "api_key");
        ks->legacy.scopes = GW_SCOPE_ALL;
        gw_apikey_digest(api_key, strlen(api_key), ks->legacy.digest);
    }
    if (path && path[0]) {
        ks->path = gw_strdup(path);
        if (gw_apikeys_load(ks, err, errlen) != 0) {
            gw_apikeys_free(ks);
            return NULL;
        }
    }
    return ks;
}

void gw_apikeys_free(gw_apikeys_t *ks)
{
    if (!ks)
        return;
    free(ks->keys);
    free(ks->path);
    free(ks);
}

int gw_apikeys_enabled(const gw_apikeys_t *ks)
{
    return ks && (ks->has_legacy || ks->path);
}

size_t gw_apikeys_count(const gw_apikeys_t *ks)
{
    return ks ? ks->n + (size_t)ks->has_legacy : 0;
}

int gw_apikeys_check(gw_apikeys_t *ks, char *err, size_t errlen)
{
    struct stat st;
    if (!ks || !ks->path)
        return 0;
    gw_file_id_t now = {0};
    if (stat(ks->path, &st) == 0)
        now = gw_apikeys_id_of(&st);
    if (gw_apikeys_same(&now, &ks->seen))
        return 0;
    int rc = gw_apikeys_load(ks, err, errlen);
    return rc == 0 ? 1 : rc;
}

int gw_apikeys_lookup(const gw_apikeys_t *ks, const char *given, size_t n, unsigned *scopes,
                      const char **name)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    const gw_apikey_t *found = NULL;
    if (!ks)
        return -ENOENT;
    gw_apikey_digest(given, n, d);
    /* every key is compared (no early exit): the time taken does not say which key matched */
    if (ks->has_legacy && CRYPTO_memcmp(d, ks->legacy.digest, sizeof(d)) == 0)
        found = &ks->legacy;
    for (size_t i = 0; i < ks->n; i++) {
        int hit = CRYPTO_memcmp(d, ks->keys[i].digest, sizeof(d)) == 0;
        found = hit && !found ? &ks->keys[i] : found;
    }
    if (!found)
        return -ENOENT;
    *scopes = found->scopes;
    *name = found->name;
    return 0;
}

const char *gw_apikeys_scope_names(unsigned scopes, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    if ((scopes & GW_SCOPE_ALL) == GW_SCOPE_ALL) {
        snprintf(out, cap, "*");
        return out;
    }
    for (size_t k = 0; k + 1 < GW_ARRAY_SIZE(gw_scopes); k++)
        if (scopes & gw_scopes[k].bit) {
            int w = snprintf(out + len, cap - len, "%s%s", len ? "," : "", gw_scopes[k].name);
            if (w < 0 || (size_t)w >= cap - len)
                break;
            len += (size_t)w;
        }
    return out;
}
