/* losses/registry.c - the table of loss modules. A new loss is one file
 * defining a loss_module and one line here. */
#include "loss.h"

#include <stdio.h>
#include <string.h>

extern const loss_module LOSS_SFT, LOSS_DPO, LOSS_FORBIDDEN_TOKENS;

static const loss_module *const REGISTRY[] = {
    &LOSS_SFT,
    &LOSS_DPO,
    &LOSS_FORBIDDEN_TOKENS,
    NULL,
};

int loss_count(void)
{
    int n = 0;
    while (REGISTRY[n]) n++;
    return n;
}

const loss_module *loss_at(int i) { return REGISTRY[i]; }

const loss_module *loss_find(const char *name)
{
    for (int i = 0; REGISTRY[i]; i++)
        if (!strcmp(REGISTRY[i]->name, name)) return REGISTRY[i];
    return NULL;
}

const char *loss_names(char *buf, size_t n, bool penalties)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; REGISTRY[i]; i++) {
        if (REGISTRY[i]->is_penalty != penalties) continue;
        int w = snprintf(buf + k, n - k, "%s%s", k ? ", " : "", REGISTRY[i]->name);
        if (w < 0 || (size_t)w >= n - k) break;
        k += (size_t)w;
    }
    return buf;
}


void loss_metrics_add(loss_metrics *m, const char *name, double sum, double count)
{
    int k = 0;
    while (k < m->n && strcmp(m->name[k], name)) k++;
    if (k == m->n) {
        if (k == LOSS_MAX_METRICS) return;
        m->name[k] = name;
        m->sum[k] = m->count[k] = 0;
        m->n++;
    }
    m->sum[k] += sum;
    m->count[k] += count;
}

void loss_metrics_merge(loss_metrics *into, const loss_metrics *from)
{
    for (int k = 0; k < from->n; k++) loss_metrics_add(into, from->name[k], from->sum[k], from->count[k]);
}

double loss_count_targets(const loss_input *in)
{
    double n = 0;
    for (int i = 0; i < in->B * in->T; i++) n += in->targets[i] >= 0;
    return n;
}
