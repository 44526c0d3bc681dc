/* finetune/cli/commands.h - the ds-ft subcommands. Each takes the arguments
 * after its name and returns a DS_* status (the process exit code); on
 * failure the message is in ds_errmsg().
 *
 * Every command declares its options in one table (cli_spec), which both the
 * parser (cli_parse) and `ds-ft CMD --help` (cli_help) read, so the help
 * lists exactly what the parser accepts, with the defaults it uses. */
#ifndef DS_FINETUNE_COMMANDS_H
#define DS_FINETUNE_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* ---- option tables (cli_args.c) ---- */

typedef enum {
    ARG_FLAG,       /* --x: bool, false when absent */
    ARG_TEXT,       /* --x VALUE: const char *, NULL when absent */
    ARG_CHOICE,     /* --x VALUE, one of `choices`: const char *, `def` when absent */
    ARG_INT,        /* --x N, a whole number in [lo, hi]: long, `def` when absent */
    ARG_NUM,        /* --x X, a number in [lo, hi]: double, `def` when absent */
    ARG_MODEL,      /* --x DIR|ORG/NAME[@REV]: a model folder; a Hugging Face id is looked up in the
                       local Hub cache (data/hub/hub.h) and the field gets the snapshot folder: const char * */
    ARG_TOKENIZER,  /* the same for a tokenizer folder */
    ARG_FILES,      /* --x FILE...: the arguments after it up to the next option: cli_list */
} arg_kind;

typedef struct {
    const char **items;
    int n;
} cli_list;

typedef struct {
    const char *name;      /* "--max-new-tokens" */
    arg_kind kind;
    size_t offset;         /* of the field in the command's options struct */
    const char *meta;      /* what the value is, for the usage: "N", "DIR" */
    const char *def;       /* the default as --help shows it; for ARG_CHOICE, ARG_INT and ARG_NUM also the
                              value the field gets when the option is absent */
    double lo, hi;         /* ARG_INT, ARG_NUM: the accepted range */
    const char *choices;   /* ARG_CHOICE: "auto|cpu|cuda" */
    bool required;
    const char *help;      /* one line */
} cli_opt;

#define CLI_END {NULL, ARG_FLAG, 0, NULL, NULL, 0, 0, NULL, false, NULL}
/* Rows several commands share. */
#define CLI_MODEL(type, field, required)                                                                          \
    {"--model", ARG_MODEL, offsetof(type, field), "DIR|ORG/NAME[@REV]", NULL, 0, 0, NULL, required,              \
     "the base model: a folder, or a Hugging Face model id found in the local Hub cache"}
#define CLI_TOKENIZER(type, field, required, def, help)                                                          \
    {"--tokenizer", ARG_TOKENIZER, offsetof(type, field), "DIR|ORG/NAME[@REV]", def, 0, 0, NULL, required, help}
#define CLI_ADAPTER(type, field, help) {"--adapter", ARG_TEXT, offsetof(type, field), "DIR", NULL, 0, 0, NULL, false, help}
#define CLI_DEVICE(type, field)                                                                                   \
    {"--device", ARG_CHOICE, offsetof(type, field), NULL, "auto", 0, 0, "auto|cpu|cuda", false,                \
     "where to compute: auto = cuda when a GPU is present"}
#define CLI_4BIT(type, field)                                                                                     \
    {"--4bit", ARG_FLAG, offsetof(type, field), NULL, "off", 0, 0, NULL, false,                                   \
     "quantize the model's linear layers to NF4 while loading (as a QLoRA run does)"}
#define CLI_OUT(type, field, meta, help) {"--out", ARG_TEXT, offsetof(type, field), meta, NULL, 0, 0, NULL, true, help}
#define CLI_FORCE(type, field)                                                                                    \
    {"--force", ARG_FLAG, offsetof(type, field), NULL, "off", 0, 0, NULL, false,                                  \
     "replace an existing --out (the old one is removed only once the new one is complete)"}

