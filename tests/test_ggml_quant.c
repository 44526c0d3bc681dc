/* llama.cpp's block formats (quant/ggml_quant.h): bit for bit against known
 * answers computed by llama.cpp's library, within each format's error on
 * random matrices of odd sizes, and through a GGUF file and back. */
#include "testutil.h"

#include "core/files.h"
#include "core/numeric.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "core/status.h"
#include "data/gguf/gguf.h"
#include "quant/ggml_quant.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ROWS = 5, COLS = 768 };

/* The input of the known answers: rows at five scales, a super-block of
 * zeros, an outlier, scattered zeros. */
static void known_input(float *x)
{
    ds_rng r = ds_rng_make(7, 0);
    float scale[ROWS] = {0.01f, 0.1f, 1.0f, 10.0f, 100.0f};
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < COLS; j++) x[i * COLS + j] = ds_rng_normal(&r) * scale[i];
    memset(x + 3 * COLS, 0, sizeof(float) * 256);
    x[2 * COLS + 5] = 1000.0f;
    for (int j = 0; j < COLS; j += 7) x[j] = 0.0f;
}

/* sha256 of the bytes llama.cpp's ggml_quantize_chunk writes for known_input
 * (libggml-base of node-llama-cpp 3.21.1, the llama.cpp release it ships),
 * and of the floats its dequantize_row_* gives back from them. */
static const struct {
    int type;
    const char *quantized, *dequantized;
} KNOWN[] = {
    {GGML_F16, "34eb41516a0dff72a1bc036ffcf4160f15ee6de908655214344b0a4ca6b125aa", NULL},
    {GGML_BF16, "956780ac70bc8f6c8aec56f88dae7668eba1042739a27f03b9ae043567441e43", NULL},
    {GGML_Q8_0, "4f1387955c7b73938d4cd3849e4cdeacb15584779cc81616c1c967f6fed266a0",
     "03430724176011fc52ce9b5f344421262f13c0b9d798b10efb35fd96ac1ffa8f"},
    {GGML_Q4_0, "28bd13e27cc7ac57295dc1e23d3748ab5da2e61bc6aff76c09bbb7e2ad474eb0",
     "c1498f2261c1799987a054a2aaf3e56e4899e4f59b5f1438507171cdf824445e"},
    {GGML_Q5_0, "ca26949bb18dab19b986b707955b4f9b929b5e6852ea057adb4729dfc79a2b78",
     "f51fcd6e5871ec1431e5ccef1d79b29b90e532a467060036be8ebcf7b55e3a9a"},
    {GGML_Q5_1, "fe985f324970dd4913c1b20c7b01156e72f86981d59d7ba1f6b977f2ac8cf562",
     "e1ea4aeca3d052638084ea48b450742b6620ae6b8d4f91299cacea91f5139ac5"},
    {GGML_Q4_K, "44c523f9910022f4cd712485490dfd490b6bf315e34b4d93e87749a12908bd9c",
     "543b4b45135ab158629de409abbb121e559a0555d75e199ae8ffed79907d4352"},
    {GGML_Q5_K, "3c56c1cffc612236b2bcb9d0ffbbe00f90ae42c2117ebafaf699b415116dea6e",
     "50f89e7119e8e29db876d8a31911339586554b8cd53cd1c440d3bf5f06b49c27"},
    {GGML_Q6_K, "6b505a6aa45ac2b6a593a9ae83ac3e0bba8c1bf280f23e48530e708f2e7e19c9",
     "1994e2b47bc7da432be70876d1ced60f1b5c01224b27b90cae797db500a28d8c"},
};

Test(ggml_quant, bytes_equal_llama_cpp_reference_quantizers)
{
    float *x = malloc(sizeof(float) * ROWS * COLS), *y = malloc(sizeof(float) * ROWS * COLS);
    known_input(x);
    for (size_t k = 0; k < sizeof KNOWN / sizeof *KNOWN; k++) {
        size_t n = ggml_row_bytes(KNOWN[k].type, COLS) * ROWS;
        unsigned char *q = malloc(n);
        cr_assert_eq(ggml_quantize(KNOWN[k].type, x, q, ROWS, COLS), 0, "%s", ds_errmsg());
        char hex[65];
        ds_sha256_hex(q, n, hex);
        cr_expect_str_eq(hex, KNOWN[k].quantized, "%s bytes differ from llama.cpp's", ggml_type_get(KNOWN[k].type)->name);
        cr_assert_eq(ggml_dequantize(KNOWN[k].type, q, y, ROWS, COLS), 0);
        ds_sha256_hex(y, sizeof(float) * ROWS * COLS, hex);
        if (KNOWN[k].dequantized)
            cr_expect_str_eq(hex, KNOWN[k].dequantized, "%s dequantized differs from llama.cpp's",
                             ggml_type_get(KNOWN[k].type)->name);
        free(q);
    }
    free(x);
    free(y);
}

