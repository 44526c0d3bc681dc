/* adapters/lora_check.c - what an adapter file may hold: the kinds and ranges
 * of adapter_config.json's keys, finite tensors, and the two files of an
 * adapter checked in memory (bundles carry them). */
#include "lora.h"

#include "core/mem.h"
#include "core/numeric.h"
#include "core/status.h"
#include "data/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { K_NULL = 1, K_BOOL = 2, K_INT = 4, K_REAL = 8, K_STR = 16, K_LIST = 32, K_OBJ = 64, K_NUM = K_INT | K_REAL };

typedef struct {
    const char *key;
    unsigned kinds;
    double min, max;     /* numbers: min <= x (< max when max_open, else <= max) */
    bool max_open;
    const char *says;    /* the kind, as the message says it */
} peft_key;

/* The keys PEFT's LoraConfig defines that a file written by PEFT or ds-ft holds. */
static const peft_key PEFT_KEYS[] = {
    {"r", K_INT, 1, 65536, false, "an integer from 1 to 65536"},
    {"lora_alpha", K_NUM, 0, 1e9, false, "a positive number"},
    {"lora_dropout", K_NUM | K_NULL, 0, 1, true, "a number in [0, 1)"},
    {"use_rslora", K_BOOL | K_NULL, 0, 0, false, "true or false"},
    {"use_dora", K_BOOL | K_NULL, 0, 0, false, "true or false"},
    {"fan_in_fan_out", K_BOOL | K_NULL, 0, 0, false, "true or false"},
    {"inference_mode", K_BOOL | K_NULL, 0, 0, false, "true or false"},
    {"lora_bias", K_BOOL | K_NULL, 0, 0, false, "true or false"},
    {"init_lora_weights", K_BOOL | K_STR | K_NULL, 0, 0, false, "true, false or the name of an initialisation"},
    {"peft_type", K_STR | K_NULL, 0, 0, false, "a string"},
    {"task_type", K_STR | K_NULL, 0, 0, false, "a string or null"},
    {"bias", K_STR | K_NULL, 0, 0, false, "a string"},
    {"base_model_name_or_path", K_STR | K_NULL, 0, 0, false, "a string or null"},
    {"revision", K_STR | K_NULL, 0, 0, false, "a string or null"},
    {"target_modules", K_LIST | K_STR, 0, 0, false, "a list of module names or a string"},
    {"rank_pattern", K_OBJ | K_NULL, 0, 0, false, "a mapping"},
    {"alpha_pattern", K_OBJ | K_NULL, 0, 0, false, "a mapping"},
    {NULL, 0, 0, 0, false, NULL},
};

static unsigned kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL: return K_NULL;
    case JSON_TRUE:
    case JSON_FALSE: return K_BOOL;
    case JSON_INTEGER: return K_INT;
    case JSON_REAL: return K_REAL;
    case JSON_STRING: return K_STR;
    case JSON_ARRAY: return K_LIST;
    default: return K_OBJ;
    }
}

int lora_config_check_kinds(const json_t *root, const char *path)
{
    for (const peft_key *k = PEFT_KEYS; k->key; k++) {
        json_t *v = json_object_get(root, k->key);
        if (!v) continue;
        unsigned kind = kind_of(v);
        bool ok = (kind & k->kinds) != 0;
        if (ok && (kind & K_NUM)) {
            double x = json_number_value(v);
            ok = isfinite(x) && x >= k->min && (k->max_open ? x < k->max : x <= k->max);
        }
        if (!ok) {
            char *shown = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            int rc = ds_fail(DS_EDATA, "%s: key \"%s\" must be %s, not %.40s", path, k->key, k->says,
                             shown ? shown : "this");
            free(shown);
            return rc;
        }
    }
    return DS_OK;
}

int lora_check_finite(const float *x, size_t n, const char *file, const char *name)
{
    size_t i = ds_first_nonfinite(x, n);
    if (i == n) return DS_OK;
    return ds_fail(DS_EDATA, "%s: tensor '%s' holds %s at [%zu]", file, name, isnan(x[i]) ? "NaN" : "an infinity", i);
}

int lora_check_adapter(const lora_adapter *a, const char *what)
{
    for (int l = 0; l < a->nlayers; l++)
        for (int t = 0; t < a->nslots; t++) {
            const float *A = lora_slot_A(a, l, t);
            int out, in;
            if (!A || !lora_slot_shape(a, l, t, &out, &in)) continue;
            for (int w = 0; w < 2; w++) {
                char key[192];
                lora_slot_key(a, key, sizeof key, l, t, w ? 'B' : 'A');
                size_t n = (size_t)a->cfg.r * (w ? out : in);
                int rc = lora_check_finite(w ? A + (size_t)a->cfg.r * in : A, n, what, key);
                if (rc) return rc;
            }
        }
    return DS_OK;
}

