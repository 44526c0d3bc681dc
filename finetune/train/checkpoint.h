/* finetune/train/checkpoint.h - training checkpoints: everything needed to resume
 * a run exactly.
 *
 * output_dir/checkpoints/step-N/ holds the adapter (PEFT format, loadable as
 * is), optimizer.safetensors (AdamW's exp_avg and exp_avg_sq, fp32) and
 * trainer_state.json (step, data position, dropout counter, seed). Each
 * checkpoint folder is written under a temporary name and renamed. Private to
 * finetune/train/. */
#ifndef DS_FINETUNE_CHECKPOINT_H
#define DS_FINETUNE_CHECKPOINT_H

#include "adapters/lora.h"

#include <stdint.h>

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
} train_state;

/* Write output_dir/checkpoints/step-N and keep only the newest keep_last. */
int checkpoint_save(const char *output_dir, const train_state *s, const lora_adapter *ad, const float *adam_m,
                    const float *adam_v, int keep_last);
/* The newest checkpoint folder (malloc'd path), or DS_ENOINPUT when none. */
int checkpoint_latest(const char *output_dir, char **path);
/* Load a checkpoint into s, the adapter's parameters (ad must have the same
 * layout) and the optimizer state (nparams floats each). */
int checkpoint_load(const char *path, const model_config *model, train_state *s, lora_adapter *ad, float *adam_m,
                    float *adam_v);

#endif
