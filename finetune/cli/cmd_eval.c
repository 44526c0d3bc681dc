/* finetune/cli/cmd_eval.c - `ds-ft eval`: domain accuracy (multiple choice),
 * loss and perplexity of a model with and without an adapter.
 *
 *   ds-ft eval RECIPE [key=value ...] [--adapter DIR]
 *       the recipe's eval.datasets; the adapter defaults to OUTPUT_DIR/adapter
 *   ds-ft eval --model DIR [--adapter DIR] --data FILE[:type] [--mcq-format letters|cloze]
 *       [--chat-template NAME|auto] [--seq N] [--limit N] [--4bit] [--device auto|cpu|cuda]
 * Prints one line per dataset and model, and a JSON document on stdout. */
#include "commands.h"
#include "finetune/run/eval.h"

#include "core/files.h"
#include "core/status.h"
#include "data/tokenizer/tokenizer.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *tokenizer, *adapter, *device;
    bool load_in_4bit, double_quant;
    data_options data;
    long limit;
    int max_rows;
} eval_job;

static json_t *result_json(const dataset *d, const eval_result *r)
{
    if (d->kind == EX_MCQ)
        return json_pack("{s:f, s:f, s:I}", "acc", r->acc, "acc_norm", r->acc_norm, "n", (json_int_t)r->n);
    return json_pack("{s:f, s:f, s:I, s:I}", "loss", r->loss, "perplexity", r->perplexity, "tokens",
                     (json_int_t)r->tokens, "n", (json_int_t)r->n);
}

static void print_line(const char *name, const char *model, const dataset *d, const eval_result *r)
{
    if (d->kind == EX_MCQ)
        fprintf(stderr, "eval %-24s %-7s acc %.4f  acc_norm %.4f  (n=%ld)\n", name, model, r->acc, r->acc_norm, r->n);
    else
        fprintf(stderr, "eval %-24s %-7s loss %.4f  perplexity %.3f  (%ld tokens)\n", name, model, r->loss,
                r->perplexity, r->tokens);
}

static int run_job(const eval_job *j, const data_source *src, int nsrc)
{
    backend *be = NULL;
    tokenizer *tok = NULL;
    llama_model *m = NULL;
    lora_adapter *ad = NULL;
    engine *e = NULL;
    model_load_opts lo = {.load_in_4bit = j->load_in_4bit, .double_quant = j->double_quant};
    int rc = be_open_named(j->device, &be);
    if (!rc) rc = tok_load(j->tokenizer ? j->tokenizer : j->model, &tok);
    if (!rc) rc = model_load(j->model, &lo, &m);
    if (!rc) tok_set_default_ids(tok, m->cfg.bos_id, m->cfg.eos_id, m->cfg.pad_id);
    if (!rc && j->adapter) rc = lora_load_peft(j->adapter, &m->cfg, &ad);
    if (!rc) {
        engine_opts eo = {.max_B = j->max_rows, .max_T = j->data.sequence_len, .adapter = ad};
        rc = engine_create(be, m, &eo, &e);
    }
    json_t *all = json_array();
    for (int i = 0; !rc && i < nsrc; i++) {
        dataset d;
        example_kind kind = !strcmp(src[i].type, "mcq") ? EX_MCQ : EX_SFT;
        rc = dataset_load(&src[i], 1, kind, tok, &j->data, &d);
        if (rc) break;
        json_t *o = json_pack("{s:s, s:s}", "dataset", src[i].path, "type", kind == EX_MCQ ? "mcq" : "loss");
        for (int with = 0; !rc && with <= (ad != NULL); with++) {
            eval_result r;
            rc = kind == EX_MCQ ? eval_mcq(e, &d, with, j->limit, j->max_rows, &r)
                                : eval_loss(e, &d, with, j->limit, j->max_rows, &r);
            if (rc) break;
            print_line(src[i].path, with ? "adapter" : "base", &d, &r);
            json_object_set_new(o, with ? "adapter" : "base", result_json(&d, &r));
            eval_result_free(&r);
        }
        json_array_append_new(all, o);
        dataset_free(&d);
    }
    if (!rc) {
        char *text = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        printf("%s\n", text);
        free(text);
    }
    json_decref(all);
    engine_free(e);
    lora_free(ad);
    model_free(m);
    tok_free(tok);
    be_close(be);
    return rc;
}

