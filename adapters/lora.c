#include "lora.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/status.h"
#include "data/json_util.h"
#include "data/hub/hub.h"
#include "data/safetensors.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

float lora_scale(const lora_config *c)
{
    return (float)(c->use_rslora ? c->alpha / sqrt((double)c->r) : c->alpha / c->r);
}

int lora_target_bit(const char *name)
{
    static const char *const MLA[] = {"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj"};
    int t = llama_linear_parse(name);
    for (int i = 0; t < 0 && i < 4; i++)
        if (!strcmp(name, MLA[i])) t = LORA_T_Q_A + i;
    return t;
}

int lora_targets_parse(char *const *names, int n, unsigned *mask)
{
    *mask = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(names[i], "all-linear")) {
            *mask |= (1u << LORA_T_COUNT) - 1;   /* every linear layer the model has (not the router) */
            continue;
        }
        int t = lora_target_bit(names[i]);
        if (t < 0)
            return ds_fail(DS_ECONFIG, "unknown LoRA target module '%s' (q_proj, k_proj, v_proj, o_proj, gate_proj, "
                                       "up_proj, down_proj, all-linear, or DeepSeek's q_a_proj, q_b_proj, "
                                       "kv_a_proj_with_mqa, kv_b_proj)", names[i]);
        *mask |= 1u << t;
    }
    if (!*mask) return ds_fail(DS_ECONFIG, "no LoRA target modules");
    return DS_OK;
}

/* The target bit of module (layer, slot), or -1 where the layer has none. */
static int slot_target(const lora_adapter *a, int layer, int slot)
{
    if (!a->model.ds.on) return slot;
    const char *name;
    if (!deepseek_linear(&a->model, layer, slot, NULL, 0, &name, NULL, NULL)) return -1;
    return lora_target_bit(name);
}

bool lora_slot_shape(const lora_adapter *a, int layer, int slot, int *out, int *in)
{
    if (a->model.ds.on) return deepseek_linear(&a->model, layer, slot, NULL, 0, NULL, out, in);
    *out = a->out[slot];
    *in = a->in[slot];
    return true;
}

int lora_create(const model_config *model, const lora_config *cfg, const char *base_model, lora_adapter **out)
{
    *out = NULL;
    if (cfg->r < 1) return ds_fail(DS_ECONFIG, "LoRA rank r must be at least 1");
    lora_adapter *a = ds_calloc(1, sizeof *a, "a LoRA adapter");
    if (!a) return DS_ENOMEM;
    a->cfg = *cfg;
    a->model = *model;
    a->nlayers = model->num_layers;
    a->nslots = model->ds.on ? deepseek_slots(model) : LIN_COUNT;
    a->base_model = ds_strdup(base_model ? base_model : "");
    a->offset = ds_calloc((size_t)a->nlayers * a->nslots, sizeof *a->offset, "a LoRA adapter");
    if (!a->base_model || !a->offset) {
        lora_free(a);
        return DS_ENOMEM;
    }
    for (int t = 0; t < LIN_COUNT; t++) llama_linear_shape(model, (llama_linear)t, &a->out[t], &a->in[t]);
    /* As PEFT matches target_modules: a name no module of this family has
     * (k_proj on DeepSeek, kv_b_proj on Llama: what all-linear lists) adapts
     * nothing and is left out of the adapter's config; none matching is an error. */
    unsigned used = 0;
    for (int l = 0; l < a->nlayers; l++)
        for (int t = 0; t < a->nslots; t++) {
            int bit = slot_target(a, l, t), o, i;
            if (bit >= 0 && lora_slot_shape(a, l, t, &o, &i)) used |= 1u << bit;
        }
    if (!(cfg->targets & used)) {
        char names[200] = "";
        static const char *const MLA[] = {"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj"};
        for (int t = 0; t < LORA_T_COUNT; t++)
            if (cfg->targets & (1u << t))
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", *names ? ", " : "",
                         t < LIN_COUNT ? llama_linear_name((llama_linear)t) : MLA[t - LIN_COUNT]);
        lora_free(a);
        return ds_fail(DS_ECONFIG, "the LoRA target modules (%s) name no linear layer of %s", names,
                       model->architecture);
    }
    a->cfg.targets &= used;
    size_t off = 0;
    for (int l = 0; l < a->nlayers; l++)
        for (int t = 0; t < a->nslots; t++) {
            int bit = slot_target(a, l, t), o, i;
            if (bit < 0 || !(a->cfg.targets & (1u << bit)) || !lora_slot_shape(a, l, t, &o, &i)) {
                a->offset[l * a->nslots + t] = SIZE_MAX;
                continue;
            }
            a->offset[l * a->nslots + t] = off;
            off += (size_t)cfg->r * (o + i);
        }
    a->nparams = off;
    a->data = ds_calloc(off, sizeof(float), "the LoRA parameters");
    if (!a->data) {
        lora_free(a);
        return ds_fail_context(DS_ENOMEM, "%zu LoRA parameters: ", off);
    }
    *out = a;
    return DS_OK;
}

