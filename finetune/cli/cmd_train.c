/* finetune/cli/cmd_train.c - `ds-ft train RECIPE [key=value ...] [--resume | --overwrite]`. */
#include "commands.h"
#include "finetune/train/train.h"

#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bool resume, overwrite;
} train_opts;

static const cli_opt TRAIN_OPTS[] = {
    {"--resume", ARG_FLAG, offsetof(train_opts, resume), NULL, "off", 0, 0, NULL, false,
     "continue the run in output_dir from its newest complete checkpoint"},
    {"--overwrite", ARG_FLAG, offsetof(train_opts, overwrite), NULL, "off", 0, 0, NULL, false,
     "replace an earlier run's state in output_dir (removed once every input was read)"},
    CLI_END,
};

static void recipe_keys_help(FILE *f)
{
    fprintf(f, "\nrecipe keys (section.key: default - help):\n");
    recipe_print_keys(f);
}

const cli_spec TRAIN_SPEC = {"train", "RECIPE [key=value ...]", 1, -1, NULL,
                             "train an adapter as the recipe says (key=value overrides a recipe key)", TRAIN_OPTS,
                             recipe_keys_help};

/* The positional arguments: the recipe's path, then key=value overrides. */
int recipe_from_args(const cli_spec *s, const cli_parsed *p, recipe **r)
{
    *r = NULL;
    for (int i = 1; i < p->nargs; i++)
        if (!strchr(p->args[i], '='))
            return cli_fail(s, "unexpected argument '%s' (overrides look like key=value)", p->args[i]);
    return recipe_load(p->args[0], p->args + 1, p->nargs - 1, stderr, r);
}

int cmd_train(int argc, char **argv)
{
    train_opts o;
    cli_parsed p;
    recipe *r = NULL;
    int rc = cli_parse(&TRAIN_SPEC, argc, argv, &o, &p);
    if (!rc) rc = recipe_from_args(&TRAIN_SPEC, &p, &r);
    if (!rc) rc = recipe_resolve_inputs(r, stderr);
    if (!rc && o.resume && o.overwrite) rc = cli_fail(&TRAIN_SPEC, "--resume and --overwrite exclude each other");
    if (!rc) rc = train_run(r, o.resume ? TRAIN_RESUME : o.overwrite ? TRAIN_OVERWRITE : TRAIN_FRESH);
    recipe_free(r);
    cli_parsed_free(&p);
    return rc;
}
