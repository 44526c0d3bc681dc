/* finetune/cli/bench_kernels.c - `ds-ft bench kernels`: the GPU kernels alone at
 * the 7B shapes (attention forward/backward, a large GEMM, RMSNorm, NF4
 * dequantization, the NF4 matrix-vector product of decoding), each the median
 * of 20 synchronised runs after 3 warm-ups. */
#include "bench.h"
#include "commands.h"

#include "backend/backend.h"
#include "core/clock.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/status.h"
#include "finetune/engine/ops/ops.h"
#include "finetune/engine/ops/ops_decode.h"
#include "quant/nf4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        double t0 = ds_now();
        fn(be, bufs);
        be_sync(be);
        t[i] = ds_now() - t0;
    }
    qsort(t, iters, sizeof t[0], cmp_double);
    return t[iters / 2];
}

enum { BB = 4, BT = 2048, BH = 32, BD = 128 };
static const attn_shape BSHAPE = {.B = BB, .T = BT, .H = BH, .Hkv = BH, .D = BD};
static void b_attn_fwd(backend *be, void **x) { op_attention_fwd(be, x[3], x[4], x[0], x[1], x[2], NULL, &BSHAPE); }
static void b_attn_fwd_seg(backend *be, void **x) { op_attention_fwd(be, x[3], x[4], x[0], x[1], x[2], x[9], &BSHAPE); }
static void b_attn_bwd(backend *be, void **x)
{
    op_attention_bwd(be, x[5], x[6], x[7], x[8], x[3], x[4], x[0], x[1], x[2], NULL, &BSHAPE);
}
static void b_gemm(backend *be, void **x) { be_matmul_nt(be, x[2], x[0], x[1], 8192, 4096, 4096, 0.0f); }
static void b_nf4(backend *be, void **x) { op_nf4_dequant(be, x[0], (const nf4_view *)x[1]); }
static void b_rmsnorm(backend *be, void **x) { op_rmsnorm_fwd(be, x[1], x[2], x[0], x[3], 8192, 4096, 1e-6f); }
static void b_replay(backend *be, void **x) { be_replay(be, x[0]); }

/* Host memory running out is recorded in the backend as its own allocations
 * are, so that one be_sync() after a group of allocations says either. */
static void *host_alloc(backend *be, size_t bytes, const char *what)
{
    void *p = ds_malloc(bytes, what);
    if (!p) be_fail(be, DS_ENOMEM, "%s", ds_errmsg());
    return p;
}

static void *bench_rand_act(backend *be, size_t n)
{
    float *h = host_alloc(be, n * sizeof(float), "random activations");
    if (!h) return NULL;
    for (size_t i = 0; i < n; i++) h[i] = ds_u01(ds_hash3(7, n, i)) * 2.0f - 1.0f;
    void *d = be_alloc(be, n * 2, "bench");
    if (d) be_upload_f32_as_act(be, d, h, n);
    free(h);
    return d;
}

typedef struct {
    const char *attn_rows;
} kernels_args;

static const cli_opt BENCH_KERNELS_OPTS[] = {
    {"--attn-fwd-rows", ARG_CHOICE, offsetof(kernels_args, attn_rows), NULL, "auto", 0, 0, "auto|16|32", false,
     "the attention forward's kernel: auto = wgmma on an H100 (head size 128), else mma.sync with 32 query rows "
     "per warp; 16 or 32 = the mma.sync kernel with that many rows per warp"},
    CLI_END,
};

const cli_spec BENCH_KERNELS_SPEC = {"bench kernels", "", 0, 0, NULL,
                                     "the GPU kernels alone at the 7B shapes (attention, GEMM, RMSNorm, NF4 "
                                     "dequantization, NF4 matrix-vector product); needs a CUDA GPU",
                                     BENCH_KERNELS_OPTS, NULL};

/* op_nf4_gemv, the fused NF4 matrix-vector product of decoding. One call takes
 * microseconds and a decode step replays its kernels as a CUDA graph, so
 * GEMV_REPS calls are recorded and replayed together, each on the next of the
 * weight's copies in a pool of GEMV_POOL bytes: the weights then come from
 * memory, as in decoding, and not from the 50 MB L2 cache. */
enum { GEMV_REPS = 256 };   /* ~1 ms a replay: its launch and wait add little */
#define GEMV_POOL ((size_t)192 << 20)

