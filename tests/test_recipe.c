/* The recipe loader: defaults, every kind of value, ranges, choices,
 * required and unknown keys, YAML errors with their lines, overrides,
 * aliases, loss modules and their penalties, the checks across sections,
 * and write -> load giving the same recipe. */
#define _GNU_SOURCE
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "finetune/recipe/recipe.h"
#include "finetune/recipe/recipe_internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD "base_model: models/tiny\noutput_dir: runs/t\n"
#define DATA "data:\n  datasets: [{path: d.jsonl, type: text}]\n"

/* ---- helpers ---- */

static char g_notices[4096];

static int parse_with(const char *text, const char *const *ov, int n, recipe **r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int rc = recipe_parse(text, strlen(text), "t.yaml", (char *const *)ov, n, f, r);
    fclose(f);
    snprintf(g_notices, sizeof g_notices, "%s", buf ? buf : "");
    free(buf);
    return rc;
}

static recipe *parse_ok(const char *text, const char *const *ov, int n)
{
    recipe *r = NULL;
    int rc = parse_with(text, ov, n, &r);
    cr_assert_eq(rc, DS_OK, "recipe refused: %s\n---\n%s", ds_errmsg(), text);
    cr_assert_not_null(r);
    return r;
}

/* Refused with DS_ECONFIG and a message containing every needle (NULL-terminated). */
static void refused_ov(const char *text, const char *const *ov, int n, const char *needle, const char *needle2)
{
    recipe *r = NULL;
    int rc = parse_with(text, ov, n, &r);
    cr_expect_eq(rc, DS_ECONFIG, "expected DS_ECONFIG (78), got %d (%s)\n---\n%s", rc, ds_errmsg(), text);
    cr_expect_null(r);
    cr_expect(strstr(ds_errmsg(), needle) != NULL, "message '%s' lacks '%s'", ds_errmsg(), needle);
    if (needle2) cr_expect(strstr(ds_errmsg(), needle2) != NULL, "message '%s' lacks '%s'", ds_errmsg(), needle2);
    recipe_free(r);
}

static void refused(const char *text, const char *needle, const char *needle2)
{
    refused_ov(text, NULL, 0, needle, needle2);
}

static const opt_key *module_key(const loss_module *m, const char *name)
{
    for (const opt_key *k = m->keys; k && k->name; k++)
        if (!strcmp(k->name, name)) return k;
    cr_assert_fail("loss %s has no key %s", m->name, name);
    return NULL;
}

static double cfg_double(const recipe_loss *l, const char *name)
{
    return *(const double *)((const char *)l->cfg + module_key(l->module, name)->offset);
}

static const char *cfg_string(const recipe_loss *l, const char *name)
{
    return *(char *const *)((const char *)l->cfg + module_key(l->module, name)->offset);
}

static const void *cfg_field(const recipe_loss *l, const char *name)
{
    return (const char *)l->cfg + module_key(l->module, name)->offset;
}

static char *source_path(const char *rel) { return tu_source_path(rel); }

/* ---- comparing two recipes key by key ---- */

static void expect_same_keys(const opt_key *keys, const void *a, const void *b, const char *where)
{
    for (const opt_key *k = keys; k && k->name; k++) {
        const void *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
        switch (k->type) {
        case OPT_BOOL:
            cr_expect_eq(*(const bool *)fa, *(const bool *)fb, "%s.%s", where, k->name);
            break;
        case OPT_INT:
            cr_expect_eq(*(const int64_t *)fa, *(const int64_t *)fb, "%s.%s", where, k->name);
            break;
        case OPT_FLOAT:
            cr_expect(*(const double *)fa == *(const double *)fb, "%s.%s: %.17g vs %.17g", where, k->name,
                      *(const double *)fa, *(const double *)fb);
            break;
        case OPT_STRING:
        case OPT_CHOICE: {
            const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;
            cr_expect((!sa && !sb) || (sa && sb && !strcmp(sa, sb)), "%s.%s: '%s' vs '%s'", where, k->name,
                      sa ? sa : "(null)", sb ? sb : "(null)");
            break;
        }
        case OPT_STRING_LIST: {
            const opt_strings *la = fa, *lb = fb;
            cr_assert_eq(la->n, lb->n, "%s.%s: %d vs %d items", where, k->name, la->n, lb->n);
            for (int i = 0; i < la->n; i++)
                cr_expect_str_eq(la->items[i], lb->items[i], "%s.%s[%d]", where, k->name, i);
            break;
        }
        case OPT_INT_LIST: {
            const opt_ints *la = fa, *lb = fb;
            cr_assert_eq(la->n, lb->n, "%s.%s: %d vs %d items", where, k->name, la->n, lb->n);
            for (int i = 0; i < la->n; i++) cr_expect_eq(la->items[i], lb->items[i], "%s.%s[%d]", where, k->name, i);
            break;
        }
        }
    }
}

static void expect_same_loss(const recipe_loss *a, const recipe_loss *b, const char *where)
{
    cr_assert_eq(a->module, b->module, "%s: loss %s vs %s", where, a->module->name, b->module->name);
    expect_same_keys(a->module->keys, a->cfg, b->cfg, where);
}

static void expect_same_recipe(const recipe *a, const recipe *b)
{
    for (const recipe_section *s = RECIPE_SECTIONS; s->name; s++)
        if (s->keys) expect_same_keys(s->keys, a, b, *s->name ? s->name : "top");
    cr_assert_eq(a->data.n_datasets, b->data.n_datasets);
    for (int i = 0; i < a->data.n_datasets; i++)
        expect_same_keys(RECIPE_DATASET_KEYS, &a->data.datasets[i], &b->data.datasets[i], "data.datasets[]");
    cr_assert_eq(a->eval.n_datasets, b->eval.n_datasets);
    for (int i = 0; i < a->eval.n_datasets; i++)
        expect_same_keys(RECIPE_DATASET_KEYS, &a->eval.datasets[i], &b->eval.datasets[i], "eval.datasets[]");
    expect_same_loss(&a->loss.main, &b->loss.main, "loss");
    cr_assert_eq(a->loss.n_penalties, b->loss.n_penalties);
    for (int i = 0; i < a->loss.n_penalties; i++)
        expect_same_loss(&a->loss.penalties[i], &b->loss.penalties[i], "loss.penalties[]");
}

