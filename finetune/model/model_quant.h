/* finetune/engine/model_quant.h - the 4-bit side of model loading (model_quant.c):
 * bitsandbytes checkpoints and quantize-on-load, on top of quant/. */
#ifndef DS_FINETUNE_MODEL_QUANT_H
#define DS_FINETUNE_MODEL_QUANT_H

#include "model.h"

/* The checkpoint's quantization_config describes NF4 we can read. */
int model_quant_check_config(const llama_model *m);
/* Load linear `weight_name` of a bitsandbytes checkpoint into lin->q. */
int model_quant_load(const llama_model *m, const char *weight_name, model_linear *lin);
/* Quantize lin->dense to NF4 (lin->dense stays set, so that merges can use
 * the original weights); lin->q is what the engine uses. */
int model_quant_quantize(const llama_model *m, const char *weight_name, model_linear *lin, bool double_quant);
void model_quant_free(model_linear *lin);
size_t model_quant_bytes(const model_linear *lin);

/* Every tensor of the checkpoint is one the architecture reads (model_tensors.c). */
int model_check_tensors(const llama_model *m);

#endif
