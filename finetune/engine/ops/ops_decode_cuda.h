/* finetune/engine/ops/ops_decode_cuda.h - the CUDA twins of ops_decode.h
 * (cuda/kv_cache.cu, cuda/rope.cu, cuda/nf4_gemv.cu). Private to finetune/engine/ops/: called
 * only through DS_DISPATCH_CUDA. */
#ifndef DS_FINETUNE_OPS_DECODE_CUDA_H
#define DS_FINETUNE_OPS_DECODE_CUDA_H

#include "ops_decode.h"

#ifdef __cplusplus
extern "C" {
#endif

void kv_store_cuda(backend *be, void *kc, void *vc, const void *k, const void *v, const int32_t *row,
                   const int32_t *pos, int N, const kv_shape *s);
void rope_kv_store_cuda(backend *be, void *q, void *k, const void *v, void *kc, void *vc, const int32_t *row,
                        const int32_t *pos, int N, const kv_shape *s, const rope_table *rt);
void attention_cached_cuda(backend *be, void *out, const void *q, const void *kc, const void *vc,
                           const int32_t *row, const int32_t *pos, int N, const kv_shape *s);
void nf4_gemv_cuda(backend *be, void *y, const void *x, const nf4_view *q, int N, float beta);
void nf4_gemv_in_cuda(backend *be, void *const *y, void *h, const void *x, const gemv_in *in,
                      const nf4_view *const *q, int count, int N, float beta);
void nf4_gemv_multi_cuda(backend *be, void *const *y, const void *x, const nf4_view *const *q, int count, int N);

#ifdef __cplusplus
}
#endif

#endif
