/* quant/bnb.c - reading bitsandbytes 4-bit checkpoints: config.json's
 * quantization_config and one quantized weight at a time (see bnb.h). */
#include "bnb.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "core/xlist.h"
#include "data/json_util.h"
#include "data/model_config.h"
#include "data/pyjson.h"

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

/* A string of quantization_config into a fixed field (absent: dflt). */
static int get_field(const json_t *q, const char *where, const char *key, const char *dflt, char *out, size_t n)
{
    const char *s;
    int rc = json_get_str(q, key, dflt, where, &s);
    if (rc) return rc;
    if (strlen(s) >= n) return ds_fail(DS_EDATA, "%s: \"%s\" is too long (\"%.40s\")", where, key, s);
    snprintf(out, n, "%s", s);
    return DS_OK;
}

static int parse_qconfig(const json_t *q, const char *path, const char *where, bnb_config *c)
{
    if (!json_is_object(q)) return ds_fail(DS_EDATA, "%s: key \"quantization_config\" must be an object", path);
    c->present = true;
    const char *method;
    int rc = json_get_str(q, "quant_method", "bitsandbytes", where, &method);
    if (rc) return rc;
    if (strcmp(method, "bitsandbytes"))
        return ds_fail(DS_EDATA,
                       "%s: key \"quantization_config.quant_method\" is \"%.40s\": only bitsandbytes 4-bit checkpoints "
                       "are supported",
                       path, method);
    bool in8, in8_, in4, in4_;
    if ((rc = json_get_bool(q, "load_in_8bit", false, where, &in8)) ||
        (rc = json_get_bool(q, "_load_in_8bit", false, where, &in8_)) ||
        (rc = json_get_bool(q, "load_in_4bit", false, where, &in4)) ||
        (rc = json_get_bool(q, "_load_in_4bit", false, where, &in4_)))
        return rc;
    if (in8 || in8_)
        return ds_fail(DS_EDATA,
                       "%s: key \"quantization_config.load_in_8bit\" is true: 8-bit (LLM.int8) checkpoints are not "
                       "supported, only 4-bit NF4",
                       path);
    if (!in4 && !in4_)
        return ds_fail(DS_EDATA, "%s: key \"quantization_config.load_in_4bit\" is not true: not a 4-bit checkpoint",
                       path);
    /* fp4: transformers' default */
    if ((rc = get_field(q, where, "bnb_4bit_quant_type", "fp4", c->quant_type, sizeof c->quant_type))) return rc;
    if (strcmp(c->quant_type, "nf4"))
        return ds_fail(DS_EDATA, "%s: key \"quantization_config.bnb_4bit_quant_type\" is \"%s\": only nf4 is supported",
                       path, c->quant_type);
    if ((rc = json_get_bool(q, "bnb_4bit_use_double_quant", false, where, &c->double_quant))) return rc;
    if ((rc = get_field(q, where, "bnb_4bit_compute_dtype", "float32", c->compute_dtype, sizeof c->compute_dtype)))
        return rc;
    nf4_out_dtype dt;
    if (dtype_parse(c->compute_dtype, &dt))
        return ds_fail(DS_EDATA,
                       "%s: key \"quantization_config.bnb_4bit_compute_dtype\" is \"%s\" (expected bfloat16, float16 "
                       "or float32)",
                       path, c->compute_dtype);
    return get_field(q, where, "bnb_4bit_quant_storage", "uint8", c->quant_storage, sizeof c->quant_storage);
}

static void config_defaults(bnb_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->compute_dtype, sizeof c->compute_dtype, "float32");
    snprintf(c->quant_storage, sizeof c->quant_storage, "uint8");
}

int bnb_config_from_json(const json_t *root, const char *path, bnb_config *c)
{
    config_defaults(c);
    if (!json_is_object(root)) return ds_fail(DS_EDATA, "%s: not a JSON object", path);
    const json_t *q = json_object_get(root, "quantization_config");
    if (!q || json_is_null(q)) return DS_OK;
    char *where = ds_strdupf("%s: quantization_config", path);
    int rc = where ? parse_qconfig(q, path, where, c) : DS_ENOMEM;
    free(where);
    return rc;
}

int bnb_config_parse(const char *text, size_t len, const char *path, bnb_config *c)
{
    config_defaults(c);
    json_t *root;
    int rc = json_text_load(text, len, path, 0, &root);
    if (!rc) rc = bnb_config_from_json(root, path, c);
    json_decref(root);
    return rc;
}

