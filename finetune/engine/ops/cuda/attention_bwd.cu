/* finetune/engine/ops/cuda/attention_bwd.cu - CUDA twin of op_attention_bwd (the
 * reference is in attention.c), flash-attention-2 style.
 *
 * Three kernels:
 *  1. attention_delta_kernel: delta (B*T, H) = rowsum(dout * out), fp32.
 *  2. attention_bwd_kernel: a block of 4 warps owns 64 keys of one (batch, kv
 *     head); each warp owns 16 of them. K and V stay in shared memory; the
 *     block walks every query head of the group and every query tile at or
 *     after the diagonal, Q and dO tiles loaded with cp.async (the next tile
 *     loads while this one finishes its dQ part). Per query tile, in two halves
 *     of 32 queries (to keep registers low), a warp recomputes
 *         Sᵀ = K Qᵀ, Pᵀ = exp2(Sᵀ scale_log2 - lse_log2), dPᵀ = V dOᵀ,
 *         dSᵀ = Pᵀ (dPᵀ - delta)
 *     in registers (keys are rows, so Pᵀ and dSᵀ are directly the A operands of)
 *         dV += Pᵀ dO,   dK += dSᵀ Q,
 *     accumulated in fp32 registers across the whole loop (no atomics for dK,
 *     dV: the block owns those keys for every head of the group). dSᵀ also goes
 *     to shared memory, from where each warp takes 16 query rows of
 *         dQ += dS K
 *     and adds them with fp32 atomics into a (B*T, H, D) accumulator.
 *  3. attention_dq_kernel: dq (bf16) = the accumulator.
 * With segment ids, query tiles whose id range cannot meet the key tile's
 * (attention_seg_ranges, in attention_fwd.cu) are skipped before loading.
 * No T x T matrix is stored; memory is the fp32 dq accumulator and delta.
 *
 * Launch of kernel 2: grid (ceil(T / 64), Hkv, B), 128 threads; the first key
 * tiles have the most query tiles to visit and are scheduled first. Shared
 * memory: K, V, Q, dO tiles, the 64 x 64 dSᵀ tile, lse/delta/segment rows
 * (78 KB at D = 128; two blocks fit on an H100 SM; 110 KB at D = 192: still
 * two on an H100, too much for the 99 KB of an RTX 4090, where the launch
 * fails and says so). At D = 192 the dK and dV accumulators (2 x 24 x 4 fp32
 * a thread) bring the kernel to the 255-register limit with a few spilled
 * words; splitting D over two blocks would avoid that but recompute S and dP
 * twice.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "finetune/engine/ops/ops_cuda.h"
#include "attention_common.cuh"

#include "core/status.h"

#include <math.h>

/* From backend/backend_cuda.cu. */
/* From attention_fwd.cu. */
extern "C" bool attention_seg_ranges(backend *be, int *ranges, const int32_t *seg, int B, int T);
extern "C" bool attention_check_args(backend *be, const char *op, const void *q, const void *k, const void *v, int B,
                                     int T, int H, int Hkv, int D);

#define LDS (ATTN_BQ + ATTN_PAD)   /* row length of the dSᵀ tile (keys x queries) */

template <int D>
struct bwd_smem {
    static constexpr int LD = D + ATTN_PAD;
    static constexpr size_t TILE = (size_t)64 * LD * 2;
    static constexpr size_t K = 0, V = K + TILE, Q = V + TILE, DO = Q + TILE;   /* bf16 [64][LD] each */
    static constexpr size_t DS = DO + TILE;                                      /* bf16 [64 keys][LDS] */
    static constexpr size_t LSE = DS + (size_t)ATTN_BK * LDS * 2;                /* float [64]: lse * log2(e) */
    static constexpr size_t DELTA = LSE + ATTN_BQ * 4;                           /* float [64] */
    static constexpr size_t SEG = DELTA + ATTN_BQ * 4;                           /* int [64] */
    static constexpr size_t BYTES = SEG + ATTN_BQ * 4;
};

/* delta (rows) = sum_d dout[row][d] * out[row][d] over rows = B*T*H of length D.
 * One warp per row, 8 rows per 256-thread block. */
