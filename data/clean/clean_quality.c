/* data/clean/clean_quality.c - the quality cut: of the records still kept,
 * the best fraction by the scorer's mean negative log-likelihood (lower is
 * better; ties go to the earlier record), rounded up so that a fraction
 * above 0 never keeps nothing of a non-empty set. */
#include "clean_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>

static const clean_rec *g_rec;   /* for qsort's comparison; the cut runs on one thread */

static int by_score(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    float x = g_rec[i].score, y = g_rec[j].score;
    if (x != y) return x < y ? -1 : 1;
    return i < j ? -1 : i > j;
}

int clean_quality_cut(clean_report *r, double fraction)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) n += r->rec[i].fate == RULE_kept;
    uint32_t *ids = ds_calloc(n + 1, sizeof *ids, "ranking the records");
    if (!ids) return DS_ENOMEM;
    n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->rec[i].fate == RULE_kept) ids[n++] = (uint32_t)i;
    g_rec = r->rec;
    qsort(ids, n, sizeof *ids, by_score);
    size_t keep = (size_t)ceil(fraction * (double)n - 1e-9);
    if (keep > n) keep = n;
    r->score_cut = keep ? r->rec[ids[keep - 1]].score : NAN;
    for (size_t k = keep; k < n; k++) clean_report_drop(r, ids[k], RULE_quality, NULL);
    free(ids);
    return DS_OK;
}
