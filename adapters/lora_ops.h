/* adapters/lora_ops.h - LoRA forward and backward on a backend.
 *
 *   y = x·Wᵀ + s · (drop(x)·Aᵀ)·Bᵀ,   A (r, in), B (out, r), s = alpha/r (rsLoRA: alpha/sqrt(r))
 *
 * W is frozen and handled by the caller; these ops add the low-rank path and
 * produce the gradients of A and B. The products run in the activations' type
 * (bf16 on CUDA, on the tensor cores with fp32 accumulation; fp32 on the CPU):
 * A, B, u and du are rounded to it just before each product, x and dy are read
 * as they are, dA and dB accumulate in fp32, and the low-rank output is added
 * into y (or dx) in the product's epilogue with a single rounding. (PEFT runs
 * its fp32 adapters in fp32 over a bf16 base; on bf16 activations the
 * difference is within bf16 rounding, and it spares an fp32 copy of every
 * input and output.) drop(x) = x * keep / (1 - p) with keep decided by
 * ds_dropout_keep(seed, step, id, (row0 + n)*in + c, p), so the backward (and
 * a recomputed forward) regenerates the same mask without storing it, and a
 * batch run in slices of rows (row0 each slice's first) drops what the whole
 * batch would. Long batches run in slices of LORA_MAX_ROWS rows, so that the
 * workspace does not grow with the sequence.
 */
#ifndef DS_ADAPTERS_LORA_OPS_H
#define DS_ADAPTERS_LORA_OPS_H

#include "backend/backend.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int r, in, out;
    float scale;            /* s */
    float dropout;          /* p in [0, 1) */
    uint64_t id;            /* module number: its own dropout stream */
    const float *A;         /* (r, in) fp32 */
    const float *B;         /* (out, r) fp32 */
    float *dA;              /* (r, in) fp32, accumulated */
    float *dB;              /* (out, r) fp32, accumulated */
} lora_view;

typedef struct {
    uint64_t seed;          /* the run's seed */
    uint64_t step;          /* micro-batch counter: a new mask for each micro-batch */
    bool training;          /* dropout only when training */
    int row0;               /* the rows' first position in the micro-batch (0 for a whole batch) */
} lora_ctx;

#define LORA_MAX_ROWS 8192  /* rows per slice of the LoRA products */

/* y (N, out) act += s · u · Bᵀ, with u (N, r) fp32 = drop(x)·Aᵀ stored for the backward.
 * x (N, in) act. */
void op_lora_fwd(backend *be, void *y, float *u, const void *x, const lora_view *l, int N, const lora_ctx *ctx);

/* Only u (N, r) fp32 = drop(x)·Aᵀ: what the backward needs from a forward
 * whose output is not (a layer recomputed for its backward). */
void op_lora_u(backend *be, float *u, const void *x, const lora_view *l, int N, const lora_ctx *ctx);

/* Given dy (N, out) act and the forward's x (act) and u (fp32):
 *   dB += s · dyᵀ·u;   du = s · dy·B;   dA += duᵀ·drop(x);   dx += drop'(du·A)   (dx act, accumulates) */
void op_lora_bwd(backend *be, void *dx, const void *dy, const void *x, const float *u, const lora_view *l, int N,
                 const lora_ctx *ctx);

/* lora_workspace_bytes() : the workspace (WS_LORA) the LoRA ops need for N
 * rows of a module on a backend whose activations take act_size bytes: A and
 * B, u and du in the activations' type and du in fp32 for n = min(N,
 * LORA_MAX_ROWS) rows, and with dropout one (n, in) activation.
 * @return its size in bytes. */
size_t lora_workspace_bytes(const lora_view *l, int N, size_t act_size);

/* out (n) act (+)= drop(x), x act: x[i] * keep(first + i) / (1 - p) for i in
 * [0, n), summed in fp32 and rounded once; out may be x. accumulate = false
 * overwrites out. first places x in the module's mask (a slice of a longer
 * batch). Used by the LoRA ops; exposed for tests. */
void op_dropout(backend *be, void *out, const void *x, size_t n, uint64_t first, float p, uint64_t seed,
                uint64_t step, uint64_t id, bool accumulate);

void dropout_cuda(backend *be, void *out, const void *x, size_t n, uint64_t first, float p, uint64_t seed,
                  uint64_t step, uint64_t id, bool accumulate);

#ifdef __cplusplus
}
#endif

#endif
