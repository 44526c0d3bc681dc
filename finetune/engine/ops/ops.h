/* finetune/engine/ops/ops.h - the operations of the Llama engine.
 *
 * Each op NAME has a plain-C fp32 reference in NAME.c (the oracle), which
 * dispatches to its CUDA twin in cuda/NAME.cu (bf16 storage, fp32 math; the
 * twins' prototypes are in ops_cuda.h), and a GPU test case in
 * tests/gpu/ops/NAME.c that checks the twin against the reference.
 * "act" buffers are fp32 on the CPU and bf16 on CUDA (see backend.h); buffers
 * typed float are fp32 on both. N = B*T token rows; a row-major (N, C) buffer
 * holds token n's vector at n*C. Heads are laid out (N, H, D).
 *
 * Ops that "accumulate" add into their output (+=); the others overwrite.
 */
#ifndef DS_FINETUNE_OPS_H
#define DS_FINETUNE_OPS_H

#include "backend/backend.h"
#include "quant/nf4.h"

#include <stdbool.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out (N, C) act = table[ids[n]] (V, C) act. ids must be < V. */
void op_embedding(backend *be, void *out, const int32_t *ids, const void *table, int N, int C);

/* RMSNorm: rstd[n] = 1/sqrt(mean(x[n]^2) + eps); out = x * rstd * w.
 * out, x (N, C) act; w (C) act; rstd (N) fp32 (saved for the backward). */
void op_rmsnorm_fwd(backend *be, void *out, float *rstd, const void *x, const void *w, int N, int C, float eps);
/* dx (N, C) act, accumulates; dout, x (N, C) act; w (C) act; rstd (N) fp32. */
void op_rmsnorm_bwd(backend *be, void *dx, const void *dout, const void *x, const void *w, const float *rstd,
                    int N, int C);

/* The rotary embedding of a model (model_rope_freqs): the rotation speed of
 * each pair of a head's dimensions, and the factor cos and sin are scaled by. */
#define ROPE_MAX_HALF 256   /* head_dim up to 512 */
typedef struct {
    int half;                           /* head_dim / 2 */
    float inv_freq[ROPE_MAX_HALF];      /* (half) */
    float scale;                        /* yarn's attention factor; 1 otherwise */
} rope_table;

/* RoPE in place on x (N, nh, D), Hugging Face's rotate_half convention:
 * element i < D/2 pairs with i + D/2; angle = pos[n] * inv_freq[i] (fp32),
 * then x' = scale (x cos - rotate_half(x) sin). inverse = 1 rotates by -angle
 * with the same scale (the backward of the rotation). D must be 2 rt->half. */
void op_rope(backend *be, void *x, const int32_t *pos, int N, int nh, int D, const rope_table *rt, int inverse);

/* The shape and mask of one attention call. */
typedef struct {
    int B, T;          /* batch rows and their length: N = B*T token rows */
    int H, Hkv;        /* query heads; key/value heads (query head h reads kv head h / (H / Hkv)) */
    int D;             /* query and key head size */
    int window;        /* a query sees at most this many tokens, itself included; 0 = every earlier one */
    float scale;       /* softmax scale; 0 = 1/sqrt(D) */
} attn_shape;

/* Causal grouped-query attention, softmax(scale q·kᵀ) v, where token j is
 * visible to token i of the same batch row iff j <= i, i - j < window (when
 * set) and seg[j] == seg[i] (seg may be NULL: one segment per row).
 * q, out (B*T, H, D) act; k, v (B*T, Hkv, D) act; lse (B*T, H) fp32, the
 * log-sum-exp of each softmax row (saved for the backward). Memory is linear
 * in T: no (T, T) matrix is stored. */
void op_attention_fwd(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                      const int32_t *seg, const attn_shape *s);
/* dq (B*T, H, D), dk, dv (B*T, Hkv, D) act, overwritten. */
void op_attention_bwd(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out,
                      const float *lse, const void *q, const void *k, const void *v, const int32_t *seg,
                      const attn_shape *s);
/* The softmax scale a shape asks for. */
float attn_scale(const attn_shape *s);
/* attn_row_output() : the plain-C references' last half of one query's
 * attention (training and the cached decode share it): the scores p[0..n)
 * (-INFINITY = not visible; m their largest) become softmax weights in place,
 * and o (D) = sum over j of p_j v_j, v_j = v0 + j * v_stride. @return the
 * softmax's denominator (so m + log of it is the row's log-sum-exp). */
float attn_row_output(float *p, int n, float m, const float *v0, size_t v_stride, int D, float *o);

/* y (N, n) act += bias (n) act, on every row: the bias of a linear layer. */
void op_bias_add(backend *be, void *y, const void *bias, int N, int n);

/* SwiGLU: out = silu(gate) * up, elementwise over n values (act). */
void op_swiglu_fwd(backend *be, void *out, const void *gate, const void *up, size_t n);
/* dgate, dup overwritten; dout, gate, up (n) act. */
void op_swiglu_bwd(backend *be, void *dgate, void *dup, const void *dout, const void *gate, const void *up, size_t n);

/* Sum of squares of n fp32 values, added into *out (an fp32 on the backend). */
void op_sumsq(backend *be, float *out, const float *x, size_t n);

/* AdamW as torch.optim.AdamW computes it, on n fp32 parameters:
 *   g = grad * grad_scale;  p -= lr * wd * p;
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps).
 * step counts from 1. */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
    int step;
} adamw_args;
void op_adamw(backend *be, float *p, const float *grad, float *m, float *v, size_t n, const adamw_args *a);

/* ---- frozen linear layers (linear.c): 16-bit weights (dense act) or NF4. The 4-bit
 * weight is dequantized into the backend's WS_DEQUANT workspace right before each
 * product, so only one layer's weight ever exists in 16 bits. Frozen: only the
 * input gradient is computed. No CUDA twin: composed of nf4 dequant and GEMMs. ---- */
typedef struct {
    int out, in;
    const void *bias;    /* (out) act, or NULL: frozen like the weight */
    const void *dense;   /* (out, in) act, or NULL when quantized */
    nf4_view q;          /* backend pointers, when dense == NULL */
} frozen_linear;

/* y (N, out) act = x (N, in) · Wᵀ + bias + beta · y. */
void op_linear_fwd(backend *be, void *y, const void *x, const frozen_linear *w, int N, float beta);
/* dx (N, in) act = dy (N, out) · W + beta · dx. */
void op_linear_bwd(backend *be, void *dx, const void *dy, const frozen_linear *w, int N, float beta);
/* The weight as act values: `dense`, or dequantized into WS_DEQUANT. */
const void *linear_weight(backend *be, const frozen_linear *w);
/* linear_weights() : the weights of `count` frozen linears of one shape (a
 * layer's routed experts), for products: 16-bit ones as they are, NF4 ones
 * dequantized together into WS_DEQUANT (count * out * in act, one launch per
 * NF4_BATCH_MAX on the GPU). W[i] receives weight i.
 * @return false when the workspace cannot be had (be->err says why); a failed
 * launch is recorded in be->err like any op's. */
bool linear_weights(backend *be, const frozen_linear *const *w, int count, const void **W);

#ifdef __cplusplus
}
#endif

#endif
