/* finetune/engine/ops/rope.c - rotary position embedding: the plain-C reference
 * (fp32) and the dispatch to its CUDA twin (cuda/rope.cu). */
#include "ops.h"
#include "ops_cuda.h"

#include "backend/kernel.h"

#include <math.h>

/* The angles follow transformers' fp32 arithmetic: angle = (float)pos *
 * inv_freq in fp32, then cos/sin of that fp32 angle, each times the scale. */
void op_rope(backend *be, void *x, const int32_t *pos, int N, int nh, int D, const rope_table *rt, int inverse)
{
    DS_DISPATCH_CUDA(be, rope_cuda(be, x, pos, N, nh, D, rt, inverse));
    float *xx = x;
    int half = D / 2;
    const float *inv_freq = rt->inv_freq;
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < half; i++) {
            float ang = (float)pos[n] * inv_freq[i];
            float c = cosf(ang) * rt->scale, s = (inverse ? -sinf(ang) : sinf(ang)) * rt->scale;
            for (int h = 0; h < nh; h++) {
                float *v = xx + ((size_t)n * nh + h) * D;
                float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
    be_round_act(be, x, (size_t)N * nh * D);
}
