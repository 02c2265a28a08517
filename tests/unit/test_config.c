/* test_config.c — configuration: defaults, the file format, errors naming file/line/key,
 * environment overrides, namespaces and redis URLs. */
#include "cardgw/config.h"
#include "testlib.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/cardgw-test-%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

TEST(defaults_are_sane)
{
    gw_config_t c;
    char err[256];
    gw_config_defaults(&c);
    CHECK_EQ_INT(c.port, 8080);
    CHECK_STR(c.listen_address, "127.0.0.1"); /* loopback only until told otherwise */
    CHECK_EQ_INT(c.jwt_leeway_s, 30);
    CHECK_STR(c.jwt_secret, ""); /* JWTs off until a secret of >= 32 bytes is given */
    CHECK_STR(c.ws_path, "/ws");
    CHECK_EQ_INT(c.max_frame_bytes, 65536);
    CHECK(gw_config_validate(&c, err, sizeof(err)) == 0);
    const gw_namespace_t *g = gw_config_namespace(&c, "group", 5);
    CHECK(g && g->subscribe == GW_NS_SUB_MEMBERS && g->presence == 1);
    const gw_namespace_t *u = gw_config_namespace(&c, "user", 4);
    CHECK(u && u->subscribe == GW_NS_SUB_OWNER && u->publish == 0);
    CHECK(gw_config_namespace(&c, "nope", 4) == NULL);
    gw_config_free(&c);
}

TEST(auto_keys)
{
    gw_config_t c;
    char err[256];
    gw_config_defaults(&c);
    CHECK_EQ_INT(c.max_connections, -1); /* auto by default */
    CHECK_EQ_INT(c.max_connections_per_ip, -1);
    CHECK_EQ_INT(gw_config_set(&c, "max_connections_per_ip", "0", "t", err, sizeof(err)), 0);
    CHECK_EQ_INT(c.max_connections_per_ip, 0);
    CHECK_EQ_INT(gw_config_set(&c, "max_connections", "auto", "t", err, sizeof(err)), 0);
    CHECK_EQ_INT(c.max_connections, -1);
    CHECK_EQ_INT(gw_config_set(&c, "max_connections", "-1", "t", err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "auto or an integer in 0..") != NULL);
    /* "auto" only where the key has one */
    CHECK_EQ_INT(gw_config_set(&c, "max_connections_per_user", "auto", "t", err, sizeof(err)),
                 -EINVAL);
    CHECK_EQ_INT(gw_config_set(&c, "http_timeout_ms", "auto", "t", err, sizeof(err)), -EINVAL);
    gw_config_free(&c);
}

