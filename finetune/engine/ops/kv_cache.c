/* finetune/engine/ops/kv_cache.c - the key/value cache of generation: storing
 * new keys and values, and attention against the cache. Plain-C references
 * (fp32) and the dispatch to their CUDA twins (cuda/kv_cache.cu). */
#include "ops_decode.h"
#include "ops_decode_cuda.h"

#include "backend/kernel.h"
#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void op_kv_store(backend *be, void *kc, void *vc, const void *k, const void *v, const int32_t *row,
                 const int32_t *pos, int N, const kv_shape *s)
{
    DS_DISPATCH_CUDA(be, kv_store_cuda(be, kc, vc, k, v, row, pos, N, s));
    const size_t KVD = (size_t)s->Hkv * s->D;
    for (int n = 0; n < N; n++) {
        size_t slot = (size_t)row[n] * s->ctx + (size_t)pos[n];
        memcpy((float *)kc + slot * KVD, (const float *)k + n * KVD, KVD * sizeof(float));
        memcpy((float *)vc + slot * KVD, (const float *)v + n * KVD, KVD * sizeof(float));
    }
}

void op_rope_kv_store(backend *be, void *q, void *k, const void *v, void *kc, void *vc, const int32_t *row,
                      const int32_t *pos, int N, const kv_shape *s, const rope_table *rt)
{
    DS_DISPATCH_CUDA(be, rope_kv_store_cuda(be, q, k, v, kc, vc, row, pos, N, s, rt));
    op_rope(be, q, pos, N, s->H, s->D, rt, 0);
    op_rope(be, k, pos, N, s->Hkv, s->D, rt, 0);
    op_kv_store(be, kc, vc, k, v, row, pos, N, s);
}

/* The loops of op_attention_fwd's reference with i = pos[n] and the keys read
 * from the cache row: the same operations in the same order. */
void op_attention_cached(backend *be, void *out, const void *q, const void *kc, const void *vc,
                         const int32_t *row, const int32_t *pos, int N, const kv_shape *sh)
{
    DS_DISPATCH_CUDA(be, attention_cached_cuda(be, out, q, kc, vc, row, pos, N, sh));
    const float *Q = q, *K = kc, *V = vc;
    float *O = out;
    const int H = sh->H, Hkv = sh->Hkv, D = sh->D, W = sh->window, group = H / Hkv;
    attn_shape as = {.D = D, .scale = sh->scale};
    const float scale = attn_scale(&as);
    int longest = 0;
    for (int n = 0; n < N; n++)
        if (pos[n] + 1 > longest) longest = pos[n] + 1;
    bool oom = false;
#pragma omp parallel if ((long)N * H * longest * D > DS_OMP_MIN_WORK)
    {
        float *p = ds_malloc(sizeof(float) * (size_t)(longest ? longest : 1), "an attention row");   /* per thread */
        if (!p) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for collapse(2) schedule(static)
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++) {
                if (!p) continue;
                const int kh = h / group, i = pos[n];
                const size_t base = (size_t)row[n] * sh->ctx;
                const float *qi = Q + ((size_t)n * H + h) * D;
                float m = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    if (W && i - j >= W) { p[j] = -INFINITY; continue; }
                    const float *kj = K + ((base + j) * Hkv + kh) * D;
                    float s = 0;
                    for (int d = 0; d < D; d++) s += qi[d] * kj[d];
                    p[j] = s * scale;
                    if (p[j] > m) m = p[j];
                }
                attn_row_output(p, i + 1, m, V + (base * Hkv + kh) * D, (size_t)Hkv * D, D, O + ((size_t)n * H + h) * D);
            }
        free(p);
    }
    if (oom) be_fail(be, DS_ENOMEM, "out of memory allocating an attention row of %d scores", longest);
    be_round_act(be, out, (size_t)N * H * D);
}
