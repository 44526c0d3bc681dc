/* finetune/engine/engine_estimate.c - the device memory an engine would take,
 * from a model's config alone (ds-ft doctor, before any download).
 *
 * The engine sizes its arenas in a counting pass over the model before it
 * allocates anything (engine.c). That pass reads which tensors a model has
 * and their shapes, never their values, so here it runs over a model of the
 * config's shapes whose tensors are placeholders, and over a backend that
 * only says its kind: the estimate and the real set-up are one code path. */
#include "engine_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

/* Stand-ins for the tensors a model folder would hold: never read. */
static const st_tensor EMBED = {.name = "placeholder: embeddings"}, OTHER = {.name = "placeholder"};

/* An NF4 weight of (out, in) as bitsandbytes stores it: blocks of 64, and
 * with double quantization the block scales in blocks of 256. */
static nf4_view nf4_shape(int out, int in, bool double_quant)
{
    nf4_view v = {.rows = out, .cols = in, .n = (int64_t)out * in, .double_quant = double_quant};
    v.nblocks = (v.n + NF4_BLOCK - 1) / NF4_BLOCK;
    v.nblocks2 = double_quant ? (v.nblocks + 255) / 256 : 0;
    return v;
}

/* A linear of (lin->out, lin->in): NF4 placeholder arrays, or a 16-bit one. */
static void placeholder_linear(model_linear *lin, bool quantized)
{
    if (quantized) {
        lin->q = nf4_shape(lin->out, lin->in, true);
        lin->q_owner = (void *)&OTHER;   /* marks the weight NF4 */
    } else {
        lin->dense = &OTHER;
    }
}

/* DeepSeek layer l's tensors, as model_deepseek_load_layer gives them: every
 * linear slot deepseek_linear() names (out = 0 where the layer has none), the
 * latent norms, and in MoE layers the router and V3's correction bias. */
static int deepseek_skeleton(const model_config *cfg, bool quantized, model_layer *L, int l)
{
    const int S = deepseek_slots(cfg);
    L->dsl = ds_calloc((size_t)S, sizeof *L->dsl, "the model's layers");
    if (!L->dsl) return DS_ENOMEM;
    if (cfg->ds.q_lora_rank) L->q_a_norm = &OTHER;
    L->kv_a_norm = &OTHER;
    if (deepseek_is_moe(cfg, l)) {
        L->router = &OTHER;
        if (cfg->ds.sigmoid) L->router_bias = &OTHER;
    }
    for (int s = 0; s < S; s++)
        if (deepseek_linear(cfg, l, s, NULL, 0, NULL, &L->dsl[s].out, &L->dsl[s].in))
            placeholder_linear(&L->dsl[s], quantized);
    return DS_OK;
}

/* Free what skeleton() allocated. */
static void skeleton_free(llama_model *m)
{
    for (int l = 0; m->layers && l < m->cfg.num_layers; l++) free(m->layers[l].dsl);
    free(m->layers);
    m->layers = NULL;
}

/* A model of cfg's shapes with placeholder tensors (free with skeleton_free). */
static int skeleton(const model_config *cfg, bool quantized, llama_model *m)
{
    memset(m, 0, sizeof *m);
    m->dir = "(estimate)";
    m->cfg = *cfg;
    m->quantized = quantized;
    m->embed = &EMBED;
    m->lm_head = cfg->tie_word_embeddings ? &EMBED : &OTHER;
    m->final_norm = &OTHER;
    m->layers = ds_calloc((size_t)cfg->num_layers, sizeof *m->layers, "the model's layers");
    if (!m->layers) return DS_ENOMEM;
    for (int l = 0; l < cfg->num_layers; l++) {
        model_layer *L = &m->layers[l];
        L->attn_norm = L->mlp_norm = &OTHER;
        if (cfg->qk_norm) L->q_norm = L->k_norm = &OTHER;
        if (cfg->ds.on) {   /* lin[] unused */
            int rc = deepseek_skeleton(cfg, quantized, L, l);
            if (rc) return rc;
            continue;
        }
        for (int t = 0; t < LIN_COUNT; t++) {
            model_linear *lin = &L->lin[t];
            llama_linear_shape(cfg, (llama_linear)t, &lin->out, &lin->in);
            if (cfg->bias[t]) L->bias[t] = &OTHER;
            placeholder_linear(lin, quantized);
        }
    }
    return DS_OK;
}

int engine_estimate(const model_config *cfg, bool quantized, be_kind kind, const engine_opts *o, engine_memory *out)
{
    memset(out, 0, sizeof *out);
    llama_model m;
    backend shape_only = {.kind = kind, .act_size = kind == BE_CUDA ? 2 : 4};
    int rc = skeleton(cfg, quantized, &m);
    engine *e = rc ? NULL : ds_calloc(1, sizeof *e, "the engine");
    if (!rc && !e) rc = DS_ENOMEM;
    if (!rc) rc = engine_measure(e, &shape_only, &m, o, out);
    engine_free(e);
    skeleton_free(&m);
    return rc;
}
