/* tests/gpu/test_gpu_families.c - the CUDA engine on every model family
 * against transformers + PEFT (tests/data/fixtures): logits, losses, DPO
 * log-probs and the SFT/DPO LoRA gradients, and each 4-bit twin's logits.
 *
 * The bound of each tensor is its bf16 tolerance on that fixture: twice the
 * error transformers + PEFT themselves make in bf16 against their fp32
 * reference (recorded by scripts/make_fixtures.py in reference.json,
 * "bf16_errors"), and never below 2e-2 (values) or 5e-2 (gradients). The
 * fixtures' weights are drawn large so that mistakes show, which magnifies
 * bf16 rounding too.
 *
 * Mixtures of experts (DeepSeek) in bf16 choose a different expert for the
 * tokens whose router scores nearly tie, as transformers in bf16 does too
 * (for other tokens): an expert that gains or loses a token has a different
 * gradient, and so has every module upstream of that layer. So their LoRA
 * gradients are compared as one vector per loss: its relative error is at
 * most the largest of its tensors' (a norm-weighted mean of theirs), so twice
 * transformers' largest per-tensor error bounds it as twice its own bounds
 * each tensor. Each layer's share is printed. The routing must agree with the
 * fp32 reference's for most tokens, and the DPO loss is checked through the
 * four log-probabilities that determine it (a relative error of the loss
 * magnifies theirs where the margin is large). */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/safetensors.h"
#include "finetune/run/run.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char name[32];   /* a folder of tests/data/fixtures (a copy: test processes are re-executed) */
    bool moe;        /* routed experts: see above */
} family;

static family FAMILIES[] = {
    {"tiny-qwen2", false}, {"tiny-qwen3", false}, {"tiny-llama31", false}, {"tiny-mistral", false},
    {"tiny-llama-yarn", false},
    /* DeepSeek-V2/V3: MLA (heads padded to the kernels' width 32) and the routed experts */
    {"tiny-deepseek-v2", true}, {"tiny-deepseek-v2-grouped", true}, {"tiny-deepseek-v3", true},
    {"tiny-deepseek-v3-halves", true},
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

/* Each tensor under `prefix` against its bound. */
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

/* A MoE model's LoRA gradients under `prefix` (sft.grad. / dpo.grad.) as
 * one vector, against the largest bound of its tensors; each layer's part
 * printed. Returns the tensors compared. */
static int expect_moe_grads(const char *fam, const st_file *got, const st_file *ref, json_t *errors, const char *prefix,
                            double floor)
{
    enum { MAXL = 64 };
    double diff[MAXL] = {0}, norm[MAXL] = {0}, tol = 0;
    int n = 0;
    for (int i = 0; i < st_file_count(ref); i++) {
        const st_tensor *b = st_file_at(ref, i), *a;
        const char *at = strstr(b->name, "layers.");
        int l;
        if (strncmp(b->name, prefix, strlen(prefix)) || !at || sscanf(at, "layers.%d.", &l) != 1 || l < 0 ||
            l >= MAXL || !(a = st_file_find(got, b->name)))
            continue;
        cr_assert_eq(a->numel, b->numel, "%s: %s", fam, b->name);
        float *p = malloc(sizeof(float) * a->numel), *q = malloc(sizeof(float) * b->numel);
        st_to_f32(a, p);
        st_to_f32(b, q);
        for (int64_t k = 0; k < a->numel; k++) diff[l] += (double)(p[k] - q[k]) * (p[k] - q[k]), norm[l] += (double)q[k] * q[k];
        free(p), free(q);
        double t = bound(errors, b->name, floor);
        tol = t > tol ? t : tol;
        n++;
    }
    double d = 0, r = 0;
    for (int l = 0; l < MAXL; l++) {
        if (norm[l] == 0) continue;
        printf("GPUFAMILY %-16s %s layer %d: relative error %.3e\n", fam, prefix, l, sqrt(diff[l] / norm[l]));
        d += diff[l], r += norm[l];
    }
    double e = r > 0 ? sqrt(d / r) : INFINITY;
    printf("GPUFAMILY %-16s %s all %d tensors: relative error %.3e (bound %.1e)\n", fam, prefix, n, e, tol);
    cr_expect(e <= tol, "%s: %s all %d tensors: relative error %.3e > %.1e", fam, prefix, n, e, tol);
    return n;
}

/* The share of tokens whose chosen experts equal the reference's, over every MoE layer of the LoRA forward. */
static double routing_agreement(const char *fam, const st_file *got, const st_file *ref)
{
    long same = 0, all = 0;
    for (int i = 0; i < st_file_count(ref); i++) {
        const st_tensor *b = st_file_at(ref, i), *a;
        if (strncmp(b->name, "moe.lora.topk_idx.", 18) || !(a = st_file_find(got, b->name))) continue;
        cr_assert(a->numel == b->numel && a->ndim == 3 && a->dtype == ST_I64 && b->dtype == ST_I64, "%s: %s", fam,
                  b->name);
        const int64_t *x = a->data, *y = b->data, K = b->shape[2];
        for (int64_t t = 0; t < b->numel / K; t++, all++) same += !memcmp(x + t * K, y + t * K, sizeof(int64_t) * K);
    }
    cr_assert(all > 0, "%s: no routing in the dump", fam);
    printf("GPUFAMILY %-16s routing: %ld of %ld token choices equal the fp32 reference's\n", fam, same, all);
    return (double)same / (double)all;
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
    static family none[1] = {{"none", false}};
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
    n += expect_prefix(f->name, got, ref, errors, "dpo.policy", 2e-2);
    n += expect_prefix(f->name, got, ref, errors, "dpo.ref", 2e-2);
    if (!f->moe) {
        n += expect_prefix(f->name, got, ref, errors, "dpo.loss", 2e-2);
        n += expect_prefix(f->name, got, ref, errors, "sft.grad.", 5e-2);
        n += expect_prefix(f->name, got, ref, errors, "dpo.grad.", 5e-2);
    } else {
        n += expect_moe_grads(f->name, got, ref, errors, "sft.grad.", 5e-2);
        n += expect_moe_grads(f->name, got, ref, errors, "dpo.grad.", 5e-2);
        double agree = routing_agreement(f->name, got, ref);
        cr_expect(agree >= 0.85, "%s: only %.1f%% of the token choices equal the fp32 reference's", f->name, 100 * agree);
        const st_tensor *a = st_file_find(got, "dpo.loss"), *b = st_file_find(ref, "dpo.loss");
        if (a && b) printf("GPUFAMILY %-16s dpo.loss relative error %.3e (follows the log-probabilities)\n", f->name, rel(a, b));
    }
    cr_expect(n >= 8, "%s: only %d tensors compared", f->name, n);
    st_file_close(got), st_file_close(ref);
    json_decref(root);
    free(refpath);
}

ParameterizedTestParameters(gpu_families, four_bit_twin_in_bf16)
{
    static family none[1] = {{"none", false}};
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
