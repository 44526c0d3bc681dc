/* data/model_config_deepseek.c - the keys of DeepseekV2ForCausalLM and
 * DeepseekV3ForCausalLM: multi-head latent attention (MLA) and the
 * mixture-of-experts layers, read as transformers' modeling code uses them.
 * Where a key's value would make transformers compute something ds-ft does
 * not (a scoring function the class ignores, MoE every other layer), it is
 * refused by name. */
#include "model_config_internal.h"
#include "json_util.h"

#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

bool model_config_is_deepseek(const model_config *c) { return c->ds.on; }

int model_config_refuse_deepseek(const model_config *c, const char *what)
{
    if (!c->ds.on) return DS_OK;
    return ds_fail(DS_EDATA, "%s: %s is not yet supported for DeepSeek MoE models", c->architecture, what);
}

/* A string key that must be one of `allowed` (NULL-terminated); absent: *out = allowed[0]'s index. */
static int choice_key(json_t *root, const char *path, const char *key, const char *const *allowed, const char *why,
                      int *out)
{
    json_t *v = json_object_get(root, key);
    *out = 0;
    if (!v || json_is_null(v)) return DS_OK;
    const char *s = json_string_value(v);
    for (int i = 0; s && allowed[i]; i++)
        if (!strcmp(s, allowed[i])) {
            *out = i;
            return DS_OK;
        }
    return ds_fail(DS_EDATA, "%s: unsupported key \"%s\" = %s%s%s (%s)", path, key, s ? "\"" : "", s ? s : "(not a string)",
                   s ? "\"" : "", why);
}

/* yarn's mscale(factor, m) as DeepSeek's attention uses it. */
static double yarn_get_mscale(double factor, double m)
{
    return factor <= 1 ? 1.0 : 0.1 * m * log(factor) + 1.0;
}

static int parse_attention(json_t *root, const char *path, model_config *c)
{
    deepseek_config *d = &c->ds;
    int rc;
    json_t *q = json_object_get(root, "q_lora_rank");
    d->q_lora_rank = 0;
    if (q && !json_is_null(q) && (rc = model_config_get_int(root, path, "q_lora_rank", false, 1, &d->q_lora_rank)))
        return rc;
    if ((rc = model_config_get_int(root, path, "kv_lora_rank", true, 1, &d->kv_lora_rank))) return rc;
    if ((rc = model_config_get_int(root, path, "qk_nope_head_dim", true, 1, &d->qk_nope_dim))) return rc;
    if ((rc = model_config_get_int(root, path, "qk_rope_head_dim", true, 2, &d->qk_rope_dim))) return rc;
    if ((rc = model_config_get_int(root, path, "v_head_dim", true, 1, &d->v_head_dim))) return rc;
    if (d->qk_rope_dim % 2)
        return ds_fail(DS_EDATA, "%s: key \"qk_rope_head_dim\" = %d must be even for RoPE", path, d->qk_rope_dim);
    if (d->v_head_dim > d->qk_nope_dim + d->qk_rope_dim)
        return ds_fail(DS_EDATA, "%s: unsupported key \"v_head_dim\" = %d (at most qk_nope_head_dim + "
                                 "qk_rope_head_dim = %d)", path, d->v_head_dim, d->qk_nope_dim + d->qk_rope_dim);
    /* MLA: every head has its own key and value from the latent; the rope part of the key is shared */
    json_t *kv = json_object_get(root, "num_key_value_heads");
    if (kv && json_is_integer(kv) && json_integer_value(kv) != c->num_heads)
        return ds_fail(DS_EDATA, "%s: unsupported key \"num_key_value_heads\" = %lld (MLA: equal to "
                                 "num_attention_heads)", path, (long long)json_integer_value(kv));
    c->num_kv_heads = c->num_heads;
    c->head_dim = d->qk_nope_dim + d->qk_rope_dim;
    json_t *qkd = json_object_get(root, "qk_head_dim");
    if (qkd && (!json_is_integer(qkd) || json_integer_value(qkd) != c->head_dim))
        return ds_fail(DS_EDATA, "%s: key \"qk_head_dim\" must be qk_nope_head_dim + qk_rope_head_dim = %d", path,
                       c->head_dim);
    if (c->bias[LIN_Q] || c->bias[LIN_GATE])
        return ds_fail(DS_EDATA, "%s: unsupported key \"%s\": true for %s", path,
                       c->bias[LIN_Q] ? "attention_bias" : "mlp_bias", c->architecture);
    d->rope_interleave = true;
    if (c->family == FAMILY_DEEPSEEK_V3 && (rc = json_get_bool(root, "rope_interleave", true, path, &d->rope_interleave)))
        return rc;
    d->softmax_scale = (float)(1.0 / sqrt((double)c->head_dim));
    if (c->rope.type != ROPE_DEFAULT && c->rope.mscale_all_dim != 0) {
        double m = yarn_get_mscale(c->rope.factor, c->rope.mscale_all_dim);
        d->softmax_scale = (float)(1.0 / sqrt((double)c->head_dim) * m * m);
    }
    if (c->rope.type != ROPE_DEFAULT && c->rope.type != ROPE_YARN)
        return ds_fail(DS_EDATA, "%s: unsupported rope type for %s (default or yarn)", path, c->architecture);
    return DS_OK;
}

