/* finetune/cli/cmd_doctor.c - `ds-ft doctor [RECIPE [key=value ...]] [--gpu CARD]
 * [--mem-gib G]`: the GPUs, the CUDA versions, whether this build runs on
 * them, and for a recipe whether it fits and how long an epoch takes
 * (finetune/doctor/doctor.h). Nothing is downloaded, written or trained. */
#include "commands.h"
#include "finetune/doctor/doctor.h"

#include "core/status.h"

#include <stdio.h>

typedef struct {
    const char *gpu;
    double mem_gib;
} doctor_args;

static const cli_opt DOCTOR_OPTS[] = {
    {"--gpu", ARG_TEXT, offsetof(doctor_args, gpu), "CARD", "the GPU here", 0, 0, NULL, false,
     "plan for this card: h100|h200|a100|l40s|4090|4080|3090"},
    {"--mem-gib", ARG_NUM, offsetof(doctor_args, mem_gib), "G", "0", 0, 1e5, NULL, false,
     "plan for G GiB of free GPU memory; 0 = the card's"},
    CLI_END,
};

const cli_spec DOCTOR_SPEC = {"doctor", "[RECIPE [key=value ...]]", 0, -1, NULL,
                              "the GPUs, CUDA versions and whether this build runs on them; for a recipe, whether it "
                              "fits and how long an epoch takes (no download, no training)",
                              DOCTOR_OPTS, NULL};

int cmd_doctor(int argc, char **argv)
{
    doctor_args a;
    cli_parsed p;
    recipe *r = NULL;
    int rc = cli_parse(&DOCTOR_SPEC, argc, argv, &a, &p);
    if (!rc && p.nargs > 0) rc = recipe_from_args(&DOCTOR_SPEC, &p, &r);
    doctor_opts o = {.recipe = r, .gpu = a.gpu, .mem_gib = a.mem_gib};
    if (!rc) rc = doctor_run(&o, stdout);
    recipe_free(r);
    cli_parsed_free(&p);
    return rc;
}
