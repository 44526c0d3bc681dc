/* finetune/cli/main.c - the ds-ft command line: dispatch to a subcommand and
 * turn its status into the exit code (the only place that exits). */
#include "commands.h"
#include "finetune/recipe/recipe.h"

#include "backend/backend.h"
#include "core/interrupt.h"
#include "core/status.h"

#include <stdio.h>
#include <string.h>


#ifndef DSFT_VERSION
#define DSFT_VERSION "dev"
#endif

static void print_help(FILE *f)
{
    fprintf(f, "ds-ft %s - QLoRA fine-tuning for Llama-family models\n\n", DSFT_VERSION);
    char usage[2048];
    fprintf(f, "usage: ds-ft RECIPE [key=value ...]      same as `ds-ft train RECIPE`\n");
    for (const ds_command *c = DS_COMMANDS; c->name; c++)
        fprintf(f, "       ds-ft %s\n%24s%s\n", cli_usage(c->spec, usage, sizeof usage), "", c->spec->summary);
    fprintf(f, "       ds-ft --help | --version | CMD --help\n\n");
    fprintf(f, "Exit codes: 0 ok, 1 training failed, 64 usage, 65 bad data, 66 missing input,\n"
               "70 internal error, 73 output exists (--force / --overwrite), 74 I/O error, 78 bad recipe,\n"
               "130 interrupted.\n\n");
    fprintf(f, "Recipe keys (section.key: default - help):\n");
    recipe_print_keys(f);
}

static int looks_like_recipe(const char *arg)
{
    size_t n = strlen(arg);
    return (n > 5 && !strcmp(arg + n - 5, ".yaml")) || (n > 4 && !strcmp(arg + n - 4, ".yml"));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stderr);
        return DS_EUSAGE;
    }
    const char *first = argv[1];
    if (!strcmp(first, "--help") || !strcmp(first, "-h") || !strcmp(first, "help")) {
        print_help(stdout);
        return DS_OK;
    }
    if (!strcmp(first, "--version")) {
        printf("ds-ft %s (%s)\n", DSFT_VERSION, be_cuda_compiled() ? "cpu+cuda" : "cpu only");
        if (be_cuda_compiled()) printf("cuda devices: %d\n", be_cuda_device_count());
        return DS_OK;
    }
    ds_interrupt_install();
    const ds_command *cmd = ds_find_command(DS_COMMANDS, first);
    int rc;
    const char *name;
    if (cmd) {
        name = cmd->name;
        rc = cmd->run(argc - 2, argv + 2);   /* `CMD --help` too: the command's option table prints it */
    } else if (looks_like_recipe(first) || first[0] != '-') {
        if (!looks_like_recipe(first)) {
            fprintf(stderr, "ds-ft: error: unknown command '%s' (see ds-ft --help)\n", first);
            return DS_EUSAGE;
        }
        name = "train";
        rc = cmd_train(argc - 1, argv + 1);
    } else {
        fprintf(stderr, "ds-ft: error: unknown option '%s' (see ds-ft --help)\n", first);
        return DS_EUSAGE;
    }
    if (rc == CLI_HELP) return DS_OK;
    if (rc == DS_OK && ds_interrupted())   /* a command that finished before it looked: its output is whole */
        rc = ds_interrupt_status("(the command had finished; what it wrote is complete)");
    if (rc != DS_OK) {
        const char *msg = ds_errmsg();
        fprintf(stderr, "ds-ft %s: error: %s\n", name, *msg ? msg : ds_status_name(rc));
    }
    return rc;
}
