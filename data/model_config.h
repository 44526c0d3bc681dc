/* data/model_config.h - a Hugging Face config.json, read into an architecture
 * description that everything downstream follows (the engine and its CPU and
 * CUDA ops, the 4-bit loader, merge, quantize, export).
 *
 * Families: LlamaForCausalLM (DeepSeek LLM/Coder, Llama-3.x with llama3 rope
 * scaling, DeepSeek-R1-Distill-Llama), MistralForCausalLM (sliding window),
 * Qwen2ForCausalLM (q/k/v biases; DeepSeek-R1-Distill-Qwen), Qwen3ForCausalLM
 * (per-head q/k RMSNorm, explicit head_dim). RoPE: default, linear, llama3,
 * yarn. Both key styles: the older (`rope_theta`, `rope_scaling`,
 * `torch_dtype`, used by DeepSeek checkpoints) and the newer
 * (`rope_parameters`, `dtype`). Anything the engine would not honour (other
 * architectures, rope types, activations) is refused with a message naming
 * the key, never ignored.
 */
#ifndef DS_DATA_MODEL_CONFIG_H
#define DS_DATA_MODEL_CONFIG_H

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>

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

typedef enum { FAMILY_LLAMA, FAMILY_MISTRAL, FAMILY_QWEN2, FAMILY_QWEN3, FAMILY_DEEPSEEK_V2, FAMILY_DEEPSEEK_V3 } model_family;

typedef enum { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3, ROPE_YARN } rope_type;

/* RoPE as transformers' rope init functions compute it (model_rope.c). */
typedef struct {
    rope_type type;
    double factor;                      /* linear, llama3, yarn; 1 = none */
    double low_freq_factor, high_freq_factor;   /* llama3 */
    int original_max_position;          /* llama3, yarn: the context the model was trained at */
    double beta_fast, beta_slow;        /* yarn: the ramp between extrapolated and interpolated frequencies */
    double mscale, mscale_all_dim;      /* yarn (DeepSeek): attention factor = mscale(f, mscale) / mscale(f, all) */
    double attention_factor;            /* yarn: cos/sin scaling; < 0 = computed from factor (and mscales) */
    bool truncate;                      /* yarn: round the ramp's ends to whole dimensions (default true) */
} rope_config;

/* DeepSeek-V2/V3 (model_config_deepseek.c): multi-head latent attention and
 * mixture-of-experts layers, as transformers' DeepseekV2/V3 modeling computes them. */
typedef enum { TOPK_GREEDY, TOPK_GROUP_LIMITED_GREEDY, TOPK_NOAUX_TC } moe_topk_method;
#define MOE_MAX_EXPERTS 1024   /* the most routed experts a config may have */
typedef struct {
    bool on;                    /* the model is a DeepSeek-V2/V3 */
    int q_lora_rank;            /* 0: q_proj; else q_a_proj -> q_a_layernorm -> q_b_proj */
    int kv_lora_rank;           /* kv_a_proj_with_mqa's latent width */
    int qk_nope_dim, qk_rope_dim, v_head_dim;   /* per head; the query/key head is nope + rope wide */
    bool rope_interleave;       /* rope on (even, odd) pairs of the rope part (V2 always, V3 by default) */
    float softmax_scale;        /* qk_head_dim^-0.5, times yarn's mscale(factor, mscale_all_dim)^2 */
    int first_k_dense;          /* layers [0, first_k_dense) have a dense MLP, the rest are MoE */
    int n_routed, n_shared;     /* routed experts; shared experts (one MLP n_shared times as wide) */
    int top_k;                  /* num_experts_per_tok */
    int moe_intermediate;       /* each expert's intermediate size */
    int n_group, topk_group;    /* expert groups and how many the router keeps */
    moe_topk_method topk_method;
    bool sigmoid;               /* V3: sigmoid scores + e_score_correction_bias for the choice; V2: softmax */
    bool norm_topk_prob;        /* V3: the chosen weights divided by their sum (V2's transformers ignores it) */
    double routed_scaling_factor;
    double aux_loss_alpha;      /* the config's balance-loss coefficient (the recipe's default) */
} deepseek_config;

