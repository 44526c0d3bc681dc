/* finetune/dist/dist_nccl.c - the gradient sum through NCCL.
 *
 * libnccl.so.2 is opened when a run asks for several GPUs (dlopen), so that
 * ds-ft itself runs where NCCL is not installed and says what is missing only
 * when it is needed. The process's device 0 is its GPU (dist_select_gpu). */
#include "dist_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

#ifdef DS_HAVE_CUDA
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

_Static_assert(sizeof(ncclUniqueId) == DIST_NCCL_ID_BYTES, "NCCL unique id size");

/* The NCCL functions ds-ft calls, found in the library at run time. */
typedef struct {
    void *lib;
    ncclResult_t (*get_unique_id)(ncclUniqueId *);
    ncclResult_t (*comm_init_rank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*all_reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*comm_destroy)(ncclComm_t);
    ncclResult_t (*comm_abort)(ncclComm_t);
    const char *(*error_string)(ncclResult_t);
} nccl_api;

struct dist_nccl {
    nccl_api api;
    ncclComm_t comm;
    cudaStream_t stream;
};

static int load_api(nccl_api *a)
{
    memset(a, 0, sizeof *a);
    const char *name = getenv("DSFT_NCCL_LIBRARY") ? getenv("DSFT_NCCL_LIBRARY") : "libnccl.so.2";
    a->lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!a->lib)
        return ds_fail(DS_ENOINPUT, "several GPUs need NCCL, but %s cannot be opened (%s); install NCCL (the "
                                    "libnccl2 package, or pip's nvidia-nccl-cu12 with its lib folder on "
                                    "LD_LIBRARY_PATH), or name the library in DSFT_NCCL_LIBRARY", name, dlerror());
    struct { void **fn; const char *sym; } syms[] = {
        {(void **)&a->get_unique_id, "ncclGetUniqueId"},   {(void **)&a->comm_init_rank, "ncclCommInitRank"},
        {(void **)&a->all_reduce, "ncclAllReduce"},        {(void **)&a->comm_destroy, "ncclCommDestroy"},
        {(void **)&a->comm_abort, "ncclCommAbort"},        {(void **)&a->error_string, "ncclGetErrorString"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
        *syms[i].fn = dlsym(a->lib, syms[i].sym);
        if (!*syms[i].fn) {
            dlclose(a->lib);
            a->lib = NULL;
            return ds_fail(DS_ENOINPUT, "%s lacks %s: an NCCL 2 library is needed", name, syms[i].sym);
        }
    }
    return DS_OK;
}

static int nccl_fail(const nccl_api *a, ncclResult_t r, const char *what)
{
    return ds_fail(DS_ETRAIN, "NCCL %s failed: %s", what, a->error_string ? a->error_string(r) : "unknown error");
}

static int cuda_fail(cudaError_t e, const char *what)
{
    return ds_fail(DS_ETRAIN, "%s failed: %s", what, cudaGetErrorString(e));
}

int dist_nccl_unique_id(void *id, size_t bytes)
{
    nccl_api a;
    int rc = load_api(&a);
    if (rc) return rc;
    ncclUniqueId u;
    ncclResult_t r = a.get_unique_id(&u);
    if (r != ncclSuccess) rc = nccl_fail(&a, r, "ncclGetUniqueId");
    else memcpy(id, &u, bytes < sizeof u ? bytes : sizeof u);
    dlclose(a.lib);
    return rc;
}

int dist_nccl_open(const void *id, int rank, int world, dist_nccl **out)
{
    *out = NULL;
    dist_nccl *n = ds_calloc(1, sizeof *n, "the NCCL communicator");
    if (!n) return DS_ENOMEM;
    int rc = load_api(&n->api);
    cudaError_t ce = rc ? cudaSuccess : cudaSetDevice(0);
    if (!rc && ce == cudaSuccess) ce = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
    if (!rc && ce != cudaSuccess) rc = cuda_fail(ce, "preparing the GPU for NCCL");
    if (!rc) {
        ncclUniqueId u;
        memcpy(&u, id, sizeof u);
        ncclResult_t r = n->api.comm_init_rank(&n->comm, world, u, rank);
        if (r != ncclSuccess) {
            n->comm = NULL;
            rc = nccl_fail(&n->api, r, "ncclCommInitRank");
        }
    }
    if (rc) {
        dist_nccl_close(n, true);
        return rc;
    }
    *out = n;
    return DS_OK;
}

int dist_nccl_sum_floats(dist_nccl *n, float *dev_buf, size_t count)
{
    ncclResult_t r = n->api.all_reduce(dev_buf, dev_buf, count, ncclFloat32, ncclSum, n->comm, n->stream);
    if (r != ncclSuccess) return nccl_fail(&n->api, r, "ncclAllReduce of the LoRA gradients");
    cudaError_t ce = cudaStreamSynchronize(n->stream);
    return ce == cudaSuccess ? DS_OK : cuda_fail(ce, "the NCCL all-reduce");
}

void dist_nccl_close(dist_nccl *n, bool failed)
{
    if (!n) return;
    /* after a failure the peers may be gone: abort does not wait for them */
    if (n->comm) (failed ? n->api.comm_abort : n->api.comm_destroy)(n->comm);
    if (n->stream) cudaStreamDestroy(n->stream);
    if (n->api.lib) dlclose(n->api.lib);
    free(n);
}

#else   /* a build without CUDA */

struct dist_nccl {
    int unused;
};

static int no_cuda(void)
{
    return ds_fail(DS_EUSAGE, "several GPUs (WORLD_SIZE > 1, --gpus) need a ds-ft built with CUDA; this one has none");
}

int dist_nccl_unique_id(void *id, size_t bytes) { return no_cuda(); }
int dist_nccl_open(const void *id, int rank, int world, dist_nccl **out)
{
    *out = NULL;
    return no_cuda();
}
int dist_nccl_sum_floats(dist_nccl *n, float *dev_buf, size_t count) { return no_cuda(); }
void dist_nccl_close(dist_nccl *n, bool failed) {}

#endif
