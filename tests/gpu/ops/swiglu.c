/* tests/gpu/ops/swiglu.c - GPU test cases of swiglu: the CUDA twin against the plain-C
 * reference (finetune/engine/ops/swiglu.c and cuda/swiglu.cu). */
#include "tests/gpu/gpu_ops.h"

static void run_swiglu(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N;
    float *a = rnd(t, n, 4.0f, false), *b = rnd(t, n, 1.0f, false);
    void *ga = dev_act(t, a, n), *gb = dev_act(t, b, n);
    if (c->op == OP_SWIGLU_FWD) {
        float *out = hmem(t, n * sizeof(float));
        void *gout = dev_poison(t, n * 2);
        op_swiglu_fwd(t->cpu, out, a, b, n);
        op_swiglu_fwd(t->gpu, gout, ga, gb, n);
        gpu_ok(t);
        check(t, "out", get_act(t, gout, n), out, n, c->tol);
    } else {
        float *d = rnd(t, n, 1.0f, false), *dg = hmem(t, n * sizeof(float)), *du = hmem(t, n * sizeof(float));
        void *gdg = dev_poison(t, n * 2), *gdu = dev_poison(t, n * 2);
        op_swiglu_bwd(t->cpu, dg, du, d, a, b, n);
        op_swiglu_bwd(t->gpu, gdg, gdu, dev_act(t, d, n), ga, gb, n);
        gpu_ok(t);
        check(t, "dgate", get_act(t, gdg, n), dg, n, c->tol);
        check(t, "dup", get_act(t, gdu, n), du, n, c->tol);
    }
}

const op_case GPU_CASES_SWIGLU[] = {
    {.run = run_swiglu, .op = OP_SWIGLU_FWD, .N = 37 * 130, .tol = BF},
    {.run = run_swiglu, .op = OP_SWIGLU_FWD, .N = 1 << 20, .tol = BF},
    {.run = run_swiglu, .op = OP_SWIGLU_BWD, .N = 37 * 130, .tol = BF},
    {.run = run_swiglu, .op = OP_SWIGLU_BWD, .N = 1 << 20, .tol = BF},
};
const int GPU_NCASES_SWIGLU = sizeof GPU_CASES_SWIGLU / sizeof GPU_CASES_SWIGLU[0];
