/* tests/test_bnb.c - bitsandbytes 4-bit checkpoints: reading the one
 * transformers + bitsandbytes wrote (fixtures/tiny-llama-bnb-4bit), writing
 * our own from fixtures/tiny-llama in the same format, and refusing
 * malformed ones with a message naming the tensor and the key. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/model_config.h"
#include "data/safetensors.h"
#include "quant/bnb.h"
#include "data/pyjson.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W "model.layers.0.mlp.down_proj.weight"

static st_set *open_set(const char *rel_or_abs, bool shared)
{
    char *p = shared ? tu_shared_path(rel_or_abs) : strdup(rel_or_abs);
    st_set *s;
    int rc = st_set_open(p, &s);
    cr_assert_eq(rc, DS_OK, "%s", ds_errmsg());
    free(p);
    return s;
}

static double rel(double a, double ref) { return ref == 0 ? fabs(a) : fabs(a - ref) / fabs(ref); }

/* Two quantized weights hold the same bits (offset and nested absmax,
 * which bitsandbytes averages on the GPU, within 1e-6). */
static void assert_same(const nf4_tensor *a, const nf4_tensor *b, const char *name)
{
    const nf4_view *x = nf4_tensor_view(a), *y = nf4_tensor_view(b);
    cr_assert_eq(x->rows, y->rows, "%s", name);
    cr_assert_eq(x->cols, y->cols, "%s", name);
    cr_assert_eq(x->double_quant, y->double_quant, "%s", name);
    cr_assert_eq(x->dtype, y->dtype, "%s", name);
    cr_assert(!memcmp(a->packed, b->packed, (size_t)(x->n + 1) / 2), "%s: packed codes differ", name);
    cr_assert(!memcmp(a->code, b->code, 16 * sizeof(float)), "%s: quant_map differs", name);
    if (!x->double_quant) {
        cr_assert(!memcmp(a->absmax, b->absmax, (size_t)x->nblocks * sizeof(float)), "%s: absmax differs", name);
        return;
    }
    cr_assert(!memcmp(a->absmax_q, b->absmax_q, (size_t)x->nblocks), "%s: absmax codes differ", name);
    cr_assert(!memcmp(a->nested_map, b->nested_map, 256 * sizeof(float)), "%s: nested_quant_map differs", name);
    cr_assert_leq(rel(x->offset, y->offset), 1e-6, "%s: offset %.9g vs %.9g", name, x->offset, y->offset);
    for (int64_t j = 0; j < x->nblocks2; j++)
        cr_assert_leq(rel(a->absmax2[j], b->absmax2[j]), 1e-6, "%s: nested_absmax[%lld]", name, (long long)j);
}

/* ------------------------------------------------- the reference checkpoint */

Test(bnb_fixture, config_says_nf4_double_quant)
{
    char *dir = tu_shared_path("fixtures/tiny-llama-bnb-4bit");
    bnb_config c;
    cr_assert_eq(bnb_config_load(dir, &c), DS_OK, "%s", ds_errmsg());
    cr_assert(c.present && c.double_quant);
    cr_assert_str_eq(c.quant_type, "nf4");
    cr_assert_str_eq(c.compute_dtype, "bfloat16");
    cr_assert_str_eq(c.quant_storage, "uint8");
    free(dir);
    dir = tu_shared_path("fixtures/tiny-llama");
    cr_assert_eq(bnb_config_load(dir, &c), DS_OK);
    cr_assert(!c.present);
    free(dir);
}

