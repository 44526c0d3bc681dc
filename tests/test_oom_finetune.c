/* Running out of memory in ds-ft's own operations on the tiny model (CPU):
 * merging, the GGUF export, a checkpoint written and read back, evaluation,
 * a recipe's YAML tree and whole recipes loaded. As in test_oom.c, each
 * operation runs with each of its allocations failing in turn (oom_sweep.h)
 * and must report DS_ENOMEM, leaving nothing half-written. The GGUF export
 * (it loads the tokenizer), the checkpoint (each run syncs its files) and
 * the evaluation (forward passes) fail the first allocation of each distinct
 * call stack; DSFT_OOM_EVERY=1 fails every one (a few minutes). */
#include "oom_sweep.h"
#include "testutil.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "finetune/export/gguf_export.h"
#include "finetune/recipe/recipe_internal.h"
#include "finetune/run/run.h"
#include "finetune/train/checkpoint.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* models/tiny (NF4 on load) with a new adapter on every linear layer, B not
 * zero so that merging changes the weights; out: where an operation writes. */
typedef struct {
    char *model_dir, *dir, *out, *adapter_dir;
    char *checkpoints, *step_dir, *marker;   /* the checkpoint sweep's */
    llama_model *m;
    lora_adapter *ad;
} tiny_case;

static void tiny_open(tiny_case *c, const char *out_name)
{
    c->model_dir = tu_source_path("models/tiny");
    c->dir = tu_tmpdir();
    c->out = ds_path_join(c->dir, out_name);
    model_load_opts lo = {.load_in_4bit = true, .double_quant = true};
    cr_assert_eq(model_load(c->model_dir, &lo, &c->m), DS_OK, "%s", ds_errmsg());
    lora_config lc = {.r = 4, .alpha = 8, .targets = (1u << LIN_COUNT) - 1};
    cr_assert_eq(lora_create(&c->m->cfg, &lc, c->model_dir, &c->ad), DS_OK, "%s", ds_errmsg());
    lora_init(c->ad, 7);
    for (int l = 0; l < c->ad->nlayers; l++)
        for (int t = 0; t < LIN_COUNT; t++)
            tu_fill_uniform(lora_B(c->ad, l, (llama_linear)t), (size_t)c->ad->out[t] * lc.r, (uint64_t)(l * 7 + t), 0.01f);
}

static void tiny_close(tiny_case *c)
{
    ds_remove_tree(c->dir);
    if (c->adapter_dir) ds_remove_tree(c->adapter_dir);
    lora_free(c->ad);
    model_free(c->m);
    free(c->model_dir);
    free(c->dir);
    free(c->out);
    free(c->adapter_dir);
    free(c->checkpoints);
    free(c->step_dir);
    free(c->marker);
}

/* The merged folder: whole, or nothing at all (no temporary folder either). */
static int merge_once(void *ctx)
{
    tiny_case *c = ctx;
    int rc = merge_write(c->m, c->ad, MERGE_DEQUANTIZED, c->out);
    cr_assert_eq(files_in(c->dir), rc ? 0 : 1, "a half-written merged folder is left");
    return rc;
}

Test(oom, merge)
{
    tiny_case c = {0};
    tiny_open(&c, "merged");
    cr_expect_gt(sweep("merge", merge_once, &c), 50);
    cr_assert(ds_exists(c.out));
    tiny_close(&c);
}

/* The model with the adapter merged as q4_k_m GGUF, then the adapter alone. */
static int export_gguf(void *ctx)
{
    tiny_case *c = ctx;
    gguf_export_opts o = {.type = GGUF_EXPORT_Q4_K_M, .adapter_dir = c->adapter_dir};
    gguf_export_report r;
    int rc = gguf_export_model(c->model_dir, &o, c->out, &r);
    cr_assert_eq(files_in(c->dir), rc ? 0 : 1, "a half-written GGUF file is left");
    ds_remove_tree(c->out);   /* a file: no allocation */
    if (!rc) rc = gguf_export_lora(c->model_dir, c->adapter_dir, c->out, &r);
    cr_assert_eq(files_in(c->dir), rc ? 0 : 1, "a half-written LoRA GGUF file is left");
    ds_remove_tree(c->out);
    return rc;
}

