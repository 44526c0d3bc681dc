/* finetune/run/dump.c - run the engine on a reference input and write what it
 * computed under the names of fixtures/tiny-llama/reference.safetensors:
 *   base.embed_out, base.layer_out.{i}, base.final_norm_out, base.logits, base.loss
 *   lora.logits, lora.loss, sft.grad.<adapter key>          (with --adapter)
 *   dpo.* when the input holds dpo.chosen_ids / dpo.rejected_ids / dpo.prompt_len
 */
#include "run.h"

#include "dump_internal.h"
#include "finetune/engine/engine.h"

#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A (B, T) batch from input_ids and HF-style labels (-100 = ignored; without
 * labels every token is a target, as labels = input_ids). */
static int batch_from_labels(const st_file *in, const char *path, batch *b)
{
    const st_tensor *ids = st_file_find(in, "input_ids"), *labels = st_file_find(in, "labels");
    if (!ids || ids->ndim != 2) return ds_fail(DS_EDATA, "%s: needs a 2-d tensor 'input_ids'", path);
    if (labels && st_check_shape(labels, 2, ids->shape))
        return ds_fail(DS_EDATA, "%s: 'labels' must have the shape of 'input_ids'", path);
    if (!labels) labels = ids;
    int B = (int)ids->shape[0], T = (int)ids->shape[1];
    int rc = batch_alloc(b, B, T);
    int32_t *lab = rc ? NULL : ds_malloc(sizeof(int32_t) * (size_t)B * T, "the labels");
    if (!rc && !lab) rc = DS_ENOMEM;
    if (!rc) rc = st_to_i32(ids, b->ids);
    if (!rc) rc = st_to_i32(labels, lab);
    for (int r = 0; !rc && r < B; r++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)r * T + t;
            b->pos[i] = t;
            b->seg[i] = 0;
            b->targets[i] = t + 1 < T && lab[i + 1] >= 0 ? lab[i + 1] : -1;
        }
    free(lab);
    return rc;
}

/* Mean cross-entropy over the rows with a target, as HF computes the loss. */
double dump_mean_nll(const batch *b, const float *logprob)
{
    double s = 0;
    long n = 0;
    for (int i = 0; i < b->B * b->T; i++)
        if (b->targets[i] >= 0) {
            s -= logprob[i];
            n++;
        }
    return n ? s / n : 0.0;
}

static int add_f32(st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data)
{
    return st_writer_add_copy(w, name, ST_F32, ndim, shape, data);
}

/* moe.* (PREFIX "moe." or "moe.lora."): each MoE layer's routing of the last
 * forward: the chosen experts and their weights; with `all`, the router
 * logits, tokens per expert and the sequence-level balance loss too. */
static int dump_routing(engine *e, const batch *b, const model_config *c, st_writer *w, const char *prefix, bool all)
{
    if (!c->ds.on) return DS_OK;
    const int N = b->B * b->T, K = c->ds.top_k, E = c->ds.n_routed;
    const size_t NK = (size_t)N * K, NE = (size_t)N * E;
    int32_t *idx = ds_malloc(sizeof(int32_t) * NK, "the chosen experts");
    int64_t *idx64 = idx ? ds_malloc(sizeof(int64_t) * NK, "the chosen experts") : NULL;
    float *wt = idx64 ? ds_malloc(sizeof(float) * NK, "the experts' weights") : NULL;
    float *z = wt ? ds_malloc(sizeof(float) * NE, "the router logits") : NULL;
    int rc = z ? DS_OK : DS_ENOMEM;   /* the message is set */
    for (int l = c->ds.first_k_dense; !rc && l < c->num_layers; l++) {
        rc = engine_read_routing(e, l, idx, wt, z);
        for (int i = 0; i < N * K; i++) idx64[i] = idx[i];
        char name[96];
        int64_t sk[3] = {b->B, b->T, K}, se[3] = {b->B, b->T, E}, ne = E, one = 1;
        snprintf(name, sizeof name, "%stopk_idx.%d", prefix, l);
        if (!rc) rc = st_writer_add_copy(w, name, ST_I64, 3, sk, idx64);
        snprintf(name, sizeof name, "%stopk_weight.%d", prefix, l);
        if (!rc) rc = add_f32(w, name, 3, sk, wt);
        if (!all) continue;
        snprintf(name, sizeof name, "%srouter_logits.%d", prefix, l);
        if (!rc) rc = add_f32(w, name, 3, se, z);
        engine_moe_stats st;
        if (!rc) rc = engine_read_moe_stats(e, l, &st);
        snprintf(name, sizeof name, "%stokens_per_expert.%d", prefix, l);
        if (!rc) rc = st_writer_add_copy(w, name, ST_I64, 1, &ne, st.tokens_per_expert);
        float aux = (float)st.aux_loss;
        snprintf(name, sizeof name, "%sseq_aux_loss.%d", prefix, l);
        if (!rc) rc = add_f32(w, name, 1, &one, &aux);
    }
    free(idx), free(idx64), free(wt), free(z);
    return rc;
}

