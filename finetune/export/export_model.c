/* finetune/export/export_model.c - a model folder as a GGUF file.
 *
 * First a plan: every tensor llama.cpp reads, its source in the checkpoint,
 * its GGUF name, shape and type. Then the file is written one tensor at a
 * time: read (a 4-bit weight dequantized), merged with the adapter, Q/K rows
 * reordered for the llama architecture, checked finite, quantized. Every
 * tensor of the checkpoint must be in the plan; one that is not is refused
 * by name, never dropped. */
#include "export_internal.h"

#include "adapters/lora.h"
#include "adapters/merge.h"
#include "backend/backend.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/safetensors.h"
#include "quant/bnb.h"
#include "quant/ggml_quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the plan */

int export_add_item(exporter *ex, const char *name, const char *hf, int ndim, int64_t rows, int64_t cols,
                    plan_item **out)
{
    if (ds_grow(&ex->items, &ex->cap, (size_t)ex->n + 1, sizeof *ex->items)) return DS_ENOMEM;
    plan_item *it = &ex->items[ex->n++];
    *it = (plan_item){.ex = ex, .kind = ITEM_PLAIN, .layer = -1, .ndim = ndim, .rows = rows, .cols = cols, .ne2 = 1};
    snprintf(it->name, sizeof it->name, "%s", name);
    snprintf(it->hf, sizeof it->hf, "%s", hf);
    if (out) *out = it;
    return DS_OK;
}

/* A 16/32-bit checkpoint tensor of this shape, or (a linear weight) a
 * bitsandbytes 4-bit one, whose shape is checked when it is read. */
int export_check_source(const exporter *ex, const plan_item *it, bool may_be_4bit)
{
    if (may_be_4bit && ex->m.quantized && bnb_is_quantized(ex->st, it->hf)) return DS_OK;
    const st_tensor *t;
    int rc = st_set_require(ex->st, it->hf, &t);
    if (rc) return rc;
    if (t->dtype != ST_BF16 && t->dtype != ST_F16 && t->dtype != ST_F32)
        return ds_fail(DS_EDATA, "%s: tensor '%s' is %s, expected BF16, F16 or F32", ex->dir, it->hf,
                       st_dtype_name(t->dtype));
    int64_t shape[2] = {it->ndim == 1 ? it->cols : it->rows, it->cols};
    rc = st_check_shape(t, it->ndim, shape);
    return rc ? ds_fail_context(rc, "%s: ", ex->dir) : DS_OK;
}

static int plan_tensor(exporter *ex, const char *name, const char *hf, int ndim, int64_t rows, int64_t cols)
{
    plan_item *it = NULL;
    int rc = export_add_item(ex, name, hf, ndim, rows, cols, &it);
    return rc ? rc : export_check_source(ex, it, false);
}

/* Layer l's tensor "blk.L.GGUF.SUFFIX" from "model.layers.L.HF.SUFFIX". */
static void layer_names(int l, const char *gguf, const char *hf, const char *suffix, char name[GGUF_MAX_NAME + 1],
                        char hf_name[160])
{
    snprintf(name, GGUF_MAX_NAME + 1, "blk.%d.%s.%s", l, gguf, suffix);
    snprintf(hf_name, 160, "model.layers.%d.%s.%s", l, hf, suffix);
}

/* A vector of layer l (a norm, a bias). */
static int plan_vector(exporter *ex, int l, const char *hf, const char *suffix, int64_t n)
{
    char name[GGUF_MAX_NAME + 1], hf_name[160];
    layer_names(l, export_layer_tensor(hf), hf, suffix, name, hf_name);
    return plan_tensor(ex, name, hf_name, 1, 1, n);
}

static int plan_layer(exporter *ex, int l)
{
    const model_config *c = &ex->m.cfg;
    const export_family *f = ex->m.fam;
    int rc = plan_vector(ex, l, "input_layernorm", "weight", c->hidden_size);
    for (int t = 0; !rc && t < LIN_COUNT; t++) {
        int out, in;
        llama_linear_shape(c, (llama_linear)t, &out, &in);
        const char *path = llama_linear_path((llama_linear)t);
        char name[GGUF_MAX_NAME + 1], hf[160];
        layer_names(l, export_layer_tensor(path), path, "weight", name, hf);
        plan_item *it = NULL;
        if ((rc = export_add_item(ex, name, hf, 2, out, in, &it))) break;
        it->kind = ITEM_LINEAR;
        it->layer = l;
        it->slot = t;
        if (f->permute_qk && (t == LIN_Q || t == LIN_K)) it->permute_heads = t == LIN_Q ? c->num_heads : c->num_kv_heads;
        rc = export_check_source(ex, it, true);
        if (!rc && f->qkv_bias && t <= LIN_V) rc = plan_vector(ex, l, path, "bias", out);
        if (!rc && f->qk_norm && t <= LIN_K)   /* attn_q_norm, attn_k_norm: one vector of head_dim */
            rc = plan_vector(ex, l, t == LIN_Q ? "self_attn.q_norm" : "self_attn.k_norm", "weight", c->head_dim);
        if (!rc && t == LIN_O) rc = plan_vector(ex, l, "post_attention_layernorm", "weight", c->hidden_size);
    }
    return rc;
}

