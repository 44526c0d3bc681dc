/* tests/gpu/test_gpu_families.c - the CUDA engine on every model family
 * against transformers + PEFT (tests/data/fixtures): logits, losses, DPO
 * log-probs and the SFT/DPO LoRA gradients, and each 4-bit twin's logits.
 *
 * The bound of each tensor is its bf16 tolerance on that fixture: twice the
 * error transformers + PEFT themselves make in bf16 against their fp32
 * reference (recorded by scripts/make_fixtures.py in reference.json,
 * "bf16_errors"), and never below 2e-2 (values) or 5e-2 (gradients). The
 * fixtures' weights are drawn large so that mistakes show, which magnifies
 * bf16 rounding too. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/safetensors.h"
#include "finetune/run/run.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char name[32];   /* a folder of tests/data/fixtures (a copy: test processes are re-executed) */
} family;

static family FAMILIES[] = {
    {"tiny-qwen2"}, {"tiny-qwen3"}, {"tiny-llama31"}, {"tiny-mistral"}, {"tiny-llama-yarn"},
};

static char *fixture_path(const char *fam, const char *rel)
{
    char buf[512];
    snprintf(buf, sizeof buf, "tests/data/fixtures/%s%s%s", fam, *rel ? "/" : "", rel);
    return tu_source_path(buf);
}

static st_file *dump_cuda(const char *fam, bool adapter)
{
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "dump.safetensors");
    char *model = fixture_path(fam, ""), *ad = fixture_path(fam, "adapter");
    char *input = fixture_path(fam, "reference.safetensors");
    dump_request r = {.model_dir = model, .adapter_dir = adapter ? ad : NULL, .input = input, .out = out,
                      .device = "cuda"};
    cr_assert_eq(dump_run(&r), 0, "%s: dump on cuda: %s", fam, ds_errmsg());
    st_file *f;
    cr_assert_eq(st_file_open(out, &f), 0, "%s", ds_errmsg());
    free(dir), free(out), free(model), free(ad), free(input);
    return f;
}

static double rel(const st_tensor *x, const st_tensor *y)
{
    cr_assert_eq(x->numel, y->numel);
    float *p = malloc(sizeof(float) * x->numel), *q = malloc(sizeof(float) * y->numel);
    st_to_f32(x, p);
    st_to_f32(y, q);
    double e = tu_rel_err(p, q, (size_t)x->numel);
    free(p), free(q);
    return e;
}

/* Twice transformers' own bf16 error on this tensor, at least `floor`. */
static double bound(json_t *errors, const char *name, double floor)
{
    json_t *v = json_object_get(errors, name);
    double t = json_is_number(v) ? 2 * json_number_value(v) : 0;
    return t > floor ? t : floor;
}

static int expect_prefix(const char *fam, const st_file *got, const st_file *ref, json_t *errors, const char *prefix,
                         double floor)
{
    int n = 0;
    for (int i = 0; i < st_file_count(ref); i++) {
        const st_tensor *b = st_file_at(ref, i), *a;
        if (strncmp(b->name, prefix, strlen(prefix)) || b->dtype != ST_F32 || !(a = st_file_find(got, b->name)))
            continue;
        double e = rel(a, b), tol = bound(errors, b->name, floor);
        printf("GPUFAMILY %-16s %-90s relative error %.3e (bound %.1e)\n", fam, b->name, e, tol);
        cr_expect(e <= tol, "%s: %s: relative error %.3e > %.1e", fam, b->name, e, tol);
        n++;
    }
    return n;
}

static json_t *bf16_errors(const char *fam, json_t **root)
{
    char *p = fixture_path(fam, "reference.json");
    json_error_t err;
    *root = json_load_file(p, 0, &err);
    cr_assert(*root, "%s: %s", p, err.text);
    free(p);
    return json_object_get(json_object_get(*root, "bf16_errors"), "relative");
}

