/* finetune/engine/ops/embedding.c - token embedding lookup: the plain-C reference
 * (fp32) and the dispatch to its CUDA twin (cuda/embedding.cu). */
#include "ops.h"
#include "ops_cuda.h"

#include "backend/kernel.h"

#include <string.h>

void op_embedding(backend *be, void *out, const int32_t *ids, const void *table, int N, int C)
{
    DS_DISPATCH_CUDA(be, embedding_cuda(be, out, ids, table, N, C));
    float *o = out;
    const float *t = table;
    for (int n = 0; n < N; n++) memcpy(o + (size_t)n * C, t + (size_t)ids[n] * C, sizeof(float) * (size_t)C);
    be_round_act(be, out, (size_t)N * C);
}
