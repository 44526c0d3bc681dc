/* finetune/cli/cmd_export.c - `ds-ft export` (an adapter bundle; --format gguf|gguf-lora: cmd_export_gguf.c)
 * and `ds-ft import`. */
#include "commands.h"

#include "adapters/bundle.h"
#include "core/files.h"
#include "core/options.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

static const cli_opt EXPORT_OPTS[] = {
    CLI_ADAPTER(export_opts, adapter, "the PEFT adapter folder (bundle, gguf-lora: required; gguf: merged in)"),
    CLI_OUT(export_opts, out, "FILE", "the file to write"),
    {"--format", ARG_CHOICE, offsetof(export_opts, format), NULL, "bundle", 0, 0, "bundle|gguf|gguf-lora", false,
     "bundle: the adapter in one checksummed file; gguf: the model for llama.cpp / Ollama; gguf-lora: the adapter "
     "as llama.cpp's LoRA GGUF"},
    CLI_MODEL(export_opts, model, false),
    {"--type", ARG_CHOICE, offsetof(export_opts, type), NULL, "q4_k_m", 0, 0, "f32|f16|bf16|q8_0|q4_0|q4_k_m", false,
     "gguf: the tensor type of the quantized layers"},
    {"--source", ARG_CHOICE, offsetof(export_opts, source), NULL, "dequantized", 0, 0, "dequantized|original", false,
     "gguf: the weights an adapter is merged into"},
    {"--pre", ARG_TEXT, offsetof(export_opts, pre), "NAME", "told from the tokenizer", 0, 0, NULL, false,
     "gguf: llama.cpp's pre-tokenizer name"},
    {"--force", ARG_FLAG, offsetof(export_opts, force), NULL, "off", 0, 0, NULL, false,
     "gguf, gguf-lora: replace an existing --out"},
    CLI_END,
};

const cli_spec EXPORT_SPEC = {
    "export", "", 0, 0,
    "--adapter DIR --out FILE [--force] | --format gguf --model DIR|ID [--adapter DIR] --out FILE.gguf [--type TYPE] "
    "[--source S] [--pre NAME] [--force] | --format gguf-lora --adapter DIR --model DIR|ID --out FILE.gguf [--force]",
    "pack an adapter into one compressed, checksummed file, or write GGUF for llama.cpp / Ollama", EXPORT_OPTS, NULL};

/* The options only some formats take. */
static const struct {
    const char *option, *formats;
} FORMAT_ONLY[] = {
    {"--model", "gguf|gguf-lora"}, {"--type", "gguf"}, {"--source", "gguf"}, {"--pre", "gguf"},
};

int cmd_export(int argc, char **argv)
{
    export_opts o;
    cli_parsed p;
    int rc = cli_parse(&EXPORT_SPEC, argc, argv, &o, &p);
    for (size_t i = 0; !rc && i < sizeof FORMAT_ONLY / sizeof *FORMAT_ONLY; i++)
        if (cli_given(&EXPORT_SPEC, &p, FORMAT_ONLY[i].option) && !opt_in_choices(FORMAT_ONLY[i].formats, o.format))
            rc = cli_fail(&EXPORT_SPEC, "%s applies to --format %s, not %s", FORMAT_ONLY[i].option,
                          FORMAT_ONLY[i].formats, o.format);
    if (!rc && strcmp(o.format, "bundle")) rc = cmd_export_gguf(&o);
    else if (!rc) {
        if (!o.adapter) rc = cli_fail(&EXPORT_SPEC, "missing --adapter DIR");
        if (!rc && !ds_is_dir(o.adapter)) rc = ds_fail(DS_ENOINPUT, "%s: no such adapter folder", o.adapter);
        if (!rc) rc = cli_output(&EXPORT_SPEC, o.out, o.force, (const char *const[]){o.adapter, NULL});
        if (!rc) rc = bundle_export(o.adapter, o.out);
    }
    cli_parsed_free(&p);
    return rc;
}

typedef struct {
    const char *in, *out;
    bool force;
} import_opts;

static const cli_opt IMPORT_OPTS[] = {
    {"--in", ARG_TEXT, offsetof(import_opts, in), "FILE", NULL, 0, 0, NULL, true, "the bundle ds-ft export wrote"},
    CLI_OUT(import_opts, out, "DIR", "the adapter folder to write"),
    CLI_FORCE(import_opts, force),
    CLI_END,
};

const cli_spec IMPORT_SPEC = {"import", "", 0, 0, NULL, "unpack and verify an exported adapter", IMPORT_OPTS, NULL};

int cmd_import(int argc, char **argv)
{
    import_opts o;
    cli_parsed p;
    int rc = cli_parse(&IMPORT_SPEC, argc, argv, &o, &p);
    if (!rc) rc = cli_output(&IMPORT_SPEC, o.out, o.force, (const char *const[]){o.in, NULL});
    if (!rc) rc = bundle_import(o.in, o.out);
    cli_parsed_free(&p);
    return rc;
}