Test(bnb_fixture, our_quantization_equals_bitsandbytes_checkpoint)
{
    st_set *src = open_set("fixtures/tiny-llama", true), *ref = open_set("fixtures/tiny-llama-bnb-4bit", true);
    int n = 0;
    for (int i = 0; i < st_set_count(src); i++) {
        const char *name = st_set_at(src, i)->name;
        if (!bnb_is_linear_weight(name)) {
            cr_assert(!bnb_is_quantized(ref, name), "%s stays 16-bit", name);
            continue;
        }
        cr_assert(bnb_is_quantized(ref, name), "%s", name);
        cr_assert(!bnb_is_quantized(src, name), "%s", name);
        nf4_tensor ours = {0}, theirs = {0};
        cr_assert_eq(bnb_weight_or_quantize(src, name, true, &ours), DS_OK, "%s", ds_errmsg());
        cr_assert_eq(bnb_load_weight(ref, name, &theirs), DS_OK, "%s", ds_errmsg());
        assert_same(&ours, &theirs, name);
        /* The engine's other entry loads the checkpoint as it is. */
        nf4_tensor again = {0};
        cr_assert_eq(bnb_weight_or_quantize(ref, name, false, &again), DS_OK);
        assert_same(&again, &theirs, name);
        char *js = bnb_quant_state_json(nf4_tensor_view(&ours));
        char *qs = ds_strdupf("%s.quant_state.bitsandbytes__nf4", name);
        const st_tensor *t = st_set_find(ref, qs);
        cr_assert(t && t->nbytes == strlen(js) && !memcmp(t->data, js, t->nbytes), "%s: quant_state %s", name, js);
        free(qs);
        free(js);
        nf4_tensor_free(&ours);
        nf4_tensor_free(&theirs);
        nf4_tensor_free(&again);
        n++;
    }
    cr_assert_eq(n, 14);
    st_set_close(src);
    st_set_close(ref);
}

Test(bnb_fixture, linear_weight_names)
{
    cr_assert(bnb_is_linear_weight("model.layers.0.self_attn.q_proj.weight"));
    cr_assert(bnb_is_linear_weight("model.layers.31.mlp.down_proj.weight"));
    cr_assert(!bnb_is_linear_weight("model.layers.0.self_attn.q_proj.weight.absmax"));
    cr_assert(!bnb_is_linear_weight("model.layers.0.input_layernorm.weight"));
    cr_assert(!bnb_is_linear_weight("lm_head.weight"));
    cr_assert(!bnb_is_linear_weight("model.embed_tokens.weight"));
    cr_assert(!bnb_is_linear_weight("model.layers.x.mlp.up_proj.weight"));
}

/* ---------------------------------------------------------- writing */

