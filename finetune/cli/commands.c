/* finetune/cli/commands.c - the table of ds-ft's commands (main dispatches on it;
 * each command's options and help are its cli_spec, in its own file). */
#include "commands.h"

#include <string.h>

const ds_command DS_COMMANDS[] = {
    {"train", cmd_train, &TRAIN_SPEC},
    {"eval", cmd_eval, &EVAL_SPEC},
    {"merge", cmd_merge, &MERGE_SPEC},
    {"export", cmd_export, &EXPORT_SPEC},
    {"import", cmd_import, &IMPORT_SPEC},
    {"quantize", cmd_quantize, &QUANTIZE_SPEC},
    {"generate", cmd_generate, &GENERATE_SPEC},
    {"tokenize", cmd_tokenize, &TOKENIZE_SPEC},
    {"inspect", cmd_inspect, &INSPECT_SPEC},
    {"dump", cmd_dump, &DUMP_SPEC},
    {"report", cmd_report, &REPORT_SPEC},
    {"validate", cmd_validate, &VALIDATE_SPEC},
    {"clean", cmd_clean, &CLEAN_SPEC},
    {"doctor", cmd_doctor, &DOCTOR_SPEC},
    {"bench", cmd_bench, &BENCH_SPEC},
    {NULL, NULL, NULL},
};

const ds_command *ds_find_command(const ds_command *table, const char *name)
{
    for (const ds_command *c = table; c->name; c++)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}
