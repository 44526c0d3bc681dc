/* backend/backend.h - where tensors live and how the engine computes on them.
 *
 * ds-ft runs each job on one backend: the CPU (plain C loops in fp32; the
 * reference every other result is checked against) or CUDA (bf16 storage,
 * fp32 accumulation, cuBLASLt for matrix products). The engine is written
 * once against this interface and the op headers; it never branches on the
 * backend itself.
 *
 * Dtypes. Activations and frozen 16-bit weights are stored in the backend's
 * "act" type: fp32 on the CPU, bf16 on CUDA (be->act_size bytes each). LoRA
 * parameters, their gradients, optimizer state, norms' saved statistics and
 * logits are fp32 everywhere. Pointers passed to ops are backend pointers
 * (host memory on the CPU, device memory on CUDA).
 *
 * Errors. Ops return nothing: a failure (CUDA error, out of memory) is
 * recorded in the backend and returned by the next be_sync(), which the
 * engine calls at the end of every step.
 */
#ifndef DS_BACKEND_H
#define DS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { BE_AUTO = -1, BE_CPU = 0, BE_CUDA = 1 } be_kind;   /* BE_AUTO: CUDA where a GPU is present */

/* CPU reference ops split work across OpenMP threads only above this many
 * inner-loop operations: below it, starting threads costs more than it saves.
 * Each output element is computed by one thread in a fixed order, so the
 * results do not depend on the number of threads. */
#define DS_OMP_MIN_WORK (1L << 18)

typedef struct backend {
    be_kind kind;
    size_t act_size;          /* bytes per activation element: 4 (CPU) or 2 (CUDA) */
    int err;                  /* first failure, DS_* code; 0 = none */
    char errmsg[512];
    size_t bytes_in_use;      /* device bytes allocated through be_alloc */
    size_t peak_bytes;
    size_t host_bytes;        /* host bytes allocated through be_host_alloc */
    int transfers;            /* be_transfer calls so far (the next ticket) */
    bool round_bf16;          /* CPU only: store act values rounded to bf16, as CUDA does (DSFT_CPU_BF16=1) */
    int attn_fwd_rows;        /* CUDA tuning: 0 (default) = the attention's wgmma kernels where they run
                                 (H100, head size 128), else mma.sync with 32 query rows per warp in the
                                 forward; 16 or 32 = always the mma.sync kernels, the forward with that
                                 many rows per warp (`ds-ft bench kernels --attn-fwd-rows`, the GPU tests) */
    void *impl;               /* backend-private (CUDA handles, workspaces) */
    void *profile;            /* per-op timing since be_profile_begin(); NULL when off */
    bool recording;           /* between be_record_begin() and be_record_end() */
} backend;

/* Open a backend. "auto" picks CUDA when a GPU is present. Opening CUDA where
 * there is none (or in a build without CUDA) fails with a clear message. */
int be_open(be_kind kind, backend **out);
int be_open_auto(backend **out);
/* "auto" (or NULL), "cpu" or "cuda" -> BE_AUTO, BE_CPU, BE_CUDA; anything else is DS_EUSAGE. */
int be_kind_parse(const char *name, be_kind *out);
/* Open by name: "auto" (or NULL), "cpu" or "cuda"; anything else is DS_EUSAGE. */
int be_open_named(const char *name, backend **out);
void be_close(backend *be);
const char *be_name(const backend *be);        /* "cpu" or "cuda" */
const char *be_device_name(const backend *be); /* "NVIDIA H100 80GB HBM3", "CPU" */
bool be_cuda_compiled(void);                   /* built with CUDA support */
int be_cuda_device_count(void);                /* 0 when none or not compiled */

/* A CUDA device as ds-ft doctor describes it. */
typedef struct {
    char name[256];
    int major, minor;             /* compute capability */
    size_t total_bytes, free_bytes;
    int sm_count;
} be_gpu;
/* be_cuda_devices() : up to `max` CUDA devices, and the CUDA versions of the
 * driver and of the runtime this build links (1000 * major + 10 * minor: 12040
 * is 12.4; 0 when unknown). Reading a device's free memory opens a context on
 * it. @return the number of devices described: 0 without a usable GPU, or in a
 * build without CUDA. */
int be_cuda_devices(be_gpu *gpus, int max, int *driver_version, int *runtime_version);

