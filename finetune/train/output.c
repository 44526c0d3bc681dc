/* finetune/train/output.c - a run's output folder and an earlier run's state in
 * it: a fresh run refuses such a folder unless told to replace it
 * (--overwrite) or continue it (--resume), and replacing removes the old
 * state only once every input of the new run was read (trainer_setup.c). */
#include "trainer.h"

#include "core/files.h"
#include "core/status.h"

#include <stdlib.h>

/* What a run writes into its output folder, besides the token cache; the
 * checkpoints first, so that a kill while discarding never leaves an old
 * checkpoint to resume beside a half-removed run. */
static const char *const RUN_STATE[] = {"checkpoints", "adapter", "merged", "eval", "metrics.jsonl", "train.log",
                                        "recipe.resolved.yaml", "clean_report.json", NULL};

/* The first entry of RUN_STATE present in dir, or NULL. */
static const char *earlier_state(const char *dir)
{
    for (int i = 0; RUN_STATE[i]; i++) {
        char *p = ds_path_join(dir, RUN_STATE[i]);
        bool there = p && ds_exists(p);
        free(p);
        if (there) return RUN_STATE[i];
    }
    return NULL;
}

int output_check(const recipe *r, train_start start)
{
    const char *found = earlier_state(r->output_dir);
    if (start != TRAIN_FRESH || !found) return DS_OK;
    return ds_fail(DS_EEXISTS, "%s: holds an earlier run (%s); pass --overwrite to replace it or --resume to "
                               "continue it", r->output_dir, found);
}

int output_discard(const recipe *r, train_log *log)
{
    const char *found = earlier_state(r->output_dir);
    if (!found) return DS_OK;
    for (int i = 0; RUN_STATE[i]; i++) {
        char *p = ds_path_join(r->output_dir, RUN_STATE[i]);
        int rc = p ? ds_remove_atomic(p) : DS_ENOMEM;
        free(p);
        if (rc) return rc;
    }
    tlog_say(log, "note: --overwrite: removed the earlier run in %s", r->output_dir);
    return DS_OK;
}

int output_clean_debris(const recipe *r)
{
    int rc = DS_OK;
    for (int i = 0; !rc && RUN_STATE[i]; i++) {
        char *p = ds_path_join(r->output_dir, RUN_STATE[i]);
        if (!p) return DS_ENOMEM;
        rc = ds_clean_debris(p);
        if (!rc && i == 0 && ds_is_dir(p)) rc = ds_clean_debris_in(p);   /* checkpoints/step-N.del-PID, ... */
        free(p);
    }
    return rc;
}
