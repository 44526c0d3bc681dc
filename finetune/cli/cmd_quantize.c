/* finetune/cli/cmd_quantize.c - `ds-ft quantize --model DIR --out DIR`: write a
 * bitsandbytes 4-bit NF4 checkpoint (double quantization, as the Hub's
 * "...-bnb-4bit" models are) that transformers and ds-ft load as it is. */
#include "commands.h"

#include "core/status.h"
#include "quant/bnb.h"

#include <stdio.h>

typedef struct {
    const char *model, *out;
    bool force;
} quantize_opts;

static const cli_opt QUANTIZE_OPTS[] = {
    CLI_MODEL(quantize_opts, model, true),
    CLI_OUT(quantize_opts, out, "DIR", "the 4-bit model folder to write"),
    CLI_FORCE(quantize_opts, force),
    CLI_END,
};

const cli_spec QUANTIZE_SPEC = {"quantize", "", 0, 0, NULL, "write a bitsandbytes-format 4-bit checkpoint",
                                QUANTIZE_OPTS, NULL};

int cmd_quantize(int argc, char **argv)
{
    quantize_opts o;
    cli_parsed p;
    int rc = cli_parse(&QUANTIZE_SPEC, argc, argv, &o, &p);
    if (!rc) rc = cli_output(&QUANTIZE_SPEC, o.out, o.force, (const char *const[]){o.model, NULL});
    bnb_quantize_opts opts = {.double_quant = true};
    bnb_quantize_report r;
    if (!rc) rc = bnb_quantize_model(o.model, o.out, &opts, &r);
    if (!rc)
        printf("quantized %d linear layers (%lld weights) to NF4, kept %d tensors in 16-bit: %s (%.1f MB of tensors)\n",
               r.quantized, r.params_4bit, r.copied, o.out, (double)r.bytes / 1e6);
    cli_parsed_free(&p);
    return rc;
}
