/* finetune/cli/cmd_train.c - `ds-ft train RECIPE [key=value ...] [--resume | --overwrite]`. */
#include "commands.h"
#include "finetune/dist/dist.h"
#include "finetune/train/train.h"

#include "backend/backend.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bool resume, overwrite;
    long gpus, cpu_ranks;
} train_opts;

static const cli_opt TRAIN_OPTS[] = {
    {"--resume", ARG_FLAG, offsetof(train_opts, resume), NULL, "off", 0, 0, NULL, false,
     "continue the run in output_dir from its newest complete checkpoint"},
    {"--overwrite", ARG_FLAG, offsetof(train_opts, overwrite), NULL, "off", 0, 0, NULL, false,
     "replace an earlier run's state in output_dir (removed once every input was read)"},
    {"--gpus", ARG_INT, offsetof(train_opts, gpus), "N", "1", 1, 1024, NULL, false,
     "train on N GPUs of this machine, one worker process each, gradients summed by NCCL (docs/MULTI_GPU.md)"},
    {"--cpu-ranks", ARG_INT, offsetof(train_opts, cpu_ranks), "N", "1", 1, 64, NULL, false,
     "test of the multi-GPU logic on the CPU: N workers whose gradients rank 0 sums (not faster)"},
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

/* ds-ft train with argv less the launcher's options, for the workers. */
static char **worker_argv(int argc, char **argv, char *extra)
{
    char **w = calloc((size_t)argc + 4, sizeof *w);
    if (!w) return NULL;
    int n = 0;
    w[n++] = "ds-ft";
    w[n++] = "train";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--gpus") || !strcmp(argv[i], "--cpu-ranks")) i++;
        else if (strncmp(argv[i], "--gpus=", 7) && strncmp(argv[i], "--cpu-ranks=", 12)) w[n++] = argv[i];
    }
    if (extra) w[n++] = extra;
    return w;
}

/* --gpus N / --cpu-ranks N: start the workers, each of them this command again. */
static int launch_workers(const recipe *r, bool gpus, long n, int argc, char **argv)
{
    if (getenv("WORLD_SIZE"))
        return ds_fail(DS_EUSAGE, "%s starts its own workers, but WORLD_SIZE is set (under torchrun or another "
                                  "launcher, leave %s out)", gpus ? "--gpus" : "--cpu-ranks", gpus ? "--gpus" : "--cpu-ranks");
    if (gpus) {
        int have = be_cuda_device_count();
        if (r->plan.device == BE_CPU)
            return ds_fail(DS_EUSAGE, "--gpus %ld: the recipe says device: cpu (set device: cuda or auto)", n);
        if (!be_cuda_compiled())
            return ds_fail(DS_EUSAGE, "--gpus %ld: this ds-ft was built without CUDA", n);
        if (have < n)
            return ds_fail(DS_EUSAGE, "--gpus %ld: this machine has %d usable CUDA device%s; there is no CPU fallback "
                                      "(leave --gpus out to train on %s)", n, have, have == 1 ? "" : "s",
                           have ? "one GPU" : "the CPU");
    } else if (r->plan.device == BE_CUDA) {
        return ds_fail(DS_EUSAGE, "--cpu-ranks %ld: the recipe says device: cuda (use --gpus N on GPUs)", n);
    }
    if (setenv("DSFT_DIST", gpus ? "nccl" : "test-sum", 1))
        return ds_fail(DS_EUSAGE, "cannot set the workers' environment");
    char **w = worker_argv(argc, argv, gpus ? NULL : "device=cpu");
    if (!w) return ds_oom(0, "the workers' arguments");
    int rc = dist_launch((int)n, w);
    free(w);
    return rc;
}

/* A worker of several (WORLD_SIZE set, by --gpus or by torchrun): meet the others, then train. */
static int train_as_rank(recipe *r, train_start start)
{
    dist_env e;
    bool present;
    int rc = dist_env_read(&e, &present);
    if (rc || !present) return rc;
    const char *mode = getenv("DSFT_DIST");
    if (mode && strcmp(mode, "nccl") && strcmp(mode, "test-sum"))
        return ds_fail(DS_EUSAGE, "DSFT_DIST=%s: expected nccl or test-sum", mode);
    dist_kind kind = mode && !strcmp(mode, "test-sum") ? DIST_TEST_SUM : DIST_NCCL;
    if (kind == DIST_NCCL) rc = dist_select_gpu(&e);
    dist_comm *comm = NULL;
    if (!rc) rc = dist_open(&e, kind, &comm);
    if (!rc) rc = train_run_ranks(r, start, comm);
    dist_close(comm);
    /* every rank prints its error; rank 0's is the run's */
    if (rc && e.rank != 0) ds_fail_context(rc, "rank %d of %d: ", e.rank, e.world);
    return rc;
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
    bool gpus = p.given & (1ull << 2), cpu_ranks = p.given & (1ull << 3);
    train_start start = o.resume ? TRAIN_RESUME : o.overwrite ? TRAIN_OVERWRITE : TRAIN_FRESH;
    if (!rc && gpus && cpu_ranks) rc = cli_fail(&TRAIN_SPEC, "--gpus and --cpu-ranks exclude each other");
    if (!rc && (gpus || cpu_ranks)) rc = launch_workers(r, gpus, gpus ? o.gpus : o.cpu_ranks, argc, argv);
    else if (!rc && getenv("WORLD_SIZE")) rc = train_as_rank(r, start);
    else if (!rc) rc = train_run(r, start);
    recipe_free(r);
    cli_parsed_free(&p);
    return rc;
}
