/* finetune/train/train.h - a whole run: `ds-ft train RECIPE` / `ds-ft RECIPE`. */
#ifndef DS_FINETUNE_TRAIN_H
#define DS_FINETUNE_TRAIN_H

#include "finetune/engine/engine.h"
#include "finetune/recipe/recipe.h"

#include <stdbool.h>
#include <stddef.h>

/* How a run treats an output folder that holds an earlier run's state
 * (checkpoints/, adapter/, merged/, eval/, metrics.jsonl, train.log,
 * recipe.resolved.yaml). */
typedef enum {
    TRAIN_FRESH,        /* refuse it: DS_EEXISTS, nothing touched */
    TRAIN_RESUME,       /* continue from its newest complete checkpoint */
    TRAIN_OVERWRITE,    /* replace it: removed once every input of the new run was read */
} train_start;

/* train_run() : train as the recipe says, evaluating before and after, saving
 * checkpoints, the final adapter and (if asked) the merged model into
 * output_dir. Every input the recipe names is checked before anything in
 * output_dir is touched. SIGINT or SIGTERM (during training, evaluation or
 * the merge) ends the run with DS_EINTERRUPTED after writing a checkpoint
 * that --resume continues. @return DS_OK or the failure's status. */
int train_run(const recipe *r, train_start start);

/* train_run_ranks() : the same as one rank of several (finetune/dist/dist.h;
 * comm NULL: train_run). Every rank trains on its share of each step and the
 * gradients are summed; rank 0 alone writes output_dir, logs, evaluates and
 * merges; a failure on any rank stops every rank with its reason. */
typedef struct dist_comm dist_comm;
int train_run_ranks(const recipe *r, train_start start, dist_comm *comm);

/* train_offload_helps() : whether engine options o (checkpointing, offload
 * off) would not fit free_bytes of device memory (the engine's estimate plus
 * the margin the trainer's memory check adds), so that offloading each
 * layer's input to host memory is the way on: what
 * train.offload_activations: auto decides, and `bench train --offload auto`. */
bool train_offload_helps(const model_config *cfg, bool quantized, const engine_opts *o, size_t free_bytes);

/* train_keep_attention_pays() : whether keeping each layer's attention output
 * for the backward (engine_opts.keep_attention) fits for options o (offload
 * decided): with checkpointing, on Llama-family layers, where the estimate
 * with it still fits free_bytes and, with offload, the host's available
 * memory holds the offloaded entries with 2 GiB to spare. It then pays at
 * every length (the backward skips the attention forward). What
 * train.keep_attention: auto decides, and `bench train --keep-attention auto`. */
bool train_keep_attention_pays(const model_config *cfg, bool quantized, const engine_opts *o, size_t free_bytes);

/* train_projections_that_fit() : for options o with the attention output kept
 * (keep_attention), in how many layers q, k, v and the residual after
 * attention can be kept too (engine_opts.keep_projections: on the device,
 * their recomputation then runs no projection of the attention block) with
 * the estimate still 1 GiB within free_bytes, @return 0 to the layer count. What
 * train.keep_projections: auto decides, and `bench train --keep-projections auto`. */
int train_projections_that_fit(const model_config *cfg, bool quantized, const engine_opts *o, size_t free_bytes);

#endif
