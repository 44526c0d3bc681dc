#include "model_config.h"
#include "json_util.h"
#include "pyjson.h"

#include "core/files.h"
#include "core/status.h"
#include "core/xlist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* An integer key in [lo, 2^30]; absent -> *out unchanged unless required. */
static int get_int(json_t *root, const char *path, const char *key, bool required, int lo, int *out)
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

/* rope_scaling / rope_parameters: only "default" and "linear" are implemented. */
static int parse_rope(json_t *root, const char *path, model_config *c)
{
    int rc = json_get_num(root, "rope_theta", c->rope_theta, path, &c->rope_theta);
    if (rc) return rc;
    const char *which = "rope_scaling";
    json_t *rs = json_object_get(root, "rope_scaling");
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp)) return ds_fail(DS_EDATA, "%s: key \"rope_parameters\" must be an object", path);
        if ((rc = json_get_num(rp, "rope_theta", c->rope_theta, path, &c->rope_theta))) return rc;
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
            if ((rc = json_get_num(rs, "factor", 0, path, &f))) return rc;
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

/* Keys whose values the engine does not implement: refused, never ignored. */
static int refuse_unsupported(json_t *root, const char *path)
{
    static const char *const must_be_false[] = {"attention_bias", "mlp_bias"};
    for (size_t i = 0; i < sizeof must_be_false / sizeof *must_be_false; i++) {
        bool on = false;
        int rc = json_get_bool(root, must_be_false[i], false, path, &on);
        if (rc) return rc;
        if (on)
            return ds_fail(DS_EDATA, "%s: unsupported key \"%s\": true (biases in linear layers are not implemented)",
                           path, must_be_false[i]);
    }
    json_t *sw = json_object_get(root, "sliding_window");
    if (sw && !json_is_null(sw)) {
        json_t *use = json_object_get(root, "use_sliding_window");
        if (!use || json_is_true(use))
            return ds_fail(DS_EDATA,
                           "%s: unsupported key \"sliding_window\" (sliding-window attention is not implemented)", path);
    }
    json_t *act = json_object_get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return ds_fail(DS_EDATA, "%s: unsupported key \"hidden_act\" (only \"silu\" is implemented)", path);
    json_t *tp = json_object_get(root, "pretraining_tp");
    if (tp && json_is_integer(tp) && json_integer_value(tp) != 1)
        return ds_fail(DS_EDATA, "%s: unsupported key \"pretraining_tp\" = %lld (only 1)", path,
                       (long long)json_integer_value(tp));
    return DS_OK;
}

