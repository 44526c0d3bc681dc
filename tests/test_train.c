/* Training runs on the tiny model (CPU): the forbidden-token penalty, DPO,
 * and what a run does with bad input (status codes, nothing half-written). */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/safetensors.h"
#include "finetune/recipe/recipe.h"
#include "finetune/train/train.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *g_out;

static void in_source_tree(void)
{
    cr_assert_eq(chdir(DSFT_SOURCE_DIR_FOR_TESTS), 0);
    g_out = tu_tmpdir();
}

/* The tiny recipe with extra overrides, output into a fresh folder. */
static int train_with(const char *const *over, int n, char **out_dir)
{
    char **all = calloc((size_t)n + 2, sizeof *all);
    *out_dir = ds_path_join(g_out, "run");
    all[0] = ds_strdupf("output_dir=%s", *out_dir);
    for (int i = 0; i < n; i++) all[i + 1] = (char *)over[i];
    recipe *r = NULL;
    int rc = recipe_load("recipes/tiny.yaml", all, n + 1, NULL, &r);
    if (!rc) rc = train_run(r, false);
    recipe_free(r);
    free(all[0]);
    free(all);
    return rc;
}

/* The mean of `key` over the last n metrics rows that have it. */
static double mean_of_last(const char *out_dir, const char *key, int n)
{
    char *path = ds_path_join(out_dir, "metrics.jsonl"), *text;
    size_t len;
    cr_assert_eq(ds_read_file(path, &text, &len), 0, "%s", ds_errmsg());
    double v[4096];
    int k = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *x = json_object_get(o, key);
        if (json_is_number(x) && k < 4096) v[k++] = json_number_value(x);
        json_decref(o);
    }
    free(text);
    free(path);
    double s = 0;
    int m = k < n ? k : n;
    for (int i = k - m; i < k; i++) s += v[i];
    return m ? s / m : NAN;
}

/* The value of `key` in the last metrics row that has it. */
static double last_metric(const char *out_dir, const char *key)
{
    char *path = ds_path_join(out_dir, "metrics.jsonl"), *text;
    size_t len;
    cr_assert_eq(ds_read_file(path, &text, &len), 0, "%s", ds_errmsg());
    double v = NAN;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *x = json_object_get(o, key);
        if (json_is_number(x)) v = json_number_value(x);
        json_decref(o);
    }
    free(text);
    free(path);
    return v;
}

TestSuite(train, .init = in_source_tree, .timeout = 300);

Test(train, forbidden_penalty_lowers_the_forbidden_probability)
{
    /* The same short run twice, the penalty off (weight 0: measured, no
     * gradient) and on. EOS (id 1) ends every completion, so without the
     * penalty the model learns to give it probability. */
    const char *common[] = {"train.max_steps=120", "eval.datasets=[]", "save.merge=false", "save.every_steps=0",
                            "train.logging_steps=1"};
    char *out;
    const char *off[7], *on[7];
    memcpy(off, common, sizeof common);
    memcpy(on, common, sizeof common);
    off[5] = "loss.penalties=[{type: forbidden_tokens, weight: 0.0, ids: [1]}]";
    on[5] = "loss.penalties=[{type: forbidden_tokens, weight: 2.0, ids: [1]}]";
    cr_assert_eq(train_with(off, 6, &out), 0, "%s", ds_errmsg());
    double p_off = mean_of_last(out, "forbidden/prob", 20);
    free(out);
    ds_remove_tree(g_out);
    ds_mkdirs(g_out);
    cr_assert_eq(train_with(on, 6, &out), 0, "%s", ds_errmsg());
    double p_on = mean_of_last(out, "forbidden/prob", 20);
    free(out);
    cr_assert(isfinite(p_off) && isfinite(p_on), "forbidden/prob not logged");
    cr_expect(p_on < 0.5 * p_off, "forbidden probability with the penalty %.3g, without %.3g", p_on, p_off);
}

