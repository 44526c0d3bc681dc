/* finetune/train/checkpoint.h - training checkpoints: everything needed to resume
 * a run exactly.
 *
 * output_dir/checkpoints/step-N/ holds the adapter (PEFT format, loadable as
 * is), optimizer.safetensors (AdamW's exp_avg and exp_avg_sq, fp32) and
 * trainer_state.json (step, data position, dropout counter, seed, the steps
 * of the metrics row not yet logged) and, written last, the completion marker
 * checkpoint.complete. Each checkpoint folder is written under a temporary
 * name and renamed; an old one is removed atomically (renamed, then removed).
 * Private to finetune/train/. */
#ifndef DS_FINETUNE_CHECKPOINT_H
#define DS_FINETUNE_CHECKPOINT_H

#include "adapters/lora.h"
#include "losses/loss.h"

#include <stdint.h>

/* The file written last into a checkpoint: a folder without it is incomplete. */
#define CHECKPOINT_MARKER "checkpoint.complete"

/* The steps since the last logged metrics row: the next row is their mean
 * loss and metrics (as Hugging Face's Trainer logs). Kept in checkpoints, so
 * that a resumed run logs the same rows as one never interrupted. */
typedef struct {
    int steps;
    double loss;
    loss_metrics metrics;
} log_window;

typedef struct {
    int64_t step;          /* optimizer steps done */
    int64_t total_steps;
    int epoch;             /* epoch of the next micro-batch */
    int batch;             /* index of the next micro-batch in that epoch's plan */
    uint64_t micro_step;   /* micro-batches consumed (dropout masks) */
    uint64_t seed;
    double loss_ema;       /* divergence watchdog: moving average of the loss ... */
    double loss_ema_best;  /* ... and its lowest value so far */
    double elapsed_s;
    int64_t tokens;        /* input tokens processed */
    log_window window;     /* the steps of the next metrics row */
} train_state;

/* Write output_dir/checkpoints/step-N (marker last) and keep only the newest
 * keep_last; refuses (DS_ETRAIN) a parameter or optimizer value that is NaN or
 * infinite, naming the tensor. */
int checkpoint_save(const char *output_dir, const train_state *s, const lora_adapter *ad, const float *adam_m,
                    const float *adam_v, int keep_last);
/* The newest complete checkpoint folder (malloc'd path), or DS_ENOINPUT when
 * none; *skipped (malloc'd, or NULL) lists the newer ones without the marker. */
int checkpoint_latest(const char *output_dir, char **path, char **skipped);
/* Load a checkpoint into s, the adapter's parameters (ad must have the same
 * layout) and the optimizer state (nparams floats each). A NaN or infinite
 * value (or a negative exp_avg_sq) is DS_EDATA naming the file and tensor. */
int checkpoint_load(const char *path, const model_config *model, train_state *s, lora_adapter *ad, float *adam_m,
                    float *adam_v);

#endif
