/* finetune/train/train.h - a whole run: `ds-ft train RECIPE` / `ds-ft RECIPE`. */
#ifndef DS_FINETUNE_TRAIN_H
#define DS_FINETUNE_TRAIN_H

#include "finetune/recipe/recipe.h"

#include <stdbool.h>

/* Train as the recipe says, evaluating before and after, saving
 * checkpoints, the final adapter and (if asked) the merged model into
 * output_dir. resume continues from the newest checkpoint. Ctrl-C writes a
 * checkpoint and returns DS_EINTERRUPTED. */
int train_run(const recipe *r, bool resume);

#endif
