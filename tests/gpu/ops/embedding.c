/* tests/gpu/ops/embedding.c - GPU test cases of embedding: the CUDA twin against the plain-C
 * reference (finetune/engine/ops/embedding.c and cuda/embedding.cu). */
#include "tests/gpu/gpu_ops.h"

static void run_embedding(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N * c->C;
    float *table = rnd(t, (size_t)c->V * c->C, 1.0f, false), *ref = hmem(t, n * sizeof(float));
    int32_t *ids = rand_ints(t, c->N, 0, c->V);
    op_embedding(t->cpu, ref, ids, table, c->N, c->C);
    void *out = dev_poison(t, n * 2);
    op_embedding(t->gpu, out, dev_raw(t, ids, c->N * sizeof(int32_t)), dev_act(t, table, (size_t)c->V * c->C), c->N, c->C);
    gpu_ok(t);
    check(t, "out", get_act(t, out, n), ref, n, c->tol);
}

const op_case GPU_CASES_EMBEDDING[] = {
    {.run = run_embedding, .op = OP_EMBEDDING, .N = 37, .C = 130, .V = 50, .tol = 0},
    {.run = run_embedding, .op = OP_EMBEDDING, .N = 64, .C = 4096, .V = 1000, .tol = 0},
};
const int GPU_NCASES_EMBEDDING = sizeof GPU_CASES_EMBEDDING / sizeof GPU_CASES_EMBEDDING[0];