typedef struct {
    const char *name;      /* "merge", "bench train" */
    const char *args;      /* the positional arguments, for the usage: "RECIPE [key=value ...]"; "" for none */
    int min_args, max_args;/* how many positional arguments (max_args -1: any number) */
    const char *usage;     /* the usage line where the table alone does not tell it (several forms);
                              NULL: made from args and the table */
    const char *summary;   /* one line: what it does */
    const cli_opt *opts;   /* ends with CLI_END */
    void (*more_help)(FILE *f);   /* printed after the options, or NULL */
} cli_spec;

typedef struct {
    char **args;           /* the positional arguments, in order (pointers into argv) */
    int nargs;
    unsigned long long given;   /* bit i: opts[i] was on the command line */
    char **owned;          /* what the parse allocated (model folders found in the Hub cache) */
    int nowned;
} cli_parsed;

/* Returned by cli_parse when it printed the help (--help or -h anywhere among
 * the options): the command returns it as it is and main exits 0. */
enum { CLI_HELP = -1 };

/* cli_parse() : fill the options struct `opts` from argv by the table: every
 * field its default first, then each option given. Unknown options, missing
 * values, values out of range or not among the choices, options given twice,
 * missing required options and a wrong number of positional arguments are
 * DS_EUSAGE naming the option; a model or tokenizer found nowhere is
 * DS_ENOINPUT naming the option, the places looked and the download command.
 * @return DS_OK, CLI_HELP, or the failure; free p with cli_parsed_free()
 * either way. */
int cli_parse(const cli_spec *s, int argc, char **argv, void *opts, cli_parsed *p);
/* cli_given() : whether option `name` of the table was on the command line. */
bool cli_given(const cli_spec *s, const cli_parsed *p, const char *name);
void cli_parsed_free(cli_parsed *p);
/* cli_help() : usage, summary, every option with its default and help line. */
void cli_help(const cli_spec *s, FILE *f);
/* cli_usage() : the one-line usage (after "ds-ft "), into buf. */
const char *cli_usage(const cli_spec *s, char *buf, size_t n);
/* cli_output() : an --out PATH the command may write: not one of its inputs
 * (NULL-terminated; DS_EUSAGE), and an existing PATH is DS_EEXISTS ("exists;
 * pass --force to replace") unless force. */
int cli_output(const cli_spec *s, const char *out, bool force, const char *const *inputs);
/* cli_fail() : DS_EUSAGE "CMD: MESSAGE (usage: ds-ft USAGE)". */
int cli_fail(const cli_spec *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the commands ---- */

typedef struct ds_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const cli_spec *spec;
} ds_command;

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_clean(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
extern const cli_spec TRAIN_SPEC, EVAL_SPEC, MERGE_SPEC, EXPORT_SPEC, IMPORT_SPEC, QUANTIZE_SPEC, GENERATE_SPEC,
    TOKENIZE_SPEC, INSPECT_SPEC, DUMP_SPEC, VALIDATE_SPEC, BENCH_SPEC, REPORT_SPEC, CLEAN_SPEC, DOCTOR_SPEC;

/* `ds-ft export --format gguf|gguf-lora ...` (cmd_export_gguf.c; its options
 * are EXPORT_SPEC's) and `ds-ft inspect FILE.gguf` (cmd_inspect_gguf.c). */
typedef struct {
    const char *adapter, *out, *format, *model, *type, *source, *pre;
    bool force;
} export_opts;
int cmd_export_gguf(const export_opts *o);
bool is_gguf_file(const char *path);
int inspect_gguf(const char *path);

/* The table main() dispatches on (commands.c), and bench's subcommands (cmd_bench.c). */
extern const ds_command DS_COMMANDS[];
extern const ds_command DS_BENCH_COMMANDS[];
const ds_command *ds_find_command(const ds_command *table, const char *name);

/* RECIPE [key=value ...] -> a loaded recipe (cmd_train.c): the positional
 * arguments of train, eval, validate and doctor. */
#include "finetune/recipe/recipe.h"
int recipe_from_args(const cli_spec *s, const cli_parsed *p, recipe **r);

#endif
