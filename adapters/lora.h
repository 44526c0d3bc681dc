/* adapters/lora.h - LoRA adapters on the host: configuration, parameter
 * layout, initialisation, and the PEFT files other tools load.
 *
 * All parameters of an adapter live in one fp32 block, module after module
 * (layer 0 q_proj A, B, layer 0 v_proj A, B, ...), so the engine copies it in
 * one transfer and the optimizer and gradient norm run over one array.
 */
#ifndef DS_ADAPTERS_LORA_H
#define DS_ADAPTERS_LORA_H

#include "data/model_config.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int r;
    double alpha;
    double dropout;
    bool use_rslora;
    unsigned targets;          /* bit (1 << LIN_*) per targeted linear layer, and the
                                  LORA_T_* bits of DeepSeek's MLA projections */
} lora_config;

/* Target bits beyond the seven Llama linears: DeepSeek's MLA projections.
 * DeepSeek's gate_proj/up_proj/down_proj targets (LIN_GATE...) take the
 * dense MLP's, the shared experts' and every routed expert's, as PEFT's
 * name matching does. */
enum { LORA_T_Q_A = LIN_COUNT, LORA_T_Q_B, LORA_T_KV_A, LORA_T_KV_B, LORA_T_COUNT };
/* "q_proj|...|down_proj|q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj" (the recipe's lora_target_modules) */
#define LORA_TARGET_NAMES LLAMA_LINEAR_NAMES "|q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj"
/* The target bit of a module name ("kv_b_proj" -> LORA_T_KV_B), or -1. */
int lora_target_bit(const char *name);

typedef struct {
    lora_config cfg;
    int nlayers;
    int nslots;                          /* modules per layer: LIN_COUNT (Llama order), or deepseek_slots() */
    model_config model;                  /* the model's config: DeepSeek modules' shapes and names */
    int in[LIN_COUNT], out[LIN_COUNT];   /* weight shapes of each linear layer */
    size_t nparams;                      /* floats in data */
    float *data;                         /* (nparams) all A and B matrices */
    /* offset[l * nslots + t] of module (l, t)'s A in data (its B follows
     * at + r*in), or SIZE_MAX when (l, t) is not adapted. */
    size_t *offset;
    char *base_model;                    /* base_model_name_or_path */
} lora_adapter;

/* s = alpha / r, or alpha / sqrt(r) with rsLoRA. */
float lora_scale(const lora_config *c);
/* Parse "q_proj" ... into a target mask; DS_ECONFIG naming the bad one. */
int lora_targets_parse(char *const *names, int n, unsigned *mask);

/* An adapter for `model` laid out as `cfg` says, parameters zeroed. */
int lora_create(const model_config *model, const lora_config *cfg, const char *base_model, lora_adapter **out);
void lora_free(lora_adapter *a);
/* PEFT's default init: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform, a = sqrt(5)), B = 0. */
void lora_init(lora_adapter *a, uint64_t seed);

/* Pointers to module (layer, t)'s A (r, in) and B (out, r), or NULL. */
float *lora_A(const lora_adapter *a, int layer, llama_linear t);
float *lora_B(const lora_adapter *a, int layer, llama_linear t);

/* PEFT tensor names: "base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight". */
void lora_key(char *buf, size_t n, int layer, llama_linear t, char which /* 'A' or 'B' */);

/* Any model's modules by slot (t < a->nslots; Llama: slot = llama_linear):
 * A (r, in) or NULL where not adapted, the weight's [out, in] (false where
 * the layer has no such module), the PEFT key. */
float *lora_slot_A(const lora_adapter *a, int layer, int slot);
float *lora_slot_B(const lora_adapter *a, int layer, int slot);   /* (out, r), or NULL */
bool lora_slot_shape(const lora_adapter *a, int layer, int slot, int *out, int *in);
void lora_slot_key(const lora_adapter *a, char *buf, size_t n, int layer, int slot, char which);

/* Read a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)
 * for `model`. Shapes that do not fit the model, missing tensors, unknown
 * tensors and PEFT features not implemented (DoRA, rank patterns, biases,
 * modules_to_save, ...) are DS_EDATA naming the file and key. */
int lora_load_peft(const char *dir, const model_config *model, lora_adapter **out);
/* lora_config_parse() : adapter_config.json's text into a config and the
 * base_model_name_or_path (malloc'd); what the engine does not implement is
 * refused by name. @return DS_OK or DS_EDATA naming PATH and the key. */
int lora_config_parse(const char *path, const char *text, size_t len, lora_config *c, char **base);

/* ---- checks (lora_check.c) ---- */
/* lora_config_check_kinds() : the keys of adapter_config.json that PEFT
 * defines are of the kind and range PEFT gives them ("lora_alpha": "big" is
 * refused); unknown keys are ignored, as PEFT ignores them.
 * @return DS_OK or DS_EDATA "PATH: key \"K\" must be ...". */
int lora_config_check_kinds(const json_t *root, const char *path);
/* lora_check_finite() : DS_EDATA "FILE: tensor 'NAME' holds NaN at [i]" for
 * the first NaN or infinity of x[0..n). */
int lora_check_finite(const float *x, size_t n, const char *file, const char *name);
/* lora_check_adapter() : the same over every A and B of an adapter; `what`
 * names it ("the adapter to write"). */
int lora_check_adapter(const lora_adapter *a, const char *what);
/* lora_check_files() : an adapter's two files as a bundle carries them, in
 * memory: the config (lora_config_check_kinds and the loader's checks) and a
 * well-formed safetensors image whose every tensor is a PEFT LoRA key of a
 * target module, 2-D float with the config's rank, finite. */
int lora_check_files(const char *cfg_text, size_t cfg_len, const void *st, size_t st_len, const char *what);

/* Write a PEFT adapter folder atomically (fp32 tensors). */
int lora_save_peft(const lora_adapter *a, const char *dir);
/* The two PEFT files into an existing folder (each file atomically). */
int lora_write_peft_files(const lora_adapter *a, const char *dir);

#endif