Test(train, dpo_recipe_runs_and_logs_trl_metrics)
{
    char *out = ds_path_join(g_out, "dpo");
    char *o1 = ds_strdupf("output_dir=%s", out);
    char *over[] = {o1, "train.max_steps=8", "save.merge=false"};
    recipe *r = NULL;
    cr_assert_eq(recipe_load("recipes/dpo.yaml", over, 3, NULL, &r), 0, "%s", ds_errmsg());
    cr_assert_eq(train_run(r, false), 0, "%s", ds_errmsg());
    recipe_free(r);
    double acc = last_metric(out, "rewards/accuracies"), margin = last_metric(out, "rewards/margins");
    cr_expect(isfinite(acc) && acc >= 0 && acc <= 1, "rewards/accuracies %g", acc);
    cr_expect(isfinite(margin), "rewards/margins missing");
    cr_expect(isfinite(last_metric(out, "logps/chosen")), "logps/chosen missing");
    free(out);
    free(o1);
}

Test(train, missing_dataset_file_is_no_input)
{
    char *out;
    const char *o[] = {"data.datasets=[{path: data/tiny/nope.jsonl, type: prompt_completion}]"};
    cr_expect_eq(train_with(o, 1, &out), DS_ENOINPUT, "%s", ds_errmsg());
    cr_expect(strstr(ds_errmsg(), "nope.jsonl"), "%s", ds_errmsg());
    free(out);
}

Test(train, no_completion_tokens_after_truncation)
{
    char *out;
    const char *o[] = {"data.sequence_len=12"};   /* every prompt is longer than this */
    cr_expect_eq(train_with(o, 1, &out), DS_EDATA, "%s", ds_errmsg());
    cr_expect(strstr(ds_errmsg(), "completion"), "message should say why: %s", ds_errmsg());
    char *adapter = ds_path_join(out, "adapter");
    cr_expect(!ds_exists(adapter), "an adapter folder was left behind");
    free(adapter);
    free(out);
}

Test(train, adapter_that_does_not_fit_the_model)
{
    char *out;
    char *shared = tu_shared_path("fixtures/tiny-llama/adapter");
    char *o1 = ds_strdupf("adapter.init_from=%s", shared);
    const char *o[] = {o1};
    cr_expect_eq(train_with(o, 1, &out), DS_EDATA, "%s", ds_errmsg());
    cr_expect(strstr(ds_errmsg(), "does not fit"), "%s", ds_errmsg());
    char *ck = ds_path_join(out, "checkpoints");
    cr_expect(!ds_exists(ck), "a checkpoint was written after a failed set-up");
    free(ck);
    free(o1);
    free(shared);
    free(out);
}

Test(train, unknown_loss_lists_the_registered_ones)
{
    char *out;
    const char *o[] = {"loss.type=kto"};
    cr_expect_eq(train_with(o, 1, &out), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "sft, dpo"), "%s", ds_errmsg());
    free(out);
}

Test(train, divergence_watchdog_stops_the_run)
{
    char *out;
    /* A learning rate far too large: the loss climbs back from its best
     * to the uniform distribution's log(vocab), more than 5% above its best. */
    const char *o[] = {"train.learning_rate=10", "train.max_grad_norm=0", "train.warmup_ratio=0",
                       "train.divergence_factor=1.05", "eval.before_training=false", "save.every_steps=2"};
    int rc = train_with(o, sizeof o / sizeof *o, &out);
    cr_expect_eq(rc, DS_ETRAIN, "expected the divergence watchdog (status 1), got %d: %s", rc, ds_errmsg());
    cr_expect(strstr(ds_errmsg(), "diverged"), "%s", ds_errmsg());
    char *adapter = ds_path_join(out, "adapter");
    cr_expect(!ds_exists(adapter), "a failed run must not leave a final adapter");
    free(adapter);
    free(out);
}

/* models/tiny whose final norm has one weight at bf16's largest finite value
 * (3.4e38): the loader takes it (every weight is finite), but the logits
 * overflow, so the first loss is not finite. (A NaN weight itself is refused
 * when the model is loaded: tests/cli/model_checks.sh.) */
