/* finetune/engine/ops/cuda/embedding.cu - CUDA twin of op_embedding (embedding.c).
 * Memory-bound: each thread copies 8 consecutive bf16 values (vec8.cuh). */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_cuda.h"
#include "vec8.cuh"

/* out (N, C) = table (V, C) rows ids[n]. Grid (N, ceil(C / (8*128))): block x copies
 * token row x; 128 threads, 8 values per thread. */
__global__ void embedding_kernel(bf16 *out, const int32_t *ids, const bf16 *table, int C, bool vec)
{
    int n = blockIdx.x;
    size_t c = ((size_t)blockIdx.y * blockDim.x + threadIdx.x) * 8;
    if (c >= (size_t)C) return;
    const bf16 *src = table + (size_t)ids[n] * C;
    bf16 *dst = out + (size_t)n * C;
    if (vec && c + 8 <= (size_t)C) {
        *(uint4 *)(dst + c) = *(const uint4 *)(src + c);
    } else {
        for (size_t k = c; k < c + 8 && k < (size_t)C; k++) dst[k] = src[k];
    }
}

extern "C" void embedding_cuda(backend *be, void *out, const int32_t *ids, const void *table, int N, int C)
{
    if (N <= 0 || C <= 0) return;
    bool vec = C % 8 == 0 && aligned16(out) && aligned16(table);
    dim3 grid((unsigned)N, (unsigned)((C + 8 * 128 - 1) / (8 * 128)));
    embedding_kernel<<<grid, 128, 0, cuda_stream(be)>>>((bf16 *)out, ids, (const bf16 *)table, C, vec);
    cuda_check_launch(be, "embedding");
}
