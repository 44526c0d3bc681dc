/* finetune/export/gguf_export.h - a Hugging Face model folder as one GGUF
 * file for llama.cpp, Ollama and LM Studio, and a PEFT adapter as
 * llama.cpp's LoRA GGUF.
 *
 * The model's tensors get the names, shapes and row orders llama.cpp's
 * convert_hf_to_gguf.py gives them (for the llama architecture the Q and K
 * rows of each head are reordered for its rope); the tokenizer (byte-level
 * BPE: vocabulary, token types, merges, pre-tokenizer name, special ids,
 * add_bos/add_eos) and the chat template go into the metadata. Quantized
 * types follow llama-quantize: which tensors get which type (q4_k_m's mix,
 * the fallbacks for rows that are not a whole number of blocks), and the
 * bytes its reference quantizers write (quant/ggml_quant.h).
 *
 * Families are table entries (export_family.c): llama (DeepSeek LLM, Llama
 * 1-3), qwen2 (Qwen2/2.5, DeepSeek-R1-Distill-Qwen), qwen3.
 */
#ifndef DS_FINETUNE_EXPORT_GGUF_EXPORT_H
#define DS_FINETUNE_EXPORT_GGUF_EXPORT_H

#include "data/gguf/gguf.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    GGUF_EXPORT_F16, GGUF_EXPORT_BF16, GGUF_EXPORT_Q8_0, GGUF_EXPORT_Q4_0, GGUF_EXPORT_Q4_K_M, GGUF_EXPORT_F32
} gguf_export_type;

/* gguf_export_type_parse(s, out) : "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"
 * (NULL: q4_k_m), @return DS_OK or DS_EUSAGE naming the choices. */
int gguf_export_type_parse(const char *s, gguf_export_type *out);

typedef struct {
    gguf_export_type type;
    const char *adapter_dir;    /* a PEFT adapter merged in first (W + s·B·A), or NULL */
    bool merge_original;        /* merge into the 16-bit weights, not their NF4 round trip
                                   (ds-ft merge --source original vs dequantized, the default) */
    const char *pre;            /* tokenizer.ggml.pre to write instead of the one recognised, or NULL */
} gguf_export_opts;

typedef struct {
    char arch[16];              /* general.architecture */
    char pre[32];               /* tokenizer.ggml.pre (empty for an adapter) */
    int ntensors;
    int per_type[GGML_NTYPES];  /* tensors written per ggml type */
    int fallbacks;              /* tensors whose rows are not a whole number of the planned type's blocks */
    size_t data_bytes;          /* tensor data written */
} gguf_export_report;

/* gguf_export_model(model_dir, opts, out_path, report) : write the model
 * (16-bit, or a bitsandbytes 4-bit checkpoint dequantized) as GGUF at
 * out_path, atomically (an existing file is replaced: the caller decides).
 * Refused by name, nothing written: an architecture, rope type, tensor or
 * tokenizer component the export does not know (a pre-tokenizer it cannot
 * name unless opts->pre), a NaN or infinite weight (DS_EDATA). report may be
 * NULL. @return DS_OK or a status. */
int gguf_export_model(const char *model_dir, const gguf_export_opts *opts, const char *out_path,
                      gguf_export_report *report);

/* gguf_export_lora(model_dir, adapter_dir, out_path, report) : the adapter as
 * llama.cpp's LoRA GGUF (general.type "adapter", adapter.type "lora",
 * adapter.lora.alpha; blk.N.attn_q.weight.lora_a (ne {in, r}) and .lora_b
 * (ne {r, out}) in f32, lora_b's Q/K rows reordered as the weights are).
 * The model folder gives the architecture; its weights are not read.
 * @return DS_OK or a status. */
int gguf_export_lora(const char *model_dir, const char *adapter_dir, const char *out_path,
                     gguf_export_report *report);

#endif
