/* quant/ggml_quant.c - the 32-value block formats (q8_0, q4_0, q5_0, q5_1), the
 * 16-bit floats, and the entry points for every type ds-ft writes.
 *
 * Bit compatibility with llama.cpp needs the same fp32 operations in the
 * same order: the scale is computed from the signed value of largest
 * magnitude (the first one found), its reciprocal multiplies each value, and
 * the code is found by truncating value + offset (q4_0, q5_0) or by roundf
 * (q8_0). The build disables fused multiply-adds, so every product is
 * rounded on its own as it is in ggml's C reference. */
#include "ggml_quant.h"

#include "core/numeric.h"
#include "core/status.h"

#include <math.h>
#include <string.h>

#define QK 32   /* values per block of q8_0, q4_0, q5_0, q5_1 */

/* Largest |x| of a block and, for the signed formats, the value that has it
 * (the first such value, as ggml's strict comparison keeps it). */
static float block_absmax(const float *x, int n, float *signed_max)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    if (signed_max) *signed_max = max;
    return amax;
}

/* q8_0 block: d (f16), 32 x int8. */
static void quantize_q8_0(const float *x, unsigned char *b)
{
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    float d = amax / 127, id = d ? 1.0f / d : 0.0f;
    ggml_put_f16(b, d);
    for (int j = 0; j < QK; j++) b[2 + j] = (unsigned char)(int8_t)roundf(x[j] * id);
}

static void dequantize_q8_0(const unsigned char *b, float *y)
{
    float d = ggml_get_f16(b);
    for (int j = 0; j < QK; j++) y[j] = (int8_t)b[2 + j] * d;
}

/* q4_0 block: d (f16), 16 bytes; byte j holds value j (low nibble) and
 * value j + 16 (high nibble) as code = value / d + 8. */
static void quantize_q4_0(const float *x, unsigned char *b)
{
    float max;
    block_absmax(x, QK, &max);
    float d = max / -8, id = d ? 1.0f / d : 0.0f;
    ggml_put_f16(b, d);
    for (int j = 0; j < QK / 2; j++) {
        int lo = (int8_t)(x[j] * id + 8.5f), hi = (int8_t)(x[j + QK / 2] * id + 8.5f);
        lo = lo < 15 ? lo : 15;
        hi = hi < 15 ? hi : 15;
        b[2 + j] = (unsigned char)(lo | hi << 4);
    }
}

static void dequantize_q4_0(const unsigned char *b, float *y)
{
    float d = ggml_get_f16(b);
    for (int j = 0; j < QK / 2; j++) {
        y[j] = ((b[2 + j] & 0x0F) - 8) * d;
        y[j + QK / 2] = ((b[2 + j] >> 4) - 8) * d;
    }
}

/* q5_0 block: d (f16), 32 fifth bits (u32, bit j for value j), 16 bytes of
 * low nibbles as in q4_0; code = value / d + 16. */
static void quantize_q5_0(const float *x, unsigned char *b)
{
    float max;
    block_absmax(x, QK, &max);
    float d = max / -16, id = d ? 1.0f / d : 0.0f;
    ggml_put_f16(b, d);
    uint32_t high = 0;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (int8_t)(x[j] * id + 16.5f), hi = (int8_t)(x[j + QK / 2] * id + 16.5f);
        lo = lo < 31 ? lo : 31;
        hi = hi < 31 ? hi : 31;
        b[6 + j] = (unsigned char)((lo & 0x0F) | (hi & 0x0F) << 4);
        high |= (uint32_t)(lo >> 4 & 1) << j;
        high |= (uint32_t)(hi >> 4 & 1) << (j + QK / 2);
    }
    memcpy(b + 2, &high, 4);
}

static void dequantize_q5_0(const unsigned char *b, float *y)
{
    float d = ggml_get_f16(b);
    uint32_t high;
    memcpy(&high, b + 2, 4);
    for (int j = 0; j < QK / 2; j++) {
        int lo = (b[6 + j] & 0x0F) | (int)(high >> j & 1) << 4;
        int hi = (b[6 + j] >> 4) | (int)(high >> (j + QK / 2) & 1) << 4;
        y[j] = (lo - 16) * d;
        y[j + QK / 2] = (hi - 16) * d;
    }
}

/* q5_1 block: d (f16), m (f16: the block's minimum), 32 fifth bits, 16
 * bytes of low nibbles; code = (value - m) / d rounded half up. */
static void quantize_q5_1(const float *x, unsigned char *b)
{
    float min = x[0], max = x[0];
    for (int j = 1; j < QK; j++) {
        min = x[j] < min ? x[j] : min;
        max = x[j] > max ? x[j] : max;
    }
    float d = (max - min) / 31, id = d ? 1.0f / d : 0.0f;
    ggml_put_f16(b, d);
    ggml_put_f16(b + 2, min);
    uint32_t high = 0;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (uint8_t)((x[j] - min) * id + 0.5f), hi = (uint8_t)((x[j + QK / 2] - min) * id + 0.5f);
        b[8 + j] = (unsigned char)((lo & 0x0F) | (hi & 0x0F) << 4);
        high |= (uint32_t)(lo >> 4 & 1) << j;
        high |= (uint32_t)(hi >> 4 & 1) << (j + QK / 2);
    }
    memcpy(b + 4, &high, 4);
}

