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

#include "backend/backend.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

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

/* op_nf4_dequant_batch() : dequantize `count` weights of one size (a layer's
 * routed experts) in one pass: out (count, rows, cols) act, weight i at
 * out + i * n. On the GPU one launch takes up to NF4_BATCH_MAX of them, so
 * that many small weights cost what one large one does. */
#define NF4_BATCH_MAX 32
void op_nf4_dequant_batch(backend *be, void *out, const nf4_view *const *q, int count);

void nf4_dequant_cuda(backend *be, void *out, const nf4_view *const *q, int count);

/* ---- owning quantized weights (host memory; quant/nf4.c) ---- */

/* The storage behind an nf4_view. Every buffer is its own allocation, so
 * the struct may be copied or moved by value; `view` points into them.
 * Zero-initialise it (= {0}) before use; nf4_tensor_free is then safe. */
typedef struct {
    nf4_view view;
    uint8_t *packed;        /* (ceil(n / 2)) */
    float *absmax;          /* (nblocks) fp32, when !double_quant */
    uint8_t *absmax_q;      /* (nblocks) 8-bit codes, when double_quant */
    float *absmax2;         /* (nblocks2), when double_quant */
    float *code;            /* (16) quant_map */
    float *nested_map;      /* (256) nested_quant_map, when double_quant */
} nf4_tensor;

/* Quantize w (rows, cols), the 16-bit weights as fp32, exactly as
 * bitsandbytes' quantize_4bit(blocksize=64, quant_type="nf4",
 * compress_statistics=double_quant) on a GPU does; `dtype` records the
 * 16-bit type the values came from (dequantization rounds to it).
 * Non-finite weights are refused (DS_EDATA). */
int nf4_quantize(const float *w, int64_t rows, int64_t cols, bool double_quant, nf4_out_dtype dtype,
                 nf4_tensor *out);
/* Allocate an empty tensor of this shape (for loaders); code = NF4_CODE and
 * nested_map = the dynamic map, to be overwritten from a checkpoint. */
int nf4_tensor_alloc(nf4_tensor *t, int64_t rows, int64_t cols, bool double_quant, nf4_out_dtype dtype);
void nf4_tensor_free(nf4_tensor *t);
/* Bytes the weight occupies when resident (every buffer the view uses). */
size_t nf4_tensor_bytes(const nf4_tensor *t);
static inline const nf4_view *nf4_tensor_view(const nf4_tensor *t) { return &t->view; }

/* bitsandbytes' 256-value signed dynamic map (create_dynamic_map(signed=True)),
 * computed with the same fp32 arithmetic, ascending. */
void nf4_dynamic_map(float map[256]);
/* The 4-bit NF4 index of x = w / absmax: how many of the 15 midpoints between
 * neighbouring NF4 values lie strictly below x (NaN -> 0). */
uint8_t nf4_encode(float x);
/* Nearest entry of a 256-value map, found the way bitsandbytes' 8-bit
 * blockwise quantizer searches it (so that ties land where its do). */
uint8_t nf4_encode8(const float map[256], float x);
/* mean(x[0..n)) in fp32 as torch computes it on a GPU: summed in its CUDA
 * reduction order, then times the fp32 reciprocal of n. Checked against
 * bitsandbytes for one-block reductions (up to 130560 values, i.e. weights
 * of up to 8.3M elements); longer vectors follow torch's multi-block split
 * as an H100 sizes it (a GPU with fewer SMs may split the longest vectors
 * otherwise, which moves the offset by about an ulp). */
float nf4_offset_mean(const float *x, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
