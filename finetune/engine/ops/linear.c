/* finetune/engine/ops/linear.c - frozen linear layers, composed from NF4
 * dequantization and backend matrix products (no CUDA twin of its own). */
#include "ops.h"

bool linear_weights(backend *be, const frozen_linear *const *w, int count, const void **W)
{
    int nq = 0;   /* the NF4 weights: slots 0, 1, ... of the workspace, in order */
    for (int i = 0; i < count; i++) nq += !w[i]->dense;
    size_t n = nq ? (size_t)w[0]->out * w[0]->in : 0;
    char *buf = nq ? be_workspace(be, WS_DEQUANT, (size_t)nq * n * be->act_size) : NULL;
    if (nq && !buf) return false;
    const nf4_view *q[NF4_BATCH_MAX];
    int pending = 0, slot = 0;
    for (int i = 0; i < count; i++) {
        if (w[i]->dense) {
            W[i] = w[i]->dense;
            continue;
        }
        W[i] = buf + (size_t)slot++ * n * be->act_size;
        q[pending++] = &w[i]->q;
        if (pending == NF4_BATCH_MAX || slot == nq) {
            op_nf4_dequant_batch(be, buf + (size_t)(slot - pending) * n * be->act_size, q, pending);
            pending = 0;
        }
    }
    return true;
}

const void *linear_weight(backend *be, const frozen_linear *w)
{
    const void *W = NULL;
    return linear_weights(be, &w, 1, &W) ? W : NULL;
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
