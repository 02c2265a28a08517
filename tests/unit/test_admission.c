/* test_admission.c — connection admission: per-IP open caps and rate windows, per-user caps and
 * rpc rate, the sweep that forgets idle addresses, and the uid grammar (no NUL in a uid). */
#include "cardgw/admission.h"
#include "cardgw/auth.h"
#include "testlib.h"

#include <errno.h>
#include <stdio.h>

#define IP(a, b, c, d) ((uint32_t)((a) | (b) << 8 | (c) << 16 | (uint32_t)(d) << 24))

TEST(ip_open_cap_counts_and_releases)
{
    gw_admission_t *a = gw_admission_new(3, 0, 0);
    gw_refuse_reason_t why = GW_REFUSE__COUNT;
    uint32_t x = IP(10, 0, 0, 1), y = IP(10, 0, 0, 2);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(gw_admission_ip_acquire(a, x, 1000, &why), 0);
    CHECK_EQ_INT(gw_admission_ip_acquire(a, x, 1000, &why), -EMFILE);
    CHECK_EQ_INT(why, GW_REFUSE_IP_OPEN);
    CHECK_EQ_INT(gw_admission_ip_open(a, x), 3);
    /* another address is not affected */
    CHECK_EQ_INT(gw_admission_ip_acquire(a, y, 1000, &why), 0);
    gw_admission_ip_release(a, x);
    CHECK_EQ_INT(gw_admission_ip_acquire(a, x, 1000, &why), 0);
    CHECK_EQ_INT(gw_admission_ip_open(a, x), 3);
    gw_admission_free(a); /* with counts still open: frees everything (LSan checks) */
}

TEST(ip_rate_window_per_second)
{
    gw_admission_t *a = gw_admission_new(0, 2, 0);
    gw_refuse_reason_t why;
    uint32_t x = IP(10, 0, 0, 1);
    CHECK_EQ_INT(gw_admission_ip_acquire(a, x, 5000, &why), 0);
    CHECK_EQ_INT(gw_admission_ip_acquire(a, x, 5100, &why), 0);
    CHECK_EQ_INT(gw_admission_ip_acquire(a, x, 5999, &why), -EAGAIN);
    CHECK_EQ_INT(why, GW_REFUSE_IP_RATE);
    CHECK_EQ_INT(gw_admission_ip_open(a, x), 2);                /* a refusal counts nothing */
    CHECK_EQ_INT(gw_admission_ip_acquire(a, x, 6000, &why), 0); /* next second */
    gw_admission_free(a);
}

TEST(sweep_forgets_only_idle_addresses)
{
    gw_admission_t *a = gw_admission_new(0, 1, 0);
    gw_refuse_reason_t why;
    uint32_t x = IP(10, 0, 0, 1), y = IP(10, 0, 0, 2);
    CHECK_EQ_INT(gw_admission_ip_acquire(a, x, 1000, &why), 0);
    CHECK_EQ_INT(gw_admission_ip_acquire(a, y, 1000, &why), 0);
    gw_admission_ip_release(a, y);
    gw_admission_sweep(a, 1500); /* same second: y's rate window still counts */
    CHECK_EQ_INT(gw_admission_ip_acquire(a, y, 1500, &why), -EAGAIN);
    gw_admission_sweep(a, 2000);
    CHECK_EQ_INT(gw_admission_ip_open(a, x), 1); /* x has an open socket: kept */
    CHECK_EQ_INT(gw_admission_ip_open(a, y), 0);
    gw_admission_ip_release(a, x);
    gw_admission_ip_release(a, x); /* a double release never underflows */
    CHECK_EQ_INT(gw_admission_ip_open(a, x), 0);
    gw_admission_free(a);
}

TEST(user_cap)
{
    gw_admission_t *a = gw_admission_new(0, 0, 2);
    const char *u1 = gw_admission_user_acquire(a, "alice");
    const char *u2 = gw_admission_user_acquire(a, "alice");
    CHECK(u1 == u2); /* one shared copy per user */
    CHECK_STR(u1 ? u1 : "", "alice");
    CHECK(gw_admission_user_acquire(a, "alice") == NULL);
    CHECK(gw_admission_user_acquire(a, "alice2") != NULL);
    gw_admission_user_release(a, "alice");
    CHECK(gw_admission_user_acquire(a, "alice") == u1);
    gw_admission_user_release(a, "alice");
    gw_admission_user_release(a, u1); /* releasing through the shared copy is fine */
    gw_admission_user_release(a, "alice2");
    gw_admission_user_release(a, "nobody"); /* unknown: ignored */
    gw_admission_free(a);

    a = gw_admission_new(0, 0, 0); /* 0 = no cap */
    for (int i = 0; i < 1000; i++)
        CHECK(gw_admission_user_acquire(a, "bob") != NULL);
    gw_admission_free(a);
}

TEST(tables_grow_and_keep_every_entry)
{
    gw_admission_t *a = gw_admission_new(0, 0, 0);
    gw_refuse_reason_t why;
    char uid[32];
    for (uint32_t i = 0; i < 20000; i++) { /* several doublings of both tables */
        CHECK_EQ_INT(gw_admission_ip_acquire(a, i * 7919u, 1000, &why), 0);
        snprintf(uid, sizeof(uid), "u%u", i);
        CHECK(gw_admission_user_acquire(a, uid) != NULL);
    }
    for (uint32_t i = 0; i < 20000; i += 997) {
        CHECK_EQ_INT(gw_admission_ip_open(a, i * 7919u), 1);
        snprintf(uid, sizeof(uid), "u%u", i);
        gw_admission_user_release(a, uid);
    }
    for (uint32_t i = 0; i < 20000; i++)
        gw_admission_ip_release(a, i * 7919u);
    gw_admission_sweep(a, 5000);
    CHECK_EQ_INT(gw_admission_ip_open(a, 7919u), 0);
    gw_admission_free(a);
}

