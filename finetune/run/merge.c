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

int merge_linear(backend *cpu, const llama_model *m, const lora_adapter *a, merge_source src, int layer,
                 llama_linear t, float *W)
{
    if (m->cfg.ds.on) return model_config_refuse_deepseek(&m->cfg, "merging an adapter into the weights");
    const model_linear *lin = &m->layers[layer].lin[t];
    int rc = DS_OK;
    if (src == MERGE_ORIGINAL && !lin->dense) return no_original(m);
    if (src == MERGE_DEQUANTIZED && lin->q_owner) op_nf4_dequant(cpu, W, &lin->q);
    else rc = st_to_f32(lin->dense, W);
    if (!rc && a) lora_merge_weight(a, layer, t, W);
    return rc;
}

/* ---- lazy tensors: each produced while the file is written ---- */

typedef struct {
    backend *cpu;
    const llama_model *m;
    const lora_adapter *a;
    merge_source src;
    const st_tensor *plain;   /* a 16-bit tensor copied as bf16, or NULL */
    int layer;
    llama_linear t;
} merge_item;

/* The name a merged tensor has in the folder, for messages. */
static void item_name(const merge_item *it, char *buf, size_t n)
{
    if (it->plain) snprintf(buf, n, "%s", it->plain->name);
    else snprintf(buf, n, "model.layers.%d.%s.weight", it->layer, llama_linear_path(it->t));
}

static int fill_bf16(void *ctx, void *dst)
{
    const merge_item *it = ctx;
    if (ds_interrupted()) return ds_interrupt_status("while merging; nothing was written");
    size_t n = it->plain ? (size_t)it->plain->numel : 0;
    int out = 0, in = 0;
    if (!it->plain) {
        llama_linear_shape(&it->m->cfg, it->t, &out, &in);
        n = (size_t)out * in;
    }
    float *tmp = ds_malloc(sizeof(float) * n, "a merged weight");
    if (!tmp) return DS_ENOMEM;
    int rc = it->plain ? st_to_f32(it->plain, tmp) : merge_linear(it->cpu, it->m, it->a, it->src, it->layer, it->t, tmp);
    size_t bad = rc ? n : ds_first_nonfinite(tmp, n);
    if (bad < n) {   /* a NaN or infinite weight is never written as a result */
        char name[256];
        item_name(it, name, sizeof name);
        rc = ds_fail(DS_EDATA, "merge: %s would hold %s at [%zu] (%s); nothing was written", name,
                     isnan(tmp[bad]) ? "NaN" : "an infinity", bad,
                     it->plain ? "it is so in the base model" : "from the base weight or the adapter");
    }
    uint16_t *h = dst;
    for (size_t i = 0; !rc && i < n; i++) h[i] = ds_f32_to_bf16(tmp[i]);
    free(tmp);
    return rc;
}

int merge_write(const llama_model *m, const lora_adapter *a, merge_source src, const char *out_dir)
{
    const model_config *c = &m->cfg;
    int refused = model_config_refuse_deepseek(c, "merging an adapter into the weights");
    if (refused) return refused;
    if (src == MERGE_ORIGINAL && m->prequantized) return no_original(m);
    backend *cpu;
    int rc = be_open(BE_CPU, &cpu);
    if (rc) return rc;
    int nitems = 3 + c->num_layers * (4 + 2 * LIN_COUNT);
    merge_item *items = ds_calloc((size_t)nitems, sizeof *items, "the merged tensors");
    st_writer *w = items ? st_writer_new() : NULL;
    rc = w ? st_writer_meta(w, "format", "pt") : DS_ENOMEM;
    int k = 0;
#define PLAIN(name_, tensor_)                                                                              \
    do {                                                                                                   \
        if (rc) break;                                                                                     \
        items[k] = (merge_item){.cpu = cpu, .m = m, .a = a, .src = src, .plain = (tensor_)};              \
        rc = st_writer_add_lazy(w, name_, ST_BF16, (tensor_)->ndim, (tensor_)->shape, fill_bf16, &items[k]); \
        k++;                                                                                               \
    } while (0)
    PLAIN("model.embed_tokens.weight", m->embed);
    PLAIN("model.norm.weight", m->final_norm);
    if (m->lm_head != m->embed) PLAIN("lm_head.weight", m->lm_head);
    char name[256];
    for (int l = 0; l < c->num_layers && !rc; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        PLAIN(name, m->layers[l].attn_norm);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        PLAIN(name, m->layers[l].mlp_norm);
        if (c->qk_norm) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
            PLAIN(name, m->layers[l].q_norm);
            snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
            PLAIN(name, m->layers[l].k_norm);
        }
        for (int t = 0; t < LIN_COUNT && !rc; t++) {
            if (!m->layers[l].bias[t]) continue;   /* biases stay as they are: LoRA leaves them frozen */
            snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, llama_linear_path((llama_linear)t));
            PLAIN(name, m->layers[l].bias[t]);
        }
        for (int t = 0; t < LIN_COUNT && !rc; t++) {
            const model_linear *lin = &m->layers[l].lin[t];
            int64_t shape[2] = {lin->out, lin->in};
            items[k] = (merge_item){.cpu = cpu, .m = m, .a = a, .src = src, .layer = l, .t = (llama_linear)t};
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, llama_linear_path((llama_linear)t));
            rc = st_writer_add_lazy(w, name, ST_BF16, 2, shape, fill_bf16, &items[k]);
            k++;
        }
    }
#undef PLAIN
    char *tmp = NULL;
    if (!rc) rc = ds_dir_begin(out_dir, &tmp);
    if (!rc) {
        char *path = ds_path_join(tmp, "model.safetensors");
        rc = path ? st_writer_write(w, path) : DS_ENOMEM;
        free(path);
    }
    if (!rc) rc = model_config_rewrite(m->dir, tmp, NULL);   /* minus quantization_config, dtype bf16 */
    if (!rc) rc = model_copy_side_files(m->dir, tmp);
    if (!rc) rc = ds_dir_commit(tmp, out_dir);
    if (rc && tmp) ds_dir_abort(tmp);
    free(tmp);
    st_writer_free(w);
    free(items);
    be_close(cpu);
    return rc;
}
