/* quant/bnb.c - reading bitsandbytes 4-bit checkpoints: config.json's
 * quantization_config and one quantized weight at a time (see bnb.h). */
#include "bnb.h"
#include "pyjson.h"

#include "../core/files.h"
#include "../core/status.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- dtype names */

static const char *const DTYPE_NAMES[] = {[NF4_OUT_BF16] = "bfloat16", [NF4_OUT_F16] = "float16", [NF4_OUT_F32] = "float32"};

static int dtype_parse(const char *s, nf4_out_dtype *out)
{
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, DTYPE_NAMES[i])) {
            *out = (nf4_out_dtype)i;
            return DS_OK;
        }
    return -1;
}

/* ------------------------------------------------------------ config.json */

static int get_bool_key(json_t *q, const char *path, const char *key, bool *out)
{
    json_t *v = json_object_get(q, key);
    if (!v || json_is_null(v)) return DS_OK;
    if (!json_is_boolean(v))
        return ds_fail(DS_EDATA, "%s: key \"quantization_config.%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return DS_OK;
}

static int get_str_key(json_t *q, const char *path, const char *key, char *out, size_t n)
{
    json_t *v = json_object_get(q, key);
    if (!v || json_is_null(v)) return DS_OK;
    if (!json_is_string(v) || json_string_length(v) >= n)
        return ds_fail(DS_EDATA, "%s: key \"quantization_config.%s\" must be a short string", path, key);
    snprintf(out, n, "%s", json_string_value(v));
    return DS_OK;
}

static int parse_qconfig(json_t *q, const char *path, bnb_config *c)
{
    if (!json_is_object(q)) return ds_fail(DS_EDATA, "%s: key \"quantization_config\" must be an object", path);
    c->present = true;
    char method[32] = "bitsandbytes";
    int rc = get_str_key(q, path, "quant_method", method, sizeof method);
    if (rc) return rc;
    if (strcmp(method, "bitsandbytes"))
        return ds_fail(DS_EDATA,
                       "%s: key \"quantization_config.quant_method\" is \"%s\": only bitsandbytes 4-bit checkpoints "
                       "are supported",
                       path, method);
    bool in8 = false, in8_ = false, in4 = false, in4_ = false;
    if ((rc = get_bool_key(q, path, "load_in_8bit", &in8)) || (rc = get_bool_key(q, path, "_load_in_8bit", &in8_)) ||
        (rc = get_bool_key(q, path, "load_in_4bit", &in4)) || (rc = get_bool_key(q, path, "_load_in_4bit", &in4_)))
        return rc;
    if (in8 || in8_)
        return ds_fail(DS_EDATA,
                       "%s: key \"quantization_config.load_in_8bit\" is true: 8-bit (LLM.int8) checkpoints are not "
                       "supported, only 4-bit NF4",
                       path);
    if (!in4 && !in4_)
        return ds_fail(DS_EDATA, "%s: key \"quantization_config.load_in_4bit\" is not true: not a 4-bit checkpoint",
                       path);
    snprintf(c->quant_type, sizeof c->quant_type, "fp4");   /* transformers' default */
    if ((rc = get_str_key(q, path, "bnb_4bit_quant_type", c->quant_type, sizeof c->quant_type))) return rc;
    if (strcmp(c->quant_type, "nf4"))
        return ds_fail(DS_EDATA, "%s: key \"quantization_config.bnb_4bit_quant_type\" is \"%s\": only nf4 is supported",
                       path, c->quant_type);
    if ((rc = get_bool_key(q, path, "bnb_4bit_use_double_quant", &c->double_quant))) return rc;
    if ((rc = get_str_key(q, path, "bnb_4bit_compute_dtype", c->compute_dtype, sizeof c->compute_dtype))) return rc;
    nf4_out_dtype dt;
    if (dtype_parse(c->compute_dtype, &dt))
        return ds_fail(DS_EDATA,
                       "%s: key \"quantization_config.bnb_4bit_compute_dtype\" is \"%s\" (expected bfloat16, float16 "
                       "or float32)",
                       path, c->compute_dtype);
    return get_str_key(q, path, "bnb_4bit_quant_storage", c->quant_storage, sizeof c->quant_storage);
}

int bnb_config_parse(const char *text, size_t len, const char *path, bnb_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->compute_dtype, sizeof c->compute_dtype, "float32");
    snprintf(c->quant_storage, sizeof c->quant_storage, "uint8");
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!root) return ds_fail(DS_EDATA, "%s:%d: invalid JSON: %s", path, jerr.line, jerr.text);
    int rc = DS_OK;
    json_t *q = json_object_get(root, "quantization_config");
    if (!json_is_object(root)) rc = ds_fail(DS_EDATA, "%s: not a JSON object", path);
    else if (q && !json_is_null(q)) rc = parse_qconfig(q, path, c);
    json_decref(root);
    return rc;
}

