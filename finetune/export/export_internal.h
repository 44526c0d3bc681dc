/* finetune/export/export_internal.h - what the GGUF exporter's files share. */
#ifndef DS_FINETUNE_EXPORT_INTERNAL_H
#define DS_FINETUNE_EXPORT_INTERNAL_H

#include "gguf_export.h"

#include "adapters/lora.h"
#include "backend/backend.h"
#include "data/gguf/gguf.h"
#include "data/model_config.h"
#include "data/safetensors.h"

#include <stdbool.h>
#include <stdint.h>

/* One model family: how llama.cpp's converter writes it. */
typedef struct {
    const char *hf_arch;    /* config.json "architectures"[0] */
    const char *arch;       /* general.architecture */
    bool permute_qk;        /* llama.cpp's llama graph rotates adjacent pairs, transformers rotates halves:
                               the converter reorders the rows of each Q and K head */
    bool qkv_bias;          /* q/k/v projections carry biases (Qwen2) */
    bool qk_norm;           /* per-head RMSNorm of q and k (Qwen3) */
    bool llama_keys;        /* the llama converter's extras: {arch}.vocab_size, rope.dimension_count,
                               and llama3 rope scaling as the rope_freqs tensor */
    bool deepseek2;         /* DeepSeek-V2/V3: MLA + experts (export_deepseek.c) */
} export_family;

typedef struct {
    const export_family *fam;
    model_config cfg;       /* dims as ds-ft's structs take them (lora_load_peft, llama_linear_shape) */
    bool head_dim_given;    /* config.json names head_dim: attention.key_length / value_length are written */
    bool rope_theta_given;
    char rope_type[16];     /* "" (none), "linear" or "llama3" */
    double rope_factor;
    double low_freq_factor, high_freq_factor, orig_ctx;   /* llama3 */
    bool quantized;         /* a bitsandbytes 4-bit checkpoint */
    char name[128];         /* general.name: the folder's name */
} export_model;

/* ---- the plan: every tensor llama.cpp reads, where it comes from ---- */

typedef struct exporter exporter;

typedef enum {
    ITEM_PLAIN,         /* a checkpoint tensor as it is (norms, biases, embeddings, DeepSeek's router) */
    ITEM_LINEAR,        /* linear (layer, slot), the adapter merged in */
    ITEM_EXPERTS,       /* DeepSeek: routed experts 0..ne2-1's (layer, slot + 3e), stacked (ne2, rows, cols) */
    ITEM_K_B, ITEM_V_B, /* DeepSeek: kv_b_proj (adapter merged) split per head, k_b transposed */
    ITEM_ROPE_FREQS,    /* llama3 rope scaling */
} item_kind;

typedef struct {
    exporter *ex;
    char name[GGUF_MAX_NAME + 1];   /* GGUF name */
    char hf[160];                   /* checkpoint name (EXPERTS: expert 0's; K_B, V_B: kv_b_proj's); empty for rope_freqs */
    item_kind kind;
    int layer, slot;                /* LINEAR, EXPERTS, K_B, V_B: the layer and the linear's slot (model_slot()) */
    int permute_heads;              /* > 0: reorder the rows of this many heads (llama's Q and K) */
    int rope_heads, rope_head_rows, rope_offset, rope_dim;  /* > 0: DeepSeek's rope rows of each head, halves to pairs */
    int64_t rows, cols, ne2;        /* torch shape (ne2, rows, cols); a vector has rows = 1; ne2 = 1 but for 3-D */
    int ndim;
    int type;                       /* ggml type written */
} plan_item;

struct exporter {
    const char *dir;
    export_model m;
    st_set *st;
    backend *cpu;
    lora_adapter *ad;
    bool merge_original;
    bool has_output;        /* output.weight is written (else llama.cpp ties it to token_embd) */
    plan_item *items;
    int n;
    size_t cap;
};

/* export_add_item(ex, name, hf, ndim, rows, cols, out) : one more tensor in
 * the plan (ITEM_PLAIN, layer -1), handed back in *out (may be NULL). */
int export_add_item(exporter *ex, const char *name, const char *hf, int ndim, int64_t rows, int64_t cols,
                    plan_item **out);
/* export_check_source(ex, it, may_be_4bit) : it->hf is in the checkpoint, a
 * 16/32-bit tensor of the planned shape (or a bitsandbytes 4-bit weight). */
