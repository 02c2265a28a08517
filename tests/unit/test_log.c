/* test_log.c — the logger's two formats (text, one JSON object per line), its fields, escaping,
 * the rate limit's dropped count; and the histogram type of metrics.h with its rendering. */
#include "cardgw/log.h"
#include "cardgw/metrics.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

/* What the logger wrote to stderr while fn ran. */
static char captured[8192];
static void capture_begin(FILE **tmp, int *saved)
{
    fflush(stderr);
    *tmp = tmpfile();
    *saved = dup(2);
    dup2(fileno(*tmp), 2);
}
static const char *capture_end(FILE *tmp, int saved)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(captured, 1, sizeof(captured) - 1, tmp);
    captured[n] = '\0';
    fclose(tmp);
    return captured;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

TEST(text_line_has_fields_after_the_message)
{
    FILE *tmp;
    int saved;
    gw_log_format = GW_LOG_TEXT;
    capture_begin(&tmp, &saved);
    gw_logf(GW_LOG_INFO, "conn", (&(gw_log_fields_t){.client = "ab-1", .uid = "u1", .code = 4001}),
            "slow consumer: %d bytes", 5);
    gw_log(GW_LOG_DEBUG, "conn", "not at info level");
    const char *out = capture_end(tmp, saved);
    CHECK(strstr(out, " info  conn    slow consumer: 5 bytes client=ab-1 uid=u1 code=4001\n"));
    CHECK(strstr(out, "not at info level") == NULL);
    CHECK(strchr(out, '\n') == out + strlen(out) - 1); /* one line */
}

TEST(json_line_is_one_object_with_fields_and_escapes)
{
    FILE *tmp;
    int saved;
    gw_log_format = GW_LOG_JSON;
    capture_begin(&tmp, &saved);
    gw_logf(GW_LOG_WARN, "hub", (&(gw_log_fields_t){.channel = "g:1", .uid = "u\"2"}),
            "quote \" backslash \\ tab\t newline\n bad \xff\xfe utf8 \xc3\xa9");
    gw_log(GW_LOG_ERROR, "main", "plain");
    const char *out = capture_end(tmp, saved);
    gw_log_format = GW_LOG_TEXT;
    const char *nl = strchr(out, '\n');
    CHECK(nl != NULL);
    if (!nl)
        return;
    json_error_t e;
    json_t *o = json_loadb(out, (size_t)(nl - out), 0, &e);
    CHECK(o != NULL);
    if (o) {
        CHECK_STR(json_string_value(json_object_get(o, "level")), "warn");
        CHECK_STR(json_string_value(json_object_get(o, "module")), "hub");
        CHECK_STR(json_string_value(json_object_get(o, "channel")), "g:1");
        CHECK_STR(json_string_value(json_object_get(o, "uid")), "u\"2");
        CHECK_STR(
            json_string_value(json_object_get(o, "msg")),
            "quote \" backslash \\ tab\t newline  bad \xef\xbf\xbd\xef\xbf\xbd utf8 \xc3\xa9");
        CHECK(json_object_get(o, "client") == NULL && json_object_get(o, "code") == NULL);
        CHECK(json_is_string(json_object_get(o, "time")));
        json_decref(o);
    }
    json_t *o2 = json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, &e);
    CHECK(o2 && json_object_size(o2) == 4);
    json_decref(o2);
}

TEST(rate_limited_lines_say_how_many_were_dropped)
{
    FILE *tmp;
    int saved;
    gw_log_limit_t lim = {0};
    uint64_t before = gw_log_dropped;
    gw_log_format = GW_LOG_TEXT;
    capture_begin(&tmp, &saved);
    for (int i = 0; i < 5; i++)
        gw_log_every(&lim, 50, GW_LOG_WARN, "server", "refused %d", i);
    sleep_ms(60);
    gw_log_every(&lim, 50, GW_LOG_WARN, "server", "refused %d", 5);
    const char *out = capture_end(tmp, saved);
    CHECK(strstr(out, "refused 0\n"));
    CHECK(strstr(out, "refused 1") == NULL);
    CHECK(strstr(out, "refused 5 (and 4 more like it in the last 0 s)\n"));
    CHECK_EQ_INT(gw_log_dropped - before, 4);

    gw_log_format = GW_LOG_JSON;
    sleep_ms(60);
    capture_begin(&tmp, &saved);
    gw_log_every(&lim, 50, GW_LOG_WARN, "server", "again");
    gw_log_everyf(&lim, 50, GW_LOG_WARN, "conn", (&(gw_log_fields_t){.client = "c-1"}), "x");
    sleep_ms(60);
    gw_log_everyf(&lim, 50, GW_LOG_WARN, "conn", (&(gw_log_fields_t){.client = "c-2"}), "y");
    out = capture_end(tmp, saved);
    gw_log_format = GW_LOG_TEXT;
    CHECK(strstr(out, "\"msg\":\"again\"}"));
    CHECK(strstr(out, "\"msg\":\"x\"") == NULL);
    CHECK(strstr(out, "\"msg\":\"y\",\"client\":\"c-2\",\"dropped\":1,\"dropped_s\":0}"));
    CHECK_EQ_INT(gw_log_dropped - before, 5);
}

