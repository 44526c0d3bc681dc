/* finetune/engine/ops/ops.h - the operations of the Llama engine.
 *
 * Each op has a plain-C fp32 reference (ops_<family>.c, the oracle) and a CUDA twin
 * (cuda/ folder, bf16 storage, fp32 math) checked against it by the GPU tests.
 * "act" buffers are fp32 on the CPU and bf16 on CUDA (see backend.h); buffers
 * typed float are fp32 on both. N = B*T token rows; a row-major (N, C) buffer
 * holds token n's vector at n*C. Heads are laid out (N, H, D).
 *
 * Ops that "accumulate" add into their output (+=); the others overwrite.
 */
#ifndef DS_FINETUNE_OPS_H
#define DS_FINETUNE_OPS_H

#include "backend/backend.h"

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

/* RoPE in place on x (N, nh, D), Hugging Face's rotate_half convention:
 * element i < D/2 pairs with i + D/2; angle = pos[n] * inv_freq[i],
 * inv_freq[i] = theta^(-2i/D) / factor. inverse = 1 rotates by -angle
 * (the backward of the rotation). */
void op_rope(backend *be, void *x, const int32_t *pos, int N, int nh, int D, float theta, float factor, int inverse);

/* Causal grouped-query attention, softmax(q·kᵀ/sqrt(D)) v, where token j is
 * visible to token i of the same batch row iff j <= i and seg[j] == seg[i]
 * (seg may be NULL: one segment per row). Query head h reads kv head
 * h / (H / Hkv). q, out (B*T, H, D) act; k, v (B*T, Hkv, D) act;
 * lse (B*T, H) fp32, the log-sum-exp of each softmax row (saved for the
 * backward). Memory is linear in T: no (T, T) matrix is stored. */
void op_attention_fwd(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                      const int32_t *seg, int B, int T, int H, int Hkv, int D);
/* dq (B*T, H, D), dk, dv (B*T, Hkv, D) act, overwritten. */
void op_attention_bwd(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out,
                      const float *lse, const void *q, const void *k, const void *v, const int32_t *seg,
                      int B, int T, int H, int Hkv, int D);

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

#ifdef __cplusplus
}
#endif

#endif
