/* finetune/cli/cmd_quantize.c - `ds-ft quantize --model DIR --out DIR`: write a
 * bitsandbytes 4-bit NF4 checkpoint (double quantization, as the Hub's
 * "...-bnb-4bit" models are) that transformers and ds-ft load as it is. */
#include "commands.h"

#include "core/status.h"
#include "quant/bnb.h"

#include <stdio.h>

int cmd_quantize(int argc, char **argv)
{
    ds_args a;
    args_init(&a, argc, argv);
    const char *model, *out;
    int rc = arg_require(&a, "--model", "quantize", &model);
    if (!rc) rc = arg_output(&a, "quantize", (const char *const[]){model, NULL}, &out);
    if (rc) return rc;

    bnb_quantize_opts opts = {.double_quant = true};
    bnb_quantize_report r;
    rc = bnb_quantize_model(model, out, &opts, &r);
    if (rc) return rc;
    printf("quantized %d linear layers (%lld weights) to NF4, kept %d tensors in 16-bit: %s (%.1f MB of tensors)\n",
           r.quantized, r.params_4bit, r.copied, out, (double)r.bytes / 1e6);
    return DS_OK;
}
