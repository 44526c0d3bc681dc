/* tests/gpu/ops/lora.c - GPU test cases of lora: the CUDA twin against the plain-C
 * reference (adapters/lora_ops.c and adapters/cuda/lora_ops.cu). */
#include "tests/gpu/gpu_ops.h"

#include "adapters/lora_ops.h"

static void run_lora(tctx *t, const op_case *c)
{
    const int N = c->N, in = c->C, out = c->V, r = c->K;
    float *A = rnd(t, (size_t)r * in, 0.2f, false), *Bm = rnd(t, (size_t)out * r, 0.2f, false);
    lora_view l = {.r = r, .in = in, .out = out, .scale = 2.0f, .dropout = c->p, .id = 5, .A = A, .B = Bm};
    lora_ctx ctx = {.seed = t->seed, .step = 3, .training = true};
    lora_view gl = l;
    gl.A = dev_f32(t, A, (size_t)r * in);
    gl.B = dev_f32(t, Bm, (size_t)out * r);
    float *x = rnd(t, (size_t)N * in, 1.0f, false);
    void *gx = dev_act(t, x, (size_t)N * in);
    if (c->op == OP_LORA_FWD) {
        float *y = rnd(t, (size_t)N * out, 1.0f, false), *u = hmem(t, (size_t)N * r * sizeof(float));
        void *gy = dev_act(t, y, (size_t)N * out);
        float *gu = dev_poison(t, (size_t)N * r * sizeof(float));   /* u is fp32 */
        op_lora_fwd(t->cpu, y, u, x, &l, N, &ctx);
        op_lora_fwd(t->gpu, gy, gu, gx, &gl, N, &ctx);
        gpu_ok(t);
        check(t, "y", get_act(t, gy, (size_t)N * out), y, (size_t)N * out, c->tol);
        check(t, "u", get_f32(t, gu, (size_t)N * r), u, (size_t)N * r, c->tol);
        return;
    }
    float *dy = rnd(t, (size_t)N * out, 1.0f, false), *u = rnd(t, (size_t)N * r, 1.0f, false);
    float *dx = rnd(t, (size_t)N * in, 1.0f, false);
    l.dA = rnd(t, (size_t)r * in, 0.5f, true);
    l.dB = rnd(t, (size_t)out * r, 0.5f, true);
    gl.dA = dev_f32(t, l.dA, (size_t)r * in);
    gl.dB = dev_f32(t, l.dB, (size_t)out * r);
    void *gdx = dev_act(t, dx, (size_t)N * in);
    op_lora_bwd(t->cpu, dx, dy, x, u, &l, N, &ctx);
    op_lora_bwd(t->gpu, gdx, dev_act(t, dy, (size_t)N * out), gx, dev_f32(t, u, (size_t)N * r), &gl, N, &ctx);
    gpu_ok(t);
    check(t, "dx", get_act(t, gdx, (size_t)N * in), dx, (size_t)N * in, c->tol);
    check(t, "dA", get_f32(t, gl.dA, (size_t)r * in), l.dA, (size_t)r * in, c->tol);
    check(t, "dB", get_f32(t, gl.dB, (size_t)out * r), l.dB, (size_t)out * r, c->tol);
}

const op_case GPU_CASES_LORA[] = {
    {.run = run_lora, .op = OP_LORA_FWD, .N = 37, .C = 130, .V = 70, .K = 8, .p = 0.0f, .tol = BF},
    {.run = run_lora, .op = OP_LORA_FWD, .N = 37, .C = 130, .V = 70, .K = 8, .p = 0.1f, .tol = BF},
    {.run = run_lora, .op = OP_LORA_FWD, .N = 64, .C = 256, .V = 512, .K = 16, .p = 0.05f, .tol = BF},
    {.run = run_lora, .op = OP_LORA_BWD, .N = 37, .C = 130, .V = 70, .K = 8, .p = 0.0f, .tol = BF},
    {.run = run_lora, .op = OP_LORA_BWD, .N = 37, .C = 130, .V = 70, .K = 8, .p = 0.1f, .tol = BF},
    {.run = run_lora, .op = OP_LORA_BWD, .N = 64, .C = 256, .V = 512, .K = 16, .p = 0.05f, .tol = BF},
};
const int GPU_NCASES_LORA = sizeof GPU_CASES_LORA / sizeof GPU_CASES_LORA[0];
