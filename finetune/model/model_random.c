/* finetune/model/model_random.c - models of a known shape with random weights, for
 * benchmarks and memory estimates: no files needed. The linear layers are random
 * NF4 (double quantization), everything else random bf16 (DeepSeek-V3's router
 * bias fp32, as its checkpoints store it). DeepSeek-V2/V3 models get every
 * linear deepseek_linear() names (MLA, dense MLP, shared and routed experts),
 * the latent norms and the router, as model_deepseek.c loads them. */
#include "model.h"

#include "model_quant.h"

#include "core/mem.h"
#include "core/numeric.h"
#include "core/rng.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int hidden, intermediate, layers, heads, kv_heads, vocab;
    double rope_theta, rope_factor;
} shape;

/* From the models' config.json files. */
static const shape SHAPES[] = {
    {"deepseek-llm-7b", 4096, 11008, 30, 32, 32, 102400, 10000.0, 1.0},
    {"deepseek-coder-1.3b", 2048, 5504, 24, 16, 16, 32256, 100000.0, 4.0},
    {"deepseek-coder-6.7b", 4096, 11008, 32, 32, 32, 32256, 100000.0, 4.0},
    {"tiny", 128, 352, 2, 4, 2, 1024, 10000.0, 1.0},
};

const char *model_shape_names(void)
{
    static char names[512];
    snprintf(names, sizeof names, "deepseek-llm-7b, deepseek-coder-1.3b, deepseek-coder-6.7b, tiny, %s",
             model_shape_config_names());
    return names;
}

int model_shape(const char *name, model_config *c)
{
    for (size_t i = 0; i < sizeof SHAPES / sizeof *SHAPES; i++) {
        const shape *s = &SHAPES[i];
        if (strcmp(s->name, name)) continue;
        memset(c, 0, sizeof *c);
        snprintf(c->architecture, sizeof c->architecture, "LlamaForCausalLM");
        c->hidden_size = s->hidden;
        c->intermediate_size = s->intermediate;
        c->num_layers = s->layers;
        c->num_heads = s->heads;
        c->num_kv_heads = s->kv_heads;
        c->head_dim = s->hidden / s->heads;
        c->vocab_size = s->vocab;
        c->max_position = 16384;
        c->rms_norm_eps = 1e-6f;
        c->rope_theta = s->rope_theta;
        c->rope_factor = s->rope_factor;
        c->rope = (rope_config){.type = s->rope_factor != 1.0 ? ROPE_LINEAR : ROPE_DEFAULT, .factor = s->rope_factor};
        c->bos_id = 0;
        c->eos_id = 1;
        c->pad_id = -1;
        return DS_OK;
    }
    if (model_shape_config(name, c) == DS_OK) return DS_OK;
    return model_config_load(name, c);   /* a model folder */
}

/* A host tensor (rows) or (rows, cols) of random values with standard
 * deviation ~std (uniform) around mean, bf16 or fp32; NULL when out of memory
 * (message set). */
static const st_tensor *random_tensor(st_dtype dtype, int64_t rows, int64_t cols, float std, float mean, uint64_t seed)
{
    st_tensor *t = ds_calloc(1, sizeof *t, "a random tensor");
    if (!t) return NULL;
    t->dtype = dtype;
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->numel = rows * (cols ? cols : 1);
    t->nbytes = (size_t)t->numel * st_dtype_size(dtype);
    void *d = ds_malloc(t->nbytes, "a random tensor's values");
    if (!d) {
        free(t);
        return NULL;
    }
    const float a = std * 1.7320508f;   /* uniform(-a, a) has standard deviation std */
    for (int64_t i = 0; i < t->numel; i++) {
        float x = mean + a * (2.0f * ds_u01(ds_hash3(seed, 0, (uint64_t)i)) - 1.0f);
        if (dtype == ST_F32) ((float *)d)[i] = x;
        else ((uint16_t *)d)[i] = ds_f32_to_bf16(x);
    }
    t->data = d;
    t->name = "random";
    return t;
}

