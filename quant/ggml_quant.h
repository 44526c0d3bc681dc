/* quant/ggml_quant.h - llama.cpp's block formats, written bit for bit as its
 * reference quantizers (ggml-quants.c, quantize_row_*_ref: no SIMD, no
 * importance matrix, which is what llama-quantize runs without --imatrix)
 * write them, and read back as its dequantizers do.
 *
 * A row of n values (n a multiple of the block) is cut into blocks; each
 * block stores fp16 scales and small integers:
 *   q8_0  32 values: d, 32 x int8                     w = d * q
 *   q4_0  32 values: d, 16 bytes of 4-bit codes       w = d * (q - 8); byte j: value j low, j + 16 high
 *   q5_0  32 values: d, 32 high bits, 16 bytes        w = d * (q - 16)
 *   q5_1  32 values: d, m, 32 high bits, 16 bytes     w = d * q + m (m the block's minimum)
 *   q4_K  256 values: d, dmin, 8 x (6-bit scale, 6-bit min), 128 bytes of codes
 *                                                     w = d * sc_j * q - dmin * m_j per 32 values
 *   q5_K  as q4_K with 5-bit codes (32 bytes of fifth bits before the low nibbles)
 *   q6_K  256 values: 128 bytes low nibbles, 64 bytes high 2 bits, 16 x int8 scales, d
 *                                                     w = d * sc_j * (q - 32) per 16 values
 * f16 and bf16 round to nearest even (bf16 keeps NaN quiet), as ggml does.
 */
#ifndef DS_QUANT_GGML_QUANT_H
#define DS_QUANT_GGML_QUANT_H

#include "core/numeric.h"
#include "data/gguf/gguf.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* ggml_can_quantize(type) : ds-ft writes this type: f32, f16, bf16, q8_0,
 * q4_0, q5_0, q5_1, q4_K, q5_K or q6_K. */
bool ggml_can_quantize(int type);

/* ggml_quantize(type, x, dst, nrows, ncols) : rows x (nrows, ncols) fp32 into
 * dst (nrows * ggml_row_bytes(type, ncols) bytes). ncols must be a multiple
 * of the type's block. The values must be finite (the caller checks).
 * @return DS_OK, or DS_EINTERNAL for a type or row length it cannot write. */
int ggml_quantize(int type, const float *x, void *dst, int64_t nrows, int64_t ncols);

/* ggml_dequantize(type, src, y, nrows, ncols) : the inverse, into fp32
 * (nrows, ncols), as llama.cpp's dequantize_row_* computes it.
 * @return DS_OK, or DS_EINTERNAL for a type it cannot read. */
int ggml_dequantize(int type, const void *src, float *y, int64_t nrows, int64_t ncols);

/* The K-quants (ggml_kquant.c): k values, k a multiple of 256. */
void ggml_quantize_q4_K(const float *x, void *dst, int64_t k);
void ggml_quantize_q5_K(const float *x, void *dst, int64_t k);
void ggml_quantize_q6_K(const float *x, void *dst, int64_t k);
void ggml_dequantize_q4_K(const void *src, float *y, int64_t k);
void ggml_dequantize_q5_K(const void *src, float *y, int64_t k);
void ggml_dequantize_q6_K(const void *src, float *y, int64_t k);

/* ggml_put_f16(p, v) / ggml_get_f16(p) : a block's fp16 scale at p (2 bytes,
 * unaligned), rounded to nearest even. */
static inline void ggml_put_f16(unsigned char *p, float v)
{
    uint16_t h = ds_f32_to_f16(v);
    memcpy(p, &h, 2);
}

static inline float ggml_get_f16(const unsigned char *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return ds_f16_to_f32(h);
}

/* ggml_nearest_int(x) : x rounded to the nearest integer (ties to even) the
 * way ggml does it, |x| < 2^22. */
static inline int ggml_nearest_int(float x)
{
    /* adding 1.5 * 2^23 leaves the integer in the low mantissa bits */
    union { float f; int32_t i; } u = {x + 12582912.f};
    return (u.i & 0x007fffff) - 0x00400000;
}

#endif
