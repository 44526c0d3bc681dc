/* tests/gpu/test_gpu_ops.c - every CUDA op against its CPU reference: one table of
 * cases {op, shapes, tolerance} gathered from tests/gpu/ops/NAME.c (gpu_ops.h says
 * how each case is checked), and the backend's memory and error handling.
 *
 * Without a GPU (or in a build without CUDA) every test skips with a clear
 * line. $DSFT_GPU_QUICK=1 skips the heavy cases and $DSFT_GPU_OPS=a,b runs only
 * the named ops (both for compute-sanitizer). Kernel timings are a benchmark:
 * `ds-ft bench kernels`.
 */
#include "tests/gpu/gpu_ops.h"

#include "adapters/lora_ops.h"

#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Every family's cases in one table. */
static op_case *all_cases(size_t *n)
{
    static op_case table[512];
    static size_t count;
    if (!count) {
#define GPU_APPEND(F)                                              \
    for (int i = 0; i < GPU_NCASES_##F && count < 512; i++) table[count++] = GPU_CASES_##F[i];
        GPU_OP_FAMILIES(GPU_APPEND)
#undef GPU_APPEND
    }
    *n = count;
    return table;
}

static uint64_t test_seed(void)
{
    const char *e = getenv("DSFT_TEST_SEED");
    if (e && *e) return strtoull(e, NULL, 10);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

/* The runner of a case, looked up in this process: Criterion hands each test
 * process a copy of its case, and a function pointer from the process that
 * made the table is not valid in another (the binary is position-independent).
 * The case is found by its fields, since an op may have several runners
 * (gemm, nf4_gemv); two entries alike in every field must share their runner. */
typedef void (*op_runner)(tctx *t, const op_case *c);
static bool same_case(const op_case *a, const op_case *b)
{
    return a->op == b->op && a->B == b->B && a->T == b->T && a->N == b->N && a->C == b->C && a->V == b->V &&
           a->H == b->H && a->Hkv == b->Hkv && a->D == b->D && a->M == b->M && a->K == b->K && a->flag == b->flag &&
           a->p == b->p && a->tol == b->tol && a->heavy == b->heavy;
}

static op_runner runner_for(const op_case *c)
{
    op_runner found = NULL;
#define GPU_FIND(F)                                                                     \
    for (int i = 0; i < GPU_NCASES_##F; i++)                                           \
        if (same_case(&GPU_CASES_##F[i], c)) {                                         \
            cr_assert(!found || found == GPU_CASES_##F[i].run, "two runners for one case"); \
            found = GPU_CASES_##F[i].run;                                               \
        }
    GPU_OP_FAMILIES(GPU_FIND)
#undef GPU_FIND
    cr_assert(found, "no runner for a case of op %d", (int)c->op);
    return found;
}

ParameterizedTestParameters(gpu_ops, matches_cpu)
{
    size_t n;
    op_case *cases = all_cases(&n);
    /* Without the driver's device node every case would only skip: one says so
     * (each case is a process of its own, and these start slowly). Checked
     * without touching CUDA, which must not start in Criterion's parent. */
    if (access("/dev/nvidiactl", F_OK) != 0) n = 1;
    return cr_make_param_array(op_case, cases, n);
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
    runner_for(c)(&t, c);
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

/* Time by op (bench train --profile): each outermost call is one timed call
 * under its name, a product inside an op counts as the op, the times are
 * positive and finite, and the backend is back to untimed afterwards. */
static const be_profile_row *row_named(const be_profile_row *rows, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].name, name)) return &rows[i];
    return NULL;
}

Test(gpu_backend, time_by_op)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
    backend *be;
    cr_assert_eq(be_open(BE_CUDA, &be), DS_OK, "be_open(cuda): %s", ds_errmsg());
    enum { M = 256, N = 512, K = 1024 };
    void *x = be_alloc(be, 2 * M * K, "x"), *w = be_alloc(be, 2 * N * K, "w"), *y = be_alloc(be, 2 * M * N, "y");
    void *g = be_alloc(be, 2 * K, "norm weight"), *r = be_alloc(be, 4 * M, "rstd");
    be_zero(be, x, 2 * M * K), be_zero(be, w, 2 * N * K), be_zero(be, g, 2 * K);
    cr_assert_eq(be_profile_begin(be), DS_OK, "%s", ds_errmsg());
    for (int i = 0; i < 3; i++) op_rmsnorm_fwd(be, x, r, x, g, M, K, 1e-6f);
    be_matmul_nt(be, y, x, w, M, N, K, 0.0f);
    be_zero(be, y, 2 * M * N);
    be_profile_row *rows = NULL;
    int n = 0;
    cr_assert_eq(be_profile_end(be, &rows, &n), DS_OK, "%s", ds_errmsg());
    cr_assert_null(be->profile);
    const be_profile_row *norm = row_named(rows, n, "op_rmsnorm_fwd"), *gemm = row_named(rows, n, "be_gemm"),
                         *zero = row_named(rows, n, "be_zero");
    cr_assert(norm && gemm && zero, "rows: %d", n);
    cr_assert_eq(norm->calls, 3);
    cr_assert_eq(gemm->calls, 1);
    cr_assert_eq(zero->calls, 1);
    cr_assert_eq(n, 3, "only the calls made while timing");
    for (int i = 0; i < n; i++) cr_assert(rows[i].ms > 0 && rows[i].ms < 1e4, "%s: %g ms", rows[i].name, rows[i].ms);
    for (int i = 1; i < n; i++) cr_assert_geq(rows[i - 1].ms, rows[i].ms, "longest first");
    free(rows);
    /* the LoRA forward (made of products and conversions) is one row: what it calls counts as it */
    float *a = be_alloc(be, 4 * 16 * K, "lora A"), *b = be_alloc(be, 4 * N * 16, "lora B");
    float *u = be_alloc(be, 4 * M * 16, "lora u");
    be_zero(be, a, 4 * 16 * K), be_zero(be, b, 4 * N * 16);
    const lora_view l = {.r = 16, .in = K, .out = N, .scale = 1.0f, .A = a, .B = b};
    const lora_ctx ctx = {.seed = 1};
    op_lora_fwd(be, y, u, x, &l, M, &ctx);   /* once untimed: its workspace is made */
    cr_assert_eq(be_profile_begin(be), DS_OK);
    op_lora_fwd(be, y, u, x, &l, M, &ctx);
    cr_assert_eq(be_profile_end(be, &rows, &n), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(n, 1, "one row, the op's");
    cr_assert_str_eq(rows[0].name, "op_lora_fwd");
    free(rows);
    cr_assert_eq(be_sync(be), DS_OK, "%s", ds_errmsg());
    be_free(be, x), be_free(be, w), be_free(be, y), be_free(be, g), be_free(be, r);
    be_free(be, a), be_free(be, b), be_free(be, u);
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