/* Write r, load it back, compare; also the text written twice is the same. */
static void expect_round_trip(const recipe *r)
{
    char *dir = tu_tmpdir();
    char *path = ds_path_join(dir, "recipe.resolved.yaml");
    cr_assert_eq(recipe_write(r, path), DS_OK, "%s", ds_errmsg());
    recipe *back = NULL;
    cr_assert_eq(recipe_load(path, NULL, 0, NULL, &back), DS_OK, "written recipe refused: %s", ds_errmsg());
    expect_same_recipe(r, back);

    char *t1 = NULL, *t2 = NULL;
    size_t n1 = 0, n2 = 0;
    FILE *f1 = open_memstream(&t1, &n1), *f2 = open_memstream(&t2, &n2);
    recipe_print(r, f1);
    recipe_print(back, f2);
    fclose(f1);
    fclose(f2);
    cr_expect_str_eq(t1, t2, "the written recipe does not print the same");
    char *disk;
    size_t nd;
    cr_assert_eq(ds_read_file(path, &disk, &nd), DS_OK);
    cr_expect_str_eq(disk, t1, "recipe_write and recipe_print differ");
    free(disk);
    free(t1);
    free(t2);
    recipe_free(back);
    ds_remove_tree(dir);
    free(path);
    free(dir);
}

/* ---- defaults ---- */

Test(recipe, defaults)
{
    recipe *r = parse_ok(HEAD DATA, NULL, 0);
    cr_expect_str_eq(r->base_model, "models/tiny");
    cr_expect_str_eq(r->tokenizer, "models/tiny", "tokenizer defaults to base_model");
    cr_expect_str_eq(r->output_dir, "runs/t");
    cr_expect_eq(r->seed, 42);
    cr_expect_str_eq(r->device, "auto");

    cr_expect(!r->quant.load_in_4bit);
    cr_expect_str_eq(r->quant.quant_type, "nf4");
    cr_expect(r->quant.double_quant);
    cr_expect_str_eq(r->quant.compute_dtype, "bf16");

    cr_expect_eq(r->adapter.lora_r, 16);
    cr_expect(r->adapter.lora_alpha == 32.0);
    cr_expect(r->adapter.lora_dropout == 0.05);
    cr_assert_eq(r->adapter.lora_target_modules.n, 2);
    cr_expect_str_eq(r->adapter.lora_target_modules.items[0], "q_proj");
    cr_expect_str_eq(r->adapter.lora_target_modules.items[1], "v_proj");
    cr_expect(!r->adapter.use_rslora);
    cr_expect_null(r->adapter.init_from);

    cr_expect_str_eq(r->data.chat_template, "auto");
    cr_expect_eq(r->data.sequence_len, 2048);
    cr_expect(!r->data.sample_packing);
    cr_expect(r->data.val_set_size == 0.0);
    cr_expect(!r->data.train_on_inputs);
    cr_expect(!r->data.skip_bad_lines);
    cr_expect(r->data.shuffle);
    cr_assert_eq(r->data.n_datasets, 1);
    cr_expect_str_eq(r->data.datasets[0].path, "d.jsonl");
    cr_expect_str_eq(r->data.datasets[0].type, "text");
    cr_expect_null(r->data.datasets[0].mcq_format, "mcq_format is for mcq datasets only");
    cr_expect_eq(r->data.datasets[0].limit, -1);
    cr_expect_eq(r->data.datasets[0].line, 4);

    cr_assert_not_null(r->loss.main.module);
    cr_expect_str_eq(r->loss.main.module->name, "sft");
    cr_expect_not_null(r->loss.main.cfg);
    cr_expect_eq(r->loss.n_penalties, 0);

    cr_expect_eq(r->train.micro_batch_size, 1);
    cr_expect_eq(r->train.gradient_accumulation_steps, 1);
    cr_expect(r->train.num_epochs == 1.0);
    cr_expect_eq(r->train.max_steps, -1);
    cr_expect(r->train.learning_rate == 2.0e-4);
    cr_expect_str_eq(r->train.lr_scheduler, "cosine");
    cr_expect(r->train.warmup_ratio == 0.0);
    cr_expect_eq(r->train.warmup_steps, -1);
    cr_expect(r->train.weight_decay == 0.0);
    cr_expect(r->train.max_grad_norm == 1.0);
    cr_expect(r->train.adam_beta1 == 0.9);
    cr_expect(r->train.adam_beta2 == 0.999);
    cr_expect(r->train.adam_epsilon == 1e-8);
    cr_expect(r->train.gradient_checkpointing);
    cr_expect_eq(r->train.logging_steps, 1);
    cr_expect(r->train.divergence_factor == 10.0);

    cr_expect_eq(r->eval.n_datasets, 0);
    cr_expect(r->eval.before_training);
    cr_expect_eq(r->eval.every_steps, 0);
    cr_expect_eq(r->eval.limit, -1);
    cr_expect_eq(r->eval.batch_size, 8);

    cr_expect_eq(r->save.every_steps, 500);
    cr_expect_eq(r->save.keep_last, 2);
    cr_expect(!r->save.merge);
    cr_expect_str_eq(r->save.merge_source, "dequantized");

    cr_expect_str_eq(r->file, "t.yaml");
    cr_expect_str_eq(g_notices, "", "no alias, no notice");
    recipe_free(r);
}

Test(recipe, loss_module_defaults)
{
    recipe *r = parse_ok(HEAD "data:\n  datasets: [{path: p.jsonl, type: preference}]\nloss: {type: dpo}\n", NULL, 0);
    cr_expect_str_eq(r->loss.main.module->name, "dpo");
    cr_expect(cfg_double(&r->loss.main, "beta") == 0.1);
    cr_expect_str_eq(cfg_string(&r->loss.main, "loss_type"), "sigmoid");
    cr_expect(cfg_double(&r->loss.main, "label_smoothing") == 0.0);
    recipe_free(r);
}

