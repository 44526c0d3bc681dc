/* finetune/engine/ops/cuda/nf4_decode.cuh - 4-bit NF4 weights to bf16 pairs in
 * registers, for the matrix-vector kernels of nf4_gemv.cu. Two ways:
 *
 * decode_word(): each weight rounded exactly as dequantization rounds it
 * (code * absmax in fp32, the weight's dtype, then bf16): a shared-memory
 * table lookup, a multiply and half a conversion per weight.
 *
 * decode_word_code(): the code value alone, as bf16, looked up in registers
 * with byte permutes (no memory access, no floating point); the block's absmax
 * then scales the product of a whole block (nf4_gemv.cu's fast kernel). The
 * weight that takes part is bf16(code) * absmax instead of
 * bf16(code * absmax): both are within half a bf16 unit of the exact value. */
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

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

/* The 16 code values as bf16, split by byte for prmt: byte k of lo[j] is the
 * low byte of bf16(code[4j + k]), of hi[j] its high byte. */
struct code_lut {
    uint32_t lo[4], hi[4];
};

/* Built once per weight (a block's table in shared memory). */
__device__ __forceinline__ code_lut code_lut_build(const float *code)
{
    code_lut t = {};
    for (int i = 0; i < 16; i++) {
        const __nv_bfloat16 b = __float2bfloat16_rn(code[i]);
        const uint32_t bits = *(const unsigned short *)&b;
        t.lo[i / 4] |= (bits & 0xffu) << (8 * (i % 4));
        t.hi[i / 4] |= (bits >> 8) << (8 * (i % 4));
    }
    return t;
}

/* prmt.b32 in its default mode: selector nibble k picks byte (bits 0-2) of
 * {b, a} for output byte k; with bit 3 set, that byte's sign bit fills it. */
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel)
{
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
    return d;
}

/* Four table bytes at once: sel's nibbles index entries 0..7 of t, and where
 * mask's byte is 0xff the entry is 8 more (the index's bit 3). */
__device__ __forceinline__ uint32_t lut4(const uint32_t t[4], uint32_t sel, uint32_t mask)
{
    return (prmt(t[0], t[1], sel) & ~mask) | (prmt(t[2], t[3], sel) & mask);
}

/* The 8 code values of one 32-bit word of packed nibbles (byte j: element 2j
 * in its high nibble, 2j + 1 in its low one) as 4 bf16 pairs, element 2j in
 * the low half of p[j], as decode_word() orders them. Nibble k of each half
 * word selects output byte k; its bit 3 becomes a byte mask by sign fill of
 * the byte whose top bit it is (w << 4 for the even nibbles, w for the odd). */
__device__ __forceinline__ void decode_word_code(uint32_t w, const code_lut &t, uint32_t p[4])
{
    const uint32_t w4 = w << 4;
    const uint32_t s0 = w & 0x7777u, s1 = (w >> 16) & 0x7777u;
    const uint32_t m0 = prmt(w4, w, 0xD9C8u), m1 = prmt(w4, w, 0xFBEAu);
    const uint32_t lo0 = lut4(t.lo, s0, m0), hi0 = lut4(t.hi, s0, m0);   /* elements 1, 0, 3, 2 */
    const uint32_t lo1 = lut4(t.lo, s1, m1), hi1 = lut4(t.hi, s1, m1);   /* 5, 4, 7, 6 */
    p[0] = prmt(lo0, hi0, 0x4051u), p[1] = prmt(lo0, hi0, 0x6273u);
    p[2] = prmt(lo1, hi1, 0x4051u), p[3] = prmt(lo1, hi1, 0x6273u);
}
