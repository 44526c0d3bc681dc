/* finetune/export/export_family.c - the model families the GGUF export
 * knows (one table entry each), their config.json, and the architecture
 * keys llama.cpp reads. DeepSeek-V2/V3 (deepseek2) read their config as the
 * engine does and add their tensors and keys in export_deepseek.c. */
#include "export_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/json_util.h"
#include "quant/bnb.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const export_family FAMILIES[] = {
    /* hf_arch                  arch        permute_qk qkv_bias qk_norm llama_keys deepseek2 */
    {"LlamaForCausalLM",      "llama",     true,  false, false, true,  false},
    {"Qwen2ForCausalLM",      "qwen2",     false, true,  false, false, false},
    {"Qwen3ForCausalLM",      "qwen3",     false, false, true,  false, false},
    {"DeepseekV2ForCausalLM", "deepseek2", false, false, false, false, true},
    {"DeepseekV3ForCausalLM", "deepseek2", false, false, false, false, true},
};

static const char *const LAYER_TENSORS[][2] = {
    {"input_layernorm", "attn_norm"},  {"self_attn.q_proj", "attn_q"},     {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},    {"self_attn.o_proj", "attn_output"}, {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"}, {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},         {"mlp.down_proj", "ffn_down"},
};

const char *export_layer_tensor(const char *hf_path)
{
    for (size_t i = 0; i < sizeof LAYER_TENSORS / sizeof *LAYER_TENSORS; i++)
        if (!strcmp(LAYER_TENSORS[i][0], hf_path)) return LAYER_TENSORS[i][1];
    return NULL;
}

static int get_dim(const json_t *root, const char *path, const char *key, bool required, int *out)
{
    if (required && !json_object_get(root, key))
        return ds_fail(DS_EDATA, "%s: missing required key \"%s\"", path, key);
    long long v;
    int rc = json_get_int(root, key, *out, path, &v);
    if (!rc && (v < 1 || v > (1 << 30))) rc = ds_fail(DS_EDATA, "%s: key \"%s\" = %lld is out of range", path, key, v);
    if (!rc) *out = (int)v;
    return rc;
}

/* rope_theta and the scaling, from "rope_parameters" (transformers 5) or
 * "rope_theta" + "rope_scaling": none, linear, or llama3 (Llama 3.1 and
 * DeepSeek-R1-Distill-Llama). Others are refused by name. */
static int read_rope(const json_t *root, const char *path, export_model *m)
{
    const json_t *rp = json_object_get(root, "rope_parameters");
    const char *which = "rope_parameters";
    if (!rp || json_is_null(rp)) {
        rp = json_object_get(root, "rope_scaling");
        which = "rope_scaling";
    }
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return ds_fail(DS_EDATA, "%s: key \"%s\" must be an object or null", path, which);
    const json_t *theta = rp && json_object_get(rp, "rope_theta") ? json_object_get(rp, "rope_theta")
                                                                  : json_object_get(root, "rope_theta");
    m->cfg.rope_theta = 10000.0;
    if (theta && !json_is_null(theta)) {
        if (!json_is_number(theta) || !(json_number_value(theta) > 0))
            return ds_fail(DS_EDATA, "%s: \"rope_theta\" must be a number > 0", path);
        m->cfg.rope_theta = json_number_value(theta);
        m->rope_theta_given = true;
    }
    if (!rp || json_is_null(rp)) return DS_OK;
    const char *type = json_string_value(json_object_get(rp, "rope_type"));
    if (!type) type = json_string_value(json_object_get(rp, "type"));
    if (!type || !strcmp(type, "default")) return DS_OK;
    int rc = DS_OK;
    if (!strcmp(type, "linear")) {
        rc = json_get_num(rp, "factor", 0, path, &m->rope_factor);
        if (!rc && !(m->rope_factor > 0)) rc = ds_fail(DS_EDATA, "%s: \"%s.factor\" must be > 0", path, which);
    } else if (!strcmp(type, "llama3") && m->fam->llama_keys) {
        if (!rc) rc = json_get_num(rp, "factor", 8.0, path, &m->rope_factor);
        if (!rc) rc = json_get_num(rp, "low_freq_factor", 1.0, path, &m->low_freq_factor);
        if (!rc) rc = json_get_num(rp, "high_freq_factor", 4.0, path, &m->high_freq_factor);
        if (!rc) rc = json_get_num(rp, "original_max_position_embeddings", 8192, path, &m->orig_ctx);
        if (!rc && !(m->rope_factor > 0 && m->high_freq_factor != m->low_freq_factor && m->orig_ctx > 0))
            rc = ds_fail(DS_EDATA, "%s: \"%s\" llama3 factors are out of range", path, which);
    } else {
        return ds_fail(DS_EDATA, "%s: rope type \"%s\" in \"%s\" is not exported to GGUF for %s (supported: default, "
                                 "linear%s)", path, type, which, m->fam->arch, m->fam->llama_keys ? ", llama3" : "");
    }
    snprintf(m->rope_type, sizeof m->rope_type, "%s", type);
    return rc;
}

static int check_unsupported(const json_t *root, const char *path)
{
    const json_t *act = json_object_get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return ds_fail(DS_EDATA, "%s: key \"hidden_act\": only \"silu\" is exported", path);
    const json_t *sw = json_object_get(root, "sliding_window");
    if (sw && !json_is_null(sw)) {
        const json_t *use = json_object_get(root, "use_sliding_window");
        if (!use || json_is_true(use))
            return ds_fail(DS_EDATA, "%s: key \"sliding_window\": sliding-window attention is not exported", path);
    }
    static const char *const NO_BIAS[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++)
        if (json_is_true(json_object_get(root, NO_BIAS[i])))
            return ds_fail(DS_EDATA, "%s: key \"%s\": true is not exported (biases other than Qwen2's q/k/v)", path,
                           NO_BIAS[i]);
    return DS_OK;
}

static int parse_config(const json_t *root, const char *path, export_model *m)
{
    if (!json_is_object(root)) return ds_fail(DS_EDATA, "%s: not a JSON object", path);
    const json_t *archs = json_object_get(root, "architectures");
    const char *a = json_is_array(archs) ? json_string_value(json_array_get(archs, 0)) : NULL;
    if (!a) return ds_fail(DS_EDATA, "%s: missing key \"architectures\" (a list naming the model class)", path);
    for (size_t i = 0; i < sizeof FAMILIES / sizeof *FAMILIES; i++)
        if (!strcmp(FAMILIES[i].hf_arch, a)) m->fam = &FAMILIES[i];
    if (!m->fam)
        return ds_fail(DS_EDATA, "%s: architecture \"%s\" is not exported to GGUF (supported: LlamaForCausalLM, "
                                 "Qwen2ForCausalLM, Qwen3ForCausalLM, DeepseekV2ForCausalLM, DeepseekV3ForCausalLM)",
                       path, a);
    if (m->fam->deepseek2) return DS_OK;   /* export_deepseek_config reads the rest */
    model_config *c = &m->cfg;
    snprintf(c->architecture, sizeof c->architecture, "%s", a);
    int rc;
    if ((rc = get_dim(root, path, "hidden_size", true, &c->hidden_size)) ||
        (rc = get_dim(root, path, "intermediate_size", true, &c->intermediate_size)) ||
        (rc = get_dim(root, path, "num_hidden_layers", true, &c->num_layers)) ||
        (rc = get_dim(root, path, "num_attention_heads", true, &c->num_heads)) ||
        (rc = get_dim(root, path, "vocab_size", true, &c->vocab_size)))
        return rc;
    c->num_kv_heads = c->num_heads;
    c->head_dim = c->hidden_size / c->num_heads;
    c->max_position = 2048;
    m->head_dim_given = json_object_get(root, "head_dim") && !json_is_null(json_object_get(root, "head_dim"));
    if ((rc = get_dim(root, path, "num_key_value_heads", false, &c->num_kv_heads)) ||
        (rc = get_dim(root, path, "head_dim", false, &c->head_dim)) ||
        (rc = get_dim(root, path, "max_position_embeddings", false, &c->max_position)))
        return rc;
    if (c->num_heads % c->num_kv_heads || c->head_dim % 2)
        return ds_fail(DS_EDATA, "%s: %d heads, %d key/value heads of %d: heads must be a multiple of key/value heads "
                                 "and the head size even", path, c->num_heads, c->num_kv_heads, c->head_dim);
    double eps;
    if ((rc = json_get_num(root, "rms_norm_eps", 1e-6, path, &eps))) return rc;
    if (!(eps > 0 && eps < 1)) return ds_fail(DS_EDATA, "%s: key \"rms_norm_eps\" must be in (0, 1)", path);
    c->rms_norm_eps = (float)eps;
    if ((rc = json_get_bool(root, "tie_word_embeddings", false, path, &c->tie_word_embeddings))) return rc;
    if ((rc = read_rope(root, path, m))) return rc;
    return check_unsupported(root, path);
}

int export_model_load(const char *dir, export_model *m)
{
    memset(m, 0, sizeof *m);
    m->cfg.bos_id = m->cfg.eos_id = m->cfg.pad_id = -1;
    char *path = ds_path_join(dir, "config.json");
    json_t *root = NULL;
    int rc = path ? json_file_load(path, 0, &root) : DS_ENOMEM;
    if (!rc) rc = parse_config(root, path, m);
    if (!rc && m->fam->deepseek2) rc = export_deepseek_config(dir, m);
    const json_t *q = root ? json_object_get(root, "quantization_config") : NULL;
    if (!rc && q && !json_is_null(q)) {
        bnb_config bc;
        rc = bnb_config_from_json(root, path, &bc);   /* refuses what is not bitsandbytes NF4 */
        m->quantized = true;
    }
    json_decref(root);
    free(path);
    if (rc) return rc;
    /* general.name: the folder's name, as the converter falls back to */
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && dir[start - 1] != '/') start--;
    snprintf(m->name, sizeof m->name, "%.*s", (int)(n - start), dir + start);
    return DS_OK;
}