Test(recipe, spec_example_file)
{
    char *path = source_path("tests/data/recipes/full.yaml");
    recipe *r = NULL;
    cr_assert_eq(recipe_load(path, NULL, 0, NULL, &r), DS_OK, "%s", ds_errmsg());
    cr_expect(r->quant.load_in_4bit);
    cr_expect_str_eq(r->data.chat_template, "deepseek");
    cr_expect(r->data.sample_packing);
    cr_expect(r->data.val_set_size == 0.02);
    cr_assert_eq(r->data.n_datasets, 2);
    cr_expect_str_eq(r->data.datasets[0].path, "data/medmcqa_train.jsonl", "paths are kept as written");
    cr_expect_str_eq(r->data.datasets[0].mcq_format, "letters");
    cr_expect_str_eq(r->data.datasets[1].path, "data/meadow.jsonl.zst");
    cr_expect_eq(r->train.micro_batch_size, 4);
    cr_expect_eq(r->train.gradient_accumulation_steps, 8);
    cr_expect(r->train.warmup_ratio == 0.03);
    cr_assert_eq(r->eval.n_datasets, 1);
    cr_expect_str_eq(r->eval.datasets[0].mcq_format, "cloze");
    cr_expect_eq(r->eval.datasets[0].limit, 200);
    cr_expect(r->save.merge);
    cr_expect_str_eq(r->file, path);
    recipe_free(r);
    free(path);
}

/* ---- every kind of value ---- */

Test(recipe, value_types)
{
    recipe *r = parse_ok(HEAD DATA
                         "seed: 7\n"                                  /* int */
                         "tokenizer: \"null\"\n"                      /* a quoted null is a string */
                         "quant: {load_in_4bit: yes, double_quant: off}\n"   /* YAML 1.1 booleans */
                         "adapter:\n"
                         "  lora_alpha: 16\n"                         /* an integer where a float goes */
                         "  lora_dropout: .1\n"
                         "  lora_target_modules:\n"                   /* a block list */
                         "    - o_proj\n"
                         "    - gate_proj\n"
                         "  init_from: adapters/prev\n"
                         "train:\n"
                         "  max_steps: 1e3\n"                         /* an integral number where an int goes */
                         "  learning_rate: 3E-5\n"
                         "  warmup_steps: -1\n"                       /* -1 is null, as in transformers */
                         "  lr_scheduler: constant\n"
                         "  gradient_checkpointing: False\n"
                         "eval:\n"
                         "  limit: ~\n",
                         NULL, 0);
    cr_expect_eq(r->seed, 7);
    cr_expect_str_eq(r->tokenizer, "null");
    cr_expect(r->quant.load_in_4bit);
    cr_expect(!r->quant.double_quant);
    cr_expect(r->adapter.lora_alpha == 16.0);
    cr_expect(r->adapter.lora_dropout == 0.1);
    cr_assert_eq(r->adapter.lora_target_modules.n, 2);
    cr_expect_str_eq(r->adapter.lora_target_modules.items[0], "o_proj");
    cr_expect_str_eq(r->adapter.lora_target_modules.items[1], "gate_proj");
    cr_expect_str_eq(r->adapter.init_from, "adapters/prev");
    cr_expect_eq(r->train.max_steps, 1000);
    cr_expect(r->train.learning_rate == 3e-5);
    cr_expect_eq(r->train.warmup_steps, -1);
    cr_expect_str_eq(r->train.lr_scheduler, "constant");
    cr_expect(!r->train.gradient_checkpointing);
    cr_expect_eq(r->eval.limit, -1);
    recipe_free(r);
}

Test(recipe, int_and_string_lists_in_a_penalty)
{
    recipe *r = parse_ok(HEAD DATA
                         "loss:\n  penalties:\n"
                         "    - {type: forbidden_tokens, ids: [3, 14, 15], strings: [\"I can't\", sorry, \" \"]}\n"
                         "    - {type: forbidden_tokens, ids: 92, strings: one}\n",
                         NULL, 0);
    cr_assert_eq(r->loss.n_penalties, 2);
    const opt_ints *ids = cfg_field(&r->loss.penalties[0], "ids");
    const opt_strings *strs = cfg_field(&r->loss.penalties[0], "strings");
    cr_assert_eq(ids->n, 3);
    cr_expect_eq(ids->items[2], 15);
    cr_assert_eq(strs->n, 3);
    cr_expect_str_eq(strs->items[0], "I can't");
    cr_expect_str_eq(strs->items[2], " ", "a lone space is kept as written");
    ids = cfg_field(&r->loss.penalties[1], "ids");
    strs = cfg_field(&r->loss.penalties[1], "strings");
    cr_assert_eq(ids->n, 1, "a scalar is a list of one");
    cr_expect_eq(ids->items[0], 92);
    cr_assert_eq(strs->n, 1);
    cr_expect_str_eq(strs->items[0], "one");
    recipe_free(r);
}

Test(recipe, empty_sections_take_defaults)
{
    recipe *r = parse_ok(HEAD DATA "quant:\ntrain:\neval:\nsave:\nloss:\n", NULL, 0);
    cr_expect_eq(r->train.micro_batch_size, 1);
    cr_expect_str_eq(r->loss.main.module->name, "sft");
    recipe_free(r);
}

/* ---- wrong types: file:line: key: problem ---- */

Test(recipe, wrong_type_names_file_line_key)
{
    char *path = source_path("tests/data/recipes/bad_type.yaml");
    recipe *r = NULL;
    cr_expect_eq(recipe_load(path, NULL, 0, NULL, &r), DS_ECONFIG);
    char want[1024];
    snprintf(want, sizeof want, "%s:7: train.learning_rate: expected a number, got 'fast'", path);
    cr_expect_str_eq(ds_errmsg(), want);
    free(path);
}

