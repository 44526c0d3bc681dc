/* core/rng.h - deterministic random numbers.
 *
 * Everything random in ds-ft (shuffles, LoRA init, dropout masks) derives from
 * the recipe's seed through a counter-based generator: the n-th number of a
 * stream is a pure function of (seed, stream, n). That makes a run's state
 * two integers (easy to checkpoint and resume exactly), and lets a CUDA kernel
 * regenerate the same dropout mask as the CPU reference without storing it.
 */
#ifndef DS_CORE_RNG_H
#define DS_CORE_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __CUDACC__
#define DS_HD __host__ __device__ __forceinline__
#else
#define DS_HD static inline
#endif

/* splitmix64's finaliser: a bijective 64-bit mix. */
DS_HD uint64_t ds_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The n-th 64-bit number of stream `stream` under `seed`. */
DS_HD uint64_t ds_hash3(uint64_t seed, uint64_t stream, uint64_t n)
{
    return ds_mix64(ds_mix64(seed ^ ds_mix64(stream)) + n);
}

/* Uniform float in [0, 1) from the top 24 bits. */
DS_HD float ds_u01(uint64_t bits) { return (float)(bits >> 40) * (1.0f / 16777216.0f); }

/* A sequential generator: state is (seed, stream, counter). */
typedef struct {
    uint64_t seed, stream, counter;
} ds_rng;

static inline ds_rng ds_rng_make(uint64_t seed, uint64_t stream)
{
    ds_rng r = {seed, stream, 0};
    return r;
}
static inline uint64_t ds_rng_u64(ds_rng *r) { return ds_hash3(r->seed, r->stream, r->counter++); }
static inline float ds_rng_uniform(ds_rng *r) { return ds_u01(ds_rng_u64(r)); }
/* Uniform integer in [0, n), n > 0 (Lemire's multiply; bias below 2^-32 for n < 2^32). */
static inline uint64_t ds_rng_below(ds_rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)ds_rng_u64(r) * n) >> 64);
}
/* Standard normal (Box-Muller). */
float ds_rng_normal(ds_rng *r);

/* Streams: fixed ids so that different uses of one seed never overlap. */
enum {
    DS_STREAM_SHUFFLE = 1,
    DS_STREAM_SPLIT = 2,
    DS_STREAM_LORA_INIT = 3,
    DS_STREAM_DROPOUT = 4,
    DS_STREAM_SAMPLE = 5,
    DS_STREAM_BENCH = 6,
    DS_STREAM_TEST = 7,
};

/* Dropout keep-decision for element `index` of LoRA module `module` at
 * training step `step`: the same function on the CPU and on the GPU. */
DS_HD int ds_dropout_keep(uint64_t seed, uint64_t step, uint64_t module, uint64_t index, float p)
{
    uint64_t stream = ((uint64_t)DS_STREAM_DROPOUT << 56) ^ (step << 20) ^ module;
    return ds_u01(ds_hash3(seed, stream, index)) >= p;
}

#ifdef __cplusplus
}
#endif

#endif
