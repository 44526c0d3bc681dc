/* finetune/engine/ops/linear.h - a frozen linear layer on a backend: 16-bit weights
 * (dense act) or NF4. The 4-bit weight is dequantized into the backend's
 * WS_DEQUANT workspace right before each product, so only one layer's
 * weight ever exists in 16 bits. Frozen: only the input gradient is computed. */
#ifndef DS_FINETUNE_LINEAR_H
#define DS_FINETUNE_LINEAR_H

#include "backend/backend.h"
#include "quant/nf4.h"

#include <stdbool.h>

typedef struct {
    int out, in;
    const void *dense;   /* (out, in) act, or NULL when quantized */
    nf4_view q;          /* backend pointers, when dense == NULL */
} frozen_linear;

/* y (N, out) act = x (N, in) · Wᵀ + beta · y. */
void op_linear_fwd(backend *be, void *y, const void *x, const frozen_linear *w, int N, float beta);
/* dx (N, in) act = dy (N, out) · W + beta · dx. */
void op_linear_bwd(backend *be, void *dx, const void *dy, const frozen_linear *w, int N, float beta);
/* The weight as act values: `dense`, or dequantized into WS_DEQUANT. */
const void *linear_weight(backend *be, const frozen_linear *w);

#endif
