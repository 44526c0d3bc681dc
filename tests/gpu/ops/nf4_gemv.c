/* tests/gpu/ops/nf4_gemv.c - GPU test cases of nf4_gemv: the fused CUDA kernel
 * against the plain-C reference (finetune/engine/ops/nf4_gemv.c and
 * cuda/nf4_gemv.cu). W (M, K) NF4 quantized from random weights; N input rows.
 * flag: bit 0 double quantization, bit 1 fp16 weights, bit 2 y += (beta 1). */
#include "tests/gpu/gpu_ops.h"

#include "finetune/engine/ops/ops_decode.h"
#include "quant/nf4.h"

static void run_gemv(tctx *t, const op_case *c)
{
    const bool dq = c->flag & 1, f16 = c->flag & 2;
    const float beta = c->flag & 4 ? 1.0f : 0.0f;
    const size_t nw = (size_t)c->M * c->K, nx = (size_t)c->N * c->K, ny = (size_t)c->N * c->M;
    float *w = rnd(t, nw, 0.05f, false), *x = rnd(t, nx, 1.0f, false), *y = rnd(t, ny, 1.0f, false);
    nf4_tensor q = {0};
    cr_assert_eq(nf4_quantize(w, c->M, c->K, dq, f16 ? NF4_OUT_F16 : NF4_OUT_BF16, &q), DS_OK, "%s", ds_errmsg());
    const nf4_view *h = nf4_tensor_view(&q);
    nf4_view d = *h;
    d.packed = dev_raw(t, h->packed, (size_t)(h->n + 1) / 2);
    if (dq) {
        d.absmax_q = dev_raw(t, h->absmax_q, (size_t)h->nblocks);
        d.absmax2 = dev_f32(t, h->absmax2, (size_t)h->nblocks2);
        d.nested_map = dev_f32(t, h->nested_map, 256);
    } else {
        d.absmax = dev_f32(t, h->absmax, (size_t)h->nblocks);
    }
    d.code = dev_f32(t, h->code, 16);
    void *gy = beta != 0 ? dev_act(t, y, ny) : dev_poison(t, ny * 2);
    op_nf4_gemv(t->cpu, y, x, h, c->N, beta);
    op_nf4_gemv(t->gpu, gy, dev_act(t, x, nx), &d, c->N, beta);
    gpu_ok(t);
    check(t, "y", get_act(t, gy, ny), y, ny, c->tol);
    nf4_tensor_free(&q);
}

const op_case GPU_CASES_NF4_GEMV[] = {
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 1, .M = 37, .K = 130, .flag = 0, .tol = BF},   /* element-wise path */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 3, .M = 37, .K = 130, .flag = 5, .tol = BF},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 2, .M = 129, .K = 264, .flag = 3, .tol = BF},  /* 8-wide path */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 1, .M = 256, .K = 512, .flag = 1, .tol = BF},  /* 32-wide path */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 5, .M = 77, .K = 1056, .flag = 7, .tol = BF},  /* a part-filled last step */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 4, .M = 33, .K = 96, .flag = 2, .tol = BF},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 8, .M = 300, .K = 1024, .flag = 5, .tol = BF},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 1, .M = 4096, .K = 4096, .flag = 1, .tol = BF, .heavy = true},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 1, .M = 4096, .K = 11008, .flag = 5, .tol = BF, .heavy = true},
};
const int GPU_NCASES_NF4_GEMV = sizeof GPU_CASES_NF4_GEMV / sizeof GPU_CASES_NF4_GEMV[0];
