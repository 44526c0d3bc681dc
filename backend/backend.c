/* backend/backend.c - backend dispatch and the CPU backend.
 *
 * Every function checks the kind once and hands CUDA work to backend_cuda.cu;
 * the CPU versions below are the plain-C reference. */
#include "backend.h"
#include "backend_internal.h"

#include "core/mem.h"
#include "core/numeric.h"
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    be_workspaces ws;   /* first member, as in the CUDA state */
} cpu_state;

bool be_cuda_compiled(void)
{
#ifdef DS_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

int be_cuda_device_count(void)
{
#ifdef DS_HAVE_CUDA
    return cuda_device_count();
#else
    return 0;
#endif
}

int be_cuda_devices(be_gpu *gpus, int max, int *driver_version, int *runtime_version)
{
    *driver_version = *runtime_version = 0;
#ifdef DS_HAVE_CUDA
    return cuda_devices(gpus, max, driver_version, runtime_version);
#else
    (void)gpus;
    (void)max;
    return 0;
#endif
}

int be_fail(backend *be, int code, const char *fmt, ...)
{
    if (be->err) return code;
    be->err = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->errmsg, sizeof be->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

int be_open(be_kind kind, backend **out)
{
    *out = NULL;
    backend *be = ds_calloc(1, sizeof *be, "a backend");
    if (!be) return DS_ENOMEM;
    be->kind = kind;
    be->act_size = kind == BE_CUDA ? 2 : 4;
    if (kind == BE_CUDA) {
#ifdef DS_HAVE_CUDA
        int rc = cuda_open(be);
        if (rc) {
            free(be);
            return rc;
        }
#else
        free(be);
        return ds_fail(DS_EUSAGE, "device: cuda was asked for, but this ds-ft was built without CUDA "
                                  "(rebuild with nvcc on the PATH, or use device: cpu)");
#endif
    } else {
        if (!(be->impl = ds_calloc(1, sizeof(cpu_state), "the CPU backend"))) {
            free(be);
            return DS_ENOMEM;
        }
#ifdef _OPENMP
        /* One thread unless OMP_NUM_THREADS asks for more: idle OpenMP
         * threads spin, and where the cores are busy with other work that
         * makes a run many times slower than a single thread. */
        if (!getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
#endif
        const char *emu = getenv("DSFT_CPU_BF16");
        be->round_bf16 = emu && *emu && strcmp(emu, "0");
    }
    *out = be;
    return DS_OK;
}

int be_open_auto(backend **out)
{
    return be_open(be_cuda_device_count() > 0 ? BE_CUDA : BE_CPU, out);
}

int be_kind_parse(const char *name, be_kind *out)
{
    if (!name || !strcmp(name, "auto")) *out = BE_AUTO;
    else if (!strcmp(name, "cpu")) *out = BE_CPU;
    else if (!strcmp(name, "cuda")) *out = BE_CUDA;
    else return ds_fail(DS_EUSAGE, "unknown device '%s' (auto, cpu or cuda)", name);
    return DS_OK;
}

int be_open_named(const char *name, backend **out)
{
    be_kind k;
    *out = NULL;
    int rc = be_kind_parse(name, &k);
    if (rc) return rc;
    return k == BE_AUTO ? be_open_auto(out) : be_open(k, out);
}

void be_close(backend *be)
{
    if (!be) return;
    be_profile_drop(be);
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) {
        cuda_close(be);
        free(be);
        return;
    }
#endif
    cpu_state *s = be->impl;
    for (int i = 0; i < WS_NSLOTS; i++) free(s->ws.ws[i]);
    free(s);
    free(be);
}

const char *be_name(const backend *be) { return be->kind == BE_CUDA ? "cuda" : "cpu"; }

const char *be_device_name(const backend *be)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) return cuda_device_name((backend *)be);
#endif
    (void)be;
    return "CPU";
}

int be_sync(backend *be)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA && !be->err) cuda_sync(be);
#endif
    if (be->err) return ds_fail(be->err, "%s", be->errmsg);
    return DS_OK;
}

/* ------------------------------------------------------------------ memory */

