/* adapters/merge.h - folding a LoRA adapter into a weight matrix. */
#ifndef DS_ADAPTERS_MERGE_H
#define DS_ADAPTERS_MERGE_H

#include "lora.h"

/* Where the base weight W of a merge comes from. */
typedef enum {
    MERGE_DEQUANTIZED,   /* the NF4 weights the adapter was trained against, dequantized (default) */
    MERGE_ORIGINAL,      /* the original 16-bit weights */
} merge_source;

/* merge_source_parse() : "dequantized" (or NULL) | "original". @return DS_OK or DS_EUSAGE. */
int merge_source_parse(const char *s, merge_source *out);
/* merge_source_name() : "dequantized" | "original". */
const char *merge_source_name(merge_source s);

/* W (out, in) fp32 += s · B (out, r) · A (r, in) for module (layer, slot)
 * (a llama_linear, or a deepseek_slot); nothing when that module is not
 * adapted. As PEFT's merge_and_unload. */
void lora_merge_weight(const lora_adapter *a, int layer, int slot, float *W);

#endif
