/* tests/gpu/ops/nf4_dequant.c - GPU test cases of nf4_dequant: the CUDA twin against the plain-C
 * reference (quant/nf4_ops.c and quant/cuda/nf4_ops.cu). */
#include "tests/gpu/gpu_ops.h"

#include "core/numeric.h"
#include "core/rng.h"
#include "quant/nf4.h"

#include <math.h>

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

const op_case GPU_CASES_NF4_DEQUANT[] = {
    {.run = run_nf4, .op = OP_NF4, .N = 37, .C = 65, .flag = 0, .tol = 0},
    {.run = run_nf4, .op = OP_NF4, .N = 37, .C = 65, .flag = 1, .tol = 0},
    {.run = run_nf4, .op = OP_NF4, .N = 512, .C = 4096, .flag = 1, .tol = 0},
    {.run = run_nf4, .op = OP_NF4, .N = 130, .C = 64, .flag = 3, .tol = 0},   /* bit 2: fp16 weights */
};
const int GPU_NCASES_NF4_DEQUANT = sizeof GPU_CASES_NF4_DEQUANT / sizeof GPU_CASES_NF4_DEQUANT[0];
