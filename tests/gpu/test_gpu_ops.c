/* tests/gpu/test_gpu_ops.c - every CUDA op against its CPU reference.
 *
 * One table of cases {op, shapes, tolerance}. For each case the test draws
 * fresh random inputs (seed from the clock, or $DSFT_TEST_SEED; printed on
 * failure), rounds them to bf16 so that both backends see identical values,
 * runs the op on be_open(BE_CPU) and be_open(BE_CUDA), downloads and compares
 * ||gpu - cpu|| / ||cpu|| (NaN never passes). GPU outputs are poisoned with NaN
 * bytes before the run, so an element the kernel forgets to write fails.
 * Outputs that an op accumulates into start from the same random values.
 *
 * Without a GPU (or in a build without CUDA) every test skips with a clear
 * line. $DSFT_GPU_QUICK=1 skips the heavy cases and $DSFT_GPU_OPS=a,b runs only
 * the named ops (both for compute-sanitizer); $DSFT_GPU_BENCH=1 also times
 * the 7B shapes (gpu_bench, at the end).
 */
#include "tests/testutil.h"

#include "adapters/lora_ops.h"
#include "backend/backend.h"
#include "core/numeric.h"
#include "core/rng.h"
#include "core/status.h"
#include "finetune/engine/ops/ops.h"
#include "losses/logits.h"
#include "quant/nf4.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef enum {
    OP_CONVERT, OP_EMBEDDING, OP_RMSNORM_FWD, OP_RMSNORM_BWD, OP_ROPE, OP_ATTN_FWD, OP_ATTN_BWD,
    OP_SWIGLU_FWD, OP_SWIGLU_BWD, OP_ADD, OP_SUMSQ, OP_ADAMW, OP_GEMM, OP_NF4, OP_LORA_FWD, OP_LORA_BWD,
    OP_DROPOUT, OP_LOGITS_STATS, OP_LOGITS_GRAD,
} op_id;

static const char *OP_NAMES[] = {
    "convert", "embedding", "rmsnorm_fwd", "rmsnorm_bwd", "rope", "attention_fwd", "attention_bwd",
    "swiglu_fwd", "swiglu_bwd", "add_f32", "sumsq", "adamw", "gemm", "nf4_dequant", "lora_fwd", "lora_bwd",
    "dropout", "logits_stats", "logits_grad",
};

/* One case. Shapes by op: N rows x C (embedding: V rows in the table; rope: H
 * heads of D); attention B, T, H, Hkv, D; elementwise n = N; gemm M, N, K;
 * nf4 N x C; lora N tokens, C = in, V = out, K = r; logits N rows of V.
 * flag: attention segments (kind, see rand_segments), rope inverse, dropout/accumulate, forbidden mask,
 * nf4 double quant, gemm padded leading dimensions, adamw step; p: dropout
 * probability, rope factor, adamw weight decay. */
typedef struct {
    op_id op;
    int B, T, N, C, V, H, Hkv, D, M, K;
    int flag;
    float p;
    double tol;
    bool heavy;
} op_case;

#define BF 1e-2   /* bf16-stored outputs */
#define F32 1e-5  /* fp32 outputs of fp32 ops (and fp32 statistics) */