int bnb_config_load(const char *model_dir, bnb_config *c)
{
    config_defaults(c);
    char *path = ds_path_join(model_dir, "config.json");
    json_t *root = NULL;
    int rc = path ? json_file_load(path, 0, &root) : DS_ENOMEM;
    if (!rc) rc = bnb_config_from_json(root, path, c);
    json_decref(root);
    free(path);
    return rc;
}

/* --------------------------------------------------------- tensor naming */

bool bnb_is_linear_weight(const char *name)
{
#define SUFFIX_STR(name, module) "." #module "." #name ".weight"
    static const char *const suffixes[] = {LLAMA_LINEARS(SUFFIX_STR, DS_COMMA)};
#undef SUFFIX_STR
    const char *p = "model.layers.";
    if (strncmp(name, p, strlen(p))) return false;
    const char *d = name + strlen(p);
    if (*d < '0' || *d > '9') return false;
    while (*d >= '0' && *d <= '9') d++;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
        if (!strcmp(d, suffixes[i])) return true;
    /* DeepSeek-V2/V3: MLA's projections, the shared and each routed expert's
     * (the router, mlp.gate, stays 16-bit, as bitsandbytes checkpoints keep it) */
    static const char *const deepseek[] = {".self_attn.q_a_proj.weight", ".self_attn.q_b_proj.weight",
                                           ".self_attn.kv_a_proj_with_mqa.weight", ".self_attn.kv_b_proj.weight",
                                           ".mlp.shared_experts.gate_proj.weight", ".mlp.shared_experts.up_proj.weight",
                                           ".mlp.shared_experts.down_proj.weight"};
    for (size_t i = 0; i < sizeof deepseek / sizeof *deepseek; i++)
        if (!strcmp(d, deepseek[i])) return true;
    const char *x = ".mlp.experts.";
    if (strncmp(d, x, strlen(x))) return false;
    d += strlen(x);
    if (*d < '0' || *d > '9') return false;
    while (*d >= '0' && *d <= '9') d++;
    return !strcmp(d, ".gate_proj.weight") || !strcmp(d, ".up_proj.weight") || !strcmp(d, ".down_proj.weight");
}

/* The tensor WEIGHT.SUFFIX into *t (NULL: there is none). */
static int find_sub(const st_set *s, const char *weight, const char *suffix, const st_tensor **t)
{
    char *n = ds_strdupf("%s.%s", weight, suffix);
    *t = n ? st_set_find(s, n) : NULL;
    free(n);
    return n ? DS_OK : DS_ENOMEM;
}

#define QS_INFIX ".quant_state.bitsandbytes__"

/* The quant_state tensors of `weight` (any bitsandbytes__* kind, so that an
 * fp4 weight is refused with a message rather than read as 16-bit), in one
 * pass over the tensors: *qs the first (NULL: none), *other a second one
 * (NULL: none; there must be exactly one). */
static void find_quant_state(const st_set *s, const char *weight, const st_tensor **qs, const st_tensor **other)
{
    *qs = *other = NULL;
    size_t k = strlen(weight);
    for (int i = 0; i < st_set_count(s) && !*other; i++) {
        const st_tensor *c = st_set_at(s, i);
        if (strncmp(c->name, weight, k) || strncmp(c->name + k, QS_INFIX, strlen(QS_INFIX))) continue;
        if (*qs) *other = c;
        else *qs = c;
    }
}

bool bnb_is_quantized(const st_set *s, const char *weight_name)
{
    const st_tensor *qs, *other;
    find_quant_state(s, weight_name, &qs, &other);
    return qs != NULL;
}

/* ------------------------------------------------------- the quant_state */

