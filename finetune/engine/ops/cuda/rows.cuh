/* finetune/engine/ops/cuda/rows.cuh - one row's RMSNorm by a block of 256
 * threads, SwiGLU's element, and the 8-value packing they use: shared by their
 * own kernels (rmsnorm.cu, swiglu.cu) and the decode step's matrix-vector
 * kernel that makes its input with them (nf4_gemv.cu), so that both give the
 * same bits (RMSNorm: as its block-per-row kernel, which takes rows of at
 * least 1,024 values; narrower rows go a warp a row there, summed in another
 * order). Private to this folder. */
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ void unpack8(float f[8], uint4 u)
{
    const __nv_bfloat16 *h = (const __nv_bfloat16 *)&u;
#pragma unroll
    for (int k = 0; k < 8; k++) f[k] = __bfloat162float(h[k]);
}

__device__ __forceinline__ uint4 pack8(const float f[8])
{
    uint4 u;
    __nv_bfloat16 *h = (__nv_bfloat16 *)&u;
#pragma unroll
    for (int k = 0; k < 8; k++) h[k] = __float2bfloat16_rn(f[k]);
    return u;
}

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

/* SwiGLU's element silu(g) * u, in the reference's order (swiglu.c). */
__device__ __forceinline__ float silu_mul(float g, float u) { return g * sigmoid_f(g) * u; }

enum { ROW_THREADS = 256 };

/* out (C) = x * rstd * w, *rstd = 1 / sqrt(mean(x^2) + eps) (when rstd is not
 * NULL) for one row, by the ROW_THREADS threads of a block; C % 8 == 0, every
 * pointer 16-byte aligned (out may be in shared memory). part: 8 floats of
 * shared memory. Ends with the block synchronised. */
__device__ __forceinline__ void block_rmsnorm_row(__nv_bfloat16 *out, float *rstd, const __nv_bfloat16 *x,
                                                  const __nv_bfloat16 *w, int C, float eps, float *part)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float ss = 0;
    for (int c = threadIdx.x * 8; c < C; c += ROW_THREADS * 8) {
        float v[8];
        unpack8(v, *(const uint4 *)(x + c));
#pragma unroll
        for (int k = 0; k < 8; k++) ss += v[k] * v[k];
    }
    ss = warp_sum(ss);
    if (lane == 0) part[warp] = ss;
    __syncthreads();
    ss = 0;
#pragma unroll
    for (int i = 0; i < ROW_THREADS / 32; i++) ss += part[i];
    const float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (threadIdx.x == 0 && rstd) *rstd = r;
    for (int c = threadIdx.x * 8; c < C; c += ROW_THREADS * 8) {
        float v[8], ww[8];
        unpack8(v, *(const uint4 *)(x + c));
        unpack8(ww, *(const uint4 *)(w + c));
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = v[k] * r * ww[k];
        *(uint4 *)(out + c) = pack8(v);
    }
    __syncthreads();
}
