/* origin.h — the WebSocket Origin allowlist (allowed_origins): exact origins and *.domain
 * patterns, parsed strictly and compared by scheme, host (case-insensitively) and port. */
#ifndef CARDGW_ORIGIN_H
#define CARDGW_ORIGIN_H

#include <stddef.h>

/* list (borrowed): origins separated by spaces or commas, each scheme://host[:port] or
 * a pattern: the same with "*." before the host (any subdomain of it, at any depth; not the
 * host itself). Scheme
 * and host compare case-insensitively; a missing port is the scheme's default (http/ws 80,
 * https/wss 443) and ports must then be equal. Returns 0, or -EINVAL with the entry that does
 * not parse named in err (errlen bytes). An empty list is valid (no check). */
int gw_origin_check_list(const char *list, char *err, size_t errlen);
/* Whether origin[0..n) (an Origin header's value, hostile) matches an entry of list (checked with
 * gw_origin_check_list). Anything that is not a plain scheme://host[:port] ("null", a path, a
 * user part, a wildcard, several values) matches nothing. */
int gw_origin_allowed(const char *list, const char *origin, size_t n);
/* A copy of in[0..n) fit for a log line: at most cap - 1 bytes, bytes outside printable ASCII
 * replaced by '?'. */
void gw_origin_printable(const char *in, size_t n, char *out, size_t cap);

#endif