static op_case CASES[] = {
    {.op = OP_CONVERT, .N = 37 * 130 + 3, .tol = 0},
    {.op = OP_EMBEDDING, .N = 37, .C = 130, .V = 50, .tol = 0},
    {.op = OP_EMBEDDING, .N = 64, .C = 4096, .V = 1000, .tol = 0},
    {.op = OP_RMSNORM_FWD, .N = 37, .C = 130, .tol = BF},
    {.op = OP_RMSNORM_FWD, .N = 64, .C = 4096, .tol = BF},
    {.op = OP_RMSNORM_FWD, .N = 5, .C = 8, .tol = BF},
    {.op = OP_RMSNORM_BWD, .N = 37, .C = 130, .tol = BF},
    {.op = OP_RMSNORM_BWD, .N = 64, .C = 4096, .tol = BF},
    {.op = OP_ROPE, .N = 37, .H = 3, .D = 16, .p = 1.0f, .tol = BF},
    {.op = OP_ROPE, .N = 64, .H = 32, .D = 128, .p = 1.0f, .flag = 1, .tol = BF},
    {.op = OP_ROPE, .N = 37, .H = 4, .D = 64, .p = 4.0f, .tol = BF},
    {.op = OP_ATTN_FWD, .B = 1, .T = 37, .H = 2, .Hkv = 2, .D = 16, .tol = BF},
    {.op = OP_ATTN_FWD, .B = 2, .T = 37, .H = 4, .Hkv = 2, .D = 64, .flag = 1, .tol = BF},
    {.op = OP_ATTN_FWD, .B = 1, .T = 300, .H = 4, .Hkv = 2, .D = 128, .tol = BF},
    {.op = OP_ATTN_FWD, .B = 2, .T = 300, .H = 32, .Hkv = 8, .D = 64, .flag = 1, .tol = BF, .heavy = true},
    {.op = OP_ATTN_FWD, .B = 3, .T = 130, .H = 2, .Hkv = 1, .D = 32, .flag = 1, .tol = BF},
    {.op = OP_ATTN_FWD, .B = 1, .T = 300, .H = 4, .Hkv = 4, .D = 128, .flag = 1, .tol = BF},
    {.op = OP_ATTN_FWD, .B = 2, .T = 300, .H = 4, .Hkv = 2, .D = 128, .flag = 2, .tol = BF},
    {.op = OP_ATTN_FWD, .B = 2, .T = 500, .H = 4, .Hkv = 1, .D = 64, .flag = 3, .tol = BF},
    {.op = OP_ATTN_FWD, .B = 1, .T = 2048, .H = 2, .Hkv = 1, .D = 128, .flag = 1, .tol = BF, .heavy = true},
    {.op = OP_ATTN_FWD, .B = 1, .T = 64, .H = 2, .Hkv = 2, .D = 48, .tol = -1},   /* must fail cleanly */
    {.op = OP_ATTN_BWD, .B = 1, .T = 37, .H = 2, .Hkv = 2, .D = 16, .tol = BF},
    {.op = OP_ATTN_BWD, .B = 2, .T = 37, .H = 4, .Hkv = 2, .D = 64, .flag = 1, .tol = BF},
    {.op = OP_ATTN_BWD, .B = 1, .T = 300, .H = 4, .Hkv = 2, .D = 128, .tol = BF},
    {.op = OP_ATTN_BWD, .B = 2, .T = 300, .H = 32, .Hkv = 8, .D = 64, .flag = 1, .tol = BF, .heavy = true},
    {.op = OP_ATTN_BWD, .B = 3, .T = 130, .H = 2, .Hkv = 1, .D = 32, .flag = 1, .tol = BF},
    {.op = OP_ATTN_BWD, .B = 1, .T = 300, .H = 4, .Hkv = 4, .D = 128, .flag = 1, .tol = BF},
    {.op = OP_ATTN_BWD, .B = 2, .T = 300, .H = 4, .Hkv = 2, .D = 128, .flag = 2, .tol = BF},
    {.op = OP_ATTN_BWD, .B = 2, .T = 500, .H = 4, .Hkv = 1, .D = 64, .flag = 3, .tol = BF},
    {.op = OP_ATTN_BWD, .B = 1, .T = 500, .H = 2, .Hkv = 2, .D = 128, .flag = 1, .tol = BF},
    {.op = OP_ATTN_BWD, .B = 1, .T = 2048, .H = 2, .Hkv = 1, .D = 128, .flag = 1, .tol = BF, .heavy = true},
    {.op = OP_SWIGLU_FWD, .N = 37 * 130, .tol = BF},
    {.op = OP_SWIGLU_FWD, .N = 1 << 20, .tol = BF},
    {.op = OP_SWIGLU_BWD, .N = 37 * 130, .tol = BF},
    {.op = OP_SWIGLU_BWD, .N = 1 << 20, .tol = BF},
    {.op = OP_ADD, .N = 37 * 130 + 1, .tol = BF},
    {.op = OP_ADD, .N = 1 << 20, .tol = BF},
    {.op = OP_SUMSQ, .N = 1, .tol = F32},
    {.op = OP_SUMSQ, .N = 37 * 130, .tol = F32},
    {.op = OP_SUMSQ, .N = 1 << 22, .tol = F32},
    {.op = OP_ADAMW, .N = 4099, .flag = 1, .p = 0.0f, .tol = F32},
    {.op = OP_ADAMW, .N = 1 << 20, .flag = 10, .p = 0.1f, .tol = F32},
    {.op = OP_GEMM, .M = 37, .N = 130, .K = 64, .tol = BF},
    {.op = OP_GEMM, .M = 128, .N = 256, .K = 512, .tol = BF},
    {.op = OP_GEMM, .M = 33, .N = 17, .K = 9, .flag = 1, .tol = BF},
    {.op = OP_GEMM, .M = 64, .N = 48, .K = 0, .tol = BF},
    {.op = OP_GEMM, .M = 1, .N = 1, .K = 1, .tol = BF},
    {.op = OP_NF4, .N = 37, .C = 65, .flag = 0, .tol = 0},
    {.op = OP_NF4, .N = 37, .C = 65, .flag = 1, .tol = 0},
    {.op = OP_NF4, .N = 512, .C = 4096, .flag = 1, .tol = 0},
    {.op = OP_NF4, .N = 130, .C = 64, .flag = 3, .tol = 0},   /* bit 2: fp16 weights */
    {.op = OP_LORA_FWD, .N = 37, .C = 130, .V = 70, .K = 8, .p = 0.0f, .tol = BF},
    {.op = OP_LORA_FWD, .N = 37, .C = 130, .V = 70, .K = 8, .p = 0.1f, .tol = BF},
    {.op = OP_LORA_FWD, .N = 64, .C = 256, .V = 512, .K = 16, .p = 0.05f, .tol = BF},
    {.op = OP_LORA_BWD, .N = 37, .C = 130, .V = 70, .K = 8, .p = 0.0f, .tol = BF},
    {.op = OP_LORA_BWD, .N = 37, .C = 130, .V = 70, .K = 8, .p = 0.1f, .tol = BF},
    {.op = OP_LORA_BWD, .N = 64, .C = 256, .V = 512, .K = 16, .p = 0.05f, .tol = BF},
    {.op = OP_DROPOUT, .N = 37 * 130, .p = 0.1f, .flag = 0, .tol = F32},
    {.op = OP_DROPOUT, .N = 37 * 130 + 5, .p = 0.5f, .flag = 1, .tol = F32},
    {.op = OP_LOGITS_STATS, .N = 5, .V = 37, .tol = F32},
    {.op = OP_LOGITS_STATS, .N = 7, .V = 32001, .flag = 1, .tol = F32},
    {.op = OP_LOGITS_STATS, .N = 3, .V = 128256, .flag = 1, .tol = F32},
    {.op = OP_LOGITS_STATS, .N = 4, .V = 102400, .tol = F32},
    {.op = OP_LOGITS_GRAD, .N = 5, .V = 37, .tol = BF},
    {.op = OP_LOGITS_GRAD, .N = 7, .V = 32001, .flag = 1, .tol = BF},
    {.op = OP_LOGITS_GRAD, .N = 3, .V = 128256, .flag = 1, .tol = BF},
};

