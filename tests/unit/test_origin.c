/* test_origin.c — the allowed_origins grammar and matching: exact origins, *.domain patterns,
 * default ports, case, and Origin values that must match nothing (null, paths, user parts). */
#include "cardgw/origin.h"
#include "testlib.h"

#include <errno.h>
#include <string.h>

static int allowed(const char *list, const char *origin)
{
    return gw_origin_allowed(list, origin, strlen(origin));
}

TEST(exact_origins_match_by_scheme_host_and_port)
{
    const char *l = "https://app.example.com, http://localhost:8080";
    CHECK(allowed(l, "https://app.example.com"));
    CHECK(allowed(l, "HTTPS://App.Example.COM"));     /* scheme and host: any case */
    CHECK(allowed(l, "https://app.example.com:443")); /* the default port, written out */
    CHECK(allowed(l, "http://localhost:8080"));
    CHECK(!allowed(l, "http://app.example.com"));       /* scheme */
    CHECK(!allowed(l, "https://app.example.com:8443")); /* port */
    CHECK(!allowed(l, "http://localhost"));             /* port 80, not 8080 */
    CHECK(!allowed(l, "https://app.example.com.evil.net"));
    CHECK(!allowed(l, "https://evilapp.example.com"));
    CHECK(!allowed(l, "https://sub.app.example.com")); /* exact means exact */
}

TEST(patterns_match_subdomains_only)
{
    const char *l = "https://*.example.com wss://*.example.org:9443";
    CHECK(allowed(l, "https://a.example.com"));
    CHECK(allowed(l, "https://a.b.example.com"));
    CHECK(allowed(l, "https://A.EXAMPLE.COM"));
    CHECK(!allowed(l, "https://example.com"));      /* not the bare domain */
    CHECK(!allowed(l, "https://evil-example.com")); /* not a suffix trick */
    CHECK(!allowed(l, "https://evilexample.com"));
    CHECK(!allowed(l, "https://a.example.com.evil.net"));
    CHECK(!allowed(l, "http://a.example.com"));
    CHECK(!allowed(l, "https://a.example.com:8443"));
    CHECK(allowed(l, "wss://x.example.org:9443"));
    CHECK(!allowed(l, "wss://x.example.org"));
}

TEST(hostile_values_match_nothing)
{
    const char *l = "https://*.example.com https://app.example.com http://[::1]:8080";
    const char *bad[] = {"null",
                         "",
                         "https://",
                         "https://app.example.com/",
                         "https://app.example.com/path",
                         "https://user@app.example.com",
                         "https://app.example.com:",
                         "https://app.example.com:0",
                         "https://app.example.com:65536",
                         "https://app.example.com:0443x",
                         "https://*.example.com",
                         "https://.example.com",
                         "https://a..example.com",
                         "https://app.example.com, https://app.example.com",
                         "app.example.com",
                         "https:/app.example.com",
                         "https://app.example.com\r\n",
                         "https://a b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (allowed(l, bad[i]))
            fprintf(stderr, "  allowed: '%s'\n", bad[i]);
        CHECK(!allowed(l, bad[i]));
    }
    CHECK(!gw_origin_allowed(l, "https://app.example.com\0x", 25)); /* a NUL inside */
    CHECK(allowed(l, "http://[::1]:8080"));
    CHECK(!allowed(l, "http://[::1]"));
    CHECK(!allowed("", "https://app.example.com")); /* an empty list allows nothing here: the
                                                     * caller does not check at all then */
}

TEST(list_grammar)
{
    char err[256];
    CHECK_EQ_INT(gw_origin_check_list("", err, sizeof(err)), 0);
    CHECK_EQ_INT(gw_origin_check_list(" https://a.com ,, http://b.com:81 ", err, sizeof(err)), 0);
    CHECK_EQ_INT(gw_origin_check_list("https://*.a.com", err, sizeof(err)), 0);
    const char *bad[] = {"a.com",      "https://a.com/",  "*",    "https://*",
                         "https://*.", "https://a.*.com", "null", "https://a.com:99999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK_EQ_INT(gw_origin_check_list(bad[i], err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "allowed_origins") != NULL);
    }
}

TEST(printable_copy)
{
    char out[8];
    gw_origin_printable("ab\r\n\x01z", 6, out, sizeof(out));
    CHECK_STR(out, "ab???z");
    gw_origin_printable("0123456789", 10, out, sizeof(out));
    CHECK_STR(out, "0123456");
}

int main(void)
{
    RUN(exact_origins_match_by_scheme_host_and_port);
    RUN(patterns_match_subdomains_only);
    RUN(hostile_values_match_nothing);
    RUN(list_grammar);
    RUN(printable_copy);
    return TL_DONE();
}
