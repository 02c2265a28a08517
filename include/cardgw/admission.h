/* admission.h — who may open a connection: per-IP caps on open sockets and on new sockets per
 * second (checked at accept), a per-user cap on open connections (checked at connect), and a
 * per-user rpc rate shared by that user's connections on the node. */
#ifndef CARDGW_ADMISSION_H
#define CARDGW_ADMISSION_H

#include <stddef.h>
#include <stdint.h>

/* Why a connection was refused (the reason label of cardgw_connections_refused_total). */
typedef enum {
    GW_REFUSE_IP_OPEN = 0,     /* max_connections_per_ip sockets already open from this IP */
    GW_REFUSE_IP_RATE,         /* over max_new_connections_per_ip_per_s */
    GW_REFUSE_MAX_CONNECTIONS, /* max_connections WebSocket connections open on this node */
    GW_REFUSE_USER,            /* max_connections_per_user open for this uid */
    GW_REFUSE_FD_LIMIT,        /* accept failed: the process is out of file descriptors */
    GW_REFUSE_ORIGIN,          /* the upgrade's Origin is not in allowed_origins (HTTP 403) */
    GW_REFUSE__COUNT
} gw_refuse_reason_t;

/* The metric label of r (static string). */
const char *gw_refuse_reason_name(gw_refuse_reason_t r);

typedef struct gw_admission gw_admission_t;

/* Caps of 0 mean unlimited. Aborts on allocation failure. */
gw_admission_t *gw_admission_new(uint32_t max_per_ip, uint32_t new_per_ip_per_s,
                                 uint32_t max_per_user);
/* Frees every entry (open counts need not be zero). NULL is fine. */
void gw_admission_free(gw_admission_t *a);

/* A socket from ip (IPv4, network order) was accepted at now_ms (monotonic). Returns 0 and
 * counts it (release it with gw_admission_ip_release exactly once), or -EMFILE (over the open
 * cap) / -EAGAIN (over the rate) with *reason set, and counts nothing. */
int gw_admission_ip_acquire(gw_admission_t *a, uint32_t ip, uint64_t now_ms,
                            gw_refuse_reason_t *reason);
void gw_admission_ip_release(gw_admission_t *a, uint32_t ip);
/* Sockets open from ip now (for tests and logs). */
uint32_t gw_admission_ip_open(const gw_admission_t *a, uint32_t ip);

/* A connection authenticated as uid (borrowed, NUL-terminated). Returns the table's own copy of
 * the uid, shared by every connection of that user (the connection keeps it as its uid: one copy
 * per user, not per connection), valid until the matching gw_admission_user_release; or NULL
 * over the per-user cap (nothing counted). */
const char *gw_admission_user_acquire(gw_admission_t *a, const char *uid);
/* Releases one count of uid (may be the pointer acquire returned, which becomes invalid when the
 * last count goes). */
void gw_admission_user_release(gw_admission_t *a, const char *uid);

/* One rpc of uid (a connected user) at now_ms (monotonic), against a token bucket per user on
 * this node: per_s a second sustained, a burst of 2 * per_s (per_s 0: no limit). Returns 0 (a
 * token taken) or -EAGAIN (over the rate, nothing taken). The bucket lives while the user has a
 * connection here: a user who closes every connection starts again with a full one. */
int gw_admission_user_rpc_take(gw_admission_t *a, const char *uid, uint64_t now_ms, uint32_t per_s);

/* Who is online (online.c mirrors it into Redis): a connection of uid, which holds an acquire,
 * authenticated (up = 1) or closed (up = 0). *count gets the user's connections up after the
 * change. Returns 0, or -ENOENT when uid holds no acquire (nothing counted). */
int gw_admission_user_online(gw_admission_t *a, const char *uid, int up, uint32_t *count);
/* Users with at least one connection up. */
size_t gw_admission_users_online(const gw_admission_t *a);
/* Calls cb(priv, uid, count) for each user online (uid borrowed for the call) until cb returns
 * non-zero; returns that, or 0. */
typedef int (*gw_admission_user_cb)(void *priv, const char *uid, uint32_t count);
int gw_admission_foreach_online(const gw_admission_t *a, gw_admission_user_cb cb, void *priv);

/* Forgets IPs with no open socket whose rate window has passed; call every few seconds. */
void gw_admission_sweep(gw_admission_t *a, uint64_t now_ms);

#endif
