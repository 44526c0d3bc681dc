/* finetune/engine/ops/cuda/kv_cache.cu - CUDA twins of op_kv_store and
 * op_attention_cached (kv_cache.c).
 *
 * Decoding attends with one query per sequence, so the work is a block per
 * (token, query head), its warps splitting the cached positions (a batch of
 * one still fills the GPU: 32 heads x 8 warps): the lanes split the head's D
 * values in pairs (even D <= 192, the width of DeepSeek-V2's latent attention
 * heads: up to six per lane), a score is a warp-wide sum, and each warp's softmax runs
 * online (running maximum and sum, its output rescaled when the maximum
 * grows), in fp32, reading each cached key and value once; the warps' partial
 * results are merged in shared memory. */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_decode_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>

typedef __nv_bfloat16 bf16;

#define KV_MAX_D 192

/* One thread per stored value: slot row[n] * ctx + pos[n] gets token n's key and value. */
__global__ void kv_store_kernel(bf16 *kc, bf16 *vc, const bf16 *k, const bf16 *v, const int32_t *row,
                                const int32_t *pos, int N, int KVD, int ctx)
{
    pdl_wait();   /* launched as a programmatic dependent (launch_pdl): the kernel before has finished */
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * KVD) return;
    int n = (int)(i / KVD), c = (int)(i % KVD);
    size_t slot = (size_t)row[n] * ctx + pos[n];
    kc[slot * KVD + c] = k[i];
    vc[slot * KVD + c] = v[i];
}

extern "C" void kv_store_cuda(backend *be, void *kc, void *vc, const void *k, const void *v, const int32_t *row,
                              const int32_t *pos, int N, const kv_shape *s)
{
    if (N <= 0) return;
    const int KVD = s->Hkv * s->D;
    const size_t n = (size_t)N * KVD;
    launch_pdl(be, kv_store_kernel, dim3((unsigned)((n + 255) / 256)), dim3(256), 0, (bf16 *)kc, (bf16 *)vc,
               (const bf16 *)k, (const bf16 *)v, row, pos, N, KVD, s->ctx);
    cuda_check_launch(be, "kv_store");
}

__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* out (N, H, D): block (n, h) handles token n, query head h; its WARPS warps
 * take the visible positions in runs of BATCH (warp w: j0 + BATCH w ..., then
 * BATCH WARPS further on), each with its own running maximum m, sum l and
 * output acc, merged at the end: M = max m_w, out = sum_w e^(m_w - M) acc_w /
 * sum_w e^(m_w - M) l_w. A warp loads the keys and values of its whole run
 * before it uses any: the cache is far bigger than L2, so each load waits on
 * memory, and a warp that took one position at a time (load, sum across the
 * warp, then the next) spent a decode step's attention waiting on one chain of
 * such loads. Lane l holds the P bf16 pairs of dims 2l + 64c, 2l + 64c + 1. */
