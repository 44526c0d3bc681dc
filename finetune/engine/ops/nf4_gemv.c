/* finetune/engine/ops/nf4_gemv.c - the fused NF4 matrix-vector product of
 * decoding: the plain-C reference (fp32) and the dispatch to its CUDA twin
 * (cuda/nf4_gemv.cu). */
#include "ops_decode.h"
#include "ops_decode_cuda.h"

#include "backend/kernel.h"
#include "core/mem.h"
#include "core/numeric.h"
#include "core/status.h"

#include <stdlib.h>

/* Weights [i0, i0 + n) of the flattened matrix, decoded as op_nf4_dequant
 * decodes them (code * absmax, rounded to the weight's 16-bit dtype). */
static void decode_run(const nf4_view *q, int64_t i0, int64_t n, float *w)
{
    for (int64_t i = i0; i < i0 + n;) {   /* a block at a time: one absmax each */
        const int64_t b = i / NF4_BLOCK, end = (b + 1) * NF4_BLOCK < i0 + n ? (b + 1) * NF4_BLOCK : i0 + n;
        const float absmax = q->double_quant
                                 ? q->nested_map[q->absmax_q[b]] * q->absmax2[b / NF4_NESTED_BLOCK] + q->offset
                                 : q->absmax[b];
        for (; i < end; i++) {
            const uint8_t byte = q->packed[i / 2];
            float v = q->code[i % 2 == 0 ? byte >> 4 : byte & 15] * absmax;
            if (q->dtype == NF4_OUT_BF16) v = ds_round_bf16(v);
            else if (q->dtype == NF4_OUT_F16) v = ds_f16_to_f32(ds_f32_to_f16(v));
            w[i - i0] = v;
        }
    }
}

/* Each output row of W is decoded once into a scratch row, then dotted with
 * every input row in ascending order, skipping zero inputs as cpu_gemm does:
 * the same fp32 operations as dequantization followed by be_matmul_nt. */
void op_nf4_gemv(backend *be, void *y, const void *x, const nf4_view *q, int N, float beta)
{
    DS_DISPATCH_CUDA(be, nf4_gemv_cuda(be, y, x, q, N, beta));
    const int64_t rows = q->rows, cols = q->cols;
    const float *X = x;
    float *Y = y;
    bool oom = false;
#pragma omp parallel if (rows * cols * N > DS_OMP_MIN_WORK)
    {
        float *w = ds_malloc(sizeof(float) * (size_t)cols, "a decoded NF4 row");   /* per thread */
        if (!w) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for schedule(static)
        for (int64_t o = 0; o < rows; o++) {
            if (!w) continue;
            decode_run(q, o * cols, cols, w);
            for (int n = 0; n < N; n++) {
                const float *xn = X + (size_t)n * cols;
                float acc = 0;
                for (int64_t k = 0; k < cols; k++)
                    if (xn[k] != 0) acc += xn[k] * w[k];
                float *yo = Y + (size_t)n * rows + o;
                *yo = 1.0f * acc + (beta != 0 ? beta * *yo : 0.0f);
            }
        }
        free(w);
    }
    if (oom) be_fail(be, DS_ENOMEM, "out of memory allocating a decoded NF4 row of %lld values", (long long)cols);
    be_round_act(be, y, (size_t)N * rows);
}

void op_nf4_gemv_multi(backend *be, void *const *y, const void *x, const nf4_view *const *q, int count, int N)
{
    if (count < 1 || count > NF4_GEMV_MAX_WEIGHTS) {
        be_fail(be, DS_EINTERNAL, "nf4_gemv_multi: %d weights, 1 to %d", count, NF4_GEMV_MAX_WEIGHTS);
        return;
    }
    for (int i = 1; i < count; i++)
        if (q[i]->cols != q[0]->cols) {
            be_fail(be, DS_EINTERNAL, "nf4_gemv_multi: weight %d has %lld columns, weight 0 %lld", i,
                    (long long)q[i]->cols, (long long)q[0]->cols);
            return;
        }
    DS_DISPATCH_CUDA(be, nf4_gemv_multi_cuda(be, y, x, q, count, N));
    for (int i = 0; i < count; i++) op_nf4_gemv(be, y[i], x, q[i], N, 0.0f);
}

void op_gemv_in_make(backend *be, void *h, const void *x, const gemv_in *in, int N, int cols)
{
    if (in->kind == GEMV_IN_RMSNORM) op_rmsnorm_fwd(be, h, in->rstd, x, in->w, N, cols, in->eps);
    else op_swiglu_fwd(be, h, x, in->up, (size_t)N * (size_t)cols);
}

void op_nf4_gemv_in(backend *be, void *const *y, void *h, const void *x, const gemv_in *in,
                    const nf4_view *const *q, int count, int N, float beta)
{
    if (count < 1 || count > NF4_GEMV_MAX_WEIGHTS || (count > 1 && beta != 0.0f)) {
        be_fail(be, DS_EINTERNAL, "nf4_gemv_in: %d weights with beta %g (1 to %d, beta 0 for several)", count,
                (double)beta, NF4_GEMV_MAX_WEIGHTS);
        return;
    }
    const int64_t K = q[0]->cols;
    for (int i = 1; i < count; i++)
        if (q[i]->cols != K) {
            be_fail(be, DS_EINTERNAL, "nf4_gemv_in: weight %d has %lld columns, weight 0 %lld", i,
                    (long long)q[i]->cols, (long long)K);
            return;
        }
    DS_DISPATCH_CUDA(be, nf4_gemv_in_cuda(be, y, h, x, in, q, count, N, beta));
    op_gemv_in_make(be, h, x, in, N, (int)K);
    if (count == 1) op_nf4_gemv(be, y[0], h, q[0], N, beta);
    else op_nf4_gemv_multi(be, y, h, q, count, N);
}