/* ------------------------------------------------------------------ helpers */

typedef struct {
    backend *cpu, *gpu;
    uint64_t seed, draws;
    char desc[160];
    void *host[512];         /* host buffers to free */
    void *dev[512];          /* device buffers to free */
    int nhost, ndev;
    double worst;            /* largest relative error seen */
} tctx;

static void describe(const op_case *c, char *buf, size_t n)
{
    const char *names[] = {"B", "T", "N", "C", "V", "H", "Hkv", "D", "M", "K", "flag"};
    const int vals[] = {c->B, c->T, c->N, c->C, c->V, c->H, c->Hkv, c->D, c->M, c->K, c->flag};
    size_t at = (size_t)snprintf(buf, n, "%s", OP_NAMES[c->op]);
    for (int i = 0; i < 11 && at < n; i++)
        if (vals[i] || (i == 9 && c->op == OP_GEMM)) at += (size_t)snprintf(buf + at, n - at, " %s=%d", names[i], vals[i]);
    if (c->p != 0 && at < n) snprintf(buf + at, n - at, " p=%g", c->p);
}

/* $DSFT_GPU_OPS: a comma-separated list of op names to run (the others skip). */
static bool selected(const op_case *c)
{
    const char *e = getenv("DSFT_GPU_OPS");
    if (!e || !*e) return true;
    size_t len = strlen(OP_NAMES[c->op]);
    for (const char *p = e; (p = strstr(p, OP_NAMES[c->op])); p += len)
        if ((p == e || p[-1] == ',') && (p[len] == ',' || p[len] == 0)) return true;
    return false;
}

static void *hmem(tctx *t, size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    cr_assert(p && t->nhost < 512);
    t->host[t->nhost++] = p;
    return p;
}

/* Host values in [-scale, scale), rounded to bf16 unless exact32. */
static float *rnd(tctx *t, size_t n, float scale, bool exact32)
{
    float *x = hmem(t, n * sizeof(float));
    tu_fill_uniform(x, n, t->seed * 1000003u + t->draws++, scale);
    if (!exact32)
        for (size_t i = 0; i < n; i++) x[i] = ds_round_bf16(x[i]);
    return x;
}

static void *dmem(tctx *t, size_t bytes)
{
    void *p = be_alloc(t->gpu, bytes ? bytes : 1, "test");
    cr_assert(p && t->ndev < 512, "be_alloc: %s", t->gpu->errmsg);
    t->dev[t->ndev++] = p;
    return p;
}

static void *dev_raw(tctx *t, const void *h, size_t bytes)
{
    void *d = dmem(t, bytes);
    be_upload(t->gpu, d, h, bytes);
    return d;
}
static void *dev_act(tctx *t, const float *h, size_t n)   /* bf16 on the device */
{
    void *d = dmem(t, n * t->gpu->act_size);
    be_upload_f32_as_act(t->gpu, d, h, n);
    return d;
}
static float *dev_f32(tctx *t, const float *h, size_t n) { return dev_raw(t, h, n * sizeof(float)); }
/* A device buffer of NaN bytes (0xff...: NaN in bf16 and fp32). */
static void *dev_poison(tctx *t, size_t bytes)
{
    void *h = hmem(t, bytes);
    memset(h, 0xff, bytes);
    return dev_raw(t, h, bytes);
}
static float *get_act(tctx *t, const void *d, size_t n)
{
    float *h = hmem(t, n * sizeof(float));
    be_download_act_as_f32(t->gpu, h, d, n);
    return h;
}
static float *get_f32(tctx *t, const void *d, size_t n)
{
    float *h = hmem(t, n * sizeof(float));
    be_download(t->gpu, h, d, n * sizeof(float));
    return h;
}

static void gpu_ok(tctx *t)
{
    int rc = be_sync(t->gpu);
    cr_assert_eq(rc, DS_OK, "%s: device failure: %s (seed %llu)", t->desc, ds_errmsg(), (unsigned long long)t->seed);
}

static void check(tctx *t, const char *what, const float *gpu, const float *ref, size_t n, double tol)
{
    double e = tu_rel_err(gpu, ref, n);
    if (e > t->worst) t->worst = e;
    cr_expect(e <= tol, "%s: %s: relative error %.3e > %.1e (seed %llu; DSFT_TEST_SEED=%llu reproduces)", t->desc,
              what, e, tol, (unsigned long long)t->seed, (unsigned long long)t->seed);
}

static int32_t *rand_ints(tctx *t, size_t n, int lo, int hi)
{
    int32_t *v = hmem(t, n * sizeof(int32_t));
    ds_rng r = ds_rng_make(t->seed, 100 + t->draws++);
    for (size_t i = 0; i < n; i++) v[i] = lo + (int32_t)ds_rng_below(&r, (uint64_t)(hi - lo));
    return v;
}

/* Segment ids. kind 1: packed sequences, contiguous runs of random length up
 * to T/3; kind 3: the same with runs of at most 40; kind 2: not contiguous at
 * all (random ids 0..2), which the kernels must handle too. */
static int32_t *rand_segments(tctx *t, int B, int T, int kind)
{
    int32_t *s = hmem(t, (size_t)B * T * sizeof(int32_t));
    ds_rng r = ds_rng_make(t->seed, 200 + t->draws++);
    const uint64_t maxrun = kind == 3 ? 40 : (uint64_t)(T / 3 + 1);
    for (int b = 0; b < B; b++) {
        int id = 0, left = 1 + (int)ds_rng_below(&r, maxrun);
        for (int i = 0; i < T; i++) {
            if (left-- == 0) {
                id++;
                left = (int)ds_rng_below(&r, maxrun);
            }
            s[(size_t)b * T + i] = kind == 2 ? (int32_t)ds_rng_below(&r, 3) : id;
        }
    }
    return s;
}

