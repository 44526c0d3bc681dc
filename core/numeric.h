/* core/numeric.h - 16-bit float conversions (bf16 and IEEE half) on the host.
 * Rounding is round-to-nearest-even, as torch and CUDA do it. */
#ifndef DS_CORE_NUMERIC_H
#define DS_CORE_NUMERIC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

static inline float ds_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t ds_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Round an fp32 value to the nearest bf16 and back. */
static inline float ds_round_bf16(float f) { return ds_bf16_to_f32(ds_f32_to_bf16(f)); }

static inline float ds_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    int exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ffu;
    float f;
    if (exp == 0) {
        f = ldexpf((float)man, -24);          /* zero or subnormal */
        return sign ? -f : f;
    }
    uint32_t u;
    if (exp == 31) u = sign | 0x7f800000u | (man << 13);   /* inf / NaN */
    else u = sign | ((uint32_t)(exp - 15 + 127) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t ds_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t au = u & 0x7fffffffu;
    if (au > 0x7f800000u) return sign | 0x7e00u;            /* NaN */
    if (au >= 0x477ff000u) return sign | 0x7c00u;           /* overflow -> inf */
    if (au < 0x38800000u) {                                 /* subnormal or zero */
        float a;
        memcpy(&a, &au, 4);
        return sign | (uint16_t)lrintf(a * 16777216.0f);   /* units of 2^-24, ties to even */
    }
    uint32_t mant = au & 0x7fffffu;
    uint32_t exp = (au >> 23) - 127 + 15;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return sign | (uint16_t)h;
}

/* ds_first_nonfinite() : the index of the first NaN or infinite value of
 * x[0..n), or n when all are finite. */
static inline size_t ds_first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

#endif
