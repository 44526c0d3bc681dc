/* data/dataset/dataset.h - datasets, chat templates, tokenized examples and the
 * order in which a run visits them.
 *
 * Files are JSONL or JSON (an array of objects), optionally zstd-compressed
 * (.zst, stream-decompressed). Types: alpaca (instruction/input/output),
 * messages ([{role, content}]), prompt_completion, text, preference
 * (prompt/chosen/rejected, strings or message lists), mcq (question +
 * choices + answer; also MedMCQA's question/opa..opd/cop and MedQA's
 * question/options/answer_idx). A malformed line is DS_EDATA naming
 * file:line, unless skip_bad_lines (then counted in skipped_lines).
 *
 * Examples are tokenized through a chat template (deepseek, llama3, chatml,
 * alpaca, plain): the prompt and the completion are encoded separately and
 * concatenated, so the boundary between masked prompt and trained completion
 * is exact.
 */
#ifndef DS_DATA_DATASET_H
#define DS_DATA_DATASET_H

#include "batch.h"
#include "chat_template.h"
#include "data/tokenizer/tokenizer.h"

#include "core/xlist.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The dataset types, in one list: X(name, DT_ constant of dataset_internal.h)
 * (core/xlist.h). */
#define DATASET_TYPES(X, SEP)                                                                         \
    X(alpaca, DT_ALPACA) SEP X(messages, DT_MESSAGES) SEP X(prompt_completion, DT_PROMPT_COMPLETION) SEP \
    X(text, DT_TEXT) SEP X(preference, DT_PREFERENCE) SEP X(mcq, DT_MCQ)
#define DATASET_TYPE_NAME_STR(name, id) #name
/* "alpaca|messages|prompt_completion|text|preference|mcq" (the recipe's choices) */
#define DATASET_TYPE_NAMES DATASET_TYPES(DATASET_TYPE_NAME_STR, "|")

/* One dataset entry of a recipe. */
typedef struct {
    char *path;            /* JSONL/JSON, optionally .zst */
    char *type;            /* one of DATASET_TYPE_NAMES */
    char *mcq_format;      /* mcq: "letters" (choices listed in the prompt, " A" scored) or "cloze" (" choice text" scored) */
    int64_t limit;         /* at most this many examples; -1 = all */
    int line;              /* line of the entry in the recipe; 0 = none (a command-line override, no recipe) */
    const char *recipe;    /* the recipe's path (not owned), NULL outside a recipe: errors about the
                              entry name recipe:line */
    char *answer_base;     /* mcq: how integer answers count: "0", "1", or NULL / "auto": MedMCQA's cop told
                              from the file (answer_base.c), other integer answers 0-based */
} data_source;

/* How examples become tokens. */
typedef struct {
    const char *chat_template; /* one of CHAT_TEMPLATE_CHOICES (chat_template.h): "auto" or a built-in */
    int sequence_len;          /* examples longer than this are truncated */
    bool train_on_inputs;      /* false: prompt tokens carry no target */
    bool skip_bad_lines;
    const char *template_dir;  /* "auto": the folder whose chat template is taken (the tokenizer's) */
    void (*say)(void *ctx, const char *line);   /* what loading has to tell (how a file's answers are numbered),
                                                   one line at a time; NULL = nothing is said */
    void *say_ctx;
    int vocab_size;            /* the model's: every token id must be below it (an added token past the
                                  embedding is an error naming file:line); 0 = not checked */
} data_options;

typedef enum { EX_SFT, EX_PREF, EX_MCQ } example_kind;

typedef struct {
    int32_t *ids;          /* (n) */
    uint8_t *train;        /* (n) 1 = trained on (predicted from the token before) */
    int n;
} sft_example;

typedef struct {
    int32_t *prompt; int n_prompt;        /* shared prompt (template, BOS included) */
    int32_t *chosen; int n_chosen;        /* completion tokens, EOS included */
    int32_t *rejected; int n_rejected;
} pref_example;

typedef struct {
    int32_t *prompt; int n_prompt;        /* context */
    int nchoices;
    int32_t **choice; int *n_choice;      /* continuation tokens of each choice */
    char **choice_text;                   /* each continuation as text (acc_norm divides by its length) */
    int answer;                           /* index of the right choice */
} mcq_example;

