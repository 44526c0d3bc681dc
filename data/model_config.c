#include "model_config.h"
#include "json_util.h"
#include "model_config_internal.h"

#include "core/files.h"
#include "core/status.h"
#include "core/xlist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* An integer key in [lo, 2^30]; absent -> *out unchanged unless required. */
int model_config_get_int(json_t *root, const char *path, const char *key, bool required, int lo, int *out)
{
    if (required && !json_object_get(root, key))
        return ds_fail(DS_EDATA, "%s: missing required key \"%s\"", path, key);
    long long x;
    int rc = json_get_int(root, key, *out, path, &x);
    if (rc) return rc;
    if (x < lo || x > (1 << 30)) return ds_fail(DS_EDATA, "%s: key \"%s\" = %lld is out of range", path, key, x);
    *out = (int)x;
    return DS_OK;
}

/* A token id: an integer, or a list whose first entry is one (Llama-3.1's
 * "eos_token_id": [128001, 128008, 128009]); ids must lie in [0, limit).
 * Absent or null: *out unchanged. Anything else is DS_EDATA when `strict`
 * (config.json), ignored otherwise (generation_config.json only advises). */
static int token_id(json_t *root, const char *path, const char *key, long long limit, bool strict, int *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return DS_OK;
    json_t *id = json_is_array(v) ? json_array_get(v, 0) : v;
    if (!json_is_integer(id))
        return strict ? ds_fail(DS_EDATA, "%s: key \"%s\" must be an integer or a list of integers", path, key)
                      : DS_OK;
    json_int_t x = json_integer_value(id);
    if (x < 0 || x >= limit)
        return strict ? ds_fail(DS_EDATA, "%s: key \"%s\" = %lld is out of range", path, key, (long long)x) : DS_OK;
    *out = (int)x;
    return DS_OK;
}

static const char *const TOKEN_KEYS[3] = {"bos_token_id", "eos_token_id", "pad_token_id"};

/* The families ds-ft implements: the class name in "architectures". */
static const struct {
    const char *name;
    model_family family;
} FAMILIES[] = {
    {"LlamaForCausalLM", FAMILY_LLAMA},
    {"MistralForCausalLM", FAMILY_MISTRAL},
    {"Qwen2ForCausalLM", FAMILY_QWEN2},
    {"Qwen3ForCausalLM", FAMILY_QWEN3},
    {"DeepseekV2ForCausalLM", FAMILY_DEEPSEEK_V2},
    {"DeepseekV3ForCausalLM", FAMILY_DEEPSEEK_V3},
};

static int bool_key(json_t *root, const char *path, const char *key, bool *out)
{
    return json_get_bool(root, key, *out, path, out);
}

/* Biases and per-head norms, as each family's modeling code creates them. */
static int parse_layer_parts(json_t *root, const char *path, model_config *c)
{
    bool attention_bias = false, mlp_bias = false;
    int rc = bool_key(root, path, "attention_bias", &attention_bias);
    if (!rc) rc = bool_key(root, path, "mlp_bias", &mlp_bias);
    if (rc) return rc;
    if (c->family == FAMILY_QWEN2) {
        /* Qwen2Attention: q, k and v always carry a bias, o_proj never */
        c->bias[LIN_Q] = c->bias[LIN_K] = c->bias[LIN_V] = true;
        if (mlp_bias) return ds_fail(DS_EDATA, "%s: unsupported key \"mlp_bias\": true for Qwen2", path);
    } else {
        c->bias[LIN_Q] = c->bias[LIN_K] = c->bias[LIN_V] = c->bias[LIN_O] = attention_bias;
        c->bias[LIN_GATE] = c->bias[LIN_UP] = c->bias[LIN_DOWN] = mlp_bias;
    }
    c->qk_norm = c->family == FAMILY_QWEN3;
    return DS_OK;
}

/* The sliding window: Mistral's applies to every layer; Qwen's to the layers
 * from max_window_layers on, and only with use_sliding_window; an explicit
 * "layer_types" list must agree (full layers first, then sliding ones). */
