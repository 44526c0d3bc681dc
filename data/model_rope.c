/* data/model_rope.c - rotary position embeddings as transformers configures
 * and computes them: rope_theta and the rope_scaling / rope_parameters keys
 * (default, linear, llama3, yarn), then the inverse frequencies in fp32, the
 * arithmetic of transformers' rope init functions (modeling_rope_utils.py). */
#include "model_config_internal.h"
#include "json_util.h"

#include "core/status.h"

#include <math.h>
#include <string.h>

/* An optional number of a rope section: absent or null keeps *out. */
static int rope_num(json_t *rs, const char *which, const char *key, const char *path, double *out)
{
    json_t *v = json_object_get(rs, key);
    if (!v || json_is_null(v)) return DS_OK;
    if (!json_is_number(v)) return ds_fail(DS_EDATA, "%s: key \"%s.%s\" must be a number", path, which, key);
    *out = json_number_value(v);
    return DS_OK;
}

/* The keys each rope type reads; any other key of the section is refused. */
static int check_rope_keys(json_t *rs, const char *which, const char *type, const char *path, const char *const *keys)
{
    const char *key;
    json_t *v;
    json_object_foreach(rs, key, v) {
        bool known = false;
        for (int i = 0; keys[i] && !known; i++) known = !strcmp(key, keys[i]);
        if (!known)
            return ds_fail(DS_EDATA, "%s: unsupported key \"%s.%s\" for rope type %s", path, which, key, type);
    }
    return DS_OK;
}

static int parse_scaling(json_t *rs, const char *which, const char *path, model_config *c)
{
    rope_config *r = &c->rope;
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    const char *type = t ? json_string_value(t) : "default";
    if (!type) return ds_fail(DS_EDATA, "%s: key \"%s.rope_type\" must be a string", path, which);
    static const char *const common[] = {"rope_type", "type", "rope_theta", NULL};
    static const char *const linear[] = {"rope_type", "type", "rope_theta", "factor", NULL};
    static const char *const llama3[] = {"rope_type", "type", "rope_theta", "factor", "low_freq_factor",
                                         "high_freq_factor", "original_max_position_embeddings", NULL};
    static const char *const yarn[] = {"rope_type", "type", "rope_theta", "factor", "original_max_position_embeddings",
                                       "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor",
                                       "truncate", NULL};
    int rc = DS_OK;
    double orig = 0;
    if (!strcmp(type, "default")) {
        return check_rope_keys(rs, which, type, path, common);
    } else if (!strcmp(type, "linear")) {
        r->type = ROPE_LINEAR;
        rc = check_rope_keys(rs, which, type, path, linear);
    } else if (!strcmp(type, "llama3")) {
        r->type = ROPE_LLAMA3;
        rc = check_rope_keys(rs, which, type, path, llama3);
        if (!rc) rc = rope_num(rs, which, "low_freq_factor", path, &r->low_freq_factor);
        if (!rc) rc = rope_num(rs, which, "high_freq_factor", path, &r->high_freq_factor);
        if (!rc) rc = rope_num(rs, which, "original_max_position_embeddings", path, &orig);
        if (!rc && !(r->low_freq_factor > 0 && r->high_freq_factor > r->low_freq_factor && orig >= 1))
            return ds_fail(DS_EDATA, "%s: llama3 rope scaling needs \"%s.low_freq_factor\" > 0, \"high_freq_factor\" "
                                     "above it and \"original_max_position_embeddings\"", path, which);
    } else if (!strcmp(type, "yarn")) {
        r->type = ROPE_YARN;
        r->beta_fast = 32;
        r->beta_slow = 1;
        r->attention_factor = -1;
        r->truncate = true;
        rc = check_rope_keys(rs, which, type, path, yarn);
        if (!rc) rc = rope_num(rs, which, "beta_fast", path, &r->beta_fast);
        if (!rc) rc = rope_num(rs, which, "beta_slow", path, &r->beta_slow);
        if (!rc) rc = rope_num(rs, which, "mscale", path, &r->mscale);
        if (!rc) rc = rope_num(rs, which, "mscale_all_dim", path, &r->mscale_all_dim);
        if (!rc) rc = rope_num(rs, which, "attention_factor", path, &r->attention_factor);
        if (!rc) rc = rope_num(rs, which, "original_max_position_embeddings", path, &orig);
        json_t *tr = json_object_get(rs, "truncate");
        if (!rc && tr && !json_is_null(tr)) {
            if (!json_is_boolean(tr)) return ds_fail(DS_EDATA, "%s: key \"%s.truncate\" must be a boolean", path, which);
            r->truncate = json_is_true(tr);
        }
        if (!rc && !(r->beta_fast > 0 && r->beta_slow > 0))
            return ds_fail(DS_EDATA, "%s: yarn needs \"%s.beta_fast\" and \"beta_slow\" > 0", path, which);
    } else {
        return ds_fail(DS_EDATA, "%s: unsupported rope type \"%s\" in \"%s\" (supported: default, linear, llama3, yarn)",
                       path, type, which);
    }
    if (rc) return rc;
    double f = 0;
    if ((rc = rope_num(rs, which, "factor", path, &f))) return rc;
    if (!(f > 0)) return ds_fail(DS_EDATA, "%s: %s rope scaling needs \"%s.factor\" > 0", path, type, which);
    r->factor = f;
    r->original_max_position = (int)orig;
    /* yarn: the correction range is measured over the original context,
     * max_position_embeddings when the section does not name one */
    if (r->type == ROPE_YARN && orig < 1) r->original_max_position = c->max_position;
    c->rope_factor = r->factor;
    return DS_OK;
}