/* base.* : every hidden state, the logits and the loss. */
static int dump_base(engine *e, const batch *b, const model_config *c, st_writer *w)
{
    size_t N = (size_t)b->B * b->T;
    float *lp = ds_malloc(sizeof(float) * N, "log-probabilities");
    float *h = ds_malloc(sizeof(float) * N * c->hidden_size, "hidden states");
    float *z = ds_malloc(sizeof(float) * N * c->vocab_size, "logits");
    engine_fwd f = {.lora = false};
    int rc = lp && h && z ? engine_forward(e, b, &f, lp, NULL) : DS_ENOMEM;
    int64_t shape_h[3] = {b->B, b->T, c->hidden_size}, shape_z[3] = {b->B, b->T, c->vocab_size}, one = 1;
    for (int which = -1; !rc && which <= c->num_layers; which++) {
        rc = engine_read_hidden(e, which, h);
        char name[64];
        if (which == -1) snprintf(name, sizeof name, "base.embed_out");
        else if (which == c->num_layers) snprintf(name, sizeof name, "base.final_norm_out");
        else snprintf(name, sizeof name, "base.layer_out.%d", which);
        if (!rc) rc = add_f32(w, name, 3, shape_h, h);
    }
    if (!rc) rc = engine_read_logits(e, 0, (int)N, z);
    if (!rc) rc = add_f32(w, "base.logits", 3, shape_z, z);
    float loss = (float)dump_mean_nll(b, lp);
    if (!rc) rc = add_f32(w, "base.loss", 1, &one, &loss);
    if (!rc) rc = dump_routing(e, b, c, w, "moe.", true);
    free(lp);
    free(h);
    free(z);
    return rc;
}

/* One tensor per adapter matrix: PREFIX + PEFT key, from a (nparams) block. */
int dump_adapter_tensors(st_writer *w, const char *prefix, const lora_adapter *ad, const float *block)
{
    for (int l = 0; l < ad->nlayers; l++)
        for (int t = 0; t < ad->nslots; t++) {
            const float *A = lora_slot_A(ad, l, t);
            int out, in;
            if (!A || !lora_slot_shape(ad, l, t, &out, &in)) continue;
            size_t off = (size_t)(A - ad->data);
            for (int which = 0; which < 2; which++) {
                char key[192], name[240];
                lora_slot_key(ad, key, sizeof key, l, t, which ? 'B' : 'A');
                snprintf(name, sizeof name, "%s%s", prefix, key);
                int64_t shape[2] = {which ? out : ad->cfg.r, which ? ad->cfg.r : in};
                size_t at = off + (which ? (size_t)ad->cfg.r * in : 0);
                int rc = add_f32(w, name, 2, shape, block + at);
                if (rc) return rc;
            }
        }
    return DS_OK;
}

