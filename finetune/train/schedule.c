#include "schedule.h"

#include "core/status.h"

#include <math.h>
#include <string.h>

int lr_kind_parse(const char *name, lr_kind *out)
{
    if (!strcmp(name, "constant")) *out = LR_CONSTANT;
    else if (!strcmp(name, "linear")) *out = LR_LINEAR;
    else if (!strcmp(name, "cosine")) *out = LR_COSINE;
    else return ds_fail(DS_ECONFIG, "unknown lr_scheduler '%s' (cosine, linear, constant)", name);
    return DS_OK;
}

double lr_at(const lr_schedule *s, int64_t step)
{
    if (step < s->warmup) return s->peak * (double)step / (double)(s->warmup > 1 ? s->warmup : 1);
    if (s->kind == LR_CONSTANT) return s->peak;
    double span = (double)(s->total - s->warmup > 1 ? s->total - s->warmup : 1);
    double progress = (double)(step - s->warmup) / span;
    if (progress > 1) progress = 1;
    if (s->kind == LR_LINEAR) return s->peak * (1.0 - progress);
    return s->peak * 0.5 * (1.0 + cos(M_PI * progress));
}
