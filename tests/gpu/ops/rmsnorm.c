/* tests/gpu/ops/rmsnorm.c - GPU test cases of rmsnorm: the CUDA twin against the plain-C
 * reference (finetune/engine/ops/rmsnorm.c and cuda/rmsnorm.cu). */
#include "tests/gpu/gpu_ops.h"

static void run_rmsnorm(tctx *t, const op_case *c)
{
    const int N = c->N, C = c->C;
    size_t n = (size_t)N * C;
    const float eps = 1e-6f;
    float *x = rnd(t, n, 2.0f, false), *w = rnd(t, C, 1.5f, false);
    float *out = hmem(t, n * sizeof(float)), *rstd = hmem(t, N * sizeof(float));
    op_rmsnorm_fwd(t->cpu, out, rstd, x, w, N, C, eps);
    void *gx = dev_act(t, x, n), *gw = dev_act(t, w, C);
    if (c->op == OP_RMSNORM_FWD) {
        void *gout = dev_poison(t, n * 2);
        float *grstd = dev_poison(t, N * sizeof(float));
        op_rmsnorm_fwd(t->gpu, gout, grstd, gx, gw, N, C, eps);
        gpu_ok(t);
        check(t, "out", get_act(t, gout, n), out, n, c->tol);
        check(t, "rstd", get_f32(t, grstd, N), rstd, N, F32);
        return;
    }
    float *dout = rnd(t, n, 1.0f, false), *dx = rnd(t, n, 1.0f, false);
    void *gdx = dev_act(t, dx, n);
    op_rmsnorm_bwd(t->cpu, dx, dout, x, w, rstd, N, C);
    op_rmsnorm_bwd(t->gpu, gdx, dev_act(t, dout, n), gx, gw, dev_f32(t, rstd, N), N, C);
    gpu_ok(t);
    check(t, "dx", get_act(t, gdx, n), dx, n, c->tol);
}

const op_case GPU_CASES_RMSNORM[] = {
    {.run = run_rmsnorm, .op = OP_RMSNORM_FWD, .N = 37, .C = 130, .tol = BF},
    {.run = run_rmsnorm, .op = OP_RMSNORM_FWD, .N = 64, .C = 4096, .tol = BF},
    {.run = run_rmsnorm, .op = OP_RMSNORM_FWD, .N = 5, .C = 8, .tol = BF},
    /* a decode step's rows: a block a row */
    {.run = run_rmsnorm, .op = OP_RMSNORM_FWD, .N = 1, .C = 4096, .tol = BF},
    {.run = run_rmsnorm, .op = OP_RMSNORM_FWD, .N = 3, .C = 11008, .tol = BF},
    {.run = run_rmsnorm, .op = OP_RMSNORM_FWD, .N = 65, .C = 4096, .tol = BF},
    {.run = run_rmsnorm, .op = OP_RMSNORM_BWD, .N = 37, .C = 130, .tol = BF},
    {.run = run_rmsnorm, .op = OP_RMSNORM_BWD, .N = 64, .C = 4096, .tol = BF},
};
const int GPU_NCASES_RMSNORM = sizeof GPU_CASES_RMSNORM / sizeof GPU_CASES_RMSNORM[0];
