/* static.c — static files served by the node when static_root is set (the demo page and the
 * client bundle): loaded once at start into a table looked up by URL path, never read per request.
 */
#include "cardgw/static.h"
#include "cardgw/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *path; /* URL path: "/" + the name relative to the root */
    gw_static_file_t f;
} gw_static_entry_t;

struct gw_static {
    gw_static_entry_t *e;
    size_t n;
    size_t bytes;
};

static const char *gw_static_ctype(const char *name)
{
    static const struct {
        const char *ext, *ctype;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < GW_ARRAY_SIZE(types); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].ctype;
    return "application/octet-stream";
}

/* Reads the whole regular file at fs (at most cap bytes) into a new buffer. 0 or -errno. */
static int gw_static_read(const char *fs, size_t cap, unsigned char **out, size_t *n)
{
    int fd = open(fs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;
    if (fd < 0)
        return -errno;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (size_t)sb.st_size > cap) {
        close(fd);
        return -EFBIG;
    }
    unsigned char *p = gw_malloc((size_t)sb.st_size ? (size_t)sb.st_size : 1);
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t k = read(fd, p + got, (size_t)sb.st_size - got);
        if (k <= 0) {
            free(p);
            close(fd);
            return k < 0 ? -errno : -EIO;
        }
        got += (size_t)k;
    }
    close(fd);
    *out = p;
    *n = got;
    return 0;
}

/* Adds every file under dir (fs path) as URL prefix url. 0, or -1 with err filled. */
static int gw_static_walk(gw_static_t *st, const char *dir, const char *url, int depth, char *err,
                          size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "static_root: cannot read %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char fs[4096], path[4096];
        struct stat sb;
        if ((size_t)snprintf(fs, sizeof(fs), "%s/%s", dir, de->d_name) >= sizeof(fs) ||
            (size_t)snprintf(path, sizeof(path), "%s/%s", url, de->d_name) >= sizeof(path) ||
            lstat(fs, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            if (depth >= GW_STATIC_MAX_DEPTH)
                continue;
            rc = gw_static_walk(st, fs, path, depth + 1, err, errlen);
            continue;
        }
        if (!S_ISREG(sb.st_mode)) /* symbolic links and the rest: never followed */
            continue;
        if (st->n == GW_STATIC_MAX_FILES) {
            snprintf(err, errlen, "static_root: more than %d files", GW_STATIC_MAX_FILES);
            rc = -1;
            break;
        }
        unsigned char *p = NULL;
        size_t n = 0;
        int e = gw_static_read(fs, GW_STATIC_MAX_BYTES - st->bytes, &p, &n);
        if (e != 0) {
            snprintf(err, errlen, "static_root: %s: %s", fs,
                     e == -EFBIG ? "over the 16 MiB total" : strerror(-e));
            rc = -1;
            break;
        }
        st->e = gw_realloc(st->e, (st->n + 1) * sizeof(*st->e));
        st->e[st->n++] = (gw_static_entry_t){gw_strdup(path), {gw_static_ctype(path), p, n}};
        st->bytes += n;
    }
    closedir(d);
    return rc;
}

gw_static_t *gw_static_load(const char *root, char *err, size_t errlen)
{
    gw_static_t *st = gw_calloc(1, sizeof(*st));
    if (gw_static_walk(st, root, "", 0, err, errlen) != 0)
        goto fail;
    return st;
fail:
    gw_static_free(st);
    return NULL;
}

const gw_static_file_t *gw_static_find(const gw_static_t *st, const char *path)
{
    char idx[4096];
    size_t n = strlen(path);
    for (int pass = 0; st && pass < 2; pass++) {
        const char *want = path;
        if (pass == 1) { /* a directory: its index.html */
            if ((size_t)snprintf(idx, sizeof(idx), "%s%sindex.html", path,
                                 n && path[n - 1] == '/' ? "" : "/") >= sizeof(idx))
                return NULL;
            want = idx;
        }
        for (size_t i = 0; i < st->n; i++)
            if (strcmp(st->e[i].path, want) == 0)
                return &st->e[i].f;
    }
    return NULL;
}

size_t gw_static_count(const gw_static_t *st, size_t *bytes)
{
    *bytes = st ? st->bytes : 0;
    return st ? st->n : 0;
}

void gw_static_free(gw_static_t *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++) {
        free(st->e[i].path);
        free((void *)st->e[i].f.p);
    }
    free(st->e);
    free(st);
}
