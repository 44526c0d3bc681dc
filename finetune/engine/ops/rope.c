/* finetune/engine/ops/rope.c - rotary position embedding: the plain-C reference
 * (fp32) and the dispatch to its CUDA twin (cuda/rope.cu). */
#include "ops.h"
#include "ops_cuda.h"

#include "backend/kernel.h"

#include <math.h>
#include <stdlib.h>

/* The angles follow transformers' fp32 arithmetic: inv_freq = 1 / theta^(2i/D)
 * in fp32, angle = (float)pos * inv_freq, then cos/sin of that fp32 angle. */
void op_rope(backend *be, void *x, const int32_t *pos, int N, int nh, int D, float theta, float factor, int inverse)
{
    DS_DISPATCH_CUDA(be, rope_cuda(be, x, pos, N, nh, D, theta, factor, inverse));
    float *xx = x;
    int half = D / 2;
    float *inv_freq = malloc(sizeof(float) * (size_t)half);
    for (int i = 0; i < half; i++) inv_freq[i] = (1.0f / powf(theta, (float)(2 * i) / (float)D)) / factor;
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < half; i++) {
            float ang = (float)pos[n] * inv_freq[i];
            float c = cosf(ang), s = inverse ? -sinf(ang) : sinf(ang);
            for (int h = 0; h < nh; h++) {
                float *v = xx + ((size_t)n * nh + h) * D;
                float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
    free(inv_freq);
    be_round_act(be, x, (size_t)N * nh * D);
}
