/* tests/gpu/ops/add.c - GPU test cases of add: the CUDA twin against the plain-C
 * reference (backend/backend.c (be_add_f32_to_act) and backend/backend_cuda.cu). */
#include "tests/gpu/gpu_ops.h"

/* be_add_f32_to_act: y (act) += x (fp32), the LoRA paths' last step. */
static void run_add(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N;
    float *a = rnd(t, n, 4.0f, false), *b = rnd(t, n, 1.0f, false);
    void *ga = dev_act(t, a, n);
    be_add_f32_to_act(t->cpu, a, b, n);
    be_add_f32_to_act(t->gpu, ga, dev_f32(t, b, n), n);
    gpu_ok(t);
    check(t, "y", get_act(t, ga, n), a, n, c->tol);
}

const op_case GPU_CASES_ADD[] = {
    {.run = run_add, .op = OP_ADD, .N = 37 * 130 + 1, .tol = BF},
    {.run = run_add, .op = OP_ADD, .N = 1 << 20, .tol = BF},
};
const int GPU_NCASES_ADD = sizeof GPU_CASES_ADD / sizeof GPU_CASES_ADD[0];
