/* finetune/engine/ops/cuda/attention_fwd.cu - CUDA twin of op_attention_fwd: causal
 * grouped-query attention, flash-attention style (attention.c
 * holds the reference).
 *
 * Design. A block of 4 warps owns BQ = 64 * MT query rows of one (batch,
 * head); each warp owns 16 * MT of them (MT m-tiles of 16 rows). The block
 * walks the key tiles 0 .. its last row, 64 keys at a time, K and V double
 * buffered in shared memory with cp.async (the next tile loads while this one
 * is used). Per key tile a warp computes S = Q Kᵀ (16 MT x 64, fp32, tensor
 * cores), masks it (causal near the diagonal; segments on every tile when
 * given), updates the online softmax (running max m and sum l per row, base-2
 * exponents with the 1/sqrt(D) scale folded in), and accumulates O += P V with
 * P taken straight from the S registers. Nothing of size T x T exists
 * anywhere; the epilogue writes O / l and lse = ln(sum exp(scores)).
 * With segment ids, a small pre-pass records each 64-row tile's min and max
 * id, and the block visits only the key tiles whose range meets its own (for
 * packed sequences: the tiles of its own sequences), so packing costs about
 * sum(len^2) instead of T^2.
 *
 * Launch: grid (ceil(T / BQ), H, B), 128 threads; the query tiles run last to
 * first so that the long (late) rows start first and the short ones fill the
 * tail. Shared memory: Q tile + 2 x (K, V) tiles + 2 x 64 key segment ids
 * (104 KB at D = 128, MT = 2: two blocks per H100 SM). With MT = 1 the Q tile
 * borrows the second K stage (Q is in registers before that stage is first
 * filled): 100.5 KB at D = 192, two blocks per H100 SM, too much for the 99 KB
 * of an RTX 4090 (the launch then fails and says so).
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "finetune/engine/ops/ops_cuda.h"
#include "attention_common.cuh"

#include "core/status.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>

/* From backend/backend_cuda.cu. */

/* MT = 16-row m-tiles per warp (1 or 2). With MT = 2 every K/V fragment read
 * from shared memory feeds twice as many mma instructions (shared-memory
 * bandwidth, not the tensor cores, is the limit of this design); Q then no
 * longer fits in registers next to O and is re-read from shared memory.
 * With MT = 1, Q is read into registers once and its tile (64 rows, the size
 * of a K tile) is K stage 1, which the first prefetch overwrites. */
template <int D, int MT>
struct fwd_cfg {
    static constexpr int ROWS = 16 * MT;                                      /* query rows per warp */
    static constexpr int BQ = ATTN_WARPS * ROWS;                              /* query rows per block */
    static constexpr bool Q_IN_REGS = MT == 1;
    static constexpr int LD = D + ATTN_PAD;
    static constexpr size_t K = Q_IN_REGS ? 0 : (size_t)BQ * LD * 2;          /* bf16 [2][64][LD] */
    static constexpr size_t Q = Q_IN_REGS ? K + (size_t)ATTN_BK * LD * 2 : 0; /* bf16 [BQ][LD] */
    static constexpr size_t V = K + (size_t)2 * ATTN_BK * LD * 2;             /* bf16 [2][64][LD] */
    static constexpr size_t SEG = V + (size_t)2 * ATTN_BK * LD * 2;           /* int [2][64] */
    static constexpr size_t BYTES = SEG + (size_t)2 * ATTN_BK * 4;
};

/* Widest MT per head size: at D = 192 two m-tiles would hold 2 x 24 x 4 fp32
 * output accumulators a thread, and spill. */
template <int D>
constexpr int fwd_max_mt = D <= 128 ? 2 : 1;

/* out (B*T, H, D) and lse (B*T, H) from q (B*T, H, D), k, v (B*T, Hkv, D).
 * SKIP: visit only the key tiles whose segment ids can meet the block's (a
 * separate instantiation, so that the loop without segments stays plain). */
