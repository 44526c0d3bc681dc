/* Merging: PEFT's merge_and_unload of the fixture adapter, the folder it
 * writes, and refusals that leave nothing behind. */
#include "testutil.h"

#include "core/files.h"
#include "core/numeric.h"
#include "core/status.h"
#include "data/safetensors.h"
#include "finetune/run/run.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void load(const char *rel, bool four, llama_model **m, lora_adapter **ad)
{
    char *dir = tu_shared_path(rel), *adir = tu_shared_path("fixtures/tiny-llama/adapter");
    model_load_opts lo = {.load_in_4bit = four, .double_quant = true};
    cr_assert_eq(model_load(dir, &lo, m), 0, "%s", ds_errmsg());
    cr_assert_eq(lora_load_peft(adir, &(*m)->cfg, ad), 0, "%s", ds_errmsg());
    free(dir);
    free(adir);
}

static float *tensor(st_file *f, const char *name, size_t *n)
{
    const st_tensor *t = st_file_find(f, name);
    cr_assert(t, "missing %s", name);
    float *x = malloc(sizeof(float) * (size_t)t->numel);
    cr_assert_eq(st_to_f32(t, x), 0);
    *n = (size_t)t->numel;
    return x;
}

Test(merge, original_source_reproduces_peft_merge_and_unload)
{
    llama_model *m;
    lora_adapter *ad;
    load("fixtures/tiny-llama", false, &m, &ad);
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "merged");
    cr_assert_eq(merge_write(m, ad, MERGE_ORIGINAL, out), 0, "%s", ds_errmsg());
    char *ref_path = tu_shared_path("fixtures/tiny-llama/reference.safetensors");
    char *got_path = ds_path_join(out, "model.safetensors");
    char *src_path = tu_shared_path("fixtures/tiny-llama/model.safetensors");
    st_file *ref, *got, *src;
    cr_assert_eq(st_file_open(ref_path, &ref), 0);
    cr_assert_eq(st_file_open(got_path, &got), 0, "%s", ds_errmsg());
    cr_assert_eq(st_file_open(src_path, &src), 0);
    int merged = 0;
    for (int i = 0; i < st_file_count(src); i++) {
        const st_tensor *s = st_file_at(src, i), *g = st_file_find(got, s->name);
        cr_assert(g, "merged folder lacks %s", s->name);
        cr_expect_eq(g->dtype, ST_BF16, "%s is not bf16", s->name);
        char want[160];
        snprintf(want, sizeof want, "merged.%s", s->name);
        if (!st_file_find(ref, want)) {
            cr_expect(s->nbytes == g->nbytes && !memcmp(s->data, g->data, s->nbytes), "%s changed", s->name);
            continue;
        }
        /* the bf16 of PEFT's fp32 merge: at most half a bf16 step away */
        size_t n, k;
        float *a = tensor(got, s->name, &n), *b = tensor(ref, want, &k);
        cr_assert_eq(n, k);
        for (size_t j = 0; j < n; j++)
            cr_assert(fabsf(a[j] - b[j]) <= fabsf(b[j]) * 0x1p-8f + 1e-30f, "%s[%zu]: %g vs PEFT %g", s->name, j,
                      a[j], b[j]);
        merged++;
        free(a);
        free(b);
    }
    cr_expect_eq(merged, 4, "expected the four adapted weights (q_proj, v_proj of 2 layers)");
    char *cfg_path = ds_path_join(out, "config.json"), *cfg;
    size_t len;
    cr_assert_eq(ds_read_file(cfg_path, &cfg, &len), 0);
    cr_expect(!strstr(cfg, "quantization_config"), "merged config.json keeps quantization_config");
    char *tok = ds_path_join(out, "tokenizer.json");
    cr_expect(ds_exists(tok), "tokenizer not copied");
    st_file_close(ref); st_file_close(got); st_file_close(src);
    free(cfg); free(cfg_path); free(tok); free(ref_path); free(got_path); free(src_path); free(out); free(dir);
    lora_free(ad);
    model_free(m);
}

Test(merge, dequantized_source_uses_the_nf4_weights)
{
    llama_model *m;
    lora_adapter *ad;
    load("fixtures/tiny-llama-bnb-4bit", false, &m, &ad);
    float *W = malloc(sizeof(float) * 64 * 64), *D = malloc(sizeof(float) * 64 * 64);
    backend *cpu;
    cr_assert_eq(be_open(BE_CPU, &cpu), 0);
    cr_assert_eq(merge_linear(cpu, m, NULL, MERGE_DEQUANTIZED, 0, LIN_Q, D), 0, "%s", ds_errmsg());
    cr_assert_eq(merge_linear(cpu, m, ad, MERGE_DEQUANTIZED, 0, LIN_Q, W), 0, "%s", ds_errmsg());
    be_close(cpu);
    /* W - D is exactly s B A */
    const float *A = lora_A(ad, 0, LIN_Q), *B = lora_B(ad, 0, LIN_Q);
    float s = lora_scale(&ad->cfg);
    for (int o = 0; o < 64; o += 7)
        for (int i = 0; i < 64; i += 5) {
            double d = 0;
            for (int k = 0; k < ad->cfg.r; k++) d += (double)B[o * ad->cfg.r + k] * A[k * 64 + i];
            cr_assert(fabs((W[o * 64 + i] - D[o * 64 + i]) - s * d) < 1e-5, "delta at (%d, %d)", o, i);
        }
    free(W);
    free(D);
    lora_free(ad);
    model_free(m);
}

Test(merge, original_source_of_a_4bit_checkpoint_is_refused_and_writes_nothing)
{
    llama_model *m;
    lora_adapter *ad;
    load("fixtures/tiny-llama-bnb-4bit", false, &m, &ad);
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "merged");
    cr_expect_eq(merge_write(m, ad, MERGE_ORIGINAL, out), DS_EUSAGE);
    cr_expect(strstr(ds_errmsg(), "no original"), "%s", ds_errmsg());
    cr_expect(!ds_exists(out), "a refused merge left %s", out);
    free(dir);
    free(out);
    lora_free(ad);
    model_free(m);
}

Test(merge, adapter_that_does_not_fit)
{
    char *dir = tu_source_path("models/tiny"), *adir = tu_shared_path("fixtures/tiny-llama/adapter");
    llama_model *m;
    lora_adapter *ad = NULL;
    cr_assert_eq(model_load(dir, NULL, &m), 0, "%s", ds_errmsg());
    cr_expect_eq(lora_load_peft(adir, &m->cfg, &ad), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "does not fit"), "%s", ds_errmsg());
    model_free(m);
    free(dir);
    free(adir);
}