void *be_alloc(backend *be, size_t bytes, const char *what)
{
    if (bytes == 0) bytes = 1;
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) return cuda_alloc(be, bytes, what);
#endif
    void *p = NULL;
    if (posix_memalign(&p, 256, bytes) != 0) {
        be_fail(be, DS_ETRAIN, "out of memory: %zu bytes for %s", bytes, what);
        return NULL;
    }
    be->bytes_in_use += bytes;
    if (be->bytes_in_use > be->peak_bytes) be->peak_bytes = be->bytes_in_use;
    return p;
}

void be_free(backend *be, void *p)
{
    if (!p) return;
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) {
        cuda_free(be, p);
        return;
    }
#endif
    free(p);   /* CPU: bytes_in_use is not decremented (sizes are not tracked) */
}

void be_upload(backend *be, void *dst, const void *src, size_t bytes)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) { cuda_upload(be, dst, src, bytes); return; }
#endif
    memcpy(dst, src, bytes);
}

void be_download(backend *be, void *dst, const void *src, size_t bytes)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) { cuda_download(be, dst, src, bytes); return; }
#endif
    memcpy(dst, src, bytes);
}

void be_copy(backend *be, void *dst, const void *src, size_t bytes)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) { BE_PROFILED(be, "be_copy", cuda_copy(be, dst, src, bytes)); return; }
#endif
    memmove(dst, src, bytes);
}

void be_zero(backend *be, void *p, size_t bytes)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) { BE_PROFILED(be, "be_zero", cuda_zero(be, p, bytes)); return; }
#endif
    memset(p, 0, bytes);
}

void be_mem_info(backend *be, size_t *free_bytes, size_t *total_bytes)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) { cuda_mem_info(be, free_bytes, total_bytes); return; }
#endif
    *free_bytes = *total_bytes = 0;
}

size_t be_peak_bytes(const backend *be) { return be->peak_bytes; }

/* ------------------------------------------------- transfers beside the work */

void *be_host_alloc(backend *be, size_t bytes, const char *what)
{
    if (bytes == 0) bytes = 1;
    void *p = NULL;
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) p = cuda_host_alloc(be, bytes, what);
    else
#endif
    if (posix_memalign(&p, 256, bytes) != 0) {
        p = NULL;
        be_fail(be, DS_ENOMEM, "out of host memory: %zu bytes for %s", bytes, what);
    }
    if (p) be->host_bytes += bytes;
    return p;
}

void be_host_free(backend *be, void *p)
{
    if (!p) return;
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) {
        cuda_host_free(be, p);
        return;
    }
#endif
    free(p);
}

int be_transfer(backend *be, void *dst, const void *src, size_t bytes, bool to_host)
{
    int ticket = be->transfers++;
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) {
        cuda_transfer(be, dst, src, bytes, to_host, ticket);
        return ticket;
    }
#endif
    (void)to_host;
    memcpy(dst, src, bytes);
    return ticket;
}

void be_wait_transfer(backend *be, int ticket)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) cuda_wait_transfer(be, ticket);
#endif
    (void)be, (void)ticket;
}

/* ------------------------------------------------------- recorded work */

int be_reserve_streams(backend *be, int n)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA && !be->err) return cuda_reserve_streams(be, n);
#endif
    (void)n;
    return 0;
}

size_t be_stream_bytes(const backend *be) { return be->kind == BE_CUDA ? CUDA_LT_WORKSPACE : 0; }

void be_fork(backend *be, int n)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA && !be->err) cuda_fork(be, n);
#endif
    (void)n;
}

void be_use_stream(backend *be, int i)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) cuda_use_stream(be, i);
#endif
    (void)i;
}

void be_join(backend *be)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) cuda_join(be);
#endif
    (void)be;
}

bool be_can_record(const backend *be) { return be->kind == BE_CUDA; }

int be_record_begin(backend *be)
{
    if (be->profile) return ds_fail(DS_EINTERNAL, "recording work while timing by op (be_profile_begin)");
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) {
        int rc = cuda_record_begin(be);
        be->recording = !rc;
        return rc;
    }
#endif
    return ds_fail(DS_EINTERNAL, "the %s backend does not record work", be_name(be));
}

