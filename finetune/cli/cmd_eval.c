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
#include "core/mem.h"
#include "core/status.h"
#include "data/json_util.h"
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
    const char *seq_key;   /* who set data.sequence_len ("--seq", "data.sequence_len"), NULL: the
                              default, cut to the model's context */
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
    data_options data = j->data;
    data.vocab_size = x.model->cfg.vocab_size;
    int context = model_config_context(&x.model->cfg);
    if (data.sequence_len > context && !j->seq_key) data.sequence_len = context;
    if (data.sequence_len > context) {
        rc = ds_fail(!strcmp(j->seq_key, "--seq") ? DS_EUSAGE : DS_ECONFIG,
                     "eval: %s %d is longer than the %d positions of %s (max_position_embeddings%s)", j->seq_key,
                     data.sequence_len, context, j->model, context > x.model->cfg.max_position ? " with its rope scaling" : "");
        ds_run_close(&x);
        return rc;
    }
    engine_opts eo = {.max_B = j->max_rows, .max_T = data.sequence_len};
    rc = ds_run_start(&x, &eo);
    engine *e = x.eng;
    lora_adapter *ad = x.adapter;
    json_alloc_reset();   /* the results are built with unchecked jansson calls: see json_util.h */
    json_t *all = json_array();
    for (int i = 0; !rc && i < nsrc; i++) {
        dataset d;
        example_kind kind = !strcmp(src[i].type, "mcq") ? EX_MCQ : EX_SFT;
        rc = dataset_load(&src[i], 1, kind, x.tok, &data, &d);
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
        if (json_alloc_failed()) rc = DS_ENOMEM;
        else printf("%s\n", text);
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
    bool typed = false;
    for (int i = 0; colon && types[i] && !typed; i++) typed = !strcmp(colon + 1, types[i]);
    *path = typed ? ds_strdupf("%.*s", (int)(colon - arg), arg) : ds_strdup(arg);
    *type = *path ? ds_strdup(typed ? colon + 1 : "mcq") : NULL;
    return *type ? DS_OK : DS_ENOMEM;
}

typedef struct {
    const char *model, *data, *adapter, *tokenizer, *device, *chat_template, *mcq_format, *answer_base;
    long seq, limit;
    bool four;
} eval_opts;

static const cli_opt EVAL_OPTS[] = {
    CLI_MODEL(eval_opts, model, false),
    {"--data", ARG_TEXT, offsetof(eval_opts, data), "FILE[:TYPE]", NULL, 0, 0, NULL, false,
     "with --model: the dataset; TYPE mcq (accuracy) or alpaca|messages|prompt_completion|text (loss); "
     "default mcq"},
    CLI_ADAPTER(eval_opts, adapter, "the adapter to compare with the base model (RECIPE: default OUTPUT_DIR/adapter)"),
    CLI_TOKENIZER(eval_opts, tokenizer, false, "the model's", "with --model: the tokenizer folder"),
    CLI_DEVICE(eval_opts, device),
    CLI_4BIT(eval_opts, four),
    {"--chat-template", ARG_CHOICE, offsetof(eval_opts, chat_template), NULL, "plain", 0, 0, CHAT_TEMPLATE_CHOICES,
     false, "with --model: how records become text"},
    {"--seq", ARG_INT, offsetof(eval_opts, seq), "N", "2048", 8, 1 << 20, NULL, false,
     "with --model: the longest example in tokens (default: at most the model's context)"},
    {"--limit", ARG_INT, offsetof(eval_opts, limit), "N", "-1", -1, LONG_MAX, NULL, false,
     "with --model: at most N examples; -1 = all"},
    {"--mcq-format", ARG_CHOICE, offsetof(eval_opts, mcq_format), NULL, "letters", 0, 0, "letters|cloze", false,
     "with --model: letters (choices listed, the letter scored) or cloze (each choice's text scored)"},
    {"--answer-base", ARG_CHOICE, offsetof(eval_opts, answer_base), NULL, "auto", 0, 0, "auto|0|1", false,
     "with --model: how integer answers count (MedMCQA's cop: auto = told from the file)"},
    CLI_END,
};

