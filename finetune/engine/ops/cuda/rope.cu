/* finetune/engine/ops/cuda/rope.cu - CUDA twin of op_rope (rope.c).
 *
 * The inverse frequencies are computed on the host with the reference's exact
 * fp32 expression and passed by value, so both backends rotate by the same
 * fp32 angle (float)pos * inv_freq[i]; only cos/sin may differ in the last ulp.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "finetune/engine/ops/ops_cuda.h"
#include "finetune/engine/ops/ops_decode_cuda.h"

#include "core/status.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>

typedef __nv_bfloat16 bf16;

/* The pair (a, b) rotated in place by the angle of position p and a
 * frequency of inverse wavelength inv_freq. */
__device__ __forceinline__ void rotate(bf16 &a, bf16 &b, int p, float inv_freq, const rope_table &f, int inverse)
{
    float ang = (float)p * inv_freq;
    float s, c;
    sincosf(ang, &s, &c);
    c *= f.scale;
    s *= inverse ? -f.scale : f.scale;
    const float x = __bfloat162float(a), y = __bfloat162float(b);
    a = __float2bfloat16_rn(x * c - y * s);
    b = __float2bfloat16_rn(y * c + x * s);
}

/* Elements i and i + half of one head v rotated in place (frequency i). */
__device__ __forceinline__ void rotate_pair(bf16 *v, int i, int half, int p, const rope_table &f, int inverse)
{
    rotate(v[i], v[i + half], p, f.inv_freq[i], f, inverse);
}

/* Elements i .. i + 7 and i + half .. i + half + 7 of one head v (16-byte
 * aligned, as are i and half) rotated in place, with one 16-byte load and
 * store for each half. */
__device__ __forceinline__ void rotate_8_pairs(bf16 *v, int i, int half, int p, const rope_table &f, int inverse)
{
    uint4 ua = *(const uint4 *)(v + i), ub = *(const uint4 *)(v + i + half);
    bf16 *ha = (bf16 *)&ua, *hb = (bf16 *)&ub;
#pragma unroll
    for (int k = 0; k < 8; k++) rotate(ha[k], hb[k], p, f.inv_freq[i + k], f, inverse);
    *(uint4 *)(v + i) = ua;
    *(uint4 *)(v + i + half) = ub;
}

/* x (N, nh, D) rotated in place: element i < D/2 pairs with i + D/2.
 * One thread per W pairs of a head (token n, head h, frequencies i .. i + W - 1:
 * W = 8 when a head's halves are whole 16-byte pieces, else 1), grid-stride
 * over N * nh * D/2 / W units (256-thread blocks): neighbouring threads touch
 * neighbouring elements of a head, and a decode step's few tokens still spread
 * over many threads. Each thread computes its own cos/sin: cheap next to the
 * memory traffic. The unit index is 32-bit where it fits (I): the divisions
 * that place a unit were 64-bit, and made the kernel bound by them rather
 * than by its memory traffic (a quarter of the bandwidth at 8,192 tokens). */
template <int W, typename I>
__global__ void rope_kernel(bf16 *x, const int32_t *pos, I units, int nh, int D, int inverse,
                            const __grid_constant__ rope_table f)
{
    pdl_release();
    pdl_wait();   /* launched as a programmatic dependent (launch_pdl): the kernel before has finished */
    const int half = D / 2;
    const I per_head = (I)(half / W);
    for (I u = (I)blockIdx.x * blockDim.x + threadIdx.x; u < units; u += (I)gridDim.x * blockDim.x) {
        const I head = u / per_head;   /* n * nh + h */
        const int i = (int)(u - head * per_head) * W, p = pos[head / (I)nh];
        if (W == 8) rotate_8_pairs(x + (size_t)head * D, i, half, p, f, inverse);
        else rotate_pair(x + (size_t)head * D, i, half, p, f, inverse);
    }
}

