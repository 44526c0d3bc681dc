/* finetune/cli/cmd_dump.c - `ds-ft dump`: the engine's intermediate results on a
 * reference input, named as in fixtures/tiny-llama/reference.safetensors, so
 * any reference file of that shape can be checked against the engine. */
#include "commands.h"
#include "finetune/run/run.h"

#include "core/status.h"

typedef struct {
    const char *model, *adapter, *input, *out, *device;
    bool four;
    bool force;
} dump_opts;

static const cli_opt DUMP_OPTS[] = {
    CLI_MODEL(dump_opts, model, true),
    CLI_ADAPTER(dump_opts, adapter, "a PEFT adapter: its outputs and gradients too"),
    {"--input", ARG_TEXT, offsetof(dump_opts, input), "FILE", NULL, 0, 0, NULL, true,
     "safetensors with input_ids, optional labels and dpo.* tensors"},
    CLI_OUT(dump_opts, out, "FILE", "the safetensors file to write"),
    CLI_DEVICE(dump_opts, device),
    CLI_4BIT(dump_opts, four),
    CLI_FORCE(dump_opts, force),
    CLI_END,
};

const cli_spec DUMP_SPEC = {"dump", "", 0, 0, NULL, "run the engine on a reference input and write its tensors",
                            DUMP_OPTS, NULL};

int cmd_dump(int argc, char **argv)
{
    dump_opts o;
    cli_parsed p;
    int rc = cli_parse(&DUMP_SPEC, argc, argv, &o, &p);
    if (!rc) rc = cli_output(&DUMP_SPEC, o.out, o.force, (const char *const[]){o.model, o.input, NULL});
    dump_request r = {.model_dir = o.model, .adapter_dir = o.adapter, .input = o.input, .out = o.out,
                      .device = o.device, .load_in_4bit = o.four};
    if (!rc) rc = dump_run(&r);
    cli_parsed_free(&p);
    return rc;
}
