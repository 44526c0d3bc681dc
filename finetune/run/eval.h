/* finetune/run/eval.h - domain accuracy and held-out loss.
 *
 * Multiple choice is scored as lm-evaluation-harness does: the
 * log-likelihood of each choice's continuation given the prompt; acc takes
 * the most likely choice, acc_norm the most likely per character of the
 * continuation. Loss and perplexity are the mean token cross-entropy over
 * the trained tokens of held-out examples. */
#ifndef DS_FINETUNE_EVAL_H
#define DS_FINETUNE_EVAL_H

#include "finetune/engine/engine.h"

#include "data/dataset/dataset.h"

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

#endif