/* A loaded, tokenized dataset: one kind of example. */
typedef struct {
    example_kind kind;
    int n;
    sft_example *sft;      /* kind == EX_SFT */
    pref_example *pref;    /* kind == EX_PREF */
    mcq_example *mcq;      /* kind == EX_MCQ */
    long skipped_lines;    /* malformed lines skipped (skip_bad_lines) */
    long truncated;        /* examples cut to sequence_len */
    long dropped;          /* examples left without any trained token */
    void *storage;         /* owner of the token buffers; NULL in a view (dataset_split) */
} dataset;

/* Load and tokenize the sources as `kind` examples: EX_SFT for supervised
 * training (mcq sources become prompt + right answer), EX_PREF for DPO
 * (preference sources only), EX_MCQ for multiple-choice evaluation (mcq only). */
int dataset_load(const data_source *src, int nsrc, example_kind kind, const tokenizer *tok,
                 const data_options *opt, dataset *out);
void dataset_free(dataset *d);

/* Split deterministically from the seed: `val` gets round(val_size * n)
 * examples when val_size < 1, else (long)val_size; `train` the rest.
 * Both are views sharing d's token buffers, each keeping the examples in
 * d's order: use them only while d lives, and dataset_free() them too (on
 * a view it releases only the view's own example list). */
int dataset_split(const dataset *d, double val_size, uint64_t seed, dataset *train, dataset *val);

/* What the integer answers of mcq source s count from (0 or 1): its
 * answer_base, or told from a MedMCQA file's cop values, said through
 * opt->say; a file that shows neither is DS_EDATA asking for answer_base
 * (answer_base.c). */
int ds_answer_base(const data_source *s, const data_options *opt, int *base);

/* ---- record text (data cleaning) ---- */
/* The text of one record of type `type` (DATASET_TYPE_NAMES), field by field,
 * checked as dataset_load checks it: pieces appended to `out` (chat_template.h),
 * one per message or field as the plain template writes it (an alpaca
 * instruction and its input are one piece), with train = the model learns to
 * write it: an output or completion, each assistant turn, a preference
 * record's chosen and rejected replies. An mcq record gives its question (not
 * trained) and each choice's text (trained), without the prompt's
 * "Question:"/"Answer:" scaffolding. A bad record is DS_EDATA "file:line: ..."
 * naming the field; an unknown type DS_ECONFIG. */
struct json_t;
int dataset_record_text(const char *type, const struct json_t *obj, const char *file, int line, ct_render *out);

/* ---- iteration: the order of micro-batches in an epoch ---- */

/* A plan of micro-batches for one epoch: each micro-batch is a list of rows,
 * each row a list of example indices (one per row without packing). */
typedef struct {
    int nbatches;
    int *batch_start;      /* (nbatches + 1) offsets into rows */
    int *row_start;        /* (nrows + 1) offsets into items */
    int *items;            /* example indices */
    int nrows;
} epoch_plan;

/* Shuffle (when shuffle) with the seed and epoch, pack (when packing) SFT
 * examples greedily into rows of sequence_len tokens, and group rows into
 * micro-batches of micro_batch rows. */
int epoch_plan_make(const dataset *d, uint64_t seed, int epoch, bool shuffle, bool packing, int sequence_len,
                    int micro_batch, epoch_plan *out);
void epoch_plan_free(epoch_plan *p);

/* Build micro-batch `i` of the plan. T is the longest row, at most
 * sequence_len. For EX_PREF each example gives two rows: chosen (2k) then
 * rejected (2k+1). For EX_MCQ each example gives one row per choice
 * (prompt + that continuation, targets on the continuation). */
int epoch_plan_batch(const epoch_plan *p, int i, const dataset *d, int pad_id, batch *out);

/* ---- token cache ---- */
/* Load a tokenized dataset from `cache_path` if its key matches (a hex
 * digest of the data files, the tokenizer - tok_digest and its ids - and
 * the options; see dataset_cache_key), else tokenize with `tok` and write
 * the cache (zstd) there; the folder of cache_path must exist. *hit tells
 * which happened. */
int dataset_cache_key(const data_source *src, int nsrc, example_kind kind, const tokenizer *tok,
                      const data_options *opt, char key[65]);
int dataset_load_cached(const char *cache_path, const data_source *src, int nsrc, example_kind kind,
                        const tokenizer *tok, const data_options *opt, dataset *out, bool *hit);

#endif