__global__ void attention_delta_kernel(float *delta, const bf16 *dout, const bf16 *out, size_t rows, int D)
{
    size_t row = (size_t)blockIdx.x * 8 + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    float s = 0;
    for (int d = lane; d < D; d += 32) s += __bfloat162float(dout[row * D + d]) * __bfloat162float(out[row * D + d]);
#pragma unroll
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) delta[row] = s;
}

/* dq (n) bf16 = acc (n) fp32, grid-stride. */
__global__ void attention_dq_kernel(bf16 *dq, const float *acc, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dq[i] = __float2bfloat16_rn(acc[i]);
}

/* Start loading query tile `it` of this block's walk (head h, rows q0..q0+63):
 * Q and dO by cp.async, lse/delta/segments by plain stores. */
template <int D>
__device__ __forceinline__ void bwd_load_queries(const attn_params &p, unsigned char *smem, int b, int h, int q0)
{
    typedef bwd_smem<D> L;
    const size_t stride = (size_t)p.H * D, off = ((size_t)b * p.T * p.H + h) * D;
    load_tile_async<D>((bf16 *)(smem + L::Q), p.q + off, stride, q0, p.T);
    load_tile_async<D>((bf16 *)(smem + L::DO), p.dout + off, stride, q0, p.T);
    const int i = threadIdx.x;
    if (i < ATTN_BQ) {
        const int row = q0 + i;
        const bool valid = row < p.T;
        const size_t at = ((size_t)b * p.T + row) * p.H + h;
        ((float *)(smem + L::LSE))[i] = valid ? p.lse[at] * ATTN_LOG2E : 0.0f;
        ((float *)(smem + L::DELTA))[i] = valid ? p.delta[at] : 0.0f;
        ((int *)(smem + L::SEG))[i] = valid && p.seg ? p.seg[(size_t)b * p.T + row] : -1;
    }
}

