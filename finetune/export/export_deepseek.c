/* finetune/export/export_deepseek.c - DeepSeek-V2/V3 (multi-head latent
 * attention + mixture of experts) as llama.cpp's deepseek2 architecture,
 * the way convert_hf_to_gguf.py's DeepseekV2Model writes it:
 *
 *   q_proj | q_a_proj, q_a_layernorm, q_b_proj  -> attn_q | attn_q_a, attn_q_a_norm, attn_q_b
 *   kv_a_proj_with_mqa, kv_a_layernorm          -> attn_kv_a_mqa, attn_kv_a_norm
 *   kv_b_proj (H*(nope+v), kv_lora_rank)        -> attn_k_b (H, kv_lora_rank, nope): each head's key rows, transposed
 *                                                  attn_v_b (H, v, kv_lora_rank): each head's value rows
 *   mlp.gate, e_score_correction_bias           -> ffn_gate_inp (f32), exp_probs_b.bias
 *   mlp.experts.E.{gate,up,down}_proj           -> ffn_{gate,up,down}_exps, stacked (E, out, in)
 *   mlp.shared_experts.*                        -> ffn_{gate,up,down}_shexp
 *
 * llama.cpp's absorbed attention keeps the compressed latent as a single
 * key/value head (head_count_kv 1, key_length kv_lora_rank + rope, value
 * length kv_lora_rank) and multiplies by k_b and v_b per head. An adapter on
 * kv_b_proj is merged before the split. Its rope rotates (even, odd) pairs,
 * which is transformers' rope_interleave (V2 always, V3 by default); for
 * rope_interleave false each head's rope rows are reordered from halves to
 * pairs, as the llama export does for whole heads. */
#include "export_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int export_deepseek_config(const char *dir, export_model *m)
{
    int rc = model_config_load(dir, &m->cfg);   /* refuses by name what the engine would not honour */
    if (rc) return rc;
    const model_config *c = &m->cfg;
    m->rope_theta_given = true;   /* rope: default or yarn (model_config refuses others for DeepSeek) */
    if (c->rope.type == ROPE_YARN) m->rope_factor = c->rope.factor;
    return DS_OK;
}

/* ---- the plan ---- */

/* "blk.L.<gguf>" from "model.layers.L.<hf>", a vector or a plain matrix */
static int plan_plain(exporter *ex, int l, const char *gguf, const char *hf, int ndim, int64_t rows, int64_t cols)
{
    char name[GGUF_MAX_NAME + 1], hf_name[160];
    snprintf(name, sizeof name, "blk.%d.%s", l, gguf);
    snprintf(hf_name, sizeof hf_name, "model.layers.%d.%s", l, hf);
    plan_item *it;
    int rc = export_add_item(ex, name, hf_name, ndim, rows, cols, &it);
    if (!rc) it->layer = l;
    return rc ? rc : export_check_source(ex, it, false);
}

/* Linear (l, slot) as blk.L.<gguf>.weight, of kind `kind` (ITEM_LINEAR, or
 * ITEM_K_B/ITEM_V_B made from it); the shape written is (rows, cols) x ne2. */
static int plan_linear(exporter *ex, int l, int slot, const char *gguf, item_kind kind, int64_t ne2, int64_t rows,
                       int64_t cols, plan_item **out)
{
    char name[GGUF_MAX_NAME + 1], path[128], hf[160];
    int o, i;
    if (!deepseek_linear(&ex->m.cfg, l, slot, path, sizeof path, NULL, &o, &i))
        return ds_fail(DS_EINTERNAL, "GGUF export: layer %d has no %s", l, gguf);
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, gguf);
    snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", l, path);
    plan_item *it;
    int rc = export_add_item(ex, name, hf, ne2 > 1 ? 3 : 2, kind == ITEM_LINEAR ? o : rows, kind == ITEM_LINEAR ? i : cols,
                             &it);
    if (rc) return rc;
    it->kind = kind;
    it->layer = l;
    it->slot = slot;
    it->ne2 = ne2;
    if (kind == ITEM_K_B || kind == ITEM_V_B) it->ndim = 3;
    /* the source is checked as the linear it is (kv_b_proj, expert 0), whatever is written */
    plan_item src = *it;
    src.rows = o, src.cols = i, src.ndim = 2;
    rc = export_check_source(ex, &src, true);
    if (out) *out = it;
    return rc;
}

/* Reorder the rope rows of each head from halves to pairs (rope_interleave false). */
static void rope_rows(plan_item *it, int heads, int head_rows, int offset)
{
    const deepseek_config *d = &it->ex->m.cfg.ds;
    if (d->rope_interleave) return;
    it->rope_heads = heads, it->rope_head_rows = head_rows, it->rope_offset = offset, it->rope_dim = d->qk_rope_dim;
}

