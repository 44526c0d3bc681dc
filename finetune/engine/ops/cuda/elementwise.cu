/* finetune/engine/ops/cuda/elementwise.cu - CUDA twins of op_embedding, op_swiglu_fwd/bwd
 * (finetune/ops_elementwise.c holds the references).
 *
 * All of them are memory-bound: each thread handles 8 consecutive bf16 values,
 * with one 16-byte load/store per operand when every pointer is 16-byte aligned
 * (checked at launch), else 8 scalar accesses. Math is fp32, as in the reference.
 */
#include "backend/backend.h"
#include "backend/backend_internal.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

typedef __nv_bfloat16 bf16;

/* From backend/backend_cuda.cu. */

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

static bool aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

/* Grid for n values, 8 per thread, 256 threads per block; grid-stride beyond a few waves. */
static unsigned blocks_for(backend *be, size_t n)
{
    size_t want = (n + 8 * 256 - 1) / (8 * 256), cap = (size_t)cuda_sm_count(be) * 32;
    return (unsigned)(want < 1 ? 1 : want < cap ? want : cap);
}

#define GRID_STRIDE_8(i, n) \
    for (size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8; i < (n); i += (size_t)gridDim.x * blockDim.x * 8)

/* ---------------------------------------------------------------- embedding */

/* out (N, C) = table (V, C) rows ids[n]. Grid (N, ceil(C / (8*128))): block x copies
 * token row x; 128 threads, 8 values per thread. */
__global__ void embedding_kernel(bf16 *out, const int32_t *ids, const bf16 *table, int C, bool vec)
{
    int n = blockIdx.x;
    size_t c = ((size_t)blockIdx.y * blockDim.x + threadIdx.x) * 8;
    if (c >= (size_t)C) return;
    const bf16 *src = table + (size_t)ids[n] * C;
    bf16 *dst = out + (size_t)n * C;
    if (vec && c + 8 <= (size_t)C) {
        *(uint4 *)(dst + c) = *(const uint4 *)(src + c);
    } else {
        for (size_t k = c; k < c + 8 && k < (size_t)C; k++) dst[k] = src[k];
    }
}

extern "C" void embedding_cuda(backend *be, void *out, const int32_t *ids, const void *table, int N, int C)
{
    if (N <= 0 || C <= 0) return;
    bool vec = C % 8 == 0 && aligned16(out) && aligned16(table);
    dim3 grid((unsigned)N, (unsigned)((C + 8 * 128 - 1) / (8 * 128)));
    embedding_kernel<<<grid, 128, 0, cuda_stream(be)>>>((bf16 *)out, ids, (const bf16 *)table, C, vec);
    cuda_check_launch(be, "embedding");
}

/* ------------------------------------------------------------------- SwiGLU */

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

/* out (n) = silu(gate) * up. */
__global__ void swiglu_fwd_kernel(bf16 *out, const bf16 *gate, const bf16 *up, size_t n, bool vec)
{
    GRID_STRIDE_8(i, n)
    {
        float g[8], u[8], o[8];
        load8(g, gate, i, n, vec);
        load8(u, up, i, n, vec);
#pragma unroll
        for (int k = 0; k < 8; k++) o[k] = g[k] * sigmoid_f(g[k]) * u[k];
        store8(out, o, i, n, vec);
    }
}

/* dgate = dout * up * s (1 + g (1 - s)), dup = dout * silu(g), s = sigmoid(g); all (n). */
__global__ void swiglu_bwd_kernel(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate, const bf16 *up, size_t n,
                                  bool vec)
{
    GRID_STRIDE_8(i, n)
    {
        float d[8], g[8], u[8], dg[8], du[8];
        load8(d, dout, i, n, vec);
        load8(g, gate, i, n, vec);
        load8(u, up, i, n, vec);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float s = sigmoid_f(g[k]);
            dg[k] = d[k] * u[k] * s * (1.0f + g[k] * (1.0f - s));
            du[k] = d[k] * g[k] * s;
        }
        store8(dgate, dg, i, n, vec);
        store8(dup, du, i, n, vec);
    }
}

extern "C" void swiglu_fwd_cuda(backend *be, void *out, const void *gate, const void *up, size_t n)
{
    if (!n) return;
    bool vec = aligned16(out) && aligned16(gate) && aligned16(up);
    swiglu_fwd_kernel<<<blocks_for(be, n), 256, 0, cuda_stream(be)>>>((bf16 *)out, (const bf16 *)gate,
                                                                      (const bf16 *)up, n, vec);
    cuda_check_launch(be, "swiglu_fwd");
}

extern "C" void swiglu_bwd_cuda(backend *be, void *dgate, void *dup, const void *dout, const void *gate, const void *up,
                                size_t n)
{
    if (!n) return;
    bool vec = aligned16(dgate) && aligned16(dup) && aligned16(dout) && aligned16(gate) && aligned16(up);
    swiglu_bwd_kernel<<<blocks_for(be, n), 256, 0, cuda_stream(be)>>>((bf16 *)dgate, (bf16 *)dup, (const bf16 *)dout,
                                                                      (const bf16 *)gate, (const bf16 *)up, n, vec);
    cuda_check_launch(be, "swiglu_bwd");
}

/* ---------------------------------------------------------------------- add */


