/* finetune/engine/engine_moe_stats.c - the mixture of experts seen from
 * outside the engine: its settings (balance loss, capacity factor), each
 * MoE layer's routing of the last forward, and the router statistics a
 * training run logs (tokens per expert, load, dropped slots, balance loss). */
#include "engine_deepseek.h"

#include "core/status.h"

#include <string.h>

int engine_set_moe(engine *e, float aux_alpha, float capacity_factor)
{
    if (!e->cfg.ds.on) return ds_fail(DS_ECONFIG, "MoE settings for %s, a model without experts", e->cfg.architecture);
    if (!(aux_alpha >= 0) || !(capacity_factor >= 0))
        return ds_fail(DS_ECONFIG, "MoE balance-loss coefficient and capacity factor must be >= 0");
    e->moe_aux_alpha = aux_alpha;
    e->moe_capacity = capacity_factor;
    return DS_OK;
}

static int check_layer(const engine *e, int layer)
{
    if (!e->have_fwd) return ds_fail(DS_EINTERNAL, "no forward to read from");
    if (!e->cfg.ds.on || layer < 0 || layer >= e->cfg.num_layers || !deepseek_is_moe(&e->cfg, layer))
        return ds_fail(DS_EINTERNAL, "layer %d has no router", layer);
    return DS_OK;
}

int engine_read_routing(engine *e, int layer, int32_t *idx, float *w, float *logits)
{
    int rc = check_layer(e, layer);
    if (rc) return rc;
    const deepseek_config *d = &e->cfg.ds;
    size_t NK = (size_t)e->Nmax * d->top_k, NE = (size_t)e->Nmax * d->n_routed, N = (size_t)e->N;
    if (idx) memcpy(idx, e->route_idx + layer * NK, N * d->top_k * sizeof *idx);
    if (w) memcpy(w, e->route_w + layer * NK, N * d->top_k * sizeof *w);
    if (logits) memcpy(logits, e->route_logits + layer * NE, N * d->n_routed * sizeof *logits);
    return DS_OK;
}

int engine_read_moe_stats(engine *e, int layer, engine_moe_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!e->cfg.ds.on) return DS_OK;
    if (layer >= 0) {
        int rc = check_layer(e, layer);
        if (rc) return rc;
    }
    if (!e->have_fwd) return ds_fail(DS_EINTERNAL, "no forward to read from");
    const deepseek_config *d = &e->cfg.ds;
    moe_router r = deepseek_router(&e->cfg);
    size_t NK = (size_t)e->Nmax * d->top_k, NE = (size_t)e->Nmax * d->n_routed;
    out->experts = d->n_routed;
    out->top_k = d->top_k;
    out->mean_load = (double)e->N * d->top_k / d->n_routed;
    for (int l = d->first_k_dense; l < e->cfg.num_layers; l++) {
        if (layer >= 0 && l != layer) continue;
        const int32_t *idx = e->route_idx + l * NK;
        const float *w = e->route_w + l * NK;
        int count[MOE_MAX_EXPERTS] = {0};
        for (int i = 0; i < e->N * d->top_k; i++)
            if (w[i] != 0.0f || !(e->moe_capacity > 0)) count[idx[i]]++;   /* dropped slots carry weight 0 */
        for (int x = 0; x < d->n_routed; x++) {
            out->tokens_per_expert[x] += count[x];
            if (count[x] > out->max_load) out->max_load = count[x];
        }
        out->aux_loss += moe_seq_aux_loss(e->route_scores + l * NE, idx, e->B, e->T, &r, 0.0f, NULL);
        out->dropped += e->route_dropped[l];
        out->moe_layers++;
    }
    return DS_OK;
}