static char *model_that_overflows(void)
{
    char *dir = ds_path_join(g_out, "overflow-model");
    ds_mkdirs(dir);
    const char *side[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 4; i++) {
        char *src = ds_path_join("models/tiny", side[i]), *dst = ds_path_join(dir, side[i]);
        cr_assert_eq(ds_copy_file(src, dst), 0);
        free(src);
        free(dst);
    }
    st_file *f;
    cr_assert_eq(st_file_open("models/tiny/model.safetensors", &f), 0);
    uint16_t largest_bf16 = 0x7f7f;
    int64_t shape[1] = {128};
    uint16_t norm[128];
    for (int i = 0; i < 128; i++) norm[i] = 0x3f80;   /* 1.0 */
    norm[5] = largest_bf16;
    st_writer *w = st_writer_new();
    for (int i = 0; i < st_file_count(f); i++) {
        const st_tensor *t = st_file_at(f, i);
        if (strcmp(t->name, "model.norm.weight")) st_writer_add_copy(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    st_writer_add_copy(w, "model.norm.weight", ST_BF16, 1, shape, norm);
    char *path = ds_path_join(dir, "model.safetensors");
    cr_assert_eq(st_writer_write(w, path), 0, "%s", ds_errmsg());
    st_writer_free(w);
    st_file_close(f);
    free(path);
    return dir;
}

Test(train, nan_watchdog_stops_the_run)
{
    char *model = model_that_overflows(), *out;
    char *o1 = ds_strdupf("base_model=%s", model);
    const char *o[] = {o1, "eval.before_training=false"};
    int rc = train_with(o, 2, &out);
    cr_expect_eq(rc, DS_ETRAIN, "expected the NaN watchdog (status 1), got %d: %s", rc, ds_errmsg());
    cr_expect(strstr(ds_errmsg(), "NaN"), "%s", ds_errmsg());
    char *adapter = ds_path_join(out, "adapter");
    cr_expect(!ds_exists(adapter), "a failed run must not leave a final adapter");
    free(adapter);
    free(o1);
    free(model);
    free(out);
}

static double eval_score(const char *out_dir, const char *when, const char *key)
{
    char *path = ds_strdupf("%s/eval/eval.json", out_dir);
    json_error_t jerr;
    json_t *o = json_load_file(path, 0, &jerr);
    cr_assert(o, "%s: %s", path, jerr.text);
    double v = json_number_value(json_object_get(json_object_get(o, when), key));
    cr_assert(json_is_array(json_object_get(o, "samples")), "no per-sample log-likelihoods");
    json_decref(o);
    free(path);
    return v;
}

/* The README's main job: the tiny recipe learns its facts. */
Test(train, tiny_recipe_learns_the_facts)
{
    char *out;
    cr_assert_eq(train_with(NULL, 0, &out), 0, "%s", ds_errmsg());
    double before = eval_score(out, "before", "acc"), after = eval_score(out, "after", "acc");
    double after_norm = eval_score(out, "after", "acc_norm");
    cr_expect(after >= 0.5 && after_norm >= 0.5, "accuracy after training %.3f (acc_norm %.3f), chance is 0.25",
              after, after_norm);
    cr_expect(after >= before + 0.25, "accuracy %.3f before, %.3f after: not clearly better than the base model",
              before, after);
    const char *files[] = {"recipe.resolved.yaml", "metrics.jsonl", "train.log", "adapter/adapter_config.json",
                           "adapter/adapter_model.safetensors", "merged/model.safetensors", "merged/config.json",
                           "merged/tokenizer.json", "checkpoints/step-320/optimizer.safetensors",
                           "checkpoints/step-320/trainer_state.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *p = ds_path_join(out, files[i]);
        cr_expect(ds_exists(p), "missing %s", files[i]);
        free(p);
    }
    free(out);
}