void lora_free(lora_adapter *a)
{
    if (!a) return;
    free(a->data);
    free(a->offset);
    free(a->base_model);
    free(a);
}

float *lora_slot_A(const lora_adapter *a, int layer, int slot)
{
    size_t off = a->offset[layer * a->nslots + slot];
    return off == SIZE_MAX ? NULL : a->data + off;
}

float *lora_A(const lora_adapter *a, int layer, llama_linear t) { return lora_slot_A(a, layer, (int)t); }

float *lora_B(const lora_adapter *a, int layer, llama_linear t) { return lora_slot_B(a, layer, (int)t); }

/* Module (l, t)'s B, for any model. */
float *lora_slot_B(const lora_adapter *a, int l, int t)
{
    float *A = lora_slot_A(a, l, t);
    int out, in;
    if (!A || !lora_slot_shape(a, l, t, &out, &in)) return NULL;
    return A + (size_t)a->cfg.r * in;
}

void lora_init(lora_adapter *a, uint64_t seed)
{
    ds_rng rng = ds_rng_make(seed, DS_STREAM_LORA_INIT);
    for (int l = 0; l < a->nlayers; l++)
        for (int t = 0; t < a->nslots; t++) {
            float *A = lora_slot_A(a, l, t);
            int out, in;
            if (!A || !lora_slot_shape(a, l, t, &out, &in)) continue;
            float bound = 1.0f / sqrtf((float)in);
            for (size_t i = 0; i < (size_t)a->cfg.r * in; i++) A[i] = (2.0f * ds_rng_uniform(&rng) - 1.0f) * bound;
            memset(lora_slot_B(a, l, t), 0, sizeof(float) * (size_t)out * a->cfg.r);
        }
}

void lora_key(char *buf, size_t n, int layer, llama_linear t, char which)
{
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.lora_%c.weight", layer, llama_linear_path(t), which);
}

void lora_slot_key(const lora_adapter *a, char *buf, size_t n, int layer, int slot, char which)
{
    char path[96];
    if (!a->model.ds.on) {
        lora_key(buf, n, layer, (llama_linear)slot, which);
        return;
    }
    if (!deepseek_linear(&a->model, layer, slot, path, sizeof path, NULL, NULL, NULL)) snprintf(path, sizeof path, "?");
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.lora_%c.weight", layer, path, which);
}

/* ------------------------------------------------------------ PEFT reading */