static int parse_moe(json_t *root, const char *path, model_config *c)
{
    deepseek_config *d = &c->ds;
    bool v3 = c->family == FAMILY_DEEPSEEK_V3;
    int rc;
    if ((rc = model_config_get_int(root, path, "n_routed_experts", true, 1, &d->n_routed))) return rc;
    d->n_shared = 0;
    json_t *ns = json_object_get(root, "n_shared_experts");
    if (ns && !json_is_null(ns) && (rc = model_config_get_int(root, path, "n_shared_experts", false, 0, &d->n_shared)))
        return rc;
    if ((rc = model_config_get_int(root, path, "num_experts_per_tok", true, 1, &d->top_k))) return rc;
    if ((rc = model_config_get_int(root, path, "moe_intermediate_size", true, 1, &d->moe_intermediate))) return rc;
    d->first_k_dense = 0;
    if ((rc = model_config_get_int(root, path, "first_k_dense_replace", false, 0, &d->first_k_dense))) return rc;
    d->n_group = d->topk_group = 1;
    if ((rc = model_config_get_int(root, path, "n_group", false, 1, &d->n_group))) return rc;
    if ((rc = model_config_get_int(root, path, "topk_group", false, 1, &d->topk_group))) return rc;
    int freq = 1;
    if ((rc = model_config_get_int(root, path, "moe_layer_freq", false, 1, &freq))) return rc;
    if (freq != 1)
        return ds_fail(DS_EDATA, "%s: unsupported key \"moe_layer_freq\" = %d (transformers makes every layer from "
                                 "first_k_dense_replace on a MoE layer: 1 only)", path, freq);
    int ep = 1;
    if ((rc = model_config_get_int(root, path, "ep_size", false, 1, &ep))) return rc;
    if (ep != 1) return ds_fail(DS_EDATA, "%s: unsupported key \"ep_size\" = %d (1 only)", path, ep);
    if (d->n_routed > MOE_MAX_EXPERTS)
        return ds_fail(DS_EDATA, "%s: key \"n_routed_experts\" = %d is over ds-ft's %d", path, d->n_routed,
                       MOE_MAX_EXPERTS);
    if (d->top_k > d->n_routed)
        return ds_fail(DS_EDATA, "%s: key \"num_experts_per_tok\" = %d is more than n_routed_experts %d", path,
                       d->top_k, d->n_routed);

    static const char *const v2_methods[] = {"greedy", "group_limited_greedy", NULL};
    static const char *const v3_methods[] = {"noaux_tc", NULL};
    int m;
    rc = v3 ? choice_key(root, path, "topk_method", v3_methods, "DeepseekV3ForCausalLM routes by noaux_tc", &m)
            : choice_key(root, path, "topk_method", v2_methods, "greedy or group_limited_greedy", &m);
    if (rc) return rc;
    d->topk_method = v3 ? TOPK_NOAUX_TC : (moe_topk_method)m;
    static const char *const softmax[] = {"softmax", NULL}, *const sigmoid[] = {"sigmoid", NULL};
    rc = choice_key(root, path, "scoring_func", v3 ? sigmoid : softmax,
                    v3 ? "DeepseekV3ForCausalLM scores by sigmoid" : "DeepseekV2ForCausalLM scores by softmax", &m);
    if (rc) return rc;
    d->sigmoid = v3;
    if (d->topk_method != TOPK_GREEDY) {
        if (d->n_routed % d->n_group)
            return ds_fail(DS_EDATA, "%s: n_routed_experts %d is not a multiple of n_group %d", path, d->n_routed,
                           d->n_group);
        if (d->topk_group > d->n_group)
            return ds_fail(DS_EDATA, "%s: key \"topk_group\" = %d is more than n_group %d", path, d->topk_group,
                           d->n_group);
        if (d->topk_group * (d->n_routed / d->n_group) < d->top_k)
            return ds_fail(DS_EDATA, "%s: topk_group %d groups of %d experts hold fewer than num_experts_per_tok %d",
                           path, d->topk_group, d->n_routed / d->n_group, d->top_k);
        if (v3 && d->n_routed / d->n_group < 2)
            return ds_fail(DS_EDATA, "%s: noaux_tc scores a group by its best two experts: groups of %d", path,
                           d->n_routed / d->n_group);
    }
    d->norm_topk_prob = false;
    if ((rc = json_get_bool(root, "norm_topk_prob", false, path, &d->norm_topk_prob))) return rc;
    if (!v3) d->norm_topk_prob = false;   /* DeepseekV2Moe in transformers: score x routed_scaling_factor */
    if ((rc = json_get_num(root, "routed_scaling_factor", 1.0, path, &d->routed_scaling_factor))) return rc;
    if (!(d->routed_scaling_factor > 0))
        return ds_fail(DS_EDATA, "%s: key \"routed_scaling_factor\" must be > 0", path);
    if ((rc = json_get_num(root, "aux_loss_alpha", 0.001, path, &d->aux_loss_alpha))) return rc;
    if (!(d->aux_loss_alpha >= 0)) return ds_fail(DS_EDATA, "%s: key \"aux_loss_alpha\" must be >= 0", path);
    return DS_OK;
}

