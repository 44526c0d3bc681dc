/* tests/gpu/ops/optim.c - GPU test cases of optim: the CUDA twin against the plain-C
 * reference (finetune/engine/ops/optim.c and cuda/optim.cu). */
#include "tests/gpu/gpu_ops.h"

#include <math.h>

static void run_sumsq(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N;
    float *x = rnd(t, n, 1.0f, true), acc = 0.25f;
    float *gacc = dev_f32(t, &acc, 1);
    op_sumsq(t->cpu, &acc, x, n);
    op_sumsq(t->gpu, gacc, dev_f32(t, x, n), n);
    gpu_ok(t);
    check(t, "sum", get_f32(t, gacc, 1), &acc, 1, c->tol);
}

static void run_adamw(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N;
    float *p = rnd(t, n, 1.0f, true), *g = rnd(t, n, 1.0f, true), *m = rnd(t, n, 0.1f, true), *v = rnd(t, n, 0.01f, true);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    float *gp = dev_f32(t, p, n), *gm = dev_f32(t, m, n), *gv = dev_f32(t, v, n);
    adamw_args a = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = c->p,
                    .grad_scale = 0.5f, .step = c->flag};
    op_adamw(t->cpu, p, g, m, v, n, &a);
    op_adamw(t->gpu, gp, dev_f32(t, g, n), gm, gv, n, &a);
    gpu_ok(t);
    check(t, "p", get_f32(t, gp, n), p, n, c->tol);
    check(t, "m", get_f32(t, gm, n), m, n, c->tol);
    check(t, "v", get_f32(t, gv, n), v, n, c->tol);
}

static void run_optim(tctx *t, const op_case *c)
{
    if (c->op == OP_SUMSQ) run_sumsq(t, c);
    else run_adamw(t, c);
}

const op_case GPU_CASES_OPTIM[] = {
    {.run = run_optim, .op = OP_SUMSQ, .N = 1, .tol = F32},
    {.run = run_optim, .op = OP_SUMSQ, .N = 37 * 130, .tol = F32},
    {.run = run_optim, .op = OP_SUMSQ, .N = 1 << 22, .tol = F32},
    {.run = run_optim, .op = OP_ADAMW, .N = 4099, .flag = 1, .p = 0.0f, .tol = F32},
    {.run = run_optim, .op = OP_ADAMW, .N = 1 << 20, .flag = 10, .p = 0.1f, .tol = F32},
};
const int GPU_NCASES_OPTIM = sizeof GPU_CASES_OPTIM / sizeof GPU_CASES_OPTIM[0];
