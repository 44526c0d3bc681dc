/* tests/gpu/ops/rope.c - GPU test cases of rope: the CUDA twin against the plain-C
 * reference (finetune/engine/ops/rope.c and cuda/rope.cu). */
#include "tests/gpu/gpu_ops.h"

#include <math.h>

/* p: the frequencies' scaling factor; flag bit 0: inverse, bit 1: cos/sin scaled by 1.3 (yarn). */
static void run_rope(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N * c->H * c->D;
    float *x = rnd(t, n, 1.0f, false);
    int32_t *pos = rand_ints(t, c->N, 0, 4096);
    void *gx = dev_act(t, x, n);
    rope_table rt = {.half = c->D / 2, .scale = c->flag & 2 ? 1.3f : 1.0f};
    for (int i = 0; i < rt.half; i++) rt.inv_freq[i] = (1.0f / powf(10000.0f, (float)(2 * i) / (float)c->D)) / c->p;
    op_rope(t->cpu, x, pos, c->N, c->H, c->D, &rt, c->flag & 1);
    op_rope(t->gpu, gx, dev_raw(t, pos, c->N * sizeof(int32_t)), c->N, c->H, c->D, &rt, c->flag & 1);
    gpu_ok(t);
    check(t, "x", get_act(t, gx, n), x, n, c->tol);
}

const op_case GPU_CASES_ROPE[] = {
    {.run = run_rope, .op = OP_ROPE, .N = 37, .H = 3, .D = 16, .p = 1.0f, .tol = BF},
    {.run = run_rope, .op = OP_ROPE, .N = 13, .H = 3, .D = 20, .p = 1.0f, .flag = 1, .tol = BF},   /* a pair at a time */
    {.run = run_rope, .op = OP_ROPE, .N = 64, .H = 32, .D = 128, .p = 1.0f, .flag = 1, .tol = BF},
    {.run = run_rope, .op = OP_ROPE, .N = 37, .H = 4, .D = 64, .p = 4.0f, .tol = BF},
    {.run = run_rope, .op = OP_ROPE, .N = 1, .H = 32, .D = 128, .p = 1.0f, .tol = BF},
    {.run = run_rope, .op = OP_ROPE, .N = 8, .H = 28, .D = 128, .p = 1.0f, .flag = 3, .tol = BF},
};
const int GPU_NCASES_ROPE = sizeof GPU_CASES_ROPE / sizeof GPU_CASES_ROPE[0];