static int parse_window(json_t *root, const char *path, model_config *c)
{
    json_t *sw = json_object_get(root, "sliding_window");
    bool qwen = c->family == FAMILY_QWEN2 || c->family == FAMILY_QWEN3;
    int window = 0, first = 0, rc;
    if (sw && !json_is_null(sw)) {
        if (!json_is_integer(sw) || json_integer_value(sw) < 1 || json_integer_value(sw) > (1 << 30))
            return ds_fail(DS_EDATA, "%s: key \"sliding_window\" must be a positive integer or null", path);
        window = (int)json_integer_value(sw);
    }
    if (c->family == FAMILY_LLAMA && window) {
        /* a Llama attends to every earlier token; a window switched off by
         * use_sliding_window: false (as Qwen-derived configs carry) is no window */
        json_t *use = json_object_get(root, "use_sliding_window");
        if (!use || !json_is_false(use))
            return ds_fail(DS_EDATA, "%s: unsupported key \"sliding_window\" for LlamaForCausalLM (Llama attends "
                                     "to every earlier token)", path);
        window = 0;
    }
    if (qwen) {
        bool use = false;
        if ((rc = bool_key(root, path, "use_sliding_window", &use))) return rc;
        first = 28;   /* Qwen2Config's and Qwen3Config's default */
        if ((rc = model_config_get_int(root, path, "max_window_layers", false, 0, &first))) return rc;
        if (!use) window = 0;
    }
    json_t *types = json_object_get(root, "layer_types");
    if (types && !json_is_null(types)) {
        if (!json_is_array(types) || (int)json_array_size(types) != c->num_layers)
            return ds_fail(DS_EDATA, "%s: key \"layer_types\" must list one type per layer (%d)", path,
                           c->num_layers);
        int first_sliding = c->num_layers;
        for (int l = 0; l < c->num_layers; l++) {
            const char *t = json_string_value(json_array_get(types, (size_t)l));
            bool sliding = t && !strcmp(t, "sliding_attention");
            if (!t || (!sliding && strcmp(t, "full_attention")))
                return ds_fail(DS_EDATA, "%s: key \"layer_types\"[%d] must be \"full_attention\" or "
                                         "\"sliding_attention\"", path, l);
            if (sliding && first_sliding == c->num_layers) first_sliding = l;
            if (!sliding && first_sliding < l)
                return ds_fail(DS_EDATA, "%s: unsupported key \"layer_types\": full attention after sliding "
                                         "layers (ds-ft takes full layers first, then sliding ones)", path);
        }
        if (first_sliding < c->num_layers && !window)
            return ds_fail(DS_EDATA, "%s: key \"layer_types\" has sliding layers but \"sliding_window\" is unset",
                           path);
        first = first_sliding;
        if (first == c->num_layers) window = 0;
    }
    c->sliding_window = window;
    c->first_sliding_layer = window ? first : c->num_layers;
    return DS_OK;
}

/* Keys whose values the engine does not implement: refused, never ignored. */
static int refuse_unsupported(json_t *root, const char *path)
{
    json_t *act = json_object_get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return ds_fail(DS_EDATA, "%s: unsupported key \"hidden_act\" (only \"silu\" is implemented)", path);
    json_t *tp = json_object_get(root, "pretraining_tp");
    if (tp && json_is_integer(tp) && json_integer_value(tp) != 1)
        return ds_fail(DS_EDATA, "%s: unsupported key \"pretraining_tp\" = %lld (only 1)", path,
                       (long long)json_integer_value(tp));
    json_t *prf = json_object_get(root, "partial_rotary_factor");
    if (prf && !(json_is_number(prf) && json_number_value(prf) == 1.0))
        return ds_fail(DS_EDATA, "%s: unsupported key \"partial_rotary_factor\" (RoPE on whole heads only)", path);
    return DS_OK;
}