int bnb_config_load(const char *model_dir, bnb_config *c)
{
    char *path = ds_path_join(model_dir, "config.json");
    char *text;
    size_t len;
    int rc = ds_read_file(path, &text, &len);
    if (!rc) {
        rc = bnb_config_parse(text, len, path, c);
        free(text);
    }
    free(path);
    return rc;
}

/* --------------------------------------------------------- tensor naming */

bool bnb_is_linear_weight(const char *name)
{
    static const char *const suffixes[] = {
        ".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight",
        ".self_attn.o_proj.weight", ".mlp.gate_proj.weight",    ".mlp.up_proj.weight",
        ".mlp.down_proj.weight",
    };
    const char *p = "model.layers.";
    if (strncmp(name, p, strlen(p))) return false;
    const char *d = name + strlen(p);
    if (*d < '0' || *d > '9') return false;
    while (*d >= '0' && *d <= '9') d++;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
        if (!strcmp(d, suffixes[i])) return true;
    return false;
}

static const st_tensor *find_sub(const st_set *s, const char *weight, const char *suffix)
{
    char *n = ds_strdupf("%s.%s", weight, suffix);
    const st_tensor *t = st_set_find(s, n);
    free(n);
    return t;
}

bool bnb_is_quantized(const st_set *s, const char *weight_name)
{
    /* Any quant_state kind counts, so that an fp4 weight is refused by
     * bnb_load_weight with a message rather than read as 16-bit. */
    size_t k = strlen(weight_name);
    for (int i = 0; i < st_set_count(s); i++) {
        const char *n = st_set_at(s, i)->name;
        if (!strncmp(n, weight_name, k) && !strncmp(n + k, ".quant_state.bitsandbytes__", 27)) return true;
    }
    return false;
}

/* ------------------------------------------------------- the quant_state */

typedef struct {
    nf4_out_dtype dtype;
    int64_t rows, cols;
    bool nested;
    float offset;
} qstate;

