#include "run.h"

#include "adapters/merge.h"
#include "backend/backend.h"
#include "core/files.h"
#include "core/interrupt.h"
#include "core/mem.h"
#include "core/numeric.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int no_original(const llama_model *m)
{
    return ds_fail(DS_EUSAGE, "%s is a 4-bit checkpoint: it has no original 16-bit weights to merge into (use the "
                              "dequantized source)", m->dir);
}

int merge_linear(backend *cpu, const llama_model *m, const lora_adapter *a, merge_source src, int layer, int slot,
                 float *W)
{
    const model_linear *lin = model_slot(m, layer, slot, NULL, 0);
    if (!lin) return ds_fail(DS_EINTERNAL, "merge: layer %d has no linear %d", layer, slot);
    int rc = DS_OK;
    if (src == MERGE_ORIGINAL && !lin->dense) return no_original(m);
    if (src == MERGE_DEQUANTIZED && lin->q_owner) op_nf4_dequant(cpu, W, &lin->q);
    else rc = st_to_f32(lin->dense, W);
    if (!rc && a) lora_merge_weight(a, layer, slot, W);
    return rc;
}

/* ---- lazy tensors: each produced while the file is written ---- */

typedef struct {
    backend *cpu;
    const llama_model *m;
    const lora_adapter *a;
    merge_source src;
    const st_tensor *plain;   /* a tensor copied as it is (bf16, or fp32 where kept), or NULL */
    int layer, slot;          /* else the linear (layer, slot), merged */
    size_t numel;
    char name[160];           /* its name in the folder */
} merge_item;

/* The tensor in fp32 into tmp (numel values): plain, or merged. */
static int item_values(const merge_item *it, float *tmp)
{
    if (ds_interrupted()) return ds_interrupt_status("while merging; nothing was written");
    int rc = it->plain ? st_to_f32(it->plain, tmp) : merge_linear(it->cpu, it->m, it->a, it->src, it->layer, it->slot, tmp);
    size_t bad = rc ? it->numel : ds_first_nonfinite(tmp, it->numel);
    if (bad < it->numel)   /* a NaN or infinite weight is never written as a result */
        rc = ds_fail(DS_EDATA, "merge: %s would hold %s at [%zu] (%s); nothing was written", it->name,
                     isnan(tmp[bad]) ? "NaN" : "an infinity", bad,
                     it->plain ? "it is so in the base model" : "from the base weight or the adapter");
    return rc;
}

static int fill_bf16(void *ctx, void *dst)
{
    const merge_item *it = ctx;
    float *tmp = ds_malloc(sizeof(float) * it->numel, "a merged weight");
    if (!tmp) return DS_ENOMEM;
    int rc = item_values(it, tmp);
    uint16_t *h = dst;
    for (size_t i = 0; !rc && i < it->numel; i++) h[i] = ds_f32_to_bf16(tmp[i]);
    free(tmp);
    return rc;
}

/* fp32 tensors that stay fp32 (DeepSeek-V3's e_score_correction_bias, which
 * chooses experts: rounding it to bf16 could change the choice). */
static int fill_f32(void *ctx, void *dst) { return item_values(ctx, dst); }

/* The merged folder's tensors, in the checkpoint's order: items[] holds what
 * each lazy tensor is made from. */
typedef struct {
    merge_item proto;   /* cpu, model, adapter, source */
    merge_item *items;
    int k;
    st_writer *w;
} merge_plan;

static int add_plain(merge_plan *p, const char *name, const st_tensor *t, bool keep_f32)
{
    if (!t) return DS_OK;
    merge_item *it = &p->items[p->k++];
    *it = p->proto;
    it->plain = t;
    it->numel = (size_t)t->numel;
    snprintf(it->name, sizeof it->name, "%s", name);
    bool f32 = keep_f32 && t->dtype == ST_F32;
    return st_writer_add_lazy(p->w, it->name, f32 ? ST_F32 : ST_BF16, t->ndim, t->shape, f32 ? fill_f32 : fill_bf16,
                              it);
}

static int add_layer_plain(merge_plan *p, int l, const char *rest, const st_tensor *t, bool keep_f32)
{
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.%s", l, rest);
    return add_plain(p, name, t, keep_f32);
}

