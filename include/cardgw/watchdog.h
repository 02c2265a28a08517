/* watchdog.h — notices an event loop that stopped turning: a timer on the loop stamps a
 * heartbeat, a kernel interval timer outside the loop (SIGALRM) checks it and ends the process
 * when it goes stale. */
#ifndef CARDGW_WATCHDOG_H
#define CARDGW_WATCHDOG_H

#include <stdint.h>
#include <uv.h>

/* Exit code of a process the watchdog ended (the --workers supervisor restarts it). */
#define GW_EXIT_STALLED 3

typedef struct gw_watchdog gw_watchdog_t;

/* Starts the heartbeat timer on loop and an ITIMER_REAL interval timer (SIGALRM, owned by the
 * watchdog from now on: one per process). When the heartbeat has not run for timeout_ms, the
 * signal handler writes one log line saying so and calls _exit(GW_EXIT_STALLED): a wedged
 * process answers nothing, so it must not linger. A signal reaches a thread spinning in user
 * code or blocked in a system call alike. Returns NULL when timeout_ms is 0. */
gw_watchdog_t *gw_watchdog_start(uv_loop_t *loop, uint32_t timeout_ms);
/* Stops the interval timer, restores SIGALRM and closes the heartbeat; the watchdog is freed in
 * the timer's close callback, so the loop must run once more (gw_node_destroy does). NULL is
 * fine. */
void gw_watchdog_stop(gw_watchdog_t *w);

#endif