/* adapter_config.json -> lora_config, refusing what the engine would not honour. */
int lora_config_parse(const char *path, const char *text, size_t len, lora_config *c, char **base)
{
    json_error_t jerr;
    json_t *root;
    int rc = json_parse(text, len, 0, &root, &jerr);
    if (rc == DS_ENOMEM) return ds_fail_context(rc, "%s: ", path);
    if (rc) return ds_fail(DS_EDATA, "%s:%d: invalid JSON: %s", path, jerr.line, jerr.text);
    memset(c, 0, sizeof *c);
    *base = NULL;
    json_t *v;
    if (!json_is_object(root)) { rc = ds_fail(DS_EDATA, "%s: not a JSON object", path); goto done; }
    v = json_object_get(root, "peft_type");
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), "LORA"))) {
        rc = ds_fail(DS_EDATA, "%s: peft_type must be \"LORA\"", path);
        goto done;
    }
    v = json_object_get(root, "r");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65536) {
        rc = ds_fail(DS_EDATA, "%s: key \"r\" must be a positive integer", path);
        goto done;
    }
    c->r = (int)json_integer_value(v);
    /* Each key PEFT defines is of its kind and range, or refused by name (unknown keys are ignored). */
    rc = lora_config_check_kinds(root, path);
    if (rc) goto done;
    v = json_object_get(root, "lora_alpha");
    c->alpha = json_is_number(v) ? json_number_value(v) : 8.0;   /* PEFT's default */
    if (!(c->alpha > 0)) { rc = ds_fail(DS_EDATA, "%s: key \"lora_alpha\" must be > 0", path); goto done; }
    v = json_object_get(root, "lora_dropout");
    c->dropout = json_is_number(v) ? json_number_value(v) : 0.0;
    c->use_rslora = json_is_true(json_object_get(root, "use_rslora"));
    /* Features this engine does not implement: refuse rather than ignore. */
    static const char *const must_be_false[] = {"use_dora", "fan_in_fan_out", "lora_bias", "use_qalora"};
    for (size_t i = 0; i < sizeof must_be_false / sizeof *must_be_false; i++)
        if (json_is_true(json_object_get(root, must_be_false[i]))) {
            rc = ds_fail(DS_EDATA, "%s: unsupported key \"%s\": true", path, must_be_false[i]);
            goto done;
        }
    v = json_object_get(root, "bias");
    if (v && !json_is_null(v) && (!json_is_string(v) || strcmp(json_string_value(v), "none"))) {
        rc = ds_fail(DS_EDATA, "%s: unsupported key \"bias\" (only \"none\")", path);
        goto done;
    }
    static const char *const must_be_empty[] = {"rank_pattern", "alpha_pattern", "modules_to_save",
                                                "layers_to_transform", "trainable_token_indices"};
    for (size_t i = 0; i < sizeof must_be_empty / sizeof *must_be_empty; i++) {
        v = json_object_get(root, must_be_empty[i]);
        if (v && !json_is_null(v) && !(json_is_object(v) && json_object_size(v) == 0) &&
            !(json_is_array(v) && json_array_size(v) == 0)) {
            rc = ds_fail(DS_EDATA, "%s: unsupported key \"%s\" (must be empty)", path, must_be_empty[i]);
            goto done;
        }
    }
    v = json_object_get(root, "target_modules");
    if (json_is_string(v) && !strcmp(json_string_value(v), "all-linear")) {
        c->targets = (1u << LORA_T_COUNT) - 1;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            int t = json_is_string(e) ? lora_target_bit(json_string_value(e)) : -1;
            if (t < 0) {
                rc = ds_fail(DS_EDATA, "%s: unsupported target module %s%s%s", path, json_is_string(e) ? "'" : "",
                             json_is_string(e) ? json_string_value(e) : "(not a string)", json_is_string(e) ? "'" : "");
                goto done;
            }
            c->targets |= 1u << t;
        }
    } else {
        rc = ds_fail(DS_EDATA, "%s: key \"target_modules\" must be a list of module names (or \"all-linear\")", path);
        goto done;
    }
    if (!c->targets) { rc = ds_fail(DS_EDATA, "%s: empty \"target_modules\"", path); goto done; }
    v = json_object_get(root, "base_model_name_or_path");
    if (!(*base = ds_strdup(json_is_string(v) ? json_string_value(v) : ""))) rc = DS_ENOMEM;
done:
    json_decref(root);
    return rc;
}

int lora_load_peft(const char *dir, const model_config *model, lora_adapter **out)
{
    *out = NULL;
    char *cfg_path = ds_path_join(dir, "adapter_config.json");
    char *st_path = ds_path_join(dir, "adapter_model.safetensors");
    char *text = NULL, *base = NULL;
    size_t len;
    st_file *f = NULL;
    lora_adapter *a = NULL;
    lora_config c;
    int rc = !cfg_path || !st_path ? DS_ENOMEM : ds_read_file(cfg_path, &text, &len);
    if (!rc) rc = lora_config_parse(cfg_path, text, len, &c, &base);
    if (!rc) rc = st_file_open(st_path, &f);
    if (!rc) rc = lora_create(model, &c, base, &a);
    for (int l = 0; !rc && l < a->nlayers; l++)
        for (int t = 0; !rc && t < a->nslots; t++) {
            int out, in;
            if (!lora_slot_A(a, l, t) || !lora_slot_shape(a, l, t, &out, &in)) continue;
            for (int w = 0; w < 2 && !rc; w++) {
                char key[192];
                lora_slot_key(a, key, sizeof key, l, t, w ? 'B' : 'A');
                const st_tensor *ten = st_file_find(f, key);
                if (!ten) {
                    rc = ds_fail(DS_EDATA, "%s: missing tensor '%s'", st_path, key);
                    break;
                }
                int64_t shape[2] = {w ? out : a->cfg.r, w ? a->cfg.r : in};
                rc = st_check_shape(ten, 2, shape);
                if (rc) {
                    rc = ds_fail_context(rc, "%s: adapter does not fit the model: ", st_path);
                    break;
                }
                float *dst = w ? lora_slot_B(a, l, t) : lora_slot_A(a, l, t);
                rc = st_to_f32(ten, dst);
                if (!rc) rc = lora_check_finite(dst, (size_t)ten->numel, st_path, key);
            }
        }
    /* Every tensor in the file must be one the model has a place for: an
     * unexpected one means an adapter for another model or PEFT feature. */
    for (int i = 0; !rc && i < st_file_count(f); i++) {
        const char *name = st_file_at(f, i)->name;
        bool known = false;
        for (int l = 0; l < a->nlayers && !known; l++)
            for (int t = 0; t < a->nslots && !known; t++)
                for (int w = 0; w < 2 && !known && lora_slot_A(a, l, t); w++) {
                    char key[192];
                    lora_slot_key(a, key, sizeof key, l, t, w ? 'B' : 'A');
                    known = !strcmp(key, name);
                }
        if (!known) rc = ds_fail(DS_EDATA, "%s: adapter does not fit the model: unexpected tensor '%s'", st_path, name);
    }
    st_file_close(f);
    free(text);
    free(base);
    free(cfg_path);
    free(st_path);
    if (rc) {
        lora_free(a);
        return rc;
    }
    *out = a;
    return DS_OK;
}