Test(recipe, wrong_types)
{
    refused(HEAD DATA "train:\n  micro_batch_size: 2.5\n", "t.yaml:6: train.micro_batch_size: expected an integer, got '2.5'",
            NULL);
    refused(HEAD DATA "train:\n  micro_batch_size: four\n", "t.yaml:6: train.micro_batch_size: expected an integer", NULL);
    refused(HEAD DATA "train:\n  gradient_checkpointing: maybe\n",
            "t.yaml:6: train.gradient_checkpointing: expected true or false, got 'maybe'", NULL);
    refused(HEAD DATA "train:\n  gradient_checkpointing: null\n", "expected true or false, got null", NULL);
    refused(HEAD DATA "output_dir2: x\n", "t.yaml:5: output_dir2: unknown key", NULL);
    refused("base_model: [a, b]\noutput_dir: o\n" DATA, "t.yaml:1: base_model: expected a string, got a list", NULL);
    refused("base_model: m\noutput_dir: null\n" DATA, "t.yaml:2: output_dir: expected a string, got null", NULL);
    refused(HEAD DATA "adapter:\n  lora_target_modules: {q: 1}\n",
            "t.yaml:6: adapter.lora_target_modules: expected a list of strings, got a mapping", NULL);
    refused(HEAD DATA "train: 5\n", "t.yaml:5: train: expected a mapping of train keys, got '5'", NULL);
    refused(HEAD "data:\n  datasets: d.jsonl\n", "t.yaml:4: data.datasets: expected a list", NULL);
    refused(HEAD "data:\n  datasets: [d.jsonl]\n", "t.yaml:4: data.datasets[0]: expected a mapping", NULL);
    refused(HEAD DATA "train:\n  learning_rate: .inf\n", "train.learning_rate: expected a finite number", NULL);
    refused(HEAD DATA "train:\n  learning_rate: 1e999\n", "train.learning_rate: expected a finite number", NULL);
    refused(HEAD DATA "loss:\n  penalties:\n    - {type: forbidden_tokens, ids: [1, x]}\n",
            "t.yaml:7: loss.penalties[0].ids: expected an integer, got 'x'", NULL);
    refused(HEAD DATA "seed: 99999999999999999999\n", "seed: '99999999999999999999' is too large", NULL);
    refused("- just\n- a list\n", "t.yaml:1: a recipe is a mapping", NULL);
}

/* ---- ranges ---- */

Test(recipe, ranges)
{
    refused(HEAD DATA "adapter: {lora_r: 0}\n", "t.yaml:5: adapter.lora_r: '0' is out of range [1, 1024]", NULL);
    refused(HEAD DATA "adapter: {lora_r: 1025}\n", "adapter.lora_r: '1025' is out of range [1, 1024]", NULL);
    refused(HEAD DATA "adapter: {lora_dropout: 1}\n", "adapter.lora_dropout: '1' is out of range [0, 1)", NULL);
    refused(HEAD DATA "adapter: {lora_dropout: -0.1}\n", "adapter.lora_dropout: '-0.1' is out of range", NULL);
    refused(HEAD DATA "adapter: {lora_alpha: 0}\n", "adapter.lora_alpha: '0' is out of range (0,", NULL);
    refused(HEAD "data: {sequence_len: 4, datasets: [{path: d, type: text}]}\n",
            "data.sequence_len: '4' is out of range [8, 1048576]", NULL);
    refused(HEAD DATA "train: {warmup_ratio: 1.5}\n", "train.warmup_ratio: '1.5' is out of range [0, 1]", NULL);
    refused(HEAD DATA "train: {max_steps: 0}\n", "train.max_steps: '0' is out of range", NULL);
    refused(HEAD DATA "train: {adam_beta2: 1.0}\n", "train.adam_beta2: '1.0' is out of range [0, 1)", NULL);
    refused(HEAD DATA "train: {micro_batch_size: -3}\n", "train.micro_batch_size: '-3' is out of range", NULL);
    refused(HEAD DATA "train: {divergence_factor: 0.5}\n", "train.divergence_factor: must be 0 (off) or greater than 1",
            "t.yaml:5");
    refused(HEAD "data: {val_set_size: 2.5, datasets: [{path: d, type: text}]}\n",
            "t.yaml:3: data.val_set_size: a count (>= 1) must be a whole number", NULL);
    refused(HEAD "data: {datasets: [{path: d, type: text, limit: 0}]}\n",
            "data.datasets[0].limit: '0' is out of range", NULL);

    /* the edges are in */
    recipe *r = parse_ok(HEAD DATA "adapter: {lora_r: 1024, lora_dropout: 0.0}\ntrain: {warmup_ratio: 1, max_grad_norm: 0}\n",
                         NULL, 0);
    cr_expect_eq(r->adapter.lora_r, 1024);
    cr_expect(r->train.max_grad_norm == 0.0);
    recipe_free(r);
}

/* ---- choices ---- */

Test(recipe, choices)
{
    refused(HEAD DATA "train: {lr_scheduler: cosin}\n",
            "t.yaml:5: train.lr_scheduler: expected one of cosine|linear|constant, got 'cosin'", NULL);
    refused(HEAD DATA "device: gpu\n", "device: expected one of auto|cpu|cuda, got 'gpu'", NULL);
    refused(HEAD DATA "quant: {quant_type: fp4}\n", "quant.quant_type: expected one of nf4", NULL);
    refused(HEAD DATA "quant: {compute_dtype: fp16}\n", "quant.compute_dtype: expected one of bf16", NULL);
    refused(HEAD "data:\n  chat_template: vicuna\n  datasets: [{path: d, type: text}]\n",
            "data.chat_template: expected one of auto|deepseek|llama3|chatml|alpaca|plain", NULL);
    refused(HEAD "data:\n  datasets: [{path: d, type: sharegpt}]\n",
            "t.yaml:4: data.datasets[0].type: expected one of alpaca|messages|prompt_completion|text|preference|mcq",
            NULL);
    refused(HEAD "data:\n  datasets: [{path: d, type: mcq, mcq_format: words}]\n",
            "data.datasets[0].mcq_format: expected one of letters|cloze", NULL);
    refused(HEAD "data:\n  datasets: [{path: d, type: text, mcq_format: cloze}]\n",
            "data.datasets[0].mcq_format: applies to type mcq only", NULL);
    refused(HEAD DATA "adapter: {lora_target_modules: [q_proj, lm_head]}\n",
            "adapter.lora_target_modules: 'lm_head' is not one of q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj",
            NULL);
    refused(HEAD DATA "adapter: {lora_target_modules: [q_proj, q_proj]}\n", "'q_proj' is listed twice", NULL);
    refused(HEAD DATA "adapter: {lora_target_modules: []}\n", "adapter.lora_target_modules: needs at least one", NULL);
    refused(HEAD DATA "save: {merge_source: fp32}\n", "save.merge_source: expected one of dequantized|original", NULL);
}