int model_deepseek_parse(json_t *root, const char *path, model_config *c)
{
    c->ds.on = true;
    int rc = parse_attention(root, path, c);
    if (!rc) rc = parse_moe(root, path, c);
    if (rc) c->ds.on = false;
    return rc;
}

/* ------------------------------------------------------------ linear slots */

int deepseek_slots(const model_config *c) { return DSL_EXPERTS + 3 * c->ds.n_routed; }

bool deepseek_is_moe(const model_config *c, int layer) { return layer >= c->ds.first_k_dense; }

bool deepseek_linear(const model_config *c, int layer, int slot, char *path, size_t n, const char **name, int *out,
                     int *in)
{
    static const char *const MLP[3] = {"gate_proj", "up_proj", "down_proj"};
    const deepseek_config *d = &c->ds;
    const int C = c->hidden_size, H = c->num_heads, QK = c->head_dim;
    bool moe = deepseek_is_moe(c, layer);
    const char *module = "self_attn", *nm = NULL;
    int o = 0, i = 0, expert = -1, width = 0;
    switch (slot) {
    case DSL_Q: if (!d->q_lora_rank) nm = "q_proj", o = H * QK, i = C; break;
    case DSL_QA: if (d->q_lora_rank) nm = "q_a_proj", o = d->q_lora_rank, i = C; break;
    case DSL_QB: if (d->q_lora_rank) nm = "q_b_proj", o = H * QK, i = d->q_lora_rank; break;
    case DSL_KVA: nm = "kv_a_proj_with_mqa", o = d->kv_lora_rank + d->qk_rope_dim, i = C; break;
    case DSL_KVB: nm = "kv_b_proj", o = H * (d->qk_nope_dim + d->v_head_dim), i = d->kv_lora_rank; break;
    case DSL_O: nm = "o_proj", o = C, i = H * d->v_head_dim; break;
    case DSL_GATE: case DSL_UP: case DSL_DOWN:
        if (!moe) module = "mlp", nm = MLP[slot - DSL_GATE], width = c->intermediate_size;
        break;
    case DSL_SH_GATE: case DSL_SH_UP: case DSL_SH_DOWN:
        if (moe && d->n_shared) module = "mlp.shared_experts", nm = MLP[slot - DSL_SH_GATE],
                                width = d->n_shared * d->moe_intermediate;
        break;
    default:
        if (moe && slot >= DSL_EXPERTS && slot < deepseek_slots(c)) {
            expert = (slot - DSL_EXPERTS) / 3;
            nm = MLP[(slot - DSL_EXPERTS) % 3];
            width = d->moe_intermediate;
        }
    }
    if (!nm) return false;
    if (width) {   /* gate and up: [width, C]; down: [C, width] */
        bool down = !strcmp(nm, "down_proj");
        o = down ? C : width;
        i = down ? width : C;
    }
    if (path) {
        if (expert >= 0) snprintf(path, n, "mlp.experts.%d.%s", expert, nm);
        else snprintf(path, n, "%s.%s", module, nm);
    }
    if (name) *name = nm;
    if (out) *out = o;
    if (in) *in = i;
    return true;
}
