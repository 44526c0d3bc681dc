/* finetune/export/export_internal.h - what the GGUF exporter's files share. */
#ifndef DS_FINETUNE_EXPORT_INTERNAL_H
#define DS_FINETUNE_EXPORT_INTERNAL_H

#include "gguf_export.h"

#include "data/gguf/gguf.h"
#include "data/model_config.h"

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
