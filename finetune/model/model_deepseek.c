/* finetune/model/model_deepseek.c - the DeepSeek-V2/V3 decoder layer's
 * tensors: multi-head latent attention (q_proj or q_a_proj + q_a_layernorm +
 * q_b_proj, kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj), the dense
 * MLP of the first layers, and in MoE layers the router (mlp.gate, V3's
 * e_score_correction_bias), the shared experts and every routed expert as
 * its own linears (the checkpoints' per-expert layout; 4-bit: each expert's
 * gate/up/down its own NF4 tensor, as bitsandbytes stores them). */
#include "model.h"

#include "model_quant.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int model_deepseek_load_layer(llama_model *m, int l, const model_load_opts *opts)
{
    const model_config *c = &m->cfg;
    const deepseek_config *d = &c->ds;
    model_layer *L = &m->layers[l];
    int S = deepseek_slots(c), rc = DS_OK;
    L->dsl = ds_calloc((size_t)S, sizeof *L->dsl, "the model's layers");
    if (!L->dsl) return DS_ENOMEM;
    char name[256], path[160];
    if (d->q_lora_rank) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_a_layernorm.weight", l);
        if ((rc = model_require(m, name, 1, d->q_lora_rank, 0, &L->q_a_norm))) return rc;
    }
    snprintf(name, sizeof name, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
    if ((rc = model_require(m, name, 1, d->kv_lora_rank, 0, &L->kv_a_norm))) return rc;
    if (deepseek_is_moe(c, l)) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.gate.weight", l);
        if ((rc = model_require(m, name, 2, d->n_routed, c->hidden_size, &L->router))) return rc;
        if (d->sigmoid) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
            if ((rc = model_require(m, name, 1, d->n_routed, 0, &L->router_bias))) return rc;
        }
    }
    for (int s = 0; s < S; s++) {
        model_linear *lin = &L->dsl[s];
        if (!deepseek_linear(c, l, s, path, sizeof path, NULL, &lin->out, &lin->in)) continue;
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, path);
        if ((rc = model_load_linear(m, name, lin, opts))) return rc;
    }
    return DS_OK;
}

void model_deepseek_free_layer(const model_config *c, model_layer *L)
{
    if (!L->dsl) return;
    for (int s = 0; s < deepseek_slots(c); s++) model_quant_free(&L->dsl[s]);
    free(L->dsl);
    L->dsl = NULL;
}

size_t model_deepseek_layer_bytes(const model_config *c, const model_layer *L)
{
    size_t bytes = 0;
    for (int s = 0; L->dsl && s < deepseek_slots(c); s++) {
        const model_linear *lin = &L->dsl[s];
        bytes += lin->q_owner ? model_quant_bytes(lin) : (size_t)lin->out * lin->in * 2;
    }
    bytes += (size_t)(c->ds.q_lora_rank + c->ds.kv_lora_rank) * 2;
    if (L->router) bytes += (size_t)c->ds.n_routed * c->hidden_size * 2;
    if (L->router_bias) bytes += (size_t)c->ds.n_routed * 4;
    return bytes;
}

/* Suffixes bitsandbytes stores beside a quantized weight ("P.weight" + suffix). */
static const char *const BNB_SUFFIXES[] = {
    ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".quant_state.bitsandbytes__nf4",
};

bool model_deepseek_reads(const model_config *c, int layer, bool quantized, const char *rest)
{
    const bool moe = deepseek_is_moe(c, layer);
    if ((c->ds.q_lora_rank && !strcmp(rest, "self_attn.q_a_layernorm.weight")) ||
        !strcmp(rest, "self_attn.kv_a_layernorm.weight"))
        return true;
    if (moe && !strcmp(rest, "mlp.gate.weight")) return true;
    if (moe && c->ds.sigmoid && !strcmp(rest, "mlp.gate.e_score_correction_bias")) return true;
    char path[160];
    for (int s = 0; s < deepseek_slots(c); s++) {
        if (!deepseek_linear(c, layer, s, path, sizeof path, NULL, NULL, NULL)) continue;
        size_t n = strlen(path);
        if (strncmp(rest, path, n) || strncmp(rest + n, ".weight", 7)) continue;
        const char *after = rest + n + 7;
        if (!*after) return true;
        for (size_t k = 0; quantized && k < sizeof BNB_SUFFIXES / sizeof *BNB_SUFFIXES; k++)
            if (!strcmp(after, BNB_SUFFIXES[k])) return true;
    }
    return false;
}
