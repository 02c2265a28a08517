/* test_apikeys.c — the server API's key set: the keys file grammar and what makes it invalid,
 * scope lookup (a key is found only whole), api_key alongside, rotation through a file. */
#include "cardgw/apikeys.h"
#include "testlib.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define K1 "0123456789abcdef"
#define K2 "fedcba9876543210-two"

static unsigned scopes_of(const gw_apikeys_t *ks, const char *key, const char **name)
{
    unsigned s = 0;
    const char *n = NULL;
    if (gw_apikeys_lookup(ks, key, strlen(key), &s, &n) != 0)
        return 0;
    if (name)
        *name = n;
    return s;
}

static int parse(gw_apikeys_t *ks, const char *text, char *err)
{
    return gw_apikeys_parse(ks, text, strlen(text), err, 200);
}

TEST(grammar_and_scopes)
{
    char err[200];
    const char *name = NULL;
    gw_apikeys_t *ks = gw_apikeys_new("legacy", "", err, sizeof(err));
    CHECK(ks && gw_apikeys_enabled(ks));
    CHECK_EQ_INT(parse(ks,
                       "# comment\n\n  \t\nbackend " K1 " publish,read\r\n"
                       "\tops  " K2 "\tdisconnect \n"
                       "all 0123456789ABCDEF *",
                       err),
                 0);
    CHECK_EQ_INT(gw_apikeys_count(ks), 4);
    CHECK_EQ_INT(scopes_of(ks, K1, &name), GW_SCOPE_PUBLISH | GW_SCOPE_READ);
    CHECK_STR(name, "backend");
    CHECK_EQ_INT(scopes_of(ks, K2, &name), GW_SCOPE_DISCONNECT);
    CHECK_STR(name, "ops");
    CHECK_EQ_INT(scopes_of(ks, "0123456789ABCDEF", NULL), GW_SCOPE_ALL);
    CHECK_EQ_INT(scopes_of(ks, "legacy", &name), GW_SCOPE_ALL);
    CHECK_STR(name, "api_key");
    /* only a whole key matches: prefixes, extensions, other case */
    CHECK_EQ_INT(scopes_of(ks, K1 "x", NULL), 0);
    CHECK_EQ_INT(scopes_of(ks, "0123456789abcde", NULL), 0);
    CHECK_EQ_INT(scopes_of(ks, "", NULL), 0);
    CHECK_EQ_INT(scopes_of(ks, "LEGACY", NULL), 0);
    char names[64];
    CHECK_STR(gw_apikeys_scope_names(GW_SCOPE_PUBLISH | GW_SCOPE_METRICS, names, sizeof(names)),
              "publish,metrics");
    CHECK_STR(gw_apikeys_scope_names(GW_SCOPE_ALL, names, sizeof(names)), "*");
    /* a file of comments only is valid: every named key revoked (README) */
    CHECK_EQ_INT(parse(ks, "# all revoked\n", err), 0);
    CHECK_EQ_INT(gw_apikeys_count(ks), 1);
    CHECK_EQ_INT(scopes_of(ks, K1, NULL), 0);
    CHECK_EQ_INT(scopes_of(ks, "legacy", NULL), GW_SCOPE_ALL);
    gw_apikeys_free(ks);
}

TEST(invalid_files_change_nothing)
{
    char err[200];
    static const char *const bad[] = {
        "a short publish\n",                 /* key under 16 bytes */
        "a " K1 "\n",                        /* no scope */
        "a " K1 " read extra\n",             /* a fourth field */
        "a " K1 " write\n",                  /* unknown scope */
        "a " K1 " read,\n",                  /* trailing comma */
        "a " K1 " read,,publish\n",          /* empty scope */
        "a/b " K1 " read\n",                 /* bad name */
        "a " K1 " read\na " K2 " read\n",    /* name twice */
        "a " K1 " read\nb " K1 " publish\n", /* key twice */
        "a legacy-key-0123456789 read\n",    /* the same key as api_key */
        "a 0123456789abcdef\x01 read\n",     /* control byte in the key */
    };
    gw_apikeys_t *ks = gw_apikeys_new("legacy-key-0123456789", "", err, sizeof(err));
    CHECK_EQ_INT(parse(ks, "keep " K1 " read\n", err), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK_EQ_INT(parse(ks, bad[i], err), -EINVAL);
        CHECK(strncmp(err, "line ", 5) == 0);
        CHECK_EQ_INT(scopes_of(ks, K1, NULL), GW_SCOPE_READ); /* the old keys stay */
    }
    char nul[] = "a " K1 " read\n";
    nul[3] = '\0';
    CHECK_EQ_INT(gw_apikeys_parse(ks, nul, sizeof(nul) - 1, err, sizeof(err)), -EINVAL);
    gw_apikeys_free(ks);
}

TEST(file_rotation)
{
    char path[] = "/tmp/cardgw-apikeys-XXXXXX", err[300];
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "one " K1 " publish\n", strlen("one " K1 " publish\n")) > 0);
    close(fd);
    gw_apikeys_t *ks = gw_apikeys_new("", path, err, sizeof(err));
    CHECK(ks != NULL && gw_apikeys_enabled(ks));
    CHECK_EQ_INT(gw_apikeys_check(ks, err, sizeof(err)), 0); /* unchanged */
    FILE *f = fopen(path, "w");
    fprintf(f, "two " K2 " read\n");
    fclose(f);
    CHECK_EQ_INT(gw_apikeys_check(ks, err, sizeof(err)), 1);
    CHECK_EQ_INT(scopes_of(ks, K1, NULL), 0);
    CHECK_EQ_INT(scopes_of(ks, K2, NULL), GW_SCOPE_READ);
    f = fopen(path, "w");
    fprintf(f, "three tooshort read\n");
    fclose(f);
    CHECK(gw_apikeys_check(ks, err, sizeof(err)) < 0);       /* reported once */
    CHECK_EQ_INT(gw_apikeys_check(ks, err, sizeof(err)), 0); /* not again */
    CHECK_EQ_INT(scopes_of(ks, K2, NULL), GW_SCOPE_READ);    /* kept */
    unlink(path);
    CHECK(gw_apikeys_check(ks, err, sizeof(err)) < 0);
    CHECK_EQ_INT(gw_apikeys_check(ks, err, sizeof(err)), 0);
    CHECK_EQ_INT(scopes_of(ks, K2, NULL), GW_SCOPE_READ);
    gw_apikeys_free(ks);
    /* a missing or invalid file at start: no key set */
    CHECK(gw_apikeys_new("", path, err, sizeof(err)) == NULL && strstr(err, path));
}

int main(void)
{
    RUN(grammar_and_scopes);
    RUN(invalid_files_change_nothing);
    RUN(file_rotation);
    return TL_DONE();
}
