/* finetune/engine/ops/bias.c - the bias of a linear layer, added to every row:
 * the plain-C reference (fp32) and the dispatch to its CUDA twin (cuda/bias.cu). */
#include "ops.h"
#include "ops_cuda.h"

#include "backend/kernel.h"

void op_bias_add(backend *be, void *y, const void *bias, int N, int n)
{
    DS_DISPATCH_CUDA(be, bias_add_cuda(be, y, bias, N, n));
    float *out = y;
    const float *b = bias;
    for (int r = 0; r < N; r++)
        for (int i = 0; i < n; i++) out[(size_t)r * n + i] += b[i];
    be_round_act(be, y, (size_t)N * n);
}