/* `count` products of one call (op_nf4_gemv_multi when count > 1). */
static void gemv_call(backend *be, void *y, const void *x, const nf4_view *q, int count, int N, int64_t rows)
{
    if (count == 1) {
        op_nf4_gemv(be, y, x, q, N, 0.0f);
        return;
    }
    const nf4_view *qs[NF4_GEMV_MAX_WEIGHTS];
    void *ys[NF4_GEMV_MAX_WEIGHTS];
    for (int i = 0; i < count; i++) qs[i] = &q[i], ys[i] = (char *)y + (size_t)i * N * rows * 2;
    op_nf4_gemv_multi(be, ys, x, qs, count, N);
}

/* Seconds per call of `count` weights W (rows, cols) double quantized, N
 * input rows x, y (count, N, rows); the pool holds random packed bytes and
 * absmax codes. */
static int bench_gemv(backend *be, uint8_t *pool, const float *a2, const float *code, const float *map,
                      const void *x, void *y, int64_t rows, int64_t cols, int count, int N, double *sec)
{
    const int64_t n = rows * cols, nb = n / 64;
    const size_t stride = ((size_t)n / 2 + (size_t)nb + 255) / 256 * 256;   /* packed, then absmax codes */
    const int copies = GEMV_POOL / stride < GEMV_REPS ? (int)(GEMV_POOL / stride) : GEMV_REPS;
    const int calls = copies / count;   /* each call its own copies */
    nf4_view q[GEMV_REPS];
    for (int i = 0; i < copies; i++)
        q[i] = (nf4_view){.rows = rows, .cols = cols, .n = n, .nblocks = nb, .nblocks2 = (nb + 255) / 256,
                          .double_quant = true, .dtype = NF4_OUT_BF16, .offset = 0.02f, .code = code,
                          .nested_map = map, .absmax2 = a2, .packed = pool + i * stride,
                          .absmax_q = pool + i * stride + n / 2};
    for (int i = 0; i < GEMV_REPS; i++) gemv_call(be, y, x, &q[i % calls * count], count, N, rows);   /* plainly */
    be_recording *rec = NULL;
    int rc = be_sync(be);
    if (!rc) rc = be_record_begin(be);
    if (rc) return rc;
    for (int i = 0; i < GEMV_REPS; i++) gemv_call(be, y, x, &q[i % calls * count], count, N, rows);
    if ((rc = be_record_end(be, &rec))) return rc;
    void *r[1] = {rec};
    *sec = bench_median(be, b_replay, r, 20) / GEMV_REPS;
    be_recording_free(rec);
    return be_sync(be);
}

/* The seven products of a 7B layer at N = 1 and 8 input rows, one at a time
 * and as a decode step launches them (q, k, v together; o; gate, up
 * together; down): time, the bytes read and written (packed weights, absmax
 * codes and absmax2, x, y) per second, and the products' time in a decode
 * step (30 layers), each way. */
