/* tests/gpu/ops/logits.c - GPU test cases of logits: the CUDA twin against the plain-C
 * reference (losses/logits.c and losses/cuda/logits.cu). */
#include "tests/gpu/gpu_ops.h"

#include "core/rng.h"
#include "losses/logits.h"

static void run_logits(tctx *t, const op_case *c)
{
    const int n = c->N, V = c->V;
    size_t nz = (size_t)n * V;
    float *z = rnd(t, nz, 8.0f, true);
    int32_t *tg = rand_ints(t, n, 0, V);
    tg[n / 2] = -1;   /* a row without a target */
    uint8_t *forb = NULL;
    if (c->flag) {
        forb = hmem(t, V);
        ds_rng r = ds_rng_make(t->seed, 400);
        for (int j = 0; j < V; j++) forb[j] = ds_rng_below(&r, 10) == 0;
    }
    float *gz = dev_f32(t, z, nz);
    int32_t *gtg = dev_raw(t, tg, n * sizeof(int32_t));
    uint8_t *gforb = forb ? dev_raw(t, forb, V) : NULL;
    float *lse = hmem(t, n * 4), *lp = hmem(t, n * 4), *fm = hmem(t, n * 4);
    op_logits_stats(t->cpu, lse, lp, fm, z, tg, forb, n, V);
    if (c->op == OP_LOGITS_STATS) {
        float *glse = dev_poison(t, n * 4), *glp = dev_poison(t, n * 4), *gfm = dev_poison(t, n * 4);
        op_logits_stats(t->gpu, glse, glp, gfm, gz, gtg, gforb, n, V);
        gpu_ok(t);
        check(t, "lse", get_f32(t, glse, n), lse, n, c->tol);
        check(t, "logprob", get_f32(t, glp, n), lp, n, c->tol);
        if (forb) check(t, "fmass", get_f32(t, gfm, n), fm, n, c->tol);
        return;
    }
    float *a = rnd(t, n, 1.0f, true), *b = rnd(t, n, 1.0f, true), *cc = c->flag ? rnd(t, n, 1.0f, true) : NULL;
    float *dz = hmem(t, nz * sizeof(float));
    void *gdz = dev_poison(t, nz * 2);
    op_logits_grad(t->cpu, dz, z, lse, tg, a, b, cc, forb, n, V);
    op_logits_grad(t->gpu, gdz, gz, dev_f32(t, lse, n), gtg, dev_f32(t, a, n), dev_f32(t, b, n),
                   cc ? dev_f32(t, cc, n) : NULL, gforb, n, V);
    gpu_ok(t);
    check(t, "dz", get_act(t, gdz, nz), dz, nz, c->tol);
}

const op_case GPU_CASES_LOGITS[] = {
    {.run = run_logits, .op = OP_LOGITS_STATS, .N = 5, .V = 37, .tol = F32},
    {.run = run_logits, .op = OP_LOGITS_STATS, .N = 7, .V = 32001, .flag = 1, .tol = F32},
    {.run = run_logits, .op = OP_LOGITS_STATS, .N = 3, .V = 128256, .flag = 1, .tol = F32},
    {.run = run_logits, .op = OP_LOGITS_STATS, .N = 4, .V = 102400, .tol = F32},
    {.run = run_logits, .op = OP_LOGITS_GRAD, .N = 5, .V = 37, .tol = BF},
    {.run = run_logits, .op = OP_LOGITS_GRAD, .N = 7, .V = 32001, .flag = 1, .tol = BF},
    {.run = run_logits, .op = OP_LOGITS_GRAD, .N = 3, .V = 128256, .flag = 1, .tol = BF},
};
const int GPU_NCASES_LOGITS = sizeof GPU_CASES_LOGITS / sizeof GPU_CASES_LOGITS[0];
