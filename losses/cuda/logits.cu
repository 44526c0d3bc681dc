/* losses/cuda/logits.cu - CUDA twins of op_logits_stats and op_logits_grad
 * (losses/logits.c holds the references).
 *
 * Stats: one block per row, one pass over the row. Every thread keeps an
 * online (max m, sum of exp(z - m), forbidden sum of exp(z - m)) over its slice
 * of the vocabulary; the block then merges the triples (warp shuffles, then
 * shared memory). fmass = forbidden sum / sum, i.e. the forbidden probability.
 * Grad: one thread per 4 values of a row, grid (n, ceil(V / 1024)).
 * Both read fp32 logits with 16-byte loads when V % 4 == 0 and z is aligned.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "losses/logits.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>

typedef __nv_bfloat16 bf16;

/* From backend/backend_cuda.cu. */

#define STATS_THREADS 512

/* Online softmax state over part of a row: max, sum exp(z - max), forbidden part of the sum. */
struct row_acc {
    float m, s, f;
};

__device__ __forceinline__ void acc_add(row_acc &a, float z, bool forb)
{
    if (z == -INFINITY) return;   /* exp(-inf) = 0, and -inf - -inf would be NaN */
    if (z > a.m) {
        const float c = expf(a.m - z);   /* 0 while a.m is still -inf */
        a.s = a.s * c + 1.0f;
        a.f = a.f * c + (forb ? 1.0f : 0.0f);
        a.m = z;
    } else {
        const float e = expf(z - a.m);
        a.s += e;
        if (forb) a.f += e;
    }
}

__device__ __forceinline__ row_acc acc_merge(row_acc a, row_acc b)
{
    if (b.m == -INFINITY) return a;
    if (a.m == -INFINITY) return b;
    const float m = fmaxf(a.m, b.m), ca = expf(a.m - m), cb = expf(b.m - m);
    return row_acc{m, a.s * ca + b.s * cb, a.f * ca + b.f * cb};
}

__device__ __forceinline__ row_acc acc_shfl(row_acc a, int off)
{
    return row_acc{__shfl_xor_sync(0xffffffffu, a.m, off), __shfl_xor_sync(0xffffffffu, a.s, off),
                   __shfl_xor_sync(0xffffffffu, a.f, off)};
}

/* lse, logprob, fmass (n) from z (n, V); one block of STATS_THREADS per row. */
template <bool VEC>
__global__ void __launch_bounds__(STATS_THREADS) logits_stats_kernel(float *lse, float *logprob, float *fmass,
                                                                     const float *z, const int32_t *targets,
                                                                     const uint8_t *forbidden, int V)
{
    __shared__ row_acc part[STATS_THREADS / 32];
    const int row = blockIdx.x;
    const float *zi = z + (size_t)row * V;
    row_acc a = {-INFINITY, 0.0f, 0.0f};
    if (VEC) {
        for (int j = threadIdx.x * 4; j < V; j += STATS_THREADS * 4) {
            const float4 v = *(const float4 *)(zi + j);
            acc_add(a, v.x, forbidden && forbidden[j]);
            acc_add(a, v.y, forbidden && forbidden[j + 1]);
            acc_add(a, v.z, forbidden && forbidden[j + 2]);
            acc_add(a, v.w, forbidden && forbidden[j + 3]);
        }
    } else {
        for (int j = threadIdx.x; j < V; j += STATS_THREADS) acc_add(a, zi[j], forbidden && forbidden[j]);
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) a = acc_merge(a, acc_shfl(a, off));
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = a;
    __syncthreads();
    if (threadIdx.x >= 32) return;
    a = threadIdx.x < STATS_THREADS / 32 ? part[threadIdx.x] : row_acc{-INFINITY, 0.0f, 0.0f};
#pragma unroll
    for (int off = 16; off > 0; off /= 2) a = acc_merge(a, acc_shfl(a, off));
    if (threadIdx.x == 0) {
        const float l = a.m + logf(a.s);
        lse[row] = l;
        const int t = targets[row];
        logprob[row] = t >= 0 ? zi[t] - l : 0.0f;
        if (forbidden) fmass[row] = a.f / a.s;
    }
}

/* dz (n, V) bf16 = p (a + c F) + b [j == t], p = exp(z - lse); 4 values per thread. */
template <bool VEC>
__global__ void logits_grad_kernel(bf16 *dz, const float *z, const float *lse, const int32_t *targets, const float *a,
                                   const float *b, const float *c, const uint8_t *forbidden, int V)
{
    const int row = blockIdx.x;
    const int j0 = (blockIdx.y * blockDim.x + threadIdx.x) * 4;
    if (j0 >= V) return;
    const float *zi = z + (size_t)row * V;
    bf16 *di = dz + (size_t)row * V;
    const float l = lse[row], ai = a[row], bi = b[row], ci = c ? c[row] : 0.0f;
    const int t = targets[row];
    const bool use_f = c && forbidden;
    float zv[4];
    if (VEC) {
        const float4 v = *(const float4 *)(zi + j0);
        zv[0] = v.x, zv[1] = v.y, zv[2] = v.z, zv[3] = v.w;
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) zv[k] = j0 + k < V ? zi[j0 + k] : 0.0f;
    }
    float r[4];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const int j = j0 + k;
        const float p = expf(zv[k] - l);
        const float coef = ai + (use_f && j < V && forbidden[j] ? ci : 0.0f);
        r[k] = p * coef + (j == t ? bi : 0.0f);
    }
    if (VEC) {
        __nv_bfloat162 lo = __floats2bfloat162_rn(r[0], r[1]), hi = __floats2bfloat162_rn(r[2], r[3]);
        *(uint2 *)(di + j0) = make_uint2(*(uint32_t *)&lo, *(uint32_t *)&hi);
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++)
            if (j0 + k < V) di[j0 + k] = __float2bfloat16_rn(r[k]);
    }
}

extern "C" void logits_stats_cuda(backend *be, float *lse, float *logprob, float *fmass, const float *z,
                                  const int32_t *targets, const uint8_t *forbidden, int n, int V)
{
    if (n <= 0 || V <= 0) return;
    const bool vec = V % 4 == 0 && (uintptr_t)z % 16 == 0;
    if (vec)
        logits_stats_kernel<true><<<n, STATS_THREADS, 0, cuda_stream(be)>>>(lse, logprob, fmass, z, targets, forbidden, V);
    else
        logits_stats_kernel<false><<<n, STATS_THREADS, 0, cuda_stream(be)>>>(lse, logprob, fmass, z, targets, forbidden, V);
    cuda_check_launch(be, "logits_stats");
}

extern "C" void logits_grad_cuda(backend *be, void *dz, const float *z, const float *lse, const int32_t *targets,
                                 const float *a, const float *b, const float *c, const uint8_t *forbidden, int n, int V)
{
    if (n <= 0 || V <= 0) return;
    const bool vec = V % 4 == 0 && (uintptr_t)z % 16 == 0 && (uintptr_t)dz % 8 == 0;
    dim3 grid((unsigned)n, (unsigned)((V + 4 * 256 - 1) / (4 * 256)));
    if (vec)
        logits_grad_kernel<true><<<grid, 256, 0, cuda_stream(be)>>>((bf16 *)dz, z, lse, targets, a, b, c, forbidden, V);
    else
        logits_grad_kernel<false><<<grid, 256, 0, cuda_stream(be)>>>((bf16 *)dz, z, lse, targets, a, b, c, forbidden, V);
    cuda_check_launch(be, "logits_grad");
}
