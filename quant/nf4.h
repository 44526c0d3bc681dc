/* quant/nf4.h - NF4 4-bit weights, bit-compatible with bitsandbytes.
 *
 * A weight [rows, cols] is flattened row-major and cut into blocks of 64
 * consecutive values (a block may cross rows; the last may be partial).
 * Each value is stored as a 4-bit index into the NF4 table, two per byte,
 * the even element in the HIGH nibble; each block has an absmax scale.
 * With double quantization the absmax values are themselves stored as 8-bit
 * codes: absmax[b] = nested_map[absmax_q[b]] * absmax2[b / 256] + offset.
 * Dequantized: w[i] = code[nibble(i)] * absmax[i / 64], rounded to the
 * original 16-bit dtype as bitsandbytes returns it.
 */
#ifndef DS_QUANT_NF4_H
#define DS_QUANT_NF4_H

#include "../backend/backend.h"

#include <stdbool.h>
#include <stdint.h>

#define NF4_BLOCK 64
#define NF4_NESTED_BLOCK 256

/* The 16 NF4 values (bitsandbytes' table). */
extern const float NF4_CODE[16];

typedef enum { NF4_OUT_BF16, NF4_OUT_F16, NF4_OUT_F32 } nf4_out_dtype;

/* A quantized weight. Pointers are host memory (nf4_tensor as loaded or
 * made by nf4_quantize) or backend memory (a view uploaded by the engine). */
typedef struct {
    int64_t rows, cols;         /* original shape [out, in] */
    int64_t n;                  /* rows * cols */
    int64_t nblocks;            /* ceil(n / 64) */
    int64_t nblocks2;           /* ceil(nblocks / 256) when double-quantized, else 0 */
    bool double_quant;
    nf4_out_dtype dtype;        /* the 16-bit dtype the weight came from */
    const uint8_t *packed;      /* (ceil(n / 2)) */
    const float *absmax;        /* (nblocks) fp32, when !double_quant */
    const uint8_t *absmax_q;    /* (nblocks) 8-bit codes, when double_quant */
    const float *absmax2;       /* (nblocks2) */
    float offset;               /* mean of the absmax values, when double_quant */
    const float *code;          /* (16) quant_map */
    const float *nested_map;    /* (256) nested_quant_map, when double_quant */
} nf4_view;

/* Dequantize to the backend's act type: out (rows, cols) act.
 * On the CPU the fp32 values equal the 16-bit rounding of bitsandbytes'
 * result, so CPU and GPU engines see the same weights. */
void op_nf4_dequant(backend *be, void *out, const nf4_view *q);

#ifdef __cplusplus
extern "C" {
#endif
void nf4_dequant_cuda(backend *be, void *out, const nf4_view *q);
#ifdef __cplusplus
}
#endif

#endif
