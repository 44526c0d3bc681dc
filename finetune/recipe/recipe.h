/* finetune/recipe/recipe.h - the YAML recipe that drives a run, as one typed struct.
 *
 * recipe_load() reads the file, applies `a.b=value` overrides from the command
 * line, fills defaults, checks types and ranges, and resolves aliases that
 * users of LLaMA-Factory or torchtune type (lora_rank, cutoff_len, ...) with a
 * one-line notice. Errors are DS_ECONFIG (78) with file:line:key and, for an
 * unknown key, a "did you mean" suggestion. Every key, its default and its
 * help line come from the option tables in recipe.c (and the loss modules'
 * own tables), which `ds-ft --help` prints.
 */
#ifndef DS_FINETUNE_RECIPE_H
#define DS_FINETUNE_RECIPE_H

#include "adapters/merge.h"
#include "backend/backend.h"
#include "core/options.h"
#include "data/dataset/dataset.h"
#include "losses/loss.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef data_source recipe_dataset;
struct clean_config;   /* data/clean/clean.h */

typedef enum { LR_CONSTANT, LR_LINEAR, LR_COSINE } lr_kind;

/* The recipe resolved once, at load, into what a run reads: counts as ints,
 * choices as enums, derived shapes computed in one place (recipe_plan.c). */
typedef struct {
    be_kind device;            /* BE_AUTO, BE_CPU or BE_CUDA */
    int seq_len;               /* data.sequence_len: the longest row */
    int micro_batch;           /* examples per micro-batch (train.micro_batch_size) */
    bool paired;               /* the main loss trains on preference pairs: 2 rows per example */
    bool needs_ref;            /* the main loss wants reference log-probs (the model without adapters) */
    int rows;                  /* rows per micro-batch: micro_batch, twice that when paired */
    int accum;                 /* micro-batches per optimizer step */
    bool packing;              /* sample packing (never for pairs) */
    int eval_rows;             /* rows per evaluation forward (eval.batch_size) */
    lr_kind lr_scheduler;
    merge_source merge_source;
    data_options data;         /* tokenization: chat template, sequence_len, masking, bad lines */
} run_plan;   /* one entry of data.datasets / eval.datasets */

typedef struct {
    const loss_module *module;
    void *cfg;             /* the module's config struct (module->cfg_size bytes) */
    int line;
} recipe_loss;

typedef struct {
    run_plan plan;                 /* the typed plan every consumer reads (filled at load) */
    char *file;                    /* the recipe's path (paths in the recipe are relative to the current directory) */

    char *base_model;              /* model folder, or a Hugging Face model id until recipe_resolve_inputs() */
    char *tokenizer;               /* tokenizer folder (default: base_model) */
    char *base_model_name;         /* base_model as written (a Hub id or a path), set by recipe_resolve_inputs() */
    char *output_dir;
    int64_t seed;
    char *device;                  /* auto | cpu | cuda */

    struct {
        bool load_in_4bit;
        char *quant_type;          /* nf4 */
        bool double_quant;
        char *compute_dtype;       /* bf16 (the only one the CUDA kernels implement) */
    } quant;

    struct {
        int64_t lora_r;
        double lora_alpha;
        double lora_dropout;
        opt_strings lora_target_modules;   /* q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj */
        bool use_rslora;
        char *init_from;           /* start from an existing PEFT adapter folder, or NULL */
    } adapter;

    struct {
        char *chat_template;       /* CHAT_TEMPLATE_CHOICES: auto | deepseek | llama3 | chatml | alpaca | plain */
        int64_t sequence_len;
        bool sample_packing;
        double val_set_size;       /* fraction (< 1) or count (>= 1) held out from training data */
        bool train_on_inputs;      /* false: prompt tokens are masked */
        bool skip_bad_lines;       /* true: malformed lines are counted and skipped, not fatal */
        bool shuffle;
        recipe_dataset *datasets;
        int n_datasets;
    } data;

    struct {
        recipe_loss main;          /* sft | dpo | ... */
        recipe_loss *penalties;    /* forbidden_tokens, ... */
        int n_penalties;
    } loss;

    struct {
        int64_t micro_batch_size;
        int64_t gradient_accumulation_steps;
        double num_epochs;
        int64_t max_steps;         /* -1 = from num_epochs */
        double learning_rate;
        char *lr_scheduler;        /* cosine | linear | constant */
        double warmup_ratio;
        int64_t warmup_steps;      /* -1 = from warmup_ratio */
        double weight_decay;
        double max_grad_norm;      /* 0 = no clipping */
        double adam_beta1, adam_beta2, adam_epsilon;
        bool gradient_checkpointing;
        char *offload_activations; /* auto | true | false: each layer's input in host memory */
        char *keep_attention;      /* auto | true | false: each layer's attention output kept for the backward */
        char *keep_projections;    /* auto | true | false: with it, layers' q, k, v and residual kept on the GPU */
        int64_t logging_steps;
        double divergence_factor;  /* stop when loss > factor * best-so-far moving loss; 0 = off */
        bool tensorboard;          /* also write the metrics as a TensorBoard event file */
    } train;

    struct {
        recipe_dataset *datasets;
        int n_datasets;
        bool before_training;
        int64_t every_steps;       /* 0 = only before/after */
        int64_t limit;             /* -1 = all examples */
        int64_t batch_size;
    } eval;

    /* clean: the training data cleaned before tokenization (recipe_clean.c). No
     * clean: key = only the contamination check against the eval datasets;
     * `clean: off` = nothing; a mapping = every rule, its keys as clean.yaml's. */
    struct {
        struct clean_config *cfg;  /* every key (defaults included); NULL with `clean: off` */
        bool rules;                /* a clean: mapping was given: every rule runs */
    } clean;

    struct {
        double aux_loss_alpha;     /* the balance loss's coefficient; -1 = the model's aux_loss_alpha, 0 = off */
        double capacity_factor;    /* an expert takes at most factor x its even share of a layer's slots; 0 = off */
    } moe;                         /* mixture-of-experts models (DeepSeek-V2/V3) only */

    struct {
        int64_t every_steps;       /* 0 = only at the end */
        int64_t keep_last;
        bool merge;
        char *merge_source;        /* dequantized | original */
    } save;
} recipe;

