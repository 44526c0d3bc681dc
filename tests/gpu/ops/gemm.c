/* tests/gpu/ops/gemm.c - GPU test cases of gemm: the CUDA twin against the plain-C
 * reference (backend/backend.c (be_gemm) and cuBLASLt in backend/backend_cuda.cu). */
#include "tests/gpu/gpu_ops.h"

#include <stdio.h>

/* All 16 variants: transposes, bf16 or fp32 C, beta 0 or 1 (alpha 0.75). */
static void run_gemm(tctx *t, const op_case *c)
{
    const int M = c->M, N = c->N, K = c->K, pad = c->flag ? 3 : 0;
    for (int var = 0; var < 16; var++) {
        const bool ta = var & 1, tb = var & 2, cf = var & 4, beta1 = var & 8;
        const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
        size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
        float *A = rnd(t, na, 1.0f, false), *Bm = rnd(t, nb, 1.0f, false), *C = rnd(t, nc, 1.0f, cf);
        void *gA = dev_act(t, A, na), *gB = dev_act(t, Bm, nb);
        void *gC = beta1 ? (cf ? (void *)dev_f32(t, C, nc) : dev_act(t, C, nc)) : dev_poison(t, nc * (cf ? 4 : 2));
        be_gemm_args g = {.M = M, .N = N, .K = K, .A = A, .lda = lda, .trans_a = ta, .B = Bm, .ldb = ldb, .trans_b = tb,
                          .C = C, .ldc = ldc, .c_f32 = true, .alpha = 0.75f, .beta = beta1 ? 1.0f : 0.0f};
        be_gemm(t->cpu, &g);
        g.A = gA, g.B = gB, g.C = gC, g.c_f32 = cf;
        be_gemm(t->gpu, &g);
        gpu_ok(t);
        float *got = cf ? get_f32(t, gC, nc) : get_act(t, gC, nc);
        /* compare only the M x N window (padding columns are not part of C) */
        float *gw = hmem(t, (size_t)M * N * sizeof(float) + 4), *rw = hmem(t, (size_t)M * N * sizeof(float) + 4);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                gw[(size_t)i * N + j] = got[(size_t)i * ldc + j];
                rw[(size_t)i * N + j] = C[(size_t)i * ldc + j];
            }
        char what[96];
        snprintf(what, sizeof what, "C (trans_a %d, trans_b %d, %s C, beta %d)", ta, tb, cf ? "fp32" : "bf16", beta1);
        check(t, what, gw, rw, (size_t)M * N, cf ? 1e-4 : c->tol);
    }
}

const op_case GPU_CASES_GEMM[] = {
    {.run = run_gemm, .op = OP_GEMM, .M = 37, .N = 130, .K = 64, .tol = BF},
    {.run = run_gemm, .op = OP_GEMM, .M = 128, .N = 256, .K = 512, .tol = BF},
    {.run = run_gemm, .op = OP_GEMM, .M = 33, .N = 17, .K = 9, .flag = 1, .tol = BF},
    {.run = run_gemm, .op = OP_GEMM, .M = 64, .N = 48, .K = 0, .tol = BF},
    {.run = run_gemm, .op = OP_GEMM, .M = 1, .N = 1, .K = 1, .tol = BF},
};
const int GPU_NCASES_GEMM = sizeof GPU_CASES_GEMM / sizeof GPU_CASES_GEMM[0];