Test(recipe, all_linear_means_all_seven)
{
    static const char *const all[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    const char *texts[] = {
        HEAD DATA "adapter: {lora_target_modules: all-linear}\n",
        HEAD DATA "adapter: {lora_target_modules: [all-linear]}\n",
    };
    for (int t = 0; t < 2; t++) {
        recipe *r = parse_ok(texts[t], NULL, 0);
        cr_assert_eq(r->adapter.lora_target_modules.n, 7);
        for (int i = 0; i < 7; i++) cr_expect_str_eq(r->adapter.lora_target_modules.items[i], all[i]);
        recipe_free(r);
    }
}

/* ---- required keys ---- */

Test(recipe, required_keys)
{
    refused("output_dir: o\n" DATA, "t.yaml:1: base_model: required key is missing", NULL);
    refused("base_model: m\n" DATA, "t.yaml:1: output_dir: required key is missing", NULL);
    refused(HEAD, "t.yaml: data.datasets: required key is missing", NULL);
    refused(HEAD "data:\n  datasets: []\n", "t.yaml:4: data.datasets: needs at least one dataset", NULL);
    refused(HEAD "data:\n  datasets:\n    - {type: text}\n", "t.yaml:5: data.datasets[0].path: required key is missing",
            NULL);
    refused(HEAD "data:\n  datasets:\n    - {path: d}\n", "t.yaml:5: data.datasets[0].type: required key is missing",
            NULL);
    refused(HEAD DATA "loss:\n  penalties: [{weight: 1}]\n", "t.yaml:6: loss.penalties[0].type: required key is missing",
            "forbidden_tokens");
    refused("", "t.yaml: base_model: required key is missing", NULL);
    refused("base_model: \"\"\noutput_dir: o\n" DATA, "t.yaml:1: base_model: must not be empty", NULL);
}

/* ---- unknown keys ---- */

Test(recipe, unknown_key_suggests)
{
    char *path = source_path("tests/data/recipes/unknown_key.yaml");
    recipe *r = NULL;
    cr_expect_eq(recipe_load(path, NULL, 0, NULL, &r), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "unknown_key.yaml:6: train.learnig_rate: unknown key; did you mean 'learning_rate'?"),
              "%s", ds_errmsg());
    free(path);

    refused(HEAD DATA "train: {lora_r: 8}\n", "t.yaml:5: train.lora_r: unknown key; did you mean 'adapter.lora_r'?",
            NULL);
    refused(HEAD DATA "adpater: {lora_r: 8}\n", "t.yaml:5: adpater: unknown key; did you mean 'adapter'?", NULL);
    refused(HEAD DATA "seeed: 3\n", "seeed: unknown key; did you mean 'seed'?", NULL);
    refused(HEAD "data:\n  datasets: [{path: d, type: text, limt: 3}]\n",
            "data.datasets[0].limt: unknown key; did you mean 'limit'?", NULL);
    refused(HEAD DATA "eval: {befor_training: false}\n", "did you mean 'before_training'?", NULL);
    refused(HEAD DATA "train: {xyzzy: 1}\n", "t.yaml:5: train.xyzzy: unknown key", NULL);
    refused(HEAD DATA "every_steps: 5\n", "t.yaml:5: every_steps: unknown key; did you mean", NULL);
    refused(HEAD DATA "train.learning_rate: 1e-4\n", "train.learning_rate: unknown key (dotted names are for", NULL);
    /* a key of another loss module says so */
    refused(HEAD DATA "loss: {beta: 0.2}\n", "t.yaml:5: loss.beta: belongs to loss dpo, but loss.type is sft", NULL);
    refused(HEAD "data: {datasets: [{path: p, type: preference}]}\nloss: {type: dpo, betta: 0.2}\n",
            "loss.betta: unknown key; did you mean 'beta'?", NULL);
}

/* ---- YAML errors ---- */

Test(recipe, yaml_syntax_error_has_its_line)
{
    char *path = source_path("tests/data/recipes/bad_syntax.yaml");
    recipe *r = NULL;
    cr_expect_eq(recipe_load(path, NULL, 0, NULL, &r), DS_ECONFIG);
    char want[1024];
    snprintf(want, sizeof want, "%s:5: YAML syntax error:", path);
    cr_expect(strstr(ds_errmsg(), want), "'%s' lacks '%s'", ds_errmsg(), want);
    cr_expect(strstr(ds_errmsg(), "line 4"), "names where the list began: %s", ds_errmsg());
    free(path);

    refused(HEAD "train:\n  learning_rate: 1\n   max_steps: 3\n", "t.yaml:5: YAML syntax error", NULL);
    refused(HEAD "train:\n\tlearning_rate: 1\n", "t.yaml:4: YAML syntax error", NULL);
    refused(HEAD "x: \"unterminated\n", "YAML syntax error", NULL);
    refused(HEAD "base: &a {x: 1}\nother: *a\n", "t.yaml:4: YAML aliases (*a) are not supported", NULL);
    refused(HEAD DATA "---\nseed: 1\n", "t.yaml:5: a recipe is one YAML document", NULL);
    refused(HEAD "? [a, b]\n: c\n", "a key must be a plain name", NULL);
    refused(HEAD "bad: \xff\xfe\n", "t.yaml:3: YAML syntax error", NULL);
}

Test(recipe, duplicate_key)
{
    char *path = source_path("tests/data/recipes/duplicate.yaml");
    recipe *r = NULL;
    cr_expect_eq(recipe_load(path, NULL, 0, NULL, &r), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "duplicate.yaml:8: train.learning_rate: duplicate key (first set on line 6)"), "%s",
              ds_errmsg());
    free(path);
    refused(HEAD DATA "seed: 1\nseed: 2\n", "t.yaml:6: seed: duplicate key (first set on line 5)", NULL);
    refused(HEAD "data:\n  datasets: [{path: a, type: text, path: b}]\n", "data.datasets[0].path: duplicate key", NULL);
}