/* "{arch}.SUFFIX" = v */
static int arch_u32(gguf_writer *w, const export_model *m, const char *suffix, uint32_t v)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", m->fam->arch, suffix);
    return gguf_add_u32(w, key, v);
}

static int arch_f32(gguf_writer *w, const export_model *m, const char *suffix, double v)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", m->fam->arch, suffix);
    return gguf_add_f32(w, key, (float)v);
}

int export_arch_keys(gguf_writer *w, const export_model *m, uint32_t file_type)
{
    const model_config *c = &m->cfg;
    int rc = m->fam->llama_keys ? arch_u32(w, m, "vocab_size", (uint32_t)c->vocab_size) : DS_OK;
    if (!rc) rc = arch_u32(w, m, "block_count", (uint32_t)c->num_layers);
    if (!rc) rc = arch_u32(w, m, "context_length", (uint32_t)c->max_position);
    if (!rc) rc = arch_u32(w, m, "embedding_length", (uint32_t)c->hidden_size);
    if (!rc) rc = arch_u32(w, m, "feed_forward_length", (uint32_t)c->intermediate_size);
    if (!rc) rc = arch_u32(w, m, "attention.head_count", (uint32_t)c->num_heads);
    /* DeepSeek's absorbed attention: the compressed latent is one key/value head */
    if (!rc) rc = arch_u32(w, m, "attention.head_count_kv", m->fam->deepseek2 ? 1 : (uint32_t)c->num_kv_heads);
    if (!rc && m->rope_theta_given) rc = arch_f32(w, m, "rope.freq_base", c->rope_theta);
    if (!rc) rc = arch_f32(w, m, "attention.layer_norm_rms_epsilon", c->rms_norm_eps);
    if (!rc && m->head_dim_given) rc = arch_u32(w, m, "attention.key_length", (uint32_t)c->head_dim);
    if (!rc && m->head_dim_given) rc = arch_u32(w, m, "attention.value_length", (uint32_t)c->head_dim);
    if (!rc && !strcmp(m->rope_type, "linear")) {
        char key[96];
        snprintf(key, sizeof key, "%s.rope.scaling.type", m->fam->arch);
        rc = gguf_add_string(w, key, "linear");
        if (!rc) rc = arch_f32(w, m, "rope.scaling.factor", m->rope_factor);
    }
    if (!rc && m->fam->llama_keys) rc = arch_u32(w, m, "rope.dimension_count", (uint32_t)c->head_dim);
    if (!rc) rc = gguf_add_u32(w, "general.file_type", file_type);
    return rc;
}