/* ------------------------------------------------------------ op runners */

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

static void run_embedding(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N * c->C;
    float *table = rnd(t, (size_t)c->V * c->C, 1.0f, false), *ref = hmem(t, n * sizeof(float));
    int32_t *ids = rand_ints(t, c->N, 0, c->V);
    op_embedding(t->cpu, ref, ids, table, c->N, c->C);
    void *out = dev_poison(t, n * 2);
    op_embedding(t->gpu, out, dev_raw(t, ids, c->N * sizeof(int32_t)), dev_act(t, table, (size_t)c->V * c->C), c->N, c->C);
    gpu_ok(t);
    check(t, "out", get_act(t, out, n), ref, n, c->tol);
}

static void run_rmsnorm(tctx *t, const op_case *c)
{
    const int N = c->N, C = c->C;
    size_t n = (size_t)N * C;
    const float eps = 1e-6f;
    float *x = rnd(t, n, 2.0f, false), *w = rnd(t, C, 1.5f, false);
    float *out = hmem(t, n * sizeof(float)), *rstd = hmem(t, N * sizeof(float));
    op_rmsnorm_fwd(t->cpu, out, rstd, x, w, N, C, eps);
    void *gx = dev_act(t, x, n), *gw = dev_act(t, w, C);
    if (c->op == OP_RMSNORM_FWD) {
        void *gout = dev_poison(t, n * 2);
        float *grstd = dev_poison(t, N * sizeof(float));
        op_rmsnorm_fwd(t->gpu, gout, grstd, gx, gw, N, C, eps);
        gpu_ok(t);
        check(t, "out", get_act(t, gout, n), out, n, c->tol);
        check(t, "rstd", get_f32(t, grstd, N), rstd, N, F32);
        return;
    }
    float *dout = rnd(t, n, 1.0f, false), *dx = rnd(t, n, 1.0f, false);
    void *gdx = dev_act(t, dx, n);
    op_rmsnorm_bwd(t->cpu, dx, dout, x, w, rstd, N, C);
    op_rmsnorm_bwd(t->gpu, gdx, dev_act(t, dout, n), gx, gw, dev_f32(t, rstd, N), N, C);
    gpu_ok(t);
    check(t, "dx", get_act(t, gdx, n), dx, n, c->tol);
}

static void run_rope(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N * c->H * c->D;
    float *x = rnd(t, n, 1.0f, false);
    int32_t *pos = rand_ints(t, c->N, 0, 4096);
    void *gx = dev_act(t, x, n);
    op_rope(t->cpu, x, pos, c->N, c->H, c->D, 10000.0f, c->p, c->flag);
    op_rope(t->gpu, gx, dev_raw(t, pos, c->N * sizeof(int32_t)), c->N, c->H, c->D, 10000.0f, c->p, c->flag);
    gpu_ok(t);
    check(t, "x", get_act(t, gx, n), x, n, c->tol);
}

static void run_attention(tctx *t, const op_case *c)
{
    const int B = c->B, T = c->T, H = c->H, Hkv = c->Hkv, D = c->D;
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * Hkv * D, nl = (size_t)B * T * H;
    float *q = rnd(t, nq, 2.0f, false), *k = rnd(t, nk, 2.0f, false), *v = rnd(t, nk, 1.0f, false);
    int32_t *seg = c->flag ? rand_segments(t, B, T, c->flag) : NULL;
    float *out = hmem(t, nq * sizeof(float)), *lse = hmem(t, nl * sizeof(float));
    if (c->tol >= 0) op_attention_fwd(t->cpu, out, lse, q, k, v, seg, B, T, H, Hkv, D);
    void *gq = dev_act(t, q, nq), *gk = dev_act(t, k, nk), *gv = dev_act(t, v, nk);
    int32_t *gseg = seg ? dev_raw(t, seg, (size_t)B * T * sizeof(int32_t)) : NULL;
    if (c->op == OP_ATTN_FWD) {
        void *gout = dev_poison(t, nq * 2);
        float *glse = dev_poison(t, nl * sizeof(float));
        op_attention_fwd(t->gpu, gout, glse, gq, gk, gv, gseg, B, T, H, Hkv, D);
        if (c->tol < 0) {   /* unsupported head size: a clear failure, no crash */
            int rc = be_sync(t->gpu);
            cr_assert_neq(rc, DS_OK, "%s: expected a failure", t->desc);
            cr_assert(strstr(ds_errmsg(), "head_dim"), "%s: message: %s", t->desc, ds_errmsg());
            return;
        }
        gpu_ok(t);
        check(t, "out", get_act(t, gout, nq), out, nq, c->tol);
        check(t, "lse", get_f32(t, glse, nl), lse, nl, F32);
        return;
    }
    for (size_t i = 0; i < nq; i++) out[i] = ds_round_bf16(out[i]);   /* what the GPU forward stores */
    float *dout = rnd(t, nq, 1.0f, false);
    float *dq = hmem(t, nq * sizeof(float)), *dk = hmem(t, nk * sizeof(float)), *dv = hmem(t, nk * sizeof(float));
    op_attention_bwd(t->cpu, dq, dk, dv, dout, out, lse, q, k, v, seg, B, T, H, Hkv, D);
    void *gdq = dev_poison(t, nq * 2), *gdk = dev_poison(t, nk * 2), *gdv = dev_poison(t, nk * 2);
    op_attention_bwd(t->gpu, gdq, gdk, gdv, dev_act(t, dout, nq), dev_act(t, out, nq), dev_f32(t, lse, nl), gq, gk, gv,
                     gseg, B, T, H, Hkv, D);
    gpu_ok(t);
    check(t, "dq", get_act(t, gdq, nq), dq, nq, c->tol);
    check(t, "dk", get_act(t, gdk, nk), dk, nk, c->tol);
    check(t, "dv", get_act(t, gdv, nk), dv, nk, c->tol);
}