/* ---- overrides ---- */

Test(recipe, overrides_scalars_lists_null)
{
    const char *ov[] = {
        "train.learning_rate=1e-4",
        "seed=7",
        "adapter.lora_target_modules=[q_proj,k_proj]",
        "train.max_steps=null",
        "device=cpu",
        "data.datasets[0].limit=50",
        "quant.load_in_4bit=true",
        "eval.datasets=[{path: v.jsonl, type: mcq}]",
    };
    recipe *r = parse_ok(HEAD DATA "train: {max_steps: 10, learning_rate: 3e-4}\n", ov, 8);
    cr_expect(r->train.learning_rate == 1e-4, "the command line wins over the file");
    cr_expect_eq(r->seed, 7);
    cr_assert_eq(r->adapter.lora_target_modules.n, 2);
    cr_expect_str_eq(r->adapter.lora_target_modules.items[1], "k_proj");
    cr_expect_eq(r->train.max_steps, -1, "max_steps=null clears the file's 10");
    cr_expect_str_eq(r->device, "cpu");
    cr_expect_eq(r->data.datasets[0].limit, 50);
    cr_expect(r->quant.load_in_4bit);
    cr_assert_eq(r->eval.n_datasets, 1);
    cr_expect_str_eq(r->eval.datasets[0].mcq_format, "letters");
    cr_expect_eq(r->eval.datasets[0].line, 0, "no file line for a command-line entry");
    recipe_free(r);
}

Test(recipe, overrides_loss_module_keys)
{
    const char *ov[] = {"loss.type=dpo", "loss.beta=0.2", "loss.loss_type=hinge", "data.datasets[0].type=preference",
                        "loss.penalties=[{type: forbidden_tokens, ids: [1]}]", "loss.penalties[0].weight=0.25"};
    recipe *r = parse_ok(HEAD DATA, ov, 6);
    cr_expect_str_eq(r->loss.main.module->name, "dpo");
    cr_expect(cfg_double(&r->loss.main, "beta") == 0.2);
    cr_expect_str_eq(cfg_string(&r->loss.main, "loss_type"), "hinge");
    cr_assert_eq(r->loss.n_penalties, 1);
    cr_expect(cfg_double(&r->loss.penalties[0], "weight") == 0.25);
    recipe_free(r);
}

Test(recipe, overrides_are_checked)
{
    const char *unknown[] = {"train.max_stepz=10"};
    refused_ov(HEAD DATA, unknown, 1, "command line: train.max_stepz: unknown key; did you mean 'max_steps'?", NULL);
    const char *unknown_top[] = {"learning_rat=1"};
    refused_ov(HEAD DATA, unknown_top, 1, "command line: learning_rat: unknown key; did you mean 'train.learning_rate'?",
               NULL);
    const char *bad_type[] = {"train.learning_rate=fast"};
    refused_ov(HEAD DATA, bad_type, 1, "command line: train.learning_rate: expected a number, got 'fast'", NULL);
    const char *range[] = {"adapter.lora_r=0"};
    refused_ov(HEAD DATA, range, 1, "command line: adapter.lora_r: '0' is out of range", NULL);
    const char *no_eq[] = {"train.learning_rate"};
    refused_ov(HEAD DATA, no_eq, 1, "command line: 'train.learning_rate': expected key=value", NULL);
    const char *bad_yaml[] = {"adapter.lora_target_modules=[q_proj"};
    refused_ov(HEAD DATA, bad_yaml, 1, "command line: 'adapter.lora_target_modules=[q_proj': YAML syntax error", NULL);
    const char *no_entry[] = {"data.datasets[3].limit=5"};
    refused_ov(HEAD DATA, no_entry, 1, "command line: data.datasets[3]: there is no such entry", NULL);
    const char *into_scalar[] = {"base_model.x=5"};
    refused_ov(HEAD DATA, into_scalar, 1, "command line: base_model: is not a mapping", NULL);
    const char *new_mapping[] = {"seed.x=5"};
    refused_ov(HEAD DATA, new_mapping, 1, "command line: seed: expected an integer, got a mapping", NULL);
    const char *loss_key[] = {"loss.beta=0.3"};
    refused_ov(HEAD DATA, loss_key, 1, "command line: loss.beta: belongs to loss dpo, but loss.type is sft", NULL);
    const char *empty_key[] = {"=3"};
    refused_ov(HEAD DATA, empty_key, 1, "expected key=value", NULL);
}

/* ---- aliases ---- */

Test(recipe, aliases_with_notices)
{
    char *path = source_path("tests/data/recipes/aliases.yaml");
    char *buf = NULL;
    size_t len = 0;
    FILE *notes = open_memstream(&buf, &len);
    recipe *r = NULL;
    int rc = recipe_load(path, NULL, 0, notes, &r);
    fclose(notes);
    cr_assert_eq(rc, DS_OK, "%s", ds_errmsg());
    cr_expect_eq(r->adapter.lora_r, 8);
    cr_assert_eq(r->adapter.lora_target_modules.n, 2);
    cr_expect_str_eq(r->adapter.lora_target_modules.items[0], "q_proj");
    cr_expect_str_eq(r->adapter.lora_target_modules.items[1], "k_proj");
    cr_expect_eq(r->data.sequence_len, 512);
    cr_expect(r->train.num_epochs == 3.0);
    cr_expect(r->train.learning_rate == 1e-5);
    cr_expect_eq(r->train.micro_batch_size, 2);
    cr_assert_eq(r->data.n_datasets, 1);
    cr_expect_str_eq(r->data.datasets[0].type, "alpaca");
    cr_expect_str_eq(r->train.lr_scheduler, "linear");
    cr_expect(r->train.max_grad_norm == 0.5);

    char want[1024];
    snprintf(want, sizeof want, "%s:4: 'lora_rank' is read as adapter.lora_r\n", path);
    cr_expect(strstr(buf, want), "notices:\n%s\nlack: %s", buf, want);
    const char *more[] = {"'lora_target' is read as adapter.lora_target_modules",
                          "'cutoff_len' is read as data.sequence_len",
                          "'num_train_epochs' is read as train.num_epochs",
                          "'lr' is read as train.learning_rate",
                          "'micro_batch_size' is read as train.micro_batch_size",
                          "'datasets' is read as data.datasets",
                          ":14: 'lr_scheduler_type' is read as train.lr_scheduler",
                          ":15: 'clip_grad_norm' is read as train.max_grad_norm"};
    for (int i = 0; i < 8; i++) cr_expect(strstr(buf, more[i]), "notices:\n%s\nlack: %s", buf, more[i]);
    int lines = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n';
    cr_expect_eq(lines, 9, "one line per alias:\n%s", buf);
    free(buf);
    recipe_free(r);
    free(path);
}

