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

/* A floating-point tensor of exactly this shape, all finite, or DS_EDATA naming it (model.c). */
int model_require(const llama_model *m, const char *name, int ndim, int64_t d0, int64_t d1, const st_tensor **out);
/* One linear weight `name` [lin->out, lin->in]: 16-bit, bitsandbytes 4-bit, or quantized on load (model.c). */
int model_load_linear(llama_model *m, const char *name, model_linear *lin, const model_load_opts *opts);
/* The DeepSeek-V2/V3 parts of layer l (model_deepseek.c). */
int model_deepseek_load_layer(llama_model *m, int l, const model_load_opts *opts);
void model_deepseek_free_layer(const model_config *c, model_layer *L);
size_t model_deepseek_layer_bytes(const model_config *c, const model_layer *L);
/* Whether a DeepSeek layer reads `rest` ("self_attn.kv_b_proj.weight", maybe with a bitsandbytes suffix). */
bool model_deepseek_reads(const model_config *c, int layer, bool quantized, const char *rest);

/* Every tensor of the checkpoint is one the architecture reads (model_tensors.c). */
int model_check_tensors(const llama_model *m);

#endif