int be_record_end(backend *be, be_recording **out)
{
    *out = NULL;
    be->recording = false;
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) return cuda_record_end(be, out);
#endif
    return ds_fail(DS_EINTERNAL, "the %s backend does not record work", be_name(be));
}

void be_replay(backend *be, be_recording *r)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) { cuda_replay(be, r); return; }
#endif
    (void)r;
    be_fail(be, DS_EINTERNAL, "the %s backend does not record work", be_name(be));
}

void be_recording_free(be_recording *r)
{
#ifdef DS_HAVE_CUDA
    if (r) cuda_recording_free(r);
#endif
    (void)r;
}

void *be_workspace(backend *be, be_ws_slot slot, size_t bytes)
{
    be_workspaces *w = be->impl;   /* the first member of either backend's state */
    if (bytes > w->ws_size[slot]) {
        be_free(be, w->ws[slot]);
        w->ws[slot] = be_alloc(be, bytes, "workspace");
        w->ws_size[slot] = w->ws[slot] ? bytes : 0;
    }
    return w->ws[slot];
}

void be_reserve(backend *be, be_ws_slot slot, size_t bytes) { (void)be_workspace(be, slot, bytes); }

void be_round_act(const backend *be, void *p, size_t n)
{
    if (be->kind != BE_CPU || !be->round_bf16) return;
    float *x = p;
    for (size_t i = 0; i < n; i++) x[i] = ds_round_bf16(x[i]);
}

/* -------------------------------------------------------------- conversions */

void be_f32_to_act(backend *be, void *dst, const float *src, size_t n)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) { BE_PROFILED(be, "be_f32_to_act", cuda_f32_to_act(be, dst, src, n)); return; }
#endif
    memmove(dst, src, n * sizeof(float));
    be_round_act(be, dst, n);
}

void be_act_to_f32(backend *be, float *dst, const void *src, size_t n)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) { BE_PROFILED(be, "be_act_to_f32", cuda_act_to_f32(be, dst, src, n)); return; }
#endif
    memmove(dst, src, n * sizeof(float));
}

void be_add_f32_to_act(backend *be, void *y, const float *x, size_t n)
{
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) { BE_PROFILED(be, "be_add_f32_to_act", cuda_add_f32_to_act(be, y, x, n)); return; }
#endif
    float *yy = y;
    for (size_t i = 0; i < n; i++) yy[i] += x[i];
    be_round_act(be, y, n);
}

void be_upload_f32_as_act(backend *be, void *dst, const float *host, size_t n)
{
    if (be->kind == BE_CPU) {
        memcpy(dst, host, n * sizeof(float));
        be_round_act(be, dst, n);
        return;
    }
    float *tmp = be_workspace(be, WS_MISC, n * sizeof(float));
    if (!tmp) return;
    be_upload(be, tmp, host, n * sizeof(float));
    be_f32_to_act(be, dst, tmp, n);
}

void be_download_act_as_f32(backend *be, float *host, const void *src, size_t n)
{
    if (be->kind == BE_CPU) {
        memcpy(host, src, n * sizeof(float));
        return;
    }
    float *tmp = be_workspace(be, WS_MISC, n * sizeof(float));
    if (!tmp) return;
    be_act_to_f32(be, tmp, src, n);
    be_download(be, host, tmp, n * sizeof(float));
}

/* ------------------------------------------------------------------- GEMM */

/* CPU reference. A transposed operand is first copied into row-major
 * order (into the WS_GEMM workspace, used by nothing else), so that every
 * output row is a sum of scaled rows of B (acc += a_ik * B[k, :]), a loop
 * the compiler vectorises; each row accumulates in fp32 in a fixed order,
 * whatever the number of threads. */
static const float *row_major(const float *X, int rows, int cols, int ld, bool trans, float *T)
{
    /* X as stored is (cols, rows) when trans; return it as (rows, cols) with ld = cols. */
    if (!trans) return X;
    for (int c = 0; c < cols; c++)
        for (int r = 0; r < rows; r++) T[(size_t)r * cols + c] = X[(size_t)c * ld + r];
    return T;
}

/* A few rows against a transposed B (decoding: x · Wᵀ for one token per
 * sequence): each output is a dot product with a row of B as stored, so B is
 * not copied; the operations per output are cpu_gemm's, in its order. */