void export_rope_factors(const export_model *m, float *out)
{
    /* the converter's arithmetic is fp32 torch for the frequencies; the
     * factors are exact for the common cases (1 and `factor`) and within an
     * ulp or two in the smooth band */
    int dim = m->cfg.head_dim;
    double low_wavelen = m->orig_ctx / m->low_freq_factor, high_wavelen = m->orig_ctx / m->high_freq_factor;
    for (int i = 0; i < dim / 2; i++) {
        float freq = (float)(1.0 / pow(m->cfg.rope_theta, (double)(2 * i) / dim));
        double wavelen = 2 * M_PI / freq;
        if (wavelen < high_wavelen) out[i] = 1.0f;
        else if (wavelen > low_wavelen) out[i] = (float)m->rope_factor;
        else {
            double smooth = (m->orig_ctx / wavelen - m->low_freq_factor) / (m->high_freq_factor - m->low_freq_factor);
            out[i] = (float)(1 / ((1 - smooth) / m->rope_factor + smooth));
        }
    }
}

int export_permute_rows(float *W, int rows, int cols, int heads)
{
    int D = rows / heads, half = D / 2;
    float *tmp = ds_malloc(sizeof(float) * (size_t)D * (size_t)cols, "reordering Q/K rows");
    if (!tmp) return DS_ENOMEM;
    for (int h = 0; h < heads; h++) {
        float *head = W + (size_t)h * D * cols;
        memcpy(tmp, head, sizeof(float) * (size_t)D * (size_t)cols);
        for (int b = 0; b < half; b++)
            for (int a = 0; a < 2; a++)
                memcpy(head + (size_t)(2 * b + a) * cols, tmp + (size_t)(a * half + b) * cols, sizeof(float) * (size_t)cols);
    }
    free(tmp);
    return DS_OK;
}
