/* The CPU engine on every model family against transformers + PEFT: the
 * fixtures of tests/data/fixtures (scripts/make_fixtures.py): every hidden
 * state, logits and losses to 1e-5, SFT and DPO LoRA gradients to 1e-4,
 * merged weights, and the 4-bit twin's logits (transformers on the dequantized
 * NF4 weights). Families: Qwen2 (q/k/v biases, tied embeddings), Qwen3 (q/k
 * norms, head_dim != hidden/heads), Llama-3.1 (llama3 rope, all-linear LoRA),
 * Mistral (sliding window shorter than the input), Llama with yarn rope. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/safetensors.h"
#include "finetune/run/run.h"
#include "quant/bnb.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[32];     /* a folder of tests/data/fixtures (a copy, not a pointer: test processes are re-executed) */
} family;

static family FAMILIES[] = {
    {"tiny-qwen2"}, {"tiny-qwen3"}, {"tiny-llama31"}, {"tiny-mistral"}, {"tiny-llama-yarn"},
};

static char *fixture_path(const char *family, const char *rel)
{
    char buf[512];
    snprintf(buf, sizeof buf, "tests/data/fixtures/%s%s%s", family, *rel ? "/" : "", rel);
    return tu_source_path(buf);
}

/* `ds-ft dump` of the family's model (+ adapter) on its reference input. */
static st_file *dump(const char *family, const char *model_rel, bool adapter, bool four_bit)
{
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "dump.safetensors");
    char *model = fixture_path(family, model_rel), *ad = fixture_path(family, "adapter");
    char *input = fixture_path(family, "reference.safetensors");
    dump_request r = {.model_dir = model, .adapter_dir = adapter ? ad : NULL, .input = input, .out = out,
                      .device = "cpu", .load_in_4bit = four_bit};
    cr_assert_eq(dump_run(&r), 0, "%s: dump failed: %s", family, ds_errmsg());
    st_file *f;
    cr_assert_eq(st_file_open(out, &f), 0, "%s", ds_errmsg());
    free(dir), free(out), free(model), free(ad), free(input);
    return f;
}

static double rel_err(const st_tensor *a, const st_tensor *b)
{
    cr_assert_eq(a->numel, b->numel, "%s: %lld vs %lld values", b->name, (long long)a->numel, (long long)b->numel);
    float *x = malloc(sizeof(float) * a->numel), *y = malloc(sizeof(float) * b->numel);
    st_to_f32(a, x);
    st_to_f32(b, y);
    double e = tu_rel_err(x, y, (size_t)a->numel);
    free(x), free(y);
    return e;
}

static bool is_input(const char *name)
{
    return !strcmp(name, "input_ids") || !strcmp(name, "labels") || !strcmp(name, "dpo.chosen_ids") ||
           !strcmp(name, "dpo.rejected_ids") || !strcmp(name, "dpo.prompt_len") || !strcmp(name, "dpo.beta");
}

/* Every reference tensor under `prefix` against the dump, within tol; how many. */
static int expect_prefix(const char *family, const st_file *got, const st_file *ref, const char *prefix, double tol)
{
    int n = 0;
    double worst = 0;
    for (int i = 0; i < st_file_count(ref); i++) {
        const st_tensor *b = st_file_at(ref, i);
        if (strncmp(b->name, prefix, strlen(prefix)) || is_input(b->name)) continue;
        const st_tensor *a = st_file_find(got, b->name);
        cr_assert(a, "%s: dump did not write %s", family, b->name);
        double e = rel_err(a, b);
        cr_expect(e <= tol, "%s: %s: relative error %.3e > %.1e", family, b->name, e, tol);
        if (e > worst) worst = e;
        n++;
    }
    cr_log_info("%s: %-10s %3d tensors, worst relative error %.2e (bound %.0e)", family, prefix, n, worst, tol);
    return n;
}

ParameterizedTestParameters(engine_families, match_transformers_and_peft)
{
    return cr_make_param_array(family, FAMILIES, sizeof FAMILIES / sizeof FAMILIES[0]);
}

ParameterizedTest(family *f, engine_families, match_transformers_and_peft, .timeout = 120)
{
    char *refpath = fixture_path(f->name, "reference.safetensors");
    st_file *ref, *got = dump(f->name, "", true, false);
    cr_assert_eq(st_file_open(refpath, &ref), 0, "%s", ds_errmsg());
    int n = expect_prefix(f->name, got, ref, "base.", 1e-5);
    cr_expect(n >= 4, "%s: %d base tensors compared", f->name, n);
    cr_expect(expect_prefix(f->name, got, ref, "lora.", 1e-5) == 2, "%s: lora.logits and lora.loss", f->name);
    cr_expect(expect_prefix(f->name, got, ref, "sft.grad.", 1e-4) > 0, "%s: no SFT gradients", f->name);
    cr_expect(expect_prefix(f->name, got, ref, "dpo.", 1e-4) > 0, "%s: no DPO tensors", f->name);
    cr_expect(expect_prefix(f->name, got, ref, "merged.", 1e-5) > 0, "%s: no merged weights", f->name);
    st_file_close(got);
    st_file_close(ref);
    free(refpath);
}