Test(recipe, alias_rules)
{
    /* inside its own section, torchtune's batch_size */
    recipe *r = parse_ok(HEAD DATA "train: {batch_size: 6, epochs: 2}\neval: {batch_size: 3}\n", NULL, 0);
    cr_expect_eq(r->train.micro_batch_size, 6);
    cr_expect(r->train.num_epochs == 2.0);
    cr_expect_eq(r->eval.batch_size, 3, "eval.batch_size is a key of its own");
    cr_expect(strstr(g_notices, "t.yaml:5: 'batch_size' is read as train.micro_batch_size"), "%s", g_notices);
    cr_expect(!strstr(g_notices, "t.yaml:6"), "no notice for eval.batch_size: %s", g_notices);
    recipe_free(r);

    /* an alias and its key together are refused */
    refused(HEAD DATA "lora_rank: 8\nadapter: {lora_r: 4}\n",
            "t.yaml:5: lora_rank: is read as adapter.lora_r, which line 6 sets too", NULL);
    refused(HEAD DATA "cutoff_len: 512\nmax_seq_len: 256\n", "t.yaml:6: max_seq_len: is read as data.sequence_len", NULL);

    /* an override on an alias, and an override replacing an aliased value */
    const char *ov[] = {"lora_rank=4", "train.lr=5e-5"};
    r = parse_ok(HEAD DATA "lora_rank: 8\n", ov, 2);
    cr_expect_eq(r->adapter.lora_r, 4);
    cr_expect(r->train.learning_rate == 5e-5);
    cr_expect(strstr(g_notices, "command line: 'lora_rank' is read as adapter.lora_r"), "%s", g_notices);
    cr_expect(strstr(g_notices, "command line: 'train.lr' is read as train.learning_rate"), "%s", g_notices);
    recipe_free(r);

    /* axolotl's flat layout */
    r = parse_ok("base_model: m\noutput_dir: o\nload_in_4bit: true\nlora_r: 32\nlora_alpha: 64\n"
                 "lora_target_modules: [q_proj]\nsequence_len: 1024\nsample_packing: true\n"
                 "gradient_accumulation_steps: 4\nwarmup_steps: 10\nval_set_size: 0.05\n"
                 "datasets:\n  - path: d.jsonl\n    type: alpaca\n",
                 NULL, 0);
    cr_expect(r->quant.load_in_4bit);
    cr_expect_eq(r->adapter.lora_r, 32);
    cr_expect(r->adapter.lora_alpha == 64.0);
    cr_expect_eq(r->data.sequence_len, 1024);
    cr_expect_eq(r->train.gradient_accumulation_steps, 4);
    cr_expect_eq(r->train.warmup_steps, 10);
    cr_expect(r->data.val_set_size == 0.05);
    recipe_free(r);
}

/* ---- loss modules ---- */

Test(recipe, unknown_loss_type_lists_registered)
{
    refused(HEAD DATA "loss: {type: kto}\n", "t.yaml:5: loss.type: unknown loss 'kto' (registered: sft, dpo)", NULL);
    refused(HEAD DATA "loss: {type: forbidden_tokens}\n", "loss.type: forbidden_tokens is a penalty", "loss.penalties");
    refused(HEAD DATA "loss:\n  penalties: [{type: dpo}]\n", "t.yaml:6: loss.penalties[0].type: dpo is a main loss",
            "penalties: forbidden_tokens");
    refused(HEAD DATA "loss:\n  penalties: [{type: nope}]\n", "unknown loss 'nope' (registered: forbidden_tokens)", NULL);
    refused(HEAD DATA "loss:\n  penalties: {type: forbidden_tokens}\n", "loss.penalties: expected a list", NULL);
    refused(HEAD DATA "loss:\n  penalties: [{type: forbidden_tokens, weight: -1}]\n",
            "loss.penalties[0].weight: '-1' is out of range", NULL);
    refused(HEAD DATA "loss:\n  penalties: [{type: forbidden_tokens, beta: 1}]\n",
            "loss.penalties[0].beta: belongs to loss dpo, not to the penalty forbidden_tokens", NULL);
}

Test(recipe, penalties_are_parsed_into_module_configs)
{
    char *path = source_path("tests/data/recipes/dpo.yaml");
    recipe *r = NULL;
    cr_assert_eq(recipe_load(path, NULL, 0, NULL, &r), DS_OK, "%s", ds_errmsg());
    cr_expect_str_eq(r->loss.main.module->name, "dpo");
    cr_expect(r->loss.main.module->needs & LOSS_PAIRED);
    cr_expect(cfg_double(&r->loss.main, "beta") == 0.25);
    cr_expect_str_eq(cfg_string(&r->loss.main, "loss_type"), "ipo");
    cr_expect_eq(r->loss.main.line, 8, "the line of the loss mapping");
    cr_assert_eq(r->loss.n_penalties, 1);
    const recipe_loss *p = &r->loss.penalties[0];
    cr_expect_str_eq(p->module->name, "forbidden_tokens");
    cr_expect(p->module->is_penalty);
    cr_expect(cfg_double(p, "weight") == 2.0);
    const opt_ints *ids = cfg_field(p, "ids");
    cr_assert_eq(ids->n, 2);
    cr_expect_eq(ids->items[0], 5);
    cr_expect_eq(ids->items[1], 7);
    const opt_strings *strs = cfg_field(p, "strings");
    cr_expect_eq(strs->n, 0, "strings default to []");
    cr_expect_eq(p->line, 12);
    recipe_free(r);
    free(path);
}

/* ---- checks across sections ---- */

