/* finetune/cli/cmd_validate.c - `ds-ft validate RECIPE [key=value ...]`: read a
 * recipe as a run would (aliases, overrides, every check), print the notices
 * to stderr and the resolved recipe to stdout. Nothing is loaded besides the
 * recipe: model and data files are the run's business (ds-ft doctor RECIPE
 * looks for them). */
#include "commands.h"
#include "finetune/recipe/recipe.h"

#include "core/status.h"

#include <stdio.h>

static const cli_opt VALIDATE_OPTS[] = {CLI_END};

const cli_spec VALIDATE_SPEC = {"validate", "RECIPE [key=value ...]", 1, -1, NULL,
                                "check a recipe and print it resolved, every default included", VALIDATE_OPTS, NULL};

int cmd_validate(int argc, char **argv)
{
    cli_parsed p;
    recipe *r = NULL;
    int rc = cli_parse(&VALIDATE_SPEC, argc, argv, NULL, &p);
    if (!rc) rc = recipe_from_args(&VALIDATE_SPEC, &p, &r);
    if (!rc) rc = recipe_print(r, stdout);
    if (!rc && fflush(stdout) != 0) rc = ds_fail(DS_EIO, "validate: writing to stdout failed");
    recipe_free(r);
    cli_parsed_free(&p);
    return rc;
}
