/* finetune/engine/ops/cuda/attention_bwd_sm90.cu - the main kernel of the
 * attention backward for head size 128 on Hopper's wgmma instructions (sm_90a);
 * attention_bwd.cu keeps the delta and dq kernels around it and the mma.sync
 * kernel for every other GPU and head size (attention.c holds the reference).
 *
 * Design. A block of 2 warpgroups owns BK = 128 keys of one (batch, kv head);
 * warpgroup w owns keys 64w .. 64w + 63 and their dK, dV accumulators (64 x
 * 128 fp32 each, in registers for the whole walk: no atomics for dK, dV). The
 * block walks every query head of the group and every query tile (BQ = 64
 * rows) from the diagonal on, Q and dO tiles double buffered (the next tile
 * loads while this one is used). Per query tile a warpgroup computes, for its
 * keys,
 *     Sᵀ = K Qᵀ, dPᵀ = V dOᵀ                 (wgmma, all operands in shared memory)
 *     Pᵀ = exp2(Sᵀ scale_log2 - lse_log2),   dSᵀ = Pᵀ (dPᵀ - delta)   (registers)
 *     dV += Pᵀ dO, dK += dSᵀ Q               (Pᵀ, dSᵀ packed to bf16 as the A
 *                                             operand, dO and Q read N-major)
 * and stores dSᵀ to shared memory. Then each warpgroup computes half the
 * columns of dQ (64 queries x 64 of D) = dS K over all 128 keys, dS read
 * M-major from the stored dSᵀ and K N-major, and adds it to the fp32 dq
 * accumulator with one vector atomic per pair of columns.
 *
 * Tiles are 128-byte swizzled (wgmma.cuh). Shared memory: K, V [2][128][64];
 * 2 stages of Q, dO [2][64][64]; dSᵀ [128 keys][64 queries] (one swizzled row
 * of 128 bytes per key); 2 stages of lse, delta and segment ids of 64 queries;
 * 1 KB of slack to align the start: 146.5 KB, one block per SM.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "finetune/engine/ops/ops_cuda.h"
#include "attention_common.cuh"
#include "wgmma.cuh"

#include "core/status.h"

#include <math.h>

struct bwd90 {
    static constexpr int D = 128, BK = 128, BQ = 64, THREADS = 256;
    static constexpr size_t K = 0;                                   /* bf16 [2][BK][64] */
    static constexpr size_t V = K + (size_t)BK * D * 2;              /* bf16 [2][BK][64] */
    static constexpr size_t QSTAGE = (size_t)BQ * D * 2;             /* one Q (or dO) tile */
    static constexpr size_t Q = V + (size_t)BK * D * 2;              /* bf16 [2 stages][2][BQ][64] */
    static constexpr size_t DO = Q + 2 * QSTAGE;                     /* bf16 [2 stages][2][BQ][64] */
    static constexpr size_t DS = DO + 2 * QSTAGE;                    /* bf16 [BK][64] */
    static constexpr size_t LSE = DS + (size_t)BK * BQ * 2;          /* float [2][BQ]: lse * log2(e) */
    static constexpr size_t DELTA = LSE + 2 * BQ * 4;                /* float [2][BQ] */
    static constexpr size_t SEG = DELTA + 2 * BQ * 4;                /* int [2][BQ] */
    static constexpr size_t BYTES = SEG + 2 * BQ * 4 + 1024;
};

/* Start loading query tile q0 of head h into a stage: Q and dO by cp.async,
 * lse, delta and segment ids by plain stores. */