const cli_spec EVAL_SPEC = {
    "eval", "", 0, -1,
    "RECIPE [key=value ...] [--adapter DIR] | --model DIR|ID [--adapter DIR] --data FILE[:TYPE] [--tokenizer DIR|ID] "
    "[--mcq-format letters|cloze] [--answer-base auto|0|1] [--chat-template NAME] [--seq N] [--limit N] [--4bit] "
    "[--device D]",
    "domain accuracy (multiple choice), loss and perplexity, with and without an adapter", EVAL_OPTS, NULL};

/* The lines the dataset loader says (how MedMCQA's answers are numbered). */
static void say_stderr(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "eval: %s\n", line);
}

static int eval_files(const eval_opts *o, bool seq_given)
{
    eval_job j = {.model = o->model, .tokenizer = o->tokenizer, .adapter = o->adapter, .double_quant = true,
                  .load_in_4bit = o->four, .limit = o->limit, .max_rows = 16,
                  .data = {.chat_template = o->chat_template, .sequence_len = (int)o->seq, .say = say_stderr},
                  .seq_key = seq_given ? "--seq" : NULL};
    j.data.template_dir = j.tokenizer ? j.tokenizer : j.model;
    int rc = be_kind_parse(o->device, &j.device);
    data_source src = {.limit = -1, .mcq_format = (char *)o->mcq_format, .answer_base = (char *)o->answer_base};
    if (!rc) rc = split_data_arg(o->data, &src.path, &src.type);
    if (!rc && !ds_exists(src.path)) rc = ds_fail(DS_ENOINPUT, "eval: --data %s: no such file", src.path);
    if (!rc) rc = run_job(&j, &src, 1);
    free(src.path);
    free(src.type);
    return rc;
}

/* RECIPE [key=value ...] [--adapter DIR]: the recipe's eval datasets. */
static int eval_recipe(const cli_parsed *p, const eval_opts *o)
{
    for (int i = 0; EVAL_OPTS[i].name; i++)
        if ((p->given >> i & 1) && strcmp(EVAL_OPTS[i].name, "--adapter"))
            return cli_fail(&EVAL_SPEC, "%s belongs to the --model form; with a RECIPE only --adapter", EVAL_OPTS[i].name);
    recipe *r = NULL;
    int rc = recipe_from_args(&EVAL_SPEC, p, &r);
    if (!rc) rc = recipe_resolve_inputs(r, stderr);
    const char *adapter = o->adapter;
    char *default_adapter = NULL;
    if (!rc && !adapter) {
        default_adapter = ds_path_join(r->output_dir, "adapter");
        if (!default_adapter) rc = DS_ENOMEM;
        else if (ds_exists(default_adapter)) adapter = default_adapter;
    }
    if (!rc && r->eval.n_datasets == 0) rc = ds_fail(DS_ECONFIG, "%s: eval.datasets is empty", r->file);
    if (!rc) {
        eval_job j = {.model = r->base_model, .tokenizer = r->tokenizer, .adapter = adapter,
                      .device = r->plan.device, .load_in_4bit = r->quant.load_in_4bit,
                      .double_quant = r->quant.double_quant, .limit = r->eval.limit, .max_rows = r->plan.eval_rows,
                      .data = r->plan.data, .seq_key = "data.sequence_len"};
        j.data.say = say_stderr;
        rc = run_job(&j, r->eval.datasets, r->eval.n_datasets);
    }
    free(default_adapter);
    recipe_free(r);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    eval_opts o;
    cli_parsed p;
    int rc = cli_parse(&EVAL_SPEC, argc, argv, &o, &p);
    if (!rc && p.nargs > 0) rc = eval_recipe(&p, &o);
    else if (!rc && !o.model) rc = cli_fail(&EVAL_SPEC, "give a RECIPE, or --model DIR and --data FILE");
    else if (!rc && !o.data) rc = cli_fail(&EVAL_SPEC, "missing --data FILE[:TYPE]");
    else if (!rc) rc = eval_files(&o, cli_given(&EVAL_SPEC, &p, "--seq"));
    cli_parsed_free(&p);
    return rc;
}