TEST(histogram_buckets_are_inclusive_upper_bounds)
{
    gw_hist_t h = {.bounds = &gw_hist_request};
    gw_hist_observe(&h, 0);
    gw_hist_observe(&h, 250);     /* le="0.00025" */
    gw_hist_observe(&h, 251);     /* le="0.0005" */
    gw_hist_observe(&h, 9999999); /* le="10.0" */
    gw_hist_observe(&h, 10000001);
    CHECK_EQ_INT(h.counts[0], 2);
    CHECK_EQ_INT(h.counts[1], 1);
    CHECK_EQ_INT(h.counts[gw_hist_request.n - 1], 1);
    CHECK_EQ_INT(h.counts[gw_hist_request.n], 1);
    CHECK_EQ_INT(h.count, 5);
    CHECK_EQ_INT(h.sum_us, 250 + 251 + 9999999 + 10000001);
}

TEST(render_has_cumulative_buckets_namespaces_and_process)
{
    gw_config_t cfg;
    gw_buf_t b;
    gw_config_defaults(&cfg);
    gw_buf_init(&b, 0);
    memset(gw_metrics.connect_time.counts, 0, sizeof(gw_metrics.connect_time.counts));
    gw_metrics.connect_time.count = gw_metrics.connect_time.sum_us = 0;
    gw_hist_observe(&gw_metrics.connect_time, 700);
    gw_hist_observe(&gw_metrics.connect_time, 3000);
    gw_metrics.ns[0].deliveries = 7;
    gw_metrics_render(&b, &cfg);
    gw_buf_append(&b, "", 1);
    const char *t = (const char *)gw_buf_data(&b);
    CHECK(strstr(t, "# TYPE cardgw_connect_duration_seconds histogram\n"));
    CHECK(strstr(t, "cardgw_connect_duration_seconds_bucket{le=\"0.0005\"} 0\n"));
    CHECK(strstr(t, "cardgw_connect_duration_seconds_bucket{le=\"0.001\"} 1\n"));
    CHECK(strstr(t, "cardgw_connect_duration_seconds_bucket{le=\"0.005\"} 2\n"));
    CHECK(strstr(t, "cardgw_connect_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
    CHECK(strstr(t, "cardgw_connect_duration_seconds_sum 0.0037\n"));
    CHECK(strstr(t, "cardgw_connect_duration_seconds_count 2\n"));
    char want[128];
    snprintf(want, sizeof(want), "cardgw_namespace_deliveries_total{namespace=\"%s\"} 7\n",
             cfg.namespaces[0].name);
    CHECK(strstr(t, want));
    CHECK(strstr(t, "\nprocess_resident_memory_bytes "));
    CHECK(strstr(t, "\nprocess_open_fds "));
    CHECK(strstr(t, "\ncardgw_build_info{version=\"" GW_VERSION "\",commit=\""));
    /* no API series before a request */
    CHECK(strstr(t, "cardgw_api_request_duration_seconds_bucket") == NULL);
    gw_buf_free(&b);
    gw_config_free(&cfg);
}

int main(void)
{
    RUN(text_line_has_fields_after_the_message);
    RUN(json_line_is_one_object_with_fields_and_escapes);
    RUN(rate_limited_lines_say_how_many_were_dropped);
    RUN(histogram_buckets_are_inclusive_upper_bounds);
    RUN(render_has_cumulative_buckets_namespaces_and_process);
    return TL_DONE();
}
