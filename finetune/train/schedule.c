#include "schedule.h"

#include "core/status.h"

#include <math.h>
#include <string.h>

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