static int plan_attention(exporter *ex, int l)
{
    const model_config *c = &ex->m.cfg;
    const deepseek_config *d = &c->ds;
    const int H = c->num_heads, QK = d->qk_nope_dim + d->qk_rope_dim;
    plan_item *q = NULL, *kva = NULL;
    int rc = DS_OK;
    if (d->q_lora_rank) {
        rc = plan_linear(ex, l, DSL_QA, "attn_q_a", ITEM_LINEAR, 1, 0, 0, NULL);
        if (!rc) rc = plan_plain(ex, l, "attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight", 1, 1, d->q_lora_rank);
        if (!rc) rc = plan_linear(ex, l, DSL_QB, "attn_q_b", ITEM_LINEAR, 1, 0, 0, &q);
    } else {
        rc = plan_linear(ex, l, DSL_Q, "attn_q", ITEM_LINEAR, 1, 0, 0, &q);
    }
    if (!rc) rope_rows(q, H, QK, d->qk_nope_dim);
    if (!rc) rc = plan_linear(ex, l, DSL_KVA, "attn_kv_a_mqa", ITEM_LINEAR, 1, 0, 0, &kva);
    if (!rc) rope_rows(kva, 1, d->kv_lora_rank + d->qk_rope_dim, d->kv_lora_rank);
    if (!rc) rc = plan_plain(ex, l, "attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight", 1, 1, d->kv_lora_rank);
    if (!rc) rc = plan_linear(ex, l, DSL_KVB, "attn_k_b", ITEM_K_B, H, d->kv_lora_rank, d->qk_nope_dim, NULL);
    if (!rc) rc = plan_linear(ex, l, DSL_KVB, "attn_v_b", ITEM_V_B, H, d->v_head_dim, d->kv_lora_rank, NULL);
    if (!rc) rc = plan_linear(ex, l, DSL_O, "attn_output", ITEM_LINEAR, 1, 0, 0, NULL);
    return rc;
}

static int plan_mlp(exporter *ex, int l)
{
    static const char *const PROJ[] = {"gate", "up", "down"};
    const model_config *c = &ex->m.cfg;
    const deepseek_config *d = &c->ds;
    int rc = DS_OK;
    char gguf[32];
    if (!deepseek_is_moe(c, l)) {
        for (int p = 0; !rc && p < 3; p++) {
            snprintf(gguf, sizeof gguf, "ffn_%s", PROJ[p]);
            rc = plan_linear(ex, l, DSL_GATE + p, gguf, ITEM_LINEAR, 1, 0, 0, NULL);
        }
        return rc;
    }
    rc = plan_plain(ex, l, "ffn_gate_inp.weight", "mlp.gate.weight", 2, d->n_routed, c->hidden_size);
    if (!rc && d->sigmoid) rc = plan_plain(ex, l, "exp_probs_b.bias", "mlp.gate.e_score_correction_bias", 1, 1, d->n_routed);
    for (int p = 0; !rc && p < 3; p++) {
        int o, i;
        deepseek_linear(c, l, DSL_EXPERTS + p, NULL, 0, NULL, &o, &i);
        snprintf(gguf, sizeof gguf, "ffn_%s_exps", PROJ[p]);
        plan_item *it;
        rc = plan_linear(ex, l, DSL_EXPERTS + p, gguf, ITEM_EXPERTS, d->n_routed, o, i, &it);
        if (!rc) it->rows = o, it->cols = i;
        for (int e = 1; !rc && e < d->n_routed; e++) {   /* every expert's weight is there, of that shape */
            plan_item src = *it;
            char path[128];
            deepseek_linear(c, l, DSL_EXPERTS + 3 * e + p, path, sizeof path, NULL, NULL, NULL);
            snprintf(src.hf, sizeof src.hf, "model.layers.%d.%s.weight", l, path);
            src.ndim = 2;
            rc = export_check_source(ex, &src, true);
        }
    }
    for (int p = 0; !rc && d->n_shared && p < 3; p++) {
        snprintf(gguf, sizeof gguf, "ffn_%s_shexp", PROJ[p]);
        rc = plan_linear(ex, l, DSL_SH_GATE + p, gguf, ITEM_LINEAR, 1, 0, 0, NULL);
    }
    return rc;
}

int export_deepseek_plan_layer(exporter *ex, int l)
{
    const model_config *c = &ex->m.cfg;
    int rc = plan_plain(ex, l, "attn_norm.weight", "input_layernorm.weight", 1, 1, c->hidden_size);
    if (!rc) rc = plan_attention(ex, l);
    if (!rc) rc = plan_plain(ex, l, "ffn_norm.weight", "post_attention_layernorm.weight", 1, 1, c->hidden_size);
    if (!rc) rc = plan_mlp(ex, l);
    return rc;
}