static int tensor_fail(const st_set *s, const char *tensor, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int tensor_fail(const st_set *s, const char *tensor, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ds_fail(DS_EDATA, "%s: tensor '%s': %s", st_set_dir(s), tensor, msg);
}

static const char *const QS_KEYS[] = {"quant_type", "blocksize", "dtype", "shape",
                                      "nested_blocksize", "nested_dtype", "nested_offset"};

/* Check the JSON object against bitsandbytes' rules and what ds-ft reads. */
static int check_quant_state(const st_set *s, const char *tn, const char *kind, json_t *o, qstate *q)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        bool known = false;
        for (size_t i = 0; i < sizeof QS_KEYS / sizeof *QS_KEYS; i++) known |= !strcmp(key, QS_KEYS[i]);
        if (!known) return tensor_fail(s, tn, "unknown key \"%s\" in the quant_state", key);
    }
    const char *qt = json_string_value(json_object_get(o, "quant_type"));
    if (!qt) return tensor_fail(s, tn, "key \"quant_type\" is missing or not a string");
    if (!strcmp(qt, "fp4")) return tensor_fail(s, tn, "key \"quant_type\" is \"fp4\": only nf4 is supported");
    if (strcmp(qt, "nf4")) return tensor_fail(s, tn, "key \"quant_type\" is \"%s\": unknown quant type (expected nf4)", qt);
    if (strcmp(qt, kind))
        return tensor_fail(s, tn, "key \"quant_type\" is \"%s\" but the tensor is named for \"%s\"", qt, kind);

    json_t *bs = json_object_get(o, "blocksize");
    if (!json_is_integer(bs)) return tensor_fail(s, tn, "key \"blocksize\" is missing or not an integer");
    if (json_integer_value(bs) != NF4_BLOCK)
        return tensor_fail(s, tn, "key \"blocksize\" is %lld: only %d is supported", (long long)json_integer_value(bs),
                           NF4_BLOCK);

    const char *dt = json_string_value(json_object_get(o, "dtype"));
    if (!dt || dtype_parse(dt, &q->dtype))
        return tensor_fail(s, tn, "key \"dtype\" must be \"bfloat16\", \"float16\" or \"float32\"");

    json_t *sh = json_object_get(o, "shape");
    json_t *r = json_array_get(sh, 0), *c = json_array_get(sh, 1);
    if (json_array_size(sh) != 2 || !json_is_integer(r) || !json_is_integer(c) || json_integer_value(r) < 1 ||
        json_integer_value(c) < 1 || json_integer_value(r) > (1LL << 40) || json_integer_value(c) > (1LL << 40))
        return tensor_fail(s, tn, "key \"shape\" must be [out, in], two positive integers");
    q->rows = json_integer_value(r);
    q->cols = json_integer_value(c);

    json_t *nb = json_object_get(o, "nested_blocksize"), *nd = json_object_get(o, "nested_dtype"),
           *no = json_object_get(o, "nested_offset");
    q->nested = nb || nd || no;
    if (!q->nested) return DS_OK;
    if (!nb || !nd || !no)
        return tensor_fail(s, tn, "key \"%s\" is missing (double quantization needs nested_blocksize, nested_dtype "
                           "and nested_offset)", !nb ? "nested_blocksize" : !nd ? "nested_dtype" : "nested_offset");
    if (!json_is_integer(nb) || json_integer_value(nb) != NF4_NESTED_BLOCK)
        return tensor_fail(s, tn, "key \"nested_blocksize\" must be %d", NF4_NESTED_BLOCK);
    if (!json_is_string(nd) || strcmp(json_string_value(nd), "float32"))
        return tensor_fail(s, tn, "key \"nested_dtype\" must be \"float32\"");
    if (!json_is_number(no) || !isfinite(json_number_value(no)))
        return tensor_fail(s, tn, "key \"nested_offset\" must be a finite number");
    q->offset = (float)json_number_value(no);
    return DS_OK;
}

static int read_quant_state(const st_set *s, const char *weight, qstate *q, char **qs_name)
{
    /* Exactly one quant_state tensor, named for its quant type. */
    const st_tensor *t = NULL;
    size_t k = strlen(weight);
    for (int i = 0; i < st_set_count(s); i++) {
        const st_tensor *c = st_set_at(s, i);
        if (strncmp(c->name, weight, k) || strncmp(c->name + k, ".quant_state.bitsandbytes__", 27)) continue;
        if (t) return ds_fail(DS_EDATA, "%s: weight '%s' has two quant_state tensors ('%s' and '%s')", st_set_dir(s),
                              weight, t->name, c->name);
        t = c;
    }
    if (!t) return ds_fail(DS_EDATA, "%s: missing tensor '%s.quant_state.bitsandbytes__nf4'", st_set_dir(s), weight);
    *qs_name = strdup(t->name);
    const char *kind = t->name + k + 27;
    if (t->dtype != ST_U8 || t->ndim != 1)
        return tensor_fail(s, t->name, "expected U8 bytes of a JSON object, found %s with %d dimensions",
                           st_dtype_name(t->dtype), t->ndim);
    json_error_t jerr;
    json_t *o = json_loadb(t->data, t->nbytes, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) return tensor_fail(s, t->name, "the quant_state is not valid JSON: %s (byte %d)", jerr.text, jerr.position);
    int rc = json_is_object(o) ? check_quant_state(s, t->name, kind, o, q)
                               : tensor_fail(s, t->name, "the quant_state is not a JSON object");
    json_decref(o);
    return rc;
}

