/* finetune/cli/commands.h - the ds-ft subcommands. Each takes the arguments
 * after its name and returns a DS_* status (the process exit code); on
 * failure the message is in ds_errmsg(). */
#ifndef DS_FINETUNE_COMMANDS_H
#define DS_FINETUNE_COMMANDS_H

#include <stdbool.h>
#include <stdio.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;     /* one line: arguments */
    const char *summary;   /* one line: what it does */
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
/* `ds-ft export --format gguf|gguf-lora ...` (cmd_export_gguf.c) and
 * `ds-ft inspect FILE.gguf` (cmd_inspect_gguf.c). */
int cmd_export_gguf(int argc, char **argv, const char *format);
bool is_gguf_file(const char *path);
int inspect_gguf(const char *path);
int cmd_report(int argc, char **argv);
int cmd_clean(int argc, char **argv);
void cmd_clean_help(FILE *f);

/* The table main() dispatches on (commands.c). */
extern const ds_command DS_COMMANDS[];
const ds_command *ds_find_command(const char *name);
/* What `ds-ft CMD --help` prints after the usage line: the options and
 * defaults of the commands that have more than the usage says. */
void ds_command_help(const ds_command *c, FILE *f);

/* Argument helpers for the commands: `--key value` pairs.
 * arg_value returns the value after `--key` (NULL if absent) and marks both
 * as used; arg_flag marks and returns a bare `--flag`. arg_check_all fails
 * with DS_EUSAGE naming the first argument nothing used. */
typedef struct {
    int argc;
    char **argv;
    unsigned char used[256];
} ds_args;
void args_init(ds_args *a, int argc, char **argv);
const char *arg_value(ds_args *a, const char *key);
int arg_flag(ds_args *a, const char *key);
int arg_require(ds_args *a, const char *key, const char *cmd, const char **out);
/* `--key N`: *out keeps its value when the option is absent; a value that is
 * not a whole number (or a number) in [lo, hi] is DS_EUSAGE naming the option. */
int arg_int(ds_args *a, const char *key, const char *cmd, long lo, long hi, long *out);
int arg_double(ds_args *a, const char *key, const char *cmd, double lo, double hi, double *out);
int arg_check_all(const ds_args *a, const char *cmd);
/* arg_output() : the required `--out PATH` and `--force`, read last: every
 * argument must have been used (arg_check_all), PATH may not be one of the
 * inputs (NULL-terminated) the command reads, and an existing PATH is
 * DS_EEXISTS ("exists; pass --force to replace") unless --force. */
int arg_output(ds_args *a, const char *cmd, const char *const *inputs, const char **out);

/* RECIPE [key=value ...] [--resume | --overwrite] -> a loaded recipe (cmd_train.c);
 * train_flags: --resume and --overwrite are allowed (start gets which). */
#include "finetune/recipe/recipe.h"
#include "finetune/train/train.h"
int recipe_from_args(int argc, char **argv, const char *cmd, bool train_flags, recipe **r, train_start *start);

#endif
