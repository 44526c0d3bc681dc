#include "batch.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

int batch_alloc(batch *b, int B, int T)
{
    memset(b, 0, sizeof *b);
    size_t n = (size_t)B * T;
    b->B = B;
    b->T = T;
    b->ids = ds_calloc(n, sizeof(int32_t), "a batch");
    b->pos = ds_calloc(n, sizeof(int32_t), "a batch");
    b->seg = ds_calloc(n, sizeof(int32_t), "a batch");
    b->targets = ds_calloc(n, sizeof(int32_t), "a batch");
    if (!b->ids || !b->pos || !b->seg || !b->targets) {
        batch_free(b);
        return ds_fail_context(DS_ENOMEM, "a %d x %d batch: ", B, T);
    }
    for (size_t i = 0; i < n; i++) b->targets[i] = -1;
    return DS_OK;
}

void batch_free(batch *b)
{
    free(b->ids);
    free(b->pos);
    free(b->seg);
    free(b->targets);
    memset(b, 0, sizeof *b);
}

long batch_count_targets(const batch *b)
{
    long c = 0;
    for (long i = 0; i < (long)b->B * b->T; i++) c += b->targets[i] >= 0;
    return c;
}

double batch_row_sum(const int32_t *targets, int T, const float *v, int row)
{
    double s = 0;
    for (int t = 0; t < T; t++)
        if (targets[(size_t)row * T + t] >= 0) s += v[(size_t)row * T + t];
    return s;
}

int batch_put(batch *b, int row, int col, const int32_t *ids, const uint8_t *train, int n, int32_t seg)
{
    int32_t *r_ids = b->ids + (size_t)row * b->T, *r_pos = b->pos + (size_t)row * b->T;
    int32_t *r_seg = b->seg + (size_t)row * b->T, *r_tgt = b->targets + (size_t)row * b->T;
    for (int i = 0; i < n && col + i < b->T; i++) {
        r_ids[col + i] = ids[i];
        r_pos[col + i] = i;
        r_seg[col + i] = seg;
        /* the token at i+1 is predicted at position i */
        r_tgt[col + i] = (i + 1 < n && train && train[i + 1]) ? ids[i + 1] : -1;
    }
    return col + n;
}

void batch_pad_row(batch *b, int row, int col, int32_t pad_id)
{
    for (int c = col; c < b->T; c++) {
        size_t k = (size_t)row * b->T + c;
        b->ids[k] = pad_id;
        b->pos[k] = c - col;
        b->seg[k] = -1 - row;   /* padding: a segment no real token shares */
        b->targets[k] = -1;
    }
}
