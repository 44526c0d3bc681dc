/* data/dataset/epoch_plan.c - train/validation split, the order of an epoch, packing
 * and the micro-batches built from it.
 *
 * All randomness is counter-based (core/rng.h): the split draws from
 * DS_STREAM_SPLIT, an epoch's shuffle from DS_STREAM_SHUFFLE with the epoch
 * number mixed into the stream id, so any epoch's order is a pure function
 * of (seed, epoch) and a resumed run sees the same batches.
 */
#include "dataset_internal.h"

#include "core/mem.h"
#include "core/rng.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- split ---- */

/* A view holding the examples of d whose flag equals `want`, in d's order. */
static int make_view(const dataset *d, const unsigned char *flag, unsigned char want, int count, dataset *v)
{
    memset(v, 0, sizeof *v);
    v->kind = d->kind;
    size_t size;
    const unsigned char *all = ds_examples(d, &size);
    unsigned char *arr = ds_calloc((size_t)count, size, "a split of the dataset");
    if (!arr) return DS_ENOMEM;
    int k = 0;
    for (int i = 0; i < d->n; i++)
        if (flag[i] == want) memcpy(arr + (size_t)k++ * size, all + (size_t)i * size, size);
    v->n = k;
    ds_set_examples(v, arr);
    return DS_OK;
}

int dataset_split(const dataset *d, double val_size, uint64_t seed, dataset *train, dataset *val)
{
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    if (!(val_size >= 0) || isinf(val_size))
        return ds_fail(DS_ECONFIG, "val_set_size %g: expected a fraction in [0, 1) or a count", val_size);
    long nval = val_size < 1 ? lround(val_size * d->n) : (long)val_size;
    if (nval > d->n) nval = d->n;
    if (nval >= d->n && d->n > 0 && nval > 0)
        return ds_fail(DS_ECONFIG, "val_set_size %g leaves no training examples out of %d", val_size, d->n);
    unsigned char *flag = ds_calloc((size_t)d->n, 1, "splitting the dataset");
    int *perm = ds_calloc((size_t)d->n, sizeof *perm, "splitting the dataset");
    if (!flag || !perm) {
        free(flag);
        free(perm);
        return DS_ENOMEM;
    }
    /* the first nval of a seeded permutation (partial Fisher-Yates) go to validation */
    ds_rng r = ds_rng_make(seed, DS_STREAM_SPLIT);
    for (int i = 0; i < d->n; i++) perm[i] = i;
    for (long i = 0; i < nval; i++) {
        long j = i + (long)ds_rng_below(&r, (uint64_t)(d->n - i));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        flag[perm[i]] = 1;
    }
    int rc = make_view(d, flag, 0, d->n - (int)nval, train);
    if (!rc) rc = make_view(d, flag, 1, (int)nval, val);
    if (rc) {
        dataset_free(train);
        dataset_free(val);
    }
    free(flag);
    free(perm);
    return rc;
}

/* ---- plan ---- */

static int example_len(const dataset *d, int i)
{
    switch (d->kind) {
    case EX_SFT: return d->sft[i].n;
    case EX_PREF: {
        const pref_example *p = &d->pref[i];
        return p->n_prompt + (p->n_chosen > p->n_rejected ? p->n_chosen : p->n_rejected);
    }
    default: {
        const mcq_example *m = &d->mcq[i];
        int longest = 0;
        for (int k = 0; k < m->nchoices; k++)
            if (m->n_choice[k] > longest) longest = m->n_choice[k];
        return m->n_prompt + longest;
    }
    }
}

void epoch_plan_free(epoch_plan *p)
{
    if (!p) return;
    free(p->batch_start);
    free(p->row_start);
    free(p->items);
    memset(p, 0, sizeof *p);
}

