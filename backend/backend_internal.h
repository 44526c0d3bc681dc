/* backend/backend_internal.h - what backend.c and backend_cuda.cu share. */
#ifndef DS_BACKEND_INTERNAL_H
#define DS_BACKEND_INTERNAL_H

#include "backend.h"
#include "kernel.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The scratch buffers of be_workspace(); the first member of both the CPU
 * and the CUDA state, so that backend.c manages them for either. */
typedef struct {
    void *ws[WS_NSLOTS];
    size_t ws_size[WS_NSLOTS];
} be_workspaces;

/* profile.c: drop a profile left open (be_close). */
void be_profile_drop(backend *be);

/* CUDA half of the backend (backend_cuda.cu); only linked with DS_HAVE_CUDA. */
#define CUDA_LT_WORKSPACE (32u << 20)   /* cuBLASLt's workspace, one per stream: 32 MiB */
int cuda_open(backend *be);
void cuda_close(backend *be);
const char *cuda_device_name(backend *be);
int cuda_device_count(void);
int cuda_devices(be_gpu *gpus, int max, int *driver_version, int *runtime_version);
int cuda_sync(backend *be);
void *cuda_alloc(backend *be, size_t bytes, const char *what);
void cuda_free(backend *be, void *p);
void cuda_upload(backend *be, void *dst, const void *src, size_t bytes);
void cuda_download(backend *be, void *dst, const void *src, size_t bytes);
void cuda_copy(backend *be, void *dst, const void *src, size_t bytes);
void cuda_zero(backend *be, void *p, size_t bytes);
void cuda_mem_info(backend *be, size_t *free_bytes, size_t *total_bytes);
void *cuda_host_alloc(backend *be, size_t bytes, const char *what);
void cuda_host_free(backend *be, void *p);
void cuda_transfer(backend *be, void *dst, const void *src, size_t bytes, bool to_host, int ticket);
void cuda_wait_transfer(backend *be, int ticket);
void cuda_f32_to_act(backend *be, void *dst, const float *src, size_t n);
void cuda_act_to_f32(backend *be, float *dst, const void *src, size_t n);
void cuda_add_f32_to_act(backend *be, void *y, const float *x, size_t n);
/* An event recorded now on the stream launches go to (NULL on failure, which
 * is recorded); the milliseconds from a to b once both have passed; free one
 * (NULL is fine). For profile.c. */
void *cuda_event_mark(backend *be);
double cuda_event_ms(void *a, void *b);
void cuda_event_free(void *e);
void cuda_gemm(backend *be, const be_gemm_args *g);
int cuda_reserve_streams(backend *be, int n);
void cuda_fork(backend *be, int n);
void cuda_use_stream(backend *be, int i);
void cuda_join(backend *be);
int cuda_record_begin(backend *be);
int cuda_record_end(backend *be, be_recording **out);
void cuda_replay(backend *be, be_recording *r);
void cuda_recording_free(be_recording *r);

#ifdef __cplusplus
}
#endif

#endif
