/* adapters/lora_ops.c - LoRA forward/backward, composed from backend matrix
 * products (all fp32, as PEFT computes its adapters even over a bf16 base)
 * and one elementwise kernel (dropout), so that the same code runs on both
 * backends; only op_dropout has a CUDA twin (adapters/lora_cuda.cu). */
#include "lora_ops.h"

#include "backend/kernel.h"
#include "core/rng.h"

void op_dropout(backend *be, float *out, const float *x, size_t n, uint64_t first, float p, uint64_t seed,
                uint64_t step, uint64_t id, bool accumulate)
{
    DS_DISPATCH_CUDA(be, dropout_cuda(be, out, x, n, first, p, seed, step, id, accumulate));
    const float keep_scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        float v = ds_dropout_keep(seed, step, id, first + i, p) ? x[i] * keep_scale : 0.0f;
        out[i] = accumulate ? out[i] + v : v;
    }
}

static bool uses_dropout(const lora_view *l, const lora_ctx *ctx) { return ctx->training && l->dropout > 0; }

/* The ops run over slices of at most LORA_MAX_ROWS rows: the rows of the
 * slice that starts at row s of N. */
static int slice_len(int N, int s) { return N - s < LORA_MAX_ROWS ? N - s : LORA_MAX_ROWS; }

static size_t widest(const lora_view *l) { return (size_t)(l->in > l->out ? l->in : l->out); }

size_t lora_workspace_bytes(const lora_view *l, int N)
{
    size_t n = (size_t)slice_len(N, 0);
    return (n * widest(l) + n * l->r) * sizeof(float) + 256;
}

/* The LoRA workspace: one (n, max(in, out)) fp32 buffer, reused for each
 * wide operand in turn, and the (n, r) fp32 du, for a slice of n rows. */