/* "file.jsonl:mcq" -> path and type (default mcq). */
static int split_data_arg(const char *arg, char **path, char **type)
{
    const char *colon = strrchr(arg, ':');
    static const char *const types[] = {"alpaca", "messages", "prompt_completion", "text", "mcq", NULL};
    if (colon) {
        for (int i = 0; types[i]; i++)
            if (!strcmp(colon + 1, types[i])) {
                *path = strndup(arg, (size_t)(colon - arg));
                *type = strdup(colon + 1);
                return DS_OK;
            }
    }
    *path = strdup(arg);
    *type = strdup("mcq");
    return DS_OK;
}

static int eval_files(int argc, char **argv)
{
    ds_args a;
    args_init(&a, argc, argv);
    eval_job j = {.double_quant = true, .limit = -1, .max_rows = 16,
                  .data = {.chat_template = "plain", .sequence_len = 2048}};
    const char *data, *v;
    int rc = arg_require(&a, "--model", "eval", &j.model);
    if (!rc) rc = arg_require(&a, "--data", "eval", &data);
    j.adapter = arg_value(&a, "--adapter");
    j.tokenizer = arg_value(&a, "--tokenizer");
    j.device = arg_value(&a, "--device");
    j.load_in_4bit = arg_flag(&a, "--4bit");
    if ((v = arg_value(&a, "--chat-template"))) j.data.chat_template = v;
    j.data.template_dir = j.tokenizer ? j.tokenizer : j.model;
    long seq = j.data.sequence_len;
    if (!rc) rc = arg_int(&a, "--seq", "eval", 8, 1 << 20, &seq);
    if (!rc) rc = arg_int(&a, "--limit", "eval", -1, LONG_MAX, &j.limit);
    j.data.sequence_len = (int)seq;
    const char *format = arg_value(&a, "--mcq-format");
    if (!rc) rc = arg_check_all(&a, "eval");
    if (rc) return rc;
    data_source src = {.limit = -1, .mcq_format = (char *)(format ? format : "letters")};
    split_data_arg(data, &src.path, &src.type);
    if (!ds_exists(src.path)) rc = ds_fail(DS_ENOINPUT, "eval: %s: no such file", src.path);
    if (!rc) rc = run_job(&j, &src, 1);
    free(src.path);
    free(src.type);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    bool recipe_form = argc > 0 && argv[0][0] != '-';
    if (!recipe_form) return eval_files(argc, argv);
    /* RECIPE [key=value ...] [--adapter DIR] */
    const char *adapter = NULL;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int n = 0, rc = DS_OK;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--adapter") && i + 1 < argc) adapter = argv[++i];
        else rest[n++] = argv[i];
    }
    recipe *r = NULL;
    rc = recipe_from_args(n, rest, "eval", false, &r, NULL);
    free(rest);
    char *default_adapter = NULL;
    if (!rc && !adapter) {
        default_adapter = ds_path_join(r->output_dir, "adapter");
        if (ds_exists(default_adapter)) adapter = default_adapter;
    }
    if (!rc && r->eval.n_datasets == 0) rc = ds_fail(DS_ECONFIG, "%s: eval.datasets is empty", r->file);
    if (!rc) {
        eval_job j = {.model = r->base_model, .tokenizer = r->tokenizer, .adapter = adapter, .device = r->device,
                      .load_in_4bit = r->quant.load_in_4bit, .double_quant = r->quant.double_quant,
                      .limit = r->eval.limit, .max_rows = (int)r->eval.batch_size,
                      .data = {.chat_template = r->data.chat_template,
                               .template_dir = r->tokenizer ? r->tokenizer : r->base_model,
                               .sequence_len = (int)r->data.sequence_len,
                               .train_on_inputs = r->data.train_on_inputs, .skip_bad_lines = r->data.skip_bad_lines}};
        rc = run_job(&j, r->eval.datasets, r->eval.n_datasets);
    }
    free(default_adapter);
    recipe_free(r);
    return rc;
}