template <int D, int MT, bool SKIP>
__global__ void __launch_bounds__(ATTN_THREADS) attention_fwd_kernel(attn_params p)
{
    typedef fwd_cfg<D, MT> L;
    constexpr int LD = L::LD, KT = D / 16, NT = ATTN_BK / 8, DT = D / 8, ROWS = L::ROWS, BQ = L::BQ;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = (bf16 *)(smem + L::Q), *sK = (bf16 *)(smem + L::K), *sV = (bf16 *)(smem + L::V);
    int *sSeg = (int *)(smem + L::SEG);

    const int T = p.T, H = p.H, Hkv = p.Hkv;
    const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z, kvh = h / p.group;
    const int q0 = qt * BQ;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
    const int wrow0 = q0 + warp * ROWS;   /* this warp's first query row */
    const size_t qstride = (size_t)H * D, kstride = (size_t)Hkv * D;
    const bf16 *gq = p.q + ((size_t)b * T * H + h) * D;
    const bf16 *gk = p.k + ((size_t)b * T * Hkv + kvh) * D;
    const bf16 *gv = p.v + ((size_t)b * T * Hkv + kvh) * D;
    const int32_t *seg = p.seg ? p.seg + (size_t)b * T : NULL;
    const int kend = min(q0 + BQ, T), nkt = (kend + ATTN_BK - 1) / ATTN_BK;   /* keys 0 .. last row of the block */
    const int W = p.window;
    /* with a window, the block's first row sees no key before q0 - W + 1 */
    const int kfirst = W && q0 - W + 1 > 0 ? (q0 - W + 1) / ATTN_BK : 0;

    /* With segments, only key tiles whose id range meets this block's are visited
     * (the diagonal tile always is: it holds the rows' own keys). */
    const int *rng = SKIP ? p.seg_ranges + (size_t)b * ((T + 63) / 64) * 2 : NULL;
    int qlo = 0, qhi = 0;
    if (SKIP) {
        qlo = rng[2 * (q0 / 64)], qhi = rng[2 * (q0 / 64) + 1];
        for (int t = q0 / 64 + 1; t * 64 < kend; t++) qlo = min(qlo, rng[2 * t]), qhi = max(qhi, rng[2 * t + 1]);
    }
    auto next_tile = [&](int kt) {
        while (SKIP && kt < nkt && !ranges_overlap(rng, kt, qlo, qhi)) kt++;
        return kt;
    };

    /* Q tile (group 0), then the first key tile (group 1). */
    load_tile_async<D, BQ>(sQ, gq, qstride, q0, T);
    cp_async_commit();
    int kt_i = next_tile(kfirst);
    load_tile_async<D>(sK, gk, kstride, kt_i * ATTN_BK, T);
    load_tile_async<D>(sV, gv, kstride, kt_i * ATTN_BK, T);
    if (seg && threadIdx.x < ATTN_BK) {
        const int key = kt_i * ATTN_BK + threadIdx.x;
        sSeg[threadIdx.x] = key < T ? seg[key] : -1;
    }
    cp_async_commit();

    /* This thread's query rows are wrow0 + 16 mt + g + 8 hf (g and g + 8 of each
     * m-tile); their segments: */
    int rseg[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int r = wrow0 + mt * 16 + g + 8 * hf;
            rseg[mt][hf] = seg && r < T ? seg[r] : 0;
        }

    cp_async_wait<1>();
    __syncthreads();
    uint32_t qf[L::Q_IN_REGS ? KT : 1][4];   /* Q (16 x D) as A fragments, when MT == 1 */
    if (L::Q_IN_REGS) {
#pragma unroll
        for (int kt = 0; kt < KT; kt++)
            ldmatrix_x4(qf[kt], sQ + (warp * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + kt * 16 + (lane / 16) * 8);
        __syncthreads();   /* every warp has its Q: the first prefetch may now overwrite the tile (K stage 1) */
    }

    float o[MT][DT][4];
    float m[MT][2], l[MT][2];   /* running max (base-2 units) and this thread's part of the row sum */
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int i = 0; i < DT; i++) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
    }

    /* Tiles alternate between the two stages in the order they are visited:
     * the first (kfirst, or the first whose segments meet) went to stage 0. */
    for (int step = 0; kt_i < nkt; step++) {
        const int stage = step & 1, k0 = kt_i * ATTN_BK, kt_next = next_tile(kt_i + 1);
        /* Prefetch the next key tile into the other stage (freed by the barrier
         * that ended the previous iteration). The group is committed even when
         * empty so that wait<1> always means "this tile has landed". */
        if (kt_next < nkt) {
            const int nk0 = kt_next * ATTN_BK;
            load_tile_async<D>(sK + (stage ^ 1) * ATTN_BK * LD, gk, kstride, nk0, T);
            load_tile_async<D>(sV + (stage ^ 1) * ATTN_BK * LD, gv, kstride, nk0, T);
            if (seg && threadIdx.x < ATTN_BK)
                sSeg[(stage ^ 1) * ATTN_BK + threadIdx.x] = nk0 + threadIdx.x < T ? seg[nk0 + threadIdx.x] : -1;
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const bf16 *tK = sK + stage * ATTN_BK * LD, *tV = sV + stage * ATTN_BK * LD;
        const int *tSeg = sSeg + stage * ATTN_BK;

        /* Keys past this warp's last row, or (with a window) before its first row's
         * window, are invisible to all its rows: nothing to do for this tile (the
         * warp still takes part in the barriers). */
        if (k0 <= wrow0 + ROWS - 1 && (!W || k0 + ATTN_BK - 1 > wrow0 - W)) {
            /* S (ROWS x 64) = Q Kᵀ: per 16-wide slice of D, one ldmatrix gives the
             * B fragments of two 8-key column tiles, used by every m-tile. */
            float s[MT][NT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int i = 0; i < NT; i++) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.0f;
#pragma unroll
            for (int kt = 0; kt < KT; kt++) {
                uint32_t qa[MT][4];
                if (!L::Q_IN_REGS) {
#pragma unroll
                    for (int mt = 0; mt < MT; mt++)
                        ldmatrix_x4(qa[mt], sQ + (warp * ROWS + mt * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + kt * 16 +
                                                (lane / 16) * 8);
                }
#pragma unroll
                for (int np = 0; np < NT / 2; np++) {
                    uint32_t kb[4];
                    ldmatrix_x4(kb, tK + (np * 16 + (lane % 8) + (lane / 16) * 8) * LD + kt * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        const uint32_t *a = L::Q_IN_REGS ? qf[kt] : qa[mt];
                        mma_bf16(s[mt][2 * np], a, kb[0], kb[1]);
                        mma_bf16(s[mt][2 * np + 1], a, kb[2], kb[3]);
                    }
                }
            }

            /* Scale to base-2 units and mask: key j is visible to row i iff j <= i,
             * i - j < W (with a window) and seg[j] == seg[i]. Keys up to the warp's
             * first row, and within its last row's window, are all visible. */
            const bool causal = k0 + ATTN_BK - 1 > wrow0 || (W && k0 <= wrow0 + ROWS - 1 - W);
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int key = k0 + nt * 8 + 2 * t4 + (e & 1), hf = e / 2;
                        const int row = wrow0 + mt * 16 + g + 8 * hf;
                        bool vis = !causal || (key <= row && (!W || row - key < W));
                        if (seg) vis = vis && tSeg[key - k0] == rseg[mt][hf];
                        s[mt][nt][e] = vis ? s[mt][nt][e] * p.scale_log2 : -INFINITY;
                    }

#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                /* Online softmax; the row max is reduced over the quad (the 4 lanes sharing a row). */
                float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    mx[0] = fmaxf(mx[0], fmaxf(s[mt][nt][0], s[mt][nt][1]));
                    mx[1] = fmaxf(mx[1], fmaxf(s[mt][nt][2], s[mt][nt][3]));
                }
                float base[2], corr[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
#pragma unroll
                    for (int off = 1; off < 4; off *= 2) mx[hf] = fmaxf(mx[hf], __shfl_xor_sync(0xffffffffu, mx[hf], off));
                    const float mn = fmaxf(m[mt][hf], mx[hf]);
                    /* A row with nothing visible yet keeps max -inf: subtract 0 instead (exp2 gives 0). */
                    base[hf] = mn == -INFINITY ? 0.0f : mn;
                    corr[hf] = exp2f(m[mt][hf] - base[hf]);
                    m[mt][hf] = mn;
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        s[mt][nt][e] = exp2f(s[mt][nt][e] - base[e / 2]);
                        sum[e / 2] += s[mt][nt][e];
                    }
                }
#pragma unroll
                for (int hf = 0; hf < 2; hf++) l[mt][hf] = l[mt][hf] * corr[hf] + sum[hf];
#pragma unroll
                for (int dt = 0; dt < DT; dt++) {
                    o[mt][dt][0] *= corr[0];
                    o[mt][dt][1] *= corr[0];
                    o[mt][dt][2] *= corr[1];
                    o[mt][dt][3] *= corr[1];
                }
            }

            /* O (ROWS x D) += P (ROWS x 64) V (64 x D): P's C fragments of key
             * columns 16kk..16kk+15 are the A fragment; V's B fragments come transposed. */