/* The largest error a block may have, in steps of its grid over the block's
 * largest magnitude (amax / 2^(bits-1)): q8_0 rounds to nearest (half a
 * step, plus the fp16 rounding of its scale); the others may clamp an
 * extreme value by a whole step (q4_0/q5_0: the value of largest magnitude
 * sets the scale with the sign that has one level more), the K-formats by a
 * little more through their 6- or 8-bit scales. llama.cpp's quantizer gives
 * 0.55, 1.00, 1.01, 1.04, 1.09 and 0.95 steps at worst on 20,000 random
 * blocks of five kinds. q5_1 spans [min, max] in 31 steps of at most
 * 2 amax / 31 and rounds to nearest: about half of its step. */
static const struct {
    int type, bits;
    float steps;
} BOUND[] = {
    {GGML_Q8_0, 8, 0.6f}, {GGML_Q4_0, 4, 1.25f}, {GGML_Q5_0, 5, 1.25f}, {GGML_Q5_1, 5, 0.6f},
    {GGML_Q4_K, 4, 1.25f}, {GGML_Q5_K, 5, 1.25f}, {GGML_Q6_K, 6, 1.25f},
};

static void random_rows(float *x, int rows, int cols, uint64_t seed, int kind)
{
    ds_rng r = ds_rng_make(seed, 0);
    for (int i = 0; i < rows * cols; i++) {
        float v = ds_rng_normal(&r);
        if (kind == 1) v = 2 * ds_rng_uniform(&r) - 1;                 /* uniform */
        if (kind == 2 && ds_rng_uniform(&r) < 0.5f) v = 0;             /* half zeros */
        if (kind == 3) v = fabsf(v) + 3;                               /* one sign, offset */
        if (kind == 4 && ds_rng_uniform(&r) < 0.02f) v *= 50;          /* outliers */
        x[i] = v * (i / cols + 1) * 0.01f;                             /* each row its own scale */
    }
}

Test(ggml_quant, error_within_each_formats_bound_on_odd_sizes)
{
    for (size_t b = 0; b < sizeof BOUND / sizeof *BOUND; b++) {
        int block = ggml_type_get(BOUND[b].type)->block;
        int rows = 7, cols = 3 * block;   /* odd row count, rows of several blocks */
        float *x = malloc(sizeof(float) * rows * cols), *y = malloc(sizeof(float) * rows * cols);
        unsigned char *q = malloc(ggml_row_bytes(BOUND[b].type, cols) * rows);
        for (int kind = 0; kind < 5; kind++) {
            random_rows(x, rows, cols, 100 + kind, kind);
            cr_assert_eq(ggml_quantize(BOUND[b].type, x, q, rows, cols), 0);
            cr_assert_eq(ggml_dequantize(BOUND[b].type, q, y, rows, cols), 0);
            for (int blk = 0; blk < rows * cols / block; blk++) {
                float amax = 0, err = 0;
                for (int i = blk * block; i < (blk + 1) * block; i++) {
                    amax = fmaxf(amax, fabsf(x[i]));
                    err = fmaxf(err, fabsf(x[i] - y[i]));
                }
                float step = amax / (float)(1 << (BOUND[b].bits - 1));
                cr_expect_leq(err, BOUND[b].steps * step * 1.0001f + 1e-30f, "%s kind %d block %d: error %g > %g steps of %g",
                              ggml_type_get(BOUND[b].type)->name, kind, blk, err, BOUND[b].steps, step);
            }
        }
        free(x);
        free(y);
        free(q);
    }
}

static double rms_error(int type, const float *x, int rows, int cols)
{
    float *y = malloc(sizeof(float) * rows * cols);
    unsigned char *q = malloc(ggml_row_bytes(type, cols) * rows);
    cr_assert_eq(ggml_quantize(type, x, q, rows, cols), 0);
    cr_assert_eq(ggml_dequantize(type, q, y, rows, cols), 0);
    double se = 0, ss = 0;
    for (int i = 0; i < rows * cols; i++) {
        se += (double)(x[i] - y[i]) * (x[i] - y[i]);
        ss += (double)x[i] * x[i];
    }
    free(y);
    free(q);
    return sqrt(se / ss);
}

