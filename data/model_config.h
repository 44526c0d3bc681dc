/* data/model_config.h - a Hugging Face config.json for Llama-family models.
 *
 * Accepts both key styles: the older (`rope_theta`, `rope_scaling`,
 * `torch_dtype`, used by DeepSeek checkpoints) and the newer
 * (`rope_parameters`, `dtype`). Anything the engine would not honour (other
 * architectures, rope types, sliding windows, biases) is refused with a
 * message naming the key, never ignored.
 */
#ifndef DS_DATA_MODEL_CONFIG_H
#define DS_DATA_MODEL_CONFIG_H

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char architecture[64];      /* "LlamaForCausalLM" */
    int hidden_size;            /* C */
    int intermediate_size;      /* I */
    int num_layers;             /* L */
    int num_heads;              /* H */
    int num_kv_heads;           /* Hkv (absent: H) */
    int head_dim;               /* D (absent: C / H) */
    int vocab_size;             /* V */
    int max_position;
    float rms_norm_eps;
    double rope_theta;
    double rope_factor;         /* linear scaling: inverse frequencies divided by this; 1 = none */
    bool tie_word_embeddings;
    int bos_id, eos_id, pad_id; /* -1 when unknown; generation_config.json wins over config.json;
                                   a list (eos_token_id: [128001, 128009]) gives its first id */
    char dtype[16];             /* "bfloat16", "float16", "float32" or "" */
    bool quantized;             /* config.json carries quantization_config */
} model_config;

/* The seven linear layers of a Llama decoder layer, in a fixed order (that of
 * llama_linear): X(name, module) for the weight model.layers.N.module.name.weight
 * (core/xlist.h). */
#define LLAMA_LINEARS(X, SEP)                                                                              \
    X(q_proj, self_attn) SEP X(k_proj, self_attn) SEP X(v_proj, self_attn) SEP X(o_proj, self_attn) SEP  \
    X(gate_proj, mlp) SEP X(up_proj, mlp) SEP X(down_proj, mlp)
#define LLAMA_LINEAR_NAME_STR(name, module) #name
/* "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj" (the recipe's lora_target_modules) */
#define LLAMA_LINEAR_NAMES LLAMA_LINEARS(LLAMA_LINEAR_NAME_STR, "|")

typedef enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT } llama_linear;

const char *llama_linear_name(llama_linear l);   /* "q_proj" */
const char *llama_linear_path(llama_linear l);   /* "self_attn.q_proj", "mlp.gate_proj" */
/* (out, in) of the weight [out, in]. */
void llama_linear_shape(const model_config *cfg, llama_linear l, int *out, int *in);
/* LIN_* for "q_proj" etc., or -1. */
int llama_linear_parse(const char *name);

/* Read DIR/config.json (+ DIR/generation_config.json for token ids). */
int model_config_load(const char *dir, model_config *cfg);
/* The same, handing back config.json's parsed object too (the caller
 * json_decref()s it), for readers of other keys (bnb_config_from_json,
 * model_config_rewrite_json) that need not parse the file again. */
int model_config_load_json(const char *dir, model_config *cfg, json_t **config);
/* Parse config.json text; `path` names the file in errors. */
int model_config_parse(const char *text, size_t len, const char *path, model_config *cfg);
/* Number of parameters of the dense model (embeddings and lm_head included). */
long long model_config_params(const model_config *cfg);

/* ---- writing a model folder derived from another (quantized, merged) ---- */

/* Copy the files that travel with a model's weights from src_dir to dst_dir,
 * each only if present: tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json, tokenizer.model, added_tokens.json,
 * chat_template.jinja, generation_config.json. Written atomically. */
int model_copy_side_files(const char *src_dir, const char *dst_dir);
/* Write dst_dir/config.json from src_dir/config.json: the source's keys in
 * its order, "quantization_config" replaced by `quantization_config`
 * (borrowed; where the source has none, it goes where sorting puts it when
 * the source's keys are sorted, as transformers writes them, else last) or,
 * when NULL, removed and the weights' dtype ("dtype" / "torch_dtype", whichever
 * the source has; "dtype" when it has neither) set to "bfloat16". Numbers and strings are formatted as Python's json.dumps
 * (indent 2) writes them, as transformers' save_pretrained does. */
int model_config_rewrite(const char *src_dir, const char *dst_dir, json_t *quantization_config);
/* The same from an already parsed config.json (model_config_load_json). */
int model_config_rewrite_json(const json_t *config, const char *dst_dir, json_t *quantization_config);

#endif
