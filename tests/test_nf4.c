/* tests/test_nf4.c - NF4 quantization against bitsandbytes' own output
 * (fixtures/nf4-bitsandbytes.safetensors: quantize_4bit(blocksize=64,
 * quant_type="nf4") with and without double quantization, on an H100). */
#include "testutil.h"

#include "backend/backend.h"
#include "core/numeric.h"
#include "core/status.h"
#include "data/safetensors.h"
#include "quant/nf4.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static st_file *fixture(void)
{
    char *p = tu_shared_path("fixtures/nf4-bitsandbytes.safetensors");
    st_file *f;
    int rc = st_file_open(p, &f);
    cr_assert_eq(rc, DS_OK, "%s", ds_errmsg());
    free(p);
    return f;
}

static const st_tensor *get(st_file *f, const char *matrix, const char *what)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", matrix, what);
    const st_tensor *t = st_file_find(f, name);
    cr_assert(t, "fixture has no tensor %s", name);
    return t;
}

static double rel(double a, double ref) { return ref == 0 ? fabs(a) : fabs(a - ref) / fabs(ref); }

/* Quantize the fixture's input and compare every output with bitsandbytes'. */
static void check_matrix(const char *matrix, bool dq)
{
    st_file *f = fixture();
    const st_tensor *in = get(f, matrix, "input");
    float *w = malloc((size_t)in->numel * sizeof *w);
    cr_assert_eq(st_to_f32(in, w), DS_OK);
    nf4_tensor t = {0};
    cr_assert_eq(nf4_quantize(w, in->shape[0], in->shape[1], dq, NF4_OUT_BF16, &t), DS_OK, "%s", ds_errmsg());
    const nf4_view *v = nf4_tensor_view(&t);
    const char *kind = dq ? "dq" : "plain";
    char what[64];

    snprintf(what, sizeof what, "%s.packed", kind);
    const st_tensor *packed = get(f, matrix, what);
    cr_assert_eq((int64_t)packed->nbytes, (v->n + 1) / 2);
    cr_assert(!memcmp(packed->data, t.packed, packed->nbytes), "%s %s: packed codes differ", matrix, kind);

    snprintf(what, sizeof what, "%s.quant_map", kind);
    cr_assert(!memcmp(get(f, matrix, what)->data, t.code, 16 * sizeof(float)), "quant_map differs");

    snprintf(what, sizeof what, "%s.absmax", kind);
    const st_tensor *absmax = get(f, matrix, what);
    cr_assert_eq(absmax->numel, v->nblocks);
    if (!dq) {
        cr_assert(!memcmp(absmax->data, t.absmax, absmax->nbytes), "%s: fp32 absmax differs", matrix);
    } else {
        for (int64_t b = 0; b < v->nblocks; b++)
            cr_assert_eq(((const uint8_t *)absmax->data)[b], t.absmax_q[b], "%s: absmax code %lld: ours %d, theirs %d",
                         matrix, (long long)b, t.absmax_q[b], ((const uint8_t *)absmax->data)[b]);
        cr_assert(!memcmp(get(f, matrix, "dq.nested_quant_map")->data, t.nested_map, 256 * sizeof(float)),
                  "nested_quant_map differs");
        float offset;
        memcpy(&offset, get(f, matrix, "dq.nested_offset")->data, 4);
        cr_assert_leq(rel(v->offset, offset), 1e-6, "offset %.9g vs %.9g", v->offset, offset);
        const st_tensor *a2 = get(f, matrix, "dq.nested_absmax");
        cr_assert_eq(a2->numel, v->nblocks2);
        for (int64_t j = 0; j < v->nblocks2; j++) {
            float ref;
            memcpy(&ref, (const char *)a2->data + 4 * j, 4);
            cr_assert_leq(rel(t.absmax2[j], ref), 1e-6, "nested absmax %lld: %.9g vs %.9g", (long long)j,
                          t.absmax2[j], ref);
        }
    }

    /* Dequantized on the CPU backend: bitsandbytes' bf16 values exactly. */
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), DS_OK);
    float *deq = malloc((size_t)v->n * sizeof *deq), *ref = malloc((size_t)v->n * sizeof *ref);
    op_nf4_dequant(be, deq, v);
    snprintf(what, sizeof what, "%s.dequantized", kind);
    cr_assert_eq(st_to_f32(get(f, matrix, what), ref), DS_OK);
    for (int64_t i = 0; i < v->n; i++)
        cr_assert(!memcmp(&deq[i], &ref[i], 4), "%s %s: dequantized [%lld] = %.9g, bitsandbytes %.9g", matrix, kind,
                  (long long)i, deq[i], ref[i]);
    be_close(be);
    free(deq);
    free(ref);
    nf4_tensor_free(&t);
    free(w);
    st_file_close(f);
}

