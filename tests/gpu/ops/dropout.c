/* tests/gpu/ops/dropout.c - GPU test cases of dropout: the CUDA twin against the plain-C
 * reference (adapters/lora_ops.c and adapters/cuda/lora_ops.cu). */
#include "tests/gpu/gpu_ops.h"

#include "adapters/lora_ops.h"

static void run_dropout(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N;
    float *x = rnd(t, n, 1.0f, false), *o = rnd(t, n, 1.0f, false);   /* bf16-exact: dropout works on act */
    void *gx = dev_act(t, x, n), *go = c->flag ? dev_act(t, o, n) : dev_poison(t, n * sizeof(uint16_t));
    op_dropout(t->cpu, o, x, n, (uint64_t)c->K, c->p, t->seed, 7, 3, c->flag);
    op_dropout(t->gpu, go, gx, n, (uint64_t)c->K, c->p, t->seed, 7, 3, c->flag);
    gpu_ok(t);
    check(t, "out", get_act(t, go, n), o, n, c->tol);
}

const op_case GPU_CASES_DROPOUT[] = {
    {.run = run_dropout, .op = OP_DROPOUT, .N = 37 * 130, .p = 0.1f, .flag = 0, .tol = BF},
    {.run = run_dropout, .op = OP_DROPOUT, .N = 37 * 130 + 5, .p = 0.5f, .flag = 1, .tol = BF},
    /* a slice that starts inside the mask, as a long batch's later rows */
    {.run = run_dropout, .op = OP_DROPOUT, .N = 3 * 130, .K = 8192 * 130 + 7, .p = 0.3f, .flag = 0, .tol = BF},
};
const int GPU_NCASES_DROPOUT = sizeof GPU_CASES_DROPOUT / sizeof GPU_CASES_DROPOUT[0];