size_t export_deepseek_expert_prefix(const plan_item *it, const char *name)
{
    static const char *const PROJ[] = {"gate_proj", "up_proj", "down_proj"};
    int layer, expert, len = 0;
    char proj[16];
    if (sscanf(name, "model.layers.%d.mlp.experts.%d.%15[a-z_].weight%n", &layer, &expert, proj, &len) != 3 || !len)
        return 0;
    int p = (it->slot - DSL_EXPERTS) % 3;
    return layer == it->layer && expert >= 0 && expert < it->ne2 && !strcmp(proj, PROJ[p]) ? (size_t)len : 0;
}

/* ---- the values ---- */

int export_deepseek_fill(const plan_item *it, float *W)
{
    const exporter *ex = it->ex;
    const model_config *c = &ex->m.cfg;
    const deepseek_config *d = &c->ds;
    if (it->kind == ITEM_EXPERTS) {
        size_t each = (size_t)it->rows * (size_t)it->cols;
        int rc = DS_OK;
        for (int e = 0; !rc && e < it->ne2; e++) {
            int slot = it->slot + 3 * e;
            char path[128], hf[160];
            deepseek_linear(c, it->layer, slot, path, sizeof path, NULL, NULL, NULL);
            snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", it->layer, path);
            rc = export_read_linear(ex, hf, it->layer, slot, it->rows, it->cols, W + (size_t)e * each);
        }
        return rc;
    }
    /* kv_b_proj: head h's rows are [nope key rows | v value rows], each kv_lora_rank wide */
    const int H = c->num_heads, R = d->kv_lora_rank, NOPE = d->qk_nope_dim, VD = d->v_head_dim;
    float *kv = ds_malloc(sizeof(float) * (size_t)H * (NOPE + VD) * R, "kv_b_proj");
    if (!kv) return DS_ENOMEM;
    int rc = export_read_linear(ex, it->hf, it->layer, it->slot, (int64_t)H * (NOPE + VD), R, kv);
    for (int h = 0; !rc && h < H; h++) {
        const float *head = kv + (size_t)h * (NOPE + VD) * R;
        if (it->kind == ITEM_K_B) {   /* k_b[h] (R, NOPE) = key rows (NOPE, R) transposed */
            float *dst = W + (size_t)h * R * NOPE;
            for (int r = 0; r < R; r++)
                for (int j = 0; j < NOPE; j++) dst[(size_t)r * NOPE + j] = head[(size_t)j * R + r];
        } else {                      /* v_b[h] (VD, R) = the value rows as they are */
            memcpy(W + (size_t)h * VD * R, head + (size_t)NOPE * R, sizeof(float) * (size_t)VD * R);
        }
    }
    free(kv);
    return rc;
}

int export_deepseek_rope_pairs(const plan_item *it, float *W)
{
    const int half = it->rope_dim / 2;
    const size_t cols = (size_t)it->cols;
    float *tmp = ds_malloc(sizeof(float) * (size_t)it->rope_dim * cols, "reordering rope rows");
    if (!tmp) return DS_ENOMEM;
    for (int h = 0; h < it->rope_heads; h++) {
        float *rope = W + ((size_t)h * it->rope_head_rows + it->rope_offset) * cols;
        memcpy(tmp, rope, sizeof(float) * (size_t)it->rope_dim * cols);
        for (int b = 0; b < half; b++)
            for (int a = 0; a < 2; a++)
                memcpy(rope + (size_t)(2 * b + a) * cols, tmp + (size_t)(a * half + b) * cols, sizeof(float) * cols);
    }
    free(tmp);
    return DS_OK;
}

/* ---- the keys ---- */

static int key_u32(gguf_writer *w, const char *suffix, uint32_t v)
{
    char key[96];
    snprintf(key, sizeof key, "deepseek2.%s", suffix);
    return gguf_add_u32(w, key, v);
}

static int key_f32(gguf_writer *w, const char *suffix, double v)
{
    char key[96];
    snprintf(key, sizeof key, "deepseek2.%s", suffix);
    return gguf_add_f32(w, key, (float)v);
}

/* transformers scales YaRN's cos/sin by A (attention_factor, or
 * mscale(f, mscale) / mscale(f, mscale_all_dim)) and the attention logits by
 * M^2 (M = mscale(f, mscale_all_dim)). llama.cpp's deepseek2 takes its rope
 * factor from rope.scaling.attn_factor (r) and M = r x (1 + 0.1 L ln f), L
 * the yarn_log_multiplier / 0.1; without a multiplier, both carry another
 * 1 + 0.1 ln f. The converter writes L = mscale_all_dim, which is right
 * where mscale = mscale_all_dim (DeepSeek's own configs: A = 1); these keys
 * give transformers' A and M for any config. */