int model_rope_parse(json_t *root, const char *path, model_config *c)
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
        if ((rc = parse_scaling(rs, which, path, c))) return rc;
    }
    if (!(c->rope_theta > 0)) return ds_fail(DS_EDATA, "%s: key \"rope_theta\" must be > 0", path);
    return DS_OK;
}

/* ---- the frequencies ---- */

static double yarn_mscale(double scale, double m)
{
    return scale <= 1 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

/* The dimension at which a frequency turns `rotations` times over the context. */
static double yarn_correction_dim(double rotations, int dim, double base, int context)
{
    return (dim * log(context / (rotations * 2 * M_PI))) / (2 * log(base));
}

void model_rope_freqs(const model_config *c, float *inv_freq, float *attention_scale)
{
    const rope_config *r = &c->rope;
    /* DeepSeek's MLA rotates only the rope part of each head */
    const int dim = c->ds.on ? c->ds.qk_rope_dim : c->head_dim, half = dim / 2;
    const float base = (float)c->rope_theta;
    *attention_scale = 1.0f;
    for (int i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(base, (float)(2 * i) / (float)dim);
    if (r->type == ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv_freq[i] /= (float)r->factor;
    } else if (r->type == ROPE_LLAMA3) {
        /* long wavelengths divided by factor, short ones kept, a smooth blend between */
        const float lo = (float)r->low_freq_factor, hi = (float)r->high_freq_factor, f = (float)r->factor;
        const float old = (float)r->original_max_position;
        const float low_wavelen = old / lo, high_wavelen = old / hi;
        for (int i = 0; i < half; i++) {
            float wavelen = 2.0f * (float)M_PI / inv_freq[i];
            float scaled = wavelen > low_wavelen ? inv_freq[i] / f : inv_freq[i];
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = (old / wavelen - lo) / (hi - lo);
                scaled = (1.0f - smooth) * scaled / f + smooth * scaled;
            }
            inv_freq[i] = scaled;
        }
    } else if (r->type == ROPE_YARN) {
        const double f = r->factor;
        double lo = yarn_correction_dim(r->beta_fast, dim, c->rope_theta, r->original_max_position);
        double hi = yarn_correction_dim(r->beta_slow, dim, c->rope_theta, r->original_max_position);
        if (r->truncate) {
            lo = floor(lo);
            hi = ceil(hi);
        }
        if (lo < 0) lo = 0;
        if (hi > dim - 1) hi = dim - 1;
        if (lo == hi) hi += 0.001;   /* no zero-width ramp */
        for (int i = 0; i < half; i++) {
            float pos_freq = powf(base, (float)(2 * i) / (float)dim);
            float extrapolation = 1.0f / pos_freq, interpolation = 1.0f / ((float)f * pos_freq);
            float ramp = ((float)i - (float)lo) / (float)(hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float keep = 1.0f - ramp;   /* the share of the extrapolated (unscaled) frequency */
            inv_freq[i] = interpolation * (1.0f - keep) + extrapolation * keep;
        }
        double af = r->attention_factor;
        if (af < 0)
            af = r->mscale != 0 && r->mscale_all_dim != 0 ? yarn_mscale(f, r->mscale) / yarn_mscale(f, r->mscale_all_dim)
                                                           : yarn_mscale(f, 1.0);
        *attention_scale = (float)af;
    }
}

int model_config_context(const model_config *c)
{
    int n = c->max_position;
    if ((c->rope.type == ROPE_LINEAR || c->rope.type == ROPE_YARN) && c->rope.factor > 1) {
        double base = c->rope.original_max_position > 0 ? c->rope.original_max_position : c->max_position;
        double stretched = base * c->rope.factor;
        if (stretched > n) n = stretched < 2147483647.0 ? (int)stretched : 2147483647;
    }
    return n;
}
