/* tests/test_recipe.c - the recipe loader: defaults, every kind of value, ranges,
 * choices, required and unknown keys, YAML errors with their lines (the rest is in
 * test_recipe_overrides.c; helpers in recipe_helpers.h). */
#include "recipe_helpers.h"

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
    refused(HEAD DATA "train: {keep_projections: true}\n",
            "t.yaml:5: train.keep_projections: true adds each layer's q, k, v and residual to the kept attention", NULL);
    refused(HEAD DATA "train: {keep_attention: auto, keep_projections: true}\n", "it needs train.keep_attention: true",
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

/* every target name: the seven Llama linears, then DeepSeek's MLA projections (each model adapts those it has) */
Test(recipe, all_linear_means_every_target_name)
{
    static const char *const all[] = {"q_proj",   "k_proj",   "v_proj",   "o_proj",             "gate_proj", "up_proj",
                                      "down_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj"};
    const char *texts[] = {
        HEAD DATA "adapter: {lora_target_modules: all-linear}\n",
        HEAD DATA "adapter: {lora_target_modules: [all-linear]}\n",
    };
    for (int t = 0; t < 2; t++) {
        recipe *r = parse_ok(texts[t], NULL, 0);
        cr_assert_eq(r->adapter.lora_target_modules.n, 11);
        for (int i = 0; i < 11; i++) cr_expect_str_eq(r->adapter.lora_target_modules.items[i], all[i]);
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
