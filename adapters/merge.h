/* adapters/merge.h - folding a LoRA adapter into a weight matrix. */
#ifndef DS_ADAPTERS_MERGE_H
#define DS_ADAPTERS_MERGE_H

#include "lora.h"

/* W (out, in) fp32 += s · B (out, r) · A (r, in) for module (layer, t);
 * nothing when that module is not adapted. As PEFT's merge_and_unload. */
void lora_merge_weight(const lora_adapter *a, int layer, llama_linear t, float *W);

#endif