static void run_elementwise(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N;
    float *a = rnd(t, n, 4.0f, false), *b = rnd(t, n, 1.0f, false);
    void *ga = dev_act(t, a, n), *gb = dev_act(t, b, n);
    if (c->op == OP_SWIGLU_FWD) {
        float *out = hmem(t, n * sizeof(float));
        void *gout = dev_poison(t, n * 2);
        op_swiglu_fwd(t->cpu, out, a, b, n);
        op_swiglu_fwd(t->gpu, gout, ga, gb, n);
        gpu_ok(t);
        check(t, "out", get_act(t, gout, n), out, n, c->tol);
    } else if (c->op == OP_SWIGLU_BWD) {
        float *d = rnd(t, n, 1.0f, false), *dg = hmem(t, n * sizeof(float)), *du = hmem(t, n * sizeof(float));
        void *gdg = dev_poison(t, n * 2), *gdu = dev_poison(t, n * 2);
        op_swiglu_bwd(t->cpu, dg, du, d, a, b, n);
        op_swiglu_bwd(t->gpu, gdg, gdu, dev_act(t, d, n), ga, gb, n);
        gpu_ok(t);
        check(t, "dgate", get_act(t, gdg, n), dg, n, c->tol);
        check(t, "dup", get_act(t, gdu, n), du, n, c->tol);
    } else {   /* be_add_f32_to_act: y (act) += x (fp32), the LoRA paths' last step */
        be_add_f32_to_act(t->cpu, a, b, n);
        be_add_f32_to_act(t->gpu, ga, dev_f32(t, b, n), n);
        gpu_ok(t);
        check(t, "y", get_act(t, ga, n), a, n, c->tol);
    }
}

static void run_sumsq(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N;
    float *x = rnd(t, n, 1.0f, true), acc = 0.25f;
    float *gacc = dev_f32(t, &acc, 1);
    op_sumsq(t->cpu, &acc, x, n);
    op_sumsq(t->gpu, gacc, dev_f32(t, x, n), n);
    gpu_ok(t);
    check(t, "sum", get_f32(t, gacc, 1), &acc, 1, c->tol);
}

static void run_adamw(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N;
    float *p = rnd(t, n, 1.0f, true), *g = rnd(t, n, 1.0f, true), *m = rnd(t, n, 0.1f, true), *v = rnd(t, n, 0.01f, true);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    float *gp = dev_f32(t, p, n), *gm = dev_f32(t, m, n), *gv = dev_f32(t, v, n);
    adamw_args a = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = c->p,
                    .grad_scale = 0.5f, .step = c->flag};
    op_adamw(t->cpu, p, g, m, v, n, &a);
    op_adamw(t->gpu, gp, dev_f32(t, g, n), gm, gv, n, &a);
    gpu_ok(t);
    check(t, "p", get_f32(t, gp, n), p, n, c->tol);
    check(t, "m", get_f32(t, gm, n), m, n, c->tol);
    check(t, "v", get_f32(t, gv, n), v, n, c->tol);
}

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

/* Random packed codes and scales; the result must equal bf16(CPU) bit for bit. */
static void run_nf4(tctx *t, const op_case *c)
{
    const bool dq = c->flag & 1, f16 = c->flag & 2;
    nf4_view h = {.rows = c->N, .cols = c->C, .n = (int64_t)c->N * c->C, .double_quant = dq,
                  .dtype = f16 ? NF4_OUT_F16 : NF4_OUT_BF16};
    h.nblocks = (h.n + NF4_BLOCK - 1) / NF4_BLOCK;
    h.nblocks2 = dq ? (h.nblocks + NF4_NESTED_BLOCK - 1) / NF4_NESTED_BLOCK : 0;
    size_t nbytes = (size_t)(h.n + 1) / 2;
    uint8_t *packed = hmem(t, nbytes), *aq = hmem(t, h.nblocks);
    ds_rng r = ds_rng_make(t->seed, 300 + t->draws++);
    for (size_t i = 0; i < nbytes; i++) packed[i] = (uint8_t)ds_rng_u64(&r);
    for (int64_t i = 0; i < h.nblocks; i++) aq[i] = (uint8_t)ds_rng_u64(&r);
    float *absmax = rnd(t, h.nblocks, 2.0f, true), *absmax2 = rnd(t, h.nblocks2 + 1, 0.05f, true);
    float *map = hmem(t, 256 * sizeof(float));
    for (int i = 0; i < 256; i++) map[i] = -1.0f + 2.0f * (float)i / 255.0f + 1e-3f * ds_rng_uniform(&r);
    for (int64_t i = 0; i < h.nblocks; i++) absmax[i] = fabsf(absmax[i]);
    for (int64_t i = 0; i <= h.nblocks2; i++) absmax2[i] = fabsf(absmax2[i]);
    h.packed = packed, h.absmax = absmax, h.absmax_q = aq, h.absmax2 = absmax2;
    h.offset = 0.0371f, h.code = NF4_CODE, h.nested_map = map;
    float *ref = hmem(t, h.n * sizeof(float));
    op_nf4_dequant(t->cpu, ref, &h);

    nf4_view d = h;
    d.packed = dev_raw(t, packed, nbytes);
    d.absmax = dev_f32(t, absmax, h.nblocks);
    d.absmax_q = dev_raw(t, aq, h.nblocks);
    d.absmax2 = dev_f32(t, absmax2, h.nblocks2 + 1);
    d.code = dev_f32(t, NF4_CODE, 16);
    d.nested_map = dev_f32(t, map, 256);
    void *out = dev_poison(t, h.n * 2);
    op_nf4_dequant(t->gpu, out, &d);
    gpu_ok(t);
    uint16_t *bits = hmem(t, h.n * 2);
    be_download(t->gpu, bits, out, h.n * 2);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < h.n; i++)
        if (bits[i] != ds_f32_to_bf16(ref[i])) {
            if (first < 0) first = i;
            bad++;
        }
    cr_expect_eq(bad, 0, "%s: %lld of %lld values differ from bf16(CPU), first at %lld (seed %llu)", t->desc,
                 (long long)bad, (long long)h.n, (long long)first, (unsigned long long)t->seed);
}

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