int export_check_source(const exporter *ex, const plan_item *it, bool may_be_4bit);
/* export_read_linear(ex, hf, layer, slot, rows, cols, W) : linear weight hf
 * (rows, cols) in fp32, as the merge reads it (a 4-bit one dequantized; with
 * the adapter and the dequantized source, the 16-bit weight's NF4 round
 * trip), the adapter's s·B·A of (layer, slot) added. */
int export_read_linear(const exporter *ex, const char *hf, int layer, int slot, int64_t rows, int64_t cols, float *W);

/* ---- DeepSeek-V2/V3 as llama.cpp's deepseek2 (export_deepseek.c) ---- */

/* export_deepseek_config(dir, m) : the config as ds-ft reads it (model_config_load). */
int export_deepseek_config(const char *dir, export_model *m);
/* export_deepseek_plan_layer(ex, l) : layer l's tensors. */
int export_deepseek_plan_layer(exporter *ex, int l);
/* export_deepseek_keys(w, m) : the deepseek2.* keys beyond the common ones. */
int export_deepseek_keys(gguf_writer *w, const export_model *m);
/* export_deepseek_fill(it, W) : an EXPERTS, K_B or V_B item's values, fp32. */
int export_deepseek_fill(const plan_item *it, float *W);
/* export_deepseek_rope_pairs(it, W) : the rope rows of each head (it->rope_*)
 * reordered from halves to pairs, for checkpoints with rope_interleave false. */
int export_deepseek_rope_pairs(const plan_item *it, float *W);
/* export_deepseek_expert_prefix(it, name) : the length of the expert weight
 * name ("model.layers.L.mlp.experts.E.up_proj.weight") of an EXPERTS item
 * that `name` starts with, or 0. */
size_t export_deepseek_expert_prefix(const plan_item *it, const char *name);

/* export_model_load(dir, m) : DIR/config.json read for the export; an
 * unknown architecture, activation, rope type or active sliding window is
 * DS_EDATA naming the key. */
int export_model_load(const char *dir, export_model *m);

/* export_arch_keys(w, m, file_type) : general.* and {arch}.* keys, as the
 * converter writes them. */
int export_arch_keys(gguf_writer *w, const export_model *m, uint32_t file_type);

/* export_rope_factors(m, out) : llama3 rope scaling as per-frequency divisors
 * (head_dim / 2 of them), as the converter computes rope_freqs.weight. */
void export_rope_factors(const export_model *m, float *out);

/* export_vocab(w, dir, m, pre, pre_out, n) : the tokenizer.ggml.* keys and
 * tokenizer.chat_template from DIR's tokenizer files; pre overrides the
 * pre-tokenizer name (NULL: recognised from tokenizer.json or refused);
 * the name written goes to pre_out. */
int export_vocab(gguf_writer *w, const char *dir, const export_model *m, const char *pre, char *pre_out, size_t n);

/* What export_recognise_pre finds in a tokenizer.json "pre_tokenizer". */
typedef struct {
    bool byte_level;        /* it has a ByteLevel step: the vocabulary is llama.cpp's "gpt2" kind */
    const char *name;       /* llama.cpp's name for it, NULL when it is none of the known ones */
    char desc[160];         /* its steps, for messages ("Split + Split + ByteLevel") */
} export_pre_info;

/* export_recognise_pre(pre_tokenizer, info) : the name llama.cpp gives this
 * pre-tokenizer (deepseek-v3, llama-bpe, qwen2, deepseek-llm, deepseek-coder,
 * gpt-2). @return DS_OK, or DS_ENOMEM (message set). */
#include <jansson.h>
int export_recognise_pre(const json_t *pre_tokenizer, export_pre_info *info);
/* export_pre_accepted(name) : llama.cpp (the release node-llama-cpp 3.21.1
 * ships) accepts this tokenizer.ggml.pre for a byte-level BPE. */
bool export_pre_accepted(const char *name);

/* export_permute_rows(W, rows, cols, heads) : W (rows, cols) with the rows of
 * each of `heads` heads reordered from halves [x0..x(D/2-1), y0..] to pairs
 * [x0, y0, x1, y1, ...], as convert_hf_to_gguf.py's LlamaModel.permute.
 * @return DS_OK, or DS_EINTERNAL out of memory. */
int export_permute_rows(float *W, int rows, int cols, int heads);

/* export_layer_tensor(hf_path) : the GGUF name of a decoder-layer tensor
 * ("self_attn.q_proj" -> "attn_q"), @return NULL when unknown. */
const char *export_layer_tensor(const char *hf_path);

#endif
