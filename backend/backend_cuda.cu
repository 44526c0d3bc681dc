/* backend/backend_cuda.cu - the CUDA half of the backend (see backend_internal.h).
 *
 * One device, one stream per backend: every op is queued on that stream, so
 * the engine's sequence of ops runs in order and be_sync() only waits once per
 * step (side streams, between be_fork and be_join, let small products run
 * side by side). Allocation goes straight to cudaMalloc (the engine allocates
 * arenas once) and is tracked so that bytes_in_use and peak_bytes are exact.
 * Any CUDA failure is recorded with be_fail(be, DS_ETRAIN, "device error: ...")
 * and returned by the next be_sync(); out of memory says "out of memory: ...".
 * Matrix products: cuda_gemm.cu.
 */
#include "cuda_state.h"

#include "core/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Helpers for the op files (their .cu files declare these): the backend's
 * stream, and a check of the last launch. */
extern "C" cudaStream_t cuda_stream(backend *be) { return st(be)->stream; }
extern "C" int cuda_sm_count(backend *be) { return st(be)->sm_count; }
extern "C" bool cuda_pdl(backend *be) { return st(be)->pdl; }
extern "C" bool cuda_check_launch(backend *be, const char *what) { return ok(be, cudaGetLastError(), what); }

/* ------------------------------------------------------------------ device */

extern "C" int cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int cuda_devices(be_gpu *gpus, int max, int *driver_version, int *runtime_version)
{
    if (cudaDriverGetVersion(driver_version) != cudaSuccess) *driver_version = 0;
    if (cudaRuntimeGetVersion(runtime_version) != cudaSuccess) *runtime_version = 0;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (n > max) n = max;
    for (int i = 0; i < n; i++) {
        be_gpu *g = &gpus[i];
        memset(g, 0, sizeof *g);
        cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
            (void)cudaGetLastError();
            snprintf(g->name, sizeof g->name, "(device %d: properties unreadable)", i);
            continue;
        }
        snprintf(g->name, sizeof g->name, "%s", prop.name);
        g->major = prop.major;
        g->minor = prop.minor;
        g->total_bytes = prop.totalGlobalMem;
        g->sm_count = prop.multiProcessorCount;
        size_t free_b = 0, total_b = 0;
        if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) g->free_bytes = free_b;
        else (void)cudaGetLastError();
    }
    return n;
}

extern "C" int cuda_open(backend *be)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        return ds_fail(DS_EUSAGE, "device: cuda was asked for, but no CUDA device is usable (%s); use device: cpu",
                       e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
    }
    cuda_state *s = (cuda_state *)ds_calloc(1, sizeof *s, "the CUDA backend");
    if (!s) return DS_ENOMEM;
    be->impl = s;
    s->device = 0;
    cudaDeviceProp prop;
    if (!ok(be, cudaSetDevice(s->device), "cudaSetDevice") ||
        !ok(be, cudaGetDeviceProperties(&prop, s->device), "cudaGetDeviceProperties") ||
        !ok(be, cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate") ||
        !lt_ok(be, cublasLtCreate(&s->lt), "cublasLtCreate")) {
        int rc = ds_fail(DS_ETRAIN, "opening the CUDA device: %s", be->errmsg);
        if (s->stream) cudaStreamDestroy(s->stream);
        free(s);
        be->impl = NULL;
        return rc;
    }
    snprintf(s->name, sizeof s->name, "%s", prop.name);
    s->sm_count = prop.multiProcessorCount;
    /* Only on sm_90, the one architecture of 9.x or later we ship code for: a later GPU runs the compute_89 PTX,
     * whose kernels have no griddepcontrol.wait (kernel.h), so a dependent launch there could read its input
     * before the kernel writing it is done. DSFT_PDL=0: every launch waits for the one before (to compare). */
    const char *pdl = getenv("DSFT_PDL");
    s->pdl = prop.major == 9 && !(pdl && !strcmp(pdl, "0"));
    s->lt_ws = s->cur_ws = cuda_alloc(be, LT_WORKSPACE, "cuBLASLt workspace");
    s->home = s->stream;
    if (!s->lt_ws) {
        int rc = ds_fail(DS_ETRAIN, "opening the CUDA device: %s", be->errmsg);
        cublasLtDestroy(s->lt);
        cudaStreamDestroy(s->stream);
        free(s->allocs);
        free(s);
        be->impl = NULL;
        return rc;
    }
    return DS_OK;
}

