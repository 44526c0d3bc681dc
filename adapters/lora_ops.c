/* adapters/lora_ops.c - LoRA forward/backward, composed from backend matrix
 * products and one elementwise kernel (dropout), so that the same code runs
 * on both backends; only op_dropout has a CUDA twin (adapters/cuda/lora_ops.cu).
 *
 * The products take their operands in the activations' type: bf16 on CUDA,
 * where they run on the tensor cores with fp32 accumulation and read x and dy
 * as they are (no fp32 copy of a (n, in) activation), and fp32 on the CPU. The
 * weights A and B and the products' fp32 results (u, du) are rounded to that
 * type just before they are multiplied; dA and dB accumulate in fp32. */
#include "lora_ops.h"

#include "backend/kernel.h"
#include "core/rng.h"

void op_dropout(backend *be, void *out, const void *x, size_t n, uint64_t first, float p, uint64_t seed,
                uint64_t step, uint64_t id, bool accumulate)
{
    DS_DISPATCH_CUDA(be, dropout_cuda(be, out, x, n, first, p, seed, step, id, accumulate));
    const float keep_scale = 1.0f / (1.0f - p);
    float *o = out;
    const float *in = x;
    for (size_t i = 0; i < n; i++) {
        float v = ds_dropout_keep(seed, step, id, first + i, p) ? in[i] * keep_scale : 0.0f;
        o[i] = accumulate ? o[i] + v : v;
    }
    be_round_act(be, out, n);
}

static bool uses_dropout(const lora_view *l, const lora_ctx *ctx) { return ctx->training && l->dropout > 0; }

/* The ops run over slices of at most LORA_MAX_ROWS rows: the rows of the
 * slice that starts at row s of N. */
static int slice_len(int N, int s) { return N - s < LORA_MAX_ROWS ? N - s : LORA_MAX_ROWS; }

/* Bytes of one workspace piece, rounded up so that the next starts aligned
 * as the tensor cores' loads want it. */
static size_t piece(size_t n, size_t elem) { return (n * elem + 255) / 256 * 256; }

/* The workspace of a slice of n rows, carved from one buffer. */
typedef struct {
    void *A;            /* (r, in) act: A in the products' type */
    void *B;            /* (out, r) act */
    void *u;            /* (n, r) act: u in the products' type */
    float *du;          /* (n, r) fp32 */
    void *du_act;       /* (n, r) act */
    void *x;            /* (n, in) act, with dropout only: drop(x), then drop'(du · A) */
} lora_ws;

static size_t workspace_size(const lora_view *l, int n, size_t act, bool dropout)
{
    size_t nr = (size_t)n * l->r;
    return piece((size_t)l->r * l->in, act) + piece((size_t)l->out * l->r, act) + piece(nr, act) +
           piece(nr, sizeof(float)) + piece(nr, act) + (dropout ? piece((size_t)n * l->in, act) : 0) + 256;
}

size_t lora_workspace_bytes(const lora_view *l, int N, size_t act_size)
{
    return workspace_size(l, slice_len(N, 0), act_size, l->dropout > 0);
}

/* Carve the workspace of n rows and round A and B into it; false (the
 * failure recorded) when it cannot be had. */
static bool workspace(backend *be, const lora_view *l, int n, const lora_ctx *ctx, lora_ws *w)
{
    const size_t act = be->act_size, nr = (size_t)n * l->r;
    const bool drop = uses_dropout(l, ctx);
    char *p = be_workspace(be, WS_LORA, workspace_size(l, n, act, drop));
    if (!p) return false;
    p += (256 - (uintptr_t)p % 256) % 256;
    w->A = p, p += piece((size_t)l->r * l->in, act);
    w->B = p, p += piece((size_t)l->out * l->r, act);
    w->u = p, p += piece(nr, act);
    w->du = (float *)p, p += piece(nr, sizeof(float));
    w->du_act = p, p += piece(nr, act);
    w->x = drop ? p : NULL;
    be_f32_to_act(be, w->A, l->A, (size_t)l->r * l->in);
    be_f32_to_act(be, w->B, l->B, (size_t)l->out * l->r);
    return true;
}

