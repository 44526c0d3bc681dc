/* data/clean/clean_lsh.c - near duplicates among the fingerprints of all
 * records, by banded LSH, one table at a time.
 *
 * SimHash: two 64-bit fingerprints within d differing bits, cut into
 * B = d + m blocks, agree on at least m whole blocks (each differing bit
 * spoils at most one block). So one table per choice of m blocks, keyed by
 * those blocks' bits, puts every such pair into a common bucket of some
 * table: no pair within the threshold is missed, and each candidate is then
 * checked by its exact distance. m trades the number of tables against the
 * size of their buckets; it is chosen from the record count.
 *
 * MinHash: the classic bands of `rows` values; the pair is checked by the
 * share of equal values in the whole signature.
 *
 * A table is a list of (key, record) sorted by key with a stable radix sort
 * (records stay in order within a bucket), built, used and dropped before
 * the next one: memory is 16 bytes per record whatever the number of
 * tables. In each bucket a record looks for the earliest earlier record
 * within the threshold; dup_of keeps the earliest found over all tables.
 */
#include "clean_internal.h"

#include "core/mem.h"
#include "core/rng.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX

/* (key << 32 | record) pairs, sorted by key, stable: LSD radix sort on the
 * key's 32 bits, 11 bits a pass, skipping passes where every key agrees.
 * The three digits' counts come from one sweep (the keys are the same in
 * every pass), and the passes go back and forth between a and tmp: the
 * result is in the buffer returned. */
