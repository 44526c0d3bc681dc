/* tests/gpu/ops/nf4_dequant.c - GPU test cases of nf4_dequant: the CUDA twin against the plain-C
 * reference (quant/nf4_ops.c and quant/cuda/nf4_ops.cu). */
#include "tests/gpu/gpu_ops.h"

#include "core/numeric.h"
#include "core/rng.h"
#include "quant/nf4.h"

#include <math.h>

/* A random weight (packed codes, scales, nested table): its host view h for
 * the reference and its twin d in device memory. */
static void random_nf4(tctx *t, int rows, int cols, bool dq, bool f16, nf4_view *h, nf4_view *d)
{
    *h = (nf4_view){.rows = rows, .cols = cols, .n = (int64_t)rows * cols, .double_quant = dq,
                    .dtype = f16 ? NF4_OUT_F16 : NF4_OUT_BF16};
    h->nblocks = (h->n + NF4_BLOCK - 1) / NF4_BLOCK;
    h->nblocks2 = dq ? (h->nblocks + NF4_NESTED_BLOCK - 1) / NF4_NESTED_BLOCK : 0;
    size_t nbytes = (size_t)(h->n + 1) / 2;
    uint8_t *packed = hmem(t, nbytes), *aq = hmem(t, h->nblocks);
    ds_rng r = ds_rng_make(t->seed, 300 + t->draws++);
    for (size_t i = 0; i < nbytes; i++) packed[i] = (uint8_t)ds_rng_u64(&r);
    for (int64_t i = 0; i < h->nblocks; i++) aq[i] = (uint8_t)ds_rng_u64(&r);
    float *absmax = rnd(t, h->nblocks, 2.0f, true), *absmax2 = rnd(t, h->nblocks2 + 1, 0.05f, true);
    float *map = hmem(t, 256 * sizeof(float));
    for (int i = 0; i < 256; i++) map[i] = -1.0f + 2.0f * (float)i / 255.0f + 1e-3f * ds_rng_uniform(&r);
    for (int64_t i = 0; i < h->nblocks; i++) absmax[i] = fabsf(absmax[i]);
    for (int64_t i = 0; i <= h->nblocks2; i++) absmax2[i] = fabsf(absmax2[i]);
    h->packed = packed, h->absmax = absmax, h->absmax_q = aq, h->absmax2 = absmax2;
    h->offset = 0.0371f + 0.001f * (float)t->draws, h->code = NF4_CODE, h->nested_map = map;
    *d = *h;
    d->packed = dev_raw(t, packed, nbytes);
    d->absmax = dev_f32(t, absmax, h->nblocks);
    d->absmax_q = dev_raw(t, aq, h->nblocks);
    d->absmax2 = dev_f32(t, absmax2, h->nblocks2 + 1);
    d->code = dev_f32(t, NF4_CODE, 16);
    d->nested_map = dev_f32(t, map, 256);
}

/* Random packed codes and scales; the result must equal bf16(CPU) bit for bit.
 * flag bit 0: double quantization, bit 1: fp16 weights, bit 2: a batch of 35
 * weights in one call (op_nf4_dequant_batch: two launches of up to 32; every
 * other weight double-quantized, each with its own tables). */
static void run_nf4(tctx *t, const op_case *c)
{
    const int count = c->flag & 4 ? 35 : 1;
    const int64_t n = (int64_t)c->N * c->C;
    nf4_view h[35], d[35];
    const nf4_view *dp[35];
    float *ref = hmem(t, (size_t)count * n * sizeof(float));
    for (int i = 0; i < count; i++) {
        random_nf4(t, c->N, c->C, (c->flag & 1) || i % 2, c->flag & 2, &h[i], &d[i]);
        dp[i] = &d[i];
        op_nf4_dequant(t->cpu, ref + (size_t)i * n, &h[i]);
    }
    void *out = dev_poison(t, (size_t)count * n * 2);
    if (count == 1) op_nf4_dequant(t->gpu, out, &d[0]);
    else op_nf4_dequant_batch(t->gpu, out, dp, count);
    gpu_ok(t);
    uint16_t *bits = hmem(t, (size_t)count * n * 2);
    be_download(t->gpu, bits, out, (size_t)count * n * 2);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < count * n; i++)
        if (bits[i] != ds_f32_to_bf16(ref[i])) {
            if (first < 0) first = i;
            bad++;
        }
    cr_expect_eq(bad, 0, "%s: %lld of %lld values differ from bf16(CPU), first at %lld (seed %llu)", t->desc,
                 (long long)bad, (long long)(count * n), (long long)first, (unsigned long long)t->seed);
}

const op_case GPU_CASES_NF4_DEQUANT[] = {
    {.run = run_nf4, .op = OP_NF4, .N = 37, .C = 65, .flag = 0, .tol = 0},
    {.run = run_nf4, .op = OP_NF4, .N = 37, .C = 65, .flag = 1, .tol = 0},
    {.run = run_nf4, .op = OP_NF4, .N = 512, .C = 4096, .flag = 1, .tol = 0},
    {.run = run_nf4, .op = OP_NF4, .N = 130, .C = 64, .flag = 3, .tol = 0},   /* bit 1: fp16 weights */
    {.run = run_nf4, .op = OP_NF4, .N = 96, .C = 176, .flag = 4, .tol = 0},   /* bit 2: a batch */
    {.run = run_nf4, .op = OP_NF4, .N = 37, .C = 65, .flag = 6, .tol = 0},
};
const int GPU_NCASES_NF4_DEQUANT = sizeof GPU_CASES_NF4_DEQUANT / sizeof GPU_CASES_NF4_DEQUANT[0];
