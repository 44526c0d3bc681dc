/* losses/loss.h - plug-in loss modules and their registry.
 *
 * The trainer knows no loss by name. A recipe's `loss:` section names a
 * module (`type: sft|dpo`) and may add penalties (`penalties: [{type:
 * forbidden_tokens, ...}]`); each module declares its options (core/options.h),
 * is prepared once (e.g. turning forbidden strings into token ids), and then,
 * for every micro-batch, turns per-token statistics from the engine into a
 * loss, metrics and per-row gradient coefficients (see logits.h for how those
 * coefficients define the gradient into the logits). The statistics are
 * (N)-sized, so this arithmetic runs on the host for both backends; the
 * (N, V)-sized work is op_logits_stats / op_logits_grad on the backend.
 */
#ifndef DS_LOSSES_LOSS_H
#define DS_LOSSES_LOSS_H

#include "core/options.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a module needs from the engine and the data. */
enum {
    LOSS_NEEDS_REF = 1,        /* ref_logprob: the same model with adapters disabled */
    LOSS_NEEDS_FORBIDDEN = 2,  /* fmass for the set returned by forbidden_ids */
    LOSS_PAIRED = 4,           /* batches are preference pairs: row 2k chosen, 2k+1 rejected */
};

/* One micro-batch, seen by a loss: N = B * T rows, host memory. */
typedef struct {
    int B, T;
    const int32_t *targets;     /* (N) token predicted at this row, or -1 */
    const float *logprob;       /* (N) log p(target) under the policy; 0 where no target */
    const float *ref_logprob;   /* (N) same under the reference model, or NULL */
    const float *fmass;         /* (N) policy probability of the forbidden set, or NULL */
} loss_input;

#define LOSS_MAX_METRICS 16

/* Named metrics as sums and counts (their means are what gets logged). The
 * same type collects a micro-batch, a step and a logging window. */
typedef struct {
    int n;
    const char *name[LOSS_MAX_METRICS];
    double sum[LOSS_MAX_METRICS], count[LOSS_MAX_METRICS];
} loss_metrics;

/* Add (sum, count) to metric `name`, a new one if absent (dropped when full). */
void loss_metrics_add(loss_metrics *m, const char *name, double sum, double count);
void loss_metrics_merge(loss_metrics *into, const loss_metrics *from);

typedef struct {
    double loss;                /* contribution to the step's loss (already normalised) */
    float *a, *b, *c;           /* (N) gradient coefficients; modules ADD to them */
    loss_metrics metrics;       /* sums over the micro-batch */
} loss_output;

/* The rows with a target: the normaliser of per-token losses. */
double loss_count_targets(const loss_input *in);

/* Passed to prepare(): what a module may need to resolve its options. */
typedef struct {
    int vocab_size;
    /* Encode text without special tokens; returns DS_OK or an error. May be NULL. */
    int (*encode)(void *tok, const char *text, int32_t **ids, size_t *n);
    void *tok;
    const char *where;          /* "recipe.yaml:12: loss.penalties[0]" for messages */
} loss_env;

typedef struct loss_module {
    const char *name;           /* the `type:` value */
    const char *summary;        /* one line for --help */
    bool is_penalty;            /* adds to a main loss instead of being one */
    unsigned needs;             /* LOSS_NEEDS_* */
    const opt_key *keys;        /* options of its recipe section (besides `type`) */
    size_t cfg_size;            /* bytes of its config struct (zeroed, then defaults) */

    /* Check the parsed options on their own, when the recipe is read (so that
     * `ds-ft validate` reports them); DS_ECONFIG naming `where`. May be NULL. */
    int (*check)(const void *cfg, const char *where);
    /* Resolve what needs the model: token strings to ids, ids against the
     * vocabulary (may be NULL). */
    int (*prepare)(void *cfg, const loss_env *env);
    /* The forbidden-token set as ids (LOSS_NEEDS_FORBIDDEN only). */
    void (*forbidden_ids)(const void *cfg, const int32_t **ids, int *n);
    /* The normaliser's units in this micro-batch (target tokens, pairs, ...).
     * The trainer sums it over a step's micro-batches and passes the total as
     * `norm` to forward, so a step's loss is one mean over the whole
     * accumulated batch, not a mean of per-micro-batch means. */
    double (*count)(const void *cfg, const loss_input *in);
    /* Loss, metrics and gradient coefficients of one micro-batch. */
    int (*forward)(const void *cfg, const loss_input *in, double norm, loss_output *out);
    /* Whether the reference log-probs may be computed once, before training,
     * instead of every step (LOSS_NEEDS_REF only; NULL = every step). */
    bool (*precompute_ref)(const void *cfg);
    /* Release what prepare allocated (may be NULL). Option strings and lists
     * declared in `keys` belong to the recipe, which frees them. */
    void (*free_cfg)(void *cfg);
} loss_module;

/* Registry. */
const loss_module *loss_find(const char *name);
int loss_count(void);
const loss_module *loss_at(int i);
/* "sft, dpo, forbidden_tokens" into buf, for error messages. */
const char *loss_names(char *buf, size_t n, bool penalties);

#endif