static void run_dropout(tctx *t, const op_case *c)
{
    size_t n = (size_t)c->N;
    float *x = rnd(t, n, 1.0f, false), *o = rnd(t, n, 1.0f, false);   /* dropout works on fp32 */
    float *gx = dev_f32(t, x, n), *go = c->flag ? dev_f32(t, o, n) : dev_poison(t, n * sizeof(float));
    op_dropout(t->cpu, o, x, n, c->p, t->seed, 7, 3, c->flag);
    op_dropout(t->gpu, go, gx, n, c->p, t->seed, 7, 3, c->flag);
    gpu_ok(t);
    check(t, "out", get_f32(t, go, n), o, n, c->tol);
}

static void run_logits(tctx *t, const op_case *c)
{
    const int n = c->N, V = c->V;
    size_t nz = (size_t)n * V;
    float *z = rnd(t, nz, 8.0f, true);
    int32_t *tg = rand_ints(t, n, 0, V);
    tg[n / 2] = -1;   /* a row without a target */
    uint8_t *forb = NULL;
    if (c->flag) {
        forb = hmem(t, V);
        ds_rng r = ds_rng_make(t->seed, 400);
        for (int j = 0; j < V; j++) forb[j] = ds_rng_below(&r, 10) == 0;
    }
    float *gz = dev_f32(t, z, nz);
    int32_t *gtg = dev_raw(t, tg, n * sizeof(int32_t));
    uint8_t *gforb = forb ? dev_raw(t, forb, V) : NULL;
    float *lse = hmem(t, n * 4), *lp = hmem(t, n * 4), *fm = hmem(t, n * 4);
    op_logits_stats(t->cpu, lse, lp, fm, z, tg, forb, n, V);
    if (c->op == OP_LOGITS_STATS) {
        float *glse = dev_poison(t, n * 4), *glp = dev_poison(t, n * 4), *gfm = dev_poison(t, n * 4);
        op_logits_stats(t->gpu, glse, glp, gfm, gz, gtg, gforb, n, V);
        gpu_ok(t);
        check(t, "lse", get_f32(t, glse, n), lse, n, c->tol);
        check(t, "logprob", get_f32(t, glp, n), lp, n, c->tol);
        if (forb) check(t, "fmass", get_f32(t, gfm, n), fm, n, c->tol);
        return;
    }
    float *a = rnd(t, n, 1.0f, true), *b = rnd(t, n, 1.0f, true), *cc = c->flag ? rnd(t, n, 1.0f, true) : NULL;
    float *dz = hmem(t, nz * sizeof(float));
    void *gdz = dev_poison(t, nz * 2);
    op_logits_grad(t->cpu, dz, z, lse, tg, a, b, cc, forb, n, V);
    op_logits_grad(t->gpu, gdz, gz, dev_f32(t, lse, n), gtg, dev_f32(t, a, n), dev_f32(t, b, n),
                   cc ? dev_f32(t, cc, n) : NULL, gforb, n, V);
    gpu_ok(t);
    check(t, "dz", get_act(t, gdz, nz), dz, nz, c->tol);
}

static uint64_t test_seed(void)
{
    const char *e = getenv("DSFT_TEST_SEED");
    if (e && *e) return strtoull(e, NULL, 10);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

ParameterizedTestParameters(gpu_ops, matches_cpu)
{
    return cr_make_param_array(op_case, CASES, sizeof CASES / sizeof CASES[0]);
}

ParameterizedTest(op_case *c, gpu_ops, matches_cpu)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
    if (c->heavy && getenv("DSFT_GPU_QUICK")) cr_skip_test("heavy case skipped (DSFT_GPU_QUICK)");
    if (!selected(c)) cr_skip_test("%s not in DSFT_GPU_OPS", OP_NAMES[c->op]);
    tctx t = {.seed = test_seed()};
    describe(c, t.desc, sizeof t.desc);
    cr_assert_eq(be_open(BE_CPU, &t.cpu), DS_OK);
    cr_assert_eq(be_open(BE_CUDA, &t.gpu), DS_OK, "be_open(cuda): %s", ds_errmsg());
    switch (c->op) {
    case OP_CONVERT: run_convert(&t, c); break;
    case OP_EMBEDDING: run_embedding(&t, c); break;
    case OP_RMSNORM_FWD:
    case OP_RMSNORM_BWD: run_rmsnorm(&t, c); break;
    case OP_ROPE: run_rope(&t, c); break;
    case OP_ATTN_FWD:
    case OP_ATTN_BWD: run_attention(&t, c); break;
    case OP_SWIGLU_FWD:
    case OP_SWIGLU_BWD:
    case OP_ADD: run_elementwise(&t, c); break;
    case OP_SUMSQ: run_sumsq(&t, c); break;
    case OP_ADAMW: run_adamw(&t, c); break;
    case OP_GEMM: run_gemm(&t, c); break;
    case OP_NF4: run_nf4(&t, c); break;
    case OP_LORA_FWD:
    case OP_LORA_BWD: run_lora(&t, c); break;
    case OP_DROPOUT: run_dropout(&t, c); break;
    case OP_LOGITS_STATS:
    case OP_LOGITS_GRAD: run_logits(&t, c); break;
    }
    /* One line per case for the summary of scripts/gpu-check.sh. */
    printf("GPUCASE %-100s worst_rel_err %.3e\n", t.desc, t.worst);
    fflush(stdout);
    for (int i = 0; i < t.ndev; i++) be_free(t.gpu, t.dev[i]);
    for (int i = 0; i < t.nhost; i++) free(t.host[i]);
    be_close(t.gpu);
    be_close(t.cpu);
}

