#include "model_config.h"

#include "../core/files.h"
#include "../core/status.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Read an integer key; absent -> *out unchanged unless required. */
static int get_int(json_t *root, const char *path, const char *key, bool required, int lo, int *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return ds_fail(DS_EDATA, "%s: missing required key \"%s\"", path, key);
        return DS_OK;
    }
    if (!json_is_integer(v)) return ds_fail(DS_EDATA, "%s: key \"%s\" must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > (1 << 30)) return ds_fail(DS_EDATA, "%s: key \"%s\" = %lld is out of range", path, key, (long long)x);
    *out = (int)x;
    return DS_OK;
}

static int get_num(json_t *obj, const char *path, const char *key, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return DS_OK;
    if (!json_is_number(v)) return ds_fail(DS_EDATA, "%s: key \"%s\" must be a number", path, key);
    *out = json_number_value(v);
    return DS_OK;
}

static int get_bool(json_t *root, const char *path, const char *key, bool *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return DS_OK;
    if (!json_is_boolean(v)) return ds_fail(DS_EDATA, "%s: key \"%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return DS_OK;
}

/* rope_scaling / rope_parameters: only "default" and "linear" are implemented. */
static int parse_rope(json_t *root, const char *path, model_config *c)
{
    int rc = get_num(root, path, "rope_theta", &c->rope_theta);
    if (rc) return rc;
    const char *which = "rope_scaling";
    json_t *rs = json_object_get(root, "rope_scaling");
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp)) return ds_fail(DS_EDATA, "%s: key \"rope_parameters\" must be an object", path);
        if ((rc = get_num(rp, path, "rope_theta", &c->rope_theta))) return rc;
        if (!rs || json_is_null(rs)) {
            rs = rp;
            which = "rope_parameters";
        }
    }
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs)) return ds_fail(DS_EDATA, "%s: key \"%s\" must be an object or null", path, which);
        json_t *t = json_object_get(rs, "rope_type");
        if (!t) t = json_object_get(rs, "type");
        const char *type = t ? json_string_value(t) : "default";
        if (!type) return ds_fail(DS_EDATA, "%s: key \"%s.rope_type\" must be a string", path, which);
        if (!strcmp(type, "linear")) {
            double f = 0;
            if ((rc = get_num(rs, path, "factor", &f))) return rc;
            if (!(f > 0)) return ds_fail(DS_EDATA, "%s: linear rope scaling needs \"%s.factor\" > 0", path, which);
            c->rope_factor = f;
        } else if (strcmp(type, "default")) {
            return ds_fail(DS_EDATA, "%s: unsupported rope type \"%s\" in \"%s\" (supported: default, linear)", path,
                           type, which);
        }
    }
    if (!(c->rope_theta > 0)) return ds_fail(DS_EDATA, "%s: key \"rope_theta\" must be > 0", path);
    return DS_OK;
}