/* lora.* and sft.grad.* : the adapted model's logits, loss and SFT gradients. */
static int dump_lora_sft(engine *e, const batch *b, const model_config *c, const lora_adapter *ad, st_writer *w)
{
    size_t N = (size_t)b->B * b->T;
    float *lp = ds_malloc(sizeof(float) * N, "log-probabilities");
    float *z = ds_malloc(sizeof(float) * N * c->vocab_size, "logits");
    float *ca = ds_calloc(N, sizeof(float), "loss coefficients");
    float *cb = ds_calloc(N, sizeof(float), "loss coefficients");
    float *grads = ds_malloc(sizeof(float) * ad->nparams, "gradients");
    engine_fwd f = {.lora = true, .for_backward = true};
    int rc = lp && z && ca && cb && grads ? engine_zero_grads(e) : DS_ENOMEM;
    if (!rc) rc = engine_forward(e, b, &f, lp, NULL);
    int64_t shape_z[3] = {b->B, b->T, c->vocab_size}, one = 1;
    if (!rc) rc = engine_read_logits(e, 0, (int)N, z);
    if (!rc) rc = add_f32(w, "lora.logits", 3, shape_z, z);
    float loss = (float)dump_mean_nll(b, lp);
    if (!rc) rc = add_f32(w, "lora.loss", 1, &one, &loss);
    if (!rc) rc = dump_routing(e, b, c, w, "moe.lora.", false);
    /* SFT: dL/dz = (p - onehot) / n_targets */
    if (!rc) rc = dump_sft_coefs(b, lp, ca, cb);
    if (!rc) rc = engine_backward(e, ca, cb, NULL);
    if (!rc) rc = engine_get_grads(e, grads);
    if (!rc) rc = dump_adapter_tensors(w, "sft.grad.", ad, grads);
    free(lp);
    free(z);
    free(ca);
    free(cb);
    free(grads);
    return rc;
}

/* merged.* : PEFT's merge_and_unload of every adapted weight, fp32. */
static int dump_merged(const llama_model *m, const lora_adapter *ad, st_writer *w)
{
    backend *cpu;
    int rc = be_open(BE_CPU, &cpu);
    for (int l = 0; !rc && l < m->cfg.num_layers; l++)
        for (int s = 0; s < model_slots(&m->cfg); s++) {
            char path[128];
            const model_linear *lin = model_slot(m, l, s, path, sizeof path);
            if (!lin || !lora_slot_A(ad, l, s)) continue;
            float *W = ds_malloc(sizeof(float) * (size_t)lin->out * lin->in, "a merged weight");
            rc = W ? merge_linear(cpu, m, ad, MERGE_DEQUANTIZED, l, s, W) : DS_ENOMEM;
            char name[256];
            snprintf(name, sizeof name, "merged.model.layers.%d.%s.weight", l, path);
            int64_t shape[2] = {lin->out, lin->in};
            if (!rc) rc = add_f32(w, name, 2, shape, W);
            free(W);
            if (rc) break;
        }
    be_close(cpu);
    return rc;
}

int dump_run(const dump_request *r)
{
    ds_run x;
    st_file *in = NULL;
    st_writer *w = st_writer_new();
    batch b = {0}, pairs = {0};
    ds_run_opts ro = {.model_dir = r->model_dir, .no_tokenizer = true, .adapter_dir = r->adapter_dir,
                      .load_in_4bit = r->load_in_4bit, .double_quant = true};
    int rc = w ? be_kind_parse(r->device, &ro.device) : DS_ENOMEM;
    if (!rc) rc = ds_run_open(&ro, &x);
    if (rc) {
        st_writer_free(w);
        return rc;
    }
    const lora_adapter *ad = x.adapter;
    rc = st_file_open(r->input, &in);
    if (!rc) rc = batch_from_labels(in, r->input, &b);
    bool dpo = !rc && ad && st_file_find(in, "dpo.chosen_ids");
    if (dpo) rc = dump_dpo_batch(in, r->input, &pairs);
    if (!rc) {
        engine_opts eo = {.max_B = b.B > pairs.B ? b.B : pairs.B, .max_T = b.T > pairs.T ? b.T : pairs.T,
                          .training = ad != NULL, .checkpointing = true};
        rc = ds_run_start(&x, &eo);
    }
    if (!rc) rc = dump_base(x.eng, &b, &x.model->cfg, w);
    if (!rc && ad) rc = dump_lora_sft(x.eng, &b, &x.model->cfg, ad, w);
    if (!rc && dpo) rc = dump_dpo(x.eng, in, &pairs, ad, w);
    if (!rc && ad) rc = dump_merged(x.model, ad, w);
    if (!rc) rc = st_writer_write(w, r->out);
    st_writer_free(w);
    batch_free(&b);
    batch_free(&pairs);
    st_file_close(in);
    ds_run_close(&x);
    return rc;
}