static int make_plan(exporter *ex)
{
    const model_config *c = &ex->m.cfg;
    int rc = DS_OK;
    plan_item *freqs;
    if (!strcmp(ex->m.rope_type, "llama3") && !(rc = export_add_item(ex, "rope_freqs.weight", "", 1, 1, c->head_dim / 2,
                                                                      &freqs)))
        freqs->kind = ITEM_ROPE_FREQS;
    if (!rc) rc = plan_tensor(ex, "token_embd.weight", "model.embed_tokens.weight", 2, c->vocab_size, c->hidden_size);
    for (int l = 0; !rc && l < c->num_layers; l++)
        rc = ex->m.fam->deepseek2 ? export_deepseek_plan_layer(ex, l) : plan_layer(ex, l);
    if (!rc) rc = plan_tensor(ex, "output_norm.weight", "model.norm.weight", 1, 1, c->hidden_size);
    ex->has_output = !c->tie_word_embeddings || st_set_find(ex->st, "lm_head.weight");
    if (!rc && ex->has_output)
        rc = plan_tensor(ex, "output.weight", "lm_head.weight", 2, c->vocab_size, c->hidden_size);
    return rc;
}

/* How many leading characters of `name` are a checkpoint tensor item `it`
 * reads (its hf name; for stacked experts, any expert's weight), 0 if none. */
static size_t item_prefix(const plan_item *it, const char *name)
{
    if (it->kind == ITEM_EXPERTS) return export_deepseek_expert_prefix(it, name);
    size_t h = strlen(it->hf);
    return h && !strncmp(name, it->hf, h) ? h : 0;
}

/* Every checkpoint tensor is in the plan (or is the 4-bit state of one, or
 * a rotary inverse-frequency buffer, which the converter also skips). */
static int check_all_used(const exporter *ex)
{
    static const char *const BNB_PARTS[] = {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
                                            ".quant_state.bitsandbytes__nf4"};
    for (int i = 0; i < st_set_count(ex->st); i++) {
        const char *name = st_set_at(ex->st, i)->name;
        size_t n = strlen(name);
        bool used = n > 22 && !strcmp(name + n - 22, ".rotary_emb.inv_freq");
        for (int k = 0; !used && k < ex->n; k++) {
            size_t h = item_prefix(&ex->items[k], name);
            used = h && h == n;
            for (int b = 0; !used && h && b < 5; b++) used = !strcmp(name + h, BNB_PARTS[b]);
        }
        if (!used)
            return ds_fail(DS_EDATA, "%s: tensor '%s' is not part of a %s model as the GGUF export writes it", ex->dir,
                           name, ex->m.fam->hf_arch);
    }
    return DS_OK;
}

/* ------------------------------------------------------------ the types */

/* Each export type: the ggml type of its 2-D weights (before the mix's
 * exceptions) and general.file_type (llama_ftype). */
static const struct {
    const char *name;
    int base;
    uint32_t file_type;
} TYPES[] = {
    [GGUF_EXPORT_F16] = {"f16", GGML_F16, 1},      [GGUF_EXPORT_BF16] = {"bf16", GGML_BF16, 32},
    [GGUF_EXPORT_Q8_0] = {"q8_0", GGML_Q8_0, 7},   [GGUF_EXPORT_Q4_0] = {"q4_0", GGML_Q4_0, 2},
    [GGUF_EXPORT_Q4_K_M] = {"q4_k_m", GGML_Q4_K, 15}, [GGUF_EXPORT_F32] = {"f32", GGML_F32, 0},
};