/* Same names, dtypes, shapes and order as the reference file. */
static void assert_same_layout(const char *ours_path, const char *ref_path)
{
    st_file *a, *b;
    cr_assert_eq(st_file_open(ours_path, &a), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(st_file_open(ref_path, &b), DS_OK);
    cr_assert_eq(st_file_count(a), st_file_count(b));
    cr_assert_str_eq(st_file_meta(a, "format"), "pt");
    for (int i = 0; i < st_file_count(a); i++) {
        const st_tensor *x = st_file_at(a, i), *y = st_file_at(b, i);
        cr_assert_str_eq(x->name, y->name, "tensor %d", i);
        cr_assert_eq(x->dtype, y->dtype, "%s", x->name);
        cr_assert_eq(x->ndim, y->ndim, "%s", x->name);
        for (int d = 0; d < x->ndim; d++) cr_assert_eq(x->shape[d], y->shape[d], "%s", x->name);
        if (!strstr(x->name, ".quant_state.")) continue;
        /* The JSON: the same keys in the same order. */
        json_t *jx = json_loadb(x->data, x->nbytes, 0, NULL), *jy = json_loadb(y->data, y->nbytes, 0, NULL);
        cr_assert(jx && jy, "%s", x->name);
        void *ix = json_object_iter(jx), *iy = json_object_iter(jy);
        for (; ix && iy; ix = json_object_iter_next(jx, ix), iy = json_object_iter_next(jy, iy))
            cr_assert_str_eq(json_object_iter_key(ix), json_object_iter_key(iy), "%s", x->name);
        cr_assert(!ix && !iy, "%s: key count", x->name);
        json_decref(jx);
        json_decref(jy);
    }
    st_file_close(a);
    st_file_close(b);
}

static json_t *load_json(const char *dir, const char *file)
{
    char *p = ds_path_join(dir, file);
    json_t *j = json_load_file(p, 0, NULL);
    cr_assert(j, "%s", p);
    free(p);
    return j;
}

static char *read_all(const char *dir, const char *file, size_t *len)
{
    char *p = ds_path_join(dir, file), *text;
    cr_assert_eq(ds_read_file(p, &text, len), DS_OK, "%s", p);
    free(p);
    return text;
}

Test(bnb_write, quantized_folder_matches_the_reference_checkpoint)
{
    char *tmp = tu_tmpdir(), *out = ds_path_join(tmp, "tiny-bnb");
    char *src = tu_shared_path("fixtures/tiny-llama"), *ref = tu_shared_path("fixtures/tiny-llama-bnb-4bit");
    bnb_quantize_report r;
    cr_assert_eq(bnb_quantize_model(src, out, NULL, &r), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(r.quantized, 14);
    cr_assert_eq(r.copied, 7);

    char *ours_st = ds_path_join(out, "model.safetensors"), *ref_st = ds_path_join(ref, "model.safetensors");
    assert_same_layout(ours_st, ref_st);

    /* config.json: quantization_config identical, the rest the source's. */
    json_t *co = load_json(out, "config.json"), *cr = load_json(ref, "config.json");
    char *qo = pyjson_dumps(json_object_get(co, "quantization_config"), 2);
    char *qr = pyjson_dumps(json_object_get(cr, "quantization_config"), 2);
    cr_assert_str_eq(qo, qr);
    free(qo);
    free(qr);
    json_decref(co);
    json_decref(cr);

    /* Re-loaded, the weights are what quantizing gives. */
    st_set *o = open_set(out, false), *s = open_set(src, false);
    for (int i = 0; i < st_set_count(s); i++) {
        const char *name = st_set_at(s, i)->name;
        if (!bnb_is_linear_weight(name)) {
            const st_tensor *x = st_set_find(o, name), *y = st_set_at(s, i);
            cr_assert(x && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes), "%s copied", name);
            continue;
        }
        nf4_tensor a = {0}, b = {0};
        cr_assert_eq(bnb_load_weight(o, name, &a), DS_OK, "%s", ds_errmsg());
        cr_assert_eq(bnb_weight_or_quantize(s, name, true, &b), DS_OK);
        assert_same(&a, &b, name);
        nf4_tensor_free(&a);
        nf4_tensor_free(&b);
    }
    st_set_close(o);
    st_set_close(s);

    /* Byte for byte what transformers + bitsandbytes wrote. */
    static const char *const same[] = {"model.safetensors", "config.json", "generation_config.json"};
    for (int i = 0; i < 3; i++) {
        size_t la, lb;
        char *a = read_all(out, same[i], &la), *b = read_all(ref, same[i], &lb);
        cr_assert(la == lb && !memcmp(a, b, la), "%s differs from the reference checkpoint's", same[i]);
        free(a);
        free(b);
    }
    char *tok = ds_path_join(out, "tokenizer.json");
    cr_assert(ds_exists(tok), "tokenizer copied");
    free(tok);
    free(ours_st);
    free(ref_st);
    ds_remove_tree(tmp);
    free(out);
    free(tmp);
    free(src);
    free(ref);
}

Test(bnb_write, without_double_quant_absmax_stays_fp32)
{
    char *tmp = tu_tmpdir(), *out = ds_path_join(tmp, "plain"), *src = tu_shared_path("fixtures/tiny-llama");
    bnb_quantize_opts opts = {.double_quant = false};
    cr_assert_eq(bnb_quantize_model(src, out, &opts, NULL), DS_OK, "%s", ds_errmsg());
    st_set *o = open_set(out, false), *s = open_set(src, false);
    const st_tensor *am = st_set_find(o, W ".absmax");
    cr_assert(am && am->dtype == ST_F32 && am->numel == 160);
    cr_assert_null(st_set_find(o, W ".nested_absmax"));
    cr_assert_null(st_set_find(o, W ".nested_quant_map"));
    const st_tensor *qs = st_set_find(o, W ".quant_state.bitsandbytes__nf4");
    const char *want = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [64, 160]}";
    cr_assert(qs && qs->nbytes == strlen(want) && !memcmp(qs->data, want, qs->nbytes));
    nf4_tensor a = {0}, b = {0};
    cr_assert_eq(bnb_load_weight(o, W, &a), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(bnb_weight_or_quantize(s, W, false, &b), DS_OK);
    cr_assert(!a.view.double_quant);
    assert_same(&a, &b, W);
    nf4_tensor_free(&a);
    nf4_tensor_free(&b);
    json_t *c = load_json(out, "config.json");
    cr_assert(json_is_false(json_object_get(json_object_get(c, "quantization_config"), "bnb_4bit_use_double_quant")));
    json_decref(c);
    st_set_close(o);
    st_set_close(s);
    ds_remove_tree(tmp);
    free(tmp);
    free(out);
    free(src);
}

/* Nothing at out, and no temporary folder left beside it. */
static void assert_nothing_written(const char *parent, const char *out)
{
    cr_assert(!ds_exists(out), "%s must not exist after a failure", out);
    DIR *d = opendir(parent);
    cr_assert(d);
    struct dirent *e;
    while ((e = readdir(d))) cr_assert(!strstr(e->d_name, ".tmp-"), "leftover %s", e->d_name);
    closedir(d);
}

Test(bnb_write, failure_leaves_no_folder)
{
    /* A copy of tiny-llama whose last linear weight holds a NaN: the
     * failure comes after most of the folder has been produced. */
    char *tmp = tu_tmpdir(), *bad = ds_path_join(tmp, "bad-model"), *out = ds_path_join(tmp, "out");
    char *src = tu_shared_path("fixtures/tiny-llama");
    st_set *s = open_set(src, false);
    st_writer *w = st_writer_new();
    uint16_t *patched = NULL;
    for (int i = 0; i < st_set_count(s); i++) {
        const st_tensor *t = st_set_at(s, i);
        const void *data = t->data;
        if (!strcmp(t->name, "model.layers.1.self_attn.v_proj.weight")) {
            patched = malloc(t->nbytes);
            memcpy(patched, t->data, t->nbytes);
            patched[100] = 0x7fc0;   /* bf16 NaN */
            data = patched;
        }
        cr_assert_eq(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, data), DS_OK);
    }
    cr_assert_eq(ds_mkdirs(bad), DS_OK);
    char *st = ds_path_join(bad, "model.safetensors"), *cfg_from = ds_path_join(src, "config.json"),
         *cfg_to = ds_path_join(bad, "config.json");
    cr_assert_eq(st_writer_write(w, st), DS_OK);
    cr_assert_eq(ds_copy_file(cfg_from, cfg_to), DS_OK);
    st_writer_free(w);
    free(patched);
    st_set_close(s);

    cr_assert_eq(bnb_quantize_model(bad, out, NULL, NULL), DS_EDATA);
    cr_assert(strstr(ds_errmsg(), "model.layers.1.self_attn.v_proj.weight") && strstr(ds_errmsg(), "non-finite"),
              "%s", ds_errmsg());
    assert_nothing_written(tmp, out);

    /* A missing model folder is missing input; nothing is created either. */
    char *none = ds_path_join(tmp, "no-such-model");
    cr_assert_eq(bnb_quantize_model(none, out, NULL, NULL), DS_ENOINPUT);
    cr_assert(strstr(ds_errmsg(), "no-such-model"), "%s", ds_errmsg());
    assert_nothing_written(tmp, out);
    /* Writing over the model being read is refused. */
    cr_assert_eq(bnb_quantize_model(bad, bad, NULL, NULL), DS_EUSAGE);
    cr_assert(ds_exists(st));
    /* An already quantized model is refused. */
    char *ref = tu_shared_path("fixtures/tiny-llama-bnb-4bit");
    cr_assert_eq(bnb_quantize_model(ref, out, NULL, NULL), DS_EDATA);
    cr_assert(strstr(ds_errmsg(), "quantization_config"), "%s", ds_errmsg());
    assert_nothing_written(tmp, out);

    ds_remove_tree(tmp);
    free(ref);
    free(none);
    free(st);
    free(cfg_from);
    free(cfg_to);
    free(tmp);
    free(bad);
    free(out);
    free(src);
}