extern "C" void cuda_close(backend *be)
{
    cuda_state *s = st(be);
    if (!s) return;
    cudaStreamSynchronize(s->stream);
    cuda_gemm_plans_free(be);
    for (int i = 0; i < WS_NSLOTS; i++) cuda_free(be, s->ws.ws[i]);
    cuda_free(be, s->lt_ws);
    for (int i = 0; i < s->n_side; i++) {
        cudaStreamSynchronize(s->side[i]);
        cuda_free(be, s->side_ws[i]);
        cudaEventDestroy(s->join_ev[i]);
        cudaStreamDestroy(s->side[i]);
    }
    if (s->fork_ev) cudaEventDestroy(s->fork_ev);
    if (s->xfer) {
        cudaStreamSynchronize(s->xfer);
        cudaStreamDestroy(s->xfer);
    }
    for (int i = 0; i < BE_TRANSFER_TICKETS; i++)   /* made before the stream, so also after its failure */
        if (s->xfer_done[i]) cudaEventDestroy(s->xfer_done[i]);
    if (s->xfer_after) cudaEventDestroy(s->xfer_after);
    cublasLtDestroy(s->lt);
    cudaStreamDestroy(s->home);
    free(s->allocs);
    free(s);
    be->impl = NULL;
}

extern "C" const char *cuda_device_name(backend *be) { return st(be)->name; }

extern "C" int cuda_sync(backend *be)
{
    if (st(be)->xfer) ok(be, cudaStreamSynchronize(st(be)->xfer), "synchronize the transfers");
    ok(be, cudaStreamSynchronize(st(be)->stream), "synchronize");
    ok(be, cudaGetLastError(), "after synchronize");
    return be->err;
}

/* ------------------------------------------------------------------ memory */

extern "C" void *cuda_alloc(backend *be, size_t bytes, const char *what)
{
    cuda_state *s = st(be);
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);   /* 256-byte aligned */
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        if (e == cudaErrorMemoryAllocation)
            be_fail(be, DS_ETRAIN, "out of memory: %zu bytes for %s (%.2f GiB free of %.2f GiB, %.2f GiB held by ds-ft)",
                    bytes, what, fr / 1073741824.0, tot / 1073741824.0, be->bytes_in_use / 1073741824.0);
        else
            be_fail(be, DS_ETRAIN, "device error: allocating %zu bytes for %s: %s", bytes, what, cudaGetErrorString(e));
        return NULL;
    }
    if (ds_grow(&s->allocs, &s->cap_allocs, s->nallocs + 1, sizeof *s->allocs)) {   /* cannot track it: give it back */
        cudaFree(p);
        be_fail(be, DS_ENOMEM, "%s", ds_errmsg());
        return NULL;
    }
    s->allocs[s->nallocs++] = (alloc_rec){p, bytes};
    be->bytes_in_use += bytes;
    if (be->bytes_in_use > be->peak_bytes) be->peak_bytes = be->bytes_in_use;
    return p;
}

extern "C" void cuda_free(backend *be, void *p)
{
    if (!p) return;
    cuda_state *s = st(be);
    for (size_t i = 0; i < s->nallocs; i++) {
        if (s->allocs[i].p != p) continue;
        be->bytes_in_use -= s->allocs[i].bytes;
        s->allocs[i] = s->allocs[--s->nallocs];
        break;
    }
    ok(be, cudaFree(p), "cudaFree");
}

/* Uploads wait for the copy, so the caller may reuse its host buffer at once. */
extern "C" void cuda_upload(backend *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    if (ok(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st(be)->stream), "upload"))
        ok(be, cudaStreamSynchronize(st(be)->stream), "upload");
}

extern "C" void cuda_download(backend *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    if (ok(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st(be)->stream), "download"))
        ok(be, cudaStreamSynchronize(st(be)->stream), "download");
}