ParameterizedTestParameters(gpu_families, match_transformers_in_bf16)
{
    static family none[1] = {{"none"}};
    if (access("/dev/nvidiactl", F_OK) != 0) return cr_make_param_array(family, none, 1);
    return cr_make_param_array(family, FAMILIES, sizeof FAMILIES / sizeof FAMILIES[0]);
}

ParameterizedTest(family *f, gpu_families, match_transformers_in_bf16, .timeout = 120)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
    json_t *root, *errors = bf16_errors(f->name, &root);
    char *refpath = fixture_path(f->name, "reference.safetensors");
    st_file *ref, *got = dump_cuda(f->name, true);
    cr_assert_eq(st_file_open(refpath, &ref), 0, "%s", ds_errmsg());
    int n = expect_prefix(f->name, got, ref, errors, "base.logits", 2e-2);
    n += expect_prefix(f->name, got, ref, errors, "lora.", 2e-2);
    n += expect_prefix(f->name, got, ref, errors, "dpo.loss", 2e-2);
    n += expect_prefix(f->name, got, ref, errors, "dpo.policy", 2e-2);
    n += expect_prefix(f->name, got, ref, errors, "dpo.ref", 2e-2);
    n += expect_prefix(f->name, got, ref, errors, "sft.grad.", 5e-2);
    n += expect_prefix(f->name, got, ref, errors, "dpo.grad.", 5e-2);
    cr_expect(n >= 8, "%s: only %d tensors compared", f->name, n);
    st_file_close(got), st_file_close(ref);
    json_decref(root);
    free(refpath);
}

ParameterizedTestParameters(gpu_families, four_bit_twin_in_bf16)
{
    static family none[1] = {{"none"}};
    if (access("/dev/nvidiactl", F_OK) != 0) return cr_make_param_array(family, none, 1);
    return cr_make_param_array(family, FAMILIES, sizeof FAMILIES / sizeof FAMILIES[0]);
}

ParameterizedTest(family *f, gpu_families, four_bit_twin_in_bf16, .timeout = 120)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
    json_t *root, *errors = bf16_errors(f->name, &root);
    char twin[64];
    snprintf(twin, sizeof twin, "%s-bnb-4bit", f->name);
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "dump.safetensors");
    char *model = fixture_path(twin, ""), *input = fixture_path(twin, "reference.safetensors");
    dump_request r = {.model_dir = model, .input = input, .out = out, .device = "cuda"};
    cr_assert_eq(dump_run(&r), 0, "%s: %s", twin, ds_errmsg());
    st_file *got, *ref;
    cr_assert_eq(st_file_open(out, &got), 0);
    cr_assert_eq(st_file_open(input, &ref), 0);
    double e = rel(st_file_find(got, "base.logits"), st_file_find(ref, "logits"));
    double tol = bound(errors, "bnb4.logits", 2e-2);
    printf("GPUFAMILY %-16s %-90s relative error %.3e (bound %.1e)\n", twin, "logits", e, tol);
    cr_expect(e <= tol, "%s: logits relative error %.3e > %.1e", twin, e, tol);
    st_file_close(got), st_file_close(ref);
    json_decref(root);
    free(dir), free(out), free(model), free(input);
}

/* DeepSeek-V2/V3 (MLA + experts) have no CUDA kernels yet: the GPU engine refuses them by name, never
 * falling back to the CPU. */
Test(gpu_families, deepseek_is_refused_by_name_on_the_gpu, .timeout = 60)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "dump.safetensors");
    char *model = fixture_path("tiny-deepseek-v2", ""), *input = fixture_path("tiny-deepseek-v2", "reference.safetensors");
    dump_request r = {.model_dir = model, .input = input, .out = out, .device = "cuda"};
    int rc = dump_run(&r);
    cr_expect_eq(rc, DS_EDATA, "rc %d: %s", rc, ds_errmsg());
    cr_expect(strstr(ds_errmsg(), "DeepseekV2ForCausalLM") && strstr(ds_errmsg(), "not yet on the GPU"), "%s",
              ds_errmsg());
    cr_expect(!ds_exists(out), "nothing written");
    free(dir), free(out), free(model), free(input);
}