static int bench_gemvs(backend *be)
{
    static const struct {
        int64_t rows, cols;
        int count, per_layer;   /* weights a call; of a layer: alone, in a step's calls */
        const char *what;
    } shapes[] = {{4096, 4096, 1, 4, "q, k, v, o"},    {11008, 4096, 1, 2, "gate, up"},
                  {4096, 11008, 1, 1, "down"},        {4096, 4096, 3, 1, "q, k and v in one launch"},
                  {11008, 4096, 2, 1, "gate and up in one launch"}};
    const int64_t most = 11008 * 4096, nb2 = (most / 64 + 255) / 256;
    float *h2 = host_alloc(be, nb2 * 4, "absmax2"), map[256];
    uint8_t *hp = host_alloc(be, GEMV_POOL / 8, "random bytes");
    for (int64_t i = 0; h2 && i < nb2; i++) h2[i] = 0.01f;
    for (int i = 0; i < 256; i++) map[i] = -1.0f + 2.0f * i / 255.0f;
    for (size_t i = 0; hp && i < GEMV_POOL / 8; i++) hp[i] = (uint8_t)(i * 2654435761u >> 13);
    uint8_t *pool = be_alloc(be, GEMV_POOL, "weights");
    void *d2 = be_alloc(be, nb2 * 4, "a2"), *dc = be_alloc(be, 64, "code"), *dm = be_alloc(be, 1024, "map");
    void *x = bench_rand_act(be, 8 * 11008), *y = be_alloc(be, 3 * 8 * 11008 * 2, "y");
    int rc = be_sync(be);
    if (!rc) {
        for (int i = 0; i < 8; i++) be_upload(be, pool + i * (GEMV_POOL / 8), hp, GEMV_POOL / 8);
        be_upload(be, d2, h2, nb2 * 4);
        be_upload(be, dc, NF4_CODE, 64);
        be_upload(be, dm, map, 1024);
    }
    static const int Ns[] = {1, 8};
    for (int k = 0; k < 2 && !rc; k++) {
        const int N = Ns[k];
        double t[5] = {0};
        for (int s = 0; s < 5 && !rc; s++) {
            const int64_t rows = shapes[s].rows, cols = shapes[s].cols, n = rows * cols;
            rc = bench_gemv(be, pool, d2, dc, dm, x, y, rows, cols, shapes[s].count, N, &t[s]);
            if (rc) break;
            const double bytes = shapes[s].count * (n / 2.0 + n / 64.0 + n / 64 / 256 * 4.0 + 2.0 * N * rows) +
                                 2.0 * N * cols;
            printf("nf4_gemv N=%d %d x %lldx%lld (%s): %.2f us, %.0f GB/s\n", N, shapes[s].count, (long long)rows,
                   (long long)cols, shapes[s].what, t[s] * 1e6, bytes / t[s] / 1e9);
        }
        if (!rc)
            printf("nf4_gemv N=%d: the 210 products of a 7B decode step take %.3f ms one by one, %.3f ms in a "
                   "step's 120 launches\n",
                   N, 30e3 * (4 * t[0] + 2 * t[1] + t[2]), 30e3 * (t[3] + t[0] + t[4] + t[2]));
    }
    free(h2), free(hp);
    be_free(be, pool), be_free(be, d2), be_free(be, dc), be_free(be, dm), be_free(be, x), be_free(be, y);
    return rc;
}

