/* tests/gpu/ops/gemm.c - GPU test cases of gemm: the CUDA twin against the plain-C
 * reference (backend/backend.c (be_gemm) and cuBLASLt in backend/backend_cuda.cu). */
#include "tests/gpu/gpu_ops.h"

#include <stdio.h>

/* All 16 variants: transposes, bf16 or fp32 C, beta 0 or 1 (alpha 0.75).
 * flag 1: padded leading dimensions. flag 2: a product of M - 5 and K - 3 (the
 * same size class, see cuda_gemm) runs first, so the checked one reuses its plan
 * with the layouts changed to its own M and K. */
static void run_gemm(tctx *t, const op_case *c)
{
    const int M = c->M, N = c->N, K = c->K, pad = c->flag == 1 ? 3 : 0;
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
        if (c->flag == 2) {
            be_gemm_args first = g;
            first.M = M - 5, first.K = K - 3, first.C = dev_poison(t, nc * (cf ? 4 : 2));
            be_gemm(t->gpu, &first);
        }
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

/* flag 3: C = A·B in four row blocks, each on its own side stream between
 * be_fork and be_join (how a layer's routed experts run), against one CPU product. */
static void run_gemm_streams(tctx *t, const op_case *c)
{
    const int M = c->M, N = c->N, K = c->K, parts = 4;
    cr_assert_eq(be_reserve_streams(t->gpu, parts), parts, "side streams: %s", t->gpu->errmsg);
    float *A = rnd(t, (size_t)M * K, 1.0f, false), *Bm = rnd(t, (size_t)N * K, 1.0f, false);
    float *C = hmem(t, (size_t)M * N * sizeof(float));
    be_gemm_args g = {.M = M, .N = N, .K = K, .A = A, .lda = K, .B = Bm, .ldb = K, .trans_b = true, .C = C,
                      .ldc = N, .c_f32 = true, .alpha = 1.0f, .beta = 0.0f};
    be_gemm(t->cpu, &g);
    void *gA = dev_act(t, A, (size_t)M * K), *gB = dev_act(t, Bm, (size_t)N * K), *gC = dev_poison(t, (size_t)M * N * 2);
    be_fork(t->gpu, parts);
    for (int i = 0; i < parts; i++) {
        const int r0 = M * i / parts, r1 = M * (i + 1) / parts;
        be_use_stream(t->gpu, i);
        be_matmul_nt(t->gpu, be_act_at(t->gpu, gC, (size_t)r0 * N), be_act_at(t->gpu, gA, (size_t)r0 * K), gB, r1 - r0,
                     N, K, 0.0f);
    }
    be_join(t->gpu);
    gpu_ok(t);
    check(t, "C in four row blocks on side streams", get_act(t, gC, (size_t)M * N), C, (size_t)M * N, c->tol);
}

const op_case GPU_CASES_GEMM[] = {
    {.run = run_gemm_streams, .op = OP_GEMM, .M = 700, .N = 1408, .K = 2048, .flag = 3, .tol = BF},
    {.run = run_gemm, .op = OP_GEMM, .M = 37, .N = 130, .K = 64, .tol = BF},
    {.run = run_gemm, .op = OP_GEMM, .M = 128, .N = 256, .K = 512, .tol = BF},
    {.run = run_gemm, .op = OP_GEMM, .M = 33, .N = 17, .K = 9, .flag = 1, .tol = BF},
    {.run = run_gemm, .op = OP_GEMM, .M = 64, .N = 48, .K = 0, .tol = BF},
    {.run = run_gemm, .op = OP_GEMM, .M = 1, .N = 1, .K = 1, .tol = BF},
    {.run = run_gemm, .op = OP_GEMM, .M = 220, .N = 100, .K = 300, .flag = 2, .tol = BF},
    {.run = run_gemm, .op = OP_GEMM, .M = 1100, .N = 64, .K = 1030, .flag = 2, .tol = BF},
};
const int GPU_NCASES_GEMM = sizeof GPU_CASES_GEMM / sizeof GPU_CASES_GEMM[0];
