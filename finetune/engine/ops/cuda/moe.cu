/* finetune/engine/ops/cuda/moe.cu - CUDA twins of the mixture of experts' token
 * movement (moe.c): the gather of each expert's rows, the weighted scatter of
 * their outputs back to the tokens, and both backwards.
 *
 * Memory-bound row copies. The scatter and the gather's backward are token
 * major: a block owns one token and sums its K choices' rows in k order, so no
 * two blocks write one row (no atomics) and the result does not depend on
 * scheduling. The scatter's backward is row major: a block owns one grouped
 * row, writes its dye and reduces its weight's gradient. fp32 math, bf16
 * storage, each value rounded once, as the reference.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_moe_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

typedef __nv_bfloat16 bf16;

#define MOE_THREADS 256

/* xe (R, C) = x[row_token[r]]: one block per row, 16-byte copies when the rows allow them. */
__global__ void moe_gather_kernel(bf16 *xe, const bf16 *x, const int32_t *row_token, int C, bool vec)
{
    const size_t r = blockIdx.x, src = (size_t)row_token[r];
    if (vec) {
        const uint4 *s = (const uint4 *)(x + src * C);
        uint4 *d = (uint4 *)(xe + r * C);
        for (int i = threadIdx.x; i < C / 8; i += blockDim.x) d[i] = s[i];
    } else {
        for (int c = threadIdx.x; c < C; c += blockDim.x) xe[r * C + c] = x[src * C + c];
    }
}

/* y[n] += sum over k of w[n, k] * ye[tok_row[n, k]]: one block per token. */
__global__ void moe_scatter_kernel(bf16 *y, const bf16 *ye, const float *w, const int32_t *tok_row, int K, int C)
{
    const size_t n = blockIdx.x;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = __bfloat162float(y[n * C + c]);
        for (int k = 0; k < K; k++) {
            const int r = tok_row[n * K + k];
            if (r >= 0) acc += w[n * K + k] * __bfloat162float(ye[(size_t)r * C + c]);
        }
        y[n * C + c] = __float2bfloat16_rn(acc);
    }
}

/* dye[r] = w * dy[token], dw[token, k] = dy[token] · ye[r]: one block per grouped row. */
__global__ void moe_scatter_bwd_kernel(bf16 *dye, float *dw, const bf16 *dy, const bf16 *ye, const float *w,
                                       const int32_t *row_token, const int32_t *row_k, int K, int C)
{
    __shared__ float part[MOE_THREADS / 32];
    const size_t r = blockIdx.x, wk = (size_t)row_token[r] * K + row_k[r];
    const bf16 *g = dy + (size_t)row_token[r] * C;
    const float wr = w[wk];
    float dot = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float gc = __bfloat162float(g[c]);
        dye[r * C + c] = __float2bfloat16_rn(wr * gc);
        dot += gc * __bfloat162float(ye[r * C + c]);
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = dot;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0;
        for (int i = 0; i < MOE_THREADS / 32; i++) s += part[i];
        dw[wk] = s;
    }
}

/* dx[n] += sum over k of dxe[tok_row[n, k]]: one block per token. */
__global__ void moe_gather_bwd_kernel(bf16 *dx, const bf16 *dxe, const int32_t *tok_row, int K, int C)
{
    const size_t n = blockIdx.x;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = __bfloat162float(dx[n * C + c]);
        for (int k = 0; k < K; k++) {
            const int r = tok_row[n * K + k];
            if (r >= 0) acc += __bfloat162float(dxe[(size_t)r * C + c]);
        }
        dx[n * C + c] = __float2bfloat16_rn(acc);
    }
}

extern "C" void moe_gather_cuda(backend *be, void *xe, const void *x, const int32_t *row_token, int R, int C)
{
    if (R <= 0) return;
    const bool vec = C % 8 == 0 && (uintptr_t)xe % 16 == 0 && (uintptr_t)x % 16 == 0;
    moe_gather_kernel<<<R, MOE_THREADS, 0, cuda_stream(be)>>>((bf16 *)xe, (const bf16 *)x, row_token, C, vec);
    cuda_check_launch(be, "moe_gather");
}

extern "C" void moe_scatter_cuda(backend *be, void *y, const void *ye, const float *w, const int32_t *tok_row, int N,
                                 int K, int C)
{
    if (N <= 0) return;
    moe_scatter_kernel<<<N, MOE_THREADS, 0, cuda_stream(be)>>>((bf16 *)y, (const bf16 *)ye, w, tok_row, K, C);
    cuda_check_launch(be, "moe_scatter");
}

extern "C" void moe_scatter_bwd_cuda(backend *be, void *dye, float *dw, const void *dy, const void *ye, const float *w,
                                     const int32_t *row_token, const int32_t *row_k, int R, int K, int C)
{
    if (R <= 0) return;
    moe_scatter_bwd_kernel<<<R, MOE_THREADS, 0, cuda_stream(be)>>>((bf16 *)dye, dw, (const bf16 *)dy,
                                                                     (const bf16 *)ye, w, row_token, row_k, K, C);
    cuda_check_launch(be, "moe_scatter_bwd");
}

extern "C" void moe_gather_bwd_cuda(backend *be, void *dx, const void *dxe, const int32_t *tok_row, int N, int K, int C)
{
    if (N <= 0) return;
    moe_gather_bwd_kernel<<<N, MOE_THREADS, 0, cuda_stream(be)>>>((bf16 *)dx, (const bf16 *)dxe, tok_row, K, C);
    cuda_check_launch(be, "moe_gather_bwd");
}
