/* finetune/cli/cmd_train.c - `ds-ft train RECIPE [key=value ...] [--resume | --overwrite]`. */
#include "commands.h"
#include "finetune/train/train.h"

#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Split the arguments into the recipe path, overrides and flags. */
int recipe_from_args(int argc, char **argv, const char *cmd, bool train_flags, recipe **r, train_start *start)
{
    const char *path = NULL;
    char **over = calloc((size_t)argc + 1, sizeof *over);
    int n = 0, rc = DS_OK;
    bool resume = false, overwrite = false;
    for (int i = 0; i < argc && !rc; i++) {
        if (train_flags && !strcmp(argv[i], "--resume")) resume = true;
        else if (train_flags && !strcmp(argv[i], "--overwrite")) overwrite = true;
        else if (argv[i][0] == '-') rc = ds_fail(DS_EUSAGE, "%s: unknown option '%s'", cmd, argv[i]);
        else if (strchr(argv[i], '=') && path) over[n++] = argv[i];
        else if (!path) path = argv[i];
        else rc = ds_fail(DS_EUSAGE, "%s: unexpected argument '%s' (overrides look like key=value)", cmd, argv[i]);
    }
    if (!rc && resume && overwrite) rc = ds_fail(DS_EUSAGE, "%s: --resume and --overwrite exclude each other", cmd);
    if (start) *start = resume ? TRAIN_RESUME : overwrite ? TRAIN_OVERWRITE : TRAIN_FRESH;
    if (!rc && !path) rc = ds_fail(DS_EUSAGE, "%s: missing RECIPE (usage: ds-ft %s RECIPE [key=value ...])", cmd, cmd);
    if (!rc) rc = recipe_load(path, over, n, stderr, r);
    free(over);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    recipe *r = NULL;
    train_start start;
    int rc = recipe_from_args(argc, argv, "train", true, &r, &start);
    if (!rc) rc = train_run(r, start);
    recipe_free(r);
    return rc;
}