typedef struct {
    nf4_out_dtype dtype;
    int64_t rows, cols;
    int64_t n, nblocks, nblocks2;   /* as nf4_view has them */
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
    if (q->rows > INT64_MAX / 2 / q->cols)
        return tensor_fail(s, tn, "key \"shape\" [%lld, %lld] is too large", (long long)q->rows, (long long)q->cols);

    json_t *nb = json_object_get(o, "nested_blocksize"), *nd = json_object_get(o, "nested_dtype"),
           *no = json_object_get(o, "nested_offset");
    q->nested = nb || nd || no;
    q->n = q->rows * q->cols;
    q->nblocks = (q->n + NF4_BLOCK - 1) / NF4_BLOCK;
    q->nblocks2 = q->nested ? (q->nblocks + NF4_NESTED_BLOCK - 1) / NF4_NESTED_BLOCK : 0;
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

/* Read and check the quant_state tensor `t` of `weight`. */
static int read_quant_state(const st_set *s, const char *weight, const st_tensor *t, qstate *q)
{
    const char *kind = t->name + strlen(weight) + strlen(QS_INFIX);
    if (t->dtype != ST_U8 || t->ndim != 1)
        return tensor_fail(s, t->name, "expected U8 bytes of a JSON object, found %s with %d dimensions",
                           st_dtype_name(t->dtype), t->ndim);
    json_error_t jerr;
    json_t *o;
    int rc = json_parse(t->data, t->nbytes, JSON_REJECT_DUPLICATES, &o, &jerr);
    if (rc == DS_ENOMEM) return ds_fail_context(rc, "%s: tensor '%s': ", st_set_dir(s), t->name);
    if (rc) return tensor_fail(s, t->name, "the quant_state is not valid JSON: %s (byte %d)", jerr.text, jerr.position);
    rc = json_is_object(o) ? check_quant_state(s, t->name, kind, o, q)
                               : tensor_fail(s, t->name, "the quant_state is not a JSON object");
    json_decref(o);
    return rc;
}

char *bnb_quant_state_json(const nf4_view *v)
{
    /* bitsandbytes' keys in its order; json.dumps' formatting (the offset as
     * Python prints torch's .item() of the fp32 value) */
    json_alloc_reset();   /* a member that could not be allocated makes it fail */
    json_t *o = json_object();
    json_object_set_new(o, "quant_type", json_string("nf4"));
    json_object_set_new(o, "blocksize", json_integer(NF4_BLOCK));
    json_object_set_new(o, "dtype", json_string(DTYPE_NAMES[v->dtype]));
    json_object_set_new(o, "shape", json_pack("[II]", (json_int_t)v->rows, (json_int_t)v->cols));
    if (v->double_quant) {
        json_object_set_new(o, "nested_blocksize", json_integer(NF4_NESTED_BLOCK));
        json_object_set_new(o, "nested_dtype", json_string("float32"));
        json_object_set_new(o, "nested_offset", json_real((double)v->offset));
    }
    char *s = json_alloc_failed() ? NULL : pyjson_dumps(o, -1);
    json_decref(o);
    return s;
}

/* ------------------------------------------------------------ the tensors */

/* The tensors of one quantized weight, checked against its quant_state. */
typedef struct {
    const st_tensor *packed, *absmax, *qmap, *nabs, *nmap;
} companions;

/* A companion tensor P.weight.<suffix>: present, of this dtype, this count. */
static int companion(const st_set *s, const char *weight, const char *suffix, st_dtype dtype, int64_t count,
                     const char *why, const st_tensor **out)
{
    char *n = ds_strdupf("%s.%s", weight, suffix);
    const st_tensor *t = n ? st_set_find(s, n) : NULL;
    int rc = DS_OK;
    if (!n) rc = DS_ENOMEM;
    else if (!t) rc = ds_fail(DS_EDATA, "%s: missing tensor '%s' (%s)", st_set_dir(s), n, why);
    else if (t->dtype != dtype)
        rc = tensor_fail(s, n, "is %s, expected %s (%s)", st_dtype_name(t->dtype), st_dtype_name(dtype), why);
    else if (t->numel != count)
        rc = tensor_fail(s, n, "has %lld values, expected %lld (%s)", (long long)t->numel, (long long)count, why);
    free(n);
    *out = t;
    return rc;
}

/* Every size is checked before anything is allocated: a corrupt shape in
 * the quant_state is a message, not a huge allocation. */
static int check_tensors(const st_set *s, const char *weight, const qstate *q, companions *t)
{
    int rc = st_set_require(s, weight, &t->packed);
    if (rc) return rc;
    const st_tensor *packed = t->packed;
    int64_t want = (q->n + 1) / 2;
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
    if ((rc = companion(s, weight, "absmax", q->nested ? ST_U8 : ST_F32, q->nblocks, why, &t->absmax))) return rc;
    if ((rc = companion(s, weight, "quant_map", ST_F32, 16, "the 16 NF4 values", &t->qmap))) return rc;
    if (q->nested) {
        snprintf(why, sizeof why, "one per %d absmax values, as the quant_state has \"nested_offset\"",
                 NF4_NESTED_BLOCK);
        if ((rc = companion(s, weight, "nested_absmax", ST_F32, q->nblocks2, why, &t->nabs))) return rc;
        return companion(s, weight, "nested_quant_map", ST_F32, 256,
                         "the 8-bit map, as the quant_state has \"nested_offset\"", &t->nmap);
    }
    static const char *const extra[] = {"nested_absmax", "nested_quant_map"};
    for (int i = 0; i < 2; i++) {
        const st_tensor *e;
        if ((rc = find_sub(s, weight, extra[i], &e))) return rc;
        if (e)
            return ds_fail(DS_EDATA, "%s: tensor '%s.%s' is present but the quant_state has no \"nested_offset\"",
                           st_set_dir(s), weight, extra[i]);
    }
    return DS_OK;
}

static int copy_floats(const st_set *s, const st_tensor *t, float *dst)
{
    memcpy(dst, t->data, t->nbytes);   /* the map may be unaligned for floats */
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(dst[i])) return tensor_fail(s, t->name, "holds a non-finite value at [%lld]", (long long)i);
    return DS_OK;
}

