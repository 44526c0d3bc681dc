/* finetune/cli/cmd_validate.c - `ds-ft validate RECIPE [key=value ...]`: read a
 * recipe as a run would (aliases, overrides, every check), print the notices
 * to stderr and the resolved recipe to stdout. Nothing is loaded besides the
 * recipe: model and data files are the run's business. */
#include "commands.h"
#include "finetune/recipe/recipe.h"

#include "core/status.h"

#include <stdio.h>

int cmd_validate(int argc, char **argv)
{
    recipe *r = NULL;
    int rc = recipe_from_args(argc, argv, "validate", false, &r, NULL);
    if (!rc) rc = recipe_print(r, stdout);
    if (!rc && fflush(stdout) != 0) rc = ds_fail(DS_EIO, "validate: writing to stdout failed");
    recipe_free(r);
    return rc;
}