int gguf_export_type_parse(const char *s, gguf_export_type *out)
{
    if (!s) s = "q4_k_m";
    for (int i = 0; i < (int)(sizeof TYPES / sizeof *TYPES); i++)
        if (!strcmp(s, TYPES[i].name)) {
            *out = (gguf_export_type)i;
            return DS_OK;
        }
    return ds_fail(DS_EUSAGE, "--type %s: expected f32, f16, bf16, q8_0, q4_0 or q4_k_m", s);
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers, and
 * every third one between. */
static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* llama.cpp counts an 80-layer grouped-query llama, and an 80-layer qwen2,
 * as "70B", whose q4_k_m attn_v gets q5_K. */
static bool is_70b(const export_model *m)
{
    const model_config *c = &m->cfg;
    return c->num_layers == 80 && (!strcmp(m->fam->arch, "qwen2") ||
                                   (!strcmp(m->fam->arch, "llama") && c->num_heads != c->num_kv_heads));
}

/* llama_tensor_get_type for the mixes ds-ft writes (no imatrix, no
 * overrides; tensors told apart by name, as llama.cpp does), then
 * llama.cpp's fallback for rows that are not a whole number of the type's
 * blocks: q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, and f16 when even that
 * does not fit. An expert router (ffn_gate_inp) stays f32: the converter
 * writes it so and llama-quantize leaves it. */
static int choose_type(const exporter *ex, gguf_export_type x, plan_item *it, int *fallbacks)
{
    if (it->ndim < 2 || strstr(it->name, "ffn_gate_inp.weight")) {   /* norms, biases, rope_freqs, routers */
        it->type = GGML_F32;
        return DS_OK;
    }
    int base = TYPES[x].base, type = base, L = ex->m.cfg.num_layers;
    bool output = !strcmp(it->name, "output.weight") || (!ex->has_output && !strcmp(it->name, "token_embd.weight"));
    if (base == GGML_F32 || base == GGML_F16 || base == GGML_BF16) {
        it->type = base;
        return DS_OK;
    }
    if (output)
        type = it->cols % ggml_type_get(base)->block ? GGML_Q8_0 : base == GGML_Q8_0 ? GGML_Q8_0 : GGML_Q6_K;
    else if (x == GGUF_EXPORT_Q4_K_M && strstr(it->name, "attn_v.weight"))
        type = more_bits(it->layer, L) ? GGML_Q6_K : is_70b(&ex->m) ? GGML_Q5_K : type;
    else if (x == GGUF_EXPORT_Q4_K_M && strstr(it->name, "ffn_down") && more_bits(it->layer, L))
        type = GGML_Q6_K;   /* ffn_down, and DeepSeek's ffn_down_exps and ffn_down_shexp */
    else if (x == GGUF_EXPORT_Q4_K_M && strstr(it->name, "attn_output.weight") && ex->m.cfg.ds.n_routed == 8)
        type = GGML_Q5_K;   /* llama.cpp's rule for models of 8 experts */
    if (it->cols % ggml_type_get(type)->block) {
        ++*fallbacks;
        type = type == GGML_Q4_K ? GGML_Q5_0 : type == GGML_Q5_K ? GGML_Q5_1 : type == GGML_Q6_K ? GGML_Q8_0 : type;
        if (it->cols % ggml_type_get(type)->block) type = GGML_F16;
    }
    it->type = type;
    return DS_OK;
}

/* ------------------------------------------------------------ the data */

/* The fp32 values of a linear weight, as the merge reads them: a 4-bit
 * checkpoint's NF4 dequantized; with an adapter and the dequantized source,
 * a 16-bit weight's NF4 round trip (what QLoRA trained against); else the
 * 16-bit weight. The adapter's s·B·A is added. */
int export_read_linear(const exporter *ex, const char *hf, int layer, int slot, int64_t rows, int64_t cols, float *W)
{
    bool nf4 = ex->m.quantized && bnb_is_quantized(ex->st, hf);
    int rc = DS_OK;
    if (nf4 || (ex->ad && !ex->merge_original)) {
        nf4_tensor q = {0};
        rc = nf4 ? bnb_load_weight(ex->st, hf, &q) : bnb_weight_or_quantize(ex->st, hf, true, &q);
        if (!rc && (q.view.rows != rows || q.view.cols != cols))
            rc = ds_fail(DS_EDATA, "%s: 4-bit tensor '%s' is [%lld, %lld], the model expects [%lld, %lld]", ex->dir,
                         hf, (long long)q.view.rows, (long long)q.view.cols, (long long)rows, (long long)cols);
        if (!rc) op_nf4_dequant(ex->cpu, W, &q.view);
        nf4_tensor_free(&q);
    } else {
        const st_tensor *t;
        int64_t shape[2] = {rows, cols};
        rc = st_set_require(ex->st, hf, &t);
        if (!rc) rc = st_check_shape(t, 2, shape);
        if (!rc) rc = st_to_f32(t, W);
    }
    if (!rc && ex->ad) lora_merge_weight(ex->ad, layer, slot, W);
    return rc;
}

static int fill(void *ctx, void *dst, size_t nbytes)
{
    const plan_item *it = ctx;
    const exporter *ex = it->ex;
    size_t n = (size_t)it->ne2 * (size_t)it->rows * (size_t)it->cols;
    float *W = ds_malloc(sizeof(float) * n, it->name);
    if (!W) return DS_ENOMEM;
    int rc = DS_OK;
    switch (it->kind) {
    case ITEM_ROPE_FREQS: export_rope_factors(&ex->m, W); break;
    case ITEM_LINEAR: rc = export_read_linear(ex, it->hf, it->layer, it->slot, it->rows, it->cols, W); break;
    case ITEM_PLAIN: rc = st_to_f32(st_set_find(ex->st, it->hf), W); break;
    default: rc = export_deepseek_fill(it, W);
    }
    if (!rc && it->permute_heads) rc = export_permute_rows(W, (int)it->rows, (int)it->cols, it->permute_heads);
    if (!rc && it->rope_heads) rc = export_deepseek_rope_pairs(it, W);
    for (size_t i = 0; !rc && i < n; i++)
        if (!isfinite(W[i]))
            rc = ds_fail(DS_EDATA, "%s: tensor '%s'%s holds %s at element %zu", ex->dir, it->hf,
                         ex->ad && it->kind != ITEM_PLAIN ? " with the adapter merged" : "", isnan(W[i]) ? "NaN" : "Inf",
                         i);
    if (!rc) rc = ggml_quantize(it->type, W, dst, it->ne2 * it->rows, it->cols);
    free(W);
    (void)nbytes;
    return rc;
}

/* ------------------------------------------------------------ the file */

static void exporter_free(exporter *ex)
{
    lora_free(ex->ad);
    be_close(ex->cpu);
    st_set_close(ex->st);
    free(ex->items);
}

int gguf_export_model(const char *model_dir, const gguf_export_opts *o, const char *out_path,
                      gguf_export_report *report)
{
    exporter ex = {.dir = model_dir, .merge_original = o->merge_original};
    gguf_export_report rep = {0};
    gguf_writer *w = gguf_writer_new();
    int rc = w ? export_model_load(model_dir, &ex.m) : DS_ENOMEM;
    if (!rc) rc = st_set_open(model_dir, &ex.st);
    if (!rc && o->adapter_dir) rc = lora_load_peft(o->adapter_dir, &ex.m.cfg, &ex.ad);
    if (!rc && ex.ad && o->merge_original && ex.m.quantized)
        rc = ds_fail(DS_EUSAGE, "%s is a 4-bit checkpoint: it has no original 16-bit weights to merge into (use the "
                                "dequantized source)", model_dir);
    if (!rc) rc = be_open(BE_CPU, &ex.cpu);
    if (!rc) rc = make_plan(&ex);
    if (!rc) rc = check_all_used(&ex);
    for (int i = 0; !rc && i < ex.n; i++) rc = choose_type(&ex, o->type, &ex.items[i], &rep.fallbacks);
    if (!rc) rc = gguf_add_string(w, "general.architecture", ex.m.fam->arch);
    if (!rc) rc = gguf_add_string(w, "general.type", "model");
    if (!rc) rc = gguf_add_string(w, "general.name", ex.m.name);
    if (!rc) rc = export_arch_keys(w, &ex.m, TYPES[o->type].file_type);
    if (!rc && ex.m.fam->deepseek2) rc = export_deepseek_keys(w, &ex.m);
    if (!rc) rc = gguf_add_u32(w, "general.quantization_version", 2);
    if (!rc) rc = export_vocab(w, model_dir, &ex.m, o->pre, rep.pre, sizeof rep.pre);
    for (int i = 0; !rc && i < ex.n; i++) {
        plan_item *it = &ex.items[i];
        int64_t ne[3] = {it->cols, it->rows, it->ne2};
        rc = gguf_add_tensor_lazy(w, it->name, it->type, it->ndim, ne, fill, it);
        rep.per_type[it->type]++;
    }
    if (!rc) rc = gguf_writer_write(w, out_path);
    if (!rc && report) {
        snprintf(rep.arch, sizeof rep.arch, "%s", ex.m.fam->arch);
        rep.ntensors = ex.n;
        rep.data_bytes = gguf_writer_data_bytes(w);
        *report = rep;
    }
    gguf_writer_free(w);
    exporter_free(&ex);
    return rc;
}
