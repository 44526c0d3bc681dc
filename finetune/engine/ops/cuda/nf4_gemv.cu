/* finetune/engine/ops/cuda/nf4_gemv.cu - CUDA twin of op_nf4_gemv (nf4_gemv.c).
 *
 * Decoding reads every weight once per token, so the product is bound by the
 * bytes of W: 4 bits a weight here, against 16 for a dequantized copy that
 * would also have to be written first. Two kernels:
 *
 * nf4_gemv_tc, for rows of whole 32-weight pieces and 16-byte aligned packed
 * weights and inputs (every linear layer of the models we decode): a block
 * computes 16 output rows for all N (<= 8) input rows with tensor cores. Its 8
 * warps split K: warp w takes the 128-weight chunks w, w + 8, ... of the 16
 * rows, and lane (g, c) (g = lane / 4, c = lane % 4) loads 32 weights (16
 * bytes, one 128-bit load) of rows g and g + 8 at chunk offset 32c. Each lane
 * decodes its weights exactly as the element-wise path does (code * absmax,
 * the weight's dtype, then bf16) into bf16 pairs, which are the A operand of
 * mma m16n8k16 as they stand; the B operand is x, lane (g, c) feeding input row
 * g (zero for g >= N) at the same 32 positions. The sum over k is free to take
 * any order, so the 32 weights of a lane simply play the MMA's k slots of that
 * lane: no shuffles. Thus x is read once per 16 rows (not once per row, from
 * L1, where it is prefetched along with the weights), N = 8 costs what N = 1
 * does, and the per-weight work is the decode alone (~4 instructions).
 * Each warp keeps TC_DEPTH chunks of weights in flight (all of them for
 * K = 4096), so that ~2 blocks a multiprocessor cover the memory latency. The
 * warps' fp32 partial sums meet in shared memory, in a fixed order.
 *
 * nf4_gemv_kernel, everything else: a warp a row, over 8 weights at a time
 * (rows of whole 8-weight pieces, 4-byte packed and 16-byte input loads), or
 * element-wise for odd shapes and unaligned operands.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_decode_cuda.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

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

/* ---- the tensor-core kernel ---- */

enum {
    TC_WARPS = 8,    /* warps of a block, splitting K */
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
 * and 0 * finite adds nothing. The lane's 64 bytes of x (xrow at k0, when it
 * feeds an input row) are fetched into L1 meanwhile: the first block on a
 * multiprocessor finds x only in L2. */
template <bool DQ>
__device__ __forceinline__ void tc_load(tc_chunk &t, const gemv_args &a, int64_t r0, int64_t r1, int64_t k0,
                                        const bf16 *xrow, bool xrow_used)
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
    if (xrow_used) asm volatile("prefetch.global.L1 [%0];" : : "l"(xrow + k0));
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
template <bool DQ, bool F16>
__device__ __forceinline__ void tc_step(float d[4], const tc_chunk &t, const bf16 *xrow, bool xok,
                                        const float *s_code, const float *s_map, float offset)
{
    uint4 xv[4];
#pragma unroll
    for (int q = 0; q < 4; q++) xv[q] = xok ? __ldg((const uint4 *)xrow + q) : make_uint4(0, 0, 0, 0);
    float am[2];
#pragma unroll
    for (int h = 0; h < 2; h++) am[h] = DQ ? __fadd_rn(__fmul_rn(s_map[t.q[h]], t.a[h]), offset) : t.a[h];
    const uint32_t w0[4] = {t.w[0].x, t.w[0].y, t.w[0].z, t.w[0].w};
    const uint32_t w1[4] = {t.w[1].x, t.w[1].y, t.w[1].z, t.w[1].w};
#pragma unroll
    for (int q = 0; q < 4; q++) {   /* word q: weights 8q .. 8q + 7 of the lane's 32 */
        uint32_t p0[4], p1[4];
        decode_word<F16>(w0[q], s_code, am[0], p0);
        decode_word<F16>(w1[q], s_code, am[1], p1);
        mma16816(d, p0[0], p1[0], p0[1], p1[1], xv[q].x, xv[q].y);
        mma16816(d, p0[2], p1[2], p0[3], p1[3], xv[q].z, xv[q].w);
    }
}

