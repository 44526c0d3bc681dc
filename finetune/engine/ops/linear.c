/* finetune/engine/ops/linear.c - frozen linear layers, composed from NF4
 * dequantization and backend matrix products (no CUDA twin of its own). */
#include "ops.h"

const void *linear_weight(backend *be, const frozen_linear *w)
{
    if (w->dense) return w->dense;
    void *buf = be_workspace(be, WS_DEQUANT, (size_t)w->out * w->in * be->act_size);
    if (buf) op_nf4_dequant(be, buf, &w->q);
    return buf;
}

void op_linear_fwd(backend *be, void *y, const void *x, const frozen_linear *w, int N, float beta)
{
    const void *W = linear_weight(be, w);
    if (W) be_matmul_nt(be, y, x, W, N, w->out, w->in, beta);
    if (W && w->bias) op_bias_add(be, y, w->bias, N, w->out);
}

void op_linear_bwd(backend *be, void *dx, const void *dy, const frozen_linear *w, int N, float beta)
{
    const void *W = linear_weight(be, w);
    if (W) be_matmul_nn(be, dx, dy, W, N, w->out, w->in, beta);
}
