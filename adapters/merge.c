#include "merge.h"

#include "backend/backend.h"
#include "core/status.h"

#include <string.h>

#include <stdlib.h>

void lora_merge_weight(const lora_adapter *a, int layer, int slot, float *W)
{
    const float *A = lora_slot_A(a, layer, slot), *B = lora_slot_B(a, layer, slot);
    int out, in;
    if (!A || !B || !lora_slot_shape(a, layer, slot, &out, &in)) return;
    const int r = a->cfg.r;
    const float s = lora_scale(&a->cfg);
#pragma omp parallel for schedule(static) if ((long)out * in * r > DS_OMP_MIN_WORK)
    for (int o = 0; o < out; o++) {
        float *row = W + (size_t)o * in;
        for (int k = 0; k < r; k++) {
            float b = s * B[(size_t)o * r + k];
            const float *arow = A + (size_t)k * in;
            for (int i = 0; i < in; i++) row[i] += b * arow[i];
        }
    }
}

int merge_source_parse(const char *s, merge_source *out)
{
    if (!s || !strcmp(s, "dequantized")) *out = MERGE_DEQUANTIZED;
    else if (!strcmp(s, "original")) *out = MERGE_ORIGINAL;
    else return ds_fail(DS_EUSAGE, "merge source '%s' is neither 'dequantized' nor 'original'", s);
    return DS_OK;
}

const char *merge_source_name(merge_source s) { return s == MERGE_ORIGINAL ? "original" : "dequantized"; }