static int parse_root(json_t *root, const char *path, model_config *c)
{
    memset(c, 0, sizeof *c);
    c->rope_theta = 10000.0;
    c->rope_factor = 1.0;
    c->rope = (rope_config){.type = ROPE_DEFAULT, .factor = 1.0};
    c->rms_norm_eps = 1e-6f;
    c->bos_id = c->eos_id = c->pad_id = -1;
    c->max_position = 4096;
    if (!json_is_object(root)) return ds_fail(DS_EDATA, "%s: not a JSON object", path);

    json_t *arch = json_object_get(root, "architectures");
    const char *a = json_is_array(arch) ? json_string_value(json_array_get(arch, 0)) : NULL;
    if (!a) return ds_fail(DS_EDATA, "%s: missing key \"architectures\" (a list naming the model class)", path);
    size_t f = 0, nf = sizeof FAMILIES / sizeof *FAMILIES;
    while (f < nf && strcmp(a, FAMILIES[f].name)) f++;
    if (f == nf)
        return ds_fail(DS_EDATA, "%s: unsupported architecture \"%s\" in \"architectures\" (supported: "
                                 "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
                                 "DeepseekV2ForCausalLM, DeepseekV3ForCausalLM)", path, a);
    c->family = FAMILIES[f].family;
    snprintf(c->architecture, sizeof c->architecture, "%s", a);

    int rc;
    if ((rc = model_config_get_int(root, path, "hidden_size", true, 1, &c->hidden_size))) return rc;
    if ((rc = model_config_get_int(root, path, "intermediate_size", true, 1, &c->intermediate_size))) return rc;
    if ((rc = model_config_get_int(root, path, "num_hidden_layers", true, 1, &c->num_layers))) return rc;
    if ((rc = model_config_get_int(root, path, "num_attention_heads", true, 1, &c->num_heads))) return rc;
    if ((rc = model_config_get_int(root, path, "vocab_size", true, 1, &c->vocab_size))) return rc;
    c->num_kv_heads = c->num_heads;
    if ((rc = model_config_get_int(root, path, "num_key_value_heads", false, 1, &c->num_kv_heads))) return rc;
    if (c->hidden_size % c->num_heads)
        return ds_fail(DS_EDATA, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path,
                       c->hidden_size, c->num_heads);
    c->head_dim = c->hidden_size / c->num_heads;
    if ((rc = model_config_get_int(root, path, "head_dim", false, 2, &c->head_dim))) return rc;
    if (c->head_dim % 2) return ds_fail(DS_EDATA, "%s: key \"head_dim\" = %d must be even for RoPE", path, c->head_dim);
    if (c->num_heads % c->num_kv_heads)
        return ds_fail(DS_EDATA, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
                       c->num_heads, c->num_kv_heads);
    if ((rc = model_config_get_int(root, path, "max_position_embeddings", false, 1, &c->max_position))) return rc;
    double eps;
    if ((rc = json_get_num(root, "rms_norm_eps", c->rms_norm_eps, path, &eps))) return rc;
    if (!(eps > 0 && eps < 1)) return ds_fail(DS_EDATA, "%s: key \"rms_norm_eps\" must be in (0, 1)", path);
    c->rms_norm_eps = (float)eps;
    if ((rc = json_get_bool(root, "tie_word_embeddings", false, path, &c->tie_word_embeddings))) return rc;
    if ((rc = model_rope_parse(root, path, c))) return rc;
    if ((rc = parse_layer_parts(root, path, c))) return rc;
    if ((rc = parse_window(root, path, c))) return rc;
    if ((rc = refuse_unsupported(root, path))) return rc;
    if ((c->family == FAMILY_DEEPSEEK_V2 || c->family == FAMILY_DEEPSEEK_V3) &&
        (rc = model_deepseek_parse(root, path, c)))
        return rc;

    int *ids[3] = {&c->bos_id, &c->eos_id, &c->pad_id};
    for (int i = 0; i < 3; i++)
        if ((rc = token_id(root, path, TOKEN_KEYS[i], (1LL << 30) + 1, true, ids[i]))) return rc;

    json_t *dt = json_object_get(root, "dtype");
    if (!json_is_string(dt)) dt = json_object_get(root, "torch_dtype");
    if (json_is_string(dt)) snprintf(c->dtype, sizeof c->dtype, "%s", json_string_value(dt));
    json_t *q = json_object_get(root, "quantization_config");
    c->quantized = q && json_is_object(q);
    return DS_OK;
}

int model_config_parse(const char *text, size_t len, const char *path, model_config *c)
{
    json_t *root;
    int rc = json_text_load(text, len, path, 0, &root);
    if (rc) {
        memset(c, 0, sizeof *c);
        return rc;
    }
    rc = parse_root(root, path, c);
    json_decref(root);
    return rc;
}

/* generation_config.json's token ids win over config.json's; a file that is
 * missing, malformed or holds unusable ids changes nothing. Only running out
 * of memory is an error. */
