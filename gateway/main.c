/* main.c — the cardgw command line: loads the configuration (file, CARDGW_* environment,
 * flags), runs one node (or a supervisor of N workers) until SIGINT/SIGTERM; SIGHUP reloads. */
#include "cardgw/config.h"
#include "cardgw/log.h"
#include "cardgw/metrics.h"
#include "cardgw/node.h"
#include "cardgw/tls.h"
#include "cardgw/watchdog.h"

#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define GW_MAX_FDS (1u << 20) /* the open-file limit is raised at most this far */

static void gw_usage(FILE *f)
{
    fprintf(f,
            "usage: cardgw [--config FILE] [--port N] [--redis URL] [--log-level LEVEL]\n"
            "              [--workers N] [--check-config] [--version] [--help]\n"
            "  --config FILE     configuration file (key = value; see config.example)\n"
            "  --port N          listen port (key port, env CARDGW_PORT)\n"
            "  --redis URL       redis://[[user]:password@]host:port[/db] or\n"
            "                    redis-sentinel://host:port,host:port/master[/db] (key redis_url,\n"
            "                    env CARDGW_REDIS_URL; a password here shows in ps: use\n"
            "                    redis_password_file or the environment)\n"
            "  --log-level L     error, warn, info or debug (key log_level)\n"
            "  --workers N       worker processes sharing the port (key workers)\n"
            "  --check-config    print the effective configuration and exit\n"
            "Precedence: defaults < file < CARDGW_* environment < flags.\n"
            "Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration,\n"
            "3 event loop stalled (loop_stall_timeout_ms; --workers restarts it).\n");
}

/* ---- one node ------------------------------------------------------------------------------ */

/* Runs one node on its own loop until it is stopped; returns the process exit code. */
static int gw_run_node(gw_config_t *cfg)
{
    uv_loop_t loop;
    gw_node_t node;
    int exit_code = 0;
    uv_loop_init(&loop);
    if (gw_node_start(&node, &loop, cfg) != 0) {
        gw_err("node", "%s", node.errstr);
        exit_code = 1;
    } else {
        gw_info("node", "%s listening on http://%s:%d (WebSocket %s, health /healthz)",
                node.node_id, cfg->listen_address, node.port, cfg->ws_path);
        uv_run(&loop, UV_RUN_DEFAULT);
        gw_info("node", "stopped");
    }
    if (gw_node_destroy(&node) != 0) /* a handle was left open (logged): a bug */
        exit_code = exit_code ? exit_code : 1;
    int lc = uv_loop_close(&loop);
    if (lc != 0) {
        gw_err("node", "loop still has handles at exit: %s", uv_strerror(lc));
        uv_print_all_handles(&loop, stderr);
        exit_code = exit_code ? exit_code : 1;
    }
    return exit_code;
}

/* ---- --workers: a supervisor and N node processes sharing the port (SO_REUSEPORT) ---------- */

static volatile sig_atomic_t gw_sup_signal, gw_sup_reload;

static void gw_sup_on_signal(int sig)
{
    gw_sup_signal = sig;
}

/* SIGHUP to the supervisor: every worker reloads (gw_node_reload); none is restarted. */
static void gw_sup_on_reload(int sig)
{
    gw_sup_reload = 1;
}

/* restarts: how often slot i was restarted; last_exit: the code of the process it replaces. */
static pid_t gw_spawn_worker(gw_config_t *cfg, int i, const char *base_id, uint64_t restarts,
                             int last_exit)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_IGN); /* until the node's own handler (a reload) is installed */
    gw_metrics.worker_restarts = restarts;
    gw_metrics.worker_last_exit = last_exit;
    char id[128];
    snprintf(id, sizeof(id), "%s-w%d", base_id, i);
    free(cfg->node_id);
    cfg->node_id = gw_strdup(id);
    int rc = gw_run_node(cfg);
    gw_config_free(cfg);
    _exit(rc);
}

typedef struct {
    pid_t pid;              /* 0: not running */
    int signalled;          /* the stop signal was forwarded to pid */
    int last_exit;          /* exit code of the previous process in this slot */
    uint64_t restarts;      /* processes restarted in this slot */
    uint32_t quick_crashes; /* consecutive deaths within a minute of starting (backoff) */
    uint64_t started_ms, restart_at_ms;
} gw_worker_slot_t;

#define GW_SUP_TICK_MS 50

/* Starts cfg->workers node processes and restarts one that dies abnormally (exit code other than
 * 0, 1 or 2; e.g. 3 from the watchdog), after 1 s, doubling up to 32 s while it keeps dying
 * within a minute. On SIGINT/SIGTERM it forwards the signal to every worker (also one started
 * a moment before) and waits for all of them; SIGHUP it forwards to every running worker (a
 * reload, see gw_node_reload). It polls every 50 ms instead of blocking in
 * waitpid, so a signal is never missed between checking for it and waiting. */
