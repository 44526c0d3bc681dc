/* tests/gpu/ops/bias.c - GPU test cases of bias_add: the CUDA twin against the plain-C
 * reference (finetune/engine/ops/bias.c and cuda/bias.cu). */
#include "tests/gpu/gpu_ops.h"

/* y (N, C) += bias (C). */
static void run_bias(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N * c->C;
    float *y = rnd(t, n, 2.0f, false), *b = rnd(t, c->C, 1.0f, false);
    void *gy = dev_act(t, y, n);
    op_bias_add(t->cpu, y, b, c->N, c->C);
    op_bias_add(t->gpu, gy, dev_act(t, b, c->C), c->N, c->C);
    gpu_ok(t);
    check(t, "y", get_act(t, gy, n), y, n, c->tol);
}

const op_case GPU_CASES_BIAS[] = {
    {.run = run_bias, .op = OP_BIAS, .N = 37, .C = 130, .tol = BF},
    {.run = run_bias, .op = OP_BIAS, .N = 512, .C = 3584, .tol = BF},
    {.run = run_bias, .op = OP_BIAS, .N = 1, .C = 1, .tol = BF},
};
const int GPU_NCASES_BIAS = sizeof GPU_CASES_BIAS / sizeof GPU_CASES_BIAS[0];
