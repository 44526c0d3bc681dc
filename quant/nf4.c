/* quant/nf4.c - NF4 quantization, bit for bit what bitsandbytes computes on
 * a GPU for quantize_4bit(blocksize=64, quant_type="nf4"), with and without
 * double quantization (compress_statistics).
 *
 * The arithmetic that decides the bits, as bitsandbytes does it:
 * - each 64-value block is scaled by the fp32 reciprocal of its absmax
 *   (x = w * (1 / absmax), two roundings), then coded against the 15
 *   midpoints of the NF4 table (x > midpoint, strictly);
 * - a partial last block takes its absmax over the values it has, and an odd
 *   element count pads the last byte with the code of 0;
 * - double quantization: offset = torch's fp32 mean of the absmax values (its
 *   CUDA summation order, then times the fp32 reciprocal of the count), then
 *   (absmax - offset) in blocks of 256, each scaled by the reciprocal of its
 *   own absmax and coded to the nearest entry of the signed dynamic map by
 *   the same binary search bitsandbytes' 8-bit kernel runs.
 */
#include "nf4.h"

#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the 4-bit code */

/* Midpoints between neighbouring NF4 values. The table's values are exact
 * in fp32, so their midpoint is exact in double; it is then rounded to fp32
 * once, as the constants in bitsandbytes' kernel are. */
static void nf4_midpoints(float mid[15])
{
    for (int i = 0; i < 15; i++) mid[i] = (float)(((double)NF4_CODE[i] + (double)NF4_CODE[i + 1]) / 2.0);
}

static inline uint8_t encode4(const float mid[15], float x)
{
    uint8_t c = 0;
    for (int i = 0; i < 15; i++) c += x > mid[i];
    return c;
}

uint8_t nf4_encode(float x)
{
    float mid[15];
    nf4_midpoints(mid);
    return encode4(mid, x);
}

/* ----------------------------------------------------- the 8-bit nested code */

uint8_t nf4_encode8(const float map[256], float x)
{
    /* Seven halving steps from the middle entry (127): each step compares x
     * with the current entry and remembers it as the nearest seen below or
     * above; the two ends of the map stand in until a step replaces them. */
    int p = 127, below = 0, above = 255;
    float lo = map[0], hi = map[255];
    for (int step = 64; step > 0; step >>= 1) {
        if (x > map[p]) {
            below = p;
            lo = map[p];
            p += step;
        } else {
            above = p;
            hi = map[p];
            p -= step;
        }
    }
    /* The search stopped at p; x goes to p or to the remembered neighbour on
     * its side of map[p], whichever is nearer (fp32 midpoint). A value exactly
     * on a midpoint stays at p, so ties depend on the side, as in bitsandbytes. */
    float v = map[p];
    if (x > v) return (uint8_t)(x > (hi + v) * 0.5f ? above : p);
    return (uint8_t)(x < (lo + v) * 0.5f ? below : p);
}

/* torch.linspace(start, end, steps, dtype=float32) on the CPU: the first
 * half counts up from start, the second half down from end, each value one
 * fused multiply-add (the compiler contracts torch's expression). */
