/* finetune/engine/model.h - a Llama-family model as loaded from a Hugging Face
 * folder, on the host: the config and references into the memory-mapped
 * safetensors (16-bit weights are never copied on the host), plus NF4
 * weights for the linear layers when the model is 4-bit (a bitsandbytes
 * checkpoint, or quantized on load). The engine uploads from here. */
#ifndef DS_FINETUNE_MODEL_H
#define DS_FINETUNE_MODEL_H

#include "data/model_config.h"
#include "data/safetensors.h"
#include "quant/nf4.h"

#include <stdbool.h>

typedef struct {
    int out, in;
    const st_tensor *dense;   /* (out, in) 16/32-bit in the file, or NULL when 4-bit */
    nf4_view q;               /* host pointers, when 4-bit */
    void *q_owner;            /* what holds q's storage */
} model_linear;

typedef struct {
    const st_tensor *attn_norm;   /* (C) input_layernorm */
    const st_tensor *mlp_norm;    /* (C) post_attention_layernorm */
    const st_tensor *q_norm, *k_norm;   /* (D) per-head RMSNorm of q and k (cfg.qk_norm), or NULL */
    model_linear lin[LIN_COUNT];
    const st_tensor *bias[LIN_COUNT];   /* (out) where cfg.bias[t], else NULL; 16-bit even in 4-bit models */
    /* DeepSeek-V2/V3 (cfg.ds.on; lin[] unused), model_deepseek.c: */
    model_linear *dsl;                  /* (deepseek_slots) by deepseek_slot; out = 0 where the layer has none */
    const st_tensor *q_a_norm, *kv_a_norm;      /* (q_lora_rank) or NULL, (kv_lora_rank) */
    const st_tensor *router;            /* mlp.gate.weight (E, C) in MoE layers */
    const st_tensor *router_bias;       /* mlp.gate.e_score_correction_bias (E) (DeepSeek-V3) */
} model_layer;

typedef struct {
    char *dir;
    model_config cfg;
    st_set *st;
    const st_tensor *embed;       /* (V, C) */
    const st_tensor *lm_head;     /* (V, C); the embedding when tied */
    const st_tensor *final_norm;  /* (C) */
    model_layer *layers;          /* (L) */
    bool quantized;               /* linear layers are NF4 */
    bool prequantized;            /* ... because the checkpoint was (bitsandbytes) */
} llama_model;

typedef struct {
    bool load_in_4bit;            /* quantize 16-bit linear layers to NF4 while loading */
    bool double_quant;
} model_load_opts;

/* Load a model folder. A bitsandbytes 4-bit checkpoint loads as it is. Every
 * tensor of the checkpoint must be one the architecture reads: any other is
 * refused (DS_EDATA naming it), never run without. */
int model_load(const char *dir, const model_load_opts *opts, llama_model **out);
void model_free(llama_model *m);
/* model_slots() : linear layers per decoder layer: LIN_COUNT, or DeepSeek's deepseek_slots(). */
int model_slots(const model_config *cfg);
/* model_slot() : linear `slot` of layer l (a llama_linear, or a deepseek_slot
 * on DeepSeek models), its module path ("self_attn.q_proj",
 * "mlp.experts.3.up_proj") into path when path is not NULL.
 * @return the linear, or NULL where the layer has none. */
const model_linear *model_slot(const llama_model *m, int l, int slot, char *path, size_t n);
/* "2 layers, with biases, q/k norms": the architecture's parts, for messages. */
const char *model_family_summary(const model_config *cfg);
/* Bytes the weights occupy once resident (4-bit linears, 16-bit rest). */
size_t model_resident_bytes(const llama_model *m);

/* ---- models with random weights, for benchmarks and memory estimates (model_random.c) ---- */

/* Built-in shapes by name ("deepseek-llm-7b", "deepseek-coder-1.3b", "tiny",
 * "deepseek-v2-lite", ...), or a model folder's config.json. */
int model_shape(const char *name, model_config *cfg);
/* A model of that shape with random weights, DeepSeek-V2/V3 included (free
 * with model_random_free). */
int model_random(const model_config *cfg, uint64_t seed, llama_model **out);
void model_random_free(llama_model *m);
/* The built-in shapes written as config.json (model_shapes.c): DS_ENOINPUT for another name. */
int model_shape_config(const char *name, model_config *cfg);
const char *model_shape_config_names(void);
/* Names of the built-in shapes, for messages. */
const char *model_shape_names(void);

#endif