template <bool DQ, bool F16>
__global__ void __launch_bounds__(TC_WARPS * 32, 2) nf4_gemv_tc(bf16 *y, const bf16 *x, gemv_args a, int N,
                                                              float beta)
{
    __shared__ float s_code[16], s_map[256], s_red[TC_WARPS][4][32];
    if (threadIdx.x < 16) s_code[threadIdx.x] = a.code[threadIdx.x];
    if (DQ) s_map[threadIdx.x] = a.nested_map[threadIdx.x];   /* 256 threads */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int64_t M = a.rows, K = a.cols, row0 = (int64_t)blockIdx.x * TC_ROWS;
    /* rows past M read row M - 1: an mma row only feeds its own output, which is not stored */
    const int64_t r0 = min(row0 + g, M - 1), r1 = min(row0 + g + 8, M - 1);
    const bf16 *xg = x + (size_t)min(g, N - 1) * K;   /* the input row lane (g, c) feeds; zeros when g >= N */
    const int nch = (int)((K + TC_CHUNK - 1) / TC_CHUNK);
    const int iters = warp < nch ? (nch - 1 - warp) / TC_WARPS + 1 : 0;
    /* where the lane's 32 weights of the warp's i-th chunk start in a row */
    auto lane_k0 = [&](int i) { return (int64_t)(warp + i * TC_WARPS) * TC_CHUNK + c * 32; };
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    tc_chunk buf[TC_DEPTH];
#pragma unroll
    for (int s = 0; s < TC_DEPTH; s++)   /* the first loads go out before the tables are in */
        if (s < iters) tc_load<DQ>(buf[s], a, r0, r1, lane_k0(s), xg, g < N);
    __syncthreads();
    for (int i = 0; i < iters; i += TC_DEPTH) {
#pragma unroll
        for (int s = 0; s < TC_DEPTH; s++) {   /* buf[s] holds chunk i + s; refilled with i + s + TC_DEPTH */
            if (i + s >= iters) break;
            const int64_t k0 = lane_k0(i + s);
            tc_step<DQ, F16>(d, buf[s], xg + k0, g < N && k0 < K, s_code, s_map, a.offset);
            if (i + s + TC_DEPTH < iters) tc_load<DQ>(buf[s], a, r0, r1, lane_k0(i + s + TC_DEPTH), xg, g < N);
        }
    }
    /* d holds (row g, columns 2c, 2c + 1) and (row g + 8, the same): the warps' sums meet here */
#pragma unroll
    for (int e = 0; e < 4; e++) s_red[warp][e][lane] = d[e];
    __syncthreads();
    const int n = threadIdx.x / TC_ROWS, r = threadIdx.x % TC_ROWS;   /* consecutive threads: consecutive y */
    const int64_t o = row0 + r;
    if (n < N && o < M) {
        const int l = (r % 8) * 4 + n / 2, e = (r / 8) * 2 + n % 2;
        float s = 0.0f;
#pragma unroll
        for (int w = 0; w < TC_WARPS; w++) s += s_red[w][e][l];
        bf16 *yo = y + (size_t)n * M + o;
        *yo = __float2bfloat16_rn(s + (beta != 0.0f ? beta * __bfloat162float(*yo) : 0.0f));
    }
}

template <bool DQ, bool F16>
static void launch_tc(backend *be, bf16 *y, const bf16 *x, const gemv_args &a, int N, float beta)
{
    nf4_gemv_tc<DQ, F16><<<(unsigned)((a.rows + TC_ROWS - 1) / TC_ROWS), TC_WARPS * 32, 0, cuda_stream(be)>>>(
        y, x, a, N, beta);
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

extern "C" void nf4_gemv_cuda(backend *be, void *y, const void *x, const nf4_view *q, int N, float beta)
{
    if (N <= 0 || q->rows <= 0) return;
    if (N > NF4_GEMV_MAX_ROWS) {
        be_fail(be, DS_EINTERNAL, "nf4_gemv: %d input rows, the kernel takes at most %d", N, NF4_GEMV_MAX_ROWS);
        return;
    }
    gemv_args a;
    a.packed = q->packed, a.absmax = q->absmax, a.absmax_q = q->absmax_q, a.absmax2 = q->absmax2;
    a.code = q->code, a.nested_map = q->nested_map, a.offset = q->offset;
    a.rows = q->rows, a.cols = q->cols, a.dq = q->double_quant, a.f16 = q->dtype == NF4_OUT_F16;
    /* the 8-wide path: rows start on 8-weight boundaries, 4-byte packed and 16-byte input loads */
    a.vec = q->cols % 8 == 0 && (uintptr_t)q->packed % 4 == 0 && (uintptr_t)x % 16 == 0;
    bf16 *Y = (bf16 *)y;
    const bf16 *X = (const bf16 *)x;
    /* the tensor-core kernel: rows of whole 32-weight pieces (one 64-weight block each), 16-byte loads */
    if (a.vec && q->cols % 32 == 0 && (uintptr_t)q->packed % 16 == 0) {
        if (a.dq) a.f16 ? launch_tc<true, true>(be, Y, X, a, N, beta) : launch_tc<true, false>(be, Y, X, a, N, beta);
        else a.f16 ? launch_tc<false, true>(be, Y, X, a, N, beta) : launch_tc<false, false>(be, Y, X, a, N, beta);
        cuda_check_launch(be, "nf4_gemv");
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
