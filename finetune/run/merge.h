/* finetune/run/merge.h - a complete Hugging Face model folder with an adapter
 * merged in: W' = W + s·B·A, bf16 safetensors, config.json without
 * quantization_config, tokenizer and generation files copied. */
#ifndef DS_FINETUNE_MERGE_H
#define DS_FINETUNE_MERGE_H

#include "finetune/model/model.h"

#include "adapters/lora.h"
#include "backend/backend.h"

typedef enum {
    MERGE_DEQUANTIZED,   /* the NF4 weights the adapter was trained against, dequantized (default) */
    MERGE_ORIGINAL,      /* the original 16-bit weights */
} merge_source;

int merge_source_parse(const char *s, merge_source *out);

/* Write the merged model of m (+ adapter a, may be NULL) into out_dir,
 * atomically. MERGE_DEQUANTIZED on a 16-bit model that was not quantized
 * is the same as MERGE_ORIGINAL; MERGE_ORIGINAL on a 4-bit checkpoint has
 * no original weights and is refused. */
int merge_write(const llama_model *m, const lora_adapter *a, merge_source src, const char *out_dir);

/* The weight of linear (layer, t) as the chosen source gives it, with the
 * adapter merged in: (out, in) fp32 into W. `cpu` (a CPU backend)
 * dequantizes NF4 weights. */
int merge_linear(backend *cpu, const llama_model *m, const lora_adapter *a, merge_source src, int layer,
                 llama_linear t, float *W);

#endif