#pragma unroll
            for (int kk = 0; kk < ATTN_BK / 16; kk++) {
                uint32_t pa[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < D / 16; dp++) {
                    uint32_t vb[4];
                    ldmatrix_x4_trans(vb, tV + (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + dp * 16 + (lane / 16) * 8);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma_bf16(o[mt][2 * dp], pa[mt], vb[0], vb[1]);
                        mma_bf16(o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
                    }
                }
            }
        }
        __syncthreads();   /* this stage is refilled by the next iteration's prefetch */
        kt_i = kt_next;
    }

    /* Epilogue: full row sums, O / l, lse in natural-log units. */
    bf16 *go = p.out + ((size_t)b * T * H + h) * D;
    float *gl = p.lse + (size_t)b * T * H + h;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
#pragma unroll
            for (int off = 1; off < 4; off *= 2) l[mt][hf] += __shfl_xor_sync(0xffffffffu, l[mt][hf], off);
            const int r = wrow0 + mt * 16 + g + 8 * hf;
            if (r >= T) continue;
            const float inv = l[mt][hf] > 0 ? 1.0f / l[mt][hf] : 0.0f;
#pragma unroll
            for (int dt = 0; dt < DT; dt++)
                *(uint32_t *)(go + (size_t)r * qstride + dt * 8 + 2 * t4) =
                    pack_bf16(o[mt][dt][2 * hf] * inv, o[mt][dt][2 * hf + 1] * inv);
            if (t4 == 0) gl[(size_t)r * H] = (m[mt][hf] + log2f(l[mt][hf])) * ATTN_LN2;
        }
    }
}