TEST(file_sets_keys_and_namespaces)
{
    gw_config_t c;
    char err[256];
    gw_config_defaults(&c);
    char *p = write_tmp("# comment\n\nport = 9001\nws_path = \"/socket\"\n"
                        "log_level = debug\nnamespace.chat.publish = true\n"
                        "namespace.chat.history_size = 5\n");
    CHECK_EQ_INT(gw_config_load_file(&c, p, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.port, 9001);
    CHECK_STR(c.ws_path, "/socket");
    CHECK_EQ_INT(c.log_level, GW_LOG_DEBUG);
    const gw_namespace_t *ns = gw_config_namespace(&c, "chat", 4);
    CHECK(ns && ns->publish == 1 && ns->history_size == 5 && ns->subscribe == GW_NS_SUB_OWNER);
    /* a namespace must say who may subscribe: no silent "public" */
    CHECK(gw_config_validate(&c, err, sizeof(err)) != 0);
    CHECK(strstr(err, "'namespace.chat.subscribe'") != NULL);
    CHECK_EQ_INT(gw_config_set(&c, "namespace.chat.subscribe", "public", "t", err, sizeof(err)), 0);
    CHECK_EQ_INT(gw_config_validate(&c, err, sizeof(err)), 0);
    CHECK(ns->subscribe == GW_NS_SUB_PUBLIC);
    unlink(p);
    gw_config_free(&c);
}

TEST(errors_name_the_line_and_key)
{
    gw_config_t c;
    char err[256];
    gw_config_defaults(&c);
    char *p = write_tmp("port = 9001\nprot = 9002\n");
    CHECK(gw_config_load_file(&c, p, err, sizeof(err)) != 0);
    CHECK(strstr(err, ":2:") != NULL);
    CHECK(strstr(err, "'prot'") != NULL);
    p = write_tmp("port = 70000\n");
    CHECK(gw_config_load_file(&c, p, err, sizeof(err)) != 0);
    CHECK(strstr(err, "port") != NULL);
    p = write_tmp("just words\n");
    CHECK(gw_config_load_file(&c, p, err, sizeof(err)) != 0);
    p = write_tmp("namespace.x.subscribe = everyone\n");
    CHECK(gw_config_load_file(&c, p, err, sizeof(err)) != 0);
    CHECK(strstr(err, "namespace.x.subscribe") != NULL);
    CHECK(gw_config_load_file(&c, "/nonexistent/cardgw.conf", err, sizeof(err)) == -ENOENT);
    unlink(p);
    gw_config_free(&c);
}

TEST(environment_overrides)
{
    gw_config_t c;
    char err[256];
    gw_config_defaults(&c);
    setenv("CARDGW_PORT", "7777", 1);
    setenv("CARDGW_REDIS_URL", "redis://10.0.0.1:7000/3", 1);
    CHECK_EQ_INT(gw_config_load_env(&c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.port, 7777);
    CHECK_STR(c.redis_url, "redis://10.0.0.1:7000/3");
    setenv("CARDGW_PORT", "x", 1);
    CHECK(gw_config_load_env(&c, err, sizeof(err)) != 0);
    CHECK(strstr(err, "CARDGW_PORT") != NULL);
    unsetenv("CARDGW_PORT");
    unsetenv("CARDGW_REDIS_URL");
    gw_config_free(&c);
}

TEST(redis_urls)
{
    gw_redis_addr_t a;
    CHECK_EQ_INT(gw_config_parse_redis_url("redis://127.0.0.1:6380/2", &a), 0);
    CHECK_STR(a.host, "127.0.0.1");
    CHECK_EQ_INT(a.port, 6380);
    CHECK_EQ_INT(a.db, 2);
    CHECK_EQ_INT(gw_config_parse_redis_url("redis://:s3cret@localhost", &a), 0);
    CHECK_STR(a.password, "s3cret");
    CHECK_STR(a.host, "localhost");
    CHECK_EQ_INT(a.port, 6379);
    CHECK(gw_config_parse_redis_url("http://x:1", &a) != 0);
    CHECK(gw_config_parse_redis_url("redis://:1", &a) != 0);
    CHECK(gw_config_parse_redis_url("redis://h:0", &a) != 0);
    CHECK(gw_config_parse_redis_url("redis://h:1/x", &a) != 0);
    CHECK_EQ_INT(a.nsentinels, 0);
}

TEST(redis_sentinel_urls)
{
    gw_redis_addr_t a;
    CHECK_EQ_INT(
        gw_config_parse_redis_url("redis-sentinel://:pw@10.0.0.1:26380,10.0.0.2/mymaster/3", &a),
        0);
    CHECK_EQ_INT(a.nsentinels, 2);
    CHECK_STR(a.sentinels[0].host, "10.0.0.1");
    CHECK_EQ_INT(a.sentinels[0].port, 26380);
    CHECK_STR(a.sentinels[1].host, "10.0.0.2");
    CHECK_EQ_INT(a.sentinels[1].port, 26379);
    CHECK_STR(a.master, "mymaster");
    CHECK_STR(a.password, "pw");
    CHECK_EQ_INT(a.db, 3);
    CHECK_STR(a.host, ""); /* asked of the sentinels */
    CHECK_EQ_INT(gw_config_parse_redis_url("redis-sentinel://s1:5000/m", &a), 0);
    CHECK_EQ_INT(a.db, 0);
    CHECK(gw_config_parse_redis_url("redis-sentinel://s1:5000", &a) != 0);  /* no master */
    CHECK(gw_config_parse_redis_url("redis-sentinel://s1:5000/", &a) != 0); /* empty name */
    CHECK(gw_config_parse_redis_url("redis-sentinel://s1,,s2/m", &a) != 0); /* empty host */
    CHECK(gw_config_parse_redis_url("redis-sentinel://s1:0/m", &a) != 0);   /* bad port */
    CHECK(gw_config_parse_redis_url("redis-sentinel://s1/m/x", &a) != 0);   /* bad db */
    CHECK(gw_config_parse_redis_url("redis-sentinel://a,b,c,d,e,f,g,h,i/m", &a) != 0);
    CHECK(gw_config_parse_redis_url("redis-sentinel://s1,s2,/m", &a) != 0); /* trailing comma */
    CHECK_EQ_INT(gw_config_parse_redis_url("redis-sentinel://:p@ss@s1/m", &a), 0);
    CHECK_STR(a.password, "p@ss");
    CHECK_STR(a.sentinels[0].host, "s1");
}

/* A value that does not parse is reported with file:line and key, never echoed (it may be a
 * secret pasted into the wrong key, or a line without '=' holding one). */
TEST(errors_do_not_echo_values)
{
    gw_config_t c;
    char err[256];
    gw_config_defaults(&c);
    char *p = write_tmp("port = 8080\nSuperSecretValue123\n");
    CHECK(gw_config_load_file(&c, p, err, sizeof(err)) != 0);
    CHECK(strstr(err, ":2:") != NULL);
    CHECK(strstr(err, "SuperSecretValue123") == NULL);
    p = write_tmp("port = SuperSecretValue123\n");
    CHECK(gw_config_load_file(&c, p, err, sizeof(err)) != 0);
    CHECK(strstr(err, ":1:") && strstr(err, "'port'") && !strstr(err, "SuperSecretValue123"));
    p = write_tmp("log_level = SuperSecretValue123\n");
    CHECK(gw_config_load_file(&c, p, err, sizeof(err)) != 0);
    CHECK(strstr(err, "'log_level'") && !strstr(err, "SuperSecretValue123"));
    p = write_tmp("namespace.x.publish = SuperSecretValue123\n");
    CHECK(gw_config_load_file(&c, p, err, sizeof(err)) != 0);
    CHECK(strstr(err, "'namespace.x.publish'") && !strstr(err, "SuperSecretValue123"));
    p = write_tmp("jwt_secret SuperSecretValue123 = x\n");
    CHECK(gw_config_load_file(&c, p, err, sizeof(err)) != 0);
    CHECK(strstr(err, ":1:") && !strstr(err, "SuperSecretValue123"));
    unlink(p);
    gw_config_free(&c);
}

static char *write_secret(const char *name, const char *text)
{
    static char path[2][64];
    char *s = path[name[0] == 'r'];
    snprintf(s, sizeof(path[0]), "/tmp/cardgw-test-%d-%s", (int)getpid(), name);
    FILE *f = fopen(s, "w");
    fputs(text, f);
    fclose(f);
    return s;
}

TEST(secret_files_and_minimum_length)
{
    gw_config_t c;
    char err[256];
    const char *s32 = "0123456789abcdef0123456789abcdef";
    gw_config_defaults(&c);
    /* jwt_secret: at least 32 bytes; empty (JWTs off) is fine */
    CHECK_EQ_INT(gw_config_set(&c, "jwt_secret", "short-secret", "t", err, sizeof(err)), 0);
    CHECK(gw_config_validate(&c, err, sizeof(err)) != 0);
    CHECK(strstr(err, "'jwt_secret'") && strstr(err, "32") && !strstr(err, "short-secret"));
    CHECK_EQ_INT(gw_config_set(&c, "jwt_secret", s32, "t", err, sizeof(err)), 0);
    CHECK_EQ_INT(gw_config_validate(&c, err, sizeof(err)), 0);
    /* api_key: at least 16 bytes (as the keys in api_keys_file); empty (API off) is fine */
    CHECK_EQ_INT(gw_config_set(&c, "api_key", "short-api-key", "t", err, sizeof(err)), 0);
    CHECK(gw_config_validate(&c, err, sizeof(err)) != 0);
    CHECK(strstr(err, "'api_key'") && strstr(err, "16") && !strstr(err, "short-api-key"));
    CHECK_EQ_INT(gw_config_set(&c, "api_key", "0123456789abcdef", "t", err, sizeof(err)), 0);
    CHECK_EQ_INT(gw_config_validate(&c, err, sizeof(err)), 0);
    /* both the secret and its file: refused */
    char *jf = write_secret("jwt", "fedcba9876543210fedcba9876543210xyz\n");
    CHECK_EQ_INT(gw_config_set(&c, "jwt_secret_file", jf, "t", err, sizeof(err)), 0);
    CHECK(gw_config_load_secrets(&c, err, sizeof(err)) != 0);
    CHECK(strstr(err, "jwt_secret_file") != NULL);
    /* a file longer than a secret can be (a PEM bundle named by mistake): refused, read within
     * bounds (ASan checks the one byte past the buffer that was written before) */
    char big[5001];
    memset(big, 'a', 5000);
    big[5000] = '\0';
    char *bf = write_secret("rbig", big); /* path[1]: jf (path[0]) is read again below */
    gw_config_t c2;
    gw_config_defaults(&c2);
    CHECK_EQ_INT(gw_config_set(&c2, "jwt_secret_file", bf, "t", err, sizeof(err)), 0);
    CHECK(gw_config_load_secrets(&c2, err, sizeof(err)) != 0);
    CHECK(strstr(err, "one line") != NULL);
    /* a longest secret, then "\r\n" and another line: the line after is seen, refused */
    memset(big, 'a', GW_SECRET_MAX);
    memcpy(big + GW_SECRET_MAX, "\r\nmore", 7);
    big[GW_SECRET_MAX + 7] = '\0';
    bf = write_secret("rbig", big);
    CHECK(gw_config_load_secrets(&c2, err, sizeof(err)) != 0);
    gw_config_free(&c2);
    unlink(bf);
    /* the inbox must hold a few of the largest calls */
    gw_config_t c3;
    gw_config_defaults(&c3);
    CHECK_EQ_INT(gw_config_set(&c3, "max_frame_bytes", "1048576", "t", err, sizeof(err)), 0);
    CHECK_EQ_INT(gw_config_set(&c3, "inbox_max_bytes", "1048576", "t", err, sizeof(err)), 0);
    CHECK(gw_config_validate(&c3, err, sizeof(err)) != 0 && strstr(err, "inbox_max_bytes"));
    gw_config_free(&c3);
    /* the file alone: its one line, the newline dropped */
    CHECK_EQ_INT(gw_config_set(&c, "jwt_secret", "", "t", err, sizeof(err)), 0);
    char *rf = write_secret("redis", "p@ss word\r\n");
    CHECK_EQ_INT(gw_config_set(&c, "redis_password_file", rf, "t", err, sizeof(err)), 0);
    CHECK_EQ_INT(gw_config_load_secrets(&c, err, sizeof(err)), 0);
    CHECK_STR(c.jwt_secret, "fedcba9876543210fedcba9876543210xyz");
    CHECK_STR(c.redis_password, "p@ss word");
    CHECK_EQ_INT(gw_config_validate(&c, err, sizeof(err)), 0);
    /* a URL with its own password as well: ambiguous, refused */
    CHECK_EQ_INT(gw_config_set(&c, "redis_url", "redis://u:pw@h:1", "t", err, sizeof(err)), 0);
    CHECK(gw_config_validate(&c, err, sizeof(err)) != 0);
    CHECK(strstr(err, "redis_password") && !strstr(err, "pw@"));
    CHECK_EQ_INT(gw_config_set(&c, "redis_url", "redis://u:@h:1", "t", err, sizeof(err)), 0);
    CHECK_EQ_INT(gw_config_validate(&c, err, sizeof(err)), 0);
    gw_config_free(&c);
    /* a short secret from the file is refused like one in the config */
    gw_config_defaults(&c);
    jf = write_secret("jwt", "too-short\n");
    CHECK_EQ_INT(gw_config_set(&c, "jwt_secret_file", jf, "t", err, sizeof(err)), 0);
    CHECK_EQ_INT(gw_config_load_secrets(&c, err, sizeof(err)), 0);
    CHECK(gw_config_validate(&c, err, sizeof(err)) != 0);
    CHECK(!strstr(err, "too-short"));
    /* unreadable, empty, two lines, a directory */
    CHECK_EQ_INT(gw_config_set(&c, "jwt_secret", "", "t", err, sizeof(err)), 0);
    CHECK_EQ_INT(gw_config_set(&c, "jwt_secret_file", "/nonexistent/s", "t", err, sizeof(err)), 0);
    CHECK(gw_config_load_secrets(&c, err, sizeof(err)) != 0);
    CHECK(strstr(err, "jwt_secret_file") && strstr(err, "/nonexistent/s"));
    jf = write_secret("jwt", "\n");
    CHECK_EQ_INT(gw_config_set(&c, "jwt_secret_file", jf, "t", err, sizeof(err)), 0);
    CHECK(gw_config_load_secrets(&c, err, sizeof(err)) != 0);
    jf = write_secret("jwt", "0123456789abcdef0123456789abcdef\nsecond\n");
    CHECK(gw_config_load_secrets(&c, err, sizeof(err)) != 0);
    CHECK(!strstr(err, "second"));
    unlink(jf);
    CHECK_EQ_INT(gw_config_set(&c, "jwt_secret_file", "/tmp", "t", err, sizeof(err)), 0);
    CHECK(gw_config_load_secrets(&c, err, sizeof(err)) != 0);
    unlink(rf);
    gw_config_free(&c);
}

TEST(redis_acl_user_urls)
{
    gw_redis_addr_t a;
    CHECK_EQ_INT(gw_config_parse_redis_url("redis://cardgw:s3:cr@t@10.0.0.1:6380/1", &a), 0);
    CHECK_STR(a.user, "cardgw");
    CHECK_STR(a.password, "s3:cr@t");
    CHECK_STR(a.host, "10.0.0.1");
    CHECK_EQ_INT(gw_config_parse_redis_url("redis://:pw@h", &a), 0);
    CHECK_STR(a.user, "");
    CHECK_STR(a.password, "pw");
    CHECK_EQ_INT(gw_config_parse_redis_url("redis://pw@h", &a), 0); /* no colon: a password */
    CHECK_STR(a.user, "");
    CHECK_STR(a.password, "pw");
    CHECK_EQ_INT(gw_config_parse_redis_url("redis-sentinel://app:pw@s1,s2/mymaster", &a), 0);
    CHECK_STR(a.user, "app");
    CHECK_STR(a.password, "pw");
}

int main(void)
{
    RUN(defaults_are_sane);
    RUN(auto_keys);
    RUN(redis_sentinel_urls);
    RUN(file_sets_keys_and_namespaces);
    RUN(errors_name_the_line_and_key);
    RUN(environment_overrides);
    RUN(redis_urls);
    RUN(errors_do_not_echo_values);
    RUN(secret_files_and_minimum_length);
    RUN(redis_acl_user_urls);
    return TL_DONE();
}
