/* finetune/engine/ops/cuda/attention_fwd_sm90.cu - the attention forward of head
 * size 128 on Hopper's warpgroup tensor-core instructions (wgmma, sm_90a);
 * the same contract as attention_fwd.cu's kernel, which every other GPU and
 * head size keeps (attention.c holds the plain-C reference).
 *
 * Design. A block of 2 warpgroups owns BQ = 128 query rows of one (batch,
 * head); warpgroup w owns rows 64w .. 64w + 63, its warp i rows 16i .. 16i + 15
 * of those. The block walks the key tiles 0 .. its last row, BK = 64 keys at
 * a time, K and V double buffered in shared memory with cp.async
 * (the next tile loads while this one is used). Per key tile a warpgroup
 * computes S = Q Kᵀ (64 x BK, fp32) with D / 16 wgmma products reading Q and K
 * straight from shared memory, masks it and updates the online softmax in
 * registers exactly as the mma.sync kernel does (the accumulator layout per
 * warp is the same), packs P to bf16 in registers and accumulates
 * O += P V with BK / 16 products whose B operand is the V tile read N-major
 * (transposed by the tensor cores, no ldmatrix). What the mma.sync kernel
 * spends on shared-memory fragment loads (its limit) the tensor cores do here
 * from their own descriptors, for a 64-row warpgroup at a time.
 *
 * Tiles in shared memory are 128-byte swizzled (wgmma.cuh): a tile of R rows
 * of 128 bf16 is two 64-column halves [2][R][64], each row's 16-byte chunk c
 * stored at c ^ (row % 8). Layout: Q [2][BQ][64], K [2 stages][2][BK][64],
 * V the same, then 2 x BK key segment ids; 1 KB of slack aligns the start.
 *
 * Causal tiles past a warpgroup's last row are skipped (uniformly per
 * warpgroup, as wgmma needs), sliding windows and packed-segment masks are
 * applied per element where a tile needs them, and with segment ranges only
 * the key tiles whose ids can meet the block's are loaded at all. Launch: grid
 * (ceil(T / BQ), H, B), the query tiles last to first.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "finetune/engine/ops/ops_cuda.h"
#include "attention_common.cuh"
#include "wgmma.cuh"

#include "core/status.h"

#include <math.h>

/* 2 warpgroups x 64 query rows, 64 keys per tile; 97 KB of shared memory and
 * at most 128 registers a thread: two blocks per H100 SM. (Tried and slower:
 * 128-key tiles, with 2 or 3 warpgroups; the next tile's S = Q Kᵀ issued
 * before this one's P V so that the softmax overlaps with the tensor cores;
 * see the README.) */
struct fwd90 {
    static constexpr int D = 128, BK = 64, NWG = 2;
    static constexpr int BQ = 64 * NWG;
    static constexpr int THREADS = 128 * NWG;
    static constexpr size_t Q = 0;                               /* bf16 [2][BQ][64] */
    static constexpr size_t K = Q + (size_t)BQ * D * 2;          /* bf16 [2][2][BK][64] */
    static constexpr size_t V = K + (size_t)2 * BK * D * 2;      /* bf16 [2][2][BK][64] */
    static constexpr size_t SEG = V + (size_t)2 * BK * D * 2;    /* int [2][BK] */
    static constexpr size_t BYTES = SEG + (size_t)2 * BK * 4 + 1024;
    static constexpr size_t STAGE = (size_t)BK * D * 2;          /* bytes of one K (or V) stage */
};
static_assert(fwd90::BK == ATTN_BK, "the segment ranges are kept per 64 rows: a key tile is one range tile");

/* out (B*T, H, 128) and lse (B*T, H) from q (B*T, H, 128), k, v (B*T, Hkv, 128).
 * SKIP: visit only the key tiles whose segment ids can meet the block's. */