__device__ __forceinline__ void bwd90_load_queries(const attn_params &p, unsigned char *smem, int stage, int b, int h,
                                                   int q0)
{
    typedef bwd90 L;
    const size_t stride = (size_t)p.H * L::D, off = ((size_t)b * p.T * p.H + h) * L::D;
    load_tile_sw128<L::BQ, L::THREADS>(smem + L::Q + stage * L::QSTAGE, p.q + off, stride, q0, p.T);
    load_tile_sw128<L::BQ, L::THREADS>(smem + L::DO + stage * L::QSTAGE, p.dout + off, stride, q0, p.T);
    const int i = threadIdx.x;
    if (i < L::BQ) {
        const int row = q0 + i;
        const bool valid = row < p.T;
        const size_t at = ((size_t)b * p.T + row) * p.H + h;
        ((float *)(smem + L::LSE))[stage * L::BQ + i] = valid ? p.lse[at] * ATTN_LOG2E : 0.0f;
        ((float *)(smem + L::DELTA))[stage * L::BQ + i] = valid ? p.delta[at] : 0.0f;
        ((int *)(smem + L::SEG))[stage * L::BQ + i] = valid && p.seg ? p.seg[(size_t)b * p.T + row] : -1;
    }
}

__global__ void __launch_bounds__(256, 1) attention_bwd_sm90_kernel(attn_params p)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    typedef bwd90 L;
    constexpr int D = L::D, BK = L::BK, BQ = L::BQ, DT = D / 8;
    extern __shared__ unsigned char smem_raw[];
    unsigned char *smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);   /* 1024-byte aligned */
    unsigned char *sK = smem + L::K, *sV = smem + L::V, *sdS = smem + L::DS;

    const int T = p.T, H = p.H;
    const int kt_blk = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
    const int k0 = kt_blk * BK;
    const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
    const int g = lane / 4, t4 = lane % 4;
    const int kw0 = k0 + 64 * wg;   /* this warpgroup's first key */
    const int nqt = (T + BQ - 1) / BQ, hend = (kvh + 1) * p.group;
    const size_t kstride = (size_t)p.Hkv * D, koff = ((size_t)b * T * p.Hkv + kvh) * D;

    /* The walk: every query head of the group, and for each the query tiles from
     * the diagonal on whose segment ids can meet this block's keys (all of them
     * without segments; the diagonal tiles always). With a window W, the keys
     * k0 .. k0 + BK - 1 are seen by the queries up to k0 + BK - 1 + W - 1. */
    const int *rng = p.seg_ranges ? p.seg_ranges + (size_t)b * nqt * 2 : NULL;
    int klo = 0, khi = 0;
    if (rng) {
        klo = rng[2 * (k0 / 64)], khi = rng[2 * (k0 / 64) + 1];
        if (k0 + 64 < T) klo = min(klo, rng[2 * (k0 / 64 + 1)]), khi = max(khi, rng[2 * (k0 / 64 + 1) + 1]);
    }
    const int W = p.window;
    const int qt_first = k0 / BQ;
    const int qt_end = W ? min(nqt, (k0 + BK - 1 + W - 1) / BQ + 1) : nqt;
    auto next_qt = [&](int qt) {
        while (rng && qt < qt_end && !ranges_overlap(rng, qt, klo, khi)) qt++;
        return qt;
    };

    load_tile_sw128<BK, L::THREADS>(sK, p.k + koff, kstride, k0, T);
    load_tile_sw128<BK, L::THREADS>(sV, p.v + koff, kstride, k0, T);
    bwd90_load_queries(p, smem, 0, b, kvh * p.group, qt_first * BQ);
    cp_async_commit();

    /* This thread's two keys (rows g and g + 8 of its warp's 16) and their segments. */
    const int key_lo = kw0 + 16 * warp + g, key_hi = key_lo + 8;
    const int32_t *seg = p.seg ? p.seg + (size_t)b * T : NULL;
    const int seg_lo = seg && key_lo < T ? seg[key_lo] : -2, seg_hi = seg && key_hi < T ? seg[key_hi] : -2;

    float dk[DT * 4], dv[DT * 4];   /* dK, dV (64 keys x 128) of the warpgroup, this thread's part */