/* ------------------------------------------------------------ PEFT writing */

/* adapter_config.json's text; NULL when out of memory (message set). */
static char *peft_config_json(const lora_adapter *a)
{
    json_alloc_reset();   /* a member that could not be allocated makes it fail */
    json_t *o = json_object();
    json_t *targets = json_array();
    static const char *const MLA[] = {"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj"};
    for (int t = 0; t < LORA_T_COUNT; t++)
        if (a->cfg.targets & (1u << t))
            json_array_append_new(targets, json_string(t < LIN_COUNT ? llama_linear_name((llama_linear)t)
                                                                     : MLA[t - LIN_COUNT]));
    double alpha = a->cfg.alpha;
    /* a Hub id with a revision ("org/name@refs/pr/3") is PEFT's base_model_name_or_path plus its revision */
    const char *at = hub_is_model_id(a->base_model) ? strchr(a->base_model, '@') : NULL;
    json_object_set_new(o, "base_model_name_or_path",
                        at ? json_stringn(a->base_model, (size_t)(at - a->base_model)) : json_string(a->base_model));
    if (at) json_object_set_new(o, "revision", json_string(at + 1));
    json_object_set_new(o, "bias", json_string("none"));
    json_object_set_new(o, "fan_in_fan_out", json_false());
    json_object_set_new(o, "inference_mode", json_true());
    json_object_set_new(o, "init_lora_weights", json_true());
    json_object_set_new(o, "lora_alpha", alpha == floor(alpha) && fabs(alpha) < 1e9 ? json_integer((json_int_t)alpha)
                                                                                     : json_real(alpha));
    json_object_set_new(o, "lora_dropout", json_real(a->cfg.dropout));
    json_object_set_new(o, "peft_type", json_string("LORA"));
    json_object_set_new(o, "r", json_integer(a->cfg.r));
    json_object_set_new(o, "target_modules", targets);
    json_object_set_new(o, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(o, "use_rslora", json_boolean(a->cfg.use_rslora));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    if (json_alloc_failed()) {
        free(s);
        return NULL;
    }
    return s;
}

int lora_write_peft_files(const lora_adapter *a, const char *dir)
{
    int bad = lora_check_adapter(a, "the adapter to write");
    if (bad) return bad;
    char *cfg = peft_config_json(a);
    char *cfg_path = ds_path_join(dir, "adapter_config.json");
    int rc = !cfg || !cfg_path ? DS_ENOMEM : ds_write_file(cfg_path, cfg, strlen(cfg));
    free(cfg);
    free(cfg_path);
    if (rc) return rc;
    st_writer *w = st_writer_new();
    if (!w) return DS_ENOMEM;
    rc = st_writer_meta(w, "format", "pt");
    for (int l = 0; !rc && l < a->nlayers; l++)
        for (int t = 0; !rc && t < a->nslots; t++) {
            int out, in;
            if (!lora_slot_A(a, l, t) || !lora_slot_shape(a, l, t, &out, &in)) continue;
            char key[192];
            int64_t sa[2] = {a->cfg.r, in}, sb[2] = {out, a->cfg.r};
            lora_slot_key(a, key, sizeof key, l, t, 'A');
            rc = st_writer_add(w, key, ST_F32, 2, sa, lora_slot_A(a, l, t));
            lora_slot_key(a, key, sizeof key, l, t, 'B');
            if (!rc) rc = st_writer_add(w, key, ST_F32, 2, sb, lora_slot_B(a, l, t));
        }
    if (!rc) {
        char *st_path = ds_path_join(dir, "adapter_model.safetensors");
        rc = st_path ? st_writer_write(w, st_path) : DS_ENOMEM;
        free(st_path);
    }
    st_writer_free(w);
    return rc;
}

int lora_save_peft(const lora_adapter *a, const char *dir)
{
    char *tmp;
    int rc = ds_dir_begin(dir, &tmp);
    if (rc) return rc;
    rc = lora_write_peft_files(a, tmp);
    if (!rc) rc = ds_dir_commit(tmp, dir);
    if (rc) ds_dir_abort(tmp);
    free(tmp);
    return rc;
}