static const st_tensor *random_bf16(int64_t rows, int64_t cols, float std, float mean, uint64_t seed)
{
    return random_tensor(ST_BF16, rows, cols, std, mean, seed);
}

static void free_tensor(const st_tensor *t)
{
    if (!t) return;
    free((void *)t->data);
    free((void *)t);
}

/* Random NF4: uniform 4-bit codes and 8-bit absmax codes, scaled so that the
 * weights are ~N(0, 1/fan_in)-sized. */
static int random_nf4(model_linear *lin, uint64_t seed)
{
    nf4_tensor *t = ds_calloc(1, sizeof *t, "a random 4-bit weight");
    if (!t) return DS_ENOMEM;
    int rc = nf4_tensor_alloc(t, lin->out, lin->in, true, NF4_OUT_BF16);
    if (rc) {
        free(t);
        return rc;
    }
    const nf4_view *v = &t->view;
    uint64_t *p = (uint64_t *)t->packed;
    size_t bytes = (size_t)(v->n + 1) / 2, words = bytes / 8;
    /* DeepSeek-V2-Lite's ~16B weights: threads make it seconds, not minutes */
#pragma omp parallel for schedule(static) if (words > (1u << 16))
    for (size_t i = 0; i < words; i++) p[i] = ds_hash3(seed, 1, i);
    for (size_t i = words * 8; i < bytes; i++) t->packed[i] = (uint8_t)(ds_hash3(seed, 3, i) >> 56);
#pragma omp parallel for schedule(static) if (v->nblocks > (1 << 16))
    for (int64_t b = 0; b < v->nblocks; b++) t->absmax_q[b] = (uint8_t)(ds_hash3(seed, 2, (uint64_t)b) >> 56);
    float scale = 1.0f / sqrtf((float)lin->in);
    for (int64_t b = 0; b < v->nblocks2; b++) t->absmax2[b] = scale;
    t->view.offset = 2.0f * scale;
    lin->q = t->view;
    lin->q_owner = t;
    return DS_OK;
}

/* each tensor made is checked at once: a NULL one ends the caller's loop with DS_ENOMEM */
#define MADE(x) ((x) ? DS_OK : DS_ENOMEM)

/* Layer l's DeepSeek tensors (model_deepseek_load_layer's): every linear
 * slot the layer has, the latent norms (near 1), and in MoE layers the router
 * (E, C) bf16, small so that its softmax/sigmoid spreads the tokens over the
 * experts, and V3's correction bias (E) fp32. */
static int random_deepseek_layer(const model_config *cfg, model_layer *L, int l, uint64_t seed)
{
    const deepseek_config *d = &cfg->ds;
    const int S = deepseek_slots(cfg), C = cfg->hidden_size;
    const uint64_t base = seed * 7919 + (uint64_t)l * 4;
    L->dsl = ds_calloc((size_t)S, sizeof *L->dsl, "a random model's layers");
    int rc = MADE(L->dsl);
    if (!rc && d->q_lora_rank) rc = MADE(L->q_a_norm = random_bf16(d->q_lora_rank, 0, 0.1f, 1.0f, base));
    if (!rc) rc = MADE(L->kv_a_norm = random_bf16(d->kv_lora_rank, 0, 0.1f, 1.0f, base + 1));
    if (!rc && deepseek_is_moe(cfg, l)) {
        rc = MADE(L->router = random_bf16(d->n_routed, C, 1.0f / sqrtf((float)C), 0.0f, base + 2));
        if (!rc && d->sigmoid) rc = MADE(L->router_bias = random_tensor(ST_F32, d->n_routed, 0, 0.01f, 0.0f, base + 3));
    }
    for (int s = 0; s < S && !rc; s++) {
        model_linear *lin = &L->dsl[s];
        if (!deepseek_linear(cfg, l, s, NULL, 0, NULL, &lin->out, &lin->in)) continue;   /* out = 0: none here */
        rc = random_nf4(lin, seed * 1000003 + (uint64_t)l * S + (uint64_t)s);
    }
    return rc;
}