Test(nf4_fixture, down_proj_plain) { check_matrix("down_proj", false); }
Test(nf4_fixture, down_proj_double_quant) { check_matrix("down_proj", true); }
Test(nf4_fixture, odd_shape_plain) { check_matrix("odd_shape", false); }
Test(nf4_fixture, odd_shape_double_quant_partial_nested_block) { check_matrix("odd_shape", true); }

Test(nf4_fixture, dynamic_map_is_bitsandbytes_map)
{
    st_file *f = fixture();
    float map[256];
    nf4_dynamic_map(map);
    const st_tensor *ref = get(f, "down_proj", "dq.nested_quant_map");
    for (int i = 0; i < 256; i++) {
        float r;
        memcpy(&r, (const char *)ref->data + 4 * i, 4);
        cr_assert(!memcmp(&map[i], &r, 4), "map[%d] = %.9g, bitsandbytes %.9g", i, map[i], r);
    }
    st_file_close(f);
}

/* ------------------------------------------------------------ the codes */

Test(nf4_codes, table_values_map_to_themselves_and_midpoints_go_down)
{
    for (int i = 0; i < 16; i++) cr_assert_eq(nf4_encode(NF4_CODE[i]), i, "NF4 value %d", i);
    for (int i = 0; i < 15; i++) {
        float mid = (float)(((double)NF4_CODE[i] + NF4_CODE[i + 1]) / 2);
        cr_assert_eq(nf4_encode(mid), i, "exactly on midpoint %d: strict comparison keeps the lower code", i);
        cr_assert_eq(nf4_encode(nextafterf(mid, 2.0f)), i + 1, "just above midpoint %d", i);
    }
    cr_assert_eq(nf4_encode(NAN), 0);
    cr_assert_eq(nf4_encode(-5.0f), 0);
    cr_assert_eq(nf4_encode(5.0f), 15);
}

Test(nf4_codes, encode8_finds_the_nearest_map_entry)
{
    float map[256], x[4096];
    nf4_dynamic_map(map);
    tu_fill_uniform(x, 4096, 7, 1.0f);
    for (int k = 0; k < 4096; k++) {
        int q = nf4_encode8(map, x[k]);
        for (int j = 0; j < 256; j++)
            cr_assert_leq(fabsf(map[q] - x[k]), fabsf(map[j] - x[k]) * (1 + 1e-6f) + 1e-12f,
                          "x=%.9g coded %d (%.9g) but %d (%.9g) is nearer", x[k], q, map[q], j, map[j]);
    }
    for (int j = 0; j < 256; j++) cr_assert_eq(nf4_encode8(map, map[j]), j, "map entry %d", j);
    cr_assert_eq(nf4_encode8(map, 2.0f), 255);
    cr_assert_eq(nf4_encode8(map, -2.0f), 0);
}

/* ------------------------------------------------------- partial blocks */

Test(nf4_blocks, partial_last_block_and_odd_count)
{
    /* 7 x 13 = 91 values: one full block of 64 and a partial one of 27; the
     * last byte pairs element 90 with a padding 0 (code 7). */
    float w[91];
    tu_fill_uniform(w, 91, 3, 0.5f);
    w[70] = -0.75f;   /* the partial block's absmax */
    nf4_tensor t = {0};
    cr_assert_eq(nf4_quantize(w, 7, 13, false, NF4_OUT_F32, &t), DS_OK);
    const nf4_view *v = nf4_tensor_view(&t);
    cr_assert_eq(v->nblocks, 2);
    cr_assert_eq(t.absmax[1], 0.75f);
    float m0 = 0;
    for (int i = 0; i < 64; i++) m0 = fmaxf(m0, fabsf(w[i]));
    cr_assert_eq(t.absmax[0], m0);
    cr_assert_eq(t.packed[45] & 15, 7, "padding nibble codes 0");
    cr_assert_eq(t.packed[35] >> 4, 0, "-absmax is code 0");
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), DS_OK);
    float deq[91];
    op_nf4_dequant(be, deq, v);
    for (int i = 0; i < 91; i++) {
        float a = t.absmax[i / 64];
        cr_assert_leq(fabsf(deq[i] - w[i]), a * 0.1615f, "value %d: %g vs %g", i, deq[i], w[i]);
    }
    be_close(be);
    cr_assert_eq(nf4_tensor_bytes(&t), 46 + 2 * 4 + 64);
    nf4_tensor_free(&t);
}

