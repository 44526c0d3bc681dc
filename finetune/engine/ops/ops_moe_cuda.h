/* finetune/engine/ops/ops_moe_cuda.h - the CUDA twins of ops_moe.h
 * (cuda/mla.cu, cuda/moe.cu). Private to finetune/engine/ops/: called only
 * through DS_DISPATCH_CUDA. */
#ifndef DS_FINETUNE_OPS_MOE_CUDA_H
#define DS_FINETUNE_OPS_MOE_CUDA_H

#include "ops_moe.h"

#ifdef __cplusplus
extern "C" {
#endif

void mla_heads_cuda(backend *be, void *Q, void *K, void *Vp, const void *q, const void *kva, const void *kvb,
                    const int32_t *pos, int N, const mla_dims *d, const rope_table *rt);
void mla_heads_bwd_cuda(backend *be, void *dq, void *dkva, void *dkvb, const void *dQ, const void *dK, const void *dV,
                        const int32_t *pos, int N, const mla_dims *d, const rope_table *rt);
void columns_cuda(backend *be, void *out, void *x, int N, int ld, int c0, int w, bool back);
void moe_gather_cuda(backend *be, void *xe, const void *x, const int32_t *row_token, int R, int C);
void moe_scatter_cuda(backend *be, void *y, const void *ye, const float *w, const int32_t *tok_row, int N, int K,
                      int C);
void moe_scatter_bwd_cuda(backend *be, void *dye, float *dw, const void *dy, const void *ye, const float *w,
                          const int32_t *row_token, const int32_t *row_k, int R, int K, int C);
void moe_gather_bwd_cuda(backend *be, void *dx, const void *dxe, const int32_t *tok_row, int N, int K, int C);

#ifdef __cplusplus
}
#endif

#endif