int model_random(const model_config *cfg, uint64_t seed, llama_model **out)
{
    *out = NULL;
    llama_model *m = ds_calloc(1, sizeof *m, "a random model");
    if (!m) return DS_ENOMEM;
    m->cfg = *cfg;
    m->quantized = true;
    const int64_t V = cfg->vocab_size, C = cfg->hidden_size;
    int rc = DS_OK;
    if (!(m->dir = ds_strdup("(random weights)"))) rc = DS_ENOMEM;
    if (!rc) rc = MADE(m->embed = random_bf16(V, C, 1.0f, 0.0f, seed + 1));
    if (!rc) rc = MADE(m->lm_head = cfg->tie_word_embeddings ? m->embed
                                   : random_bf16(V, C, 1.0f / sqrtf((float)C), 0.0f, seed + 2));
    if (!rc) rc = MADE(m->final_norm = random_bf16(C, 0, 0.1f, 1.0f, seed + 3));
    if (!rc) rc = MADE(m->layers = ds_calloc((size_t)cfg->num_layers, sizeof *m->layers, "a random model's layers"));
    for (int l = 0; l < cfg->num_layers && !rc; l++) {
        model_layer *L = &m->layers[l];
        rc = MADE(L->attn_norm = random_bf16(C, 0, 0.1f, 1.0f, seed + 10 + 2 * (uint64_t)l));
        if (!rc) rc = MADE(L->mlp_norm = random_bf16(C, 0, 0.1f, 1.0f, seed + 11 + 2 * (uint64_t)l));
        if (!rc && cfg->qk_norm) {
            rc = MADE(L->q_norm = random_bf16(cfg->head_dim, 0, 0.1f, 1.0f, seed * 7 + 3 * (uint64_t)l));
            if (!rc) rc = MADE(L->k_norm = random_bf16(cfg->head_dim, 0, 0.1f, 1.0f, seed * 7 + 3 * (uint64_t)l + 1));
        }
        if (!rc && cfg->ds.on) {   /* lin[] and bias[] stay unused */
            rc = random_deepseek_layer(cfg, L, l, seed);
            continue;
        }
        for (int t = 0; t < LIN_COUNT && !rc; t++) {
            llama_linear_shape(cfg, (llama_linear)t, &L->lin[t].out, &L->lin[t].in);
            rc = random_nf4(&L->lin[t], seed * 1000 + (uint64_t)(l * LIN_COUNT + t));
            if (!rc && cfg->bias[t])
                rc = MADE(L->bias[t] = random_bf16(L->lin[t].out, 0, 0.02f, 0.0f,
                                                   seed * 5000 + (uint64_t)(l * LIN_COUNT + t)));
        }
    }
    if (rc) {
        model_random_free(m);
        return rc;
    }
    *out = m;
    return DS_OK;
}
#undef MADE

void model_random_free(llama_model *m)
{
    if (!m) return;
    free_tensor(m->embed);
    if (m->lm_head != m->embed) free_tensor(m->lm_head);
    free_tensor(m->final_norm);
    for (int l = 0; m->layers && l < m->cfg.num_layers; l++) {
        model_layer *L = &m->layers[l];
        free_tensor(L->attn_norm);
        free_tensor(L->mlp_norm);
        free_tensor(L->q_norm);
        free_tensor(L->k_norm);
        free_tensor(L->q_a_norm);
        free_tensor(L->kv_a_norm);
        free_tensor(L->router);
        free_tensor(L->router_bias);
        L->attn_norm = L->mlp_norm = L->q_norm = L->k_norm = NULL;
        L->q_a_norm = L->kv_a_norm = L->router = L->router_bias = NULL;
        for (int t = 0; t < LIN_COUNT; t++) {
            free_tensor(L->bias[t]);
            L->bias[t] = NULL;
        }
    }
    m->embed = m->lm_head = m->final_norm = NULL;
    model_free(m);   /* layers' NF4 storage (DeepSeek's slot arrays too), the folder name */
}