extern "C" void cuda_copy(backend *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    ok(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st(be)->stream), "device copy");
}

extern "C" void cuda_zero(backend *be, void *p, size_t bytes)
{
    if (!bytes) return;
    ok(be, cudaMemsetAsync(p, 0, bytes, st(be)->stream), "memset");
}

/* ------------------------------------------------- events for profile.c */

extern "C" void *cuda_event_mark(backend *be)
{
    cudaEvent_t e = NULL;
    if (!ok(be, cudaEventCreate(&e), "profile event")) return NULL;
    if (!ok(be, cudaEventRecord(e, st(be)->stream), "profile event")) {
        cudaEventDestroy(e);
        return NULL;
    }
    return e;
}

extern "C" double cuda_event_ms(void *a, void *b)
{
    float ms = 0.0f;
    return cudaEventElapsedTime(&ms, (cudaEvent_t)a, (cudaEvent_t)b) == cudaSuccess ? ms : 0.0;
}

extern "C" void cuda_event_free(void *e)
{
    if (e) cudaEventDestroy((cudaEvent_t)e);
}

/* ------------------------------------------------- transfers beside the work */

extern "C" void *cuda_host_alloc(backend *be, size_t bytes, const char *what)
{
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
    if (e == cudaSuccess) return p;
    (void)cudaGetLastError();
    be_fail(be, DS_ENOMEM, "out of host memory: %zu bytes of page-locked memory for %s: %s", bytes, what,
            cudaGetErrorString(e));
    return NULL;
}

extern "C" void cuda_host_free(backend *be, void *p)
{
    (void)be;
    cudaFreeHost(p);
}

/* The transfer stream and its events, made on the first transfer. */
static bool transfer_stream(backend *be)
{
    cuda_state *s = st(be);
    if (s->xfer) return true;
    if (!s->xfer_after && !ok(be, cudaEventCreateWithFlags(&s->xfer_after, cudaEventDisableTiming), "transfer event"))
        return false;
    for (int i = 0; i < BE_TRANSFER_TICKETS; i++)
        if (!s->xfer_done[i] &&
            !ok(be, cudaEventCreateWithFlags(&s->xfer_done[i], cudaEventDisableTiming), "transfer event"))
            return false;
    return ok(be, cudaStreamCreateWithFlags(&s->xfer, cudaStreamNonBlocking), "transfer stream");
}

extern "C" void cuda_transfer(backend *be, void *dst, const void *src, size_t bytes, bool to_host, int ticket)
{
    cuda_state *s = st(be);
    if (be->err || !transfer_stream(be)) return;
    if (ok(be, cudaEventRecord(s->xfer_after, s->stream), "transfer") &&
        ok(be, cudaStreamWaitEvent(s->xfer, s->xfer_after, 0), "transfer") &&
        ok(be, cudaMemcpyAsync(dst, src, bytes, to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice, s->xfer),
           to_host ? "copy to host memory" : "copy from host memory"))
        ok(be, cudaEventRecord(s->xfer_done[ticket % BE_TRANSFER_TICKETS], s->xfer), "transfer");
}

extern "C" void cuda_wait_transfer(backend *be, int ticket)
{
    cuda_state *s = st(be);
    if (be->err || !s->xfer) return;
    ok(be, cudaStreamWaitEvent(s->stream, s->xfer_done[ticket % BE_TRANSFER_TICKETS], 0), "wait for a transfer");
}

