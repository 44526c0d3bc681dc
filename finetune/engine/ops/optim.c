/* finetune/engine/ops/optim.c - gradient norm and AdamW: plain-C references and
 * the dispatch to their CUDA twins. */
#include "ops.h"
#include "ops_cuda.h"

#include "backend/kernel.h"

#include <math.h>

void op_sumsq(backend *be, float *out, const float *x, size_t n)
{
    DS_DISPATCH_CUDA(be, sumsq_cuda(be, out, x, n));
    double s = 0;   /* double: the reference should not lose the small terms */
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    *out += (float)s;
}

void op_adamw(backend *be, float *p, const float *grad, float *m, float *v, size_t n, const adamw_args *a)
{
    DS_DISPATCH_CUDA(be, adamw_cuda(be, p, grad, m, v, n, a));
    const float bc1 = 1.0f - powf(a->beta1, (float)a->step);
    const float bc2 = 1.0f - powf(a->beta2, (float)a->step);
    const float step_size = a->lr / bc1, bc2_sqrt = sqrtf(bc2);
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * a->grad_scale;
        p[i] -= a->lr * a->weight_decay * p[i];
        m[i] = a->beta1 * m[i] + (1.0f - a->beta1) * g;
        v[i] = a->beta2 * v[i] + (1.0f - a->beta2) * g * g;
        p[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + a->eps);
    }
}
