/* finetune/engine/ops/cuda/nf4_gemv.cu - CUDA twin of op_nf4_gemv (nf4_gemv.c).
 *
 * Decoding reads every weight once per token, so the product is bound by the
 * bytes of W: 4 bits a weight here, against 16 for a dequantized copy that
 * would also have to be written first. A warp computes one output row for all
 * N (<= 8) input rows. On the main path each lane loads 16 packed bytes (32
 * weights of one 64-weight block, one 128-bit load; a warp reads 512
 * contiguous bytes a step) and already holds the next step's 16 bytes while it
 * works on these, so two loads per lane are in flight. Weights are decoded
 * with the 16-entry code table and the block's absmax (double quantization:
 * nested_map in shared memory, times absmax2, plus the offset, as
 * nf4_dequant_cuda), rounded as dequantization rounds them (the weight's dtype,
 * then bf16; two at a time into a bf16 pair), and multiplied with 8 bf16
 * inputs from one 16-byte load, accumulating in fp32. The lanes' sums meet in a
 * warp reduction. Rows whose length is not a multiple of 32 weights take an
 * 8-wide path (one 32-bit load), and unaligned operands the element-wise one.
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
    int dq, f16, vec, vec32;
} gemv_args;

__device__ __forceinline__ float weight_value(float code, float absmax, int f16)
{
    float w = __fmul_rn(code, absmax);
    if (f16) w = __half2float(__float2half_rn(w));
    return __bfloat162float(__float2bfloat16_rn(w));
}

/* The 8 weights of one 32-bit word of packed nibbles (byte j holds elements
 * 2j, high nibble, and 2j + 1), rounded as weight_value rounds them. */
__device__ __forceinline__ void decode8(uint32_t word, const float *s_code, float absmax, int f16, float w[8])
{
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const uint32_t byte = (word >> (8 * j)) & 0xffu;
        float hi = __fmul_rn(s_code[byte >> 4], absmax), lo = __fmul_rn(s_code[byte & 15], absmax);
        if (f16) hi = __half2float(__float2half_rn(hi)), lo = __half2float(__float2half_rn(lo));
        const float2 r = __bfloat1622float2(__floats2bfloat162_rn(hi, lo));   /* one conversion for the pair */
        w[2 * j] = r.x, w[2 * j + 1] = r.y;
    }
}

/* acc[r] += the 8 weights times x[r][k0 .. k0 + 7] (one 16-byte load each). */
template <int NR>
__device__ __forceinline__ void dot8(float acc[NR], const float w[8], const bf16 *x, int64_t cols, int64_t k0)
{
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
    if (a.vec32) {   /* cols % 32 == 0: every lane's 32 weights lie in one block */
        int64_t k0 = (int64_t)lane * 32;
        uint4 cur = k0 < cols ? *(const uint4 *)(a.packed + (base + k0) / 2) : make_uint4(0, 0, 0, 0);
        while (k0 < cols) {
            const int64_t kn = k0 + 32 * 32;
            const uint4 next = kn < cols ? *(const uint4 *)(a.packed + (base + kn) / 2) : cur;   /* in flight meanwhile */
            const float absmax = block_absmax(a, s_map, (base + k0) / NF4_BLOCK);
            const uint32_t words[4] = {cur.x, cur.y, cur.z, cur.w};
#pragma unroll
            for (int q = 0; q < 4; q++) {
                float w[8];
                decode8(words[q], s_code, absmax, a.f16, w);
                dot8<NR>(acc, w, x, cols, k0 + 8 * q);
            }
            cur = next, k0 = kn;
        }
    } else if (a.vec && base % 8 == 0) {
        for (int64_t k0 = (int64_t)lane * 8; k0 + 8 <= cols; k0 += 256) {
            const uint32_t packed = *(const uint32_t *)(a.packed + (base + k0) / 2);
            float w[8];
            decode8(packed, s_code, block_absmax(a, s_map, (base + k0) / NF4_BLOCK), a.f16, w);   /* 8 | 64: one block */
            dot8<NR>(acc, w, x, cols, k0);
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
    /* the 32-wide path: rows of whole 32-weight pieces, 16-byte packed loads */
    a.vec32 = a.vec && q->cols % 32 == 0 && (uintptr_t)q->packed % 16 == 0;
    bf16 *Y = (bf16 *)y;
    const bf16 *X = (const bf16 *)x;
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
