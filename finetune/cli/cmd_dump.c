/* finetune/cli/cmd_dump.c - `ds-ft dump`: the engine's intermediate results on a
 * reference input, named as in fixtures/tiny-llama/reference.safetensors, so
 * any reference file of that shape can be checked against the engine. */
#include "commands.h"
#include "finetune/run/run.h"

#include "core/status.h"

#include <stdlib.h>
#include <string.h>

int cmd_dump(int argc, char **argv)
{
    ds_args a;
    args_init(&a, argc, argv);
    dump_request r = {0};
    int rc = arg_require(&a, "--model", "dump", &r.model_dir);
    if (!rc) rc = arg_require(&a, "--input", "dump", &r.input);
    r.adapter_dir = arg_value(&a, "--adapter");
    r.device = arg_value(&a, "--device");
    r.load_in_4bit = arg_flag(&a, "--4bit");
    if (!rc) rc = arg_output(&a, "dump", (const char *const[]){r.model_dir, r.input, NULL}, &r.out);
    if (!rc) rc = dump_run(&r);
    return rc;
}
