/* finetune/engine/ops/cuda/nf4_gemv.cu - CUDA twin of op_nf4_gemv (nf4_gemv.c).
 *
 * Decoding reads every weight once per token, so the product is bound by the
 * bytes of W: 4 bits a weight here, against 16 for a dequantized copy that
 * would also have to be written first. Two kernels:
 *
 * nf4_gemv_tc, for rows of whole 32-weight pieces and 16-byte aligned packed
 * weights and inputs (every linear layer of the models we decode): a row tile
 * is 16 output rows for all N (<= 8) input rows, on tensor cores. A block's 8
 * (or 4) warps split K: warp w takes the 128-weight chunks w, w + 8, ... of the
 * 16 rows, and lane (g, c) (g = lane / 4, c = lane % 4) loads 32 weights (16
 * bytes, one 128-bit load) of rows g and g + 8 at chunk offset 32c. Each lane
 * decodes its weights exactly as the element-wise path does (code * absmax,
 * the weight's dtype, then bf16) into bf16 pairs, which are the A operand of
 * mma m16n8k16 as they stand; the B operand is x, lane (g, c) feeding input row
 * g (zero for g >= N) at the same 32 positions. The sum over k is free to take
 * any order, so the 32 weights of a lane simply play the MMA's k slots of that
 * lane: no shuffles. Thus x is read once per 16 rows (not once per row, from
 * L1, where it is prefetched along with the weights), N = 8 costs what N = 1
 * does, and the per-weight work is the decode alone (~4 instructions).
 * Each warp keeps TC_DEPTH chunks of weights in flight, and a block takes
 * several consecutive tiles when there are more than the GPU holds blocks at
 * once, its warps loading ahead through tile boundaries: the loads of a
 * multiprocessor then go on while it decodes (one tile a block made each
 * block load, then decode, then end). The warps' fp32 partial sums meet in
 * shared memory, in a fixed order. One launch may take several weights of the
 * same input (op_nf4_gemv_multi: q, k and v), tiles numbered through them, so
 * the launch's ramp and tail are paid once; launched as a programmatic
 * dependent (kernel.h: pdl_wait), its first weights are fetched while the
 * kernel before it ends.
 *
 * nf4_gemv_kernel, everything else: a warp a row, over 8 weights at a time
 * (rows of whole 8-weight pieces, 4-byte packed and 16-byte input loads), or
 * element-wise for odd shapes and unaligned operands.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_decode_cuda.h"
#include "rows.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdlib.h>

typedef __nv_bfloat16 bf16;

typedef struct {
    const uint8_t *packed;
    const float *absmax, *absmax2, *code, *nested_map;
    const uint8_t *absmax_q;
    float offset;
    int64_t rows, cols;
    int dq, f16, vec;
} gemv_args;

__device__ __forceinline__ float weight_value(float code, float absmax, int f16)
{
    float w = __fmul_rn(code, absmax);
    if (f16) w = __half2float(__float2half_rn(w));
    return __bfloat162float(__float2bfloat16_rn(w));
}

/* code[hi] and code[lo] times absmax, rounded as weight_value rounds them, as
 * one bf16 pair (the first, element 2j of its word, in the low half). */
template <bool F16>
__device__ __forceinline__ uint32_t decode_pair(float chi, float clo, float absmax)
{
    float hi = __fmul_rn(chi, absmax), lo = __fmul_rn(clo, absmax);
    if (F16) {   /* both fp16 roundings in one conversion */
        const float2 h = __half22float2(__floats2half2_rn(hi, lo));
        hi = h.x, lo = h.y;
    }
    const __nv_bfloat162 b = __floats2bfloat162_rn(hi, lo);   /* one conversion for the pair */
    return *(const uint32_t *)&b;
}

/* The 8 weights of one 32-bit word of packed nibbles (byte j holds element 2j
 * in its high nibble and 2j + 1 in its low one) as 4 bf16 pairs. Decoding is
 * most of the kernels' work, so the table offsets (4 * nibble) are cut out
 * of the word 4 at a time, and each then takes one byte permute. */
