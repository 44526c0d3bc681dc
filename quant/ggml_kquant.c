/* quant/ggml_kquant.c - the 256-value "K" formats q4_K, q5_K and q6_K, bit for bit
 * as llama.cpp's reference quantizers write them.
 *
 * Both search, per small group, for the scale (and for q4_K the minimum)
 * that minimises a weighted squared error over a few candidate scales, then
 * store the group scales as small integers relative to one fp16 scale per
 * 256 values, and finally round every value against the scale it will
 * actually be decoded with. The arithmetic below follows ggml's order of
 * operations exactly (each product rounded on its own; no fused
 * multiply-adds in this build), because the chosen integers, and so the
 * bytes, depend on the last bit of every sum. */
#include "ggml_quant.h"

#include "core/numeric.h"

#include <math.h>
#include <string.h>

#define QK_K 256
#define Q4K_BYTES 144   /* d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of codes */
#define Q5K_BYTES 176   /* as q4_K, then 32 bytes of fifth bits before the 128 bytes of low nibbles */
#define Q6K_BYTES 210   /* 128 bytes low nibbles, 64 bytes high bits, 16 int8 scales, d (f16) */
#define TINY 1e-15f     /* below this a group counts as all zeros (ggml's GROUP_MAX_EPS) */

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ------------------------------------------------------------ q4_K, q5_K */

/* The weighted squared error of decoding codes L with (scale, min). */
static float affine_error(const float *x, const float *w, const uint8_t *L, int n, float scale, float min)
{
    float err = 0;
    for (int i = 0; i < n; i++) {
        float diff = scale * L[i] + min - x[i];
        err += w[i] * (diff * diff);
    }
    return err;
}

/* Codes L[i] in [0, nmax] with x ~ scale * L + min (min <= 0): start from the
 * range, then try nstep + 1 grids stretched by rmin + 0.1 * step codes and
 * keep the least-squares fit with the smallest weighted error. *neg_min
 * receives -min. @return the scale. */
static float fit_affine(const float *x, const float *w, int n, int nmax, float rmin, int nstep, uint8_t *L,
                        float *neg_min)
{
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)clampi(ggml_nearest_int(iscale * (x[i] - min)), 0, nmax);
    float best = affine_error(x, w, L, n, scale, min);
    uint8_t trial[32];
    for (int step = 0; step <= nstep; step++) {
        iscale = (rmin + 0.1f * step + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(ggml_nearest_int(iscale * (x[i] - min)), 0, nmax);
            trial[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = affine_error(x, w, trial, n, this_scale, this_min);
        if (err < best) {
            memcpy(L, trial, (size_t)n);
            best = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *neg_min = -min;
    return scale;
}

/* Group j's 6-bit scale and min from the 12 packed bytes: groups 0-3 in the
 * low 6 bits of bytes 0-3 (scales) and 4-7 (mins); groups 4-7 in the
 * nibbles of bytes 8-11 with their top 2 bits in bytes 0-7's top bits. */
static void k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4);
        *m = (uint8_t)((q[j + 4] >> 4) | (q[j] >> 6) << 4);
    }
}

/* The first 16 bytes of a q4_K or q5_K block (d, dmin, the packed 6-bit
 * scales and mins of its 8 groups of 32) and the codes L[256] in [0, nmax]
 * (15 or 31), rounded against the scales as stored. */
static void quantize_affine_block(const float *x, unsigned char *b, int nmax, uint8_t *L)
{
    uint8_t *packed = b + 4;
    float w[32], scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *g = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += g[l] * g[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(g[l]);
        scales[j] = nmax == 15 ? fit_affine(g, w, 32, 15, -1.f, 20, L + 32 * j, &mins[j])
                               : fit_affine(g, w, 32, 31, -0.5f, 15, L + 32 * j, &mins[j]);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)ggml_nearest_int(inv_scale * scales[j]), lm = (uint8_t)ggml_nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
            packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    ggml_put_f16(b, max_scale / 63.f);
    ggml_put_f16(b + 2, max_min / 63.f);
    float d_all = ggml_get_f16(b), dmin_all = ggml_get_f16(b + 2);
    for (int j = 0; j < 8; j++) {   /* round again against the stored scales */
        uint8_t sc, m;
        k_scale_min(j, packed, &sc, &m);
        float d = d_all * sc;
        if (!d) continue;
        float dm = dmin_all * m;
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = (uint8_t)clampi(ggml_nearest_int((x[32 * j + i] + dm) / d), 0, nmax);
    }
}