/* Record the first failure (later ones are dropped); returns code. */
int be_fail(backend *be, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Wait for queued work; return the first recorded failure (and its message
 * via ds_fail) or DS_OK. */
int be_sync(backend *be);

/* ---- memory ---- */
/* Allocate `bytes` (256-byte aligned) on the backend. NULL + recorded
 * failure when out of memory. Allocation is done once per category (the
 * engine's arenas); ops never allocate. */
void *be_alloc(backend *be, size_t bytes, const char *what);
void be_free(backend *be, void *p);
void be_upload(backend *be, void *dst, const void *src, size_t bytes);   /* host -> backend */
void be_download(backend *be, void *dst, const void *src, size_t bytes); /* backend -> host */
void be_copy(backend *be, void *dst, const void *src, size_t bytes);     /* backend -> backend */
void be_zero(backend *be, void *p, size_t bytes);
/* Free / total device memory in bytes (CPU: 0 / 0). */
void be_mem_info(backend *be, size_t *free_bytes, size_t *total_bytes);
/* Peak device memory of this process seen by the allocator. */
size_t be_peak_bytes(const backend *be);

/* ---- transfers beside the computation (activation offload) ----
 * be_host_alloc() : `bytes` of host memory the device copies to and from at
 *                   full speed (page-locked on CUDA), @return it, or NULL with
 *                   the failure recorded. Counted in be->host_bytes.
 * be_host_free() : release it (NULL is fine).
 * be_transfer() : copy `bytes` from src to dst, one of them be_host_alloc
 *                 memory and the other backend memory (to_host: backend ->
 *                 host), on a transfer stream of its own: it starts once the
 *                 work queued before it is done and overlaps the work queued
 *                 after, @return its ticket. On the CPU a memcpy done at once.
 * be_wait_transfer() : work queued after this waits for transfer `ticket`,
 *                 one of the last BE_TRANSFER_TICKETS.
 * be_sync() also waits for every transfer. Not inside a recording. */
#define BE_TRANSFER_TICKETS 64
void *be_host_alloc(backend *be, size_t bytes, const char *what);
void be_host_free(backend *be, void *p);
int be_transfer(backend *be, void *dst, const void *src, size_t bytes, bool to_host);
void be_wait_transfer(backend *be, int ticket);

/* ---- precision conversions (n elements) ---- */
void be_f32_to_act(backend *be, void *dst_act, const float *src_f32, size_t n);   /* both on backend */
void be_act_to_f32(backend *be, float *dst_f32, const void *src_act, size_t n);
/* Host fp32 -> backend act / backend act -> host fp32 (upload/download + convert). */
void be_upload_f32_as_act(backend *be, void *dst_act, const float *host, size_t n);
/* y (n) act += x (n) fp32, both on the backend (the result rounded once). */
void be_add_f32_to_act(backend *be, void *y_act, const float *x, size_t n);
void be_download_act_as_f32(backend *be, float *host, const void *src_act, size_t n);

/* The CPU reference ops call this on every act buffer they write: with
 * round_bf16 set it rounds the values to bf16, so that the CPU engine stores
 * its activations as the CUDA engine does while still computing in fp32 -
 * which separates the error of bf16 storage from that of the kernels. */
void be_round_act(const backend *be, void *p, size_t n);

/* Pointer arithmetic on act buffers: p + n elements. */
static inline void *be_act_at(const backend *be, const void *p, size_t n)
{
    return (char *)p + n * be->act_size;
}

/* ---- matrix products ----
 * Row-major: C (M, N) = alpha * op(A) * op(B) + beta * C, where op(A) is
 * (M, K) and op(B) is (K, N); A stored (M, K) or, with trans_a, (K, M);
 * B stored (K, N) or, with trans_b, (N, K). A and B are act; C is act, or
 * fp32 when c_f32. With all_f32 everything is fp32 (A, B and C) and CUDA
 * multiplies in full fp32 (no TF32), as PyTorch does by default: the small
 * LoRA products use it. Leading dimensions are the stored row lengths. On
 * CUDA the product accumulates in fp32 and its cuBLASLt plan is cached per
 * shape. */
typedef struct {
    int M, N, K;
    const void *A; int lda; bool trans_a;
    const void *B; int ldb; bool trans_b;
    void *C; int ldc; bool c_f32;
    float alpha, beta;
    bool all_f32;
} be_gemm_args;
void be_gemm(backend *be, const be_gemm_args *g);

/* y (M, N) = x (M, K) · wᵀ with w stored (N, K): the shape of every linear layer. */
void be_matmul_nt(backend *be, void *y, const void *x, const void *w, int M, int N, int K, float beta);
/* dx (M, K) = dy (M, N) · w with w stored (N, K): the input gradient of a linear layer. */
void be_matmul_nn(backend *be, void *dx, const void *dy, const void *w, int M, int N, int K, float beta);

/* ---- time by op (ds-ft bench train --profile) ----
 * be_profile_begin() : from now on, time every op on the device: each call
 *   through DS_DISPATCH_CUDA (under its function's name, "op_attention_fwd"),
 *   each product, copy or conversion of the backend's own called outside an op
 *   ("be_gemm", "be_copy", ...), each between a pair of events on the stream it
 *   is queued on. Calls inside an op count as the op. The events cost the host
 *   a few microseconds a call. Ops queued on side streams (be_fork) overlap,
 *   so their times may add up to more than the step. CUDA only; neither may
 *   start while the other runs: timing and recording (be_record_begin).
 *   @return DS_OK, DS_EUSAGE on the CPU, DS_EINTERNAL while recording, or
 *   DS_ENOMEM (ds_errmsg() says which; the backend stays usable).
 * be_profile_end() : stop, wait for the device, and sum the times by name into
 *   *rows (longest first; the caller frees it), *n of them. @return DS_OK, the
 *   backend's failure, or DS_ENOMEM.
 * be_profile_enter() / be_profile_leave() : bracket one call (BE_PROFILED does):
 *   enter returns the mark leave takes: the call's index, BE_PROFILE_UNTIMED
 *   for a call inside another (or after a failure), or -1 when not profiling.
 *   Call leave with every mark but -1. */
#define BE_PROFILE_UNTIMED (-2)
typedef struct {
    const char *name;   /* static storage: a function's name */
    double ms;          /* device time, summed */
    long calls;
} be_profile_row;
int be_profile_begin(backend *be);
int be_profile_end(backend *be, be_profile_row **rows, int *n);
int be_profile_enter(backend *be, const char *name);
void be_profile_leave(backend *be, int mark);
/* BE_PROFILED() : `call`, timed under `name` while profiling; DS_DISPATCH_CUDA
 * times each op this way, and ops made of other ops (LoRA) name themselves. */
#define BE_PROFILED(be, name, call)                                                \
    do {                                                                           \
        const int profile_mark_ = (be)->profile ? be_profile_enter(be, name) : -1; \
        call;                                                                      \
        if (profile_mark_ != -1) be_profile_leave(be, profile_mark_);              \
    } while (0)

/* ---- recorded work (CUDA graphs) ----
 * The ops queued between be_record_begin() and be_record_end() are recorded,
 * not run; be_replay() then runs them again, with the same shapes, pointers
 * and scalars, in one launch instead of hundreds (a decode step is ~500 small
 * kernels). Recorded ops must not allocate, nor copy to or from the host, nor
 * wait: reserve workspaces and run the sequence once plainly before recording.
 * Values in device buffers (token ids, positions) may change between replays.
 * be_can_record() : whether this backend records (CUDA; the CPU does not).
 * be_record_begin() : start recording, @return DS_OK or a failure (also on the CPU).
 * be_record_end() : stop and make the recording in *out, @return DS_OK or the
 *                   failure of any op recorded (*out NULL then).
 * be_replay() : queue the recorded work on the backend's stream.
 * be_recording_free() : release a recording (NULL is fine). */
typedef struct be_recording be_recording;
bool be_can_record(const backend *be);
int be_record_begin(backend *be);
int be_record_end(backend *be, be_recording **out);
void be_replay(backend *be, be_recording *r);
void be_recording_free(be_recording *r);

/* Products side by side (CUDA; on the CPU these do nothing and work runs in
 * order). Small products, such as one expert's over its few rows, fill a
 * fraction of a GPU; several queued on side streams run at once.
 * be_reserve_streams() : make up to n side streams (BE_MAX_STREAMS) at set-up,
 *                        each with its own cuBLASLt workspace, @return how many
 *                        exist (a failure to make one is recorded in be->err).
 * be_stream_bytes() : the device memory one side stream takes (0 on the CPU).
 * be_fork() : work queued after it on be_use_stream(i) (i taken mod n) starts
 *             once everything queued before is done, beside the other side
 *             streams' work; with fewer than 2 side streams it stays in order.
 * be_use_stream() : queue the next launches on side stream i.
 * be_join() : later work waits for all of it; launches return to the main stream.
 * Work on different side streams must not touch the same memory, nor use the
 * same workspace slot (be_workspace) while the streams are forked; be_sync and
 * transfers belong after be_join. */
#define BE_MAX_STREAMS 4
int be_reserve_streams(backend *be, int n);
size_t be_stream_bytes(const backend *be);
void be_fork(backend *be, int n);
void be_use_stream(backend *be, int i);
void be_join(backend *be);

/* Scratch buffers owned by the backend, one per purpose so that an op may
 * use its own while the caller holds another. A slot grows on demand; the
 * engine asks for every size it will need at set-up (be_reserve), so that
 * no allocation happens during a step. */
typedef enum { WS_DEQUANT, WS_LORA, WS_ATTN, WS_LOGITS, WS_MISC, WS_GEMM, WS_NSLOTS } be_ws_slot;
void *be_workspace(backend *be, be_ws_slot slot, size_t bytes);
void be_reserve(backend *be, be_ws_slot slot, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