int bench_kernels(int argc, char **argv)
{
    kernels_args a;
    cli_parsed p;
    int rc = cli_parse(&BENCH_KERNELS_SPEC, argc, argv, &a, &p);
    cli_parsed_free(&p);
    if (rc) return rc;
    long attn_rows = strcmp(a.attn_rows, "auto") ? strtol(a.attn_rows, NULL, 10) : 0;
    backend *be;
    if ((rc = be_open(BE_CUDA, &be))) return ds_fail_context(rc, "bench kernels needs a CUDA GPU: ");
    be->attn_fwd_rows = (int)attn_rows;
    if (attn_rows) printf("attention forward: the mma.sync kernel, %ld query rows per warp\n", attn_rows);
    else printf("attention forward: the wgmma kernel on an H100 (sm_90a), else mma.sync with 32 rows per warp\n");
    const size_t nq = (size_t)BB * BT * BH * BD, nl = (size_t)BB * BT * BH;
    void *x[10];
    for (int i = 0; i < 3; i++) x[i] = bench_rand_act(be, nq);
    x[3] = be_alloc(be, nq * 2, "out");
    x[4] = be_alloc(be, nl * 4, "lse");
    for (int i = 5; i < 8; i++) x[i] = be_alloc(be, nq * 2, "grad");
    x[8] = bench_rand_act(be, nq);
    int32_t *seg = host_alloc(be, BB * BT * sizeof(int32_t), "segments");
    for (int i = 0; seg && i < BB * BT; i++) seg[i] = (i % BT) / 512;   /* four packed sequences per row */
    x[9] = be_alloc(be, BB * BT * sizeof(int32_t), "seg");
    if (seg && x[9]) be_upload(be, x[9], seg, BB * BT * sizeof(int32_t));
    free(seg);
    if ((rc = be_sync(be))) {
        for (int i = 0; i < 10; i++) be_free(be, x[i]);
        be_close(be);
        return rc;
    }
    const double fwd_flop = 4.0 * BB * BH * (double)BT * BT * BD / 2;   /* causal half */
    double tf = bench_median(be, b_attn_fwd, x, 20);
    double ts = bench_median(be, b_attn_fwd_seg, x, 20);
    op_attention_fwd(be, x[3], x[4], x[0], x[1], x[2], NULL, &BSHAPE);
    double tb = bench_median(be, b_attn_bwd, x, 20);
    printf("attention_fwd B=%d T=%d H=%d D=%d causal: %.3f ms, %.1f TFLOP/s\n", BB, BT, BH, BD, tf * 1e3,
           fwd_flop / tf / 1e12);
    printf("attention_fwd with 4 segments per row: %.3f ms (causal-FLOP rate %.1f TFLOP/s)\n", ts * 1e3,
           fwd_flop / ts / 1e12);
    printf("attention_bwd B=%d T=%d H=%d D=%d causal: %.3f ms, %.1f TFLOP/s (2.5x forward FLOPs)\n", BB, BT, BH,
           BD, tb * 1e3, 2.5 * fwd_flop / tb / 1e12);
    for (int i = 0; i < 10; i++) be_free(be, x[i]);

    /* cuBLASLt through be_matmul_nt: (8192 x 4096) x (4096 x 4096)ᵀ */
    void *g[3] = {bench_rand_act(be, 8192 * 4096), bench_rand_act(be, 4096 * 4096), be_alloc(be, 8192 * 4096 * 2, "y")};
    double tg = bench_median(be, b_gemm, g, 20);
    printf("gemm 8192x4096x4096 bf16: %.3f ms, %.1f TFLOP/s\n", tg * 1e3, 2.0 * 8192 * 4096 * 4096 / tg / 1e12);
    /* rmsnorm over 8192 x 4096 */
    void *r[4] = {g[0], g[2], be_alloc(be, 8192 * 4, "rstd"), bench_rand_act(be, 4096)};
    if ((rc = be_sync(be))) {
        for (int i = 0; i < 3; i++) be_free(be, g[i]);
        be_free(be, r[2]);
        be_free(be, r[3]);
        be_close(be);
        return rc;
    }
    double tr = bench_median(be, b_rmsnorm, r, 20);
    printf("rmsnorm_fwd 8192x4096: %.3f ms, %.0f GB/s\n", tr * 1e3, (2.0 * 8192 * 4096 * 2) / tr / 1e9);
    be_free(be, r[2]);
    be_free(be, r[3]);
    for (int i = 0; i < 3; i++) be_free(be, g[i]);

    /* NF4 dequant of a 7B MLP weight (11008 x 4096), double quantized */
    const int64_t rows = 11008, cols = 4096, n = rows * cols, nb = n / 64, nb2 = (nb + 255) / 256;
    uint8_t *hp = host_alloc(be, n / 2, "packed weights"), *hq = host_alloc(be, nb, "absmax");
    float *h2 = host_alloc(be, nb2 * 4, "absmax2"), map[256];
    for (int64_t i = 0; hp && i < n / 2; i++) hp[i] = (uint8_t)(i * 2654435761u >> 13);
    for (int64_t i = 0; hq && i < nb; i++) hq[i] = (uint8_t)(i * 40503u >> 7);
    for (int64_t i = 0; h2 && i < nb2; i++) h2[i] = 0.01f;
    for (int i = 0; i < 256; i++) map[i] = -1.0f + 2.0f * i / 255.0f;
    nf4_view q = {.rows = rows, .cols = cols, .n = n, .nblocks = nb, .nblocks2 = nb2, .double_quant = true,
                  .dtype = NF4_OUT_BF16, .offset = 0.02f};
    void *dp = be_alloc(be, n / 2, "p"), *dq = be_alloc(be, nb, "q"), *d2 = be_alloc(be, nb2 * 4, "a2");
    void *dc = be_alloc(be, 64, "code"), *dm = be_alloc(be, 1024, "map"), *dout = be_alloc(be, n * 2, "w");
    if ((rc = be_sync(be))) {
        free(hp), free(hq), free(h2);
        be_free(be, dp), be_free(be, dq), be_free(be, d2), be_free(be, dc), be_free(be, dm), be_free(be, dout);
        be_close(be);
        return rc;
    }
    be_upload(be, dp, hp, n / 2);
    be_upload(be, dq, hq, nb);
    be_upload(be, d2, h2, nb2 * 4);
    be_upload(be, dc, NF4_CODE, 64);
    be_upload(be, dm, map, 1024);
    q.packed = dp, q.absmax_q = dq, q.absmax2 = d2, q.code = dc, q.nested_map = dm;
    void *nx[2] = {dout, &q};
    double tn = bench_median(be, b_nf4, nx, 20);
    printf("nf4_dequant 11008x4096: %.3f ms, %.0f GB/s (packed read + bf16 write)\n", tn * 1e3,
           (n / 2.0 + 2.0 * n) / tn / 1e9);
    free(hp), free(hq), free(h2);
    be_free(be, dp), be_free(be, dq), be_free(be, d2), be_free(be, dc), be_free(be, dm), be_free(be, dout);
    rc = be_sync(be);
    if (!rc) rc = bench_gemvs(be);
    be_close(be);
    return rc;
}