/* ------------------------------------------------------------ the backend */

Test(gpu_backend, memory_and_errors)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
    backend *be;
    cr_assert_eq(be_open(BE_CUDA, &be), DS_OK, "be_open(cuda): %s", ds_errmsg());
    cr_assert(strlen(be_device_name(be)) > 0);
    cr_assert_eq(be->act_size, 2);
    size_t base = be->bytes_in_use;
    void *a = be_alloc(be, 1 << 20, "a"), *b = be_alloc(be, 3 << 20, "b");
    cr_assert(a && b);
    cr_assert_eq(be->bytes_in_use, base + (4 << 20));
    be_free(be, a);
    cr_assert_eq(be->bytes_in_use, base + (3 << 20));
    cr_assert_geq(be_peak_bytes(be), base + (4 << 20));
    size_t fr = 0, tot = 0;
    be_mem_info(be, &fr, &tot);
    cr_assert(tot > 0 && fr <= tot);
    /* copy and zero */
    float h[5] = {1, 2, 3, 4, 5}, back[5];
    be_upload(be, b, h, sizeof h);
    be_copy(be, (char *)b + 64, b, sizeof h);
    be_zero(be, b, sizeof h);
    be_download(be, back, (char *)b + 64, sizeof h);
    cr_assert_eq(memcmp(back, h, sizeof h), 0);
    be_download(be, back, b, sizeof h);
    cr_assert_eq(back[0] + back[4], 0.0f);
    cr_assert_eq(be_sync(be), DS_OK, "%s", ds_errmsg());
    /* out of memory: NULL, then the next sync reports it */
    void *huge = be_alloc(be, (size_t)1 << 50, "a petabyte");
    cr_assert_null(huge);
    cr_assert_eq(be_sync(be), DS_ETRAIN);
    cr_assert(strstr(ds_errmsg(), "out of memory"), "message: %s", ds_errmsg());
    be_free(be, b);
    be_close(be);
}

/* A deliberate out-of-bounds access, run only by scripts/gpu-check.sh under
 * compute-sanitizer to show that the sanitizer sees Criterion's test processes. */
Test(gpu_probe, out_of_bounds_for_the_sanitizer)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
    if (!getenv("DSFT_GPU_SANITIZER_PROBE")) cr_skip_test("sanitizer probe runs with DSFT_GPU_SANITIZER_PROBE=1");
    backend *be;
    cr_assert_eq(be_open(BE_CUDA, &be), DS_OK, "%s", ds_errmsg());
    void *y = be_alloc(be, 256, "probe y"), *x = be_alloc(be, 256, "probe x");
    op_swiglu_fwd(be, y, x, x, 4096);   /* 8 KB through 256-byte buffers */
    be_sync(be);
    be_close(be);
}

/* ------------------------------------------------------------- benchmarks */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds of `iters` synchronised runs of `fn` after 3 warm-ups. */
typedef void (*bench_fn)(backend *be, void **bufs);
static double bench_median(backend *be, bench_fn fn, void **bufs, int iters)
{
    double t[64];
    for (int i = 0; i < 3; i++) fn(be, bufs);
    be_sync(be);
    for (int i = 0; i < iters; i++) {
        double t0 = now_s();
        fn(be, bufs);
        be_sync(be);
        t[i] = now_s() - t0;
    }
    qsort(t, iters, sizeof t[0], cmp_double);
    return t[iters / 2];
}

enum { BB = 4, BT = 2048, BH = 32, BD = 128 };
static void b_attn_fwd(backend *be, void **x) { op_attention_fwd(be, x[3], x[4], x[0], x[1], x[2], NULL, BB, BT, BH, BH, BD); }
static void b_attn_fwd_seg(backend *be, void **x) { op_attention_fwd(be, x[3], x[4], x[0], x[1], x[2], x[9], BB, BT, BH, BH, BD); }
static void b_attn_bwd(backend *be, void **x)
{
    op_attention_bwd(be, x[5], x[6], x[7], x[8], x[3], x[4], x[0], x[1], x[2], NULL, BB, BT, BH, BH, BD);
}
static void b_gemm(backend *be, void **x) { be_matmul_nt(be, x[2], x[0], x[1], 8192, 4096, 4096, 0.0f); }
static void b_nf4(backend *be, void **x) { op_nf4_dequant(be, x[0], (const nf4_view *)x[1]); }
static void b_rmsnorm(backend *be, void **x) { op_rmsnorm_fwd(be, x[1], x[2], x[0], x[3], 8192, 4096, 1e-6f); }

static void *bench_rand_act(backend *be, size_t n)
{
    float *h = malloc(n * sizeof(float));
    tu_fill_uniform(h, n, n, 1.0f);
    void *d = be_alloc(be, n * 2, "bench");
    be_upload_f32_as_act(be, d, h, n);
    free(h);
    return d;
}