template <bool F16>
__device__ __forceinline__ void decode_word(uint32_t word, const float *s_code, float absmax, uint32_t p[4])
{
    const uint32_t hi4 = (word >> 2) & 0x3c3c3c3cu, lo4 = (word << 2) & 0x3c3c3c3cu;
    const char *tab = (const char *)s_code;
#pragma unroll
    for (int j = 0; j < 4; j++)
        p[j] = decode_pair<F16>(*(const float *)(tab + __byte_perm(hi4, 0, 0x4440 + j)),
                                *(const float *)(tab + __byte_perm(lo4, 0, 0x4440 + j)), absmax);
}

/* decode_word for a table on a 256-byte boundary of shared memory: the byte
 * permute that cuts out each nibble's table offset also puts it into the low
 * byte of the table's own address, which saves an address add per weight (a
 * launch's weights each have their table, so its address is not known when
 * compiling). */
__device__ __forceinline__ float lds_f32(uint32_t addr)
{
    float v;
    asm volatile("ld.shared.f32 %0, [%1];" : "=f"(v) : "r"(addr));
    return v;
}

template <bool F16>
__device__ __forceinline__ void decode_word_at(uint32_t word, uint32_t tab, float absmax, uint32_t p[4])
{
    const uint32_t hi4 = (word >> 2) & 0x3c3c3c3cu, lo4 = (word << 2) & 0x3c3c3c3cu;
#pragma unroll
    for (int j = 0; j < 4; j++)
        p[j] = decode_pair<F16>(lds_f32(__byte_perm(hi4, tab, 0x7650 + j)), lds_f32(__byte_perm(lo4, tab, 0x7650 + j)),
                                absmax);
}

/* ---- the tensor-core kernel ---- */

enum {
    TC_ROWS = 16,    /* output rows of a block: the M of one mma */
    TC_CHUNK = 128,  /* weights of a row a warp takes at a time: 4 lanes x 32 */
    TC_DEPTH = 4,    /* chunks a warp has in flight: 4 x 1 KB of weights (16 rows x 64 bytes) */
};

/* One chunk as lane (g, c) holds it: 32 weights of rows g and g + 8 and the
 * absmax of each (double quantization: its code and absmax2, decoded when used). */
struct tc_chunk {
    uint4 w[2];
    float a[2];
    uint32_t q[2];
};