TEST(user_rpc_rate_is_shared_and_refills)
{
    gw_admission_t *a = gw_admission_new(0, 0, 0);
    const char *u = gw_admission_user_acquire(a, "u1");
    gw_admission_user_acquire(a, "u1"); /* a second connection shares the bucket */
    gw_admission_user_acquire(a, "u2");
    for (int i = 0; i < 10; i++) /* burst: twice the rate */
        CHECK_EQ_INT(gw_admission_user_rpc_take(a, i % 2 ? "u1" : u, 1000, 5), 0);
    CHECK_EQ_INT(gw_admission_user_rpc_take(a, "u1", 1000, 5), -EAGAIN);
    CHECK_EQ_INT(gw_admission_user_rpc_take(a, "u2", 1000, 5), 0); /* its own bucket */
    CHECK_EQ_INT(gw_admission_user_rpc_take(a, "u1", 1199, 5), -EAGAIN);
    CHECK_EQ_INT(gw_admission_user_rpc_take(a, "u1", 1200, 5), 0); /* 5/s: one per 200 ms */
    CHECK_EQ_INT(gw_admission_user_rpc_take(a, "u1", 1200, 5), -EAGAIN);
    CHECK_EQ_INT(gw_admission_user_rpc_take(a, "u1", 1200, 0), 0);     /* 0: no limit */
    CHECK_EQ_INT(gw_admission_user_rpc_take(a, "nobody", 1200, 5), 0); /* not connected */
    CHECK_EQ_INT(gw_admission_user_rpc_take(a, "u1", 60000, 5), 0);    /* refilled to the burst */
    for (int i = 0; i < 9; i++)
        CHECK_EQ_INT(gw_admission_user_rpc_take(a, "u1", 60000, 5), 0);
    CHECK_EQ_INT(gw_admission_user_rpc_take(a, "u1", 60000, 5), -EAGAIN);
    gw_admission_free(a);
}

static int collect(void *priv, const char *uid, uint32_t count)
{
    char *out = priv;
    char one[64];
    snprintf(one, sizeof(one), "%s=%u;", uid, count);
    strcat(out, one);
    return 0;
}

TEST(users_online_are_counted_in_the_user_entries)
{
    gw_admission_t *a = gw_admission_new(0, 0, 0);
    uint32_t n = 99;
    char seen[256] = "";
    const char *u = gw_admission_user_acquire(a, "ann");
    gw_admission_user_acquire(a, "ann");
    gw_admission_user_acquire(a, "bob");
    CHECK_EQ_INT(gw_admission_user_online(a, "zed", 1, &n), -ENOENT); /* holds no acquire */
    CHECK_EQ_INT(gw_admission_user_online(a, "ann", 0, &n), -ENOENT); /* never up */
    CHECK_EQ_INT(gw_admission_user_online(a, u, 1, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(gw_admission_user_online(a, "ann", 1, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(gw_admission_users_online(a), 1); /* bob acquired, not up */
    CHECK_EQ_INT(gw_admission_foreach_online(a, collect, seen), 0);
    CHECK_STR(seen, "ann=2;");
    CHECK_EQ_INT(gw_admission_user_online(a, "ann", 0, &n), 0);
    CHECK_EQ_INT(gw_admission_user_online(a, "ann", 0, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(gw_admission_users_online(a), 0);
    /* closed, not yet released (pending operations): still acquired, no longer online */
    CHECK_EQ_INT(gw_admission_user_online(a, "bob", 1, &n), 0);
    gw_admission_user_release(a, "bob"); /* released while up: the count stays true */
    CHECK_EQ_INT(gw_admission_users_online(a), 0);
    gw_admission_user_release(a, "ann");
    gw_admission_user_release(a, "ann");
    gw_admission_free(a);
}

TEST(uid_with_nul_is_refused)
{
    /* a session hash whose uid is "alice\0mallory" must not authenticate as "alice" */
    CHECK(!gw_auth_uid_valid("alice\0mallory", 13));
    CHECK(!gw_auth_uid_valid("\0", 1));
    CHECK(!gw_auth_uid_valid("alice\0", 6));
    CHECK(gw_auth_uid_valid("alice", 5));
    CHECK(gw_auth_uid_valid("a.b@c=d+e,f;g-h_i", 17));
    CHECK(!gw_auth_uid_valid("alice bob", 9));
    CHECK(!gw_auth_uid_valid("", 0));
}

int main(void)
{
    RUN(ip_open_cap_counts_and_releases);
    RUN(ip_rate_window_per_second);
    RUN(sweep_forgets_only_idle_addresses);
    RUN(user_cap);
    RUN(tables_grow_and_keep_every_entry);
    RUN(user_rpc_rate_is_shared_and_refills);
    RUN(users_online_are_counted_in_the_user_entries);
    RUN(uid_with_nul_is_refused);
    return TL_DONE();
}
