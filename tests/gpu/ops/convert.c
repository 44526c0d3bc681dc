/* tests/gpu/ops/convert.c - GPU test cases of convert: the CUDA twin against the plain-C
 * reference (backend/backend.c (be_upload_f32_as_act) and backend/backend_cuda.cu). */
#include "tests/gpu/gpu_ops.h"

static void run_convert(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N;
    float *x = rnd(t, n, 3.0f, true), *ref = hmem(t, n * sizeof(float));
    for (size_t i = 0; i < n; i++) ref[i] = ds_round_bf16(x[i]);
    void *d = dev_poison(t, n * 2);
    be_upload_f32_as_act(t->gpu, d, x, n);
    float *g = get_act(t, d, n);
    gpu_ok(t);
    check(t, "f32 -> bf16 -> f32", g, ref, n, 0);
}

const op_case GPU_CASES_CONVERT[] = {
    {.run = run_convert, .op = OP_CONVERT, .N = 37 * 130 + 3, .tol = 0},
};
const int GPU_NCASES_CONVERT = sizeof GPU_CASES_CONVERT / sizeof GPU_CASES_CONVERT[0];