int epoch_plan_make(const dataset *d, uint64_t seed, int epoch, bool shuffle, bool packing, int sequence_len,
                    int micro_batch, epoch_plan *out)
{
    memset(out, 0, sizeof *out);
    if (micro_batch < 1) return ds_fail(DS_ECONFIG, "micro_batch_size %d: must be at least 1", micro_batch);
    if (sequence_len < 1) return ds_fail(DS_ECONFIG, "sequence_len %d: must be at least 1", sequence_len);
    int n = d->n;
    int *order = ds_calloc((size_t)n, sizeof *order, "an epoch's order");
    out->items = ds_calloc((size_t)n, sizeof *out->items, "an epoch's plan");
    out->row_start = ds_calloc((size_t)n + 1, sizeof *out->row_start, "an epoch's plan");
    if (!order || !out->items || !out->row_start) {
        free(order);
        epoch_plan_free(out);
        return DS_ENOMEM;
    }
    for (int i = 0; i < n; i++) order[i] = i;
    if (shuffle) {                   /* Fisher-Yates from this epoch's own stream */
        ds_rng r = ds_rng_make(seed, ((uint64_t)DS_STREAM_SHUFFLE << 56) ^ (uint64_t)(uint32_t)epoch);
        for (int i = n - 1; i > 0; i--) {
            int j = (int)ds_rng_below(&r, (uint64_t)i + 1);
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
    /* rows: greedy in order; a row is closed when the next example does not fit */
    bool pack = packing && d->kind == EX_SFT;
    int nrows = 0, used = 0;
    for (int k = 0; k < n; k++) {
        int i = order[k], len = example_len(d, i);
        if (len > sequence_len) {
            free(order);
            epoch_plan_free(out);
            return ds_fail(DS_EINTERNAL, "example %d has %d tokens, more than sequence_len %d (loaded with another "
                           "sequence_len?)", i, len, sequence_len);
        }
        if (nrows == 0 || !pack || used + len > sequence_len) {
            out->row_start[nrows++] = k;
            used = 0;
        }
        out->items[k] = i;
        used += len;
    }
    out->row_start[nrows] = n;
    out->nrows = nrows;
    free(order);
    out->nbatches = (nrows + micro_batch - 1) / micro_batch;
    out->batch_start = ds_calloc((size_t)out->nbatches + 1, sizeof *out->batch_start, "an epoch's plan");
    if (!out->batch_start) {
        epoch_plan_free(out);
        return DS_ENOMEM;
    }
    for (int b = 0; b < out->nbatches; b++) out->batch_start[b] = b * micro_batch;
    out->batch_start[out->nbatches] = nrows;
    return DS_OK;
}

/* ---- batches ---- */

/* One row of prompt + completion (the completion trained) at batch row `row`. */
static void put_pair(batch *b, int row, const int32_t *p, int np, const int32_t *c, int nc, int32_t pad_id,
                     int32_t *ids, uint8_t *train)
{
    memcpy(ids, p, (size_t)np * sizeof *ids);
    memcpy(ids + np, c, (size_t)nc * sizeof *ids);
    memset(train, 0, (size_t)np);
    memset(train + np, 1, (size_t)nc);
    int col = batch_put(b, row, 0, ids, train, np + nc, 0);
    batch_pad_row(b, row, col, pad_id);
}

int epoch_plan_batch(const epoch_plan *p, int i, const dataset *d, int pad_id, batch *out)
{
    memset(out, 0, sizeof *out);
    if (i < 0 || i >= p->nbatches) return ds_fail(DS_EINTERNAL, "micro-batch %d out of range (0..%d)", i, p->nbatches - 1);
    int r0 = p->batch_start[i], r1 = p->batch_start[i + 1];
    /* rows of the batch and its width T: the longest row */
    int B = 0, T = 1;
    for (int r = r0; r < r1; r++) {
        int len = 0;
        for (int k = p->row_start[r]; k < p->row_start[r + 1]; k++) {
            int x = p->items[k];
            if (x < 0 || x >= d->n) return ds_fail(DS_EINTERNAL, "plan refers to example %d of %d", x, d->n);
            len += example_len(d, x);
        }
        if (len > T) T = len;
        B += d->kind == EX_SFT ? 1 : d->kind == EX_PREF ? 2 : d->mcq[p->items[p->row_start[r]]].nchoices;
    }
    int rc = batch_alloc(out, B, T);
    if (rc) return rc;
    if (d->kind == EX_SFT) {
        for (int r = r0; r < r1; r++) {
            int row = r - r0, col = 0;
            for (int k = p->row_start[r]; k < p->row_start[r + 1]; k++) {
                const sft_example *x = &d->sft[p->items[k]];
                col = batch_put(out, row, col, x->ids, x->train, x->n, k - p->row_start[r]);
            }
            batch_pad_row(out, row, col, pad_id);
        }
        return DS_OK;
    }
    int32_t *ids = ds_calloc((size_t)T, sizeof *ids, "a batch row");
    uint8_t *train = ds_malloc((size_t)T, "a batch row");
    if (!ids || !train) {
        free(train);
        free(ids);
        batch_free(out);
        return DS_ENOMEM;
    }
    int row = 0;
    for (int r = r0; r < r1; r++) {
        int x = p->items[p->row_start[r]];
        if (d->kind == EX_PREF) {
            const pref_example *e = &d->pref[x];
            put_pair(out, row++, e->prompt, e->n_prompt, e->chosen, e->n_chosen, pad_id, ids, train);
            put_pair(out, row++, e->prompt, e->n_prompt, e->rejected, e->n_rejected, pad_id, ids, train);
        } else {
            const mcq_example *e = &d->mcq[x];
            for (int c = 0; c < e->nchoices; c++)
                put_pair(out, row++, e->prompt, e->n_prompt, e->choice[c], e->n_choice[c], pad_id, ids, train);
        }
    }
    free(ids);
    free(train);
    return DS_OK;
}
