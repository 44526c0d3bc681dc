/* quant/bnb.h - bitsandbytes 4-bit checkpoints, the "...-bnb-4bit" model
 * folders that transformers saves and the Hub carries.
 *
 * Per quantized linear layer P (e.g. model.layers.0.self_attn.q_proj) a
 * checkpoint holds, next to the 16-bit embeddings, norms and lm_head:
 *   P.weight                                 U8 (ceil(n/2), 1)  packed codes, even element high
 *   P.weight.absmax                          U8 (nblocks) with double quantization, else F32
 *   P.weight.nested_absmax                   F32 (nblocks2)      double quantization only
 *   P.weight.nested_quant_map                F32 (256)           double quantization only
 *   P.weight.quant_map                       F32 (16)
 *   P.weight.quant_state.bitsandbytes__nf4   U8 (len)  the bytes of a JSON object:
 *     {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [out, in],
 *      "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.52...}
 * and config.json carries a "quantization_config" object.
 *
 * Loading a 4-bit model in the engine:
 *   bnb_config_load(dir, &qc);                  // refuses 8-bit / fp4 / other methods
 *   st_set_open(dir, &set);
 *   for each linear weight name W:
 *       nf4_tensor t = {0};
 *       bnb_load_weight(set, W, &t)             // pre-quantized checkpoint
 *    or bnb_weight_or_quantize(set, W, dq, &t)  // either kind of folder
 *       const nf4_view *v = nf4_tensor_view(&t);
 */
#ifndef DS_QUANT_BNB_H
#define DS_QUANT_BNB_H

#include "nf4.h"
#include "data/safetensors.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>

/* ---- config.json "quantization_config" ---- */
typedef struct {
    bool present;               /* config.json has a quantization_config object */
    bool double_quant;          /* bnb_4bit_use_double_quant */
    char quant_type[8];         /* bnb_4bit_quant_type: "nf4" */
    char compute_dtype[16];     /* bnb_4bit_compute_dtype: "bfloat16", "float16", "float32" */
    char quant_storage[16];     /* bnb_4bit_quant_storage: "uint8", ... */
} bnb_config;

/* Read DIR/config.json's quantization_config. Absent: present = false, DS_OK.
 * Anything ds-ft cannot load as 4-bit NF4 (another quant_method, 8-bit,
 * fp4) is DS_EDATA naming the key. */
int bnb_config_load(const char *model_dir, bnb_config *cfg);
int bnb_config_parse(const char *text, size_t len, const char *path, bnb_config *cfg);
/* The same from config.json already parsed (model_config_load_json); `path`
 * names it in messages. */
int bnb_config_from_json(const json_t *config, const char *path, bnb_config *cfg);

/* ---- reading one weight ---- */

/* Whether `weight_name` ("...q_proj.weight") is stored quantized: its
 * quant_state tensor (any bitsandbytes__* kind) is present. */
bool bnb_is_quantized(const st_set *s, const char *weight_name);

/* Load a quantized weight into host memory (out is overwritten; free it with
 * nf4_tensor_free). Everything is checked against everything else: the
 * quant_state JSON (quant_type nf4, blocksize 64, 16-bit dtype, 2-D shape,
 * nested keys) against the tensors' dtypes and sizes. Any disagreement is
 * DS_EDATA naming the folder, the tensor and the key. */
int bnb_load_weight(const st_set *s, const char *weight_name, nf4_tensor *out);

/* The engine's single entry: load the weight if it is stored quantized, else
 * quantize the 16-bit weight here (double_quant as the recipe says). */
int bnb_weight_or_quantize(const st_set *s, const char *weight_name, bool double_quant, nf4_tensor *out);

/* Whether a tensor name is one of the decoder's linear weights that a 4-bit
 * model stores quantized: model.layers.N.self_attn.{q,k,v,o}_proj.weight and
 * model.layers.N.mlp.{gate,up,down}_proj.weight; DeepSeek's
 * self_attn.{q_a,q_b,kv_a_proj_with_mqa,kv_b}_proj, mlp.shared_experts.* and
 * mlp.experts.E.* too (never the router, mlp.gate). */
bool bnb_is_linear_weight(const char *name);

/* The quant_state JSON bytes bitsandbytes writes for this tensor (keys in
 * its order, Python's formatting). malloc'd, NUL-terminated; NULL when out of
 * memory (message set, status DS_ENOMEM). */
char *bnb_quant_state_json(const nf4_view *v);

/* ---- writing a whole model folder ---- */
typedef struct {
    bool double_quant;          /* default true, as "...-bnb-4bit" models are */
} bnb_quantize_opts;

typedef struct {
    int quantized;              /* linear weights quantized */
    int copied;                 /* tensors kept in 16-bit */
    long long params_4bit;      /* weights now stored in 4 bits */
    size_t bytes;               /* tensor data written */
} bnb_quantize_report;

/* Read the 16-bit Hugging Face model folder src_dir and write out_dir in
 * bitsandbytes' format (model.safetensors, config.json with
 * quantization_config, generation_config.json and tokenizer files copied).
 * The folder is built under a temporary name and renamed at the end, so a
 * failure leaves nothing at out_dir. opts and report may be NULL. */
int bnb_quantize_model(const char *src_dir, const char *out_dir, const bnb_quantize_opts *opts,
                       bnb_quantize_report *report);

#endif