static void linspace_f32(float start, float end, int steps, float *out)
{
    float step = (end - start) / (float)(steps - 1);
    int half = steps / 2;
    for (int i = 0; i < steps; i++)
        out[i] = i < half ? fmaf(step, (float)i, start) : fmaf(-step, (float)(steps - i - 1), end);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

void nf4_dynamic_map(float map[256])
{
    /* Signed, 7 exponent bits, 8 bits in all: for exponent e = 0..6 the
     * 2^e midpoints of linspace(0.1, 1, 2^e + 1), scaled by 10^(e - 6) (the
     * Python float rounded to fp32, then an fp32 product), with both signs;
     * then 0 and 1, sorted. */
    static const double scale[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
    float bounds[65];
    int k = 0;
    for (int e = 0; e < 7; e++) {
        int items = (1 << e) + 1;
        linspace_f32((float)0.1, 1.0f, items, bounds);
        float s = (float)scale[e];
        for (int j = 0; j + 1 < items; j++) {
            float mean = (bounds[j] + bounds[j + 1]) / 2.0f;
            map[k++] = s * mean;
            map[k++] = -s * mean;
        }
    }
    map[k++] = 0.0f;
    map[k++] = 1.0f;
    qsort(map, 256, sizeof *map, cmp_float);
}

/* ------------------------------------------------------------- the offset */

static int64_t last_pow2(int64_t n)
{
    int64_t p = 1;
    while (p * 2 <= n) p *= 2;
    return p;
}

/* torch sizes a multi-block reduction by the GPU: SMs x (threads per SM /
 * 512). An H100 SXM (132 x 4), where the reference fixtures were made. */
#define TORCH_TARGET_GRID 528

/* One block's tree over its lanes: halve through shared memory down to a
 * warp, then the warp's shuffle tree pairs lanes (0,1), (0,2), (0,4), ... */
static float block_tree(float *lane, int64_t width)
{
    int64_t w = width;
    for (; w > 32; w /= 2)
        for (int64_t t = 0; t < w / 2; t++) lane[t] += lane[t + w / 2];
    for (int64_t off = 1; off < w; off *= 2)
        for (int64_t t = 0; t + off < w; t += 2 * off) lane[t] += lane[t + off];
    return lane[0];
}

/* The partial sum of thread block `cta` of `ctas`, `width` threads each. */
static float block_sum(const float *x, int64_t n, bool vec, int64_t width, int64_t cta, int64_t ctas, float *lane)
{
    int64_t stride = width * ctas;   /* in vectors when vec, else in values */
    for (int64_t t = 0; t < width; t++) {
        int64_t g = cta * width + t;
        float acc[4] = {0, 0, 0, 0};   /* one per vector slot / per unrolled step */
        if (vec) {
            for (int64_t v = g; v * 4 + 3 < n; v += stride)
                for (int j = 0; j < 4; j++) acc[j] += x[v * 4 + j];
            int64_t tail = n - n % 4 + t;   /* a ragged end: the first block's threads */
            if (cta == 0 && tail < n) acc[0] += x[tail];
        } else {
            int64_t i = g;
            for (; i + 3 * stride < n; i += 4 * stride)
                for (int j = 0; j < 4; j++) acc[j] += x[i + j * stride];
            for (int j = 0; j < 4 && i < n; j++, i += stride) acc[j] += x[i];
        }
        lane[t] = ((acc[0] + acc[1]) + acc[2]) + acc[3];
    }
    return block_tree(lane, width);
}

float nf4_offset_mean(const float *x, int64_t n)
{
    if (n <= 0) return NAN;
    /* torch's launch for a contiguous fp32 vector: above 128 values each
     * thread loads 4-vectors; a block is the largest power of two of threads
     * up to 512 that the (vector) count fills; from 256 values per thread on,
     * the work is split over several blocks whose partial sums the last one
     * adds up, thread t taking blocks t, t + width, ... */
    bool vec = n > 128;
    int64_t dim0 = vec ? n / 4 : n;
    int64_t width = dim0 < 512 ? last_pow2(dim0) : 512;
    int64_t per_thread = (n + width - 1) / width, ctas = 1;
    if (per_thread >= 256) {
        ctas = (per_thread + 15) / 16;
        if (ctas > TORCH_TARGET_GRID) ctas = TORCH_TARGET_GRID;
        if (ctas < (per_thread + 255) / 256) ctas = (per_thread + 255) / 256;
    }
    float lane[512], sum;
    if (ctas == 1) {
        sum = block_sum(x, n, vec, width, 0, 1, lane);
    } else {
        /* lane t adds the partial sums of blocks t, t + width, ... in that
         * order, each computed when it is added (block_sum's own lanes in scratch) */
        float scratch[512];
        for (int64_t t = 0; t < width; t++) {
            lane[t] = 0.0f;
            for (int64_t c = t; c < ctas; c += width) lane[t] += block_sum(x, n, vec, width, c, ctas, scratch);
        }
        sum = block_tree(lane, width);
    }
    float factor = 1.0f / (float)n;
    return sum * factor;
}

/* ---------------------------------------------------------------- tensors */

void nf4_tensor_free(nf4_tensor *t)
{
    if (!t) return;
    free(t->packed);
    free(t->absmax);
    free(t->absmax_q);
    free(t->absmax2);
    free(t->code);
    free(t->nested_map);
    memset(t, 0, sizeof *t);
}

static void *xalloc(size_t bytes, int *rc)
{
    void *p = ds_malloc(bytes, "a 4-bit weight");
    if (!p) *rc = DS_ENOMEM;
    return p;
}

int nf4_tensor_alloc(nf4_tensor *t, int64_t rows, int64_t cols, bool double_quant, nf4_out_dtype dtype)
{
    memset(t, 0, sizeof *t);
    if (rows < 1 || cols < 1 || rows > INT64_MAX / 2 / cols)
        return ds_fail(DS_EDATA, "cannot quantize a weight of shape [%lld, %lld]", (long long)rows, (long long)cols);
    nf4_view *v = &t->view;
    v->rows = rows;
    v->cols = cols;
    v->n = rows * cols;
    v->nblocks = (v->n + NF4_BLOCK - 1) / NF4_BLOCK;
    v->nblocks2 = double_quant ? (v->nblocks + NF4_NESTED_BLOCK - 1) / NF4_NESTED_BLOCK : 0;
    v->double_quant = double_quant;
    v->dtype = dtype;
    int rc = DS_OK;
    t->packed = xalloc((size_t)((v->n + 1) / 2), &rc);
    t->code = xalloc(16 * sizeof(float), &rc);
    if (double_quant) {
        t->absmax_q = xalloc((size_t)v->nblocks, &rc);
        t->absmax2 = xalloc((size_t)v->nblocks2 * sizeof(float), &rc);
        t->nested_map = xalloc(256 * sizeof(float), &rc);
    } else {
        t->absmax = xalloc((size_t)v->nblocks * sizeof(float), &rc);
    }
    if (rc) {
        nf4_tensor_free(t);
        return rc;
    }
    memcpy(t->code, NF4_CODE, 16 * sizeof(float));
    if (double_quant) nf4_dynamic_map(t->nested_map);
    v->packed = t->packed;
    v->absmax = t->absmax;
    v->absmax_q = t->absmax_q;
    v->absmax2 = t->absmax2;
    v->code = t->code;
    v->nested_map = t->nested_map;
    return DS_OK;
}

size_t nf4_tensor_bytes(const nf4_tensor *t)
{
    const nf4_view *v = &t->view;
    size_t b = (size_t)((v->n + 1) / 2) + 16 * sizeof(float);
    if (v->double_quant) b += (size_t)v->nblocks + (size_t)v->nblocks2 * sizeof(float) + 256 * sizeof(float);
    else b += (size_t)v->nblocks * sizeof(float);
    return b;
}

/* First level: absmax per 64-value block and the packed 4-bit codes. */
static void quantize_blocks(const float *w, int64_t n, int64_t nblocks, float *absmax, uint8_t *packed)
{
    float mid[15];
    nf4_midpoints(mid);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nblocks; b++) {
        int64_t start = b * NF4_BLOCK, end = start + NF4_BLOCK < n ? start + NF4_BLOCK : n;
        float amax = 0.0f;
        for (int64_t i = start; i < end; i++) amax = fmaxf(amax, fabsf(w[i]));
        absmax[b] = amax;
        float inv = 1.0f / amax;
        /* Blocks hold an even count, so a pair never straddles two blocks;
         * only an odd total leaves a last element paired with a padding 0. */
        for (int64_t i = start; i < end; i += 2) {
            float a = w[i] * inv;
            float c = (i + 1 < end ? w[i + 1] : 0.0f) * inv;
            packed[i / 2] = (uint8_t)(encode4(mid, a) << 4 | encode4(mid, c));
        }
    }
}

/* Second level: offset, then (absmax - offset) as 8-bit codes per 256 blocks. */
static void quantize_nested(const float *absmax, int64_t nblocks, const float *map, float *offset, float *absmax2,
                            uint8_t *q)
{
    float off = nf4_offset_mean(absmax, nblocks);
    int64_t nb2 = (nblocks + NF4_NESTED_BLOCK - 1) / NF4_NESTED_BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < nb2; j++) {
        int64_t start = j * NF4_NESTED_BLOCK;
        int64_t end = start + NF4_NESTED_BLOCK < nblocks ? start + NF4_NESTED_BLOCK : nblocks;
        float amax = 0.0f;
        for (int64_t b = start; b < end; b++) amax = fmaxf(amax, fabsf(absmax[b] - off));
        absmax2[j] = amax;
        float inv = 1.0f / amax;
        for (int64_t b = start; b < end; b++) q[b] = nf4_encode8(map, (absmax[b] - off) * inv);
    }
    *offset = off;
}

