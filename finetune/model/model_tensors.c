/* finetune/model/model_tensors.c - which tensors an architecture reads. A
 * checkpoint tensor that the model does not read means the config does not
 * describe the weights (a Qwen2 checkpoint labelled Llama drops its biases):
 * it is refused by name, never run without. */
#include "model.h"

#include "model_quant.h"

#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Suffixes bitsandbytes stores beside a quantized weight ("P.weight" + suffix). */
static const char *const BNB_SUFFIXES[] = {
    ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".quant_state.bitsandbytes__nf4",
    ".quant_state.bitsandbytes__fp4",
};

static bool starts(const char *s, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n)) return false;
    *rest = s + n;
    return true;
}

/* `rest` ("self_attn.q_proj.weight" + maybe a bitsandbytes suffix) of layer l. */
static bool layer_reads(const model_config *c, bool quantized, const char *rest)
{
    static const char *const NORMS[] = {"input_layernorm.weight", "post_attention_layernorm.weight"};
    for (size_t i = 0; i < 2; i++)
        if (!strcmp(rest, NORMS[i])) return true;
    if (c->ds.on) return false;   /* the rest of a DeepSeek layer: model_deepseek_reads */
    if (c->qk_norm && (!strcmp(rest, "self_attn.q_norm.weight") || !strcmp(rest, "self_attn.k_norm.weight")))
        return true;
    /* transformers' old checkpoints carry the rope's inverse frequencies as a
     * buffer; they follow from config.json, which is what ds-ft reads */
    if (!strcmp(rest, "self_attn.rotary_emb.inv_freq")) return true;
    for (int t = 0; t < LIN_COUNT; t++) {
        const char *path = llama_linear_path((llama_linear)t), *after;
        if (!starts(rest, path, &after)) continue;
        if (c->bias[t] && !strcmp(after, ".bias")) return true;
        if (!starts(after, ".weight", &after)) continue;
        if (!*after) return true;
        for (size_t k = 0; quantized && k < sizeof BNB_SUFFIXES / sizeof *BNB_SUFFIXES; k++)
            if (!strcmp(after, BNB_SUFFIXES[k])) return true;
    }
    return false;
}

static bool model_reads(const llama_model *m, const char *name)
{
    const model_config *c = &m->cfg;
    if (!strcmp(name, "model.embed_tokens.weight") || !strcmp(name, "model.norm.weight")) return true;
    /* a tied model's lm_head, when a checkpoint stores it anyway, is the embedding */
    if (!strcmp(name, "lm_head.weight")) return true;
    const char *rest;
    if (!starts(name, "model.layers.", &rest)) return false;
    char *end;
    long l = strtol(rest, &end, 10);
    if (end == rest || *end != '.' || l < 0 || l >= c->num_layers) return false;
    if (c->ds.on && model_deepseek_reads(c, (int)l, m->prequantized, end + 1)) return true;
    return layer_reads(c, m->prequantized, end + 1);
}

int model_check_tensors(const llama_model *m)
{
    for (int i = 0; i < st_set_count(m->st); i++) {
        const st_tensor *t = st_set_at(m->st, i);
        if (model_reads(m, t->name)) continue;
        return ds_fail(DS_EDATA, "%s: tensor '%s' is not part of a %s as config.json describes it (%s); refusing to "
                                 "run without it: is config.json the one that came with these weights?",
                       m->dir, t->name, m->cfg.architecture, model_family_summary(&m->cfg));
    }
    return DS_OK;
}

const char *model_family_summary(const model_config *c)
{
    static _Thread_local char buf[160];
    bool any_bias = false;
    for (int t = 0; t < LIN_COUNT; t++) any_bias |= c->bias[t];
    if (c->ds.on) {
        snprintf(buf, sizeof buf, "%d layers (%d dense), MLA%s, %d routed experts (top %d) + %d shared", c->num_layers,
                 c->ds.first_k_dense, c->ds.q_lora_rank ? " with a low-rank query" : "", c->ds.n_routed, c->ds.top_k,
                 c->ds.n_shared);
        return buf;
    }
    snprintf(buf, sizeof buf, "%d layer%s, %s%s%s", c->num_layers, c->num_layers == 1 ? "" : "s",
             any_bias ? "with biases" : "no biases", c->qk_norm ? ", q/k norms" : "",
             c->sliding_window ? ", sliding window" : "");
    return buf;
}