Test(ggml_quant, more_bits_give_less_error)
{
    int rows = 9, cols = 512;
    float *x = malloc(sizeof(float) * rows * cols);
    random_rows(x, rows, cols, 5, 0);
    double e4 = rms_error(GGML_Q4_K, x, rows, cols), e5 = rms_error(GGML_Q5_K, x, rows, cols);
    double e6 = rms_error(GGML_Q6_K, x, rows, cols), e8 = rms_error(GGML_Q8_0, x, rows, cols);
    double f16 = rms_error(GGML_F16, x, rows, cols);
    cr_expect(e4 > e5 && e5 > e6 && e6 > e8 && e8 > f16, "q4_K %g q5_K %g q6_K %g q8_0 %g f16 %g", e4, e5, e6, e8, f16);
    cr_expect_lt(e4, 0.12);   /* gaussian rows: about 0.1 of the signal for 4.5 bits per weight */
    cr_expect_lt(e8, 0.01);
    free(x);
}

Test(ggml_quant, sixteen_bit_floats_round_to_nearest_even)
{
    float x[] = {1.0f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 65504.0f, 65520.0f, 1e-8f, -0.0f, NAN, INFINITY};
    uint16_t h[9], b[9];
    cr_assert_eq(ggml_quantize(GGML_F16, x, h, 1, 9), 0);
    cr_assert_eq(ggml_quantize(GGML_BF16, x, b, 1, 9), 0);
    cr_expect_eq(h[0], 0x3c00);
    cr_expect_eq(h[1], 0x3c00);   /* a tie rounds to the even neighbour */
    cr_expect_eq(h[2], 0x3c02);
    cr_expect_eq(h[3], 0x7bff);
    cr_expect_eq(h[4], 0x7c00);   /* overflow to infinity */
    cr_expect_eq(h[6], 0x8000);
    cr_expect_eq(h[7] & 0x7e00, 0x7e00);
    cr_expect_eq(h[8], 0x7c00);
    cr_expect_eq(b[0], 0x3f80);
    cr_expect_eq(b[7] & 0x7fc0, 0x7fc0);   /* NaN stays a quiet NaN */
}

Test(ggml_quant, refuses_rows_that_are_not_whole_blocks)
{
    float x[300] = {0};
    unsigned char q[400];
    cr_expect_eq(ggml_quantize(GGML_Q4_K, x, q, 1, 128), DS_EINTERNAL);
    cr_expect_eq(ggml_quantize(GGML_Q8_0, x, q, 1, 33), DS_EINTERNAL);
    cr_expect_eq(ggml_quantize(3 /* q4_1 */, x, q, 1, 32), DS_EINTERNAL);
    cr_expect_eq(ggml_dequantize(GGML_Q6_K, q, x, 1, 255), DS_EINTERNAL);
}

/* Quantized, written to a GGUF file, read back and dequantized: the values
 * the file carries are the ones the quantizer produced. */
Test(ggml_quant, round_trip_through_a_gguf_file)
{
    static const int types[] = {GGML_F32, GGML_F16, GGML_BF16, GGML_Q8_0, GGML_Q4_0, GGML_Q5_0, GGML_Q4_K, GGML_Q5_K,
                                GGML_Q6_K};
    int rows = 3, cols = 512;
    float *x = malloc(sizeof(float) * rows * cols), *direct = malloc(sizeof(float) * rows * cols);
    float *back = malloc(sizeof(float) * rows * cols);
    random_rows(x, rows, cols, 9, 0);
    unsigned char *q[9];
    char *dir = tu_tmpdir(), *path = ds_path_join(dir, "q.gguf");
    gguf_writer *w = gguf_writer_new();
    for (int t = 0; t < 9; t++) {
        q[t] = malloc(ggml_row_bytes(types[t], cols) * rows);
        cr_assert_eq(ggml_quantize(types[t], x, q[t], rows, cols), 0);
        char name[32];
        snprintf(name, sizeof name, "w.%s", ggml_type_get(types[t])->name);
        int64_t ne[2] = {cols, rows};
        cr_assert_eq(gguf_add_tensor(w, name, types[t], 2, ne, q[t]), 0, "%s", ds_errmsg());
    }
    cr_assert_eq(gguf_writer_write(w, path), 0, "%s", ds_errmsg());
    gguf_file *f;
    cr_assert_eq(gguf_open(path, &f), 0, "%s", ds_errmsg());
    for (int t = 0; t < 9; t++) {
        const gguf_tensor *g = gguf_tensor_at(f, t);
        cr_assert_eq(g->type, types[t]);
        cr_assert(g->ne[0] == cols && g->ne[1] == rows);
        cr_assert_eq(ggml_dequantize(types[t], q[t], direct, rows, cols), 0);
        cr_assert_eq(ggml_dequantize(g->type, g->data, back, g->ne[1], g->ne[0]), 0);
        cr_expect_eq(memcmp(direct, back, sizeof(float) * rows * cols), 0, "%s changed in the file", g->name);
        free(q[t]);
    }
    gguf_close(f);
    gguf_writer_free(w);
    free(x);
    free(direct);
    free(back);
    free(path);
    free(dir);
}