/* 16 bytes that no other block reads: not kept in L1, leaving it to x. */
__device__ __forceinline__ uint4 load_stream(const uint8_t *p)
{
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

/* Chunk weights [k0, k0 + 32) of rows r0 and r1. Past the end of the row (the
 * last chunk when K % 128 != 0) zero weights and absmax: x is zero there too,
 * and 0 * finite adds nothing. */
template <bool DQ>
__device__ __forceinline__ void tc_load(tc_chunk &t, const gemv_args &a, int64_t r0, int64_t r1, int64_t k0)
{
    if (k0 >= a.cols) {
        t.w[0] = t.w[1] = make_uint4(0, 0, 0, 0);
        t.a[0] = t.a[1] = 0.0f, t.q[0] = t.q[1] = 0;
        return;
    }
    const int64_t i[2] = {r0 * a.cols + k0, r1 * a.cols + k0};   /* 32-aligned: within one 64-weight block */
#pragma unroll
    for (int h = 0; h < 2; h++) {
        t.w[h] = load_stream(a.packed + i[h] / 2);
        const int64_t blk = i[h] / NF4_BLOCK;
        if (DQ) t.q[h] = __ldg(a.absmax_q + blk), t.a[h] = __ldg(a.absmax2 + blk / NF4_NESTED_BLOCK);
        else t.a[h] = __ldg(a.absmax + blk);
    }
}

/* The lane's 64 bytes of x at k0 fetched into L1 while its chunk's weights
 * come: the first block on a multiprocessor finds x only in L2. Only after
 * pdl_wait(): L1 is not kept coherent, and x is the kernel before's output. */
__device__ __forceinline__ void x_prefetch(const bf16 *xrow, int64_t k0, int64_t K)
{
    if (k0 < K) asm volatile("prefetch.global.L1 [%0];" : : "l"(xrow + k0));
}

/* d += A·B for one m16n8k16 tile: A (16 x 16) bf16 pairs a0..a3, B (16 x 8) b0, b1, fp32 d. */
__device__ __forceinline__ void mma16816(float d[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* One chunk: 8 mma, each over 4 weights per lane and row. Lane (g, c) fills
 * the A slots (row g / g + 8, k 2c, 2c + 1, 2c + 8, 2c + 9) with 4 consecutive
 * weights of its 32 and the B slots (k the same, column g) with the 4 inputs
 * of input row g at those positions (xrow, 32 of them), or zeros unless xok
 * (g >= N, or past the end of the row). */
template <bool DQ, bool F16, bool XS>
__device__ __forceinline__ void tc_step(float d[4], const tc_chunk &t, const bf16 *xrow, bool xok,
                                        const float *s_code, const float *s_map, float offset)
{
    uint4 xv[4];   /* XS: xrow in shared memory (made by the launch: IN_NORM, IN_SWIGLU) */
#pragma unroll
    for (int q = 0; q < 4; q++)
        xv[q] = !xok ? make_uint4(0, 0, 0, 0) : XS ? ((const uint4 *)xrow)[q] : __ldg((const uint4 *)xrow + q);
    float am[2];
#pragma unroll
    for (int h = 0; h < 2; h++) am[h] = DQ ? __fadd_rn(__fmul_rn(s_map[t.q[h]], t.a[h]), offset) : t.a[h];
    const uint32_t w0[4] = {t.w[0].x, t.w[0].y, t.w[0].z, t.w[0].w};
    const uint32_t w1[4] = {t.w[1].x, t.w[1].y, t.w[1].z, t.w[1].w};
#pragma unroll
    for (int q = 0; q < 4; q++) {   /* word q: weights 8q .. 8q + 7 of the lane's 32 */
        uint32_t p0[4], p1[4];
        const uint32_t tab = (uint32_t)__cvta_generic_to_shared(s_code);
        decode_word_at<F16>(w0[q], tab, am[0], p0);
        decode_word_at<F16>(w1[q], tab, am[1], p1);
        mma16816(d, p0[0], p1[0], p0[1], p1[1], xv[q].x, xv[q].y);
        mma16816(d, p0[2], p1[2], p0[3], p1[3], xv[q].z, xv[q].w);
    }
}

/* The products of one launch: weight i's row tiles are tiles first[i] ..
 * first[i + 1] - 1 of the launch, its output y[i]; all weights have the same
 * number of columns. */
struct gemv_multi {
    gemv_args w[NF4_GEMV_MAX_WEIGHTS];
    bf16 *y[NF4_GEMV_MAX_WEIGHTS];
    unsigned first[NF4_GEMV_MAX_WEIGHTS + 1];
    int count;
};

/* Tile t of a launch: its weight and first output row. */
struct tile_at {
    int wi;
    int64_t row0;
};

__device__ __forceinline__ tile_at tile_of(const gemv_multi &m, unsigned t)
{
    int wi = 0;
    while (wi + 1 < m.count && t >= m.first[wi + 1]) wi++;
    return {wi, (int64_t)(t - m.first[wi]) * TC_ROWS};
}

/* The chunk a warp works on: tile lt of its block (tile t0 + lt of the
 * launch) and the warp's chunk i of that tile. */
struct chunk_cursor {
    int lt, i;
    __device__ __forceinline__ void next(int iters)
    {
        if (++i == iters) i = 0, lt++;
    }
};

/* A block takes consecutive row tiles (at most TC_TILES, as evenly as the
 * grid allows) and streams them: each warp's loads run TC_DEPTH chunks ahead
 * of its products through the tile boundaries, so that a multiprocessor's
 * memory traffic never waits for its decoding (a block a tile alternated
 * between the two). A warp's partial sums of each tile wait in shared memory
 * until the block's last tile, then the warps' sums meet in a fixed order.
 * WARPS warps split K (8 or 4: 16 warps a multiprocessor either way).
 * With IN other than IN_X (op_nf4_gemv_in: N = 1, 8 warps) the block first
 * makes its input from x into shared memory, RMSNorm or SwiGLU by the same
 * code as their own kernels (rows.cuh), while its first weights are on their
 * way; block 0 also writes that input (and RMSNorm's rstd) out. */
enum { TC_TILES = 8 };
enum { IN_X, IN_NORM, IN_SWIGLU };

struct gemv_in_args {
    const bf16 *w, *up;   /* RMSNorm's weight (K), SwiGLU's up (K); x is the norm's input or the gate */
    float eps;
    float *rstd;          /* (1), by block 0 */
    bf16 *h;              /* (K): the input made, by block 0 */
};

/* The launch's input from x into s_x (K, shared), by the block's 256 threads. */
template <int IN>
__device__ void make_input(bf16 *s_x, const bf16 *x, const gemv_in_args &in, int K, float *part)
{
    if (IN == IN_NORM) {
        block_rmsnorm_row(s_x, blockIdx.x == 0 ? in.rstd : NULL, x, in.w, K, in.eps, part);
    } else {
        for (int c = threadIdx.x * 8; c < K; c += ROW_THREADS * 8) {
            float g[8], u[8];
            unpack8(g, *(const uint4 *)(x + c));
            unpack8(u, *(const uint4 *)(in.up + c));
#pragma unroll
            for (int k = 0; k < 8; k++) g[k] = silu_mul(g[k], u[k]);
            *(uint4 *)(s_x + c) = pack8(g);
        }
        __syncthreads();
    }
    if (blockIdx.x == 0)
        for (int c = threadIdx.x * 8; c < K; c += ROW_THREADS * 8) *(uint4 *)(in.h + c) = *(const uint4 *)(s_x + c);
}

template <bool DQ, bool F16, int WARPS, int IN>
__global__ void __launch_bounds__(WARPS * 32, 16 / WARPS)
    nf4_gemv_tc(const __grid_constant__ gemv_multi m, const bf16 *x, int N, float beta, const gemv_in_args in)
{
    pdl_release();   /* the next kernel may start loading what it does not share with this one */
    __shared__ __align__(256) float s_code[NF4_GEMV_MAX_WEIGHTS][64];   /* 16 used: tables 256-aligned (decode_word_at) */
    __shared__ float s_map[DQ ? NF4_GEMV_MAX_WEIGHTS : 1][256];
    __shared__ float s_red[TC_TILES][WARPS][4][32];
    __shared__ float s_part[IN == IN_X ? 1 : WARPS];
    extern __shared__ __align__(16) bf16 s_x[];   /* (K) when IN != IN_X */
    const unsigned T = m.first[m.count], t0 = (unsigned)((uint64_t)blockIdx.x * T / gridDim.x);
    const int ntiles = (int)((uint64_t)(blockIdx.x + 1) * T / gridDim.x - t0);
    for (int i = threadIdx.x; i < m.count * 16; i += WARPS * 32) s_code[i / 16][i % 16] = m.w[i / 16].code[i % 16];
    if (DQ)
        for (int i = threadIdx.x; i < m.count * 256; i += WARPS * 32)
            s_map[i / 256][i % 256] = m.w[i / 256].nested_map[i % 256];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int64_t K = m.w[0].cols;
    const bf16 *xg = IN != IN_X ? s_x : x + (size_t)min(g, N - 1) * K;   /* the input row lane (g, c) feeds; zeros when g >= N */
    const int nch = (int)((K + TC_CHUNK - 1) / TC_CHUNK);
    const int iters = warp < nch ? (nch - 1 - warp) / WARPS + 1 : 0;   /* the warp's chunks of a tile */
    const int total = ntiles * iters;
    /* where the lane's 32 weights of the warp's i-th chunk start in a row */
    auto lane_k0 = [&](int i) { return (int64_t)(warp + i * WARPS) * TC_CHUNK + c * 32; };
    /* chunk `at`'s weights into b: rows g and g + 8 of its tile (rows past M
     * read row M - 1: an mma row only feeds its own output, which is not stored) */
    auto load = [&](tc_chunk &b, chunk_cursor at) {
        const tile_at t = tile_of(m, t0 + at.lt);
        const gemv_args &a = m.w[t.wi];
        tc_load<DQ>(b, a, min(t.row0 + g, a.rows - 1), min(t.row0 + g + 8, a.rows - 1), lane_k0(at.i));
    };
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    tc_chunk buf[TC_DEPTH];
    chunk_cursor ld = {0, 0}, st = {0, 0};   /* the next chunk to load, to multiply */
#pragma unroll
    for (int s = 0; s < TC_DEPTH; s++)   /* the first loads go out before the tables are in, */
        if (s < total) load(buf[s], ld), ld.next(iters);
    pdl_wait();   /* and before the kernel that writes x has finished */
    if (IN != IN_X) make_input<IN>(s_x, x, in, (int)K, s_part);
    else
        for (int s = 0; s < TC_DEPTH && s < iters && g < N; s++) x_prefetch(xg, lane_k0(s), K);
    __syncthreads();
    for (int j = 0; j < total; j += TC_DEPTH) {
#pragma unroll
        for (int s = 0; s < TC_DEPTH; s++) {   /* buf[s] holds chunk j + s; refilled with j + s + TC_DEPTH */
            if (j + s >= total) break;
            const int wi = tile_of(m, t0 + st.lt).wi;
            const int64_t k0 = lane_k0(st.i);
            tc_step<DQ, F16, IN != IN_X>(d, buf[s], xg + k0, g < N && k0 < K, s_code[wi], s_map[DQ ? wi : 0],
                                         m.w[wi].offset);
            if (j + s + TC_DEPTH < total) {
                load(buf[s], ld);
                if (IN == IN_X && g < N) x_prefetch(xg, lane_k0(ld.i), K);
                ld.next(iters);
            }
            if (st.i == iters - 1) {   /* the warp's last chunk of this tile: (row g, columns 2c, 2c + 1), (row g + 8, the same) */
#pragma unroll
                for (int e = 0; e < 4; e++) s_red[st.lt][warp][e][lane] = d[e], d[e] = 0.0f;
            }
            st.next(iters);
        }
    }
    __syncthreads();
    /* consecutive threads: consecutive y; warps without a chunk (K < WARPS chunks) add nothing */
    const int active = min(WARPS, nch);
    for (int u = threadIdx.x; u < ntiles * 128; u += WARPS * 32) {
        const int lt = u / 128, n = u % 128 / TC_ROWS, r = u % TC_ROWS;
        const tile_at t = tile_of(m, t0 + lt);
        const int64_t o = t.row0 + r;
        if (n >= N || o >= m.w[t.wi].rows) continue;
        const int l = (r % 8) * 4 + n / 2, e = (r / 8) * 2 + n % 2;
        float sum = 0.0f;
        for (int w = 0; w < active; w++) sum += s_red[lt][w][e][l];
        bf16 *yo = m.y[t.wi] + (size_t)n * m.w[t.wi].rows + o;
        *yo = __float2bfloat16_rn(sum + (beta != 0.0f ? beta * __bfloat162float(*yo) : 0.0f));
    }
}

/* Warps a block: 8 unless DSFT_GEMV_WARPS=4 (`ds-ft bench kernels` compares them). */
static int tc_warps(void)
{
    static int warps = 0;
    if (!warps) {
        const char *v = getenv("DSFT_GEMV_WARPS");
        warps = v && atoi(v) == 4 ? 4 : 8;
    }
    return warps;
}

/* A launch that may overlap the kernel before (launch_pdl): the weights'
 * first loads go out while that one ends. */
template <bool DQ, bool F16, int WARPS, int IN>
static void launch_tc_warps(backend *be, const gemv_multi &m, const bf16 *x, int N, float beta, const gemv_in_args &in)
{
    /* every block resident at once (16 warps a multiprocessor), at most TC_TILES tiles each */
    const unsigned T = m.first[m.count], slots = (unsigned)cuda_sm_count(be) * (16 / WARPS);
    const unsigned blocks = T < slots ? T : T > slots * TC_TILES ? (T + TC_TILES - 1) / TC_TILES : slots;
    const size_t smem = IN == IN_X ? 0 : (size_t)m.w[0].cols * sizeof(bf16);
    if (IN != IN_X)   /* past the 48 KB a launch gets unasked (set each time: the attribute is per device) */
        cudaFuncSetAttribute(nf4_gemv_tc<DQ, F16, WARPS, IN>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    launch_pdl(be, nf4_gemv_tc<DQ, F16, WARPS, IN>, dim3(blocks), dim3(WARPS * 32), smem, m, x, N, beta, in);
}

template <bool DQ, bool F16>
static void launch_tc(backend *be, const gemv_multi &m, const bf16 *x, int N, float beta, int in_kind,
                      const gemv_in_args &in)
{
    if (in_kind == IN_NORM) launch_tc_warps<DQ, F16, 8, IN_NORM>(be, m, x, N, beta, in);
    else if (in_kind == IN_SWIGLU) launch_tc_warps<DQ, F16, 8, IN_SWIGLU>(be, m, x, N, beta, in);
    else if (tc_warps() == 4) launch_tc_warps<DQ, F16, 4, IN_X>(be, m, x, N, beta, in);
    else launch_tc_warps<DQ, F16, 8, IN_X>(be, m, x, N, beta, in);
}

/* Every tensor-core launch: by double quantization and dtype. */
static void launch_tc_any(backend *be, const gemv_multi &m, const bf16 *x, int N, float beta, int in_kind = IN_X,
                          const gemv_in_args &in = gemv_in_args{})
{
    const gemv_args &a = m.w[0];
    if (a.dq) a.f16 ? launch_tc<true, true>(be, m, x, N, beta, in_kind, in) : launch_tc<true, false>(be, m, x, N, beta, in_kind, in);
    else a.f16 ? launch_tc<false, true>(be, m, x, N, beta, in_kind, in) : launch_tc<false, false>(be, m, x, N, beta, in_kind, in);
    cuda_check_launch(be, "nf4_gemv");
}

/* ---- the warp-per-row kernel (odd shapes, unaligned operands) ---- */

/* acc[r] += the 8 weights (4 bf16 pairs) times x[r][k0 .. k0 + 7] (one 16-byte load each). */
template <int NR>
__device__ __forceinline__ void dot8(float acc[NR], const uint32_t p[4], const bf16 *x, int64_t cols, int64_t k0)
{
    float w[8];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const float2 f = __bfloat1622float2(*(const __nv_bfloat162 *)&p[j]);
        w[2 * j] = f.x, w[2 * j + 1] = f.y;
    }
#pragma unroll
    for (int r = 0; r < NR; r++) {
        const uint4 u = *(const uint4 *)(x + (size_t)r * cols + k0);
        const bf16 *xv = (const bf16 *)&u;
#pragma unroll
        for (int j = 0; j < 8; j++) acc[r] += __bfloat162float(xv[j]) * w[j];
    }
}

__device__ __forceinline__ float block_absmax(const gemv_args &a, const float *s_map, int64_t blk)
{
    return a.dq ? __fadd_rn(__fmul_rn(s_map[a.absmax_q[blk]], a.absmax2[blk / NF4_NESTED_BLOCK]), a.offset)
                : a.absmax[blk];
}

template <int NR>
__global__ void __launch_bounds__(256) nf4_gemv_kernel(bf16 *y, const bf16 *x, gemv_args a, float beta)
{
    __shared__ float s_code[16], s_map[256];
    if (threadIdx.x < 16) s_code[threadIdx.x] = a.code[threadIdx.x];
    if (a.dq) s_map[threadIdx.x] = a.nested_map[threadIdx.x];
    __syncthreads();
    const int lane = threadIdx.x % 32;
    const int64_t o = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (o >= a.rows) return;
    const int64_t cols = a.cols, base = o * cols;
    float acc[NR];
#pragma unroll
    for (int r = 0; r < NR; r++) acc[r] = 0.0f;
    if (a.vec && base % 8 == 0) {
        for (int64_t k0 = (int64_t)lane * 8; k0 + 8 <= cols; k0 += 256) {
            const uint32_t packed = *(const uint32_t *)(a.packed + (base + k0) / 2);
            const float absmax = block_absmax(a, s_map, (base + k0) / NF4_BLOCK);   /* 8 | 64: one block */
            uint32_t p[4];
            if (a.f16) decode_word<true>(packed, s_code, absmax, p);
            else decode_word<false>(packed, s_code, absmax, p);
            dot8<NR>(acc, p, x, cols, k0);
        }
    } else {
        for (int64_t k = lane; k < cols; k += 32) {
            const int64_t i = base + k;
            const uint8_t byte = a.packed[i / 2];
            const float w = weight_value(s_code[i % 2 == 0 ? byte >> 4 : byte & 15],
                                         block_absmax(a, s_map, i / NF4_BLOCK), a.f16);
#pragma unroll
            for (int r = 0; r < NR; r++) acc[r] += __bfloat162float(x[(size_t)r * cols + k]) * w;
        }
    }
#pragma unroll
    for (int r = 0; r < NR; r++) {
        float s = acc[r];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) {
            bf16 *yo = y + (size_t)r * a.rows + o;
            *yo = __float2bfloat16_rn(s + (beta != 0.0f ? beta * __bfloat162float(*yo) : 0.0f));
        }
    }
}

template <int NR>
static void launch(backend *be, bf16 *y, const bf16 *x, const gemv_args &a, float beta)
{
    const int per_block = 8;   /* warps (output rows) per block of 256 threads */
    nf4_gemv_kernel<NR><<<(unsigned)((a.rows + per_block - 1) / per_block), 256, 0, cuda_stream(be)>>>(y, x, a, beta);
}

static gemv_args make_args(const nf4_view *q, const void *x)
{
    gemv_args a;
    a.packed = q->packed, a.absmax = q->absmax, a.absmax_q = q->absmax_q, a.absmax2 = q->absmax2;
    a.code = q->code, a.nested_map = q->nested_map, a.offset = q->offset;
    a.rows = q->rows, a.cols = q->cols, a.dq = q->double_quant, a.f16 = q->dtype == NF4_OUT_F16;
    /* the 8-wide path: rows start on 8-weight boundaries, 4-byte packed and 16-byte input loads */
    a.vec = q->cols % 8 == 0 && (uintptr_t)q->packed % 4 == 0 && (uintptr_t)x % 16 == 0;
    return a;
}

/* The tensor-core kernel: rows of whole 32-weight pieces (one 64-weight block each), 16-byte loads. */
static bool tc_fits(const gemv_args &a) { return a.vec && a.cols % 32 == 0 && (uintptr_t)a.packed % 16 == 0; }

static bool rows_ok(backend *be, int N)
{
    if (N <= NF4_GEMV_MAX_ROWS) return true;
    be_fail(be, DS_EINTERNAL, "nf4_gemv: %d input rows, the kernel takes at most %d", N, NF4_GEMV_MAX_ROWS);
    return false;
}

/* Weight a as the i-th of m, its tiles after those already there. */
static void add_weight(gemv_multi &m, const gemv_args &a, void *y)
{
    const int i = m.count++;
    m.w[i] = a, m.y[i] = (bf16 *)y;
    m.first[i + 1] = m.first[i] + (unsigned)((a.rows + TC_ROWS - 1) / TC_ROWS);
}

/* Whether the weights q of input x take one tensor-core launch (every one on
 * that path, alike in how it decodes): then m holds them and their outputs y. */
static bool one_launch(gemv_multi &m, void *const *y, const void *x, const nf4_view *const *q, int count)
{
    m = {};
    const gemv_args a0 = make_args(q[0], x);
    for (int i = 0; i < count; i++) {
        const gemv_args a = make_args(q[i], x);
        if (a.rows <= 0 || !tc_fits(a) || a.dq != a0.dq || a.f16 != a0.f16) return false;
        add_weight(m, a, y[i]);
    }
    return true;
}

extern "C" void nf4_gemv_multi_cuda(backend *be, void *const *y, const void *x, const nf4_view *const *q, int count,
                                    int N)
{
    if (N <= 0 || !rows_ok(be, N)) return;
    gemv_multi m;
    if (!one_launch(m, y, x, q, count)) {
        for (int i = 0; i < count; i++) nf4_gemv_cuda(be, y[i], x, q[i], N, 0.0f);
        return;
    }
    if (m.count) launch_tc_any(be, m, (const bf16 *)x, N, 0.0f);
}

extern "C" void nf4_gemv_cuda(backend *be, void *y, const void *x, const nf4_view *q, int N, float beta)
{
    if (N <= 0 || q->rows <= 0 || !rows_ok(be, N)) return;
    const gemv_args a = make_args(q, x);
    bf16 *Y = (bf16 *)y;
    const bf16 *X = (const bf16 *)x;
    if (tc_fits(a)) {
        gemv_multi m = {};
        add_weight(m, a, y);
        launch_tc_any(be, m, X, N, beta);
        return;
    }
    switch (N) {
    case 1: launch<1>(be, Y, X, a, beta); break;
    case 2: launch<2>(be, Y, X, a, beta); break;
    case 3: launch<3>(be, Y, X, a, beta); break;
    case 4: launch<4>(be, Y, X, a, beta); break;
    case 5: launch<5>(be, Y, X, a, beta); break;
    case 6: launch<6>(be, Y, X, a, beta); break;
    case 7: launch<7>(be, Y, X, a, beta); break;
    default: launch<8>(be, Y, X, a, beta); break;
    }
    cuda_check_launch(be, "nf4_gemv");
}

/* The largest input a launch may make in shared memory: what leaves room for
 * two blocks of the kernel (about 38 KB of static shared memory each) on a
 * multiprocessor: 74 KB on an H100, 10 KB on an RTX 4090. */
static int64_t in_max_bytes(void)
{
    static int64_t max = -1;
    if (max < 0) {
        int dev = 0, per_sm = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
        max = per_sm / 2 - 40 * 1024;   /* and the 1 KB the driver keeps per block */
    }
    return max;
}

extern "C" void nf4_gemv_in_cuda(backend *be, void *const *y, void *h, const void *x, const gemv_in *in,
                                 const nf4_view *const *q, int count, int N, float beta)
{
    const int64_t K = q[0]->cols;   /* every weight's (op_nf4_gemv_in checks) */
    const void *side = in->kind == GEMV_IN_RMSNORM ? in->w : in->up;
    gemv_multi m;
    const bool one = N == 1 && tc_warps() == 8 && K * (int64_t)sizeof(bf16) <= in_max_bytes() &&
                     (uintptr_t)x % 16 == 0 && (uintptr_t)side % 16 == 0 && (uintptr_t)h % 16 == 0 &&
                     one_launch(m, y, h, q, count);
    if (!one) {   /* the two ops' own launches */
        op_gemv_in_make(be, h, x, in, N, (int)K);
        if (count == 1) nf4_gemv_cuda(be, y[0], h, q[0], N, beta);
        else nf4_gemv_multi_cuda(be, y, h, q, count, N);
        return;
    }
    const gemv_in_args ia = {(const bf16 *)in->w, (const bf16 *)in->up, in->eps, in->rstd, (bf16 *)h};
    launch_tc_any(be, m, (const bf16 *)x, 1, beta, in->kind == GEMV_IN_RMSNORM ? IN_NORM : IN_SWIGLU, ia);
}