char *bnb_quant_state_json(const nf4_view *v)
{
    char *base = ds_strdupf("{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"%s\", \"shape\": [%lld, %lld]",
                            NF4_BLOCK, DTYPE_NAMES[v->dtype], (long long)v->rows, (long long)v->cols);
    if (!v->double_quant) {
        char *s = ds_strdupf("%s}", base);
        free(base);
        return s;
    }
    char off[40];
    pyjson_repr_double((double)v->offset, off, sizeof off);   /* torch's .item() of the fp32 offset */
    char *s = ds_strdupf("%s, \"nested_blocksize\": %d, \"nested_dtype\": \"float32\", \"nested_offset\": %s}", base,
                         NF4_NESTED_BLOCK, off);
    free(base);
    return s;
}

/* ------------------------------------------------------------ the tensors */

/* A companion tensor P.weight.<suffix>: present, of this dtype, this count. */
static int companion(const st_set *s, const char *weight, const char *suffix, st_dtype dtype, int64_t count,
                     const char *why, const st_tensor **out)
{
    char *n = ds_strdupf("%s.%s", weight, suffix);
    const st_tensor *t = st_set_find(s, n);
    int rc = DS_OK;
    if (!t) rc = ds_fail(DS_EDATA, "%s: missing tensor '%s' (%s)", st_set_dir(s), n, why);
    else if (t->dtype != dtype)
        rc = tensor_fail(s, n, "is %s, expected %s (%s)", st_dtype_name(t->dtype), st_dtype_name(dtype), why);
    else if (t->numel != count)
        rc = tensor_fail(s, n, "has %lld values, expected %lld (%s)", (long long)t->numel, (long long)count, why);
    free(n);
    *out = t;
    return rc;
}

static int copy_floats(const st_set *s, const st_tensor *t, float *dst)
{
    memcpy(dst, t->data, t->nbytes);   /* the map may be unaligned for floats */
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(dst[i])) return tensor_fail(s, t->name, "holds a non-finite value at [%lld]", (long long)i);
    return DS_OK;
}

static int load_tensors(const st_set *s, const char *weight, const qstate *q, nf4_tensor *out)
{
    const nf4_view *v = &out->view;
    const st_tensor *packed, *absmax, *qmap, *nabs = NULL, *nmap = NULL;
    int rc = st_set_require(s, weight, &packed);
    if (rc) return rc;
    int64_t want = (v->n + 1) / 2;
    size_t es = st_dtype_size(packed->dtype);
    if ((int64_t)packed->nbytes != want || packed->ndim != 2 || packed->shape[1] != 1 ||
        packed->shape[0] * (int64_t)es != want)
        return tensor_fail(s, weight,
                           "holds %zu bytes of packed codes as [%lld, %lld] but key \"shape\" [%lld, %lld] of its "
                           "quant_state needs %lld bytes as [%lld, 1]",
                           packed->nbytes, (long long)packed->shape[0],
                           (long long)(packed->ndim > 1 ? packed->shape[1] : 0), (long long)q->rows, (long long)q->cols,
                           (long long)want, (long long)(want / (int64_t)(es ? es : 1)));
    char why[256];
    snprintf(why, sizeof why, "one per %d values of shape [%lld, %lld]%s", NF4_BLOCK, (long long)q->rows,
             (long long)q->cols, q->nested ? ", 8-bit codes with double quantization" : ", fp32 as the quant_state has no \"nested_offset\"");
    if ((rc = companion(s, weight, "absmax", q->nested ? ST_U8 : ST_F32, v->nblocks, why, &absmax))) return rc;
    if ((rc = companion(s, weight, "quant_map", ST_F32, 16, "the 16 NF4 values", &qmap))) return rc;
    if (q->nested) {
        snprintf(why, sizeof why, "one per %d absmax values, as the quant_state has \"nested_offset\"",
                 NF4_NESTED_BLOCK);
        if ((rc = companion(s, weight, "nested_absmax", ST_F32, v->nblocks2, why, &nabs))) return rc;
        if ((rc = companion(s, weight, "nested_quant_map", ST_F32, 256,
                            "the 8-bit map, as the quant_state has \"nested_offset\"", &nmap)))
            return rc;
    } else {
        static const char *const extra[] = {"nested_absmax", "nested_quant_map"};
        for (int i = 0; i < 2; i++)
            if (find_sub(s, weight, extra[i]))
                return ds_fail(DS_EDATA, "%s: tensor '%s.%s' is present but the quant_state has no \"nested_offset\"",
                               st_set_dir(s), weight, extra[i]);
    }
    memcpy(out->packed, packed->data, packed->nbytes);
    if (q->nested) memcpy(out->absmax_q, absmax->data, absmax->nbytes);
    else if ((rc = copy_floats(s, absmax, out->absmax))) return rc;
    if ((rc = copy_floats(s, qmap, out->code))) return rc;
    if (q->nested) {
        if ((rc = copy_floats(s, nabs, out->absmax2))) return rc;
        if ((rc = copy_floats(s, nmap, out->nested_map))) return rc;
        out->view.offset = q->offset;
    }
    return DS_OK;
}