template <int D, int MT, bool SKIP>
static void launch_fwd(backend *be, const attn_params &p)
{
    static bool configured = false;   /* raise the dynamic shared-memory limit once per kernel */
    const size_t smem = fwd_cfg<D, MT>::BYTES;
    if (smem > (size_t)attn_smem_limit()) {
        be_fail(be, DS_EINTERNAL, "attention_fwd: head_dim %d needs %zu bytes of shared memory per block; this GPU "
                "allows %d", D, smem, attn_smem_limit());
        return;
    }
    if (!attn_smem_opt_in(be, attention_fwd_kernel<D, MT, SKIP>, smem, "attention_fwd", &configured)) return;
    const int bq = fwd_cfg<D, MT>::BQ;
    dim3 grid((unsigned)((p.T + bq - 1) / bq), (unsigned)p.H, (unsigned)p.B);
    attention_fwd_kernel<D, MT, SKIP><<<grid, ATTN_THREADS, smem, cuda_stream(be)>>>(p);
    cuda_check_launch(be, "attention_fwd");
}

/* MT = 2 unless asked otherwise, its tiles exceed the block's shared-memory
 * limit (an RTX 4090 allows 99 KB: D = 128 then runs with MT = 1) or the head
 * is too wide for it (D = 192: always MT = 1; no MT = 2 kernel is built). */
template <int D>
static void launch_fwd_rows(backend *be, const attn_params &p, int mt)
{
    const bool skip = p.seg_ranges != NULL;
    if constexpr (fwd_max_mt<D> == 2) {
        if (mt == 2 && fwd_cfg<D, 2>::BYTES <= (size_t)attn_smem_limit()) {
            skip ? launch_fwd<D, 2, true>(be, p) : launch_fwd<D, 2, false>(be, p);
            return;
        }
    }
    skip ? launch_fwd<D, 1, true>(be, p) : launch_fwd<D, 1, false>(be, p);
}

/* ranges (B, ntiles, 2) = min and max of seg over each 64-row tile of each batch
 * row. One warp per tile (two ids per lane), 8 tiles per 256-thread block. */
