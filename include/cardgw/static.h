/* static.h — optional static files (a demo page, a client bundle) served by the node: a directory
 * loaded into memory at start, so serving never touches the disk or blocks the loop. */
#ifndef CARDGW_STATIC_H
#define CARDGW_STATIC_H

#include <stddef.h>

#define GW_STATIC_MAX_FILES 256                /* files loaded from the root, at most */
#define GW_STATIC_MAX_BYTES (16 * 1024 * 1024) /* their total size, at most */
#define GW_STATIC_MAX_DEPTH 4                  /* directory levels below the root */

typedef struct gw_static gw_static_t;

typedef struct {
    const char *ctype; /* static string: a Content-Type by file extension */
    const unsigned char *p;
    size_t n;
} gw_static_file_t;

/* Loads every regular file under root (NUL-terminated, borrowed), skipping names that start with
 * '.' and symbolic links. Returns the table (owned by the caller: gw_static_free), or NULL with
 * a reason in err when root cannot be read or passes the limits above. */
gw_static_t *gw_static_load(const char *root, char *err, size_t errlen);
/* The file at URL path (e.g. "/", "/app.js"; "/" and a directory path mean its index.html), or
 * NULL. The result points into st (valid until gw_static_free). Only loaded names match, so no
 * path can reach outside the root. */
const gw_static_file_t *gw_static_find(const gw_static_t *st, const char *path);
/* How many files, and their bytes (for the start-up log line). */
size_t gw_static_count(const gw_static_t *st, size_t *bytes);
/* Frees the table (NULL is fine). */
void gw_static_free(gw_static_t *st);

#endif