static void dequantize_q5_1(const unsigned char *b, float *y)
{
    float d = ggml_get_f16(b), m = ggml_get_f16(b + 2);
    uint32_t high;
    memcpy(&high, b + 4, 4);
    for (int j = 0; j < QK / 2; j++) {
        int lo = (b[8 + j] & 0x0F) | (int)(high >> j & 1) << 4;
        int hi = (b[8 + j] >> 4) | (int)(high >> (j + QK / 2) & 1) << 4;
        y[j] = lo * d + m;
        y[j + QK / 2] = hi * d + m;
    }
}

bool ggml_can_quantize(int type)
{
    switch (type) {
    case GGML_F32: case GGML_F16: case GGML_BF16: case GGML_Q8_0: case GGML_Q4_0: case GGML_Q5_0: case GGML_Q5_1:
    case GGML_Q4_K:
    case GGML_Q5_K: case GGML_Q6_K: return true;
    default: return false;
    }
}

/* A type this file handles, and rows that are whole numbers of its blocks. */
static int check_rows(int type, int64_t nrows, int64_t ncols, const char *verb, const ggml_type_info **ti)
{
    *ti = ggml_type_get(type);
    if (!ggml_can_quantize(type) || ncols < 1 || ncols % (*ti)->block || nrows < 0)
        return ds_fail(DS_EINTERNAL, "ggml blocks: cannot %s rows of %lld values as %s", verb, (long long)ncols,
                       *ti ? (*ti)->name : "an unknown type");
    return DS_OK;
}

/* The blocks of one 32-value format, applied along n values. */
typedef void (*block_fn)(const float *x, unsigned char *b);
typedef void (*unblock_fn)(const unsigned char *b, float *y);

int ggml_quantize(int type, const float *x, void *dst, int64_t nrows, int64_t ncols)
{
    const ggml_type_info *ti;
    int rc = check_rows(type, nrows, ncols, "write", &ti);
    if (rc) return rc;
    int64_t n = nrows * ncols;
    unsigned char *out = dst;
    block_fn block = type == GGML_Q8_0   ? quantize_q8_0
                     : type == GGML_Q4_0 ? quantize_q4_0
                     : type == GGML_Q5_1 ? quantize_q5_1
                                         : quantize_q5_0;
    switch (type) {
    case GGML_F32: memcpy(dst, x, sizeof(float) * (size_t)n); break;
    case GGML_F16:
        for (int64_t i = 0; i < n; i++) ggml_put_f16(out + 2 * i, x[i]);
        break;
    case GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = ds_f32_to_bf16(x[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        break;
    case GGML_Q4_K: ggml_quantize_q4_K(x, dst, n); break;
    case GGML_Q5_K: ggml_quantize_q5_K(x, dst, n); break;
    case GGML_Q6_K: ggml_quantize_q6_K(x, dst, n); break;
    default:
#pragma omp parallel for schedule(static) if (n > (1 << 18))   /* blocks are independent */
        for (int64_t i = 0; i < n / QK; i++) block(x + i * QK, out + i * ti->bytes);
    }
    return DS_OK;
}

int ggml_dequantize(int type, const void *src, float *y, int64_t nrows, int64_t ncols)
{
    const ggml_type_info *ti;
    int rc = check_rows(type, nrows, ncols, "read", &ti);
    if (rc) return rc;
    int64_t n = nrows * ncols;
    const unsigned char *in = src;
    unblock_fn unblock = type == GGML_Q8_0   ? dequantize_q8_0
                         : type == GGML_Q4_0 ? dequantize_q4_0
                         : type == GGML_Q5_1 ? dequantize_q5_1
                                             : dequantize_q5_0;
    switch (type) {
    case GGML_F32: memcpy(y, src, sizeof(float) * (size_t)n); break;
    case GGML_F16:
        for (int64_t i = 0; i < n; i++) y[i] = ggml_get_f16(in + 2 * i);
        break;
    case GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, in + 2 * i, 2);
            y[i] = ds_bf16_to_f32(h);
        }
        break;
    case GGML_Q4_K: ggml_dequantize_q4_K(src, y, n); break;
    case GGML_Q5_K: ggml_dequantize_q5_K(src, y, n); break;
    case GGML_Q6_K: ggml_dequantize_q6_K(src, y, n); break;
    default:
        for (int64_t i = 0; i < n / QK; i++) unblock(in + i * ti->bytes, y + i * QK);
    }
    return DS_OK;
}
