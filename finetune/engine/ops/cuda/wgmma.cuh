/* finetune/engine/ops/cuda/wgmma.cuh - thin wrappers over Hopper's warpgroup
 * tensor-core instructions (wgmma, sm_90a only), for the kernels that use them.
 *
 * A warpgroup is 4 consecutive warps (128 threads) that issue one wgmma
 * together. A product m64nNk16 multiplies A (64 x 16) by B (16 x N) into an
 * fp32 accumulator D (64 x N) spread over the warpgroup's registers: warp w
 * holds rows 16w .. 16w + 15, and with g = lane / 4, t = lane % 4 its thread
 * holds, for each 8-column slice n, d[4n + 0, 1] = D[16w + g][8n + 2t, +1] and
 * d[4n + 2, 3] = D[16w + g + 8][8n + 2t, +1] - per warp, the C layout of
 * mma.sync.m16n8 (attention_common.cuh) repeated N / 8 times. A may come from
 * registers in the A layout of mma.sync.m16n8k16, so an accumulator packed to
 * bf16 feeds the next product directly, as in the mma.sync kernels.
 *
 * Operands in shared memory are named by a 64-bit descriptor (smem_desc_sw128).
 * Every tile here uses the 128-byte swizzle: a tile of R rows of 64 bf16 (128
 * bytes) starts on a 1024-byte boundary, and the 16-byte chunk c of row r is
 * stored at chunk c ^ (r % 8) of that row (so the 8 rows a product reads at
 * one column hit 8 different bank groups). Wider rows are split into
 * 64-column halves stored one after the other.
 *
 * The instructions run asynchronously: wgmma_fence() before the first product
 * that reads registers written since; wgmma_commit() closes a group;
 * wgmma_wait<N>() waits until at most N groups are in flight. Between issue
 * and wait the compiler must neither read nor move the accumulators: the
 * kernels pass them (and A operands in registers) through reg_fence() after
 * each wait, and the accumulators before each issue.
 * Shared memory written by ordinary stores or cp.async must be made visible to
 * the tensor cores' (async) proxy with fence_proxy_async() before a barrier.
 */
#ifndef DS_WGMMA_CUH
#define DS_WGMMA_CUH

#include <stdint.h>

/* Descriptor of a K-major (rows of 64 bf16 along K) or N-major (rows of 64
 * bf16 along N) 128-byte-swizzled tile at p. K-major: 8-row groups are
 * `stride` bytes apart (1024 for consecutive rows); `lead` is unused. N-major:
 * 64-column halves are `lead` bytes apart, 8-row (K) groups `stride` bytes. */
__device__ __forceinline__ uint64_t smem_desc_sw128(const void *p, uint32_t lead, uint32_t stride)
{
    const uint64_t a = (uint32_t)__cvta_generic_to_shared(p);
    return ((a & 0x3FFFF) >> 4) | ((uint64_t)(lead >> 4) << 16) | ((uint64_t)(stride >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

/* Pin n accumulator registers at this point of the program (no code moves
 * across). After a wait, also pin the A operands a product read from
 * registers: they must stay untouched until it completes, and without this
 * the compiler may reuse them as soon as the instruction is issued. */
template <int n>
__device__ __forceinline__ void reg_fence(float *d)
{
#pragma unroll
    for (int i = 0; i < n; i++) asm volatile("" : "+f"(d[i])::"memory");
}
template <int n>
__device__ __forceinline__ void reg_fence(uint32_t (*a)[4])
{
#pragma unroll
    for (int i = 0; i < n; i++) asm volatile("" : "+r"(a[i][0]), "+r"(a[i][1]), "+r"(a[i][2]), "+r"(a[i][3])::"memory");
}

/* d (64 x 64, fp32) += a (64 x 16) b (16 x 64), a and b in shared memory: K-major
 * (TRANS = 0), or a M-major and b N-major (TRANS = 1: both read transposed). */
template <int TRANS>
__device__ __forceinline__ void wgmma_m64n64k16_ss(float d[32], uint64_t a, uint64_t b)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                 "%32, %33, p, 1, 1, %35, %35;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(a), "l"(b), "r"(1), "n"(TRANS));
}

/* d (64 x 128, fp32) += a (64 x 16, bf16 registers) b (16 x 128), b in shared memory N-major (transposed). */
__device__ __forceinline__ void wgmma_m64n128k16_rs_tb(float d[64], const uint32_t a[4], uint64_t b)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
                 "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                 "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                 "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                 "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                 "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
}

#endif