static int copy_tensors(const st_set *s, const qstate *q, const companions *t, nf4_tensor *out)
{
    int rc;
    memcpy(out->packed, t->packed->data, t->packed->nbytes);
    if (q->nested) memcpy(out->absmax_q, t->absmax->data, t->absmax->nbytes);
    else if ((rc = copy_floats(s, t->absmax, out->absmax))) return rc;
    if ((rc = copy_floats(s, t->qmap, out->code))) return rc;
    if (q->nested) {
        if ((rc = copy_floats(s, t->nabs, out->absmax2))) return rc;
        if ((rc = copy_floats(s, t->nmap, out->nested_map))) return rc;
        out->view.offset = q->offset;
    }
    return DS_OK;
}

/* Load `weight` whose quant_state tensors find_quant_state found. */
static int load_quantized(const st_set *s, const char *weight, const st_tensor *qs, const st_tensor *other,
                          nf4_tensor *out)
{
    if (!qs) return ds_fail(DS_EDATA, "%s: missing tensor '%s" QS_INFIX "nf4'", st_set_dir(s), weight);
    if (other)
        return ds_fail(DS_EDATA, "%s: weight '%s' has two quant_state tensors ('%s' and '%s')", st_set_dir(s), weight,
                       qs->name, other->name);
    qstate q = {0};
    companions t = {0};
    int rc = read_quant_state(s, weight, qs, &q);
    if (!rc) rc = check_tensors(s, weight, &q, &t);
    if (!rc) rc = nf4_tensor_alloc(out, q.rows, q.cols, q.nested, q.dtype);
    if (!rc) rc = copy_tensors(s, &q, &t, out);
    if (rc) nf4_tensor_free(out);
    return rc;
}

int bnb_load_weight(const st_set *s, const char *weight_name, nf4_tensor *out)
{
    memset(out, 0, sizeof *out);
    const st_tensor *qs, *other;
    find_quant_state(s, weight_name, &qs, &other);
    return load_quantized(s, weight_name, qs, other, out);
}

int bnb_weight_or_quantize(const st_set *s, const char *weight_name, bool double_quant, nf4_tensor *out)
{
    memset(out, 0, sizeof *out);
    const st_tensor *qs, *other;
    find_quant_state(s, weight_name, &qs, &other);
    if (qs) return load_quantized(s, weight_name, qs, other, out);
    const st_tensor *t;
    int rc = st_set_require(s, weight_name, &t);
    if (rc) return rc;
    nf4_out_dtype dt = t->dtype == ST_BF16 ? NF4_OUT_BF16 : t->dtype == ST_F16 ? NF4_OUT_F16 : NF4_OUT_F32;
    if (t->dtype != ST_BF16 && t->dtype != ST_F16 && t->dtype != ST_F32) {
        const st_tensor *absmax;
        if ((rc = find_sub(s, weight_name, "absmax", &absmax))) return rc;
        if (absmax)
            return ds_fail(DS_EDATA, "%s: missing tensor '%s" QS_INFIX "nf4' (the weight is %s with an absmax, a "
                           "4-bit weight without its quant_state)", st_set_dir(s), weight_name,
                           st_dtype_name(t->dtype));
        if (t->dtype == ST_I8)
            return tensor_fail(s, weight_name, "is I8: 8-bit (LLM.int8) weights are not supported, only 4-bit NF4");
        return tensor_fail(s, weight_name, "is %s, expected BF16, F16 or F32", st_dtype_name(t->dtype));
    }
    if (t->ndim != 2) return tensor_fail(s, weight_name, "has %d dimensions, expected 2 (out, in)", t->ndim);
    float *w = ds_calloc((size_t)t->numel, sizeof(float), "a weight in fp32");
    if (!w) return ds_fail_context(DS_ENOMEM, "%s: tensor '%s': ", st_set_dir(s), weight_name);
    rc = st_to_f32(t, w);
    if (!rc) rc = nf4_quantize(w, t->shape[0], t->shape[1], double_quant, dt, out);
    free(w);
    if (rc) return ds_fail_context(rc, "%s: tensor '%s': ", st_set_dir(s), weight_name);
    return DS_OK;
}