template <bool SKIP>
__global__ void __launch_bounds__(fwd90::THREADS, 2) attention_fwd_sm90_kernel(attn_params p)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    typedef fwd90 L;
    constexpr int D = L::D, BK = L::BK, BQ = L::BQ, NT = BK / 8, DT = D / 8;
    extern __shared__ unsigned char smem_raw[];
    unsigned char *smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);   /* 1024-byte aligned */
    unsigned char *sQ = smem + L::Q, *sK = smem + L::K, *sV = smem + L::V;
    int *sSeg = (int *)(smem + L::SEG);

    const int T = p.T, H = p.H, Hkv = p.Hkv;
    const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z, kvh = h / p.group;
    const int q0 = qt * BQ;
    const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
    const int g = lane / 4, t4 = lane % 4;
    const int wgrow0 = q0 + 64 * wg;        /* this warpgroup's first query row */
    const int wrow0 = wgrow0 + 16 * warp;   /* this warp's first query row */
    const size_t qstride = (size_t)H * D, kstride = (size_t)Hkv * D;
    const bf16 *gq = p.q + ((size_t)b * T * H + h) * D;
    const bf16 *gk = p.k + ((size_t)b * T * Hkv + kvh) * D;
    const bf16 *gv = p.v + ((size_t)b * T * Hkv + kvh) * D;
    const int32_t *seg = p.seg ? p.seg + (size_t)b * T : NULL;
    const int kend = min(q0 + BQ, T), nkt = (kend + BK - 1) / BK;   /* keys 0 .. last row of the block */
    const int W = p.window;
    /* with a window, the block's first row sees no key before q0 - W + 1 */
    const int kfirst = W && q0 - W + 1 > 0 ? (q0 - W + 1) / BK : 0;

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
    auto load_k = [&](int stage, int kt) {   /* K tile kt and its segment ids into a stage */
        load_tile_sw128<BK, L::THREADS>(sK + stage * L::STAGE, gk, kstride, kt * BK, T);
        if (seg && threadIdx.x < BK) {
            const int key = kt * BK + threadIdx.x;
            sSeg[stage * BK + threadIdx.x] = key < T ? seg[key] : -1;
        }
    };
    auto load_v = [&](int stage, int kt) { load_tile_sw128<BK, L::THREADS>(sV + stage * L::STAGE, gv, kstride, kt * BK, T); };

    /* This thread's query rows are wrow0 + g and wrow0 + g + 8; their segments: */
    int rseg[2];
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        const int r = wrow0 + g + 8 * hf;
        rseg[hf] = seg && r < T ? seg[r] : 0;
    }

    float o[DT * 4];           /* O (64 x 128) of the warpgroup, this thread's part */
    float m[2], l[2];          /* running max (base-2 units) and this thread's part of the row sum */
#pragma unroll
    for (int i = 0; i < DT * 4; i++) o[i] = 0.0f;
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.0f;

    /* Issue S = Q Kᵀ (64 x BK) for a K stage: slice kk of D is 16 columns of
     * half kk / 4, 32 bytes into its rows. One commit group. */
    auto issue_scores = [&](float *s, const unsigned char *tK) {
#pragma unroll
        for (int i = 0; i < NT * 4; i++) s[i] = 0.0f;
        reg_fence<NT * 4>(s);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const uint64_t da = smem_desc_sw128(sQ + (kk / 4) * BQ * 128 + wg * 64 * 128 + (kk % 4) * 32, 16, 1024);
            const uint64_t db = smem_desc_sw128(tK + (kk / 4) * BK * 128 + (kk % 4) * 32, 16, 1024);
            wgmma_m64n64k16_ss<0>(s, da, db);
        }
        wgmma_commit();
    };
    /* Issue O += P V for a V stage: P's accumulators of key columns 16kk ..
     * 16kk + 15, packed, are the A operand; V (keys x D) is read N-major, its
     * halves BK * 128 bytes apart, 8-key groups 1024 bytes apart. One group. */
    auto issue_pv = [&](const uint32_t (*pa)[4], const unsigned char *tV) {
        reg_fence<DT * 4>(o);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++)
            wgmma_m64n128k16_rs_tb(o, pa[kk], smem_desc_sw128(tV + kk * 16 * 128, BK * 128, 1024));
        wgmma_commit();
    };
    /* Mask the scores of the tile at k0, scale them to base-2 units and update
     * the online softmax: s becomes P (unnormalized), corr what O must be
     * multiplied by. The row max is reduced over the quad (the 4 lanes of a row). */
    auto softmax = [&](float *s, int k0, const int *tSeg, float corr[2]) {
        const bool causal = k0 + BK - 1 > wrow0 || (W && k0 <= wrow0 + 15 - W);
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = k0 + nt * 8 + 2 * t4 + (e & 1), hf = e / 2;
                const int row = wrow0 + g + 8 * hf;
                bool vis = !causal || (key <= row && (!W || row - key < W));
                if (seg) vis = vis && tSeg[key - k0] == rseg[hf];
                s[nt * 4 + e] = vis ? s[nt * 4 + e] * p.scale_log2 : -INFINITY;
            }
        float mx[2] = {-INFINITY, -INFINITY}, base[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            mx[0] = fmaxf(mx[0], fmaxf(s[nt * 4 + 0], s[nt * 4 + 1]));
            mx[1] = fmaxf(mx[1], fmaxf(s[nt * 4 + 2], s[nt * 4 + 3]));
        }
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
#pragma unroll
            for (int off = 1; off < 4; off *= 2) mx[hf] = fmaxf(mx[hf], __shfl_xor_sync(0xffffffffu, mx[hf], off));
            const float mn = fmaxf(m[hf], mx[hf]);
            base[hf] = mn == -INFINITY ? 0.0f : mn;   /* nothing visible yet: exp2 gives 0 */
            corr[hf] = exp2f(m[hf] - base[hf]);
            m[hf] = mn;
        }
#pragma unroll
        for (int i = 0; i < NT * 4; i++) {
            s[i] = exp2f(s[i] - base[(i % 4) / 2]);
            sum[(i % 4) / 2] += s[i];
        }