static int apply_generation_config(const char *dir, model_config *c)
{
    char *path = ds_path_join(dir, "generation_config.json");
    if (!path) return DS_ENOMEM;
    json_t *root;
    int rc = json_file_load(path, 0, &root);
    if (rc == DS_OK) {
        int *ids[3] = {&c->bos_id, &c->eos_id, &c->pad_id};
        if (json_is_object(root))
            for (int i = 0; i < 3; i++) token_id(root, path, TOKEN_KEYS[i], c->vocab_size, false, ids[i]);
        json_decref(root);
    }
    free(path);
    if (rc == DS_ENOMEM) return rc;
    ds_clear_error();
    return DS_OK;
}

int model_config_load_json(const char *dir, model_config *c, json_t **config)
{
    *config = NULL;
    char *path = ds_path_join(dir, "config.json");
    json_t *root = NULL;
    int rc = path ? json_file_load(path, 0, &root) : DS_ENOMEM;
    if (!rc) rc = parse_root(root, path, c);
    free(path);
    if (!rc) rc = apply_generation_config(dir, c);
    if (rc) {
        if (!root) memset(c, 0, sizeof *c);
        json_decref(root);
        return rc;
    }
    *config = root;
    return DS_OK;
}

int model_config_load(const char *dir, model_config *c)
{
    json_t *root;
    int rc = model_config_load_json(dir, c, &root);
    json_decref(root);
    return rc;
}

long long model_config_params(const model_config *c)
{
    long long C = c->hidden_size, V = c->vocab_size, layer = 2 * C;
    if (c->ds.on) {   /* DeepSeek: a dense layer's and a MoE layer's linears, latent norms and router */
        long long total = V * C * (c->tie_word_embeddings ? 1 : 2) + C;
        int dense = c->ds.first_k_dense < c->num_layers ? c->ds.first_k_dense : c->num_layers;
        for (int kind = 0; kind < 2; kind++) {
            int l = kind ? c->num_layers : -1;   /* a layer of each kind: -1 is dense, num_layers MoE */
            long long per = 2 * C + c->ds.q_lora_rank + c->ds.kv_lora_rank;
            if (kind && !deepseek_is_moe(c, l)) continue;
            if (kind) per += (long long)c->ds.n_routed * (C + (c->ds.sigmoid ? 1 : 0));
            for (int s = 0; s < deepseek_slots(c); s++) {
                int out, in;
                if (deepseek_linear(c, l, s, NULL, 0, NULL, &out, &in)) per += (long long)out * in;
            }
            total += per * (kind ? c->num_layers - dense : dense);
        }
        return total;
    }
    for (int t = 0; t < LIN_COUNT; t++) {
        int out, in;
        llama_linear_shape(c, (llama_linear)t, &out, &in);
        layer += (long long)out * in + (c->bias[t] ? out : 0);
    }
    if (c->qk_norm) layer += 2LL * c->head_dim;
    return V * C * (c->tie_word_embeddings ? 1 : 2) + (long long)c->num_layers * layer + C;
}

int model_layer_window(const model_config *c, int layer)
{
    return c->sliding_window && layer >= c->first_sliding_layer ? c->sliding_window : 0;
}

/* ----------------------------------------------------------- linear layers */

#define NAME_STR(name, module) #name
#define PATH_STR(name, module) #module "." #name
static const char *const LINEAR_NAMES[LIN_COUNT] = {LLAMA_LINEARS(NAME_STR, DS_COMMA)};
static const char *const LINEAR_PATHS[LIN_COUNT] = {LLAMA_LINEARS(PATH_STR, DS_COMMA)};

const char *llama_linear_name(llama_linear l) { return l < LIN_COUNT ? LINEAR_NAMES[l] : "?"; }
const char *llama_linear_path(llama_linear l) { return l < LIN_COUNT ? LINEAR_PATHS[l] : "?"; }

void llama_linear_shape(const model_config *c, llama_linear l, int *out, int *in)
{
    int C = c->hidden_size, I = c->intermediate_size;
    int QD = c->num_heads * c->head_dim, KVD = c->num_kv_heads * c->head_dim;
    switch (l) {
    case LIN_Q: *out = QD; *in = C; break;
    case LIN_K: case LIN_V: *out = KVD; *in = C; break;
    case LIN_O: *out = C; *in = QD; break;
    case LIN_GATE: case LIN_UP: *out = I; *in = C; break;
    case LIN_DOWN: *out = C; *in = I; break;
    default: *out = *in = 0;
    }
}

int llama_linear_parse(const char *name)
{
    for (int i = 0; i < LIN_COUNT; i++)
        if (!strcmp(name, LINEAR_NAMES[i])) return i;
    return -1;
}