template <int D>
__global__ void __launch_bounds__(ATTN_THREADS) attention_bwd_kernel(attn_params p)
{
    typedef bwd_smem<D> L;
    constexpr int LD = L::LD, KT = D / 16, DT = D / 8;
    constexpr int DQ_PAIRS = KT >= 2 ? 2 : 1;   /* dQ is done 16 * DQ_PAIRS columns at a time */
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sK = (bf16 *)(smem + L::K), *sV = (bf16 *)(smem + L::V), *sQ = (bf16 *)(smem + L::Q);
    bf16 *sdO = (bf16 *)(smem + L::DO), *sdS = (bf16 *)(smem + L::DS);
    const float *sLse = (const float *)(smem + L::LSE), *sDelta = (const float *)(smem + L::DELTA);
    const int *sSeg = (const int *)(smem + L::SEG);

    const int T = p.T, H = p.H;
    const int kt_blk = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
    const int k0 = kt_blk * ATTN_BK;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
    const int nqt = (T + ATTN_BQ - 1) / ATTN_BQ, hend = (kvh + 1) * p.group;
    const size_t kstride = (size_t)p.Hkv * D, koff = ((size_t)b * T * p.Hkv + kvh) * D;

    /* The walk: every query head of the group, and for each the query tiles from
     * the diagonal on whose segment ids can meet this key tile's (all of them
     * without segments; the diagonal tile always). */
    const int *rng = p.seg_ranges ? p.seg_ranges + (size_t)b * nqt * 2 : NULL;
    const int klo = rng ? rng[2 * kt_blk] : 0, khi = rng ? rng[2 * kt_blk + 1] : 0;
    /* With a window W, the keys k0..k0+63 are seen by the queries up to k0 + 63 + W - 1. */
    const int W = p.window;
    const int qt_end = W ? min(nqt, (k0 + ATTN_BK - 1 + W - 1) / ATTN_BQ + 1) : nqt;
    auto next_qt = [&](int qt) {
        while (rng && qt < qt_end && !ranges_overlap(rng, qt, klo, khi)) qt++;
        return qt;
    };

    load_tile_async<D>(sK, p.k + koff, kstride, k0, T);
    load_tile_async<D>(sV, p.v + koff, kstride, k0, T);
    bwd_load_queries<D>(p, smem, b, kvh * p.group, kt_blk * ATTN_BQ);
    cp_async_commit();

    /* This thread's two keys (rows g and g + 8 of the warp's 16) and their segments. */
    const int key_lo = k0 + warp * 16 + g, key_hi = key_lo + 8;
    const int32_t *seg = p.seg ? p.seg + (size_t)b * T : NULL;
    const int seg_lo = seg && key_lo < T ? seg[key_lo] : -2, seg_hi = seg && key_hi < T ? seg[key_hi] : -2;

    float dk[DT][4], dv[DT][4];
#pragma unroll
    for (int i = 0; i < DT; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[i][e] = dv[i][e] = 0.0f;

    for (int h = kvh * p.group, qt = kt_blk; h < hend;) {
        const int q0 = qt * ATTN_BQ;
        int nh = h, nq = next_qt(qt + 1);   /* the step after this one */
        if (nq >= qt_end) nh = h + 1, nq = kt_blk;
        cp_async_wait<0>();
        __syncthreads();   /* this tile has landed; every warp is done with the last dS tile */
        const bool masked = qt == kt_blk || q0 + ATTN_BQ > T || seg || (W && q0 + ATTN_BQ - 1 - k0 >= W);

        for (int half = 0; half < 2; half++) {
            const int qh = half * 32;   /* first query (in the tile) of this half */
            /* Sᵀ (16 keys x 32 queries) = K Qᵀ and dPᵀ = V dOᵀ. */
            float s[4][4], dp[4][4];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[i][e] = dp[i][e] = 0.0f;
#pragma unroll
            for (int kt = 0; kt < KT; kt++) {
                uint32_t ka[4], va[4];
                const int arow = (warp * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + kt * 16 + (lane / 16) * 8;
                ldmatrix_x4(ka, sK + arow);
                ldmatrix_x4(va, sV + arow);
#pragma unroll
                for (int np = 0; np < 2; np++) {
                    uint32_t qb[4], ob[4];
                    const int brow = (qh + np * 16 + (lane % 8) + (lane / 16) * 8) * LD + kt * 16 + ((lane / 8) % 2) * 8;
                    ldmatrix_x4(qb, sQ + brow);
                    ldmatrix_x4(ob, sdO + brow);
                    mma_bf16(s[2 * np], ka, qb[0], qb[1]);
                    mma_bf16(s[2 * np + 1], ka, qb[2], qb[3]);
                    mma_bf16(dp[2 * np], va, ob[0], ob[1]);
                    mma_bf16(dp[2 * np + 1], va, ob[2], ob[3]);
                }
            }
            /* Pᵀ and dSᵀ (without the 1/sqrt(D), applied to dK and dQ at the end). */
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int qi = qh + nt * 8 + 2 * t4 + (e & 1), query = q0 + qi;
                    const int key = e < 2 ? key_lo : key_hi;
                    bool vis = true;
                    if (masked)
                        vis = key <= query && query < T && (!W || query - key < W) &&
                              (!seg || sSeg[qi] == (e < 2 ? seg_lo : seg_hi));
                    const float pv = vis ? exp2f(s[nt][e] * p.scale_log2 - sLse[qi]) : 0.0f;
                    s[nt][e] = pv;
                    dp[nt][e] = pv * (dp[nt][e] - sDelta[qi]);
                }
            }
            /* dV (16 keys x D) += Pᵀ dO and dK += dSᵀ Q; dO and Q B fragments come transposed. */
#pragma unroll
            for (int kk = 0; kk < 2; kk++) {
                const uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                        pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                        pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
                const uint32_t sa[4] = {pack_bf16(dp[2 * kk][0], dp[2 * kk][1]), pack_bf16(dp[2 * kk][2], dp[2 * kk][3]),
                                        pack_bf16(dp[2 * kk + 1][0], dp[2 * kk + 1][1]),
                                        pack_bf16(dp[2 * kk + 1][2], dp[2 * kk + 1][3])};
#pragma unroll
                for (int dd = 0; dd < KT; dd++) {
                    uint32_t ob[4], qb[4];
                    const int brow = (qh + kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + dd * 16 + (lane / 16) * 8;
                    ldmatrix_x4_trans(ob, sdO + brow);
                    ldmatrix_x4_trans(qb, sQ + brow);
                    mma_bf16(dv[2 * dd], pa, ob[0], ob[1]);
                    mma_bf16(dv[2 * dd + 1], pa, ob[2], ob[3]);
                    mma_bf16(dk[2 * dd], sa, qb[0], qb[1]);
                    mma_bf16(dk[2 * dd + 1], sa, qb[2], qb[3]);
                }
            }
            /* dSᵀ to shared memory: rows = this warp's keys, columns = queries. */
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                const int col = qh + nt * 8 + 2 * t4;
                *(uint32_t *)(sdS + (warp * 16 + g) * LDS + col) = pack_bf16(dp[nt][0], dp[nt][1]);
                *(uint32_t *)(sdS + (warp * 16 + g + 8) * LDS + col) = pack_bf16(dp[nt][2], dp[nt][3]);
            }
        }
        __syncthreads();   /* dSᵀ complete; Q, dO, lse, delta and segments are free */
        if (nh < hend) bwd_load_queries<D>(p, smem, b, nh, nq * ATTN_BQ);
        cp_async_commit();

        /* dQ (queries 16 warp .. +15, D) += dS K, 16 * DQ_PAIRS columns at a time.
         * A = dS from the stored dSᵀ (transposed ldmatrix), B = K (transposed). */
        const int qrow0 = q0 + warp * 16;
        if (qrow0 < T) {
            uint32_t dsa[ATTN_BK / 16][4];
#pragma unroll
            for (int kk = 0; kk < ATTN_BK / 16; kk++)
                ldmatrix_x4_trans(dsa[kk], sdS + (kk * 16 + (lane % 8) + (lane / 16) * 8) * LDS + warp * 16 + ((lane / 8) % 2) * 8);
            float *acc_lo = p.dq_acc + (((size_t)b * T + qrow0 + g) * H + h) * D;
            float *acc_hi = acc_lo + (size_t)8 * H * D;
            const bool lo_ok = qrow0 + g < T, hi_ok = qrow0 + g + 8 < T;
#pragma unroll
            for (int dc = 0; dc < KT; dc += DQ_PAIRS) {
                float acc[2 * DQ_PAIRS][4];
#pragma unroll
                for (int i = 0; i < 2 * DQ_PAIRS; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
#pragma unroll
                for (int kk = 0; kk < ATTN_BK / 16; kk++) {
#pragma unroll
                    for (int j = 0; j < DQ_PAIRS; j++) {
                        uint32_t kb[4];
                        ldmatrix_x4_trans(kb, sK + (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + (dc + j) * 16 + (lane / 16) * 8);
                        mma_bf16(acc[2 * j], dsa[kk], kb[0], kb[1]);
                        mma_bf16(acc[2 * j + 1], dsa[kk], kb[2], kb[3]);
                    }
                }
#pragma unroll
                for (int i = 0; i < 2 * DQ_PAIRS; i++) {
                    const int col = dc * 16 + i * 8 + 2 * t4;
                    if (lo_ok) {
                        atomicAdd(acc_lo + col, acc[i][0] * p.scale);
                        atomicAdd(acc_lo + col + 1, acc[i][1] * p.scale);
                    }
                    if (hi_ok) {
                        atomicAdd(acc_hi + col, acc[i][2] * p.scale);
                        atomicAdd(acc_hi + col + 1, acc[i][3] * p.scale);
                    }
                }
            }
        }
        h = nh, qt = nq;
    }

    /* dK (scaled) and dV rows of this warp's keys. */
    bf16 *gdk = p.dk + koff, *gdv = p.dv + koff;
#pragma unroll
    for (int dt = 0; dt < DT; dt++) {
        const int col = dt * 8 + 2 * t4;
        if (key_lo < T) {
            *(uint32_t *)(gdk + (size_t)key_lo * kstride + col) = pack_bf16(dk[dt][0] * p.scale, dk[dt][1] * p.scale);
            *(uint32_t *)(gdv + (size_t)key_lo * kstride + col) = pack_bf16(dv[dt][0], dv[dt][1]);
        }
        if (key_hi < T) {
            *(uint32_t *)(gdk + (size_t)key_hi * kstride + col) = pack_bf16(dk[dt][2] * p.scale, dk[dt][3] * p.scale);
            *(uint32_t *)(gdv + (size_t)key_hi * kstride + col) = pack_bf16(dv[dt][2], dv[dt][3]);
        }
    }
}

template <int D>
static void launch_bwd(backend *be, const attn_params &p)
{
    static bool configured = false;   /* raise the dynamic shared-memory limit once per head size */
    const size_t smem = bwd_smem<D>::BYTES;
    if (smem > (size_t)attn_smem_limit()) {
        be_fail(be, DS_EINTERNAL, "attention_bwd: head_dim %d needs %zu bytes of shared memory per block; this GPU "
                "allows %d", D, smem, attn_smem_limit());
        return;
    }
    if (!attn_smem_opt_in(be, attention_bwd_kernel<D>, smem, "attention_bwd", &configured)) return;
    dim3 grid((unsigned)((p.T + ATTN_BK - 1) / ATTN_BK), (unsigned)p.Hkv, (unsigned)p.B);
    attention_bwd_kernel<D><<<grid, ATTN_THREADS, smem, cuda_stream(be)>>>(p);
    cuda_check_launch(be, "attention_bwd");
}

extern "C" void attention_bwd_cuda(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out,
                                   const float *lse, const void *q, const void *k, const void *v, const int32_t *seg,
                                   const attn_shape *sh)
{
    const int B = sh->B, T = sh->T, H = sh->H, Hkv = sh->Hkv, D = sh->D;
    if (B <= 0 || T <= 0 || H <= 0) return;
    if (!attention_check_args(be, "attention_bwd", q, k, v, B, T, H, Hkv, D)) return;
    if ((uintptr_t)dout % 16 || (uintptr_t)dk % 4 || (uintptr_t)dv % 4) {
        be_fail(be, DS_EINTERNAL, "attention_bwd: dout must be 16-byte aligned, dk and dv 4-byte aligned on CUDA");
        return;
    }
    const size_t rows = (size_t)B * T * H, nq = rows * D, nranges = seg ? (size_t)B * ((T + 63) / 64) * 2 : 0;
    /* workspace: dq accumulator (nq fp32), delta (rows fp32), segment ranges (ints) */
    float *ws = (float *)be_workspace(be, WS_ATTN, (nq + rows) * sizeof(float) + nranges * sizeof(int));
    if (!ws) return;
    cudaStream_t stream = cuda_stream(be);
    attn_params p = {};
    p.q = (const bf16 *)q, p.k = (const bf16 *)k, p.v = (const bf16 *)v;
    p.o = (const bf16 *)out, p.dout = (const bf16 *)dout;
    p.dk = (bf16 *)dk, p.dv = (bf16 *)dv, p.lse = (float *)lse, p.seg = seg;
    p.dq_acc = ws;
    p.delta = ws + nq;
    p.B = B, p.T = T, p.H = H, p.Hkv = Hkv, p.group = H / Hkv, p.window = sh->window;
    p.scale = attn_scale(sh);
    p.scale_log2 = p.scale * ATTN_LOG2E;

    cudaError_t e = cudaMemsetAsync(p.dq_acc, 0, nq * sizeof(float), stream);
    if (e != cudaSuccess) {
        be_fail(be, DS_ETRAIN, "device error: attention_bwd: memset: %s", cudaGetErrorString(e));
        return;
    }
    attention_delta_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(ws + nq, (const bf16 *)dout,
                                                                          (const bf16 *)out, rows, D);
    if (!cuda_check_launch(be, "attention_delta")) return;
    if (seg) {
        p.seg_ranges = (const int *)(ws + nq + rows);
        if (!attention_seg_ranges(be, (int *)(ws + nq + rows), seg, B, T)) return;
    }
    switch (D) {
    case 16: launch_bwd<16>(be, p); break;
    case 32: launch_bwd<32>(be, p); break;
    case 64: launch_bwd<64>(be, p); break;
    case 128:   /* on an H100 the wgmma kernel, unless asked for the mma.sync ones (attn_fwd_rows) */
        if (!attention_bwd_sm90(be, p)) launch_bwd<128>(be, p);
        break;
    default: launch_bwd<192>(be, p); break;
    }
    if (be->err) return;
    size_t blocks = (nq + 255) / 256;
    attention_dq_kernel<<<(unsigned)(blocks < 65535 ? blocks : 65535), 256, 0, stream>>>((bf16 *)dq, ws, nq);
    cuda_check_launch(be, "attention_dq");
}