/* DeepSeek's "<path>.lora_A.weight" after the layer: self_attn.X, mlp.X,
 * mlp.shared_experts.X or mlp.experts.E.X, X a targeted name. */
static bool deepseek_tensor_name(const char *rest, unsigned targets, char *which)
{
    static const char *const PREFIXES[] = {"self_attn.", "mlp.shared_experts.", "mlp.experts.", "mlp."};
    for (size_t p = 0; p < 4; p++) {
        size_t n = strlen(PREFIXES[p]);
        if (strncmp(rest, PREFIXES[p], n)) continue;
        const char *x = rest + n;
        if (p == 2) {   /* the expert number */
            char *end;
            long e = strtol(x, &end, 10);
            if (end == x || *end != '.' || e < 0) return false;
            x = end + 1;
        }
        const char *dot = strstr(x, ".lora_");
        if (!dot || (strcmp(dot, ".lora_A.weight") && strcmp(dot, ".lora_B.weight"))) return false;
        char module[64];
        size_t len = (size_t)(dot - x);
        if (len >= sizeof module) return false;
        memcpy(module, x, len);
        module[len] = 0;
        int bit = lora_target_bit(module);
        bool mlp = bit == LIN_GATE || bit == LIN_UP || bit == LIN_DOWN;
        bool attention = bit == LIN_Q || bit == LIN_O || bit >= LORA_T_Q_A;
        if (bit < 0 || !(targets & (1u << bit)) || (p == 0 ? !attention : !mlp)) return false;
        *which = dot[6];
        return true;
    }
    return false;
}

/* "base_model.model.model.layers.N.<path>.lora_A.weight" of a module the
 * config targets: *which gets 'A' or 'B'. */
static bool lora_tensor_name(const char *name, unsigned targets, char *which)
{
    int layer, used = 0;
    if (sscanf(name, "base_model.model.model.layers.%d.%n", &layer, &used) != 1 || used == 0 || layer < 0) return false;
    if (deepseek_tensor_name(name + used, targets, which)) return true;
    for (int t = 0; t < LIN_COUNT; t++) {
        if (!(targets & (1u << t))) continue;
        for (int w = 0; w < 2; w++) {
            char key[160];
            lora_key(key, sizeof key, layer, (llama_linear)t, w ? 'B' : 'A');
            if (!strcmp(key, name)) {
                *which = w ? 'B' : 'A';
                return true;
            }
        }
    }
    return false;
}

int lora_check_files(const char *cfg_text, size_t cfg_len, const void *st, size_t st_len, const char *what)
{
    char cfg_name[512], st_name[512];
    snprintf(cfg_name, sizeof cfg_name, "%s: adapter_config.json", what);
    snprintf(st_name, sizeof st_name, "%s: adapter_model.safetensors", what);
    lora_config c;
    char *base = NULL;
    int rc = lora_config_parse(cfg_name, cfg_text, cfg_len, &c, &base);
    free(base);
    st_file *f = NULL;
    if (!rc) rc = st_file_parse(st, st_len, st_name, &f);
    if (!rc && st_file_count(f) == 0) rc = ds_fail(DS_EDATA, "%s: holds no tensor", st_name);
    for (int i = 0; !rc && i < st_file_count(f); i++) {
        const st_tensor *t = st_file_at(f, i);
        char which;
        if (!lora_tensor_name(t->name, c.targets, &which)) {
            rc = ds_fail(DS_EDATA, "%s: tensor '%s' is not a LoRA weight of the modules adapter_config.json targets",
                         st_name, t->name);
            break;
        }
        bool rank_fits = t->ndim == 2 && t->shape[which == 'A' ? 0 : 1] == c.r && t->numel > 0;
        if (!rank_fits || (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16)) {
            rc = ds_fail(DS_EDATA, "%s: tensor '%s' is not a 2-D float tensor of rank %d", st_name, t->name, c.r);
            break;
        }
        float *x = ds_malloc(sizeof(float) * (size_t)t->numel, "an adapter tensor");
        rc = x ? st_to_f32(t, x) : DS_ENOMEM;
        if (!rc) rc = lora_check_finite(x, (size_t)t->numel, st_name, t->name);
        free(x);
    }
    st_file_close(f);
    return rc;
}