int bnb_load_weight(const st_set *s, const char *weight_name, nf4_tensor *out)
{
    memset(out, 0, sizeof *out);
    qstate q = {0};
    char *qs_name = NULL;
    int rc = read_quant_state(s, weight_name, &q, &qs_name);
    if (!rc) rc = nf4_tensor_alloc(out, q.rows, q.cols, q.nested, q.dtype);
    if (!rc) rc = load_tensors(s, weight_name, &q, out);
    if (rc) nf4_tensor_free(out);
    free(qs_name);
    return rc;
}

int bnb_weight_or_quantize(const st_set *s, const char *weight_name, bool double_quant, nf4_tensor *out)
{
    memset(out, 0, sizeof *out);
    if (bnb_is_quantized(s, weight_name)) return bnb_load_weight(s, weight_name, out);
    const st_tensor *t;
    int rc = st_set_require(s, weight_name, &t);
    if (rc) return rc;
    nf4_out_dtype dt = t->dtype == ST_BF16 ? NF4_OUT_BF16 : t->dtype == ST_F16 ? NF4_OUT_F16 : NF4_OUT_F32;
    if (t->dtype != ST_BF16 && t->dtype != ST_F16 && t->dtype != ST_F32) {
        if (find_sub(s, weight_name, "absmax"))
            return ds_fail(DS_EDATA, "%s: missing tensor '%s.quant_state.bitsandbytes__nf4' (the weight is %s with "
                           "an absmax, a 4-bit weight without its quant_state)", st_set_dir(s), weight_name,
                           st_dtype_name(t->dtype));
        if (t->dtype == ST_I8)
            return tensor_fail(s, weight_name, "is I8: 8-bit (LLM.int8) weights are not supported, only 4-bit NF4");
        return tensor_fail(s, weight_name, "is %s, expected BF16, F16 or F32", st_dtype_name(t->dtype));
    }
    if (t->ndim != 2) return tensor_fail(s, weight_name, "has %d dimensions, expected 2 (out, in)", t->ndim);
    float *w = malloc((size_t)t->numel * sizeof(float));
    if (!w) return ds_fail(DS_ETRAIN, "out of memory reading '%s'", weight_name);
    rc = st_to_f32(t, w);
    if (!rc) rc = nf4_quantize(w, t->shape[0], t->shape[1], double_quant, dt, out);
    free(w);
    if (rc) return ds_fail_context(rc, "%s: tensor '%s': ", st_set_dir(s), weight_name);
    return DS_OK;
}