static uint64_t *sort_by_key(uint64_t *a, uint64_t *tmp, size_t n)
{
    size_t count[3][2048];   /* 48 KiB on the stack */
    memset(count, 0, sizeof count);
    for (size_t i = 0; i < n; i++) {
        uint32_t key = (uint32_t)(a[i] >> 32);
        count[0][key & 2047]++;
        count[1][(key >> 11) & 2047]++;
        count[2][key >> 22]++;
    }
    for (int d = 0; d < 3 && n > 0; d++) {
        int shift = 32 + 11 * d;
        size_t *c = count[d];
        if (c[(a[0] >> shift) & 2047] == n) continue;
        size_t sum = 0;
        for (int b = 0; b < 2048; b++) {
            size_t x = c[b];
            c[b] = sum;
            sum += x;
        }
        for (size_t i = 0; i < n; i++) tmp[c[(a[i] >> shift) & 2047]++] = a[i];
        uint64_t *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

/* The near-duplicate test of two records, and its data. */
typedef struct {
    const uint64_t *fp;
    int max_distance;
    const uint16_t *sig;
    int nhash, need;           /* MinHash: equal values needed */
} near_test;

/* Set bits of x (SWAR: a few instructions where the build has no popcnt). */
static inline int bit_count(uint64_t x)
{
    x -= (x >> 1) & 0x5555555555555555ULL;
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    return (int)((x * 0x0101010101010101ULL) >> 56);
}

static bool is_near(const near_test *t, uint32_t a, uint32_t b)
{
    if (t->fp) return bit_count(t->fp[a] ^ t->fp[b]) <= t->max_distance;
    const uint16_t *x = t->sig + (size_t)a * t->nhash, *y = t->sig + (size_t)b * t->nhash;
    int eq = 0;
    for (int j = 0; j < t->nhash; j++) eq += x[j] == y[j];
    return eq >= t->need;
}

/* One table: in each run of equal keys, each record against the records
 * before it in the run, up to the earliest duplicate already known. */
static void scan_table(uint64_t *pairs, size_t n, const near_test *t, uint32_t *dup_of)
{
    for (size_t s = 0; s < n;) {
        size_t e = s + 1;
        while (e < n && pairs[e] >> 32 == pairs[s] >> 32) e++;
        for (size_t p = s + 1; p < e; p++) {
            uint32_t i = (uint32_t)pairs[p];
            for (size_t q = s; q < p; q++) {
                uint32_t j = (uint32_t)pairs[q];
                if (j >= dup_of[i]) break;               /* records are in order within a run */
                if (is_near(t, i, j)) {
                    dup_of[i] = j;
                    break;
                }
            }
        }
        s = e;
    }
}

/* No duplicates known yet, and the (key, record) list of a table with its sort buffer. */
static int start_tables(size_t n, uint32_t *dup_of, uint64_t **pairs, uint64_t **tmp)
{
    *pairs = *tmp = NULL;
    for (size_t i = 0; i < n; i++) dup_of[i] = NONE;
    if (n > NONE) return ds_fail(DS_EDATA, "%zu records: more than the duplicate tables can number", n);
    *pairs = ds_calloc(n, sizeof **pairs, "the duplicate tables");
    *tmp = ds_calloc(n, sizeof **tmp, "the duplicate tables");
    if (*pairs && *tmp) return DS_OK;
    free(*pairs);
    free(*tmp);
    return DS_ENOMEM;
}

static double choose(int n, int k)
{
    double c = 1;
    for (int i = 1; i <= k; i++) c = c * (n - k + i) / i;
    return c;
}

void clean_simhash_tables(int max_distance, size_t n, int *blocks, int *per_table)
{
    /* cost of m: tables * (sort passes + expected bucket neighbours), at most 256 tables */
    double best = INFINITY;
    *blocks = max_distance + 1;
    *per_table = 1;
    for (int m = 1; max_distance + m <= 64; m++) {
        int b = max_distance + m;
        double tables = choose(b, m);
        if (tables > 256 && m > 1) break;
        double bits = 64.0 * m / b, passes = ceil(fmin(bits, 32) / 11);
        double cost = tables * (passes + (double)n / pow(2, fmin(bits, 32)));
        if (cost < best) best = cost, *blocks = b, *per_table = m;
    }
}

/* Bits [lo, hi) of x, as the low bits. */
static uint64_t bits_of(uint64_t x, int lo, int hi) { return (x >> lo) & (hi - lo >= 64 ? ~0ULL : (1ULL << (hi - lo)) - 1); }

int clean_near_simhash(const uint64_t *fp, const bool *alive, size_t n, int max_distance, uint32_t *dup_of)
{
    uint64_t *pairs, *tmp;
    int rc = start_tables(n, dup_of, &pairs, &tmp);
    if (rc) return rc;
    int B, m;
    clean_simhash_tables(max_distance, n, &B, &m);
    near_test t = {fp, max_distance, NULL, 0, 0};
    int pick[64], lo[64], width[64];
    for (int k = 0; k < m; k++) pick[k] = k;
    for (;;) {                                           /* every choice of m blocks of B, in order */
        for (int k = 0; k < m; k++) {                    /* the chosen blocks' bit ranges */
            lo[k] = pick[k] * 64 / B;
            width[k] = (pick[k] + 1) * 64 / B - lo[k];
        }
        size_t np = 0;
        for (size_t i = 0; i < n; i++) {
            if (alive && !alive[i]) continue;
            /* the chosen blocks' bits, folded into a 32-bit key (a fold can only add candidates) */
            uint64_t key = 0;
            for (int k = 0; k < m; k++)   /* (a 64-bit block, B = 1, is the whole key: no shift by 64) */
                key = (width[k] < 64 ? key << width[k] : 0) ^ bits_of(fp[i], lo[k], lo[k] + width[k]);
            key = (uint32_t)(key ^ key >> 32);
            pairs[np++] = key << 32 | i;
        }
        scan_table(sort_by_key(pairs, tmp, np), np, &t, dup_of);
        int k = m - 1;                                   /* next combination */
        while (k >= 0 && pick[k] == B - m + k) k--;
        if (k < 0) break;
        pick[k]++;
        for (int j = k + 1; j < m; j++) pick[j] = pick[j - 1] + 1;
    }
    free(pairs);
    free(tmp);
    return DS_OK;
}

void clean_minhash_bands(int nhash, double similarity, int *bands, int *rows)
{
    /* the (b, r), b * r <= nhash, that minimises the chance of missing a pair
     * above the threshold plus a tenth of the chance of a candidate below it
     * (the areas under 1 - (1 - s^r)^b on either side): every candidate is
     * checked, so a false candidate costs time while a missed pair costs a
     * duplicate left in */
    double best = INFINITY;
    *bands = nhash;
    *rows = 1;
    for (int b = 1; b <= nhash; b++)
        for (int r = 1; b * r <= nhash; r++) {
            double fp = 0, fn = 0, step = 0.005;
            for (double s = step / 2; s < 1; s += step) {
                double p = 1 - pow(1 - pow(s, r), b);
                if (s < similarity) fp += p * step;
                else fn += (1 - p) * step;
            }
            double cost = 0.1 * fp + fn;
            if (cost < best - 1e-12) best = cost, *bands = b, *rows = r;
        }
}

int clean_near_minhash(const uint16_t *sig, int nhash, const bool *alive, size_t n, double similarity,
                       uint32_t *dup_of)
{
    uint64_t *pairs, *tmp;
    int rc = start_tables(n, dup_of, &pairs, &tmp);
    if (rc) return rc;
    int bands, rows;
    clean_minhash_bands(nhash, similarity, &bands, &rows);
    near_test t = {NULL, 0, sig, nhash, (int)ceil(similarity * nhash - 1e-9)};
    for (int b = 0; b < bands; b++) {
        size_t np = 0;
        for (size_t i = 0; i < n; i++) {
            if (alive && !alive[i]) continue;
            const uint16_t *s = sig + i * (size_t)nhash + (size_t)b * rows;
            uint64_t key = (uint64_t)b;
            for (int r = 0; r < rows; r++) key = ds_mix64(key ^ s[r]);
            pairs[np++] = (key >> 32) << 32 | i;
        }
        scan_table(sort_by_key(pairs, tmp, np), np, &t, dup_of);
    }
    free(pairs);
    free(tmp);
    return DS_OK;
}