/* ------------------------------------------------ malformed checkpoints */

typedef struct {
    const char *drop;          /* companion left out ("nested_absmax") */
    const char *quant_state;   /* replacement JSON text */
    const char *qs_kind;       /* replacement quant_state suffix ("fp4") */
    int64_t absmax_count;      /* > 0: absmax with this many values */
} mutation;

/* A one-weight checkpoint: the reference's down_proj of layer 0, changed. */
static char *bad_checkpoint(const mutation *m)
{
    st_set *ref = open_set("fixtures/tiny-llama-bnb-4bit", true);
    st_writer *w = st_writer_new();
    size_t k = strlen(W);
    for (int i = 0; i < st_set_count(ref); i++) {
        const st_tensor *t = st_set_at(ref, i);
        if (strncmp(t->name, W, k)) continue;
        const char *suffix = t->name[k] == '.' ? t->name + k + 1 : "";
        if (m->drop && !strcmp(suffix, m->drop)) continue;
        char *name = strdup(t->name);
        int64_t shape[ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        const void *data = t->data;
        if (strstr(suffix, "quant_state.") == suffix) {
            if (m->qs_kind) {
                free(name);
                name = ds_strdupf("%s.quant_state.bitsandbytes__%s", W, m->qs_kind);
            }
            if (m->quant_state) {
                data = m->quant_state;
                shape[0] = (int64_t)strlen(m->quant_state);
            }
        }
        if (!strcmp(suffix, "absmax") && m->absmax_count > 0) shape[0] = m->absmax_count;
        cr_assert_eq(st_writer_add_copy(w, name, t->dtype, t->ndim, shape, data), DS_OK);
        free(name);
    }
    char *dir = tu_tmpdir(), *path = ds_path_join(dir, "model.safetensors");
    cr_assert_eq(st_writer_write(w, path), DS_OK, "%s", ds_errmsg());
    st_writer_free(w);
    st_set_close(ref);
    free(path);
    return dir;
}

/* Load the changed weight: DS_EDATA and a message naming `tensor` and `key`. */
static void expect_refused(const mutation *m, const char *tensor, const char *key)
{
    char *dir = bad_checkpoint(m);
    st_set *s = open_set(dir, false);
    cr_assert(bnb_is_quantized(s, W));
    nf4_tensor t = {0};
    int rc = bnb_load_weight(s, W, &t);
    cr_assert_eq(rc, DS_EDATA, "status %d: %s", rc, ds_errmsg());
    cr_log_info("%s", ds_errmsg());
    char *quoted = ds_strdupf("'%s'", tensor);
    cr_assert(strstr(ds_errmsg(), quoted), "message names %s: %s", quoted, ds_errmsg());
    cr_assert(strstr(ds_errmsg(), key), "message names %s: %s", key, ds_errmsg());
    cr_assert_null(t.packed);
    /* The engine's entry refuses it too, and the 16-bit fallback is not taken. */
    cr_assert_eq(bnb_weight_or_quantize(s, W, true, &t), DS_EDATA);
    free(quoted);
    st_set_close(s);
    ds_remove_tree(dir);
    free(dir);
}

#define QS_HEAD "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", "
#define QS_TAIL "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 0.5251709222793579}"

Test(bnb_malformed, unchanged_copy_loads)
{
    mutation m = {0};
    char *dir = bad_checkpoint(&m);
    st_set *s = open_set(dir, false);
    nf4_tensor t = {0};
    cr_assert_eq(bnb_load_weight(s, W, &t), DS_OK, "%s", ds_errmsg());
    nf4_tensor_free(&t);
    st_set_close(s);
    ds_remove_tree(dir);
    free(dir);
}

Test(bnb_malformed, quant_state_shape_disagrees_with_packed_size)
{
    mutation m = {.quant_state = QS_HEAD "\"shape\": [64, 161], " QS_TAIL};
    expect_refused(&m, W, "\"shape\" [64, 161]");
}

/* A corrupt shape is caught by its size before anything is allocated. */
Test(bnb_malformed, huge_quant_state_shape_is_refused_before_allocating)
{
    mutation m = {.quant_state = QS_HEAD "\"shape\": [1073741824, 1048576], " QS_TAIL};
    expect_refused(&m, W, "\"shape\" [1073741824, 1048576]");
    mutation overflow = {.quant_state = QS_HEAD "\"shape\": [1099511627776, 1099511627776], " QS_TAIL};
    expect_refused(&overflow, W ".quant_state.bitsandbytes__nf4", "too large");
}

Test(bnb_malformed, wrong_blocksize)
{
    mutation m = {.quant_state = "{\"quant_type\": \"nf4\", \"blocksize\": 128, \"dtype\": \"bfloat16\", \"shape\": [64, "
                                 "160], " QS_TAIL};
    expect_refused(&m, W ".quant_state.bitsandbytes__nf4", "\"blocksize\" is 128");
}

Test(bnb_malformed, absmax_count_wrong)
{
    mutation m = {.absmax_count = 150};
    expect_refused(&m, W ".absmax", "has 150 values, expected 160");
}

Test(bnb_malformed, missing_nested_absmax)
{
    mutation m = {.drop = "nested_absmax"};
    expect_refused(&m, W ".nested_absmax", "missing tensor");
}

Test(bnb_malformed, missing_nested_quant_map)
{
    mutation m = {.drop = "nested_quant_map"};
    expect_refused(&m, W ".nested_quant_map", "missing tensor");
}

Test(bnb_malformed, unknown_quant_type)
{
    mutation m = {.quant_state = "{\"quant_type\": \"int3\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [64, "
                                 "160], " QS_TAIL};
    expect_refused(&m, W ".quant_state.bitsandbytes__nf4", "\"quant_type\" is \"int3\"");
}

Test(bnb_malformed, fp4_is_refused)
{
    mutation m = {.qs_kind = "fp4", .quant_state = "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": "
                                                   "\"bfloat16\", \"shape\": [64, 160], " QS_TAIL};
    expect_refused(&m, W ".quant_state.bitsandbytes__fp4", "\"quant_type\" is \"fp4\"");
}

Test(bnb_malformed, malformed_quant_state_json)
{
    mutation m = {.quant_state = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\""};
    expect_refused(&m, W ".quant_state.bitsandbytes__nf4", "not valid JSON");
}

Test(bnb_malformed, nested_key_missing)
{
    mutation m = {.quant_state = QS_HEAD "\"shape\": [64, 160], \"nested_blocksize\": 256, \"nested_dtype\": "
                                 "\"float32\"}"};
    expect_refused(&m, W ".quant_state.bitsandbytes__nf4", "\"nested_offset\" is missing");
}

Test(bnb_malformed, fp32_absmax_expected_without_nested_keys)
{
    mutation m = {.quant_state = QS_HEAD "\"shape\": [64, 160]}"};
    expect_refused(&m, W ".absmax", "is U8, expected F32");
}

Test(bnb_malformed, unknown_quant_state_key)
{
    mutation m = {.quant_state = QS_HEAD "\"shape\": [64, 160], \"bits\": 4, " QS_TAIL};
    expect_refused(&m, W ".quant_state.bitsandbytes__nf4", "unknown key \"bits\"");
}

Test(bnb_malformed, missing_quant_state_is_not_read_as_16bit)
{
    mutation m = {.drop = "quant_state.bitsandbytes__nf4"};
    char *dir = bad_checkpoint(&m);
    st_set *s = open_set(dir, false);
    cr_assert(!bnb_is_quantized(s, W));
    nf4_tensor t = {0};
    cr_assert_eq(bnb_weight_or_quantize(s, W, true, &t), DS_EDATA);
    cr_assert(strstr(ds_errmsg(), W ".quant_state.bitsandbytes__nf4"), "%s", ds_errmsg());
    cr_assert_eq(bnb_load_weight(s, W, &t), DS_EDATA);
    st_set_close(s);
    ds_remove_tree(dir);
    free(dir);
}

/* --------------------------------------------------------- config.json */

static void expect_config_refused(const char *qc, const char *key)
{
    char *text = ds_strdupf("{\"architectures\": [\"LlamaForCausalLM\"], \"quantization_config\": %s}", qc);
    bnb_config c;
    cr_assert_eq(bnb_config_parse(text, strlen(text), "m/config.json", &c), DS_EDATA, "%s", qc);
    cr_assert(strstr(ds_errmsg(), "m/config.json") && strstr(ds_errmsg(), key), "%s", ds_errmsg());
    free(text);
}

Test(bnb_config, eight_bit_is_refused)
{
    expect_config_refused("{\"quant_method\": \"bitsandbytes\", \"load_in_8bit\": true, \"load_in_4bit\": false}",
                          "quantization_config.load_in_8bit");
}

Test(bnb_config, fp4_and_other_methods_are_refused)
{
    expect_config_refused("{\"quant_method\": \"bitsandbytes\", \"load_in_4bit\": true, \"bnb_4bit_quant_type\": "
                          "\"fp4\"}",
                          "quantization_config.bnb_4bit_quant_type");
    expect_config_refused("{\"quant_method\": \"bitsandbytes\", \"load_in_4bit\": true}",
                          "quantization_config.bnb_4bit_quant_type");
    expect_config_refused("{\"quant_method\": \"gptq\", \"bits\": 4}", "quantization_config.quant_method");
    expect_config_refused("{\"quant_method\": \"bitsandbytes\", \"load_in_4bit\": true, \"bnb_4bit_quant_type\": "
                          "\"nf4\", \"bnb_4bit_compute_dtype\": \"int8\"}",
                          "quantization_config.bnb_4bit_compute_dtype");
    expect_config_refused("[1]", "quantization_config");
}

Test(bnb_config, wrong_types_name_the_key)
{
    expect_config_refused("{\"quant_method\": \"bitsandbytes\", \"load_in_4bit\": \"yes\"}", "\"load_in_4bit\" must be true or false");
    expect_config_refused("{\"quant_method\": 4}", "\"quant_method\" must be a string");
    expect_config_refused("{\"load_in_4bit\": true, \"bnb_4bit_quant_type\": \"nf4\", \"bnb_4bit_quant_storage\": "
                          "\"a-storage-name-longer-than-its-field\"}",
                          "bnb_4bit_quant_storage");
    bnb_config c;
    const char *text = "{\"quantization_config\": {\"load_in_4bit\": true,\n \"bnb_4bit_quant_type\": }}";
    cr_expect_eq(bnb_config_parse(text, strlen(text), "m/config.json", &c), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "m/config.json:2:") && strstr(ds_errmsg(), "invalid JSON"), "%s", ds_errmsg());
}

