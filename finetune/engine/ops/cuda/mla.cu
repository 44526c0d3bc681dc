/* finetune/engine/ops/cuda/mla.cu - CUDA twins of multi-head latent
 * attention's head assembly (mla.c): the heads Q, K, Vp (N, H, D) from the
 * projections, their backward, and the column copies around the latent.
 *
 * One block per token: its threads cover (head, column). The rope part is
 * rotated by the reference's fp32 angle (float)pos * inv_freq[i] (the table
 * is passed by value); the shared key's gradient is summed over the heads in
 * head order by one thread per rope column, so the sum has the reference's
 * order. fp32 math, bf16 storage.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_moe_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

typedef __nv_bfloat16 bf16;

#define MLA_THREADS 256

/* Column i (0 <= i < rope, in the halves layout) of the rotated rope part of
 * `in` (rope values, interleaved pairs or halves) at position p. */
__device__ __forceinline__ float rotated(const bf16 *in, int i, int32_t p, int rope, bool interleave,
                                         const rope_table &rt)
{
    const int half = rope / 2, f = i < half ? i : i - half;
    float s, c;
    sincosf((float)p * rt.inv_freq[f], &s, &c);
    c *= rt.scale, s *= rt.scale;
    const float a = __bfloat162float(in[interleave ? 2 * f : f]);
    const float b = __bfloat162float(in[interleave ? 2 * f + 1 : f + half]);
    return i < half ? a * c - b * s : b * c + a * s;
}

/* The transposed rotation: column j (0 <= j < rope, in the input's layout) of
 * the gradient, from y's halves (ya = y[f], yb = y[f + half]). */
__device__ __forceinline__ float unrotated(float ya, float yb, int f, bool is_a, int32_t p,
                                           const rope_table &rt)
{
    float s, c;
    sincosf((float)p * rt.inv_freq[f], &s, &c);
    c *= rt.scale, s *= rt.scale;
    return is_a ? ya * c + yb * s : yb * c - ya * s;
}

/* Which frequency column j of the input's layout belongs to, and whether it is a pair's first value. */
__device__ __forceinline__ void pair_of(int j, int rope, bool interleave, int *f, bool *is_a)
{
    const int half = rope / 2;
    *f = interleave ? j / 2 : j % half;
    *is_a = interleave ? j % 2 == 0 : j < half;
}

__global__ void mla_heads_kernel(bf16 *Q, bf16 *K, bf16 *Vp, const bf16 *q, const bf16 *kva, const bf16 *kvb,
                                 const int32_t *pos, mla_dims d, rope_table rt)
{
    const int n = blockIdx.x, QK = d.nope + d.rope, KV = d.nope + d.v, A = d.kvr + d.rope;
    const int32_t p = pos[n];
    for (int t = threadIdx.x; t < d.H * d.D; t += blockDim.x) {
        const int h = t / d.D, j = t % d.D;
        const size_t head = (size_t)n * d.H + h, o = head * d.D + j;
        const bf16 *qh = q + head * QK, *kv = kvb + head * KV;
        float qv = 0, kv_ = 0, vv = 0;
        if (j < d.nope) {
            qv = __bfloat162float(qh[j]);
            kv_ = __bfloat162float(kv[j]);
        } else if (j < QK) {
            qv = rotated(qh + d.nope, j - d.nope, p, d.rope, d.interleave, rt);
            kv_ = rotated(kva + (size_t)n * A + d.kvr, j - d.nope, p, d.rope, d.interleave, rt);
        }
        if (j < d.v) vv = __bfloat162float(kv[d.nope + j]);
        Q[o] = __float2bfloat16_rn(qv);
        K[o] = __float2bfloat16_rn(kv_);
        Vp[o] = __float2bfloat16_rn(vv);
    }
}