/* q4_K: byte l of each 32 holds value l (low nibble) and value l + 32 (high) of each 64. */
static void quantize_q4_K_block(const float *x, unsigned char *b)
{
    uint8_t L[QK_K];
    quantize_affine_block(x, b, 15, L);
    unsigned char *q = b + 16;
    for (int j = 0; j < QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (unsigned char)(L[j + l] | L[j + l + 32] << 4);
}

/* q5_K: the low 4 bits as in q4_K (from byte 48), the fifth bits in 32 bytes
 * (from byte 16): bit 2k of byte l for value l of the k-th 64, bit 2k+1 for
 * value l + 32. */
static void quantize_q5_K_block(const float *x, unsigned char *b)
{
    uint8_t L[QK_K];
    quantize_affine_block(x, b, 31, L);
    unsigned char *qh = b + 16, *ql = b + 48;
    memset(qh, 0, 32);
    for (int j = 0, k = 0; j < QK_K; j += 64, k++, ql += 32)
        for (int l = 0; l < 32; l++) {
            int lo = L[j + l], hi = L[j + l + 32];
            qh[l] |= (unsigned char)((lo >> 4) << (2 * k) | (hi >> 4) << (2 * k + 1));
            ql[l] = (unsigned char)((lo & 0xF) | (hi & 0xF) << 4);
        }
}

void ggml_quantize_q4_K(const float *x, void *dst, int64_t k)
{
#pragma omp parallel for schedule(static) if (k > (1 << 16))   /* blocks are independent: same bytes on any thread count */
    for (int64_t i = 0; i < k / QK_K; i++) quantize_q4_K_block(x + i * QK_K, (unsigned char *)dst + i * Q4K_BYTES);
}

void ggml_dequantize_q4_K(const void *src, float *y, int64_t k)
{
    for (int64_t i = 0; i < k / QK_K; i++) {
        const unsigned char *b = (const unsigned char *)src + i * Q4K_BYTES, *q = b + 16;
        float d = ggml_get_f16(b), dmin = ggml_get_f16(b + 2);
        for (int j = 0; j < 8; j += 2, q += 32, y += 64) {
            uint8_t sc, m;
            k_scale_min(j, b + 4, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            k_scale_min(j + 1, b + 4, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) y[l] = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * (q[l] >> 4) - m2;
        }
    }
}

void ggml_quantize_q5_K(const float *x, void *dst, int64_t k)
{
#pragma omp parallel for schedule(static) if (k > (1 << 16))   /* blocks are independent: same bytes on any thread count */
    for (int64_t i = 0; i < k / QK_K; i++) quantize_q5_K_block(x + i * QK_K, (unsigned char *)dst + i * Q5K_BYTES);
}

void ggml_dequantize_q5_K(const void *src, float *y, int64_t k)
{
    for (int64_t i = 0; i < k / QK_K; i++) {
        const unsigned char *b = (const unsigned char *)src + i * Q5K_BYTES, *qh = b + 16, *ql = b + 48;
        float d = ggml_get_f16(b), dmin = ggml_get_f16(b + 2);
        for (int j = 0, k4 = 0; j < 8; j += 2, k4++, ql += 32, y += 64) {
            uint8_t sc, m;
            k_scale_min(j, b + 4, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            k_scale_min(j + 1, b + 4, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) y[l] = d1 * ((ql[l] & 0xF) + (qh[l] >> (2 * k4) & 1) * 16) - m1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * ((ql[l] >> 4) + (qh[l] >> (2 * k4 + 1) & 1) * 16) - m2;
        }
    }
}

/* ------------------------------------------------------------------ q6_K */

/* Sums over a group of 16 for the candidate grid iscale: codes clamped to
 * [-32, 31], weights x^2. */
static void symmetric_sums(const float *x, float iscale, float *sumlx, float *suml2)
{
    *sumlx = *suml2 = 0;
    for (int i = 0; i < 16; i++) {
        int l = clampi(ggml_nearest_int(iscale * x[i]), -32, 31);
        float w = x[i] * x[i];
        *sumlx += w * x[i] * l;
        *suml2 += w * l * l;
    }
}

/* Codes L[i] in [0, 63] (value + 32) for 16 values with x ~ scale * (L - 32):
 * the grid set by the value of largest magnitude, then 18 grids around it;
 * the least-squares scale of the best (x^2-weighted) wins. @return the scale. */
static float fit_symmetric(const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < 16; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < TINY) {
        memset(L, 0, 16);
        return 0.f;
    }
    float iscale = -32 / max, sumlx, suml2;
    for (int i = 0; i < 16; i++) L[i] = (int8_t)(clampi(ggml_nearest_int(iscale * x[i]), -32, 31) + 32);
    symmetric_sums(x, iscale, &sumlx, &suml2);
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int step = -9; step <= 9; step++) {
        if (step == 0) continue;
        iscale = -(32 + 0.1f * step) / max;
        symmetric_sums(x, iscale, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < 16; i++) L[i] = (int8_t)(clampi(ggml_nearest_int(iscale * x[i]), -32, 31) + 32);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void quantize_q6_K_block(const float *x, unsigned char *b)
{
    int8_t L[QK_K], *sc = (int8_t *)(b + 192);
    float scales[16], max_scale = 0, max_abs = 0;
    for (int g = 0; g < 16; g++) {
        scales[g] = fit_symmetric(x + 16 * g, L + 16 * g);
        if (fabsf(scales[g]) > max_abs) {
            max_abs = fabsf(scales[g]);
            max_scale = scales[g];
        }
    }
    if (max_abs < TINY) {   /* all zeros */
        memset(b, 0, Q6K_BYTES);
        return;
    }
    float iscale = -128.f / max_scale;
    ggml_put_f16(b + 208, 1 / iscale);
    for (int g = 0; g < 16; g++) {
        int s = ggml_nearest_int(iscale * scales[g]);
        sc[g] = (int8_t)(s < 127 ? s : 127);
    }
    float d_all = ggml_get_f16(b + 208);
    for (int g = 0; g < 16; g++) {   /* round again against the stored scales */
        float d = d_all * sc[g];
        if (!d) continue;
        for (int i = 0; i < 16; i++) L[16 * g + i] = (int8_t)(clampi(ggml_nearest_int(x[16 * g + i] / d), -32, 31) + 32);
    }
    /* per 128 values: ql byte l = values l, l + 64 (low nibbles), byte l + 32 =
     * values l + 32, l + 96; qh byte l = the top 2 bits of l, l+32, l+64, l+96 */
    unsigned char *ql = b, *qh = b + 128;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; l++) {
            const int8_t *v = L + j + l;
            ql[l] = (unsigned char)((v[0] & 0xF) | (v[64] & 0xF) << 4);
            ql[l + 32] = (unsigned char)((v[32] & 0xF) | (v[96] & 0xF) << 4);
            qh[l] = (unsigned char)(v[0] >> 4 | (v[32] >> 4) << 2 | (v[64] >> 4) << 4 | (v[96] >> 4) << 6);
        }
}

void ggml_quantize_q6_K(const float *x, void *dst, int64_t k)
{
#pragma omp parallel for schedule(static) if (k > (1 << 16))   /* blocks are independent: same bytes on any thread count */
    for (int64_t i = 0; i < k / QK_K; i++) quantize_q6_K_block(x + i * QK_K, (unsigned char *)dst + i * Q6K_BYTES);
}

void ggml_dequantize_q6_K(const void *src, float *y, int64_t k)
{
    for (int64_t i = 0; i < k / QK_K; i++) {
        const unsigned char *b = (const unsigned char *)src + i * Q6K_BYTES, *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = ggml_get_f16(b + 208);
        for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32, sc += 8, y += 128)
            for (int l = 0; l < 32; l++) {
                int g = l / 16;
                int q1 = ((ql[l] & 0xF) | (qh[l] & 3) << 4) - 32, q2 = ((ql[l + 32] & 0xF) | (qh[l] >> 2 & 3) << 4) - 32;
                int q3 = ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32, q4 = ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32;
                y[l] = d * sc[g] * q1;
                y[l + 32] = d * sc[g + 2] * q2;
                y[l + 64] = d * sc[g + 4] * q3;
                y[l + 96] = d * sc[g + 6] * q4;
            }
    }
}
