/* fuzz/fixture_dir.h - where the fuzz targets find the shared fixtures. */
#ifndef DS_FUZZ_FIXTURE_DIR_H
#define DS_FUZZ_FIXTURE_DIR_H

#include "core/files.h"

#include <stdlib.h>
#include <string.h>

/* malloc'd path of fixtures/REL: under $DSFT_SHARED, else under ../shared
 * beside the checkout (found from this source file's location). */
static inline char *fuzz_fixture_dir(const char *rel)
{
    const char *shared = getenv("DSFT_SHARED");
    if (shared && *shared) return ds_strdupf("%s/fixtures/%s", shared, rel);
    char *here = strdup(__FILE__), *slash = strrchr(here, '/');
    if (slash) *slash = '\0';
    char *dir = ds_strdupf("%s/../../shared/fixtures/%s", slash ? here : ".", rel);
    free(here);
    return dir;
}

#endif