static float *workspace(backend *be, const lora_view *l, int n, float **du)
{
    float *ws = be_workspace(be, WS_LORA, lora_workspace_bytes(l, n));
    if (ws && du) *du = ws + (size_t)n * widest(l);
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

/* drop in place on buf (n, width): rows that start at row0 of the batch. */
static void drop_rows(backend *be, float *buf, int n, int width, const lora_view *l, const lora_ctx *ctx)
{
    if (uses_dropout(l, ctx))
        op_dropout(be, buf, buf, (size_t)n * width, (uint64_t)ctx->row0 * width, l->dropout, ctx->seed, ctx->step,
                   l->id, false);
}

/* u (n, r) = drop(x) · Aᵀ, x (n, in); returns the workspace (free to reuse). */
static float *compute_u(backend *be, float *u, const void *x, const lora_view *l, int n, const lora_ctx *ctx)
{
    float *buf = workspace(be, l, n, NULL);
    if (!buf) return NULL;
    be_act_to_f32(be, buf, x, (size_t)n * l->in);                          /* buf (n, in) = drop(x) */
    drop_rows(be, buf, n, l->in, l, ctx);
    gemm32(be, n, l->r, l->in, buf, false, l->A, true, u, 1.0f, 0.0f);
    return buf;
}

/* A slice's context says where its rows start, for the dropout mask. */
static lora_ctx slice_ctx(const lora_ctx *ctx, int s)
{
    lora_ctx c = *ctx;
    c.row0 += s;
    return c;
}

/* Row `row` of an act matrix `width` wide. */
static void *act_row(backend *be, const void *p, int row, int width) { return be_act_at(be, p, (size_t)row * width); }

static void lora_u_slices(backend *be, float *u, const void *x, const lora_view *l, int N, const lora_ctx *ctx)
{
    for (int s = 0; s < N; s += LORA_MAX_ROWS) {
        lora_ctx c = slice_ctx(ctx, s);
        compute_u(be, u + (size_t)s * l->r, act_row(be, x, s, l->in), l, slice_len(N, s), &c);
    }
}

/* y (n, out) += s · u · Bᵀ after u = drop(x) · Aᵀ, for one slice. */
static void lora_fwd_slice(backend *be, void *y, float *u, const void *x, const lora_view *l, int n,
                           const lora_ctx *ctx)
{
    float *buf = compute_u(be, u, x, l, n, ctx);
    if (!buf) return;
    gemm32(be, n, l->out, l->r, u, false, l->B, true, buf, l->scale, 0.0f); /* buf (n, out) = s · u · Bᵀ */
    be_add_f32_to_act(be, y, buf, (size_t)n * l->out);                    /* y += buf */
}

static void lora_fwd_slices(backend *be, void *y, float *u, const void *x, const lora_view *l, int N,
                            const lora_ctx *ctx)
{
    for (int s = 0; s < N; s += LORA_MAX_ROWS) {
        lora_ctx c = slice_ctx(ctx, s);
        lora_fwd_slice(be, act_row(be, y, s, l->out), u + (size_t)s * l->r, act_row(be, x, s, l->in), l,
                       slice_len(N, s), &c);
    }
}

/* One slice's backward; dA and dB accumulate over the slices. */
static void lora_bwd_slice(backend *be, void *dx, const void *dy, const void *x, const float *u, const lora_view *l,
                           int n, const lora_ctx *ctx)
{
    float *du = NULL, *buf = workspace(be, l, n, &du);
    if (!buf) return;
    be_act_to_f32(be, buf, dy, (size_t)n * l->out);                       /* buf (n, out) = dy */
    gemm32(be, l->out, l->r, n, buf, true, u, false, l->dB, l->scale, 1.0f); /* dB (out, r) += s · dyᵀ · u */
    gemm32(be, n, l->r, l->out, buf, false, l->B, false, du, l->scale, 0.0f); /* du (n, r) = s · dy · B */
    be_act_to_f32(be, buf, x, (size_t)n * l->in);                         /* buf (n, in) = drop(x) */
    drop_rows(be, buf, n, l->in, l, ctx);
    gemm32(be, l->r, l->in, n, du, true, buf, false, l->dA, 1.0f, 1.0f);   /* dA (r, in) += duᵀ · drop(x) */
    gemm32(be, n, l->in, l->r, du, false, l->A, false, buf, 1.0f, 0.0f);   /* buf (n, in) = du · A */
    drop_rows(be, buf, n, l->in, l, ctx);                                 /* drop' = the same mask */
    be_add_f32_to_act(be, dx, buf, (size_t)n * l->in);                    /* dx += drop'(du · A) */
}

static void lora_bwd_slices(backend *be, void *dx, const void *dy, const void *x, const float *u,
                            const lora_view *l, int N, const lora_ctx *ctx)
{
    for (int s = 0; s < N; s += LORA_MAX_ROWS) {
        lora_ctx c = slice_ctx(ctx, s);
        lora_bwd_slice(be, act_row(be, dx, s, l->in), act_row(be, dy, s, l->out), act_row(be, x, s, l->in),
                       u + (size_t)s * l->r, l, slice_len(N, s), &c);
    }
}

/* The public ops: each call timed as one while profiling (BE_PROFILED), its
 * products and conversions counted as it. */
void op_lora_u(backend *be, float *u, const void *x, const lora_view *l, int N, const lora_ctx *ctx)
{
    BE_PROFILED(be, __func__, lora_u_slices(be, u, x, l, N, ctx));
}

void op_lora_fwd(backend *be, void *y, float *u, const void *x, const lora_view *l, int N, const lora_ctx *ctx)
{
    BE_PROFILED(be, __func__, lora_fwd_slices(be, y, u, x, l, N, ctx));
}

void op_lora_bwd(backend *be, void *dx, const void *dy, const void *x, const float *u, const lora_view *l, int N,
                 const lora_ctx *ctx)
{
    BE_PROFILED(be, __func__, lora_bwd_slices(be, dx, dy, x, u, l, N, ctx));
}