int model_config_parse(const char *text, size_t len, const char *path, model_config *c)
{
    memset(c, 0, sizeof *c);
    c->rope_theta = 10000.0;
    c->rope_factor = 1.0;
    c->rms_norm_eps = 1e-6f;
    c->bos_id = c->eos_id = c->pad_id = -1;
    c->max_position = 4096;

    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!root) return ds_fail(DS_EDATA, "%s:%d: invalid JSON: %s", path, jerr.line, jerr.text);
    int rc = DS_OK;
    if (!json_is_object(root)) {
        rc = ds_fail(DS_EDATA, "%s: not a JSON object", path);
        goto done;
    }

    json_t *arch = json_object_get(root, "architectures");
    const char *a = json_is_array(arch) ? json_string_value(json_array_get(arch, 0)) : NULL;
    if (!a) {
        rc = ds_fail(DS_EDATA, "%s: missing key \"architectures\" (a list naming the model class)", path);
        goto done;
    }
    if (strcmp(a, "LlamaForCausalLM")) {
        rc = ds_fail(DS_EDATA, "%s: unsupported architecture \"%s\" in \"architectures\" (supported: LlamaForCausalLM)",
                     path, a);
        goto done;
    }
    snprintf(c->architecture, sizeof c->architecture, "%s", a);

    if ((rc = get_int(root, path, "hidden_size", true, 1, &c->hidden_size))) goto done;
    if ((rc = get_int(root, path, "intermediate_size", true, 1, &c->intermediate_size))) goto done;
    if ((rc = get_int(root, path, "num_hidden_layers", true, 1, &c->num_layers))) goto done;
    if ((rc = get_int(root, path, "num_attention_heads", true, 1, &c->num_heads))) goto done;
    if ((rc = get_int(root, path, "vocab_size", true, 1, &c->vocab_size))) goto done;
    c->num_kv_heads = c->num_heads;
    if ((rc = get_int(root, path, "num_key_value_heads", false, 1, &c->num_kv_heads))) goto done;
    if (c->hidden_size % c->num_heads) {
        rc = ds_fail(DS_EDATA, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->hidden_size,
                     c->num_heads);
        goto done;
    }
    c->head_dim = c->hidden_size / c->num_heads;
    if ((rc = get_int(root, path, "head_dim", false, 2, &c->head_dim))) goto done;
    if (c->head_dim % 2) {
        rc = ds_fail(DS_EDATA, "%s: key \"head_dim\" = %d must be even for RoPE", path, c->head_dim);
        goto done;
    }
    if (c->num_heads % c->num_kv_heads) {
        rc = ds_fail(DS_EDATA, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
                     c->num_heads, c->num_kv_heads);
        goto done;
    }
    if ((rc = get_int(root, path, "max_position_embeddings", false, 1, &c->max_position))) goto done;
    double eps = c->rms_norm_eps;
    if ((rc = get_num(root, path, "rms_norm_eps", &eps))) goto done;
    if (!(eps > 0 && eps < 1)) {
        rc = ds_fail(DS_EDATA, "%s: key \"rms_norm_eps\" must be in (0, 1)", path);
        goto done;
    }
    c->rms_norm_eps = (float)eps;
    if ((rc = get_bool(root, path, "tie_word_embeddings", &c->tie_word_embeddings))) goto done;
    if ((rc = parse_rope(root, path, c))) goto done;

    /* Keys whose non-default values the engine does not implement. */
    static const char *const must_be_false[] = {"attention_bias", "mlp_bias"};
    for (size_t i = 0; i < sizeof must_be_false / sizeof *must_be_false; i++) {
        bool on = false;
        if ((rc = get_bool(root, path, must_be_false[i], &on))) goto done;
        if (on) {
            rc = ds_fail(DS_EDATA, "%s: unsupported key \"%s\": true (biases in linear layers are not implemented)",
                         path, must_be_false[i]);
            goto done;
        }
    }
    json_t *sw = json_object_get(root, "sliding_window");
    if (sw && !json_is_null(sw)) {
        json_t *use = json_object_get(root, "use_sliding_window");
        if (!use || json_is_true(use)) {
            rc = ds_fail(DS_EDATA, "%s: unsupported key \"sliding_window\" (sliding-window attention is not implemented)",
                         path);
            goto done;
        }
    }
    json_t *act = json_object_get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu"))) {
        rc = ds_fail(DS_EDATA, "%s: unsupported key \"hidden_act\" (only \"silu\" is implemented)", path);
        goto done;
    }
    json_t *tp = json_object_get(root, "pretraining_tp");
    if (tp && json_is_integer(tp) && json_integer_value(tp) != 1) {
        rc = ds_fail(DS_EDATA, "%s: unsupported key \"pretraining_tp\" = %lld (only 1)", path,
                     (long long)json_integer_value(tp));
        goto done;
    }

    if ((rc = get_int(root, path, "bos_token_id", false, 0, &c->bos_id))) goto done;
    if ((rc = get_int(root, path, "eos_token_id", false, 0, &c->eos_id))) goto done;
    if ((rc = get_int(root, path, "pad_token_id", false, 0, &c->pad_id))) goto done;

    json_t *dt = json_object_get(root, "dtype");
    if (!json_is_string(dt)) dt = json_object_get(root, "torch_dtype");
    if (json_is_string(dt)) snprintf(c->dtype, sizeof c->dtype, "%s", json_string_value(dt));
    json_t *q = json_object_get(root, "quantization_config");
    c->quantized = q && json_is_object(q);
done:
    json_decref(root);
    return rc;
}

/* generation_config.json may carry eos_token_id as a list; the first entry is used. */
static void apply_generation_config(const char *dir, model_config *c)
{
    char *path = ds_path_join(dir, "generation_config.json");
    char *text;
    size_t len;
    if (ds_read_file(path, &text, &len) == DS_OK) {
        json_t *root = json_loadb(text, len, 0, NULL);
        free(text);
        if (json_is_object(root)) {
            static const char *keys[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
            int *dst[] = {&c->bos_id, &c->eos_id, &c->pad_id};
            for (int i = 0; i < 3; i++) {
                json_t *v = json_object_get(root, keys[i]);
                if (json_is_array(v)) v = json_array_get(v, 0);
                if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < c->vocab_size)
                    *dst[i] = (int)json_integer_value(v);
            }
        }
        json_decref(root);
    }
    ds_clear_error();
    free(path);
}

int model_config_load(const char *dir, model_config *c)
{
    char *path = ds_path_join(dir, "config.json");
    char *text;
    size_t len;
    int rc = ds_read_file(path, &text, &len);
    if (!rc) {
        rc = model_config_parse(text, len, path, c);
        free(text);
    }
    free(path);
    if (!rc) apply_generation_config(dir, c);
    return rc;
}

long long model_config_params(const model_config *c)
{
    long long C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    long long qo = (long long)c->num_heads * c->head_dim, kv = (long long)c->num_kv_heads * c->head_dim;
    long long layer = C * qo * 2 + C * kv * 2 + 3 * C * I + 2 * C;
    return V * C * (c->tie_word_embeddings ? 1 : 2) + (long long)c->num_layers * layer + C;
}

static const char *const LINEAR_NAMES[LIN_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                   "gate_proj", "up_proj", "down_proj"};
static const char *const LINEAR_PATHS[LIN_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                   "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                                   "mlp.down_proj"};

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
