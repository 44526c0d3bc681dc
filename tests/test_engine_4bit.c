/* The engine over a 4-bit (NF4) base: a bitsandbytes checkpoint against
 * transformers' logits, quantize-on-load against that checkpoint, and LoRA
 * gradients over the 4-bit base against finite differences. */
#include "testutil.h"

#include "core/files.h"
#include "core/rng.h"
#include "core/status.h"
#include "data/safetensors.h"
#include "finetune/run/run.h"
#include "finetune/engine/engine.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *tensor_f32(const char *path, const char *name, size_t *n)
{
    st_file *f;
    cr_assert_eq(st_file_open(path, &f), 0, "%s", ds_errmsg());
    const st_tensor *t = st_file_find(f, name);
    cr_assert(t, "%s has no %s", path, name);
    float *x = malloc(sizeof(float) * (size_t)t->numel);
    st_to_f32(t, x);
    *n = (size_t)t->numel;
    st_file_close(f);
    return x;
}

static char *dump_logits(const char *model_rel, bool quantize_on_load)
{
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "dump.safetensors");
    char *model = tu_shared_path(model_rel), *input = tu_shared_path("fixtures/tiny-llama-bnb-4bit/reference.safetensors");
    dump_request r = {.model_dir = model, .input = input, .out = out, .device = "cpu", .load_in_4bit = quantize_on_load};
    cr_assert_eq(dump_run(&r), 0, "%s", ds_errmsg());
    free(dir); free(model); free(input);
    return out;
}

Test(engine_4bit, bitsandbytes_checkpoint_matches_transformers_logits)
{
    char *out = dump_logits("fixtures/tiny-llama-bnb-4bit", false);
    char *ref = tu_shared_path("fixtures/tiny-llama-bnb-4bit/reference.safetensors");
    size_t n, m;
    float *got = tensor_f32(out, "base.logits", &n), *want = tensor_f32(ref, "logits", &m);
    cr_assert_eq(n, m);
    double err = tu_rel_err(got, want, n);
    cr_expect(err <= 2e-2, "logits relative error %.3e > 2e-2 (the reference is computed in bf16)", err);
    free(got); free(want); free(out); free(ref);
}

Test(engine_4bit, quantizing_on_load_equals_the_checkpoint)
{
    char *a = dump_logits("fixtures/tiny-llama-bnb-4bit", false), *b = dump_logits("fixtures/tiny-llama", true);
    size_t n, m;
    float *x = tensor_f32(a, "base.logits", &n), *y = tensor_f32(b, "base.logits", &m);
    cr_assert_eq(n, m);
    cr_expect(memcmp(x, y, n * sizeof(float)) == 0, "quantize-on-load differs from the bitsandbytes checkpoint");
    free(x); free(y); free(a); free(b);
}

/* Loss of the fixture input under the current adapter parameters. */
static double loss_of(engine *e, const batch *b, float *lp)
{
    engine_fwd f = {.lora = true};
    cr_assert_eq(engine_forward(e, b, &f, lp, NULL), 0, "%s", ds_errmsg());
    double s = 0;
    long n = 0;
    for (int i = 0; i < b->B * b->T; i++)
        if (b->targets[i] >= 0) { s -= lp[i]; n++; }
    return s / n;
}