#pragma unroll
        for (int hf = 0; hf < 2; hf++) l[hf] = l[hf] * corr[hf] + sum[hf];
    };
    auto rescale = [&](const float corr[2]) {
#pragma unroll
        for (int i = 0; i < DT * 4; i++) o[i] *= corr[(i % 4) / 2];
    };
    auto pack = [&](const float *s, uint32_t (*pa)[4]) {
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
            pa[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
            pa[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
            pa[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
            pa[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
        }
    };

    /* Q, then K and V of the first tile; each later tile loads (into the other
     * stage) while this one is used. */
    int kt_i = next_tile(kfirst);
    load_tile_sw128<BQ, L::THREADS>(sQ, gq, qstride, q0, T);
    cp_async_commit();
    load_k(0, kt_i);
    load_v(0, kt_i);
    cp_async_commit();
    for (int step = 0; kt_i < nkt; step++) {
        const int stage = step & 1, k0 = kt_i * BK, kt_next = next_tile(kt_i + 1);
        if (kt_next < nkt) load_k(stage ^ 1, kt_next), load_v(stage ^ 1, kt_next);
        cp_async_commit();
        cp_async_wait<1>();
        fence_proxy_async();   /* the cp.async writes, visible to the tensor cores' reads */
        __syncthreads();
        /* Keys past the warpgroup's last row, or (with a window) before its first
         * row's window, are invisible to all its rows. */
        if (k0 <= wgrow0 + 63 && (!W || k0 + BK - 1 > wgrow0 - W)) {
            float s[NT * 4], corr[2];
            uint32_t pa[BK / 16][4];
            issue_scores(s, sK + stage * L::STAGE);
            wgmma_wait<0>();
            reg_fence<NT * 4>(s);
            softmax(s, k0, sSeg + stage * BK, corr);
            rescale(corr);
            pack(s, pa);
            issue_pv(pa, sV + stage * L::STAGE);
            wgmma_wait<0>();
            reg_fence<DT * 4>(o);
            reg_fence<BK / 16>(pa);
        }
        __syncthreads();   /* this stage is refilled by the next iteration's prefetch */
        kt_i = kt_next;
    }

    /* Epilogue: full row sums, O / l, lse in natural-log units. */
    bf16 *go = p.out + ((size_t)b * T * H + h) * D;
    float *gl = p.lse + (size_t)b * T * H + h;
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
#pragma unroll
        for (int off = 1; off < 4; off *= 2) l[hf] += __shfl_xor_sync(0xffffffffu, l[hf], off);
        const int r = wrow0 + g + 8 * hf;
        if (r >= T) continue;
        const float inv = l[hf] > 0 ? 1.0f / l[hf] : 0.0f;
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
            *(uint32_t *)(go + (size_t)r * qstride + dt * 8 + 2 * t4) =
                pack_bf16(o[dt * 4 + 2 * hf] * inv, o[dt * 4 + 2 * hf + 1] * inv);
        if (t4 == 0) gl[(size_t)r * H] = (m[hf] + log2f(l[hf])) * ATTN_LN2;
    }
#elif defined(__CUDA_ARCH__)
    __trap();   /* built without sm_90a: attention_fwd_sm90() never launches this */
#endif
}

template <bool SKIP>
static void launch_fwd90(backend *be, const attn_params &p)
{
    static bool configured = false;   /* raise the dynamic shared-memory limit once per kernel */
    if (!attn_smem_opt_in(be, attention_fwd_sm90_kernel<SKIP>, fwd90::BYTES, "attention_fwd", &configured)) return;
    dim3 grid((unsigned)((p.T + fwd90::BQ - 1) / fwd90::BQ), (unsigned)p.H, (unsigned)p.B);
    attention_fwd_sm90_kernel<SKIP><<<grid, fwd90::THREADS, fwd90::BYTES, cuda_stream(be)>>>(p);
    cuda_check_launch(be, "attention_fwd");
}

/* Was this build's sm_90a code loaded for the device? (Not on other GPUs, nor
 * where the driver compiled the kernels from compute_89 PTX: then the wgmma
 * kernels are empty.) Asked once: a process drives one GPU. And does the
 * backend leave the choice to us (attn_fwd_rows = 0)? */
bool attention_sm90(backend *be)
{
    static int loaded = -1;
    if (loaded < 0) {
        cudaFuncAttributes a;
        loaded = cudaFuncGetAttributes(&a, attention_fwd_sm90_kernel<false>) == cudaSuccess && a.ptxVersion >= 90 &&
                 a.binaryVersion >= 90;
        (void)cudaGetLastError();
    }
    return loaded == 1 && !be->attn_fwd_rows;
}

bool attention_fwd_sm90(backend *be, const attn_params &p)
{
    if (!attention_sm90(be)) return false;
    p.seg_ranges ? launch_fwd90<true>(be, p) : launch_fwd90<false>(be, p);
    return true;
}
