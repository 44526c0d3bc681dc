/* finetune/cli/cmd_eval.c - `ds-ft eval`: domain accuracy (multiple choice),
 * loss and perplexity of a model with and without an adapter.
 *
 *   ds-ft eval RECIPE [key=value ...] [--adapter DIR]
 *       the recipe's eval.datasets; the adapter defaults to OUTPUT_DIR/adapter
 *   ds-ft eval --model DIR [--adapter DIR] --data FILE[:type] [--mcq-format letters|cloze]
 *       [--chat-template NAME|auto] [--seq N] [--limit N] [--4bit] [--device auto|cpu|cuda]
 * Prints one line per dataset and model, and a JSON document on stdout. */
#include "commands.h"
#include "finetune/run/run.h"

#include "core/files.h"
#include "core/status.h"
#include "data/tokenizer/tokenizer.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *tokenizer, *adapter;
    be_kind device;
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
    ds_run x;
    ds_run_opts ro = {.device = j->device, .model_dir = j->model, .tokenizer_dir = j->tokenizer,
                      .adapter_dir = j->adapter, .load_in_4bit = j->load_in_4bit, .double_quant = j->double_quant};
    int rc = ds_run_open(&ro, &x);
    if (rc) return rc;
    engine_opts eo = {.max_B = j->max_rows, .max_T = j->data.sequence_len};
    rc = ds_run_start(&x, &eo);
    engine *e = x.eng;
    lora_adapter *ad = x.adapter;
    json_t *all = json_array();
    for (int i = 0; !rc && i < nsrc; i++) {
        dataset d;
        example_kind kind = !strcmp(src[i].type, "mcq") ? EX_MCQ : EX_SFT;
        rc = dataset_load(&src[i], 1, kind, x.tok, &j->data, &d);
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
    ds_run_close(&x);
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
    const char *data = NULL, *v;
    int rc = arg_require(&a, "--model", "eval", &j.model);
    if (!rc) rc = arg_require(&a, "--data", "eval", &data);
    if (rc) return rc;
    j.adapter = arg_value(&a, "--adapter");
    j.tokenizer = arg_value(&a, "--tokenizer");
    rc = be_kind_parse(arg_value(&a, "--device"), &j.device);
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
        eval_job j = {.model = r->base_model, .tokenizer = r->tokenizer, .adapter = adapter,
                      .device = r->plan.device, .load_in_4bit = r->quant.load_in_4bit,
                      .double_quant = r->quant.double_quant, .limit = r->eval.limit, .max_rows = r->plan.eval_rows,
                      .data = r->plan.data};
        rc = run_job(&j, r->eval.datasets, r->eval.n_datasets);
    }
    free(default_adapter);
    recipe_free(r);
    return rc;
}