typedef struct {
    char architecture[64];      /* "LlamaForCausalLM" */
    model_family family;
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
    double rope_factor;         /* the rope's scaling factor (rope.factor); 1 = none */
    rope_config rope;
    bool tie_word_embeddings;
    bool bias[LIN_COUNT];               /* per linear layer (llama_linear order): its weight has a bias */
    bool qk_norm;               /* RMSNorm over each head of q and k before RoPE (Qwen3) */
    int sliding_window;         /* layers from first_sliding_layer on attend to at most this many
                                   tokens (the query included); 0 = every earlier token */
    int first_sliding_layer;
    int bos_id, eos_id, pad_id; /* -1 when unknown; generation_config.json wins over config.json;
                                   a list (eos_token_id: [128001, 128009]) gives its first id */
    char dtype[16];             /* "bfloat16", "float16", "float32" or "" */
    bool quantized;             /* config.json carries quantization_config */
    deepseek_config ds;         /* DeepSeek-V2/V3 only (ds.on); then head_dim = qk_nope + qk_rope,
                                   num_kv_heads = num_heads, intermediate_size = the dense MLP's */
} model_config;



const char *llama_linear_name(llama_linear l);   /* "q_proj" */
const char *llama_linear_path(llama_linear l);   /* "self_attn.q_proj", "mlp.gate_proj" */
/* (out, in) of the weight [out, in]. */
void llama_linear_shape(const model_config *cfg, llama_linear l, int *out, int *in);
/* LIN_* for "q_proj" etc., or -1. */
int llama_linear_parse(const char *name);

/* True for DeepSeek-V2/V3 (MLA + MoE): the parts of ds-ft written for the seven
 * Llama linears (merge, quantize, export, the CUDA engine) refuse these by name. */
bool model_config_is_deepseek(const model_config *cfg);
/* "merging an adapter" -> DS_EDATA "DeepseekV2ForCausalLM: merging an adapter is not yet supported for
 * DeepSeek MoE models", or DS_OK for other families. */
int model_config_refuse_deepseek(const model_config *cfg, const char *what);

/* The linear layers of a DeepSeek decoder layer, by slot: the attention's,
 * the dense MLP's (layers before first_k_dense_replace), the shared
 * experts', then routed expert e's gate/up/down at DSL_EXPERTS + 3e + 0/1/2. */
typedef enum {
    DSL_Q, DSL_QA, DSL_QB, DSL_KVA, DSL_KVB, DSL_O, DSL_GATE, DSL_UP, DSL_DOWN, DSL_SH_GATE, DSL_SH_UP, DSL_SH_DOWN,
    DSL_EXPERTS
} deepseek_slot;
/* Slots per layer: DSL_EXPERTS + 3 n_routed. */
int deepseek_slots(const model_config *cfg);
/* Whether layer l is a MoE layer (l >= first_k_dense_replace). */
bool deepseek_is_moe(const model_config *cfg, int layer);
/* Whether layer `layer` has linear `slot`; if so its module path
 * ("self_attn.kv_b_proj", "mlp.experts.3.up_proj"; path may be NULL), the
 * name PEFT's target_modules match ("up_proj") and the weight's [out, in]. */
bool deepseek_linear(const model_config *cfg, int layer, int slot, char *path, size_t n, const char **name, int *out,
                     int *in);

/* Read DIR/config.json (+ DIR/generation_config.json for token ids). */
int model_config_load(const char *dir, model_config *cfg);
/* The same, handing back config.json's parsed object too (the caller
 * json_decref()s it), for readers of other keys (bnb_config_from_json,
 * model_config_rewrite_json) that need not parse the file again. */
int model_config_load_json(const char *dir, model_config *cfg, json_t **config);
/* Parse config.json text; `path` names the file in errors. */
int model_config_parse(const char *text, size_t len, const char *path, model_config *cfg);
/* The rotary embedding's inverse frequencies, head_dim/2 of them, computed in
 * fp32 as transformers computes them, and the factor cos and sin are scaled by
 * (1 except for yarn). */
void model_rope_freqs(const model_config *cfg, float *inv_freq, float *attention_scale);
/* model_config_context() : the longest sequence the model's positions cover:
 * max_position_embeddings, or the original context times the rope's factor
 * where a linear or yarn scaling stretches it further. @return tokens */
int model_config_context(const model_config *cfg);
/* The attention window of layer l (0 = none). */
int model_layer_window(const model_config *cfg, int layer);
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
