#include "commands.h"

#include "core/files.h"
#include "core/status.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const ds_command DS_COMMANDS[] = {
    {"train", cmd_train, "RECIPE [key=value ...] [--resume | --overwrite]", "train an adapter as the recipe says"},
    {"eval", cmd_eval, "RECIPE | --model DIR [--adapter DIR] --data FILE[:type]",
     "domain accuracy, loss and perplexity"},
    {"merge", cmd_merge, "--model DIR --adapter DIR --out DIR [--source dequantized|original] [--force]",
     "merge an adapter into the base weights (Hugging Face model folder)"},
    {"export", cmd_export,
     "--adapter DIR --out FILE [--force] | --format gguf --model DIR [--adapter DIR] --out FILE.gguf [--type TYPE] [--force] | "
     "--format gguf-lora --adapter DIR --model DIR --out FILE.gguf",
     "pack an adapter into one compressed, checksummed file, or write GGUF for llama.cpp / Ollama"},
    {"import", cmd_import, "--in FILE --out DIR [--force]", "unpack and verify an exported adapter"},
    {"quantize", cmd_quantize, "--model DIR --out DIR [--force]", "write a bitsandbytes-format 4-bit checkpoint"},
    {"generate", cmd_generate, "--model DIR [--adapter DIR] --prompt TEXT", "generate text"},
    {"tokenize", cmd_tokenize, "--tokenizer DIR (--text TEXT | --jsonl FILE) [--special]",
     "token ids as JSON, one line per input"},
    {"inspect", cmd_inspect, "PATH", "describe a model folder, adapter, checkpoint or safetensors file"},
    {"dump", cmd_dump, "--model DIR [--adapter DIR] --input FILE --out FILE [--force]",
     "run the engine on a reference input and write its tensors"},
    {"report", cmd_report, "RUN_DIR [RUN_DIR...] [--out FILE] [--force]",
     "the HTML report of a run (RUN_DIR/report.html), or several runs compared (--out, default ./report.html)"},
    {"validate", cmd_validate, "RECIPE [key=value ...]", "check a recipe and print it resolved"},
    {"clean", cmd_clean, "INPUT... --out FILE [--config clean.yaml] [--report FILE] [--type TYPE] [--eval FILE...]",
     "deduplicate, filter, scrub PII and check contamination; write the kept records"},
    {"bench", cmd_bench, "train [--shape NAME] [--seq N] [--batch N] ... | tokenize --tokenizer DIR | clean [--mb N]",
     "benchmarks: training steps (tokens/s, memory), tokenizer (MB/s), cleaning (MB/s, memory)"},
    {NULL, NULL, NULL, NULL},
};

const ds_command *ds_find_command(const char *name)
{
    for (const ds_command *c = DS_COMMANDS; c->name; c++)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

void ds_command_help(const ds_command *c, FILE *f)
{
    if (c->run == cmd_clean) cmd_clean_help(f);
}

void args_init(ds_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->argc = argc < 256 ? argc : 256;
    a->argv = argv;
}

const char *arg_value(ds_args *a, const char *key)
{
    for (int i = 0; i + 1 < a->argc; i++)
        if (!strcmp(a->argv[i], key)) {
            a->used[i] = a->used[i + 1] = 1;
            return a->argv[i + 1];
        }
    return NULL;
}

int arg_flag(ds_args *a, const char *key)
{
    for (int i = 0; i < a->argc; i++)
        if (!strcmp(a->argv[i], key)) {
            a->used[i] = 1;
            return 1;
        }
    return 0;
}

int arg_require(ds_args *a, const char *key, const char *cmd, const char **out)
{
    *out = arg_value(a, key);
    if (*out) return DS_OK;
    const ds_command *c = ds_find_command(cmd);
    return ds_fail(DS_EUSAGE, "%s: missing %s (usage: ds-ft %s %s)", cmd, key, cmd, c ? c->usage : "");
}

int arg_int(ds_args *a, const char *key, const char *cmd, long lo, long hi, long *out)
{
    const char *v = arg_value(a, key);
    if (!v) return DS_OK;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi)
        return ds_fail(DS_EUSAGE, "%s: %s takes a whole number from %ld to %ld, not '%s'", cmd, key, lo, hi, v);
    *out = x;
    return DS_OK;
}

int arg_double(ds_args *a, const char *key, const char *cmd, double lo, double hi, double *out)
{
    const char *v = arg_value(a, key);
    if (!v) return DS_OK;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !(x >= lo && x <= hi))
        return ds_fail(DS_EUSAGE, "%s: %s takes a number from %g to %g, not '%s'", cmd, key, lo, hi, v);
    *out = x;
    return DS_OK;
}

int arg_check_all(const ds_args *a, const char *cmd)
{
    for (int i = 0; i < a->argc; i++)
        if (!a->used[i]) {
            const ds_command *c = ds_find_command(cmd);
            return ds_fail(DS_EUSAGE, "%s: unexpected argument '%s' (usage: ds-ft %s %s)", cmd, a->argv[i], cmd,
                           c ? c->usage : "");
        }
    return DS_OK;
}

int arg_output(ds_args *a, const char *cmd, const char *const *inputs, const char **out)
{
    int rc = arg_require(a, "--out", cmd, out);
    bool force = arg_flag(a, "--force");
    if (!rc) rc = arg_check_all(a, cmd);
    for (int i = 0; !rc && inputs[i]; i++)
        if (ds_same_file(*out, inputs[i]))
            rc = ds_fail(DS_EUSAGE, "%s: --out %s is an input of the command itself; choose another", cmd, *out);
    if (!rc) rc = ds_check_output(*out, force, "--force");
    return rc;
}
