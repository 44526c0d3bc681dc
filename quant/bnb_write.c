/* quant/bnb_write.c - writing a bitsandbytes 4-bit model folder from a
 * 16-bit one, in exactly the layout transformers saves (see bnb.h). */
#include "bnb.h"

#include "core/buf.h"
#include "core/files.h"
#include "core/interrupt.h"
#include "core/mem.h"
#include "core/numeric.h"
#include "core/status.h"
#include "data/json_util.h"
#include "data/model_config.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The quantization_config object transformers writes for
 * BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", ...):
 * its keys in its (sorted) order. NULL when out of memory (message set). */
static json_t *quantization_config(const char *compute_dtype, bool double_quant)
{
    json_alloc_reset();   /* a member that could not be allocated makes it fail */
    json_t *q = json_object();
    json_object_set_new(q, "_load_in_4bit", json_true());
    json_object_set_new(q, "_load_in_8bit", json_false());
    json_object_set_new(q, "bnb_4bit_compute_dtype", json_string(compute_dtype));
    json_object_set_new(q, "bnb_4bit_quant_storage", json_string("uint8"));
    json_object_set_new(q, "bnb_4bit_quant_type", json_string("nf4"));
    json_object_set_new(q, "bnb_4bit_use_double_quant", json_boolean(double_quant));
    json_object_set_new(q, "llm_int8_enable_fp32_cpu_offload", json_false());
    json_object_set_new(q, "llm_int8_has_fp16_weight", json_false());
    json_object_set_new(q, "llm_int8_skip_modules", json_null());
    json_object_set_new(q, "llm_int8_threshold", json_real(6.0));
    json_object_set_new(q, "load_in_4bit", json_true());
    json_object_set_new(q, "load_in_8bit", json_false());
    json_object_set_new(q, "quant_method", json_string("bitsandbytes"));
    if (json_alloc_failed()) {
        json_decref(q);
        return NULL;
    }
    return q;
}

typedef struct {
    nf4_tensor *q;      /* quantized weights, alive until the file is written */
    char **json;        /* their quant_state bytes */
    int n;
    size_t cap_q, cap_json;
} holdings;

static void holdings_free(holdings *h)
{
    for (int i = 0; i < h->n; i++) {
        nf4_tensor_free(&h->q[i]);
        free(h->json[i]);
    }
    free(h->q);
    free(h->json);
}

/* Quantize one linear weight and add its six tensors. */
/* Add tensor NAME.SUFFIX (sub: a buffer for its name). */
static int add_sub(st_writer *w, ds_buf *sub, const char *name, const char *suffix, st_dtype dtype, int64_t count,
                   const void *data)
{
    sub->len = 0;
    int rc = ds_buf_printf(sub, "%s.%s", name, suffix);
    return rc ? rc : st_writer_add(w, sub->p, dtype, 1, &count, data);
}

static int add_quantized(st_writer *w, const st_set *s, const char *name, bool dq, holdings *h)
{
    if (ds_grow(&h->q, &h->cap_q, (size_t)h->n + 1, sizeof *h->q) ||
        ds_grow(&h->json, &h->cap_json, (size_t)h->n + 1, sizeof *h->json))
        return DS_ENOMEM;
    nf4_tensor *t = &h->q[h->n];
    int rc = bnb_weight_or_quantize(s, name, dq, t);
    if (rc) return rc;
    h->n++;
    const nf4_view *v = nf4_tensor_view(t);
    char *js = h->json[h->n - 1] = bnb_quant_state_json(v);   /* h->json[] starts zeroed */
    if (!js) return DS_ENOMEM;
    int64_t packed_shape[2] = {(v->n + 1) / 2, 1};
    ds_buf sub = {0};
    rc = st_writer_add(w, name, ST_U8, 2, packed_shape, t->packed);
    if (!rc && dq) rc = add_sub(w, &sub, name, "absmax", ST_U8, v->nblocks, t->absmax_q);
    if (!rc && !dq) rc = add_sub(w, &sub, name, "absmax", ST_F32, v->nblocks, t->absmax);
    if (!rc && dq) rc = add_sub(w, &sub, name, "nested_absmax", ST_F32, v->nblocks2, t->absmax2);
    if (!rc && dq) rc = add_sub(w, &sub, name, "nested_quant_map", ST_F32, 256, t->nested_map);
    if (!rc) rc = add_sub(w, &sub, name, "quant_map", ST_F32, 16, t->code);
    if (!rc) rc = add_sub(w, &sub, name, "quant_state.bitsandbytes__nf4", ST_U8, (int64_t)strlen(js), js);
    ds_buf_free(&sub);
    return rc;
}

