/* watchdog.h — notices an event loop that stopped turning: a timer on the loop stamps a
 * heartbeat, a thread outside the loop checks it and ends the process when it goes stale. */
#ifndef CARDGW_WATCHDOG_H
#define CARDGW_WATCHDOG_H

#include <stdint.h>
#include <uv.h>

/* Exit code of a process the watchdog ended (the --workers supervisor restarts it). */
#define GW_EXIT_STALLED 3

typedef struct gw_watchdog gw_watchdog_t;

/* Starts the heartbeat timer on loop and the watchdog thread. When the timer has not run for
 * timeout_ms, the thread writes one log line saying so and calls _exit(GW_EXIT_STALLED): a
 * wedged process answers nothing, so it must not linger. Returns NULL when timeout_ms is 0 or
 * the thread cannot start (logged). */
gw_watchdog_t *gw_watchdog_start(uv_loop_t *loop, uint32_t timeout_ms);
/* Joins the thread and closes the timer; the watchdog is freed in the timer's close callback,
 * so the loop must run once more (gw_node_destroy does). NULL is fine. */
void gw_watchdog_stop(gw_watchdog_t *w);

#endif