Test(recipe, paired_loss_needs_preference_data)
{
    refused(HEAD DATA "loss: {type: dpo}\n",
            "t.yaml:4: data.datasets[0].type: loss dpo trains on preference pairs: every dataset must be type "
            "preference, not text",
            NULL);
    refused(HEAD "data:\n  datasets:\n    - {path: p, type: preference}\n    - {path: q, type: mcq}\nloss: {type: dpo}\n",
            "t.yaml:6: data.datasets[1].type: loss dpo trains on preference pairs", NULL);
    refused(HEAD "data:\n  datasets:\n    - {path: p, type: preference}\n",
            "t.yaml:5: data.datasets[0].type: preference data needs a paired loss (loss.type: dpo); loss.type is sft",
            NULL);
    refused(HEAD DATA "eval:\n  datasets: [{path: p, type: preference}]\n",
            "t.yaml:6: eval.datasets[0].type: preference datasets cannot be evaluated", NULL);
    /* the right combinations pass: dpo on pairs, eval on mcq and text */
    recipe *r = parse_ok(HEAD "data: {datasets: [{path: p, type: preference}]}\nloss: {type: dpo}\n"
                              "eval: {datasets: [{path: a, type: mcq}, {path: b, type: text}]}\n",
                         NULL, 0);
    cr_expect_eq(r->eval.n_datasets, 2);
    recipe_free(r);
    /* overriding the loss type re-checks the file's datasets */
    const char *ov[] = {"loss.type=dpo"};
    refused_ov(HEAD DATA, ov, 1, "t.yaml:4: data.datasets[0].type: loss dpo trains on preference pairs", NULL);
}

/* ---- write -> load ---- */

Test(recipe, write_then_load_is_identical)
{
    const char *files[] = {"tests/data/recipes/full.yaml", "tests/data/recipes/dpo.yaml",
                           "tests/data/recipes/minimal.yaml", "tests/data/recipes/aliases.yaml"};
    for (int i = 0; i < 4; i++) {
        char *path = source_path(files[i]);
        recipe *r = NULL;
        cr_assert_eq(recipe_load(path, NULL, 0, NULL, &r), DS_OK, "%s", ds_errmsg());
        expect_round_trip(r);
        recipe_free(r);
        free(path);
    }
}

Test(recipe, write_then_load_keeps_awkward_values)
{
    const char *ov[] = {"adapter.lora_target_modules=all-linear", "train.learning_rate=1.2345678901234567e-5",
                        "train.max_steps=123", "seed=0", "train.adam_epsilon=1e-300", "eval.limit=9"};
    recipe *r = parse_ok("base_model: \"models/with space/and: colon\"\n"
                         "tokenizer: 'true'\n"
                         "output_dir: \"2024-runs/#1 \\\"quoted\\\" \\\\ back\\tslash\"\n"
                         "adapter: {init_from: \"line\\nbreak \\u00e9\\u2028 \\x01\"}\n"
                         "data:\n  datasets:\n"
                         "    - {path: \"-dash.jsonl\", type: mcq, mcq_format: cloze, limit: 3}\n"
                         "    - {path: \"[brackets], {braces}.json\", type: messages}\n"
                         "    - {path: null.jsonl, type: prompt_completion}\n"
                         "    - {path: '~', type: text}\n"
                         "loss:\n  penalties:\n"
                         "    - {type: forbidden_tokens, strings: [\"a, b\", \"'\", \" \", \" lead\", yes, \"123\"], ids: [0]}\n",
                         ov, 6);
    cr_expect_str_eq(r->output_dir, "2024-runs/#1 \"quoted\" \\ back\tslash");
    cr_expect_str_eq(r->tokenizer, "true");
    expect_round_trip(r);
    recipe_free(r);
}

Test(recipe, write_is_atomic_and_reports_io_errors)
{
    recipe *r = parse_ok(HEAD DATA, NULL, 0);
    char *dir = tu_tmpdir();
    char *path = ds_path_join(dir, "r.yaml");
    cr_assert_eq(recipe_write(r, path), DS_OK, "%s", ds_errmsg());
    char *bad = ds_path_join(dir, "missing-folder/r.yaml");
    cr_expect_eq(recipe_write(r, bad), DS_EIO);
    cr_expect(!ds_exists(bad));
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = r.yaml", dir);
    cr_expect_eq(tu_run(cmd, NULL), 0, "only the final file is left");
    ds_remove_tree(dir);
    free(bad);
    free(path);
    free(dir);
    recipe_free(r);
}

/* ---- files and --help ---- */

Test(recipe, missing_file_is_no_input)
{
    recipe *r = NULL;
    cr_expect_eq(recipe_load("/nonexistent/recipe.yaml", NULL, 0, NULL, &r), DS_ENOINPUT);
    cr_expect(strstr(ds_errmsg(), "/nonexistent/recipe.yaml"), "%s", ds_errmsg());
    char *dir = source_path("tests/data/recipes");
    cr_expect_eq(recipe_load(dir, NULL, 0, NULL, &r), DS_ENOINPUT);
    cr_expect_null(r);
    free(dir);
}

Test(recipe, print_keys_lists_every_key)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    recipe_print_keys(f);
    fclose(f);
    const char *want[] = {"base_model: (required)", "train.learning_rate: 0.0002 - ", "adapter.lora_r: 16 - ",
                          "data.datasets[].type: (required)", "loss.beta: 0.1 - ", "loss.loss_type: sigmoid - ",
                          "loss.penalties[].weight: 1.0 - ", "save.merge_source: dequantized - ",
                          "lora_rank -> adapter.lora_r", "train.adam_epsilon: 1e-08 - "};
    for (int i = 0; i < 10; i++) cr_expect(strstr(buf, want[i]), "--help lacks '%s'", want[i]);
    /* every key of every table is there */
    for (const recipe_section *s = RECIPE_SECTIONS; s->name; s++)
        for (const opt_key *k = s->keys; k && k->name; k++) {
            char name[128];
            snprintf(name, sizeof name, "%s%s%s: ", s->name, *s->name ? "." : "", k->name);
            cr_expect(strstr(buf, name), "--help lacks '%s'", name);
        }
    free(buf);
}