#pragma unroll
    for (int i = 0; i < DT * 4; i++) dk[i] = dv[i] = 0.0f;

    int stage = 0;
    for (int h = kvh * p.group, qt = qt_first; h < hend;) {
        const int q0 = qt * BQ;
        int nh = h, nq = next_qt(qt + 1);   /* the step after this one */
        if (nq >= qt_end) nh = h + 1, nq = qt_first;
        cp_async_wait<0>();
        fence_proxy_async();
        __syncthreads();   /* this tile has landed; every warpgroup is done with the last one and with dSᵀ */
        if (nh < hend) bwd90_load_queries(p, smem, stage ^ 1, b, nh, nq * BQ);
        cp_async_commit();
        const unsigned char *tQ = smem + L::Q + stage * L::QSTAGE, *tdO = smem + L::DO + stage * L::QSTAGE;
        const float *tLse = (const float *)(smem + L::LSE) + stage * BQ;
        const float *tDelta = (const float *)(smem + L::DELTA) + stage * BQ;
        const int *tSeg = (const int *)(smem + L::SEG) + stage * BQ;

        /* Sᵀ (64 keys x 64 queries) = K Qᵀ and dPᵀ = V dOᵀ: slice kk of D is 16
         * columns of half kk / 4, 32 bytes into the rows. */
        float s[32], dp[32];
#pragma unroll
        for (int i = 0; i < 32; i++) s[i] = dp[i] = 0.0f;
        reg_fence<32>(s);
        reg_fence<32>(dp);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const size_t at_k = (kk / 4) * BK * 128 + wg * 64 * 128 + (kk % 4) * 32, at_q = (kk / 4) * BQ * 128 + (kk % 4) * 32;
            wgmma_m64n64k16_ss<0>(s, smem_desc_sw128(sK + at_k, 16, 1024), smem_desc_sw128(tQ + at_q, 16, 1024));
        }
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const size_t at_k = (kk / 4) * BK * 128 + wg * 64 * 128 + (kk % 4) * 32, at_q = (kk / 4) * BQ * 128 + (kk % 4) * 32;
            wgmma_m64n64k16_ss<0>(dp, smem_desc_sw128(sV + at_k, 16, 1024), smem_desc_sw128(tdO + at_q, 16, 1024));
        }
        wgmma_commit();
        wgmma_wait<0>();
        reg_fence<32>(s);
        reg_fence<32>(dp);

        /* Pᵀ and dSᵀ (without the scale, applied to dK and dQ at the end); the
         * mask only where the tile needs it. Element (nt, e): key row g + 8 (e / 2),
         * query column 8 nt + 2 t4 + e % 2. */
        const bool masked = q0 < kw0 + 63 || q0 + BQ > T || seg || (W && q0 + BQ - 1 - kw0 >= W);
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int qi = nt * 8 + 2 * t4 + (e & 1), query = q0 + qi;
                const int key = e < 2 ? key_lo : key_hi;
                bool vis = true;
                if (masked)
                    vis = key <= query && query < T && (!W || query - key < W) &&
                          (!seg || tSeg[qi] == (e < 2 ? seg_lo : seg_hi));
                const float pv = vis ? exp2f(s[nt * 4 + e] * p.scale_log2 - tLse[qi]) : 0.0f;
                s[nt * 4 + e] = pv;
                dp[nt * 4 + e] = pv * (dp[nt * 4 + e] - tDelta[qi]);
            }

        /* Pᵀ and dSᵀ as A operands (16 queries per product); dSᵀ also to shared
         * memory, row = key, 16-byte chunk nt of the row at nt ^ (row % 8). */
        uint32_t pa[4][4], sa[4][4];
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                pa[kk][j] = pack_bf16(s[8 * kk + 2 * j], s[8 * kk + 2 * j + 1]);
                sa[kk][j] = pack_bf16(dp[8 * kk + 2 * j], dp[8 * kk + 2 * j + 1]);
            }
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            const int r_lo = 64 * wg + 16 * warp + g, r_hi = r_lo + 8;
            *(uint32_t *)(sdS + r_lo * 128 + ((nt ^ (r_lo & 7)) << 4) + 4 * t4) = sa[nt / 2][(nt % 2) * 2];
            *(uint32_t *)(sdS + r_hi * 128 + ((nt ^ (r_hi & 7)) << 4) + 4 * t4) = sa[nt / 2][(nt % 2) * 2 + 1];
        }

        /* dV += Pᵀ dO and dK += dSᵀ Q: dO and Q (queries x D) read N-major, their
         * halves BQ * 128 bytes apart, 8-query groups 1024 bytes apart. */
        reg_fence<DT * 4>(dv);
        reg_fence<DT * 4>(dk);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            wgmma_m64n128k16_rs_tb(dv, pa[kk], smem_desc_sw128(tdO + kk * 16 * 128, BQ * 128, 1024));
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            wgmma_m64n128k16_rs_tb(dk, sa[kk], smem_desc_sw128(tQ + kk * 16 * 128, BQ * 128, 1024));
        wgmma_commit();

        fence_proxy_async();   /* the dSᵀ stores, visible to the tensor cores */
        __syncthreads();       /* dSᵀ of both warpgroups is complete */

        /* dQ (64 queries x columns 64 wg .. 64 wg + 63) = dS K over the 128 keys:
         * dS is the stored dSᵀ read M-major (8-key groups 1024 bytes apart), K
         * the half wg of the key tile read N-major. */
        float dq[32];
