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
    int bos_id, eos_id, pad_id; /* -1 when unknown; generation_config.json wins over config.json */
    char dtype[16];             /* "bfloat16", "float16", "float32" or "" */
    bool quantized;             /* config.json carries quantization_config */
} model_config;

/* The seven linear layers of a Llama decoder layer, in a fixed order. */
typedef enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT } llama_linear;

const char *llama_linear_name(llama_linear l);   /* "q_proj" */
const char *llama_linear_path(llama_linear l);   /* "self_attn.q_proj", "mlp.gate_proj" */
/* (out, in) of the weight [out, in]. */
void llama_linear_shape(const model_config *cfg, llama_linear l, int *out, int *in);
/* LIN_* for "q_proj" etc., or -1. */
int llama_linear_parse(const char *name);

/* Read DIR/config.json (+ DIR/generation_config.json for token ids). */
int model_config_load(const char *dir, model_config *cfg);
/* Parse config.json text; `path` names the file in errors. */
int model_config_parse(const char *text, size_t len, const char *path, model_config *cfg);
/* Number of parameters of the dense model (embeddings and lm_head included). */
long long model_config_params(const model_config *cfg);

#endif
