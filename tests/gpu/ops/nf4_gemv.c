/* tests/gpu/ops/nf4_gemv.c - GPU test cases of nf4_gemv: the fused CUDA kernel
 * against the plain-C reference (finetune/engine/ops/nf4_gemv.c and
 * cuda/nf4_gemv.cu). W (M, K) NF4 quantized from random weights; N input rows.
 * flag: bit 0 double quantization, bit 1 fp16 weights, bit 2 y += (beta 1),
 * bit 3 packed weights 4 bytes past a 16-byte boundary, bit 4 x 2 bytes past
 * one (both take the kernel off its tensor-core path), bit 5 x written by a
 * kernel (rmsnorm) launched just before the product. */
#include "tests/gpu/gpu_ops.h"

#include "finetune/engine/ops/ops_decode.h"
#include "quant/nf4.h"

#include <stdint.h>
#include <string.h>

/* `bytes` of h on the device, `shift` bytes past an aligned address. */
static void *dev_shifted(tctx *t, const void *h, size_t bytes, size_t shift)
{
    uint8_t *d = dmem(t, bytes + shift);
    be_upload(t->gpu, d + shift, h, bytes);
    return d + shift;
}

/* W (M, K) of random weights quantized into q, its view uploaded (the packed
 * weights `shift` bytes past a 16-byte boundary). */
static nf4_view quantize_upload(tctx *t, nf4_tensor *q, int64_t M, int64_t K, bool dq, bool f16, size_t shift)
{
    float *w = rnd(t, (size_t)(M * K), 0.05f, false);
    cr_assert_eq(nf4_quantize(w, M, K, dq, f16 ? NF4_OUT_F16 : NF4_OUT_BF16, q), DS_OK, "%s", ds_errmsg());
    const nf4_view *h = nf4_tensor_view(q);
    nf4_view d = *h;
    d.packed = dev_shifted(t, h->packed, (size_t)(h->n + 1) / 2, shift);
    if (dq) {
        d.absmax_q = dev_raw(t, h->absmax_q, (size_t)h->nblocks);
        d.absmax2 = dev_f32(t, h->absmax2, (size_t)h->nblocks2);
        d.nested_map = dev_f32(t, h->nested_map, 256);
    } else {
        d.absmax = dev_f32(t, h->absmax, (size_t)h->nblocks);
    }
    d.code = dev_f32(t, h->code, 16);
    return d;
}

/* x (N, K) replaced by rmsnorm(x) on both backends, on the device by a kernel
 * launched just before the product: a product that may start before the
 * kernel before it ends (programmatic dependent launch) must still read the
 * normed x. @return the device x. */
static void *normed_input(tctx *t, float *x, int N, int K)
{
    float *w = rnd(t, (size_t)K, 1.0f, false), *rstd = hmem(t, sizeof(float) * (size_t)N);
    float *raw = hmem(t, sizeof(float) * (size_t)N * K);
    memcpy(raw, x, sizeof(float) * (size_t)N * K);
    void *graw = dev_act(t, raw, (size_t)N * K), *gw = dev_act(t, w, (size_t)K), *gx = dmem(t, (size_t)N * K * 2);
    op_rmsnorm_fwd(t->cpu, x, rstd, raw, w, N, K, 1e-6f);
    op_rmsnorm_fwd(t->gpu, gx, dmem(t, sizeof(float) * (size_t)N), graw, gw, N, K, 1e-6f);
    return gx;
}

static void run_gemv(tctx *t, const op_case *c)
{
    const bool dq = c->flag & 1, f16 = c->flag & 2;
    const float beta = c->flag & 4 ? 1.0f : 0.0f;
    const size_t nx = (size_t)c->N * c->K, ny = (size_t)c->N * c->M;
    float *x = rnd(t, nx, 1.0f, false), *y = rnd(t, ny, 1.0f, false);
    nf4_tensor q = {0};
    nf4_view d = quantize_upload(t, &q, c->M, c->K, dq, f16, c->flag & 8 ? 4 : 0);
    const nf4_view *h = nf4_tensor_view(&q);
    void *gy = beta != 0 ? dev_act(t, y, ny) : dev_poison(t, ny * 2);
    void *gx;
    if (c->flag & 16) {   /* x is bf16-exact (rnd): its bits go up as they are */
        uint16_t *hx = hmem(t, nx * 2);
        for (size_t i = 0; i < nx; i++) hx[i] = ds_f32_to_bf16(x[i]);
        gx = dev_shifted(t, hx, nx * 2, 2);
    } else if (c->flag & 32) {
        gx = normed_input(t, x, c->N, c->K);
    } else {
        gx = dev_act(t, x, nx);
    }
    op_nf4_gemv(t->cpu, y, x, h, c->N, beta);
    op_nf4_gemv(t->gpu, gy, gx, &d, c->N, beta);
    gpu_ok(t);
    check(t, "y", get_act(t, gy, ny), y, ny, c->tol);
    nf4_tensor_free(&q);
}