extern "C" void cuda_mem_info(backend *be, size_t *free_bytes, size_t *total_bytes)
{
    *free_bytes = *total_bytes = 0;
    ok(be, cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo");
}

/* ------------------------------------------------------------- conversions */

/* dst[i] = bf16(src[i]) (round to nearest even), four per thread when aligned.
 * Grid-stride loop over n/4 groups; the scalar tail is done by the first threads. */
__global__ void f32_to_bf16_kernel(bf16 *dst, const float *src, size_t n, bool vec)
{
    size_t stride = (size_t)gridDim.x * blockDim.x, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t nv = vec ? n / 4 : 0;
    for (size_t i = t; i < nv; i += stride) {
        float4 f = ((const float4 *)src)[i];
        __nv_bfloat162 lo = __floats2bfloat162_rn(f.x, f.y), hi = __floats2bfloat162_rn(f.z, f.w);
        uint2 u = make_uint2(*(unsigned *)&lo, *(unsigned *)&hi);
        ((uint2 *)dst)[i] = u;
    }
    for (size_t i = nv * 4 + t; i < n; i += stride) dst[i] = __float2bfloat16_rn(src[i]);
}

/* dst[i] = float(src[i]), four per thread when aligned. */
__global__ void bf16_to_f32_kernel(float *dst, const bf16 *src, size_t n, bool vec)
{
    size_t stride = (size_t)gridDim.x * blockDim.x, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t nv = vec ? n / 4 : 0;
    for (size_t i = t; i < nv; i += stride) {
        uint2 u = ((const uint2 *)src)[i];
        __nv_bfloat162 lo = *(__nv_bfloat162 *)&u.x, hi = *(__nv_bfloat162 *)&u.y;
        ((float4 *)dst)[i] = make_float4(__low2float(lo), __high2float(lo), __low2float(hi), __high2float(hi));
    }
    for (size_t i = nv * 4 + t; i < n; i += stride) dst[i] = __bfloat162float(src[i]);
}

/* y[i] = bf16(float(y[i]) + x[i]): an fp32 result added into a bf16 buffer,
 * rounded once. Four per thread when aligned. */
__global__ void add_f32_to_bf16_kernel(bf16 *y, const float *x, size_t n, bool vec)
{
    size_t stride = (size_t)gridDim.x * blockDim.x, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t nv = vec ? n / 4 : 0;
    for (size_t i = t; i < nv; i += stride) {
        float4 f = ((const float4 *)x)[i];
        uint2 u = ((uint2 *)y)[i];
        __nv_bfloat162 lo = *(__nv_bfloat162 *)&u.x, hi = *(__nv_bfloat162 *)&u.y;
        lo = __floats2bfloat162_rn(__low2float(lo) + f.x, __high2float(lo) + f.y);
        hi = __floats2bfloat162_rn(__low2float(hi) + f.z, __high2float(hi) + f.w);
        ((uint2 *)y)[i] = make_uint2(*(unsigned *)&lo, *(unsigned *)&hi);
    }
    for (size_t i = nv * 4 + t; i < n; i += stride) y[i] = __float2bfloat16_rn(__bfloat162float(y[i]) + x[i]);
}

/* Enough 256-thread blocks to cover n/4 groups, capped at a few waves (grid-stride beyond). */
static unsigned conv_blocks(backend *be, size_t n)
{
    size_t want = (n / 4 + 255) / 256 + 1, cap = (size_t)st(be)->sm_count * 16;
    return (unsigned)(want < cap ? want : cap);
}

extern "C" void cuda_f32_to_act(backend *be, void *dst, const float *src, size_t n)
{
    if (!n || be->err) return;
    bool vec = ((uintptr_t)dst % 8 == 0) && ((uintptr_t)src % 16 == 0);
    f32_to_bf16_kernel<<<conv_blocks(be, n), 256, 0, st(be)->stream>>>((bf16 *)dst, src, n, vec);
    cuda_check_launch(be, "f32_to_bf16");
}

extern "C" void cuda_add_f32_to_act(backend *be, void *y, const float *x, size_t n)
{
    if (!n || be->err) return;
    bool vec = ((uintptr_t)y % 8 == 0) && ((uintptr_t)x % 16 == 0);
    add_f32_to_bf16_kernel<<<conv_blocks(be, n), 256, 0, st(be)->stream>>>((bf16 *)y, x, n, vec);
    cuda_check_launch(be, "add_f32_to_bf16");
}

extern "C" void cuda_act_to_f32(backend *be, float *dst, const void *src, size_t n)
{
    if (!n || be->err) return;
    bool vec = ((uintptr_t)dst % 16 == 0) && ((uintptr_t)src % 8 == 0);
    bf16_to_f32_kernel<<<conv_blocks(be, n), 256, 0, st(be)->stream>>>(dst, (const bf16 *)src, n, vec);
    cuda_check_launch(be, "bf16_to_f32");
}

/* ------------------------------------------------------------ side streams */

extern "C" int cuda_reserve_streams(backend *be, int n)
{
    cuda_state *s = st(be);
    if (n > BE_MAX_STREAMS) n = BE_MAX_STREAMS;
    if (!s->fork_ev && n > 0 && !ok(be, cudaEventCreateWithFlags(&s->fork_ev, cudaEventDisableTiming), "event"))
        return 0;
    while (s->n_side < n) {
        const int i = s->n_side;
        void *ws = cuda_alloc(be, LT_WORKSPACE, "cuBLASLt workspace of a side stream");
        if (!ws) break;
        if (!ok(be, cudaStreamCreateWithFlags(&s->side[i], cudaStreamNonBlocking), "cudaStreamCreate")) {
            cuda_free(be, ws);
            break;
        }
        if (!ok(be, cudaEventCreateWithFlags(&s->join_ev[i], cudaEventDisableTiming), "event")) {
            cudaStreamDestroy(s->side[i]);
            cuda_free(be, ws);
            break;
        }
        s->side_ws[i] = ws;
        s->n_side++;
    }
    return s->n_side;
}

extern "C" void cuda_fork(backend *be, int n)
{
    cuda_state *s = st(be);
    if (s->forked) cuda_join(be);
    if (n > s->n_side) n = s->n_side;
    if (n < 2 || !ok(be, cudaEventRecord(s->fork_ev, s->home), "fork")) return;
    for (int i = 0; i < n; i++)
        if (!ok(be, cudaStreamWaitEvent(s->side[i], s->fork_ev, 0), "fork")) return;
    s->forked = n;
}

extern "C" void cuda_use_stream(backend *be, int i)
{
    cuda_state *s = st(be);
    if (!s->forked) return;
    s->stream = s->side[i % s->forked];
    s->cur_ws = s->side_ws[i % s->forked];
}

extern "C" void cuda_join(backend *be)
{
    cuda_state *s = st(be);
    for (int i = 0; i < s->forked; i++)
        if (ok(be, cudaEventRecord(s->join_ev[i], s->side[i]), "join")) ok(be, cudaStreamWaitEvent(s->home, s->join_ev[i], 0), "join");
    s->forked = 0;
    s->stream = s->home;
    s->cur_ws = s->lt_ws;
}

/* ---------------------------------------------------------- recorded work */

/* A recording is an instantiated CUDA graph of the stream's captured work. */
struct be_recording {
    cudaGraphExec_t exec;
};

extern "C" int cuda_record_begin(backend *be)
{
    if (be->err) return be_sync(be);   /* an earlier failure: reported, nothing recorded */
    /* thread-local: other threads' CUDA calls are not drawn into the capture */
    if (!ok(be, cudaStreamBeginCapture(st(be)->stream, cudaStreamCaptureModeThreadLocal), "begin recording"))
        return be_sync(be);   /* with be->err set, be_sync only reports */
    return DS_OK;
}

extern "C" int cuda_record_end(backend *be, be_recording **out)
{
    *out = NULL;
    cudaGraph_t graph = NULL;
    /* always ended, even after a failed op, so the stream leaves capture mode */
    cudaError_t e = cudaStreamEndCapture(st(be)->stream, &graph);
    if (!be->err) ok(be, e, "end recording");
    be_recording *r = NULL;
    if (!be->err) {
        r = (be_recording *)ds_calloc(1, sizeof *r, "a recording");
        if (!r) be_fail(be, DS_ENOMEM, "%s", ds_errmsg());
        else if (!ok(be, cudaGraphInstantiate(&r->exec, graph, 0), "making the recording")) free(r), r = NULL;
    }
    if (graph) cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    if (be->err) return be_sync(be);
    *out = r;
    return DS_OK;
}

extern "C" void cuda_replay(backend *be, be_recording *r)
{
    ok(be, cudaGraphLaunch(r->exec, st(be)->stream), "replay");
}

extern "C" void cuda_recording_free(be_recording *r)
{
    cudaGraphExecDestroy(r->exec);
    free(r);
}