__global__ void attention_seg_ranges_kernel(int *ranges, const int32_t *seg, int B, int T)
{
    const int ntiles = (T + 63) / 64, tile = blockIdx.x * 8 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (tile >= B * ntiles) return;
    const int b = tile / ntiles, r0 = (tile % ntiles) * 64;
    int lo = INT_MAX, hi = INT_MIN;
    for (int r = r0 + lane; r < min(r0 + 64, T); r += 32) {
        const int v = seg[(size_t)b * T + r];
        lo = min(lo, v), hi = max(hi, v);
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
        lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, off));
        hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, off));
    }
    if (lane == 0) ranges[2 * tile] = lo, ranges[2 * tile + 1] = hi;
}

/* Fill `ranges` ((B, ceil(T/64), 2) ints on the device) from seg; shared with attention_bwd.cu. */
extern "C" bool attention_seg_ranges(backend *be, int *ranges, const int32_t *seg, int B, int T)
{
    const int tiles = B * ((T + 63) / 64);
    attention_seg_ranges_kernel<<<(tiles + 7) / 8, 256, 0, cuda_stream(be)>>>(ranges, seg, B, T);
    return cuda_check_launch(be, "attention_seg_ranges");
}

/* Shape checks shared with the backward (attention_bwd.cu). */
extern "C" bool attention_check_args(backend *be, const char *op, const void *q, const void *k, const void *v, int B,
                                     int T, int H, int Hkv, int D)
{
    if (D != 16 && D != 32 && D != 64 && D != 128 && D != 192) {
        be_fail(be, DS_EINTERNAL, "%s: head_dim %d is not supported by the CUDA kernels (16, 32, 64, 128 or 192)", op, D);
        return false;
    }
    if (Hkv <= 0 || H % Hkv) {
        be_fail(be, DS_EINTERNAL, "%s: %d query heads are not a multiple of %d kv heads", op, H, Hkv);
        return false;
    }
    if ((uintptr_t)q % 16 || (uintptr_t)k % 16 || (uintptr_t)v % 16) {
        be_fail(be, DS_EINTERNAL, "%s: q, k and v must be 16-byte aligned on CUDA", op);
        return false;
    }
    if (H > 65535 || B > 65535) {
        be_fail(be, DS_EINTERNAL, "%s: B = %d, H = %d: at most 65535 each on CUDA", op, B, H);
        return false;
    }
    return true;
}

extern "C" void attention_fwd_cuda(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                                   const int32_t *seg, const attn_shape *sh)
{
    const int B = sh->B, T = sh->T, H = sh->H, Hkv = sh->Hkv, D = sh->D;
    if (B <= 0 || T <= 0 || H <= 0) return;
    if (!attention_check_args(be, "attention_fwd", q, k, v, B, T, H, Hkv, D)) return;
    if ((uintptr_t)out % 4) {
        be_fail(be, DS_EINTERNAL, "attention_fwd: out must be 4-byte aligned on CUDA");
        return;
    }
    attn_params p = {};
    p.q = (const bf16 *)q, p.k = (const bf16 *)k, p.v = (const bf16 *)v;
    p.out = (bf16 *)out, p.lse = lse, p.seg = seg;
    p.B = B, p.T = T, p.H = H, p.Hkv = Hkv, p.group = H / Hkv, p.window = sh->window;
    p.scale = attn_scale(sh);
    p.scale_log2 = p.scale * ATTN_LOG2E;
    if (seg) {
        int *ranges = (int *)be_workspace(be, WS_ATTN, (size_t)B * ((T + 63) / 64) * 2 * sizeof(int));
        if (!ranges || !attention_seg_ranges(be, ranges, seg, B, T)) return;
        p.seg_ranges = ranges;
    }
    /* Head size 128 on an H100: the wgmma kernel, unless asked for the mma.sync one (attn_fwd_rows). */
    if (D == 128 && attention_fwd_sm90(be, p)) return;
    /* Rows per warp: 32 (two m-tiles) by default, 16 at D = 192; the backend's
     * attn_fwd_rows = 16 selects one m-tile (a tuning choice that bench kernels compares). */
    const int mt = be->attn_fwd_rows == 16 ? 1 : 2;
    switch (D) {
    case 16: launch_fwd_rows<16>(be, p, mt); break;
    case 32: launch_fwd_rows<32>(be, p, mt); break;
    case 64: launch_fwd_rows<64>(be, p, mt); break;
    case 128: launch_fwd_rows<128>(be, p, mt); break;
    default: launch_fwd_rows<192>(be, p, mt); break;
    }
}
