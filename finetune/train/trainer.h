/* finetune/train/trainer.h - the state of a training run, shared by train.c (the
 * loop), trainer_setup.c (loading everything) and trainer_eval.c (evaluations).
 * Private to finetune/train/. */
#ifndef DS_FINETUNE_TRAINER_H
#define DS_FINETUNE_TRAINER_H

#include "checkpoint.h"
#include "ranks.h"
#include "finetune/engine/engine.h"
#include "finetune/run/run.h"
#include "finetune/recipe/recipe.h"
#include "finetune/report/report.h"
#include "schedule.h"
#include "train.h"
#include "train_log.h"

#include "data/dataset/dataset.h"
#include "data/tokenizer/tokenizer.h"

typedef struct {
    const recipe_dataset *src;
    char *name;            /* file name without folder and extensions: eval/<name>.json */
    dataset data;
    eval_result before, after;
    bool has_before, has_after;
} trainer_eval_set;

typedef struct {
    const recipe *r;            /* r->plan: the typed shapes and choices */
    ds_run ctx;                 /* backend, tokenizer, model, adapter, engine */
    train_log log;

    dataset all;                /* tokenized training data */
    dataset train, val;         /* views: the training examples and the held-out split */
    bool has_val;
    trainer_eval_set *evals;        /* eval.datasets (+ the validation split, last) */
    int n_evals;

    float **ref_cache;          /* precomputed reference log-probs per example (or NULL) */
    const loss_module *forbidden_owner;   /* the penalty providing the forbidden set */

    lr_schedule sched;
    train_state st;
    epoch_plan plan;            /* the plan of st.epoch */
    int plan_epoch;             /* which epoch `plan` is for (-1 none) */
    int pad_id;                 /* padding token of batches */
    /* per-row host buffers of one micro-batch (plan.rows x plan.seq_len each) */
    float *lp, *fmass, *ref, *ca, *cb, *cc;
    const recipe_loss **losses; /* the main loss, then the penalties */
    double *norms;              /* each loss's normaliser over the current step */
    int nlosses;
    double t_start;
    report_info *info;          /* run_info.json and report.html (finetune/report/report.h) */
    /* the clean: section (trainer_clean.c) */
    recipe_dataset *clean_src;  /* the training datasets as tokenized: cleaned ones point into cache/ */
    char **clean_paths;         /* (n_clean) the cleaned files, NULL where the original is tokenized */
    int n_clean;
    char *clean_report;         /* clean_report.json, written once the output folder is ready */
    trainer_ranks ranks;        /* this process's place among the run's ranks (ranks.h) */
} trainer;

/* Load everything the recipe names, then (and only then) prepare the output
 * folder: discard an earlier run (TRAIN_OVERWRITE), open the logs, write the
 * resolved recipe (trainer_setup.c). Ranks other than 0 (comm) touch no output. */
int trainer_setup(trainer *x, const recipe *r, train_start start, dist_comm *comm);
/* An earlier run's state in output_dir: DS_EEXISTS for a fresh run, naming
 * what was found (output.c). */
int output_check(const recipe *r, train_start start);
/* Remove an earlier run's state, each entry atomically, checkpoints first. */
int output_discard(const recipe *r, train_log *log);
/* Remove what killed runs left under temporary names beside the state's entries
 * and inside checkpoints/ (files.h: ds_clean_debris). */
int output_clean_debris(const recipe *r);
void trainer_free(trainer *x);
/* Clean the training datasets as the recipe's clean: section says (or only
 * check them for contamination) before tokenization, into cache_dir:
 * *sources = the datasets to tokenize (trainer_clean.c). A cleaned mcq file
 * keeps the answer numbering told from the whole original file. */
int trainer_clean_data(trainer *x, const char *cache_dir, const data_options *opt, const recipe_dataset **sources);
/* OUTPUT_DIR/clean_report.json, when there was cleaning or a check. */
int trainer_clean_write_report(trainer *x);
void trainer_clean_free(trainer *x);
/* Evaluate every eval set with (after) or without (before) the adapter and
 * log it; write eval/<name>.json when both are done (trainer_eval.c). */
int trainer_evaluate(trainer *x, bool after, int64_t step);
int trainer_write_eval_files(trainer *x);
void trainer_print_summary(trainer *x);
/* Evaluate during training (eval.every_steps): metrics rows only. */
int trainer_evaluate_midway(trainer *x, int64_t step);
/* On --resume with several ranks: rank 0's checkpoint state (position,
 * adapter, optimizer) to every rank, so that only rank 0's machine needs
 * output_dir (ranks_resume.c). */
int ranks_share_resume(trainer *x);
/* Precompute reference log-probs for the training set (DPO option). */
int trainer_precompute_ref(trainer *x);

/* trainer_memory_check() : before engine_create on a GPU with free_bytes
 * free, whether the arenas of options o (engine_estimate, plus a margin) fit;
 * *need_out (if not NULL) gets that estimate, or 0 where there is none.
 * @return DS_OK, or DS_ETRAIN naming the recipe, the estimate and the first
 * change that would fit (checkpointing, a smaller micro-batch, a shorter
 * sequence_len), or engine_estimate's refusal. */
int trainer_memory_check(const recipe *r, const model_config *cfg, bool quantized, const engine_opts *o,
                         size_t free_bytes, const char *device, size_t *need_out);
/* trainer_offload_needed() : train_offload_helps (train.h) where recipe r
 * leaves offload to ds-ft (train.offload_activations: auto). */
bool trainer_offload_needed(const recipe *r, const model_config *cfg, bool quantized, const engine_opts *o,
                            size_t free_bytes);

#endif
