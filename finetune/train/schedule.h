/* finetune/train/schedule.h - learning-rate schedules as Hugging Face's
 * get_scheduler computes them: a linear warmup from 0 over `warmup` steps,
 * then constant, linear decay to 0, or half a cosine to 0 at `total`.
 * step is the 0-based index of the optimizer step about to be taken. Private to
 * finetune/train/ (and its tests). */
#ifndef DS_FINETUNE_SCHEDULE_H
#define DS_FINETUNE_SCHEDULE_H

#include "finetune/recipe/recipe.h"

#include <stdint.h>

typedef struct {
    lr_kind kind;
    double peak;
    int64_t warmup, total;
} lr_schedule;

double lr_at(const lr_schedule *s, int64_t step);

#endif