/* Load `path` with overrides ("train.learning_rate=1e-4"). Notices (aliases
 * used) are printed to `notices` (may be NULL). */
int recipe_load(const char *path, char *const *overrides, int n_overrides, FILE *notices, recipe **out);
/* Parse from memory (fuzzing, tests); `path` names it in messages. */
int recipe_parse(const char *text, size_t len, const char *path, char *const *overrides, int n_overrides,
                 FILE *notices, recipe **out);
void recipe_free(recipe *r);
/* One loss section from YAML text ("{type: dpo, beta: 0.2}"), checked and with
 * every default, for tools that run a loss outside a recipe (dump, bench). */
int recipe_loss_parse(const char *yaml, bool penalty, recipe_loss *out);
void recipe_loss_free(recipe_loss *l);
/* Write the resolved recipe (every key, defaults included) as YAML. */
int recipe_write(const recipe *r, const char *path);
/* The same YAML to a stream (ds-ft validate prints it to stdout). */
int recipe_print(const recipe *r, FILE *f);
/* Print every key with its default and help line (ds-ft --help). */
void recipe_print_keys(FILE *f);
/* recipe_check_inputs() : every path the recipe reads exists, before a run
 * writes anything: base_model, tokenizer (when it is not base_model),
 * adapter.init_from (folders), the data and eval datasets (readable files).
 * @return DS_OK or DS_ENOINPUT "RECIPE: KEY: PATH: no such model folder" (data
 * file, ...), naming the first key that fails (recipe_inputs.c). */
int recipe_check_inputs(const recipe *r);
/* recipe_at_default() : whether numeric or boolean key SECTION.KEY ("adapter",
 * "lora_r") holds its default value (written out or not). */
bool recipe_at_default(const recipe *r, const char *section, const char *key);
/* recipe_resolve_inputs() : find what a run reads before it starts: base_model
 * and tokenizer become folders (a Hugging Face model id "org/name[@revision]"
 * is looked up in the local Hub cache, data/hub/hub.h; the line saying where
 * goes to `notices`, may be NULL), and every data and eval file must exist.
 * @return DS_OK, or DS_ENOINPUT naming the recipe and the key that pointed at
 * the missing input ("base_model: ...", "data.datasets[0].path: ...") with
 * the places looked and the download command (recipe_resolve.c). */
int recipe_resolve_inputs(recipe *r, FILE *notices);

#endif
