/* finetune/cli/cmd_merge.c - `ds-ft merge`: base model + adapter -> a Hugging
 * Face model folder. With --source dequantized (the default) a 16-bit base is
 * quantized to NF4 (double quantization) and dequantized, which reproduces
 * what a QLoRA run trained against; a 4-bit checkpoint is dequantized as is. */
#include "commands.h"
#include "finetune/run/run.h"

#include "core/status.h"

int cmd_merge(int argc, char **argv)
{
    ds_args a;
    args_init(&a, argc, argv);
    const char *model_dir, *adapter_dir, *out;
    merge_source src;
    int rc = arg_require(&a, "--model", "merge", &model_dir);
    if (!rc) rc = arg_require(&a, "--adapter", "merge", &adapter_dir);
    if (!rc) rc = merge_source_parse(arg_value(&a, "--source"), &src);
    if (!rc) rc = arg_output(&a, "merge", (const char *const[]){model_dir, adapter_dir, NULL}, &out);
    if (rc) return rc;
    ds_run x;
    ds_run_opts ro = {.no_backend = true, .no_tokenizer = true, .model_dir = model_dir, .adapter_dir = adapter_dir,
                      .load_in_4bit = src == MERGE_DEQUANTIZED, .double_quant = true};
    rc = ds_run_open(&ro, &x);
    if (!rc) rc = merge_write(x.model, x.adapter, src, out);
    ds_run_close(&x);
    return rc;
}