#pragma unroll
        for (int i = 0; i < 32; i++) dq[i] = 0.0f;
        reg_fence<32>(dq);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++)
            wgmma_m64n64k16_ss<1>(dq, smem_desc_sw128(sdS + kk * 16 * 128, BK * 128, 1024),
                                  smem_desc_sw128(sK + wg * BK * 128 + kk * 16 * 128, BK * 128, 1024));
        wgmma_commit();
        wgmma_wait<0>();   /* also the dV, dK products */
        reg_fence<32>(dq);
        reg_fence<DT * 4>(dv);
        reg_fence<DT * 4>(dk);
        reg_fence<4>(pa);
        reg_fence<4>(sa);

        /* Element (nt, e) of dq: query row 16 warp + g + 8 (e / 2), column 64 wg + 8 nt + 2 t4 + e % 2. */
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int query = q0 + 16 * warp + g + 8 * hf;
            if (query >= T) continue;
            float *acc = p.dq_acc + (((size_t)b * T + query) * H + h) * D + 64 * wg + 2 * t4;
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
                atomicAdd((float2 *)(acc + nt * 8), make_float2(dq[nt * 4 + 2 * hf] * p.scale, dq[nt * 4 + 2 * hf + 1] * p.scale));
        }
        stage ^= 1;
        h = nh, qt = nq;
    }

    /* dK (scaled) and dV rows of this thread's keys. */
    bf16 *gdk = p.dk + koff, *gdv = p.dv + koff;
#pragma unroll
    for (int dt = 0; dt < DT; dt++) {
        const int col = dt * 8 + 2 * t4;
        if (key_lo < T) {
            *(uint32_t *)(gdk + (size_t)key_lo * kstride + col) = pack_bf16(dk[dt * 4] * p.scale, dk[dt * 4 + 1] * p.scale);
            *(uint32_t *)(gdv + (size_t)key_lo * kstride + col) = pack_bf16(dv[dt * 4], dv[dt * 4 + 1]);
        }
        if (key_hi < T) {
            *(uint32_t *)(gdk + (size_t)key_hi * kstride + col) = pack_bf16(dk[dt * 4 + 2] * p.scale, dk[dt * 4 + 3] * p.scale);
            *(uint32_t *)(gdv + (size_t)key_hi * kstride + col) = pack_bf16(dv[dt * 4 + 2], dv[dt * 4 + 3]);
        }
    }
#elif defined(__CUDA_ARCH__)
    __trap();   /* built without sm_90a: attention_bwd_sm90() never launches this */
#endif
}

bool attention_bwd_sm90(backend *be, const attn_params &p)
{
    if (!attention_sm90(be)) return false;
    static bool configured = false;   /* raise the dynamic shared-memory limit once */
    if (!attn_smem_opt_in(be, attention_bwd_sm90_kernel, bwd90::BYTES, "attention_bwd", &configured)) return true;
    dim3 grid((unsigned)((p.T + bwd90::BK - 1) / bwd90::BK), (unsigned)p.Hkv, (unsigned)p.B);
    attention_bwd_sm90_kernel<<<grid, bwd90::THREADS, bwd90::BYTES, cuda_stream(be)>>>(p);
    cuda_check_launch(be, "attention_bwd");
    return true;
}