static int parse_root(json_t *root, const char *path, model_config *c)
{
    memset(c, 0, sizeof *c);
    c->rope_theta = 10000.0;
    c->rope_factor = 1.0;
    c->rms_norm_eps = 1e-6f;
    c->bos_id = c->eos_id = c->pad_id = -1;
    c->max_position = 4096;
    if (!json_is_object(root)) return ds_fail(DS_EDATA, "%s: not a JSON object", path);

    json_t *arch = json_object_get(root, "architectures");
    const char *a = json_is_array(arch) ? json_string_value(json_array_get(arch, 0)) : NULL;
    if (!a) return ds_fail(DS_EDATA, "%s: missing key \"architectures\" (a list naming the model class)", path);
    if (strcmp(a, "LlamaForCausalLM"))
        return ds_fail(DS_EDATA,
                       "%s: unsupported architecture \"%s\" in \"architectures\" (supported: LlamaForCausalLM)", path, a);
    snprintf(c->architecture, sizeof c->architecture, "%s", a);

    int rc;
    if ((rc = get_int(root, path, "hidden_size", true, 1, &c->hidden_size))) return rc;
    if ((rc = get_int(root, path, "intermediate_size", true, 1, &c->intermediate_size))) return rc;
    if ((rc = get_int(root, path, "num_hidden_layers", true, 1, &c->num_layers))) return rc;
    if ((rc = get_int(root, path, "num_attention_heads", true, 1, &c->num_heads))) return rc;
    if ((rc = get_int(root, path, "vocab_size", true, 1, &c->vocab_size))) return rc;
    c->num_kv_heads = c->num_heads;
    if ((rc = get_int(root, path, "num_key_value_heads", false, 1, &c->num_kv_heads))) return rc;
    if (c->hidden_size % c->num_heads)
        return ds_fail(DS_EDATA, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path,
                       c->hidden_size, c->num_heads);
    c->head_dim = c->hidden_size / c->num_heads;
    if ((rc = get_int(root, path, "head_dim", false, 2, &c->head_dim))) return rc;
    if (c->head_dim % 2) return ds_fail(DS_EDATA, "%s: key \"head_dim\" = %d must be even for RoPE", path, c->head_dim);
    if (c->num_heads % c->num_kv_heads)
        return ds_fail(DS_EDATA, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
                       c->num_heads, c->num_kv_heads);
    if ((rc = get_int(root, path, "max_position_embeddings", false, 1, &c->max_position))) return rc;
    double eps;
    if ((rc = json_get_num(root, "rms_norm_eps", c->rms_norm_eps, path, &eps))) return rc;
    if (!(eps > 0 && eps < 1)) return ds_fail(DS_EDATA, "%s: key \"rms_norm_eps\" must be in (0, 1)", path);
    c->rms_norm_eps = (float)eps;
    if ((rc = json_get_bool(root, "tie_word_embeddings", false, path, &c->tie_word_embeddings))) return rc;
    if ((rc = parse_rope(root, path, c))) return rc;
    if ((rc = refuse_unsupported(root, path))) return rc;

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
 * missing, malformed or holds unusable ids changes nothing. */
static void apply_generation_config(const char *dir, model_config *c)
{
    char *path = ds_path_join(dir, "generation_config.json");
    json_t *root;
    if (json_file_load(path, 0, &root) == DS_OK) {
        int *ids[3] = {&c->bos_id, &c->eos_id, &c->pad_id};
        if (json_is_object(root))
            for (int i = 0; i < 3; i++) token_id(root, path, TOKEN_KEYS[i], c->vocab_size, false, ids[i]);
        json_decref(root);
    }
    ds_clear_error();
    free(path);
}

int model_config_load_json(const char *dir, model_config *c, json_t **config)
{
    *config = NULL;
    char *path = ds_path_join(dir, "config.json");
    json_t *root;
    int rc = json_file_load(path, 0, &root);
    if (!rc) rc = parse_root(root, path, c);
    free(path);
    if (rc) {
        if (!root) memset(c, 0, sizeof *c);
        json_decref(root);
        return rc;
    }
    apply_generation_config(dir, c);
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
    long long C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    long long qo = (long long)c->num_heads * c->head_dim, kv = (long long)c->num_kv_heads * c->head_dim;
    long long layer = C * qo * 2 + C * kv * 2 + 3 * C * I + 2 * C;
    return V * C * (c->tie_word_embeddings ? 1 : 2) + (long long)c->num_layers * layer + C;
}

/* ------------------------------------------------------- derived folders */

int model_copy_side_files(const char *src_dir, const char *dst_dir)
{
    static const char *const SIDE_FILES[] = {
        "tokenizer.json",    "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
        "added_tokens.json", "chat_template.jinja",   "generation_config.json",
    };
    for (size_t i = 0; i < sizeof SIDE_FILES / sizeof *SIDE_FILES; i++) {
        char *from = ds_path_join(src_dir, SIDE_FILES[i]), *to = ds_path_join(dst_dir, SIDE_FILES[i]);
        int rc = ds_exists(from) ? ds_copy_file(from, to) : DS_OK;
        free(from);
        free(to);
        if (rc) return rc;
    }
    return DS_OK;
}

int model_config_rewrite_json(const json_t *config, const char *dst_dir, json_t *quantization)
{
    static const char QKEY[] = "quantization_config";
    if (!json_is_object(config)) return ds_fail(DS_EINTERNAL, "model_config_rewrite: config.json is not an object");
    const char *key, *prev = NULL;
    json_t *v;
    bool sorted = true;
    json_object_foreach((json_t *)config, key, v) {
        if (prev && strcmp(prev, key) > 0) sorted = false;
        prev = key;
    }
    json_t *out = json_object(), *bf16 = json_string("bfloat16");
    json_t *q = quantization;   /* still to be placed */
    bool has_dtype = false, has_torch_dtype = false;
    json_object_foreach((json_t *)config, key, v) {
        if (!strcmp(key, QKEY)) {
            if (q) json_object_set(out, QKEY, q);
            q = NULL;
            continue;
        }
        if (sorted && q && strcmp(key, QKEY) > 0) {
            json_object_set(out, QKEY, q);
            q = NULL;
        }
        bool dtype = !strcmp(key, "dtype"), torch_dtype = !strcmp(key, "torch_dtype");
        has_dtype |= dtype;
        has_torch_dtype |= torch_dtype;
        /* merged weights are written in bf16 */
        json_object_set(out, key, !quantization && (dtype || torch_dtype) ? bf16 : v);
    }
    if (q) json_object_set(out, QKEY, q);
    if (!quantization && !has_dtype && !has_torch_dtype) json_object_set(out, "dtype", bf16);
    json_decref(bf16);
    char *body = pyjson_dumps(out, 2);
    json_decref(out);
    if (!body) return ds_fail(DS_EINTERNAL, "%s: cannot encode config.json", dst_dir);
    size_t len = strlen(body);
    body[len] = '\n';   /* the file ends with a newline: it takes the NUL's place (written by length) */
    char *dst = ds_path_join(dst_dir, "config.json");
    int rc = ds_write_file(dst, body, len + 1);
    free(dst);
    free(body);
    return rc;
}

int model_config_rewrite(const char *src_dir, const char *dst_dir, json_t *quantization)
{
    char *path = ds_path_join(src_dir, "config.json");
    json_t *config;
    int rc = json_file_load(path, 0, &config);
    if (!rc && !json_is_object(config)) rc = ds_fail(DS_EDATA, "%s: not a JSON object", path);
    if (!rc) rc = model_config_rewrite_json(config, dst_dir, quantization);
    json_decref(config);
    free(path);
    return rc;
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
