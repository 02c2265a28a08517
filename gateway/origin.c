/* origin.c — the WebSocket Origin allowlist: parses allowed_origins entries and Origin header
 * values into scheme, host and port, and matches them (exact or *.domain). */
#include "cardgw/origin.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define GW_ORIGIN_HOST_MAX 253

typedef struct {
    char scheme[16];
    char host[GW_ORIGIN_HOST_MAX + 1]; /* lower case; without the "*." of a pattern */
    int port;                          /* explicit, or the scheme's default (0: none) */
    int wildcard;                      /* a pattern: any subdomain of host */
} gw_origin_t;

static int gw_origin_host_char(int ch)
{
    return isalnum(ch) || ch == '-' || ch == '.' || ch == '_';
}

/* p[0..n) into *o. pattern: "*." may start the host. 0 or -EINVAL. */
static int gw_origin_parse(const char *p, size_t n, int pattern, gw_origin_t *o)
{
    size_t i = 0, h = 0;
    memset(o, 0, sizeof(*o));
    while (i < n && i < sizeof(o->scheme) - 1 &&
           (isalpha((unsigned char)p[i]) ||
            (i > 0 && (isdigit((unsigned char)p[i]) || p[i] == '+' || p[i] == '.' || p[i] == '-'))))
        o->scheme[i] = (char)tolower((unsigned char)p[i]), i++;
    if (i == 0 || n - i < 3 || memcmp(p + i, "://", 3) != 0)
        return -EINVAL;
    i += 3;
    if (pattern && n - i > 2 && p[i] == '*' && p[i + 1] == '.') {
        o->wildcard = 1;
        i += 2;
    }
    if (i < n && p[i] == '[') { /* an IPv6 literal, brackets kept */
        o->host[h++] = p[i++];
        while (i < n && p[i] != ']' && h < GW_ORIGIN_HOST_MAX) {
            if (!isxdigit((unsigned char)p[i]) && p[i] != ':' && p[i] != '.')
                return -EINVAL;
            o->host[h++] = (char)tolower((unsigned char)p[i++]);
        }
        if (i == n || p[i] != ']' || h == 1 || o->wildcard)
            return -EINVAL;
        o->host[h++] = p[i++];
    } else {
        while (i < n && gw_origin_host_char((unsigned char)p[i]) && h < GW_ORIGIN_HOST_MAX)
            o->host[h++] = (char)tolower((unsigned char)p[i++]);
        if (h == 0 || o->host[0] == '.' || strstr(o->host, ".."))
            return -EINVAL;
    }
    if (i < n && p[i] == ':') {
        long port = 0;
        size_t d = ++i;
        while (i < n && isdigit((unsigned char)p[i]) && i - d < 5)
            port = port * 10 + (p[i++] - '0');
        if (i == d || port < 1 || port > 65535)
            return -EINVAL;
        o->port = (int)port;
    } else if (!strcmp(o->scheme, "https") || !strcmp(o->scheme, "wss")) {
        o->port = 443;
    } else if (!strcmp(o->scheme, "http") || !strcmp(o->scheme, "ws")) {
        o->port = 80;
    }
    return i == n ? 0 : -EINVAL; /* nothing may follow: no path, query or user part */
}

/* Calls fn on each entry of list until it returns non-zero; returns that value, or 0. */
static int gw_origin_each(const char *list, int (*fn)(const char *p, size_t n, void *ud), void *ud)
{
    for (const char *p = list ? list : ""; *p;) {
        p += strspn(p, " ,\t");
        size_t n = strcspn(p, " ,\t");
        if (n) {
            int rc = fn(p, n, ud);
            if (rc)
                return rc;
        }
        p += n;
    }
    return 0;
}

typedef struct {
    char *err;
    size_t errlen;
} gw_origin_err_t;

static int gw_origin_check_one(const char *p, size_t n, void *ud)
{
    gw_origin_err_t *e = ud;
    gw_origin_t o;
    if (gw_origin_parse(p, n, 1, &o) == 0)
        return 0;
    snprintf(e->err, e->errlen,
             "key 'allowed_origins': '%.*s' is not scheme://host[:port] or "
             "scheme://*.domain[:port]",
             (int)(n > 200 ? 200 : n), p);
    return -EINVAL;
}

int gw_origin_check_list(const char *list, char *err, size_t errlen)
{
    gw_origin_err_t e = {err, errlen};
    return gw_origin_each(list, gw_origin_check_one, &e);
}

static int gw_origin_match_one(const char *p, size_t n, void *ud)
{
    const gw_origin_t *o = ud;
    gw_origin_t e;
    if (gw_origin_parse(p, n, 1, &e) != 0 || strcmp(e.scheme, o->scheme) || e.port != o->port)
        return 0;
    if (!e.wildcard)
        return strcmp(e.host, o->host) == 0;
    /* *.example.com: "<at least one label>.example.com", never example.com or xexample.com */
    size_t hl = strlen(o->host), sl = strlen(e.host);
    return hl > sl + 1 && o->host[hl - sl - 1] == '.' && strcmp(o->host + hl - sl, e.host) == 0;
}

int gw_origin_allowed(const char *list, const char *origin, size_t n)
{
    gw_origin_t o;
    if (gw_origin_parse(origin, n, 0, &o) != 0)
        return 0;
    return gw_origin_each(list, gw_origin_match_one, &o);
}

void gw_origin_printable(const char *in, size_t n, char *out, size_t cap)
{
    size_t i = 0;
    for (; cap && i < n && i < cap - 1; i++)
        out[i] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
    if (cap)
        out[i] = '\0';
}