Test(gpu_bench, shapes_7b, .timeout = 300)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
    if (!getenv("DSFT_GPU_BENCH")) cr_skip_test("benchmarks run with DSFT_GPU_BENCH=1");
    backend *be;
    cr_assert_eq(be_open(BE_CUDA, &be), DS_OK, "%s", ds_errmsg());
    const size_t nq = (size_t)BB * BT * BH * BD, nl = (size_t)BB * BT * BH;
    void *x[10];
    for (int i = 0; i < 3; i++) x[i] = bench_rand_act(be, nq);
    x[3] = be_alloc(be, nq * 2, "out");
    x[4] = be_alloc(be, nl * 4, "lse");
    for (int i = 5; i < 8; i++) x[i] = be_alloc(be, nq * 2, "grad");
    x[8] = bench_rand_act(be, nq);
    int32_t *seg = malloc(BB * BT * sizeof(int32_t));
    for (int i = 0; i < BB * BT; i++) seg[i] = (i % BT) / 512;   /* four packed sequences per row */
    x[9] = be_alloc(be, BB * BT * sizeof(int32_t), "seg");
    be_upload(be, x[9], seg, BB * BT * sizeof(int32_t));
    free(seg);
    const double fwd_flop = 4.0 * BB * BH * (double)BT * BT * BD / 2;   /* causal half */
    double tf = bench_median(be, b_attn_fwd, x, 20);
    double ts = bench_median(be, b_attn_fwd_seg, x, 20);
    op_attention_fwd(be, x[3], x[4], x[0], x[1], x[2], NULL, BB, BT, BH, BH, BD);
    double tb = bench_median(be, b_attn_bwd, x, 20);
    printf("BENCH attention_fwd B=%d T=%d H=%d D=%d causal: %.3f ms, %.1f TFLOP/s\n", BB, BT, BH, BD, tf * 1e3,
           fwd_flop / tf / 1e12);
    printf("BENCH attention_fwd with 4 segments per row: %.3f ms (causal-FLOP rate %.1f TFLOP/s)\n", ts * 1e3,
           fwd_flop / ts / 1e12);
    printf("BENCH attention_bwd B=%d T=%d H=%d D=%d causal: %.3f ms, %.1f TFLOP/s (2.5x forward FLOPs)\n", BB, BT, BH,
           BD, tb * 1e3, 2.5 * fwd_flop / tb / 1e12);
    for (int i = 0; i < 10; i++) be_free(be, x[i]);

    /* cuBLASLt through be_matmul_nt: (8192 x 4096) x (4096 x 4096)ᵀ */
    void *g[3] = {bench_rand_act(be, 8192 * 4096), bench_rand_act(be, 4096 * 4096), be_alloc(be, 8192 * 4096 * 2, "y")};
    double tg = bench_median(be, b_gemm, g, 20);
    printf("BENCH gemm 8192x4096x4096 bf16: %.3f ms, %.1f TFLOP/s\n", tg * 1e3, 2.0 * 8192 * 4096 * 4096 / tg / 1e12);
    /* rmsnorm over 8192 x 4096 */
    void *r[4] = {g[0], g[2], be_alloc(be, 8192 * 4, "rstd"), bench_rand_act(be, 4096)};
    double tr = bench_median(be, b_rmsnorm, r, 20);
    printf("BENCH rmsnorm_fwd 8192x4096: %.3f ms, %.0f GB/s\n", tr * 1e3, (2.0 * 8192 * 4096 * 2) / tr / 1e9);
    be_free(be, r[2]);
    be_free(be, r[3]);
    for (int i = 0; i < 3; i++) be_free(be, g[i]);

    /* NF4 dequant of a 7B MLP weight (11008 x 4096), double quantized */
    const int64_t rows = 11008, cols = 4096, n = rows * cols, nb = n / 64, nb2 = (nb + 255) / 256;
    uint8_t *hp = malloc(n / 2), *hq = malloc(nb);
    for (int64_t i = 0; i < n / 2; i++) hp[i] = (uint8_t)(i * 2654435761u >> 13);
    for (int64_t i = 0; i < nb; i++) hq[i] = (uint8_t)(i * 40503u >> 7);
    float *h2 = malloc(nb2 * 4), map[256];
    for (int64_t i = 0; i < nb2; i++) h2[i] = 0.01f;
    for (int i = 0; i < 256; i++) map[i] = -1.0f + 2.0f * i / 255.0f;
    nf4_view q = {.rows = rows, .cols = cols, .n = n, .nblocks = nb, .nblocks2 = nb2, .double_quant = true,
                  .dtype = NF4_OUT_BF16, .offset = 0.02f};
    void *dp = be_alloc(be, n / 2, "p"), *dq = be_alloc(be, nb, "q"), *d2 = be_alloc(be, nb2 * 4, "a2");
    void *dc = be_alloc(be, 64, "code"), *dm = be_alloc(be, 1024, "map"), *dout = be_alloc(be, n * 2, "w");
    be_upload(be, dp, hp, n / 2);
    be_upload(be, dq, hq, nb);
    be_upload(be, d2, h2, nb2 * 4);
    be_upload(be, dc, NF4_CODE, 64);
    be_upload(be, dm, map, 1024);
    q.packed = dp, q.absmax_q = dq, q.absmax2 = d2, q.code = dc, q.nested_map = dm;
    void *nx[2] = {dout, &q};
    double tn = bench_median(be, b_nf4, nx, 20);
    printf("BENCH nf4_dequant 11008x4096: %.3f ms, %.0f GB/s (packed read + bf16 write)\n", tn * 1e3,
           (n / 2.0 + 2.0 * n) / tn / 1e9);
    free(hp), free(hq), free(h2);
    be_free(be, dp), be_free(be, dq), be_free(be, d2), be_free(be, dc), be_free(be, dm), be_free(be, dout);
    cr_assert_eq(be_sync(be), DS_OK, "%s", ds_errmsg());
    be_close(be);
}
