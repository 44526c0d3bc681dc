/* tests/test_recipe_overrides.c - the recipe loader, continued: overrides, aliases, loss
 * modules and their penalties, checks across sections, write -> load giving the same
 * recipe, files and --help. Helpers in recipe_helpers.h. */
#include "recipe_helpers.h"

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
