/* finetune/cmd_validate.c - `ds-ft validate RECIPE [key=value ...]`: read a
 * recipe as a run would (aliases, overrides, every check), print the notices
 * to stderr and the resolved recipe to stdout. Nothing is loaded besides the
 * recipe: model and data files are the run's business. */
#include "commands.h"
#include "recipe.h"

#include "../core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_validate(int argc, char **argv)
{
    const ds_command *self = ds_find_command("validate");
    const char *usage = self ? self->usage : "";
    if (argc < 1) return ds_fail(DS_EUSAGE, "validate: missing RECIPE (usage: ds-ft validate %s)", usage);
    const char *path = argv[0];
    if (path[0] == '-') return ds_fail(DS_EUSAGE, "validate: unknown option '%s' (usage: ds-ft validate %s)", path, usage);
    for (int i = 1; i < argc; i++)
        if (!strchr(argv[i], '=') || argv[i][0] == '-')
            return ds_fail(DS_EUSAGE, "validate: '%s' is not key=value (usage: ds-ft validate %s)", argv[i], usage);

    recipe *r;
    int rc = recipe_load(path, argv + 1, argc - 1, stderr, &r);
    if (rc) return rc;
    rc = recipe_print(r, stdout);
    if (!rc && fflush(stdout) != 0) rc = ds_fail(DS_EIO, "validate: writing to stdout failed");
    recipe_free(r);
    return rc;
}
