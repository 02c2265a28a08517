/* watchdog.c — a thread that ends the process when the event loop stops turning (an infinite
 * loop in a library, a blocking call): the supervisor or systemd then starts a fresh one. */
#include "cardgw/watchdog.h"
#include "cardgw/common.h"
#include "cardgw/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct gw_watchdog {
    uv_timer_t beat;               /* on the loop: stamps last_beat_ms */
    _Atomic uint64_t last_beat_ms; /* monotonic, written by the loop, read by the thread */
    uint32_t timeout_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop; /* under mu */
};

static void gw_watchdog_on_beat(uv_timer_t *t)
{
    gw_watchdog_t *w = t->data;
    atomic_store(&w->last_beat_ms, gw_now_ms());
}

static void *gw_watchdog_main(void *arg)
{
    gw_watchdog_t *w = arg;
    uint32_t step = GW_MAX(w->timeout_ms / 4, 10);
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)(step % 1000) * 1000000L;
        ts.tv_sec += step / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (w->stop)
            break;
        uint64_t last = atomic_load(&w->last_beat_ms), now = gw_now_ms();
        if (now > last && now - last > w->timeout_ms) {
            /* not through stdio: the stalled thread may hold stderr's lock (a full log pipe) */
            struct timespec rt;
            struct tm tm;
            clock_gettime(CLOCK_REALTIME, &rt);
            gmtime_r(&rt.tv_sec, &tm);
            dprintf(2,
                    "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ error watchdog the event loop has not "
                    "turned for %llu ms (loop_stall_timeout_ms %u): exiting with %d so that a "
                    "fresh process takes over\n",
                    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                    rt.tv_nsec / 1000000, (unsigned long long)(now - last), w->timeout_ms,
                    GW_EXIT_STALLED);
            _exit(GW_EXIT_STALLED);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

gw_watchdog_t *gw_watchdog_start(uv_loop_t *loop, uint32_t timeout_ms)
{
    if (timeout_ms == 0)
        return NULL;
    gw_watchdog_t *w = gw_calloc(1, sizeof(*w));
    w->timeout_ms = timeout_ms;
    atomic_store(&w->last_beat_ms, gw_now_ms());
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    if (pthread_create(&w->thread, NULL, gw_watchdog_main, w) != 0) {
        gw_err("watchdog", "cannot start the watchdog thread: running without one");
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    uv_timer_init(loop, &w->beat);
    w->beat.data = w;
    uint64_t every = GW_MAX(timeout_ms / 4, 10);
    uv_timer_start(&w->beat, gw_watchdog_on_beat, every, every);
    uv_unref((uv_handle_t *)&w->beat); /* the heartbeat alone does not keep the loop running */
    return w;
}

static void gw_watchdog_on_close(uv_handle_t *h)
{
    free(h->data);
}

void gw_watchdog_stop(gw_watchdog_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    uv_close((uv_handle_t *)&w->beat, gw_watchdog_on_close);
}