/* The 4-bit twin: a bitsandbytes checkpoint of the same model; transformers'
 * logits on its dequantized NF4 weights, fp32. */
ParameterizedTestParameters(engine_families, four_bit_twin_matches)
{
    return cr_make_param_array(family, FAMILIES, sizeof FAMILIES / sizeof FAMILIES[0]);
}

ParameterizedTest(family *f, engine_families, four_bit_twin_matches, .timeout = 120)
{
    char twin[64];
    snprintf(twin, sizeof twin, "%s-bnb-4bit", f->name);
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "dump.safetensors");
    char *model = fixture_path(twin, ""), *input = fixture_path(twin, "reference.safetensors");
    dump_request r = {.model_dir = model, .input = input, .out = out, .device = "cpu"};
    cr_assert_eq(dump_run(&r), 0, "%s: dump failed: %s", twin, ds_errmsg());
    st_file *got, *ref;
    cr_assert_eq(st_file_open(out, &got), 0, "%s", ds_errmsg());
    cr_assert_eq(st_file_open(input, &ref), 0, "%s", ds_errmsg());
    const st_tensor *a = st_file_find(got, "base.logits"), *b = st_file_find(ref, "logits");
    cr_assert(a && b, "%s: base.logits / logits missing", twin);
    double e = rel_err(a, b);
    cr_expect(e <= 1e-5, "%s: logits relative error %.3e > 1e-5", twin, e);
    st_file_close(got), st_file_close(ref);
    free(dir), free(out), free(model), free(input);
}

/* `ds-ft quantize` of each family writes what its 4-bit twin holds (the layout
 * transformers + bitsandbytes write): the same tensors, byte for byte, and the
 * biases and q/k norms kept in 16 bits. */
ParameterizedTestParameters(engine_families, quantize_writes_the_bitsandbytes_twin)
{
    return cr_make_param_array(family, FAMILIES, sizeof FAMILIES / sizeof FAMILIES[0]);
}

ParameterizedTest(family *f, engine_families, quantize_writes_the_bitsandbytes_twin, .timeout = 120)
{
    char twin[64];
    snprintf(twin, sizeof twin, "%s-bnb-4bit", f->name);
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "q"), *model = fixture_path(f->name, "");
    char *mine_path = ds_path_join(out, "model.safetensors"), *twin_path = fixture_path(twin, "model.safetensors");
    bnb_quantize_opts o = {.double_quant = true};
    bnb_quantize_report rep;
    cr_assert_eq(bnb_quantize_model(model, out, &o, &rep), 0, "%s: %s", f->name, ds_errmsg());
    st_file *mine, *ref;
    cr_assert_eq(st_file_open(mine_path, &mine), 0, "%s", ds_errmsg());
    cr_assert_eq(st_file_open(twin_path, &ref), 0, "%s", ds_errmsg());
    cr_expect_eq(st_file_count(mine), st_file_count(ref), "%s: %d tensors, the twin %d", f->name, st_file_count(mine),
                 st_file_count(ref));
    for (int i = 0; i < st_file_count(ref); i++) {
        const st_tensor *b = st_file_at(ref, i), *a = st_file_find(mine, b->name);
        cr_expect(a, "%s: quantize did not write %s", f->name, b->name);
        if (!a) continue;
        cr_expect(a->dtype == b->dtype && a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes),
                  "%s: %s differs from the twin", f->name, b->name);
    }
    st_file_close(mine), st_file_close(ref);
    free(dir), free(out), free(model), free(mine_path), free(twin_path);
}

/* A Qwen2 checkpoint whose config.json says Llama: its q/k/v biases are not
 * part of a Llama, so the load is refused naming a bias, never run without. */
Test(engine_families, a_qwen2_checkpoint_labelled_llama_is_refused)
{
    char *dir = tu_tmpdir(), *src = fixture_path("tiny-qwen2", "");
    char *cmd = ds_strdupf("cp -r '%s'/. '%s'/ && sed -i 's/Qwen2ForCausalLM/LlamaForCausalLM/; "
                           "s/\"model_type\": \"qwen2\"/\"model_type\": \"llama\"/' '%s/config.json'", src, dir, dir);
    cr_assert_eq(system(cmd), 0);
    llama_model *m = NULL;
    int rc = model_load(dir, NULL, &m);
    cr_expect_eq(rc, DS_EDATA, "rc %d: %s", rc, ds_errmsg());
    cr_expect(strstr(ds_errmsg(), "_proj.bias") != NULL, "message names no bias tensor: %s", ds_errmsg());
    cr_expect(strstr(ds_errmsg(), "LlamaForCausalLM") != NULL, "%s", ds_errmsg());
    model_free(m);
    free(dir), free(src), free(cmd);
}
