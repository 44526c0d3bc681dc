/* finetune/engine/ops/swiglu.c - SwiGLU forward and backward: the plain-C
 * references (fp32) and the dispatch to their CUDA twins (cuda/swiglu.cu). */
#include "ops.h"
#include "ops_cuda.h"

#include "backend/kernel.h"

#include <math.h>

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void op_swiglu_fwd(backend *be, void *out, const void *gate, const void *up, size_t n)
{
    DS_DISPATCH_CUDA(be, swiglu_fwd_cuda(be, out, gate, up, n));
    float *o = out;
    const float *g = gate, *u = up;
    for (size_t i = 0; i < n; i++) o[i] = g[i] * sigmoidf(g[i]) * u[i];
    be_round_act(be, out, n);
}

/* d silu(g)/dg = s (1 + g (1 - s)) with s = sigmoid(g). */
void op_swiglu_bwd(backend *be, void *dgate, void *dup, const void *dout, const void *gate, const void *up, size_t n)
{
    DS_DISPATCH_CUDA(be, swiglu_bwd_cuda(be, dgate, dup, dout, gate, up, n));
    float *dg = dgate, *du = dup;
    const float *d = dout, *g = gate, *u = up;
    for (size_t i = 0; i < n; i++) {
        float s = sigmoidf(g[i]);
        float dgi = d[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        float dui = d[i] * g[i] * s;
        dg[i] = dgi;
        du[i] = dui;
    }
    be_round_act(be, dgate, n);
    be_round_act(be, dup, n);
}