/* Up to 3 weights of K columns and M, M + 17 and 16 rows (tiles of several
 * weights in one launch), quantized and uploaded (weight `shifted`'s packed
 * bytes 4 past a 16-byte boundary; -1: none), and their outputs y: random on
 * both backends when acc (the ops add to them), else poison on the device. */
enum { MAXW = 3 };
typedef struct {
    int count;
    int64_t rows[MAXW];
    nf4_tensor q[MAXW];
    nf4_view d[MAXW];
    const nf4_view *hv[MAXW], *dv[MAXW];
    float *y[MAXW];
    void *gy[MAXW];
} gemv_set;

static void set_up(tctx *t, gemv_set *s, const op_case *c, int count, bool dq, bool f16, int shifted, bool acc)
{
    memset(s, 0, sizeof *s);
    s->count = count;
    const int64_t rows[MAXW] = {c->M, c->M + 17, 16};
    for (int i = 0; i < count; i++) {
        const size_t ny = (size_t)(c->N * rows[i]);
        s->rows[i] = rows[i];
        s->d[i] = quantize_upload(t, &s->q[i], rows[i], c->K, dq, f16, i == shifted ? 4 : 0);
        s->hv[i] = nf4_tensor_view(&s->q[i]), s->dv[i] = &s->d[i];
        s->y[i] = rnd(t, ny, 1.0f, false);
        s->gy[i] = acc ? dev_act(t, s->y[i], ny) : dev_poison(t, ny * 2);
    }
}

/* Each device y against the host's; the weights freed. */
static void check_set(tctx *t, gemv_set *s, const op_case *c)
{
    for (int i = 0; i < s->count; i++) {
        const size_t ny = (size_t)(c->N * s->rows[i]);
        check(t, i == 0 ? "y0" : i == 1 ? "y1" : "y2", get_act(t, s->gy[i], ny), s->y[i], ny, c->tol);
        nf4_tensor_free(&s->q[i]);
    }
}

/* op_nf4_gemv_multi over 3 weights, each y against op_nf4_gemv on the CPU.
 * flag: bit 0 double quantization, bit 1 fp16 weights, bit 3 the second
 * weight's packed bytes off a 16-byte boundary (one launch per weight instead). */
static void run_gemv_multi(tctx *t, const op_case *c)
{
    const bool dq = c->flag & 1, f16 = c->flag & 2;
    float *x = rnd(t, (size_t)c->N * c->K, 1.0f, false);
    void *gx = dev_act(t, x, (size_t)c->N * c->K);
    gemv_set s;
    set_up(t, &s, c, MAXW, dq, f16, c->flag & 8 ? 1 : -1, false);
    op_nf4_gemv_multi(t->cpu, (void *const *)s.y, x, s.hv, MAXW, c->N);
    op_nf4_gemv_multi(t->gpu, s.gy, gx, s.dv, MAXW, c->N);
    gpu_ok(t);
    check_set(t, &s, c);
}

/* op_nf4_gemv_in: h = RMSNorm(x) (or SwiGLU(x, up) with flag bit 6), then
 * H weights of h; y, h and rstd against the CPU. N = 1 makes the input inside
 * the products' launch, N > 1 runs the two ops. flag: bit 0 double
 * quantization, bit 2 y += (beta 1, one weight). */
static void run_gemv_in(tctx *t, const op_case *c)
{
    const bool dq = c->flag & 1, swiglu = c->flag & 64, acc = c->flag & 4;
    const size_t nx = (size_t)c->N * c->K, nside = swiglu ? nx : (size_t)c->K;
    float *x = rnd(t, nx, 1.0f, false), *side = rnd(t, nside, 1.0f, false);
    float *h = hmem(t, sizeof(float) * nx), *rstd = hmem(t, sizeof(float) * (size_t)c->N);
    void *gx = dev_act(t, x, nx), *gside = dev_act(t, side, nside), *gh = dev_poison(t, nx * 2);
    float *grstd = dmem(t, sizeof(float) * (size_t)c->N);
    gemv_in in = {.kind = swiglu ? GEMV_IN_SWIGLU : GEMV_IN_RMSNORM, .eps = 1e-6f}, gin = in;
    if (swiglu) in.up = side, gin.up = gside;
    else in.w = side, in.rstd = rstd, gin.w = gside, gin.rstd = grstd;
    gemv_set s;
    set_up(t, &s, c, c->H, dq, false, -1, acc);
    op_nf4_gemv_in(t->cpu, (void *const *)s.y, h, x, &in, s.hv, c->H, c->N, acc ? 1.0f : 0.0f);
    op_nf4_gemv_in(t->gpu, s.gy, gh, gx, &gin, s.dv, c->H, c->N, acc ? 1.0f : 0.0f);
    gpu_ok(t);
    check(t, "h", get_act(t, gh, nx), h, nx, c->tol);
    if (!swiglu) check(t, "rstd", get_f32(t, grstd, (size_t)c->N), rstd, (size_t)c->N, F32);
    check_set(t, &s, c);
}

