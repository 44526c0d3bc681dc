/* finetune/export/export_lora.c - a PEFT adapter as llama.cpp's LoRA GGUF,
 * as convert_lora_to_gguf.py writes it: for each adapted weight W of the
 * model, "NAME.lora_a" = A (r, in) and "NAME.lora_b" = B (out, r) in f32
 * under W's GGUF name; for the llama architecture B's rows are reordered as
 * W's are (the reordering acts on the output rows only, so it moves to B).
 * llama.cpp adds scale * alpha / r * B·A x; rsLoRA's alpha / sqrt(r) is
 * written as alpha' = alpha * sqrt(r), which gives the same product. */
#include "export_internal.h"

#include "adapters/lora.h"
#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const export_model *m;
    const lora_adapter *a;
    int layer;
    llama_linear t;
    bool b;   /* lora_b, else lora_a */
} lora_part;

static int fill(void *ctx, void *dst, size_t nbytes)
{
    const lora_part *p = ctx;
    const lora_adapter *a = p->a;
    const float *src = p->b ? lora_B(a, p->layer, p->t) : lora_A(a, p->layer, p->t);
    size_t n = nbytes / sizeof(float);
    memcpy(dst, src, nbytes);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(src[i]))
            return ds_fail(DS_EDATA, "adapter tensor of layer %d %s (lora_%c) holds %s at element %zu", p->layer,
                           llama_linear_name(p->t), p->b ? 'B' : 'A', isnan(src[i]) ? "NaN" : "Inf", i);
    const model_config *c = &p->m->cfg;
    if (p->b && p->m->fam->permute_qk && (p->t == LIN_Q || p->t == LIN_K))
        return export_permute_rows(dst, a->out[p->t], a->cfg.r, p->t == LIN_Q ? c->num_heads : c->num_kv_heads);
    return DS_OK;
}

int gguf_export_lora(const char *model_dir, const char *adapter_dir, const char *out_path,
                     gguf_export_report *report)
{
    export_model m;
    lora_adapter *a = NULL;
    lora_part *parts = NULL;
    gguf_export_report rep = {0};
    gguf_writer *w = gguf_writer_new();
    int rc = w ? export_model_load(model_dir, &m) : DS_ENOMEM;
    /* kv_b_proj is split (and k_b transposed) and the experts stacked in the
     * model file: a LoRA of those has no llama.cpp form */
    if (!rc && m.fam->deepseek2)
        rc = ds_fail(DS_EDATA, "%s: a LoRA GGUF of %s is not written (llama.cpp's deepseek2 splits kv_b_proj and stacks "
                               "the experts); merge the adapter into the model's GGUF instead: ds-ft export --format "
                               "gguf --model %s --adapter %s", model_dir, m.cfg.architecture, model_dir, adapter_dir);
    if (!rc) rc = lora_load_peft(adapter_dir, &m.cfg, &a);
    if (!rc && !(parts = ds_calloc((size_t)m.cfg.num_layers * LIN_COUNT * 2, sizeof *parts, "the adapter's tensors")))
        rc = DS_ENOMEM;
    /* the adapter folder's name, as the converter names the file after it */
    char name[128];
    size_t len = strlen(adapter_dir);
    while (len > 1 && adapter_dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && adapter_dir[start - 1] != '/') start--;
    snprintf(name, sizeof name, "%.*s", (int)(len - start), adapter_dir + start);
    float alpha = rc ? 0 : (float)(a->cfg.use_rslora ? a->cfg.alpha * sqrt((double)a->cfg.r) : a->cfg.alpha);
    if (!rc) rc = gguf_add_string(w, "general.architecture", m.fam->arch);
    if (!rc) rc = gguf_add_string(w, "general.type", "adapter");
    if (!rc) rc = gguf_add_string(w, "adapter.type", "lora");
    if (!rc) rc = gguf_add_string(w, "general.name", name);
    if (!rc) rc = gguf_add_f32(w, "adapter.lora.alpha", alpha);
    if (!rc) rc = gguf_add_u32(w, "general.quantization_version", 2);
    int k = 0;
    for (int l = 0; !rc && l < m.cfg.num_layers; l++)
        for (int t = 0; !rc && t < LIN_COUNT; t++) {
            if (!lora_A(a, l, (llama_linear)t)) continue;
            for (int b = 0; !rc && b < 2; b++) {
                lora_part *p = &parts[k++];
                *p = (lora_part){.m = &m, .a = a, .layer = l, .t = (llama_linear)t, .b = b};
                char tn[GGUF_MAX_NAME + 1];
                snprintf(tn, sizeof tn, "blk.%d.%s.weight.lora_%c", l, export_layer_tensor(llama_linear_path(p->t)),
                         b ? 'b' : 'a');
                int64_t ne[2] = {b ? a->cfg.r : a->in[t], b ? a->out[t] : a->cfg.r};
                rc = gguf_add_tensor_lazy(w, tn, GGML_F32, 2, ne, fill, p);
            }
        }
    if (!rc && k == 0) rc = ds_fail(DS_EDATA, "%s: the adapter adapts no layer", adapter_dir);
    if (!rc) rc = gguf_writer_write(w, out_path);
    if (!rc && report) {
        snprintf(rep.arch, sizeof rep.arch, "%s", m.fam->arch);
        rep.ntensors = k;
        rep.per_type[GGML_F32] = k;
        rep.data_bytes = gguf_writer_data_bytes(w);
        *report = rep;
    }
    gguf_writer_free(w);
    free(parts);
    lora_free(a);
    return rc;
}