static void cpu_gemm_rows_nt(const be_gemm_args *g)
{
    const float *A = g->A, *B = g->B;
    float *C = g->C;
#pragma omp parallel for schedule(static) if ((long)g->M * g->N * g->K > DS_OMP_MIN_WORK)
    for (int j = 0; j < g->N; j++) {
        const float *b = B + (size_t)j * g->ldb;
        for (int i = 0; i < g->M; i++) {
            const float *a = A + (size_t)i * g->lda;
            float acc = 0;
            for (int k = 0; k < g->K; k++)
                if (a[k] != 0) acc += a[k] * b[k];
            float *c = C + (size_t)i * g->ldc + j;
            *c = g->alpha * acc + (g->beta != 0 ? g->beta * *c : 0.0f);
        }
    }
}

static void cpu_gemm(backend *be, const be_gemm_args *g)
{
    if (g->trans_b && !g->trans_a && g->M <= 8) {
        cpu_gemm_rows_nt(g);
        return;
    }
    size_t na = g->trans_a ? (size_t)g->M * g->K : 0, nb = g->trans_b ? (size_t)g->K * g->N : 0;
    float *ws = na + nb ? be_workspace(be, WS_GEMM, (na + nb) * sizeof(float)) : NULL;
    if (na + nb && !ws) return;
    const float *A = row_major(g->A, g->M, g->K, g->lda, g->trans_a, ws);        /* (M, K) */
    const float *B = row_major(g->B, g->K, g->N, g->ldb, g->trans_b, ws + na);   /* (K, N) */
    const int lda = g->trans_a ? g->K : g->lda, ldb = g->trans_b ? g->N : g->ldb;
    float *C = g->C;
    bool oom = false;
#pragma omp parallel if ((long)g->M * g->N * g->K > DS_OMP_MIN_WORK)
    {
        float *acc = ds_calloc((size_t)g->N, sizeof(float), "a GEMM row");   /* one per thread */
        if (!acc) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for schedule(static)
        for (int i = 0; i < g->M; i++) {
            if (!acc) continue;
            memset(acc, 0, sizeof(float) * (size_t)g->N);
            for (int k = 0; k < g->K; k++) {
                const float a = A[(size_t)i * lda + k], *b = B + (size_t)k * ldb;
                if (a == 0) continue;
                for (int j = 0; j < g->N; j++) acc[j] += a * b[j];
            }
            float *c = C + (size_t)i * g->ldc;
            for (int j = 0; j < g->N; j++) c[j] = g->alpha * acc[j] + (g->beta != 0 ? g->beta * c[j] : 0.0f);
        }
        free(acc);
    }
    if (oom) be_fail(be, DS_ENOMEM, "out of memory allocating %zu bytes for a GEMM row", sizeof(float) * (size_t)g->N);
}

void be_gemm(backend *be, const be_gemm_args *g)
{
    if (be->err || g->M == 0 || g->N == 0) return;
#ifdef DS_HAVE_CUDA
    if (be->kind == BE_CUDA) { BE_PROFILED(be, "be_gemm", cuda_gemm(be, g)); return; }
#endif
    cpu_gemm(be, g);
    if (!g->c_f32 && !g->all_f32)
        for (int i = 0; i < g->M; i++) be_round_act(be, (float *)g->C + (size_t)i * g->ldc, (size_t)g->N);
}

void be_matmul_nt(backend *be, void *y, const void *x, const void *w, int M, int N, int K, float beta)
{
    be_gemm_args g = {.M = M, .N = N, .K = K, .A = x, .lda = K, .B = w, .ldb = K, .trans_b = true,
                      .C = y, .ldc = N, .alpha = 1.0f, .beta = beta};
    be_gemm(be, &g);
}

void be_matmul_nn(backend *be, void *dx, const void *dy, const void *w, int M, int N, int K, float beta)
{
    /* dx (M, K) = dy (M, N) · w (N, K) */
    be_gemm_args g = {.M = M, .N = K, .K = N, .A = dy, .lda = N, .B = w, .ldb = K,
                      .C = dx, .ldc = K, .alpha = 1.0f, .beta = beta};
    be_gemm(be, &g);
}