static int gw_supervise(gw_config_t *cfg)
{
    int n = cfg->workers, failed = 0;
    gw_worker_slot_t *w = gw_calloc((size_t)n, sizeof(*w));
    char base[96];
    struct sigaction sa;
    if (cfg->node_id[0]) {
        snprintf(base, sizeof(base), "%s", cfg->node_id);
    } else { /* unique across hosts: workers' ids name their Redis keys (online, reply channel) */
        char host[64] = "node", rnd[9];
        gethostname(host, sizeof(host) - 1);
        gw_random_hex(rnd, 4);
        snprintf(base, sizeof(base), "%.63s-%d-%s", host, (int)getpid(), rnd);
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = gw_sup_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = gw_sup_on_reload;
    sigaction(SIGHUP, &sa, NULL);
    for (int i = 0; i < n; i++) {
        w[i].pid = gw_spawn_worker(cfg, i, base, 0, 0);
        w[i].started_ms = gw_now_ms();
    }
    gw_info("main", "supervising %d workers on port %d", n, cfg->port);
    for (;;) {
        int st, busy = 0;
        pid_t pid;
        uint64_t now = gw_now_ms();
        int reload = gw_sup_reload && !gw_sup_signal;
        gw_sup_reload = 0;
        for (int i = 0; i < n; i++) {
            if (gw_sup_signal && w[i].pid > 0 && !w[i].signalled) {
                kill(w[i].pid, gw_sup_signal);
                w[i].signalled = 1;
            }
            if (reload && w[i].pid > 0)
                kill(w[i].pid, SIGHUP);
        }
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
            for (int i = 0; i < n; i++) {
                if (w[i].pid != pid)
                    continue;
                int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                w[i].pid = 0;
                w[i].signalled = 0;
                if (!gw_sup_signal && code != 0 && code != 1 && code != 2) {
                    w[i].quick_crashes =
                        now - w[i].started_ms < 60000 ? GW_MIN(w[i].quick_crashes + 1, 6) : 1;
                    uint64_t delay = 1000u << (w[i].quick_crashes - 1);
                    w[i].restart_at_ms = now + delay;
                    w[i].last_exit = code;
                    gw_warn("main",
                            "worker %d (pid %d) exited with %d%s: restarting it in %" PRIu64 " ms",
                            i, (int)pid, code,
                            code == GW_EXIT_STALLED ? " (event loop stalled)" : "", delay);
                } else if (code != 0) {
                    failed = 1; /* a restarted worker is not a failure of the whole */
                }
            }
        }
        for (int i = 0; i < n; i++) {
            if (w[i].pid == 0 && w[i].restart_at_ms) {
                if (gw_sup_signal) {
                    w[i].restart_at_ms = 0; /* stopping: no restart */
                } else if (now >= w[i].restart_at_ms) {
                    w[i].restart_at_ms = 0;
                    w[i].pid = gw_spawn_worker(cfg, i, base, ++w[i].restarts, w[i].last_exit);
                    w[i].started_ms = now;
                }
            }
            busy |= w[i].pid > 0 || w[i].restart_at_ms;
        }
        if (!busy)
            break;
        struct timespec ts = {0, GW_SUP_TICK_MS * 1000000L};
        nanosleep(&ts, NULL); /* a signal cuts it short */
    }
    free(w);
    return failed ? 1 : 0;
}

/* Raises the open-file limit to its hard limit (each connection is a descriptor) and logs it. */
static void gw_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t was = rl.rlim_cur;
    /* not to an unlimited or huge hard limit: lws sizes per-descriptor tables from it */
    rlim_t want =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > GW_MAX_FDS ? GW_MAX_FDS : rl.rlim_max;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = was;
    }
    gw_info("main", "open-file limit %llu (was %llu, hard limit %llu)",
            (unsigned long long)rl.rlim_cur, (unsigned long long)was,
            (unsigned long long)rl.rlim_max);
}

/* ---- command line ---------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"redis", required_argument, NULL, 'r'},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"workers", required_argument, NULL, 'w'},
                                         {"check-config", no_argument, NULL, 'k'},
                                         {"version", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *file = NULL, *port = NULL, *redis = NULL, *level = NULL, *workers = NULL;
    int check = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:p:r:l:w:kvh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 'p':
            port = optarg;
            break;
        case 'r':
            redis = optarg;
            break;
        case 'l':
            level = optarg;
            break;
        case 'w':
            workers = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'v':
            printf("cardgw %s\n", GW_VERSION);
            return 0;
        case 'h':
            gw_usage(stdout);
            return 0;
        default:
            gw_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cardgw: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }

    gw_config_t cfg;
    char err[512];
    int rc = 0;
    gw_config_defaults(&cfg);
    if (file)
        rc = gw_config_load_file(&cfg, file, err, sizeof(err));
    if (!rc)
        rc = gw_config_load_env(&cfg, err, sizeof(err));
    if (!rc && port)
        rc = gw_config_set(&cfg, "port", port, "flag --port", err, sizeof(err));
    if (!rc && redis)
        rc = gw_config_set(&cfg, "redis_url", redis, "flag --redis", err, sizeof(err));
    if (!rc && level)
        rc = gw_config_set(&cfg, "log_level", level, "flag --log-level", err, sizeof(err));
    if (!rc && workers)
        rc = gw_config_set(&cfg, "workers", workers, "flag --workers", err, sizeof(err));
    if (!rc)
        rc = gw_config_load_secrets(&cfg, err, sizeof(err));
    if (!rc)
        rc = gw_config_validate(&cfg, err, sizeof(err));
    if (!rc) /* a missing or bad certificate or key stops the start here, with exit code 2 */
        rc = gw_tls_check_files(&cfg, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "cardgw: configuration error: %s\n", err);
        gw_config_free(&cfg);
        return 2;
    }
    if (check) {
        gw_config_print(&cfg, stdout);
        gw_config_free(&cfg);
        return 0;
    }
    gw_log_level = cfg.log_level;
    gw_log_format = cfg.log_format;
    gw_raise_fd_limit();
    int exit_code = cfg.workers > 1 ? gw_supervise(&cfg) : gw_run_node(&cfg);
    gw_config_free(&cfg);
    return exit_code;
}
