#include "rng.h"

#include <math.h>

float ds_rng_normal(ds_rng *r)
{
    /* 1 - u keeps the logarithm's argument in (0, 1]. */
    float u1 = 1.0f - ds_rng_uniform(r);
    float u2 = ds_rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
}