/* A tensor kept in 16-bit (embeddings, norms, lm_head) is a 16- or 32-bit float
 * tensor of finite values, as the loader expects: anything else is refused
 * before the folder is written, naming the tensor. */
static int check_kept(const st_tensor *t, const char *dir)
{
    if (t->dtype != ST_BF16 && t->dtype != ST_F16 && t->dtype != ST_F32)
        return ds_fail(DS_EDATA, "%s: tensor '%s' is %s; a model's embeddings, norms and lm_head are BF16, F16 or F32",
                       dir, t->name, st_dtype_name(t->dtype));
    float *x = ds_malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1), "a tensor's values");
    if (!x) return DS_ENOMEM;
    int rc = st_to_f32(t, x);
    size_t bad = rc ? 0 : ds_first_nonfinite(x, (size_t)t->numel);
    if (!rc && bad < (size_t)t->numel)
        rc = ds_fail(DS_EDATA, "%s: tensor '%s' holds %s at [%zu]", dir, t->name, isnan(x[bad]) ? "NaN" : "an infinity", bad);
    free(x);
    return rc;
}

static int write_model(const char *dir, const st_set *s, bool dq, bnb_quantize_report *r)
{
    st_writer *w = st_writer_new();
    if (!w) return DS_ENOMEM;
    holdings h = {0};
    int rc = st_writer_meta(w, "format", "pt");
    for (int i = 0; i < st_set_count(s) && !rc; i++) {
        const st_tensor *t = st_set_at(s, i);
        if (ds_interrupted()) {
            rc = ds_interrupt_status("while quantizing; nothing was written");
            break;
        }
        if (bnb_is_linear_weight(t->name)) {
            rc = add_quantized(w, s, t->name, dq, &h);
            r->quantized++;
            r->params_4bit += t->numel;
        } else {
            rc = check_kept(t, st_set_dir(s));
            if (!rc) rc = st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
            r->copied++;
        }
    }
    if (!rc) {
        r->bytes = st_writer_bytes(w);
        char *path = ds_path_join(dir, "model.safetensors");
        rc = path ? st_writer_write(w, path) : DS_ENOMEM;
        free(path);
    }
    st_writer_free(w);
    holdings_free(&h);
    return rc;
}


int bnb_quantize_model(const char *src_dir, const char *out_dir, const bnb_quantize_opts *opts,
                       bnb_quantize_report *report)
{
    bool dq = opts ? opts->double_quant : true;
    bnb_quantize_report r = {0};
    if (report) *report = r;
    if (!ds_is_dir(src_dir)) return ds_fail(DS_ENOINPUT, "%s: no such model folder", src_dir);
    if (ds_same_file(src_dir, out_dir))
        return ds_fail(DS_EUSAGE, "%s: the output folder is the model folder itself; choose another", out_dir);
    model_config cfg;
    json_t *config;   /* config.json, parsed once: checked here, rewritten below */
    int rc = model_config_load_json(src_dir, &cfg, &config);
    if (rc) return rc;
    const char *dtype = cfg.dtype[0] ? cfg.dtype : "float32";
    if (cfg.quantized)
        rc = ds_fail(DS_EDATA, "%s/config.json: key \"quantization_config\": the model is already quantized", src_dir);
    else if (strcmp(dtype, "bfloat16") && strcmp(dtype, "float16") && strcmp(dtype, "float32"))
        rc = ds_fail(DS_EDATA, "%s/config.json: key \"dtype\" is \"%s\" (expected bfloat16, float16 or float32)",
                     src_dir, dtype);
    st_set *s = NULL;
    if (!rc) rc = st_set_open(src_dir, &s);
    char *tmp = NULL;
    if (!rc) rc = ds_dir_begin(out_dir, &tmp);
    if (!rc) rc = write_model(tmp, s, dq, &r);
    if (!rc && r.quantized == 0)
        rc = ds_fail(DS_EDATA, "%s: no decoder linear weights (model.layers.N.self_attn.q_proj.weight, ...) to quantize",
                     src_dir);
    if (!rc) {
        json_t *q = quantization_config(dtype, dq);
        rc = q ? model_config_rewrite_json(config, tmp, q) : DS_ENOMEM;
        json_decref(q);
    }
    if (!rc) rc = model_copy_side_files(src_dir, tmp);
    if (!rc) rc = ds_dir_commit(tmp, out_dir);
    if (rc && tmp) ds_dir_abort(tmp);
    free(tmp);
    st_set_close(s);
    json_decref(config);
    if (!rc && report) *report = r;
    return rc;
}
