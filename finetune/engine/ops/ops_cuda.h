/* finetune/engine/ops/ops_cuda.h - the CUDA twins of ops.h (cuda/NAME.cu), private to ops/.
 * Same arguments and semantics; called only through DS_DISPATCH_CUDA. */
#ifndef DS_FINETUNE_OPS_CUDA_H
#define DS_FINETUNE_OPS_CUDA_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

void embedding_cuda(backend *be, void *out, const int32_t *ids, const void *table, int N, int C);
void rmsnorm_fwd_cuda(backend *be, void *out, float *rstd, const void *x, const void *w, int N, int C, float eps);
void rmsnorm_bwd_cuda(backend *be, void *dx, const void *dout, const void *x, const void *w, const float *rstd,
                      int N, int C);
void rope_cuda(backend *be, void *x, const int32_t *pos, int N, int nh, int D, const rope_table *rt, int inverse);
void attention_fwd_cuda(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                        const int32_t *seg, const attn_shape *s);
void attention_bwd_cuda(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out,
                        const float *lse, const void *q, const void *k, const void *v, const int32_t *seg,
                        const attn_shape *s);
void bias_add_cuda(backend *be, void *y, const void *bias, int N, int n);
void swiglu_fwd_cuda(backend *be, void *out, const void *gate, const void *up, size_t n);
void swiglu_bwd_cuda(backend *be, void *dgate, void *dup, const void *dout, const void *gate, const void *up, size_t n);
void sumsq_cuda(backend *be, float *out, const float *x, size_t n);
void adamw_cuda(backend *be, float *p, const float *grad, float *m, float *v, size_t n, const adamw_args *a);

#ifdef __cplusplus
}
#endif

#endif
