#include "model.h"

#include "model_quant.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A floating-point tensor of exactly this shape, all finite, or DS_EDATA
 * naming it. `quantized_later`: its values are checked as they are quantized. */
static int require_weight(const llama_model *m, const char *name, int ndim, int64_t d0, int64_t d1,
                          bool quantized_later, const st_tensor **out)
{
    int rc = st_set_require(m->st, name, out);
    if (rc) return rc;
    const st_tensor *t = *out;
    if (t->dtype != ST_BF16 && t->dtype != ST_F16 && t->dtype != ST_F32)
        return ds_fail(DS_EDATA, "%s: tensor '%s' is %s, expected BF16, F16 or F32", m->dir, name,
                       st_dtype_name(t->dtype));
    int64_t shape[2] = {d0, d1};
    rc = st_check_shape(t, ndim, shape);
    if (rc) return ds_fail_context(rc, "%s: ", m->dir);
    int64_t bad = quantized_later ? -1 : st_first_nonfinite(t);
    if (bad >= 0)
        return ds_fail(DS_EDATA, "%s: tensor '%s' holds a NaN or an infinity at [%lld]", m->dir, name, (long long)bad);
    return DS_OK;
}

int model_require(const llama_model *m, const char *name, int ndim, int64_t d0, int64_t d1, const st_tensor **out)
{
    return require_weight(m, name, ndim, d0, d1, false, out);
}

static int load_layer(llama_model *m, int l, const model_load_opts *opts)
{
    const model_config *c = &m->cfg;
    model_layer *L = &m->layers[l];
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    int rc = model_require(m, name, 1, c->hidden_size, 0, &L->attn_norm);
    if (rc) return rc;
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    if ((rc = model_require(m, name, 1, c->hidden_size, 0, &L->mlp_norm))) return rc;
    if (c->qk_norm) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
        if ((rc = model_require(m, name, 1, c->head_dim, 0, &L->q_norm))) return rc;
        snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
        if ((rc = model_require(m, name, 1, c->head_dim, 0, &L->k_norm))) return rc;
    }
    for (int t = 0; t < LIN_COUNT; t++) {
        if (!c->bias[t]) continue;
        int out, in;
        llama_linear_shape(c, (llama_linear)t, &out, &in);
        snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, llama_linear_path((llama_linear)t));
        if ((rc = model_require(m, name, 1, out, 0, &L->bias[t]))) return rc;
    }
    if (c->ds.on) return model_deepseek_load_layer(m, l, opts);
    for (int t = 0; t < LIN_COUNT; t++) {
        model_linear *lin = &L->lin[t];
        llama_linear_shape(c, (llama_linear)t, &lin->out, &lin->in);
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, llama_linear_path((llama_linear)t));
        if ((rc = model_load_linear(m, name, lin, opts))) return rc;
    }
    return DS_OK;
}

int model_load_linear(llama_model *m, const char *name, model_linear *lin, const model_load_opts *opts)
{
    if (m->prequantized) return model_quant_load(m, name, lin);
    bool to_4bit = opts && opts->load_in_4bit;   /* then quantizing checks every value */
    int rc = require_weight(m, name, 2, lin->out, lin->in, to_4bit, &lin->dense);
    if (!rc && to_4bit) rc = model_quant_quantize(m, name, lin, opts->double_quant);
    return rc;
}

int model_load(const char *dir, const model_load_opts *opts, llama_model **out)
{
    *out = NULL;
    llama_model *m = ds_calloc(1, sizeof *m, "the model");
    if (!m) return DS_ENOMEM;
    m->dir = ds_strdup(dir);
    int rc = m->dir ? model_config_load(dir, &m->cfg) : DS_ENOMEM;
    if (!rc) rc = st_set_open(dir, &m->st);
    if (rc) {
        model_free(m);
        return rc;
    }
    const model_config *c = &m->cfg;
    m->prequantized = c->quantized;
    if (m->prequantized) rc = model_quant_check_config(m);
    m->quantized = m->prequantized || (opts && opts->load_in_4bit);
    if (!rc) rc = model_require(m, "model.embed_tokens.weight", 2, c->vocab_size, c->hidden_size, &m->embed);
    if (!rc) rc = model_require(m, "model.norm.weight", 1, c->hidden_size, 0, &m->final_norm);
    if (!rc) {
        if (c->tie_word_embeddings && !st_set_find(m->st, "lm_head.weight")) m->lm_head = m->embed;
        else rc = model_require(m, "lm_head.weight", 2, c->vocab_size, c->hidden_size, &m->lm_head);
    }
    if (!rc && !(m->layers = ds_calloc((size_t)c->num_layers, sizeof *m->layers, "the model's layers"))) rc = DS_ENOMEM;
    for (int l = 0; !rc && l < c->num_layers; l++) rc = load_layer(m, l, opts);
    if (!rc) rc = model_check_tensors(m);
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return DS_OK;
}

void model_free(llama_model *m)
{
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->cfg.num_layers; l++) {
            for (int t = 0; t < LIN_COUNT; t++) model_quant_free(&m->layers[l].lin[t]);
            model_deepseek_free_layer(&m->cfg, &m->layers[l]);
        }
    free(m->layers);
    st_set_close(m->st);
    free(m->dir);
    free(m);
}

int model_slots(const model_config *cfg) { return cfg->ds.on ? deepseek_slots(cfg) : LIN_COUNT; }

const model_linear *model_slot(const llama_model *m, int l, int slot, char *path, size_t n)
{
    const model_config *c = &m->cfg;
    if (slot < 0 || slot >= model_slots(c)) return NULL;
    if (c->ds.on) return deepseek_linear(c, l, slot, path, n, NULL, NULL, NULL) ? &m->layers[l].dsl[slot] : NULL;
    if (path) snprintf(path, n, "%s", llama_linear_path((llama_linear)slot));
    return &m->layers[l].lin[slot];
}

size_t model_resident_bytes(const llama_model *m)
{
    const model_config *c = &m->cfg;
    size_t bytes = (size_t)c->vocab_size * c->hidden_size * 2 * (m->lm_head == m->embed ? 1 : 2);
    bytes += (size_t)c->hidden_size * 2 * (1 + 2 * (size_t)c->num_layers);
    if (c->qk_norm) bytes += (size_t)c->head_dim * 2 * 2 * (size_t)c->num_layers;
    for (int l = 0; l < c->num_layers; l++)
        for (int t = 0; t < LIN_COUNT; t++) {
            if (c->ds.on) {
                if (!t) bytes += model_deepseek_layer_bytes(c, &m->layers[l]);
                continue;
            }
            const model_linear *lin = &m->layers[l].lin[t];
            bytes += lin->q_owner ? model_quant_bytes(lin) : (size_t)lin->out * lin->in * 2;
            if (m->layers[l].bias[t]) bytes += (size_t)lin->out * 2;
        }
    return bytes;
}