/* C (M, Nc) = alpha op(X) op(Y) + beta C: X, Y act; C fp32 when c_f32, else act. */
static void gemm(backend *be, int M, int Nc, int K, const void *X, bool tx, const void *Y, bool ty, void *C,
                 bool c_f32, float alpha, float beta)
{
    be_gemm_args g = {.M = M, .N = Nc, .K = K, .A = X, .lda = tx ? M : K, .trans_a = tx, .B = Y, .ldb = ty ? K : Nc,
                      .trans_b = ty, .C = C, .ldc = Nc, .c_f32 = c_f32, .alpha = alpha, .beta = beta};
    be_gemm(be, &g);
}

/* out (n, width) act (+)= drop(x): rows that start at row0 of the batch. */
static void drop_rows(backend *be, void *out, const void *x, int n, int width, const lora_view *l,
                      const lora_ctx *ctx, bool accumulate)
{
    op_dropout(be, out, x, (size_t)n * width, (uint64_t)ctx->row0 * width, l->dropout, ctx->seed, ctx->step, l->id,
               accumulate);
}

/* The layer's input as the low-rank path sees it: x, or drop(x) in w->x. */
static const void *dropped_input(backend *be, const void *x, const lora_view *l, int n, const lora_ctx *ctx,
                                 lora_ws *w)
{
    if (!w->x) return x;
    drop_rows(be, w->x, x, n, l->in, l, ctx, false);
    return w->x;
}

/* u (n, r) fp32 = drop(x) · Aᵀ, x (n, in) act. */
static void compute_u(backend *be, float *u, const void *x, const lora_view *l, int n, const lora_ctx *ctx,
                      lora_ws *w)
{
    gemm(be, n, l->r, l->in, dropped_input(be, x, l, n, ctx, w), false, w->A, true, u, true, 1.0f, 0.0f);
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
        lora_ws w;
        int n = slice_len(N, s);
        if (workspace(be, l, n, &c, &w)) compute_u(be, u + (size_t)s * l->r, act_row(be, x, s, l->in), l, n, &c, &w);
    }
}

/* y (n, out) += s · u · Bᵀ after u = drop(x) · Aᵀ, for one slice: the sum
 * in fp32 in the product's epilogue, rounded once. */
static void lora_fwd_slice(backend *be, void *y, float *u, const void *x, const lora_view *l, int n,
                           const lora_ctx *ctx)
{
    lora_ws w;
    if (!workspace(be, l, n, ctx, &w)) return;
    compute_u(be, u, x, l, n, ctx, &w);
    be_f32_to_act(be, w.u, u, (size_t)n * l->r);
    gemm(be, n, l->out, l->r, w.u, false, w.B, true, y, false, l->scale, 1.0f);   /* y += s · u · Bᵀ */
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
    lora_ws w;
    if (!workspace(be, l, n, ctx, &w)) return;
    be_f32_to_act(be, w.u, u, (size_t)n * l->r);
    gemm(be, l->out, l->r, n, dy, true, w.u, false, l->dB, true, l->scale, 1.0f);   /* dB (out, r) += s · dyᵀ · u */
    gemm(be, n, l->r, l->out, dy, false, w.B, false, w.du, true, l->scale, 0.0f);   /* du (n, r) = s · dy · B */
    be_f32_to_act(be, w.du_act, w.du, (size_t)n * l->r);
    const void *xd = dropped_input(be, x, l, n, ctx, &w);
    gemm(be, l->r, l->in, n, w.du_act, true, xd, false, l->dA, true, 1.0f, 1.0f);  /* dA (r, in) += duᵀ · drop(x) */
    if (!w.x) {
        gemm(be, n, l->in, l->r, w.du_act, false, w.A, false, dx, false, 1.0f, 1.0f);   /* dx += du · A */
        return;
    }
    gemm(be, n, l->in, l->r, w.du_act, false, w.A, false, w.x, false, 1.0f, 0.0f);   /* w.x = du · A */
    drop_rows(be, dx, w.x, n, l->in, l, ctx, true);                                /* dx += drop'(du · A), same mask */
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