static int yarn_scales(gguf_writer *w, const model_config *c)
{
    const double f = c->rope.factor, lnf = f > 1 ? log(f) : 0;
    float inv_freq[512], A;
    if (c->ds.qk_rope_dim / 2 > 512) return ds_fail(DS_EDATA, "GGUF export: qk_rope_head_dim %d is too large", c->ds.qk_rope_dim);
    model_rope_freqs(c, inv_freq, &A);
    double M = c->rope.mscale_all_dim != 0 && f > 1 ? 1 + 0.1 * c->rope.mscale_all_dim * lnf : 1;
    if (lnf == 0) return DS_OK;   /* a factor of 1 scales nothing, in either */
    if (fabs(M / A - 1) > 1e-7) {
        int rc = fabs(A - 1) > 1e-7 ? key_f32(w, "rope.scaling.attn_factor", A) : DS_OK;
        return rc ? rc : key_f32(w, "rope.scaling.yarn_log_multiplier", 0.1 * (M / A - 1) / (0.1 * lnf));
    }
    return key_f32(w, "rope.scaling.attn_factor", A / (1 + 0.1 * lnf));
}

int export_deepseek_keys(gguf_writer *w, const export_model *m)
{
    const model_config *c = &m->cfg;
    const deepseek_config *d = &c->ds;
    int rc = key_u32(w, "vocab_size", (uint32_t)c->vocab_size);
    if (!rc) rc = key_u32(w, "leading_dense_block_count", (uint32_t)d->first_k_dense);
    /* llama.cpp requires the key on all but V2-Lite's layer counts; 0 = q_proj, as it reads it */
    if (!rc) rc = key_u32(w, "attention.q_lora_rank", (uint32_t)d->q_lora_rank);
    if (!rc) rc = key_u32(w, "attention.kv_lora_rank", (uint32_t)d->kv_lora_rank);
    if (!rc) rc = key_u32(w, "attention.key_length", (uint32_t)(d->kv_lora_rank + d->qk_rope_dim));
    if (!rc) rc = key_u32(w, "attention.value_length", (uint32_t)d->kv_lora_rank);
    if (!rc) rc = key_u32(w, "attention.key_length_mla", (uint32_t)(d->qk_nope_dim + d->qk_rope_dim));
    if (!rc) rc = key_u32(w, "attention.value_length_mla", (uint32_t)d->v_head_dim);
    if (!rc) rc = key_u32(w, "expert_feed_forward_length", (uint32_t)d->moe_intermediate);
    if (!rc) rc = key_u32(w, "expert_count", (uint32_t)d->n_routed);
    if (!rc) rc = key_u32(w, "expert_used_count", (uint32_t)d->top_k);
    if (!rc) rc = key_u32(w, "expert_group_count", (uint32_t)d->n_group);
    if (!rc) rc = key_u32(w, "expert_group_used_count", (uint32_t)d->topk_group);
    if (!rc) rc = key_u32(w, "expert_shared_count", (uint32_t)d->n_shared);
    if (!rc) rc = key_f32(w, "expert_weights_scale", d->routed_scaling_factor);
    /* the chosen weights renormalised only where transformers does it (V3's
     * norm_topk_prob; V2's modeling code ignores the key) */
    if (!rc && d->sigmoid && d->norm_topk_prob) {
        char key[96];
        snprintf(key, sizeof key, "deepseek2.expert_weights_norm");
        rc = gguf_add_bool(w, key, true);
    }
    if (!rc) rc = key_u32(w, "expert_gating_func", d->sigmoid ? 2 : 1);   /* llama.cpp: 1 softmax, 2 sigmoid */
    if (!rc) rc = key_u32(w, "rope.dimension_count", (uint32_t)d->qk_rope_dim);
    if (!rc && c->rope.type == ROPE_YARN) {
        rc = gguf_add_string(w, "deepseek2.rope.scaling.type", "yarn");
        if (!rc) rc = key_f32(w, "rope.scaling.factor", c->rope.factor);
        if (!rc) rc = key_u32(w, "rope.scaling.original_context_length", (uint32_t)c->rope.original_max_position);
        if (!rc) rc = key_f32(w, "rope.scaling.yarn_beta_fast", c->rope.beta_fast);
        if (!rc) rc = key_f32(w, "rope.scaling.yarn_beta_slow", c->rope.beta_slow);
        if (!rc) rc = yarn_scales(w, c);
    }
    return rc;
}