Test(nf4_blocks, single_block_double_quant_is_exact_offset)
{
    /* One block: the offset is the absmax itself and absmax - offset = 0;
     * bitsandbytes then codes 0 * (1/0) = NaN as entry 0, which dequantizes
     * to map[0] * 0 + offset = absmax again. */
    float w[64];
    tu_fill_uniform(w, 64, 5, 0.3f);
    nf4_tensor t = {0};
    cr_assert_eq(nf4_quantize(w, 4, 16, true, NF4_OUT_BF16, &t), DS_OK);
    float m = 0;
    for (int i = 0; i < 64; i++) m = fmaxf(m, fabsf(w[i]));
    cr_assert_eq(t.view.offset, m);
    cr_assert_eq(t.absmax2[0], 0.0f);
    cr_assert_eq(t.absmax_q[0], 0);
    cr_assert_eq(t.nested_map[t.absmax_q[0]] * t.absmax2[0] + t.view.offset, m);
    nf4_tensor_free(&t);
}

Test(nf4_blocks, f16_dequant_rounds_to_half)
{
    float w[128];
    tu_fill_uniform(w, 128, 11, 1.0f);
    nf4_tensor t = {0};
    cr_assert_eq(nf4_quantize(w, 2, 64, true, NF4_OUT_F16, &t), DS_OK);
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), DS_OK);
    float deq[128];
    op_nf4_dequant(be, deq, nf4_tensor_view(&t));
    for (int i = 0; i < 128; i++) cr_assert_eq(deq[i], ds_f16_to_f32(ds_f32_to_f16(deq[i])));
    be_close(be);
    cr_assert_eq(nf4_tensor_bytes(&t), 64 + 2 + 4 + 64 + 1024);
    nf4_tensor_free(&t);
}

Test(nf4_blocks, offset_mean_sums_like_torch)
{
    /* torch's CUDA mean multiplies the sum by the fp32 reciprocal of the
     * count: for odd_shape's 300 absmax values this differs from sum / n. */
    st_file *f = fixture();
    const st_tensor *a = get(f, "odd_shape", "plain.absmax");
    float *x = malloc(a->nbytes), ref;
    memcpy(x, a->data, a->nbytes);
    memcpy(&ref, get(f, "odd_shape", "dq.nested_offset")->data, 4);
    cr_assert_eq(nf4_offset_mean(x, a->numel), ref);
    /* Values whose every partial sum is exact in fp32: any order gives the
     * same sum, so each launch shape (one thread, vectors with a ragged end,
     * one block, several blocks) must see every value exactly once. */
    static const int64_t sizes[] = {1, 3, 100, 128, 129, 1000, 2051, 130560, 130561, 200003, 2000003};
    float *big = malloc(2000003 * sizeof *big);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int64_t n = sizes[k];
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += big[i] = 0.25f + (float)(i % 5) / 16;
        float want = (float)s * (1.0f / (float)n);
        cr_assert_eq(nf4_offset_mean(big, n), want, "n = %lld", (long long)n);
    }
    free(big);
    free(x);
    st_file_close(f);
}

Test(nf4_blocks, refuses_non_finite_weights_and_bad_shapes)
{
    float w[64] = {0};
    w[17] = NAN;
    nf4_tensor t = {0};
    cr_assert_eq(nf4_quantize(w, 2, 32, true, NF4_OUT_BF16, &t), DS_EDATA);
    cr_assert(strstr(ds_errmsg(), "non-finite") && strstr(ds_errmsg(), "[0, 17]"), "%s", ds_errmsg());
    cr_assert_null(t.packed);
    w[17] = INFINITY;
    cr_assert_eq(nf4_quantize(w, 2, 32, false, NF4_OUT_BF16, &t), DS_EDATA);
    cr_assert_eq(nf4_quantize(w, 0, 32, false, NF4_OUT_BF16, &t), DS_EDATA);
    nf4_tensor_free(&t);
}
