/* finetune/run/run.h - a model put to work: the run context every command
 * opens, and what runs on it: evaluation, the merged model folder, and the
 * engine's debugging window (ds-ft dump).
 *
 * ds_run_open() opens, in this order, the backend, the tokenizer, the model
 * (quantized to NF4 on load when asked, or a bitsandbytes checkpoint as it is)
 * and an adapter (a PEFT folder, or a new one initialised from a seed);
 * ds_run_start() then sets up the engine for a batch shape. ds_run_close()
 * releases what was opened, in reverse. Train, eval, generate, dump and merge
 * all go through it. */
#ifndef DS_FINETUNE_RUN_H
#define DS_FINETUNE_RUN_H

#include "finetune/engine/engine.h"
#include "finetune/model/model.h"

#include "adapters/lora.h"
#include "adapters/merge.h"
#include "backend/backend.h"
#include "data/dataset/dataset.h"
#include "data/tokenizer/tokenizer.h"

#include <stdbool.h>

/* ---- the run context (context.c) ---- */

typedef struct {
    be_kind device;                 /* BE_AUTO, BE_CPU or BE_CUDA; ignored with no_backend */
    bool no_backend;                /* merge: the model and adapter only */
    const char *model_dir;          /* the base model folder */
    const char *tokenizer_dir;      /* NULL: the model folder; ignored with no_tokenizer */
    bool no_tokenizer;
    bool load_in_4bit, double_quant;/* quantize 16-bit linear layers to NF4 while loading */
    const char *adapter_dir;        /* a PEFT adapter folder to load, or NULL */
    const lora_config *new_adapter; /* or a new adapter of this shape (train), or NULL for none */
    const char *model_name;         /* the new adapter's base_model_name_or_path (a Hub id as the recipe
                                       wrote it); NULL: model_dir */
    uint64_t adapter_seed;          /* the new adapter's initialisation */
} ds_run_opts;

typedef struct {
    backend *be;                    /* NULL with no_backend */
    tokenizer *tok;                 /* NULL with no_tokenizer */
    llama_model *model;
    lora_adapter *adapter;          /* NULL: the base model alone */
    engine *eng;                    /* after ds_run_start() */
} ds_run;

/* ds_run_open() : open everything opts names; on failure nothing stays open.
 * @return DS_OK or the first failure (the message names the file). */
int ds_run_open(const ds_run_opts *opts, ds_run *r);
/* ds_run_start() : set up the engine (eo->adapter is taken from the context).
 * @return DS_OK, or DS_ENOMEM/DS_ETRAIN when the model does not fit. */
int ds_run_start(ds_run *r, const engine_opts *eo);
/* ds_run_close() : release everything, in reverse order of opening. */
void ds_run_close(ds_run *r);

/* ---- evaluation (eval.c): domain accuracy and held-out loss ----
 * Multiple choice is scored as lm-evaluation-harness does: the log-likelihood
 * of each choice's continuation given the prompt; acc takes the most likely
 * choice, acc_norm the most likely per character of the continuation. Loss
 * and perplexity are the mean token cross-entropy over the trained tokens of
 * held-out examples. */

typedef struct {
    long n;                 /* examples scored */
    double acc, acc_norm;   /* multiple choice */
    double loss, perplexity;/* held-out loss (mean nll per token) */
    long tokens;
    /* multiple choice, per example i: choice k's log-likelihood at
     * loglik[first[i] + k]; the predicted choices. */
    double *loglik;
    long *first;
    int *pred, *pred_norm;
} eval_result;

/* Score `limit` (-1 = all) examples of an EX_MCQ dataset, with or without
 * the adapters, at most max_rows rows per forward. */
int eval_mcq(engine *e, const dataset *d, bool lora, long limit, int max_rows, eval_result *out);
/* Held-out loss over an EX_SFT dataset. */
int eval_loss(engine *e, const dataset *d, bool lora, long limit, int max_rows, eval_result *out);
void eval_result_free(eval_result *r);

/* ---- a language model's score of texts (score.c): the mean negative
 * log-likelihood per predicted token under the base model (no adapter), the
 * cleaner's quality score (data/clean/clean.h: clean_scorer) ---- */

typedef struct text_scorer text_scorer;
/* An inference engine of its own on `be` and `m` (shared, not owned: they
 * must outlive the scorer) for `batch` texts of at most max_T tokens (longer
 * texts are scored on their first max_T). */
int text_scorer_open(backend *be, const llama_model *m, const tokenizer *tok, int max_T, int batch, text_scorer **out);
/* nll[i] for texts[i] (lens[i] bytes), n <= batch: clean_scorer.score. */
int text_scorer_score(void *scorer, int n, const char *const *texts, const size_t *lens, double *nll);
void text_scorer_free(text_scorer *s);

/* ---- the merged model folder (merge.c): W' = W + s·B·A, bf16 safetensors,
 * config.json without quantization_config, tokenizer and generation files
 * copied ---- */

/* Write the merged model of m (+ adapter a, may be NULL) into out_dir,
 * atomically. MERGE_DEQUANTIZED on a 16-bit model that was not quantized
 * is the same as MERGE_ORIGINAL; MERGE_ORIGINAL on a 4-bit checkpoint has
 * no original weights and is refused. */
int merge_write(const llama_model *m, const lora_adapter *a, merge_source src, const char *out_dir);

/* The weight of linear (layer, slot) (model_slot(): a llama_linear, or a
 * deepseek_slot) as the chosen source gives it, with the adapter merged in:
 * (out, in) fp32 into W. `cpu` (a CPU backend) dequantizes NF4 weights. */
int merge_linear(backend *cpu, const llama_model *m, const lora_adapter *a, merge_source src, int layer, int slot,
                 float *W);

/* ---- ds-ft dump (dump.c): run the engine on a reference input and write
 * what it computed under the names of fixtures/tiny-llama/reference.safetensors ---- */

typedef struct {
    const char *model_dir;
    const char *adapter_dir;   /* may be NULL: base outputs only */
    const char *input;         /* safetensors with input_ids, labels, optional dpo.* */
    const char *out;           /* safetensors to write */
    const char *device;        /* auto | cpu | cuda (NULL = auto) */
    bool load_in_4bit;         /* quantize the model to NF4 while loading */
} dump_request;

int dump_run(const dump_request *r);

#endif
