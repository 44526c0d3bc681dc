/* adapters/lora_ops.c - LoRA forward/backward, composed from backend matrix
 * products (all fp32, as PEFT computes its adapters even over a bf16 base)
 * and one elementwise kernel (dropout), so that the same code runs on both
 * backends; only op_dropout has a CUDA twin (adapters/lora_cuda.cu). */
#include "lora_ops.h"

#include "backend/kernel.h"
#include "core/rng.h"

void op_dropout(backend *be, float *out, const float *x, size_t n, float p, uint64_t seed, uint64_t step, uint64_t id,
                bool accumulate)
{
    DS_DISPATCH_CUDA(be, dropout_cuda(be, out, x, n, p, seed, step, id, accumulate));
    const float keep_scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        float v = ds_dropout_keep(seed, step, id, i, p) ? x[i] * keep_scale : 0.0f;
        out[i] = accumulate ? out[i] + v : v;
    }
}

static bool uses_dropout(const lora_view *l, const lora_ctx *ctx) { return ctx->training && l->dropout > 0; }

size_t lora_workspace_bytes(const lora_view *l, int N)
{
    size_t wide = (size_t)(l->in > l->out ? l->in : l->out);
    return ((size_t)N * wide + (size_t)N * l->r) * sizeof(float) + 256;
}

/* The LoRA workspace: one (N, max(in, out)) fp32 buffer, reused for each
 * wide operand in turn, and the (N, r) fp32 du. */
static float *workspace(backend *be, const lora_view *l, int N, float **du)
{
    float *ws = be_workspace(be, WS_LORA, lora_workspace_bytes(l, N));
    if (ws && du) *du = ws + (size_t)N * (l->in > l->out ? l->in : l->out);
    return ws;
}

/* An fp32 product: C (M, Nc) = alpha op(A) op(B) + beta C. */
static void gemm32(backend *be, int M, int Nc, int K, const float *A, bool ta, const float *B, bool tb, float *C,
                   float alpha, float beta)
{
    be_gemm_args g = {.M = M, .N = Nc, .K = K, .A = A, .lda = ta ? M : K, .trans_a = ta, .B = B, .ldb = tb ? K : Nc,
                      .trans_b = tb, .C = C, .ldc = Nc, .c_f32 = true, .all_f32 = true, .alpha = alpha, .beta = beta};
    be_gemm(be, &g);
}

/* drop(x) in fp32 into buf (N, in). */
static void dropped_input(backend *be, float *buf, const void *x, const lora_view *l, int N, const lora_ctx *ctx)
{
    size_t n = (size_t)N * l->in;
    be_act_to_f32(be, buf, x, n);
    if (uses_dropout(l, ctx)) op_dropout(be, buf, buf, n, l->dropout, ctx->seed, ctx->step, l->id, false);
}

/* u (N, r) = drop(x) · Aᵀ; returns the workspace (free to reuse). */
static float *compute_u(backend *be, float *u, const void *x, const lora_view *l, int N, const lora_ctx *ctx)
{
    float *buf = workspace(be, l, N, NULL);
    if (!buf) return NULL;
    dropped_input(be, buf, x, l, N, ctx);                                  /* buf (N, in) = drop(x) */
    gemm32(be, N, l->r, l->in, buf, false, l->A, true, u, 1.0f, 0.0f);
    return buf;
}

void op_lora_u(backend *be, float *u, const void *x, const lora_view *l, int N, const lora_ctx *ctx)
{
    compute_u(be, u, x, l, N, ctx);
}

void op_lora_fwd(backend *be, void *y, float *u, const void *x, const lora_view *l, int N, const lora_ctx *ctx)
{
    float *buf = compute_u(be, u, x, l, N, ctx);
    if (!buf) return;
    gemm32(be, N, l->out, l->r, u, false, l->B, true, buf, l->scale, 0.0f); /* buf (N, out) = s · u · Bᵀ */
    be_add_f32_to_act(be, y, buf, (size_t)N * l->out);                    /* y += buf */
}

void op_lora_bwd(backend *be, void *dx, const void *dy, const void *x, const float *u, const lora_view *l, int N,
                 const lora_ctx *ctx)
{
    float *du = NULL, *buf = workspace(be, l, N, &du);
    if (!buf) return;
    be_act_to_f32(be, buf, dy, (size_t)N * l->out);                       /* buf (N, out) = dy */
    gemm32(be, l->out, l->r, N, buf, true, u, false, l->dB, l->scale, 1.0f); /* dB (out, r) += s · dyᵀ · u */
    gemm32(be, N, l->r, l->out, buf, false, l->B, false, du, l->scale, 0.0f); /* du (N, r) = s · dy · B */
    dropped_input(be, buf, x, l, N, ctx);                                 /* buf (N, in) = drop(x) */
    gemm32(be, l->r, l->in, N, du, true, buf, false, l->dA, 1.0f, 1.0f);   /* dA (r, in) += duᵀ · drop(x) */
    gemm32(be, N, l->in, l->r, du, false, l->A, false, buf, 1.0f, 0.0f);   /* buf (N, in) = du · A */
    if (uses_dropout(l, ctx))
        op_dropout(be, buf, buf, (size_t)N * l->in, l->dropout, ctx->seed, ctx->step, l->id, false);
    be_add_f32_to_act(be, dx, buf, (size_t)N * l->in);                    /* dx += drop'(du · A) */
}
