/* testlib.h — a tiny unit-test harness: TEST(name) functions registered by RUN(), CHECK macros
 * that record failures without aborting, and a closing "N passed, N failed" line. */
#ifndef CARDGW_TESTLIB_H
#define CARDGW_TESTLIB_H

#include <stdio.h>
#include <string.h>

static int tl_passed, tl_failed, tl_cur_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
            tl_cur_failed = 1;                                                                     \
        }                                                                                          \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, \
                    a_, b_);                                                                       \
            tl_cur_failed = 1;                                                                     \
        }                                                                                          \
    } while (0)
#define CHECK_EQ_MEM(p, n, q, m)                                                                   \
    do {                                                                                           \
        if ((size_t)(n) != (size_t)(m) || memcmp((p), (q), (n)) != 0) {                            \
            fprintf(stderr, "  FAIL %s:%d: %s (%zu bytes) != %s (%zu bytes)\n", __FILE__,          \
                    __LINE__, #p, (size_t)(n), #q, (size_t)(m));                                   \
            tl_cur_failed = 1;                                                                     \
        }                                                                                          \
    } while (0)
#define CHECK_STR(s, lit) CHECK_EQ_MEM((s), strlen(s), (lit), strlen(lit))

#define TEST(name) static void name(void)
#define RUN(name)                                                                                  \
    do {                                                                                           \
        tl_cur_failed = 0;                                                                         \
        name();                                                                                    \
        if (tl_cur_failed) {                                                                       \
            tl_failed++;                                                                           \
            fprintf(stderr, "not ok  %s\n", #name);                                                \
        } else {                                                                                   \
            tl_passed++;                                                                           \
            fprintf(stderr, "ok      %s\n", #name);                                                \
        }                                                                                          \
    } while (0)
#define TL_DONE() (printf("unit: %d passed, %d failed\n", tl_passed, tl_failed), tl_failed ? 1 : 0)

#endif
