/* adapters/lora_ops.c - LoRA forward/backward, composed from backend matrix
 * products and one elementwise kernel (dropout), so that the same code runs
 * on both backends; only op_dropout has a CUDA twin (adapters/lora_cuda.cu). */
#include "lora_ops.h"

#include "../backend/dispatch.h"
#include "../core/rng.h"

void op_dropout(backend *be, void *out, const void *x, size_t n, float p, uint64_t seed, uint64_t step, uint64_t id,
                bool accumulate)
{
    DS_DISPATCH_CUDA(be, dropout_cuda(be, out, x, n, p, seed, step, id, accumulate));
    float *o = out;
    const float *xx = x;
    const float keep_scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        float v = ds_dropout_keep(seed, step, id, i, p) ? xx[i] * keep_scale : 0.0f;
        o[i] = accumulate ? o[i] + v : v;
    }
    be_round_act(be, out, n);
}

static bool uses_dropout(const lora_view *l, const lora_ctx *ctx) { return ctx->training && l->dropout > 0; }

/* A and B as act values in the LoRA workspace: A at [0, r*in), B after it. */
static void cast_params(backend *be, const lora_view *l, void **A, void **B, void **scratch, size_t scratch_elems)
{
    size_t na = (size_t)l->r * l->in, nb = (size_t)l->out * l->r;
    char *ws = be_workspace(be, WS_LORA, (na + nb + scratch_elems) * be->act_size);
    if (!ws) return;
    *A = ws;
    *B = ws + na * be->act_size;
    *scratch = ws + (na + nb) * be->act_size;
    be_f32_to_act(be, *A, l->A, na);
    be_f32_to_act(be, *B, l->B, nb);
}

void op_lora_fwd(backend *be, void *y, void *u, const void *x, const lora_view *l, int N, const lora_ctx *ctx)
{
    void *A = NULL, *B = NULL, *xd = NULL;
    bool drop = uses_dropout(l, ctx);
    cast_params(be, l, &A, &B, &xd, drop ? (size_t)N * l->in : 0);
    if (be->err) return;
    if (drop) op_dropout(be, xd, x, (size_t)N * l->in, l->dropout, ctx->seed, ctx->step, l->id, false);
    else xd = (void *)x;
    be_matmul_nt(be, u, xd, A, N, l->r, l->in, 0.0f);                  /* u (N, r) = xd · Aᵀ */
    be_gemm_args g = {.M = N, .N = l->out, .K = l->r, .A = u, .lda = l->r, .B = B, .ldb = l->r,
                      .trans_b = true, .C = y, .ldc = l->out, .alpha = l->scale, .beta = 1.0f};
    be_gemm(be, &g);                                                    /* y += s · u · Bᵀ */
}

void op_lora_bwd(backend *be, void *dx, const void *dy, const void *x, const void *u, const lora_view *l, int N,
                 const lora_ctx *ctx)
{
    bool drop = uses_dropout(l, ctx);
    size_t du_elems = (size_t)N * l->r, xd_elems = drop ? (size_t)N * l->in : 0;
    void *A = NULL, *B = NULL, *scratch = NULL;
    cast_params(be, l, &A, &B, &scratch, du_elems + 2 * xd_elems);
    if (be->err) return;
    void *du = scratch;                                                 /* (N, r) */
    void *xd = be_act_at(be, scratch, du_elems);                        /* (N, in) when dropout */
    void *dxd = be_act_at(be, scratch, du_elems + xd_elems);            /* (N, in) when dropout */

    /* dB (out, r) += s · dyᵀ · u */
    be_gemm_args gB = {.M = l->out, .N = l->r, .K = N, .A = dy, .lda = l->out, .trans_a = true,
                       .B = u, .ldb = l->r, .C = l->dB, .ldc = l->r, .c_f32 = true, .alpha = l->scale, .beta = 1.0f};
    be_gemm(be, &gB);
    /* du (N, r) = s · dy · B */
    be_gemm_args gu = {.M = N, .N = l->r, .K = l->out, .A = dy, .lda = l->out, .B = B, .ldb = l->r,
                       .C = du, .ldc = l->r, .alpha = l->scale, .beta = 0.0f};
    be_gemm(be, &gu);
    /* dA (r, in) += duᵀ · drop(x) */
    if (drop) op_dropout(be, xd, x, (size_t)N * l->in, l->dropout, ctx->seed, ctx->step, l->id, false);
    else xd = (void *)x;
    be_gemm_args gA = {.M = l->r, .N = l->in, .K = N, .A = du, .lda = l->r, .trans_a = true,
                       .B = xd, .ldb = l->in, .C = l->dA, .ldc = l->in, .c_f32 = true, .alpha = 1.0f, .beta = 1.0f};
    be_gemm(be, &gA);
    /* dx (N, in) += drop'(du · A) */
    if (drop) {
        be_gemm_args gx = {.M = N, .N = l->in, .K = l->r, .A = du, .lda = l->r, .B = A, .ldb = l->in,
                           .C = dxd, .ldc = l->in, .alpha = 1.0f, .beta = 0.0f};
        be_gemm(be, &gx);
        op_dropout(be, dx, dxd, (size_t)N * l->in, l->dropout, ctx->seed, ctx->step, l->id, true);
    } else {
        be_gemm_args gx = {.M = N, .N = l->in, .K = l->r, .A = du, .lda = l->r, .B = A, .ldb = l->in,
                           .C = dx, .ldc = l->in, .alpha = 1.0f, .beta = 1.0f};
        be_gemm(be, &gx);
    }
}