static void gradient_check(bool quantized, bool checkpointing)
{
    char *model_dir = tu_shared_path(quantized ? "fixtures/tiny-llama-bnb-4bit" : "fixtures/tiny-llama");
    char *adapter_dir = tu_shared_path("fixtures/tiny-llama/adapter");
    char *ref = tu_shared_path("fixtures/tiny-llama/reference.safetensors");
    backend *be;
    llama_model *m;
    lora_adapter *ad;
    cr_assert_eq(be_open(BE_CPU, &be), 0);
    cr_assert_eq(model_load(model_dir, NULL, &m), 0, "%s", ds_errmsg());
    cr_assert_eq(m->quantized, quantized);
    cr_assert_eq(lora_load_peft(adapter_dir, &m->cfg, &ad), 0, "%s", ds_errmsg());
    /* the fixture batch */
    st_file *f;
    cr_assert_eq(st_file_open(ref, &f), 0);
    const st_tensor *ti = st_file_find(f, "input_ids"), *tl = st_file_find(f, "labels");
    batch b;
    batch_alloc(&b, (int)ti->shape[0], (int)ti->shape[1]);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)ti->numel);
    st_to_i32(ti, b.ids);
    st_to_i32(tl, lab);
    for (int i = 0; i < b.B * b.T; i++) {
        b.pos[i] = i % b.T;
        b.targets[i] = (i % b.T) + 1 < b.T && lab[i + 1] >= 0 ? lab[i + 1] : -1;
    }
    engine *e;
    engine_opts eo = {.max_B = b.B, .max_T = b.T, .training = true, .adapter = ad, .checkpointing = checkpointing};
    cr_assert_eq(engine_create(be, m, &eo, &e), 0, "%s", ds_errmsg());
    size_t N = (size_t)b.B * b.T, P = ad->nparams;
    float *lp = malloc(sizeof(float) * N), *a = calloc(N, sizeof(float)), *bc = calloc(N, sizeof(float));
    float *grads = malloc(sizeof(float) * P), *params = malloc(sizeof(float) * P);
    memcpy(params, ad->data, sizeof(float) * P);
    /* analytic: dL/dz = (p - onehot) / n_targets */
    engine_fwd fb = {.lora = true, .for_backward = true};
    cr_assert_eq(engine_zero_grads(e), 0);
    cr_assert_eq(engine_forward(e, &b, &fb, lp, NULL), 0, "%s", ds_errmsg());
    long nt = batch_count_targets(&b);
    for (size_t i = 0; i < N; i++)
        if (b.targets[i] >= 0) { a[i] = 1.0f / nt; bc[i] = -1.0f / nt; }
    cr_assert_eq(engine_backward(e, a, bc, NULL), 0, "%s", ds_errmsg());
    cr_assert_eq(engine_get_grads(e, grads), 0);
    /* numeric, on 40 random parameters */
    enum { K = 40 };
    float analytic[K], numeric[K];
    ds_rng rng = ds_rng_make(1234, DS_STREAM_TEST);
    const float eps = 1e-2f;
    for (int k = 0; k < K; k++) {
        size_t i = (size_t)ds_rng_below(&rng, P);
        float old = params[i];
        params[i] = old + eps;
        engine_set_params(e, params);
        double lp1 = loss_of(e, &b, lp);
        params[i] = old - eps;
        engine_set_params(e, params);
        double lm1 = loss_of(e, &b, lp);
        params[i] = old;
        numeric[k] = (float)((lp1 - lm1) / (2 * eps));
        analytic[k] = grads[i];
    }
    double err = tu_rel_err(analytic, numeric, K);
    cr_expect(err < 2e-2, "LoRA gradients vs finite differences (%s base): relative error %.3e",
              quantized ? "4-bit" : "16-bit", err);
    engine_free(e);
    batch_free(&b);
    free(lp); free(a); free(bc); free(grads); free(params); free(lab);
    st_file_close(f);
    lora_free(ad);
    model_free(m);
    be_close(be);
    free(model_dir); free(adapter_dir); free(ref);
}

Test(engine_4bit, lora_gradients_over_4bit_base_match_finite_differences) { gradient_check(true, true); }
Test(engine_4bit, lora_gradients_without_checkpointing) { gradient_check(true, false); }

Test(engine_4bit, dump_with_a_4bit_base_and_adapter)
{
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "dump.safetensors");
    char *model = tu_shared_path("fixtures/tiny-llama-bnb-4bit"), *adapter = tu_shared_path("fixtures/tiny-llama/adapter");
    char *input = tu_shared_path("fixtures/tiny-llama/reference.safetensors");
    dump_request r = {.model_dir = model, .adapter_dir = adapter, .input = input, .out = out, .device = "cpu"};
    cr_assert_eq(dump_run(&r), 0, "%s", ds_errmsg());
    st_file *f;
    cr_assert_eq(st_file_open(out, &f), 0);
    const char *names[] = {"base.logits", "lora.logits", "lora.loss", "dpo.loss",
                           "sft.grad.base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                           "merged.model.layers.1.self_attn.v_proj.weight"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) cr_expect(st_file_find(f, names[i]), "missing %s", names[i]);
    /* the 4-bit model's loss is close to, not equal to, the 16-bit one */
    size_t n;
    float *l4 = tensor_f32(out, "lora.loss", &n), *l16 = tensor_f32(input, "lora.loss", &n);
    cr_expect(fabsf(l4[0] - l16[0]) < 0.5f * l16[0] && l4[0] != l16[0], "4-bit loss %g vs 16-bit %g", l4[0], l16[0]);
    st_file_close(f);
    free(l4); free(l16); free(dir); free(out); free(model); free(adapter); free(input);
}