/* One parse of config.json serves both readers. */
Test(bnb_config, from_the_parsed_config)
{
    char *dir = tu_shared_path("fixtures/tiny-llama-bnb-4bit");
    model_config mc;
    json_t *root;
    cr_assert_eq(model_config_load_json(dir, &mc, &root), DS_OK, "%s", ds_errmsg());
    bnb_config a, b;
    cr_assert_eq(bnb_config_from_json(root, "config.json", &a), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(bnb_config_load(dir, &b), DS_OK, "%s", ds_errmsg());
    cr_expect(!memcmp(&a, &b, sizeof a));
    cr_expect(a.present && a.double_quant && mc.quantized);
    json_decref(root);
    free(dir);
}

/* ------------------------------------------------- Python JSON formatting */

Test(pyjson, float_repr_like_python)
{
    static const struct {
        double x;
        const char *s;
    } cases[] = {
        {1e-06, "1e-06"},     {10000.0, "10000.0"},   {6.0, "6.0"},         {0.2, "0.2"},
        {0.0001, "0.0001"},   {1e16, "1e+16"},        {1234567890123456.0, "1234567890123456.0"},
        {1.5e-07, "1.5e-07"}, {-0.0, "-0.0"},         {0.0, "0.0"},         {100.0, "100.0"},
        {0.1, "0.1"},         {-2.5e+20, "-2.5e+20"}, {123.456, "123.456"}, {(double)0.525170922f, "0.5251709222793579"},
        {(double)0.518566906f, "0.518566906452179"},  {NAN, "NaN"},         {-INFINITY, "-Infinity"},
    };
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pyjson_repr_double(cases[i].x, buf, sizeof buf);
        cr_assert_str_eq(buf, cases[i].s);
    }
}

Test(pyjson, dumps_reproduces_transformers_config)
{
    char *dir = tu_shared_path("fixtures/tiny-llama-bnb-4bit");
    size_t len;
    char *text = read_all(dir, "config.json", &len);
    json_t *j = json_loadb(text, len, 0, NULL);
    char *again = pyjson_dumps(j, 2);
    cr_assert(strlen(again) + 1 == len && !memcmp(again, text, len - 1) && text[len - 1] == '\n');
    free(again);
    json_decref(j);
    j = json_loads("{\"a\": [1, 2.5, \"\\u00e9\\ud83d\\ude00\\n\"], \"b\": {}, \"c\": [], \"d\": null}", 0, NULL);
    char *one = pyjson_dumps(j, -1);
    cr_assert_str_eq(one, "{\"a\": [1, 2.5, \"\\u00e9\\ud83d\\ude00\\n\"], \"b\": {}, \"c\": [], \"d\": null}");
    free(one);
    json_decref(j);
    free(text);
    free(dir);
}