const op_case GPU_CASES_NF4_GEMV[] = {
    /* the input made inside the launch (N = 1) or by its own op first (N = 3); the 7B shapes */
    {.run = run_gemv_in, .op = OP_NF4_GEMV, .N = 1, .H = 3, .M = 300, .K = 4096, .flag = 1, .tol = BF},
    {.run = run_gemv_in, .op = OP_NF4_GEMV, .N = 1, .H = 2, .M = 4500, .K = 1024, .flag = 0, .tol = BF},
    {.run = run_gemv_in, .op = OP_NF4_GEMV, .N = 1, .H = 1, .M = 4096, .K = 11008, .flag = 69, .tol = BF},
    {.run = run_gemv_in, .op = OP_NF4_GEMV, .N = 1, .H = 1, .M = 77, .K = 1056, .flag = 64, .tol = BF},
    {.run = run_gemv_in, .op = OP_NF4_GEMV, .N = 3, .H = 3, .M = 40, .K = 1152, .flag = 1, .tol = BF},
    {.run = run_gemv_in, .op = OP_NF4_GEMV, .N = 3, .H = 1, .M = 50, .K = 2048, .flag = 68, .tol = BF},
    {.run = run_gemv_in, .op = OP_NF4_GEMV, .N = 1, .H = 3, .M = 4096, .K = 4096, .flag = 1, .tol = BF, .heavy = true},
    /* several weights of one input in one launch (a layer's q, k, v) */
    {.run = run_gemv_multi, .op = OP_NF4_GEMV, .N = 1, .M = 40, .K = 1152, .flag = 1, .tol = BF},
    {.run = run_gemv_multi, .op = OP_NF4_GEMV, .N = 5, .M = 100, .K = 4160, .flag = 2, .tol = BF},
    {.run = run_gemv_multi, .op = OP_NF4_GEMV, .N = 8, .M = 33, .K = 512, .flag = 9, .tol = BF},
    {.run = run_gemv_multi, .op = OP_NF4_GEMV, .N = 2, .M = 4096, .K = 4096, .flag = 1, .tol = BF, .heavy = true},
    /* more row tiles than blocks: a block streams several (a partial last one; K of 9 chunks, of 2 chunks
       for 8 warps; chunks refilled across tiles; x written by a kernel just before) */
    {.run = run_gemv_multi, .op = OP_NF4_GEMV, .N = 3, .M = 4500, .K = 160, .flag = 1, .tol = BF},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 3, .M = 5000, .K = 1056, .flag = 5, .tol = BF},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 3, .M = 9000, .K = 3072, .flag = 33, .tol = BF},   /* refills across tiles */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 8, .M = 6000, .K = 512, .flag = 2, .tol = BF},
    /* more tiles than the blocks resident can take at TC_TILES each (any GPU up to 156 multiprocessors) */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 2, .M = 80008, .K = 1024, .flag = 1, .tol = BF, .heavy = true},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 1, .M = 256, .K = 4096, .flag = 33, .tol = BF},   /* a tile a block */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 1, .M = 37, .K = 130, .flag = 0, .tol = BF},   /* element-wise path */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 3, .M = 37, .K = 130, .flag = 5, .tol = BF},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 2, .M = 129, .K = 264, .flag = 3, .tol = BF},  /* 8-wide path */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 1, .M = 256, .K = 512, .flag = 1, .tol = BF},  /* tensor cores */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 5, .M = 77, .K = 1056, .flag = 7, .tol = BF},  /* a partial chunk */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 4, .M = 33, .K = 96, .flag = 2, .tol = BF},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 8, .M = 300, .K = 1024, .flag = 5, .tol = BF},
    /* the tensor-core path: one row past a 16-row tile, one lane of a second chunk, every N */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 1, .M = 17, .K = 160, .flag = 0, .tol = BF},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 2, .M = 5, .K = 32, .flag = 5, .tol = BF},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 3, .M = 40, .K = 1152, .flag = 3, .tol = BF},   /* 9 chunks */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 6, .M = 50, .K = 4160, .flag = 6, .tol = BF},   /* refilled */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 7, .M = 64, .K = 2048, .flag = 1, .tol = BF},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 8, .M = 31, .K = 8192, .flag = 7, .tol = BF},
    /* aligned shapes, unaligned operands: the 8-wide and the element-wise path */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 2, .M = 70, .K = 256, .flag = 9, .tol = BF},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 3, .M = 70, .K = 256, .flag = 20, .tol = BF},
    /* the 7B shapes */
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 1, .M = 4096, .K = 4096, .flag = 1, .tol = BF, .heavy = true},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 1, .M = 4096, .K = 11008, .flag = 5, .tol = BF, .heavy = true},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 1, .M = 11008, .K = 4096, .flag = 1, .tol = BF, .heavy = true},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 8, .M = 4096, .K = 4096, .flag = 5, .tol = BF, .heavy = true},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 8, .M = 4096, .K = 11008, .flag = 0, .tol = BF, .heavy = true},
    {.run = run_gemv, .op = OP_NF4_GEMV, .N = 3, .M = 4099, .K = 4096, .flag = 3, .tol = BF, .heavy = true},
};
const int GPU_NCASES_NF4_GEMV = sizeof GPU_CASES_NF4_GEMV / sizeof GPU_CASES_NF4_GEMV[0];
