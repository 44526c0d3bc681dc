/* finetune/engine/ops/cuda/rmsnorm.cu - CUDA twins of op_rmsnorm_fwd / op_rmsnorm_bwd
 * (rmsnorm.c holds the references).
 *
 * One warp per row, 8 rows per 256-thread block; a few rows (a decode step's)
 * take a whole block each instead, so that a row's loads are not one warp's
 * chain of dependent steps. A row is read twice (once
 * for its statistic, once to write); the second pass hits L1/L2. When C is a
 * multiple of 8 and the pointers are 16-byte aligned, each lane moves 8 values
 * per 16-byte access; otherwise one value per access. fp32 math in the
 * reference's order of operations.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_cuda.h"
#include "rows.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

typedef __nv_bfloat16 bf16;

/* From backend/backend_cuda.cu. */

#define ROWS_PER_BLOCK 8
#define SMALL_ROWS 64   /* up to this many rows (of at least 1024 values), a block a row */

/* out (N, C) = x * rstd * w, rstd (N) = 1 / sqrt(mean(x^2) + eps); x (N, C), w (C). */
template <bool VEC>
__global__ void rmsnorm_fwd_kernel(bf16 *out, float *rstd, const bf16 *x, const bf16 *w, int N, int C, float eps)
{
    pdl_release();   /* a decode step's matrix-vector product may start fetching its weights */
    pdl_wait();   /* launched as a programmatic dependent (launch_pdl): the kernel before has finished */
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const bf16 *xr = x + (size_t)row * C;
    bf16 *orow = out + (size_t)row * C;
    float ss = 0;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 256) {
            float v[8];
            unpack8(v, *(const uint4 *)(xr + c));
#pragma unroll
            for (int k = 0; k < 8; k++) ss += v[k] * v[k];
        }
    } else {
        for (int c = lane; c < C; c += 32) {
            float v = __bfloat162float(xr[c]);
            ss += v * v;
        }
    }
    ss = warp_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (lane == 0) rstd[row] = r;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 256) {
            float v[8], ww[8];
            unpack8(v, *(const uint4 *)(xr + c));
            unpack8(ww, *(const uint4 *)(w + c));
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = v[k] * r * ww[k];
            *(uint4 *)(orow + c) = pack8(v);
        }
    } else {
        for (int c = lane; c < C; c += 32)
            orow[c] = __float2bfloat16_rn(__bfloat162float(xr[c]) * r * __bfloat162float(w[c]));
    }
}

/* The forward of one row per 256-thread block (C % 8 == 0, 16-byte aligned):
 * each thread's sum of squares, then the block's through the warps'. */
__global__ void rmsnorm_fwd_row_kernel(bf16 *out, float *rstd, const bf16 *x, const bf16 *w, int C, float eps)
{
    pdl_release();
    pdl_wait();   /* launched as a programmatic dependent (launch_pdl): the kernel before has finished */
    __shared__ float part[ROW_THREADS / 32];
    const int row = blockIdx.x;
    block_rmsnorm_row(out + (size_t)row * C, rstd + row, x + (size_t)row * C, w, C, eps, part);
}

/* dx (N, C) += r w dout - (r^3 / C) x sum(dout w x); dout, x (N, C), w (C), rstd (N). */
template <bool VEC>
__global__ void rmsnorm_bwd_kernel(bf16 *dx, const bf16 *dout, const bf16 *x, const bf16 *w, const float *rstd, int N,
                                   int C)
{
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const bf16 *xr = x + (size_t)row * C, *gr = dout + (size_t)row * C;
    bf16 *dr = dx + (size_t)row * C;
    float dot = 0;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 256) {
            float g[8], ww[8], v[8];
            unpack8(g, *(const uint4 *)(gr + c));
            unpack8(ww, *(const uint4 *)(w + c));
            unpack8(v, *(const uint4 *)(xr + c));
#pragma unroll
            for (int k = 0; k < 8; k++) dot += g[k] * ww[k] * v[k];
        }
    } else {
        for (int c = lane; c < C; c += 32)
            dot += __bfloat162float(gr[c]) * __bfloat162float(w[c]) * __bfloat162float(xr[c]);
    }
    dot = warp_sum(dot);
    float r = rstd[row];
    float kc = r * r * r * dot / (float)C;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 256) {
            float g[8], ww[8], v[8], d[8];
            unpack8(g, *(const uint4 *)(gr + c));
            unpack8(ww, *(const uint4 *)(w + c));
            unpack8(v, *(const uint4 *)(xr + c));
            unpack8(d, *(const uint4 *)(dr + c));
#pragma unroll
            for (int k = 0; k < 8; k++) d[k] += r * ww[k] * g[k] - kc * v[k];
            *(uint4 *)(dr + c) = pack8(d);
        }
    } else {
        for (int c = lane; c < C; c += 32) {
            float d = __bfloat162float(dr[c]);
            d += r * __bfloat162float(w[c]) * __bfloat162float(gr[c]) - kc * __bfloat162float(xr[c]);
            dr[c] = __float2bfloat16_rn(d);
        }
    }
}

static bool aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

extern "C" void rmsnorm_fwd_cuda(backend *be, void *out, float *rstd, const void *x, const void *w, int N, int C,
                                 float eps)
{
    if (N <= 0 || C <= 0) return;
    unsigned blocks = (unsigned)((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    bool vec = C % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w);
    if (vec && N <= SMALL_ROWS && C >= 1024)
        launch_pdl(be, rmsnorm_fwd_row_kernel, dim3(N), dim3(ROW_THREADS), 0, (bf16 *)out, rstd, (const bf16 *)x,
                   (const bf16 *)w, C, eps);
    else
        launch_pdl(be, vec ? rmsnorm_fwd_kernel<true> : rmsnorm_fwd_kernel<false>, dim3(blocks),
                   dim3(32 * ROWS_PER_BLOCK), 0, (bf16 *)out, rstd, (const bf16 *)x, (const bf16 *)w, N, C, eps);
    cuda_check_launch(be, "rmsnorm_fwd");
}

extern "C" void rmsnorm_bwd_cuda(backend *be, void *dx, const void *dout, const void *x, const void *w,
                                 const float *rstd, int N, int C)
{
    if (N <= 0 || C <= 0) return;
    unsigned blocks = (unsigned)((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    bool vec = C % 8 == 0 && aligned16(dx) && aligned16(dout) && aligned16(x) && aligned16(w);
    if (vec)
        rmsnorm_bwd_kernel<true><<<blocks, 32 * ROWS_PER_BLOCK, 0, cuda_stream(be)>>>(
            (bf16 *)dx, (const bf16 *)dout, (const bf16 *)x, (const bf16 *)w, rstd, N, C);
    else
        rmsnorm_bwd_kernel<false><<<blocks, 32 * ROWS_PER_BLOCK, 0, cuda_stream(be)>>>(
            (bf16 *)dx, (const bf16 *)dout, (const bf16 *)x, (const bf16 *)w, rstd, N, C);
    cuda_check_launch(be, "rmsnorm_bwd");
}
