/* rpc_wait.h — rpc calls waiting for the backend's answer: a per-node table keyed by request
 * sequence number, each call's deadline (one libuv timer for all), bounded per connection. */
#ifndef CARDGW_RPC_WAIT_H
#define CARDGW_RPC_WAIT_H

#include <stdint.h>
#include <uv.h>

#include "cardgw/conn.h"

typedef struct gw_rpc_waits gw_rpc_waits_t;

/* The table on loop (its timer is initialised there). timeout_ms: how long a call waits before
 * error 118; max_per_conn: calls one connection may have waiting. Never NULL. */
gw_rpc_waits_t *gw_rpc_waits_new(uv_loop_t *loop, uint32_t timeout_ms, uint32_t max_per_conn);
/* Closes the timer (the loop must run afterwards); then gw_rpc_waits_free frees the rest, once
 * every connection is closed. NULL is fine for both. */
void gw_rpc_waits_stop(gw_rpc_waits_t *w);
void gw_rpc_waits_free(gw_rpc_waits_t *w);

/* Registers command id of c (borrowed: the entry refers to c only while it is open, see
 * gw_rpc_waits_conn_closed) as waiting from now until the timeout. Returns its sequence number
 * (>= 1, unique in this process), or 0 when c already has max_per_conn calls waiting (nothing
 * registered: the caller replies 115). */
uint64_t gw_rpc_wait_add(gw_rpc_waits_t *w, gw_conn_t *c, uint32_t id);

/* The end of a call, by its sequence number. Each replies to the client and removes the entry.
 * Returns 0 (the client got the reply), -EPIPE (its connection closed while it waited: nothing
 * sent) or -ENOENT (no such call: answered, timed out or failed already). */
/* The backend's result (data borrowed for the call). */
int gw_rpc_wait_result(gw_rpc_waits_t *w, uint64_t seq, gw_data_t data);
/* The backend's error: 119 with message (borrowed) and, when has_app_code, app_code. */
int gw_rpc_wait_backend_error(gw_rpc_waits_t *w, uint64_t seq, const char *message,
                              int has_app_code, int64_t app_code);
/* Redis failed to take the call (its XADD failed): 111. */
int gw_rpc_wait_unavailable(gw_rpc_waits_t *w, uint64_t seq);

/* The pub/sub connection the answers arrive on dropped: answers published meanwhile are lost, so
 * every waiting call gets 111 now. */
void gw_rpc_waits_fail_all(gw_rpc_waits_t *w);
/* c's socket closed: its calls stop referring to it; each stays in the table until its deadline,
 * so that a late answer is told from an unknown one (gw_rpc_wait_* return -EPIPE). */
void gw_rpc_waits_conn_closed(gw_rpc_waits_t *w, gw_conn_t *c);

#endif