__global__ void mla_heads_bwd_kernel(bf16 *dq, bf16 *dkva, bf16 *dkvb, const bf16 *dQ, const bf16 *dK, const bf16 *dV,
                                     const int32_t *pos, mla_dims d, rope_table rt)
{
    const int n = blockIdx.x, QK = d.nope + d.rope, KV = d.nope + d.v, A = d.kvr + d.rope, half = d.rope / 2;
    const int32_t p = pos[n];
    for (int t = threadIdx.x; t < d.H * KV; t += blockDim.x) {   /* dkvb = [dK's nope | dV's v] per head */
        const int h = t / KV, j = t % KV;
        const size_t head = (size_t)n * d.H + h;
        const bf16 v = j < d.nope ? dK[head * d.D + j] : dV[head * d.D + j - d.nope];
        dkvb[head * KV + j] = v;
    }
    for (int t = threadIdx.x; t < d.H * QK; t += blockDim.x) {   /* dq: nope copied, rope rotated back */
        const int h = t / QK, j = t % QK;
        const size_t head = (size_t)n * d.H + h;
        const bf16 *g = dQ + head * d.D;
        if (j < d.nope) {
            dq[head * QK + j] = g[j];
        } else {
            int f;
            bool is_a;
            pair_of(j - d.nope, d.rope, d.interleave, &f, &is_a);
            const float ya = __bfloat162float(g[d.nope + f]), yb = __bfloat162float(g[d.nope + f + half]);
            dq[head * QK + j] = __float2bfloat16_rn(unrotated(ya, yb, f, is_a, p, rt));
        }
    }
    for (int j = threadIdx.x; j < d.rope; j += blockDim.x) {     /* the shared key: summed over heads, rotated back */
        int f;
        bool is_a;
        pair_of(j, d.rope, d.interleave, &f, &is_a);
        float ya = 0, yb = 0;
        for (int h = 0; h < d.H; h++) {
            const bf16 *g = dK + ((size_t)n * d.H + h) * d.D + d.nope;
            ya += __bfloat162float(g[f]);
            yb += __bfloat162float(g[f + half]);
        }
        dkva[(size_t)n * A + d.kvr + j] = __float2bfloat16_rn(unrotated(ya, yb, f, is_a, p, rt));
    }
}

static bool mla_args_ok(backend *be, const char *op, const mla_dims *d, const rope_table *rt)
{
    if (d->D < d->nope + d->rope || d->D < d->v || d->rope % 2 || d->rope / 2 > ROPE_MAX_HALF || rt->half != d->rope / 2) {
        be_fail(be, DS_EINTERNAL, "%s: head width %d, nope %d, rope %d, v %d do not fit (rope table of %d pairs)", op,
                d->D, d->nope, d->rope, d->v, rt->half);
        return false;
    }
    return true;
}

extern "C" void mla_heads_cuda(backend *be, void *Q, void *K, void *Vp, const void *q, const void *kva, const void *kvb,
                               const int32_t *pos, int N, const mla_dims *d, const rope_table *rt)
{
    if (N <= 0 || !mla_args_ok(be, "mla_heads", d, rt)) return;
    mla_heads_kernel<<<N, MLA_THREADS, 0, cuda_stream(be)>>>((bf16 *)Q, (bf16 *)K, (bf16 *)Vp, (const bf16 *)q,
                                                             (const bf16 *)kva, (const bf16 *)kvb, pos, *d, *rt);
    cuda_check_launch(be, "mla_heads");
}

extern "C" void mla_heads_bwd_cuda(backend *be, void *dq, void *dkva, void *dkvb, const void *dQ, const void *dK,
                                   const void *dV, const int32_t *pos, int N, const mla_dims *d, const rope_table *rt)
{
    if (N <= 0 || !mla_args_ok(be, "mla_heads_bwd", d, rt)) return;
    mla_heads_bwd_kernel<<<N, MLA_THREADS, 0, cuda_stream(be)>>>((bf16 *)dq, (bf16 *)dkva, (bf16 *)dkvb,
                                                                 (const bf16 *)dQ, (const bf16 *)dK, (const bf16 *)dV,
                                                                 pos, *d, *rt);
    cuda_check_launch(be, "mla_heads_bwd");
}

/* A strided copy of w columns of N rows: one 2-D copy on the stream. */
extern "C" void columns_cuda(backend *be, void *out, void *x, int N, int ld, int c0, int w, bool back)
{
    if (N <= 0 || w <= 0) return;
    const size_t A = sizeof(bf16);
    bf16 *cols = (bf16 *)x + c0;
    cudaError_t e = back ? cudaMemcpy2DAsync(cols, ld * A, out, w * A, w * A, N, cudaMemcpyDeviceToDevice, cuda_stream(be))
                         : cudaMemcpy2DAsync(out, w * A, cols, ld * A, w * A, N, cudaMemcpyDeviceToDevice, cuda_stream(be));
    if (e != cudaSuccess) be_fail(be, DS_ETRAIN, "device error: columns: %s", cudaGetErrorString(e));
}