static int add_linear(merge_plan *p, int l, int slot)
{
    char path[128];
    const model_linear *lin = model_slot(p->proto.m, l, slot, path, sizeof path);
    if (!lin) return DS_OK;
    merge_item *it = &p->items[p->k++];
    *it = p->proto;
    it->layer = l;
    it->slot = slot;
    it->numel = (size_t)lin->out * lin->in;
    snprintf(it->name, sizeof it->name, "model.layers.%d.%s.weight", l, path);
    int64_t shape[2] = {lin->out, lin->in};
    return st_writer_add_lazy(p->w, it->name, ST_BF16, 2, shape, fill_bf16, it);
}

/* Layer l's tensors: norms, biases (LoRA leaves them frozen: copied as they
 * are), DeepSeek's MLA norms and router, then every linear, merged. */
static int add_layer(merge_plan *p, int l)
{
    const model_layer *L = &p->proto.m->layers[l];
    const model_config *c = &p->proto.m->cfg;
    int rc = add_layer_plain(p, l, "input_layernorm.weight", L->attn_norm, false);
    if (!rc) rc = add_layer_plain(p, l, "post_attention_layernorm.weight", L->mlp_norm, false);
    if (!rc) rc = add_layer_plain(p, l, "self_attn.q_norm.weight", L->q_norm, false);
    if (!rc) rc = add_layer_plain(p, l, "self_attn.k_norm.weight", L->k_norm, false);
    if (!rc) rc = add_layer_plain(p, l, "self_attn.q_a_layernorm.weight", L->q_a_norm, false);
    if (!rc) rc = add_layer_plain(p, l, "self_attn.kv_a_layernorm.weight", L->kv_a_norm, false);
    if (!rc) rc = add_layer_plain(p, l, "mlp.gate.weight", L->router, false);
    if (!rc) rc = add_layer_plain(p, l, "mlp.gate.e_score_correction_bias", L->router_bias, true);
    for (int t = 0; t < LIN_COUNT && !rc; t++) {
        char rest[128];
        snprintf(rest, sizeof rest, "%s.bias", llama_linear_path((llama_linear)t));
        rc = add_layer_plain(p, l, rest, L->bias[t], false);
    }
    for (int s = 0; s < model_slots(c) && !rc; s++) rc = add_linear(p, l, s);
    return rc;
}

int merge_write(const llama_model *m, const lora_adapter *a, merge_source src, const char *out_dir)
{
    const model_config *c = &m->cfg;
    if (src == MERGE_ORIGINAL && m->prequantized) return no_original(m);
    backend *cpu;
    int rc = be_open(BE_CPU, &cpu);
    if (rc) return rc;
    int nitems = 3 + c->num_layers * (8 + LIN_COUNT + model_slots(c));
    merge_plan p = {.proto = {.cpu = cpu, .m = m, .a = a, .src = src}};
    p.items = ds_calloc((size_t)nitems, sizeof *p.items, "the merged tensors");
    p.w = p.items ? st_writer_new() : NULL;
    rc = p.w ? st_writer_meta(p.w, "format", "pt") : DS_ENOMEM;
    if (!rc) rc = add_plain(&p, "model.embed_tokens.weight", m->embed, false);
    if (!rc) rc = add_plain(&p, "model.norm.weight", m->final_norm, false);
    if (!rc && m->lm_head != m->embed) rc = add_plain(&p, "lm_head.weight", m->lm_head, false);
    for (int l = 0; l < c->num_layers && !rc; l++) rc = add_layer(&p, l);
    char *tmp = NULL;
    if (!rc) rc = ds_dir_begin(out_dir, &tmp);
    if (!rc) {
        char *path = ds_path_join(tmp, "model.safetensors");
        rc = path ? st_writer_write(p.w, path) : DS_ENOMEM;
        free(path);
    }
    if (!rc) rc = model_config_rewrite(m->dir, tmp, NULL);   /* minus quantization_config, dtype bf16 */
    if (!rc) rc = model_copy_side_files(m->dir, tmp);
    if (!rc) rc = ds_dir_commit(tmp, out_dir);
    if (rc && tmp) ds_dir_abort(tmp);
    free(tmp);
    st_writer_free(p.w);
    free(p.items);
    be_close(cpu);
    return rc;
}
