/* hist.h — fixed-memory log-linear latency histogram for the bench tools (64 sub-buckets per
 * power of two, ~1.6% resolution, values in microseconds up to 2^40), printable as JSON. */
#ifndef CARDGW_BENCH_HIST_H
#define CARDGW_BENCH_HIST_H

#include <stdint.h>
#include <stdio.h>

#define HIST_SUB     64
#define HIST_BUCKETS (2 * HIST_SUB + 40 * HIST_SUB)

typedef struct {
    uint64_t n, sum, max;
    uint32_t b[HIST_BUCKETS];
} hist_t;

/* Bucket of a value: exact below 128, then 64 linear steps per power of two. The drivers
 * (bench/run.py) invert it with the same formula. */
static inline unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 7 */
    unsigned shift = e - 6;
    unsigned idx = 2 * HIST_SUB + (shift - 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static inline void hist_add(hist_t *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->n++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

/* Prints {"n":..,"sum":..,"max":..,"h":[[idx,count],...]} (non-empty buckets only). */
static inline void hist_print(FILE *f, const hist_t *h)
{
    fprintf(f, "{\"n\":%llu,\"sum\":%llu,\"max\":%llu,\"h\":[", (unsigned long long)h->n,
            (unsigned long long)h->sum, (unsigned long long)h->max);
    int first = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!h->b[i])
            continue;
        fprintf(f, "%s[%u,%u]", first ? "" : ",", i, h->b[i]);
        first = 0;
    }
    fputs("]}", f);
}

#endif
