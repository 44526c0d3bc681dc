/* tests/gpu/gpu_ops_util.c - buffers, random inputs and comparisons for the GPU op tests. */
#include "tests/gpu/gpu_ops.h"

#include "core/numeric.h"
#include "core/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const OP_NAMES[] = {
    "convert", "embedding", "rmsnorm_fwd", "rmsnorm_bwd", "rope", "attention_fwd", "attention_bwd",
    "swiglu_fwd", "swiglu_bwd", "add_f32", "sumsq", "adamw", "gemm", "nf4_dequant", "lora_fwd", "lora_bwd",
    "dropout", "logits_stats", "logits_grad", "bias_add", "kv_store", "attention_cached", "nf4_gemv",
    "mla_heads", "mla_heads_bwd", "mla_out", "moe_logits", "moe_route_dx", "moe_gather", "moe_scatter",
    "moe_scatter_bwd", "moe_gather_bwd", "rope_kv_store",
};

void describe(const op_case *c, char *buf, size_t n)
{
    const char *names[] = {"B", "T", "N", "C", "V", "H", "Hkv", "D", "M", "K", "flag"};
    const int vals[] = {c->B, c->T, c->N, c->C, c->V, c->H, c->Hkv, c->D, c->M, c->K, c->flag};
    size_t at = (size_t)snprintf(buf, n, "%s", OP_NAMES[c->op]);
    for (int i = 0; i < 11 && at < n; i++)
        if (vals[i] || (i == 9 && c->op == OP_GEMM)) at += (size_t)snprintf(buf + at, n - at, " %s=%d", names[i], vals[i]);
    if (c->p != 0 && at < n) snprintf(buf + at, n - at, " p=%g", c->p);
}

/* $DSFT_GPU_OPS: a comma-separated list of op names to run (the others skip). */
bool selected(const op_case *c)
{
    const char *e = getenv("DSFT_GPU_OPS");
    if (!e || !*e) return true;
    size_t len = strlen(OP_NAMES[c->op]);
    for (const char *p = e; (p = strstr(p, OP_NAMES[c->op])); p += len)
        if ((p == e || p[-1] == ',') && (p[len] == ',' || p[len] == 0)) return true;
    return false;
}

void *hmem(tctx *t, size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    cr_assert(p && t->nhost < 512);
    t->host[t->nhost++] = p;
    return p;
}

/* Host values in [-scale, scale), rounded to bf16 unless exact32. */
float *rnd(tctx *t, size_t n, float scale, bool exact32)
{
    float *x = hmem(t, n * sizeof(float));
    tu_fill_uniform(x, n, t->seed * 1000003u + t->draws++, scale);
    if (!exact32)
        for (size_t i = 0; i < n; i++) x[i] = ds_round_bf16(x[i]);
    return x;
}

void *dmem(tctx *t, size_t bytes)
{
    void *p = be_alloc(t->gpu, bytes ? bytes : 1, "test");
    cr_assert(p && t->ndev < 512, "be_alloc: %s", t->gpu->errmsg);
    t->dev[t->ndev++] = p;
    return p;
}

void *dev_raw(tctx *t, const void *h, size_t bytes)
{
    void *d = dmem(t, bytes);
    be_upload(t->gpu, d, h, bytes);
    return d;
}
void *dev_act(tctx *t, const float *h, size_t n)   /* bf16 on the device */
{
    void *d = dmem(t, n * t->gpu->act_size);
    be_upload_f32_as_act(t->gpu, d, h, n);
    return d;
}
float *dev_f32(tctx *t, const float *h, size_t n) { return dev_raw(t, h, n * sizeof(float)); }
/* A device buffer of NaN bytes (0xff...: NaN in bf16 and fp32). */
void *dev_poison(tctx *t, size_t bytes)
{
    void *h = hmem(t, bytes);
    memset(h, 0xff, bytes);
    return dev_raw(t, h, bytes);
}
float *get_act(tctx *t, const void *d, size_t n)
{
    float *h = hmem(t, n * sizeof(float));
    be_download_act_as_f32(t->gpu, h, d, n);
    return h;
}
float *get_f32(tctx *t, const void *d, size_t n)
{
    float *h = hmem(t, n * sizeof(float));
    be_download(t->gpu, h, d, n * sizeof(float));
    return h;
}

void gpu_ok(tctx *t)
{
    int rc = be_sync(t->gpu);
    cr_assert_eq(rc, DS_OK, "%s: device failure: %s (seed %llu)", t->desc, ds_errmsg(), (unsigned long long)t->seed);
}

void check(tctx *t, const char *what, const float *gpu, const float *ref, size_t n, double tol)
{
    double e = tu_rel_err(gpu, ref, n);
    if (e > t->worst) t->worst = e;
    cr_expect(e <= tol, "%s: %s: relative error %.3e > %.1e (seed %llu; DSFT_TEST_SEED=%llu reproduces)", t->desc,
              what, e, tol, (unsigned long long)t->seed, (unsigned long long)t->seed);
}

int32_t *rand_ints(tctx *t, size_t n, int lo, int hi)
{
    int32_t *v = hmem(t, n * sizeof(int32_t));
    ds_rng r = ds_rng_make(t->seed, 100 + t->draws++);
    for (size_t i = 0; i < n; i++) v[i] = lo + (int32_t)ds_rng_below(&r, (uint64_t)(hi - lo));
    return v;
}

/* Segment ids. kind 1: packed sequences, contiguous runs of random length up
 * to T/3; kind 3: the same with runs of at most 40; kind 2: not contiguous at
 * all (random ids 0..2), which the kernels must handle too. */
int32_t *rand_segments(tctx *t, int B, int T, int kind)
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

