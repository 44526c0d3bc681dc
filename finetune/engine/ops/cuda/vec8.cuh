/* finetune/engine/ops/cuda/vec8.cuh - 8-wide bf16 loads and stores shared by the
 * memory-bound kernels (embedding, swiglu): one 16-byte access per operand when
 * every pointer is 16-byte aligned (checked at launch), else 8 scalar accesses. */
#pragma once

#include "backend/backend.h"
#include "backend/kernel.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

/* Load 8 values starting at p[i] (fewer near n: the rest read as 0). */
__device__ __forceinline__ void load8(float v[8], const bf16 *p, size_t i, size_t n, bool vec)
{
    if (vec && i + 8 <= n) {
        uint4 u = *(const uint4 *)(p + i);
        const bf16 *h = (const bf16 *)&u;
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = __bfloat162float(h[k]);
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = i + k < n ? __bfloat162float(p[i + k]) : 0.0f;
    }
}

/* Store 8 values at p[i] (only those below n). */
__device__ __forceinline__ void store8(bf16 *p, const float v[8], size_t i, size_t n, bool vec)
{
    if (vec && i + 8 <= n) {
        uint4 u;
        bf16 *h = (bf16 *)&u;
#pragma unroll
        for (int k = 0; k < 8; k++) h[k] = __float2bfloat16_rn(v[k]);
        *(uint4 *)(p + i) = u;
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (i + k < n) p[i + k] = __float2bfloat16_rn(v[k]);
    }
}

static inline bool aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

/* Grid for n values, 8 per thread, 256 threads per block; grid-stride beyond a few waves. */
static inline unsigned blocks_for(backend *be, size_t n)
{
    size_t want = (n + 8 * 256 - 1) / (8 * 256), cap = (size_t)cuda_sm_count(be) * 32;
    return (unsigned)(want < 1 ? 1 : want < cap ? want : cap);
}

#define GRID_STRIDE_8(i, n) \
    for (size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8; i < (n); i += (size_t)gridDim.x * blockDim.x * 8)

