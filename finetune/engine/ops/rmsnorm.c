/* finetune/engine/ops/rmsnorm.c - RMSNorm forward and backward: the plain-C
 * references (fp32) and the dispatch to their CUDA twins (cuda/rmsnorm.cu). */
#include "ops.h"
#include "ops_cuda.h"

#include "backend/kernel.h"

#include <math.h>

void op_rmsnorm_fwd(backend *be, void *out, float *rstd, const void *x, const void *w, int N, int C, float eps)
{
    DS_DISPATCH_CUDA(be, rmsnorm_fwd_cuda(be, out, rstd, x, w, N, C, eps));
    float *o = out;
    const float *xx = x, *ww = w;
#pragma omp parallel for schedule(static) if ((long)N * C > DS_OMP_MIN_WORK)
    for (int n = 0; n < N; n++) {
        const float *xr = xx + (size_t)n * C;
        float ss = 0;
        for (int c = 0; c < C; c++) ss += xr[c] * xr[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        rstd[n] = r;
        for (int c = 0; c < C; c++) o[(size_t)n * C + c] = xr[c] * r * ww[c];
    }
    be_round_act(be, out, (size_t)N * C);
}

/* out_c = w_c x_c r with r = (mean(x^2) + eps)^(-1/2), so
 * dx_c = r w_c dout_c - (r^3 / C) x_c sum_i(dout_i w_i x_i). */
void op_rmsnorm_bwd(backend *be, void *dx, const void *dout, const void *x, const void *w, const float *rstd,
                    int N, int C)
{
    DS_DISPATCH_CUDA(be, rmsnorm_bwd_cuda(be, dx, dout, x, w, rstd, N, C));
    float *d = dx;
    const float *dy = dout, *xx = x, *ww = w;
#pragma omp parallel for schedule(static) if ((long)N * C > DS_OMP_MIN_WORK)
    for (int n = 0; n < N; n++) {
        const float *xr = xx + (size_t)n * C, *gr = dy + (size_t)n * C;
        float r = rstd[n], dot = 0;
        for (int c = 0; c < C; c++) dot += gr[c] * ww[c] * xr[c];
        float k = r * r * r * dot / (float)C;
        for (int c = 0; c < C; c++) d[(size_t)n * C + c] += r * ww[c] * gr[c] - k * xr[c];
    }
    be_round_act(be, dx, (size_t)N * C);
}