template <int W, typename I>
static void launch_rope(backend *be, bf16 *x, const int32_t *pos, size_t units, int nh, int D, int inverse,
                        const rope_table &f)
{
    size_t blocks = (units + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    launch_pdl(be, rope_kernel<W, I>, dim3((unsigned)blocks), dim3(256), 0, x, pos, (I)units, nh, D, inverse, f);
}

extern "C" void rope_cuda(backend *be, void *x, const int32_t *pos, int N, int nh, int D, const rope_table *rt,
                          int inverse)
{
    if (N <= 0 || nh <= 0 || D <= 0) return;
    if (D % 2 || D / 2 > ROPE_MAX_HALF || rt->half != D / 2) {
        be_fail(be, DS_EINTERNAL, "rope: head_dim %d does not match the rope table (%d pairs, at most %d)", D,
                rt->half, ROPE_MAX_HALF);
        return;
    }
    const bool vec = (D / 2) % 8 == 0 && (uintptr_t)x % 16 == 0;
    const size_t units = (size_t)N * nh * (D / 2) / (vec ? 8 : 1);
    const bool narrow = units < (1u << 31);   /* u + the grid's threads stays below 2^32 */
    bf16 *X = (bf16 *)x;
    if (vec) narrow ? launch_rope<8, unsigned>(be, X, pos, units, nh, D, inverse, *rt)
                    : launch_rope<8, size_t>(be, X, pos, units, nh, D, inverse, *rt);
    else narrow ? launch_rope<1, unsigned>(be, X, pos, units, nh, D, inverse, *rt)
                : launch_rope<1, size_t>(be, X, pos, units, nh, D, inverse, *rt);
    cuda_check_launch(be, "rope");
}

/* op_rope_kv_store: one thread per (token n, head, frequency i), the heads
 * being q's H, then k's Hkv, then v's Hkv (v's threads copy elements i and
 * i + half). A k thread stores what it rotated in the cache slot
 * row[n] * ctx + pos[n] as well, so the cache holds exactly the rotated k. */
__global__ void rope_kv_store_kernel(bf16 *q, bf16 *k, const bf16 *v, bf16 *kc, bf16 *vc, const int32_t *row,
                                     const int32_t *pos, int N, int H, int Hkv, int D, int ctx,
                                     const __grid_constant__ rope_table f)
{
    pdl_release();
    pdl_wait();   /* launched as a programmatic dependent (launch_pdl): the kernel before has finished */
    const int half = D / 2, heads = H + 2 * Hkv;
    const size_t total = (size_t)N * heads * half;
    for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(t % half), hh = (int)(t / half % heads), n = (int)(t / half / heads);
        const size_t slot = (size_t)row[n] * ctx + pos[n];
        if (hh < H) {
            rotate_pair(q + ((size_t)n * H + hh) * D, i, half, pos[n], f, 0);
        } else if (hh < H + Hkv) {
            bf16 *x = k + ((size_t)n * Hkv + hh - H) * D, *c = kc + (slot * Hkv + hh - H) * D;
            rotate_pair(x, i, half, pos[n], f, 0);
            c[i] = x[i], c[i + half] = x[i + half];
        } else {
            const bf16 *x = v + ((size_t)n * Hkv + hh - H - Hkv) * D;
            bf16 *c = vc + (slot * Hkv + hh - H - Hkv) * D;
            c[i] = x[i], c[i + half] = x[i + half];
        }
    }
}

extern "C" void rope_kv_store_cuda(backend *be, void *q, void *k, const void *v, void *kc, void *vc,
                                   const int32_t *row, const int32_t *pos, int N, const kv_shape *s,
                                   const rope_table *rt)
{
    if (N <= 0) return;
    const int D = s->D;
    if (D % 2 || D / 2 > ROPE_MAX_HALF || rt->half != D / 2) {
        be_fail(be, DS_EINTERNAL, "rope_kv_store: head_dim %d does not match the rope table (%d pairs, at most %d)",
                D, rt->half, ROPE_MAX_HALF);
        return;
    }
    const size_t total = (size_t)N * (s->H + 2 * s->Hkv) * (D / 2);
    size_t blocks = (total + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    launch_pdl(be, rope_kv_store_kernel, dim3((unsigned)blocks), dim3(256), 0, (bf16 *)q, (bf16 *)k,
               (const bf16 *)v, (bf16 *)kc, (bf16 *)vc, row, pos, N, s->H, s->Hkv, D, s->ctx, *rt);
    cuda_check_launch(be, "rope_kv_store");
}
