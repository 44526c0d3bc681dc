/* finetune/cli/cmd_merge.c - `ds-ft merge`: base model + adapter -> a Hugging
 * Face model folder. With --source dequantized (the default) a 16-bit base is
 * quantized to NF4 (double quantization) and dequantized, which reproduces
 * what a QLoRA run trained against; a 4-bit checkpoint is dequantized as is. */
#include "commands.h"
#include "finetune/run/run.h"

#include "core/status.h"

typedef struct {
    const char *model, *adapter, *out, *source;
    bool force;
} merge_opts;

static const cli_opt MERGE_OPTS[] = {
    CLI_MODEL(merge_opts, model, true),
    {"--adapter", ARG_TEXT, offsetof(merge_opts, adapter), "DIR", NULL, 0, 0, NULL, true, "the PEFT adapter folder"},
    CLI_OUT(merge_opts, out, "DIR", "the merged model folder to write"),
    {"--source", ARG_CHOICE, offsetof(merge_opts, source), NULL, "dequantized", 0, 0, "dequantized|original", false,
     "weights merged into: the NF4 ones a QLoRA run trained against, or the original 16-bit ones"},
    CLI_FORCE(merge_opts, force),
    CLI_END,
};

const cli_spec MERGE_SPEC = {"merge", "", 0, 0, NULL, "merge an adapter into the base weights (Hugging Face model folder)",
                             MERGE_OPTS, NULL};

int cmd_merge(int argc, char **argv)
{
    merge_opts o;
    cli_parsed p;
    merge_source src;
    int rc = cli_parse(&MERGE_SPEC, argc, argv, &o, &p);
    if (!rc) rc = merge_source_parse(o.source, &src);
    if (!rc) rc = cli_output(&MERGE_SPEC, o.out, o.force, (const char *const[]){o.model, o.adapter, NULL});
    if (rc) {
        cli_parsed_free(&p);
        return rc;
    }
    ds_run x;
    ds_run_opts ro = {.no_backend = true, .no_tokenizer = true, .model_dir = o.model, .adapter_dir = o.adapter,
                      .load_in_4bit = src == MERGE_DEQUANTIZED, .double_quant = true};
    rc = ds_run_open(&ro, &x);
    if (!rc) rc = merge_write(x.model, x.adapter, src, o.out);
    ds_run_close(&x);
    cli_parsed_free(&p);
    return rc;
}
