/* The CPU engine against transformers + PEFT (fixtures/tiny-llama/reference.safetensors):
 * every hidden state, logits, losses, SFT and DPO LoRA gradients. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/safetensors.h"
#include "finetune/run/run.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static st_file *g_ref, *g_got;

/* Run the engine as `ds-ft dump` does and open both files. */
static void dump_and_open(bool with_adapter)
{
    char *dir = tu_tmpdir();
    char *out = ds_path_join(dir, "dump.safetensors");
    char *model = tu_shared_path("fixtures/tiny-llama");
    char *adapter = tu_shared_path("fixtures/tiny-llama/adapter");
    char *input = tu_shared_path("fixtures/tiny-llama/reference.safetensors");
    dump_request r = {.model_dir = model, .adapter_dir = with_adapter ? adapter : NULL, .input = input,
                      .out = out, .device = "cpu"};
    int rc = dump_run(&r);
    cr_assert_eq(rc, 0, "dump failed: %s", ds_errmsg());
    cr_assert_eq(st_file_open(input, &g_ref), 0, "%s", ds_errmsg());
    cr_assert_eq(st_file_open(out, &g_got), 0, "%s", ds_errmsg());
    free(dir); free(out); free(model); free(adapter); free(input);
}

static double compare(const char *name)
{
    const st_tensor *a = st_file_find(g_got, name), *b = st_file_find(g_ref, name);
    cr_assert(a, "dump did not write %s", name);
    cr_assert(b, "fixture has no %s", name);
    cr_assert_eq(a->numel, b->numel, "%s: %lld vs %lld values", name, (long long)a->numel, (long long)b->numel);
    cr_assert_eq(a->ndim, b->ndim, "%s: rank differs", name);
    float *x = malloc(sizeof(float) * a->numel), *y = malloc(sizeof(float) * b->numel);
    st_to_f32(a, x);
    st_to_f32(b, y);
    double err = tu_rel_err(x, y, (size_t)a->numel);
    free(x);
    free(y);
    return err;
}

static void expect_all(const char *prefix, double tol)
{
    int n = 0;
    for (int i = 0; i < st_file_count(g_ref); i++) {
        const char *name = st_file_at(g_ref, i)->name;
        if (strncmp(name, prefix, strlen(prefix))) continue;
        if (!strcmp(name, "dpo.chosen_ids") || !strcmp(name, "dpo.rejected_ids") || !strcmp(name, "dpo.prompt_len") ||
            !strcmp(name, "dpo.beta"))
            continue;
        double err = compare(name);
        cr_expect(err <= tol, "%s: relative error %.3e > %.1e", name, err, tol);
        n++;
    }
    cr_assert(n > 0, "no fixture tensors start with %s", prefix);
}

Test(engine_fixture, base_model_matches_transformers)
{
    dump_and_open(false);
    expect_all("base.", 1e-5);
    cr_assert_null(st_file_find(g_got, "lora.logits"), "no adapter given, yet lora.* written");
}

Test(engine_fixture, adapter_logits_and_loss_match_peft)
{
    dump_and_open(true);
    expect_all("lora.", 1e-5);
}

Test(engine_fixture, sft_lora_gradients_match_peft)
{
    dump_and_open(true);
    expect_all("sft.grad.", 1e-4);
}

Test(engine_fixture, dpo_logps_loss_and_gradients_match_trl_formula)
{
    dump_and_open(true);
    expect_all("dpo.", 1e-4);
}

Test(engine_fixture, dump_writes_the_fixture_names)
{
    dump_and_open(true);
    for (int i = 0; i < st_file_count(g_ref); i++) {
        const char *name = st_file_at(g_ref, i)->name;
        bool input = !strcmp(name, "input_ids") || !strcmp(name, "labels") || !strncmp(name, "dpo.chosen", 10) ||
                     !strncmp(name, "dpo.rejected_ids", 16) || !strcmp(name, "dpo.prompt_len") ||
                     !strcmp(name, "dpo.beta");
        if (input) continue;
        cr_expect(st_file_find(g_got, name) != NULL, "dump is missing %s", name);
    }
}

Test(engine_fixture, merged_weights_match_peft_merge_and_unload)
{
    dump_and_open(true);
    expect_all("merged.", 1e-5);
}
