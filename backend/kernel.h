/* backend/kernel.h - what an op needs to pick and launch its implementation.
 *
 * Each op's public function lives in NAME.c next to its plain-C reference and
 * starts with DS_DISPATCH_CUDA(be, NAME_cuda(...)): on a CUDA backend the twin
 * (cuda/NAME.cu) runs instead, timed under the op's name while profiling
 * (be_profile_begin). In a build without CUDA the macro expands to
 * nothing. The twins launch on cuda_stream(be) and report launch errors with
 * cuda_check_launch(). */
#ifndef DS_BACKEND_KERNEL_H
#define DS_BACKEND_KERNEL_H

#include "backend.h"

#include <stdbool.h>

#ifdef DS_HAVE_CUDA
#define DS_DISPATCH_CUDA(be, call)                                 \
    do {                                                           \
        if ((be)->kind == BE_CUDA) {                               \
            if (!(be)->err) BE_PROFILED(be, __func__, call);       \
            return;                                                \
        }                                                          \
    } while (0)
#else
#define DS_DISPATCH_CUDA(be, call) \
    do {                           \
    } while (0)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* cuda_sm_count() : the number of multiprocessors of the backend's GPU. */
int cuda_sm_count(backend *be);
/* cuda_pdl() : whether a kernel may be launched as a programmatic dependent of
 * the one before it on the stream (a GPU of compute capability 9.x, whose
 * sm_90a code has pdl_wait(); unless DSFT_PDL=0): see pdl_wait(). */
bool cuda_pdl(backend *be);
/* cuda_check_launch() : after a kernel launch, record a launch error in the
 * backend (be->err, with `what` in the message). @return false if there was one. */
bool cuda_check_launch(backend *be, const char *what);

#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
#include <cuda_runtime.h>
/* cuda_stream() : the backend's stream; every kernel of every op runs on it, in order. */
extern "C" cudaStream_t cuda_stream(backend *be);

/* Programmatic dependent launch (Hopper). A kernel launched with the
 * cudaLaunchAttributeProgrammaticStreamSerialization attribute (when
 * cuda_pdl()) may start while the kernel before it finishes, once every block
 * of that one has called pdl_release() or ended; it must call pdl_wait()
 * before it reads anything the kernel before writes, or writes anything it
 * reads: before, it may only read what no kernel of the step writes (frozen
 * weights). pdl_wait() returns when the kernel before has finished and its
 * writes are visible. Both are no-ops before sm_90 and in a kernel launched
 * plainly. */
__device__ __forceinline__ void pdl_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_release(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

/* launch_pdl() : kernel<<<grid, block, smem, cuda_stream(be)>>>(args...), as a
 * programmatic dependent of the kernel before it when cuda_pdl(be): its blocks
 * may be scheduled while that one ends (a decode step is hundreds of small
 * kernels, each otherwise waiting for the one before to drain). The kernel
 * must call pdl_wait() before its first access to memory that another kernel
 * of the stream writes or reads. The arguments take the kernel's parameter
 * types as a plain call would (no casts: a pointer of the wrong type is an
 * error). Launch errors are the caller's to check. */
template <typename T>
struct launch_arg {   /* a parameter type, not deduced from the arguments */
    typedef T type;
};

template <typename... P>
static inline void launch_pdl(backend *be, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                              typename launch_arg<P>::type... args)
{
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = cuda_stream(be);
    cfg.attrs = &attr, cfg.numAttrs = cuda_pdl(be) ? 1 : 0;
    (void)cudaLaunchKernelEx(&cfg, kernel, args...);
}
#endif

#endif