Test(oom, gguf_export)
{
    tiny_case c = {0};
    tiny_open(&c, "tiny.gguf");
    char *adir = tu_tmpdir();
    c.adapter_dir = ds_path_join(adir, "adapter");
    free(adir);
    cr_assert_eq(lora_save_peft(c.ad, c.adapter_dir), DS_OK, "%s", ds_errmsg());
    cr_expect_gt(sweep_stacks("GGUF export", export_gguf, &c), 1000);
    tiny_close(&c);
}

/* A checkpoint written, found and read back. Each run ends with no
 * checkpoint: one written is moved aside (rename allocates nothing). */
static int checkpoint_round_trip(void *ctx)
{
    static int runs;
    tiny_case *c = ctx;
    size_t P = c->ad->nparams;
    float *m = ds_calloc(2 * P, sizeof(float), "the optimizer state");
    if (!m) return DS_ENOMEM;
    train_state s = {.step = 3, .total_steps = 10, .seed = 42, .tokens = 1000}, back;
    int rc = checkpoint_save(c->out, &s, c->ad, m, m + P, 1);
    /* nothing half-written: no temporary folder, and the checkpoint whole (its marker written last) or
     * absent; running out of memory after it was complete (removing older ones) leaves it */
    cr_assert_eq(files_in(c->checkpoints), ds_exists(c->step_dir), "a temporary checkpoint folder is left");
    cr_assert(rc ? !ds_exists(c->step_dir) || ds_exists(c->marker) : ds_exists(c->marker),
              "a half-written checkpoint is left");
    char *path = NULL, *skipped = NULL;
    if (!rc) rc = checkpoint_latest(c->out, &path, &skipped);
    if (!rc) rc = checkpoint_load(path, &c->m->cfg, &back, c->ad, m, m + P);
    if (!rc) cr_assert(back.step == 3 && back.tokens == 1000 && !skipped);
    free(path);
    free(skipped);
    free(m);
    char aside[4096];
    snprintf(aside, sizeof aside, "%s/done-%d", c->dir, runs++);
    if (ds_exists(c->step_dir)) cr_assert_eq(rename(c->step_dir, aside), 0);
    return rc;
}

Test(oom, checkpoint)
{
    tiny_case c = {0};
    tiny_open(&c, "run");
    c.checkpoints = ds_path_join(c.out, "checkpoints");
    c.step_dir = ds_path_join(c.checkpoints, "step-3");
    c.marker = ds_path_join(c.step_dir, CHECKPOINT_MARKER);
    cr_assert_eq(ds_mkdirs(c.checkpoints), DS_OK);
    cr_expect_gt(sweep_stacks("checkpoint", checkpoint_round_trip, &c), 1000);
    tiny_close(&c);
}

typedef struct {
    ds_run run;
    data_source mcq, text;
} eval_case;

/* Three multiple-choice questions and three examples' loss, with and without the adapter. */
static int evaluate(void *ctx)
{
    eval_case *c = ctx;
    c->run.be->err = 0;   /* a failure is sticky in the backend: the previous run's is forgotten */
    data_options opt = {.chat_template = "plain", .sequence_len = 128, .vocab_size = 1024};
    dataset mcq = {0}, text = {0};
    eval_result r = {0};
    int rc = dataset_load(&c->mcq, 1, EX_MCQ, c->run.tok, &opt, &mcq);
    if (!rc) rc = dataset_load(&c->text, 1, EX_SFT, c->run.tok, &opt, &text);
    for (int lora = 0; !rc && lora < 2; lora++) {
        rc = eval_mcq(c->run.eng, &mcq, lora, -1, 4, &r);
        if (!rc) cr_assert_eq(r.n, 3);
        eval_result_free(&r);
        if (!rc) rc = eval_loss(c->run.eng, &text, lora, -1, 4, &r);
        if (!rc) cr_assert(r.tokens > 0 && isfinite(r.loss));
        eval_result_free(&r);
    }
    dataset_free(&mcq);
    dataset_free(&text);
    return rc;
}