#define WARPS 8
#define BATCH 8
template <int P>
__global__ void __launch_bounds__(WARPS * 32) attention_cached_kernel(bf16 *out, const bf16 *q, const bf16 *kc,
                                                                      const bf16 *vc, const int32_t *row,
                                                                      const int32_t *pos, int H, int Hkv, int D,
                                                                      int window, int ctx, float scale)
{
    pdl_release();   /* o_proj's matrix-vector product may start fetching its weights */
    pdl_wait();   /* launched as a programmatic dependent (launch_pdl): the kernel before has finished */
    __shared__ float s_m[WARPS], s_l[WARPS], s_acc[WARPS][KV_MAX_D];
    const int n = blockIdx.x / H, h = blockIdx.x % H, kh = h / (H / Hkv), i = pos[n];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const __nv_bfloat162 zero = __floats2bfloat162_rn(0.0f, 0.0f);
    float2 qv[P], acc[P];
#pragma unroll
    for (int c = 0; c < P; c++) {
        const int d = 2 * lane + 64 * c;
        qv[c] = d < D ? __bfloat1622float2(*(const __nv_bfloat162 *)(q + ((size_t)n * H + h) * D + d))
                      : make_float2(0.0f, 0.0f);
        acc[c] = make_float2(0.0f, 0.0f);
    }
    const size_t stride = (size_t)Hkv * D;
    const bf16 *K = kc + (size_t)row[n] * ctx * stride + (size_t)kh * D;
    const bf16 *V = vc + (size_t)row[n] * ctx * stride + (size_t)kh * D;
    const int j0 = window && i - window + 1 > 0 ? i - window + 1 : 0;
    float m = -INFINITY, l = 0.0f;
    for (int j = j0 + warp * BATCH; j <= i; j += WARPS * BATCH) {
        __nv_bfloat162 kr[BATCH][P], vr[BATCH][P];   /* the run's keys and values, all requested first */
#pragma unroll
        for (int b = 0; b < BATCH; b++)
#pragma unroll
            for (int c = 0; c < P; c++) {
                const int d = 2 * lane + 64 * c;
                const bool ok = j + b <= i && d < D;
                const size_t at = (size_t)(j + b) * stride + d;
                kr[b][c] = ok ? *(const __nv_bfloat162 *)(K + at) : zero;
                vr[b][c] = ok ? *(const __nv_bfloat162 *)(V + at) : zero;
            }
        float s[BATCH], mn = m;
#pragma unroll
        for (int b = 0; b < BATCH; b++) {
            float a = 0.0f;
#pragma unroll
            for (int c = 0; c < P; c++) {
                const float2 k2 = __bfloat1622float2(kr[b][c]);
                a += qv[c].x * k2.x + qv[c].y * k2.y;
            }
            s[b] = warp_sum(a) * scale;
            if (j + b <= i) mn = fmaxf(mn, s[b]);
        }
        const float corr = __expf(m - mn);   /* mn is finite: position j is visible */
        l *= corr;
#pragma unroll
        for (int c = 0; c < P; c++) acc[c].x *= corr, acc[c].y *= corr;
#pragma unroll
        for (int b = 0; b < BATCH; b++) {
            if (j + b > i) break;
            const float p = __expf(s[b] - mn);
            l += p;
#pragma unroll
            for (int c = 0; c < P; c++) {
                const float2 v2 = __bfloat1622float2(vr[b][c]);
                acc[c].x += p * v2.x, acc[c].y += p * v2.y;
            }
        }
        m = mn;
    }
    if (lane == 0) s_m[warp] = m, s_l[warp] = l;
#pragma unroll
    for (int c = 0; c < P; c++) {
        const int d = 2 * lane + 64 * c;
        if (d < D) s_acc[warp][d] = acc[c].x, s_acc[warp][d + 1] = acc[c].y;
    }
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < WARPS; w++) M = fmaxf(M, s_m[w]);   /* finite: warp 0 saw position j0 */
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float num = 0.0f, den = 0.0f;
        for (int w = 0; w < WARPS; w++) {
            const float f = s_m[w] == -INFINITY ? 0.0f : __expf(s_m[w] - M);   /* a warp with no position adds nothing */
            num += f * s_acc[w][d];
            den += f * s_l[w];
        }
        out[((size_t)n * H + h) * D + d] = __float2bfloat16_rn(num / den);
    }
}

extern "C" void attention_cached_cuda(backend *be, void *out, const void *q, const void *kc, const void *vc,
                                      const int32_t *row, const int32_t *pos, int N, const kv_shape *s)
{
    if (N <= 0) return;
    if (s->D > KV_MAX_D || s->D % 2 || s->H % s->Hkv) {
        be_fail(be, DS_EDATA, "attention_cached: head size %d with %d/%d heads: the CUDA kernel takes even D <= %d "
                              "and whole groups", s->D, s->H, s->Hkv, KV_MAX_D);
        return;
    }
    attn_shape as = {0, 0, s->H, s->Hkv, s->D, s->window, s->scale};
    const float scale = attn_scale(&as);
    /* bf16 pairs a lane holds: dims 2 lane + 64 c */
    void (*kernel)(bf16 *, const bf16 *, const bf16 *, const bf16 *, const int32_t *, const int32_t *, int, int, int,
                   int, int, float) = s->D <= 64    ? attention_cached_kernel<1>
                                      : s->D <= 128 ? attention_cached_kernel<2>
                                                    : attention_cached_kernel<3>;
    launch_pdl(be, kernel, dim3((unsigned)((size_t)N * s->H)), dim3(WARPS * 32), 0, (bf16 *)out, (const bf16 *)q,
               (const bf16 *)kc, (const bf16 *)vc, row, pos, s->H, s->Hkv, s->D, s->window, s->ctx, scale);
    cuda_check_launch(be, "attention_cached");
}
