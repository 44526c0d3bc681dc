/* Finite-difference checks of every backward op of the CPU reference, on
 * small random shapes: L = sum(w * f(x)) for a random w, so dL/dx is what
 * the op's backward returns for dout = w. Central differences in fp32. */
#include "testutil.h"

#include "adapters/lora_ops.h"
#include "backend/backend.h"
#include "core/status.h"
#include "finetune/engine/ops/ops.h"
#include "losses/logits.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-2f
#define TOL 2e-2

static backend *cpu(void)
{
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), 0);
    return be;
}

static float *rnd(size_t n, uint64_t seed, float scale)
{
    float *x = malloc(sizeof(float) * n);
    tu_fill_uniform(x, n, seed, scale);
    return x;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Numeric gradient of L(x) = loss(ctx) with respect to x[0..n), central differences. */
typedef double (*loss_fn)(void *ctx);
static void numeric_grad(float *x, size_t n, loss_fn f, void *ctx, float *g)
{
    for (size_t i = 0; i < n; i++) {
        float old = x[i];
        x[i] = old + EPS;
        double lp = f(ctx);
        x[i] = old - EPS;
        double lm = f(ctx);
        x[i] = old;
        g[i] = (float)((lp - lm) / (2.0 * EPS));
    }
}

static void expect_close(const float *analytic, const float *numeric, size_t n, const char *what)
{
    double err = tu_rel_err(analytic, numeric, n);
    cr_expect(err < TOL, "%s: analytic vs finite-difference gradient: relative error %.3e", what, err);
}

/* ---- RMSNorm ---- */
typedef struct { backend *be; float *x, *w, *gw, *out, *rstd; int N, C; } norm_ctx;
static double norm_loss(void *p)
{
    norm_ctx *c = p;
    op_rmsnorm_fwd(c->be, c->out, c->rstd, c->x, c->w, c->N, c->C, 1e-6f);
    return dot(c->out, c->gw, (size_t)c->N * c->C);
}

Test(gradcheck, rmsnorm)
{
    norm_ctx c = {.be = cpu(), .N = 5, .C = 13};
    size_t n = (size_t)c.N * c.C;
    c.x = rnd(n, 1, 1.0f); c.w = rnd((size_t)c.C, 2, 1.0f); c.gw = rnd(n, 3, 1.0f);
    c.out = malloc(sizeof(float) * n); c.rstd = malloc(sizeof(float) * c.N);
    float *dx = calloc(n, sizeof(float)), *num = malloc(sizeof(float) * n);
    norm_loss(&c);
    op_rmsnorm_bwd(c.be, dx, c.gw, c.x, c.w, c.rstd, c.N, c.C);
    numeric_grad(c.x, n, norm_loss, &c, num);
    expect_close(dx, num, n, "rmsnorm dx");
    be_close(c.be);
}

/* ---- RoPE ---- */
typedef struct { backend *be; float *x, *y, *gw; int32_t *pos; int N, nh, D; rope_table rt; } rope_ctx;
static double rope_loss(void *p)
{
    rope_ctx *c = p;
    size_t n = (size_t)c->N * c->nh * c->D;
    memcpy(c->y, c->x, sizeof(float) * n);
    op_rope(c->be, c->y, c->pos, c->N, c->nh, c->D, &c->rt, 0);
    return dot(c->y, c->gw, n);
}

Test(gradcheck, rope)
{
    rope_ctx c = {.be = cpu(), .N = 6, .nh = 3, .D = 8, .rt = {.half = 4, .scale = 1.25f}};   /* yarn-like scale */
    for (int i = 0; i < 4; i++) c.rt.inv_freq[i] = (1.0f / powf(10000.0f, (float)(2 * i) / 8.0f)) / 2.0f;
    size_t n = (size_t)c.N * c.nh * c.D;
    c.x = rnd(n, 4, 1.0f); c.gw = rnd(n, 5, 1.0f); c.y = malloc(sizeof(float) * n);
    int32_t pos[6] = {0, 1, 2, 7, 0, 300};
    c.pos = pos;
    float *dx = malloc(sizeof(float) * n), *num = malloc(sizeof(float) * n);
    memcpy(dx, c.gw, sizeof(float) * n);
    op_rope(c.be, dx, c.pos, c.N, c.nh, c.D, &c.rt, 1);   /* backward = inverse rotation, same scale */
    numeric_grad(c.x, n, rope_loss, &c, num);
    expect_close(dx, num, n, "rope dx");
    be_close(c.be);
}

/* ---- attention (GQA, causal, segments) ---- */
typedef struct { backend *be; float *q, *k, *v, *out, *lse, *gw; int32_t *seg; attn_shape sh; } att_ctx;
static double att_loss(void *p)
{
    att_ctx *c = p;
    op_attention_fwd(c->be, c->out, c->lse, c->q, c->k, c->v, c->seg, &c->sh);
    return dot(c->out, c->gw, (size_t)c->sh.B * c->sh.T * c->sh.H * c->sh.D);
}

static void check_attention(int window, float scale)
{
    att_ctx c = {.be = cpu(), .sh = {.B = 2, .T = 7, .H = 4, .Hkv = 2, .D = 8, .window = window, .scale = scale}};
    size_t nq = (size_t)c.sh.B * c.sh.T * c.sh.H * c.sh.D, nk = (size_t)c.sh.B * c.sh.T * c.sh.Hkv * c.sh.D;
    c.q = rnd(nq, 6, 1.0f); c.k = rnd(nk, 7, 1.0f); c.v = rnd(nk, 8, 1.0f); c.gw = rnd(nq, 9, 1.0f);
    c.out = malloc(sizeof(float) * nq); c.lse = malloc(sizeof(float) * c.sh.B * c.sh.T * c.sh.H);
    int32_t seg[14] = {0, 0, 0, 1, 1, 1, 1, 5, 5, 5, 5, 5, 6, 6};   /* two packed examples in row 0 */
    c.seg = seg;
    float *dq = malloc(sizeof(float) * nq), *dk = malloc(sizeof(float) * nk), *dv = malloc(sizeof(float) * nk);
    float *num = malloc(sizeof(float) * nq);
    att_loss(&c);
    op_attention_bwd(c.be, dq, dk, dv, c.gw, c.out, c.lse, c.q, c.k, c.v, c.seg, &c.sh);
    numeric_grad(c.q, nq, att_loss, &c, num);
    expect_close(dq, num, nq, "attention dq");
    numeric_grad(c.k, nk, att_loss, &c, num);
    expect_close(dk, num, nk, "attention dk");
    numeric_grad(c.v, nk, att_loss, &c, num);
    expect_close(dv, num, nk, "attention dv");
    be_close(c.be);
}

Test(gradcheck, attention) { check_attention(0, 0); }
/* Mistral's sliding window (3 tokens, the query included) and a softmax scale of the model's own */
Test(gradcheck, attention_sliding_window_and_scale) { check_attention(3, 0.2f); }

/* ---- SwiGLU ---- */
typedef struct { backend *be; float *g, *u, *out, *gw; size_t n; } swiglu_ctx;
static double swiglu_loss(void *p)
{
    swiglu_ctx *c = p;
    op_swiglu_fwd(c->be, c->out, c->g, c->u, c->n);
    return dot(c->out, c->gw, c->n);
}

Test(gradcheck, swiglu)
{
    swiglu_ctx c = {.be = cpu(), .n = 37};
    c.g = rnd(c.n, 10, 3.0f); c.u = rnd(c.n, 11, 2.0f); c.gw = rnd(c.n, 12, 1.0f); c.out = malloc(sizeof(float) * c.n);
    float *dg = malloc(sizeof(float) * c.n), *du = malloc(sizeof(float) * c.n), *num = malloc(sizeof(float) * c.n);
    op_swiglu_bwd(c.be, dg, du, c.gw, c.g, c.u, c.n);
    numeric_grad(c.g, c.n, swiglu_loss, &c, num);
    expect_close(dg, num, c.n, "swiglu dgate");
    numeric_grad(c.u, c.n, swiglu_loss, &c, num);
    expect_close(du, num, c.n, "swiglu dup");
    be_close(c.be);
}

/* ---- LoRA linear (with dropout) ---- */
typedef struct { backend *be; lora_view l; float *x, *y, *u, *gw; int N; lora_ctx ctx; } lora_tctx;
static double lora_loss(void *p)
{
    lora_tctx *c = p;
    memset(c->y, 0, sizeof(float) * (size_t)c->N * c->l.out);
    op_lora_fwd(c->be, c->y, c->u, c->x, &c->l, c->N, &c->ctx);
    return dot(c->y, c->gw, (size_t)c->N * c->l.out);
}

static void check_lora(float dropout)
{
    lora_tctx c = {.be = cpu(), .N = 6};
    c.l = (lora_view){.r = 3, .in = 10, .out = 7, .scale = 2.5f, .dropout = dropout, .id = 4};
    c.ctx = (lora_ctx){.seed = 42, .step = 3, .training = true};
    size_t nA = (size_t)c.l.r * c.l.in, nB = (size_t)c.l.out * c.l.r, nx = (size_t)c.N * c.l.in;
    float *A = rnd(nA, 13, 1.0f), *B = rnd(nB, 14, 1.0f);
    c.l.A = A; c.l.B = B;
    c.l.dA = calloc(nA, sizeof(float)); c.l.dB = calloc(nB, sizeof(float));
    c.x = rnd(nx, 15, 1.0f); c.gw = rnd((size_t)c.N * c.l.out, 16, 1.0f);
    c.y = malloc(sizeof(float) * (size_t)c.N * c.l.out); c.u = malloc(sizeof(float) * (size_t)c.N * c.l.r);
    float *dx = calloc(nx, sizeof(float)), *num = malloc(sizeof(float) * (nx + nA + nB));
    lora_loss(&c);
    op_lora_bwd(c.be, dx, c.gw, c.x, c.u, &c.l, c.N, &c.ctx);
    numeric_grad(A, nA, lora_loss, &c, num);
    expect_close(c.l.dA, num, nA, "lora dA");
    numeric_grad(B, nB, lora_loss, &c, num);
    expect_close(c.l.dB, num, nB, "lora dB");
    numeric_grad(c.x, nx, lora_loss, &c, num);
    expect_close(dx, num, nx, "lora dx");
    be_close(c.be);
}

Test(gradcheck, lora_linear) { check_lora(0.0f); }
Test(gradcheck, lora_linear_with_dropout) { check_lora(0.3f); }

/* ---- cross-entropy and the forbidden-token penalty through the logits ops ---- */
typedef struct { backend *be; float *z; int32_t *t; uint8_t *mask; float *lse, *lp, *fm; int n, V; int which; } ce_ctx;
static double ce_loss(void *p)
{
    ce_ctx *c = p;
    op_logits_stats(c->be, c->lse, c->lp, c->fm, c->z, c->t, c->mask, c->n, c->V);
    double s = 0;
    for (int i = 0; i < c->n; i++) {
        if (c->t[i] < 0) continue;
        s += c->which == 0 ? -c->lp[i] : -log(1.0 - c->fm[i]);
    }
    return s;
}

static void check_logits_loss(int which)
{
    ce_ctx c = {.be = cpu(), .n = 5, .V = 11, .which = which};
    size_t nz = (size_t)c.n * c.V;
    c.z = rnd(nz, 17, 2.0f);
    int32_t t[5] = {3, -1, 10, 0, 7};
    uint8_t mask[11] = {0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0};
    c.t = t; c.mask = mask;
    c.lse = malloc(sizeof(float) * c.n); c.lp = malloc(sizeof(float) * c.n); c.fm = malloc(sizeof(float) * c.n);
    ce_loss(&c);
    float a[5], b[5], cc[5];
    for (int i = 0; i < c.n; i++) {
        bool on = t[i] >= 0;
        double P = c.fm[i];
        a[i] = !on ? 0 : which == 0 ? 1.0f : (float)(-P / (1 - P));
        b[i] = !on ? 0 : which == 0 ? -1.0f : 0.0f;
        cc[i] = !on || which == 0 ? 0 : (float)(1.0 / (1 - P));
    }
    float *dz = malloc(sizeof(float) * nz), *num = malloc(sizeof(float) * nz);
    op_logits_grad(c.be, dz, c.z, c.lse, c.t, a, b, cc, c.mask, c.n, c.V);
    numeric_grad(c.z, nz, ce_loss, &c, num);
    expect_close(dz, num, nz, which == 0 ? "cross-entropy dlogits" : "forbidden-token penalty dlogits");
    be_close(c.be);
}

Test(gradcheck, cross_entropy) { check_logits_loss(0); }
Test(gradcheck, forbidden_token_penalty) { check_logits_loss(1); }
