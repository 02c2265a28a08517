/* main.c — the cardgw command line: loads the configuration (file, CARDGW_* environment,
 * flags), runs one node on a libuv loop until SIGINT/SIGTERM, and frees everything. */
#include "cardgw/config.h"
#include "cardgw/log.h"
#include "cardgw/node.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define GW_VERSION "0.1.0"

static void gw_usage(FILE *f)
{
    fprintf(f, "usage: cardgw [--config FILE] [--port N] [--redis URL] [--log-level LEVEL]\n"
               "              [--check-config] [--version] [--help]\n"
               "  --config FILE     configuration file (key = value; see config.example)\n"
               "  --port N          listen port (key port, env CARDGW_PORT)\n"
               "  --redis URL       redis://[:password@]host:port[/db] (key redis_url,\n"
               "                    env CARDGW_REDIS_URL)\n"
               "  --log-level L     error, warn, info or debug (key log_level)\n"
               "  --check-config    print the effective configuration and exit\n"
               "Precedence: defaults < file < CARDGW_* environment < flags.\n"
               "Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"port", required_argument, NULL, 'p'},
        {"redis", required_argument, NULL, 'r'},  {"log-level", required_argument, NULL, 'l'},
        {"check-config", no_argument, NULL, 'k'}, {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *file = NULL, *port = NULL, *redis = NULL, *level = NULL;
    int check = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:p:r:l:kvh", opts, NULL)) != -1) {
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
    gw_config_defaults(&cfg);
    int rc = 0;
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
    if (!rc)
        rc = gw_config_validate(&cfg, err, sizeof(err));
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

    uv_loop_t loop;
    gw_node_t node;
    uv_loop_init(&loop);
    int exit_code = 0;
    if (gw_node_start(&node, &loop, &cfg) != 0) {
        gw_err("node", "%s", node.errstr);
        exit_code = 1;
    } else {
        gw_info("node", "%s listening on http://%s:%d (WebSocket %s, health /healthz)",
                node.node_id, cfg.listen_address, cfg.port, cfg.ws_path);
        uv_run(&loop, UV_RUN_DEFAULT);
        gw_info("node", "stopped");
    }
    gw_node_destroy(&node);
    int lc = uv_loop_close(&loop);
    if (lc != 0) {
        gw_err("node", "loop still has handles at exit: %s", uv_strerror(lc));
        uv_print_all_handles(&loop, stderr);
        exit_code = exit_code ? exit_code : 1;
    }
    gw_config_free(&cfg);
    return exit_code;
}
