/* finetune/cli/cmd_export.c - `ds-ft export` (an adapter bundle; --format gguf|gguf-lora: cmd_export_gguf.c)
 * and `ds-ft import`. */
#include "commands.h"

#include "adapters/bundle.h"
#include "core/files.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

int cmd_export(int argc, char **argv)
{
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--format") && strcmp(argv[i + 1], "bundle")) return cmd_export_gguf(argc, argv, argv[i + 1]);
    ds_args a;
    args_init(&a, argc, argv);
    const char *dir, *out;
    int rc = arg_require(&a, "--adapter", "export", &dir);
    if (!rc) rc = arg_output(&a, "export", (const char *const[]){dir, NULL}, &out);
    arg_value(&a, "--format");   /* --format bundle: this one */
    if (!rc) rc = arg_check_all(&a, "export");
    if (!rc && !ds_is_dir(dir)) rc = ds_fail(DS_ENOINPUT, "%s: no such adapter folder", dir);
    if (!rc) rc = bundle_export(dir, out);
    return rc;
}

int cmd_import(int argc, char **argv)
{
    ds_args a;
    args_init(&a, argc, argv);
    const char *in, *out;
    int rc = arg_require(&a, "--in", "import", &in);
    if (!rc) rc = arg_output(&a, "import", (const char *const[]){in, NULL}, &out);
    if (!rc) rc = bundle_import(in, out);
    return rc;
}
