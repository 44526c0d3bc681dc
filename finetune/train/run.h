/* finetune/train/run.h - the state of a training run, shared by train.c (the
 * loop), run_setup.c (loading everything) and run_eval.c (evaluations). */
#ifndef DS_FINETUNE_RUN_H
#define DS_FINETUNE_RUN_H

#include "checkpoint.h"
#include "finetune/engine/engine.h"
#include "finetune/run/eval.h"
#include "finetune/recipe/recipe.h"
#include "finetune/report/report.h"
#include "schedule.h"
#include "train_log.h"

#include "data/dataset/dataset.h"
#include "data/tokenizer/tokenizer.h"

typedef struct {
    const recipe_dataset *src;
    char *name;            /* file name without folder and extensions: eval/<name>.json */
    dataset data;
    eval_result before, after;
    bool has_before, has_after;
} run_eval_set;

typedef struct {
    const recipe *r;
    backend *be;
    tokenizer *tok;
    llama_model *model;
    lora_adapter *adapter;
    engine *eng;
    train_log log;

    dataset all;                /* tokenized training data */
    dataset train, val;         /* views: the training examples and the held-out split */
    bool has_val;
    run_eval_set *evals;        /* eval.datasets (+ the validation split, last) */
    int n_evals;

    bool paired;                /* preference pairs: 2 rows per example */
    bool needs_ref;             /* the main loss wants reference log-probs */
    float **ref_cache;          /* precomputed reference log-probs per example (or NULL) */
    const loss_module *forbidden_owner;   /* the penalty providing the forbidden set */

    lr_schedule sched;
    train_state st;
    epoch_plan plan;            /* the plan of st.epoch */
    int plan_epoch;             /* which epoch `plan` is for (-1 none) */
    int micro_rows;             /* rows per training micro-batch */
    int pad_id;                 /* padding token of batches */
    /* per-row host buffers of one micro-batch (micro_rows x sequence_len each) */
    float *lp, *fmass, *ref, *ca, *cb, *cc;
    const recipe_loss **losses; /* the main loss, then the penalties */
    double *norms;              /* each loss's normaliser over the current step */
    int nlosses;
    double t_start;
    report_info *info;          /* run_info.json and report.html (finetune/report/report.h) */
} run;

/* Load everything the recipe names (run_setup.c). */
int run_setup(run *x, const recipe *r, bool resume);
void run_free(run *x);
/* Evaluate every eval set with (after) or without (before) the adapter and
 * log it; write eval/<name>.json when both are done (run_eval.c). */
int run_evaluate(run *x, bool after, int64_t step);
int run_write_eval_files(run *x);
void run_print_summary(run *x);
/* Evaluate during training (eval.every_steps): metrics rows only. */
int run_evaluate_midway(run *x, int64_t step);
/* Precompute reference log-probs for the training set (DPO option). */
int run_precompute_ref(run *x);

#endif