int nf4_quantize(const float *w, int64_t rows, int64_t cols, bool double_quant, nf4_out_dtype dtype,
                 nf4_tensor *out)
{
    int rc = nf4_tensor_alloc(out, rows, cols, double_quant, dtype);
    if (rc) return rc;
    nf4_view *v = &out->view;
    for (int64_t i = 0; i < v->n; i++)
        if (!isfinite(w[i])) {
            nf4_tensor_free(out);
            return ds_fail(DS_EDATA, "weight [%lld, %lld] holds a non-finite value (%g) at [%lld, %lld]",
                           (long long)rows, (long long)cols, (double)w[i], (long long)(i / cols),
                           (long long)(i % cols));
        }
    float *absmax = double_quant ? ds_calloc((size_t)v->nblocks, sizeof(float), "absmax") : out->absmax;
    if (!absmax) {
        nf4_tensor_free(out);
        return ds_fail_context(DS_ENOMEM, "quantizing a weight [%lld, %lld]: ", (long long)rows, (long long)cols);
    }
    quantize_blocks(w, v->n, v->nblocks, absmax, out->packed);
    if (double_quant) {
        quantize_nested(absmax, v->nblocks, out->nested_map, &v->offset, out->absmax2, out->absmax_q);
        free(absmax);
    }
    return DS_OK;
}
