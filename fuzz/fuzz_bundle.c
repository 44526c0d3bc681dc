/* fuzz/fuzz_bundle.c - `ds-ft import` on arbitrary bytes: the magic, the zstd
 * frame decompressed as a stream, the manifest line, the files verified as
 * they come and the adapter they make checked. A bundle either imports into a
 * folder that holds exactly the two or three files it lists, or is refused
 * with a status and a message, leaving nothing at the output. */
#include "adapters/bundle.h"
#include "core/files.h"
#include "core/status.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char *g_in, *g_out;

static void remove_tmp(void)
{
    unlink(g_in);
    ds_remove_tree(g_out);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    g_in = ds_strdupf("%s/fuzz_bundle_%d.dsft", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    g_out = ds_strdupf("%s/fuzz_bundle_%d.out", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    atexit(remove_tmp);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(g_in, "wb");   /* a scratch file: no atomic write needed */
    if (!f) return 0;
    bool ok = fwrite(data, 1, size, f) == size;
    if (fclose(f) != 0 || !ok) return 0;
    ds_clear_error();
    int rc = bundle_import(g_in, g_out);
    if (rc != DS_OK) {
        if (!ds_errmsg()[0]) __builtin_trap();   /* a refusal without a message */
        if (ds_exists(g_out)) __builtin_trap();  /* a refusal that left an output */
    }
    ds_remove_tree(g_out);
    return 0;
}
