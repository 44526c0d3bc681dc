/* Commands whose implementation has not landed yet: each fails loudly.
 * (This file shrinks to nothing as commands are implemented.) */
#include "commands.h"
#include "bench.h"
#include "recipe.h"

#include "../core/status.h"

#include <stdio.h>

#define NOT_YET(fn, name) \
    int fn(int argc, char **argv) { (void)argc; (void)argv; return ds_fail(DS_EINTERNAL, "'%s' is not implemented yet", name); }