Test(oom, evaluation)
{
    eval_case c = {.mcq = {.path = tu_source_path("data/tiny/eval.jsonl"), .type = "mcq", .mcq_format = "cloze",
                           .limit = 3},
                   .text = {.path = tu_source_path("data/tiny/train.jsonl"), .type = "prompt_completion", .limit = 3}};
    char *dir = tu_source_path("models/tiny");
    lora_config lc = {.r = 4, .alpha = 8, .targets = (1u << LIN_COUNT) - 1};
    ds_run_opts ro = {.device = BE_CPU, .model_dir = dir, .load_in_4bit = true, .double_quant = true,
                      .new_adapter = &lc, .adapter_seed = 7};
    cr_assert_eq(ds_run_open(&ro, &c.run), DS_OK, "%s", ds_errmsg());
    engine_opts eo = {.max_B = 4, .max_T = 128};
    cr_assert_eq(ds_run_start(&c.run, &eo), DS_OK, "%s", ds_errmsg());
    cr_expect_gt(sweep_stacks("evaluation", evaluate, &c), 1000);
    ds_run_close(&c.run);
    free(c.mcq.path);
    free(c.text.path);
    free(dir);
}

/* A recipe's YAML tree (recipe_yaml.c, recipe_alias.c): recipes/tiny.yaml
 * with overrides (an alias, a list entry, new sections), then a flat
 * recipe whose aliases move into sections, one of them left empty. */
static int recipe_tree(void *text)
{
    static const char FLAT[] = "base_model: models/tiny\nlr: 1.0e-3\nlora_rank: 8\ntrain:\nepochs: 2\n";
    static const char *const OVERRIDES[] = {"lora_dropout=0.1", "eval.limit=5", "data.datasets[0].type=text",
                                            "extra.section.key=[1, {a: b}]"};
    rctx c = {.src = "tiny.yaml"};
    ynode *root = NULL, *flat = NULL;
    int rc = ynode_parse(text, strlen(text), c.src, false, &root);
    if (!rc) rc = recipe_resolve_aliases(&c, root);
    for (int i = 0; !rc && i < 4; i++) rc = recipe_apply_override(&c, root, OVERRIDES[i]);
    if (!rc) rc = ynode_parse(FLAT, strlen(FLAT), "flat.yaml", false, &flat);
    if (!rc) rc = recipe_resolve_aliases(&c, flat);
    if (!rc) cr_assert(ynode_find(flat, "train") >= 0 && ynode_find(flat, "adapter") >= 0 && flat->n == 3);
    ynode_free(root);
    ynode_free(flat);
    return rc;
}

Test(oom, recipe_yaml)
{
    char *path = tu_source_path("recipes/tiny.yaml"), *text;
    size_t len;
    cr_assert_eq(ds_read_file(path, &text, &len), DS_OK, "%s", ds_errmsg());
    cr_expect_gt(sweep("recipe YAML", recipe_tree, text), 100);
    free(text);
    free(path);
}

/* The whole recipe load (recipe.c, recipe_keys.c, recipe_clean.c, the plan):
 * recipes/tiny.yaml with a penalty (lists of integers and strings) and the
 * target modules as one "a,b" string, then recipes/medical.yaml (its paths
 * are kept as written: the model need not be here). */
typedef struct {
    char *tiny, *medical;
} recipe_files;

static int recipe_loads(void *ctx)
{
    static char *const OVERRIDES[] = {"loss.penalties=[{type: forbidden_tokens, ids: [3, 14], strings: [sorry, no]}]",
                                      "adapter.lora_target_modules=q_proj,v_proj"};
    recipe_files *f = ctx;
    recipe *r = NULL;
    int rc = recipe_load(f->tiny, OVERRIDES, 2, NULL, &r);
    cr_assert(rc ? !r : r && r->loss.n_penalties == 1 && r->adapter.lora_target_modules.n == 2 && r->tokenizer,
              "a recipe half-read, or read wrong");
    recipe_free(r);
    r = NULL;
    if (!rc) rc = recipe_load(f->medical, NULL, 0, NULL, &r);
    if (!rc) cr_assert(r && r->eval.n_datasets == 1 && r->clean.cfg);
    recipe_free(r);
    return rc;
}

Test(oom, recipe_load)
{
    recipe_files f = {tu_source_path("recipes/tiny.yaml"), tu_source_path("recipes/medical.yaml")};
    cr_expect_gt(sweep("recipe load", recipe_loads, &f), 200);
    free(f.tiny);
    free(f.medical);
}
