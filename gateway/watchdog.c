/* watchdog.c — ends the process when the event loop stops turning (an infinite loop in a library,
 * a blocking call): a kernel interval timer (SIGALRM) checks a heartbeat that the loop stamps.
 * No thread: a second thread makes glibc's malloc take its locks, -12 % connects/s (measured). */
#include "cardgw/watchdog.h"
#include "cardgw/common.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct gw_watchdog {
    uv_timer_t beat; /* on the loop: stamps gw_wd_beat_ms */
    struct sigaction old;
};

/* Shared with the signal handler: lock-free atomics only. One watchdog per process. */
static _Atomic uint64_t gw_wd_beat_ms;  /* last heartbeat, monotonic ms */
static _Atomic uint64_t gw_wd_check_ms; /* last time the handler ran */
static _Atomic uint32_t gw_wd_timeout_ms, gw_wd_step_ms;

/* ---- the handler: async-signal-safe only (clock_gettime, write, _exit) ----------------------- */

static size_t gw_wd_u64(char *out, uint64_t v, int width)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while ((int)n < width)
        tmp[n++] = '0';
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t gw_wd_str(char *out, const char *s)
{
    size_t n = strlen(s);
    memcpy(out, s, n);
    return n;
}

/* "YYYY-MM-DDThh:mm:ss.mmmZ" from the real-time clock (civil-from-days, no locale or tz). */
static size_t gw_wd_stamp(char *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t secs = ts.tv_sec, days = secs / 86400, rem = secs % 86400;
    int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    size_t n = 0;
    n += gw_wd_u64(out + n, (uint64_t)y, 4);
    out[n++] = '-';
    n += gw_wd_u64(out + n, (uint64_t)m, 2);
    out[n++] = '-';
    n += gw_wd_u64(out + n, (uint64_t)d, 2);
    out[n++] = 'T';
    n += gw_wd_u64(out + n, (uint64_t)(rem / 3600), 2);
    out[n++] = ':';
    n += gw_wd_u64(out + n, (uint64_t)(rem / 60 % 60), 2);
    out[n++] = ':';
    n += gw_wd_u64(out + n, (uint64_t)(rem % 60), 2);
    out[n++] = '.';
    n += gw_wd_u64(out + n, (uint64_t)(ts.tv_nsec / 1000000), 3);
    out[n++] = 'Z';
    return n;
}

static void gw_wd_on_alarm(int sig)
{
    int saved = errno;
    uint64_t now = gw_now_ms(), prev = atomic_exchange(&gw_wd_check_ms, now);
    uint64_t timeout = atomic_load(&gw_wd_timeout_ms), step = atomic_load(&gw_wd_step_ms);
    uint64_t beat = atomic_load(&gw_wd_beat_ms);
    (void)sig;
    if (now - prev > step + timeout / 2) {
        /* the handler itself ran late: the whole process was stopped (SIGSTOP, a frozen VM, a
         * debugger); the loop gets a full period to beat again before it is judged */
        atomic_store(&gw_wd_beat_ms, now);
    } else if (now > beat && now - beat > timeout) {
        char line[256];
        size_t n = gw_wd_stamp(line);
        n += gw_wd_str(line + n, " error watchdog the event loop has not turned for ");
        n += gw_wd_u64(line + n, now - beat, 1);
        n += gw_wd_str(line + n, " ms (loop_stall_timeout_ms ");
        n += gw_wd_u64(line + n, timeout, 1);
        n += gw_wd_str(line + n, "): exiting with 3 so that a fresh process takes over\n");
        /* should stderr be a full pipe, the write blocks: a second alarm (default action)
         * ends the process then */
        signal(SIGALRM, SIG_DFL);
        ssize_t w = write(2, line, n);
        (void)w;
        _exit(GW_EXIT_STALLED);
    }
    errno = saved;
}

/* ---- on the loop ----------------------------------------------------------------------------- */

static void gw_watchdog_on_beat(uv_timer_t *t)
{
    atomic_store(&gw_wd_beat_ms, gw_now_ms());
}

gw_watchdog_t *gw_watchdog_start(uv_loop_t *loop, uint32_t timeout_ms)
{
    if (timeout_ms == 0)
        return NULL;
    gw_watchdog_t *w = gw_calloc(1, sizeof(*w));
    uint32_t step = timeout_ms / 4; /* >= 250: the configuration allows 0 or >= 1000 */
    uint64_t now = gw_now_ms();
    atomic_store(&gw_wd_timeout_ms, timeout_ms);
    atomic_store(&gw_wd_step_ms, step);
    atomic_store(&gw_wd_beat_ms, now);
    atomic_store(&gw_wd_check_ms, now);
    uv_timer_init(loop, &w->beat);
    w->beat.data = w;
    uv_timer_start(&w->beat, gw_watchdog_on_beat, step, step);
    uv_unref((uv_handle_t *)&w->beat); /* the heartbeat alone does not keep the loop running */

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = gw_wd_on_alarm;
    sa.sa_flags = SA_RESTART; /* interrupted system calls continue */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, &w->old);
    struct itimerval it = {{step / 1000, (long)(step % 1000) * 1000},
                           {step / 1000, (long)(step % 1000) * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
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
    struct itimerval off;
    memset(&off, 0, sizeof(off));
    setitimer(ITIMER_REAL, &off, NULL);
    sigaction(SIGALRM, &w->old, NULL);
    uv_close((uv_handle_t *)&w->beat, gw_watchdog_on_close);
}
